"""A user's own export, end to end: `streamseg models card` writes the card, `streamseg run`
runs it, on every CPU backend (and the TensorRT double). A few frames of a small synthetic
source; the exports have random weights, so thresholds are 0 to push instances through the
mask path."""

import json

import onnx
import pytest

from streamseg.cli import main
from tests.backends import fake_tensorrt as fake
from tests.conftest import SHARED, run_streamseg

FORMATS = SHARED / "models" / "formats"
pytestmark = pytest.mark.skipif(not FORMATS.is_dir(), reason="../shared/data/models/formats not present")
COCO_8 = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]


def _cards(tmp_path, instance: str) -> tuple:
    """Cards written by the CLI for an instance export and YOLO26-sem, from copies with real names."""
    cards = []
    for name, names in ((instance, COCO_8 + [f"thing {i}" for i in range(8, 80)]), ("yolo26n-sem-random.onnx", None)):
        src = FORMATS / name
        if names:
            m = onnx.load(str(src))
            for p in m.metadata_props:
                if p.key == "names":
                    p.value = repr(dict(enumerate(names)))
            src = tmp_path / name
            onnx.save(m, str(src))
        card = tmp_path / "cards" / (src.stem + ".yaml")
        assert main(["models", "card", str(src), "-o", str(card)]) == 0  # the CLI, in this process
        cards.append(card)
    return tuple(cards)


def _config(tmp_path, backend, inst_card, sem_card):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"""
sources: ["synthetic://driving?size=320x240&frames=3&seed=1"]
engines:
  semantic: {{card: {sem_card}, backend: {backend}, threads: 1}}
  instance: {{card: {inst_card}, backend: {backend}, threads: 1, conf_threshold: 0.0, max_detections: 5}}
  cache_dir: {tmp_path / "cache"}
tracking: {{enabled: false}}  # the tracker starts no track from scores of 1e-4
sinks: [{tmp_path / "out.jsonl"}, {tmp_path / "out.mp4"}]
metrics: {{report: {tmp_path / "report.json"}, progress: false, summary: false}}
"""
    )
    return cfg


def _check_outputs(tmp_path, backend):
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"]["in"] == report["frames"]["out"] == 3 and not report["frames"]["dropped"]
    for task in ("semantic", "instance"):
        assert report["engines"][task]["backend"] == backend
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert len(line["instances"]) == 5  # threshold 0: max_detections of them, masks and all
        assert {i["group"] for i in line["instances"]} <= {"car", "person", "cycle"}
    assert (tmp_path / "out.mp4").stat().st_size > 0


@pytest.mark.parametrize("instance", ["yolo26n-seg-e2e-random.onnx", "yolo11n-seg-random.onnx"])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_streamseg_run_with_cards_written_by_models_card(tmp_path, backend, instance):
    inst, sem = _cards(tmp_path, instance)
    r = run_streamseg("run", "-c", _config(tmp_path, backend, inst, sem))
    assert r.returncode == 0, r.stderr[-2000:]
    _check_outputs(tmp_path, backend)


@pytest.mark.parametrize("instance", ["yolo26n-seg-e2e-random.onnx", "yolo11n-seg-random.onnx"])
def test_streamseg_run_on_the_tensorrt_double(tmp_path, monkeypatch, instance):
    inst, sem = _cards(tmp_path, instance)
    fake.install(monkeypatch)
    assert main(["run", "-c", str(_config(tmp_path, "tensorrt", inst, sem))]) == 0
    _check_outputs(tmp_path, "tensorrt")


def test_the_own_model_config_runs_an_export_with_its_written_card(tmp_path, monkeypatch):
    """configs/own-model.yaml as its comments say: `models card` into cards/, then `run -c`."""
    from tests.conftest import ROOT

    monkeypatch.chdir(tmp_path)  # the config's paths are relative to the folder it runs from
    src = FORMATS / "yolo26n-seg-e2e-random.onnx"
    assert main(["models", "card", str(src), "-o", "cards/my-instance.yaml"]) == 0
    argv = ["run", "-c", str(ROOT / "configs" / "own-model.yaml"), "--backend", "onnxruntime"]
    assert main([*argv, "--source", "synthetic://driving?size=320x240&frames=3"]) == 0
    report = json.loads((tmp_path / "out" / "own-model-latency.json").read_text())
    assert report["frames"]["out"] == 3 and report["engines"]["instance"]["card"] == "yolo26n-seg-e2e-random"
    assert (tmp_path / "out" / "own-model.mp4").stat().st_size > 0
