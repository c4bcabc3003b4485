"""GStreamer sinks: H.264 files that survive a crash, an RTSP server, RTP/UDP, a display window.

Every sink encodes with x264 (settings from the sink's config) from an appsrc fed with
I420 frames converted by OpenCV. One encoder pipeline per stream.

- files: `.mp4` is written as fragmented MP4 (a fragment a second by default) and `.mkv`
  as Matroska whose clusters reach the disk as they grow, so a file cut short by a crash
  or kill -9 plays up to its last fragment (MP4) or frame (MKV); a normal end or
  SIGINT/SIGTERM finalizes it (EOS): MKV then gets its duration and seek index (Cues);
- `rtsp://HOST:PORT/name`: a GstRtspServer serving the overlaid stream to any number of
  clients (HOST defaults to 127.0.0.1; `rtsp://0.0.0.0:8554/x` listens on all interfaces);
  one encoder per stream; each client's stream starts with a keyframe made for it;
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

from streamseg import gst
from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.base import Sink, StreamInfo, check_writable

log = logging.getLogger("streamseg")

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")


@dataclass
class EncoderSettings:
    bitrate_kbps: int = 4000
    preset: str = "veryfast"
    keyframe_interval: int = 30  # frames; also the longest a fresh RTSP client waits for a picture
    fragment_ms: int = 1000  # fragmented MP4: what a crash can cost at most

    def x264(self) -> str:
        return (
            f"x264enc tune=zerolatency speed-preset={self.preset} bitrate={int(self.bitrate_kbps)} "
            f"key-int-max={int(self.keyframe_interval)} bframes=0"
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
            err = gst.pop_error(self.pipeline)
            raise SinkError(f"{self.name}: {err or 'the encoder pipeline stopped'}")
        err = gst.pop_error(self.pipeline)
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
        return f'{s.x264()} ! h264parse ! {mux} ! filesink buffer-mode=unbuffered location="{loc}"'

    def describe(self) -> dict:
        return {**super().describe(), "files": {k: str(v) for k, v in self.paths.items()}, "encoder": "x264"}


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

    def tail(self, stream_id: str) -> str:
        # SPS/PPS before each IDR access unit: h264parse's job, not the payloader's (module docstring)
        return (
            f"{self.settings.x264()} ! h264parse config-interval=-1 ! rtph264pay pt=96 ! "
            f"udpsink host={self.host} port={self.port} sync=false async=false"
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


@dataclass
class _RtspClient:
    """One RTSP client's own media: encoded frames go to its appsrc from a keyframe on."""

    appsrc: object
    live: bool = False  # False until its first keyframe
    base: int | None = None  # its running time minus the encoder's pts, fixed at its first frame
    last: int = -1


