"""`streamseg gpu-check`: the first contact of a GPU with streamseg, as one command.

On a fresh Linux machine with an NVIDIA GPU it: installs the `tensorrt` extra (unless TensorRT
already imports), builds fp16 and int8 plans of the fused graphs of the two bundled and the two
shared models (int8 from the Q/DQ model ONNX Runtime's gate accepts, made here first), runs
tests/gpu, measures engine-only throughput at batch 1 and 8 on the same plans (trtexec-style:
warm-up, then a timed loop of submit/collect), runs the pipeline on the udacity clip and the demo
scene, and writes one JSON with those figures, pipeline / engines-only ratios, the agreement of
each plan's masks with ONNX Runtime's numpy path on the CPU, and the codecs GStreamer would use.

`--dry-run` does all of it short of a GPU: TensorRT and CUDA are the test double
(tests/backends/fake_tensorrt.py, which runs the "plans" with ONNX Runtime), nothing is
installed, and the JSON says `"dry_run": true` - its numbers are CPU numbers of the double,
never GPU figures. NEVER RUN ON A GPU so far (see README, engine section).
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


def run(
    out: Path,
    *,
    dry_run: bool = False,
    models: tuple[str, ...] | None = None,
    api: int = 11,
    frames: int | None = None,
    seconds: float | None = None,
    run_tests: bool = True,
) -> dict:
    """Everything `gpu-check` does; returns (and writes to `out`) the JSON result."""
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


def main(args) -> int:
    """The CLI's `gpu-check` subcommand."""
    models = tuple(args.models.split(",")) if args.models else tuple(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        from streamseg.errors import UserError

        raise UserError(f"gpu-check: unknown model {unknown[0]!r} (known: {', '.join(MODELS)})")
    res = run(
        Path(args.out), dry_run=args.dry_run, models=models, api=args.api, frames=args.frames,
        run_tests=not args.no_tests,
    )
    print(f"gpu-check{' (dry run)' if res['dry_run'] else ''}: {len(res['plans'])} plans, "
          f"{res['seconds']} s, written {args.out}")
    return 0
