"""A small HTTP server for the browser preview and for Prometheus.

    /                 the preview page: every stream's overlaid video, and a live panel
                      of fps, drops and per-stage latency (p50/p99) fed from /stats
    /stream/ID.mjpg   the stream as MJPEG (multipart/x-mixed-replace), newest frame only
    /snapshot/ID.jpg  the newest frame of one stream
    /stats            JSON: the pipeline's live figures
    /metrics          Prometheus text format: frames, drops, decode errors, reconnects,
                      per-stage and end-to-end latency histograms

Binds 127.0.0.1 unless told otherwise. With a token, every request must carry it
(`?token=...`, or `Authorization: Bearer ...`), else 401. Each client is served by its own
thread that only ever sends the newest frame: a slow or vanished browser skips frames,
it never holds up the pipeline (whose queue to this sink drops, too).

Hostile or broken clients are bounded before any token is checked: at most `max_clients`
connections are open at once (MJPEG viewers included); past that a connection gets a 503
from the accepting thread, no thread of its own. A request must arrive whole within
`read_timeout_s` of the connection (or of the previous response, on keep-alive), and no
single read or write may stall longer than that: a half-open socket, a slowloris or a
viewer that stopped reading loses its connection and its thread.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np

log = logging.getLogger("streamseg")

# histogram buckets for latencies, seconds: 1 ms .. 10 s
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StatsProvider(Protocol):
    """What the server asks the pipeline for (Pipeline has both)."""

    def live_stats(self) -> dict: ...

    def metric_samples(self) -> dict: ...


class Frames:
    """The newest overlaid frame of each stream, JPEG-encoded lazily (only when someone watches)."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self.cond = threading.Condition()
        self._raw: dict[str, tuple[int, np.ndarray]] = {}
        self._jpeg: dict[str, tuple[int, bytes]] = {}
        self.watchers = 0
        self.closed = False

    def put(self, stream_id: str, image_bgr: np.ndarray) -> None:
        with self.cond:
            seq = self._raw.get(stream_id, (0, None))[0] + 1
            self._raw[stream_id] = (seq, image_bgr)
            self.cond.notify_all()

    def streams(self) -> list[str]:
        with self.cond:
            return sorted(self._raw)

    def jpeg(self, stream_id: str) -> tuple[int, bytes] | None:
        """(seq, JPEG bytes) of the newest frame, encoded once per frame whoever asks."""
        import cv2

        with self.cond:
            raw = self._raw.get(stream_id)
            cached = self._jpeg.get(stream_id)
        if raw is None:
            return None
        if cached is not None and cached[0] == raw[0]:
            return cached
        ok, buf = cv2.imencode(".jpg", raw[1], [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        out = (raw[0], buf.tobytes())
        with self.cond:
            self._jpeg[stream_id] = out
        return out

    def wait_newer(self, stream_id: str, seq: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(
                lambda: self.closed or self._raw.get(stream_id, (0, None))[0] > seq, timeout=timeout
            )

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def prometheus_text(samples: dict) -> bytes:
    """Prometheus exposition text from the pipeline's counters and latency samples (via prometheus_client)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    class _Collector:
        def collect(self):
            c = CounterMetricFamily("streamseg_frames_in", "Frames read from sources", labels=["stream"])
            for sid, n in samples["frames_in"].items():
                c.add_metric([sid], n)
            yield c
            c = CounterMetricFamily("streamseg_frames_out", "Frames every sink has handled", labels=["stream"])
            for sid, n in samples["frames_out"].items():
                c.add_metric([sid], n)
            yield c
            c = CounterMetricFamily("streamseg_frames_dropped", "Frames dropped, by reason", labels=["reason"])
            for reason, n in samples["dropped"].items():
                c.add_metric([reason], n)
            yield c
            yield CounterMetricFamily(
                "streamseg_decode_errors", "Frames the decoder could not decode", value=samples["decode_errors"]
            )
            c = CounterMetricFamily("streamseg_reconnects", "Live source reconnects", labels=["stream"])
            for sid, n in samples["reconnects"].items():
                c.add_metric([sid], n)
            yield c
            c = CounterMetricFamily("streamseg_events", "Analytics events, by type and zone", labels=["type", "zone"])
            for (kind, zone), n in sorted(samples.get("events", {}).items()):
                c.add_metric([kind, zone], n)
            yield c
            yield GaugeMetricFamily("streamseg_fps", "Frames out per second, recent window", value=samples["fps"] or 0)
            h = HistogramMetricFamily("streamseg_stage_latency_seconds", "Per-stage latency", labels=["stage"])
            weight = samples.get("sample_stride", 1)
            for stage, values in samples["stages"].items():
                h.add_metric([stage], *_buckets(values, weight))
            yield h
            h = HistogramMetricFamily("streamseg_end_to_end_latency_seconds", "Capture to written latency")
            h.add_metric([], *_buckets(samples["end_to_end"], weight))
            yield h

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector())
    return generate_latest(reg)


def _buckets(values_ms: np.ndarray, weight: int = 1) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs and the sum, from latency samples in ms, each standing for
    `weight` frames."""
    v = np.sort(np.asarray(values_ms, np.float64) / 1000.0)
    counts = np.searchsorted(v, LATENCY_BUCKETS_S, side="right") * weight
    buckets = [(repr(b), float(c)) for b, c in zip(LATENCY_BUCKETS_S, counts, strict=True)]
    buckets.append(("+Inf", float(len(v) * weight)))
    return buckets, float(v.sum()) * weight


DEFAULT_MAX_CLIENTS = 32  # connections open at once, MJPEG viewers included; 503 past it
DEFAULT_READ_TIMEOUT_S = 10.0  # a request must arrive whole within this; no read or write stalls longer

_BUSY_BODY = b"503: too many connections to this server; retry in a moment\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 2\r\n"
    b"Connection: close\r\nCache-Control: no-store\r\nContent-Length: %d\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


class _BoundedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on open connections and a deadline on each request.

    The cap is enforced on the accepting thread, before a handler thread exists; the deadline
    by service_actions() (the serve_forever loop, every poll interval), which shuts down the
    socket of any connection whose request has not arrived whole in time."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog (stdlib: 5, where a burst of connects waits 1 s for a SYN retry)

    def __init__(self, addr, handler, *, max_clients: int, read_timeout_s: float) -> None:
        self.max_clients = max_clients
        self.read_timeout_s = read_timeout_s
        self._lock = threading.Lock()
        self._open: dict[socket.socket, float | None] = {}  # connection -> request deadline (None: being served)
        self._cut: set[socket.socket] = set()  # connections shut down at their deadline
        self._refused: list[tuple[socket.socket, float]] = []  # 503 sent, closed after a short linger
        self.refused_total = 0
        self._full_logged = False
        super().__init__(addr, handler)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def process_request(self, request, client_address) -> None:
        with self._lock:
            full = len(self._open) >= self.max_clients
            if not full:
                self._open[request] = time.monotonic() + self.read_timeout_s
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # its thread
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request) -> None:
        with self._lock:
            self._open.pop(request, None)
            self._cut.discard(request)
            if len(self._open) < self.max_clients:
                self._full_logged = False

    def arm(self, request) -> None:
        """A request is awaited on this connection: it must arrive whole within the timeout."""
        with self._lock:
            if request in self._open:
                self._open[request] = time.monotonic() + self.read_timeout_s

    def disarm(self, request) -> bool:
        """The request has arrived: serving it (an MJPEG stream, say) has no deadline of its own.
        False if the deadline had passed (the socket was shut down, what was read is cut short)."""
        with self._lock:
            if request in self._cut:
                return False
            if request in self._open:
                self._open[request] = None
            return True

    def _refuse(self, request) -> None:
        self.refused_total += 1
        if not self._full_logged:
            self._full_logged = True
            log.warning(
                "http:%s: %d connections open (the limit): refusing more with 503",
                self.server_address[1],
                self.max_clients,
            )
        try:
            request.setblocking(False)
            request.send(_BUSY)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            self.shutdown_request(request)
            return
        # closed a moment later, once the client's request has been read: closing a socket with
        # unread bytes sends a reset, which could destroy the 503 before the client reads it
        self._refused.append((request, time.monotonic() + 1.0))
        while len(self._refused) > 4 * self.max_clients + 16:
            self.shutdown_request(self._refused.pop(0)[0])

    def service_actions(self) -> None:
        now = time.monotonic()
        with self._lock:  # checked and cut under the lock: a request that arrives meanwhile is not cut
            late = [s for s, deadline in self._open.items() if deadline is not None and deadline < now]
            self._cut.update(late)
            for s in late:  # wakes the handler's blocked read: it sees end of stream and ends
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        keep = []
        for s, close_at in self._refused:
            eof = _drain(s)
            if eof or close_at < now:
                self.shutdown_request(s)
            else:
                keep.append((s, close_at))
        self._refused = keep

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            still = list(self._open)
        for s in still:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for s, _ in self._refused:
            self.shutdown_request(s)
        self._refused = []


def _drain(s: socket.socket) -> bool:
    """Read whatever a non-blocking socket has; True at end of stream (or on error)."""
    try:
        while True:
            if not s.recv(65536):
                return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class WebServer:
    """The preview/metrics server on its own threads (without `frames`: /stats and /metrics only).

    `max_clients`: connections open at once (MJPEG viewers included), 503 past it;
    `read_timeout_s`: how long a request may take to arrive, and the longest any read or
    write may stall."""

    def __init__(
        self,
        host: str,
        port: int,
        stats: StatsProvider,
        *,
        frames: Frames | None = None,
        token: str | None = None,
        title: str = "streamseg",
        max_clients: int = DEFAULT_MAX_CLIENTS,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        if not read_timeout_s > 0:
            raise ValueError(f"read_timeout_s must be positive, got {read_timeout_s}")
        self.host, self.port = host or "127.0.0.1", port
        self.max_clients, self.read_timeout_s = max_clients, read_timeout_s
        self.stats = stats
        self.frames = frames
        self.token = token
        self.title = title
        self._httpd: _BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        handler = _make_handler(self)
        self._httpd = _BoundedHTTPServer(  # OSError: port taken / bad host
            (self.host, self.port), handler, max_clients=self.max_clients, read_timeout_s=self.read_timeout_s
        )
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25}, name=f"http:{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self.frames is not None:
            self.frames.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def open_connections(self) -> int:
        """Connections open right now (each has its own thread)."""
        return self._httpd.open_connections if self._httpd is not None else 0

    @property
    def refused(self) -> int:
        """Connections refused with 503 so far (the cap was reached)."""
        return self._httpd.refused_total if self._httpd is not None else 0

    def authorized(self, path_query: str, headers) -> bool:
        if not self.token:
            return True
        given = parse_qs(urlsplit(path_query).query).get("token", [""])[0]
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = given or auth[7:]
        return hmac.compare_digest(given.encode(), self.token.encode())


def _make_handler(server: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "streamseg"
        timeout = server.read_timeout_s  # per read/write on the socket (StreamRequestHandler.setup)

        def log_message(self, fmt, *args) -> None:  # quiet: no access log on stderr
            log.debug("http %s", fmt % args)

        def handle_one_request(self) -> None:
            self.server.arm(self.connection)  # the request must arrive whole in time
            super().handle_one_request()

        def parse_request(self) -> bool:
            ok = super().parse_request()
            if ok and not self.server.disarm(self.connection):
                self.close_connection = True  # cut off at its deadline: the headers read are incomplete
                return False
            return ok

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if not server.authorized(self.path, self.headers):
                self.close_connection = True  # a stranger keeps no connection open
                self._send(401, b"401: this preview needs its token (?token=...)\n", "text/plain; charset=utf-8")
                return
            path = urlsplit(self.path).path
            routes: dict[str, Callable[[], None]] = {
                "/stats": self._stats,
                "/metrics": self._metrics,
            }
            if server.frames is not None:
                routes["/"] = self._page
            if path in routes:
                routes[path]()
            elif server.frames is not None and path.startswith("/stream/") and path.endswith(".mjpg"):
                self._mjpeg(path[len("/stream/") : -len(".mjpg")])
            elif server.frames is not None and path.startswith("/snapshot/") and path.endswith(".jpg"):
                self._snapshot(path[len("/snapshot/") : -len(".jpg")])
            else:
                self._send(404, b"404: not here\n", "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stats(self) -> None:
            body = json.dumps(server.stats.live_stats()).encode()
            self._send(200, body, "application/json")

        def _metrics(self) -> None:
            self._send(200, prometheus_text(server.stats.metric_samples()), "text/plain; version=0.0.4; charset=utf-8")

        def _page(self) -> None:
            token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            self._send(
                200, preview_page(server.title, server.frames.streams(), token).encode(), "text/html; charset=utf-8"
            )

        def _snapshot(self, sid: str) -> None:
            got = server.frames.jpeg(sid)
            if got is None:
                self._send(404, b"404: no such stream (yet)\n", "text/plain; charset=utf-8")
            else:
                self._send(200, got[1], "image/jpeg")

        def _mjpeg(self, sid: str) -> None:
            frames = server.frames
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            seq = 0
            with frames.cond:
                frames.watchers += 1
            try:
                while not frames.closed and not self._peer_gone():
                    if not frames.wait_newer(sid, seq, timeout=0.5):
                        continue
                    got = frames.jpeg(sid)
                    if got is None:
                        continue
                    seq, jpg = got
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpg)).encode()
                        + b"\r\n\r\n"
                        + jpg
                        + b"\r\n"
                    )
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the browser went away, or stopped reading for longer than the timeout
            finally:
                with frames.cond:
                    frames.watchers -= 1

        def _peer_gone(self) -> bool:
            """Has the viewer closed its end? (Checked between frames, so a viewer that leaves
            while the stream is paused frees its thread and its place under the cap.)"""
            try:
                poller = select.poll()  # not select.select: that fails past fd 1023
                poller.register(self.connection, select.POLLIN)
                if not poller.poll(0):
                    return False
                return self.connection.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):
                return True

    return Handler


