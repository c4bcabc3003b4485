"""Turn BGR frames into a model's input tensor, and map model coordinates back.

`ResizeTransform` records how one frame was fitted into the model input (scale and
padding), so decoders can map boxes and masks back to the frame exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ResizeTransform:
    """Frame (src) -> model input: x_in = x_src * scale_x + pad_x (same for y)."""

    src_wh: tuple[int, int]
    dst_wh: tuple[int, int]
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, src_wh: tuple[int, int], dst_wh: tuple[int, int], mode: str) -> ResizeTransform:
        sw, sh = src_wh
        dw, dh = dst_wh
        if mode == "stretch":
            return cls(src_wh, dst_wh, dw / sw, dh / sh, 0, 0)
        if mode == "letterbox":
            r = min(dw / sw, dh / sh)
            nw, nh = round(sw * r), round(sh * r)
            # like Ultralytics' LetterBox(center=True): padding split evenly
            return cls(src_wh, dst_wh, nw / sw, nh / sh, (dw - nw) // 2, (dh - nh) // 2)
        raise ValueError(f"unknown resize mode {mode!r}")

    @property
    def content_wh(self) -> tuple[int, int]:
        """Size of the resized frame inside the input (without padding)."""
        return round(self.src_wh[0] * self.scale_x), round(self.src_wh[1] * self.scale_y)

    def content_rect(self, grid_wh: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """The frame's area (x0, y0, x1, y1) in the input, or in a grid of another size over the input."""
        cw, ch = self.content_wh
        x0, y0, x1, y1 = self.pad_x, self.pad_y, self.pad_x + cw, self.pad_y + ch
        if grid_wh is None:
            return x0, y0, x1, y1
        fx, fy = grid_wh[0] / self.dst_wh[0], grid_wh[1] / self.dst_wh[1]
        return (
            int(np.floor(x0 * fx)),
            int(np.floor(y0 * fy)),
            max(int(np.ceil(x1 * fx)), int(np.floor(x0 * fx)) + 1),
            max(int(np.ceil(y1 * fy)), int(np.floor(y0 * fy)) + 1),
        )

    def to_src_xyxy(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes in input pixels -> boxes in frame pixels, clipped to the frame."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, [0, 2]] = (xyxy[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (xyxy[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.src_wh[0])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.src_wh[1])
        return out

    def to_input_xyxy(self, xyxy: np.ndarray) -> np.ndarray:
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, [0, 2]] = xyxy[:, [0, 2]] * self.scale_x + self.pad_x
        out[:, [1, 3]] = xyxy[:, [1, 3]] * self.scale_y + self.pad_y
        return out

    def apply(self, image: np.ndarray, pad_value: int, out: np.ndarray | None = None) -> np.ndarray:
        """Resize (and pad) an image into the input size; writes into `out` when given."""
        dw, dh = self.dst_wh
        cw, ch = self.content_wh
        if out is None:
            out = np.empty((dh, dw) + image.shape[2:], image.dtype)
        if (cw, ch) == (dw, dh):
            cv2.resize(image, (dw, dh), dst=out, interpolation=cv2.INTER_LINEAR)
            return out
        out[...] = pad_value
        region = out[self.pad_y : self.pad_y + ch, self.pad_x : self.pad_x + cw]
        region[...] = cv2.resize(image, (cw, ch), interpolation=cv2.INTER_LINEAR)
        return out


