import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest

from tests.conftest import ROOT, make_video, run_streamseg

streamseg = run_streamseg


def one_line_error(r, pattern):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("streamseg: error: ")
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["run", "--source", "{tmp}/missing.mp4"], "no such file"),
        (["run", "--source", "{tmp}/notvideo.mp4"], "not a video"),
        (["run", "--source", "bogus://x"], "unknown source scheme 'bogus://'"),
        (["run", "-c", "{tmp}/bad.yaml"], "pipeline.batch.sise: unknown key"),
        (["run", "-c", "{tmp}/none.yaml"], "config file not found"),
        (["run", "--source", "{video}", "--semantic", "{tmp}/wrong.yaml"], "has 2 channels, the card lists 3 labels"),
        (["run", "--source", "{video}", "--sink", "/proc/forbidden/out.mp4"], "cannot write"),
        (["run", "--source", "{video}", "--report", "/proc/forbidden/r.json"], "cannot write"),
        (["run", "--source", "{video}", "--max-frames", "0"], "max_frames"),
        (["run", "--frobnicate"], "unrecognized arguments"),
        (["run"], "no source given"),
        (["models", "check", "{tmp}/nocard.yaml"], "model card not found"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, video, tiny, args, pattern):
    (tmp_path / "notvideo.mp4").write_text("hello, I am text\n" * 100)
    (tmp_path / "bad.yaml").write_text("pipeline:\n  batch:\n    sise: 2\n")
    (tmp_path / "wrong.yaml").write_text(
        (tiny / "red.yaml")
        .read_text()
        .replace("red.onnx", str(tiny / "red.onnx"))
        .replace("[null, redthing]", "[null, redthing, other]")
    )
    r = streamseg(*[a.format(tmp=tmp_path, video=video) for a in args])
    one_line_error(r, pattern)


def test_run_writes_everything(tmp_path, video, tiny):
    r = streamseg(
        "run",
        "--source",
        video,
        "--semantic",
        tiny / "red.yaml",
        "--instance",
        tiny / "yolo.yaml",
        "--sink",
        tmp_path / "out" / "o.mp4",
        "--sink",
        tmp_path / "out" / "o.jsonl",
        "--report",
        tmp_path / "out" / "r.json",
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out" / "r.json").read_text())
    assert rep["frames"]["in"] == rep["frames"]["out"] == 30
    assert "end_to_end" in r.stdout and "decode" in r.stdout  # the summary table
    assert "semantic engine: red on openvino fp32 (auto: no TensorRT here, OpenVINO is installed)" in r.stderr
    assert len((tmp_path / "out" / "o.jsonl").read_text().splitlines()) == 30


def test_models_list_and_check(tiny):
    r = streamseg("models", "list", tiny)
    assert r.returncode == 0 and "semantic-logits" in r.stdout and "yolo-seg" in r.stdout
    r = streamseg("models", "check", tiny / "yolo.yaml")
    assert r.returncode == 0 and "ok" in r.stdout and "labels 3" in r.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_leaves_playable_video_and_complete_report(tmp_path, tiny, sig, reliability):
    v = make_video(tmp_path / "long.mp4", n=400, fps=25)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamseg",
            "run",
            "--source",
            str(v),
            "--mode",
            "realtime",
            "--semantic",
            str(tiny / "red.yaml"),
            "--instance",
            str(tiny / "yolo.yaml"),
            "--sink",
            str(tmp_path / "o.mp4"),
            "--sink",
            str(tmp_path / "o.jsonl"),
            "--report",
            str(tmp_path / "r.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    jl = tmp_path / "o.jsonl"
    while time.monotonic() < deadline and not (jl.exists() and jl.stat().st_size > 0):
        time.sleep(0.1)  # wait until frames flow (the jsonl buffer flushed once)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["interrupted"] is True
    fr = rep["frames"]
    assert 0 < fr["out"] < 400
    assert fr["in"] == fr["out"] + sum(fr["dropped"].values())
    assert rep["latency_ms"]["end_to_end"]["count"] == fr["out"]
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == fr["out"]  # every frame that came out is in the file, and the file plays
    assert len(jl.read_text().splitlines()) == fr["out"]
    reliability(
        f"{signal.Signals(sig).name} mid-run",
        "frames already read drain through; video finalized and playable; report complete (interrupted: true)",
        "0 (in = out + counted drops)",
    )
