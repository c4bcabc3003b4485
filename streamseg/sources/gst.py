"""GStreamer sources: files, V4L2 cameras, RTSP, RTP/H.264 and `gst://` pipelines.

Frames are pulled from an appsink as I420 and converted to BGR as FFmpeg converts them
(`sources/yuv.py`, the colour matrix and range read from the caps), so this decoder and
`decoder: opencv` give the same pixels. A live frame's capture time is its
buffer timestamp on the pipeline clock; GStreamer's system clock and perf_counter_ns()
are both CLOCK_MONOTONIC, so end-to-end latency includes what happened before decode
(network, jitter buffer, camera driver).

Live sources reconnect: an error, an end of stream, or no frame for `stall_timeout_s`
tears the pipeline down and builds it again after an exponential backoff, as often as
`attempts` allows (default: forever). Outages are counted and timed.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamseg import codecs, gst
from streamseg.errors import SourceError, UserError
from streamseg.sources.base import Source, SourceFrame
from streamseg.sources.yuv import DEFAULT_MATRIX, i420_to_bgr

log = logging.getLogger("streamseg")

SINK_NAME = "streamseg_appsink"
APPSINK_CAPS = "video/x-raw,format=(string){I420,BGR,BGRx,RGB,GRAY8}"
HW_DECODERS = ("nvh264dec", "nvv4l2decoder", "vah264dec", "nvh265dec", "vah265dec")


@dataclass
class LivePolicy:
    """How a live source survives outages."""

    stall_timeout_s: float = 5.0  # no frame for this long = an outage
    initial_delay_s: float = 0.5  # first wait before reopening
    max_delay_s: float = 10.0  # the wait doubles up to this
    attempts: int | None = None  # reopen attempts per outage; None = forever
    open_timeout_s: float = 10.0  # first frame must come within this at start-up


def prefer_hardware_decoders() -> list[str]:
    """Raise the rank of any hardware H.264/H.265 decoder present, so decodebin picks it
    (the H.264 one streamseg.codecs chooses first)."""
    Gst, _ = gst.require()
    found = []
    chosen = codecs.decoder()
    for name in (*(codecs.decoder_rank_boost(chosen) if chosen else []), *HW_DECODERS):
        if name in found:
            continue
        factory = Gst.ElementFactory.find(name)
        if factory is not None:
            factory.set_rank(Gst.Rank.PRIMARY + 100)
            found.append(name)
    return found


def _size_decoder_threads(_bin, _sub, element) -> None:
    """A libav decoder that decodebin plugs gets the CPU budget's codec threads, not one per core."""
    factory = element.get_factory()
    # video decoders only: libav's audio decoders (avdec_aac of a dashcam's sound) have no threads
    if factory is not None and factory.get_name().startswith("avdec_") and element.find_property("max-threads"):
        element.set_property("max-threads", codecs.threads())


def colorimetry(caps) -> tuple[str, bool]:
    """(matrix, full range) of raw video caps, as FFmpeg would take them: a stream that names
    no colorimetry is BT.601 limited range (GstVideoInfo would guess BT.709 from 720 lines up)."""
    _, GstVideo = gst.require()
    text = caps.get_structure(0).get_string("colorimetry") if caps is not None and caps.get_size() else None
    c = GstVideo.VideoColorimetry()
    if not text or not c.from_string(text):
        return DEFAULT_MATRIX, False
    M = GstVideo.VideoColorMatrix
    names = {M.BT601: "bt601", M.BT709: "bt709", M.FCC: "fcc", M.SMPTE240M: "smpte240m", M.BT2020: "bt2020"}
    return names.get(c.matrix, DEFAULT_MATRIX), c.range == getattr(GstVideo.VideoColorRange, "0_255")


