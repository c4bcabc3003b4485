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


def test_expired_items_ahead_of_the_newest_are_dropped_when_taken():
    """A live stream queue: a burst waits its turn; only what is past its budget goes, and
    never the newest item (END behind it does not count as one)."""
    late, too_old = [], {0, 1, 3}
    q = BoundedQueue(8, "drop_oldest", expired=lambda i: i in too_old, on_expire=late.append)
    for i in range(5):
        q.put(i)
    assert q.get_nowait() == 2 and late == [0, 1]  # 2 is in time: served, 3 and 4 wait
    assert q.get() == 4 and late == [0, 1, 3]
    q.put(5)
    too_old.add(5)
    assert q.get_nowait() == 5  # the newest item is served, however old
    q.put(6)
    too_old.add(6)
    q.put(END)
    assert q.get() == 6 and q.get() is END  # the last frame before END is the newest one
    assert q.dropped == 3 and late == [0, 1, 3]


def test_expired_items_are_reported_outside_the_queue_lock():
    """on_expire takes the ledger's lock: it runs once no queue lock is held, also when the
    batcher holds the queues' shared Condition across its takes."""
    import threading

    from streamseg.batching import Batcher

    cond = threading.Condition(threading.RLock())
    held = []
    q = BoundedQueue(4, "drop_oldest", cond=cond, expired=lambda i: i == 0)
    q._on_expire = lambda item: held.append(cond._is_owned())
    q.put(0)
    q.put(1)
    assert q.get_nowait() == 1 and held == [False]  # alone

    class Frame:
        def __init__(self, n):
            self.n = n

        def stamp(self, *a):
            pass

    q._expired = lambda f: f.n == 0
    b = Batcher({"s": q}, cond, max_size=4, max_wait_s=0)
    q.put(Frame(0))
    q.put(Frame(2))
    q.put(END)
    assert [f.n for f in b.next_batch(wait=False)] == [2] and held == [False, False]  # through the batcher
    assert b.next_batch() is None
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
