"""Latency bookkeeping: per-frame stage latencies, drops, percentiles and the report.

Report schema (ARCHITECTURE.md "Latency report"):
  frames {in, out, dropped {reason: n}, decode_errors}, fps,
  latency_ms {end_to_end {p50,p90,p99,max,mean}, processing {...}, stages {<stage>: {...}}},
  streams {<id>: {frames_out, fps, end_to_end}}, engines {semantic, instance}
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterable

import numpy as np

from streamseg.frames import STAGES, Frame

log = logging.getLogger("streamseg")

PERCENTILES = (("p50", 50), ("p90", 90), ("p99", 99))


def summarize(values_ms: Iterable[float], count: int | None = None) -> dict[str, float | int | None]:
    """p50/p90/p99/max/mean of a list of latencies in ms (None when empty); `count`: how many
    frames the values stand for, when they are a sample of them."""
    a = np.asarray(list(values_ms) if not isinstance(values_ms, np.ndarray) else values_ms, np.float64)
    if a.size == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None, "count": 0}
    out = {k: round(float(np.percentile(a, q)), 3) for k, q in PERCENTILES}
    out["max"] = round(float(a.max()), 3)
    out["mean"] = round(float(a.mean()), 3)
    out["count"] = int(a.size if count is None else count)
    return out


class _Series:
    """A growable float64 array (cheaper than a list of floats for long runs), bounded.

    Every value is kept up to `cap` values; past that, a systematic sample: every `stride`-th
    value (stride doubles each time the array fills, keeping every other value held). Series
    appended in lockstep keep the same frames. `count` is every value ever appended."""

    CAP = 1 << 17  # 131,072 frames (73 min at 30 fps): 1 MiB per series

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap or self.CAP
        self._a = np.empty(min(1024, self.cap), np.float64)
        self.n = 0  # values held
        self.count = 0  # values appended
        self.stride = 1

    def append(self, v: float) -> None:
        i = self.count
        self.count += 1
        if i % self.stride:
            return
        if self.n == self.cap:
            half = self._a[0 : self.n : 2].copy()
            self.n = len(half)
            self._a[: self.n] = half
            self.stride *= 2
            if i % self.stride:
                return
        if self.n == len(self._a):
            self._a = np.resize(self._a, min(2 * len(self._a), self.cap))
        self._a[self.n] = v
        self.n += 1

    def values(self) -> np.ndarray:
        return self._a[: self.n]

    def summary(self) -> dict[str, float | int | None]:
        """Percentiles of the values held, counting every value appended."""
        return summarize(self.values(), self.count)


class LatencyRecorder:
    """Thread-safe collector of every finished frame's stage latencies and of every drop."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.stages = {s: _Series() for s in STAGES}
        self.e2e = _Series()
        # from leaving the stream queue (taken by the batcher) to written: the pipeline's own
        # time, without the wait in front of the engines that offline runs pile up
        self.processing = _Series()
        self.done_ns = _Series()  # when each frame came out, in the same order as the series above
        self.per_stream: dict[str, _Series] = {}
        self.stream_first_ns: dict[str, int] = {}
        self.stream_last_ns: dict[str, int] = {}
        self.frames_in = 0
        self.frames_in_by_stream: collections.Counter = collections.Counter()
        self.dropped: collections.Counter = collections.Counter()
        self.dropped_by_stream: collections.Counter = collections.Counter()  # (stream id, reason) -> frames
        self.stream_first_out_ns: dict[str, int] = {}
        self.decode_errors = 0
        self._open: set[tuple[str, int]] = set()  # frames in and not yet out or dropped
        self.finished_twice = 0  # a bug if ever > 0: a frame reported out/dropped a second time
        self.first_capture_ns: int | None = None
        self.last_done_ns: int | None = None
        self._recent = collections.deque(maxlen=window)  # (done_ns, e2e_ms, stage ms) for the HUD
        self._live_cache: tuple[float, dict] | None = None
        # recent service time (taken by the batcher -> written), smoothed: how long a frame the
        # engines take now will still need; live queues judge "can it be out in time" with it
        self.service_ns = 0.0

    # events ------------------------------------------------------------------------
    def frame_in(self, frame: Frame) -> None:
        with self._lock:
            self.frames_in += 1
            self.frames_in_by_stream[frame.stream_id] += 1
            self._open.add((frame.stream_id, frame.seq))
            if self.first_capture_ns is None or frame.capture_ns < self.first_capture_ns:
                self.first_capture_ns = frame.capture_ns
            self.stream_first_ns.setdefault(frame.stream_id, frame.capture_ns)

    def skipped(self, stream_id: str, n: int, reason: str) -> None:
        """`n` frames of a stream passed over before they entered the pipeline: in, and dropped."""
        with self._lock:
            self.frames_in += n
            self.frames_in_by_stream[stream_id] += n
            self.dropped[reason] += n
            self.dropped_by_stream[stream_id, reason] += n

    def decode_error(self, n: int = 1) -> None:
        with self._lock:
            self.decode_errors += n

    def _finish(self, frame: Frame) -> bool:
        """Close `frame`'s entry in the ledger (lock held); False when it was already closed."""
        key = (frame.stream_id, frame.seq)
        if key in self._open:
            self._open.discard(key)
            return True
        self.finished_twice += 1
        return False

    def drop(self, frame: Frame, reason: str) -> None:
        with self._lock:
            if self._finish(frame):
                self.dropped[reason] += 1
                self.dropped_by_stream[frame.stream_id, reason] += 1

    def close_ledger(self, *, aborted: bool) -> None:
        """The run is over: a frame still in flight was cut off by an abort (a second signal, a
        crashed stage) and counts as dropped `aborted`; on any other path none may be left
        (one would be a bug: logged, and counted `lost`). So in = out + dropped, always."""
        if aborted:
            self.drop_in_flight("aborted")
        elif n := self.drop_in_flight("lost"):
            log.error("%d frame(s) were neither written nor dropped (counted as dropped: lost)", n)
        if self.finished_twice:
            log.error("%d frame(s) were finished twice (counted once)", self.finished_twice)

    @property
    def in_flight(self) -> int:
        """Frames taken in and not yet out or dropped."""
        with self._lock:
            return len(self._open)

    def drop_in_flight(self, reason: str) -> int:
        """Count every frame still in flight as dropped for `reason` (the run is over: frames
        that never finished, e.g. after an abort, are not left out of the ledger). Returns how many."""
        with self._lock:
            n = len(self._open)
            if n:
                self.dropped[reason] += n
                for sid, _ in self._open:
                    self.dropped_by_stream[sid, reason] += 1
                self._open.clear()
            return n

    def frame_out(self, frame: Frame) -> None:
        """A frame every sink has handled: its stamps are complete."""
        ms = frame.stage_ms()
        done = frame.stamps["sink"]
        e2e = (done - frame.capture_ns) / 1e6
        proc = (done - frame.stamps.get("queue", frame.capture_ns)) / 1e6
        with self._lock:
            if not self._finish(frame):
                return
            for stage, v in ms.items():
                self.stages[stage].append(v)
            self.e2e.append(e2e)
            self.processing.append(proc)
            self.service_ns += 0.2 * (proc * 1e6 - self.service_ns)
            self.done_ns.append(float(done))
            self.per_stream.setdefault(frame.stream_id, _Series()).append(e2e)
            self.stream_last_ns[frame.stream_id] = done
            self.stream_first_out_ns.setdefault(frame.stream_id, done)
            self.last_done_ns = done if self.last_done_ns is None else max(self.last_done_ns, done)
            self._recent.append((done, e2e, ms, proc))

    # views -------------------------------------------------------------------------
    @property
    def frames_out(self) -> int:
        return self.e2e.count

    def live(self, max_age_s: float = 0.25) -> dict:
        """fps, end-to-end p50/p99 and per-stage p50/p99 over the recent window, for the HUD, the
        progress bar and /stats. The overlay asks every frame: the figures are recomputed at
        most every `max_age_s` (0.5 ms each time), which is as often as anyone can read them."""
        now = time.monotonic()
        cached = self._live_cache
        if cached is not None and now - cached[0] < max_age_s:
            return cached[1]
        with self._lock:
            recent = list(self._recent)
        if not recent:
            return {
                "fps": None,
                "p50": None,
                "p99": None,
                "processing_p50": None,
                "processing_p99": None,
                "stages": {},
                "stages_p99": {},
            }
        vals = np.fromiter((r[1] for r in recent), np.float64)
        proc = np.fromiter((r[3] for r in recent), np.float64)
        span = (recent[-1][0] - recent[0][0]) / 1e9
        fps = (len(recent) - 1) / span if span > 0 else None
        per = np.array([[r[2].get(s, 0.0) for s in STAGES] for r in recent])
        p50, p99 = np.percentile(per, 50, axis=0), np.percentile(per, 99, axis=0)
        out = {
            "fps": fps,
            "p50": float(np.percentile(vals, 50)),
            "p99": float(np.percentile(vals, 99)),
            "processing_p50": float(np.percentile(proc, 50)),
            "processing_p99": float(np.percentile(proc, 99)),
            "stages": {s: float(v) for s, v in zip(STAGES, p50, strict=True)},
            "stages_p99": {s: float(v) for s, v in zip(STAGES, p99, strict=True)},
        }
        self._live_cache = (now, out)
        return out

    def counts(self) -> dict:
        """Counters so far: frames in and out per stream, drops by reason, decode errors."""
        with self._lock:
            return {
                "frames_in": dict(self.frames_in_by_stream),
                "frames_out": {sid: s.count for sid, s in self.per_stream.items()},
                "dropped": dict(self.dropped),
                "decode_errors": self.decode_errors,
            }

    def stream_view(self, stream_id: str, recent: int = 300) -> dict:
        """One stream's figures so far: frames in/out, drops by reason, frames in flight, the
        e2e p50/p99 of its last `recent` frames, and when its first and last frame came out
        (perf_counter_ns clock). For fleet controllers that watch streams one by one."""
        with self._lock:
            ser = self.per_stream.get(stream_id)
            last = ser.values()[-recent:].copy() if ser is not None else np.empty(0)
            return {
                "in": self.frames_in_by_stream[stream_id],
                "out": ser.count if ser is not None else 0,
                "dropped": {r: n for (sid, r), n in self.dropped_by_stream.items() if sid == stream_id},
                "in_flight": sum(1 for sid, _ in self._open if sid == stream_id),
                "p50": float(np.percentile(last, 50)) if last.size else None,
                "p99": float(np.percentile(last, 99)) if last.size else None,
                "first_out_ns": self.stream_first_out_ns.get(stream_id),
                "last_out_ns": self.stream_last_ns.get(stream_id),
            }

    @property
    def sample_stride(self) -> int:
        """How many finished frames each held value stands for (1 until 131,072 frames)."""
        return self.e2e.stride

    def samples(self) -> dict[str, np.ndarray]:
        """Every finished frame's stage and end-to-end latencies so far (ms), for histograms
        (past 131,072 frames: every `sample_stride`-th frame's)."""
        with self._lock:
            out = {s: self.stages[s].values().copy() for s in STAGES}
            out["end_to_end"] = self.e2e.values().copy()
        return out

    def series(self) -> dict[str, np.ndarray]:
        """Per-frame values in completion order: `t_s` (since the first capture), each stage, `end_to_end` (ms)."""
        with self._lock:
            t0 = self.first_capture_ns or 0
            out = {"t_s": (self.done_ns.values() - t0) / 1e9}
            out.update({s: self.stages[s].values().copy() for s in STAGES})
            out["end_to_end"] = self.e2e.values().copy()
        return out

    def report(self, engines: dict | None = None, extra: dict | None = None) -> dict:
        with self._lock:
            wall = (
                (self.last_done_ns - self.first_capture_ns) / 1e9
                if self.last_done_ns is not None and self.first_capture_ns is not None
                else 0.0
            )
            streams = {}
            for sid in sorted(set(self.frames_in_by_stream) | set(self.per_stream)):
                series = self.per_stream.get(sid)
                n = series.count if series else 0
                span = (
                    (self.stream_last_ns[sid] - self.stream_first_ns[sid]) / 1e9
                    if n and sid in self.stream_first_ns
                    else 0
                )
                streams[sid] = {
                    "frames_in": self.frames_in_by_stream[sid],
                    "frames_out": n,
                    "fps": round(n / span, 3) if span > 0 else 0.0,
                    "end_to_end": series.summary() if series else summarize([]),
                }
            rep = {
                "frames": {
                    "in": self.frames_in,
                    "out": self.e2e.count,
                    "dropped": dict(sorted(self.dropped.items())),
                    "decode_errors": self.decode_errors,
                },
                "fps": round(self.e2e.count / wall, 3) if wall > 0 else 0.0,
                "wall_s": round(wall, 3),
                "latency_ms": {
                    "end_to_end": self.e2e.summary(),
                    "processing": self.processing.summary(),
                    "stages": {s: self.stages[s].summary() for s in STAGES},
                },
                "streams": streams,
                "engines": engines or {},
            }
        if extra:
            rep.update(extra)
        return rep


def format_summary(report: dict) -> str:
    """A short table of the report for the terminal."""
    fr = report["frames"]
    dropped = sum(fr["dropped"].values())
    lines = [
        f"frames in {fr['in']}  out {fr['out']}  dropped {dropped}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in fr['dropped'].items())})" if dropped else "")
        + f"  decode errors {fr['decode_errors']}  |  {report['fps']:.2f} fps",
        f"{'latency ms':<14}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}",
    ]

    def row(name: str, s: dict) -> str:
        cells = "".join(
            f"{s[k]:>9.1f}" if s[k] is not None else f"{'-':>9}" for k in ("p50", "p90", "p99", "max", "mean")
        )
        return f"{name:<14}{cells}"

    for stage, s in report["latency_ms"]["stages"].items():
        lines.append(row(stage, s))
    lines.append(row("end_to_end", report["latency_ms"]["end_to_end"]))
    if "processing" in report["latency_ms"]:
        lines.append(row("processing", report["latency_ms"]["processing"]))
    for task, e in report.get("engines", {}).items():
        lines.append(
            f"{task}: {e.get('card')} on {e.get('backend')} {e.get('precision')} (batch mean {e.get('batch_mean')})"
        )
    return "\n".join(lines)
