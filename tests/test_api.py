"""The library face (streamseg.api): consumers beside the sinks, their policies and ledger, and
leaving a run early. Tiny models (tests/conftest.py `tiny`), small synthetic or generated video."""

import asyncio
import json
import logging
import threading
import time

import numpy as np
import pytest

import streamseg
from streamseg.errors import UserError
from streamseg.frames import STAGES
from tests.conftest import make_video
from tests.helpers import ffmpeg


def cfg_dict(tiny, sources, sinks=(), **kw):
    return {
        "sources": list(sources),
        "sinks": list(sinks),
        "engines": {
            "semantic": {"card": str(tiny / "red.yaml"), "threads": 1, "backend": "onnxruntime"},
            "instance": {"card": str(tiny / "yolo.yaml"), "threads": 1, "backend": "onnxruntime"},
        },
        **kw,
    }


def balanced(rep):
    fr = rep["frames"]
    return fr["in"] == fr["out"] + sum(fr["dropped"].values())


def test_results_give_every_frame_in_order_with_numpy_results_at_frame_size(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=12, size_wh=(96, 64))
    assert streamseg.Pipeline is streamseg.pipeline.Pipeline  # one class: the CLI's engine is the API
    got = []
    with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)])) as run:
        for r in run.results():
            got.append(r)
    assert [r.seq for r in got] == list(range(12)) and {r.stream for r in got} == {"cam0"}
    r = got[5]
    assert r.image.shape == (64, 96, 3) and r.image.dtype == np.uint8 and not r.image.flags.writeable
    with pytest.raises(ValueError):
        r.image[0, 0] = 0  # a read-only view: the sinks may still be writing it
    assert r.semantic.group_map.shape == (64, 96) and not r.semantic.group_map.flags.writeable
    road = r.semantic.mask("road")
    assert road.dtype == bool and road.sum() == pytest.approx(16 * 16, rel=0.35)  # the red square
    inst = r.instances
    assert list(inst.label) == ["car", "person", "bus"] and len(inst) == 3
    assert inst.masks.shape == (3, 64, 96) and inst.masks.dtype == bool and not inst.masks.flags.writeable
    people = inst[inst.label == "person"]
    assert len(people) == 1 and people.masks.shape == (1, 64, 96)
    assert np.array_equal(people.masks[0], inst.masks[1]) and np.array_equal(people.xyxy[0], inst.xyxy[1])
    assert list(inst.group) == ["car", "person", "car"] and inst.track_id.shape == (3,)
    assert r.events == []  # no analytics configured
    assert list(r.latency_ms) == [s for s in STAGES if s != "sink"] + ["end_to_end"]
    assert r.latency_ms["end_to_end"] >= sum(v for k, v in r.latency_ms.items() if k != "end_to_end") - 0.01
    assert r.pts_s == pytest.approx(5 / 25) and r.capture_ns > 0
    rep = run.last_report
    assert rep["frames"] == {"in": 12, "out": 12, "dropped": {}, "decode_errors": 0}
    assert rep["consumers"]["results"]["frames"] == {"offered": 12, "delivered": 12, "dropped": {}}
    assert rep["consumers"]["results"]["policy"] == "block" and not rep["interrupted"]


def _slow(seen):
    def slow(r):
        seen.append((r.stream, r.seq))
        time.sleep(0.2)

    return slow


