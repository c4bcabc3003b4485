"""`streamseg bench --streams`: how many live cameras one machine carries (stream density).

For each camera profile (640x360 at 15 fps and 1280x720 at 10 fps by default), N live
synthetic cameras run through both models, with H.264 out for the first camera and JSONL
for all, for `seconds` each. The density of a variant is the largest N at which EVERY camera
drops at most DROP_MAX of its frames and keeps its e2e p99 within P99_OVER_S_MAX service
times S (S: the variant's own e2e p50 with one camera). N grows from 1 until a trial fails.

Settings: `bench.density` (profiles, max_streams, seconds, backends, batch_sizes, reps).
Variants, measured side by side in one run, each in processes of its own:
- `streamseg`: one process carrying all N cameras, per engine backend and batch size asked
  for (cross-stream batching must earn its keep: batch 1 against 2/4, ONNX Runtime and OpenVINO);
- `separate`: N streamseg processes, one camera each;
- `naive`: N processes of the loop a user writes around ONNX Runtime, one per camera (read the
  newest frame, run both models, draw, write; frames the loop fell behind on are skipped, as a
  camera's buffer keeps only the newest: counted as drops).

Each variant's search runs `reps` times (repetitions interleaved: every variant's first search,
then every variant's second, so a slow spell of a shared machine falls on all of them); a
variant's density is the median of its searches (the lower middle one for an even count: a
camera is carried or not), with each search's density and the spread (max - min) beside it.

Every trial has a CPU account (`cpu`): CPU ms per frame delivered, per stage (streamseg: each
stage thread's CPU from its run's report, the library pools beside them; the naive loop: its own
thread CPU per step, measured around the loop's steps), and as a share of the machine (cores x
seconds): `share_used`, what the trial's processes used over the cameras' span, and
`share_needed`, what delivering every frame of the N cameras would take at that cost per frame.
density.md puts the shares of the best one-process variant and the naive loop side by side at
the first N the one-process variant fails: where the machine's 100% goes.

Output in `--out`: density.json (`density` section, with the machine), density.md and
density.png (worst p99 / S against N, per variant and search).
"""

from __future__ import annotations

import functools
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from streamseg.config import Config

DROP_MAX = 0.01  # a camera keeps up: at most this share of its frames dropped...
P99_OVER_S_MAX = 3.0  # ...and its e2e p99 within this many service times
LOOP = 30  # frames each synthetic camera renders once and replays (the generator is not measured)
TRIAL_OVERHEAD_S = 3.0  # a trial's start-up and wind-down beyond its cameras' span (first run: 2-4 s)
TRIALS_PER_SEARCH = 3  # what the runtime estimate assumes (first run: density 2, then the failing 3)

# the stages of a CPU account, in frame order; a streamseg report's thread names map onto them
STAGES = ("read", "infer", "postprocess", "overlay", "write", "library pools")


@dataclass
class Camera:
    """One camera's figures in one trial."""

    frames_in: int
    frames_out: int
    p50: float | None
    p99: float | None

    @property
    def drop_rate(self) -> float:
        return round(1 - self.frames_out / self.frames_in, 9) if self.frames_in else 1.0

    def as_dict(self) -> dict:
        return {
            "in": self.frames_in,
            "out": self.frames_out,
            "drop_rate": round(self.drop_rate, 4),
            "p50": self.p50,
            "p99": self.p99,
        }


@dataclass
class Trial:
    """One trial's figures: each camera's, and the CPU ms the trial's processes spent, per stage
    (summed over the processes; start-up apart), with the processes' whole CPU beside it."""

    cameras: list[Camera]
    cpu_ms: dict[str, float]
    process_cpu_s: float | None = None  # the processes' CPU time, start-up included (rusage)


def stage_of(thread: str) -> str:
    """The account's stage of a streamseg report's `cpu_ms_per_frame` entry."""
    if thread.startswith("source-"):
        return "read"
    if thread.startswith("sink-"):
        return "write"
    if thread.startswith("preprocess+infer"):
        return "infer"
    if thread.startswith("library pools"):
        return "library pools"
    return thread  # postprocess, overlay, total


def report_cpu_ms(rep: dict) -> dict[str, float]:
    """A streamseg run's CPU ms per stage over the run (its report gives ms per frame read)."""
    n = rep["frames"]["in"]
    out: dict[str, float] = {}
    for thread, ms in (rep.get("cpu_ms_per_frame") or {}).items():
        out[stage_of(thread)] = out.get(stage_of(thread), 0.0) + ms * n
    return out


