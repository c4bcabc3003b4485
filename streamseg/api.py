"""The library face: a run's results where the user's code lives (docs/python-api.md).

    with streamseg.Pipeline.from_config("configs/demo.yaml", sources=["drive.mp4"]) as run:
        for r in run.results():        # a FrameResult per frame, per stream in order
            ...

Each consumer (`results()`, `aresults()`, `on_result(fn)`) is an outlet beside the sinks, with
its own bounded queue and policy: `block` (offline default: nothing lost, a slow consumer slows
the sources) or `latest` (live default: the oldest result is dropped, counted `consumer:<name>`).
In the ledger a consumer is a sink: a frame is out once every sink and every consumer has it,
so in = out + dropped holds with consumers too. The pipeline's part of a frame's latency ends
when the result is in the consumer's queue: a slow consumer under `latest` adds nothing to it.

User code never runs on a pipeline thread: `results()` and `aresults()` are read on the caller's
thread (aresults through asyncio.to_thread), each `on_result` callback on a thread of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.config import Config, apply_overrides, load_config, validate_config
from streamseg.errors import UserError
from streamseg.frames import NO_TRACK, Frame, Instances, SemanticResult
from streamseg.queues import END, BoundedQueue, Cancelled

log = logging.getLogger("streamseg")

POLICIES = ("block", "latest")
LATEST_DEPTH = 2  # a `latest` consumer holds at most this many results: a batch's frames arrive together
_START_LOCK = threading.Lock()


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view: the pipeline's arrays may still be in a sink's hands."""
    v = a.view()
    v.flags.writeable = False
    return v


