"""GStreamer sinks: H.264 files that survive a crash, an RTSP server, RTP/UDP, a display window.

Every sink encodes with x264 (settings from the sink's config) from an appsrc fed with
I420 frames converted by OpenCV. One encoder pipeline per stream.

- files: `.mp4` is written as fragmented MP4 (a fragment a second by default) and `.mkv`
  as Matroska whose clusters reach the disk as they grow, so a file cut short by a crash
  or kill -9 plays up to its last fragment (MP4) or frame (MKV); a normal end or
  SIGINT/SIGTERM finalizes it (EOS): MKV then gets its duration and seek index (Cues);
- `rtsp://HOST:PORT/name`: a GstRtspServer serving the overlaid stream to any number of
  clients (HOST defaults to 127.0.0.1; `rtsp://0.0.0.0:8554/x` listens on all interfaces);
  each client that starts playing gets a keyframe at once;
- `rtp://HOST:PORT`: H.264 RTP over UDP (payload 96, SPS/PPS repeated each keyframe);
- `display://`: a window, when a display exists.

Timestamps: every buffer is stamped from its frame's own pts (never on arrival), so a
file keeps the source's timing and a stream plays at the source's rate however bursty
the processing; network streams and the window are also paced by those timestamps.
SPS/PPS go in front of each IDR access unit (h264parse config-interval=-1), not in front
of each IDR slice: x264's zerolatency tune cuts a frame into one slice per thread, and
rtph264pay's own config-interval puts SPS/PPS before the second slice too, which makes
FFmpeg (VLC, ffplay, OBS) split the keyframe in two and decode it corrupt. The sliced
threads themselves stay: `sliced-threads=false` also fixes it but adds ~145 ms of
encoder latency at 640x360 (frame threads).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamseg import codecs, gst
from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.base import FrameDropped, Sink, StreamInfo, check_writable

log = logging.getLogger("streamseg")

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")


@dataclass
class EncoderSettings:
    bitrate_kbps: int = 4000
    preset: str = "veryfast"
    keyframe_interval: int = 30  # frames; also the longest a fresh RTSP client waits for a picture
    fragment_ms: int = 1000  # fragmented MP4: what a crash can cost at most
    size_wh: tuple[int, int] | None = None  # encode at this size (x264's cost follows the pixels); None: the frame's

    def encoder(self) -> str:
        """The H.264 encoder's part of the pipeline: the device's (nvcodec, Jetson, VA-API) when
        present, else x264 with the CPU budget's threads (streamseg.codecs)."""
        return codecs.encoder_fragment(
            codecs.encoder(),
            bitrate_kbps=self.bitrate_kbps,
            keyframe_interval=self.keyframe_interval,
            preset=self.preset,
        )


class _Timeline:
    """Each frame's own pts (seconds) -> buffer timestamps in ns from the first frame, strictly increasing.

    Gaps stay gaps (frames dropped upstream, variable frame rates). When a source's clock
    goes back (a reconnect restarts it), or a frame has no time, the timeline continues
    one frame period later.
    `pace`: frames also leave at the time their pts says, counted from the first frame:
    write() waits for a frame that comes early. A frame more than `resync_s` late (the
    pipeline fell behind) or early (the source's clock leapt) re-anchors the timeline
    at now; timestamps never go back.
    """

    def __init__(self, fps: float, pace: bool = False, resync_s: float = 1.0) -> None:
        self.frame_ns = int(1e9 / (fps or 25.0))
        self.pace = pace
        self.resync_ns = int(resync_s * 1e9)
        self._offset: int | None = None  # buffer ns = pts ns + offset
        self._anchor = 0  # monotonic ns of buffer time 0 (pace)
        self.last: int | None = None

    def stamp(self, pts_s: float) -> int:
        pts_ns = int(round(pts_s * 1e9)) if pts_s is not None and math.isfinite(pts_s) else None
        now = time.monotonic_ns()
        if self._offset is None:
            self._offset = -(pts_ns or 0)
            self._anchor = now
        if pts_ns is None:  # a frame without a time: one frame after the last
            ns = 0 if self.last is None else self.last + self.frame_ns
        else:
            ns = pts_ns + self._offset
            if self.last is not None and ns < self.last + 1_000_000:  # back, or on top of the last
                ns = self.last + self.frame_ns
                self._offset = ns - pts_ns
        if self.pace:
            ahead = self._anchor + ns - now
            if ahead > self.resync_ns and self.last is not None and pts_ns is not None:
                # the source's clock leapt forward: continue one frame later, due now
                ns = self.last + self.frame_ns
                self._offset = ns - pts_ns
                self._anchor = now - ns
            elif ahead < -self.resync_ns:
                self._anchor = now - ns  # the pipeline fell behind: due now, the timestamps keep their gaps
            elif ahead > 1_000_000:
                time.sleep(ahead / 1e9)
        self.last = ns
        return ns


