"""`streamseg bench --streams`: the density search, its bounds and its report (no timing thresholds)."""

import json

import pytest

from streamseg.config import Config
from streamseg.density import (
    P99_OVER_S_MAX,
    Camera,
    Density,
    Trial,
    account,
    aggregate,
    best_batch,
    camera_uri,
    keeps_up,
    markdown,
    plot,
    report_cpu_ms,
)
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


def test_a_streamseg_report_s_thread_cpu_maps_onto_the_account_s_stages():
    rep = {
        "frames": {"in": 10},
        "cpu_ms_per_frame": {
            "source-cam0": 1.0,
            "source-cam1": 2.0,
            "preprocess+infer (calling thread)": 10.0,
            "postprocess": 2.0,
            "overlay": 3.0,
            "sink-0": 1.0,
            "sink-1": 0.5,
            "library pools (engines' intra-op threads, codecs)": 5.0,
            "total": 24.5,
        },
    }
    # ms per frame read x frames read: the run's ms, the sources and the sinks each summed
    assert report_cpu_ms(rep) == {
        "read": 30.0,
        "infer": 100.0,
        "postprocess": 20.0,
        "overlay": 30.0,
        "write": 15.0,
        "library pools": 50.0,
        "total": 245.0,
    }


def test_the_account_is_cpu_per_frame_delivered_and_shares_of_the_machine():
    # 2 cameras, 100 frames delivered in all, 10 s on 2 cores; 4000 ms of CPU = 40 ms a frame
    trial = Trial(
        [Camera(60, 50, 10.0, 20.0), Camera(60, 50, 10.0, 20.0)],
        {"infer": 3000.0, "read": 500.0, "library pools": 500.0, "total": 4000.0},
        process_cpu_s=5.123,
    )
    a = account(trial, n=2, fps=15.0, seconds=10.0, cores=2)
    assert a["frames_out"] == 100
    assert list(a["ms_per_frame"]) == ["read", "infer", "library pools", "total"]  # frame order, total last
    assert a["ms_per_frame"] == {"read": 5.0, "infer": 30.0, "library pools": 5.0, "total": 40.0}
    assert a["share_used"] == 0.2  # 4 s of 2 cores x 10 s
    # every frame of 2 cameras at 15 fps at 40 ms a frame: 1.2 s of CPU a second, 60% of 2 cores
    assert a["share_needed"] == {"read": 0.075, "infer": 0.45, "library pools": 0.075, "total": 0.6}
    assert a["process_cpu_s"] == 5.12
    assert account(Trial([Camera(10, 0, None, None)], {"total": 5.0}), 1, 15.0, 1.0, 2)["ms_per_frame"] == {}


@pytest.mark.parametrize(
    ("densities", "median", "spread"),
    [
        ([2], 2, 0),
        ([2, 3, 2], 2, 1),
        ([1, 3, 2], 2, 2),
        ([1, 2], 1, 1),  # an even count: the lower middle one (a camera is carried or not)
        ([0, 0, 4], 0, 4),
    ],
)
def test_a_variant_s_density_is_the_median_of_its_searches(densities, median, spread):
    searches = [{"density": d, "service_ms": 10.0 + d, "trials": []} for d in densities]
    v = aggregate("x", searches)
    assert (v["density"], v["densities"], v["spread"]) == (median, densities, spread)
    assert v["searches"] is searches


def fake_trial(carries: int, cpu_ms: float):
    """A variant that keeps up with up to `carries` cameras, at `cpu_ms` a frame delivered."""

    def trial(n: int) -> Trial:
        ok = n <= carries
        cams = [Camera(150, 150 if ok else 120, 40.0, 60.0 if ok else 400.0) for _ in range(n)]
        out = sum(c.frames_out for c in cams)
        return Trial(cams, {"infer": 0.75 * cpu_ms * out, "read": 0.25 * cpu_ms * out, "total": cpu_ms * out}, 1.0)

    return trial


