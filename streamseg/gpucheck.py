"""`streamseg gpu-check`: the first contact of a GPU with streamseg, as one command. Two flows:

The default, for the GPU machines this project can be lent (no network, no TensorRT; docs/gpu.md):
`make gpu-check` runs this module with the image's python3 before streamseg is installed (the
orchestrator below needs only the standard library). It installs the project from `gpu-bundle/`
alone (`make gpu-bundle` wrote it, here, with network) into a venv that sees the image's torch,
then runs each step (device, imports, the torch backend's agreement with ONNX Runtime on the CPU,
engine-only throughput, host<->device copies, codecs, TensorRT's absence and the parser-rule check,
tests/gpu, the pipeline on the udacity clip and on 8/16/32 synthetic 1080p30 streams, torch.compile)
in a worker process with its own time limit, checks the 8-minute budget before each step starts,
and writes the JSON after each. `--dry-run`: the same with torch on the CPU.

`--tensorrt` (`run_tensorrt`), for your own GPU machine: installs the `tensorrt` extra (unless
TensorRT already imports), builds fp16 and int8 plans of the fused graphs of the two bundled and the
two shared models, runs tests/gpu, measures engine-only throughput at batch 1 and 8, runs the
pipeline on the udacity clip and the demo scene, and writes one JSON. `--tensorrt --dry-run`: TensorRT
and CUDA are the test double (tests/backends/fake_tensorrt.py), the JSON says `"dry_run": true`.

NEVER RUN ON A GPU so far (see docs/gpu.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("streamseg")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
UDACITY = SHARED / "video" / "udacity-solidWhiteRight-960x540.mp4"
DEMO = "synthetic://driving?size=1280x720&seed=0&frames={n}"
MODELS = {  # name -> card; pairs run together in the pipeline
    "synth-semantic": ROOT / "engines" / "synth-semantic.yaml",
    "synth-instance": ROOT / "engines" / "synth-instance.yaml",
    "twinlitenet-bdd": ROOT / "tests" / "fixtures" / "cards" / "twinlitenet-bdd.yaml",
    "yolov8n-seg-coco": ROOT / "tests" / "fixtures" / "cards" / "yolov8n-seg-coco.yaml",
}
PAIRS = {"bundled": ("synth-semantic", "synth-instance"), "shared": ("twinlitenet-bdd", "yolov8n-seg-coco")}
PRECISIONS = ("fp16", "int8")
BUDGET_S = 8 * 60


class _Patch:
    """monkeypatch-like setitem/setattr with undo, so the test double can stand in outside pytest."""

    def __init__(self) -> None:
        self._undo: list = []

    def setitem(self, d, key, value) -> None:
        self._undo.append((d, key, d.get(key, _Patch), True))
        d[key] = value

    def setattr(self, obj, name, value) -> None:
        self._undo.append((obj, name, getattr(obj, name, _Patch), False))
        setattr(obj, name, value)

    def undo(self) -> None:
        for obj, key, old, is_item in reversed(self._undo):
            if is_item:
                obj.pop(key, None) if old is _Patch else obj.__setitem__(key, old)
            elif old is _Patch:
                delattr(obj, key)
            else:
                setattr(obj, key, old)
        self._undo.clear()


@contextlib.contextmanager
def _double(api: int):
    sys.path.insert(0, str(ROOT))
    from tests.backends import fake_tensorrt as fake

    patch = _Patch()
    fake.install(patch, api=api)
    try:
        yield fake
    finally:
        patch.undo()


class _Closer:
    """A loaded SegModel that `contextlib.closing` exits (its attributes pass through)."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def close(self) -> None:
        self._model.__exit__(None, None, None)


def install_tensorrt() -> dict:
    """pip install the `tensorrt` extra into this interpreter, unless TensorRT imports already."""
    if importlib.util.find_spec("tensorrt") is not None:
        return {"skipped": "tensorrt already importable"}
    target = f"{ROOT}[tensorrt]" if (ROOT / "pyproject.toml").is_file() else "tensorrt>=10,<12"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target]
    if target.startswith("tensorrt"):
        cmd.append("cuda-python>=12")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # noqa: S603 - our own interpreter
    importlib.invalidate_caches()
    return {"command": cmd, "rc": r.returncode, "seconds": round(time.perf_counter() - t0, 1), "tail": r.stderr[-500:]}


def _frames_udacity(n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(UDACITY))
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    return frames


def _frames_demo(n: int) -> list[np.ndarray]:
    from streamseg.sources import open_source

    with open_source(DEMO.format(n=n)) as src:
        return [f.image_bgr for f in iter(src.read, None)]