def add_ms(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in {**a, **b}}


def account(trial: Trial, n: int, fps: float, seconds: float, cores: int) -> dict:
    """CPU per frame delivered, per stage, and as a share of the machine (cores x seconds):
    `share_used` over the cameras' span, `share_needed` to deliver all n x fps frames/s."""
    out = sum(c.frames_out for c in trial.cameras)
    ms = trial.cpu_ms
    order = [k for k in (*STAGES, "total") if k in ms] + sorted(k for k in ms if k not in (*STAGES, "total"))
    per_frame = {k: round(ms[k] / out, 3) for k in order} if out else {}
    need = {k: round(v * n * fps / (1000 * cores), 4) for k, v in per_frame.items()}
    total_s = ms.get("total", 0.0) / 1000
    return {
        "frames_out": out,
        "ms_per_frame": per_frame,
        "share_needed": need,
        "share_used": round(total_s / (cores * seconds), 4) if seconds > 0 else None,
        "process_cpu_s": None if trial.process_cpu_s is None else round(trial.process_cpu_s, 2),
    }


def aggregate(name: str, searches: list[dict]) -> dict:
    """A variant over its repeated searches: the median density (the lower middle one for an even
    count), each search's, the spread (max - min) and the median S."""
    ds = [s["density"] for s in searches]
    services = [s["service_ms"] for s in searches if s["service_ms"] is not None]
    return {
        "variant": name,
        "density": statistics.median_low(ds),
        "densities": ds,
        "spread": max(ds) - min(ds),
        "service_ms": round(statistics.median(services), 3) if services else None,
        "searches": searches,
    }


def keeps_up(cams: list[Camera], service_ms: float) -> bool:
    return all(
        c.frames_in > 0 and c.drop_rate <= DROP_MAX and c.p99 is not None and c.p99 <= P99_OVER_S_MAX * service_ms
        for c in cams
    )


def bf16_here() -> bool:
    """May the bf16 variant run here: a CPU with bf16 and OpenVINO installed."""
    import importlib.util

    from streamseg.cpu import cpu_features

    return cpu_features().bf16 and importlib.util.find_spec("openvino") is not None


def camera_uri(size: str, fps: float, seed: int, frames: int) -> str:
    return f"synthetic://driving?size={size}&fps={fps:g}&seed={seed}&frames={frames}&loop={LOOP}"


