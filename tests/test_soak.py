"""The soak's short version: thousands of frames through several streams; after warm-up, resident
memory, threads and open file descriptors do not grow (benchmarks/soak.py runs the long one)."""

from streamseg.config import validate_config
from streamseg.pipeline import Pipeline
from streamseg.resources import ResourceSampler, growth, snapshot


def test_snapshot_reads_this_process():
    s = snapshot()
    assert s["rss_mib"] > 10 and s["threads"] >= 1 and s["fds"] >= 3


def test_short_soak_nothing_grows(tmp_path, tiny, reliability):
    cfg = validate_config(
        {
            "sources": [
                {"uri": f"synthetic://driving?size=160x90&fps=30&seed={i}&frames=500", "id": f"s{i}"} for i in range(3)
            ],
            "engines": {
                "semantic": {"card": str(tiny / "red.yaml"), "threads": 1, "backend": "onnxruntime"},
                "instance": {"card": str(tiny / "yolo.yaml"), "threads": 1, "backend": "onnxruntime"},
            },
            "pipeline": {"batch": {"max_size": 4, "max_wait_ms": 2}},
            "sinks": [str(tmp_path / "o.mp4"), str(tmp_path / "o.jsonl")],
            "metrics": {"progress": False, "summary": False},
        }
    )
    pipe = Pipeline(cfg)
    sampler = ResourceSampler(0.2, progress=lambda: pipe.recorder.frames_out).start()
    report = pipe.run().report
    samples = sampler.stop()
    assert report["frames"]["out"] == 1500 and report["frames"]["dropped"] == {}
    assert len(samples) >= 12
    g = growth(samples)
    assert g["threads"]["growth"] <= 0 and g["fds"]["growth"] <= 0, g
    assert g["rss_mib"]["growth"] < 15, g  # MiB: allocator noise, not a leak per frame
    reliability(
        "soak, short: 1500 frames over 3 streams (benchmarks/soak.py: 20,000)",
        "after warm-up RSS, threads and open files do not grow",
        "0",
    )