def _engine_only(model, frames: list[np.ndarray], batch: int, seconds: float, iters_min: int) -> dict:
    """trtexec-style: prepared input, warm-up, then submit/collect in a loop for `seconds`."""
    imgs = (frames * ((batch // len(frames)) + 1))[:batch]
    x, _ = model.prepare(imgs)
    for _ in range(2):
        model.collect(model.submit(x))
    n, t0 = 0, time.perf_counter()
    while n < iters_min or time.perf_counter() - t0 < seconds:
        model.collect(model.submit(x))
        n += 1
    ms = (time.perf_counter() - t0) * 1000 / n
    return {"batch": batch, "ms_per_batch": round(ms, 3), "fps": round(batch * 1000 / ms, 1), "iterations": n}


def _pipeline(cards: tuple[Path, Path], source: str, precision: str, cache_dir: str, frames: int) -> dict:
    from streamseg.config import validate_config
    from streamseg.pipeline import Pipeline

    eng = {"backend": "tensorrt", "precision": precision}
    cfg = validate_config(
        {
            "sources": [{"uri": source}],
            "sinks": [{"uri": "null://"}],
            "engines": {
                "semantic": {"card": str(cards[0]), **eng},
                "instance": {"card": str(cards[1]), **eng},
                "cache_dir": cache_dir,
            },
            "max_frames": frames,
        },
        "gpu-check",
    )
    pipe = Pipeline(cfg)
    t0 = time.perf_counter()
    pipe.run()
    rep = pipe.last_report or {}
    return {
        "source": source,
        "precision": precision,
        "frames_out": rep.get("frames", {}).get("out"),
        "fps": rep.get("fps"),
        "wall_s": round(time.perf_counter() - t0, 2),
        "engines": rep.get("engines"),
    }


def run_tensorrt(
    out: Path,
    *,
    dry_run: bool = False,
    models: tuple[str, ...] | None = None,
    api: int = 11,
    frames: int | None = None,
    seconds: float | None = None,
    run_tests: bool = True,
) -> dict:
    """`gpu-check --tensorrt`: the TensorRT flow for a GPU machine that has (or may install) TensorRT;
    returns (and writes to `out`) the JSON result."""
    from streamseg.backends.tensorrt import gpu_name
    from streamseg.codecs import record as codec_record
    from streamseg.errors import UserError
    from streamseg.models import open_model
    from streamseg.models.fuse import compare_results
    from streamseg.quantize import build_int8

    t_start = time.perf_counter()
    models = tuple(MODELS) if models is None else models
    frames = frames or (4 if dry_run else 64)
    seconds = seconds if seconds is not None else (0.0 if dry_run else 2.0)
    cache_dir = str(out.parent / "gpu-check-cache")
    result: dict = {
        "gpu_check": 1,
        "dry_run": dry_run,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
    }
    if dry_run:
        result["note"] = "dry run: TensorRT and CUDA are the test double (ONNX Runtime on the CPU); no figure here is a GPU figure"
    def save() -> None:  # after every stage: a run cut short still leaves what it measured
        result["seconds"] = round(time.perf_counter() - t_start, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")

    stack = contextlib.ExitStack()
    with stack:
        if dry_run:
            stack.enter_context(_double(api))
            result["install"] = {"skipped": "dry run"}
        else:
            result["install"] = install_tensorrt()
        import tensorrt as trt

        gpu = gpu_name()
        if gpu is None:
            raise RuntimeError("gpu-check: no NVIDIA GPU answers (cudaGetDeviceCount); use --dry-run on a machine without one")
        result["gpu"] = {"name": gpu[0], "compute_capability": gpu[1]}
        result["tensorrt"] = trt.__version__
        result["codecs"] = codec_record()  # which elements decoded and encoded here (GPU decode, CPU encode on an H100)
        shared_models = (SHARED / "models").is_dir()
        present = {m: MODELS[m] for m in models if m.startswith("synth") or shared_models}
        from streamseg.models import tensorrt_graphs

        result["parser_rules"] = tensorrt_graphs.check_all_graphs(present, out.parent / "gpu-check-graphs", precisions=PRECISIONS, cache_dir=cache_dir)
        result["real_parser"] = tensorrt_graphs.parse_with_real_parser([g["graph"] for g in result["parser_rules"]["graphs"] if "graph" in g])
        udacity = _frames_udacity(frames) if UDACITY.is_file() else []
        demo = _frames_demo(min(frames, 8))
        clip = udacity or demo
        result["plans"], result["engine_only"], result["agreement"] = [], [], []
        for name, card in present.items():
            # calibrated on frames of the model's own domain: the demo scene for the bundled models
            calib = f"file://{UDACITY}" if UDACITY.is_file() and not name.startswith("synth") else DEMO.format(n=64)
            try:
                gate = build_int8(str(card), calib, backend="tensorrt", frames=2 if dry_run else 16, cache_dir=cache_dir)
                result.setdefault("int8_gate", {})[name] = {k: gate[k] for k in ("agreement", "threshold", "gate_frames")}
            except UserError as e:  # the gate (or the quantizer) refused this model's INT8: no int8 plan, said so
                result.setdefault("int8_gate", {})[name] = {"refused": str(e)}
            with open_model(str(card), backend="onnxruntime", fuse=False) as cpu:
                ref = [cpu.run([f])[0] for f in clip[:8]]
            for precision in PRECISIONS:
                if precision == "int8" and "refused" in result["int8_gate"][name]:
                    continue
                t0 = time.perf_counter()
                try:
                    model = open_model(str(card), backend="tensorrt", precision=precision, cache_dir=cache_dir)
                    model.__enter__()
                except UserError as e:  # recorded (a refused model, a failed converter); the other plans still run
                    result["plans"].append({"model": name, "precision": precision, "error": str(e)})
                    continue
                with contextlib.closing(_Closer(model)) as m:
                    d = m.describe()
                    result["plans"].append(
                        {"model": name, "precision": precision, "cache": d.get("cache"),
                         "strongly_typed": d.get("strongly_typed"), "fused": d["fused"],
                         "build_and_load_s": round(time.perf_counter() - t0, 2)}
                    )
                    for batch in (1, 8):
                        result["engine_only"].append(
                            {"model": name, "precision": precision, **_engine_only(m, clip, batch, seconds, 3)}
                        )
                    new = [m.run([f])[0] for f in clip[:8]]
                    stats = compare_results(m.task, ref, new, mask_iou=0.9)
                    result["agreement"].append({"model": name, "precision": precision, "vs": "onnxruntime cpu fp32 unfused", **stats})
                save()
        if run_tests:
            r = subprocess.run(  # noqa: S603 - our own interpreter and test folder
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "gpu")],
                capture_output=True, text=True, cwd=ROOT, timeout=240,
                env={**os.environ, "STREAMSEG_GPU_CHECK_CACHE": cache_dir},  # tests/gpu load the plans built above
            )
            lines = [ln for ln in r.stdout.strip().splitlines() if ln.strip()]
            result["tests_gpu"] = {"rc": r.returncode, "summary": lines[-1] if lines else ""}
            save()
        result["pipeline"], result["ratio"] = [], []
        for pair, (sem, ins) in PAIRS.items():
            if sem not in present or ins not in present:
                continue
            source = f"file://{UDACITY}" if pair == "shared" else DEMO.format(n=frames)
            for precision in PRECISIONS:
                failed = {p["model"] for p in result["plans"] if p["precision"] == precision and "error" in p}
                if failed & {sem, ins} or precision == "int8" and any("refused" in result["int8_gate"][m] for m in (sem, ins)):
                    continue
                p = _pipeline((present[sem], present[ins]), source, precision, cache_dir, frames)
                result["pipeline"].append({"pair": pair, **p})
                for batch in (1, 8):
                    ms = sum(r["ms_per_batch"] / r["batch"] for r in result["engine_only"]
                             if r["precision"] == precision and r["batch"] == batch and r["model"] in (sem, ins))
                    engines_fps = 1000 / ms if ms else None
                    result["ratio"].append(
                        {"pair": pair, "precision": precision, "engines_batch": batch,
                         "pipeline_fps": p["fps"], "engines_only_fps": round(engines_fps, 1) if engines_fps else None,
                         "pipeline_over_engines": round(p["fps"] / engines_fps, 3) if engines_fps and p["fps"] else None}
                    )
    result["under_8_minutes"] = time.perf_counter() - t_start < BUDGET_S
    save()
    return result


# -------------------------------------------------------------------------------------------------
# The check for the GPU machine we can get (no TensorRT, no network): torch backend, step by step.
#
# An orchestrator that needs only the standard library runs every step as its own subprocess with a
# time limit (a hung CUDA call cannot be interrupted inside a thread), refuses a step when the budget
# left cannot hold it, writes the JSON after every step, and goes on after any failure.

BUNDLE = ROOT / "gpu-bundle"
# card -> the ../shared/data file its model is (copied into the bundle's data/ by `make gpu-bundle`)
SHARED_FILES = {
    "twinlitenet-bdd": "models/twinlitenet-bdd-360x640.onnx",
    "yolov8n-seg-coco": "models/yolov8n-seg-int8-320.onnx",
    "udacity": "video/udacity-solidWhiteRight-960x540.mp4",
}
STREAMS = (8, 16, 32)


def data_file(rel: str, bundle: Path = BUNDLE) -> Path | None:
    """A ../shared/data file, from the bundle's copy (on the GPU machine) or the shared folder."""
    for base in (bundle / "data", SHARED):
        if (base / rel).is_file():
            return base / rel
    return None


def card_for(name: str, workdir: Path, bundle: Path = BUNDLE) -> Path | None:
    """The card of one of the four models, its `file` pointing at wherever the model is found."""
    card = MODELS[name]
    if name not in SHARED_FILES:
        return card
    model = data_file(SHARED_FILES[name], bundle)
    if model is None:
        return None
    import re

    text = re.sub(r"(?m)^file: .*$", f"file: {model.resolve()}", card.read_text())
    out = workdir / card.name
    out.write_text(text)
    return out


def _frames(bundle: Path, n: int) -> list:
    video = data_file(SHARED_FILES["udacity"], bundle)
    if video is None:
        return _frames_demo(n)
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = [f for f in (cap.read()[1] for _ in range(n)) if f is not None]
    return frames or _frames_demo(n)


def _device(dry_run: bool) -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if dry_run:
        return "cpu"
    raise RuntimeError("torch sees no CUDA device (use --dry-run on a machine without a GPU)")


# steps: each returns a JSON-able dict; `ctx` holds the run's settings --------------------------
def step_device(ctx: dict) -> dict:
    import torch

    res = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        res.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count,
                   compute_capability=f"{p.major}.{p.minor}")
    try:
        q = subprocess.run(  # noqa: S603, S607 - a fixed query of the driver tool
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
        res["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()[:200]
    except (OSError, subprocess.TimeoutExpired) as e:
        res["nvidia_smi"] = f"not run: {e}"
    import os

    res["cpus"] = len(os.sched_getaffinity(0))
    return res


def step_imports(ctx: dict) -> dict:
    res = {}
    for mod in ("streamseg", "torch", "torchvision", "onnx2torch", "onnx", "onnxruntime", "cv2", "pydantic", "tensorrt"):
        try:
            if mod == "onnx2torch":  # as the backend imports it (it stands in for a missing torchvision)
                from streamseg.backends.torch_backend import _onnx2torch

                m = _onnx2torch()
            else:
                m = importlib.import_module(mod)
            res[mod] = getattr(m, "__version__", "imported")
        except Exception as e:  # recorded: what is missing is the finding
            res[mod] = f"missing: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return res


def step_agreement(ctx: dict, model: str) -> dict:
    """The torch backend on this machine's CPU against the ONNX Runtime path (both fused)."""
    from streamseg.models import open_model
    from streamseg.models.fuse import compare_results

    card = card_for(model, Path(ctx["workdir"]), Path(ctx["bundle"]))
    if card is None:
        return {"skipped": f"{SHARED_FILES[model]} is in neither the bundle nor ../shared/data"}
    n = min(ctx["frames"], 8)  # the CPU side of the comparison sets the pace
    frames = _frames_demo(n) if model.startswith("synth") else _frames(Path(ctx["bundle"]), n)
    with open_model(str(card), backend="onnxruntime") as ref:
        a = [ref.run([f])[0] for f in frames]
    with open_model(str(card), backend="torch", engine_options={"device": "cpu"}) as m:
        b = [m.run([f])[0] for f in frames]
        d = m.describe()
    return {"vs": "onnxruntime cpu fp32 (fused)", "device": d["device"], "nms": d.get("nms_op"),
            **compare_results(m.task, a, b)}


def step_throughput(ctx: dict, model: str) -> dict:
    """Engine only (prepared batch in, outputs on the host): batch 1/8/32, fp32/fp16, with and without
    CUDA graphs. A dry run goes through the code path once: batch 1, fp32, the CPU, no graphs."""
    from streamseg.models import open_model

    card = card_for(model, Path(ctx["workdir"]), Path(ctx["bundle"]))
    if card is None:
        return {"skipped": f"{SHARED_FILES[model]} is in neither the bundle nor ../shared/data"}
    device = _device(ctx["dry_run"])
    frames = _frames(Path(ctx["bundle"]), 8)
    rows = []
    batches = (1,) if ctx["dry_run"] else (1, 8, 32)
    precisions = ("fp32",) if ctx["dry_run"] else ("fp32", "fp16")
    graphs = (False,) if device == "cpu" else (False, True)
    for precision in precisions:
        for g in graphs:
            try:
                with open_model(str(card), backend="torch", precision=precision,
                                engine_options={"device": device, "cuda_graphs": g}) as m:
                    for batch in batches:
                        rows.append({"precision": precision, "cuda_graphs": g,
                                     **_engine_only(m, frames, batch, ctx["seconds"], 1 if ctx["dry_run"] else 3)})
            except Exception as e:  # one setting failing (say CUDA graphs on a model) leaves the others
                rows.append({"precision": precision, "cuda_graphs": g, "error": f"{type(e).__name__}: {e}"[:300]})
    return {"device": device, "rows": rows}


def step_compile(ctx: dict, model: str) -> dict:
    """torch.compile of the model, fp16, batch 8, against the same engine uncompiled (the first
    call's compile time apart): measured where time is left, never assumed faster."""
    if ctx["dry_run"]:
        return {"skipped": "dry run: torch.compile is measured on the GPU only"}
    from streamseg.models import open_model

    card = card_for(model, Path(ctx["workdir"]), Path(ctx["bundle"]))
    frames = _frames(Path(ctx["bundle"]), 8)
    rows = []
    for compiled in (False, True):
        with open_model(str(card), backend="torch", precision="fp16",
                        engine_options={"device": "cuda", "compile": compiled}) as m:
            t0 = time.perf_counter()
            x, _ = m.prepare(frames)
            m.collect(m.submit(x))
            first = time.perf_counter() - t0
            rows.append({"compile": compiled, "first_call_s": round(first, 2),
                         **_engine_only(m, frames, 8, ctx["seconds"], 3)})
    return {"device": "cuda", "precision": "fp16", "rows": rows}


def step_copy(ctx: dict) -> dict:
    from streamseg.backends.torch_backend import copy_throughput

    dev = _device(ctx["dry_run"])
    return {"device": dev, **copy_throughput(64 << 20 if dev == "cuda" else 8 << 20, repeats=10 if dev == "cuda" else 2, device=dev)}


def step_codecs(ctx: dict) -> dict:
    """Which decoder and encoder a run would use, and which elements really decoded and encoded a few
    frames here (codecs.record; the image likely has no GStreamer: then OpenCV's FFmpeg decodes)."""
    import cv2

    from streamseg import codecs

    res = codecs.record()
    # without GStreamer (the lent image has none) files decode through OpenCV: its video backend
    info = cv2.getBuildInformation()
    ffmpeg = next((ln.strip() for ln in info.splitlines() if ln.strip().startswith("FFMPEG:")), "FFMPEG: ?")
    res["opencv"] = {"version": cv2.__version__, "video_io": ffmpeg}
    return res


def step_tensorrt(ctx: dict) -> dict:
    """TensorRT is absent on the lent machines: recorded, with the CPU check of TensorRT's ONNX parser
    rules on every graph the tensorrt backend would get instead (streamseg.models.tensorrt_graphs'
    `check_all_graphs`, issue 25)."""
    from streamseg.models.tensorrt_graphs import check_all_graphs as check_all

    res = {"installed": importlib.util.find_spec("tensorrt") is not None}
    wd, bundle = Path(ctx["workdir"]), Path(ctx["bundle"])
    cards = {m: card_for(m, wd, bundle) for m in MODELS}
    res["parser_rules"] = check_all({m: c for m, c in cards.items() if c is not None}, wd / "trt-graphs",
                                    precisions=("fp32", "fp16"))
    res["parser_rules"]["models_missing"] = sorted(m for m, c in cards.items() if c is None)
    return res


def step_tests_gpu(ctx: dict) -> dict:
    cache_dir = str(Path(ctx["workdir"]) / "plans")  # tests/gpu build any plans there (no TensorRT here: they skip)
    r = subprocess.run(  # noqa: S603 - our own interpreter and test folder
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "gpu")],
        capture_output=True, text=True, cwd=ROOT, timeout=max(10, ctx["limit"] - 5),
        env={**os.environ, "STREAMSEG_GPU_CHECK_CACHE": cache_dir},
    )
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.strip()]
    return {"rc": r.returncode, "summary": lines[-1] if lines else r.stderr[-300:]}