# results ----------------------------------------------------------------------------------------
class InstanceResults:
    """One frame's detected objects in its pixel coordinates: parallel read-only arrays,
    sliceable by index or boolean mask, e.g. `inst[(inst.label == "person") & (inst.score > .5)]`.

    `masks` (K x H x W bool, at the frame's size) is made on first access, for the rows kept."""

    def __init__(self, inst: Instances, index: np.ndarray | None = None) -> None:
        self._inst, self._index = inst, index
        pick = (lambda a: _ro(a)) if index is None else (lambda a: _ro(a[index]))
        k = len(inst) if index is None else len(index)
        self.xyxy = pick(inst.xyxy)  # K x 4 float32, frame pixels
        self.score = pick(inst.score)  # K float32
        self.class_id = pick(inst.class_id)  # K int32, index into the model's labels
        self.label = pick(np.asarray(inst.labels, dtype=object).reshape(k if index is None else -1))  # K names
        self.group = pick(np.asarray(inst.groups, dtype=object).reshape(-1))  # K overlay groups (car, person) or None
        tid = inst.track_id if inst.track_id is not None else np.full(len(inst), NO_TRACK, np.int64)
        self.track_id = pick(tid)  # K int64; NO_TRACK (-1): in no track (yet), or tracking off
        self._masks: np.ndarray | None = None

    @property
    def masks(self) -> np.ndarray:
        """K x H x W bool at the frame's size, made when first asked for."""
        if self._masks is None:  # the decoder's crops pasted at the frame's size, the rows kept only
            kept = self._inst if self._index is None else self._inst[self._index]
            self._masks = _ro(kept.masks)
        return self._masks

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> InstanceResults:
        base = np.arange(len(self._inst)) if self._index is None else self._index
        return InstanceResults(self._inst, np.atleast_1d(base[index]))

    def __repr__(self) -> str:
        return f"InstanceResults({len(self)}: {', '.join(map(str, self.label))})"


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What the pipeline made of one frame. Arrays are numpy, read-only views."""

    stream: str  # the stream id (cam0, or the source's `id`)
    seq: int  # the frame's position in its stream (0-based, every decoded frame counted)
    pts_s: float  # presentation time in the stream, seconds
    capture_ns: int  # time.perf_counter_ns() clock: when it was captured (or read)
    image: np.ndarray  # the decoded frame, H x W x 3 BGR uint8, original size
    semantic: SemanticResult | None  # group_map H x W at the frame's size, .mask("road"); None: no semantic engine
    instances: InstanceResults | None  # None: no instance engine
    events: list = field(default_factory=list)  # the analytics events this frame raised ([]: no analytics)
    latency_ms: dict[str, float] = field(default_factory=dict)  # per stage, and end_to_end
    overlay: np.ndarray | None = None  # the drawn frame, when a sink shows pixels

    @classmethod
    def of(cls, f: Frame, handed_ns: int) -> FrameResult:
        sem = f.semantic
        if sem is not None:
            small = sem.small_group_map
            sem = replace(
                sem,
                label_map=_ro(sem.label_map),
                group_map=_ro(sem.group_map),
                small_group_map=None if small is None else _ro(small),
            )
        ms = {k: round(v, 3) for k, v in f.stage_ms().items()}
        ms["end_to_end"] = round((handed_ns - f.capture_ns) / 1e6, 3)
        return cls(
            stream=f.stream_id,
            seq=f.seq,
            pts_s=f.pts,
            capture_ns=f.capture_ns,
            image=_ro(f.image_bgr),
            semantic=sem,
            instances=None if f.instances is None else InstanceResults(f.instances),
            events=list(getattr(f, "events", None) or []),  # Frame.events: the analytics stage's
            latency_ms=ms,
            overlay=None if f.overlay_bgr is None else _ro(f.overlay_bgr),
        )


# consumers --------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Handed:
    frame: Frame
    at_ns: int | None = None  # when it was in the queue (the pipeline's part of its latency ends)


class Consumer:
    """One consumer of results behind its own bounded queue. In the ledger it is a sink (the
    fanout's duck type: index, label, offered, written, dropped): offered = delivered + dropped,
    `consumer:<name>` when its `latest` queue pushed a result out, `consumer_closed:<name>` for
    what came after it left (a `break`)."""

    def __init__(self, name: str, policy: str | None, depth: int | None, fn=None, on_error: str = "log") -> None:
        if policy not in (None, *POLICIES):
            raise UserError(f"consumer {name!r}: policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        if on_error not in ("log", "stop"):
            raise UserError(f"consumer {name!r}: on_error must be 'log' or 'stop', not {on_error!r}")
        if depth is not None and depth < 1:
            raise UserError(f"consumer {name!r}: depth must be >= 1")
        self.name = self.label = name
        self.policy, self.depth, self.fn, self.on_error = policy, depth, fn, on_error
        self.queue = BoundedQueue(1, name=f"consumer:{name}", on_drop=self._queue_dropped)
        self.index, self.fanout = -1, None
        self.offered = self.written = 0
        self.dropped: collections.Counter = collections.Counter()
        self.closed = False
        self.drained = threading.Event()  # nothing more will reach the user: every offered frame finished
        self.callback_errors = 0
        self.stop_error: BaseException | None = None  # on_error="stop": the exception that ended the run

    def attach(self, index: int, fanout, offline: bool, block_depth: int) -> None:
        """The pipeline's outlets are being wired: the policy for its mode, a place in the ledger."""
        self.policy = self.policy or ("block" if offline else "latest")
        self.queue.policy = "block" if self.policy == "block" else "drop_oldest"
        self.queue.maxsize = self.depth or (block_depth if self.policy == "block" else LATEST_DEPTH)
        self.index, self.fanout = index, fanout
        fanout.sinks.append(self)

    def put(self, f: Frame) -> None:
        """On the pipeline's overlay thread: hand `f` (or END) over (block, or push the oldest out)."""
        if f is END:
            self.queue.put(END)
            return
        h = _Handed(f)
        self.queue.put(h)
        h.at_ns = time.perf_counter_ns()

    def take(self) -> FrameResult | None:
        """On the consumer's thread: the next result, or None once the run is over for it."""
        try:
            h = self.queue.get()
        except Cancelled:  # the run aborted
            h = END
        if h is END:
            self.drained.set()
            return None
        now = time.perf_counter_ns()
        at = now if h.at_ns is None else min(h.at_ns, now)  # None: taken before put() returned
        r = FrameResult.of(h.frame, at)  # before done(): the last outlet's done() frees the pixels
        self.fanout.done(self, h.frame, at_ns=at)
        return r

    def close(self) -> None:
        """The reader left: what is queued, and all that follows, is dropped (counted)."""
        self.closed = True
        self.queue.discard()
        self.drained.set()

    def _queue_dropped(self, h: _Handed) -> None:
        self.fanout.done(self, h.frame, "consumer_closed" if self.closed else "consumer")

    def serve(self, stop: Callable[[], None]) -> None:
        """An on_result consumer's own thread: call `fn` on each result. An exception is logged
        with its traceback once, counted, and the run goes on (on_error="stop": the run stops)."""
        while (r := self.take()) is not None:
            try:
                self.fn(r)
            except Exception as e:
                self.callback_errors += 1
                if self.callback_errors == 1:
                    log.exception("consumer %s: the callback raised (logged once, counted in the report)", self.name)
                if self.on_error == "stop":
                    self.stop_error = e
                    self.close()
                    stop()
                    return

    def describe(self) -> dict:
        with self.fanout.lock if self.fanout else contextlib.nullcontext():
            frames = {"offered": self.offered, "delivered": self.written, "dropped": dict(sorted(self.dropped.items()))}
        return {
            "kind": "callback" if self.fn else "iterator",
            "policy": self.policy,
            "depth": self.queue.maxsize,
            "frames": frames,
            "callback_errors": self.callback_errors,
        }


def add_consumer(pipe, name: str, policy, depth, fn=None, on_error: str = "log") -> Consumer:
    if pipe.background is not None:
        raise RuntimeError("add consumers before the run starts (results, aresults, start or wait)")
    if any(c.name == name for c in pipe.consumers):
        raise UserError(f"two consumers are named {name!r}: give one of them another name=")
    pipe.consumers.append(Consumer(name, policy, depth, fn, on_error))
    return pipe.consumers[-1]


def iterate(pipe, c: Consumer) -> Iterator[FrameResult]:
    """`results()`: leaving the loop early (break, an exception) stops the run as SIGINT does;
    either way the loop ends with the run over: files finalized, report complete."""
    finished = False
    try:
        while (r := c.take()) is not None:
            yield r
        finished = True
    finally:
        if not finished:
            c.close()
            stop_unless_over(pipe)
        pipe.wait()


async def aiterate(pipe, c: Consumer) -> AsyncIterator[FrameResult]:
    """`aresults()`: as `iterate`, each wait on a worker thread, so the event loop keeps running."""
    finished = False
    try:
        await asyncio.to_thread(pipe.start)
        while (r := await asyncio.to_thread(c.take)) is not None:
            yield r
        finished = True
    finally:
        if not finished:
            c.close()
            stop_unless_over(pipe)
        await asyncio.to_thread(pipe.wait)


def stop_unless_over(pipe) -> None:
    if pipe.last_report is None:
        pipe.stop()


# the run on a thread of its own -------------------------------------------------------------------
class Background:
    """`Pipeline.run()` on a background thread: start-up errors reach the caller of `start()`,
    each callback consumer gets a thread, the report (and plot) files of the config are written
    when the run is over, and leaving stops the run as SIGINT does."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.result = None  # the pipeline's RunResult
        self.error: BaseException | None = None
        self.raised = False
        self.thread = threading.Thread(target=self._run, name="streamseg-run", daemon=True)
        self.callbacks = [
            threading.Thread(target=c.serve, args=(pipe.stop,), name=f"consumer-{c.name}", daemon=True)
            for c in pipe.consumers
            if c.fn is not None
        ]
        self.thread.start()
        for t in self.callbacks:
            t.start()

    def ready(self) -> None:
        """Block until every stage runs; a start-up error (a bad source, sink, model) raises here."""
        while not self.pipe.running.wait(0.05) and self.thread.is_alive():
            pass
        if not self.pipe.running.is_set():
            self.wait()

    def _run(self) -> None:
        try:
            self.result = self.pipe.run()
        except BaseException as e:
            self.error = e
        finally:
            for c in self.pipe.consumers:  # no END will come now: readers stop waiting
                if not c.queue.ended:
                    c.queue.cancel()
        save_outputs(self.pipe)

    def wait(self):
        interrupted = None
        while True:
            try:
                while self.thread.is_alive():
                    self.thread.join(0.1)
                for t in self.callbacks:
                    t.join()
                break
            except KeyboardInterrupt as e:
                if interrupted is not None:  # a second ^C: abort, as the CLI does
                    self.pipe.abort(e)
                    raise
                interrupted = e  # the first: drain and finish, then say so
                self.pipe.stop()
        if interrupted is not None:
            raise interrupted
        errors = [self.error] + [c.stop_error for c in self.pipe.consumers]
        if (err := next((e for e in errors if e is not None), None)) is not None and not self.raised:
            self.raised = True  # once: leaving the `with` after wait() raised it does not raise it again
            raise err
        return self.result

    def close(self) -> None:
        for c in self.pipe.consumers:
            if c.fn is None and not c.drained.is_set():
                c.close()
        if self.thread.is_alive():
            stop_unless_over(self.pipe)
        self.wait()


def leave(pipe) -> None:
    """Leaving the `with` block: stop a run that still goes (as SIGINT does) and wait for it."""
    if pipe.background is not None:
        pipe.background.close()
    elif pipe.consumers:
        log.warning("the run was never started: results(), aresults(), start() or wait() starts it")


def start(pipe) -> Background:
    """Start `pipe` in the background once (a second call finds it started); return when it runs."""
    with _START_LOCK:
        if pipe.background is None:
            pipe.background = Background(pipe)
    pipe.background.ready()
    return pipe.background


def save_outputs(pipe) -> None:
    """The report (and plot) files the config names, as `streamseg run` writes them."""
    m, report = pipe.cfg.metrics, pipe.last_report
    if report is None:
        return
    try:
        if m.report:
            from streamseg.outputs import write_report

            write_report(Path(m.report), report)
        if m.plot:
            from streamseg.plots import latency_plot

            latency_plot(pipe.recorder.series(), m.plot, title=f"{report['frames']['out']} frames")
    except OSError as e:
        log.error("cannot write the run's report or plot: %s", e)


def load(config: str | Path | dict | Config, sources, sinks, overrides: dict[str, Any]) -> Config:
    """`Pipeline.from_config`'s arguments -> a validated Config (`streamseg run`'s overrides)."""
    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = validate_config(config)
    else:
        cfg = load_config(config)
    known = ("semantic", "instance", "backend", "precision", "max_frames", "report", "plot", "mode")
    if unknown := sorted(set(overrides) - set(known)):
        raise UserError(f"unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
    src = [s if isinstance(s, str) else str(s) for s in sources] if sources else None
    cfg = apply_overrides(cfg, sources=src, sinks=[str(s) for s in sinks] if sinks else None, **overrides)
    cfg.metrics.progress = False
    cfg.metrics.summary = False
    return cfg
