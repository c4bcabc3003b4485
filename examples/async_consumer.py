"""Results in an asyncio program: `async for` over a run beside other tasks.

    python examples/async_consumer.py [--source drive.mp4] [--max-frames N]

The event loop keeps running while the pipeline works (a heartbeat task ticks beside the
consumer); each result is awaited, never read on the loop's thread.
"""

import argparse
import asyncio
from pathlib import Path

import numpy as np

import streamseg

ROOT = Path(__file__).resolve().parent.parent
SCENE = "synthetic://driving?size=640x360&fps=10&seed=5&frames=100"


async def heartbeat(period_s: float = 1.0) -> None:
    while True:
        await asyncio.sleep(period_s)
        print("... the event loop is free")


async def main(source: str, max_frames: int | None) -> None:
    config = {
        "engines": {
            "semantic": str(ROOT / "engines/synth-semantic.yaml"),
            "instance": str(ROOT / "engines/synth-instance.yaml"),
        }
    }
    beat = asyncio.create_task(heartbeat())
    with streamseg.Pipeline.from_config(config, sources=[source], max_frames=max_frames) as run:
        async for r in run.aresults():
            cars = int(np.count_nonzero(r.instances.group == "car"))
            road = float(r.semantic.mask("road").mean())
            print(
                f"{r.stream} #{r.seq} at {r.pts_s:5.2f} s: {cars} cars, road {road:.0%}, "
                f"{r.latency_ms['end_to_end']:.0f} ms end to end"
            )
    beat.cancel()
    fr = run.last_report["frames"]
    print(f"frames in {fr['in']}, out {fr['out']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=SCENE)
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()
    asyncio.run(main(args.source, args.max_frames))