class Density:
    def __init__(self, cfg: Config, out: Path, *, log=print) -> None:
        d = cfg.bench.density
        self.cfg, self.out, self.log = cfg, out, log
        self.profiles = [(p.split("@")[0], float(p.split("@")[1])) for p in d.profiles]
        self.max_streams, self.seconds = d.max_streams, d.seconds
        self.backends, self.batch_sizes, self.reps = d.backends, d.batch_sizes, d.reps
        self.bf16 = d.bf16 and bf16_here()

    @functools.cached_property
    def tmp(self) -> Path:
        """The trials' configs and reports: made with the first trial, removed at the end of the run."""
        return Path(tempfile.mkdtemp(prefix="streamseg-density-"))

    # one trial of each variant: N cameras -> their figures -------------------------------
    def _engines(self, backend: str | None = None, precision: str | None = None) -> dict:
        eng = {}
        for task in ("semantic", "instance"):
            ec = getattr(self.cfg.engines, task)
            if ec is not None:
                d = ec.model_dump()
                if backend:
                    d["backend"] = backend
                if precision:
                    d["precision"] = precision
                eng[task] = d
        return eng

    def _frames(self, fps: float) -> int:
        return max(10, int(fps * self.seconds))

    def _run_config(
        self, name: str, sources: list[dict], sinks: list, backend: str, batch: int, precision: str | None = None
    ) -> Path:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        cfg = {
            "sources": sources,
            "engines": {**self._engines(backend, precision), "cache_dir": self.cfg.engines.cache_dir},
            "pipeline": {**self.cfg.pipeline.model_dump(), "batch": {"max_size": batch, "max_wait_ms": 5.0}},
            "sinks": [{"uri": str(d / s["uri"]), **{k: v for k, v in s.items() if k != "uri"}} for s in sinks],
            "metrics": {"progress": False, "summary": False, "report": str(d / "report.json")},
        }
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        return d

    def _streamseg_trial(self, dirs: list[Path], process_cpu_s: float) -> Trial:
        """The cameras and the stage CPU of streamseg runs, from their reports."""
        cams, cpu = [], {}
        for d in dirs:
            rep = json.loads((d / "report.json").read_text())
            for sid, src in rep["sources"].items():
                st = rep["streams"].get(sid) or {}
                e2e = st.get("end_to_end") or {}
                cams.append(Camera(src["frames"], st.get("frames_out", 0), e2e.get("p50"), e2e.get("p99")))
            cpu = add_ms(cpu, report_cpu_ms(rep))
        return Trial(cams, cpu, process_cpu_s)

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def _wait_all(self, procs: list[subprocess.Popen], what: str) -> float:
        """Wait for a trial's processes; whatever happens, none outlives it (a leftover would eat
        the CPU of the next trial). Their CPU seconds, start-up included (this process's reaped
        children before and after: the trial's processes are the only ones it reaps meanwhile)."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0 = ru.ru_utime + ru.ru_stime
        try:
            for p in procs:
                _, err = p.communicate(timeout=self.seconds * 6 + 120)
                if p.returncode != 0:
                    last = err.strip().splitlines()[-1] if err.strip() else ""
                    raise RuntimeError(f"{what}: exit {p.returncode}: {last}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime - cpu0

    def trial_streamseg(
        self, n: int, size: str, fps: float, backend: str, batch: int, precision: str | None = None
    ) -> Trial:
        """One process carrying N cameras: H.264 out for the first, JSONL for all."""
        sources = [
            {"uri": camera_uri(size, fps, 100 + i, self._frames(fps)), "id": f"cam{i}", "mode": "live"}
            for i in range(n)
        ]
        sinks = [{"uri": "cam0.mp4", "streams": ["cam0"]}, {"uri": "all.jsonl"}]
        d = self._run_config(
            f"one-{backend}-{precision or 'cfg'}-b{batch}-{size}-n{n}", sources, sinks, backend, batch, precision
        )
        cpu_s = self._wait_all([self._spawn(["streamseg", "run", "-c", str(d / "config.yaml")])], "streamseg")
        return self._streamseg_trial([d], cpu_s)

    def trial_separate(self, n: int, size: str, fps: float, backend: str) -> Trial:
        """N streamseg processes, one camera each (the first also writes H.264)."""
        dirs = []
        for i in range(n):
            src = [{"uri": camera_uri(size, fps, 100 + i, self._frames(fps)), "id": f"cam{i}", "mode": "live"}]
            sinks = ([{"uri": "cam.mp4"}] if i == 0 else []) + [{"uri": "cam.jsonl"}]
            dirs.append(self._run_config(f"sep-{size}-n{n}-{i}", src, sinks, backend, 1))
        procs = [self._spawn(["streamseg", "run", "-c", str(d / "config.yaml")]) for d in dirs]
        cpu_s = self._wait_all(procs, "streamseg (one per camera)")
        return self._streamseg_trial(dirs, cpu_s)

    def trial_naive(self, n: int, size: str, fps: float) -> Trial:
        """N processes of the naive loop (ONNX Runtime, the config's cards), one per camera."""
        specs = []
        for i in range(n):
            d = self.tmp / f"naive-{size}-n{n}-{i}"
            d.mkdir(parents=True, exist_ok=True)
            spec = {
                "uri": camera_uri(size, fps, 100 + i, self._frames(fps)),
                "engines": self._engines("onnxruntime"),
                "sinks": ([str(d / "cam.mp4")] if i == 0 else []) + [str(d / "cam.jsonl")],
                "report": str(d / "report.json"),
            }
            (d / "spec.json").write_text(json.dumps(spec))
            specs.append(d)
        procs = [self._spawn(["streamseg.density", str(d / "spec.json")]) for d in specs]
        cpu_s = self._wait_all(procs, "naive loop")
        cams, cpu = [], {}
        for d in specs:
            r = json.loads((d / "report.json").read_text())
            cams.append(Camera(r["in"], r["out"], r["p50"], r["p99"]))
            cpu = add_ms(cpu, r["cpu_ms"])
        return Trial(cams, cpu, cpu_s)

    # the search --------------------------------------------------------------------------
    def search(self, name: str, trial, size: str, fps: float, cores: int) -> dict:
        """N = 1, 2, ... until a trial fails; S from the one-camera trial. `trial(n)` -> Trial."""
        trials, service, density = [], None, 0
        for n in range(1, self.max_streams + 1):
            t0 = time.perf_counter()
            try:
                tr = trial(n)
                error = None
            except Exception as e:  # a crashed trial fails that N; its reason is kept
                tr, error = Trial([], {}), f"{type(e).__name__}: {e}"
            cams = tr.cameras
            if n == 1 and cams:
                service = cams[0].p50
            ok = bool(cams) and service is not None and keeps_up(cams, service)
            worst = max((c.p99 for c in cams if c.p99 is not None), default=None)
            trials.append(
                {
                    "n": n,
                    "keeps_up": ok,
                    "worst_p99_ms": worst,
                    "worst_p99_over_s": round(worst / service, 2) if worst and service else None,
                    "worst_drop_rate": round(max((c.drop_rate for c in cams), default=1.0), 4),
                    "wall_s": round(time.perf_counter() - t0, 1),
                    "cameras": [c.as_dict() for c in cams],
                    "cpu": account(tr, n, fps, self._frames(fps) / fps, cores) if cams else None,
                    "error": error,
                }
            )
            self.log(
                f"{name} {size}@{fps:g}: {n} camera(s) -> "
                + ("keeps up" if ok else f"no ({error or 'bounds'})")
                + (f", worst p99 {worst} ms" if worst else "")
            )
            if not ok:
                break
            density = n
        return {"service_ms": service, "density": density, "trials": trials}

    def variants(self, size: str, fps: float) -> list[tuple[str, object]]:
        """The variants of one profile, in the order measured: (name, trial(n) -> Trial)."""
        out: list[tuple[str, object]] = [
            (
                f"streamseg ({be}, batch {bs})",
                lambda n, be=be, bs=bs: self.trial_streamseg(n, size, fps, be, bs),
            )
            for be in self.backends
            for bs in self.batch_sizes
        ]
        if self.bf16:
            bs = min(self.batch_sizes)
            out.append(
                (
                    f"streamseg (openvino bf16, batch {bs})",
                    lambda n: self.trial_streamseg(n, size, fps, "openvino", bs, "bf16"),
                )
            )
        be0 = self.backends[0]
        out.append((f"streamseg, one process per camera ({be0})", lambda n: self.trial_separate(n, size, fps, be0)))
        out.append(("naive loop, one process per camera", lambda n: self.trial_naive(n, size, fps)))
        return out

    @property
    def n_variants(self) -> int:
        return len(self.backends) * len(self.batch_sizes) + 2 + self.bf16

    def estimate_s(self) -> tuple[float, float]:
        """The run's wall time: expected (TRIALS_PER_SEARCH trials a search) and at most (every
        search up to max_streams)."""
        searches = self.reps * self.n_variants
        trial_s = sum(self._frames(fps) / fps + TRIAL_OVERHEAD_S for _, fps in self.profiles)  # one per profile
        return searches * min(TRIALS_PER_SEARCH, self.max_streams) * trial_s, searches * self.max_streams * trial_s

    def profile(self, size: str, fps: float, cores: int) -> dict:
        """Every variant's search, `reps` times (interleaved), and the profile's ratios."""
        variants = self.variants(size, fps)
        searches: dict[str, list[dict]] = {name: [] for name, _ in variants}
        for rep in range(self.reps):
            for name, trial in variants:
                self.log(f"search {rep + 1}/{self.reps}: {name}")
                searches[name].append(self.search(name, trial, size, fps, cores))
        return summarize_profile(size, fps, [aggregate(name, searches[name]) for name, _ in variants], cores)

    def run(self) -> dict:
        from streamseg.bench import machine

        expected, most = self.estimate_s()
        self.log(
            f"density: {len(self.profiles)} profile(s) x {self.n_variants} variants x "
            f"{self.reps} search(es), {self.seconds:g} s a trial: about {expected / 60:.0f} min "
            f"({TRIALS_PER_SEARCH} trials a search), at most {most / 60:.0f} min (every search to {self.max_streams})"
        )
        m = machine(self.cfg)
        profiles = [self.profile(size, fps, m["cores"]) for size, fps in self.profiles]
        result = {
            "benchmark": "streamseg bench --streams",
            "machine": m,
            "density": {
                "bounds": {"drop_rate_max": DROP_MAX, "p99_over_service_max": P99_OVER_S_MAX},
                "seconds": self.seconds,
                "reps": self.reps,
                "default_batch": self.cfg.pipeline.batch.max_size,
                "profiles": profiles,
            },
        }
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "density.json").write_text(json.dumps(result, indent=1) + "\n")
        (self.out / "density.md").write_text(markdown(result))
        plot(result, self.out / "density.png")
        return result


