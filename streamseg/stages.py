"""The pipeline's stages: each a part with a name, its typed config section, its thread needs
and one verb, `process`. pipeline.py wires them with queues and threads and knows no stage's
insides; every stage stamps the frames it finishes (frames.STAGES), so per-stage latency
falls out of the design.

    SourceStage (one per stream)  process() -> Frame | None            read, pace, stamp decode
    (Batcher: round robin over the stream queues; stamps queue and batch_wait)
    InferStage                    process(frames) -> [Batch]           preprocess, engines
    PostprocessStage              process(Batch) -> [Frame]            decode, track, smooth
    OverlayStage                  process(Frame) -> Frame              draw masks and HUD
    SinkStage (one per sink)      process(Frame) -> None               write; its ledger
    WarmUp                        sample batches through infer, postprocess and overlay, each on
                                  its own thread, before any source is read

`threads` is how many threads the runner gives a stage: one each, since each keeps
per-stream state or order. `pool_threads()` is what the stage's libraries start on their
own (engine intra-op threads, OpenCV), for sizing a CPU budget.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import cv2
import numpy as np

from streamseg.config import EnginesConfig, OverlayConfig, SinkConfig, SmoothingConfig, SourceConfig, TrackingConfig
from streamseg.cpu import EngineRunner
from streamseg.errors import UserError
from streamseg.frames import Batch, EngineWork, Frame
from streamseg.latency import LatencyRecorder
from streamseg.models import SegModel
from streamseg.overlay import Overlay
from streamseg.queues import BoundedQueue
from streamseg.sinks import Sink
from streamseg.sinks.base import FrameDropped
from streamseg.sources import Source
from streamseg.tracking import SemanticSmoother, Tracker
from streamseg.uris import redact

log = logging.getLogger("streamseg")


class Stage:
    """A part of the pipeline: a name, a config section, thread needs, one verb."""

    name = "stage"
    threads = 1  # threads the runner gives it (one: each stage keeps per-stream order or state)
    queue: BoundedQueue | None = None  # the runner's queue in front of it, where it has one of its own

    def pool_threads(self) -> int:
        """Threads the stage's libraries start of their own (0: none)."""
        return 0

    def process(self, *args):
        raise NotImplementedError


