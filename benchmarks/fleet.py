"""Fleet throughput on this machine: the same recordings with 1 worker (2 engine threads)
and with 2 workers (1 engine thread each), on a local Ray instance; alternating, median.

    python benchmarks/fleet.py [--recordings 6] [--frames 60] [--reps 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info, write_result  # noqa: E402

from streamseg.config import validate_config  # noqa: E402
from streamseg.fleet import run_fleet  # noqa: E402


def config(threads: int):
    return validate_config(
        {
            "engines": {
                "semantic": {"card": str(ROOT / "engines" / "synth-semantic.yaml"), "threads": threads},
                "instance": {"card": str(ROOT / "engines" / "synth-instance.yaml"), "threads": threads},
            },
            "sinks": ["overlay.mp4"],
        }
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recordings", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    inputs = [f"synthetic://driving?size=1280x720&seed={s}&frames={args.frames}" for s in range(args.recordings)]
    runs: dict[str, list[float]] = {"1 worker x 2 threads": [], "2 workers x 1 thread": []}
    try:
        for rep in range(args.reps):
            order = list(runs) if rep % 2 == 0 else list(runs)[::-1]
            for name in order:
                workers, threads = (1, 2) if name.startswith("1") else (2, 1)
                with tempfile.TemporaryDirectory() as tmp:
                    r = run_fleet(
                        config(threads), inputs, Path(tmp), workers=workers, progress=False, log=lambda m: None
                    )
                runs[name].append(r["totals"]["throughput_fps"])
                print(f"rep {rep + 1} {name}: {runs[name][-1]:.2f} frames/s", flush=True)
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "benchmark": "fleet",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(2),
        "recordings": args.recordings,
        "frames_each": args.frames,
        "frame_size": [1280, 720],
        "throughput_fps": {k: {"median": med[k], "runs": v} for k, v in runs.items()},
        "ratio_2_workers_over_1": round(med["2 workers x 1 thread"] / med["1 worker x 2 threads"], 3),
    }
    print(f"2 workers / 1 worker: {result['ratio_2_workers_over_1']}")
    write_result(result, args.out, "fleet.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
