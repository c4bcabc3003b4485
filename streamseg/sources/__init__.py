"""Sources by URI: a registry of schemes, each a module with a Source subclass.

`open_source(uri)` returns an unopened Source; enter it (or call open()) to open it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from streamseg.errors import SourceError
from streamseg.sources.base import Source, SourceFrame


def _file(uri: str, rest: str, query: dict[str, str]) -> Source:
    from streamseg.sources.file import FileSource

    return FileSource(uri, rest)


def _images(uri: str, rest: str, query: dict[str, str]) -> Source:
    from streamseg.sources.images import ImagesSource

    fps = _float(query, "fps", 10.0, uri)
    unknown = set(query) - {"fps", "labels", "label_map"}
    if unknown:
        raise SourceError(f"{uri}: unknown parameter(s) {', '.join(sorted(unknown))} (known: fps, labels, label_map)")
    return ImagesSource(uri, rest, fps=fps, labels=query.get("labels"), label_map=query.get("label_map"))


def _synthetic(uri: str, rest: str, query: dict[str, str]) -> Source:
    from streamseg.sources.synthetic import SyntheticSource

    return SyntheticSource.from_uri(uri, rest, query)


SCHEMES: dict[str, Callable[[str, str, dict[str, str]], Source]] = {
    "file": _file,
    "images": _images,
    "synthetic": _synthetic,
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


def split_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """(scheme, path-or-rest, query). A bare path is a file."""
    if "://" not in uri:
        return "file", uri, {}
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    query: dict[str, str] = {}
    if "?" in rest:
        rest, qs = rest.split("?", 1)
        query = {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}
    return scheme, rest, query


def open_source(uri: str) -> Source:
    scheme, rest, query = split_uri(uri)
    factory = SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(SCHEMES))
        raise SourceError(f"unknown source scheme {scheme + '://'!r} in {uri!r} (known: {known}, or a file path)")
    if not rest:
        raise SourceError(f"{uri}: nothing after {scheme}://")
    return factory(uri, rest, query)


__all__ = ["SCHEMES", "Source", "SourceFrame", "open_source", "register", "split_uri"]