def test_a_slow_consumer_on_a_live_stream_keeps_e2e_bounded_and_every_drop_counted(tiny):
    """15 fps camera-like stream, a consumer taking 200 ms per result: it sees the newest results,
    the pipeline's end-to-end p99 stays where it is without it, and every result it missed is
    counted `consumer:slow`, in the report's ledger and in /metrics."""
    src = ["synthetic://driving?size=64x48&fps=15&frames=45&seed=3"]
    with streamseg.Pipeline.from_config(cfg_dict(tiny, src), mode="live") as plain:
        plain.wait()
    base = plain.last_report
    assert balanced(base)

    seen = []
    with streamseg.Pipeline.from_config(cfg_dict(tiny, src), mode="live") as run:
        run.on_result(_slow(seen), name="slow")
        run.wait()
    rep = run.last_report
    c = rep["consumers"]["slow"]
    assert c["policy"] == "latest" and c["kind"] == "callback"
    f = c["frames"]
    assert f["offered"] == f["delivered"] + sum(f["dropped"].values()) and f["delivered"] == len(seen)
    assert f["dropped"].get("consumer", 0) >= 1, (c, rep["frames"])  # it takes 5 results/s of up to 15 offered
    assert rep["frames"]["dropped"]["consumer:slow"] == f["dropped"]["consumer"]  # the consumer is its only outlet
    assert run.metric_samples()["dropped"]["consumer:slow"] == f["dropped"]["consumer"]  # /metrics
    assert balanced(rep) and rep["frames"]["in"] == 45
    assert seen == sorted(seen)  # in order, the newest each time
    assert rep["queues"]["consumer:slow"]["high_water"] <= 2 and rep["queues"]["overlay"]["high_water"] <= 1
    # waiting for this consumer would put its 200 ms into a frame's latency; bounds derived from
    # the run without it, with room for a shared machine's noise: end to end (p99 of 45 frames is
    # nearly their max), and the hand-off to the outlets alone (`sink`: the null sink's write, or
    # the result put in the consumer's queue), where 200 ms would stand out of any noise
    e2e, e2e_base = rep["latency_ms"]["end_to_end"]["p99"], base["latency_ms"]["end_to_end"]["p99"]
    assert e2e <= 3 * e2e_base + 2 * 1000 / 15, (e2e, e2e_base)
    out, out_base = rep["latency_ms"]["stages"]["sink"]["p99"], base["latency_ms"]["stages"]["sink"]["p99"]
    assert out <= 2 * out_base + 1000 / 15, (out, out_base)


def test_the_same_slow_consumer_on_a_recording_gets_every_frame_in_order(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=10)
    seen = []
    with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)], [str(tmp_path / "r.jsonl")])) as run:
        run.on_result(_slow(seen), name="slow")
        run.wait()
    rep = run.last_report
    assert seen == [("cam0", i) for i in range(10)]
    assert rep["frames"] == {"in": 10, "out": 10, "dropped": {}, "decode_errors": 0}
    assert rep["consumers"]["slow"]["policy"] == "block"
    assert rep["consumers"]["slow"]["frames"] == {"offered": 10, "delivered": 10, "dropped": {}}
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 10


def test_a_raising_callback_is_logged_once_counted_and_the_run_goes_on(tiny, tmp_path, caplog):
    v = make_video(tmp_path / "v.mp4", n=9)
    calls = []

    def flaky(r):
        calls.append(r.seq)
        if r.seq % 3 == 0:
            raise RuntimeError(f"bad frame {r.seq}")

    with caplog.at_level(logging.ERROR, logger="streamseg"):
        with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)])) as run:
            run.on_result(flaky)
            run.wait()
    assert calls == list(range(9))
    rep = run.last_report
    assert rep["consumers"]["flaky"]["callback_errors"] == 3
    assert rep["frames"]["out"] == 9 and not rep["interrupted"]
    logged = [r for r in caplog.records if "flaky" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and "bad frame 0" in str(logged[0].exc_info[1])


def test_on_error_stop_ends_the_run_cleanly_and_wait_raises_the_callbacks_error(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=200, fps=200)

    def strict(r):
        if r.seq == 2:
            raise RuntimeError("stop here")

    with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)])) as run:
        run.on_result(strict, on_error="stop")
        with pytest.raises(RuntimeError, match="stop here"):
            run.wait()
    rep = run.last_report
    assert rep["interrupted"] and balanced(rep) and rep["frames"]["in"] < 200
    assert rep["consumers"]["strict"]["frames"]["delivered"] == 3


