"""What a run says about itself: the final report, the live figures (/stats, the HUD's
source) and the Prometheus samples, built from a pipeline's recorder and stages.

The report's schema is ARCHITECTURE.md's "Latency report" (latency.LatencyRecorder.report)
plus: mode, interrupted, sources, sinks (each with its ledger `frames {offered, written,
dropped}`), config, queues (depth, policy, most held), parts (thread needs), cpu,
cpu_ms_per_frame, warmup, errors, flicker, tracks, and with Python consumers (streamseg.api)
`consumers` (each with its ledger `frames {offered, delivered, dropped}`).

`pipe` is a streamseg.pipeline.Pipeline, handed in: this module does not import it (the
pipeline imports this one; tests/test_imports.py keeps the package free of import circles).
"""

from __future__ import annotations

import numpy as np

from streamseg.cpu import malloc_state
from streamseg.uris import redact


def cpu_per_frame(pipe) -> dict[str, float]:
    """CPU ms per frame read, per stage thread (its own thread CPU time), and what the libraries'
    own pools used beside them (engines' intra-op threads, the codecs): the process's CPU time
    less the stage threads'. Next to the stages' latency, it says where the cores went."""
    import time

    n = max(1, pipe.recorder.frames_in)
    names = {"inference": "preprocess+infer (calling thread)"}
    out = {}
    for thread, s in sorted(pipe.thread_cpu_s.items()):
        out[names.get(thread, thread)] = round(s * 1000 / n, 3)
    total = (time.process_time() - pipe._cpu0) * 1000 / n if pipe._cpu0 else 0.0
    out["library pools (engines' intra-op threads, codecs)"] = round(max(0.0, total - sum(out.values())), 3)
    out["total"] = round(total, 3)
    return out


def build_report(pipe) -> dict:
    engines = {task: m.describe() for task, m in pipe.models.items()}
    extra = {
        "mode": pipe.mode if pipe.streams else None,
        "interrupted": pipe.interrupted,
        "sources": {
            s.id: {
                **s.source.describe(),
                "mode": s.mode,
                # live/realtime: a frame that could not be out this soon after capture was dropped `late`
                "max_latency_ms": round(s.budget_ns / 1e6, 1) if s.mode != "offline" else None,
                "frames": s.frames,
                "decode_errors": s.source.decode_errors,
                "bad_input": list(s.source.bad_input),  # each bad file or early end, named
                "error": s.error,
            }
            for s in pipe.streams
        },
        # every stream's bad input in one list: what `--strict` fails the run on
        "bad_input": [f"{redact(s.cfg.uri)}: {what}" for s in pipe.streams for what in s.source.bad_input],
        "sinks": {
            s.label: {
                **s.sink.describe(),
                "uri": s.label,
                "streams": sorted(s.streams) if s.streams is not None else None,  # None: every stream
                "frames": (ledger := s.ledger()),
                "dropped": sum(ledger["dropped"].values()),
                "error": s.failed,
            }
            for s in pipe.sinks
        },
        "config": {
            "batch": pipe.cfg.pipeline.batch.model_dump(),
            "queue_depth": pipe.cfg.pipeline.queue_depth,
            "live_queue_depth": pipe.cfg.pipeline.live_queue_depth,
            "max_frames": pipe.cfg.max_frames,
            # the streams drawn: those a sink showing pixels takes
            "overlay_drawn": sorted(pipe.overlay_stage.draw) if pipe.overlay_stage else None,
        },
        "queues": {q.name: {"depth": q.maxsize, "policy": q.policy, "high_water": q.high_water} for q in pipe.queues},
        # each part's thread needs: its own threads, and those its libraries start
        "parts": {p.name: {"threads": p.threads, "pool_threads": p.pool_threads()} for p in pipe.parts},
        # one CPU budget sized every pool; the engines' schedule as measured at start-up
        "cpu": {**pipe.cpu_plan.describe(), "malloc": malloc_state()} if pipe.cpu_plan else None,
        "cpu_ms_per_frame": cpu_per_frame(pipe),
        # the warm-up pass before the sources started: {frames, ms (wall), error}; null: none ran
        "warmup": pipe.warmup,
        "errors": list(pipe.errors.messages),
    }
    if pipe.consumers:  # Python consumers beside the sinks: same ledger, offered = delivered + dropped
        extra["consumers"] = {c.name: c.describe() for c in pipe.consumers}
    post = pipe.post_stage
    if post is not None:
        flicker = {sid: sm.flicker for sid, sm in post.smoothers.items() if sm.flicker is not None}
        if flicker:
            extra["flicker"] = {
                "smoothing_frames": pipe.cfg.smoothing.frames,
                "mean": round(float(np.mean(list(flicker.values()))), 5),
                "streams": {k: round(v, 5) for k, v in flicker.items()},
            }
        if post.trackers:
            extra["tracks"] = {sid: t.started for sid, t in post.trackers.items()}
    if pipe.analytics_stage is not None:  # events by type and zone, and the stage's CPU per frame
        extra["analytics"] = pipe.analytics_stage.summary()
    return pipe.recorder.report(engines, extra)


def live_stats(pipe) -> dict:
    """The figures of the last moments, for /stats and the preview page."""
    live = pipe.recorder.live()
    counts = pipe.recorder.counts()
    return {
        "fps": live["fps"],
        "end_to_end": {"p50": live["p50"], "p99": live["p99"]},
        "processing": {"p50": live.get("processing_p50"), "p99": live.get("processing_p99")},
        "stages": {s: {"p50": live["stages"].get(s), "p99": live["stages_p99"].get(s)} for s in live["stages"]},
        "frames": {
            "in": sum(counts["frames_in"].values()),
            "out": sum(counts["frames_out"].values()),
            "dropped": counts["dropped"],
            "decode_errors": counts["decode_errors"],
        },
        "streams": {
            s.id: {
                "uri": s.source.describe().get("uri", ""),
                "frames_in": counts["frames_in"].get(s.id, 0),
                "frames_out": counts["frames_out"].get(s.id, 0),
                "reconnects": getattr(s.source, "reconnects", 0),
            }
            for s in pipe.streams
        },
        "engines": {
            task: f"{m.card.name} on {m.engine.backend} {m.engine.precision}" for task, m in pipe.models.items()
        },
        # the preview's events panel: the newest last
        "events": [e.to_dict() for e in list(pipe.analytics_stage.recent)[-20:]] if pipe.analytics_stage else [],
    }


def metric_samples(pipe) -> dict:
    """Counters and latency samples for Prometheus /metrics."""
    rec = pipe.recorder
    samples = rec.samples()
    return {
        **rec.counts(),
        "reconnects": {s.id: getattr(s.source, "reconnects", 0) for s in pipe.streams},
        "fps": rec.live()["fps"],
        "stages": {k: v for k, v in samples.items() if k not in ("end_to_end", "processing")},
        "end_to_end": samples["end_to_end"],
        "sample_stride": rec.sample_stride,
        "events": dict(pipe.analytics_stage.totals) if pipe.analytics_stage is not None else {},  # (type, zone) -> n
    }
