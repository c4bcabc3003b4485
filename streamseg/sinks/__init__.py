"""Sinks by URI: a registry of schemes (streamseg.uris.Registry), the same shape as the sources'.

Video files, `*.jsonl`, `events:PATH` (analytics events; also `*.events.jsonl`), `rtsp://` (served), `rtp://`, `http://` (browser preview), `display://`,
`null://`. `open_sink(uri)` returns an unopened sink; call open(streams) before writing. A new
sink is a factory `(uri, rest, query, options) -> Sink` given to `register(scheme, factory)`.
"""

from __future__ import annotations

from pathlib import Path

from streamseg.errors import SinkError
from streamseg.sinks.base import Sink, StreamInfo
from streamseg.uris import Registry, redact

FILE_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".jsonl")  # what a file sink's name may end in


def _settings(opts):
    from streamseg.sinks.gst import EncoderSettings

    if opts is None:
        return EncoderSettings()
    return EncoderSettings(opts.bitrate_kbps, opts.preset, opts.keyframe_interval, opts.fragment_ms, opts.size_wh)


def _host_port(uri: str, rest: str, default_port: int | None) -> tuple[str, int, str]:
    netloc, _, path = rest.partition("/")
    host, _, port = netloc.rpartition(":")
    if not port and default_port:
        host, port = netloc, str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SinkError(f"{redact(uri)}: expected HOST:PORT")
    return host.strip("[]"), int(port), path


def _http(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    from streamseg.sinks.http import PreviewSink

    host, port, _ = _host_port(uri, rest, 8080)
    token = query.get("token") or (getattr(opts, "token", None) if opts else None)
    return PreviewSink(
        uri,
        host,
        port,
        token,
        max_clients=getattr(opts, "max_clients", None),
        read_timeout_s=getattr(opts, "read_timeout_s", None),
    )


def _rtsp(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    from streamseg.sinks.gst import RtspServerSink

    host, port, path = _host_port(uri, rest, 8554)
    if not path:
        raise SinkError(f"{redact(uri)}: give the stream a name: rtsp://:8554/NAME")
    return RtspServerSink(uri, host, port, path, _settings(opts))


def _rtp(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    from streamseg.sinks.gst import RtpSink

    host, port, _ = _host_port(uri, rest, None)
    if not host:
        raise SinkError(f"{redact(uri)}: an RTP sink needs a destination host: rtp://HOST:PORT")
    return RtpSink(uri, host, port, _settings(opts))


def _display(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    from streamseg.sinks.gst import DisplaySink

    return DisplaySink(uri, _settings(opts))


def _null(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    from streamseg.sinks.null import NullSink

    return NullSink(uri)


def _events(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    from streamseg.sinks.events import EventsSink

    path = rest[len("events:") :] if rest.lower().startswith("events:") else rest
    if not path:
        raise SinkError(f"{uri}: give the events file: events:out/events.jsonl")
    return EventsSink(uri, path)


def _file(uri: str, rest: str, query: dict[str, str], opts=None) -> Sink:
    suffix = Path(rest).suffix.lower()
    if rest.lower().endswith(".events.jsonl"):  # the suffix rule: analytics events, not frames
        return _events(uri, rest, query, opts)
    if suffix == ".jsonl":
        from streamseg.sinks.jsonl import JsonlSink

        return JsonlSink(uri, rest)
    from streamseg.sinks.video import FOURCC, VideoFileSink

    encoder = opts.encoder if opts is not None else "auto"
    if suffix in (".mp4", ".mkv") and encoder != "opencv":
        from streamseg import gst

        if encoder == "gstreamer" or gst.available():
            from streamseg.sinks.gst import GstFileSink

            return GstFileSink(uri, rest, _settings(opts))
    if suffix in FOURCC:
        return VideoFileSink(uri, rest)
    raise SinkError(f"cannot tell what to write to {uri!r}: file sinks end in .jsonl or {', '.join(FOURCC)}")


SINKS: Registry[Sink] = Registry(
    "sink",
    SinkError,
    lambda path: "events" if path.lower().startswith("events:") else "file",  # events:PATH, as events://PATH
    lambda: f"or a file path ending in {', '.join(FILE_SUFFIXES)}",
)
SINKS.register("file", _file, raw=True, empty_ok=True)  # a file name may hold a "?"
SINKS.register("http", _http)
SINKS.register("rtsp", _rtsp)
SINKS.register("rtp", _rtp)
SINKS.register("display", _display, empty_ok=True)
SINKS.register("null", _null, empty_ok=True)
SINKS.register("events", _events, raw=True)  # analytics events as JSONL (also: events:PATH, *.events.jsonl)
register = SINKS.register


def open_sink(uri: str, options=None) -> Sink:
    """An unopened sink for `uri` (`options`: its SinkConfig); call open(streams) before writing."""
    sink = SINKS.open(uri, options)
    if options is not None and getattr(options, "size", None) and not sink.encodes:
        raise SinkError(
            f"{redact(uri)}: size is for the H.264 sinks (GStreamer files, rtsp://, rtp://, display://); "
            f"a {sink.name} sink does not encode"
        )
    return sink


def sink_file(uri: str) -> Path | None:
    """The file a sink URI writes (before per-stream naming), or None for network and screen sinks."""
    scheme, rest, _ = SINKS.split(uri)
    if scheme == "events" and rest.lower().startswith("events:"):
        rest = rest[len("events:") :]
    return Path(rest) if scheme in ("file", "events") and rest else None


__all__ = ["SINKS", "Sink", "StreamInfo", "open_sink", "redact", "register", "sink_file"]
