"""The overlay alone: ms per 1280x720 frame on one core, with real results drawn.

    python benchmarks/overlay.py [--frames 40] [--reps 3] [--out DIR]

Frames come from the synthetic scene, results from the two bundled models (run once,
beforehand, not timed) with tracking IDs. Variants, alternated over the repetitions:

- full: semantic groups (from the model-resolution map, upsampled smoothly) + instances
  (fill, contour, label with ID) + legend + HUD with the stage bar - the default;
- semantic only, instances only;
- semantic from the full-resolution map (what the overlay costs without a small map).

OpenCV runs on one thread (the pipeline's overlay thread has one core's worth of work).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cv2  # noqa: E402
from common import machine_info, write_result  # noqa: E402

from streamseg.config import OverlayConfig  # noqa: E402
from streamseg.frames import Frame  # noqa: E402
from streamseg.models import open_model  # noqa: E402
from streamseg.overlay import Overlay  # noqa: E402
from streamseg.synth.scene import DrivingScene  # noqa: E402
from streamseg.tracking import Tracker  # noqa: E402

STATS = {
    "fps": 24.0,
    "p50": 61.0,
    "p99": 95.0,
    "stages": {"decode": 4.0, "queue": 2.0, "batch_wait": 1.0, "preprocess": 4.0, "infer": 30.0, "overlay": 5.0},
}


def frames_with_results(n: int) -> list[Frame]:
    scene = DrivingScene((1280, 720), 30, 21)
    frames = []
    tracker = Tracker()
    with (
        open_model(str(ROOT / "engines" / "synth-semantic.yaml"), backend="onnxruntime", threads=2) as sem,
        open_model(str(ROOT / "engines" / "synth-instance.yaml"), backend="onnxruntime", threads=2) as ins,
    ):
        for i in range(n):
            img = scene.render(i)[0]
            f = Frame("cam", i, i / 30, img, time.perf_counter_ns())
            (f.semantic,) = sem.run([img])
            (inst,) = ins.run([img])
            f.instances = tracker.update(inst, i)
            frames.append(f)
    return frames


def variant(frames: list[Frame], name: str) -> list[Frame]:
    out = []
    for f in frames:
        g = copy.copy(f)
        if name == "semantic only":
            g.instances = None
        elif name == "instances only":
            g.semantic = None
        elif name == "semantic from full-res map":
            g.instances = None
            g.semantic = copy.copy(f.semantic)
            g.semantic.small_group_map = None
        out.append(g)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    frames = frames_with_results(args.frames)
    cv2.setNumThreads(1)
    names = ["full", "semantic only", "instances only", "semantic from full-res map"]
    sets = {n: variant(frames, n) for n in names}
    overlay = Overlay(OverlayConfig(), stats=lambda: STATS)
    for f in sets["full"][:3]:  # warm-up: caches of colours, tables, legend
        overlay.draw(f)
    runs: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(args.reps):
        for n in names if rep % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            for f in sets[n]:
                overlay.draw(f)
            runs[n].append(1000 * (time.perf_counter() - t0) / len(frames))
    instances = sum(len(f.instances) for f in frames) / len(frames)
    rows = [
        {"variant": n, "ms_per_frame": round(statistics.median(v), 2), "runs_ms": [round(x, 2) for x in v]}
        for n, v in runs.items()
    ]
    for r in rows:
        print(f"{r['variant']:<30}{r['ms_per_frame']:>8.2f} ms / 1280x720 frame")
    print(f"({instances:.1f} instances per frame on average)")
    result = {
        "benchmark": "overlay",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(1),
        "frame": "1280x720",
        "opencv_threads": 1,
        "frames": len(frames),
        "instances_per_frame": round(instances, 1),
        "rows": rows,
    }
    write_result(result, args.out, "overlay.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
