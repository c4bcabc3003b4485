"""GStreamer through PyGObject: one place that imports it, initializes it and reads its errors.

GStreamer is optional (the `gst` extra plus the system packages listed in INSTALL_HINT);
`available()` says whether it can be used, `require()` returns the modules or raises a
one-line UserError saying how to install it.
"""

from __future__ import annotations

import functools
import importlib.util

from streamseg.errors import UserError

INSTALL_HINT = (
    "apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 "
    "gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 libgirepository1.0-dev libcairo2-dev pkg-config "
    "&& pip install 'streamseg[gst]'"
)


class GstUnavailable(UserError):
    pass


def _keep_gcc_unwinder() -> None:
    """Load libgcc_s globally before GStreamer brings in libunwind.

    Debian's libgstreamer links libunwind, whose _Unwind_Resume then interposes the
    GCC unwinder for every C++ library loaded later: OpenVINO and ONNX Runtime abort
    (std::terminate) on their first internal exception instead of catching it. With
    libgcc_s first in the global scope, symbol lookups keep finding the GCC unwinder.
    """
    import ctypes

    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass  # not a glibc/GCC system: nothing to protect


@functools.lru_cache(maxsize=1)
def _load():
    _keep_gcc_unwinder()
    if importlib.util.find_spec("gi") is None:
        raise GstUnavailable(f"GStreamer support needs PyGObject and GStreamer: {INSTALL_HINT}")
    import gi

    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        gi.require_version("GstVideo", "1.0")
        from gi.repository import Gst, GstApp, GstVideo  # noqa: F401
    except (ValueError, ImportError) as e:
        raise GstUnavailable(f"GStreamer's introspection data is missing ({e}): {INSTALL_HINT}") from None
    Gst.init(None)
    return Gst, GstVideo


def available() -> bool:
    try:
        _load()
    except GstUnavailable:
        return False
    return True


def require():
    """(Gst, GstVideo), initialized; GstUnavailable (a UserError) when they cannot be had."""
    return _load()


def rtsp_server_module():
    require()
    import gi

    try:
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GstRtspServer
    except (ValueError, ImportError):
        raise GstUnavailable(f"the RTSP server needs gir1.2-gst-rtsp-server-1.0: {INSTALL_HINT}") from None
    return GstRtspServer


def has_element(name: str) -> bool:
    Gst, _ = require()
    return Gst.ElementFactory.find(name) is not None


def pop_error(pipeline, warnings: list[str] | None = None) -> str | None:
    """The first ERROR (or None) waiting on a pipeline's bus, as one line; the WARNINGs before
    it go to `warnings` (as "element: message: details") when given, else are dropped."""
    Gst, _ = require()
    bus = pipeline.get_bus()
    while True:
        msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
        if msg is None:
            return None
        if msg.type == Gst.MessageType.WARNING and warnings is not None:
            warn, debug = msg.parse_warning()
            reason = (debug or "").rsplit("reason: ", 1)[-1] if debug and "reason: " in debug else ""
            src = msg.src.get_name() if msg.src else "?"
            warnings.append(f"{src}: {warn.message}" + (f": {reason}" if reason else ""))
        if msg.type == Gst.MessageType.ERROR:
            err, _debug = msg.parse_error()
            src = msg.src.get_name() if msg.src else "?"
            return f"{src}: {err.message}"


def parse_launch(description: str):
    """Gst.parse_launch with a UserError naming the problem when the description does not parse."""
    Gst, _ = require()
    try:
        return Gst.parse_launch(description)
    except Exception as e:  # GLib.Error
        raise UserError(f"GStreamer pipeline does not parse: {getattr(e, 'message', e)}: {description}") from None