def _caps(w: int, h: int, fps: float) -> str:
    num, den = (int(round(fps * 1000)), 1000) if fps else (25, 1)
    fmt = "I420" if w % 2 == 0 and h % 2 == 0 else "BGR"
    return f"video/x-raw,format={fmt},width={w},height={h},framerate={num}/{den}"


class _Encoder:
    """One appsrc-fed pipeline; push(frame image) with a timestamp; finish() sends EOS and waits."""

    def __init__(self, tail: str, w: int, h: int, fps: float, live: bool, name: str) -> None:
        Gst, _ = gst.require()
        self.Gst = Gst
        self.w, self.h, self.fps = w, h, fps or 25.0
        self.timeline = _Timeline(self.fps, pace=live)
        self.i420 = w % 2 == 0 and h % 2 == 0
        # files block (every frame kept); a live encoder that falls behind drops its oldest queued
        # frame (4 at most queued) rather than queueing without bound
        flow = "is-live=true block=false leaky-type=downstream" if live else "is-live=false block=true"
        desc = (
            f"appsrc name=src {flow} format=time do-timestamp=false "
            f'max-bytes={w * h * 6} caps="{_caps(w, h, self.fps)}" ! videoconvert ! {tail}'
        )
        self.pipeline = gst.parse_launch(desc)
        self.src = self.pipeline.get_by_name("src")
        self.warnings: list[str] = []  # the bus's WARNINGs (udpsink: "Error sending UDP packets")
        self.n = 0
        self.name = name
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            err = gst.pop_error(self.pipeline) or "cannot start the encoder"
            self.pipeline.set_state(Gst.State.NULL)
            raise SinkError(f"{name}: {err}")

    def push(self, img_bgr: np.ndarray, pts_s: float) -> None:
        """Encode one image stamped with its frame's pts (seconds; paced when live)."""
        Gst = self.Gst
        if img_bgr.shape[1] != self.w or img_bgr.shape[0] != self.h:
            img_bgr = cv2.resize(img_bgr, (self.w, self.h), interpolation=cv2.INTER_AREA)
        data = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2YUV_I420) if self.i420 else np.ascontiguousarray(img_bgr)
        buf = Gst.Buffer.new_wrapped(data.tobytes())
        buf.pts = self.timeline.stamp(pts_s)
        buf.duration = self.timeline.frame_ns
        self.n += 1
        if self.src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
            err = gst.pop_error(self.pipeline, self.warnings)
            raise SinkError(f"{self.name}: {err or 'the encoder pipeline stopped'}")
        err = gst.pop_error(self.pipeline, self.warnings)
        if err:
            raise SinkError(f"{self.name}: {err}")

    def finish(self, timeout_s: float = 10.0) -> None:
        Gst = self.Gst
        try:
            self.src.emit("end-of-stream")
            bus = self.pipeline.get_bus()
            bus.timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR)
        finally:
            self.pipeline.set_state(Gst.State.NULL)