def to_bgr(data: np.ndarray, fmt: str, w: int, h: int, strides, offsets, colour=(DEFAULT_MATRIX, False)) -> np.ndarray:
    """One mapped video buffer -> H x W x 3 BGR uint8 (a copy, the buffer can be released).
    `colour` is (matrix, full range) of YUV input, see `colorimetry()`."""

    def plane(i: int, rows: int, cols: int, channels: int = 1) -> np.ndarray:
        p = data[offsets[i] : offsets[i] + strides[i] * rows].reshape(rows, strides[i])
        return p[:, : cols * channels].reshape(rows, cols, channels) if channels > 1 else p[:, :cols]

    if fmt == "I420":
        cw, ch = (w + 1) // 2, (h + 1) // 2
        return i420_to_bgr(plane(0, h, w), plane(1, ch, cw), plane(2, ch, cw), *colour)
    if fmt == "BGR":
        return plane(0, h, w, 3).copy()
    if fmt == "RGB":
        return cv2.cvtColor(plane(0, h, w, 3), cv2.COLOR_RGB2BGR)
    if fmt == "BGRx":
        return plane(0, h, w, 4)[..., :3].copy()
    if fmt == "GRAY8":
        return cv2.cvtColor(np.ascontiguousarray(plane(0, h, w)), cv2.COLOR_GRAY2BGR)
    raise SourceError(f"unsupported raw video format {fmt}")


