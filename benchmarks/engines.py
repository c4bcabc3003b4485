"""Engines alone: backend x precision x batch size, ms per frame and frames/s per model.

    python benchmarks/engines.py [--reps 2] [--iters 20] [--out DIR]
    python benchmarks/engines.py --gate-only [--models synth]    # INT8 gate verdicts, nothing timed

Every figure is put beside ONNX Runtime fp32 at batch 1 for the same model, measured in
the same run; variants alternate over the repetitions so drift hits them alike. Models:
the two real ones in ../shared/data (fixed batch 1: bigger batches loop) and the two
bundled ones (dynamic batch).

INT8 rows: each float model with a card is quantized by both quantizers (ONNX Runtime's
static quantization and NNCF) for both CPU backends and judged by the accuracy gate
(calibration and gate frames: the udacity clip for the real model, the synthetic scene
for the bundled ones). A refused model is listed with its agreement and not timed.
The YOLOv8n-seg file is already INT8 (dynamic quantization) and gets no INT8 row.
TensorRT is never timed here (CPU backends only); `backends_present` lists the backends
whose runtime is installed on the machine, not every registered one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from common import machine_info, write_result  # noqa: E402

from streamseg.backends import BACKENDS, create_engine  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "models"
FIXTURE_CARDS = ROOT / "tests" / "fixtures" / "cards"
UDACITY = ROOT.parent / "shared" / "data" / "video" / "udacity-solidWhiteRight-960x540.mp4"
INT8_CARDS = {  # model -> (card, calibration/gate frames)
    "twinlitenet (shared, batch 1)": (FIXTURE_CARDS / "twinlitenet-bdd.yaml", str(UDACITY)),
    "synth-semantic (bundled)": (
        ROOT / "engines" / "synth-semantic.yaml",
        "synthetic://driving?size=1280x720&seed=950&frames=200",
    ),
    "synth-instance (bundled)": (
        ROOT / "engines" / "synth-instance.yaml",
        "synthetic://driving?size=1280x720&seed=950&frames=200",
    ),
}
MODELS = {
    "twinlitenet (shared, batch 1)": SHARED / "twinlitenet-bdd-360x640.onnx",
    "yolov8n-seg int8 (shared, batch 1)": SHARED / "yolov8n-seg-int8-320.onnx",
    "synth-semantic (bundled)": ROOT / "engines" / "synth-semantic.onnx",
    "synth-instance (bundled)": ROOT / "engines" / "synth-instance.onnx",
}


def backends_present() -> list[str]:
    """The registered backends whose runtime is installed here (tensorrt is registered everywhere)."""
    return sorted(name for name, (_, _, runtime) in BACKENDS.items() if importlib.util.find_spec(runtime) is not None)


def variants() -> list[tuple[str, str]]:
    out = [("onnxruntime", "fp32")]
    if importlib.util.find_spec("openvino"):
        from streamseg.cpu import cpu_features

        out.append(("openvino", "fp32"))
        if cpu_features().bf16:
            out.append(("openvino", "bf16"))
    return out


def build_int8_variants(models: dict[str, Path], cache_dir: Path, threads: int) -> tuple[dict, list[dict]]:
    """Gate every (quantizer, backend) pairing; returns {(model, backend, quantizer): cache dir} for the
    accepted ones and the verdicts of all."""
    from streamseg.errors import UserError
    from streamseg.quantize import QUANTIZERS, build_int8

    accepted, verdicts = {}, []
    for name in models:
        if name not in INT8_CARDS or not INT8_CARDS[name][0].is_file():
            continue
        card, calib = INT8_CARDS[name]
        if calib.endswith(".mp4") and not Path(calib).is_file():
            continue
        for backend, quantizer in itertools.product(("onnxruntime", "openvino"), QUANTIZERS):
            if backend == "openvino" and not _has_openvino():
                continue
            where = cache_dir / f"{backend}-{quantizer}"
            try:
                v = build_int8(
                    str(card), calib, backend=backend, quantizer=quantizer, frames=32, threads=threads, cache_dir=where
                )
                accepted[(name, backend, quantizer)] = where
            except UserError as e:
                # paths relative to the project: results must not name this machine's folders
                v = {"backend": backend, "quantizer": quantizer, "refused": str(e).replace(f"{ROOT}/", "")}
            v = {"model": name, **{k: v[k] for k in v if k != "file"}}
            verdicts.append(v)
            print(f"int8 {name} {backend} {quantizer}: {v.get('agreement', v.get('refused'))}", flush=True)
    return accepted, verdicts


def _has_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def time_one(
    backend: str, precision: str, model: Path, batch: int, iters: int, threads: int, cache_dir: Path | None = None
) -> float:
    """ms per frame."""
    with create_engine(backend, model, precision=precision, threads=threads, cache_dir=cache_dir) as eng:
        spec = next(iter(eng.inputs.values()))
        shape = (batch, *[d for d in spec.shape[1:]])
        x = {spec.name: np.random.default_rng(0).random(shape, np.float32)}
        eng.infer(x)
        eng.infer(x)
        t0 = time.perf_counter()
        for _ in range(iters):
            eng.infer(x)
        return 1000 * (time.perf_counter() - t0) / (iters * batch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-int8", dest="int8", action="store_false", help="skip the INT8 rows")
    ap.add_argument("--models", default="", help="only models whose name contains this")
    ap.add_argument(
        "--gate-only", action="store_true", help="only the INT8 gate's verdicts (accuracy, not timings): int8_gate.json"
    )
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = {k: v for k, v in MODELS.items() if v.is_file() and args.models in k}
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="streamseg-int8-"))
    int8, verdicts = build_int8_variants(models, tmp, args.threads) if args.int8 else ({}, [])
    if args.gate_only:  # agreement with fp32 does not depend on how loaded the machine is
        result = {
            "benchmark": "engines-int8-gate",
            "date": dt.date.today().isoformat(),
            "machine": machine_info(args.threads),
            "backends_present": backends_present(),
            "models": {name: str(path.relative_to(ROOT)) for name, path in models.items() if path.is_relative_to(ROOT)},
            "int8_gate": verdicts,
        }
        write_result(result, args.out, "int8_gate.json")
        return 0
    grid = [(n, (b, p, None), batch) for n, (b, p), batch in itertools.product(models, variants(), batches)]
    grid += [(n, (b, "int8", q), batch) for (n, b, q) in int8 for batch in batches]
    runs: dict[tuple, list[float]] = {}
    for rep in range(args.reps):
        for name, (backend, precision, quantizer), batch in grid if rep % 2 == 0 else grid[::-1]:
            cache = int8.get((name, backend, quantizer))
            ms = time_one(backend, precision, models[name], batch, args.iters, args.threads, cache)
            runs.setdefault((name, backend, precision if quantizer is None else f"int8/{quantizer}", batch), []).append(
                ms
            )
        print(f"rep {rep + 1} done", flush=True)
    rows = []
    for (name, backend, precision, batch), ms in runs.items():
        base = statistics.median(runs[(name, "onnxruntime", "fp32", 1)])
        med = statistics.median(ms)
        rows.append(
            {
                "model": name,
                "backend": backend,
                "precision": precision,
                "batch": batch,
                "ms_per_frame": round(med, 2),
                "fps": round(1000 / med, 1),
                "speedup_vs_ort_fp32_b1": round(base / med, 2),
                "runs_ms": [round(v, 2) for v in ms],
            }
        )
    print(f"{'model':<36}{'backend':<13}{'prec':<18}{'batch':>6}{'ms/frame':>10}{'fps':>8}{'x ORT b1':>10}")
    for r in rows:
        print(
            f"{r['model']:<36}{r['backend']:<13}{r['precision']:<18}{r['batch']:>6}{r['ms_per_frame']:>10.2f}{r['fps']:>8.1f}{r['speedup_vs_ort_fp32_b1']:>10.2f}"
        )
    present = backends_present()
    result = {
        "benchmark": "engines",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(args.threads),
        "backends_present": present,
        "iters": args.iters,
        "rows": rows,
        "int8_gate": verdicts,
        "tensorrt": "not measured: "
        + ("this script times the CPU backends only" if "tensorrt" in present else "TensorRT is not installed here"),
    }
    write_result(result, args.out, "engines.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
