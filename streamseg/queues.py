"""Bounded queues with an explicit end marker and a drop policy.

`block` (offline): a full queue makes the producer wait; nothing is lost.
`drop_oldest` (live): a full queue discards its oldest item, reports it through
`on_drop` and takes the new one, so a slow consumer sees fresh data and latency
stays bounded. A live queue may also be given `expired(item)`: when the consumer takes
an item, the ones before the newest that can no longer be served in time are dropped
first, reported through `on_expire` (a burst from the network waits its turn; only a
backlog older than its budget goes). The newest item is never dropped that way.

A queue whose reader leaves (a Python consumer that broke out of its loop) is `discard`ed:
what it holds and every later item go to `on_drop`, so its producer never waits on it.

Several queues may share one Condition, so a consumer (the batcher) can wait for
"any of these queues has something" without polling.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any, Literal

Policy = Literal["block", "drop_oldest"]


class _End:
    def __repr__(self) -> str:
        return "END"


END: Any = _End()  # the last item a queue carries


class Cancelled(Exception):
    """The pipeline is aborting: queue operations stop waiting."""


class BoundedQueue:
    def __init__(
        self,
        maxsize: int,
        policy: Policy = "block",
        *,
        name: str = "",
        cond: threading.Condition | None = None,
        on_drop: Callable[[Any], None] | None = None,
        expired: Callable[[Any], bool] | None = None,
        on_expire: Callable[[Any], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.policy = policy
        self.name = name
        self.cond = cond or threading.Condition(threading.RLock())
        self._items: collections.deque = collections.deque()
        self._on_drop = on_drop
        self._expired = expired
        self._on_expire = on_expire
        self._late: list[Any] = []  # expired items taken out, not yet reported
        self._cancelled = False
        self.dropped = 0
        self.high_water = 0  # the most items it ever held (behaviour checks: live queues stay short)
        self.ended = False  # END was put
        self.discarding = False  # the reader left: items go straight to on_drop

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> None:
        """Add an item; block or drop the oldest when full, per the policy. END is never dropped."""
        dropped = None
        with self.cond:
            if self.ended:
                raise RuntimeError(f"queue {self.name!r}: put after END")
            if self.policy == "block" or item is END:
                while (
                    len(self._items) >= self.maxsize
                    and not self._cancelled
                    and not self.discarding
                    and not (item is END and self.policy == "drop_oldest")
                ):
                    self.cond.wait()
            self._check_cancelled()
            if self.discarding and item is not END:
                dropped = item
                self.dropped += 1
            elif len(self._items) >= self.maxsize:
                dropped = self._items.popleft()
                self.dropped += 1
            if dropped is not item:
                self._items.append(item)
            if item is END:
                self.ended = True
            elif len(self._items) > self.high_water:
                self.high_water = len(self._items)
            self.cond.notify_all()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)

    def get(self, timeout: float | None = None) -> Any:
        """Take the oldest item, waiting up to `timeout` seconds (None: forever). Raises TimeoutError.
        A discarded queue gives END."""
        with self.cond:
            if not self.cond.wait_for(lambda: self._items or self._cancelled or self.discarding, timeout):
                raise TimeoutError
            self._check_cancelled()
            if self.discarding:
                return END
            self._take_expired()
            item = self._pop()
        self.report_expired()
        return item

    def wait_empty(self) -> None:
        """Block until every item put so far has been taken (a producer that makes its next item
        only when the consumer is ready: nothing is made to be dropped)."""
        with self.cond:
            self.cond.wait_for(lambda: not self._items or self._cancelled)
            self._check_cancelled()

    def get_nowait(self, report: bool = True) -> Any:
        """Take the oldest item, or return None when empty. `report=False`: the expired items
        passed over are reported by the caller's `report_expired()`, once it holds no lock (a
        caller that holds this queue's shared Condition across several takes: the batcher)."""
        with self.cond:
            self._check_cancelled()
            self._take_expired()
            item = self._pop() if self._items else None
        if report:
            self.report_expired()
        return item

    def _take_expired(self) -> None:
        """Set aside the items ahead of the newest that `expired` says are too old to serve."""
        if self._expired is not None and self._items:
            while len(self._items) - (self._items[-1] is END) > 1 and self._expired(self._items[0]):
                self._late.append(self._items.popleft())
                self.dropped += 1

    def report_expired(self) -> None:
        """Hand the expired items set aside to `on_expire` (call it holding no queue lock: the
        callback takes the ledger's)."""
        with self.cond:
            late, self._late = self._late, []
        if self._on_expire is not None:
            for item in late:
                self._on_expire(item)

    def _pop(self) -> Any:
        item = self._items.popleft()
        self.cond.notify_all()  # wake producers waiting for room
        return item

    def drain(self) -> list[Any]:
        """Remove and return everything queued (END included, if it is there)."""
        with self.cond:
            items = list(self._items)
            self._items.clear()
            self.cond.notify_all()
            return items

    def discard(self) -> None:
        """The reader is gone: everything queued, and every item put from now on (END apart),
        is handed to `on_drop` at once; waiting producers and readers wake."""
        with self.cond:
            self.discarding = True
            items = [i for i in self._items if i is not END]
            self.dropped += len(items)
            self._items.clear()
            self.cond.notify_all()
        if self._on_drop is not None:
            for i in items:
                self._on_drop(i)

    def cancel(self) -> None:
        """Make every current and future wait on this queue raise Cancelled."""
        with self.cond:
            self._cancelled = True
            self.cond.notify_all()

    def _check_cancelled(self) -> None:
        if self._cancelled:
            raise Cancelled(self.name)
