"""Engines alone: backend x precision x batch size, ms per frame and frames/s per model.

    python benchmarks/engines.py [--reps 2] [--iters 20] [--out DIR]

Every figure is put beside ONNX Runtime fp32 at batch 1 for the same model, measured in
the same run; variants alternate over the repetitions so drift hits them alike. Models:
the two real ones in ../shared/data (fixed batch 1: bigger batches loop) and the two
bundled ones (dynamic batch).
"""

from __future__ import annotations

import argparse
import datetime as dt
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
MODELS = {
    "twinlitenet (shared, batch 1)": SHARED / "twinlitenet-bdd-360x640.onnx",
    "yolov8n-seg int8 (shared, batch 1)": SHARED / "yolov8n-seg-int8-320.onnx",
    "synth-semantic (bundled)": ROOT / "engines" / "synth-semantic.onnx",
    "synth-instance (bundled)": ROOT / "engines" / "synth-instance.onnx",
}


def variants() -> list[tuple[str, str]]:
    out = [("onnxruntime", "fp32")]
    import importlib.util

    if importlib.util.find_spec("openvino"):
        import openvino as ov

        out.append(("openvino", "fp32"))
        if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            out.append(("openvino", "bf16"))
    return out


def time_one(backend: str, precision: str, model: Path, batch: int, iters: int, threads: int) -> float:
    """ms per frame."""
    with create_engine(backend, model, precision=precision, threads=threads) as eng:
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
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    models = {k: v for k, v in MODELS.items() if v.is_file()}
    grid = list(itertools.product(models, variants(), batches))
    runs: dict[tuple, list[float]] = {}
    for rep in range(args.reps):
        for name, (backend, precision), batch in grid if rep % 2 == 0 else grid[::-1]:
            ms = time_one(backend, precision, models[name], batch, args.iters, args.threads)
            runs.setdefault((name, backend, precision, batch), []).append(ms)
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
    print(f"{'model':<36}{'backend':<13}{'prec':<6}{'batch':>6}{'ms/frame':>10}{'fps':>8}{'x ORT b1':>10}")
    for r in rows:
        print(
            f"{r['model']:<36}{r['backend']:<13}{r['precision']:<6}{r['batch']:>6}{r['ms_per_frame']:>10.2f}{r['fps']:>8.1f}{r['speedup_vs_ort_fp32_b1']:>10.2f}"
        )
    result = {
        "benchmark": "engines",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(args.threads),
        "backends_present": sorted(BACKENDS),
        "iters": args.iters,
        "rows": rows,
    }
    write_result(result, args.out, "engines.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
