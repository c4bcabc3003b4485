"""Batcher: groups frames from several stream queues into engine batches.

It takes frames round robin (one per stream per turn, starting after the stream
served first last time), closes a batch at `max_size` frames or `max_wait_s` after
its first frame, whichever comes first, and never reorders a stream's frames.

It runs on the inference thread (called when the engine is free) rather than a
thread of its own: a batch is formed at the last moment, so a live stream's batch
holds the newest frames, not those that were newest when the engine got busy.
`wait=False` closes a batch with what is there as soon as it holds a frame: the
pipeline asks that in live mode when the engines are idle, where waiting for
batch-mates would only add latency.
"""

from __future__ import annotations

import threading
import time

from streamseg.frames import Frame
from streamseg.queues import END, BoundedQueue


class Batcher:
    def __init__(
        self,
        queues: dict[str, BoundedQueue],
        cond: threading.Condition,
        max_size: int,
        max_wait_s: float,
    ) -> None:
        for q in queues.values():
            if q.cond is not cond:
                raise ValueError("all stream queues must share the batcher's condition")
        self.queues = queues
        self.cond = cond
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._order = list(queues)
        self._open = set(queues)  # streams that have not delivered END
        self._start = 0

    @property
    def exhausted(self) -> bool:
        return not self._open

    def _take_round(self, batch: list[Frame]) -> None:
        """Take up to one frame per open stream, round robin, until the batch is full."""
        n = len(self._order)
        progress = True
        while progress and len(batch) < self.max_size and self._open:
            progress = False
            for k in range(n):
                if len(batch) >= self.max_size:
                    break
                sid = self._order[(self._start + k) % n]
                if sid not in self._open:
                    continue
                item = self.queues[sid].get_nowait(report=False)  # reported below, outside the lock
                if item is None:
                    continue
                if item is END:
                    self._open.discard(sid)
                    continue
                item.stamp("queue")
                batch.append(item)
                progress = True

    def _gather(self, batch: list[Frame], block: bool, wait: bool) -> bool:
        """Fill `batch` under the queues' Condition; False when there is nothing to give."""
        deadline = None
        with self.cond:
            while True:
                self._take_round(batch)
                if len(batch) >= self.max_size or (batch and (not self._open or not wait)):
                    return True
                if not batch:
                    if not self._open or not block:
                        return False
                    self.cond.wait()
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self.max_wait_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self.cond.wait(remaining)

    def next_batch(self, block: bool = True, wait: bool = True) -> list[Frame] | None:
        """The next batch, or None once every stream has ended and is empty.
        With block=False, an empty list when no frame is waiting right now; with wait=False,
        no waiting for batch-mates (up to max_size of the frames waiting now)."""
        batch: list[Frame] = []
        try:
            if not self._gather(batch, block, wait):
                return None if not self._open else []
        finally:
            for q in self.queues.values():  # frames passed over as too late: to the ledger, no lock held
                q.report_expired()
        # the next batch starts with the stream after the one that started this one
        self._start = (self._start + 1) % len(self._order)
        now = time.perf_counter_ns()
        for f in batch:
            f.stamp("batch_wait", now)
        return batch