def preview_page(title: str, streams: list[str], token: str) -> str:
    q = f"?token={html.escape(token)}" if token else ""
    tiles = "\n".join(
        f'<figure id="tile-{html.escape(s)}"><img src="/stream/{html.escape(s)}.mjpg{q}" alt="{html.escape(s)}">'
        f"<figcaption>{html.escape(s)}</figcaption></figure>"
        for s in streams
    )
    return _PAGE.replace("{{TITLE}}", html.escape(title)).replace("{{TILES}}", tiles).replace("{{Q}}", q)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{TITLE}} preview</title>
<style>
 body { margin: 0; font: 14px system-ui, sans-serif; background: #16181c; color: #e8e8e8; display: flex; }
 main { flex: 1; display: flex; flex-wrap: wrap; gap: 8px; padding: 8px; align-content: flex-start; }
 figure { margin: 0; } figure img { max-width: min(100%, 960px); display: block; background: #000; }
 figcaption { color: #9aa; padding: 2px 0; }
 aside { width: 300px; padding: 10px 14px; background: #1f2228; min-height: 100vh; box-sizing: border-box; }
 h1 { font-size: 16px; margin: 0 0 8px; } h2 { font-size: 13px; color: #9aa; margin: 14px 0 4px; }
 table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
 td, th { padding: 2px 4px; text-align: right; } td:first-child, th:first-child { text-align: left; }
 .big { font-size: 22px; font-weight: 600; } .bar { height: 6px; background: #6a8cff; }
</style></head>
<body><main id="tiles">
{{TILES}}
</main>
<aside><h1>{{TITLE}}</h1>
<div><span class="big" id="fps">-</span> fps</div>
<div>end-to-end p50 <b id="p50">-</b> ms, p99 <b id="p99">-</b> ms</div>
<div>frames in <b id="fin">-</b>, out <b id="fout">-</b>, dropped <b id="fdrop">-</b></div>
<h2>per stage (recent frames), ms</h2>
<table id="stages"><thead><tr><th>stage</th><th>p50</th><th>p99</th><th></th></tr></thead><tbody></tbody></table>
<h2>streams</h2><table id="streams"><tbody></tbody></table>
<h2>events (newest first)</h2><table id="events"><tbody></tbody></table>
<div id="updated" style="color:#778;margin-top:10px"></div>
</aside>
<script>
const q = "{{Q}}";
const fmt = v => v == null ? "-" : (v >= 100 ? v.toFixed(0) : v.toFixed(1));
const esc = v => String(v ?? "-").replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function tick() {
  try {
    const s = await (await fetch("/stats" + q, {cache: "no-store"})).json();
    document.getElementById("fps").textContent = fmt(s.fps);
    document.getElementById("p50").textContent = fmt(s.end_to_end.p50);
    document.getElementById("p99").textContent = fmt(s.end_to_end.p99);
    document.getElementById("fin").textContent = s.frames.in;
    document.getElementById("fout").textContent = s.frames.out;
    document.getElementById("fdrop").textContent = Object.values(s.frames.dropped).reduce((a, b) => a + b, 0);
    const max = Math.max(1, ...Object.values(s.stages).map(x => x.p50 || 0));
    document.querySelector("#stages tbody").innerHTML = Object.entries(s.stages).map(([k, v]) =>
      `<tr><td>${k}</td><td>${fmt(v.p50)}</td><td>${fmt(v.p99)}</td>` +
      `<td style="width:80px"><div class="bar" style="width:${Math.round(80 * (v.p50 || 0) / max)}px"></div></td></tr>`).join("");
    for (const k of Object.keys(s.streams)) {  // streams that started after the page loaded
      if (document.getElementById("tile-" + k)) continue;
      const f = document.createElement("figure"); f.id = "tile-" + k;
      const img = document.createElement("img"); img.src = "/stream/" + encodeURIComponent(k) + ".mjpg" + q; img.alt = k;
      const c = document.createElement("figcaption"); c.textContent = k;
      f.append(img, c); document.getElementById("tiles").append(f);
    }
    document.querySelector("#streams tbody").innerHTML = Object.entries(s.streams).map(([k, v]) =>
      `<tr><td>${k}</td><td>${v.frames_out} out</td><td>${v.reconnects} reconnects</td></tr>`).join("");
    document.querySelector("#events tbody").innerHTML = (s.events || []).slice().reverse().map(e =>
      `<tr><td>${esc(e.pts_s.toFixed(2))} s</td><td>${esc(e.type)}</td><td>${esc(e.label)} #${esc(e.track_id)}</td>` +
      `<td>${esc(e.zone)}</td></tr>`).join("");
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) { document.getElementById("updated").textContent = "no answer: " + e; }
}
tick(); setInterval(tick, 500);
</script></body></html>
"""
