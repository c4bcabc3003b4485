"""Analytics events against the synthetic scene's truth: persons stepping onto the road.

On `--seeds` unseen scenes in which a person steps onto the road 6-25 m ahead (the first such
seeds from 2000; training used 1000-1299, `streamseg eval` 0-4), the bundled models run through
the whole pipeline with tracking and an `on_road` zone (road + lane); each person's `enter` is
matched to the scene's own truth (the person's feet crossing the road's edge in the world) within
`--window` frames (evaluate.EventMeter says what is graded). Also the analytics stage's CPU ms
per frame, from the run's report, and the same grading of the analytics fed the scene's own truth
(exact masks, road map and object ids as track IDs): what the analytics get wrong by themselves,
apart from what the models and the tracker get wrong.

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

import numpy as np  # noqa: E402
from common import BUNDLED_CARDS, machine_info, write_result  # noqa: E402

from streamseg.analytics import StreamAnalytics  # noqa: E402
from streamseg.config import AnalyticsConfig  # noqa: E402
from streamseg.evaluate import EventMeter, crossing_seeds, evaluate_events, lowest_rows  # noqa: E402
from streamseg.frames import Frame, Instances, SemanticResult  # noqa: E402
from streamseg.synth.scene import LABELS, DrivingScene  # noqa: E402

ANALYTICS = {"zones": [{"name": "on_road", "groups": ["road", "lane"]}]}
GROUPS = ["road", "lane", "sidewalk", "car", "person"]  # the semantic card's groups


def on_truth(seeds: list[int], size_wh, fps: float, frames: int, window: int, people: float = 1.0) -> dict:
    """The analytics on perfect perception: each frame's exact masks (object id = track ID) and group
    map; the summaries of `enter` and `intrusion_start`, as `evaluate_events` grades them."""
    cfg = AnalyticsConfig.model_validate(ANALYTICS)
    meters = [
        EventMeter("on_road", window=window, min_frames=cfg.min_frames),
        EventMeter(window=window, min_frames=cfg.min_frames, kind="intrusion_start", corridor_width=cfg.corridor.width),
    ]
    lut = np.zeros(256, np.uint8)
    for gi, g in enumerate(GROUPS, 1):
        lut[LABELS.index(g)] = gi
    for seed in seeds:
        scene = DrivingScene(size_wh, fps, seed, people)
        sa = StreamAnalytics(cfg, str(seed), cfg.zones, cfg.lines)
        for i in range(frames):
            img, label, inst = scene.render(i)
            where = scene.placements(i)
            counts = np.bincount(inst.ravel())
            ids = [o for o in where if o < len(counts) and counts[o] >= 30]
            masks = np.stack([inst == o for o in ids]) if ids else np.zeros((0, *inst.shape), bool)
            boxes = [[xs.min(), ys.min(), xs.max(), ys.max()] for ys, xs in (np.nonzero(m) for m in masks)]
            kinds = [where[o][0] for o in ids]
            f = Frame(str(seed), i, i / fps, img, 0)
            f.instances = Instances(
                np.array(boxes, np.float32).reshape(-1, 4),
                masks,
                np.zeros(len(ids), np.int32),
                np.ones(len(ids), np.float32),
                kinds,
                kinds,
                np.array(ids, np.int64),
            )
            gm = lut[label]
            f.semantic = SemanticResult(label, LABELS, gm, GROUPS)
            events, _ = sa.update(f)
            edge = set(np.unique(np.concatenate([inst[-1], inst[:, 0], inst[:, -1]])).tolist())
            areas = {o: int(counts[o]) if o < len(counts) else 0 for o in where}
            owners = {o: (o, where[o][0], areas[o]) for o in ids}
            full, low = scene.full_areas(), lowest_rows(inst, where)
            for m in meters:
                m.add_truth(str(seed), i, where, areas, full, edge, owners, events, low, scene.camera(), size_wh, scene.contact_in_view())
    return {m.kind: m.summary() for m in meters}


CARDS = BUNDLED_CARDS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--start", type=int, default=2000, help="first seed looked at")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument(
        "--people",
        type=float,
        default=1.0,
        help="scale the scenes' pedestrians (more crossings to grade per seed; 1 = the usual scene)",
    )
    ap.add_argument("--out", help="results folder (default benchmarks/results/<host>-<date>)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    seeds = crossing_seeds(args.seeds, args.start, (w, h), args.fps, args.frames, people=args.people)
    crowd = f"&people={args.people:g}" if args.people != 1 else ""
    sources = [
        f"synthetic://driving?size={args.size}&fps={args.fps:g}&seed={s}&frames={args.frames}{crowd}" for s in seeds
    ]
    print(f"seeds: {seeds}", flush=True)
    t0 = time.perf_counter()
    meters, report = evaluate_events(CARDS, sources, ANALYTICS, window=args.window)
    summary = {kind: m.summary() for kind, m in meters.items()}
    truth = on_truth(seeds, (w, h), args.fps, args.frames, args.window, args.people)
    result = {
        "benchmark": "events",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(0),
        "command": "nice python benchmarks/events.py " + " ".join(sys.argv[1:]),
        "seeds": seeds,
        "people": args.people,
        "sources": sources,
        "events": summary,
        "events_on_truth": truth,
        "analytics_cpu_ms_per_frame": report.get("analytics", {}).get("cpu_ms_per_frame"),
        "events_by_type": report.get("analytics", {}).get("events"),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    for name, res in (("the bundled models", summary), ("the scene's truth", truth)):
        for kind, s in res.items():
            print(
                f"{name}: persons' {kind}: precision {s['precision']}, recall {s['recall']} "
                f"({s['ground_truth']} graded: {s['hits']} hits, {s['false_alarms']} false alarms, {s['misses']} misses)"
            )
    print(f"analytics {result['analytics_cpu_ms_per_frame']} CPU ms/frame")
    write_result(result, args.out, "events.json")


if __name__ == "__main__":
    main()
