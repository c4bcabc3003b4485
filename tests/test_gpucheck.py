"""`streamseg gpu-check`: the step-by-step check for the lent GPU machine (torch backend), and
`--tensorrt --dry-run`: the TensorRT flow short of a GPU, against the TensorRT double.

The models are the tiny test models (the real four make the same run take minutes on this
machine); `make gpu-check` on a GPU machine runs the real four."""

import json

import pytest

from streamseg import gpucheck
from tests.conftest import run_streamseg


@pytest.fixture
def tiny_models(monkeypatch, tiny):
    monkeypatch.setattr(gpucheck, "MODELS", {"synth-semantic": tiny / "red.yaml", "synth-instance": tiny / "yolo.yaml"})
    monkeypatch.setattr(gpucheck, "PAIRS", {"bundled": ("synth-semantic", "synth-instance")})


@pytest.mark.parametrize("api", [10, 11])
def test_dry_run_builds_measures_runs_the_pipeline_and_writes_one_json(tmp_path, tiny_models, api):
    out = tmp_path / "gpu-check.json"
    res = gpucheck.run_tensorrt(out, dry_run=True, api=api, frames=3, run_tests=api == 11)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res, default=str))
    assert res["dry_run"] and "no figure here is a GPU figure" in res["note"]
    assert res["tensorrt"] == {10: "10.16.1.11", 11: "11.4.0.106"}[api] and res["install"] == {"skipped": "dry run"}
    built = {(p["model"], p["precision"]) for p in res["plans"] if "error" not in p}
    assert ("synth-semantic", "fp16") in built and ("synth-semantic", "int8") in built
    assert all(p["strongly_typed"] and p["fused"] for p in res["plans"] if "error" not in p)
    assert {(e["model"], e["batch"]) for e in res["engine_only"]} >= {("synth-semantic", 1), ("synth-semantic", 8)}
    sem = next(a for a in res["agreement"] if a["model"] == "synth-semantic" and a["precision"] == "fp16")
    assert sem["pixels_agree"] >= 0.999 and sem["vs"] == "onnxruntime cpu fp32 unfused"
    (fp16_run,) = [p for p in res["pipeline"] if p["precision"] == "fp16"]
    assert fp16_run["frames_out"] == 3 and fp16_run["fps"] > 0
    assert fp16_run["engines"]["semantic"]["backend"] == "tensorrt"
    ratio = [r for r in res["ratio"] if r["precision"] == "fp16"]
    assert {r["engines_batch"] for r in ratio} == {1, 8} and all(r["pipeline_over_engines"] > 0 for r in ratio)
    assert res["codecs"]["encoder"]["element"]  # named, whichever this machine has
    if api == 11:
        assert res["tests_gpu"]["rc"] in (0, 5) and "skipped" in res["tests_gpu"]["summary"]
    assert res["under_8_minutes"]


def test_gpu_check_without_a_gpu_or_with_a_bad_model_is_one_line(tmp_path):
    r = run_streamseg("gpu-check", "--dry-run", "--models", "resnet", "--out", tmp_path / "x.json")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown model 'resnet'" in r.stderr


def test_steps_record_failures_timeouts_and_the_budget_and_go_on(tmp_path):
    """Each step in the worker, its result in the JSON at once: an unknown step fails and the next runs,
    a step past its limit is killed and the next runs in a fresh worker, no step starts past the budget."""
    out = tmp_path / "gpu-check.json"
    res = gpucheck.run_steps(
        out, dry_run=True, bundle=tmp_path / "no-bundle", do_install=True,
        steps=[("imports", 0.01), ("nonsense", 120), ("codecs", 120)],
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(res, default=str))
    assert list(res["steps"]) == ["install", "imports", "nonsense", "codecs"]
    assert "no bundle at" in res["steps"]["install"]["error"]
    assert res["steps"]["imports"]["error"] == "timed out after 0 s"  # killed; the next step gets a fresh worker
    assert "KeyError" in res["steps"]["nonsense"]["error"] and res["steps"]["codecs"]["encoder"]
    assert all(isinstance(v["seconds"], float) for v in res["steps"].values())
    late = gpucheck.run_steps(tmp_path / "c.json", dry_run=True, budget_s=5, steps=[("codecs", 60)])
    assert late["steps"]["codecs"]["skipped"].startswith("not started: ")


def test_the_plan_covers_every_model_and_stream_count():
    names = [n for n, _ in gpucheck.plan(False, tuple(gpucheck.MODELS), True)]
    for m in gpucheck.MODELS:
        assert f"agreement:{m}" in names and f"throughput:{m}" in names
    assert {"device", "imports", "copy", "codecs", "tensorrt", "tests_gpu", "pipeline:udacity"} <= set(names)
    assert [n for n in names if n.startswith("pipeline:") and n != "pipeline:udacity"] == ["pipeline:8", "pipeline:16", "pipeline:32"]


def test_cards_of_shared_models_point_at_the_bundle_copy(tmp_path):
    data = tmp_path / "bundle" / "data" / "models"
    data.mkdir(parents=True)
    (data / "twinlitenet-bdd-360x640.onnx").write_bytes(b"x")
    card = gpucheck.card_for("twinlitenet-bdd", tmp_path, tmp_path / "bundle")
    assert f"file: {data.resolve() / 'twinlitenet-bdd-360x640.onnx'}" in card.read_text()
    assert gpucheck.card_for("synth-semantic", tmp_path, tmp_path / "bundle") == gpucheck.MODELS["synth-semantic"]
