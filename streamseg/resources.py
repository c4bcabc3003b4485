"""What a long run holds on to: resident memory, threads and open file descriptors, sampled
while it runs - the soak test's measure that nothing grows.

    sampler = ResourceSampler(interval_s=1.0); sampler.start(); ...; sampler.stop()
    growth(sampler.samples, warmup_share=0.25)   # -> per resource: after warm-up, last vs first
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def snapshot() -> dict[str, float]:
    """RSS (MiB), threads and open file descriptors of this process, now."""
    rss_kib, threads = 0, threading.active_count()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])  # native threads too (runtimes' pools)
    except OSError:
        pass
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    return {"rss_mib": rss_kib / 1024, "threads": threads, "fds": fds}


class ResourceSampler:
    def __init__(self, interval_s: float = 1.0, progress=None) -> None:
        self.interval_s = interval_s
        self.progress = progress  # () -> frames done, recorded with each sample
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resources", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> ResourceSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            s = snapshot()
            s["t_s"] = round(time.monotonic() - self._t0, 2)
            if self.progress is not None:
                s["frames"] = self.progress()
            self.samples.append(s)
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> list[dict[str, float]]:
        self._stop.set()
        self._thread.join()
        self.samples.append({**snapshot(), "t_s": round(time.monotonic() - self._t0, 2)})
        return self.samples


def growth(samples: list[dict[str, float]], warmup_share: float = 0.25) -> dict[str, dict[str, float]]:
    """After the warm-up share of the samples: each resource's median over the first and the
    last third of the rest, and the difference (growth). Medians, so one busy moment is not a trend."""
    import statistics

    rest = samples[int(len(samples) * warmup_share) :]
    if len(rest) < 3:
        raise ValueError("too few samples after warm-up")
    k = max(1, len(rest) // 3)
    out = {}
    for key in ("rss_mib", "threads", "fds"):
        first = statistics.median(s[key] for s in rest[:k])
        last = statistics.median(s[key] for s in rest[-k:])
        out[key] = {"after_warmup": round(first, 2), "end": round(last, 2), "growth": round(last - first, 2)}
    return out
