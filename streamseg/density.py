"""`streamseg bench --streams`: how many live cameras one machine carries (stream density).

For each camera profile (640x360 at 15 fps and 1280x720 at 10 fps by default), N live
synthetic cameras run through both models, with H.264 out for the first camera and JSONL
for all, for `seconds` each. The density of a variant is the largest N at which EVERY camera
drops at most DROP_MAX of its frames and keeps its e2e p99 within P99_OVER_S_MAX service
times S (S: the variant's own e2e p50 with one camera). N grows from 1 until a trial fails.

Settings: `bench.density` (profiles, max_streams, seconds, backends, batch_sizes).
Variants, measured side by side in one run, each in processes of its own:
- `streamseg`: one process carrying all N cameras, per engine backend and batch size asked
  for (cross-stream batching must earn its keep: batch 1 against 2/4, ONNX Runtime and OpenVINO);
- `separate`: N streamseg processes, one camera each;
- `naive`: N processes of the loop a user writes around ONNX Runtime, one per camera (read the
  newest frame, run both models, draw, write; frames the loop fell behind on are skipped, as a
  camera's buffer keeps only the newest: counted as drops).

Output in `--out`: density.json (`density` section, with the machine), density.md and
density.png (worst p99 / S against N, per variant).
"""

from __future__ import annotations

import json
import shutil
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


def keeps_up(cams: list[Camera], service_ms: float) -> bool:
    return all(
        c.frames_in > 0 and c.drop_rate <= DROP_MAX and c.p99 is not None and c.p99 <= P99_OVER_S_MAX * service_ms
        for c in cams
    )


def camera_uri(size: str, fps: float, seed: int, frames: int) -> str:
    return f"synthetic://driving?size={size}&fps={fps:g}&seed={seed}&frames={frames}&loop={LOOP}"


class Density:
    def __init__(self, cfg: Config, out: Path, *, log=print) -> None:
        d = cfg.bench.density
        self.cfg, self.out, self.log = cfg, out, log
        self.profiles = [(p.split("@")[0], float(p.split("@")[1])) for p in d.profiles]
        self.max_streams, self.seconds = d.max_streams, d.seconds
        self.backends, self.batch_sizes = d.backends, d.batch_sizes
        self.tmp = Path(tempfile.mkdtemp(prefix="streamseg-density-"))

    # one trial of each variant: N cameras -> their figures -------------------------------
    def _engines(self, backend: str | None = None) -> dict:
        eng = {}
        for task in ("semantic", "instance"):
            ec = getattr(self.cfg.engines, task)
            if ec is not None:
                d = ec.model_dump()
                if backend:
                    d["backend"] = backend
                eng[task] = d
        return eng

    def _frames(self, fps: float) -> int:
        return max(10, int(fps * self.seconds))

    def _run_config(self, name: str, sources: list[dict], sinks: list, backend: str, batch: int) -> Path:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        cfg = {
            "sources": sources,
            "engines": {**self._engines(backend), "cache_dir": self.cfg.engines.cache_dir},
            "pipeline": {**self.cfg.pipeline.model_dump(), "batch": {"max_size": batch, "max_wait_ms": 5.0}},
            "sinks": [{"uri": str(d / s["uri"]), **{k: v for k, v in s.items() if k != "uri"}} for s in sinks],
            "metrics": {"progress": False, "summary": False, "report": str(d / "report.json")},
        }
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        return d

    def _streamseg_cameras(self, d: Path) -> list[Camera]:
        rep = json.loads((d / "report.json").read_text())
        cams = []
        for sid, src in rep["sources"].items():
            st = rep["streams"].get(sid) or {}
            e2e = st.get("end_to_end") or {}
            cams.append(Camera(src["frames"], st.get("frames_out", 0), e2e.get("p50"), e2e.get("p99")))
        return cams

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def _wait_all(self, procs: list[subprocess.Popen], what: str) -> None:
        """Wait for a trial's processes; whatever happens, none outlives it (a leftover would eat
        the CPU of the next trial)."""
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

    def trial_streamseg(self, n: int, size: str, fps: float, backend: str, batch: int) -> list[Camera]:
        """One process carrying N cameras: H.264 out for the first, JSONL for all."""
        sources = [
            {"uri": camera_uri(size, fps, 100 + i, self._frames(fps)), "id": f"cam{i}", "mode": "live"}
            for i in range(n)
        ]
        sinks = [{"uri": "cam0.mp4", "streams": ["cam0"]}, {"uri": "all.jsonl"}]
        d = self._run_config(f"one-{backend}-b{batch}-{size}-n{n}", sources, sinks, backend, batch)
        self._wait_all([self._spawn(["streamseg", "run", "-c", str(d / "config.yaml")])], "streamseg")
        return self._streamseg_cameras(d)

    def trial_separate(self, n: int, size: str, fps: float, backend: str) -> list[Camera]:
        """N streamseg processes, one camera each (the first also writes H.264)."""
        dirs = []
        for i in range(n):
            src = [{"uri": camera_uri(size, fps, 100 + i, self._frames(fps)), "id": f"cam{i}", "mode": "live"}]
            sinks = ([{"uri": "cam.mp4"}] if i == 0 else []) + [{"uri": "cam.jsonl"}]
            dirs.append(self._run_config(f"sep-{size}-n{n}-{i}", src, sinks, backend, 1))
        procs = [self._spawn(["streamseg", "run", "-c", str(d / "config.yaml")]) for d in dirs]
        self._wait_all(procs, "streamseg (one per camera)")
        return [c for d in dirs for c in self._streamseg_cameras(d)]

    def trial_naive(self, n: int, size: str, fps: float) -> list[Camera]:
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
        self._wait_all(procs, "naive loop")
        cams = []
        for d in specs:
            r = json.loads((d / "report.json").read_text())
            cams.append(Camera(r["in"], r["out"], r["p50"], r["p99"]))
        return cams

    # the search --------------------------------------------------------------------------
    def search(self, name: str, trial, size: str, fps: float) -> dict:
        """N = 1, 2, ... until a trial fails; S from the one-camera trial."""
        trials, service, density = [], None, 0
        for n in range(1, self.max_streams + 1):
            t0 = time.perf_counter()
            try:
                cams = trial(n)
                error = None
            except Exception as e:  # a crashed trial fails that N; its reason is kept
                cams, error = [], f"{type(e).__name__}: {e}"
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
        return {"variant": name, "service_ms": service, "density": density, "trials": trials}

    def run(self) -> dict:
        from streamseg.bench import machine

        profiles = []
        for size, fps in self.profiles:
            variants = [
                self.search(
                    f"streamseg ({be}, batch {bs})",
                    lambda n, be=be, bs=bs, size=size, fps=fps: self.trial_streamseg(n, size, fps, be, bs),
                    size,
                    fps,
                )
                for be in self.backends
                for bs in self.batch_sizes
            ]
            be0 = self.backends[0]
            variants.append(
                self.search(
                    f"streamseg, one process per camera ({be0})",
                    lambda n, size=size, fps=fps, be0=be0: self.trial_separate(n, size, fps, be0),
                    size,
                    fps,
                )
            )
            variants.append(
                self.search(
                    "naive loop, one process per camera",
                    lambda n, size=size, fps=fps: self.trial_naive(n, size, fps),
                    size,
                    fps,
                )
            )
            one = max((v for v in variants if v["variant"].startswith("streamseg (")), key=lambda v: v["density"])
            naive, sep = variants[-1]["density"], variants[-2]["density"]
            profiles.append(
                {
                    "size": size,
                    "fps": fps,
                    "variants": variants,
                    "best_one_process": one["variant"],
                    "one_process_over_naive": round(one["density"] / naive, 2) if naive else None,
                    "one_process_over_separate": round(one["density"] / sep, 2) if sep else None,
                }
            )
        result = {
            "benchmark": "streamseg bench --streams",
            "machine": machine(self.cfg),
            "density": {
                "bounds": {"drop_rate_max": DROP_MAX, "p99_over_service_max": P99_OVER_S_MAX},
                "seconds": self.seconds,
                "profiles": profiles,
            },
        }
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "density.json").write_text(json.dumps(result, indent=1) + "\n")
        (self.out / "density.md").write_text(markdown(result))
        plot(result, self.out / "density.png")
        return result


