"""`streamseg fleet` on a local Ray instance (2 CPUs): short synthetic and real recordings, a
corrupt one, and one whose worker is killed mid-task."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from streamseg.fleet import expand_inputs, is_complete, merged_latency, output_name
from streamseg.latency import summarize
from tests.conftest import ROOT, make_video, run_streamseg

ray = pytest.importorskip("ray", reason="the fleet extra (Ray) is not installed")


def test_expand_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    a = make_video(tmp_path / "d" / "a.mp4", n=3)
    (tmp_path / "d" / "notes.txt").write_text("x")
    lst = tmp_path / "list.txt"
    lst.write_text("# drives\nsynthetic://driving?seed=1\n\n" + str(a) + "\n")
    got = expand_inputs([str(tmp_path / "d"), str(lst), str(tmp_path / "d" / "*.mp4")])
    assert got == [str(a), "synthetic://driving?seed=1"]
    with pytest.raises(Exception, match="no such file"):
        expand_inputs([str(tmp_path / "missing.mp4")])
    taken = set()
    assert output_name("/x/a.mp4", taken) == "a" and output_name("/y/a.mp4", taken) == "a-2"


def test_merged_percentiles_come_from_all_samples(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.exponential(s, n) for s, n in ((10, 500), (100, 50), (30, 2000))]
    folders = []
    for i, p in enumerate(parts):
        f = tmp_path / f"r{i}"
        f.mkdir()
        (f / "latency-samples.json").write_text(json.dumps({"end_to_end": p.tolist(), "infer": (p / 2).tolist()}))
        folders.append(f)
    merged = merged_latency(folders)
    assert merged["end_to_end"] == summarize(np.concatenate(parts))
    avg_p99 = np.mean([np.percentile(p, 99) for p in parts])
    assert abs(merged["end_to_end"]["p99"] - avg_p99) > 1  # averaging percentiles would be wrong


def fleet_config(tmp_path, tiny):
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(
        f"engines:\n  semantic: {{card: {tiny / 'red.yaml'}, backend: onnxruntime, threads: 1}}\n"
        f"  instance: {{card: {tiny / 'yolo.yaml'}, backend: onnxruntime, threads: 1}}\n"
        "sinks: [overlay.mp4]\n"
    )
    return cfg


def test_fleet_end_to_end_with_a_corrupt_file_and_a_killed_worker(tmp_path, tiny):
    real = make_video(tmp_path / "real.mp4", n=40)
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(20000))
    lst = tmp_path / "drives.txt"
    lst.write_text(
        "synthetic://driving?size=160x90&seed=1&frames=30\n"
        "synthetic://driving?size=160x90&seed=2&frames=30\n"
        # long enough to be killed in the middle
        "synthetic://driving?size=160x90&seed=3&frames=500\n"
    )
    out = tmp_path / "out"
    victim = out / "driving_size_160x90_seed_3_frames_500"
    killed = {}

    def killer():  # kill -9 the worker process of the long recording once it is mid-way
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for part in out.glob(f".{victim.name}.partial-0-*"):
                pid_file = part / "worker.pid"
                if pid_file.is_file() and pid_file.read_text():
                    time.sleep(1.0)  # frames are flowing: kill it mid-task
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    killed["pid"] = int(pid_file.read_text())
                    return
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    cfg = fleet_config(tmp_path, tiny)
    r = run_streamseg(
        "fleet", "-c", cfg, lst, real, tmp_path / "corrupt.mp4", "--out", out, "--retries", 1, timeout=240
    )
    t.join(timeout=1)
    assert r.returncode == 1, r.stderr  # one recording failed: said in the exit code
    assert killed, "the worker was never killed"
    rep = json.loads((out / "fleet-report.json").read_text())
    rows = {row["folder"]: row for row in rep["recordings"]}
    assert rows["corrupt"]["status"] == "failed" and "not a video" in rows["corrupt"]["error"]
    assert rows["corrupt"]["attempts"] == 2
    assert rows[victim.name]["status"] == "done" and rows[victim.name]["attempts"] == 2  # killed, retried, done
    assert rows[victim.name]["frames"]["out"] == 500
    assert rows["real"]["frames"]["out"] == 40
    assert rep["totals"] == {**rep["totals"], "recordings": 5, "done": 4, "failed": 1}
    assert "FAILED" in r.stdout and "corrupt.mp4" in r.stdout
    # nothing partial looks complete; the partial leftovers of the kill are gone
    assert not is_complete(out / "corrupt") and not list(out.glob(".*partial*"))
    for row in rep["recordings"]:
        if row["status"] == "done":
            folder = out / row["folder"]
            assert is_complete(folder)
            assert len((folder / "results.jsonl").read_text().splitlines()) == row["frames"]["out"]
    # merged percentiles: from every frame of every recording
    samples = np.concatenate(
        [
            json.loads((out / row["folder"] / "latency-samples.json").read_text())["end_to_end"]
            for row in rep["recordings"]
            if row["status"] == "done"
        ]
    )
    assert rep["latency_ms"]["end_to_end"]["p99"] == pytest.approx(np.percentile(samples, 99), abs=0.01)
    # resume: the same command again skips what is complete and retries only the failed one
    r2 = run_streamseg("fleet", "-c", cfg, lst, real, "--out", out, timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert "4 recording(s) already complete, skipped" in r2.stderr


def test_fleet_without_ray_says_how_to_install(tmp_path, tiny):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from streamseg.cli import main\n"
        f"sys.exit(main(['fleet', '-c', {str(fleet_config(tmp_path, tiny))!r}, 'synthetic://driving']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "pip install 'streamseg[fleet]'" in r.stderr
