"""URIs: one registry shape for sources and sinks, and `redact` for showing them.

A `Registry` maps a scheme (`rtsp`, `images`, ...) to a factory
`factory(uri, rest, query, options) -> object`; `rest` is what follows `scheme://` without its
query string, `query` the parsed `?key=value` pairs (schemes registered `raw` get the whole
rest and an empty query: their query strings belong to them). A bare path has no scheme; the
registry's `bare` function names the scheme it stands for. An unknown scheme is an error that
lists the registered ones.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from streamseg.errors import UserError

T = TypeVar("T")
Factory = Callable[[str, str, dict[str, str], Any], T]

_SECRET_PARAMS = re.compile(r"(?i)([?&](?:token|password|passwd|pass|secret|key|api_key|access_token)=)[^&#]*")


# userinfo runs to the last @ of the URI (a password may hold @), which ends at a space, ! or quote
_EMBEDDED_CREDS = re.compile(r"""([a-z][a-z0-9+.-]*://[^\s:/@!"']+):[^\s!"']*@(?=[^\s@!"']*(?:[\s!"']|$))""", re.I)
_SECRET_PROPS = re.compile(
    r"""(?i)(\b(?:user-pw|password|passwd|proxy-pw|token|secret|key)\s*=\s*)("[^"]*"|'[^']*'|[^\s!"'&#]+)"""
)


def redact(uri: str) -> str:
    """The URI with any password, and any token/password/key query value, replaced by ***,
    for logs, reports and pages. A `gst://` pipeline description is searched as text: the
    URIs inside it (`location=rtsp://u:pw@cam`) and secret properties (`user-pw=...`)."""
    if uri[:6].lower() == "gst://":
        text = _EMBEDDED_CREDS.sub(r"\1:***@", uri)
        return _SECRET_PROPS.sub(r"\1***", text)  # also ?token=... inside a quoted location
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


@dataclass(frozen=True)
class _Entry(Generic[T]):
    factory: Factory
    raw: bool
    empty_ok: bool


class Registry(Generic[T]):
    """Schemes of one kind of endpoint (`source`, `sink`) and the factories that make them.

    `error` is the UserError subclass raised for a bad URI; `bare(path)` gives the scheme of a
    URI without `://`; `bare_hint` ends the list of known schemes in errors ("or a file path").
    """

    def __init__(
        self, kind: str, error: type[UserError], bare: Callable[[str], str], bare_hint: Callable[[], str]
    ) -> None:
        self.kind = kind
        self.error = error
        self.bare = bare
        self.bare_hint = bare_hint
        self._entries: dict[str, _Entry] = {}

    def register(self, scheme: str, factory: Factory, *, raw: bool = False, empty_ok: bool = False) -> None:
        """Make `scheme://...` URIs with `factory(uri, rest, query, options)`.

        `raw`: the factory parses its own query string; `empty_ok`: `scheme://` alone is valid (`null://`).
        """
        self._entries[scheme.lower()] = _Entry(factory, raw, empty_ok)

    def unregister(self, scheme: str) -> None:
        self._entries.pop(scheme.lower(), None)

    @property
    def schemes(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, scheme: str) -> bool:
        return scheme in self._entries

    def split(self, uri: str) -> tuple[str, str, dict[str, str]]:
        """(scheme, rest, query). A bare path is given whole to the scheme `bare` names."""
        if "://" not in uri:
            return self.bare(uri), uri, {}
        scheme, rest = uri.split("://", 1)
        scheme = scheme.lower()
        entry = self._entries.get(scheme)
        if entry is None or entry.raw or "?" not in rest:
            return scheme, rest, {}
        rest, qs = rest.split("?", 1)
        return scheme, rest, {k: v[-1] for k, v in parse_qs(qs, keep_blank_values=True).items()}

    def open(self, uri: str, options: Any = None) -> T:
        """The object the URI's scheme makes (unopened), or a one-line error naming the valid schemes."""
        scheme, rest, query = self.split(uri)
        entry = self._entries.get(scheme)
        if entry is None:
            known = ", ".join(f"{s}://" for s in self.schemes)
            close = difflib.get_close_matches(scheme, self.schemes, n=1)
            hint = f"did you mean {close[0] + '://'!r}? " if close else ""
            raise self.error(
                f"unknown {self.kind} scheme {scheme + '://'!r} in {redact(uri)!r} "
                f"({hint}known: {known}, {self.bare_hint()})"
            )
        if not rest and not entry.empty_ok:
            raise self.error(f"{redact(uri)}: nothing after {scheme}://")
        return entry.factory(uri, rest, query, options)
