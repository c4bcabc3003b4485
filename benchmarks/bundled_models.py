"""Speed of the embedded default: the synthetic scene generator and the bundled models.

- generator: 1280x720 frames with ground truth per second, one thread (cv2 threads = 1);
- engines only: both bundled models back to back (ONNX Runtime fp32, `--threads` each; the pipeline too)
  on 1280x720 frames preprocessed beforehand, frames per second;
- pipeline: `streamseg demo`'s config with a null:// sink, frames per second, and its
  ratio to the engines-only figure measured in the same run.

  python benchmarks/bundled_models.py [--frames 150] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cv2  # noqa: E402
from common import BUNDLED_CARDS, machine_info, write_result  # noqa: E402

from streamseg.config import validate_config  # noqa: E402
from streamseg.models import open_model  # noqa: E402
from streamseg.pipeline import Pipeline  # noqa: E402
from streamseg.synth.scene import DrivingScene  # noqa: E402

CARDS = BUNDLED_CARDS


def generator_fps(n: int) -> float:
    scene = DrivingScene((1280, 720), 30, 7)
    scene.render(0)
    t0 = time.perf_counter()
    for i in range(n):
        scene.render(i)
    return n / (time.perf_counter() - t0)


def engines_fps(images, threads: int) -> tuple[float, dict]:
    models = [open_model(c, backend="onnxruntime", threads=threads) for c in CARDS.values()]
    for m in models:
        m.__enter__()
    try:
        xs = [[m.prepare([img])[0] for img in images] for m in models]
        for m, x in zip(models, xs, strict=True):
            m.infer(x[0])
        per_model = {}
        t0 = time.perf_counter()
        for i in range(len(images)):
            for m, x in zip(models, xs, strict=True):
                m.infer(x[i])
        fps = len(images) / (time.perf_counter() - t0)
        for m, x in zip(models, xs, strict=True):
            t = time.perf_counter()
            for xi in x:
                m.infer(xi)
            per_model[m.card.name] = round(1000 * (time.perf_counter() - t) / len(x), 2)
        return fps, per_model
    finally:
        for m in models:
            m.__exit__(None, None, None)


def pipeline_fps(n: int, threads: int) -> float:
    cfg = validate_config(
        {
            "sources": [{"uri": f"synthetic://driving?size=1280x720&fps=30&seed=7&frames={n}", "mode": "offline"}],
            "sinks": ["null://"],
            "engines": {t: {"card": c, "threads": threads, "backend": "onnxruntime"} for t, c in CARDS.items()},
            "metrics": {"progress": False, "summary": False},
        }
    )
    return Pipeline(cfg).run().report["fps"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    scene = DrivingScene((1280, 720), 30, 7)
    images = [scene.render(i)[0] for i in range(args.frames)]
    gen, eng, pipe, per_model = [], [], [], {}
    for rep in range(args.reps):
        gen.append(generator_fps(args.frames))
        e, per_model = engines_fps(images, args.threads)
        eng.append(e)
        pipe.append(pipeline_fps(args.frames, args.threads))
        print(
            f"rep {rep + 1}: generator {gen[-1]:.1f} fps (1 thread) | engines only {eng[-1]:.1f} fps | pipeline {pipe[-1]:.1f} fps",
            flush=True,
        )
    ratios = [p / e for p, e in zip(pipe, eng, strict=True)]
    result = {
        "benchmark": "bundled_models",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(args.threads),
        "frame_size": [1280, 720],
        "frames": args.frames,
        "generator_fps_one_thread": {"median": statistics.median(gen), "runs": gen},
        "engines_only_fps": {"median": statistics.median(eng), "runs": eng},
        "engine_ms_per_frame": per_model,
        "pipeline_fps": {"median": statistics.median(pipe), "runs": pipe},
        "ratio_pipeline_over_engines": {"median": statistics.median(ratios), "runs": ratios},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    write_result(result, args.out, "bundled_models.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
