"""Analytics events against the synthetic scene's truth: persons stepping onto the road.

On `--seeds` unseen scenes in which a person steps onto the road 6-25 m ahead (the first such
seeds from 2000; training used 1000-1299, `streamseg eval` 0-4), the bundled models run through
the whole pipeline with tracking and an `on_road` zone (road + lane); each person's `enter` is
matched to the scene's own truth (the person's feet crossing the road's edge in the world) within
`--window` frames (evaluate.EventMeter says what is graded). Also the analytics stage's CPU ms
per frame, from the run's report.

  nice python benchmarks/events.py [--seeds 20] [--frames 150] [--size 640x360] [--fps 15] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import machine_info, write_result  # noqa: E402

from streamseg.evaluate import crossing_seeds, evaluate_events  # noqa: E402

CARDS = {
    "semantic": str(ROOT / "engines" / "synth-semantic.yaml"),
    "instance": str(ROOT / "engines" / "synth-instance.yaml"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--start", type=int, default=2000, help="first seed looked at")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--out", help="results folder (default benchmarks/results/<host>-<date>)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    seeds = crossing_seeds(args.seeds, args.start, (w, h), args.fps, args.frames)
    sources = [f"synthetic://driving?size={args.size}&fps={args.fps:g}&seed={s}&frames={args.frames}" for s in seeds]
    print(f"seeds: {seeds}", flush=True)
    t0 = time.perf_counter()
    meter, report = evaluate_events(CARDS, sources, window=args.window)
    summary = meter.summary()
    result = {
        "benchmark": "events",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(0),
        "command": "nice python benchmarks/events.py " + " ".join(sys.argv[1:]),
        "seeds": seeds,
        "sources": sources,
        "events": summary,
        "analytics_cpu_ms_per_frame": report.get("analytics", {}).get("cpu_ms_per_frame"),
        "events_by_type": report.get("analytics", {}).get("events"),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(
        f"persons entering the road: precision {summary['precision']}, recall {summary['recall']} "
        f"({summary['hits']} hits, {summary['false_alarms']} false alarms, {summary['misses']} misses); "
        f"analytics {result['analytics_cpu_ms_per_frame']} CPU ms/frame"
    )
    write_result(result, args.out, "events.json")


if __name__ == "__main__":
    main()