class GstSource(Source):
    """A GStreamer pipeline whose last element is an appsink named SINK_NAME (or any appsink)."""

    scheme = "gst"

    def __init__(
        self,
        uri: str,
        description: str,
        *,
        live: bool | None = None,
        policy: LivePolicy | None = None,
        name: str = "",
        fps_hint: float | None = None,
    ) -> None:
        super().__init__(uri)
        self.description = description
        self.live_hint = live
        self.live = bool(live)
        self.policy = policy or LivePolicy()
        self.name = name or uri
        self.fps = fps_hint
        self.reconnects = 0
        self.downtime_s = 0.0
        self.error: str | None = None
        self._pipeline = None
        self._appsink = None
        self._first_pts: int | None = None
        self._pending: SourceFrame | None = None
        self._eos = False
        self._cancel = threading.Event()
        self._frames = 0
        self._caps = None
        self._colour = (DEFAULT_MATRIX, False)
        self.full_range_hint: bool | None = None  # what the container says, where GStreamer misreads it

    # lifecycle --------------------------------------------------------------------
    def open(self) -> None:
        reason = self._open_first()
        if reason is not None:
            if not self.live:
                raise SourceError(f"{self.name} is not a video GStreamer can decode ({reason})")
            raise SourceError(f"{self.redacted}: cannot open: {reason}")

    def _open_first(self) -> str | None:
        """Start the pipeline and take its first frame: None when it came, else why not (with
        `self.error` set when the pipeline reported an error rather than staying silent)."""
        self.error, self._eos = None, False
        self._start()
        first = self._pull(self.policy.open_timeout_s if self.live else 30.0)
        if first is None:
            self.error = self.error or gst.pop_error(self._pipeline)
            reason = self.error or (
                "the stream ended before its first frame"
                if self._eos
                else f"no frame within {self.policy.open_timeout_s:g} s"
            )
            self._stop()
            return reason
        self._pending = first
        self.size_wh = (first.image_bgr.shape[1], first.image_bgr.shape[0])
        if not self.live and self.fps:
            Gst, _ = gst.require()
            ok, duration = self._pipeline.query_duration(Gst.Format.TIME)
            if ok and duration > 0:
                self.frame_count = round(duration / 1e9 * self.fps)  # for progress bars; the file decides
        return None

    def close(self) -> None:
        self._cancel.set()
        self._stop()

    def cancel(self) -> None:
        """Make a blocked read() return None soon (pipeline stop)."""
        self._cancel.set()

    @property
    def redacted(self) -> str:
        from streamseg.uris import redact

        return redact(self.uri)

    def _start(self) -> None:
        Gst, _ = gst.require()
        pipeline = gst.parse_launch(self.description)
        appsink = pipeline.get_by_name(SINK_NAME) if isinstance(pipeline, Gst.Bin) else None
        if appsink is None and isinstance(pipeline, Gst.Bin):
            sinks = []
            it = pipeline.iterate_sinks()
            while True:
                ok, elem = it.next()
                if ok != Gst.IteratorResult.OK:
                    break
                if elem.get_factory() is not None and elem.get_factory().get_name() == "appsink":
                    sinks.append(elem)
            appsink = sinks[0] if len(sinks) == 1 else None
        if appsink is None:
            raise UserError(f"{self.redacted}: the pipeline must end in exactly one appsink")
        if appsink.get_property("caps") is None:
            appsink.set_property("caps", Gst.Caps.from_string(APPSINK_CAPS))
        appsink.set_property("sync", False)
        appsink.set_property("emit-signals", False)
        appsink.set_property("max-buffers", 2 if self.live else 8)
        appsink.set_property("drop", bool(self.live))
        if codecs.threads() and isinstance(pipeline, Gst.Bin):
            pipeline.connect("deep-element-added", _size_decoder_threads)
        ret = pipeline.set_state(Gst.State.PAUSED)  # a live pipeline answers NO_PREROLL here
        if self.live_hint is None:
            self.live = ret == Gst.StateChangeReturn.NO_PREROLL
        if ret != Gst.StateChangeReturn.FAILURE:
            ret = pipeline.set_state(Gst.State.PLAYING)
        if ret == Gst.StateChangeReturn.FAILURE:
            reason = gst.pop_error(pipeline) or "state change failed"
            pipeline.set_state(Gst.State.NULL)
            raise SourceError(f"{self.redacted}: cannot start: {reason}")
        self._pipeline, self._appsink = pipeline, appsink
        self._eos = False

    def _stop(self) -> None:
        if self._pipeline is not None:
            Gst, _ = gst.require()
            self._pipeline.set_state(Gst.State.NULL)
            self._pipeline = self._appsink = None

    # frames ------------------------------------------------------------------------
    def _pull(self, timeout_s: float) -> SourceFrame | None:
        """The next frame within timeout_s, or None (end of stream, error, stall or cancel)."""
        Gst, GstVideo = gst.require()
        deadline = time.monotonic() + timeout_s
        while not self._cancel.is_set():
            sample = self._appsink.try_pull_sample(int(min(0.1, max(deadline - time.monotonic(), 0.001)) * Gst.SECOND))
            if sample is not None:
                return self._convert(sample, GstVideo, Gst)
            if self._appsink.is_eos():
                self._eos = True
                return None
            err = gst.pop_error(self._pipeline)
            if err is not None:
                self.error = err
                return None
            if time.monotonic() >= deadline:
                return None
        return None

    def _convert(self, sample, GstVideo, Gst) -> SourceFrame:
        buf = sample.get_buffer()
        caps = sample.get_caps()
        if self._caps is None or not caps.is_equal(self._caps):
            self._caps, self._colour = caps, colorimetry(caps)
            if self.full_range_hint is not None:
                self._colour = (self._colour[0], self.full_range_hint)
        info = GstVideo.VideoInfo.new_from_caps(caps)
        fmt = info.finfo.name
        if self.fps is None and info.fps_n > 0 and info.fps_d > 0:
            self.fps = info.fps_n / info.fps_d
        ok, mapinfo = buf.map(Gst.MapFlags.READ)
        if not ok:
            raise SourceError(f"{self.redacted}: cannot map a buffer")
        try:
            data = np.frombuffer(mapinfo.data, np.uint8)
            img = to_bgr(data, fmt, info.width, info.height, list(info.stride), list(info.offset), self._colour)
        finally:
            buf.unmap(mapinfo)
        pts = buf.pts if buf.pts != Gst.CLOCK_TIME_NONE else None
        capture_ns = None
        if pts is not None:
            if self._first_pts is None:
                self._first_pts = pts
            self._count_lost(pts, info)
            if self.live:
                capture_ns = self._pipeline.get_base_time() + pts  # running time -> monotonic clock
            pts_s = (pts - self._first_pts) / 1e9
        else:
            pts_s = self._frames / (self.fps or 25.0)
        self._frames += 1
        return SourceFrame(img, pts_s, capture_ns=capture_ns)

    def _count_lost(self, pts: int, info) -> None:
        """A recording at a constant frame rate whose timestamps jump: the decoder dropped the
        frames in between (libav drops what it cannot conceal, without a word on the bus).
        Count them as decode errors. Variable-rate files (framerate 0/1) are left alone."""
        last, self._last_pts = getattr(self, "_last_pts", None), pts
        if self.live or last is None or info.fps_n <= 0 or info.fps_d <= 0 or pts <= last:
            return
        frame_ns = 1e9 * info.fps_d / info.fps_n
        missing = round((pts - last) / frame_ns) - 1
        if missing > 0:
            self.decode_errors += missing

    def read(self) -> SourceFrame | None:
        if self._pending is not None:
            f, self._pending = self._pending, None
            return f
        if self._pipeline is None:
            return None
        timeout = self.policy.stall_timeout_s if self.live else 60.0
        frame = self._pull(timeout)
        if frame is not None or self._cancel.is_set():
            return frame
        if not self.live:
            if self.error:
                raise SourceError(f"{self.redacted}: {self.error}")
            return None  # end of the file
        return self._reconnect()

    def _reconnect(self) -> SourceFrame | None:
        """Outage: reopen with exponential backoff until a frame comes (or attempts run out)."""
        why = self.error or ("end of stream" if self._eos else f"no frame for {self.policy.stall_timeout_s:g} s")
        t0 = time.monotonic()
        self.reconnects += 1
        log.warning("%s: %s; reconnecting", self.redacted, why)
        delay = self.policy.initial_delay_s
        attempt = 0
        try:
            while not self._cancel.is_set():
                self._stop()
                if self._cancel.wait(delay):
                    return None
                attempt += 1
                self.error = None
                try:
                    self._start()
                    frame = self._pull(self.policy.open_timeout_s)
                except UserError as e:
                    frame, self.error = None, str(e)
                if frame is not None:
                    log.warning("%s: back after %.1f s (attempt %d)", self.redacted, time.monotonic() - t0, attempt)
                    return frame
                if self.policy.attempts is not None and attempt >= self.policy.attempts:
                    self.error = f"gave up after {attempt} reconnect attempts ({self.error or why})"
                    log.error("%s: %s", self.redacted, self.error)
                    self._stop()
                    return None
                delay = min(delay * 2, self.policy.max_delay_s)
            return None
        finally:
            self.downtime_s += time.monotonic() - t0

    def describe(self) -> dict:
        d = super().describe()
        d["uri"] = self.redacted
        chosen = codecs.decoder()
        d.update(
            {
                "decoder": "gstreamer",
                "codec": chosen.describe() if chosen else None,
                "reconnects": self.reconnects,
                "downtime_s": round(self.downtime_s, 3),
            }
        )
        if self.error:
            d["error"] = self.error
        return d


