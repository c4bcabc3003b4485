import threading
import time

import numpy as np

from streamseg.batching import Batcher
from streamseg.frames import Frame
from streamseg.queues import END, BoundedQueue


def frame(sid, seq):
    return Frame(sid, seq, seq / 25, np.zeros((2, 2, 3), np.uint8), time.perf_counter_ns())


def make(streams, max_size, max_wait_s, depth=100):
    cond = threading.Condition(threading.RLock())
    queues = {s: BoundedQueue(depth, "block", name=s, cond=cond) for s in streams}
    return queues, Batcher(queues, cond, max_size, max_wait_s)


def ids(batch):
    return [(f.stream_id, f.seq) for f in batch]


def test_batch_closes_at_max_size_round_robin():
    queues, b = make(["a", "b"], 4, 1.0)
    for i in range(3):
        queues["a"].put(frame("a", i))
        queues["b"].put(frame("b", i))
    assert ids(b.next_batch()) == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    # next batch starts with the other stream; it is short, so it waits for max_wait first
    for q in queues.values():
        q.put(END)
    assert ids(b.next_batch()) == [("b", 2), ("a", 2)]
    assert b.next_batch() is None


def test_batch_closes_after_max_wait_with_what_it_has():
    queues, b = make(["a"], 8, 0.05)
    queues["a"].put(frame("a", 0))
    t0 = time.monotonic()
    batch = b.next_batch()
    waited = time.monotonic() - t0
    assert ids(batch) == [("a", 0)]
    assert 0.04 <= waited < 1.0
    f = batch[0]
    assert f.stamps["batch_wait"] >= f.stamps["queue"]


def test_late_frames_join_the_open_batch():
    queues, b = make(["a"], 3, 2.0)
    queues["a"].put(frame("a", 0))

    def later():
        time.sleep(0.05)
        queues["a"].put(frame("a", 1))
        queues["a"].put(frame("a", 2))

    threading.Thread(target=later).start()
    t0 = time.monotonic()
    assert ids(b.next_batch()) == [("a", 0), ("a", 1), ("a", 2)]
    assert time.monotonic() - t0 < 1.5  # closed by size, not by the 2 s wait


def test_order_per_stream_is_kept_and_every_frame_delivered():
    streams = ["a", "b", "c"]
    queues, b = make(streams, 5, 0.002, depth=4)
    counts = {"a": 40, "b": 7, "c": 23}

    def produce(sid):
        for i in range(counts[sid]):
            queues[sid].put(frame(sid, i))
            if i % 5 == 0:
                time.sleep(0.001)
        queues[sid].put(END)

    for s in streams:
        threading.Thread(target=produce, args=(s,)).start()
    seen = {s: [] for s in streams}
    while (batch := b.next_batch()) is not None:
        assert 1 <= len(batch) <= 5
        for f in batch:
            seen[f.stream_id].append(f.seq)
    assert {s: v for s, v in seen.items()} == {s: list(range(n)) for s, n in counts.items()}


def test_ended_stream_does_not_hold_the_batch():
    queues, b = make(["a", "b"], 4, 5.0)
    queues["a"].put(frame("a", 0))
    queues["a"].put(END)
    queues["b"].put(END)
    t0 = time.monotonic()
    assert ids(b.next_batch()) == [("a", 0)]
    assert time.monotonic() - t0 < 1.0
    assert b.next_batch() is None and b.exhausted


def test_no_wait_closes_the_batch_with_what_is_there():
    """Engines idle in a live run: the batch goes with the frames waiting now, not after max_wait."""
    queues, b = make(["a", "b"], 4, 30.0)
    queues["a"].put(frame("a", 0))
    queues["b"].put(frame("b", 0))
    queues["b"].put(frame("b", 1))
    assert ids(b.next_batch(wait=False)) == [("a", 0), ("b", 0), ("b", 1)]  # a 30 s max_wait did not hold it
    assert b.next_batch(block=False, wait=False) == []
