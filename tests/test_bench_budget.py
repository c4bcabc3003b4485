"""The bench's honest limit: each stage's CPU cost alone, and the machine limit they add up to."""

import pytest

from streamseg.bench import Bench, budget_lines, machine_limits
from streamseg.config import validate_config


def test_machine_limit_is_cores_times_1000_over_the_summed_cost():
    costs = {"source": 5.0, "engine.semantic": 10.0, "overlay": 5.0, "encode.h264": 5.0}
    lim = machine_limits(costs, cores=2)
    # null:// draws nothing and encodes nothing: 2000/15; the H.264 file both: 2000/25
    assert lim == {"cores": 2, "null": 133.33, "h264": 80.0}
    assert machine_limits({**costs, "sink.jsonl": 7.0}, cores=2) == lim  # listed, in neither limit


def test_budget_lines_name_every_stage_and_flag_a_heavy_generator():
    text = budget_lines({"source": 30.0, "engine.semantic": 10.0, "overlay": 5.0, "encode.h264": 5.0}, 2)
    for stage in ("source", "engine.semantic", "overlay", "encode.h264", "machine limit"):
        assert stage in text
    assert "load generator" in text  # 60% of the budget is the source
    assert "load generator" not in budget_lines({"source": 1.0, "engine.semantic": 10.0}, 2)


def test_stage_costs_measure_every_stage_on_the_same_frames(tmp_path, tiny):
    cfg = validate_config(
        {
            "sources": ["synthetic://driving?size=160x90&fps=30&seed=1"],
            "engines": {
                "semantic": {"card": str(tiny / "red.yaml"), "backend": "onnxruntime", "threads": 1},
                "instance": {"card": str(tiny / "yolo.yaml"), "backend": "onnxruntime", "threads": 1},
            },
        }
    )
    bench = Bench(cfg, tmp_path / "out", log=lambda *_: None)
    models = bench._models()
    images = bench._read_frames(6)
    assert len(images) == 6
    for m in models:
        m.__enter__()
    try:
        costs = bench.stage_costs(models, images, str(tmp_path / "b.mp4"))
    finally:
        for m in models:
            m.__exit__(None, None, None)
    assert set(costs) == {
        "source",
        "preprocess.semantic",
        "engine.semantic",
        "postprocess.semantic",
        "preprocess.instance",
        "engine.instance",
        "postprocess.instance",
        "analytics",  # a representative road zone and ego corridor when the config has none
        "overlay",
        "encode.h264",
        "sink.jsonl",  # listed; in no machine limit (neither null:// nor the H.264 file writes JSON lines)
    }
    assert all(v >= 0 for v in costs.values())
    assert costs["source"] > 0 and costs["encode.h264"] > 0  # rendering and encoding are never free
    assert (tmp_path / "b.mp4").stat().st_size > 0
    lim = machine_limits(costs, bench.cores)
    assert lim["h264"] <= lim["null"]
    assert lim["null"] == pytest.approx(
        bench.cores * 1000 / sum(v for k, v in costs.items() if k not in ("encode.h264", "overlay", "sink.jsonl")),
        rel=1e-2,
    )
