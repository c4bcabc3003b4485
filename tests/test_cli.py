import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import ROOT, make_video, run_streamseg, streamseg_popen

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
        # outputs are really opened at start-up: /proc passes os.access for root, yet takes no new file;
        # the engine is never loaded (its log line would be a second line)
        (["run", "--source", "{video}", "--semantic", "{red}", "--report", "/proc/r.json"], "cannot write /proc/r.json"),
        (["run", "--source", "{video}", "--semantic", "{red}", "--sink", "/proc/o.mp4"], "cannot write /proc/o.mp4"),
        (["run", "--source", "{video}", "--sink", "/proc/o.jsonl"], "cannot write /proc/o.jsonl"),
        (["run", "--source", "{video}", "--sink", "{tmp}/adir.mp4"], "it is a folder"),
        # two outputs, one file
        (["run", "--source", "{video}", "--sink", "{tmp}/x.mp4", "--sink", "{tmp}/./x.mp4"], "both write"),
        (["run", "--source", "{video}", "--sink", "{tmp}/r.jsonl", "--report", "{tmp}/sub/../r.jsonl"], "both write"),
        (["run", "-c", "{tmp}/twice.yaml", "--source", "{video}", "--semantic", "{red}"], "both write"),
        (["run", "--source", "{video}", "--sink", "bogus://x"], "unknown sink scheme 'bogus://'"),
        # errors name what the user typed, and the closest valid name
        (["run", "--source", "{video}", "--max-frames", "0"], "--max-frames 0: input should be greater than"),
        (["run", "--frobnicate"], "run: unrecognized arguments: --frobnicate (see: streamseg run --help)"),
        (["run", "--source", "{video}", "--max-framez", "3"], "did you mean --max-frames?"),
        (["rnu"], "invalid choice: 'rnu' (choose from 'run', "),
        (["models", "chek", "c.yaml"], "models: argument ACTION: invalid choice: 'chek' (choose from 'list', 'check'"),
        (["models", "chek", "c.yaml"], "; did you mean 'check'?"),
        (["run", "--backend", "openvno"], "run: argument --backend: invalid choice: 'openvno'"),
        (["run", "--backend", "openvno"], "; did you mean 'openvino'?"),
        (["run", "-c", "{tmp}/typo.yaml"], "pipeline.queue_deph: unknown key (did you mean 'queue_depth'?)"),
        (["run", "--source", "synthetc://driving"], "did you mean 'synthetic://'?"),
        (["run", "--source", "{video}", "--sink", "htp://127.0.0.1:8080"], "did you mean 'http://'?"),
        (["run"], "no source given"),
        (["models", "check", "{tmp}/nocard.yaml"], "model card not found"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, video, tiny, args, pattern):
    (tmp_path / "notvideo.mp4").write_text("hello, I am text\n" * 100)
    (tmp_path / "adir.mp4").mkdir()
    (tmp_path / "twice.yaml").write_text(f"sinks: [{tmp_path}/o.mp4, {tmp_path}/o.jsonl, {tmp_path}/o.mp4]\n")
    (tmp_path / "bad.yaml").write_text("pipeline:\n  batch:\n    sise: 2\n")
    (tmp_path / "typo.yaml").write_text("pipeline:\n  queue_deph: 2\n")
    (tmp_path / "wrong.yaml").write_text(
        (tiny / "red.yaml")
        .read_text()
        .replace("red.onnx", str(tiny / "red.onnx"))
        .replace("[null, redthing]", "[null, redthing, other]")
    )
    r = streamseg(*[a.format(tmp=tmp_path, video=video, red=tiny / "red.yaml") for a in args])
    one_line_error(r, pattern)


def _subcommands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_every_subcommand_help_has_a_description_and_examples():
    from streamseg.cli import build_parser

    subs = dict(_subcommands(build_parser()))
    assert {("run",), ("eval",), ("models", "card"), ("engines", "build")} <= set(subs)
    for name, sub in subs.items():
        text = sub.format_help()
        assert sub.description and len(sub.description.split()) >= 12, name  # a paragraph, not a title
        examples = text.split("examples:\n", 1)[-1].split("\n\n")[0].splitlines()
        assert "examples:" in text and 2 <= len(examples) <= 3, (name, text)
        assert all(e.startswith(f"  streamseg {name[0]}") for e in examples), (name, examples)
    run = subs[("run",)].format_help()
    for needed in ("rtsp://", "synthetic://", "images://", "http://127.0.0.1:8080", "exit codes", "130", "143"):
        assert needed in run, needed


def test_a_command_given_nothing_prints_its_usage():
    r = streamseg("eval")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("usage: streamseg eval ")
    assert lines[-1] == "streamseg: error: eval: the following arguments are required: CONFIG_OR_CARD, --source"
    assert "streamseg: error: streamseg" not in r.stderr