def summarize_profile(size: str, fps: float, variants: list[dict], cores: int) -> dict:
    """One profile's variants (aggregated over their searches) and the ratios the issue asks for:
    the best one-process variant over the naive loop and over one process per camera."""
    # the ratios compare like with like: fp32 (the naive loop's); bf16 is listed beside them
    fp32 = [v for v in variants if v["variant"].startswith("streamseg (") and "bf16" not in v["variant"]]
    one = max(fp32, key=lambda v: v["density"])
    bf16 = next((v for v in variants if "bf16" in v["variant"]), None)
    naive = next(v for v in variants if v["variant"].startswith("naive"))["density"]
    sep = next(v for v in variants if v["variant"].startswith("streamseg, one process per camera"))["density"]
    return {
        "size": size,
        "fps": fps,
        "variants": variants,
        "best_one_process": one["variant"],
        "one_process_over_naive": round(one["density"] / naive, 2) if naive else None,
        "one_process_over_separate": round(one["density"] / sep, 2) if sep else None,
        "bf16_over_naive": round(bf16["density"] / naive, 2) if bf16 and naive else None,
        "where_the_share_goes": share_table(variants, one, fps, cores),
    }


def failing_trial(v: dict) -> dict | None:
    """The first failing trial of the variant's first search whose density is its median one."""
    s = next(s for s in v["searches"] if s["density"] == v["density"])
    return next((t for t in s["trials"] if not t["keeps_up"] and t["cpu"]), None)


