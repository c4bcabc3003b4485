"""`streamseg fleet`: process many recordings on a Ray cluster (or a local Ray instance).

Each recording is one task on a pool of Ray actors, each actor running the normal
pipeline in offline mode (nothing dropped) with the config's engines; an actor asks Ray
for as many CPUs as its engines use threads (and a GPU when they run on TensorRT).

Outputs per recording go to OUT/<name>/: the overlaid video(s), results.jsonl,
report.json and latency-samples.json. They are written in a hidden temporary folder and
moved into place only when the run succeeded, followed by `_SUCCESS.json` last; a killed
or failed attempt leaves nothing that looks complete, and a rerun of the same command
skips every recording with its `_SUCCESS.json` (resume). A failed recording (error, or
its worker died) is retried `retries` times, then listed with its error; the others finish.

The fleet report (OUT/fleet-report.json) lists every recording's status, frames, fps and
latency, and merges latency percentiles across recordings from the raw per-frame samples
(never by averaging percentiles), with totals and throughput.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.frames import STAGES
from streamseg.latency import summarize

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".h264", ".ts", ".webm"}


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, folders (their videos, sorted), globs, and text files listing URIs (one per line, # comments)."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if "://" in item:
            out.append(item)
        elif p.is_dir():
            out += sorted(str(f.resolve()) for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        elif p.suffix.lower() == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    out.append(line)
        elif any(ch in item for ch in "*?["):
            matched = sorted(glob.glob(item, recursive=True))
            if not matched:
                raise UserError(f"{item}: the pattern matches no file")
            out += [str(Path(m).resolve()) for m in matched]
        elif p.is_file():
            out.append(str(p.resolve()))
        else:
            raise UserError(f"{item}: no such file, folder or list")
    if not out:
        raise UserError("fleet: no recordings given")
    return list(dict.fromkeys(out))


def output_name(uri: str, taken: set[str]) -> str:
    """A folder name for a recording, unique within the fleet."""
    base = Path(uri.split("?", 1)[0]).stem if "://" not in uri else uri.split("://", 1)[1]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base).strip("._") or "recording"
    name, k = safe[:80], 2
    while name in taken:
        name, k = f"{safe[:76]}-{k}", k + 1
    taken.add(name)
    return name


def is_complete(folder: Path) -> bool:
    marker = folder / "_SUCCESS.json"
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return all((folder / f).is_file() for f in files)


def process_recording(uri: str, cfg_data: dict, folder: str, attempt: int) -> dict:
    """Run one recording through the pipeline into a temporary folder, then move it into place.
    Runs inside a Ray actor (or directly in tests)."""
    final = Path(folder)
    for stale in final.parent.glob(f".{final.name}.partial-*"):  # a killed earlier attempt's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.partial-{attempt}-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        return _run_into(uri, cfg_data, final, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _run_into(uri: str, cfg_data: dict, final: Path, tmp: Path) -> dict:
    from streamseg.config import validate_config
    from streamseg.pipeline import Pipeline

    (tmp / "worker.pid").write_text(str(os.getpid()))
    data = json.loads(json.dumps(cfg_data))
    data["sources"] = [{"uri": uri, "id": "rec", "mode": "offline"}]
    data["sinks"] = [{**s, "uri": str(tmp / Path(s["uri"]).name)} for s in data.get("sinks", [])]
    data["sinks"].append({"uri": str(tmp / "results.jsonl")})
    data["metrics"] = {**data.get("metrics", {}), "progress": False, "summary": False, "report": None, "plot": None}
    t0 = time.monotonic()
    pipe = Pipeline(validate_config(data, "fleet"))
    report = pipe.run().report
    samples = pipe.recorder.samples()
    (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (tmp / "latency-samples.json").write_text(json.dumps({k: v.round(3).tolist() for k, v in samples.items()}))
    (tmp / "worker.pid").unlink()
    if report.get("errors"):
        raise RuntimeError("; ".join(report["errors"]))
    files = sorted(p.name for p in tmp.iterdir())
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)  # one atomic step: the folder appears whole
    marker = {"uri": uri, "files": files, "frames": report["frames"], "seconds": round(time.monotonic() - t0, 3)}
    tmp_marker = final / "_SUCCESS.json.tmp"
    tmp_marker.write_text(json.dumps(marker))
    tmp_marker.replace(final / "_SUCCESS.json")
    return {"status": "done", "frames": report["frames"], "fps": report["fps"]}


def merged_latency(folders: list[Path]) -> dict:
    """Percentiles over every frame of every recording, from the raw samples."""
    pooled: dict[str, list[np.ndarray]] = {}
    for f in folders:
        data = json.loads((f / "latency-samples.json").read_text())
        for k, v in data.items():
            pooled.setdefault(k, []).append(np.asarray(v, np.float64))
    out = {k: summarize(np.concatenate(v)) for k, v in pooled.items()}
    return {"end_to_end": out.get("end_to_end"), "stages": {s: out[s] for s in STAGES if s in out}}


def _actor_class(ray, cpus: float, gpus: float, retries: int):
    @ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=retries, max_task_retries=0)
    class FleetWorker:
        def process(self, uri, cfg_data, folder, attempt):
            try:
                return process_recording(uri, cfg_data, folder, attempt)
            except BaseException as e:  # the driver decides about retries
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                return {"status": "failed", "error": f"{type(e).__name__}: {msg}"}

        def pid(self):
            return os.getpid()

    return FleetWorker


def run_fleet(
    cfg,
    inputs: list[str],
    out: Path,
    *,
    ray_address: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    progress: bool = True,
    log=print,
) -> dict:
    try:
        import ray
    except ImportError:
        raise UserError("streamseg fleet needs Ray: pip install 'streamseg[fleet]'") from None
    uris = expand_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    jobs = [(uri, out / output_name(uri, taken)) for uri in uris]
    todo = [(u, f) for u, f in jobs if not is_complete(f)]
    skipped = len(jobs) - len(todo)
    if skipped:
        log(f"fleet: {skipped} recording(s) already complete, skipped")
    engines = [getattr(cfg.engines, t) for t in ("semantic", "instance") if getattr(cfg.engines, t)]
    cpus = float(max(1, max((e.threads or 1) for e in engines))) if engines else 1.0
    gpus = 1.0 if any(e.backend == "tensorrt" for e in engines) else 0.0
    cfg_data = cfg.model_dump()
    for task in ("semantic", "instance"):  # workers may start elsewhere: cards by absolute path
        if cfg_data["engines"].get(task):
            cfg_data["engines"][task]["card"] = str(Path(cfg_data["engines"][task]["card"]).resolve())
    if cfg_data["engines"].get("cache_dir"):
        cfg_data["engines"]["cache_dir"] = str(Path(cfg_data["engines"]["cache_dir"]).resolve())
    results: dict[str, dict] = {}
    t0 = time.monotonic()
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            kwargs = {"address": ray_address} if ray_address else {"num_cpus": os.cpu_count()}
            ray.init(**kwargs, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            total_cpus = ray.cluster_resources().get("CPU", 1)
            n = workers or max(1, int(total_cpus // cpus))
            n = min(n, len(todo))
            actor = _actor_class(ray, cpus, gpus, retries)
            pool = [actor.remote() for _ in range(n)]
            log(
                f"fleet: {len(todo)} recording(s) on {n} worker(s) x {cpus:g} CPU"
                + (f" + {gpus:g} GPU" if gpus else "")
            )
            results = _schedule(ray, pool, todo, cfg_data, retries, progress, log)
        finally:
            if started_here:
                ray.shutdown()
    wall = time.monotonic() - t0
    return write_fleet_report(out, jobs, results, wall)


def _schedule(ray, pool, todo, cfg_data, retries, progress, log) -> dict[str, dict]:
    """Keep every worker busy; resubmit failures (errors, dead workers) up to `retries` times."""
    from tqdm import tqdm

    queue = [(uri, folder, 0) for uri, folder in todo]
    running: dict = {}
    free = list(pool)
    results: dict[str, dict] = {}
    bar = tqdm(total=len(todo), unit="rec", disable=not progress, leave=True)
    try:
        while queue or running:
            while queue and free:
                uri, folder, attempt = queue.pop(0)
                w = free.pop()
                running[w.process.remote(uri, cfg_data, str(folder), attempt)] = (w, uri, folder, attempt)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            w, uri, folder, attempt = running.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as e:  # the worker process died mid-task (killed, OOM, node lost)
                res = {"status": "failed", "error": f"worker died: {type(e).__name__}"}
            free.append(w)  # a dead actor is restarted by Ray (max_restarts)
            res["attempts"] = attempt + 1
            if res["status"] == "failed" and attempt < retries:
                log(f"fleet: {uri}: {res['error']} - retrying ({attempt + 1}/{retries})")
                queue.append((uri, folder, attempt + 1))
                continue
            results[uri] = res
            bar.update(1)
    finally:
        bar.close()
    return results


def write_fleet_report(out: Path, jobs, results: dict[str, dict], wall_s: float) -> dict:
    rows, done_folders, frames_total, frames_now = [], [], 0, 0
    for uri, folder in jobs:
        if is_complete(folder):
            rep = json.loads((folder / "report.json").read_text())
            res = results.get(uri, {"status": "done", "attempts": 0})
            row = {
                "uri": uri,
                "folder": folder.name,
                "status": "done" if res.get("attempts") else "skipped (complete)",
                "attempts": res.get("attempts", 0),
                "frames": rep["frames"],
                "fps": rep["fps"],
                "end_to_end_ms": rep["latency_ms"]["end_to_end"],
            }
            done_folders.append(folder)
            frames_total += rep["frames"]["out"]
            if row["attempts"]:
                frames_now += rep["frames"]["out"]
        else:
            res = results.get(uri, {"status": "failed", "error": "not run"})
            row = {"uri": uri, "folder": folder.name, "status": "failed", "attempts": res.get("attempts", 0)}
            row["error"] = res.get("error")
        rows.append(row)
    report = {
        "recordings": rows,
        "totals": {
            "recordings": len(rows),
            "done": sum(r["status"] != "failed" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "frames_out": frames_total,
            "frames_this_run": frames_now,
            "wall_s": round(wall_s, 3),
            "throughput_fps": round(frames_now / wall_s, 2) if frames_now and wall_s > 0 else None,
        },
        "latency_ms": merged_latency(done_folders) if done_folders else None,
    }
    tmp = out / "fleet-report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out / "fleet-report.json")
    return report