def test_the_search_grows_n_until_a_trial_fails_and_keeps_each_trial_s_account(tmp_path):
    d = Density(Config(), tmp_path, log=lambda m: None)
    s = d.search("v", fake_trial(2, 40.0), "640x360", 15.0, cores=2)
    assert s["density"] == 2 and s["service_ms"] == 40.0
    assert [(t["n"], t["keeps_up"]) for t in s["trials"]] == [(1, True), (2, True), (3, False)]
    assert s["trials"][2]["cpu"]["ms_per_frame"]["total"] == 40.0
    assert s["trials"][2]["cpu"]["share_needed"]["total"] == 0.9  # 40 ms x 45 frames/s / 2 cores

    def crash(n):
        raise RuntimeError("exit 1")

    s = d.search("v", crash, "640x360", 15.0, cores=2)
    assert s["density"] == 0 and s["trials"][0]["error"] == "RuntimeError: exit 1" and s["trials"][0]["cpu"] is None


class FakeDensity(Density):
    """The real search, repetitions and report around trials that run nothing."""

    carries = {"streamseg": [2, 3, 2], "separate": [2, 2, 2], "naive": [2, 1, 2], "bf16": [3, 3, 3]}

    def __init__(self, cfg, out):
        self.calls: list[str] = []
        super().__init__(cfg, out, log=self.calls.append)

    def _rep(self, name):  # which search of the variant this is (0, 1, ...)
        return sum(1 for c in self.calls if c.startswith("search") and c.endswith(name)) - 1

    def trial_streamseg(self, n, size, fps, backend, batch, precision=None):
        if precision == "bf16":
            return fake_trial(self.carries["bf16"][self._rep("bf16, batch 1)")], 20.0)(n)
        return fake_trial(self.carries["streamseg"][self._rep(f"{backend}, batch {batch})")] - (batch > 1), 30.0)(n)

    def trial_separate(self, n, size, fps, backend):
        return fake_trial(self.carries["separate"][self._rep("per camera (onnxruntime)")], 35.0)(n)

    def trial_naive(self, n, size, fps):
        return fake_trial(self.carries["naive"][self._rep("one process per camera")], 45.0)(n)


def test_repeated_searches_are_interleaved_and_reported_with_their_median_and_spread(tmp_path):
    cfg = Config()
    cfg.bench.density.profiles = ["640x360@15"]
    cfg.bench.density.backends = ["onnxruntime"]
    cfg.bench.density.batch_sizes = [1, 2]
    cfg.bench.density.reps = 3
    cfg.bench.density.max_streams = 5
    cfg.bench.density.bf16 = False  # whatever this CPU has
    d = FakeDensity(cfg, tmp_path)
    p = d.profile("640x360", 15.0, cores=2)
    searches = [c for c in d.calls if c.startswith("search")]
    # every variant's first search, then every variant's second, ...
    assert searches[:4] == [
        "search 1/3: streamseg (onnxruntime, batch 1)",
        "search 1/3: streamseg (onnxruntime, batch 2)",
        "search 1/3: streamseg, one process per camera (onnxruntime)",
        "search 1/3: naive loop, one process per camera",
    ]
    assert len(searches) == 12
    v = {x["variant"]: x for x in p["variants"]}
    assert v["streamseg (onnxruntime, batch 1)"]["densities"] == [2, 3, 2]
    assert v["streamseg (onnxruntime, batch 1)"]["density"] == 2
    assert v["streamseg (onnxruntime, batch 1)"]["spread"] == 1
    assert v["streamseg (onnxruntime, batch 2)"]["densities"] == [1, 2, 1]
    assert v["naive loop, one process per camera"]["densities"] == [2, 1, 2]
    assert p["best_one_process"] == "streamseg (onnxruntime, batch 1)"
    assert p["one_process_over_naive"] == 1.0 and p["one_process_over_separate"] == 1.0
    # where the share goes: at the best one-process variant's first failing N (3), from each
    # variant's first failing trial of its first median search, scaled to 3 cameras x 15 fps
    w = p["where_the_share_goes"]
    assert w["n"] == 3 and w["fps_needed"] == 45.0
    assert list(w["variants"]) == ["streamseg (onnxruntime, batch 1)", "naive loop, one process per camera"]
    one, naive = w["variants"].values()
    assert one["measured_at_n"] == 3 and one["share_at_n"]["total"] == 0.675  # 30 ms x 45 / 2000
    assert naive["measured_at_n"] == 3 and naive["share_at_n"] == {"read": 0.2531, "infer": 0.7594, "total": 1.0125}
    assert best_batch([p]) == (1, 1, 1)

    r = {
        "machine": {"cpu": "test CPU", "cores": 2},
        "density": {"bounds": {}, "seconds": 10.0, "reps": 3, "default_batch": 1, "profiles": [p]},
    }
    md = markdown(r)
    assert "| 640x360 @ 15 fps | streamseg (onnxruntime, batch 1) | 2 | 2, 3, 2 | 1 | 40.0 |" in md
    assert "batch 1 carried the most cameras in 1 of 1 profile x backend pairs" in md
    assert "The product's default: batch 1 (pipeline.batch.max_size)." in md
    assert "Where the machine goes at 640x360 @ 15 fps, 3 cameras (45 frames/s)" in md
    assert "| total | 30 | 68% | 45 | 101% |" in md
    assert "| machine |  | 100% |  | 100% |" in md
    plot(r, tmp_path / "density.png")
    assert (tmp_path / "density.png").stat().st_size > 1000


