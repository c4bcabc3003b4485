"""The pipeline: sources -> batcher -> inference -> overlay -> sinks, in threads.

    source thread (one per stream)  --stream queue-->  inference thread
        decode, stamp                   (block or         batcher.next_batch(): round robin,
                                        drop oldest)      max_size / max_wait
                                                          preprocess, engines
                                  --postprocess queue-->  postprocess thread
                                                          decode outputs, track, smooth
                                  --overlay queue-->  overlay thread
                                                          draw masks + HUD
                                  --sink queue (one per sink)-->  sink threads
                                                          write; the last sink to finish a
                                                          frame records its latency

Every queue is bounded. In `offline` mode they block, so nothing is dropped; live
and realtime streams drop their oldest queued frame instead, and so do all sink
queues in a live run (and a non-lossless sink's queue always), so latency stays
bounded and every drop is counted. Frames of one stream leave in the order they
came: one inference, one postprocess and one overlay thread, FIFO queues.

Stopping (end of sources, max_frames, stop() from a signal handler) ends the
sources; everything already decoded drains through, and the sinks are closed, so
files are finalized and the report is complete.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamseg.batching import Batcher
from streamseg.config import Config, SinkConfig, SourceConfig
from streamseg.errors import UserError
from streamseg.frames import Frame
from streamseg.latency import LatencyRecorder
from streamseg.models import SegModel, open_model
from streamseg.overlay import Overlay
from streamseg.queues import END, BoundedQueue, Cancelled
from streamseg.sinks import Sink, StreamInfo, open_sink
from streamseg.sources import Source, open_source, redact
from streamseg.tracking import SemanticSmoother, Tracker

log = logging.getLogger("streamseg")

LOSSY_SINK_DEPTH = 2  # a sink whose queue drops holds at most this many frames: its latency stays bounded


@dataclass
class _Stream:
    id: str
    cfg: SourceConfig
    source: Source
    mode: str  # offline | live | realtime
    queue: BoundedQueue | None = None
    frames: int = 0
    error: str | None = None


@dataclass
class _SinkSlot:
    """One sink behind its queue, with its own ledger: offered = written + sum(dropped)."""

    index: int
    sink: Sink
    queue: BoundedQueue
    failed: str | None = None
    offered: int = 0
    written: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)  # reason -> frames

    @property
    def label(self) -> str:
        return redact(self.sink.uri)

    def ledger(self) -> dict:
        return {"offered": self.offered, "written": self.written, "dropped": dict(sorted(self.dropped.items()))}


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
        self._stop = threading.Event()
        self._done_lock = threading.Lock()
        self._errors: list[str] = []
        self._reported_errors: set[str] = set()
        self.trackers: dict[str, Tracker] = {}  # per stream, made on first use (inference thread only)
        self.smoothers: dict[str, SemanticSmoother] = {}
        self._fatal: BaseException | None = None
        self._queues: list[BoundedQueue] = []
        self.streams: list[_Stream] = []
        self.models: dict[str, SegModel] = {}
        self.slots: list[_SinkSlot] = []
        self.interrupted = False
        self.last_report: dict | None = None

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
        cfg = self.cfg
        if cfg.pipeline.cv_threads:
            cv2.setNumThreads(cfg.pipeline.cv_threads)
        with contextlib.ExitStack() as stack:
            self._open_sources(stack)
            self._open_models(stack)
            self._open_sinks(stack)
            self._start_metrics_server(stack)
            threads = self._start_threads()
            try:
                self._wait(threads)
            except BaseException as e:  # KeyboardInterrupt from a second ^C: abort
                self._fatal = self._fatal or e
                self._cancel_all()
                for t in threads:
                    t.join(timeout=5)
            # leaving the ExitStack closes sinks (finalizing files), models and sources
        self._close_ledger()
        report = self.last_report = self.report()
        if self._fatal is not None and not isinstance(self._fatal, KeyboardInterrupt):
            raise self._fatal
        return RunResult(report, list(self._errors), self.interrupted)

    def _close_ledger(self) -> None:
        """Every thread is done: a frame still in flight was cut off by an abort (a second signal,
        a crashed stage) and counts as dropped `aborted`; on any other path none may be left."""
        if self._fatal is not None:
            self.recorder.drop_in_flight("aborted")
        elif n := self.recorder.drop_in_flight("lost"):
            log.error("%d frame(s) were neither written nor dropped (counted as dropped: lost)", n)
        if self.recorder.finished_twice:
            log.error("%d frame(s) were finished twice (counted once)", self.recorder.finished_twice)

    def _open_sources(self, stack: contextlib.ExitStack) -> None:
        ids = set()
        for i, sc in enumerate(self.cfg.sources):
            sid = sc.id or f"cam{i}"
            if sid in ids:
                raise UserError(f"two sources have the stream id {sid!r}")
            ids.add(sid)
            src = open_source(sc.uri, sc)
            stack.enter_context(src)
            self.streams.append(_Stream(sid, sc, src, resolve_mode(sc.mode, src)))
        for s in self.streams:
            if s.mode == "realtime" and s.source.live:
                raise UserError(f"{s.cfg.uri}: realtime pacing is for recordings; a live source is paced by itself")

    def _open_models(self, stack: contextlib.ExitStack) -> None:
        for task in ("semantic", "instance"):
            ec = getattr(self.cfg.engines, task)
            if ec is None:
                continue
            model = open_model(
                ec.card,
                backend=ec.backend,
                precision=ec.precision,
                threads=ec.threads,
                task=task,
                conf_threshold=ec.conf_threshold,
                iou_threshold=ec.iou_threshold,
                max_detections=ec.max_detections,
                cache_dir=self.cfg.engines.cache_dir,
                hint=ec.hint,
            )
            stack.enter_context(model)
            self.models[task] = model
            d = model.describe()
            log.info("%s engine: %s on %s %s (%s)", task, d["card"], d["backend"], d["precision"], d["why"])

    def _open_sinks(self, stack: contextlib.ExitStack) -> None:
        infos = {s.id: StreamInfo(s.id, s.source.fps, s.source.size_wh) for s in self.streams}
        configs = list(self.cfg.sinks) or ([] if self.extra_sinks else [SinkConfig(uri="null://")])
        depth = self.cfg.pipeline.queue_depth
        for sink in [open_sink(sc.uri, sc) for sc in configs] + self.extra_sinks:
            uri = sink.uri
            stack.enter_context(sink)
            sink.attach(self)
            sink.open(infos)
            policy = "block" if self.mode == "offline" and sink.lossless else "drop_oldest"
            slot = _SinkSlot(len(self.slots), sink, None)  # type: ignore[arg-type]
            slot.queue = BoundedQueue(
                depth if policy == "block" else min(depth, LOSSY_SINK_DEPTH),
                policy,
                name=f"sink:{redact(uri)}",
                on_drop=lambda f, s=slot: self._sink_dropped(s, f),
            )
            self.slots.append(slot)
            self._queues.append(slot.queue)

    # threads --------------------------------------------------------------------------
    def _start_threads(self) -> list[threading.Thread]:
        pc = self.cfg.pipeline
        cond = threading.Condition(threading.RLock())
        for s in self.streams:
            if s.mode == "offline":
                s.queue = BoundedQueue(pc.queue_depth, "block", name=f"stream:{s.id}", cond=cond)
            else:
                s.queue = BoundedQueue(
                    pc.live_queue_depth,
                    "drop_oldest",
                    name=f"stream:{s.id}",
                    cond=cond,
                    on_drop=lambda f: self.recorder.drop(f, "queue_full"),
                )
            self._queues.append(s.queue)
        self.batcher = Batcher(
            {s.id: s.queue for s in self.streams}, cond, pc.batch.max_size, pc.batch.max_wait_ms / 1000
        )
        live = self.mode != "offline"  # live hand-offs hold one item: a frame waits in one place only
        self.overlay_queue = BoundedQueue(1 if live else max(2, pc.batch.max_size * 2), "block", name="overlay")
        self._queues.append(self.overlay_queue)
        # engine outputs wait here for decoding: the engines start the next batch meanwhile
        self.post_queue = BoundedQueue(1 if live else 2, "block", name="postprocess")
        self._queues.append(self.post_queue)
        self.overlay = Overlay(self.cfg.overlay, stats=self.recorder.live)
        self._draw = any(slot.sink.needs_pixels for slot in self.slots)
        if "instance" in self.models:
            self.overlay.instance_groups = frozenset(g for g in self.models["instance"].card.groups)

        threads = [
            threading.Thread(target=self._guard(self._source_loop, s), name=f"source-{s.id}") for s in self.streams
        ]
        threads.append(threading.Thread(target=self._guard(self._inference_loop), name="inference"))
        threads.append(threading.Thread(target=self._guard(self._postprocess_loop), name="postprocess"))
        threads.append(threading.Thread(target=self._guard(self._overlay_loop), name="overlay"))
        threads += [
            threading.Thread(target=self._guard(self._sink_loop, slot), name=f"sink-{i}")
            for i, slot in enumerate(self.slots)
        ]
        for t in threads:
            t.daemon = True
            t.start()
        return threads

    def _guard(self, fn, *args):
        """Run a stage; an unexpected exception aborts the whole pipeline instead of hanging it."""

        def run():
            try:
                fn(*args)
            except Cancelled:
                pass
            except BaseException as e:
                if self._fatal is None:
                    self._fatal = e
                self._cancel_all()

        return run

    def _cancel_all(self) -> None:
        self._stop.set()
        for s in self.streams:
            s.source.cancel()
        for q in self._queues:
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

    # stages ------------------------------------------------------------------------------
    @staticmethod
    def _paced(s: _Stream) -> bool:
        """Is this stream played at its own rate by us (a recording behaving as a camera)?
        The one place that decides it."""
        return s.mode == "realtime"

    def _skipped(self, s: _Stream, n: int) -> None:
        """`n` frames became due while the engines were busy: passed over before they were
        decoded into the pipeline (no preprocess, no inference), counted in and dropped."""
        if n > 0:
            self.recorder.skipped(s.id, n, "queue_full")
            s.frames += n

    def _source_loop(self, s: _Stream) -> None:
        """Read, stamp and hand over one stream's frames. A paced stream is pulled: its next
        frame is read only when the engines took the last one, and frames that fell due
        meanwhile are passed over unread (`skip`) or unprocessed, so no work is spent on a
        frame that would be dropped. A live camera is read as fast as it delivers; its
        queue keeps the newest."""
        src, q = s.source, s.queue
        limit = self.cfg.max_frames
        pace = self._paced(s)
        period_ns = int(1e9 / src.fps) if src.fps else None
        skip = getattr(src, "skip", None)  # sources that can pass over frames without rendering them
        t0 = None
        waited = (0, 0)  # the last wait for the engines: (began, ended), perf_counter_ns
        handed = True  # a frame was handed over since that wait
        read_ns = 0.0  # how long a read takes (moving average): passing over frames by reading them
        # pays only for a source faster than its own rate
        errors_seen = 0
        try:
            while not self._stop.is_set() and (limit is None or s.frames < limit):
                if pace and handed:
                    w0 = time.perf_counter_ns()
                    q.wait_empty()
                    waited, handed = (w0, time.perf_counter_ns()), False
                    if t0 is not None and skip is not None and period_ns:
                        # every frame due before the newest one would only be dropped: pass them over
                        n = (waited[1] - t0) // period_ns - s.frames
                        if limit is not None:
                            n = min(n, limit - s.frames)
                        if n > 0 and (k := skip(n)) > 0:
                            self._skipped(s, k)
                            continue  # (fewer than n: the stream's end; the read below says so)
                t_cap = time.perf_counter_ns()
                try:
                    sf = src.read()
                except UserError as e:
                    s.error = str(e)
                    self._errors.append(f"source {s.id}: {e}")
                    break
                if sf is None:
                    break
                read_ns = 0.8 * read_ns + 0.2 * (time.perf_counter_ns() - t_cap) if read_ns else float(time.perf_counter_ns() - t_cap)
                if pace:
                    # a recording played at its own rate: the frame is "captured" at its due time
                    if t0 is None:
                        t0 = t_cap - int(sf.pts * 1e9)
                    due = t0 + int(sf.pts * 1e9)
                    now = time.perf_counter_ns()
                    # the next frame fell due before the engines were ready: a camera would have
                    # replaced this one by now (a source behind its own rate is never passed over)
                    if period_ns and due + period_ns <= waited[1] and read_ns < period_ns:
                        self._skipped(s, 1)
                        continue
                    if due > now and self._stop.wait((due - now) / 1e9):
                        break
                    t_cap = due
                elif sf.capture_ns is not None:
                    t_cap = sf.capture_ns
                frame = Frame(s.id, s.frames, sf.pts, sf.image_bgr, t_cap, truth=sf.truth)
                frame.stamp("decode")
                if src.decode_errors != errors_seen:
                    self.recorder.decode_error(src.decode_errors - errors_seen)
                    errors_seen = src.decode_errors
                self.recorder.frame_in(frame)
                s.frames += 1
                q.put(frame)
                handed = True
        finally:
            if src.decode_errors != errors_seen:
                self.recorder.decode_error(src.decode_errors - errors_seen)
            with contextlib.suppress(Cancelled):
                q.put(END)

    def _inference_loop(self) -> None:
        """Batches through preprocess, inference and decode. When every engine runs on a device
        stream (`overlaps`), one batch stays in flight: batch n+1 is prepared and submitted
        (its upload overlapping n's compute) before batch n is collected and decoded."""
        models = list(self.models.items())
        overlap = all(m.engine.overlaps for _, m in models)
        wait = self.mode == "offline"
        pending = None
        try:
            while True:
                # live: with the engines idle, waiting for batch-mates would only add latency
                batch = self.batcher.next_batch(block=pending is None, wait=wait or pending is not None)
                if not batch:  # None: the end; []: nothing waiting, so finish what is in flight
                    if pending is not None:
                        self._finish_batch(*pending)
                        pending = None
                    if batch is None:
                        break
                    continue
                submitted = self._submit_batch(batch, models)
                if pending is not None:
                    self._finish_batch(*pending)
                    pending = None
                if submitted is not None:
                    if overlap:
                        pending = submitted
                    else:
                        self._finish_batch(*submitted)
        finally:
            with contextlib.suppress(Cancelled):
                self.post_queue.put(END)

    def _postprocess_loop(self) -> None:
        """Decode engine outputs, track, smooth: on its own thread, so the engines are not kept
        waiting for it. One thread, FIFO: each stream's order is kept."""
        try:
            while (item := self.post_queue.get()) is not END:
                self._decode_batch(*item)
        finally:
            with contextlib.suppress(Cancelled):
                self.overlay_queue.put(END)

    def _engine_error(self, batch: list[Frame], e: Exception) -> None:
        """One bad batch must not end the run: its frames are dropped with the reason, once logged."""
        msg = f"{type(e).__name__}: {e}"
        with self._done_lock:  # inference and postprocess threads both report here
            first = msg not in self._reported_errors
            self._reported_errors.add(msg)
            if first:
                self._errors.append(f"engine error (frames dropped): {msg}")
        if first:
            log.error("engine error, dropping %d frame(s): %s", len(batch), msg)
        for f in batch:
            self.recorder.drop(f, "engine_error")

    def _submit_batch(self, batch: list[Frame], models):
        images = [f.image_bgr for f in batch]
        tickets = []
        try:
            prepared = [m.prepare(images) for _, m in models]
            t = time.perf_counter_ns()
            for f in batch:
                f.stamp("preprocess", t)
            for (_, m), (x, _) in zip(models, prepared, strict=True):
                tickets.append(m.submit(x))
        except Exception as e:
            for (_, m), tk in zip(models, tickets, strict=False):  # free what the other engines hold
                with contextlib.suppress(Exception):
                    m.collect(tk)
            self._engine_error(batch, e)
            return None
        return batch, models, prepared, tickets

    def _finish_batch(self, batch: list[Frame], models, prepared, tickets) -> None:
        """Collect a submitted batch's outputs and pass them on for decoding."""
        try:
            outputs = [m.collect(tk) for (_, m), tk in zip(models, tickets, strict=True)]
        except Exception as e:
            self._engine_error(batch, e)
            return
        t = time.perf_counter_ns()
        for f in batch:
            f.stamp("infer", t)
        self.post_queue.put((batch, models, prepared, outputs))

    def _decode_batch(self, batch: list[Frame], models, prepared, outputs) -> None:
        try:
            results = [m.decode(o, tr) for (_, m), o, (_, tr) in zip(models, outputs, prepared, strict=True)]
        except Exception as e:
            self._engine_error(batch, e)
            return
        for (task, _), res in zip(models, results, strict=True):
            for f, r in zip(batch, res, strict=True):
                setattr(f, "semantic" if task == "semantic" else "instances", r)
        for f in batch:  # in each stream's order: the batcher never reorders a stream
            self._temporal(f)
        t = time.perf_counter_ns()
        for f in batch:
            f.stamp("postprocess", t)
            self.overlay_queue.put(f)

    def _temporal(self, f: Frame) -> None:
        """Track instances and smooth the semantic map, per stream (part of postprocess)."""
        tc = self.cfg.tracking
        if f.instances is not None and tc.enabled:
            tracker = self.trackers.get(f.stream_id)
            if tracker is None:
                tracker = self.trackers[f.stream_id] = Tracker(high=tc.high_score, match_iou=tc.iou, max_age=tc.max_age)
            f.instances = tracker.update(f.instances, f.seq)
        sem = f.semantic
        if sem is not None:
            smoother = self.smoothers.get(f.stream_id)
            if smoother is None:
                smoother = self.smoothers[f.stream_id] = SemanticSmoother(self.cfg.smoothing.frames)
            small = sem.small_group_map if sem.small_group_map is not None else sem.group_map
            shown = smoother.smooth(small)
            if shown is not small:
                h, w = sem.group_map.shape
                full = shown if shown.shape == (h, w) else cv2.resize(shown, (w, h), interpolation=cv2.INTER_NEAREST)
                f.semantic = dataclasses.replace(
                    sem, group_map=full, small_group_map=shown if sem.small_group_map is not None else None
                )
            smoother.measure(shown)

    def _overlay_loop(self) -> None:
        try:
            while (f := self.overlay_queue.get()) is not END:
                if self._draw:  # no sink shows pixels (null://, jsonl): nothing to draw for
                    f.overlay_bgr = self.overlay.draw(f)
                f.stamp("overlay")
                f.sinks_pending = len(self.slots)
                f.written_ns = None
                f.sink_drop = None
                for slot in self.slots:
                    with self._done_lock:
                        slot.offered += 1
                    slot.queue.put(f)
        finally:
            for slot in self.slots:
                with contextlib.suppress(Cancelled):
                    slot.queue.put(END)

    def _sink_loop(self, slot: _SinkSlot) -> None:
        while (f := slot.queue.get()) is not END:
            if slot.failed is None:
                try:
                    slot.sink.write(f)
                    self._sink_done(slot, f)
                    continue
                except Exception as e:
                    slot.failed = f"{type(e).__name__}: {e}"
                    self._errors.append(f"sink {slot.label} failed: {slot.failed}")
                    log.error("sink %s failed, it gets no more frames: %s", slot.label, slot.failed)
            self._sink_done(slot, f, dropped="sink_failed")

    def _sink_dropped(self, slot: _SinkSlot, f: Frame) -> None:
        """The sink's queue pushed `f` out (a lossy queue, full): the frame is finished for that sink."""
        self._sink_done(slot, f, dropped="sink_queue")

    def _sink_done(self, slot: _SinkSlot, f: Frame, *, dropped: str | None = None) -> None:
        """One sink is through with `f` (wrote it, or `dropped` it for that reason). The last one
        finishes the frame: `out` when every sink wrote it, else dropped with the reason of the
        first sink (in config order) that did not, as `<reason>:<sink uri>`."""
        now = time.perf_counter_ns()
        with self._done_lock:
            if dropped is None:
                slot.written += 1
                f.written_ns = now
            else:
                slot.dropped[dropped] += 1
                if f.sink_drop is None or slot.index < f.sink_drop[0]:
                    f.sink_drop = (slot.index, f"{dropped}:{slot.label}")
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

    # live figures (preview page, /stats, /metrics) -------------------------------------------
    def _start_metrics_server(self, stack: contextlib.ExitStack) -> None:
        addr = self.cfg.metrics.prometheus
        if not addr:
            return
        from streamseg.web import WebServer

        host, _, port = addr.rpartition(":")
        if not port.isdigit():
            raise UserError(f"metrics.prometheus: expected HOST:PORT, got {addr!r}")
        server = WebServer(host or "127.0.0.1", int(port), self)
        try:
            server.start()
        except OSError as e:
            raise UserError(f"metrics.prometheus: cannot listen on {addr}: {e.strerror or e}") from None
        stack.callback(server.stop)
        log.info("Prometheus metrics at %smetrics", server.url)

    def live_stats(self) -> dict:
        live = self.recorder.live()
        counts = self.recorder.counts()
        return {
            "fps": live["fps"],
            "end_to_end": {"p50": live["p50"], "p99": live["p99"]},
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
                for s in self.streams
            },
            "engines": {
                task: f"{m.card.name} on {m.engine.backend} {m.engine.precision}" for task, m in self.models.items()
            },
        }

    def metric_samples(self) -> dict:
        counts = self.recorder.counts()
        samples = self.recorder.samples()
        return {
            **counts,
            "reconnects": {s.id: getattr(s.source, "reconnects", 0) for s in self.streams},
            "fps": self.recorder.live()["fps"],
            "stages": {k: v for k, v in samples.items() if k != "end_to_end"},
            "end_to_end": samples["end_to_end"],
            "sample_stride": self.recorder.sample_stride,
        }

    # report -------------------------------------------------------------------------------
    def report(self) -> dict:
        engines = {task: m.describe() for task, m in self.models.items()}
        extra = {
            "mode": self.mode if self.streams else None,
            "interrupted": self.interrupted,
            "sources": {
                s.id: {
                    **s.source.describe(),
                    "mode": s.mode,
                    "frames": s.frames,
                    "decode_errors": s.source.decode_errors,
                    "error": s.error,
                }
                for s in self.streams
            },
            "sinks": {
                redact(slot.sink.uri): {
                    **slot.sink.describe(),
                    "uri": redact(slot.sink.uri),
                    "frames": slot.ledger(),
                    "dropped": sum(slot.dropped.values()),
                    "error": slot.failed,
                }
                for slot in self.slots
            },
            "config": {
                "batch": self.cfg.pipeline.batch.model_dump(),
                "queue_depth": self.cfg.pipeline.queue_depth,
                "live_queue_depth": self.cfg.pipeline.live_queue_depth,
                "max_frames": self.cfg.max_frames,
                "overlay_drawn": getattr(self, "_draw", None),
            },
            "queues": {
                q.name: {"depth": q.maxsize, "policy": q.policy, "high_water": q.high_water} for q in self._queues
            },
            "errors": list(self._errors),
        }
        flicker = {sid: sm.flicker for sid, sm in self.smoothers.items() if sm.flicker is not None}
        if flicker:
            extra["flicker"] = {
                "smoothing_frames": self.cfg.smoothing.frames,
                "mean": round(float(np.mean(list(flicker.values()))), 5),
                "streams": {k: round(v, 5) for k, v in flicker.items()},
            }
        if self.trackers:
            extra["tracks"] = {sid: t.started for sid, t in self.trackers.items()}
        return self.recorder.report(engines, extra)
