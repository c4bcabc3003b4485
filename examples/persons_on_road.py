"""Count the persons on the road, per minute of a recording.

    python examples/persons_on_road.py                       # a minute of the built-in scene
    python examples/persons_on_road.py --source ../shared/data/video/udacity-solidWhiteRight-960x540.mp4 \\
        --semantic tests/fixtures/cards/twinlitenet-bdd.yaml --instance tests/fixtures/cards/yolov8n-seg-coco.yaml

A person stands on the road when the ground just under the lowest rows of its mask is mostly
road (or lane) in the semantic map of the same frame. Minutes are the recording's own (pts),
not the wall clock; a person is counted once per minute by its track id.
"""

import argparse
from pathlib import Path

import numpy as np

import streamseg

ROOT = Path(__file__).resolve().parent.parent
SCENE = "synthetic://driving?size=640x360&fps=10&seed=3&frames=600"  # 60 s at 10 frames/s


def on_road(road: np.ndarray, mask: np.ndarray, rows: int = 6) -> bool:
    """Is the ground under this instance mask mostly road? (the band below its lowest rows)"""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return False
    bottom = ys.max()
    feet = xs[ys >= bottom - 2]  # where the mask meets the ground
    ground = road[bottom + 1 : bottom + 1 + rows, feet.min() : feet.max() + 1]
    return ground.size > 0 and ground.mean() > 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=SCENE)
    ap.add_argument("--semantic", default=str(ROOT / "engines/synth-semantic.yaml"))
    ap.add_argument("--instance", default=str(ROOT / "engines/synth-instance.yaml"))
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()

    config = {"engines": {"semantic": args.semantic, "instance": args.instance}}
    per_minute: dict[int, set] = {}  # minute -> the persons seen on the road in it
    frames = 0
    with streamseg.Pipeline.from_config(config, sources=[args.source], max_frames=args.max_frames) as run:
        for r in run.results():  # offline: every frame, in order
            frames += 1
            minute = int(r.pts_s // 60)
            per_minute.setdefault(minute, set())
            road = r.semantic.mask("road") | r.semantic.mask("lane")
            people = r.instances[r.instances.group == "person"]  # masks are made for these only
            for k in range(len(people)):
                if on_road(road, people.masks[k]):
                    tid = int(people.track_id[k])
                    per_minute[minute].add(tid if tid >= 0 else (r.seq, k))  # untracked: once per frame
    print(f"{frames} frames of {args.source}")
    print("minute  persons on the road")
    for minute, who in sorted(per_minute.items()):
        print(f"{minute:6d}  {len(who)}")
    fr = run.last_report["frames"]
    print(f"frames in {fr['in']}, out {fr['out']}, dropped {sum(fr['dropped'].values())}")


if __name__ == "__main__":
    main()