def _pipeline_torch(cards: list[Path], sources: list[str], frames: int, precision: str, mode: str) -> dict:
    from streamseg.config import validate_config
    from streamseg.pipeline import Pipeline

    eng = {"backend": "torch", "precision": precision}
    cfg = validate_config(
        {
            "sources": [{"uri": s, "mode": mode} for s in sources],
            "sinks": [{"uri": "null://"}],
            "engines": {"semantic": {"card": str(cards[0]), **eng}, "instance": {"card": str(cards[1]), **eng},
                        "cache_dir": None},
            "max_frames": frames,
        },
        "gpu-check",
    )
    pipe = Pipeline(cfg)
    t0 = time.perf_counter()
    pipe.run()
    rep = pipe.last_report or {}
    stages = rep.get("latency_ms", {}).get("stages", {})
    means = {k: v.get("mean") or 0.0 for k, v in stages.items() if isinstance(v, dict)}
    total = sum(means.values()) or 1.0
    return {
        "sources": len(sources), "mode": mode, "precision": precision,
        "frames": rep.get("frames"), "fps": rep.get("fps"), "wall_s": round(time.perf_counter() - t0, 2),
        "end_to_end": {k: rep.get("latency_ms", {}).get("end_to_end", {}).get(k) for k in ("p50", "p99")},
        "streams": {sid: {k: s.get("end_to_end", {}).get(k) for k in ("p50", "p99")} | {"fps": s.get("fps")}
                    for sid, s in rep.get("streams", {}).items()},
        "stage_share": {k: round(v / total, 3) for k, v in means.items()},
        "engines": rep.get("engines"),
    }


