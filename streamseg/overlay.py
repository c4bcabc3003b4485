"""Draw segmentation results onto frames: semantic groups, instances, and a HUD.

Everything is whole-array OpenCV/numpy work; the only Python loops are over groups
and instances, never pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from streamseg.config import OverlayConfig
from streamseg.frames import Frame

# RGB, close to the Cityscapes palette where Cityscapes has the class.
DEFAULT_COLORS_RGB: dict[str, tuple[int, int, int]] = {
    "road": (128, 64, 128),
    "sidewalk": (244, 35, 232),
    "lane": (250, 230, 40),
    "building": (70, 70, 70),
    "vegetation": (107, 142, 35),
    "sky": (70, 130, 180),
    "car": (0, 60, 230),
    "person": (220, 20, 60),
    "cycle": (119, 11, 32),
}
_FALLBACK_RGB = [(0, 200, 200), (255, 150, 0), (150, 255, 0), (200, 0, 255), (0, 255, 150)]

FONT = cv2.FONT_HERSHEY_SIMPLEX


class Overlay:
    """`draw(frame)` returns the frame's image with its results drawn on it."""

    def __init__(self, cfg: OverlayConfig | None = None, *, stats: Callable[[], dict] | None = None) -> None:
        self.cfg = cfg or OverlayConfig()
        self.stats = stats  # returns {"fps":, "p50":, "p99":} for the HUD
        self._colors: dict[str, tuple[int, int, int]] = {}
        self._solids: dict[str | None, np.ndarray] = {}

    def color_bgr(self, group: str | None) -> tuple[int, int, int]:
        key = group or "?"
        if key not in self._colors:
            rgb = self.cfg.colors.get(key) or DEFAULT_COLORS_RGB.get(key)
            if rgb is None:
                rgb = _FALLBACK_RGB[len(self._colors) % len(_FALLBACK_RGB)]
            self._colors[key] = (int(rgb[2]), int(rgb[1]), int(rgb[0]))
        return self._colors[key]

    def alpha(self, group: str | None) -> float:
        return self.cfg.alpha.get(group or "", self.cfg.default_alpha)

    def draw(self, frame: Frame) -> np.ndarray:
        out = frame.image_bgr.copy()
        if not self.cfg.enabled:
            return out
        if frame.semantic is not None:
            self._draw_semantic(out, frame.semantic.group_map, frame.semantic.group_names)
        if frame.instances is not None and len(frame.instances):
            self._draw_instances(out, frame.instances)
        if self.cfg.hud:
            self._draw_hud(out, frame)
        return out

    def _solid(self, group: str | None, shape: tuple[int, ...]) -> np.ndarray:
        """A cached image filled with the group's colour, at least `shape` big (sliced to fit)."""
        img = self._solids.get(group)
        if img is None or img.shape[0] < shape[0] or img.shape[1] < shape[1]:
            h = max(shape[0], img.shape[0] if img is not None else 0)
            w = max(shape[1], img.shape[1] if img is not None else 0)
            img = np.empty((h, w, 3), np.uint8)
            img[...] = self.color_bgr(group)
            self._solids[group] = img
        return img[: shape[0], : shape[1]]

    def _blend(self, region: np.ndarray, mask: np.ndarray, group: str | None) -> None:
        """Alpha-blend the group's colour into `region` where `mask` is set (in place, also on a sub-view)."""
        a = self.alpha(group)
        blended = cv2.addWeighted(region, 1 - a, self._solid(group, region.shape), a, 0)
        cv2.copyTo(blended, mask.view(np.uint8), region)

    def _draw_semantic(self, out: np.ndarray, group_map: np.ndarray, names: list[str]) -> None:
        present = np.flatnonzero(np.bincount(group_map.ravel(), minlength=len(names) + 1)[1:]) + 1
        for gi in present:
            mask = group_map == gi
            rows = np.flatnonzero(mask.any(axis=1))
            y0, y1 = rows[0], rows[-1] + 1  # blend only the band of rows the group touches
            self._blend(out[y0:y1], mask[y0:y1], names[gi - 1])

    def _draw_instances(self, out: np.ndarray, inst) -> None:
        h, w = out.shape[:2]
        for k in range(len(inst)):
            x0, y0, x1, y1 = inst.xyxy[k]
            bx0, by0 = max(int(x0), 0), max(int(y0), 0)
            bx1, by1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            if bx1 <= bx0 or by1 <= by0:
                continue
            group = inst.groups[k]
            color = self.color_bgr(group)
            region = out[by0:by1, bx0:bx1]
            mask = inst.masks[k, by0:by1, bx0:bx1]
            if mask.any():
                self._blend(region, mask, group)
                if self.cfg.contours:
                    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                    cv2.drawContours(region, contours, -1, color, 2, cv2.LINE_AA)
            elif self.cfg.contours:
                cv2.rectangle(out, (bx0, by0), (bx1 - 1, by1 - 1), color, 1, cv2.LINE_AA)
            if self.cfg.labels:
                text = f"{inst.labels[k]} {inst.score[k]:.2f}"
                if inst.track_id is not None:
                    text += f" #{inst.track_id[k]}"
                _label(out, text, (bx0, by0), color)

    def _draw_hud(self, out: np.ndarray, frame: Frame) -> None:
        s = self.stats() if self.stats else {}
        parts = [f"{frame.stream_id} #{frame.seq}"]
        if s.get("fps"):
            parts.append(f"{s['fps']:.1f} fps")
        if s.get("p50") is not None:
            parts.append(f"e2e p50 {s['p50']:.0f} ms  p99 {s['p99']:.0f} ms")
        _label(out, "  |  ".join(parts), (8, 8), (40, 40, 40), scale=0.55, below=True)


def _label(out: np.ndarray, text: str, xy: tuple[int, int], color, *, scale: float = 0.45, below: bool = False) -> None:
    """Text on a filled box: above the point (instance labels) or below it (HUD)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = xy
    h, w = out.shape[:2]
    x = min(max(x, 0), max(w - tw - 4, 0))
    top = y if below else y - th - base - 4
    if top < 0:
        top = y if not below else 0
    cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 4), color, -1)
    lum = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if lum > 140 else (255, 255, 255)
    cv2.putText(out, text, (x + 2, top + th + 2), FONT, scale, ink, 1, cv2.LINE_AA)
