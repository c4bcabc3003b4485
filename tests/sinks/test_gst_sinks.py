"""GStreamer sinks for real: crash-safe H.264 files, the RTSP server (GStreamer and FFmpeg clients)."""

import json
import os
import signal
import socket
import time

import cv2
import pytest

from streamseg import gst
from streamseg.sources import open_source
from tests.conftest import free_port, run_streamseg, streamseg_popen

pytestmark = pytest.mark.skipif(not gst.available(), reason="GStreamer/PyGObject not installed")


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_h264_file_survives_kill_9(tmp_path, suffix, reliability):
    out = tmp_path / f"k{suffix}"
    proc = streamseg_popen(
        "run",
        "--source",
        "synthetic://driving?size=320x180&frames=2000",
        "--mode",
        "realtime",
        "--sink",
        out,
        "--no-progress",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.2)
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n = count_frames(out)
    assert n >= 30, n  # at least the frames up to the last complete fragment
    reliability(
        f"kill -9 while writing {suffix}",
        "the file plays up to its last complete fragment (1 s)",
        "at most the last fragment",
    )


def test_h264_file_normal_end(tmp_path):
    out = tmp_path / "n.mp4"
    r = run_streamseg(
        "run",
        "--source",
        "synthetic://driving?size=320x180&frames=40",
        "--sink",
        out,
        "--report",
        tmp_path / "r.json",
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert count_frames(out) == 40
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["sinks"][str(out)]["kind"] == "h264-file"


def test_rtsp_sink_serves_gstreamer_and_ffmpeg_clients(tmp_path):
    port = free_port()
    proc = streamseg_popen(
        "run",
        "--source",
        "synthetic://driving?size=320x180&frames=900",
        "--mode",
        "realtime",
        "--sink",
        f"rtsp://127.0.0.1:{port}/live",
        "--no-progress",
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        src = open_source(f"rtsp://127.0.0.1:{port}/live")
        with src:
            frames = [src.read() for _ in range(10)]
        assert all(f is not None and f.image_bgr.shape == (180, 320, 3) for f in frames)
        cap = cv2.VideoCapture(f"rtsp://127.0.0.1:{port}/live", cv2.CAP_FFMPEG)
        ok, img = cap.read()
        assert ok and img.shape == (180, 320, 3)
        cap.release()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130  # interrupted runs say so


def test_rtsp_sink_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_streamseg(
            "run",
            "--source",
            "synthetic://driving?size=64x36&frames=2",
            "--sink",
            f"rtsp://127.0.0.1:{port}/x",
            timeout=60,
        )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot listen on 127.0.0.1" in r.stderr


def test_display_without_a_display_is_a_clear_error(monkeypatch):
    from streamseg.errors import SinkError
    from streamseg.sinks import StreamInfo, open_sink

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="no display here"):
        open_sink("display://").open({"cam0": StreamInfo("cam0", 25, (64, 48))})


def test_rtp_sink_reaches_an_rtp_source():
    """Our RTP sink -> our RTP source, on loopback."""
    import numpy as np

    from streamseg.frames import Frame
    from streamseg.sinks import StreamInfo, open_sink

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_source(f"rtp://@:{port}")
    sink = open_sink(f"rtp://127.0.0.1:{port}")
    sink.open({"cam0": StreamInfo("cam0", 30, (160, 96))})
    import threading

    stop = threading.Event()

    def feed():
        i = 0
        while not stop.is_set():
            img = np.full((96, 160, 3), 40, np.uint8)
            img[:, (i * 4) % 160 :][:, :20] = (0, 200, 0)
            f = Frame("cam0", i, i / 30, img, time.perf_counter_ns())
            sink.write(f)
            i += 1
            time.sleep(1 / 30)

    t = threading.Thread(target=feed)
    t.start()
    try:
        with src:
            frames = [src.read() for _ in range(10)]
    finally:
        stop.set()
        t.join()
        sink.close()
    assert all(f is not None and f.image_bgr.shape == (96, 160, 3) for f in frames)