def step_pipeline(ctx: dict, what: str) -> dict:
    """The shared pair on the udacity clip, or the bundled pair on N synthetic 1080p30 streams (paced)."""
    wd, bundle = Path(ctx["workdir"]), Path(ctx["bundle"])
    precision = "fp32" if ctx["dry_run"] else "fp16"
    if what == "udacity":
        video = data_file(SHARED_FILES["udacity"], bundle)
        cards = [card_for(m, wd, bundle) for m in PAIRS["shared"]]
        if video is None or None in cards:
            return {"skipped": "the udacity clip or the shared models are in neither the bundle nor ../shared/data"}
        return _pipeline_torch(cards, [f"file://{video}"], ctx["frames"] * (1 if ctx["dry_run"] else 8), precision, "offline")
    n = int(what)
    frames = ctx["frames"] if ctx["dry_run"] else 150  # 5 s of 30 fps per stream
    sources = [f"synthetic://driving?size=1920x1080&fps=30&seed={i}&frames={frames}" for i in range(n)]
    return _pipeline_torch([MODELS[m] for m in PAIRS["bundled"]], sources, frames, precision, "realtime")


def plan(dry_run: bool, models: tuple[str, ...], run_tests: bool) -> list[tuple[str, float]]:
    """(step, time limit in seconds), in order; what has no time left is recorded as not run."""
    steps = [("device", 60), ("imports", 90)]
    steps += [(f"agreement:{m}", 150) for m in models]
    steps += [(f"throughput:{m}", 120) for m in models]
    steps += [("copy", 60), ("codecs", 30), ("tensorrt", 120)]
    if run_tests:
        steps.append(("tests_gpu", 120))
    steps.append(("pipeline:udacity", 120))
    steps += [(f"pipeline:{n}", 120) for n in ((2,) if dry_run else STREAMS)]
    steps += [(f"compile:{m}", 120) for m in models if m.startswith("synth")]  # as time allows
    return steps