# descriptions per URI kind ---------------------------------------------------------------
def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


TAIL = f"videoconvert ! appsink name={SINK_NAME}"


def file_source(uri: str, path: str) -> GstSource:
    p = Path(path)
    if not p.exists():
        raise SourceError(f"no such file: {p}")
    if p.is_dir():
        raise SourceError(f"{p} is a folder; use images://{p} for a folder of images")
    if p.stat().st_size == 0:
        raise SourceError(f"{p} is empty (0 bytes)")
    prefer_hardware_decoders()
    desc = f"filesrc location={_quote(str(p))} ! decodebin ! {TAIL}"
    src = GstSource(uri, desc, live=False, name=str(p))
    src.full_range_hint = mp4_full_range(p)
    return src


def mp4_full_range(path: Path) -> bool | None:
    """The full_range_flag of an MP4/MOV's `colr` nclx box, or None (no such box, not MP4).
    GStreamer 1.22's MP4 demuxer reads that flag from the wrong byte (a full-range file comes out
    as limited range in its caps), while FFmpeg reads it right."""
    try:
        with open(path, "rb") as f:
            first = True
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return None
                size, kind = struct.unpack(">I4s", header)
                skip = 8
                if size == 1:
                    size, skip = struct.unpack(">Q", f.read(8))[0], 16
                if first and kind not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin"):
                    return None  # not ISO-BMFF / QuickTime
                first = False
                if kind == b"moov":
                    body = f.read(min(size - skip if size else 1 << 26, 1 << 26))
                    at = body.find(b"colrnclx")
                    return bool(body[at + 14] >> 7) if 0 <= at and at + 14 < len(body) else None
                if size < skip:  # 0: the box runs to the end of the file; less: malformed
                    return None
                f.seek(size - skip, 1)
    except (OSError, struct.error):
        return None


def v4l2_source(uri: str, device: str, policy: LivePolicy | None = None) -> GstSource:
    if not Path(device).exists():
        raise SourceError(f"camera device {device} does not exist")
    desc = f"v4l2src device={_quote(device)} ! decodebin ! {TAIL}"
    return GstSource(uri, desc, live=True, policy=policy)


