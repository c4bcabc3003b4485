"""Faults and odd inputs, each through the real pipeline; each records a row of docs/reliability.md."""

import json
import random
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from streamseg.backends.onnxruntime import OnnxRuntimeEngine
from streamseg.config import validate_config
from streamseg.pipeline import Pipeline
from tests.conftest import UDACITY, make_video, run_streamseg
from tests.test_cli import one_line_error

needs_gst = pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="needs GStreamer's gst-launch-1.0")


def h264_mp4(path, n=90, fragmented=False):
    mux = "mp4mux fragment-duration=500" if fragmented else "mp4mux"
    subprocess.run(
        f"gst-launch-1.0 -q videotestsrc num-buffers={n} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        f"! x264enc key-int-max=15 ! h264parse ! {mux} ! filesink location={path}",
        shell=True,
        check=True,
    )
    return path


def run_report(tmp_path, source, *extra):
    r = run_streamseg(
        "run", "--source", source, "--sink", tmp_path / "o.jsonl", "--report", tmp_path / "r.json", *extra
    )
    rep = json.loads((tmp_path / "r.json").read_text()) if (tmp_path / "r.json").is_file() else None
    return r, rep


@needs_gst
def test_corrupted_h264_frames_are_counted_and_the_rest_come_out(tmp_path, reliability):
    src = bytearray(h264_mp4(tmp_path / "ok.mp4").read_bytes())
    i = src.find(b"mdat")
    start, end = i + 4, i - 4 + int.from_bytes(src[i - 4 : i], "big")
    rng = random.Random(1)
    for _ in range(400):  # random bytes inside the NAL units of the middle of the stream
        src[rng.randrange(start + (end - start) // 5, end - (end - start) // 5)] = rng.randrange(256)
    (tmp_path / "bad.mp4").write_bytes(src)
    r, rep = run_report(tmp_path, tmp_path / "bad.mp4")
    assert r.returncode == 0, r.stderr
    fr = rep["frames"]
    assert fr["in"] == fr["out"] and fr["dropped"] == {}  # every decodable frame comes out
    assert fr["out"] + fr["decode_errors"] == 90  # and the ones the decoder dropped are counted
    assert fr["decode_errors"] > 0
    reliability(
        "corrupted H.264 in an MP4 (400 random bytes inside NAL units)",
        "run completes; each frame comes out or, dropped by the decoder, is counted as a decode error",
        "0 (the decoder's own losses counted)",
    )


@needs_gst
def test_truncated_mp4_without_index_is_one_clear_error(tmp_path, reliability):
    b = h264_mp4(tmp_path / "ok.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(b[: int(len(b) * 0.6)])  # the index (moov) is at the end: gone
    r = run_streamseg("run", "--source", tmp_path / "cut.mp4", "--sink", "null://")
    one_line_error(r, "cut.mp4")
    reliability("MP4 cut short, index (moov) lost", "one line naming the file, exit 2", "- (nothing decodable)")


@needs_gst
def test_truncated_fragmented_mp4_gives_the_frames_it_has(tmp_path, reliability):
    b = h264_mp4(tmp_path / "ok.mp4", fragmented=True).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(b[: int(len(b) * 0.6)])
    r, rep = run_report(tmp_path, tmp_path / "cut.mp4")
    assert r.returncode == 0, r.stderr
    fr = rep["frames"]
    assert 30 <= fr["out"] < 90 and fr["in"] == fr["out"]
    reliability("fragmented MP4 cut short", "the frames of the complete fragments come out", "0")


def pipeline_with(tiny, source, monkeypatch, bad_output):
    orig = OnnxRuntimeEngine.infer_impl
    calls = {"n": 0}

    def faulty(self, feeds):
        calls["n"] += 1
        out = orig(self, feeds)
        return bad_output(out) if calls["n"] == 3 else out

    monkeypatch.setattr(OnnxRuntimeEngine, "infer_impl", faulty)
    cfg = validate_config(
        {
            "sources": [str(source)],
            "engines": {"semantic": {"card": str(tiny / "red.yaml"), "backend": "onnxruntime", "threads": 1}},
            "pipeline": {"batch": {"max_size": 1, "max_wait_ms": 0}},
            "metrics": {"progress": False, "summary": False},
        }
    )
    return Pipeline(cfg).run()


@pytest.mark.parametrize(
    "what, bad, reason",
    [
        ("NaN output", lambda out: {k: np.full_like(v, np.nan) for k, v in out.items()}, "holds NaN or inf"),
        ("wrong output shape", lambda out: {k: v[..., :-1] for k, v in out.items()}, "has shape"),
        ("exception", lambda out: (_ for _ in ()).throw(RuntimeError("device lost")), "device lost"),
    ],
    ids=["nan", "shape", "exception"],
)
def test_engine_fault_on_one_batch(tiny, video, monkeypatch, reliability, what, bad, reason):
    result = pipeline_with(tiny, video, monkeypatch, bad)
    fr = result.report["frames"]
    assert fr["dropped"] == {"engine_error": 1} and fr["out"] == 29
    assert any(reason in e for e in result.errors), result.errors
    reliability(
        f"engine fault on one batch: {what}",
        f"that batch's frame dropped as engine_error with the reason ({reason}); the run goes on",
        "1 (the failed batch, counted)",
    )


def test_odd_frame_sizes_and_pixel_formats(tmp_path, tiny, reliability):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a_1x1.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(d / "b_odd.png"), np.full((17, 33, 3), 50, np.uint8))
    cv2.imwrite(str(d / "c_grey.png"), np.full((40, 60), 128, np.uint8))
    cv2.imwrite(str(d / "d_rgba.png"), np.full((48, 64, 4), 255, np.uint8))
    cv2.imwrite(str(d / "e_4k.png"), np.zeros((2160, 4096, 3), np.uint8))
    r, rep = run_report(tmp_path, f"images://{d}", "--semantic", tiny / "red.yaml", "--instance", tiny / "yolo.yaml")
    assert r.returncode == 0, r.stderr
    assert rep["frames"]["in"] == rep["frames"]["out"] == 5
    sizes = [json.loads(x)["size_wh"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sizes == [[1, 1], [33, 17], [60, 40], [64, 48], [4096, 2160]]
    reliability(
        "1x1, 33x17, grey, RGBA and 4096x2160 images in one images:// folder",
        "all processed at their own size",
        "0",
    )


def test_grey_and_4k_video(tmp_path, tiny, reliability):
    grey = tmp_path / "grey.avi"
    vw = cv2.VideoWriter(str(grey), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48), isColor=False)
    for i in range(6):
        vw.write(np.full((48, 64), 20 * i, np.uint8))
    vw.release()
    big = make_video(tmp_path / "4k.mp4", n=3, size_wh=(4096, 2160))
    for src, n in ((grey, 6), (big, 3)):
        r, rep = run_report(tmp_path, src, "--semantic", tiny / "red.yaml")
        assert r.returncode == 0, r.stderr
        assert rep["frames"]["out"] == n
    reliability("greyscale video; 4096x2160 video", "processed", "0")


@pytest.mark.parametrize(
    "name, content, error",
    [
        ("empty.mp4", b"", "empty"),
        ("noise.mp4", bytes(random.Random(0).randrange(256) for _ in range(50_000)), "not a video"),
    ],
    ids=["empty", "noise"],
)
def test_files_that_are_not_videos(tmp_path, reliability, name, content, error):
    (tmp_path / name).write_bytes(content)
    r = run_streamseg("run", "--source", tmp_path / name, "--sink", "null://")
    one_line_error(r, error)
    reliability(f"{'zero-length file' if not content else 'random bytes'} named .mp4", "one line, exit 2", "-")


def make_vfr_mkv(path, n=40):
    """An H.264 MKV whose frames come 20, 33 and 80 ms apart (framerate 0/1: variable)."""
    from streamseg import gst

    Gst, _ = gst.require()
    pipe = Gst.parse_launch(
        "appsrc name=src format=time caps=video/x-raw,format=BGR,width=64,height=48,framerate=0/1 "
        f"! videoconvert ! x264enc ! h264parse ! matroskamux ! filesink location={path}"
    )
    src = pipe.get_by_name("src")
    pipe.set_state(Gst.State.PLAYING)
    t = 0
    for i in range(n):
        buf = Gst.Buffer.new_wrapped(np.full((48, 64, 3), (i * 6) % 255, np.uint8).tobytes())
        dur = (20, 33, 80)[i % 3] * Gst.MSECOND
        buf.pts, buf.duration = t, dur
        t += dur
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    pipe.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    return path


def test_variable_frame_rate_video(tmp_path, tiny, reliability):
    from streamseg import gst

    if not gst.available():
        pytest.skip("needs GStreamer")
    v = make_vfr_mkv(tmp_path / "vfr.mkv")
    r, rep = run_report(tmp_path, v, "--semantic", tiny / "red.yaml")
    assert r.returncode == 0, r.stderr
    assert rep["frames"]["out"] == 40 and rep["frames"]["decode_errors"] == 0  # uneven gaps are not losses
    pts = [json.loads(x)["pts"] for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    gaps = sorted({round(b - a, 3) for a, b in zip(pts, pts[1:], strict=False)})
    assert gaps[0] == pytest.approx(0.02, abs=0.002) and gaps[-1] == pytest.approx(0.08, abs=0.002)
    reliability("variable frame rate H.264 (20/33/80 ms gaps)", "every frame out with its own timestamp", "0")


@pytest.mark.skipif(not UDACITY.is_file(), reason="../shared/data/video not present")
def test_a_recording_cut_short_is_named_counted_and_fails_a_strict_run(tmp_path, reliability):
    """The first 100 KB of a 221-frame clip: the header still announces 221 frames, a few decode.
    It used to run with exit 0 and `decode errors 0`."""
    import re

    (tmp_path / "cut.mp4").write_bytes(UDACITY.read_bytes()[:100_000])
    r, rep = run_report(tmp_path, tmp_path / "cut.mp4", "--no-progress")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if "ended early" in x)
    assert line.startswith("streamseg: warning: ") and str(tmp_path / "cut.mp4") in line
    expected, read = map(int, re.search(r"announces (\d+) frames, (\d+) were read", line).groups())
    assert expected == 221 and read == rep["frames"]["in"] < 221
    assert rep["frames"]["decode_errors"] >= 1
    assert any(str(tmp_path / "cut.mp4") in b and "ended early" in b for b in rep["bad_input"])
    assert rep["sources"]["cam0"]["bad_input"] and rep["sources"]["cam0"]["decode_errors"] >= 1
    strict, _ = run_report(tmp_path, tmp_path / "cut.mp4", "--no-progress", "--strict")
    assert strict.returncode == 1 and "streamseg: error: strict: bad input: " in strict.stderr, strict.stderr
    (tmp_path / "strict.yaml").write_text("pipeline:\n  strict: true\n")
    by_config, _ = run_report(tmp_path, tmp_path / "cut.mp4", "--no-progress", "-c", tmp_path / "strict.yaml")
    assert by_config.returncode == 1, by_config.stderr
    ok, rep_ok = run_report(tmp_path, make_video(tmp_path / "whole.mp4"), "--no-progress", "--strict")
    assert ok.returncode == 0 and rep_ok["bad_input"] == [] and "warning" not in ok.stderr, ok.stderr
    reliability(
        "MP4 cut short with its index (moov) whole: the first 100 KB of a 221-frame clip",
        "a warning names the file, the frames its header announces and those read; counted as a decode "
        "error and listed in the report's bad_input; --strict (pipeline.strict) exits 1",
        "- (the frames in the file all come out; the missing ones are named)",
    )


def test_a_corrupt_image_is_named_in_the_log_and_the_report(tmp_path, reliability):
    d = tmp_path / "frames"
    d.mkdir()
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(d / name), np.full((24, 32, 3), 90, np.uint8))
    (d / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))  # a PNG signature, then nothing decodable
    r, rep = run_report(tmp_path, f"images://{d}", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert rep["frames"]["in"] == 2 and rep["frames"]["decode_errors"] == 1
    warnings = [x for x in r.stderr.splitlines() if x.startswith("streamseg: warning: ")]
    assert len(warnings) == 1 and str(d / "b.png") in warnings[0], r.stderr
    assert rep["sources"]["cam0"]["bad_input"] == [f"cannot decode {d / 'b.png'}: skipped"]
    assert rep["bad_input"] == [f"images://{d}: cannot decode {d / 'b.png'}: skipped"]
    reliability(
        "a corrupt image in an images:// folder",
        "skipped, counted as a decode error, named (its path) in the log and the report's bad_input",
        "0 (the image held no frame)",
    )