STEPS = {"device": step_device, "imports": step_imports, "agreement": step_agreement, "throughput": step_throughput,
         "compile": step_compile,
         "copy": step_copy, "codecs": step_codecs, "tensorrt": step_tensorrt, "tests_gpu": step_tests_gpu,
         "pipeline": step_pipeline}


def run_step(name: str, ctx: dict) -> dict:
    """One step in this process (the orchestrator's subprocess calls this)."""
    kind, _, arg = name.partition(":")
    return STEPS[kind](ctx, arg) if arg else STEPS[kind](ctx)


def install(bundle: Path, venv: Path, timeout: float) -> dict:
    """A venv on the image's python3 that sees its packages (torch, ...), and the project from the
    bundle's wheels alone: --no-index, so nothing reaches for the network."""
    wheels = bundle / "wheels"
    if not wheels.is_dir():
        return {"error": f"no bundle at {wheels} (make gpu-bundle writes it, on a machine with network)"}
    t0 = time.perf_counter()
    py = venv / "bin" / "python"
    cmds = []
    if not py.exists():
        cmds.append([sys.executable, "-m", "venv", str(venv)])
    cmds.append([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
                 "--find-links", str(wheels), "--no-compile", "streamseg[torch]"])
    for cmd in cmds:
        left = timeout - (time.perf_counter() - t0)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1))  # noqa: S603 - fixed commands
        if r.returncode:
            return {"error": f"{' '.join(cmd[:4])}... exited {r.returncode}", "tail": (r.stderr or r.stdout)[-800:]}
        if cmd[1:3] == ["-m", "venv"]:
            # the image's python3 is itself a venv (/opt/torch/.venv), so --system-site-packages would
            # see the bare interpreter's packages, not torch: a .pth puts this python's own site dirs
            # (torch, CUDA, onnxruntime...) on the new venv's path, where pip sees them as installed
            import site

            dirs = [d for d in (*site.getsitepackages(), site.getusersitepackages()) if Path(d).is_dir()]
            lib = next((venv / "lib").glob("python3*/site-packages"))
            (lib / "_gpu_image.pth").write_text("".join(f"{d}\n" for d in dirs))
    return {"python": str(py), "seconds": round(time.perf_counter() - t0, 1)}


