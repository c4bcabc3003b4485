"""Video files (`out.mp4`, `.mkv`, `.avi`) written by OpenCV.

One file per stream: with several streams, `out.mp4` becomes `out.<stream>.mp4`.
A stream's file is created at its first frame (its size is known then); frames of
another size are resized to it.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.base import Sink, StreamInfo, check_writable

FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class VideoFileSink(Sink):
    name = "video"

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri)
        self.path = Path(path)
        if self.path.suffix.lower() not in FOURCC:
            raise SinkError(f"{uri}: video files must end in {', '.join(FOURCC)}")
        self._writers: dict[str, cv2.VideoWriter] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._streams: dict[str, StreamInfo] = {}
        self.paths: dict[str, Path] = {}

    def open(self, streams: dict[str, StreamInfo]) -> None:
        self._streams = streams
        for sid in streams:
            p = self.path if len(streams) == 1 else self.path.with_name(f"{self.path.stem}.{sid}{self.path.suffix}")
            check_writable(p)
            self.paths[sid] = p

    def _writer(self, frame: Frame, size_wh: tuple[int, int]) -> cv2.VideoWriter:
        sid = frame.stream_id
        w = self._writers.get(sid)
        if w is None:
            path = self.paths[sid]
            fps = self._streams[sid].fps or 25.0
            w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), fps, size_wh)
            if not w.isOpened():
                raise SinkError(f"cannot write video {path}")
            self._writers[sid] = w
            self._sizes[sid] = size_wh
        return w

    def write_impl(self, frame: Frame) -> None:
        img = frame.overlay_bgr if frame.overlay_bgr is not None else frame.image_bgr
        size = (img.shape[1], img.shape[0])
        w = self._writer(frame, self._sizes.get(frame.stream_id, size))
        target = self._sizes[frame.stream_id]
        if size != target:
            img = cv2.resize(img, target, interpolation=cv2.INTER_AREA)
        w.write(img)

    def close(self) -> None:
        for w in self._writers.values():
            w.release()
        self._writers.clear()

    def describe(self) -> dict:
        return {**super().describe(), "files": {k: str(v) for k, v in self.paths.items()}}