class _PerStream(Sink):
    encodes = True  # takes sinks[].size
    """A sink with one encoder per stream, created at the stream's first frame."""

    live = False

    def __init__(self, uri: str, settings: EncoderSettings | None = None) -> None:
        super().__init__(uri)
        self.settings = settings or EncoderSettings()
        self._enc: dict[str, _Encoder] = {}
        self._streams: dict[str, StreamInfo] = {}

    def open(self, streams: dict[str, StreamInfo]) -> None:
        gst.require()
        self._streams = streams

    def tail(self, stream_id: str) -> str:
        raise NotImplementedError

    def write_impl(self, frame: Frame) -> None:
        img = frame.overlay_bgr if frame.overlay_bgr is not None else frame.image_bgr
        size = self.settings.size_wh
        if size is not None and (img.shape[1], img.shape[0]) != size:
            # area averaging where it pays (halving or more); at 0.75 it cost 4.9 ms a 1280x720
            # frame against bilinear's 1.0, which does not alias at such a mild step
            area = size[0] * 2 <= img.shape[1]
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
        enc = self._enc.get(frame.stream_id)
        if enc is None:
            info = self._streams.get(frame.stream_id)
            fps = info.fps if info and info.fps else 25.0
            enc = _Encoder(self.tail(frame.stream_id), img.shape[1], img.shape[0], fps, self.live, self.uri)
            self._enc[frame.stream_id] = enc
        enc.push(img, frame.pts)

    def close(self) -> None:
        for enc in self._enc.values():
            try:
                enc.finish()
            except Exception as e:  # finalize the others whatever happens to one
                log.error("%s: finishing failed: %s", self.uri, e)
        self._enc.clear()


class GstFileSink(_PerStream):
    name = "h264-file"

    def __init__(self, uri: str, path: str, settings: EncoderSettings | None = None) -> None:
        super().__init__(uri, settings)
        self.path = Path(path)
        self.paths: dict[str, Path] = {}

    def open(self, streams: dict[str, StreamInfo]) -> None:
        super().open(streams)
        for sid in streams:
            p = self.path if len(streams) == 1 else self.path.with_name(f"{self.path.stem}.{sid}{self.path.suffix}")
            check_writable(p)
            self.paths[sid] = p

    def tail(self, stream_id: str) -> str:
        s = self.settings
        loc = str(self.paths[stream_id]).replace('"', '\\"')
        if self.path.suffix.lower() == ".mkv":
            # not streamable=true: at EOS matroskamux seeks back to write the duration and the
            # Cues (seek index); clusters still reach the disk as they grow, so a kill -9 keeps them
            mux = "matroskamux"
        else:
            mux = f"mp4mux fragment-duration={int(s.fragment_ms)} streamable=true"
        # unbuffered: what the muxer has written is in the file, not in our process, when a kill -9 comes
        return f'{s.encoder()} ! h264parse ! {mux} ! filesink buffer-mode=unbuffered location="{loc}"'

    def describe(self) -> dict:
        return {**super().describe(), "files": {k: str(v) for k, v in self.paths.items()}, "encoder": codecs.encoder().describe()}


class RtpSink(_PerStream):
    name = "rtp"
    lossless = False
    live = True

    def __init__(self, uri: str, host: str, port: int, settings: EncoderSettings | None = None) -> None:
        super().__init__(uri, settings)
        self.host, self.port = host, port

    def open(self, streams: dict[str, StreamInfo]) -> None:
        super().open(streams)
        if len(streams) > 1:
            raise SinkError(f"{self.uri}: one RTP destination carries one stream; give one rtp:// sink per source")
        try:  # a host that does not resolve is a mistake to name now, not a silent stream to nowhere
            socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as e:
            raise SinkError(f"{self.uri}: cannot resolve the host {self.host!r}: {getattr(e, 'strerror', None) or e}") from None

    def write_impl(self, frame: Frame) -> None:
        """A send that fails (udpsink's WARNING "Error sending UDP packets": network unreachable,
        no route) drops that frame, counted as this sink's `send_failed`; the stream goes on."""
        enc = self._enc.get(frame.stream_id)
        seen = len(enc.warnings) if enc is not None else 0
        super().write_impl(frame)
        enc = self._enc[frame.stream_id]
        failed = [w for w in enc.warnings[seen:] if "sending" in w.lower()]
        if failed:
            raise FrameDropped("send_failed", failed[-1])

    def tail(self, stream_id: str) -> str:
        # SPS/PPS before each IDR access unit: h264parse's job, not the payloader's (module docstring)
        return (
            f"{self.settings.encoder()} ! h264parse config-interval=-1 ! rtph264pay pt=96 ! "
            f"udpsink name=udp host={self.host} port={self.port} sync=false async=false"
        )


