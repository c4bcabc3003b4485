"""A process that feeds one real sink and says, after each frame, how many the sink has written.

`python -m tests.helpers.sink_writer URI N [FPS]` opens the sink `open_sink(URI)` gives the CLI,
writes N moving 320x180 frames at FPS (default 15) with their own pts, printing the sink's own
counter (`written K`) after each one, then prints `idle` and waits for its stdin to close before
closing the sink. Killing it while it waits leaves exactly K frames handed to the sink.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from streamseg.frames import Frame
from streamseg.sinks import StreamInfo, open_sink


def main() -> None:
    uri, n = sys.argv[1], int(sys.argv[2])
    fps = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    w, h = 320, 180
    sink = open_sink(uri)
    sink.open({"cam0": StreamInfo("cam0", fps, (w, h))})
    base = np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)
    t0 = time.monotonic()
    for i in range(n):
        sink.write(Frame("cam0", i, i / fps, np.roll(base, i * 3, axis=1), time.perf_counter_ns()))
        print(f"written {sink.written}", flush=True)
        time.sleep(max(0.0, t0 + (i + 1) / fps - time.monotonic()))
    print("idle", flush=True)
    sys.stdin.read()  # until the parent closes it (or kills us)
    sink.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
