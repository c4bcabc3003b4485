"""`http://HOST:PORT`: the browser preview - live overlaid video of every stream, a latency
panel, `/stats` and Prometheus `/metrics` (see streamseg.web). Binds 127.0.0.1 unless a
host is given; `?token=...` (or the sink's `token` option) protects it.

`?max_clients=N` (default 32): connections open at once, MJPEG viewers included, 503 past
it; `?read_timeout_s=S` (default 10): how long a request may take to arrive, and the longest
any read or write to a client may stall (a viewer that stops reading is dropped after it)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.base import Sink, StreamInfo
from streamseg.uris import redact
from streamseg.web import DEFAULT_MAX_CLIENTS, DEFAULT_READ_TIMEOUT_S, Frames, StatsProvider, WebServer

log = logging.getLogger("streamseg")


class PreviewSink(Sink):
    lossless = False  # a slow browser must never hold the pipeline up: this sink's queue drops
    name = "http"

    OPTIONS = ("token", "max_clients", "read_timeout_s")

    def __init__(
        self,
        uri: str,
        host: str,
        port: int,
        token: str | None = None,
        *,
        max_clients: int | None = None,
        read_timeout_s: float | None = None,
    ) -> None:
        """`max_clients` / `read_timeout_s`: given here (a config's sink options) or in the
        URI's query; the URI's query wins, as its `token` does."""
        super().__init__(uri)
        self.host, self.port, self.token = host or "127.0.0.1", port, token
        query = parse_qs(urlsplit(uri).query if "://" in uri else "", keep_blank_values=True)
        unknown = sorted(set(query) - set(self.OPTIONS))
        if unknown:
            raise SinkError(  # the query not shown: a mistyped `token=` holds a secret that redact() misses
                f"{redact(uri).split('?')[0]}: unknown option {unknown[0]!r} (the preview takes {', '.join(self.OPTIONS)})"
            )
        self.max_clients = _number(uri, query, "max_clients", int, max_clients, DEFAULT_MAX_CLIENTS, 1, 100_000)
        self.read_timeout_s = _number(
            uri, query, "read_timeout_s", float, read_timeout_s, DEFAULT_READ_TIMEOUT_S, 0.05, 3600
        )
        self.provider: StatsProvider | None = None
        self.server: WebServer | None = None
        self.frames = Frames()
        self.refused = 0  # connections refused with 503 (the cap was reached), kept after close

    def attach(self, provider: StatsProvider) -> None:
        """The pipeline whose figures /stats and /metrics serve."""
        self.provider = provider

    def open(self, streams: dict[str, StreamInfo]) -> None:
        if self.provider is None:
            raise SinkError(f"{redact(self.uri)}: the preview needs a pipeline to report on")
        self.server = WebServer(
            self.host,
            self.port,
            self.provider,
            frames=self.frames,
            token=self.token,
            max_clients=self.max_clients,
            read_timeout_s=self.read_timeout_s,
        )
        try:
            self.server.start()
        except OSError as e:
            raise SinkError(
                f"{redact(self.uri)}: cannot listen on {self.host}:{self.port}: {e.strerror or e}"
            ) from None
        log.info(
            "preview at %s%s (at most %d connections, %g s read timeout)",
            self.server.url,
            " (token required)" if self.token else "",
            self.max_clients,
            self.read_timeout_s,
        )

    def write_impl(self, frame: Frame) -> None:
        self.frames.put(frame.stream_id, frame.overlay_bgr if frame.overlay_bgr is not None else frame.image_bgr)

    def close(self) -> None:
        if self.server is not None:
            self.refused = self.server.refused
            self.server.stop()
            self.server = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "url": self.server.url if self.server else None,
            "token": bool(self.token),
            "max_clients": self.max_clients,
            "read_timeout_s": self.read_timeout_s,
            "refused": self.server.refused if self.server else self.refused,
        }


def _number(uri, query, name, kind, given, default, lo, hi):
    """An option from the URI's query (else `given`, else `default`), checked to lie in [lo, hi]."""
    if name in query:
        text = query[name][-1]
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            what = "a whole number" if kind is int else "a number of seconds"
            raise SinkError(f"{redact(uri)}: {name} must be {what} from {lo:g} to {hi:g}, got {text!r}")
        return value
    return default if given is None else given
