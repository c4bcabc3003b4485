"""RTSP transports as players pick them: TCP first, UDP when the server refuses TCP (VLC's own
server serves RTP over UDP only), and a clear line naming `transport:` when neither works."""

import json
import subprocess
import sys

import pytest

from streamseg import gst
from streamseg.errors import SourceError
from tests.conftest import ROOT, free_port, run_streamseg

pytestmark = pytest.mark.skipif(not gst.available(), reason="GStreamer/PyGObject not installed")


@pytest.fixture
def udp_server(request):
    """rtsp://127.0.0.1:PORT/cam served over UDP only (`udp`) or over multicast only (`mcast`)."""
    procs = []

    def start(kind="udp"):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "helpers" / "rtsp_server.py"), str(port), "cam", kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return f"rtsp://127.0.0.1:{port}/cam"

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_a_udp_only_server_is_played_over_udp(udp_server, tmp_path, reliability):
    uri = udp_server("udp")
    r = run_streamseg(
        "run", "--source", uri, "--sink", "null://", "--max-frames", "20", "--report", tmp_path / "r.json",
        "--no-progress", timeout=90,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"{uri}: RTP over UDP" in r.stderr, r.stderr  # the log says which transport is in use
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["sources"]["cam0"]["transport"] == "udp"
    assert rep["frames"]["in"] == 20
    reliability(
        "RTSP server that serves RTP over UDP only (as VLC's does)",
        "TCP refused, falls back to UDP, logs `RTP over UDP`, run completes",
        "0",
    )


def test_udp_first_falls_back_to_tcp(udp_server, tmp_path):
    uri = udp_server("tcp")  # TCP only, and the config asks for UDP first
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources: [{{uri: '{uri}', transport: udp}}]\nsinks: [null://]\n")
    r = run_streamseg("run", "-c", cfg, "--max-frames", "10", "--report", tmp_path / "r.json", timeout=90)
    assert r.returncode == 0, r.stderr
    assert f"{uri}: RTP over TCP (UDP failed: " in r.stderr, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["sources"]["cam0"]["transport"] == "tcp"


def test_a_server_refusing_both_transports_is_one_line_naming_transport(udp_server, tmp_path, reliability):
    uri = udp_server("mcast")  # multicast only: a unicast client gets neither
    r = run_streamseg("run", "--source", uri, "--sink", "null://", "--max-frames", "5", timeout=90)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "cannot open" in line]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "transport: tcp" in errors[0] and "transport: udp" in errors[0], errors[0]
    reliability(
        "RTSP server that refuses RTP over TCP and over UDP",
        "both tried; one line naming `transport:` tcp and udp, exit 2 before any frame",
        "-",
    )


def test_transport_order():
    from streamseg.sources.gst import rtsp_source

    assert rtsp_source("rtsp://h/x").transports == ["tcp", "udp"]
    assert rtsp_source("rtsp://h/x", "udp").transports == ["udp", "tcp"]
    assert rtsp_source("rtspt://h/x").transports == ["tcp"]  # rtspt:// is TCP by definition
    with pytest.raises(SourceError, match="rtspt:// is RTSP over TCP"):
        rtsp_source("rtspt://h/x", "udp")  # a contradiction is said, not ignored