def run_steps(out: Path, *, dry_run: bool, bundle: Path = BUNDLE, python: str | None = None,
              models: tuple[str, ...] | None = None, run_tests: bool = True, budget_s: float = BUDGET_S,
              do_install: bool = False, frames: int | None = None, seconds: float | None = None,
              steps: list[tuple[str, float]] | None = None) -> dict:
    """The whole check; every step a subprocess of `python` (the venv's), its result in `out` at once."""
    import tempfile

    t_start = time.perf_counter()
    models = tuple(MODELS) if models is None else models
    result: dict = {"gpu_check": 2, "dry_run": dry_run, "backend": "torch",
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "host": platform.node(), "python": platform.python_version(), "budget_s": budget_s, "steps": {}}
    if dry_run:
        result["note"] = "dry run: torch on the CPU; no figure here is a GPU figure"

    def save() -> None:
        result["seconds"] = round(time.perf_counter() - t_start, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")

    def record(name: str, res: dict, seconds: float) -> None:
        res = {**res, "seconds": round(seconds, 1)}
        result["steps"][name] = res
        status = "error" if "error" in res else "skipped" if "skipped" in res else "ok"
        print(f"gpu-check: {name:<28} {status:<8} {seconds:6.1f} s", flush=True)
        save()

    save()
    if do_install:
        t0 = time.perf_counter()
        try:
            res = install(bundle, bundle.parent / ".gpu-venv", 240)
        except Exception as e:  # a timeout or a missing python: recorded, the steps still run
            res = {"error": f"{type(e).__name__}: {e}"[:500]}
        record("install", res, time.perf_counter() - t0)
        python = res.get("python", python)
    python = python or sys.executable
    frames = frames or (2 if dry_run else 16)
    seconds = seconds if seconds is not None else (0.0 if dry_run else 1.5)
    workdir = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    worker = _Worker(python, workdir)
    try:
        for name, limit in steps if steps is not None else plan(dry_run, models, run_tests):
            left = budget_s - (time.perf_counter() - t_start)
            if left < min(limit, 30):  # the budget is enforced before a step starts
                record(name, {"skipped": f"not started: {left:.0f} s of the {budget_s:.0f} s budget left"}, 0.0)
                continue
            limit = min(limit, left)
            ctx = {"dry_run": dry_run, "bundle": str(bundle), "workdir": str(workdir), "frames": frames,
                   "seconds": seconds, "limit": limit}
            t0 = time.perf_counter()
            try:
                res = worker.run(name, ctx, limit)
            except Exception as e:  # the orchestrator itself must not die: record and go on
                res = {"error": f"{type(e).__name__}: {e}"[:500]}
            record(name, res, time.perf_counter() - t0)
    finally:
        worker.stop()
    result["under_budget"] = time.perf_counter() - t_start < budget_s
    save()
    return result


# pure-Python or cp312 manylinux wheels the GPU image lacks (its package list: the device README's
# KINDS.md): onnx2torch (--no-deps: its torch/torchvision are the image's), pydantic with its deps
BUNDLE_WHEELS = (["onnx2torch>=1.5", "--no-deps"], ["pydantic>=2.5,<3"])
PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux_2_28_x86_64", "--platform", "any"]
CARRY_LIMIT = 64 << 20


def _tree_bytes() -> int:
    """What a device call sends besides the bundle: tracked and untracked-not-ignored files."""
    r = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True, cwd=ROOT,  # noqa: S603, S607
                       check=True)
    return sum((ROOT / f).stat().st_size for f in r.stdout.decode().split("\0") if f and (ROOT / f).is_file())


