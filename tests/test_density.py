"""`streamseg bench --streams`: the density search, its bounds and its report (no timing thresholds)."""

import json

import pytest

from streamseg.density import P99_OVER_S_MAX, Camera, camera_uri, keeps_up
from tests.conftest import run_streamseg


@pytest.mark.parametrize(
    ("cams", "service", "ok"),
    [
        ([Camera(100, 100, 10.0, 29.0)], 10.0, True),
        ([Camera(100, 99, 10.0, 20.0)], 10.0, True),  # 1% dropped: still keeps up
        ([Camera(100, 98, 10.0, 20.0)], 10.0, False),  # 2%
        ([Camera(100, 100, 10.0, 31.0)], 10.0, False),  # p99 past 3 S
        ([Camera(100, 100, 10.0, 20.0), Camera(100, 90, 10.0, 20.0)], 10.0, False),  # every camera counts
        ([Camera(0, 0, None, None)], 10.0, False),
    ],
)
def test_a_trial_keeps_up_only_when_every_camera_does(cams, service, ok):
    assert keeps_up(cams, service) is ok


def test_camera_uris_are_live_synthetic_cameras_of_the_profile():
    assert camera_uri("640x360", 15.0, 3, 150) == "synthetic://driving?size=640x360&fps=15&seed=3&frames=150&loop=30"


@pytest.mark.slow
def test_tiny_density_bench_end_to_end(tmp_path, tiny):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        f"""
engines:
  semantic: {{card: {tiny / "red.yaml"}, backend: onnxruntime, threads: 1}}
  instance: {{card: {tiny / "yolo.yaml"}, backend: onnxruntime, threads: 1}}
bench:
  density: {{profiles: ["96x64@10"], max_streams: 2, seconds: 1.5, backends: [onnxruntime], batch_sizes: [1, 2]}}
"""
    )
    r = run_streamseg("bench", "-c", cfg, "--streams", "--out", tmp_path / "out", timeout=600)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    for name in ("density.json", "density.md", "density.png"):
        assert (out / name).stat().st_size > 100, name
    res = json.loads((out / "density.json").read_text())
    d = res["density"]
    assert d["bounds"] == {"drop_rate_max": 0.01, "p99_over_service_max": P99_OVER_S_MAX}
    (p,) = d["profiles"]
    names = [v["variant"] for v in p["variants"]]
    assert names == [
        "streamseg (onnxruntime, batch 1)",
        "streamseg (onnxruntime, batch 2)",
        "streamseg, one process per camera (onnxruntime)",
        "naive loop, one process per camera",
    ]
    for v in p["variants"]:
        trials = v["trials"]
        assert [t["n"] for t in trials] == list(range(1, len(trials) + 1))
        assert v["service_ms"] == trials[0]["cameras"][0]["p50"]
        # the density is the last N of the unbroken run of passing trials; a failing one ends the search
        assert v["density"] == sum(1 for t in trials if t["keeps_up"])
        assert all(t["keeps_up"] for t in trials[: v["density"]])
        assert len(trials) == 2 or not trials[-1]["keeps_up"]
        for t in trials:
            assert t["error"] is None, t
            assert len(t["cameras"]) == t["n"]  # every camera of the trial reported
            for c in t["cameras"]:
                assert c["in"] >= c["out"] > 0 and c["in"] == 15  # 1.5 s at 10 fps
            assert t["keeps_up"] == keeps_up(
                [Camera(c["in"], c["out"], c["p50"], c["p99"]) for c in t["cameras"]], v["service_ms"]
            )
    md = (out / "density.md").read_text()
    for v in p["variants"]:
        assert f"| 96x64 @ 10 fps | {v['variant']} | {v['density']} |" in md