def test_break_out_of_results_stops_the_run_and_finalizes_everything(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=300, fps=300)
    out, jl, report = tmp_path / "o.mp4", tmp_path / "r.jsonl", tmp_path / "rep.json"
    with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)], [str(out), str(jl)]), report=str(report)) as run:
        for r in run.results():
            if r.seq == 4:
                break
        # the loop is left: the run is over, as after SIGINT (nothing waits for the `with` to end)
        assert run.last_report is not None
    rep = json.loads(report.read_text())
    assert rep["interrupted"] and balanced(rep) and rep["frames"]["in"] < 300
    lines = jl.read_text().splitlines()
    assert len(lines) == rep["sinks"][str(jl)]["frames"]["written"] >= 5
    # what was read after the break still reached the files; the loop that left counts it dropped
    assert set(rep["frames"]["dropped"]) <= {"consumer_closed:results"}
    assert rep["consumers"]["results"]["frames"]["delivered"] == 5
    if ffmpeg.available():
        judged = ffmpeg.decode_file(out)
        assert judged.frames == rep["sinks"][str(out)]["frames"]["written"] and not judged.errors, judged.summary()


def test_an_exception_in_the_loop_stops_the_run_cleanly_and_goes_on_up(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=300, fps=300)
    with pytest.raises(ValueError, match="user bug"):
        with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)], [str(tmp_path / "r.jsonl")])) as run:
            for r in run.results():
                if r.seq == 3:
                    raise ValueError("user bug")
    rep = run.last_report
    assert rep["interrupted"] and balanced(rep) and rep["frames"]["in"] < 300
    assert (
        len((tmp_path / "r.jsonl").read_text().splitlines())
        == rep["sinks"][str(tmp_path / "r.jsonl")]["frames"]["written"]
    )


def test_aresults_works_under_asyncio_run(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=8)

    async def main():
        seqs, ticks = [], 0
        with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)])) as run:
            async for r in run.aresults():
                seqs.append(r.seq)
                await asyncio.sleep(0)
                ticks += 1
        return seqs, run.last_report

    seqs, rep = asyncio.run(main())
    assert seqs == list(range(8)) and rep["frames"]["out"] == 8

    async def leave_early():
        long = make_video(tmp_path / "long.mp4", n=300, fps=300)
        with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(long)])) as run:
            async for r in run.aresults():
                if r.seq == 2:
                    break
        return run.last_report  # leaving the block stopped the run and waited for it

    rep = asyncio.run(leave_early())
    assert rep["interrupted"] and balanced(rep) and rep["consumers"]["aresults"]["frames"]["delivered"] == 3


def test_user_mistakes_are_user_errors_before_any_frame(tiny, tmp_path):
    with pytest.raises(UserError, match="unknown option.*max_frame"):
        streamseg.Pipeline.from_config(cfg_dict(tiny, ["x.mp4"]), max_frame=3)
    with pytest.raises(UserError, match="policy"):
        streamseg.Pipeline.from_config(cfg_dict(tiny, ["x.mp4"])).results(policy="newest")
    run = streamseg.Pipeline.from_config(cfg_dict(tiny, [str(tmp_path / "missing.mp4")]))
    with pytest.raises(UserError, match="missing.mp4"):  # raised by results(), on the caller's thread
        run.results()
    with pytest.raises(RuntimeError, match="before the run starts"):
        run.on_result(print)


def test_user_code_never_runs_on_a_pipeline_thread(tiny, tmp_path):
    v = make_video(tmp_path / "v.mp4", n=5)
    names = set()
    with streamseg.Pipeline.from_config(cfg_dict(tiny, [str(v)])) as run:
        run.on_result(lambda r: names.add(threading.current_thread().name), name="where")
        run.wait()
    assert names == {"consumer-where"}