def share_table(variants: list[dict], one: dict, fps: float, cores: int) -> dict | None:
    """Where the machine goes at N*, the first N the best one-process variant fails: per stage, CPU
    ms per frame delivered (each variant's own first failing trial) x N* x fps / cores, for it and
    the naive loop. None when the one-process variant never failed (or its failing trial crashed)."""
    at = failing_trial(one)
    if at is None:
        return None
    n_star, out = at["n"], {"n": at["n"], "fps_needed": round(at["n"] * fps, 2), "variants": {}}
    for v in (one, next(v for v in variants if v["variant"].startswith("naive"))):
        t = failing_trial(v)
        if t is None:
            continue
        per = t["cpu"]["ms_per_frame"]
        out["variants"][v["variant"]] = {
            "measured_at_n": t["n"],
            "ms_per_frame": per,
            "share_at_n": {k: round(ms * n_star * fps / (1000 * cores), 4) for k, ms in per.items()},
        }
    return out


def representative(v: dict) -> dict:
    """The variant's first search whose density is its median one: the trials the tables show."""
    return next(s for s in v["searches"] if s["density"] == v["density"])


def best_batch(profiles: list[dict]) -> tuple[int, int, int] | None:
    """The batch size of the one-process variant that carried the most cameras (median) in most
    profile x backend pairs, a tie going to the smaller batch (no batch-mates to wait for):
    (batch, pairs it was best in, pairs)."""
    wins: dict[int, int] = {}
    pairs = 0
    for p in profiles:
        by_backend: dict[str, dict[int, int]] = {}
        for v in p["variants"]:
            if v["variant"].startswith("streamseg (") and ", batch " in v["variant"]:
                be, _, bs = v["variant"][len("streamseg (") : -1].partition(", batch ")
                by_backend.setdefault(be, {})[int(bs)] = v["density"]
        for sizes in by_backend.values():
            if len(sizes) > 1:
                pairs += 1
                top = max(sizes.values())
                best = min(b for b, d in sizes.items() if d == top)
                wins[best] = wins.get(best, 0) + 1
    if not wins:
        return None
    best = max(sorted(wins), key=lambda b: wins[b])
    return best, wins[best], pairs


