"""What encoding at a sink's own size saves: process CPU time (x264's threads included) per
frame of the H.264 file sink, at the frame's size and at `size`, on the same overlaid frames.

    python benchmarks/encode_size.py [--frames 60] [--reps 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from streamseg.bench import machine_info
from streamseg.frames import Frame
from streamseg.sinks import StreamInfo, open_sink
from streamseg.sources import open_source


def encode_cpu_ms(images, size: str | None, tmp: Path) -> float:
    from streamseg.config import SinkConfig

    out = tmp / f"e-{size or 'full'}-{time.perf_counter_ns()}.mp4"
    sink = open_sink(str(out), SinkConfig(uri=str(out), size=size))
    h, w = images[0].shape[:2]
    with sink:
        sink.open({"s": StreamInfo("s", 30.0, (w, h))})
        t0 = time.process_time()
        for i, img in enumerate(images):
            sink.write(Frame("s", i, i / 30, img, 0))
        sink.close()  # the encoder drains: its last frames count too
        cpu = time.process_time() - t0
    return cpu * 1000 / len(images)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--source", default="synthetic://driving?size=1280x720&fps=30&seed=7")
    ap.add_argument("--sizes", default="full,960x540,640x360")
    ap.add_argument("--out")
    a = ap.parse_args()
    with open_source(f"{a.source}&frames={a.frames}") as src:
        images = [f.image_bgr for f in iter(src.read, None)]
    sizes = [None if s == "full" else s for s in a.sizes.split(",")]
    runs: dict[str, list[float]] = {s or "full": [] for s in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            for s in sizes if rep % 2 == 0 else sizes[::-1]:
                runs[s or "full"].append(encode_cpu_ms(images, s, Path(tmp)))
    res = {
        "benchmark": "encode_size",
        "machine": machine_info(),
        "source": a.source,
        "frames": a.frames,
        "cpu_ms_per_frame": {k: {"median": round(statistics.median(v), 2), "runs": [round(x, 2) for x in v]} for k, v in runs.items()},
    }
    print(json.dumps(res["cpu_ms_per_frame"], indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
