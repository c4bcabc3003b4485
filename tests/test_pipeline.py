import json
import time

import cv2
import pytest

from streamseg.backends.onnxruntime import OnnxRuntimeEngine
from streamseg.config import validate_config
from streamseg.frames import STAGES
from streamseg.pipeline import Pipeline
from streamseg.sinks.jsonl import JsonlSink
from streamseg.sinks.null import NullSink
from tests.conftest import make_video

SUMMARY_KEYS = {"p50", "p90", "p99", "max", "mean", "count"}


def config(tiny, sources, sinks, **kw):
    data = {
        "sources": sources,
        "sinks": sinks,
        "engines": {
            "semantic": {"card": str(tiny / "red.yaml"), "threads": 1, "backend": "onnxruntime"},
            "instance": {"card": str(tiny / "yolo.yaml"), "threads": 1, "backend": "onnxruntime"},
        },
        "metrics": {"progress": False},
    }
    for k, v in kw.items():
        data[k] = v
    return validate_config(data)


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_offline_two_streams_nothing_lost_order_kept(tiny, tmp_path):
    a = make_video(tmp_path / "a.mp4", n=23)
    b = make_video(tmp_path / "b.mp4", n=9, size_wh=(80, 60))
    cfg = config(
        tiny,
        [{"uri": str(a), "id": "front"}, {"uri": str(b), "id": "rear"}],
        [str(tmp_path / "o.mp4"), str(tmp_path / "r.jsonl"), "null://"],
        pipeline={"batch": {"max_size": 4, "max_wait_ms": 20}, "queue_depth": 2},
    )
    rep = Pipeline(cfg).run().report
    assert rep["frames"] == {"in": 32, "out": 32, "dropped": {}, "decode_errors": 0}
    assert rep["streams"]["front"]["frames_out"] == 23 and rep["streams"]["rear"]["frames_out"] == 9
    assert rep["mode"] == "offline"
    # every stage measured for every frame, and the stages tile end-to-end
    stages = rep["latency_ms"]["stages"]
    assert set(stages) == set(STAGES)
    assert all(s["count"] == 32 for s in stages.values())
    assert sum(s["mean"] for s in stages.values()) == pytest.approx(rep["latency_ms"]["end_to_end"]["mean"], rel=1e-3)
    assert set(rep["latency_ms"]["end_to_end"]) == SUMMARY_KEYS
    # a dynamic-batch model got real batches
    assert rep["engines"]["semantic"]["batch_mean"] > 1
    assert rep["engines"]["semantic"]["backend"] == "onnxruntime"
    # results: order per stream, the red square found in every frame
    lines = jsonl(tmp_path / "r.jsonl")
    for sid, n in (("front", 23), ("rear", 9)):
        seqs = [r["seq"] for r in lines if r["stream"] == sid]
        assert seqs == list(range(n))
    for r in lines:
        w, h = r["size_wh"]
        assert r["groups"]["road"] == pytest.approx(16 * 16 / (w * h), rel=0.35)
        assert [i["label"] for i in r["instances"]] == ["car", "person", "bus"]
    for sid, n, wh in (("front", 23, (96, 64)), ("rear", 9, (80, 60))):
        cap = cv2.VideoCapture(str(tmp_path / f"o.{sid}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == wh


def test_max_frames_per_source(tiny, tmp_path, video):
    cfg = config(tiny, [str(video), str(video)], ["null://"], max_frames=7)
    rep = Pipeline(cfg).run().report
    assert rep["frames"]["in"] == 14 and rep["frames"]["out"] == 14
    assert {s["frames_out"] for s in rep["streams"].values()} == {7}


def test_realtime_overload_drops_oldest_and_counts_every_drop(tiny, tmp_path, monkeypatch):
    slow = 0.08  # engine slower than the 100 fps source
    orig = OnnxRuntimeEngine.infer_impl

    def slow_infer(self, feeds):
        time.sleep(slow)
        return orig(self, feeds)

    monkeypatch.setattr(OnnxRuntimeEngine, "infer_impl", slow_infer)
    v = make_video(tmp_path / "fast.mp4", n=100, fps=100)
    cfg = config(
        tiny,
        [{"uri": str(v), "mode": "realtime"}],
        [str(tmp_path / "r.jsonl")],
        pipeline={"batch": {"max_size": 1, "max_wait_ms": 0}, "live_queue_depth": 2},
    )
    cfg.engines.instance = None
    rep = Pipeline(cfg).run().report
    fr = rep["frames"]
    assert fr["in"] == 100
    assert fr["dropped"].get("queue_full", 0) > 30
    assert fr["in"] == fr["out"] + sum(fr["dropped"].values())
    seqs = [r["seq"] for r in jsonl(tmp_path / "r.jsonl")]
    assert seqs == sorted(seqs) and len(seqs) == fr["out"]
    # bounded: no frame waited for more than the queue ahead of it (2 frames + 1 in the engine)
    assert rep["latency_ms"]["end_to_end"]["max"] < 1000 * slow * 6


def test_engine_error_on_one_batch_drops_those_frames_only(tiny, tmp_path, video, monkeypatch):
    orig = OnnxRuntimeEngine.infer_impl
    calls = {"n": 0}

    def flaky(self, feeds):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return orig(self, feeds)

    monkeypatch.setattr(OnnxRuntimeEngine, "infer_impl", flaky)
    cfg = config(tiny, [str(video)], [str(tmp_path / "r.jsonl")], pipeline={"batch": {"max_size": 1, "max_wait_ms": 0}})
    cfg.engines.instance = None
    result = Pipeline(cfg).run()
    fr = result.report["frames"]
    assert fr["dropped"] == {"engine_error": 1}
    assert fr["out"] == 29 and fr["in"] == 30
    assert any("boom" in e for e in result.errors)


def test_device_engines_keep_one_batch_in_flight(tiny, tmp_path, video, monkeypatch):
    """With engines on a device stream (overlaps), batch n+1 is submitted before batch n is
    collected; every frame still comes out once, in order, with its own results."""
    events = []

    def submit_impl(self, feeds):
        n = next(iter(feeds.values())).shape[0]
        events.append(("submit", self.model_path.name, n))
        return n, self.infer_impl(feeds)

    def collect_impl(self, ticket):
        events.append(("collect", self.model_path.name, ticket[0]))
        return ticket[1]

    monkeypatch.setattr(OnnxRuntimeEngine, "overlaps", True)
    monkeypatch.setattr(OnnxRuntimeEngine, "submit_impl", submit_impl, raising=False)
    monkeypatch.setattr(OnnxRuntimeEngine, "collect_impl", collect_impl, raising=False)
    # the engine calls counted are the run's own: no warm-up pass before them
    pipeline = {"batch": {"max_size": 4, "max_wait_ms": 0}, "warmup": False}
    cfg = config(tiny, [str(video)], [str(tmp_path / "r.jsonl")], pipeline=pipeline)
    rep = Pipeline(cfg).run().report
    assert rep["frames"] == {"in": 30, "out": 30, "dropped": {}, "decode_errors": 0}
    lines = jsonl(tmp_path / "r.jsonl")
    assert [r["seq"] for r in lines] == list(range(30))
    assert all([i["label"] for i in r["instances"]] == ["car", "person", "bus"] for r in lines)
    red = [e for e in events if e[1] == "red.onnx"]
    assert sum(e[2] for e in red if e[0] == "submit") == 30
    # somewhere a second batch went in before the first came out
    assert any(a[0] == b[0] == "submit" for a, b in zip(red, red[1:], strict=False))
    in_flight = 0
    for kind, _, _ in red:
        in_flight += 1 if kind == "submit" else -1
        assert 0 <= in_flight <= 2


def test_failing_sink_does_not_stop_the_others(tiny, tmp_path, video, monkeypatch, reliability):
    orig = JsonlSink.write_impl

    def failing(self, frame):
        if frame.seq >= 5:
            raise OSError(28, "No space left on device")
        orig(self, frame)

    monkeypatch.setattr(JsonlSink, "write_impl", failing)
    cfg = config(tiny, [str(video)], [str(tmp_path / "r.jsonl"), str(tmp_path / "o.mp4")])
    rep = Pipeline(cfg).run().report
    # out = written by every sink; the 25 the failed sink could not take are counted drops
    jl = str(tmp_path / "r.jsonl")
    assert rep["frames"]["out"] == 5 and rep["frames"]["dropped"] == {f"sink_failed:{jl}": 25}
    sink = rep["sinks"][jl]
    assert "No space left" in sink["error"] and sink["written"] == 5
    assert sink["frames"] == {"offered": 30, "written": 5, "dropped": {"sink_failed": 25}}
    assert rep["sinks"][str(tmp_path / "o.mp4")]["frames"] == {"offered": 30, "written": 30, "dropped": {}}
    assert len(jsonl(tmp_path / "r.jsonl")) == 5  # what was written before the failure is readable
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    reliability(
        "a sink fails mid-run (disk full)",
        "reported in the report with its error; its file readable up to the failure; the other sinks get every frame",
        "0 (frames reach the other sinks)",
    )


def test_stop_drains_what_was_read(tiny, tmp_path):
    v = make_video(tmp_path / "long.mp4", n=200)
    cfg = config(tiny, [{"uri": str(v), "mode": "realtime"}], [str(tmp_path / "o.mp4")])
    pipe = Pipeline(cfg)
    import threading

    threading.Timer(1.0, pipe.stop).start()
    rep = pipe.run().report
    assert rep["interrupted"] is True
    assert 5 < rep["frames"]["in"] < 200
    assert rep["frames"]["out"] + sum(rep["frames"]["dropped"].values()) == rep["frames"]["in"]
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == rep["frames"]["out"]


def test_images_source_with_mixed_sizes(tiny, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    import numpy as np

    for i, (w, h) in enumerate([(64, 48), (33, 71), (128, 20)]):
        img = np.full((h, w, 3), 80, np.uint8)
        img[: h // 2, : w // 2] = (0, 0, 255)
        cv2.imwrite(str(d / f"{i}.png"), img)
    cfg = config(tiny, [f"images://{d}"], [str(tmp_path / "r.jsonl"), str(tmp_path / "o.mp4")])
    rep = Pipeline(cfg).run().report
    assert rep["frames"]["out"] == 3
    lines = jsonl(tmp_path / "r.jsonl")
    assert [r["size_wh"] for r in lines] == [[64, 48], [33, 71], [128, 20]]
    for r in lines:
        assert r["groups"]["road"] == pytest.approx(0.25, abs=0.08)


class _SlowJsonl(JsonlSink):
    """A results file on a slow disk: each line takes `delay` seconds."""

    def __init__(self, path, delay):
        super().__init__(str(path), str(path))
        self.delay = delay

    def write_impl(self, frame):
        time.sleep(self.delay)
        super().write_impl(frame)


class _Seen(NullSink):
    """null:// that remembers which frames it got."""

    def __init__(self):
        super().__init__("null://seen")
        self.seqs = []

    def write_impl(self, frame):
        self.seqs.append(frame.seq)


def test_live_ledger_per_sink_matches_what_each_sink_wrote(tiny, tmp_path):
    """A slow sink beside a fast one in a live run: each sink's ledger is what it really wrote,
    and a frame the slow sink dropped is not `out` at the top level (it is a counted drop)."""
    v = make_video(tmp_path / "fast.mp4", n=60, fps=200)
    cfg = config(tiny, [{"uri": str(v), "mode": "realtime"}], [], pipeline={"batch": {"max_size": 1}})
    cfg.engines.instance = None
    slow, fast = _SlowJsonl(tmp_path / "slow.jsonl", 0.03), _Seen()
    rep = Pipeline(cfg, extra_sinks=[slow, fast]).run().report
    fr = rep["frames"]
    slow_uri = str(tmp_path / "slow.jsonl")
    written = {slow_uri: [r["seq"] for r in jsonl(tmp_path / "slow.jsonl")], "null://seen": fast.seqs}
    assert len(written[str(tmp_path / "slow.jsonl")]) < 40  # the slow sink really dropped frames
    for uri, seqs in written.items():
        led = rep["sinks"][uri]["frames"]
        assert led["written"] == len(seqs) == rep["sinks"][uri]["written"]
        assert led["offered"] == led["written"] + sum(led["dropped"].values())
        assert set(led["dropped"]) <= {"sink_queue"}
        assert rep["sinks"][uri]["dropped"] == sum(led["dropped"].values())
        assert led["offered"] == fr["in"] - sum(n for r, n in fr["dropped"].items() if not r.startswith("sink_"))
    # top level: out = frames every sink wrote; the rest are drops, each counted once
    both = set(written[str(tmp_path / "slow.jsonl")]) & set(fast.seqs)
    assert fr["out"] == len(both) == rep["latency_ms"]["end_to_end"]["count"]
    assert fr["in"] == 60 and fr["in"] == fr["out"] + sum(fr["dropped"].values())
    # every frame the slow sink did not write is a drop (its own, or an earlier one)
    # (the slow sink comes first: a frame it did not write is dropped under its name)
    assert fr["dropped"][f"sink_queue:{slow_uri}"] == rep["sinks"][slow_uri]["frames"]["offered"] - len(
        written[slow_uri]
    )


def test_report_has_processing_latency_beside_end_to_end(tiny, video):
    """Offline runs queue frames ahead of the engines on purpose: `processing` (from leaving the
    stream queue to written) is reported beside end-to-end, and the stages account for the gap."""
    cfg = config(tiny, [str(video)], ["null://"], pipeline={"queue_depth": 8})
    rep = Pipeline(cfg).run().report
    lat = rep["latency_ms"]
    assert lat["processing"]["count"] == rep["frames"]["out"] == 30
    st = lat["stages"]
    gap = lat["end_to_end"]["mean"] - lat["processing"]["mean"]
    assert gap == pytest.approx(st["decode"]["mean"] + st["queue"]["mean"], rel=1e-2, abs=0.01)
    assert lat["processing"]["max"] <= lat["end_to_end"]["max"]


@pytest.mark.parametrize("mode, most_ahead", [("offline", 2), ("realtime", 1)])
def test_engines_side_by_side_keep_one_batch_in_flight_each_on_its_own_worker(
    tiny, tmp_path, video, monkeypatch, mode, most_ahead
):
    """Concurrent schedule: each engine runs on a worker of its own, batch after batch. Offline,
    the faster one starts batch n+1 while the slower is still on n (one batch in flight), so
    neither idles waiting for the other; live, a batch is collected before the next goes in
    (no frame waits behind another). Every frame still comes out once, in order."""
    import threading

    events = []
    orig = OnnxRuntimeEngine.infer_impl

    def logged(self, feeds):
        name = self.model_path.name
        events.append(("start", name, threading.current_thread().name))
        if name == "yolo.onnx":
            time.sleep(0.02)  # the slower engine
        out = orig(self, feeds)
        events.append(("end", name, threading.current_thread().name))
        return out

    monkeypatch.setattr(OnnxRuntimeEngine, "infer_impl", logged)
    pipeline = {"batch": {"max_size": 1, "max_wait_ms": 0}, "engine_schedule": "concurrent", "warmup": False}
    cfg = config(tiny, [{"uri": str(video), "mode": mode}], [str(tmp_path / "r.jsonl")], pipeline=pipeline)
    rep = Pipeline(cfg).run().report
    assert rep["cpu"]["schedule"] == "concurrent"
    fr = rep["frames"]
    assert fr["in"] == 30 and fr["out"] == 30 - sum(fr["dropped"].values()) and fr["decode_errors"] == 0
    assert fr["out"] == 30 or mode == "realtime"
    lines = jsonl(tmp_path / "r.jsonl")
    assert [r["seq"] for r in lines] == sorted(r["seq"] for r in lines) and len(lines) == fr["out"]
    assert all([i["label"] for i in r["instances"]] == ["car", "person", "bus"] for r in lines)
    assert {t for _, n, t in events if n == "red.onnx"} == {"engine-1"}
    assert {t for _, n, t in events if n == "yolo.onnx"} == {"engine-2"}
    ahead = started = ended = 0
    for kind, name, _ in events:
        started += kind == "start" and name == "red.onnx"
        ended += kind == "end" and name == "yolo.onnx"
        ahead = max(ahead, started - ended)
    # offline: the semantic engine began batch n+1 before the instance engine finished n, never more
    assert ahead == most_ahead


def _warm_events(monkeypatch):
    """Record each prepare / decode / draw with its thread, and when the first frame came in."""
    import threading

    from streamseg.latency import LatencyRecorder
    from streamseg.models import SegModel
    from streamseg.overlay import Overlay

    events = []
    prepare, decode, draw, frame_in = SegModel.prepare, SegModel.decode, Overlay.draw, LatencyRecorder.frame_in

    def rec(kind, fn, what=lambda *a: None):
        def wrapped(self, *a):
            events.append((kind, threading.current_thread().name, what(*a)))
            return fn(self, *a)

        return wrapped

    monkeypatch.setattr(SegModel, "prepare", rec("prepare", prepare, lambda images: len(images)))
    monkeypatch.setattr(SegModel, "decode", rec("decode", decode, lambda outputs, transforms: len(transforms)))
    monkeypatch.setattr(Overlay, "draw", rec("draw", draw, lambda f: f.stream_id))
    monkeypatch.setattr(LatencyRecorder, "frame_in", rec("in", frame_in, lambda f: f.stream_id))
    return events


def test_warm_up_pass_runs_each_stage_on_its_own_thread_before_the_first_frame(tiny, tmp_path, video, monkeypatch):
    events = _warm_events(monkeypatch)
    pipeline = {"batch": {"max_size": 2, "max_wait_ms": 0}}
    cfg = config(tiny, [str(video)], [str(tmp_path / "r.jsonl"), str(tmp_path / "o.mp4")], pipeline=pipeline)
    pipe = Pipeline(cfg)
    rep = pipe.run().report
    first_in = next(i for i, e in enumerate(events) if e[0] == "in")
    before = events[:first_in]
    # a batch of 1 and one of the batcher's largest, each stage on the thread that will serve it
    # (the start-up timing of the schedules also prepares frames, on the main thread)
    assert [n for k, t, n in before if k == "prepare" and t == "inference"] == [1, 1, 2, 2]  # both engines, per batch
    assert [n for k, t, n in before if k == "decode"] == [1, 1, 2, 2] and {
        t for k, t, _ in before if k == "decode"
    } == {"postprocess"}
    assert [(t, s) for k, t, s in before if k == "draw"] == [("overlay", "warmup")] * 3
    assert all(e[2] != "warmup" for e in events[first_in:])  # nothing of it after the sources started
    assert rep["warmup"]["frames"] == 3 and rep["warmup"]["error"] is None and rep["warmup"]["ms"] > 0
    # in no ledger, no sink, no tracker: the run's frames alone
    assert rep["frames"] == {"in": 30, "out": 30, "dropped": {}, "decode_errors": 0}
    assert [r["seq"] for r in jsonl(tmp_path / "r.jsonl")] == list(range(30))
    assert set(pipe.post_stage.trackers) == set(pipe.post_stage.smoothers) == {"cam0"}
    assert [m.frames for m in pipe.models.values()] == [30, 30]  # the pass's engine calls are not the run's


def test_a_failing_warm_up_is_reported_and_the_run_goes_on(tiny, tmp_path, video, monkeypatch):
    from streamseg.models import SegModel

    decode, calls = SegModel.decode, {"n": 0}

    def first_fails(self, outputs, transforms):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom in the warm-up")
        return decode(self, outputs, transforms)

    monkeypatch.setattr(SegModel, "decode", first_fails)
    result = Pipeline(config(tiny, [str(video)], [str(tmp_path / "r.jsonl")])).run()
    rep = result.report
    assert "boom in the warm-up" in rep["warmup"]["error"]
    assert rep["frames"] == {"in": 30, "out": 30, "dropped": {}, "decode_errors": 0}


def test_warm_up_off_runs_nothing_before_the_first_frame(tiny, tmp_path, video, monkeypatch):
    events = _warm_events(monkeypatch)
    pipeline = {"warmup": False, "engine_schedule": "sequential"}
    cfg = config(tiny, [str(video)], [str(tmp_path / "o.mp4")], pipeline=pipeline)
    rep = Pipeline(cfg).run().report
    first_in = next(i for i, e in enumerate(events) if e[0] == "in")
    assert [e for e in events[:first_in] if e[0] != "prepare"] == []  # no decode or draw before the sources
    assert rep["warmup"] is None and rep["frames"]["out"] == 30


def test_sinks_alike_once_redacted_keep_an_entry_each(tiny, tmp_path, video):
    cfg = config(tiny, [str(video)], ["null://", "null://", str(tmp_path / "r.jsonl"), "null://"])
    rep = Pipeline(cfg).run().report
    assert list(rep["sinks"]) == ["null://", "null:// #2", str(tmp_path / "r.jsonl"), "null:// #3"]
    assert all(s["frames"] == {"offered": 30, "written": 30, "dropped": {}} for s in rep["sinks"].values())
    assert {"sink:null://", "sink:null:// #2", "sink:null:// #3"} <= set(rep["queues"])


def test_a_sink_takes_only_its_streams_and_only_their_frames_are_drawn(tiny, tmp_path, monkeypatch):
    """An overlaid video of one camera beside a JSONL of all: the video sink opens and writes the
    front stream only (one file, no per-stream suffix), the rear stream is never drawn, every
    frame of both is out, and each sink's ledger counts what it was offered."""
    a = make_video(tmp_path / "a.mp4", n=12)
    b = make_video(tmp_path / "b.mp4", n=7, size_wh=(80, 60))
    cfg = config(
        tiny,
        [{"uri": str(a), "id": "front"}, {"uri": str(b), "id": "rear"}],
        [{"uri": str(tmp_path / "front.mkv"), "streams": ["front"]}, str(tmp_path / "all.jsonl")],
    )
    from streamseg.overlay import Overlay

    drawn, orig = [], Overlay.draw

    def draw(self, f):
        drawn.append(f.stream_id)
        return orig(self, f)

    monkeypatch.setattr(Overlay, "draw", draw)
    rep = Pipeline(cfg).run().report
    assert rep["frames"] == {"in": 19, "out": 19, "dropped": {}, "decode_errors": 0}
    assert rep["config"]["overlay_drawn"] == ["front"]
    assert set(drawn) <= {"front", "warmup"} and drawn.count("front") == 12
    video, js = rep["sinks"][str(tmp_path / "front.mkv")], rep["sinks"][str(tmp_path / "all.jsonl")]
    assert video["streams"] == ["front"] and js["streams"] is None
    assert video["frames"] == {"offered": 12, "written": 12, "dropped": {}}
    assert js["frames"] == {"offered": 19, "written": 19, "dropped": {}}
    assert (tmp_path / "front.mkv").stat().st_size > 0 and not list(tmp_path.glob("front.*.mkv"))
    assert sorted({r["stream"] for r in jsonl(tmp_path / "all.jsonl")}) == ["front", "rear"]


def test_a_sink_naming_a_stream_that_does_not_exist_is_one_line_and_exit_2(tiny, tmp_path):
    from tests.conftest import run_streamseg

    cfgf = tmp_path / "c.yaml"
    cfgf.write_text(
        f"sources: [{{uri: 'synthetic://driving?size=64x48&frames=3', id: front}}]\n"
        f"engines: {{semantic: {{card: {tiny / 'red.yaml'}, backend: onnxruntime}}}}\n"
        f"sinks: [{{uri: {tmp_path / 'o.jsonl'}, streams: [rear]}}]\n"
    )
    r = run_streamseg("run", "-c", cfgf)
    assert r.returncode == 2 and "streams: no stream 'rear' (streams: front)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.jsonl").exists()
def test_a_frame_a_sink_could_not_send_is_that_sinks_drop_and_the_run_goes_on(tiny, tmp_path, video, monkeypatch):
    from streamseg.sinks.base import FrameDropped

    orig = JsonlSink.write_impl

    def flaky(self, frame):
        if frame.seq % 10 == 3:
            raise FrameDropped("send_failed", "Error sending UDP packets: Network is unreachable")
        orig(self, frame)

    monkeypatch.setattr(JsonlSink, "write_impl", flaky)
    cfg = config(tiny, [str(video)], [str(tmp_path / "r.jsonl"), str(tmp_path / "o.mp4")])
    rep = Pipeline(cfg).run().report
    jl = str(tmp_path / "r.jsonl")
    assert rep["sinks"][jl]["frames"] == {"offered": 30, "written": 27, "dropped": {"send_failed": 3}}
    assert rep["sinks"][jl]["error"] is None and rep["errors"] == []
    assert rep["frames"]["dropped"] == {f"send_failed:{jl}": 3} and rep["frames"]["out"] == 27
    assert len(jsonl(tmp_path / "r.jsonl")) == 27
