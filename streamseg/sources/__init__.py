"""Sources by URI: a registry of schemes, each a module with a Source subclass.

`open_source(uri)` returns an unopened Source; enter it (or call open()) to open it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs

from streamseg.errors import SourceError
from streamseg.sources.base import Source, SourceFrame


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


SCHEMES: dict[str, Callable[[str, str, dict[str, str]], Source]] = {
    "file": _file,
    "images": _images,
    "synthetic": _synthetic,
    "v4l2": _v4l2,
    "rtsp": _rtsp,
    "rtspt": _rtsp,
    "rtp": _rtp,
    "gst": _gst,
}


def register(scheme: str, factory: Callable[[str, str, dict[str, str]], Source]) -> None:
    SCHEMES[scheme] = factory


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


_SECRET_PARAMS = re.compile(r"(?i)([?&](?:token|password|passwd|pass|secret|key|api_key|access_token)=)[^&#]*")


def redact(uri: str) -> str:
    """The URI with any password, and any token/password/key query value, replaced by ***,
    for logs, reports and pages."""
    if "://" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    netloc, sep, path = rest.partition("/")
    if "?" in netloc and not sep:  # http://host:port?token=... (no path)
        netloc, q, query = netloc.partition("?")
        path, sep = q + query, ""
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    return _SECRET_PARAMS.sub(r"\1***", f"{scheme}://{netloc}{sep}{path}")


def split_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """(scheme, path-or-rest, query). A bare path is a file; /dev/videoN is a camera."""
    if "://" not in uri:
        if uri.startswith("/dev/video"):
            return "v4l2", uri, {}
        return "file", uri, {}
    if uri.lower().startswith(("gst://", "rtsp://", "rtspt://")):
        scheme, rest = uri.split("://", 1)
        return scheme.lower(), rest, {}  # their query strings belong to them
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    query: dict[str, str] = {}
    if "?" in rest:
        rest, qs = rest.split("?", 1)
        query = {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}
    return scheme, rest, query


def open_source(uri: str, options=None) -> Source:
    """An unopened Source for `uri`; `options` is the source's SourceConfig (decoder, transport, reconnect, ...)."""
    scheme, rest, query = split_uri(uri)
    factory = SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise SourceError(
            f"unknown source scheme {scheme + '://'!r} in {redact(uri)!r} (known: {known}, or a file path)"
        )
    if not rest:
        raise SourceError(f"{redact(uri)}: nothing after {scheme}://")
    return factory(uri, rest, query, options)


__all__ = ["SCHEMES", "Source", "SourceFrame", "open_source", "redact", "register", "split_uri"]