def test_a_bf16_cpu_adds_openvino_bf16_beside_the_fp32_ratios_not_in_them(tmp_path, monkeypatch):
    monkeypatch.setattr("streamseg.density.bf16_here", lambda: True)
    cfg = Config()
    cfg.bench.density.profiles = ["640x360@15"]
    cfg.bench.density.backends = ["onnxruntime"]
    cfg.bench.density.batch_sizes = [1]
    cfg.bench.density.reps = 1
    cfg.bench.density.max_streams = 5
    p = FakeDensity(cfg, tmp_path).profile("640x360", 15.0, cores=2)
    v = {x["variant"]: x["density"] for x in p["variants"]}
    assert v["streamseg (openvino bf16, batch 1)"] == 3 and v["streamseg (onnxruntime, batch 1)"] == 2
    assert p["best_one_process"] == "streamseg (onnxruntime, batch 1)"  # like with like: fp32
    assert p["one_process_over_naive"] == 1.0 and p["bf16_over_naive"] == 1.5
    md = markdown(
        {"machine": {"cpu": "c", "cores": 2}, "density": {"bounds": {}, "seconds": 1, "reps": 1, "profiles": [p]}}
    )
    assert "| 640x360 @ 15 fps | OpenVINO bf16 one process / naive (fp32) | 1.5 |" in md
    monkeypatch.setattr("streamseg.density.bf16_here", lambda: False)  # a CPU without bf16: no such variant
    assert not any("bf16" in name for name, _ in Density(cfg, tmp_path, log=print).variants("640x360", 15.0))


def test_the_runtime_estimate_counts_every_search(tmp_path):
    # the defaults: 2 profiles, 2 backends x 3 batch sizes + 2 variants, 3 searches, 10 s trials
    cfg = Config()
    cfg.bench.density.bf16 = False
    d = Density(cfg, tmp_path, log=lambda m: None)
    expected, most = d.estimate_s()
    assert expected == 3 * 8 * 3 * (10 + 3 + 10 + 3)
    assert most == 3 * 8 * 16 * (10 + 3 + 10 + 3)


@pytest.mark.slow
def test_tiny_density_bench_end_to_end(tmp_path, tiny):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        f"""
engines:
  semantic: {{card: {tiny / "red.yaml"}, backend: onnxruntime, threads: 1}}
  instance: {{card: {tiny / "yolo.yaml"}, backend: onnxruntime, threads: 1}}
bench:
  density: {{profiles: ["96x64@10"], max_streams: 2, seconds: 1.5, backends: [onnxruntime], batch_sizes: [1, 2], reps: 1, bf16: false}}
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
        (search,) = v["searches"]
        assert v["densities"] == [v["density"]] and v["spread"] == 0
        trials = search["trials"]
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
            # the CPU account: per stage, from the runs' reports or the naive loop's own clocks
            cpu = t["cpu"]
            assert cpu["frames_out"] == sum(c["out"] for c in t["cameras"])
            assert {"read", "infer", "overlay", "write", "library pools", "total"} <= set(cpu["ms_per_frame"])
            assert 0 < cpu["ms_per_frame"]["total"] and 0 < cpu["share_used"] and cpu["process_cpu_s"] > 0
    md = (out / "density.md").read_text()
    for v in p["variants"]:
        assert f"| 96x64 @ 10 fps | {v['variant']} | {v['density']} |" in md
