"""What `r.instances.masks` costs per frame (streamseg.api: the decoder's crops pasted into
frame-size masks on first access), beside what the decoder spends on the crops themselves
(yolo_seg.masks_in_frame), on the bundled models, in a run where nothing else reads masks
(a Python consumer only: no overlay drawn, no jsonl).

    python benchmarks/api_masks.py [--size 1280x720] [--frames 40]

Prints a markdown table (docs/python-api.md, "What masks cost")."""

import argparse
import statistics
import time

import numpy as np
from common import BUNDLED_CARDS  # benchmarks/, this script's folder

import streamseg
from streamseg.models import fuse, yolo_seg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()

    decode_ms: list[float] = []
    inner = yolo_seg.masks_in_frame

    def timed(*a, **kw):
        t = time.perf_counter()
        out = inner(*a, **kw)
        decode_ms.append((time.perf_counter() - t) * 1000)
        return out

    yolo_seg.masks_in_frame = fuse.masks_in_frame = timed  # whichever decoder the card uses
    config = {"engines": BUNDLED_CARDS}
    src = f"synthetic://driving?size={args.size}&fps=10&seed=11&frames={args.frames}"
    k, all_us, persons_us, mb = [], [], [], []
    with streamseg.Pipeline.from_config(config, sources=[src]) as run:
        for r in run.results():
            inst = r.instances
            t = time.perf_counter_ns()
            inst[inst.group == "person"].masks  # noqa: B018 (the access is what is timed)
            persons_us.append((time.perf_counter_ns() - t) / 1e6)
            t = time.perf_counter_ns()
            m = inst.masks
            all_us.append((time.perf_counter_ns() - t) / 1e6)
            k.append(len(inst))
            mb.append(m.nbytes / 1e6)
    warm = len(decode_ms) - len(k)  # the warm-up pass's calls come first
    dec = decode_ms[warm:]

    def row(name, xs, unit):
        return f"| {name} | {statistics.median(xs):.3g} {unit} | {np.percentile(xs, 90):.3g} {unit} |"

    print(f"{len(k)} frames at {args.size}, {statistics.mean(k):.1f} instances per frame (max {max(k)})\n")
    print("| per frame | median | p90 |\n|---|---|---|")
    print(row("decoder: mask crops (`masks_in_frame`, postprocess thread)", dec, "ms"))
    print(row("`r.instances[group == 'person'].masks` (persons only, first)", persons_us, "ms"))
    print(row("`r.instances.masks`, first access (all instances)", all_us, "ms"))
    print(row("memory of `r.instances.masks`", mb, "MB"))


if __name__ == "__main__":
    main()