def test_internal_decisions_only_with_verbose(tiny):
    args = ["run", "--source", "synthetic://driving?size=64x48&frames=2", "--semantic", tiny / "red.yaml"]
    args += ["--instance", tiny / "yolo.yaml", "--backend", "onnxruntime", "--no-progress"]
    quiet, verbose = streamseg(*args), streamseg("-v", *args)
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "semantic engine: red on onnxruntime" in quiet.stderr  # the user's story: what runs where
    assert "engines run" not in quiet.stderr
    assert "engines run" in verbose.stderr
    assert "engines run" in streamseg(*args, "-v").stderr  # -v after the subcommand too


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
    from streamseg.backends import _torch_cuda

    no_torch = _torch_cuda()[1]
    assert f"semantic engine: red on openvino fp32 (auto: no TensorRT here, {no_torch}, OpenVINO is installed)" in r.stderr
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
    assert proc.returncode == 128 + sig, err  # 130 / 143, as shells report an interrupted command
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
    # each file holds exactly what its sink says it wrote (a frame is `out` only when every sink
    # wrote it, so a sink's own count is the figure to check its file against)
    sinks = {Path(uri).name: v["frames"] for uri, v in rep["sinks"].items()}
    assert n == sinks["o.mp4"]["written"] >= fr["out"]  # the file plays and holds every frame written
    assert len(jl.read_text().splitlines()) == sinks["o.jsonl"]["written"] >= fr["out"]
    reliability(
        f"{signal.Signals(sig).name} mid-run",
        "frames already read drain through; video finalized and playable; report complete (interrupted: true)",
        "0 (in = out + counted drops)",
    )


def test_refused_start_leaves_every_file_as_it_was(tmp_path, video):
    """A run refused at start-up (here: a sink in /proc) truncates nothing, leaves no probe file and
    no folder made for its outputs; files of an earlier run are byte for byte what they were."""
    old_video = tmp_path / "old.mp4"
    old_video.write_bytes(b"an earlier run's video")
    old_report = tmp_path / "r.json"
    old_report.write_text('{"earlier": true}\n')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = streamseg(
        "run",
        "--source",
        video,
        "--sink",
        old_video,
        "--sink",
        tmp_path / "new" / "deep" / "o.jsonl",
        "--report",
        old_report,
        "--sink",
        "/proc/o.mp4",
    )
    one_line_error(r, "cannot write /proc/o.mp4")
    assert old_video.read_bytes() == b"an earlier run's video"
    assert old_report.read_text() == '{"earlier": true}\n'
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_config_plot_goes_beside_a_moved_report(tmp_path, video):
    """`metrics.plot` from a config follows `--report`: beside it, named after it; `--plot` names its own place."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"metrics: {{report: {tmp_path}/cfg/x.json, plot: {tmp_path}/cfg/x.png}}\n")
    r = streamseg("run", "-c", cfg, "--source", video, "--max-frames", "5", "--report", tmp_path / "elsewhere" / "r.json")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / "r.json").is_file()
    assert (tmp_path / "elsewhere" / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "cfg").exists()
    assert f"latency plot: {tmp_path / 'elsewhere' / 'r.png'}" in r.stdout


def _ffprobe_frames(path) -> int:
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and not r.stderr, r.stderr
    return int(r.stdout.strip())


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_exit_code_after_everything_is_written(tmp_path, tiny, sig, code, reliability):
    """An endless source stopped by a signal exits 128+N, as shells report it, once the report is
    complete and the video finalized (judged by ffprobe/ffmpeg where installed)."""
    jl, mp4, rep = tmp_path / "o.jsonl", tmp_path / "o.mp4", tmp_path / "r.json"
    proc = streamseg_popen(
        "run",
        "--source",
        "synthetic://driving?size=160x96&fps=15&seed=3&frames=100000",
        "--semantic",
        tiny / "red.yaml",
        "--sink",
        mp4,
        "--sink",
        jl,
        "--report",
        rep,
        "--no-progress",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (jl.exists() and len(jl.read_bytes().splitlines()) >= 10):
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    report = json.loads(rep.read_text())
    fr = report["frames"]
    assert report["interrupted"] is True and fr["out"] >= 10
    assert fr["in"] == fr["out"] + sum(fr["dropped"].values())
    assert len(jl.read_text().splitlines()) == fr["out"]
    if shutil.which("ffprobe") and shutil.which("ffmpeg"):
        assert _ffprobe_frames(mp4) == fr["out"]
        dec = subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp4), "-f", "null", "-"], capture_output=True, text=True)
        assert dec.returncode == 0 and not dec.stderr, dec.stderr
    else:
        cap = cv2.VideoCapture(str(mp4))
        n = 0
        while cap.read()[0]:
            n += 1
        assert n == fr["out"]
    reliability(
        f"{signal.Signals(sig).name} on an endless source",
        f"exit {code} after the report and the video are written; ffprobe counts every frame out",
        "0 (in = out + counted drops)",
    )
