"""Sinks by URI: `null://`, `*.jsonl`, video files (`*.mp4`, `*.mkv`, `*.avi`, `*.mov`)."""

from __future__ import annotations

from pathlib import Path

from streamseg.errors import SinkError
from streamseg.sinks.base import Sink, StreamInfo


def open_sink(uri: str) -> Sink:
    """An unopened sink for `uri`; call open(streams) before writing."""
    scheme, _, rest = uri.partition("://") if "://" in uri else ("", "", uri)
    scheme = scheme.lower()
    if scheme == "null":
        from streamseg.sinks.null import NullSink

        return NullSink(uri)
    if scheme in ("", "file"):
        suffix = Path(rest).suffix.lower()
        if suffix == ".jsonl":
            from streamseg.sinks.jsonl import JsonlSink

            return JsonlSink(uri, rest)
        from streamseg.sinks.video import FOURCC, VideoFileSink

        if suffix in FOURCC:
            return VideoFileSink(uri, rest)
        raise SinkError(f"cannot tell what to write to {uri!r}: file sinks end in .jsonl or {', '.join(FOURCC)}")
    raise SinkError(
        f"unknown sink scheme {scheme + '://'!r} in {uri!r} (known: null://, file paths ending in .mp4, .mkv, .avi, .mov, .jsonl)"
    )


__all__ = ["Sink", "StreamInfo", "open_sink"]
