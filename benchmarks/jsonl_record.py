"""What one frame's JSON line costs the JSONL sink (sinks/jsonl.frame_record), on the bundled
models' real results: the two counts in it as made today (mask areas from the decoder's crops,
group shares by OpenCV's histogram) against the way they were made before (every instance's crop
pasted into a frame-size mask to count its pixels, shares by numpy's bincount), both on the same
frames, and the whole line as made today. Thread CPU time of the calling thread.

    python benchmarks/jsonl_record.py [--size 1280x720] [--frames 40] [--out DIR]
"""

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
from common import BUNDLED_CARDS, machine_info, write_result  # noqa: E402

import streamseg  # noqa: E402
from streamseg.frames import Frame  # noqa: E402
from streamseg.sinks.jsonl import frame_record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", help="results folder (default benchmarks/results/<host>-<date>)")
    args = ap.parse_args()
    config = {"engines": BUNDLED_CARDS}
    src = f"synthetic://driving?size={args.size}&fps=10&seed=11&frames={args.frames}"
    parts_new, parts_old, record_ms, k = [], [], [], []
    with streamseg.Pipeline.from_config(config, sources=[src]) as run:
        for r in run.results():
            inst = r.instances._inst
            if "_crops" not in inst.__dict__:
                continue
            sem = r.semantic
            k.append(len(inst))
            t = time.thread_time_ns()  # before: K frame-size masks pasted, counted; shares by bincount
            areas_old = inst.__dict__["_crops"].paste().reshape(len(inst), -1).sum(axis=1)
            np.bincount(sem.group_map.ravel(), minlength=len(sem.group_names) + 1)
            parts_old.append((time.thread_time_ns() - t) / 1e6)
            t = time.thread_time_ns()  # now: the crops counted; shares by OpenCV's histogram
            areas_new = inst.mask_areas()
            sem.group_fractions()
            parts_new.append((time.thread_time_ns() - t) / 1e6)
            assert areas_new.tolist() == areas_old.tolist()
            f = Frame(r.stream, r.seq, r.pts_s, r.image, r.capture_ns)
            f.semantic, f.instances = sem, inst
            t = time.thread_time_ns()  # the whole line as the sink makes it now
            json.dumps(frame_record(f))
            record_ms.append((time.thread_time_ns() - t) / 1e6)
    result = {
        "benchmark": "jsonl_record",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(0),
        "command": "python benchmarks/jsonl_record.py " + " ".join(sys.argv[1:]),
        "size": args.size,
        "frames": len(k),
        "instances_per_frame": round(statistics.mean(k), 1) if k else None,
        "cpu_ms_median": {
            "mask areas and group shares, before (frame-size masks, numpy bincount)": round(statistics.median(parts_old), 3),
            "mask areas and group shares, now (the crops, OpenCV's histogram)": round(statistics.median(parts_new), 3),
            "the whole JSON line, now": round(statistics.median(record_ms), 3),
        },
    }
    print(json.dumps(result["cpu_ms_median"]), f"{result['instances_per_frame']} instances a frame")
    write_result(result, args.out, "jsonl_record.json")


if __name__ == "__main__":
    main()