class RtspServerSink(Sink):
    """Serves each stream at rtsp://HOST:PORT/name (several streams: /name/<stream id>).

    One x264 encoder per stream, whatever the number of clients; each client gets its own
    light media (appsrc ! h264parse ! rtph264pay) fed with whole encoded frames from a
    keyframe made for it when it connects. The server holds a live media's first frame
    until the client plays, so the client's first packet starts that keyframe. (A media
    shared by all clients hands one that joins mid-frame the tail of a frame: FFmpeg then
    decodes a keyframe half grey.)
    """

    name = "rtsp-server"
    lossless = False

    def __init__(self, uri: str, host: str, port: int, mount: str, settings: EncoderSettings | None = None) -> None:
        super().__init__(uri)
        self.host, self.port, self.mount = host or "127.0.0.1", port, "/" + mount.strip("/")
        self.settings = settings or EncoderSettings()
        self._server = None
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()
        self._clients: dict[str, list[_RtspClient]] = {}  # stream id -> its clients' media
        self._enc: dict[str, _Encoder] = {}
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
            factory.set_launch(
                "( appsrc name=src is-live=true format=time do-timestamp=false block=false max-bytes=0 "
                "caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! rtph264pay name=pay0 pt=96 )"
            )
            factory.set_shared(False)  # one media per client: cheap, no encoder in it
            factory.connect("media-configure", self._on_media, sid)
            mounts.add_factory(path, factory)
            self.urls[sid] = f"rtsp://{self.host}:{self.port}{path}"
            self._clients[sid] = []
        if self._server.attach(self._context) == 0:
            raise SinkError(f"{self.uri}: the RTSP server could not attach to {self.host}:{self.port}")
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()
        for url in self.urls.values():
            log.info("serving %s", url)

    def _tail(self) -> str:
        # SPS/PPS before each IDR access unit (module docstring); whole frames to Python
        return (
            f"{self.settings.x264()} ! h264parse config-interval=-1 ! "
            "video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out emit-signals=true sync=false"
        )

    def _find(self, appsrc) -> _RtspClient | None:
        for clients in self._clients.values():
            for c in clients:
                if c.appsrc == appsrc:
                    return c
        return None

    def _on_media(self, factory, media, sid: str) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        with self._lock:
            self._clients[sid].append(_RtspClient(appsrc))
        media.connect("unprepared", self._on_gone, sid, appsrc)
        self._force_keyframe(sid)  # its stream starts with one (made now, not up to keyframe_interval later)

    def _on_gone(self, media, sid: str, appsrc) -> None:
        with self._lock:
            self._clients[sid] = [c for c in self._clients.get(sid, []) if c.appsrc != appsrc]

    def _force_keyframe(self, sid: str) -> None:
        Gst, GstVideo = gst.require()
        enc = self._enc.get(sid)
        if enc is not None:  # (without one, the first frame it encodes is a keyframe)
            none = Gst.CLOCK_TIME_NONE
            enc.src.send_event(GstVideo.video_event_new_downstream_force_key_unit(none, none, none, True, 0))

    @staticmethod
    def _running_time(appsrc) -> int | None:
        """The appsrc's running time now (ns), or None while its media is not playing yet."""
        clock = appsrc.get_clock()
        if clock is None:
            return None
        return clock.get_time() - appsrc.get_base_time()

    def _on_encoded(self, appsink, sid: str):
        """An encoded frame (the encoder's thread): to every client that may have it."""
        Gst, _ = gst.require()
        sample = appsink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        buf = sample.get_buffer()
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self._lock:
            clients = list(self._clients.get(sid, []))
        for c in clients:
            if not (c.live or key):
                continue
            rt = self._running_time(c.appsrc)
            if rt is None:
                continue  # its media is still starting
            if c.base is None:
                c.base = rt - buf.pts
            out = buf.copy()
            out.pts = out.dts = max(buf.pts + c.base, c.last + 1)
            c.last = out.pts
            c.live = True
            c.appsrc.emit("push-buffer", out)
        return Gst.FlowReturn.OK

    @property
    def clients(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._clients.values())

    def write_impl(self, frame: Frame) -> None:
        img = frame.overlay_bgr if frame.overlay_bgr is not None else frame.image_bgr
        sid = frame.stream_id
        with self._lock:
            watched = bool(self._clients.get(sid))
        if not watched:
            return  # nobody is watching: nothing to encode
        enc = self._enc.get(sid)
        if enc is None:  # the first frame fixes the size; later ones are resized to it
            info = self._streams.get(sid)
            fps = info.fps if info and info.fps else 25.0
            enc = _Encoder(self._tail(), img.shape[1], img.shape[0], fps, True, self.uri)
            enc.pipeline.get_by_name("out").connect("new-sample", self._on_encoded, sid)
            self._enc[sid] = enc
        enc.push(img, frame.pts)  # stamped with the frame's pts, sent when it is due

    def close(self) -> None:
        for enc in self._enc.values():
            try:
                enc.finish()  # its last frames reach the clients
            except Exception as e:
                log.error("%s: finishing failed: %s", self.uri, e)
        self._enc.clear()
        if self._loop is not None:
            with self._lock:
                for clients in self._clients.values():
                    for c in clients:
                        c.appsrc.emit("end-of-stream")
            self._loop.quit()
            self._thread.join(timeout=5)
            self._loop = None
        self._server = None

    def describe(self) -> dict:
        return {**super().describe(), "urls": dict(self.urls)}
