"""`streamseg bench`: its statistics (percentiles, CDFs, spread) and a tiny end-to-end run."""

import json

import numpy as np
import pytest

from streamseg.bench import cdf, spread
from streamseg.latency import summarize
from tests.conftest import run_streamseg


def test_percentiles_by_hand():
    s = summarize(list(range(1, 101)))  # 1..100 ms
    assert s["p50"] == pytest.approx(50.5) and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["max"] == 100 and s["mean"] == 50.5 and s["count"] == 100
    assert summarize([])["p50"] is None


def test_cdf_is_monotone_and_ends_at_one():
    v = np.random.default_rng(0).exponential(10, 5000)
    xs, ys = cdf(v, points=50)
    assert len(xs) == len(ys) <= 50
    assert xs == sorted(xs) and ys == sorted(ys) and ys[-1] == 1.0
    assert xs[0] == pytest.approx(v.min()) and xs[-1] == pytest.approx(v.max())
    # the share at the median sample is about one half
    k = int(np.searchsorted(xs, np.median(v)))
    assert abs(ys[k] - 0.5) < 0.05
    assert cdf(np.array([])) == ([], [])
    assert cdf(np.array([3.0, 1.0, 2.0])) == ([1.0, 2.0, 3.0], [1 / 3, 2 / 3, 1.0])


def test_spread():
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": [3.0, 1.0, 2.0]}


def test_tiny_bench_end_to_end(tmp_path, tiny):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        f"""
sources: ["synthetic://driving?size=160x90&fps=30&seed=1"]
engines:
  semantic: {{card: {tiny / "red.yaml"}, backend: onnxruntime, threads: 1}}
  instance: {{card: {tiny / "yolo.yaml"}, backend: onnxruntime, threads: 1}}
bench: {{frames: 12, warmup: 2, reps: 2, batch_sizes: [1, 2], streams: [1, 2], loads: [0.5, 1.5], load_seconds: 1}}
"""
    )
    r = run_streamseg("bench", "-c", cfg, "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    for name in ("bench.json", "bench.md", "latency_cdf.png", "throughput.png", "latency_vs_load.png"):
        assert (out / name).stat().st_size > 100, name
    res = json.loads((out / "bench.json").read_text())
    t = res["throughput_fps"]
    assert set(t) == {
        "engines_only",
        "naive_h264",
        "pipeline_h264",
        "pipeline_null_b1_s1",
        "pipeline_null_b1_s2",
        "pipeline_null_b2_s1",
        "pipeline_null_b2_s2",
    }
    assert all(len(v["runs"]) == 2 and v["median"] > 0 for v in t.values())
    assert res["ratios"]["pipeline_null_over_engines_only"] > 0
    assert [row["load"] for row in res["load_sweep"]] == [0.5, 1.5]
    assert all(row["accounted"] for row in res["load_sweep"])  # every frame out or counted as dropped
    assert set(res["latency_cdf_ms"]) >= {"decode", "infer", "end_to_end"}
    assert res["machine"]["cores"] >= 1 and "engine_threads" in res["machine"]
    assert "| pipeline / naive loop" in (out / "bench.md").read_text()


def test_bench_mistakes(tmp_path):
    r = run_streamseg("bench", "-c", tmp_path / "none.yaml")
    assert r.returncode == 2 and "config not found" in r.stderr
