# `make test` and `make demo` set everything up on a fresh machine: a .venv made from
# the machine's python3, the project installed into it with its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-streamseg

.PHONY: test demo replay bench train lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/streamseg demo

replay: $(STAMP)
	$(BIN)/streamseg run -c configs/dashcam-replay.yaml

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_vs_pipeline.py

# retrain the bundled models (PyTorch CPU build, about 40 minutes on 2 cores)
train: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[train]"
	$(BIN)/python -m streamseg.synth.train --out engines

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/python -m ruff check streamseg tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache
