"""The preview/metrics HTTP server: routes, token, MJPEG, Prometheus text (no browser here; see
tests/sinks/test_http_preview.py for the page in real Chromium)."""

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from streamseg.web import Frames, WebServer, prometheus_text


class FakePipeline:
    def live_stats(self):
        return {
            "fps": 25.0,
            "end_to_end": {"p50": 40.0, "p99": 90.0},
            "stages": {"decode": {"p50": 3.0, "p99": 5.0}},
            "frames": {"in": 10, "out": 9, "dropped": {"queue_full": 1}, "decode_errors": 0},
            "streams": {"cam0": {"frames_out": 9, "reconnects": 0}},
        }

    def metric_samples(self):
        return {
            "frames_in": {"cam0": 10},
            "frames_out": {"cam0": 9},
            "dropped": {"queue_full": 1},
            "decode_errors": 2,
            "reconnects": {"cam0": 1},
            "fps": 25.0,
            "stages": {"decode": np.array([1.0, 3.0, 30.0]), "infer": np.array([20.0, 20.0, 600.0])},
            "end_to_end": np.array([40.0, 50.0, 700.0]),
        }


@pytest.fixture
def server():
    frames = Frames()
    srv = WebServer("127.0.0.1", 0, FakePipeline(), frames=frames, token="s3cret")
    srv.start()
    yield srv
    srv.stop()


def get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    return urllib.request.urlopen(req, timeout=timeout)


def test_token_required_everywhere(server):
    for path in ("", "stats", "metrics", "stream/cam0.mjpg", "snapshot/cam0.jpg"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(server.url + path)
        assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            get(server.url + path + "?token=wrong")
    assert json.load(get(server.url + "stats?token=s3cret"))["fps"] == 25.0
    assert json.load(get(server.url + "stats", {"Authorization": "Bearer s3cret"}))["frames"]["out"] == 9


def test_binds_loopback_by_default():
    srv = WebServer("", 0, FakePipeline())
    srv.start()
    try:
        assert srv.host == "127.0.0.1" and srv.url.startswith("http://127.0.0.1:")
    finally:
        srv.stop()


def test_metrics_parse_as_prometheus_text(server):
    from prometheus_client.parser import text_string_to_metric_families

    text = get(server.url + "metrics?token=s3cret").read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "streamseg_frames_in",
        "streamseg_frames_dropped",
        "streamseg_decode_errors",
        "streamseg_reconnects",
    } <= set(fams)
    lat = fams["streamseg_stage_latency_seconds"]
    buckets = {(s.labels["stage"], s.labels["le"]): s.value for s in lat.samples if s.name.endswith("_bucket")}
    assert buckets[("decode", "0.005")] == 2 and buckets[("decode", "+Inf")] == 3  # 1 ms, 3 ms <= 5 ms; 30 ms not
    assert buckets[("infer", "0.025")] == 2 and buckets[("infer", "1.0")] == 3
    e2e = fams["streamseg_end_to_end_latency_seconds"]
    total = [s.value for s in e2e.samples if s.name.endswith("_sum")][0]
    assert total == pytest.approx(0.79)


def promtool_check(text: str) -> None:
    """`promtool check metrics` (Prometheus' own linter) finds nothing to say about `text`."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs promtool (apt-get install prometheus)"
)


@needs_promtool
def test_metrics_pass_promtool(server):
    text = get(server.url + "metrics?token=s3cret").read().decode()
    promtool_check(text)
    # and the judge is awake: it objects to a counter without _total and to text it cannot parse
    with pytest.raises(AssertionError, match="_total"):
        promtool_check("# HELP x_count a counter\n# TYPE x_count counter\nx_count 1\n")
    with pytest.raises(AssertionError):
        promtool_check(text + "streamseg_fps{ 1\n")


def test_prometheus_text_counts():
    text = prometheus_text(FakePipeline().metric_samples()).decode()
    assert 'streamseg_frames_dropped_total{reason="queue_full"} 1.0' in text
    assert "streamseg_decode_errors_total 2.0" in text


def test_prometheus_counts_analytics_events_by_type_and_zone():
    samples = {**FakePipeline().metric_samples(), "events": {("enter", "on_road"): 3, ("intrusion_start", "ego_corridor"): 1}}
    text = prometheus_text(samples).decode()
    assert 'streamseg_events_total{type="enter",zone="on_road"} 3.0' in text
    assert 'streamseg_events_total{type="intrusion_start",zone="ego_corridor"} 1.0' in text


class MjpegClient:
    """A raw-socket MJPEG viewer: reads one part at a time, or stops reading, or goes away."""

    def __init__(self, url_path: str, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {url_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.buf = b""
        self.deadline = time.monotonic() + 5
        self.status = self._line()
        self.headers = {}
        while (line := self._line()) != b"\r\n":
            k, _, v = line.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def _more(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)  # TimeoutError when nothing comes
        if not chunk:
            raise EOFError("the server closed the stream")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def part(self, timeout: float = 5.0) -> np.ndarray:
        """The next frame sent, decoded (raises TimeoutError when none begins in `timeout`)."""
        import cv2

        self.deadline = time.monotonic() + timeout
        assert self._line() == b"--frame\r\n"
        self.deadline = time.monotonic() + 5  # once begun, the rest follows
        assert self._line() == b"Content-Type: image/jpeg\r\n"
        n = int(self._line().split(b":")[1])
        assert self._line() == b"\r\n"
        jpg = self._read(n)
        assert self._read(2) == b"\r\n"
        return cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)

    def close(self) -> None:
        self.sock.close()


def grey(v: int) -> np.ndarray:
    return np.full((48, 64, 3), v, np.uint8)


def wait_until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_mjpeg_sends_only_new_frames_and_a_slow_client_never_blocks_put(server, reliability):
    frames = server.frames
    frames.put("cam0", grey(40))
    viewer = MjpegClient("/stream/cam0.mjpg?token=s3cret", server.port)
    try:
        assert viewer.status.startswith(b"HTTP/1.1 200")
        assert viewer.headers["content-type"].startswith("multipart/x-mixed-replace")
        assert abs(viewer.part().mean() - 40) < 3  # the newest frame at once
        # no new frame, nothing sent: the old one is not repeated
        with pytest.raises(TimeoutError):
            viewer.part(timeout=1.5)
        frames.put("cam0", grey(120))
        assert abs(viewer.part().mean() - 120) < 3
        # a client that stops reading: put() stays instant (nothing is written on the caller's
        # thread), and when it reads again it gets the newest frame, not the 200 it missed
        done = threading.Event()

        def producer():
            for i in range(200):
                frames.put("cam0", grey(i))
            done.set()

        t = threading.Thread(target=producer)
        t.start()
        assert done.wait(2.0)
        t.join()
        seen = [viewer.part().mean()]
        while abs(seen[-1] - 199) >= 3:
            seen.append(viewer.part().mean())
        assert len(seen) < 50, f"{len(seen)} frames sent of the 200 put while the client was not reading"
        assert all(abs(a - b) >= 1 for a, b in zip(seen, seen[1:], strict=False)), "a frame sent twice"
        with pytest.raises(TimeoutError):  # and nothing after the newest
            viewer.part(timeout=1.0)
    finally:
        viewer.close()
    snap = get(server.url + "snapshot/cam0.jpg?token=s3cret").read()
    assert snap[:2] == b"\xff\xd8"  # a JPEG
    reliability(
        "a preview client that stops reading, or goes away",
        "its own thread skips to the newest frame; the pipeline's writes stay instant",
        "0 (the preview only ever shows the newest frame)",
    )


def test_mjpeg_client_that_goes_away_frees_its_thread_even_when_no_frame_comes(server):
    server.frames.put("cam0", grey(40))
    before = threading.active_count()
    viewer = MjpegClient("/stream/cam0.mjpg?token=s3cret", server.port)
    viewer.part()
    assert wait_until(lambda: server.frames.watchers == 1, 5)
    assert server.open_connections == 1 and threading.active_count() >= before + 1  # its thread
    viewer.close()  # the browser tab closes; the stream is paused (no new frame)
    assert wait_until(lambda: server.frames.watchers == 0, 5), "the server still serves a viewer that left"
    assert wait_until(lambda: threading.active_count() == before and server.open_connections == 0, 5)


def test_mjpeg_viewer_that_stops_reading_is_dropped_after_the_timeout():
    """A viewer that keeps its socket open but never reads: once the socket buffers are full,
    no write may stall longer than read_timeout_s; its thread ends, put() never waits."""
    frames = Frames()
    srv = WebServer("127.0.0.1", 0, FakePipeline(), frames=frames, read_timeout_s=0.5)
    srv.start()
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)  # ~250 KB as JPEG
    try:
        frames.put("cam0", noise)
        viewer = MjpegClient("/stream/cam0.mjpg", srv.port, rcvbuf=4096)  # ...and never reads a part
        assert wait_until(lambda: frames.watchers == 1, 5)
        deadline = time.monotonic() + 15
        i = 0
        while frames.watchers and time.monotonic() < deadline:
            frames.put("cam0", np.roll(noise, i, axis=1))  # a new frame each time: the server keeps sending
            i += 1
            time.sleep(0.02)
        assert frames.watchers == 0, "a viewer that stopped reading still holds its thread"
        assert wait_until(lambda: srv.open_connections == 0, 5)
        viewer.close()
    finally:
        srv.stop()


def half_open(port: int, n: int, line: bytes = b"GET /?token=abc HTTP/1.1\r\n") -> list[socket.socket]:
    """n connections that send a request line and nothing more (no blank line: never complete)."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(line)
        socks.append(s)
    return socks


