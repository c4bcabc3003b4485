"""`streamseg bench`: its statistics (percentiles, CDFs, spread) and a tiny end-to-end run."""

import json
import statistics

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


def test_steady_rate_counts_from_a_tenth_into_the_run():
    from streamseg.bench import steady_rate

    # a pipeline that took 1 s to fill, then gave a frame every 10 ms: 100 frames/s, not 100/1.99
    done = [1.0 + 0.01 * i for i in range(100)]
    assert steady_rate(done) == pytest.approx(100.0)
    assert steady_rate([0.0, *done[1:]]) == pytest.approx(100.0)  # the slow first frame is not counted
    assert steady_rate(done[::-1]) == pytest.approx(100.0)  # completion order does not matter
    assert steady_rate([1.0]) == 0.0 and steady_rate([]) == 0.0


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
bench: {{frames: 12, warmup: 2, reps: 2, batch_sizes: [1, 2], streams: [1, 2], loads: [0.5, 1.5], load_seconds: 1,
         sweep_reps: 2, capacity_steps: 2}}
"""
    )
    r = run_streamseg("bench", "-c", cfg, "--out", tmp_path / "out")  # from the checkout: its streamseg
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    for name in ("bench.json", "bench.md", "latency_cdf.png", "throughput.png", "latency_vs_load.png"):
        assert (out / name).stat().st_size > 100, name
    res = json.loads((out / "bench.json").read_text())
    check_bench_report(
        res, reps=2, frames=12, batch_sizes=[1, 2], streams=[1, 2], loads=[0.5, 1.5], load_seconds=1, sweep_reps=2
    )
    check_live_capacity(res, searches=2, steps=2, bracket=(0.4, 1.2))
    check_bench_markdown(res, (out / "bench.md").read_text())


def check_bench_report(res, *, reps, frames, batch_sizes, streams, loads, load_seconds, sweep_reps=1):
    """The bench report's structure and the invariants between its figures (no timing thresholds):
    spreads agree with their runs, ratios and capacity are what the fps figures give, every
    sweep point accounts for every frame, every stage is measured."""
    from streamseg.frames import STAGES

    assert {"decode", "infer", "postprocess", "overlay", "sink"} <= set(STAGES)
    assert res["frames"] == frames and res["reps"] == reps
    assert set(res["engines"]) == {"semantic", "instance"}
    assert res["machine"]["cores"] >= 1 and res["machine"]["engine_threads"] == {"semantic": 1, "instance": 1}
    # throughput: every variant, each run positive, median/min/max those of its runs
    t = res["throughput_fps"]
    nulls = {f"pipeline_null_b{b}_s{n}": (b, n) for b in batch_sizes for n in streams}
    assert set(t) == {"engines_only", "naive_h264", "pipeline_h264", *nulls}
    for name, v in t.items():
        runs = v["runs"]
        assert len(runs) == reps and all(x > 0 for x in runs), name
        assert v["median"] == pytest.approx(statistics.median(runs), abs=1e-3), name
        assert (v["min"], v["max"]) == (min(runs), max(runs)), name
    # ratios: as bench.md defines them, from the runs and medians reported beside them
    ra, eng = res["ratios"], t["engines_only"]["median"]
    first = f"pipeline_null_b{batch_sizes[0]}_s{streams[0]}"
    per_rep = statistics.median(p / q for p, q in zip(t[first]["runs"], t["engines_only"]["runs"], strict=True))
    assert ra["pipeline_null_over_engines_only"] == pytest.approx(per_rep, rel=0.01, abs=1e-3)
    best = max(nulls, key=lambda k: t[k]["median"])
    assert (ra["best_config"]["batch"], ra["best_config"]["streams"]) == nulls[best]
    best_per_rep = statistics.median(p / q for p, q in zip(t[best]["runs"], t["engines_only"]["runs"], strict=True))
    assert ra["best_pipeline_null_over_engines_only"] == pytest.approx(best_per_rep, rel=0.01, abs=1e-3)
    # the machine limit: cores x 1000 / the stages' summed CPU cost, and the pipeline against it
    costs, lim = res["stage_cpu_ms_per_frame"], res["machine_limit_fps"]
    assert {"source", "engine.semantic", "engine.instance", "overlay", "encode.h264"} <= set(costs)
    work = sum(
        v for k, v in costs.items() if k not in ("encode.h264", "overlay", "sink.jsonl")
    )  # null:// draws nothing
    assert lim["null"] == pytest.approx(lim["cores"] * 1000 / work, rel=0.01)
    drawn = work + costs["overlay"] + costs["encode.h264"]
    assert lim["h264"] == pytest.approx(lim["cores"] * 1000 / drawn, rel=0.01)
    assert ra["pipeline_null_over_machine_limit"] == pytest.approx(t[first]["median"] / lim["null"], rel=0.01)
    assert ra["pipeline_h264_over_machine_limit"] == pytest.approx(t["pipeline_h264"]["median"] / lim["h264"], rel=0.01)
    h264 = statistics.median(p / q for p, q in zip(t["pipeline_h264"]["runs"], t["naive_h264"]["runs"], strict=True))
    assert ra["pipeline_h264_over_naive_h264"] == pytest.approx(h264, rel=0.01, abs=1e-3)
    assert res["engine_ms_per_frame"] == pytest.approx(1000 / eng, rel=0.01, abs=0.01)
    # the capacity: the output rate of a live run paced at 150% of the offline rate
    offline = t[f"pipeline_null_b{batch_sizes[0]}_s1"]["median"]
    assert res["capacity_offline_fps"] == pytest.approx(offline, abs=0.01)
    cap_run = res["capacity_run"]
    assert cap_run["source_fps"] == pytest.approx(1.5 * offline, abs=0.01) and cap_run["accounted"] is True
    capacity = res["capacity_fps"]
    assert capacity == pytest.approx(cap_run["out_fps"], abs=0.01) and capacity > 0
    # the load sweep: one row per load and sweep, paced at that share of the capacity, every frame accounted for
    rows = res["load_sweep"]
    assert [row["load"] for row in rows] == loads * sweep_reps
    assert [row["rep"] for row in rows] == [r for r in range(sweep_reps) for _ in loads]
    service = res["service_ms"]
    assert service == res["service_run"]["end_to_end"]["p50"] and service > 0
    for share in loads:
        mine = [r for r in rows if r["load"] == share]
        sm = res["load_sweep_summary"][f"{share:g}"]
        assert sm["p99_ms"]["runs"] == [r["end_to_end"]["p99"] for r in mine]
        assert sm["out_fps_over_capacity"]["runs"] == [r["out_fps_over_capacity"] for r in mine]
        assert sm["engine_ms_at_start"]["runs"] == [r["engine_ms_at_start"] for r in mine]
        assert sm["p99_over_engine_at_start"]["runs"] == [r["p99_over_engine_at_start"] for r in mine]
    for row in rows:
        assert row["p99_over_service"] == pytest.approx(row["end_to_end"]["p99"] / service, rel=0.01)
        span = row["frames_in"] / row["source_fps"]
        assert row["out_fps_over_capacity"] == pytest.approx(row["frames_out"] / span / capacity, rel=0.05)
        assert row["source_fps"] == pytest.approx(capacity * row["load"], abs=0.01)
        assert abs(row["frames_in"] - (capacity * row["load"] * load_seconds + 1)) <= 1  # the frames the source had
        dropped = sum(row["dropped"].values())
        assert row["frames_in"] == row["frames_out"] + dropped, row  # in = out + dropped
        assert row["accounted"] is True and row["frames_out"] > 0
        assert row["drop_rate"] == pytest.approx(dropped / row["frames_in"], abs=1e-4)
        e2e = row["end_to_end"]
        assert 0 <= e2e["p50"] <= e2e["p90"] <= e2e["p99"] <= e2e["max"], e2e
        assert row["p99_over_engine_ms"] == pytest.approx(e2e["p99"] / (1000 / eng), rel=0.01)
        # the machine's speed during the run: that run's own start-up timing of its engines
        at = row["engine_ms_at_start"]
        assert at > 0 and row["p99_over_engine_at_start"] == pytest.approx(e2e["p99"] / at, rel=0.01)
        assert set(row["stages"]) == set(STAGES), row["stages"]  # every stage, measured
        for stage, v in row["stages"].items():
            assert v["p50"] is not None and 0 <= v["p50"] <= v["p99"], (stage, v)
    # the latency CDFs: every stage and end to end, each a CDF over the first null run's frames
    cdfs = res["latency_cdf_ms"]
    assert set(cdfs) == {*STAGES, "end_to_end"}
    for stage, (xs, ys) in cdfs.items():
        assert xs and len(xs) == len(ys) <= frames, stage
        assert xs == sorted(xs) and ys == sorted(ys) and ys[-1] == 1.0 and ys[0] > 0, stage


def check_live_capacity(res, *, searches, steps, bracket):
    """Each search bisects its bracket on the bounds it states; its result is its best passing probe."""
    lc, offline, service = res["live_capacity"], res["capacity_offline_fps"], res["service_ms"]
    assert lc["bounds"] == {"drop_rate_max": 0.01, "p99_over_service_max": 3.0}
    assert len(lc["searches"]) == searches
    for s in lc["searches"]:
        lo, hi = bracket
        assert len(s["probes"]) == steps
        for p in s["probes"]:
            assert p["load"] == pytest.approx((lo + hi) / 2, abs=1e-3)
            assert p["source_fps"] == pytest.approx(offline * p["load"], abs=0.01)
            assert p["frames_in"] == p["frames_out"] + sum(p["dropped"].values())
            ok = p["drop_rate"] <= 0.01 and p["end_to_end"]["p99"] <= 3.0 * service * 1.01
            assert p["keeps_up"] == ok or abs(p["end_to_end"]["p99"] / service - 3.0) < 0.05, p
            assert p["cpu_ms_per_frame"] is not None  # where the CPU went, per stage thread
            lo, hi = (p["load"], hi) if p["keeps_up"] else (lo, p["load"])
        passing = [p["load"] for p in s["probes"] if p["keeps_up"]]
        assert s["over_offline"] == (max(passing) if passing else None)
        assert s["fps"] == (pytest.approx(max(passing) * offline, abs=0.01) if passing else None)
        assert s["lower_bound"] == all(p["keeps_up"] for p in s["probes"])
    fps = [s["fps"] for s in lc["searches"] if s["fps"]]
    assert lc["fps"]["runs"] == [round(v, 3) for v in fps]
    assert lc["searches_below_bracket"] == sum(1 for s in lc["searches"] if s["fps"] is None)


def check_bench_markdown(res, md: str):
    """bench.md shows the figures of bench.json, not others."""
    m = res["machine"]  # every figure names the CPU model and the flags it depends on (bf16, VNNI, AMX)
    assert m["cpu_flags"].startswith(m["cpu"] + " (") and f"Machine: {m['cpu_flags']}, " in md
    for name, v in res["throughput_fps"].items():
        assert f"| {name} | {v['median']:.1f} | {v['min']:.1f} - {v['max']:.1f} |" in md, name
    ra = res["ratios"]
    assert f"| pipeline (null://) / engines only | {ra['pipeline_null_over_engines_only']:.2f} |" in md
    assert f"| pipeline / naive loop (same H.264 file sink) | {ra['pipeline_h264_over_naive_h264']:.2f} |" in md
    assert f"(batch {ra['best_config']['batch']}, {ra['best_config']['streams']} streams)" in md
    assert f"capacity {res['capacity_fps']:.1f} frames/s" in md
    assert "Live capacity: the highest source rate" in md and "| live capacity, frames/s |" in md
    assert f"| pipeline (null://) / machine limit | {ra['pipeline_null_over_machine_limit']:.2f} |" in md
    for stage, ms in res["stage_cpu_ms_per_frame"].items():
        assert f"| {stage} | {ms:.2f} |" in md, stage
    load_rows = [line for line in md.splitlines() if line.startswith("| ") and "(run " in line.split("|")[1]]
    assert len(load_rows) == len(res["load_sweep"])
    for line, row in zip(load_rows, res["load_sweep"], strict=True):
        assert line.startswith(
            f"| {row['load']:.0%} (run {row['rep'] + 1}) | {row['source_fps']:.1f} | {row['end_to_end']['p50']} |"
        )
        assert line.endswith(f"| {row['drop_rate']:.1%} | yes | {row['engine_ms_at_start']} |")


def test_bench_mistakes(tmp_path):
    r = run_streamseg("bench", "-c", tmp_path / "none.yaml")
    assert r.returncode == 2 and "config not found" in r.stderr
