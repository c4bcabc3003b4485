"""The latency recorder's series: exact up to a cap, then a bounded systematic sample."""

import numpy as np

from streamseg.latency import _Series
from streamseg.web import _buckets


def test_series_is_exact_below_its_cap():
    s = _Series(cap=64)
    for v in range(50):
        s.append(float(v))
    assert s.count == 50 and s.stride == 1
    np.testing.assert_array_equal(s.values(), np.arange(50.0))


def test_series_memory_is_bounded_and_keeps_every_stride_th_value():
    s = _Series(cap=64)
    for v in range(1000):
        s.append(float(v))
    assert s.count == 1000 and s.n <= 64 and len(s._a) <= 64
    assert s.stride == 16  # 1000 values, 64 held: every 16th
    np.testing.assert_array_equal(s.values(), np.arange(0.0, 1000.0, 16))
    # percentiles of the sample stay close to the truth; the count stays every frame
    summary = s.summary()
    assert summary["count"] == 1000 and abs(summary["p50"] - 499.5) <= 16 and abs(summary["p99"] - 989) <= 16


def test_series_appended_in_lockstep_keep_the_same_frames():
    a, b = _Series(cap=32), _Series(cap=32)
    for v in range(500):
        a.append(float(v))
        b.append(float(2 * v))
    np.testing.assert_array_equal(b.values(), 2 * a.values())


def test_prometheus_counts_stand_for_every_frame_when_sampled():
    buckets, total = _buckets(np.array([1.0, 2.0, 400.0]), weight=4)
    assert buckets[-1] == ("+Inf", 12.0) and abs(total - 4 * 0.403) < 1e-9