def read_all(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        chunks.append(b"<still open>")
    except ConnectionResetError:
        chunks.append(b"<reset>")
    return b"".join(chunks)


def test_half_open_connections_are_capped_refused_with_503_and_timed_out():
    """60 clients that send a request line and stop, against max_clients=8: at most 8 threads
    ever, 503 for the rest from the accepting thread, and once the read timeout passes the 8
    are closed by the server and the thread count is back at its baseline, sockets still open."""
    srv = WebServer("127.0.0.1", 0, FakePipeline(), frames=Frames(), token="abc", max_clients=8, read_timeout_s=1.0)
    srv.start()
    try:
        baseline = threading.active_count()
        socks = half_open(srv.port, 60)
        try:
            assert wait_until(lambda: srv.refused >= 52, 5), srv.refused
            assert srv.open_connections <= 8
            assert threading.active_count() <= baseline + 8
            # the refused get a complete 503, whatever they sent
            answers = [read_all(s, 0.3) for s in socks]
            refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
            assert len(refused) >= 52
            assert all(a.endswith(b"retry in a moment\n") for a in refused)
            # the admitted 8 are closed by the server after the timeout (no response: the
            # request never completed); the attacker's sockets are still open meanwhile
            assert wait_until(lambda: threading.active_count() <= baseline and srv.open_connections == 0, 6), (
                threading.active_count(),
                baseline,
            )
            admitted = [s for s, a in zip(socks, answers, strict=True) if not a.startswith(b"HTTP/1.1 503 ")]
            assert all(read_all(s, 3) in (b"", b"<reset>") for s in admitted)
        finally:
            for s in socks:
                s.close()
        # and the server serves again
        assert json.load(get(srv.url + "stats?token=abc"))["fps"] == 25.0
    finally:
        srv.stop()


def test_a_request_sent_a_byte_at_a_time_is_cut_off_at_the_timeout():
    """Slowloris: each byte comes well within the timeout, the whole request never does."""
    srv = WebServer("127.0.0.1", 0, FakePipeline(), max_clients=4, read_timeout_s=1.0)
    srv.start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        closed = False
        for b in b"GET /stats HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 200:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.3)
            try:
                if s.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        s.close()
        assert closed, "a request trickling in a byte at a time held its connection for 60 s"
        assert wait_until(lambda: srv.open_connections == 0, 3)
    finally:
        srv.stop()


def test_idle_keep_alive_and_strangers_do_not_hold_connections():
    srv = WebServer("127.0.0.1", 0, FakePipeline(), token="abc", max_clients=4, read_timeout_s=1.0)
    srv.start()
    try:
        # keep-alive: served, then closed by the server once idle past the timeout
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /stats?token=abc HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        rest = read_all(s, 5)  # the rest of the body, then the server's close
        assert not rest.endswith((b"<still open>", b"<reset>")), rest
        assert wait_until(lambda: srv.open_connections == 0, 3)
        s.close()
        # a request without the token: 401, and the connection is closed at once
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(s, 0.8)
        assert answer.startswith(b"HTTP/1.1 401") and not answer.endswith(b"<still open>")
        s.close()
    finally:
        srv.stop()


def test_mjpeg_viewers_count_against_the_cap(server):
    srv = WebServer("127.0.0.1", 0, FakePipeline(), frames=Frames(), token="abc", max_clients=2, read_timeout_s=2.0)
    srv.start()
    try:
        srv.frames.put("cam0", grey(40))
        viewers = [MjpegClient("/stream/cam0.mjpg?token=abc", srv.port) for _ in range(2)]
        for v in viewers:
            v.part()
        with pytest.raises(urllib.error.HTTPError) as e:
            get(srv.url + "stats?token=abc")
        assert e.value.code == 503 and e.value.headers["Retry-After"] == "2"
        viewers.pop().close()  # one leaves: its place is free again (no new frame needed)
        assert wait_until(lambda: srv.open_connections == 1, 5)
        assert json.load(get(srv.url + "stats?token=abc"))["fps"] == 25.0
        viewers[0].close()
    finally:
        srv.stop()


def test_preview_sink_takes_the_cap_and_timeout_from_its_uri():
    from streamseg.sinks import open_sink
    from streamseg.web import DEFAULT_MAX_CLIENTS, DEFAULT_READ_TIMEOUT_S

    sink = open_sink("http://127.0.0.1:8080?token=abc&max_clients=5&read_timeout_s=2.5")
    assert (sink.token, sink.max_clients, sink.read_timeout_s) == ("abc", 5, 2.5)
    sink = open_sink("http://127.0.0.1:8080")
    assert (sink.max_clients, sink.read_timeout_s) == (DEFAULT_MAX_CLIENTS, DEFAULT_READ_TIMEOUT_S)
    assert 1 <= DEFAULT_MAX_CLIENTS <= 256 and 1 <= DEFAULT_READ_TIMEOUT_S <= 60


@pytest.mark.parametrize(
    "query, error",
    [
        ("max_clients=0", "max_clients must be a whole number from 1"),
        ("max_clients=lots", "max_clients must be a whole number from 1"),
        ("max_clients=2.5", "max_clients must be a whole number from 1"),
        ("read_timeout_s=-1", "read_timeout_s must be a number of seconds"),
        ("read_timeout_s=nan", "read_timeout_s must be a number of seconds"),
        ("token=abc&max_client=3", "unknown option 'max_client'"),
        ("tokn=abc", "unknown option 'tokn'"),  # a mistyped token= stays secret
    ],
)
def test_preview_sink_option_mistakes_are_one_clear_line(query, error):
    from streamseg.errors import SinkError
    from streamseg.sinks import open_sink

    with pytest.raises(SinkError) as e:
        open_sink(f"http://127.0.0.1:8080?{query}")
    assert error in str(e.value) and "\n" not in str(e.value)
    assert "abc" not in str(e.value)  # redacted


def test_hostile_clients_do_not_slow_the_pipeline_and_their_threads_go_away(tiny, reliability):
    """A real run with a preview capped at 8 connections, 1 s read timeout: 60 half-open
    connections during the run. Frames keep flowing at about the rate they flowed before, the
    process never holds more than 8 extra threads, and back at its baseline after the timeout
    while the attacker's sockets are still open."""
    from streamseg.config import validate_config
    from streamseg.pipeline import Pipeline
    from streamseg.sinks.base import Sink
    from tests.conftest import free_port

    port = free_port()
    written: list[float] = []

    class Clock(Sink):
        name = "clock"

        def write_impl(self, frame):
            written.append(time.monotonic())

    cfg = validate_config(
        {
            "sources": [{"uri": "synthetic://driving?size=160x90&fps=20&seed=1&frames=100000", "mode": "realtime"}],
            "engines": {"semantic": {"card": str(tiny / "red.yaml"), "threads": 1}},
            "sinks": [f"http://127.0.0.1:{port}?token=abc&max_clients=8&read_timeout_s=1"],
            "metrics": {"progress": False, "summary": False},
            "pipeline": {"batch": {"max_size": 1}},
        }
    )
    pipe = Pipeline(cfg, extra_sinks=[Clock("clock://")])
    runner = threading.Thread(target=pipe.run, daemon=True)
    runner.start()
    socks = []
    try:
        assert wait_until(lambda: len(written) >= 10, 30), "the run did not start"
        time.sleep(0.5)
        baseline = threading.active_count()

        def frames_in(seconds: float) -> int:
            n0 = len(written)
            time.sleep(seconds)
            return len(written) - n0

        quiet = frames_in(2.0)
        socks = half_open(port, 60)
        peak = threading.active_count()
        attacked = frames_in(2.0)
        peak = max(peak, threading.active_count())
        assert peak <= baseline + 8, (peak, baseline)
        assert attacked > 0 and attacked >= 0.4 * quiet, (quiet, attacked)  # the frame rate holds (loosely: CI is loaded)
        assert wait_until(lambda: threading.active_count() <= baseline, 6), (threading.active_count(), baseline)
        # the attacker still has its sockets; a real viewer gets in again
        assert socks[-1].fileno() != -1
        assert json.load(get(f"http://127.0.0.1:{port}/stats?token=abc"))["frames"]["out"] > 0
        assert frames_in(1.0) > 0
        reliability(
            "60 half-open connections (a request line, then nothing) against a preview capped at 8",
            "8 get a thread, the rest a 503 from the accepting thread; the 8 are closed at the read "
            "timeout, threads back to their baseline with the sockets still open; frames keep flowing",
            "0 (the pipeline never waits on a client)",
        )
    finally:
        for s in socks:
            s.close()
        pipe.stop()
        runner.join(30)
    assert not runner.is_alive()


def test_page_lists_streams_with_the_token_passed_on(server):
    server.frames.put("front", np.zeros((8, 8, 3), np.uint8))
    page = get(server.url + "?token=s3cret").read().decode()
    assert "/stream/front.mjpg?token=s3cret" in page and "/stats" in page


def test_prometheus_without_the_preview_page(tiny, video):
    """metrics.prometheus serves /metrics and /stats for the run's duration, no page, no video."""
    from prometheus_client.parser import text_string_to_metric_families

    from streamseg.config import validate_config
    from streamseg.pipeline import Pipeline
    from streamseg.sinks.base import Sink
    from tests.conftest import free_port

    port = free_port()
    seen = {}

    class Scrape(Sink):
        name = "scrape"

        def write_impl(self, frame):
            if frame.seq == 20:
                seen["metrics"] = get(f"http://127.0.0.1:{port}/metrics").read().decode()
                with pytest.raises(urllib.error.HTTPError) as e:
                    get(f"http://127.0.0.1:{port}/")
                seen["page"] = e.value.code

    cfg = validate_config(
        {
            "sources": [str(video)],
            "engines": {"semantic": {"card": str(tiny / "red.yaml"), "threads": 1}},
            "metrics": {"prometheus": f"127.0.0.1:{port}", "progress": False, "summary": False},
            "pipeline": {"batch": {"max_size": 1}},
        }
    )
    Pipeline(cfg, extra_sinks=[Scrape("scrape://")]).run()
    fams = {f.name: f for f in text_string_to_metric_families(seen["metrics"])}
    assert fams["streamseg_frames_out"].samples[0].value >= 15
    if shutil.which("promtool"):  # a real run's /metrics, judged by Prometheus' own linter
        promtool_check(seen["metrics"])
    assert seen["page"] == 404
    with pytest.raises(urllib.error.URLError):  # gone with the run
        get(f"http://127.0.0.1:{port}/metrics", timeout=1)
