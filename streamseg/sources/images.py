"""`images://dir[?fps=N]`: the image files of a folder, in sorted order."""

from __future__ import annotations

from pathlib import Path

import cv2

from streamseg.errors import SourceError
from streamseg.sources.base import Source, SourceFrame
from streamseg.sources.file import as_bgr

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImagesSource(Source):
    scheme = "images"

    def __init__(self, uri: str, path: str, fps: float = 10.0) -> None:
        super().__init__(uri)
        self.path = Path(path)
        self.fps = fps
        self._files: list[Path] = []
        self._i = 0
        self._seq = 0

    def open(self) -> None:
        p = self.path
        if not p.is_dir():
            raise SourceError(f"images://{p}: no such folder")
        self._files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not self._files:
            raise SourceError(f"images://{p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.frame_count = len(self._files)

    def read(self) -> SourceFrame | None:
        while self._i < len(self._files):
            f = self._files[self._i]
            self._i += 1
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None or img.size == 0:
                self.decode_errors += 1
                continue
            if self.size_wh is None:
                self.size_wh = (img.shape[1], img.shape[0])
            pts = self._seq / self.fps
            self._seq += 1
            return SourceFrame(as_bgr(img), pts)
        return None
