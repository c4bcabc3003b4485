"""`http://HOST:PORT`: the browser preview - live overlaid video of every stream, a latency
panel, `/stats` and Prometheus `/metrics` (see streamseg.web). Binds 127.0.0.1 unless a
host is given; `?token=...` (or the sink's `token` option) protects it."""

from __future__ import annotations

import logging

from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.base import Sink, StreamInfo
from streamseg.sources import redact
from streamseg.web import Frames, StatsProvider, WebServer

log = logging.getLogger("streamseg")


class PreviewSink(Sink):
    lossless = False  # a slow browser must never hold the pipeline up: this sink's queue drops
    name = "http"

    def __init__(self, uri: str, host: str, port: int, token: str | None = None) -> None:
        super().__init__(uri)
        self.host, self.port, self.token = host or "127.0.0.1", port, token
        self.provider: StatsProvider | None = None
        self.server: WebServer | None = None
        self.frames = Frames()

    def attach(self, provider: StatsProvider) -> None:
        """The pipeline whose figures /stats and /metrics serve."""
        self.provider = provider

    def open(self, streams: dict[str, StreamInfo]) -> None:
        if self.provider is None:
            raise SinkError(f"{redact(self.uri)}: the preview needs a pipeline to report on")
        self.server = WebServer(self.host, self.port, self.provider, frames=self.frames, token=self.token)
        try:
            self.server.start()
        except OSError as e:
            raise SinkError(
                f"{redact(self.uri)}: cannot listen on {self.host}:{self.port}: {e.strerror or e}"
            ) from None
        log.info("preview at %s%s", self.server.url, " (token required)" if self.token else "")

    def write_impl(self, frame: Frame) -> None:
        self.frames.put(frame.stream_id, frame.overlay_bgr if frame.overlay_bgr is not None else frame.image_bgr)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def describe(self) -> dict:
        return {**super().describe(), "url": self.server.url if self.server else None, "token": bool(self.token)}
