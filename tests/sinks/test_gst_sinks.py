"""GStreamer sinks for real: crash-safe H.264 files, the RTSP server (GStreamer and FFmpeg clients)."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import pytest

from streamseg import gst
from streamseg.sources import open_source
from tests.conftest import ROOT, free_port, run_streamseg, streamseg_popen
from tests.helpers import ffmpeg

pytestmark = pytest.mark.skipif(not gst.available(), reason="GStreamer/PyGObject not installed")


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def decodable_frames(path) -> int:
    """Frames FFmpeg decodes from a file (OpenCV's count where ffmpeg is absent)."""
    return ffmpeg.decode_file(path).frames if ffmpeg.available() else count_frames(path)


IN_FLIGHT = 2  # frames the sink has passed on that x264 (zerolatency: no lookahead) may still be encoding


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_h264_file_survives_kill_9(tmp_path, suffix, reliability):
    """Frames flowing at 15 fps; the writer is frozen (SIGSTOP) so the sink's own counter is
    exact, then killed (SIGKILL). What decodes = what the sink wrote, less the last MP4
    fragment (1 s) and the frames still in the encoder."""
    out = tmp_path / f"k{suffix}"
    fps, fragment_s = 15, 1.0  # EncoderSettings.fragment_ms
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.sink_writer", str(out), "1000", str(fps)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    written = 0
    for line in proc.stdout:
        written = int(line.split()[1]) if line.startswith("written") else written
        if written >= 5 * fps + 7:  # mid-fragment
            break
    os.kill(proc.pid, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    written = max([written] + [int(x.split()[1]) for x in rest.splitlines() if x.startswith("written")])
    decodable = decodable_frames(out)
    fragment = math.ceil(fps * fragment_s) + 1 if suffix == ".mp4" else 0  # a fragment closes on the frame past 1 s
    assert written - fragment - IN_FLIGHT <= decodable <= written + 1, (written, decodable)
    if suffix == ".mp4":
        behaviour = "the file plays up to its last complete fragment (1 s)"
        lost = "of the frames the sink counted as written: "
        lost += f"at most the last fragment ({fragment} frames) + {IN_FLIGHT} in the encoder"
    else:
        behaviour = "the file plays every frame the muxer got (clusters reach the disk as they grow)"
        lost = f"of the frames the sink counted as written: at most the {IN_FLIGHT} still in the encoder"
    reliability(
        f"kill -9 while writing {suffix} at 15 fps",
        behaviour,
        lost,
    )


@pytest.mark.skipif(not ffmpeg.available(), reason="needs ffprobe")
@pytest.mark.parametrize("how", ["end", "sigint"])
def test_mkv_has_its_duration_and_an_index_after_a_normal_end_or_sigint(tmp_path, how, reliability):
    """ffprobe reads the duration (frames / fps) and the file carries its Cues (seek index)."""
    out = tmp_path / "d.mkv"
    fps = 15
    frames = 45 if how == "end" else 100000
    args = ["run", "--source", f"synthetic://driving?size=320x180&fps={fps}&frames={frames}", "--sink", out]
    if how == "end":
        r = run_streamseg(*args, timeout=120)
        assert r.returncode == 0, r.stderr
    else:
        proc = streamseg_popen(*args, "--mode", "realtime", "--no-progress")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 1_000_000):  # ~2 s
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err  # interrupted runs say so
    n = decodable_frames(out)
    duration = float(ffmpeg.probe_format(out)["format"].get("duration", "nan"))
    assert n >= (45 if how == "end" else 10)
    assert duration == pytest.approx(n / fps, abs=1.5 / fps), (duration, n)
    assert b"\x1c\x53\xbb\x6b" in out.read_bytes()[-65536:]  # the Cues element, written at the end
    if how == "sigint":
        reliability(
            "SIGINT while writing .mkv",
            "the file is finalized: duration (ffprobe) and seek index (Cues) written",
            "- (its duration = the frames ffmpeg decodes / fps, within 1.5 frames)",
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


# What FFmpeg-based players see (VLC, ffplay, OBS, NVRs decode with FFmpeg) ---------------------
needs_ffmpeg = pytest.mark.skipif(not ffmpeg.available(), reason="needs ffmpeg and ffprobe (apt-get install ffmpeg)")
FPS = 15
STREAM_S = 10  # seconds of stream each client reads


def wait_for_port(port: int, proc, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the RTSP server did not come up: {proc.poll()=}")


def stop(proc) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    return err


CLEAN_ROW = (
    f"{STREAM_S} s each: no error or warning line; no keyframe split in two; every pts on the frame grid",
    "0 corrupt (frames the run skips for a stream leave whole-period gaps)",
)


def judge_clients(proc, clients) -> None:
    """Wait for every client's verdict, stop the run (SIGINT: it exits 130), and assert all clean."""
    try:
        judged = [c.result() for c in clients]
    finally:
        err = stop(proc)
    assert proc.returncode == 130, err  # stopped by SIGINT: interrupted
    assert_clean(judged)


def assert_clean(judged: list[ffmpeg.Judged]) -> None:
    """Zero error or warning lines from every client; ffprobe: every frame at a whole number
    of frame periods after the last (the stream's own timestamps), no keyframe split in two."""
    for j in judged:
        assert j.problems == [], j.summary()
        assert j.frames >= 10, j.summary()  # it did watch the stream (how many: the machine's load)
    for j in judged:
        if not j.command[0].endswith("ffprobe"):
            continue
        assert j.split_keyframes == 0, f"{j.split_keyframes} keyframes decoded as two halves"
        assert j.pts_monotonic, j.pts[:20]
        gaps = [(b - a) * FPS for a, b in zip(j.pts, j.pts[1:], strict=False)]
        # frames a busy machine dropped leave gaps of whole periods; arrival times would not
        assert all(g > 0.5 and abs(g - round(g)) < 0.02 for g in gaps), [round(g, 3) for g in gaps[:40]]


@needs_ffmpeg
@pytest.mark.parametrize("size, mode", [("640x360", "realtime"), ("1280x720", "offline")])
def test_rtsp_stream_decodes_cleanly_in_two_ffmpeg_clients_and_ffprobe(size, mode, reliability):
    """Two `ffmpeg -rtsp_transport tcp` clients and one ffprobe at once, STREAM_S s each.

    On the old sink: keyframes split in two (rtph264pay put SPS/PPS before the second
    slice: `corrupt decoded frame`) and arrival timestamps (do-timestamp) off the frame grid."""
    port = free_port()
    url = f"rtsp://127.0.0.1:{port}/live"
    src = f"synthetic://driving?size={size}&fps={FPS}&seed=3&frames=100000"
    proc = streamseg_popen("run", "--source", src, "--mode", mode, "--sink", url, "--no-progress")
    try:
        wait_for_port(port, proc)
        clients = []
        for start in (ffmpeg.Client.ffmpeg, ffmpeg.Client.ffmpeg, ffmpeg.Client.ffprobe):
            clients.append(start(url, STREAM_S))
            # all three watch together for ~9 s; connecting within one frame of each other
            # is the shared media's known limit (RtspServerSink._on_play), not tested here
            time.sleep(0.5)
    except BaseException:
        stop(proc)
        raise
    judge_clients(proc, clients)
    reliability(
        f"RTSP stream, {size} {mode} run: two ffmpeg clients (-rtsp_transport tcp) and ffprobe at once", *CLEAN_ROW
    )


@needs_ffmpeg
@pytest.mark.parametrize("size, mode", [("1280x720", "offline"), ("640x360", "realtime")])
def test_rtp_stream_decodes_cleanly_in_ffmpeg_and_ffprobe_from_an_sdp_file(tmp_path, size, mode, reliability):
    """ffmpeg and ffprobe reading an SDP file, each from its own rtp:// sink of one run, STREAM_S s."""
    ports = [free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)]
    sdps = [ffmpeg.write_sdp(tmp_path / f"s{i}.sdp", p) for i, p in enumerate(ports)]
    # receivers first: they then see the stream from its first keyframe
    clients = [
        ffmpeg.Client.ffmpeg(str(sdps[0]), STREAM_S, timeout_s=90),
        ffmpeg.Client.ffprobe(str(sdps[1]), STREAM_S, timeout_s=90),
    ]
    time.sleep(0.5)
    src = f"synthetic://driving?size={size}&fps={FPS}&seed=3&frames=100000"
    sinks = [a for p in ports for a in ("--sink", f"rtp://127.0.0.1:{p}")]
    proc = streamseg_popen("run", "--source", src, "--mode", mode, *sinks, "--no-progress")
    judge_clients(proc, clients)
    reliability(f"RTP stream, {size} {mode} run: ffmpeg and ffprobe reading an SDP file", *CLEAN_ROW)


def test_timeline_keeps_each_frames_own_time_and_never_goes_back():
    from streamseg.sinks.gst import _Timeline

    t = _Timeline(fps=15)
    period = 1e9 / 15
    stamps = [t.stamp(p) for p in (5.0, 5 + 1 / 15, 5 + 3 / 15, 0.0, float("nan"), 1 / 15)]
    gaps = [round((b - a) / period, 3) for a, b in zip(stamps, stamps[1:], strict=False)]
    # starts at 0; a dropped frame leaves a gap of 2 periods; a clock that goes back (a
    # reconnect) or a frame without a time continues one period later, and the new clock's
    # own gaps stay (0 -> 1/15: one period)
    assert stamps[0] == 0 and gaps == [1, 2, 1, 1, 1]


@pytest.mark.skipif(not ffmpeg.available(), reason="needs ffprobe")
def test_an_h264_file_sink_encodes_at_its_own_size(tmp_path):
    """`size: 160x90` on a 320x180 stream: ffprobe reads a 160x90 H.264 file with every frame."""
    cfg = tmp_path / "c.yaml"
    out = tmp_path / "small.mp4"
    cfg.write_text(
        "sources: ['synthetic://driving?size=320x180&fps=15&frames=20']\n"
        f"sinks: [{{uri: {out}, size: 160x90}}]\n"
        "metrics: {progress: false}\n"
    )
    r = run_streamseg("run", "-c", cfg, timeout=120)
    assert r.returncode == 0, r.stderr
    streams = json.loads(
        subprocess.run(
            [ffmpeg.ffprobe_path() or "ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["streams"]
    assert (streams[0]["codec_name"], streams[0]["width"], streams[0]["height"]) == ("h264", 160, 90)
    assert decodable_frames(out) == 20


def test_a_sink_size_that_is_no_size_is_a_config_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources: ['synthetic://driving?frames=2']\nsinks: [{{uri: {tmp_path / 'o.mp4'}, size: 641x360}}]\n")
    r = run_streamseg("run", "-c", cfg, timeout=60)
    assert r.returncode == 2 and "expected WIDTHxHEIGHT, even numbers" in r.stderr and "Traceback" not in r.stderr


def test_size_on_a_sink_that_does_not_encode_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources: ['synthetic://driving?frames=2']\nsinks: [{{uri: {tmp_path / 'o.jsonl'}, size: 640x360}}]\n")
    r = run_streamseg("run", "-c", cfg, timeout=60)
    assert r.returncode == 2 and "size is for the H.264 sinks" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.jsonl").exists()
def test_an_rtp_host_that_does_not_resolve_is_one_line_at_start_up(tmp_path):
    (tmp_path / "kept.jsonl").write_text("earlier\n")
    r = run_streamseg(
        "run", "--source", "synthetic://driving?size=64x36&frames=2", "--sink", tmp_path / "kept.jsonl",
        "--sink", "rtp://no.such.host.invalid:5004", timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "streamseg: error: rtp://no.such.host.invalid:5004: cannot resolve the host 'no.such.host.invalid': "
        + r.stderr.strip().rsplit(": ", 1)[-1]
    ]
    assert (tmp_path / "kept.jsonl").read_text() == "earlier\n"


def test_an_rtp_send_that_fails_drops_that_frame_and_the_stream_goes_on():
    """udpsink posts a WARNING "Error sending UDP packets" for a send that fails (network
    unreachable) and goes on; the frame is the sink's `send_failed` drop, not its failure."""
    import numpy as np

    from streamseg.frames import Frame
    from streamseg.sinks import StreamInfo, open_sink
    from streamseg.sinks.base import FrameDropped

    Gst, _ = gst.require()
    from gi.repository import GLib

    sink = open_sink(f"rtp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    sink.open({"cam0": StreamInfo("cam0", 25.0, (64, 48))})

    def frame(i):
        return Frame("cam0", i, i / 25, np.full((48, 64, 3), 90, np.uint8), time.perf_counter_ns())

    with sink:
        sink.write(frame(0))
        udp = sink._enc["cam0"].pipeline.get_by_name("udp")
        err = GLib.Error.new_literal(Gst.ResourceError.quark(), "Error sending UDP packets", Gst.ResourceError.WRITE)
        udp.post_message(Gst.Message.new_warning(udp, err, "client 127.0.0.1:5004, reason: Network is unreachable"))
        with pytest.raises(FrameDropped, match="udp: Error sending UDP packets: Network is unreachable") as e:
            sink.write(frame(1))
        assert e.value.reason == "send_failed"
        sink.write(frame(2))  # the next send goes through
    assert sink.written == 2