def share_lines(p: dict) -> list[str]:
    w = p.get("where_the_share_goes")
    if not w or not w["variants"]:
        return []
    names = list(w["variants"])
    rows = [k for k in (*STAGES, "total") if any(k in w["variants"][n]["ms_per_frame"] for n in names)]
    head = " | ".join(f"{n}: ms/frame (at N={w['variants'][n]['measured_at_n']}) | share" for n in names)
    lines = [
        "",
        f"Where the machine goes at {p['size']} @ {p['fps']:g} fps, {w['n']} camera{'s' if w['n'] != 1 else ''} "
        f"({w['fps_needed']:g} frames/s), "
        "the first N the best one-process variant fails: CPU ms per frame delivered (each variant's first failing "
        "trial) x frames/s needed / cores = share of the machine. streamseg: each stage thread's CPU, the engines' "
        "and codecs' own pools as `library pools`; the naive loop: its one thread per step (its `infer` holds its "
        "models' pre- and postprocessing), its libraries' pools beside it. An engine's work runs partly on the "
        "calling thread and partly in its intra-op pool, in proportions that differ between the two: compare "
        "infer + library pools.",
        "",
        f"| stage | {head} |",
        "|---|" + "---:|---:|" * len(names),
    ]
    for k in rows:
        cells = []
        for n in names:
            v = w["variants"][n]
            ms, sh = v["ms_per_frame"].get(k), v["share_at_n"].get(k)
            cells += ["-" if ms is None else f"{ms:g}", "-" if sh is None else f"{sh:.0%}"]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| machine | " + " | ".join(["", "100%"] * len(names)) + " |")
    return lines


