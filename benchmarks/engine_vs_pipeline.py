"""How close does the whole pipeline come to what its engines allow?

Runs one video through
  (a) the engines alone: both models' `infer` back to back on frames decoded and
      preprocessed beforehand (the ceiling: no decode, no pre/postprocessing, no overlay);
  (b) the whole pipeline (decode thread, batcher, pre/postprocess, overlay, a null:// sink),
and prints fps of each and the ratio (b)/(a). Variants alternate over the repetitions
so machine drift hits both alike; the median of each is reported with its spread.

    python benchmarks/engine_vs_pipeline.py [--video V] [--frames N] [--reps R] [--out DIR]

Defaults: the udacity clip and the two real models from ../shared/data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, write_result  # noqa: E402

from streamseg.config import validate_config  # noqa: E402
from streamseg.models import open_model  # noqa: E402
from streamseg.pipeline import Pipeline  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CARDS = ROOT / "tests" / "fixtures" / "cards"


def decode_all(video: str, n: int | None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(video)
    frames = []
    while n is None or len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    return frames


def engines_only(images: list[np.ndarray], cards: dict[str, str], threads: int) -> float:
    models = [open_model(c, threads=threads) for c in cards.values()]
    for m in models:
        m.__enter__()
    try:
        prepared = [[m.prepare([img])[0] for img in images] for m in models]
        for m, xs in zip(models, prepared, strict=True):  # warm-up
            m.infer(xs[0])
        t0 = time.perf_counter()
        for i in range(len(images)):
            for m, xs in zip(models, prepared, strict=True):
                m.infer(xs[i])
        return len(images) / (time.perf_counter() - t0)
    finally:
        for m in models:
            m.__exit__(None, None, None)


def pipeline(video: str, n: int | None, cards: dict[str, str], threads: int, batch: int) -> tuple[float, dict]:
    cfg = validate_config(
        {
            "sources": [{"uri": video, "mode": "offline"}],
            "sinks": ["null://"],
            "engines": {task: {"card": card, "threads": threads} for task, card in cards.items()},
            "pipeline": {"batch": {"max_size": batch, "max_wait_ms": 5}},
            "metrics": {"progress": False, "summary": False},
            "max_frames": n,
        }
    )
    pipe = Pipeline(cfg)
    t0 = time.perf_counter()
    rep = pipe.run().report
    wall = time.perf_counter() - t0
    # fps over the whole run, model loading excluded: first capture to last frame out
    return rep["fps"], {"report": rep, "wall_s_with_load": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(SHARED / "video" / "udacity-solidWhiteRight-960x540.mp4"))
    ap.add_argument("--semantic", default=str(CARDS / "twinlitenet-bdd.yaml"))
    ap.add_argument("--instance", default=str(CARDS / "yolov8n-seg-coco.yaml"))
    ap.add_argument("--frames", type=int, default=None, help="frames per run (default: the whole video)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=None, help="folder for results (default: benchmarks/results/<host>-<date>)")
    args = ap.parse_args()
    if not Path(args.video).is_file():
        print(f"benchmark: video not found: {args.video}", file=sys.stderr)
        return 2
    cards = {"semantic": args.semantic, "instance": args.instance}
    cv2.setNumThreads(1)
    images = decode_all(args.video, args.frames)
    n = len(images)
    print(f"{n} frames of {args.video}, {args.reps} repetitions, engine threads {args.threads}")
    eng, pipe, stage_infer = [], [], []
    for rep in range(args.reps):
        order = [("engines", None), ("pipeline", None)] if rep % 2 == 0 else [("pipeline", None), ("engines", None)]
        for name, _ in order:
            if name == "engines":
                fps = engines_only(images, cards, args.threads)
                eng.append(fps)
            else:
                fps, info = pipeline(args.video, n, cards, args.threads, args.batch)
                pipe.append(fps)
                stage_infer.append(info["report"]["latency_ms"]["stages"])
            print(f"  rep {rep + 1}: {name:<9} {fps:6.2f} fps")
    ratios = [p / e for p, e in zip(pipe, eng, strict=True)]
    result = {
        "benchmark": "engine_vs_pipeline",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(args.threads),
        "video": Path(args.video).name,
        "frames": n,
        "batch_max_size": args.batch,
        "engines_only_fps": {"median": statistics.median(eng), "runs": eng},
        "pipeline_fps": {"median": statistics.median(pipe), "runs": pipe},
        "ratio_pipeline_over_engines": {"median": statistics.median(ratios), "runs": ratios},
        "pipeline_stage_p50_ms": {k: v["p50"] for k, v in stage_infer[-1].items()},
    }
    print(
        f"engines only {result['engines_only_fps']['median']:.2f} fps | pipeline {result['pipeline_fps']['median']:.2f} fps"
        f" | ratio {result['ratio_pipeline_over_engines']['median']:.3f} (runs: {', '.join(f'{r:.3f}' for r in ratios)})"
    )
    write_result(result, args.out, "engine_vs_pipeline.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