class DisplaySink(_PerStream):
    name = "display"
    lossless = False
    live = True

    def open(self, streams: dict[str, StreamInfo]) -> None:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError("display://: no display here (DISPLAY and WAYLAND_DISPLAY are unset)")
        super().open(streams)

    def tail(self, stream_id: str) -> str:
        return "autovideosink sync=false"


class RtspServerSink(Sink):
    """Serves each stream at rtsp://HOST:PORT/name (several streams: /name/<stream id>)."""

    name = "rtsp-server"
    lossless = False
    encodes = True  # takes sinks[].size

    def __init__(self, uri: str, host: str, port: int, mount: str, settings: EncoderSettings | None = None) -> None:
        super().__init__(uri)
        self.host, self.port, self.mount = host or "127.0.0.1", port, "/" + mount.strip("/")
        self.settings = settings or EncoderSettings()
        self._server = None
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()
        self._appsrcs: dict[str, list] = {}  # stream id -> appsrcs of the connected media
        self._timelines: dict[str, _Timeline] = {}
        self._base: dict[int, int] = {}  # id(appsrc) -> its running time minus our timeline at its first buffer
        self._last_rt: dict[int, int] = {}
        self._want_key: set[str] = set()  # streams whose next frame is a keyframe (a client started playing)
        self._counts: dict[str, int] = {}
        self._size: dict[str, tuple[int, int]] = {}
        self._streams: dict[str, StreamInfo] = {}
        self.urls: dict[str, str] = {}

    def open(self, streams: dict[str, StreamInfo]) -> None:
        Gst, _ = gst.require()
        GstRtspServer = gst.rtsp_server_module()
        from gi.repository import GLib

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # a clear error for a taken port
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as e:
                raise SinkError(f"{self.uri}: cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        self._streams = streams
        self._context = GLib.MainContext.new()
        self._server = GstRtspServer.RTSPServer()
        self._server.set_address(self.host)
        self._server.set_service(str(self.port))
        mounts = self._server.get_mount_points()
        for sid in streams:
            path = self.mount if len(streams) == 1 else f"{self.mount}/{sid}"
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(self._launch(sid))
            factory.set_shared(True)
            factory.connect("media-configure", self._on_media, sid)
            mounts.add_factory(path, factory)
            self.urls[sid] = f"rtsp://{self.host}:{self.port}{path}"
            self._appsrcs[sid] = []
            self._counts[sid] = 0
        self._server.connect("client-connected", self._on_client)
        if self._server.attach(self._context) == 0:
            raise SinkError(f"{self.uri}: the RTSP server could not attach to {self.host}:{self.port}")
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()
        for url in self.urls.values():
            log.info("serving %s", url)

    def _launch(self, sid: str) -> str:
        # caps are set per frame size at the first frame; until then the media waits.
        # Buffers carry their frame's own time (write_impl), not their arrival's; SPS/PPS
        # go before each IDR access unit (module docstring).
        return (
            "( appsrc name=src is-live=true format=time do-timestamp=false block=false leaky-type=downstream "
            "! videoconvert ! "
            f"{self.settings.encoder()} ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )"
        )

    def _on_client(self, server, client) -> None:
        client.connect("play-request", self._on_play)

    def _on_play(self, client, ctx) -> None:
        # a client joining a shared stream mid-GOP would decode P-frames without their
        # reference until the next keyframe (up to keyframe_interval frames): send one now.
        # Known limit of the shared media: a client whose transport starts in the middle of
        # a frame's packets gets that frame's tail; when that frame is a keyframe (a few ms
        # of every keyframe_interval; likelier when clients connect within one frame of each
        # other, each one's keyframe landing on the next one's start), FFmpeg decodes it
        # half grey once. A tried fix (one light media per client fed whole encoded frames)
        # gave clients timestamps going back at their start: not shipped.
        with self._lock:
            self._want_key.update(self._streams)

    def _on_media(self, factory, media, sid: str) -> None:
        Gst, _ = gst.require()
        appsrc = media.get_element().get_child_by_name("src")
        info = self._streams.get(sid)
        w, h = self._size.get(sid) or (info.size_wh if info and info.size_wh else (640, 480))
        appsrc.set_property("caps", Gst.Caps.from_string(_caps(w, h, info.fps if info and info.fps else 25.0)))
        appsrc.set_property("max-bytes", w * h * 6)  # 4 frames queued at most: then the oldest goes
        with self._lock:
            self._appsrcs[sid].append(appsrc)
        media.connect("unprepared", self._on_gone, sid, appsrc)

    def _on_gone(self, media, sid: str, appsrc) -> None:
        with self._lock:
            if appsrc in self._appsrcs.get(sid, []):
                self._appsrcs[sid].remove(appsrc)
            self._base.pop(id(appsrc), None)
            self._last_rt.pop(id(appsrc), None)

    def _running_time(self, appsrc) -> int | None:
        """The appsrc's running time now (ns), or None while its media is not playing yet."""
        clock = appsrc.get_clock()
        if clock is None:
            return None
        return clock.get_time() - appsrc.get_base_time()

    @property
    def clients(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._appsrcs.values())

    def write_impl(self, frame: Frame) -> None:
        Gst, GstVideo = gst.require()
        img = frame.overlay_bgr if frame.overlay_bgr is not None else frame.image_bgr
        sid = frame.stream_id
        h, w = img.shape[:2]
        first = self._size.setdefault(sid, self.settings.size_wh or (w, h))
        if (w, h) != first:
            img = cv2.resize(img, first, interpolation=cv2.INTER_AREA)
            w, h = first
        with self._lock:
            targets = list(self._appsrcs.get(sid, []))
        if not targets:
            return  # nobody is watching: nothing to encode
        data = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420) if w % 2 == 0 and h % 2 == 0 else np.ascontiguousarray(img)
        payload = data.tobytes()
        info = self._streams.get(sid)
        timeline = self._timelines.get(sid)
        if timeline is None:
            timeline = self._timelines[sid] = _Timeline(info.fps if info and info.fps else 25.0, pace=True)
        ns = timeline.stamp(frame.pts)  # waits until the frame is due
        with self._lock:
            key = sid in self._want_key
            self._want_key.discard(sid)
        for src in targets:
            rt = self._running_time(src)
            if rt is None:
                continue  # its media is still starting: its first buffer comes with the next frame
            base = self._base.setdefault(id(src), rt - ns)
            pts = max(ns + base, self._last_rt.get(id(src), -1) + 1)
            self._last_rt[id(src)] = pts
            if key:
                src.send_event(GstVideo.video_event_new_downstream_force_key_unit(pts, pts, pts, True, 0))
            buf = Gst.Buffer.new_wrapped(payload)
            buf.pts, buf.duration = pts, timeline.frame_ns
            src.emit("push-buffer", buf)

    def close(self) -> None:
        if self._loop is not None:
            with self._lock:
                for srcs in self._appsrcs.values():
                    for src in srcs:
                        src.emit("end-of-stream")
            self._loop.quit()
            self._thread.join(timeout=5)
            self._loop = None
        self._server = None

    def describe(self) -> dict:
        return {**super().describe(), "urls": dict(self.urls)}
