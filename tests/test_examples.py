"""The examples in examples/ run as a user runs them (small sizes, few frames) and say what they should."""

import importlib.util
import re
import subprocess
import sys

import cv2
import pytest

from tests.conftest import ROOT, checkout_env

SMALL = "synthetic://driving?size=320x180&fps={fps}&seed=3&frames={n}"


def run_example(name: str, *args, cwd=None) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
        env=checkout_env(),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_persons_on_road_counts_per_minute_of_the_recordings_own_time(tmp_path):
    r = run_example("persons_on_road.py", "--source", SMALL.format(fps=1, n=70), "--max-frames", 70, cwd=tmp_path)
    # 70 frames at 1 frame/s: two minutes of pts, each with its row
    rows = re.findall(r"^\s+(\d+)\s+(\d+)$", r.stdout, re.M)
    assert [m for m, _ in rows] == ["0", "1"], r.stdout
    assert "frames in 70, out 70, dropped 0" in r.stdout


def test_async_consumer_gets_every_frame_in_order(tmp_path):
    r = run_example("async_consumer.py", "--source", SMALL.format(fps=10, n=30), "--max-frames", 8, cwd=tmp_path)
    assert re.findall(r"^cam0 #(\d+) ", r.stdout, re.M) == [str(i) for i in range(8)]
    assert "frames in 8, out 8" in r.stdout


@pytest.mark.skipif(importlib.util.find_spec("streamseg.analytics") is None, reason="no analytics stage yet")
def test_intrusion_snapshots_saves_one_image_per_intrusion_start(tmp_path):
    r = run_example(
        "intrusion_snapshots.py", "--source", SMALL.format(fps=15, n=45), "--out", tmp_path / "snaps", cwd=tmp_path
    )
    saved = re.findall(r"entered the corridor: (\S+\.jpg)$", r.stdout, re.M)
    assert re.search(rf"^{len(saved)} snapshot\(s\); frames in 45,", r.stdout, re.M), r.stdout
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in saved)
    for p in saved:
        assert cv2.imread(str(tmp_path / p) if not p.startswith("/") else p) is not None