def make_bundle(bundle: Path = BUNDLE) -> dict:
    """`make gpu-bundle` (needs the network): the project as a wheel, the wheels the GPU image lacks,
    and copies of the ../shared/data files the check reads; prints the size with the working tree."""
    import shutil

    wheels, data = bundle / "wheels", bundle / "data"
    shutil.rmtree(bundle, ignore_errors=True)
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)  # noqa: S603
    for spec in BUNDLE_WHEELS:
        subprocess.run([*pip, "download", *PLATFORM, "-d", str(wheels), *spec], check=True)  # noqa: S603
    copied, missing = [], []
    for rel in SHARED_FILES.values():
        src = SHARED / rel
        if src.is_file():
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, data / rel)
            copied.append(rel)
        else:
            missing.append(rel)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    tree = _tree_bytes()
    res = {"bundle_bytes": size, "tree_bytes": tree, "total_mib": round((size + tree) / 2**20, 1),
           "limit_mib": CARRY_LIMIT >> 20, "wheels": sorted(f.name for f in wheels.iterdir()),
           "data": copied, "data_missing": missing}
    print(f"gpu-bundle: {size / 2**20:.1f} MiB in {bundle} + working tree {tree / 2**20:.1f} MiB = "
          f"{res['total_mib']} MiB (limit {res['limit_mib']} MiB)")
    for w in res["wheels"]:
        print(f"  wheel {w}")
    for m in missing:
        print(f"  NOT bundled (absent from ../shared/data): {m}")
    if size + tree > CARRY_LIMIT:
        raise SystemExit(f"gpu-bundle: {res['total_mib']} MiB is over the {res['limit_mib']} MiB a device call carries")
    (bundle / "bundle.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


class _Worker:
    """One subprocess that runs steps one after another (torch and the models are imported once);
    a step past its limit kills it, and the next step starts a fresh one."""

    def __init__(self, python: str, workdir: Path) -> None:
        self.python, self.workdir, self.proc, self.n = python, workdir, None, 0

    def _start(self) -> None:
        import queue
        import threading

        self.err = open(self.workdir / f"worker-{self.n}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [self.python, "-m", "streamseg.gpucheck", "--worker"], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda out, q: [q.put(ln) for ln in out] + [q.put(None)],
                         args=(self.proc.stdout, self.lines), daemon=True).start()

    def run(self, name: str, ctx: dict, limit: float) -> dict:
        import queue

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.n += 1
        part = self.workdir / f"part-{self.n}.json"
        self.proc.stdin.write(json.dumps({"step": name, "ctx": ctx, "part": str(part)}) + "\n")
        self.proc.stdin.flush()
        deadline = time.perf_counter() + limit
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.perf_counter(), 0.01))
            except queue.Empty:
                self.stop()
                return {"error": f"timed out after {limit:.0f} s"}
            if line is None:  # the worker died (a crash in a native library, say)
                self.stop()
                log_tail = sorted(self.workdir.glob("worker-*.log"))[-1].read_text()[-800:]
                return {"error": "the step's process died", "tail": log_tail}
            if line.strip() == f"done {part}":
                return json.loads(part.read_text())

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.err.close()
            self.proc = None


