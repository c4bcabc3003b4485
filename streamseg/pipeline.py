"""The pipeline: wires the stages (streamseg.stages) with bounded queues and threads.

    source thread (one per stream)  --stream queue-->  inference thread
        SourceStage                     (block, or keep   Batcher.next_batch() -> InferStage
                                        the newest)
                                  --postprocess queue-->  postprocess thread: PostprocessStage
                                  --overlay queue-->  overlay thread: OverlayStage
                                  --sink queue (one per sink)-->  sink threads: SinkStage
                                  --consumer queue (one each)-->  the user's threads (streamseg.api)

Every queue is bounded. In `offline` mode they block, so nothing is dropped; a live or
realtime stream queue holds a burst and drops a frame only when it could no longer be out
within the stream's latency budget (`late`; a paced source that can skip is pulled, so it
renders only what the engines will take), hand-offs between stages hold one item, and every sink
queue in a live run (and a lossy sink's queue always) drops its oldest frame, so latency
stays bounded and every drop is counted. Frames of one stream leave in the order they
came: one thread per stage, FIFO queues.

Stopping (end of sources, max_frames, stop() from a signal handler) ends the sources;
everything already decoded drains through, and the sinks are closed, so files are
finalized and the report is complete. On any stop path in = out + dropped: frames an
abort cut off count as dropped `aborted`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamseg import api, codecs
from streamseg import report as reports
from streamseg.analytics import analytics_stage
from streamseg.backends import resolve_backend
from streamseg.batching import Batcher
from streamseg.config import Config, SinkConfig
from streamseg.cpu import CpuBudget, CpuPlan, EngineRunner, plan_engines, tune_malloc
from streamseg.errors import UserError
from streamseg.latency import LatencyRecorder
from streamseg.models import SegModel
from streamseg.models.card import ungrouped_warning
from streamseg.models.configured import open_configured
from streamseg.outputs import check_outputs
from streamseg.overlay import Overlay
from streamseg.queues import END, BoundedQueue, Cancelled
from streamseg.sinks import Sink, StreamInfo, open_sink, sink_file
from streamseg.sources import Source, open_source
from streamseg.stages import (
    Chain,
    ErrorLog,
    InferStage,
    OverlayStage,
    PostprocessStage,
    SinkFanout,
    SinkStage,
    SourceStage,
    WarmUp,
)
from streamseg.uris import redact

log = logging.getLogger("streamseg")

LOSSY_SINK_DEPTH = 2  # a lossy sink (preview, stream) holds at most this many frames: its latency stays bounded


@dataclass
class RunResult:
    report: dict
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False


def resolve_mode(mode: str, source: Source) -> str:
    if mode == "auto":
        return "live" if source.live else "offline"
    return mode


class Pipeline:
    """A run of a validated Config: `run()` blocks until it is over and returns the report (the
    CLI's way); or, as a library, `with Pipeline.from_config(...) as run:` and `run.results()`,
    `run.aresults()`, `run.on_result(fn)` (streamseg.api: consumers beside the sinks)."""

    def __init__(
        self,
        cfg: Config,
        *,
        on_progress: Callable[[int, dict], None] | None = None,
        extra_sinks: list[Sink] | None = None,
    ) -> None:
        if not cfg.sources:
            raise UserError("no source given (use --source URI or `sources:` in the config)")
        self.cfg = cfg
        self.on_progress = on_progress
        self.extra_sinks = list(extra_sinks or [])  # sink objects made by the caller (eval)
        self.consumers: list[api.Consumer] = []  # Python consumers of results, beside the sinks
        self.recorder = LatencyRecorder()
        self.errors = ErrorLog()
        self.fanout = SinkFanout(self.recorder)
        self._stop = threading.Event()
        self.running = threading.Event()  # every stage runs (the sources too)
        self._fatal: BaseException | None = None
        self.queues: list[BoundedQueue] = []
        self.streams: list[SourceStage] = []
        self.models: dict[str, SegModel] = {}
        self.sinks: list[SinkStage] = []
        self.routes: dict[str, list] = {}  # stream id -> its outlets: the sinks that take it, every consumer
        self.infer_stage: InferStage | None = None
        self.post_stage: PostprocessStage | None = None
        self.overlay_stage: OverlayStage | None = None
        self.analytics_stage = None  # AnalyticsStage with an `analytics:` section: on the overlay's thread
        self.interrupted = False
        self.last_report: dict | None = None
        self.cpu_plan: CpuPlan | None = None
        self.engine_runner = EngineRunner("sequential")
        self.thread_cpu_s: dict[str, float] = {}  # each stage thread's CPU time (thread_time)
        self._cpu0 = 0.0
        self.warmup: dict | None = None  # the warm-up pass at start-up: frames, ms, error
        self.background: api.Background | None = None  # the library face's run thread

    # the library face (streamseg.api) -------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | dict | Config, *, sources=None, sinks=None, **overrides) -> Pipeline:
        """From a YAML file, a dict or a Config; `sources`/`sinks` (URIs) replace the config's;
        `overrides` are `streamseg run`'s options: max_frames, mode, backend, precision, report, ..."""
        cfg = api.load(config, sources, sinks, overrides)
        check_outputs(cfg)
        return cls(cfg)

    def results(self, *, name: str = "results", policy: str | None = None, depth: int | None = None):
        """FrameResults, per stream in order, on this thread; starts the run. `policy`: block (offline
        default) or latest (live default). Breaking out of the loop stops the run as SIGINT does."""
        c = api.add_consumer(self, name, policy, depth)
        self.start()
        return api.iterate(self, c)

    def aresults(self, *, name: str = "aresults", policy: str | None = None, depth: int | None = None):
        """`async for r in run.aresults()`: as results(), for asyncio programs."""
        return api.aiterate(self, api.add_consumer(self, name, policy, depth))

    def on_result(self, fn, *, name=None, policy=None, depth=None, on_error: str = "log") -> None:
        """Call `fn(result)` on a thread of its own; an exception is logged once and counted
        (on_error="stop": the run stops, and wait() raises it). Call before the run starts."""
        api.add_consumer(self, name or getattr(fn, "__name__", "callback"), policy, depth, fn, on_error)

    def start(self) -> None:
        """Run in the background; return once every stage runs (a start-up error raises here)."""
        api.start(self)

    def wait(self) -> RunResult:
        """Start if need be and block until the run is over, callbacks included (^C: stop and drain)."""
        return api.start(self).wait()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        """Leaving the block stops the run as SIGINT does and waits until all is written."""
        api.leave(self)

    # control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading sources; frames already read still come out. Safe from a signal handler."""
        self.interrupted = True
        self._stop.set()
        for s in self.streams:
            s.source.cancel()

    def abort(self, e: BaseException) -> None:
        """End now (a second ^C, a crashed stage): frames in flight count as dropped `aborted`."""
        self._fatal = self._fatal or e
        self._stop.set()
        for s in self.streams:
            s.source.cancel()
        for q in self.queues:
            q.cancel()

    @property
    def mode(self) -> str:
        return "offline" if all(s.mode == "offline" for s in self.streams) else "live"

    @property
    def total_frames(self) -> int | None:
        """Frames the run will take in, when known (for progress bars)."""
        return total_frames(self.streams, self.cfg.max_frames)

    # run ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        if self.cfg.pipeline.malloc_tuning:  # before the runtimes and codecs start their threads
            tune_malloc()
        # codec threads from the CPU budget, before any decoder or encoder is made
        codecs.set_threads(CpuBudget.for_process(self.cfg.pipeline.cpu_cores).plan([]).codec_threads)
        with contextlib.ExitStack() as stack:
            stack.callback(gc.unfreeze)  # last out: what the run set aside (see _start_threads)
            self.streams = open_streams(self.cfg, stack, self.recorder, self.errors, self._stop)
            sizes = [s.source.size_wh for s in self.streams if s.source.size_wh]
            self.models, self.cpu_plan = open_models(self.cfg, stack, sizes[0] if sizes else None)
            stack.callback(self.engine_runner.close)
            self.engine_runner.schedule = self.cpu_plan.schedule
            self.analytics_stage = analytics_stage(self.cfg, self.models)  # its config errors before any sink opens
            self._open_outlets(stack)  # and the metrics server, between the ports and the files
            threads = self._start_threads()
            self.running.set()
            try:
                join(threads, self.on_progress, self.recorder)
            except BaseException as e:  # KeyboardInterrupt from a second ^C: abort
                self.abort(e)
                for t in threads:
                    t.join(timeout=5)
            # leaving the ExitStack closes sinks (finalizing files), models and sources
        for c in self.consumers:  # a frame is out once every consumer has taken it too
            c.drained.wait()
        self.recorder.close_ledger(aborted=self._fatal is not None)
        report = self.last_report = self.report()
        if self._fatal is not None and not isinstance(self._fatal, KeyboardInterrupt):
            raise self._fatal
        return RunResult(report, list(self.errors.messages), self.interrupted)

    def _open_outlets(self, stack: contextlib.ExitStack) -> None:
        """The sinks, each behind its own queue, then the consumers: the frames' ways out. Every
        port and the display (and the metrics server) are taken before any file is opened for
        writing: a refused run leaves every existing file as it was."""
        made = open_sinks(self, stack)
        depth = self.cfg.pipeline.queue_depth
        for sink, sc in made:  # stages in the config's order
            stage = SinkStage(len(self.sinks), sink, sc, self.fanout, self.errors)
            if n := sum(s.label == stage.label or s.label.startswith(f"{stage.label} #") for s in self.sinks):
                stage.label = f"{stage.label} #{n + 1}"  # two null:// (or URIs alike once redacted): two entries
                stage.name = f"sink:{stage.label}"
            policy = "block" if self.mode == "offline" and sink.lossless else "drop_oldest"
            size = depth if sink.lossless else min(depth, LOSSY_SINK_DEPTH)  # a file may absorb a hiccup
            stage.queue = self._queue(size, policy, stage.name, on_drop=stage.queue_dropped)
            self.sinks.append(stage)
        for i, c in enumerate(self.consumers):
            c.attach(len(self.sinks) + i, self.fanout, self.mode == "offline", depth)
            self.queues.append(c.queue)
        self.routes = {s.id: [k for k in self.sinks if k.takes(s.id)] + self.consumers for s in self.streams}

    # threads --------------------------------------------------------------------------
    def _queue(self, depth: int, policy: str, name: str, **kw) -> BoundedQueue:
        q = BoundedQueue(depth, policy, name=name, **kw)  # type: ignore[arg-type]
        self.queues.append(q)
        return q

    def _start_threads(self) -> list[threading.Thread]:
        pc = self.cfg.pipeline
        cond = threading.Condition(threading.RLock())
        self.queues += stream_queues(self.streams, pc, cond, self.recorder)
        queues, b = {s.id: s.queue for s in self.streams}, pc.batch
        self.batcher = Batcher(queues, cond, b.max_size, b.max_wait_ms / 1000)
        live = self.mode != "offline"  # live hand-offs hold one item: a frame waits in one place only
        # engine outputs wait in post_queue for decoding: the engines start the next batch meanwhile
        self.post_queue = self._queue(1 if live else 2, "block", "postprocess")
        self.overlay_queue = self._queue(1 if live else max(2, pc.batch.max_size * 2), "block", "overlay")
        draw = drawn_streams(self.routes)
        self.infer_stage, self.post_stage, self.overlay_stage = make_stages(self, live, draw)
        sizes = [s.source.size_wh for s in self.streams if s.source.size_wh]
        warm = WarmUp(sizes, pc.batch.max_size) if pc.warmup and sizes and self.models else None

        def step(name, stage):  # the stage's warm-up step, run on its thread before its loop
            return functools.partial(getattr(warm, name), stage) if warm else None

        # the stages after inference, in order: (thread, warm-up step, loop, stage, its queue, where results go)
        infer, post, over = self.infer_stage, self.post_stage, self.overlay_stage
        if self.analytics_stage is not None:
            over = Chain(self.analytics_stage, over)
        work = [
            ("inference", step("infer", infer), run_engines, self.batcher, infer, self.post_queue, not live),
            ("postprocess", step("postprocess", post), feed, post, self.post_queue, self.overlay_queue.put),
            ("overlay", step("overlay", over), feed, over, self.overlay_queue, self._to_outlets),
        ]
        work += [(f"sink-{i}", None, feed, s, s.queue, None) for i, s in enumerate(self.sinks)]

        def guard(warm, fn, args):  # a thread's body: a crash aborts the run
            return functools.partial(guarded, warm, fn, args, self.abort, self.thread_cpu_s)

        threads = [threading.Thread(target=guard(w, fn, a), name=n, daemon=True) for n, w, fn, *a in work]
        for t in threads:
            t.start()
        if warm is not None:  # the sources start once the stages are warm
            give_up = lambda: self._stop.is_set() or not all(t.is_alive() for t in threads)  # noqa: E731
            self.warmup = warm.finish(give_up, self.models.values())
        # what start-up made (engines, libraries, caches) lives as long as the run: collected once
        # now and set aside, so the collector's full passes during the run walk only what the run
        # makes (a full pass over it all took 14-23 ms on the postprocess thread, mid-run)
        gc.collect()
        gc.freeze()
        self._cpu0 = time.process_time()  # the run's CPU from here: start-up (loading, probing, warm-up) apart
        sources = [threading.Thread(target=guard(None, read_stream, (s,)), name=f"source-{s.id}") for s in self.streams]
        for t in sources:
            t.daemon = True
            t.start()
        return sources + threads

    def _to_outlets(self, f) -> None:
        """Hand a frame to the sinks that take its stream and to every consumer (END: to all)."""
        if f is END:
            for q in [s.queue for s in self.sinks] + self.consumers:
                with contextlib.suppress(Cancelled):
                    q.put(END)
            return
        outlets = self.routes[f.stream_id]
        self.fanout.offer(f, outlets)
        for o in outlets:
            (o.queue if isinstance(o, SinkStage) else o).put(f)

    # live figures (preview page, /stats, /metrics) and the report: streamseg.report ----------
    @property
    def parts(self) -> list:
        """The stages, in the order a frame passes them."""
        rest = [self.infer_stage, self.post_stage, self.analytics_stage, self.overlay_stage] if self.overlay_stage else []
        rest = [p for p in rest if p is not None]
        return [*self.streams, *rest, *self.sinks]

    def live_stats(self) -> dict:
        return reports.live_stats(self)

    def metric_samples(self) -> dict:
        return reports.metric_samples(self)

    def report(self) -> dict:
        return reports.build_report(self)


# the loops: each feeds one stage from its queue and passes what it gives on ---------------------
def guarded(warm, fn, args, abort: Callable[[BaseException], None], cpu_s: dict[str, float]) -> None:
    """A stage thread's body: its warm-up step, then its loop; an unexpected exception aborts the
    whole pipeline instead of hanging it. The thread's CPU time (warm-up apart) goes to `cpu_s`."""
    if warm is not None:
        warm()
    t0 = time.thread_time()
    try:
        fn(*args)
    except Cancelled:
        pass
    except BaseException as e:
        abort(e)
    finally:
        cpu_s[threading.current_thread().name] = time.thread_time() - t0


def read_stream(s: SourceStage) -> None:
    try:
        while (frame := s.process()) is not None:
            s.queue.put(frame)
    finally:
        s.count_decode_errors()
        with contextlib.suppress(Cancelled):
            s.queue.put(END)


def run_engines(batcher: Batcher, stage: InferStage, out: BoundedQueue, offline: bool) -> None:
    try:
        while True:
            # live: with the engines idle, waiting for batch-mates would only add latency
            frames = batcher.next_batch(block=not stage.in_flight, wait=offline or stage.in_flight)
            done = stage.process(frames) if frames else stage.flush()  # []: nothing waiting: finish
            for batch in done:
                out.put(batch)
            if frames is None:
                break
    finally:
        with contextlib.suppress(Cancelled):
            out.put(END)


def feed(stage, inq: BoundedQueue, out: Callable | None) -> None:
    """Feed `stage` from `inq` until END; pass each result (or each of a list) to `out`."""
    try:
        while (item := inq.get()) is not END:
            res = stage.process(item)
            if out is not None and res is not None:
                for r in res if isinstance(res, list) else (res,):
                    out(r)
    finally:
        if out is not None:
            with contextlib.suppress(Cancelled):
                out(END)


def join(threads: list[threading.Thread], on_progress, recorder: LatencyRecorder) -> None:
    """Wait for every thread, telling `on_progress(frames_out, live figures)` as frames come out."""
    last = -1
    while alive := [t for t in threads if t.is_alive()]:
        alive[0].join(timeout=0.1)
        if on_progress is not None and (n := recorder.frames_out) != last:
            on_progress(n, recorder.live())
            last = n
    if on_progress is not None:
        on_progress(recorder.frames_out, recorder.live(max_age_s=0))


def stream_queues(streams: list[SourceStage], pc, cond: threading.Condition, recorder: LatencyRecorder) -> list:
    """Each stream's queue, sharing `cond` (the batcher waits on them all): offline, it blocks;
    live, it holds the frames of the stream's latency budget (a burst passes) and drops a frame
    only when it could no longer be out within that budget (`late`; `queue_full` if it overflows)."""
    full, late = (functools.partial(recorder.drop, reason=r) for r in ("queue_full", "late"))
    for s in streams:
        if s.mode == "offline":
            s.queue = BoundedQueue(pc.queue_depth, "block", name=f"stream:{s.id}", cond=cond)
        else:
            depth = pc.live_queue_depth or live_depth(s)
            s.queue = BoundedQueue(
                depth, "drop_oldest", name=f"stream:{s.id}", cond=cond, on_drop=full, expired=s.expired, on_expire=late
            )
        s.wait_ready = s.queue.wait_empty
    return [s.queue for s in streams]


def drawn_streams(routes: dict[str, list]) -> frozenset[str]:
    """The streams a sink that shows pixels takes: the only ones the overlay draws."""
    return frozenset(sid for sid, out in routes.items() if any(o.sink.needs_pixels for o in out if hasattr(o, "sink")))


def live_depth(s: SourceStage) -> int:
    """A live stream queue holds the frames of its latency budget (at least 2)."""
    period_ms = 1000 / s.source.fps if s.source.fps else 1000 / 30
    return max(2, int(s.budget_ns / 1e6 // period_ms) + 1)


def open_sinks(pipe: Pipeline, stack: contextlib.ExitStack) -> list[tuple[Sink, SinkConfig | None]]:
    """The run's sinks, opened in an order that loses nothing when one is refused: those that take
    a port, a screen or a network destination first, then the metrics server, then the files."""
    infos = {s.id: StreamInfo(s.id, s.source.fps, s.source.size_wh) for s in pipe.streams}
    cfg = pipe.cfg
    for sc in cfg.sinks:
        if unknown := set(sc.streams or ()) - set(infos):
            raise UserError(
                f"sink {redact(sc.uri)}: streams: no stream {', '.join(map(repr, sorted(unknown)))} "
                f"(streams: {', '.join(infos)})"
            )
    implicit = [] if pipe.extra_sinks or pipe.consumers else [SinkConfig(uri="null://")]
    made = [(open_sink(sc.uri, sc), sc) for sc in cfg.sinks or implicit] + [(s, None) for s in pipe.extra_sinks]
    for sink, _ in made:
        stack.enter_context(sink)
        sink.attach(pipe)
    for files in (False, True):
        for sink, sc in made:
            if (sink_file(sink.uri) is not None) == files:
                sink.open({k: v for k, v in infos.items() if sc is None or not sc.streams or k in sc.streams})
        if not files:
            start_metrics_server(cfg.metrics.prometheus, pipe, stack)
    return made


def total_frames(streams: list[SourceStage], max_frames: int | None) -> int | None:
    """Frames a run of these streams will take in, when known: offline streams of known length."""
    total = 0
    for s in streams:
        n = s.source.frame_count
        if max_frames is not None:
            n = max_frames if n is None else min(n, max_frames)
        if n is None or s.mode != "offline":
            return None
        total += n
    return total


def open_streams(
    cfg: Config, stack: contextlib.ExitStack, recorder, errors, stop: threading.Event
) -> list[SourceStage]:
    """Every configured source, opened (closed when `stack` is), as a SourceStage in its mode."""
    streams: list[SourceStage] = []
    for i, sc in enumerate(cfg.sources):
        sid = sc.id or f"cam{i}"
        if any(s.id == sid for s in streams):
            raise UserError(f"two sources have the stream id {sid!r}")
        src = open_source(sc.uri, sc)
        stack.enter_context(src)
        streams.append(SourceStage(sid, sc, src, resolve_mode(sc.mode, src), recorder, errors, cfg.max_frames))
    for s in streams:
        s.stopping = stop
        if s.mode == "realtime" and s.source.live:
            raise UserError(f"{s.cfg.uri}: realtime pacing is for recordings; a live source is paced by itself")
    return streams


def make_stages(pipe: Pipeline, live: bool, draw: frozenset[str]) -> tuple[InferStage, PostprocessStage, OverlayStage]:
    """The stages between the stream queues and the sinks, set for a live or an offline run."""
    cfg, models = pipe.cfg, pipe.models
    infer = InferStage(cfg.engines, models, pipe.recorder, pipe.errors, pipe.engine_runner)
    infer.pipelined = not live
    post = PostprocessStage(models, cfg.tracking, cfg.smoothing, pipe.recorder, pipe.errors)
    overlay = Overlay(cfg.overlay, stats=pipe.recorder.live)
    overlay.show_processing = not live  # offline: the queue wait in front of the engines is no latency of ours
    if "instance" in models:
        overlay.instance_groups = frozenset(models["instance"].card.groups)
    return infer, post, OverlayStage(cfg.overlay, overlay, draw, cfg.pipeline.cv_threads)


def open_models(cfg: Config, stack: contextlib.ExitStack, frame_wh=None) -> tuple[dict[str, SegModel], CpuPlan]:
    """The configured engines, loaded (closed when `stack` is), their threads sized from the CPU
    budget for the schedule that measured faster here (`frame_wh`: the frames they will see)."""
    tasks = [t for t in ("semantic", "instance") if getattr(cfg.engines, t) is not None]
    confs = {t: getattr(cfg.engines, t) for t in tasks}
    schedule = cfg.pipeline.engine_schedule
    for c in confs.values():  # an op TensorRT lacks: one line, before its runtime is looked for (issue 25 2f)
        if c.backend == "tensorrt":
            from streamseg.backends.tensorrt_check import refuse_missing_ops
            from streamseg.models import load_card

            card = load_card(c.card)
            refuse_missing_ops(card.model_path, card.name)
    backends = {resolve_backend(c.backend, c.precision)[0] for c in confs.values()}
    if schedule == "auto" and backends != {"onnxruntime"}:
        # TensorRT: a GPU's engines overlap on its streams; the CPU cores are not theirs. OpenVINO
        # schedules its own streams, and a second set of its compiled models, loaded and freed for
        # the start-up timing, made a later SIGINT crash the process (3 of 8 runs): not timed
        schedule = "sequential"
        fixed_why = f"not timed on {', '.join(sorted(backends - {'onnxruntime'}))}: sequential"
    else:
        fixed_why = "set in the config"

    def open_set(threads: dict[str, int]) -> list[SegModel]:
        opened: list[SegModel] = []
        try:
            for t in tasks:
                model = open_configured(
                    confs[t].model_copy(update={"threads": threads[t]}), task=t, cache_dir=cfg.engines.cache_dir
                )
                model.__enter__()
                opened.append(model)
        except BaseException:
            close_set(opened)
            raise
        return opened

    def close_set(ms: list[SegModel]) -> None:
        for m in ms:
            with contextlib.suppress(Exception):
                m.__exit__(None, None, None)

    def jobs(ms: list[SegModel]):
        w, h = frame_wh or (640, 360)
        grey = np.full((h, w, 3), 114, np.uint8)
        return [functools.partial(m.infer, m.prepare([grey])[0]) for m in ms]

    plan, opened, ms = plan_engines(
        CpuBudget.for_process(cfg.pipeline.cpu_cores),
        tasks,
        open_set,
        jobs,
        schedule=schedule,
        requested={t: c.threads for t, c in confs.items()},
        opencv_threads=cfg.pipeline.cv_threads,
        close=close_set,
        fixed_why=fixed_why,
    )
    models = {}
    for t, model in zip(tasks, opened, strict=True):
        model.batches = model.frames = model.engine.calls = model.engine.frames = (
            0  # the probe's runs are not the run's
        )
        stack.callback(model.__exit__, None, None, None)
        models[t] = model
        d = model.describe()
        log.info("%s engine: %s on %s %s (%s)", t, d["card"], d["backend"], d["precision"], d["why"])
        if warning := ungrouped_warning(model.card, list(getattr(model.decoder, "labels", []))):
            log.warning("warning: %s", warning)
    if len(tasks) > 1:
        log.debug("engines run %s: %s", plan.schedule, plan.why)  # -v: an internal decision
    return models, plan


def start_metrics_server(addr: str | None, provider, stack: contextlib.ExitStack) -> None:
    """`metrics.prometheus: HOST:PORT`: /metrics and /stats for the run's duration."""
    if not addr:
        return
    from streamseg.web import WebServer

    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise UserError(f"metrics.prometheus: expected HOST:PORT, got {addr!r}")
    server = WebServer(host or "127.0.0.1", int(port), provider)
    try:
        server.start()
    except OSError as e:
        raise UserError(f"metrics.prometheus: cannot listen on {addr}: {e.strerror or e}") from None
    stack.callback(server.stop)
    log.info("Prometheus metrics at %smetrics", server.url)
