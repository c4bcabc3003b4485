"""Video files decoded by OpenCV's FFmpeg backend."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from streamseg.errors import SourceError
from streamseg.sources.base import Source, SourceFrame

# After this many failed reads in a row short of the known frame count, the rest of
# the file is taken as undecodable.
MAX_CONSECUTIVE_FAILURES = 25


def as_bgr(img: np.ndarray) -> np.ndarray:
    """Grey, BGRA and 16-bit images -> 8-bit BGR."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


class FileSource(Source):
    scheme = "file"

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri)
        self.path = Path(path)
        self._cap = None
        self._first: SourceFrame | None = None
        self._index = 0

    def open(self) -> None:
        p = self.path
        if not p.exists():
            raise SourceError(f"no such file: {p}")
        if p.is_dir():
            raise SourceError(f"{p} is a folder; use images://{p} for a folder of images")
        if not os.access(p, os.R_OK):
            raise SourceError(f"cannot read {p}: permission denied")
        if p.stat().st_size == 0:
            raise SourceError(f"{p} is empty (0 bytes)")
        cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise SourceError(f"{p} is not a video OpenCV/FFmpeg can open")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None
        first = self._read_one()
        if first is None:
            cap.release()
            raise SourceError(f"{p} has no decodable video frames")
        self._first = first
        self.size_wh = (first.image_bgr.shape[1], first.image_bgr.shape[0])

    def _read_one(self) -> SourceFrame | None:
        failures = 0
        while True:
            ok, img = self._cap.read()
            if ok and img is not None and img.size:
                break
            # A failed read is the end, unless the container says more frames follow.
            pos = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
            if self.frame_count is None or max(pos, self._index) >= self.frame_count - 1:
                return None
            failures += 1
            self.decode_errors += 1
            self._index += 1
            if failures >= MAX_CONSECUTIVE_FAILURES:
                return None
        pts_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        pts = pts_ms / 1000.0 if pts_ms > 0 or self._index == 0 else self._index / (self.fps or 25.0)
        self._index += 1
        return SourceFrame(as_bgr(img), pts)

    def read(self) -> SourceFrame | None:
        if self._first is not None:
            f, self._first = self._first, None
            return f
        return self._read_one()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
