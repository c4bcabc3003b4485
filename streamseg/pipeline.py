"""The pipeline: wires the stages (streamseg.stages) with bounded queues and threads.

    source thread (one per stream)  --stream queue-->  inference thread
        SourceStage                     (block, or keep   Batcher.next_batch() -> InferStage
                                        the newest)
                                  --postprocess queue-->  postprocess thread: PostprocessStage
                                  --overlay queue-->  overlay thread: OverlayStage
                                  --sink queue (one per sink)-->  sink threads: SinkStage

Every queue is bounded. In `offline` mode they block, so nothing is dropped; live and
realtime streams keep their newest frame instead (a paced source that can skip is pulled,
so it renders only what the engines will take), hand-offs between stages hold one item, and every sink
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

import numpy as np

from streamseg import codecs
from streamseg import report as reports
from streamseg.analytics import analytics_stage
from streamseg.backends import resolve_backend
from streamseg.batching import Batcher
from streamseg.config import Config, SinkConfig
from streamseg.cpu import CpuBudget, CpuPlan, EngineRunner, plan_engines, tune_malloc
from streamseg.errors import UserError
from streamseg.latency import LatencyRecorder
from streamseg.models import SegModel
from streamseg.models.configured import open_configured
from streamseg.overlay import Overlay
from streamseg.queues import END, BoundedQueue, Cancelled
from streamseg.sinks import Sink, StreamInfo, open_sink
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
    """Build with a validated Config; `run()` blocks until done and returns the report."""

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
        self.recorder = LatencyRecorder()
        self.errors = ErrorLog()
        self.fanout = SinkFanout(self.recorder)
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self.queues: list[BoundedQueue] = []
        self.streams: list[SourceStage] = []
        self.models: dict[str, SegModel] = {}
        self.sinks: list[SinkStage] = []
        self.post_stage: PostprocessStage | None = None
        self.infer_stage: InferStage | None = None
        self.overlay_stage: OverlayStage | None = None
        self.analytics_stage = None  # AnalyticsStage with an `analytics:` section: on the overlay's thread
        self.interrupted = False
        self.last_report: dict | None = None
        self.cpu_plan: CpuPlan | None = None
        self.engine_runner = EngineRunner("sequential")
        self.thread_cpu_s: dict[str, float] = {}  # each stage thread's CPU time (thread_time)
        self._cpu0 = 0.0
        self.warmup: dict | None = None  # the warm-up pass at start-up: frames, ms, error

    # control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading sources; frames already read still come out. Safe from a signal handler."""
        self.interrupted = True
        self._stop.set()
        for s in self.streams:
            s.source.cancel()

    @property
    def mode(self) -> str:
        return "offline" if all(s.mode == "offline" for s in self.streams) else "live"

    @property
    def total_frames(self) -> int | None:
        """Frames the run will take in, when known (for progress bars)."""
        total = 0
        for s in self.streams:
            n = s.source.frame_count
            if self.cfg.max_frames is not None:
                n = self.cfg.max_frames if n is None else min(n, self.cfg.max_frames)
            if n is None or s.mode != "offline":
                return None
            total += n
        return total

    # run ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        if self.cfg.pipeline.malloc_tuning:  # before the runtimes and codecs start their threads
            tune_malloc()
        # codec threads from the CPU budget, before any decoder or encoder is made
        codecs.set_threads(CpuBudget.for_process(self.cfg.pipeline.cpu_cores).plan([]).codec_threads)
        with contextlib.ExitStack() as stack:
            stack.callback(gc.unfreeze)  # last out: what the run set aside (see _start_threads)
            self._open_sources(stack)
            sizes = [s.source.size_wh for s in self.streams if s.source.size_wh]
            self.models, self.cpu_plan = open_models(self.cfg, stack, sizes[0] if sizes else None)
            stack.callback(self.engine_runner.close)
            self.engine_runner.schedule = self.cpu_plan.schedule
            self.analytics_stage = analytics_stage(self.cfg, self.models)  # its config errors before any sink opens
            self._open_sinks(stack)
            start_metrics_server(self.cfg.metrics.prometheus, self, stack)
            threads = self._start_threads()
            try:
                self._wait(threads)
            except BaseException as e:  # KeyboardInterrupt from a second ^C: abort
                self._fatal = self._fatal or e
                self._cancel_all()
                for t in threads:
                    t.join(timeout=5)
            # leaving the ExitStack closes sinks (finalizing files), models and sources
        self.recorder.close_ledger(aborted=self._fatal is not None)
        report = self.last_report = self.report()
        if self._fatal is not None and not isinstance(self._fatal, KeyboardInterrupt):
            raise self._fatal
        return RunResult(report, list(self.errors.messages), self.interrupted)

    def _open_sources(self, stack: contextlib.ExitStack) -> None:
        ids = set()
        for i, sc in enumerate(self.cfg.sources):
            sid = sc.id or f"cam{i}"
            if sid in ids:
                raise UserError(f"two sources have the stream id {sid!r}")
            ids.add(sid)
            src = open_source(sc.uri, sc)
            stack.enter_context(src)
            mode = resolve_mode(sc.mode, src)
            self.streams.append(SourceStage(sid, sc, src, mode, self.recorder, self.errors, self.cfg.max_frames))
        for s in self.streams:
            s.stopping = self._stop
            if s.mode == "realtime" and s.source.live:
                raise UserError(f"{s.cfg.uri}: realtime pacing is for recordings; a live source is paced by itself")

    def _open_sinks(self, stack: contextlib.ExitStack) -> None:
        infos = {s.id: StreamInfo(s.id, s.source.fps, s.source.size_wh) for s in self.streams}
        configs = list(self.cfg.sinks) or ([] if self.extra_sinks else [SinkConfig(uri="null://")])
        depth = self.cfg.pipeline.queue_depth
        made = [(open_sink(sc.uri, sc), sc) for sc in configs] + [(s, None) for s in self.extra_sinks]
        for sink, sc in made:
            stack.enter_context(sink)
            sink.attach(self)
            sink.open(infos)
            stage = SinkStage(len(self.sinks), sink, sc, self.fanout, self.errors)
            if n := sum(s.label == stage.label or s.label.startswith(f"{stage.label} #") for s in self.sinks):
                stage.label = f"{stage.label} #{n + 1}"  # two null:// (or URIs alike once redacted): two entries
                stage.name = f"sink:{stage.label}"
            policy = "block" if self.mode == "offline" and sink.lossless else "drop_oldest"
            stage.queue = self._queue(
                depth if sink.lossless else min(depth, LOSSY_SINK_DEPTH),  # a file may absorb a hiccup
                policy,
                stage.name,
                on_drop=stage.queue_dropped,
            )
            self.sinks.append(stage)

    # threads --------------------------------------------------------------------------
    def _queue(self, depth: int, policy: str, name: str, **kw) -> BoundedQueue:
        q = BoundedQueue(depth, policy, name=name, **kw)  # type: ignore[arg-type]
        self.queues.append(q)
        return q

    def _start_threads(self) -> list[threading.Thread]:
        pc = self.cfg.pipeline
        cond = threading.Condition(threading.RLock())
        for s in self.streams:
            if s.mode == "offline":
                s.queue = self._queue(pc.queue_depth, "block", f"stream:{s.id}", cond=cond)
            else:
                drop = lambda f: self.recorder.drop(f, "queue_full")  # noqa: E731
                s.queue = self._queue(pc.live_queue_depth, "drop_oldest", f"stream:{s.id}", cond=cond, on_drop=drop)
            s.wait_ready = s.queue.wait_empty
        queues = {s.id: s.queue for s in self.streams}
        self.batcher = Batcher(queues, cond, pc.batch.max_size, pc.batch.max_wait_ms / 1000)
        live = self.mode != "offline"  # live hand-offs hold one item: a frame waits in one place only
        # engine outputs wait in post_queue for decoding: the engines start the next batch meanwhile
        self.post_queue = self._queue(1 if live else 2, "block", "postprocess")
        self.overlay_queue = self._queue(1 if live else max(2, pc.batch.max_size * 2), "block", "overlay")

        self.infer_stage = InferStage(self.cfg.engines, self.models, self.recorder, self.errors, self.engine_runner)
        self.infer_stage.pipelined = not live
        cfg = self.cfg
        self.post_stage = PostprocessStage(self.models, cfg.tracking, cfg.smoothing, self.recorder, self.errors)
        overlay = Overlay(self.cfg.overlay, stats=self.recorder.live)
        overlay.show_processing = not live  # offline: the queue wait in front of the engines is no latency of ours
        if "instance" in self.models:
            overlay.instance_groups = frozenset(self.models["instance"].card.groups)
        draw = any(s.sink.needs_pixels for s in self.sinks)
        self.overlay_stage = OverlayStage(self.cfg.overlay, overlay, draw, pc.cv_threads)

        sizes = [s.source.size_wh for s in self.streams if s.source.size_wh]
        warm = WarmUp(sizes, pc.batch.max_size) if pc.warmup and sizes and self.models else None

        def step(name, stage):  # the stage's warm-up step, run on its thread before its loop
            return functools.partial(getattr(warm, name), stage) if warm else None

        post, over = self.post_stage, self.overlay_stage
        if self.analytics_stage is not None:
            over = Chain(self.analytics_stage, over)
        work = [
            ("inference", step("infer", self.infer_stage), self._inference_loop),
            ("postprocess", step("postprocess", post), self._stage_loop, post, self.post_queue, self.overlay_queue.put),
            ("overlay", step("overlay", over), self._stage_loop, over, self.overlay_queue, self._to_sinks),
        ]
        work += [(f"sink-{i}", None, self._stage_loop, s, s.queue, None) for i, s in enumerate(self.sinks)]
        threads = [threading.Thread(target=self._guard(w, fn, *a), name=n, daemon=True) for n, w, fn, *a in work]
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
        sources = [
            threading.Thread(target=self._guard(None, self._source_loop, s), name=f"source-{s.id}", daemon=True)
            for s in self.streams
        ]
        for t in sources:
            t.start()
        return sources + threads

    def _guard(self, warm, fn, *args):
        """Run a stage (after its warm-up step, when it has one); an unexpected exception aborts
        the whole pipeline instead of hanging it."""

        def run():
            if warm is not None:
                warm()
            t0 = time.thread_time()  # the stage's CPU from here: the warm-up step apart
            try:
                fn(*args)
            except Cancelled:
                pass
            except BaseException as e:
                if self._fatal is None:
                    self._fatal = e
                self._cancel_all()
            finally:
                self.thread_cpu_s[threading.current_thread().name] = time.thread_time() - t0

        return run

    def _cancel_all(self) -> None:
        self._stop.set()
        for s in self.streams:
            s.source.cancel()
        for q in self.queues:
            q.cancel()

    def _wait(self, threads: list[threading.Thread]) -> None:
        last = -1
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.1)
                if t.is_alive():
                    break
            if self.on_progress is not None:
                n = self.recorder.frames_out
                if n != last:
                    self.on_progress(n, self.recorder.live())
                    last = n
        if self.on_progress is not None:
            self.on_progress(self.recorder.frames_out, self.recorder.live(max_age_s=0))

    # the loops: each feeds one stage from its queue and passes what it gives on --------------
    def _source_loop(self, s: SourceStage) -> None:
        try:
            while (frame := s.process()) is not None:
                s.queue.put(frame)
        finally:
            s.count_decode_errors()
            with contextlib.suppress(Cancelled):
                s.queue.put(END)

    def _inference_loop(self) -> None:
        stage, wait = self.infer_stage, self.mode == "offline"
        try:
            while True:
                # live: with the engines idle, waiting for batch-mates would only add latency
                frames = self.batcher.next_batch(block=not stage.in_flight, wait=wait or stage.in_flight)
                done = stage.process(frames) if frames else stage.flush()  # []: nothing waiting: finish
                for batch in done:
                    self.post_queue.put(batch)
                if frames is None:
                    break
        finally:
            with contextlib.suppress(Cancelled):
                self.post_queue.put(END)

    def _stage_loop(self, stage, inq: BoundedQueue, out: Callable | None) -> None:
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

    def _to_sinks(self, f) -> None:
        """Hand a frame (or END) to every sink's queue."""
        if f is END:
            for s in self.sinks:
                with contextlib.suppress(Cancelled):
                    s.queue.put(END)
            return
        self.fanout.offer(f)
        for s in self.sinks:
            s.queue.put(f)

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


def open_models(cfg: Config, stack: contextlib.ExitStack, frame_wh=None) -> tuple[dict[str, SegModel], CpuPlan]:
    """The configured engines, loaded (closed when `stack` is), their threads sized from the CPU
    budget for the schedule that measured faster here (`frame_wh`: the frames they will see)."""
    tasks = [t for t in ("semantic", "instance") if getattr(cfg.engines, t) is not None]
    confs = {t: getattr(cfg.engines, t) for t in tasks}
    schedule = cfg.pipeline.engine_schedule
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
    if len(tasks) > 1:
        log.info("engines run %s: %s", plan.schedule, plan.why)
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
