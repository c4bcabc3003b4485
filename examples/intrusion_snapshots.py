"""A live camera that saves a snapshot each time a person or a car enters the ego corridor.

    python examples/intrusion_snapshots.py [--source rtsp://cam/stream] [--out out/snapshots]

The built-in scene stands in for the camera (paced at 15 frames/s, live: when this program
falls behind, the oldest results are dropped and counted, the pipeline never waits for it).
Events come from the analytics stage (`analytics:` in a config, docs/analytics.md): each
`intrusion_start` is written as a JPEG of the frame, with the drawn overlay when there is one.
"""

import argparse
from pathlib import Path

import cv2

import streamseg

ROOT = Path(__file__).resolve().parent.parent
CAMERA = "synthetic://driving?size=640x360&fps=15&seed=3"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=CAMERA)
    ap.add_argument("--out", default="out/snapshots")
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()

    config = {
        "engines": {
            "semantic": str(ROOT / "engines/synth-semantic.yaml"),
            "instance": str(ROOT / "engines/synth-instance.yaml"),
        },
        "analytics": {"corridor": {"objects": ["person", "car"]}},  # the drivable region ahead
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = 0
    with streamseg.Pipeline.from_config(config, sources=[args.source], mode="live", max_frames=args.max_frames) as run:
        for r in run.results():  # live: policy "latest"
            for e in r.events:
                if e.type == "intrusion_start":
                    path = out / f"{r.stream}-{r.seq:06d}-{e.label}-{e.track_id}.jpg"
                    cv2.imwrite(str(path), r.overlay if r.overlay is not None else r.image)
                    saved += 1
                    print(f"{e.pts_s:7.2f} s  {e.label} #{e.track_id} entered the corridor: {path}")  # its onset
    fr = run.last_report["frames"]
    print(f"{saved} snapshot(s); frames in {fr['in']}, out {fr['out']}, dropped {fr['dropped']}")


if __name__ == "__main__":
    main()