def markdown(r: dict) -> str:
    d, m = r["density"], r["machine"]
    lines = [
        "# streamseg bench --streams",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores. Live synthetic cameras through both models, H.264 out for "
        f"the first camera and JSONL for all, {d['seconds']:g} s a trial. Density: the most cameras at which every "
        f"camera drops <= {DROP_MAX:.0%} and keeps e2e p99 <= {P99_OVER_S_MAX:g} x S (S: the variant's e2e p50 "
        "with one camera).",
        "",
        "| cameras | variant | density | S ms | worst p99 ms at density | worst p99 / S at density+1 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in d["profiles"]:
        for v in p["variants"]:
            at = next((t for t in v["trials"] if t["n"] == v["density"]), None)
            past = next((t for t in v["trials"] if t["n"] == v["density"] + 1), None)
            lines.append(
                f"| {p['size']} @ {p['fps']:g} fps | {v['variant']} | {v['density']} | {v['service_ms']} | "
                f"{at['worst_p99_ms'] if at else '-'} | {past['worst_p99_over_s'] if past else '-'} |"
            )
        lines.append(
            f"| {p['size']} @ {p['fps']:g} fps | one process / naive; / one per camera | "
            f"{p['one_process_over_naive']}; {p['one_process_over_separate']} | | | |"
        )
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = r["density"]["profiles"]
    fig, axes = plt.subplots(1, len(profiles), figsize=(6 * len(profiles), 4.2), squeeze=False)
    for ax, p in zip(axes[0], profiles, strict=True):
        for v in p["variants"]:
            pts = [(t["n"], t["worst_p99_over_s"]) for t in v["trials"] if t["worst_p99_over_s"] is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", label=f"{v['variant']} (density {v['density']})")
        ax.axhline(P99_OVER_S_MAX, color="grey", ls="--", lw=1)
        ax.set_title(f"{p['size']} @ {p['fps']:g} fps")
        ax.set_xlabel("live cameras")
        ax.set_ylabel("worst camera's e2e p99 / S")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# the naive loop, one camera per process: `python -m streamseg.density SPEC.json` -------------
def naive_camera(spec: dict) -> dict:
    """Read the newest due frame (a camera's buffer keeps only the newest: the frames passed
    over are drops), run both models, draw and write where the frame is shown, write JSONL."""
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
        t0 = time.perf_counter_ns()
        k = 0
        while total is None or k < total:
            now = time.perf_counter_ns()
            due = t0 + k * period
            if due > now:
                time.sleep((due - now) / 1e9)
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
            run_models(models, f)
            if draw:
                f.overlay_bgr = overlay.draw(f)
            f.stamp("sink")
            for s in sinks:
                s.write(f)
            lat.append((time.perf_counter_ns() - f.capture_ns) / 1e6)
            out += 1
            k += 1
        for s in sinks:
            s.__exit__(None, None, None)
    for m in models:
        m.__exit__(None, None, None)
    e2e = summarize(lat)
    return {"in": frames_in, "out": out, "p50": e2e["p50"], "p99": e2e["p99"]}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    r = naive_camera(spec)
    Path(spec["report"]).write_text(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
