"""Live means bounded: in live and realtime runs no work is spent on a frame that will be
dropped, hand-offs hold one item, the batcher does not wait when the engines are idle, and
lossy sink queues hold a frame or two. Asserted on counts and queue depths, not timings."""

import time

from streamseg.backends.onnxruntime import OnnxRuntimeEngine
from streamseg.models import SegModel
from streamseg.pipeline import LOSSY_SINK_DEPTH, Pipeline
from streamseg.sinks.null import NullSink
from streamseg.sources.synthetic import SyntheticSource
from tests.test_pipeline import config


class _Preview(NullSink):
    lossless = False


def test_overloaded_realtime_run_renders_only_frames_it_processes(tiny, tmp_path, monkeypatch):
    counts = {"rendered": 0, "prepared": 0}
    read, prepare, infer = SyntheticSource.read, SegModel.prepare, OnnxRuntimeEngine.infer_impl

    def counting_read(self):
        f = read(self)
        counts["rendered"] += f is not None
        return f

    def counting_prepare(self, images):
        counts["prepared"] += len(images)
        return prepare(self, images)

    def slow_infer(self, feeds):
        time.sleep(0.03)  # the engines take 3 frame periods of the 100 fps source
        return infer(self, feeds)

    monkeypatch.setattr(SyntheticSource, "read", counting_read)
    monkeypatch.setattr(SegModel, "prepare", counting_prepare)
    monkeypatch.setattr(OnnxRuntimeEngine, "infer_impl", slow_infer)
    cfg = config(
        tiny,
        [{"uri": "synthetic://driving?size=64x48&fps=100&frames=60&seed=1", "mode": "realtime"}],
        [str(tmp_path / "r.jsonl")],
        pipeline={"batch": {"max_size": 2, "max_wait_ms": 5}},
    )
    cfg.engines.instance = None
    rep = Pipeline(cfg, extra_sinks=[_Preview("null://preview")]).run().report
    fr = rep["frames"]
    assert fr["in"] == 60 and fr["in"] == fr["out"] + sum(fr["dropped"].values())
    assert fr["dropped"].get("queue_full", 0) >= 20  # overloaded: frames were passed over...
    # ...before they were rendered or preprocessed (the warm-up pass's frames apart: 1 + a batch of 2)
    assert rep["warmup"]["frames"] == 3 and rep["warmup"]["error"] is None
    assert counts["rendered"] == counts["prepared"] - 3 == fr["out"]
    q = rep["queues"]
    assert q["stream:cam0"]["high_water"] <= 1
    assert q["postprocess"]["high_water"] <= 1 and q["overlay"]["high_water"] <= 1
    assert q["sink:null://preview"]["depth"] == LOSSY_SINK_DEPTH and q["sink:null://preview"]["high_water"] <= 2
    sinks = {f"sink:{tmp_path / 'r.jsonl'}", "sink:null://preview"}
    assert set(rep["parts"]) == {"source:cam0", "infer", "postprocess", "overlay"} | sinks
    assert rep["parts"]["infer"] == {"threads": 1, "pool_threads": 1}  # the semantic engine's one intra-op thread


def test_live_batcher_does_not_wait_for_batch_mates_when_the_engines_are_idle(tiny, tmp_path):
    """max_wait 2 s and batches of 4 asked for, a 10 fps camera-like source, fast engines: each
    frame goes alone as soon as it is there (offline, the same settings fill batches)."""
    cfg = config(
        tiny,
        [{"uri": "synthetic://driving?size=64x48&fps=10&frames=15&seed=2", "mode": "realtime"}],
        ["null://"],
        pipeline={"batch": {"max_size": 4, "max_wait_ms": 2000}},
    )
    rep = Pipeline(cfg).run().report
    fr = rep["frames"]
    # live: a frame late on a loaded machine is dropped, not queued; most come through
    assert fr["in"] == 15 == fr["out"] + sum(fr["dropped"].values()) and fr["out"] >= 12, fr
    assert rep["engines"]["semantic"]["batch_mean"] < 1.5


def test_offline_still_fills_batches_and_drops_nothing(tiny, tmp_path):
    cfg = config(
        tiny,
        [{"uri": "synthetic://driving?size=64x48&fps=50&frames=24&seed=2", "mode": "offline"}],
        [str(tmp_path / "r.jsonl"), "null://"],
        pipeline={"batch": {"max_size": 4, "max_wait_ms": 2000}},
    )
    rep = Pipeline(cfg).run().report
    assert rep["frames"] == {"in": 24, "out": 24, "dropped": {}, "decode_errors": 0}
    assert rep["engines"]["semantic"]["batch_mean"] > 2
