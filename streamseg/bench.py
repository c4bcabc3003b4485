"""`streamseg bench`: how close the pipeline comes to its engines, how much it beats the loop
a user would write, and what latency a live camera sees at a given load - in one run.

Parts (each repeated `reps` times, variants alternating so drift hits all alike; median
and spread reported):

1. engines only: both engines back to back on frames decoded and preprocessed
   beforehand, batch 1 - the ceiling;
2. naive baseline: read a frame, run both models (pre/infer/post), draw, write - one
   thread, the same loaded engines, into the same H.264 file sink the pipeline gets;
3. pipeline, offline: into null:// for every batch size x stream count of the sweep,
   and into the H.264 file (first batch size, one stream) for the naive ratio;
4. live load sweep: the source paced (realtime, drop oldest) at 50..150% of the capacity,
   the rate a live run paced at 150% of (3)'s offline rate put out (what the pipeline
   sustains live): end-to-end p50/p90/p99, per-stage p50/p99, drop rate at each load.

Every rate counts from the frame a tenth into its run to the last (`steady_rate`).

Output in `--out`: bench.json (everything, with machine info and thread settings),
bench.md (the headline table) and PNG plots (latency CDF per stage, throughput vs batch
size and streams, latency vs load).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from streamseg.config import Config, validate_config


def cdf(values_ms: np.ndarray, points: int = 200) -> tuple[list[float], list[float]]:
    """(latency, share of frames at or below it): the empirical CDF, thinned to `points` steps."""
    v = np.sort(np.asarray(values_ms, np.float64))
    if v.size == 0:
        return [], []
    idx = np.unique(np.linspace(0, v.size - 1, min(points, v.size)).round().astype(int))
    return v[idx].tolist(), ((idx + 1) / v.size).tolist()


CAPACITY_LOAD = 1.5  # the live run that measures the capacity is paced at this share of the offline rate
# live capacity: the highest source rate a live run keeps up with: drops at most this share...
LIVE_MAX_DROPS = 0.01
LIVE_MAX_P99_OVER_S = 3.0  # ...and e2e p99 at most this many service times S
SKIP_SHARE = 0.1  # throughput counts from the frame this share into a run: filling the pipeline is no rate


def steady_rate(done_s: np.ndarray | list[float]) -> float:
    """Frames per second once the run is under way: from the frame SKIP_SHARE into the run to the
    last (`done_s`: each frame's completion time). A short run's rate over its whole span mostly
    says how long the pipeline took to fill (measured: 120 frames 34-37 frames/s, 240 frames
    38.7, of the same pipeline); every variant is counted the same way."""
    t = np.sort(np.asarray(done_s, np.float64))
    k = int(len(t) * SKIP_SHARE)
    return (len(t) - 1 - k) / (t[-1] - t[k]) if len(t) - 1 > k and t[-1] > t[k] else 0.0


def spread(values: list[float]) -> dict:
    """Median and spread of repeated measurements."""
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def machine_info(**extra) -> dict:
    """The machine a figure came from: CPU model, cores, library versions (and `extra`)."""
    import cv2
    import onnxruntime

    from streamseg.cpu import cpu_features

    features = cpu_features()
    info = {
        "host": platform.node(),
        "cpu": features.model,
        "cpu_flags": features.describe(),  # the flags precision and speed depend on (bf16, VNNI, AMX)
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import openvino

        info["openvino"] = openvino.__version__
    except ImportError:
        pass
    return {**info, **extra}


def machine(cfg: Config) -> dict:
    return machine_info(
        cv_threads=cfg.pipeline.cv_threads,
        engine_threads={
            t: getattr(cfg.engines, t).threads for t in ("semantic", "instance") if getattr(cfg.engines, t)
        },
    )


class Bench:
    def __init__(self, cfg: Config, out: Path, *, log=print) -> None:
        self.cfg = cfg
        self.b = cfg.bench
        self.out = out
        self.log = log
        self.source = cfg.sources[0].uri if cfg.sources else self.b.source
        from streamseg.cpu import available_cores

        self.cores = available_cores()

    # building blocks ------------------------------------------------------------------
    def _engines_cfg(self) -> dict:
        return {
            t: getattr(self.cfg.engines, t).model_dump()
            for t in ("semantic", "instance")
            if getattr(self.cfg.engines, t)
        }

    def _pipeline(self, *, sinks, streams=1, batch=1, mode="offline", fps=None, frames=None, seconds=None):
        from streamseg.pipeline import Pipeline

        uri = self._uri(fps=fps, frames=frames)
        sources = [{"uri": uri, "id": f"s{i}", "mode": mode} for i in range(streams)]
        data = {
            "sources": sources,
            "engines": {**self._engines_cfg(), "cache_dir": self.cfg.engines.cache_dir},
            "pipeline": {
                **self.cfg.pipeline.model_dump(),
                "batch": {"max_size": batch, "max_wait_ms": self.b.max_wait_ms},
            },
            "overlay": self.cfg.overlay.model_dump(),
            "tracking": self.cfg.tracking.model_dump(),
            "sinks": sinks,
            "metrics": {"progress": False, "summary": False},
        }
        pipe = Pipeline(validate_config(data))
        if seconds is not None:  # a live run: stop it after `seconds`
            import threading

            timer = threading.Timer(seconds, pipe.stop)
            timer.start()
            try:
                result = pipe.run()
            finally:
                timer.cancel()
        else:
            result = pipe.run()
        return result.report, pipe.recorder

    def _uri(self, fps=None, frames=None) -> str:
        """The source URI with its rate/length replaced (synthetic:// takes them as parameters)."""
        from urllib.parse import parse_qsl, urlencode

        uri = self.source
        if not uri.startswith("synthetic://"):
            return uri
        base, _, query = uri.partition("?")
        q = dict(parse_qsl(query))
        if fps is not None:
            q["fps"] = f"{fps:.3f}"
        q["frames"] = str(frames if frames is not None else self.b.frames)
        if self.b.prerender:
            q["loop"] = str(self.b.prerender)
        return f"{base}?{urlencode(q)}"

    def _read_frames(self, n: int) -> list[np.ndarray]:
        from streamseg.sources import open_source

        frames = []
        with open_source(self._uri(frames=n)) as src:
            while len(frames) < n and (f := src.read()) is not None:
                frames.append(f.image_bgr)
        return frames

    # the parts ------------------------------------------------------------------------
    def engines_only(self, prepared) -> float:
        models, xs = prepared
        done = []
        for i in range(len(xs[0])):
            for m, x in zip(models, xs, strict=True):
                m.infer(x[i])
            done.append(time.perf_counter())
        return steady_rate(done)

    def _models(self) -> list:
        """The config's engines, unloaded (enter them to load)."""
        from streamseg.models.configured import open_configured

        e = self.cfg.engines
        return [
            open_configured(ec, task=task, cache_dir=e.cache_dir)
            for task, ec in (("semantic", e.semantic), ("instance", e.instance))
            if ec is not None
        ]

    def _analytics_stage(self, models: list):
        """The config's analytics, or a representative one (a road zone and the ego corridor) when it
        has none; None when the models cannot serve it."""
        from streamseg.analytics import AnalyticsStage
        from streamseg.config import AnalyticsConfig
        from streamseg.errors import UserError

        cards = {m.task: list(m.card.groups) for m in models}
        cfg = self.cfg.analytics
        if cfg is None:
            road = [g for g in ("road", "lane") if g in cards.get("semantic", [])]
            objects = [g for g in ("person", "car") if g in cards.get("instance", [])]
            cfg = AnalyticsConfig.model_validate(
                {"zones": [{"name": "on_road", "groups": road}] if road else [], "corridor": {"objects": objects}}
            )
        try:
            return AnalyticsStage(cfg, cards.get("semantic"), cards.get("instance"))
        except UserError:
            return None

    def stage_costs(self, models: list, images: list[np.ndarray], h264: str, passes: int = 2) -> dict[str, float]:
        """CPU ms per frame of each stage alone, on the same frames, one stage at a time.
        `analytics`: the config's section, or a road zone and the ego corridor when it has none
        (so the machine limit is that of a pipeline with analytics on: a few ms of a frame's budget).

        Process CPU time (`time.process_time`: every thread, so an engine's intra-op pool and
        the encoder's threads count), not wall time: what the stage costs the machine, which is
        what bounds a pipeline that keeps every core busy."""
        from streamseg.cpu import CpuBudget, tune_malloc
        from streamseg.frames import Frame
        from streamseg.overlay import Overlay
        from streamseg.sinks import StreamInfo, open_sink
        from streamseg.sources import open_source
        from streamseg.tracking import Tracker

        # the pools as the pipeline sizes them, so a stage costs here what it costs there
        CpuBudget(self.cores).plan([m.task for m in models], opencv_threads=self.cfg.pipeline.cv_threads).apply()
        if self.cfg.pipeline.malloc_tuning:
            tune_malloc()  # as the pipeline runs (the warm-up run set it already)
        n = len(images)
        cpu = time.process_time
        costs: dict[str, float] = {}

        def keep(stage: str, t0: float) -> None:  # the warm pass: the least of the passes
            ms = round((cpu() - t0) * 1000 / n, 3)
            costs[stage] = min(costs.get(stage, ms), ms)

        # two passes over every stage: the first also pays for what a long run pays once (glibc
        # raising its mmap threshold after the first large frees, runtimes' first-call setup),
        # measured at 44 ms against 3.6 ms per frame for the instance decoder's first two passes
        for _ in range(passes):
            t0 = cpu()
            with open_source(self._uri(frames=n)) as src:
                got = 0
                while got < n and src.read() is not None:
                    got += 1
            keep("source", t0)
            frames = [Frame("s0", i, i / 30, img, time.perf_counter_ns()) for i, img in enumerate(images)]
            for m in models:
                t0 = cpu()
                prepared = [m.prepare([img]) for img in images]
                keep(f"preprocess.{m.task}", t0)
                t0 = cpu()
                outputs = [m.infer(x) for x, _ in prepared]
                keep(f"engine.{m.task}", t0)
                t0 = cpu()
                results = [m.decode(o, tr)[0] for o, (_, tr) in zip(outputs, prepared, strict=True)]
                keep(f"postprocess.{m.task}", t0)
                for f, r in zip(frames, results, strict=True):
                    if m.task == "semantic":
                        f.semantic = r
                    else:
                        f.instances = r
            if (stage := self._analytics_stage(models)) is not None:
                tracker = Tracker()
                for f in frames:  # events are kept per track: the frames get IDs first (not timed here)
                    if f.instances is not None:
                        tracker.update(f.instances, f.seq)
                t0 = cpu()
                for f in frames:
                    stage.process(f)
                keep("analytics", t0)
            overlay = Overlay(self.cfg.overlay)
            t0 = cpu()
            for f in frames:
                f.overlay_bgr = overlay.draw(f)
            keep("overlay", t0)
            h, w = images[0].shape[:2]
            t0 = cpu()
            with open_sink(h264) as sink:
                sink.open({"s0": StreamInfo("s0", 30.0, (w, h))})
                for f in frames:
                    sink.write(f)
            keep("encode.h264", t0)
            # results as JSON lines (no pixels): listed, not in the machine limits (neither sink writes them)
            t0 = cpu()
            with open_sink(str(Path(h264).with_suffix(".jsonl"))) as sink:
                sink.open({"s0": StreamInfo("s0", 30.0, (w, h))})
                for f in frames:
                    sink.write(f)
            keep("sink.jsonl", t0)
        return costs

    def _live_point(self, share: float, capacity: float, engine_ms: float, *, service_ms) -> dict:
        """One live run paced at `share` of `capacity`: latency, drops, and output rate against capacity."""
        b = self.b
        fps = capacity * share
        n = int(fps * b.load_seconds) + 1
        t0 = time.perf_counter()
        rep_, _ = self._pipeline(sinks=["null://"], batch=b.batch_sizes[0], mode="realtime", fps=fps, frames=n)
        wall = time.perf_counter() - t0
        fr = rep_["frames"]
        dropped = sum(fr["dropped"].values())
        e2e = rep_["latency_ms"]["end_to_end"]
        # the source's span, not the run's wall time (which adds start-up and the drain)
        span = n / fps if fps else wall
        cpu = rep_.get("cpu") or {}
        at = cpu.get("measured_ms", {}).get(cpu.get("schedule"))
        out_fps = fr["out"] / span if span else 0.0
        row = {
            "load": share,
            "source_fps": round(fps, 2),
            "frames_in": fr["in"],
            "frames_out": fr["out"],
            "dropped": fr["dropped"],
            "drop_rate": round(dropped / fr["in"], 4) if fr["in"] else None,
            "accounted": fr["in"] == fr["out"] + dropped,
            "out_fps": round(out_fps, 2),
            "out_fps_over_capacity": round(out_fps / capacity, 3) if capacity else None,
            "end_to_end": {k: e2e[k] for k in ("p50", "p90", "p99", "max")},
            "p99_over_engine_ms": round(e2e["p99"] / engine_ms, 2) if e2e["p99"] else None,
            "p99_over_service": round(e2e["p99"] / service_ms, 2) if e2e["p99"] and service_ms else None,
            # how fast the machine was right then: the engines' start-up timing of this very run
            # (ms per batch, the schedule it kept). A shared VM's slow spells show up here
            "engine_ms_at_start": at,
            "p99_over_engine_at_start": round(e2e["p99"] / at, 2) if e2e["p99"] and at else None,
            "stages": {s: {"p50": v["p50"], "p99": v["p99"]} for s, v in rep_["latency_ms"]["stages"].items()},
            # where the CPU went: each stage thread's own CPU time per frame, and the libraries' pools
            "cpu_ms_per_frame": rep_.get("cpu_ms_per_frame"),
        }
        self.log(
            f"load {share:.0%} ({fps:.1f} fps): e2e p50 {e2e['p50']} p99 {e2e['p99']} ms, "
            f"drops {row['drop_rate'] or 0:.1%}, out {row['out_fps_over_capacity']} x capacity, "
            f"in = out + dropped: {row['accounted']}"
        )
        return row

    def live_capacity(self, offline: float, engine_ms: float, service_ms: float) -> dict:
        """The highest source rate at which a live run drops <= LIVE_MAX_DROPS of its frames and
        keeps e2e p99 <= LIVE_MAX_P99_OVER_S x S: bisection over shares of the offline rate
        (`bench.capacity_search`, `capacity_steps` runs), repeated `sweep_reps` times for the spread.
        A single point at exactly 100% is no stable target (its drops swing with the machine);
        this is the rate the pipeline does carry live."""
        b = self.b

        def keeps_up(row: dict) -> bool:
            p99_s = row["p99_over_service"]
            return (row["drop_rate"] or 0) <= LIVE_MAX_DROPS and p99_s is not None and p99_s <= LIVE_MAX_P99_OVER_S

        searches = []
        for rep in range(b.sweep_reps):
            lo, hi = b.capacity_search
            probes, best = [], None
            for _ in range(b.capacity_steps):
                share = round((lo + hi) / 2, 4)
                row = self._live_point(share, offline, engine_ms, service_ms=service_ms)
                row["keeps_up"] = keeps_up(row)
                probes.append(row)
                if row["keeps_up"]:
                    lo, best = share, max(best or 0.0, share)
                else:
                    hi = share
            fps = best * offline if best else None
            self.log(
                f"live capacity, search {rep + 1}/{b.sweep_reps}: "
                + (f"{fps:.1f} frames/s ({best:.0%} of offline)" if fps else f"below {b.capacity_search[0]:.0%} of offline")
            )
            searches.append({"fps": round(fps, 2) if fps else None, "over_offline": best, "probes": probes})
        for s in searches:  # every probe kept up: the capacity is at least the bracket's top
            s["lower_bound"] = all(p["keeps_up"] for p in s["probes"])
        shares = [s["over_offline"] for s in searches if s["over_offline"]]
        fps_all = [s["fps"] for s in searches if s["fps"]]
        med = statistics.median(fps_all) if fps_all else None
        return {
            "bounds": {"drop_rate_max": LIVE_MAX_DROPS, "p99_over_service_max": LIVE_MAX_P99_OVER_S},
            "fps": spread(fps_all),
            "over_offline": spread(shares),
            # searches that found no rate inside the bracket at all: not in the median, said here
            "searches_below_bracket": sum(1 for s in searches if s["fps"] is None),
            # the spread of the searches around their median, as a share (goal: within +-10%)
            "spread_over_median": round(max(abs(v - med) for v in fps_all) / med, 3) if med else None,
            "searches": searches,
        }

    def naive(self, models: list, sink_uri: str, n: int) -> float:
        """The loop a user would write: read, infer both, draw, write; one thread (the same loaded engines)."""
        from streamseg.frames import Frame
        from streamseg.overlay import Overlay
        from streamseg.sinks import StreamInfo, open_sink
        from streamseg.sources import open_source

        overlay = Overlay(self.cfg.overlay)
        src = open_source(self._uri(frames=n))
        with src:
            sink = open_sink(sink_uri)
            with sink:
                sink.open({"s0": StreamInfo("s0", src.fps, src.size_wh)})
                done, count = [], 0
                while (sf := src.read()) is not None:
                    f = Frame("s0", count, sf.pts, sf.image_bgr, time.perf_counter_ns())
                    run_models(models, f)
                    f.overlay_bgr = overlay.draw(f)
                    sink.write(f)
                    done.append(time.perf_counter())
                    count += 1
            return steady_rate(done)

    def run(self) -> dict:
        with tempfile.TemporaryDirectory(prefix="streamseg-bench-") as tmp:
            return self._run(str(Path(tmp) / "bench.mp4"))

    def _run(self, h264: str) -> dict:
        b = self.b
        self.out.mkdir(parents=True, exist_ok=True)
        if b.warmup:
            self.log(f"warm-up: {b.warmup} frames through the pipeline")
            self._pipeline(sinks=["null://"], frames=b.warmup)
        # engines only: frames decoded and preprocessed once, outside the timing
        models = self._models()
        images = self._read_frames(b.frames)
        for m in models:
            m.__enter__()
        engines_desc = {m.task: m.describe() for m in models}
        try:
            xs = [[m.prepare([img])[0] for img in images] for m in models]
            for m, x in zip(models, xs, strict=True):
                m.infer(x[0])
            costs = self.stage_costs(models, images, h264)
            self.log(budget_lines(costs, self.cores))
            runs: dict[str, list[float]] = {}
            variants = ["engines_only", "naive_h264", "pipeline_h264"] + [
                f"pipeline_null_b{bs}_s{ns}" for bs in b.batch_sizes for ns in b.streams
            ]
            samples = None
            for rep in range(b.reps):
                order = variants if rep % 2 == 0 else variants[::-1]
                for v in order:
                    if v == "engines_only":
                        fps = self.engines_only((models, xs))
                    elif v == "naive_h264":
                        fps = self.naive(models, h264, b.frames)
                    elif v == "pipeline_h264":
                        rep_, rec = self._pipeline(sinks=[h264], batch=b.batch_sizes[0])
                        fps = steady_rate(rec.series()["t_s"])
                    else:
                        bs, ns = (int(x[1:]) for x in v.split("_")[2:])
                        rep_, rec = self._pipeline(sinks=["null://"], batch=bs, streams=ns)
                        fps = steady_rate(rec.series()["t_s"])
                        if bs == b.batch_sizes[0] and ns == b.streams[0] and samples is None:
                            samples = rec.samples()
                    runs.setdefault(v, []).append(fps)
                    self.log(f"rep {rep + 1}/{b.reps} {v}: {fps:.1f} frames/s")
        finally:
            for m in models:
                m.__exit__(None, None, None)
        throughput = {v: spread(r) for v, r in runs.items()}
        eng = throughput["engines_only"]["median"]
        best_null = max(
            (throughput[f"pipeline_null_b{bs}_s{ns}"]["median"], bs, ns) for bs in b.batch_sizes for ns in b.streams
        )
        ratios = {
            "pipeline_null_over_engines_only": round(
                statistics.median(
                    p / q
                    for p, q in zip(
                        runs[f"pipeline_null_b{b.batch_sizes[0]}_s{b.streams[0]}"], runs["engines_only"], strict=True
                    )
                ),
                3,
            ),
            # per repetition, like the ratio above: each run against the engines run beside it
            "best_pipeline_null_over_engines_only": round(
                statistics.median(
                    p / q
                    for p, q in zip(
                        runs[f"pipeline_null_b{best_null[1]}_s{best_null[2]}"], runs["engines_only"], strict=True
                    )
                ),
                3,
            ),
            "best_config": {"batch": best_null[1], "streams": best_null[2]},
            "pipeline_h264_over_naive_h264": round(
                statistics.median(p / q for p, q in zip(runs["pipeline_h264"], runs["naive_h264"], strict=True)), 3
            ),
        }
        limits = machine_limits(costs, self.cores)
        ratios["pipeline_null_over_machine_limit"] = round(
            throughput[f"pipeline_null_b{b.batch_sizes[0]}_s{b.streams[0]}"]["median"] / limits["null"], 3
        )
        ratios["pipeline_h264_over_machine_limit"] = round(throughput["pipeline_h264"]["median"] / limits["h264"], 3)
        # live load sweep, paced at shares of the measured capacity (one stream, the config's batch)
        offline = throughput[f"pipeline_null_b{b.batch_sizes[0]}_s1"]["median"] if 1 in b.streams else best_null[0]
        engine_ms = 1000.0 / eng
        # the capacity the sweep is paced at is what the pipeline sustains live: the output rate of a
        # live run paced well past the offline rate (offline, deeper queues absorb what live drops)
        self.log(f"capacity: a live run paced at {CAPACITY_LOAD:.0%} of the offline {offline:.1f} frames/s")
        capacity_run = self._live_point(CAPACITY_LOAD, offline, engine_ms, service_ms=None)
        capacity = capacity_run["out_fps"]
        self.log(f"capacity: {capacity:.1f} frames/s sustained live")
        lone = self._live_point(b.service_load, capacity, engine_ms, service_ms=None)
        service_ms = lone["end_to_end"]["p50"]
        self.log(f"service time S (e2e p50 of a lone frame, {b.service_load:.0%} load): {service_ms} ms")
        loads = []
        for rep in range(b.sweep_reps):
            for share in b.loads:
                row = self._live_point(share, capacity, engine_ms, service_ms=service_ms)
                row["rep"] = rep
                loads.append(row)
        live_cap = self.live_capacity(offline, engine_ms, service_ms)
        sweep_summary = {
            f"{share:g}": {
                "p99_ms": spread([r["end_to_end"]["p99"] for r in loads if r["load"] == share]),
                "p99_over_service": spread([r["p99_over_service"] for r in loads if r["load"] == share]),
                "p99_over_engine_at_start": spread(
                    [r["p99_over_engine_at_start"] for r in loads if r["load"] == share and r["p99_over_engine_at_start"]]
                ),
                "engine_ms_at_start": spread(
                    [r["engine_ms_at_start"] for r in loads if r["load"] == share and r["engine_ms_at_start"]]
                ),
                "drop_rate": spread([r["drop_rate"] for r in loads if r["load"] == share]),
                "out_fps_over_capacity": spread([r["out_fps_over_capacity"] for r in loads if r["load"] == share]),
            }
            for share in b.loads
        }
        result = {
            "benchmark": "streamseg bench",
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": machine(self.cfg),
            "source": self.source,
            "prerender": b.prerender if self.source.startswith("synthetic://") else 0,
            "frames": b.frames,
            "reps": b.reps,
            "engines": engines_desc,
            "engine_ms_per_frame": round(engine_ms, 2),
            "stage_cpu_ms_per_frame": costs,
            "machine_limit_fps": limits,
            "throughput_fps": throughput,
            "ratios": ratios,
            "capacity_fps": round(capacity, 2),
            "capacity_offline_fps": round(offline, 2),
            "capacity_run": capacity_run,
            "service_ms": service_ms,
            "service_run": lone,
            "load_sweep": loads,
            "load_sweep_summary": sweep_summary,
            "reps_sweep": b.sweep_reps,
            "live_capacity": live_cap,
            "latency_cdf_ms": {s: cdf(v) for s, v in (samples or {}).items()},
        }
        (self.out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
        (self.out / "bench.md").write_text(markdown(result))
        plots(result, self.out)
        return result


def run_models(models: list, f) -> None:
    """The naive loop's inference: each model on the frame's image, its result on the frame."""
    for m in models:
        (res,) = m.run([f.image_bgr])
        if m.task == "semantic":
            f.semantic = res
        else:
            f.instances = res


def machine_limits(costs: dict[str, float], cores: int) -> dict[str, float]:
    """The most frames/s this machine could give if every core did nothing but the stages' work:
    cores x 1000 / (CPU ms per frame summed over the stages the sink needs). `null`: no overlay
    and no encoder (null:// shows no pixels, so the pipeline draws nothing for it); `h264`: both."""
    work = sum(v for k, v in costs.items() if not k.startswith(("encode.", "sink.")) and k != "overlay")
    drawn = work + costs.get("overlay", 0.0) + costs.get("encode.h264", 0.0)
    return {
        "cores": cores,
        "null": round(cores * 1000 / work, 2) if work > 0 else float("inf"),
        "h264": round(cores * 1000 / drawn, 2) if work > 0 else float("inf"),
    }


def budget_lines(costs: dict[str, float], cores: int) -> str:
    """The CPU budget of one frame, stage by stage, as the bench prints it."""
    total = sum(v for k, v in costs.items() if not k.startswith("sink."))  # a results sink: listed, not summed
    lim = machine_limits(costs, cores)
    lines = ["CPU ms per frame, each stage alone (process CPU time, all threads):"]
    for k, v in costs.items():
        lines.append(f"  {k:<24} {v:7.2f} ms  {100 * v / total:5.1f}%")
    lines.append(
        f"  {'total':<24} {total:7.2f} ms -> machine limit {cores} cores x 1000 / sum = "
        f"{lim['null']:.1f} frames/s (null sink: no overlay, no encoder), {lim['h264']:.1f} (H.264 sink)"
    )
    src = costs.get("source", 0.0)
    if total and src / total > 0.2:
        lines.append(
            f"  note: the source alone is {100 * src / total:.0f}% of the budget: the load generator, not the "
            "pipeline, sets much of this limit (a pre-rendered or decoded source measures the pipeline)"
        )
    return "\n".join(lines)


def markdown(r: dict) -> str:
    m = r["machine"]
    t = r["throughput_fps"]
    lines = [
        f"# streamseg bench - {r['date']}",
        "",
        f"Machine: {m.get('cpu_flags', m['cpu'])}, {m['cores']} cores, host {m['host']}; engines: "
        + ", ".join(f"{k} {v['card']} on {v['backend']} {v['precision']}" for k, v in r["engines"].items())
        + f". Source: `{r['source']}`"
        + (f" ({r['prerender']} frames rendered once and replayed)" if r.get("prerender") else "")
        + f", {r['frames']} frames, {r['reps']} repetitions (median, min-max); rates count from the frame "
        + f"{SKIP_SHARE:.0%} into each run to the last (filling the pipeline is no rate).",
        "",
        "| variant | frames/s (median) | min - max |",
        "|---|---:|---:|",
    ]
    for name, s in t.items():
        lines.append(f"| {name} | {s['median']:.1f} | {s['min']:.1f} - {s['max']:.1f} |")
    ra = r["ratios"]
    lines += [
        "",
        "| ratio (measured in this run) | value |",
        "|---|---:|",
        f"| pipeline (null://) / engines only | {ra['pipeline_null_over_engines_only']:.2f} |",
        f"| best pipeline config (batch {ra['best_config']['batch']}, {ra['best_config']['streams']} streams) / engines only | {ra['best_pipeline_null_over_engines_only']:.2f} |",
        f"| pipeline / naive loop (same H.264 file sink) | {ra['pipeline_h264_over_naive_h264']:.2f} |",
        f"| pipeline (null://) / machine limit | {ra['pipeline_null_over_machine_limit']:.2f} |",
        f"| pipeline (H.264 file) / machine limit | {ra['pipeline_h264_over_machine_limit']:.2f} |",
        "",
        "CPU ms per frame of each stage, measured alone on the same frames (process CPU time):",
        "",
        "| stage | CPU ms per frame |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in r["stage_cpu_ms_per_frame"].items()),
        f"| machine limit ({r['machine_limit_fps']['cores']} cores x 1000 / sum; null: without overlay and encode) | "
        f"{r['machine_limit_fps']['null']:.1f} frames/s null, {r['machine_limit_fps']['h264']:.1f} H.264 |",
        "",
        f"Live load sweep (capacity {r['capacity_fps']:.1f} frames/s: what a live run paced at "
        f"{CAPACITY_LOAD:.0%} of the offline {r['capacity_offline_fps']:.1f} frames/s put out; "
        f"engines {r['engine_ms_per_frame']:.1f} ms per frame):",
        "",
        "| load | source fps | e2e p50 ms | p90 | p99 | p99 / engine time | p99 / S | out fps / capacity | dropped | in = out + dropped | engines at start, ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for row in r["load_sweep"]:
        e = row["end_to_end"]
        lines.append(
            f"| {row['load']:.0%} (run {row.get('rep', 0) + 1}) | {row['source_fps']:.1f} | {e['p50']} | {e['p90']} | "
            f"{e['p99']} | {row['p99_over_engine_ms']} | {row['p99_over_service']} | {row['out_fps_over_capacity']} | "
            f"{'-' if row['drop_rate'] is None else format(row['drop_rate'], '.1%')} | {'yes' if row['accounted'] else 'NO'} | "
            f"{row.get('engine_ms_at_start') or '-'} |"
        )
    lines += [
        "",
        f"Over {r['reps_sweep']} sweeps (median, min - max); S = {r['service_ms']} ms. \"engines at start\" is each run's "
        "own start-up timing of the engines (ms per batch): how fast the machine was during that run, so a sweep "
        "that ran in a shared machine's slow spell shows as one.",
        "",
        "| load | p99 ms | p99 / S | out fps / capacity | dropped | engines at start, ms | p99 / engines at start |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for share, sm in r["load_sweep_summary"].items():

        def f(x, pct=False):
            if x["median"] is None:
                return "-"
            fmt = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:g}")
            return f"{fmt(x['median'])} ({fmt(x['min'])} - {fmt(x['max'])})"

        lines.append(
            f"| {float(share):.0%} | {f(sm['p99_ms'])} | {f(sm['p99_over_service'])} | "
            f"{f(sm['out_fps_over_capacity'])} | {f(sm['drop_rate'], pct=True)} | "
            f"{f(sm['engine_ms_at_start'])} | {f(sm['p99_over_engine_at_start'])} |"
        )
    lc = r["live_capacity"]
    fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
    lines += [
        "",
        f"Live capacity: the highest source rate at which a live run drops <= {LIVE_MAX_DROPS:.0%} and keeps e2e p99 "
        f"<= {LIVE_MAX_P99_OVER_S:g} x S, by bisection ({len(lc['searches'])} searches; median, min - max):",
        "",
        "| live capacity, frames/s | / offline capacity | spread around the median |",
        "|---:|---:|---:|",
        f"| {fmt(lc['fps']['median'])} ({fmt(lc['fps']['min'])} - {fmt(lc['fps']['max'])}) | "
        f"{fmt(lc['over_offline']['median'])} ({fmt(lc['over_offline']['min'])} - {fmt(lc['over_offline']['max'])}) | "
        f"{'-' if lc['spread_over_median'] is None else format(lc['spread_over_median'], '.1%')} |",
        "",
        f"Searches that found no rate in the bracket: {lc['searches_below_bracket']}; searches whose every probe kept "
        f"up (the capacity is higher than found): {sum(s['lower_bound'] for s in lc['searches'])}.",
    ]
    return "\n".join(lines) + "\n"


def plots(r: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for stage, (xs, ys) in r["latency_cdf_ms"].items():
        if xs:
            ax.plot(np.maximum(xs, 0.01), ys, label=stage)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("share of frames")
    ax.set_title(f"latency CDF per stage ({r['machine']['host']})", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = r["throughput_fps"]
    keys = [k for k in t if k.startswith("pipeline_null_")]
    streams = sorted({int(k.split("_s")[1]) for k in keys})
    for ns in streams:
        ks = sorted((k for k in keys if k.endswith(f"_s{ns}")), key=lambda k: int(k.split("_b")[1].split("_")[0]))
        ax.plot(
            [int(k.split("_b")[1].split("_")[0]) for k in ks],
            [t[k]["median"] for k in ks],
            "o-",
            label=f"{ns} stream(s)",
        )
    ax.axhline(t["engines_only"]["median"], color="k", ls="--", label="engines only")
    ax.axhline(t["naive_h264"]["median"], color="r", ls=":", label="naive loop (H.264)")
    ax.set_xlabel("batch size")
    ax.set_ylabel("frames/s (all streams)")
    ax.set_title(f"throughput vs batch size and streams ({r['machine']['host']})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    first = [row for row in r["load_sweep"] if row.get("rep", 0) == 0]  # one sweep as lines, every sweep's p99 as dots
    loads = [row["load"] * 100 for row in first]
    for q in ("p50", "p90", "p99"):
        ax.plot(loads, [row["end_to_end"][q] for row in first], "o-", label=f"end to end {q} (sweep 1)")
    ax.plot(
        [row["load"] * 100 for row in r["load_sweep"]],
        [row["end_to_end"]["p99"] for row in r["load_sweep"]],
        "k.",
        label="p99, every sweep",
    )
    ax2 = ax.twinx()
    ax2.bar(loads, [100 * (row["drop_rate"] or 0) for row in first], width=6, alpha=0.25, color="gray")
    ax2.set_ylabel("dropped (% of frames in)")
    ax.set_xlabel("load (% of measured capacity)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"latency vs load ({r['machine']['host']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "latency_vs_load.png", dpi=110)
    plt.close(fig)


def summary_line(r: dict) -> str:
    ra = r["ratios"]
    return (
        f"pipeline/engines {ra['pipeline_null_over_engines_only']:.2f} (best {ra['best_pipeline_null_over_engines_only']:.2f}), "
        f"pipeline/naive {ra['pipeline_h264_over_naive_h264']:.2f}"
    )


__all__ = ["Bench", "cdf", "machine_info", "spread"]