class Preprocessor:
    """Batch of BGR frames -> float32 tensor as the card describes (layout, colour, normalization)."""

    def __init__(
        self,
        size_wh: tuple[int, int],
        *,
        resize: str = "stretch",
        layout: str = "NCHW",
        color: str = "rgb",
        scale: float = 1 / 255,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        pad_value: int = 114,
        dtype=np.float32,
    ) -> None:
        self.size_wh = tuple(size_wh)
        self.resize = resize
        self.layout = layout
        self.color = color
        self.pad_value = pad_value
        self.dtype = dtype
        # x = (pixel * scale - mean) / std  ==  pixel * mul + add
        std_a = np.asarray(std, np.float32)
        self._mul = (scale / std_a).astype(np.float32)
        self._add = (-np.asarray(mean, np.float32) / std_a).astype(np.float32)
        self._has_offset = bool(np.any(self._add != 0))

    @classmethod
    def for_input(cls, spec) -> Preprocessor:
        """The preprocessing a card's `input:` section describes."""
        return cls(
            spec.size_wh,
            resize=spec.resize,
            layout=spec.layout,
            color=spec.color,
            scale=spec.scale,
            mean=spec.mean,
            std=spec.std,
            pad_value=spec.pad_value,
        )

    def fit(self, images_bgr: list[np.ndarray]) -> tuple[np.ndarray, list[ResizeTransform]]:
        """The frames resized/letterboxed into the input size: uint8 N x h x w x 3, still BGR."""
        w, h = self.size_wh
        buf = np.empty((len(images_bgr), h, w, 3), np.uint8)
        transforms = []
        for i, img in enumerate(images_bgr):
            t = ResizeTransform.fit((img.shape[1], img.shape[0]), (w, h), self.resize)
            t.apply(img, self.pad_value, out=buf[i])
            transforms.append(t)
        return buf, transforms

    def __call__(self, images_bgr: list[np.ndarray]) -> tuple[np.ndarray, list[ResizeTransform]]:
        w, h = self.size_wh
        n = len(images_bgr)
        buf, transforms = self.fit(images_bgr)
        if self.color == "rgb":
            buf = buf[..., ::-1]
        if self.layout == "NCHW":
            x = np.empty((n, 3, h, w), self.dtype)
            for c in range(3):
                # one channel at a time keeps the working set in cache
                np.multiply(buf[..., c], self._mul[c], out=x[:, c], casting="unsafe")
                if self._has_offset:
                    x[:, c] += self._add[c]
        else:
            x = buf.astype(self.dtype) * self._mul + self._add
        return x, transforms


# tables for resizing inside a fused graph ----------------------------------------------------
RESIZE_ROWS = 5  # index0, index1, weight0, weight1, inside (0 = letterbox padding)


def _linear_axis(ssize: int, dsize: int, out_size: int, offset: int) -> np.ndarray:
    """cv2.INTER_LINEAR's source indices and 11-bit weights along one axis (OpenCV's resizeGeneric:
    float coordinates from a double scale, weights rounded separately), placed at `offset` in a
    row of `out_size` (the letterbox canvas)."""
    t = np.zeros((RESIZE_ROWS, out_size), np.int32)
    scale = 1.0 / (dsize / ssize)
    fx = ((np.arange(dsize) + 0.5) * scale - 0.5).astype(np.float32)
    sx = np.floor(fx).astype(np.int64)
    fx = (fx - sx).astype(np.float32)
    low = sx < 0
    fx[low], sx[low] = 0, 0
    high = sx >= ssize - 1
    fx[high], sx[high] = 0, ssize - 1
    sl = slice(offset, offset + dsize)
    t[0, sl] = sx
    t[1, sl] = np.minimum(sx + 1, ssize - 1)
    t[2, sl] = np.rint((np.float32(1) - fx) * 2048)
    t[3, sl] = np.rint(fx * 2048)
    t[4, sl] = 1
    return t


def resize_tables(t: ResizeTransform) -> tuple[np.ndarray, np.ndarray]:
    """Integer tables (x: 5 x dst_w, y: 5 x dst_h) with which a graph of Gathers and integer
    arithmetic reproduces `ResizeTransform.apply` (cv2.resize INTER_LINEAR on uint8) bit for bit:
    out = ((((H0 >> 4) * b0) >> 16) + (((H1 >> 4) * b1) >> 16) + 2) >> 2 with
    H = S0 * a0 + S1 * a1, OpenCV's vectorised fixed-point path. An exact 2x downscale is
    OpenCV's area-average path instead, (sum of 4 + 2) >> 2, which the same formula gives with
    a = 16 and b = 65536."""
    return _tables_cached(t.src_wh, t.dst_wh, t.content_wh, t.pad_x, t.pad_y)


@functools.lru_cache(maxsize=64)
def _tables_cached(src_wh, dst_wh, content_wh, pad_x, pad_y) -> tuple[np.ndarray, np.ndarray]:
    (sw, sh), (dw, dh), (cw, ch) = src_wh, dst_wh, content_wh
    area = sw == 2 * cw and sh == 2 * ch
    tx = _linear_axis(sw, cw, dw, pad_x)
    ty = _linear_axis(sh, ch, dh, pad_y)
    if area:
        for tab, n, off in ((tx, cw, pad_x), (ty, ch, pad_y)):
            sl = slice(off, off + n)
            tab[0, sl] = 2 * np.arange(n)
            tab[1, sl] = 2 * np.arange(n) + 1
        tx[2:4, pad_x : pad_x + cw] = 16
        ty[2:4, pad_y : pad_y + ch] = 65536
    tx.setflags(write=False)
    ty.setflags(write=False)
    return tx, ty
