"""Sinks by URI: video files, `*.jsonl`, `rtsp://` (served), `rtp://`, `http://` (browser preview),
`display://`, `null://`."""

from __future__ import annotations

from pathlib import Path

from streamseg.errors import SinkError
from streamseg.sinks.base import Sink, StreamInfo


def _settings(opts):
    from streamseg.sinks.gst import EncoderSettings

    if opts is None:
        return EncoderSettings()
    return EncoderSettings(opts.bitrate_kbps, opts.preset, opts.keyframe_interval, opts.fragment_ms)


def _host_port(uri: str, rest: str, default_port: int | None) -> tuple[str, int, str]:
    netloc, _, path = rest.partition("/")
    host, _, port = netloc.rpartition(":")
    if not port and default_port:
        host, port = netloc, str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SinkError(f"{uri}: expected HOST:PORT")
    return host.strip("[]"), int(port), path


def open_sink(uri: str, options=None) -> Sink:
    """An unopened sink for `uri` (`options`: its SinkConfig); call open(streams) before writing."""
    scheme, _, rest = uri.partition("://") if "://" in uri else ("", "", uri)
    scheme = scheme.lower()
    if scheme == "http":
        from urllib.parse import parse_qs

        from streamseg.sinks.http import PreviewSink

        rest, _, query = rest.partition("?")
        host, port, _ = _host_port(uri, rest, 8080)
        token = parse_qs(query).get("token", [None])[0] or (getattr(options, "token", None) if options else None)
        return PreviewSink(uri, host, port, token)
    if scheme == "rtsp":
        from streamseg.sinks.gst import RtspServerSink

        host, port, path = _host_port(uri, rest, 8554)
        if not path:
            raise SinkError(f"{uri}: give the stream a name: rtsp://:8554/NAME")
        return RtspServerSink(uri, host, port, path, _settings(options))
    if scheme == "rtp":
        from streamseg.sinks.gst import RtpSink

        host, port, _ = _host_port(uri, rest, None)
        if not host:
            raise SinkError(f"{uri}: an RTP sink needs a destination host: rtp://HOST:PORT")
        return RtpSink(uri, host, port, _settings(options))
    if scheme == "display":
        from streamseg.sinks.gst import DisplaySink

        return DisplaySink(uri, _settings(options))
    if scheme == "null":
        from streamseg.sinks.null import NullSink

        return NullSink(uri)
    if scheme in ("", "file"):
        suffix = Path(rest).suffix.lower()
        if suffix == ".jsonl":
            from streamseg.sinks.jsonl import JsonlSink

            return JsonlSink(uri, rest)
        from streamseg.sinks.video import FOURCC, VideoFileSink

        encoder = options.encoder if options is not None else "auto"
        if suffix in (".mp4", ".mkv") and encoder != "opencv":
            from streamseg import gst

            if encoder == "gstreamer" or gst.available():
                from streamseg.sinks.gst import GstFileSink

                return GstFileSink(uri, rest, _settings(options))
        if suffix in FOURCC:
            return VideoFileSink(uri, rest)
        raise SinkError(f"cannot tell what to write to {uri!r}: file sinks end in .jsonl or {', '.join(FOURCC)}")
    raise SinkError(
        f"unknown sink scheme {scheme + '://'!r} in {uri!r} (known: null://, http://, rtsp://, rtp://, display://, file paths ending in .mp4, .mkv, .avi, .mov, .jsonl)"
    )


__all__ = ["Sink", "StreamInfo", "open_sink"]