def _worker_main() -> int:
    """`python -m streamseg.gpucheck --worker`: steps from stdin (one JSON a line), results to files."""
    import traceback

    logging.basicConfig(level=logging.WARNING)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            res = run_step(req["step"], req["ctx"])
        except Exception as e:  # the step failed: why, for the JSON
            res = {"error": f"{type(e).__name__}: {e}"[:500], "where": traceback.format_exc()[-800:]}
        Path(req["part"]).write_text(json.dumps(res, default=str))
        print(f"done {req['part']}", flush=True)
    return 0


def main(args) -> int:
    """The CLI's `gpu-check` subcommand."""
    models = tuple(args.models.split(",")) if args.models else tuple(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        from streamseg.errors import UserError

        raise UserError(f"gpu-check: unknown model {unknown[0]!r} (known: {', '.join(MODELS)})")
    if getattr(args, "tensorrt", False):
        res = run_tensorrt(
            Path(args.out), dry_run=args.dry_run, models=models, api=args.api, frames=args.frames,
            run_tests=not args.no_tests,
        )
        print(f"gpu-check{' (dry run)' if res['dry_run'] else ''}: {len(res['plans'])} plans, "
              f"{res['seconds']} s, written {args.out}")
        return 0
    res = run_steps(Path(args.out), dry_run=args.dry_run, models=models, run_tests=not args.no_tests,
                    bundle=Path(getattr(args, "bundle", None) or BUNDLE), frames=args.frames)
    failed = [k for k, v in res["steps"].items() if "error" in v]
    print(f"gpu-check{' (dry run)' if res['dry_run'] else ''}: {len(res['steps'])} steps, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''}, {res['seconds']} s, written {args.out}")
    return 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.exit(_worker_main())
    # the GPU machine, before streamseg is installed: install from the bundle, then run every step
    import argparse

    ap = argparse.ArgumentParser(prog="python -m streamseg.gpucheck")
    ap.add_argument("--bundle", default=str(BUNDLE))
    ap.add_argument("--out", default="out/gpu-check.json")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--make-bundle", action="store_true", help="write the bundle (needs the network) and stop")
    a = ap.parse_args()
    if a.make_bundle:
        make_bundle(Path(a.bundle))
        sys.exit(0)
    r = run_steps(Path(a.out), dry_run=a.dry_run, bundle=Path(a.bundle), do_install=True, run_tests=not a.no_tests)
    print(f"gpu-check: {len(r['steps'])} steps, {r['seconds']} s, written {a.out}")
