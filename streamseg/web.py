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
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import threading
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


class WebServer:
    """The preview/metrics server on its own threads. `page=False`: /stats and /metrics only."""

    def __init__(
        self,
        host: str,
        port: int,
        stats: StatsProvider,
        *,
        frames: Frames | None = None,
        token: str | None = None,
        title: str = "streamseg",
    ) -> None:
        self.host, self.port = host or "127.0.0.1", port
        self.stats = stats
        self.frames = frames
        self.token = token
        self.title = title
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)  # OSError: port taken / bad host
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"http:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.frames is not None:
            self.frames.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

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

        def log_message(self, fmt, *args) -> None:  # quiet: no access log on stderr
            log.debug("http %s", fmt % args)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if not server.authorized(self.path, self.headers):
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
                while not frames.closed:
                    if not frames.wait_newer(sid, seq, timeout=1.0):
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
                pass  # the browser went away
            finally:
                with frames.cond:
                    frames.watchers -= 1

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
<div id="updated" style="color:#778;margin-top:10px"></div>
</aside>
<script>
const q = "{{Q}}";
const fmt = v => v == null ? "-" : (v >= 100 ? v.toFixed(0) : v.toFixed(1));
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
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) { document.getElementById("updated").textContent = "no answer: " + e; }
}
tick(); setInterval(tick, 500);
</script></body></html>
"""
