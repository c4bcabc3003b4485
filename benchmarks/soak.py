"""Soak: a long run (default 20,000 frames, 3 synthetic streams, the bundled models, an H.264
file per stream, jsonl and the preview's queue) sampling RSS, threads and open file
descriptors every few seconds; after warm-up none may grow.

    python benchmarks/soak.py [--frames 20000] [--streams 3] [--out DIR]

`tests/test_soak.py` runs a short version of the same in `make test`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info, write_result  # noqa: E402

from streamseg.config import validate_config  # noqa: E402
from streamseg.pipeline import Pipeline  # noqa: E402
from streamseg.resources import ResourceSampler, growth  # noqa: E402


def soak(frames: int, streams: int, out_dir: Path, size: str = "640x360", interval_s: float = 5.0) -> dict:
    per = frames // streams
    cfg = validate_config(
        {
            "sources": [
                {"uri": f"synthetic://driving?size={size}&fps=30&seed={i}&frames={per}", "id": f"s{i}"}
                for i in range(streams)
            ],
            "engines": {
                "semantic": {"card": str(ROOT / "engines" / "synth-semantic.yaml"), "threads": 2},
                "instance": {"card": str(ROOT / "engines" / "synth-instance.yaml"), "threads": 2},
            },
            "pipeline": {"batch": {"max_size": 4, "max_wait_ms": 5}},
            "sinks": [str(out_dir / "soak.mp4"), str(out_dir / "soak.jsonl")],
            "metrics": {"progress": False, "summary": False},
        }
    )
    pipe = Pipeline(cfg)
    sampler = ResourceSampler(interval_s, progress=lambda: pipe.recorder.frames_out).start()
    report = pipe.run().report
    samples = sampler.stop()
    return {"frames": report["frames"], "fps": report["fps"], "samples": samples, "growth": growth(samples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--name", default="soak.json", help="result file name in --out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        r = soak(args.frames, args.streams, Path(tmp), interval_s=args.interval)
    print(f"frames {r['frames']}, {r['fps']:.1f} fps")
    for k, v in r["growth"].items():
        print(f"{k:<8} after warm-up {v['after_warmup']:>9}  end {v['end']:>9}  growth {v['growth']:>7}")
    result = {
        "benchmark": "soak",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(2),
        "streams": args.streams,
        "allocator_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},  # glibc tuning, if any
        **r,
    }
    write_result(result, args.out, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
