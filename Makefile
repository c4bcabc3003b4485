# `make test` and `make demo` set everything up on a fresh machine: a .venv made from
# the machine's python3, the project installed into it with its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-streamseg

# GStreamer (video I/O: cameras, RTSP/RTP, H.264 files) comes from the system's packages;
# PyGObject (the `gst` extra) builds against them.
GST_DEBS := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp \
	gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
	libgirepository1.0-dev libcairo2-dev pkg-config

# Independent judges for the tests (each skipped without it): headless Chromium for the
# preview page, ffmpeg/ffprobe for files and RTSP/RTP streams, promtool (prometheus) for /metrics.
TEST_DEBS := chromium ffmpeg prometheus

.PHONY: test demo replay bench train lint clean sysdeps testdeps gpu-check gpu-bundle lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs GStreamer's packages when run as root on Debian/Ubuntu; otherwise says what to run.
sysdeps:
	@if dpkg -s $(GST_DEBS) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing GStreamer packages with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(GST_DEBS) >/dev/null; \
	else \
		echo "GStreamer packages missing; video I/O over GStreamer will be off. To add it, run:"; \
		echo "  sudo apt-get install $(GST_DEBS)"; \
	fi

testdeps:
	@if dpkg -s $(TEST_DEBS) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(TEST_DEBS) with apt-get (independent judges for the tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_DEBS) >/dev/null; \
	else \
		echo "$(TEST_DEBS) missing: the tests that need them will be skipped. To add them: sudo apt-get install $(TEST_DEBS)"; \
	fi

# The `test` extra brings torch==2.13.0 (the `train` extra) for the training tests. These machines
# and CI have its CPU build in pip's find-links (/opt/wheels); elsewhere run
# `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu`, or pip takes PyPI's CUDA build.
TORCH_INDEX ?=
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

# constraints.txt: the exact versions the suite passed with (CPython 3.11, Linux x86_64), made by
# `make lock`; another Python resolves pyproject's ranges instead (as `pip install -e .` always does).
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
CONSTRAINTS := $(if $(filter 3.11,$(PY_VERSION)),-c constraints.txt)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python sysdeps
	$(if $(CONSTRAINTS),,@echo "constraints.txt is for CPython 3.11; Python $(PY_VERSION) installs the newest versions pyproject.toml allows")
	$(PIP_INSTALL) $(CONSTRAINTS) -e ".[test]"
	@$(PIP_INSTALL) $(CONSTRAINTS) -e ".[test,gst]" \
		|| echo "PyGObject did not build (GStreamer's development packages missing?): running without GStreamer"
	touch $(STAMP)

# refresh constraints.txt after pyproject.toml's dependencies change (pins that still fit are kept;
# `make lock UPGRADE=1` moves every pin to the newest that resolves); pip-tools' pip-compile
lock: | $(BIN)/python
	$(PIP_INSTALL) pip-tools
	$(BIN)/python tools/lockfile.py lock $(if $(UPGRADE),--upgrade)

test: $(STAMP) testdeps
	$(BIN)/python tools/lockfile.py check
	$(BIN)/python -m bandit -q -r streamseg --severity-level high
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/streamseg demo

replay: $(STAMP)
	$(BIN)/streamseg run -c configs/dashcam-replay.yaml

bench: $(STAMP)
	$(BIN)/streamseg bench --out out/bench

# On the lent GPU machine (no network, no TensorRT; its image's python3 holds CUDA torch): install the
# project from gpu-bundle/ alone (pip --no-index) into a venv that sees the image's packages, then the
# torch backend's agreement, throughput and pipeline, step by step, into out/gpu-check.json
# (streamseg/gpucheck.py; docs/gpu.md). Needs no venv of ours: the orchestrator is standard library.
# GPU_CHECK_ARGS=--dry-run rehearses it on a CPU. Your own GPU machine with TensorRT: streamseg gpu-check --tensorrt.
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PYTHON) -m streamseg.gpucheck --bundle gpu-bundle --out out/gpu-check.json $(GPU_CHECK_ARGS)

# Here, with network: the wheels gpu-check needs beyond the GPU image, and copies of the
# ../shared/data files it reads, into gpu-bundle/ (ignored); prints its size with the working tree.
gpu-bundle: | $(BIN)/python
	$(BIN)/python -m streamseg.gpucheck --make-bundle --bundle gpu-bundle

# retrain the bundled models (PyTorch CPU build)
train: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[train]"
	# the bundled models' recipe: both tasks side by side, one thread each (about 40 minutes on 2 cores: the semantic model sets the pace)
	$(BIN)/python -m streamseg.synth.train --render-only --cache .train-cache
	$(BIN)/python -m streamseg.synth.train --task semantic --threads 1 --iters 1800 --dice 1.0 --cache .train-cache --out engines & \
	$(BIN)/python -m streamseg.synth.train --task instance --threads 1 --iters 2000 --cache .train-cache --out engines; wait

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/python -m ruff check streamseg tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .test-cache
