"""Sources by URI: a registry of schemes (streamseg.uris.Registry), each made by a Source subclass.

`open_source(uri)` returns an unopened Source; enter it (or call open()) to open it. A new
source is a factory `(uri, rest, query, options) -> Source` given to `register(scheme, factory)`.
"""

from __future__ import annotations

from streamseg.errors import SourceError
from streamseg.sources.base import Source, SourceFrame
from streamseg.uris import Registry, redact


def _policy(opts):
    from streamseg.sources.gst import LivePolicy

    if opts is None:
        return LivePolicy()
    r = opts.reconnect
    return LivePolicy(opts.stall_timeout_s, r.initial_delay_s, r.max_delay_s, r.attempts, opts.open_timeout_s)


def _file(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg import gst

    decoder = opts.decoder if opts is not None else "auto"
    if decoder == "gstreamer" or (decoder == "auto" and gst.available()):
        from streamseg.sources.gst import file_source

        return file_source(uri, rest)
    from streamseg.sources.file import FileSource

    return FileSource(uri, rest)


def _v4l2(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg.sources.gst import v4l2_source

    return v4l2_source(uri, rest if rest.startswith("/") else "/" + rest, _policy(opts))


def _rtsp(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg.sources.gst import rtsp_source

    transport = opts.transport if opts is not None else "tcp"
    latency = opts.latency_ms if opts is not None else 100
    return rtsp_source(uri, transport, latency, _policy(opts))


def _rtp(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg.sources.gst import rtp_source

    host, _, port = rest.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SourceError(f"{uri}: expected rtp://@:PORT or rtp://ADDRESS:PORT")
    return rtp_source(uri, host, int(port), opts.latency_ms if opts is not None else 50, _policy(opts))


def _gst(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg.sources.gst import pipeline_source

    return pipeline_source(uri, uri.split("://", 1)[1], _policy(opts))


def _images(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg.sources.images import ImagesSource

    fps = _float(query, "fps", 10.0, uri)
    unknown = set(query) - {"fps", "labels", "label_map"}
    if unknown:
        raise SourceError(f"{uri}: unknown parameter(s) {', '.join(sorted(unknown))} (known: fps, labels, label_map)")
    return ImagesSource(uri, rest, fps=fps, labels=query.get("labels"), label_map=query.get("label_map"))


def _synthetic(uri: str, rest: str, query: dict[str, str], opts=None) -> Source:
    from streamseg.sources.synthetic import SyntheticSource

    return SyntheticSource.from_uri(uri, rest, query)


def _bare(path: str) -> str:
    return "v4l2" if path.startswith("/dev/video") else "file"


SOURCES: Registry[Source] = Registry("source", SourceError, _bare, lambda: "or a file path")
SOURCES.register("file", _file)
SOURCES.register("images", _images)
SOURCES.register("synthetic", _synthetic)
SOURCES.register("v4l2", _v4l2)
SOURCES.register("rtp", _rtp)
SOURCES.register("rtsp", _rtsp, raw=True)  # their query strings belong to them
SOURCES.register("rtspt", _rtsp, raw=True)
SOURCES.register("gst", _gst, raw=True)
register = SOURCES.register


def _float(query: dict[str, str], key: str, default: float, uri: str) -> float:
    if key not in query:
        return default
    try:
        v = float(query[key])
    except ValueError:
        raise SourceError(f"{uri}: {key}={query[key]!r} is not a number") from None
    if v <= 0:
        raise SourceError(f"{uri}: {key} must be positive")
    return v


def split_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """(scheme, path-or-rest, query). A bare path is a file; /dev/videoN is a camera."""
    return SOURCES.split(uri)


def open_source(uri: str, options=None) -> Source:
    """An unopened Source for `uri`; `options` is the source's SourceConfig (decoder, transport, reconnect, ...)."""
    return SOURCES.open(uri, options)


__all__ = ["SOURCES", "Source", "SourceFrame", "open_source", "redact", "register", "split_uri"]