class RtspSource(GstSource):
    """rtspsrc over one lower transport at a time, as players do: the configured one first and,
    when the server refuses it (VLC's own server serves RTP over UDP only; some cameras and
    firewalls allow TCP only), the other. The one that worked is logged, kept for reconnects
    and reported (`transport`)."""

    scheme = "rtsp"

    def __init__(
        self, uri: str, transports: list[str], latency_ms: int = 100, policy: LivePolicy | None = None
    ) -> None:
        super().__init__(uri, "", live=True, policy=policy)
        self.transports = transports
        self.latency_ms = int(latency_ms)
        self.delivery_ms = float(self.latency_ms)
        self.transport = transports[0]
        self.description = self._description(self.transport)

    def _description(self, transport: str) -> str:
        # rtspsrc takes the URI with its credentials; only the redacted form is ever shown
        return (
            f"rtspsrc name=rtspsrc location={_quote(self.uri)} protocols={transport} latency={self.latency_ms} "
            f"drop-on-latency=true ! decodebin ! {TAIL}"
        )

    def open(self) -> None:
        failed: list[tuple[str, str]] = []
        for transport in self.transports:
            if failed and self._cancel.wait(min(self.policy.initial_delay_s, 1.0)):
                break  # a server that just refused a session may answer 503 for a moment
            self.transport, self.description = transport, self._description(transport)
            try:
                reason = self._open_first()
            except SourceError as e:
                reason, self.error = str(e).removeprefix(f"{self.redacted}: "), str(e)
            if reason is None:
                why = "; ".join(f"{t.upper()} failed: {r}" for t, r in failed)
                log.info("%s: RTP over %s%s", self.redacted, transport.upper(), f" ({why})" if why else "")
                return
            failed.append((transport, reason))
            if self.error is None:
                break  # silence, not a refusal: the other transport would only wait as long again
        if len(failed) > 1 and len({r for _, r in failed}) == 1:
            tried = " nor ".join(f"transport: {t}" for t, _ in failed) + f" ({failed[0][1]})"
        else:
            tried = " nor ".join(f"transport: {t} ({r})" for t, r in failed)
        raise SourceError(f"{self.redacted}: cannot open with {tried}")

    def describe(self) -> dict:
        d = super().describe()
        d["transport"] = self.transport
        return d


def rtsp_source(uri: str, transport: str = "tcp", latency_ms: int = 100, policy: LivePolicy | None = None) -> GstSource:
    """`transport` (tcp, udp, or auto = tcp) is tried first, the other one when the server refuses it;
    rtspt:// is RTSP over TCP only."""
    first = {"auto": "tcp", "tcp": "tcp", "udp": "udp"}.get(transport)
    if first is None:
        raise SourceError(f"{uri}: transport must be tcp, udp or auto (tcp first), not {transport!r}")
    if uri.lower().startswith("rtspt://"):
        if first == "udp":
            raise SourceError(f"{uri}: rtspt:// is RTSP over TCP; transport: udp contradicts it (use rtsp://)")
        return RtspSource(uri, ["tcp"], latency_ms, policy)
    transports = [first, "udp" if first == "tcp" else "tcp"]
    return RtspSource(uri, transports, latency_ms, policy)


def rtp_source(uri: str, host: str, port: int, latency_ms: int = 50, policy: LivePolicy | None = None) -> GstSource:
    # rtp://@:PORT is the user asking to receive on every interface (RTP senders push to us)
    address = host if host not in ("", "@", "0.0.0.0") else "0.0.0.0"  # nosec B104
    caps = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"
    desc = (
        f"udpsrc address={address} port={port} caps={_quote(caps)} ! rtpjitterbuffer latency={int(latency_ms)} "
        f"! rtph264depay ! h264parse ! decodebin ! {TAIL}"
    )
    src = GstSource(uri, desc, live=True, policy=policy)
    src.delivery_ms = float(latency_ms)  # the jitter buffer holds each frame this long
    return src


def pipeline_source(uri: str, description: str, policy: LivePolicy | None = None) -> GstSource:
    if "appsink" not in description:
        raise SourceError(f"{uri}: a gst:// pipeline must end in appsink")
    return GstSource(uri, description, live=None, policy=policy)
