import threading
import time

import pytest

from streamseg.queues import END, BoundedQueue, Cancelled


def test_block_policy_waits_and_loses_nothing():
    q = BoundedQueue(2, "block")
    got = []

    def consume():
        while (item := q.get()) is not END:
            got.append(item)
            time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        q.put(i)
    q.put(END)
    t.join(5)
    assert got == list(range(50))
    assert q.dropped == 0


def test_drop_oldest_keeps_newest_and_counts():
    dropped = []
    q = BoundedQueue(3, "drop_oldest", on_drop=dropped.append)
    for i in range(10):
        q.put(i)
    assert q.dropped == 7 and dropped == list(range(7))
    q.put(END)  # END is never dropped, and it pushes out one more frame
    assert dropped == list(range(8))
    assert [q.get(), q.get(), q.get()] == [8, 9, END]


def test_put_after_end_is_a_bug():
    q = BoundedQueue(1)
    q.put(END)
    with pytest.raises(RuntimeError):
        q.put(1)


def test_get_timeout_and_get_nowait():
    q = BoundedQueue(1)
    assert q.get_nowait() is None
    with pytest.raises(TimeoutError):
        q.get(timeout=0.01)


def test_cancel_releases_a_blocked_producer():
    q = BoundedQueue(1, "block")
    q.put(1)
    errors = []

    def produce():
        try:
            q.put(2)
        except Cancelled:
            errors.append("cancelled")

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(0.05)
    q.cancel()
    t.join(2)
    assert errors == ["cancelled"]


def test_high_water_and_wait_empty():
    q = BoundedQueue(3, "drop_oldest")
    for i in range(5):
        q.put(i)
    assert q.high_water == 3
    taken = []

    def consume():
        time.sleep(0.05)
        while q.get_nowait() is not None:
            taken.append(1)

    t = threading.Thread(target=consume)
    t.start()
    q.wait_empty()  # returns once the consumer took everything
    assert len(q) == 0
    t.join(2)
    assert len(taken) == 3


def test_discard_hands_queued_and_later_items_to_on_drop_and_frees_a_blocked_producer():
    """A reader that left (a consumer that broke out of its loop) must never stall its producer."""
    dropped = []
    q = BoundedQueue(1, "block", on_drop=dropped.append)
    q.put(1)
    t = threading.Thread(target=q.put, args=(2,))  # blocks: the queue is full
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    q.discard()
    t.join(5)
    assert not t.is_alive()
    q.put(3)
    q.put(END)
    assert dropped == [1, 2, 3] and q.dropped == 3
    assert q.get() is END and q.get() is END  # a discarded queue's reader is told it is over
