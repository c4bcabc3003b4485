"""Fused graph vs today's numpy/OpenCV path, per model and CPU backend: agreement on every frame
and ms per frame.

Agreement: the whole udacity clip (221 frames, ../shared/data) and the bundled demo scene
(synthetic 1280x720), each frame through both paths: semantic, the fraction of pixels with the
same class (>= 99.9% asked); instance, frames whose instances match one to one with the same
class and mask IoU >= 0.99.

Three paths: `unfused` (today's numpy/OpenCV), `fused` (the GPU graph: frames at capture size,
resized inside the graph) and `fused_host_resize` (OpenCV resizes, the graph does the rest).
Speed: batch 1, preprocess + infer + decode per frame (what the pipeline spends on it), the
paths interleaved in rotating order over `--repeats` rounds so the load of a shared machine
falls on all alike; the median of the rounds and their spread (min..max) are reported.

    python benchmarks/fused.py [--frames-timed 20] [--repeats 5] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402

from benchmarks.common import ROOT, machine_info, write_result  # noqa: E402
from streamseg.models import open_model  # noqa: E402
from streamseg.models.fuse import compare_results  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
UDACITY = SHARED / "video" / "udacity-solidWhiteRight-960x540.mp4"
CARDS = {
    "synth-semantic": ROOT / "engines" / "synth-semantic.yaml",
    "synth-instance": ROOT / "engines" / "synth-instance.yaml",
    "twinlitenet-bdd": ROOT / "tests" / "fixtures" / "cards" / "twinlitenet-bdd.yaml",
    "yolov8n-seg-coco": ROOT / "tests" / "fixtures" / "cards" / "yolov8n-seg-coco.yaml",
}


def udacity_frames() -> list:
    cap = cv2.VideoCapture(str(UDACITY))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            return frames
        frames.append(f)


def demo_frames(n: int) -> list:
    from streamseg.sources import open_source

    with open_source(f"synthetic://driving?size=1280x720&seed=0&frames={n}") as src:
        return [f.image_bgr for f in iter(src.read, None)]


def per_frame_ms(model, frames) -> float:
    t0 = time.perf_counter()
    for f in frames:
        model.run([f])
    return (time.perf_counter() - t0) * 1000 / len(frames)


def render(result: dict) -> str:
    """fused.md: the table of a fused.json."""
    lines = [
        f"# Fused graphs vs the numpy path ({result['date']}, {result['machine'].get('cpu', '?')})",
        "",
        result["note"] + ".",
        f"Batch 1, {result['settings']['frames_timed']} udacity frames per round, {result['settings']['repeats']} rounds, "
        f"{result['settings']['threads']} engine thread(s); ms per frame = preprocess + infer + decode; median (min..max).",
        "",
        "| backend | model | unfused ms | fused (resize in graph) ms | fused, OpenCV resize ms | fused/unfused | host-resize/unfused |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ms = r["ms_per_frame"]

        def cell(k, ms=ms):
            return f"{ms[k]['median']:.1f} ({ms[k]['min']:.1f}..{ms[k]['max']:.1f})"

        lines.append(
            f"| {r['backend']} | {r['model']} | {cell('unfused')} | {cell('fused')} | {cell('fused_host_resize')} "
            f"| {r['over_unfused']['fused']:.2f} | {r['over_unfused']['fused_host_resize']:.2f} |"
        )
    lines += ["", "Agreement with the numpy path, every frame (semantic: pixels with the same class; instance: frames "
              "whose instances match one to one, same class, mask IoU >= 0.99):", "",
              "| backend | model | clip / path | frames | agreement |", "|---|---|---|---:|---|"]
    for r in result["rows"]:
        for clip, a in r["agreement"].items():
            if r["task"] == "semantic":
                agree = f"{a['pixels_agree']:.6f} of pixels (worst frame {a['worst_frame']:.6f})"
            else:
                agree = (f"{a['frames_match']}/{a['frames']} frames, {a['instances']} instances, "
                         f"{a['unmatched']} unmatched, min mask IoU {a['min_mask_iou']:.4f}")
            lines.append(f"| {r['backend']} | {r['model']} | {clip} | {a['frames']} | {agree} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", default=None, help="only write fused.md beside this fused.json")
    ap.add_argument("--frames-timed", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--demo-frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backends", default="onnxruntime,openvino")
    ap.add_argument("--out", default=None)
    ap.add_argument("--agreement-frames", type=int, default=None, help="check only the first N frames of each clip")
    ap.add_argument("--name", default="fused", help="result file stem (fused.json / fused.md)")
    args = ap.parse_args()
    if args.render:
        src = Path(args.render)
        src.with_suffix(".md").write_text(render(json.loads(src.read_text())))
        return 0
    clips = {"demo-1280x720": demo_frames(args.demo_frames)}
    if UDACITY.is_file():
        clips["udacity-960x540"] = udacity_frames()
    rows = []
    for backend in args.backends.split(","):
        for name, card in CARDS.items():
            if not Path(card).is_file() or (name in ("twinlitenet-bdd", "yolov8n-seg-coco") and not SHARED.is_dir()):
                continue
            with (
                open_model(str(card), backend=backend, threads=args.threads, fuse=False) as a,
                open_model(str(card), backend=backend, threads=args.threads, fuse=True, resize_in_graph=True) as b,
                open_model(str(card), backend=backend, threads=args.threads, fuse=True, resize_in_graph=False) as c,
            ):
                paths = {"unfused": a, "fused": b, "fused_host_resize": c}
                row = {"model": name, "backend": backend, "task": a.task, "agreement": {}}
                for clip, frames in clips.items():
                    frames = frames[: args.agreement_frames]
                    ref = [a.run([f])[0] for f in frames]
                    for label in ("fused", "fused_host_resize"):
                        new = [paths[label].run([f])[0] for f in frames]
                        stats = compare_results(a.task, ref, new)
                        row["agreement"][f"{clip}/{label}"] = {
                            k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in stats.items()
                        }
                timed = clips.get("udacity-960x540", clips["demo-1280x720"])[: args.frames_timed]
                for m in paths.values():
                    per_frame_ms(m, timed[:3])
                ms = {k: [] for k in paths}
                labels = list(paths)
                for r in range(args.repeats):  # the order rotates: none always runs first
                    for label in labels[r % 3 :] + labels[: r % 3]:
                        ms[label].append(per_frame_ms(paths[label], timed))
                row["ms_per_frame"] = {
                    k: {"median": round(statistics.median(v), 2), "min": round(min(v), 2), "max": round(max(v), 2)}
                    for k, v in ms.items()
                }
                base = statistics.median(ms["unfused"])
                row["over_unfused"] = {k: round(statistics.median(v) / base, 3) for k, v in ms.items() if k != "unfused"}
                rows.append(row)
                print(
                    f"{backend:<12} {name:<17} "
                    + "  ".join(f"{k} {v['median']:7.2f} ms" for k, v in row["ms_per_frame"].items())
                    + f"  {row['over_unfused']}",
                    flush=True,
                )
                print("   agreement", row["agreement"], flush=True)
    result = {
        "benchmark": "fused",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(args.threads),
        "note": "a shared 2-core VM loaded by other developers at the time: A/B interleaved, spread = min..max of rounds",
        "settings": vars(args),
        "rows": rows,
    }
    path = write_result(result, args.out, f"{args.name}.json")
    (path.parent / f"{args.name}.md").write_text(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