def markdown(r: dict) -> str:
    d, m = r["density"], r["machine"]
    reps = d.get("reps", 1)
    lines = [
        "# streamseg bench --streams",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. Live synthetic cameras through both models, H.264 out for "
        f"the first camera and JSONL for all, {d['seconds']:g} s a trial. Density: the most cameras at which every "
        f"camera drops <= {DROP_MAX:.0%} and keeps e2e p99 <= {P99_OVER_S_MAX:g} x S (S: the variant's e2e p50 "
        f"with one camera). {reps} search(es) per variant: density is their median (the lower middle one for an "
        "even count), spread = max - min; the p99 columns are from the first search at the median density. "
        "CPU: the trial's CPU per frame delivered, as a share of the machine (cores x the cameras' span), "
        "at density+1.",
        "",
        "| cameras | variant | density | per search | spread | S ms | worst p99 ms at density "
        "| worst p99 / S at density+1 | CPU ms/frame, share at density+1 |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for p in d["profiles"]:
        for v in p["variants"]:
            trials = representative(v)["trials"]
            at = next((t for t in trials if t["n"] == v["density"]), None)
            past = next((t for t in trials if t["n"] == v["density"] + 1), None)
            cpu = past["cpu"] if past and past.get("cpu") else None
            cpu_s = f"{cpu['ms_per_frame'].get('total', 0):g}, {cpu['share_used']:.0%}" if cpu else "-"
            lines.append(
                f"| {p['size']} @ {p['fps']:g} fps | {v['variant']} | {v['density']} | "
                f"{', '.join(map(str, v['densities']))} | {v['spread']} | {v['service_ms']} | "
                f"{at['worst_p99_ms'] if at else '-'} | {past['worst_p99_over_s'] if past else '-'} | {cpu_s} |"
            )
        lines.append(
            f"| {p['size']} @ {p['fps']:g} fps | one process / naive; / one per camera | "
            f"{p['one_process_over_naive']}; {p['one_process_over_separate']} | | | | | | |"
        )
        if p.get("bf16_over_naive") is not None:
            lines.append(
                f"| {p['size']} @ {p['fps']:g} fps | OpenVINO bf16 one process / naive (fp32) | "
                f"{p['bf16_over_naive']} | | | | | | |"
            )
    best = best_batch(d["profiles"])
    if best is not None and "default_batch" in d:
        b, won, pairs = best
        lines += [
            "",
            f"Batching, one process: batch {b} carried the most cameras in {won} of {pairs} profile x backend "
            "pairs (a tie goes to the smaller batch: it waits for no batch-mates). The product's default: batch "
            f"{d['default_batch']} (pipeline.batch.max_size)"
            + ("." if b == d["default_batch"] else f"; this run measured batch {b} better."),
        ]
    for p in d["profiles"]:
        lines += share_lines(p)
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = r["density"]["profiles"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(6 * len(profiles), 4.2), squeeze=False)
    for ax, p in zip(axes[0], profiles, strict=True):
        for i, v in enumerate(p["variants"]):
            spread = f", {min(v['densities'])}-{max(v['densities'])}" if v["spread"] else ""
            label = f"{v['variant']} (density {v['density']}{spread})"
            for k, s in enumerate(v["searches"]):  # one line per search, the variant's colour
                pts = [(t["n"], t["worst_p99_over_s"]) for t in s["trials"] if t["worst_p99_over_s"] is not None]
                if pts:
                    ax.plot(
                        *zip(*pts, strict=True),
                        "o-",
                        color=f"C{i}",
                        alpha=1 if k == 0 else 0.45,
                        label=label if k == 0 else None,
                    )
        ax.axhline(P99_OVER_S_MAX, color="grey", ls="--", lw=1)
        ax.set_title(f"{p['size']} @ {p['fps']:g} fps")
        ax.set_xlabel("live cameras")
        ax.set_ylabel("worst camera's e2e p99 / S (each search)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# the naive loop, one camera per process: `python -m streamseg.density SPEC.json` -------------
def naive_camera(spec: dict) -> dict:
    """Read the newest due frame (a camera's buffer keeps only the newest: the frames passed
    over are drops), run both models, draw and write where the frame is shown, write JSONL.
    `cpu_ms`: its CPU per step over the loop (the calling thread's), its libraries' pools beside."""
    from streamseg.bench import run_models
    from streamseg.config import EngineConfig, OverlayConfig
    from streamseg.frames import Frame
    from streamseg.latency import summarize
    from streamseg.models.configured import open_configured
    from streamseg.overlay import Overlay
    from streamseg.sinks import StreamInfo, open_sink
    from streamseg.sources import open_source

    models = [open_configured(EngineConfig(**ec), task=t) for t, ec in spec["engines"].items()]
    for m in models:
        m.__enter__()
    overlay, lat, frames_in, out = Overlay(OverlayConfig()), [], 0, 0
    with open_source(spec["uri"]) as src:
        sinks = [open_sink(u) for u in spec["sinks"]]
        for s in sinks:
            s.__enter__()
            s.open({"cam": StreamInfo("cam", src.fps, src.size_wh)})
        draw = any(s.needs_pixels for s in sinks)
        period, total = 1e9 / src.fps, src.frame_count
        # its CPU, measured around the loop's steps (clock reads, nothing the loop does changes)
        cpu, clock = dict.fromkeys(("read", "infer", "overlay", "write"), 0), time.thread_time_ns
        proc0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        k = 0
        while total is None or k < total:
            now = time.perf_counter_ns()
            due = t0 + k * period
            if due > now:
                time.sleep((due - now) / 1e9)
            c = clock()
            newest = int((time.perf_counter_ns() - t0) // period)
            if newest > k:  # behind: only the newest frame is there to read
                skipped = src.skip(min(newest, total or newest) - k)
                frames_in += skipped
                k += skipped
                if total is not None and k >= total:
                    break
            sf = src.read()
            if sf is None:
                break
            frames_in += 1
            f = Frame("cam", k, sf.pts, sf.image_bgr, int(t0 + k * period))
            t = clock()
            cpu["read"], c = cpu["read"] + t - c, t
            run_models(models, f)
            t = clock()
            cpu["infer"], c = cpu["infer"] + t - c, t
            if draw:
                f.overlay_bgr = overlay.draw(f)
            t = clock()
            cpu["overlay"], c = cpu["overlay"] + t - c, t
            f.stamp("sink")
            for s in sinks:
                s.write(f)
            cpu["write"] += clock() - c
            lat.append((time.perf_counter_ns() - f.capture_ns) / 1e6)
            out += 1
            k += 1
        c = clock()
        for s in sinks:
            s.__exit__(None, None, None)
        cpu["write"] += clock() - c
        proc = time.process_time_ns() - proc0
    for m in models:
        m.__exit__(None, None, None)
    cpu_ms = {step: ns / 1e6 for step, ns in cpu.items()}
    cpu_ms["library pools"] = max(0.0, proc / 1e6 - sum(cpu_ms.values()))
    cpu_ms["total"] = proc / 1e6
    e2e = summarize(lat)
    return {"in": frames_in, "out": out, "p50": e2e["p50"], "p99": e2e["p99"], "cpu_ms": cpu_ms}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    r = naive_camera(spec)
    Path(spec["report"]).write_text(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