class ErrorLog:
    """Run errors for the report (each message once) shared by the stages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[str] = []
        self._seen: set[str] = set()

    def add(self, msg: str) -> bool:
        """Record `msg`; False when it was recorded before."""
        with self.lock:
            if msg in self._seen:
                return False
            self._seen.add(msg)
            self.messages.append(msg)
            return True


# sources -------------------------------------------------------------------------------------
LIVE_PERIODS = 4  # a live frame's default latency budget, in frame periods of its stream
UNKNOWN_RATE_BUDGET_MS = 200.0


def latency_budget_ms(cfg: SourceConfig, source: Source) -> float:
    """A live stream's latency budget: `live.max_latency_ms`, else what the source itself holds a
    frame (its jitter buffer) plus LIVE_PERIODS frame periods: a burst of a few frames from the
    network is served, a backlog is not."""
    if cfg.live.max_latency_ms is not None:
        return cfg.live.max_latency_ms
    own = LIVE_PERIODS * 1000 / source.fps if source.fps else UNKNOWN_RATE_BUDGET_MS
    return source.delivery_ms + own


def paced(mode: str, source: Source) -> bool:
    """Is a stream in `mode` played at its own rate by us (a recording behaving as a camera)?
    The one place that decides it: the source knows whether it brings its own rate."""
    return source.paced_in(mode)


class SourceStage(Stage):
    """Reads one stream: `process()` gives its next Frame (stamped `decode`) or None at the end.

    A paced stream whose source can `skip` frames unrendered (the synthetic scene) is pulled:
    `wait_ready` (the runner's: the stream's hand-off is empty) is called before each read,
    and the frames that fell due meanwhile and are already past the latency budget are skipped,
    counted in and dropped `late`: no work is spent on a frame that would be dropped. Any other paced stream is read at its
    rate and its queue keeps the newest (a compressed stream must decode every frame anyway;
    what its queue drops was never preprocessed). A live camera is read as it delivers."""

    def __init__(
        self,
        stream_id: str,
        cfg: SourceConfig,
        source: Source,
        mode: str,
        recorder: LatencyRecorder,
        errors: ErrorLog,
        max_frames: int | None = None,
    ) -> None:
        self.id, self.cfg, self.source, self.mode = stream_id, cfg, source, mode
        self.name = f"source:{stream_id}"
        self.recorder, self.errors, self.limit = recorder, errors, max_frames
        self.paced = paced(mode, source)
        self._skip = getattr(source, "skip", None)  # skip(n) -> frames passed over unrendered
        self._period_ns = int(1e9 / source.fps) if source.fps else None
        self.pulled = self.paced and self._skip is not None and self._period_ns is not None
        self.frames = 0  # frames taken in so far (the next frame's seq)
        self.error: str | None = None
        self.wait_ready: Callable[[], None] = lambda: None
        self.stopping: threading.Event = threading.Event()
        self._t0: int | None = None  # perf_counter_ns() at which pts 0 is due
        self._errors_seen = 0
        self._named = 0  # entries of source.bad_input already logged
        self._checked = False  # the end was checked against the announced frame count

    def count_decode_errors(self) -> None:
        n = self.source.decode_errors - self._errors_seen
        if n:
            self.recorder.decode_error(n)
            self._errors_seen += n
        while self._named < len(self.source.bad_input):  # a bad file, named in the log (and the report)
            log.warning("warning: %s: %s", redact(self.cfg.uri), self.source.bad_input[self._named])
            self._named += 1

    def _check_complete(self) -> None:
        """A recording that ends well short of the frames its container announced was cut short
        or holds data the decoder gave up on: said (file, frames expected and read) and counted
        as a decode error, not taken as a normal end. (Frame counts from a duration are
        estimates: a few frames short is not flagged.)"""
        src, expected = self.source, self.source.frame_count
        if src.live or not expected or self.stopping.is_set() or self.error is not None or self._checked:
            return
        self._checked = True  # once, however often the ended stream is asked
        if self.frames + src.decode_errors >= expected - max(2, expected // 50):
            return
        src.decode_errors += 1
        src.bad_input.append(
            f"ended early: its header announces {expected} frames, {self.frames} were read "
            "(cut short or corrupt; the decoder's error is counted as a decode error)"
        )

    @property
    def budget_ns(self) -> int:
        """The live latency budget (a live source may learn its rate from its first frame)."""
        return int(latency_budget_ms(self.cfg, self.source) * 1e6)

    def expired(self, f: Frame) -> bool:
        """Live: taken by the engines now, `f` could no longer be out within the stream's latency
        budget (its age plus the pipeline's recent service time exceeds it)."""
        return time.perf_counter_ns() - f.capture_ns + self.recorder.service_ns > self.budget_ns

    def _skip_to_newest_due(self) -> None:
        """Pulled streams: the engines are ready; the frames due before the newest due one that
        could no longer be out within the latency budget would only be dropped, so they are
        skipped unrendered (and counted `late`); the rest are still served, in order."""
        now = time.perf_counter_ns()
        newest = (now - self._t0) // self._period_ns  # the newest frame due now
        # frame k is due (captured) at t0 + k * period; taken now it is out at now + service: too late
        # when that is more than the budget after its capture
        too_late = now - self.budget_ns + int(self.recorder.service_ns) - self._t0
        n = min(newest, max(0, -(-too_late // self._period_ns))) - self.frames
        if self.limit is not None:
            n = min(n, self.limit - self.frames)
        if n > 0 and (k := self._skip(n)) > 0:
            self.recorder.skipped(self.id, k, "late")
            self.frames += k

    def process(self) -> Frame | None:
        if self.pulled:
            self.wait_ready()
            if self._t0 is not None:
                self._skip_to_newest_due()
        if self.stopping.is_set() or (self.limit is not None and self.frames >= self.limit):
            return None
        t_cap = time.perf_counter_ns()
        try:
            sf = self.source.read()
        except UserError as e:
            self.error = str(e)
            self.errors.add(f"source {self.id}: {e}")
            return None
        if sf is None:
            self._check_complete()
            self.count_decode_errors()  # and named: a bad last image
            return None
        if self.paced:
            # a recording played at its own rate: the frame is "captured" at its due time
            if self._t0 is None:
                self._t0 = t_cap - int(sf.pts * 1e9)
            due = self._t0 + int(sf.pts * 1e9)
            now = time.perf_counter_ns()
            if due > now and self.stopping.wait((due - now) / 1e9):
                return None
            t_cap = due
        elif sf.capture_ns is not None:
            t_cap = sf.capture_ns
        frame = Frame(self.id, self.frames, sf.pts, sf.image_bgr, t_cap, truth=sf.truth)
        frame.stamp("decode")
        self.count_decode_errors()
        self.recorder.frame_in(frame)
        self.frames += 1
        return frame


# inference -------------------------------------------------------------------------------------
class InferStage(Stage):
    """Preprocess a batch for every engine and run them: `process(frames)` -> the batches whose
    outputs are in (stamped `preprocess`, `infer`). When every engine runs on a device stream,
    or, in an offline run, the engines run side by side on their own workers (`overlap`), one
    batch stays in flight: batch n+1 is prepared and submitted (its upload overlapping n's
    compute; on the CPU, queued to each engine's worker) before batch n is collected; `flush()`
    collects it. A failing batch's frames are dropped `engine_error` and the run goes on."""

    name = "infer"

    def __init__(
        self,
        cfg: EnginesConfig,
        models: dict[str, SegModel],
        recorder: LatencyRecorder,
        errors: ErrorLog,
        runner: EngineRunner | None = None,
    ) -> None:
        self.cfg = cfg
        self.models = list(models.items())
        self.recorder, self.errors = recorder, errors
        self._pending: Batch | None = None
        self.pipelined = False  # may side-by-side engines keep a batch in flight (offline runs: the runner's)
        # the engines of one batch one after the other, or side by side (streamseg.cpu decides)
        self.runner = runner or EngineRunner("sequential")

    @property
    def overlap(self) -> bool:
        """Keep one batch in flight: every engine on a device stream, or, offline, the engines side
        by side on their own worker threads (each engine starts batch n+1 as soon as it is through
        with n, instead of the faster one idling until the slower finishes: H.264 pipeline 28.6-30.7
        frames/s against 27.6-27.8). Not in live runs: overloaded, a frame then waited behind the
        batch before it in the engines for no more output (live at 60 fps, 2-core VM: 36.7 and
        40.2 frames/s out with, 38.3 and 37.9 without; e2e p50 92-98 ms against 70)."""
        if not self.models:
            return False
        if all(m.engine.overlaps for _, m in self.models):
            return True
        return self.pipelined and self.runner.schedule == "concurrent"

    @property
    def threads(self) -> int:
        return 1 + (len(self.models) - 1 if self.runner.schedule == "concurrent" else 0)

    def pool_threads(self) -> int:
        return sum(getattr(m.engine, "threads", 0) or 0 for _, m in self.models)

    @property
    def in_flight(self) -> bool:
        return self._pending is not None

    def process(self, frames: list[Frame]) -> list[Batch]:
        submitted = self._submit(Batch(frames))
        done = self.flush()
        if submitted is not None:
            if self.overlap:
                self._pending = submitted
            else:
                done += self._collect(submitted)
        return done

    def warm(self, frames: list[Frame]) -> Batch:
        """The warm-up pass (frames in no ledger): preprocess and run every engine as `process`
        does, each engine on the thread that will run it; an error raises instead of dropping frames."""
        batch = Batch(frames)
        self._start(batch)
        self._gather(batch)
        return batch

    def flush(self) -> list[Batch]:
        """Collect the batch in flight, if any."""
        pending, self._pending = self._pending, None
        return self._collect(pending) if pending is not None else []

    def _submit(self, batch: Batch) -> Batch | None:
        try:
            self._start(batch)
        except Exception as e:
            for (_, m), w in zip(self.models, batch.work, strict=False):  # free what the other engines hold
                if w.ticket is not None:
                    with contextlib.suppress(Exception):
                        m.collect(w.ticket)
            drop_engine_error(batch.frames, e, self.recorder, self.errors)
            return None
        return batch

    def _start(self, batch: Batch) -> None:
        """Preprocess the batch for every engine and start them (errors raise)."""
        images = [f.image_bgr for f in batch.frames]
        prepared = [m.prepare(images) for _, m in self.models]
        t = time.perf_counter_ns()
        for f in batch.frames:
            f.stamp("preprocess", t)
        jobs = [functools.partial(m.submit, x) for (_, m), (x, _) in zip(self.models, prepared, strict=True)]
        batch.work = [EngineWork(task, tr) for (task, _), (_, tr) in zip(self.models, prepared, strict=True)]
        batch.started = self.runner.start(jobs)
        if self.runner.schedule == "sequential":  # the tickets are in: device work, or done
            self._tickets(batch)

    def _tickets(self, batch: Batch) -> None:
        """The engines' tickets of a started batch (waiting for the engines' workers, if any)."""
        started, batch.started = batch.started, None
        try:
            started.wait()
        finally:  # what the engines that did start hold, for collect (or freeing)
            for w, ticket in zip(batch.work, started.values, strict=False):
                w.ticket = ticket

    def _gather(self, batch: Batch) -> None:
        """Wait for a started batch's outputs (errors raise)."""
        if batch.started is not None:
            self._tickets(batch)
        for (_, m), w in zip(self.models, batch.work, strict=True):
            w.outputs = m.collect(w.ticket)
            w.ticket = None

    def _collect(self, batch: Batch) -> list[Batch]:
        try:
            self._gather(batch)
        except Exception as e:
            drop_engine_error(batch.frames, e, self.recorder, self.errors)
            return []
        t = time.perf_counter_ns()
        for f in batch.frames:
            f.stamp("infer", t)
        return [batch]


def drop_engine_error(frames: list[Frame], e: Exception, recorder: LatencyRecorder, errors: ErrorLog) -> None:
    """One bad batch must not end the run: its frames are dropped with the reason, once logged."""
    msg = f"{type(e).__name__}: {e}"
    if errors.add(f"engine error (frames dropped): {msg}"):
        log.error("engine error, dropping %d frame(s): %s", len(frames), msg)
    for f in frames:
        recorder.drop(f, "engine_error")


# postprocess ----------------------------------------------------------------------------------
class PostprocessStage(Stage):
    """Decode engine outputs into each frame's typed results, track instances and smooth the
    semantic map per stream: `process(batch)` -> its frames, in order (stamped `postprocess`)."""

    name = "postprocess"

    def __init__(
        self,
        models: dict[str, SegModel],
        tracking: TrackingConfig,
        smoothing: SmoothingConfig,
        recorder: LatencyRecorder,
        errors: ErrorLog,
    ) -> None:
        self.models = dict(models)
        self.tracking, self.smoothing = tracking, smoothing
        self.recorder, self.errors = recorder, errors
        self.trackers: dict[str, Tracker] = {}  # per stream, made on first use
        self.smoothers: dict[str, SemanticSmoother] = {}

    def process(self, batch: Batch) -> list[Frame]:
        try:
            self._decode(batch)
        except Exception as e:
            drop_engine_error(batch.frames, e, self.recorder, self.errors)
            return []
        for f in batch.frames:  # in each stream's order: the batcher never reorders a stream
            self.temporal(f)
        t = time.perf_counter_ns()
        for f in batch.frames:
            f.stamp("postprocess", t)
        return batch.frames

    def _decode(self, batch: Batch) -> None:
        results = [(w.task, self.models[w.task].decode(w.outputs, w.transforms)) for w in batch.work]
        for task, res in results:
            for f, r in zip(batch.frames, res, strict=True):
                if task == "semantic":
                    f.semantic = r
                else:
                    f.instances = r

    def warm(self, batch: Batch) -> list[Frame]:
        """The warm-up pass: decode, track and smooth on the calling thread, each frame with a
        scratch tracker and smoother of its own: no stream's state sees it."""
        self._decode(batch)
        for f in batch.frames:
            self.temporal(f, {}, {})
        return batch.frames

    def temporal(self, f: Frame, trackers: dict | None = None, smoothers: dict | None = None) -> None:
        """Track instances and smooth the semantic map of one frame, per stream (in the stage's
        own per-stream state unless `trackers`/`smoothers` are given)."""
        tc = self.tracking
        trackers = self.trackers if trackers is None else trackers
        smoothers = self.smoothers if smoothers is None else smoothers
        if f.instances is not None and tc.enabled:
            tracker = trackers.get(f.stream_id)
            if tracker is None:
                tracker = trackers[f.stream_id] = Tracker(
                    high=tc.high_score, match_iou=tc.iou, max_age=tc.max_age, centre_dist=tc.centre_dist
                )
            f.instances = tracker.update(f.instances, f.seq)
        sem = f.semantic
        if sem is not None:
            smoother = smoothers.get(f.stream_id)
            if smoother is None:
                smoother = smoothers[f.stream_id] = SemanticSmoother(self.smoothing.frames)
            small = sem.small_group_map if sem.small_group_map is not None else sem.group_map
            shown = smoother.smooth(small)
            if shown is not small:
                h, w = sem.group_map.shape
                full = shown if shown.shape == (h, w) else cv2.resize(shown, (w, h), interpolation=cv2.INTER_NEAREST)
                f.semantic = dataclasses.replace(
                    sem, group_map=full, small_group_map=shown if sem.small_group_map is not None else None
                )
            smoother.measure(shown)


# overlay ---------------------------------------------------------------------------------------
class OverlayStage(Stage):
    """Draw each frame's results for the sinks that show pixels: `process(frame)` -> the frame
    with `overlay_bgr` (stamped `overlay`); a stream that no sink showing pixels takes (`draw`:
    the stream ids that one does) is not drawn."""

    name = "overlay"

    def __init__(self, cfg: OverlayConfig, overlay: Overlay, draw: frozenset[str], cv_threads: int = 0) -> None:
        self.cfg, self.overlay, self.draw, self.cv_threads = cfg, overlay, draw, cv_threads

    def pool_threads(self) -> int:
        return self.cv_threads

    def process(self, f: Frame) -> Frame:
        if f.stream_id in self.draw:
            f.overlay_bgr = self.overlay.draw(f)
        f.stamp("overlay")
        return f

    def warm(self, f: Frame) -> Frame:
        """The warm-up pass: draw on the calling thread, as `process` will."""
        if self.draw:
            f.overlay_bgr = self.overlay.draw(f)
        return f


class Chain(Stage):
    """Two stages on one thread, one after the other (analytics just before the overlay draws)."""

    def __init__(self, first: Stage, then: Stage) -> None:
        self.first, self.then, self.name = first, then, then.name

    def pool_threads(self) -> int:
        return self.then.pool_threads()

    def process(self, f: Frame) -> Frame:
        return self.then.process(self.first.process(f))

    def warm(self, f: Frame) -> Frame:
        return self.then.warm(self.first.warm(f))


# sinks ---------------------------------------------------------------------------------------------
class SinkFanout:
    """Hands each frame to every sink and finishes it when the last one is through: `out` when
    every sink wrote it, else dropped under the reason of the first sink (config order) that did
    not, as `<reason>:<sink>`; then its pixels are freed."""

    def __init__(self, recorder: LatencyRecorder) -> None:
        self.recorder = recorder
        self.sinks: list[SinkStage] = []
        self.lock = threading.Lock()

    def offer(self, f: Frame, sinks: list[SinkStage]) -> None:
        """`f` is about to be put to the queues of `sinks` (those that take its stream); with none,
        it is out now."""
        f.sinks_pending = len(sinks)
        f.written_ns = None
        f.sink_drop = None
        with self.lock:
            for s in sinks:
                s.offered += 1
        if not sinks:
            f.stamp("sink")
            self.recorder.frame_out(f)
            f.image_bgr = f.overlay_bgr = f.truth = None

    def done(self, sink: SinkStage, f: Frame, dropped: str | None = None, at_ns: int | None = None) -> None:
        """`sink` is through with `f`: wrote it (at `at_ns`, default now), or `dropped` it for that
        reason. (A Python consumer is through when the result is in its queue: streamseg.api.)"""
        now = time.perf_counter_ns() if at_ns is None else at_ns
        with self.lock:
            if dropped is None:
                sink.written += 1
                f.written_ns = now if f.written_ns is None else max(f.written_ns, now)
            else:
                sink.dropped[dropped] += 1
                if f.sink_drop is None or sink.index < f.sink_drop[0]:
                    f.sink_drop = (sink.index, f"{dropped}:{sink.label}")
            f.sinks_pending -= 1
            last = f.sinks_pending == 0
        if not last:
            return
        if f.sink_drop is None:
            f.stamp("sink", f.written_ns)
            self.recorder.frame_out(f)
        else:
            self.recorder.drop(f, f.sink_drop[1])
        f.image_bgr = f.overlay_bgr = f.truth = None  # free the pixels early; results stay


class SinkStage(Stage):
    """One sink behind its own queue: `process(frame)` writes it. Its ledger: offered = written +
    sum(dropped) (`sink_queue`: its lossy queue was full; `sink_failed`: the sink had failed;
    a reason of the sink's own, such as `send_failed`: that frame did not reach its destination)."""

    def __init__(self, index: int, sink: Sink, cfg: SinkConfig | None, fanout: SinkFanout, errors: ErrorLog) -> None:
        self.index, self.sink, self.cfg, self.fanout, self.errors = index, sink, cfg, fanout, errors
        self.label = redact(sink.uri)
        self.name = f"sink:{self.label}"
        self.failed: str | None = None
        self.offered = self.written = 0
        self.dropped: collections.Counter = collections.Counter()
        self.streams = frozenset(cfg.streams) if cfg is not None and cfg.streams else None  # None: every stream
        fanout.sinks.append(self)

    def takes(self, stream_id: str) -> bool:
        return self.streams is None or stream_id in self.streams

    def process(self, f: Frame) -> None:
        if self.failed is None:
            try:
                self.sink.write(f)
                self.fanout.done(self, f)
                return
            except FrameDropped as d:  # this frame only: the sink goes on
                if not self.dropped[d.reason]:
                    log.warning("warning: sink %s: %s (such frames are counted as its %s drops)", self.label, d, d.reason)
                self.fanout.done(self, f, d.reason)
                return
            except Exception as e:
                self.failed = f"{type(e).__name__}: {e}"
                self.errors.add(f"sink {self.label} failed: {self.failed}")
                log.error("sink %s failed, it gets no more frames: %s", self.label, self.failed)
        self.fanout.done(self, f, "sink_failed")

    def queue_dropped(self, f: Frame) -> None:
        """Its lossy queue pushed `f` out: the frame is finished for this sink."""
        self.fanout.done(self, f, "sink_queue")

    def ledger(self) -> dict:
        with self.fanout.lock:
            return {"offered": self.offered, "written": self.written, "dropped": dict(sorted(self.dropped.items()))}


# warm-up ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def warm_image(w: int, h: int) -> np.ndarray:
    """A rendered driving scene at w x h (made once per size and process): cars, people and road
    for the engines to find, so the decoders and the overlay run their real paths."""
    from streamseg.synth.scene import DrivingScene

    img = DrivingScene((w, h), 30.0, seed=1).render(40)[0]
    img.flags.writeable = False
    return img


class WarmUp:
    """One pass of sample batches through infer -> postprocess -> overlay before any source is
    read, each step on the thread that will serve that stage. A fresh thread's first calls pay
    for what later calls reuse (its malloc arena growing and faulting pages in, the libraries'
    per-thread buffers): the instance decoder's first call took 45-53 ms of CPU in a new
    pipeline against 4 ms after, which was the p99 of a short live run. A camera's first frames
    should cost what every later one does. The frames are in no ledger and reach no sink; a
    failing step is logged and the run goes on (a real frame would meet the error anyway)."""

    def __init__(self, sizes: list[tuple[int, int]], max_batch: int = 1) -> None:
        self.batches: list[list[Frame]] = []
        for i, (w, h) in enumerate(dict.fromkeys(sizes)):
            for n in sorted({1, max_batch} if i == 0 else {1}):
                self.batches.append([Frame("warmup", -1, 0.0, warm_image(w, h).copy(), 0) for _ in range(n)])
        self.inferred: Future = Future()
        self.decoded: Future = Future()
        self.done: Future = Future()
        self.t0 = time.perf_counter()  # made just before the stage threads start: the pass's clock

    def infer(self, stage: InferStage) -> None:
        self._step(lambda _: [stage.warm(fs) for fs in self.batches], None, self.inferred)

    def postprocess(self, stage: PostprocessStage) -> None:
        self._step(lambda batches: [stage.warm(b) for b in batches], self.inferred, self.decoded)

    def overlay(self, stage: OverlayStage) -> None:
        self._step(lambda frames: [stage.warm(f) for fs in frames for f in fs], self.decoded, self.done)

    @staticmethod
    def _step(fn: Callable, prev: Future | None, out: Future) -> None:
        try:
            out.set_result(fn(prev.result() if prev is not None else None))
        except Exception as e:  # the step before failed, or this one
            out.set_exception(e)

    def wait(self, give_up: Callable[[], bool]) -> str | None:
        """Block until the pass is through (or `give_up()`); a failure's message, else None."""
        while not give_up():
            try:
                self.done.result(timeout=0.05)
                return None
            except TimeoutError:
                continue
            except Exception as e:
                return f"{type(e).__name__}: {e}"
        return None

    def finish(self, give_up: Callable[[], bool], models) -> dict:
        """Wait for the pass, zero the engines' counters (its calls are not the run's) and say
        what it did, for the report: {frames, ms, error}."""
        failed = self.wait(give_up)
        for m in models:
            m.batches = m.frames = m.engine.calls = m.engine.frames = 0
        out = {"frames": sum(map(len, self.batches)), "ms": round((time.perf_counter() - self.t0) * 1000, 1), "error": failed}
        if failed:
            log.warning("warm-up pass failed (the run goes on): %s", failed)
        else:
            log.debug("warm-up: %d frame(s) through the stages in %.0f ms", out["frames"], out["ms"])
        return out
