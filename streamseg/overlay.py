"""Draw segmentation results onto frames: semantic groups, instances, a legend and a HUD.

Everything is whole-array OpenCV work; the only Python loops are over instances and
HUD items, never pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from streamseg.config import OverlayConfig
from streamseg.frames import NO_TRACK, Frame

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
UNTRACKED_BGR = (170, 170, 170)  # a detection in no track (yet): neutral grey, no ID


# one colour per pipeline stage in the HUD's latency bar (BGR)
STAGE_COLORS_BGR = {
    "decode": (180, 119, 31),
    "queue": (14, 127, 255),
    "batch_wait": (44, 160, 44),
    "preprocess": (40, 39, 214),
    "infer": (189, 103, 148),
    "postprocess": (75, 86, 140),
    "overlay": (194, 119, 227),
    "sink": (127, 127, 127),
}


def id_color_bgr(track_id: int) -> tuple[int, int, int]:
    """A bright colour of its own per track ID (golden-ratio hue steps: neighbours differ)."""
    hue = int((track_id * 0.61803398875 % 1.0) * 180)
    hsv = np.array([[[hue, 200, 255]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


CORRIDOR_BGR = (0, 128, 255)  # orange: the ego corridor's outline (lane paint is yellow)
ZONE_BGR = (255, 255, 0)  # cyan: polygon zones and lines
INTRUDER_BGR = (40, 40, 255)  # red: objects in an intrusion


class Overlay:
    """`draw(frame)` returns the frame's image with its results drawn on it.

    Semantic groups are blended in one pass: premultiplied colour and the image's
    remaining weight come from look-up tables indexed by the group map at the model's
    resolution and are upsampled bilinearly to the frame (smooth edges); the per-pixel
    work is one multiply and one add on uint8. Instances are blended inside their boxes in
    their track's colour, outlined and labelled (`car 0.91 #12`); a detection in no track
    (yet) is drawn too, grey, without a number. A legend names the groups on screen; the
    HUD shows fps, end-to-end p50/p99 (offline runs: processing p50/p99 too) and a bar of
    the recent per-stage p50 latencies.
    """

    def __init__(self, cfg: OverlayConfig | None = None, *, stats: Callable[[], dict] | None = None) -> None:
        self.cfg = cfg or OverlayConfig()
        self.stats = stats  # returns {"fps":, "p50":, "p99":, "stages": {stage: p50 ms}} for the HUD
        self._colors: dict[str, tuple[int, int, int]] = {}
        self._luts: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._legends: dict[tuple[str, ...], np.ndarray] = {}
        self.instance_groups: frozenset[str] = frozenset(("car", "person"))  # set from the instance card
        # offline runs: also the latency from leaving the stream queue (end to end there includes
        # the wait in front of the engines that an offline run piles up on purpose)
        self.show_processing = False

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
        shown: list[str] = []
        skip: frozenset[str] = frozenset()
        if frame.instances is not None and not self.cfg.semantic_things:
            skip = self.instance_groups  # things come from the instance model: no double colouring
        if frame.semantic is not None:
            shown += self._draw_semantic(out, frame.semantic, skip)
        if frame.instances is not None and len(frame.instances):
            self._draw_instances(out, frame.instances)
            shown += [g for g in dict.fromkeys(frame.instances.groups) if g and g not in shown]
        if frame.analytics is not None:
            self._draw_analytics(out, frame)
        if self.cfg.legend and shown:
            self._draw_legend(out, tuple(shown))
        if self.cfg.hud:
            self._draw_hud(out, frame)
        return out

    # semantic ------------------------------------------------------------------------
    def _lut(self, names: list[str], skip: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
        """Group index -> premultiplied colour alpha * BGR (256 x 1 x 3 uint8), and -> 255 * (1 - alpha)
        (256 x 1 uint8); index 0 = no group: nothing added, image kept."""
        key = (tuple(names), skip)
        if key not in self._luts:
            pre = np.zeros((256, 1, 3), np.uint8)
            keep = np.full((256, 1), 255, np.uint8)
            for gi, name in enumerate(names, start=1):
                a = 0.0 if name in skip else self.alpha(name)
                pre[gi, 0] = np.round(np.array(self.color_bgr(name), np.float64) * a)
                keep[gi, 0] = round(255 * (1 - a))
            self._luts[key] = (pre, keep)
        return self._luts[key]

    def _draw_semantic(self, out: np.ndarray, sem, skip: frozenset[str] = frozenset()) -> list[str]:
        gm = sem.small_group_map if sem.small_group_map is not None else sem.group_map
        counts = np.bincount(gm.ravel(), minlength=len(sem.group_names) + 1)
        present = [sem.group_names[i - 1] for i in np.flatnonzero(counts[1:]) + 1]
        present = [g for g in present if g not in skip]
        if not present:
            return []
        pre_lut, keep_lut = self._lut(sem.group_names, skip)
        keep = cv2.LUT(gm, keep_lut)  # one channel: alpha is per group, not per colour
        # only the band of rows holding a drawn group is touched (sky and buildings are not)
        touched = np.flatnonzero(cv2.reduce(keep, 1, cv2.REDUCE_MIN).ravel() < 255)
        if not len(touched):  # every group present is drawn fully transparent
            return present
        r0, r1 = max(int(touched[0]) - 1, 0), min(int(touched[-1]) + 2, gm.shape[0])
        h, w = out.shape[:2]
        sy = h / gm.shape[0]
        y0, y1 = round(r0 * sy), round(r1 * sy)
        band = gm[r0:r1]
        pre = cv2.LUT(cv2.merge([band, band, band]), pre_lut)
        keep = keep[r0:r1]
        if gm.shape != (h, w):  # bilinear: soft, unblocky edges at the frame's resolution
            pre = cv2.resize(pre, (w, y1 - y0), interpolation=cv2.INTER_LINEAR)
            keep = cv2.resize(keep, (w, y1 - y0), interpolation=cv2.INTER_LINEAR)
        # out = image * (1 - alpha) + alpha * colour, all in saturating uint8 SIMD
        dst = out[y0:y1]
        cv2.multiply(dst, cv2.merge([keep, keep, keep]), dst=dst, scale=1 / 255)
        cv2.add(dst, pre, dst=dst)
        return present

    # instances -----------------------------------------------------------------------
    def _blend(self, region: np.ndarray, mask: np.ndarray, color, alpha: float) -> None:
        """Alpha-blend `color` into `region` where `mask` is set (in place, also on a sub-view)."""
        # one affine pass per pixel: out_c = (1 - alpha) * in_c + alpha * colour_c (no colour image kept:
        # a cache of solid images per track colour grew with every big box of every colour)
        m = np.zeros((3, 4), np.float32)
        m[:, :3] = np.eye(3) * (1 - alpha)
        m[:, 3] = np.asarray(color, np.float32) * alpha
        blended = cv2.transform(region, m)
        cv2.copyTo(blended, mask.view(np.uint8), region)

    def _draw_instances(self, out: np.ndarray, inst) -> None:
        h, w = out.shape[:2]
        for k in range(len(inst)):
            x0, y0, x1, y1 = inst.xyxy[k]
            bx0, by0 = max(int(x0), 0), max(int(y0), 0)
            bx1, by1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
            if bx1 <= bx0 or by1 <= by0:
                continue
            group = inst.groups[k]
            tid = int(inst.track_id[k]) if inst.track_id is not None else None
            if tid == NO_TRACK:  # tracking on, but in no track yet: drawn, in a neutral colour, unnumbered
                color, tid = UNTRACKED_BGR, None
            elif tid is not None and self.cfg.id_colors:
                color = id_color_bgr(tid)
            else:
                color = self.color_bgr(group)
            region = out[by0:by1, bx0:bx1]
            mask = inst.masks[k, by0:by1, bx0:bx1]
            if mask.any():
                self._blend(region, mask, color, self.alpha(group))
                if self.cfg.contours:
                    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                    cv2.drawContours(region, contours, -1, color, 2, cv2.LINE_8)  # 2 px anti-aliased: 5x the cost
            elif self.cfg.contours:
                cv2.rectangle(out, (bx0, by0), (bx1 - 1, by1 - 1), color, 1, cv2.LINE_AA)
            if self.cfg.labels:
                text = f"{inst.labels[k]} {inst.score[k]:.2f}" + (f" #{tid}" if tid is not None else "")
                _label(out, text, (bx0, by0), color)

    # analytics -----------------------------------------------------------------------
    def _draw_analytics(self, out: np.ndarray, frame: Frame) -> None:
        """The ego corridor and polygon zones outlined, lines drawn, intruders boxed in red with
        their distance, the closest object in the path marked, and this frame's events listed."""
        fa = frame.analytics
        h, w = out.shape[:2]
        if fa.corridor is not None and fa.corridor.any():
            contours, _ = cv2.findContours(fa.corridor.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            ch, cw = fa.corridor.shape
            scale = np.array([w / cw, h / ch])
            cv2.polylines(out, [np.round(c * scale).astype(np.int32) for c in contours], True, CORRIDOR_BGR, 2, cv2.LINE_AA)
        for name, pts in fa.shapes.items():
            p = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [p], len(pts) > 2, ZONE_BGR, 2, cv2.LINE_AA)
            _label(out, name, tuple(p[0, 0]), ZONE_BGR)
        inst = frame.instances
        if inst is not None and fa.intruders is not None:
            for k in np.flatnonzero(fa.intruders):
                x0, y0, x1, y1 = (int(v) for v in inst.xyxy[k])
                cv2.rectangle(out, (x0, y0), (x1, y1), INTRUDER_BGR, 3, cv2.LINE_AA)
        ip = fa.in_path
        if ip is not None and inst is not None and ip.index < len(inst):
            x0, _, x1, y1 = inst.xyxy[ip.index]
            dist = f"{ip.distance_m:.1f} m" if ip.distance_m is not None else f"{ip.distance_rows} rows"
            ttc = f" TTC {ip.ttc_s:.1f} s" if ip.ttc_s is not None else ""
            _label(out, f"in path: {ip.label} {dist}{ttc}", (int(x0), min(int(y1) + 2, h - 16)), INTRUDER_BGR, below=True)
        for i, e in enumerate(frame.events[-4:]):  # this frame's events, top right
            text = f"{e.type} {e.label}" + (f" #{e.track_id}" if e.track_id is not None else "") + f" {e.zone}"
            color = INTRUDER_BGR if "intrusion" in e.type else ZONE_BGR
            _label(out, text, (w, 4 + 20 * i), color, below=True)  # x is clamped: right-aligned

    # legend and HUD ------------------------------------------------------------------
    def _draw_legend(self, out: np.ndarray, groups: tuple[str, ...]) -> None:
        """Swatch + name per group, bottom left; rendered once per set of groups, then pasted."""
        tile = self._legends.get(groups)
        if tile is None:
            row = 20
            width = 34 + max(cv2.getTextSize(g, FONT, 0.45, 1)[0][0] for g in groups)
            tile = np.full((row * len(groups) + 6, width, 3), 30, np.uint8)
            for i, g in enumerate(groups):
                y = 4 + i * row
                cv2.rectangle(tile, (6, y + 3), (22, y + 15), self.color_bgr(g), -1)
                cv2.putText(tile, g, (28, y + 14), FONT, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
            self._legends[groups] = tile
        h, w = out.shape[:2]
        th, tw = min(tile.shape[0], h), min(tile.shape[1], w)
        dst = out[h - th : h, 0:tw]
        cv2.addWeighted(dst, 0.25, tile[:th, :tw], 0.75, 0, dst=dst)

    def _draw_hud(self, out: np.ndarray, frame: Frame) -> None:
        s = self.stats() if self.stats else {}
        parts = [f"{frame.stream_id} #{frame.seq}"]
        if s.get("fps"):
            parts.append(f"{s['fps']:.1f} fps")
        if self.show_processing and s.get("processing_p50") is not None:
            parts.append(f"processing p50 {s['processing_p50']:.0f} ms  p99 {s['processing_p99']:.0f} ms")
        if s.get("p50") is not None:
            parts.append(f"e2e p50 {s['p50']:.0f} ms  p99 {s['p99']:.0f} ms")
        bottom = _label(out, "  |  ".join(parts), (8, 8), (40, 40, 40), scale=0.55, below=True)
        stages = {k: v for k, v in (s.get("stages") or {}).items() if v is not None and v > 0}
        if stages:
            self._draw_stage_bar(out, stages, 8, bottom + 4)

    def _draw_stage_bar(self, out: np.ndarray, stages: dict[str, float], x: int, y: int) -> None:
        """Stacked bar of per-stage p50 latency, 300 px = the sum, with the widest stages named."""
        w_total = min(300, out.shape[1] - 2 * x)
        if w_total < 40 or y + 16 > out.shape[0]:
            return
        total = sum(stages.values())
        cx = x
        for stage, ms in stages.items():
            w = int(round(w_total * ms / total))
            if w <= 0:
                continue
            color = STAGE_COLORS_BGR.get(stage, (200, 200, 200))
            cv2.rectangle(out, (cx, y), (cx + w - 1, y + 14), color, -1)
            text = f"{stage} {ms:.0f}"
            (tw, _), _ = cv2.getTextSize(text, FONT, 0.35, 1)
            if tw + 4 <= w:
                cv2.putText(out, text, (cx + 2, y + 11), FONT, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            cx += w


def _label(out: np.ndarray, text: str, xy: tuple[int, int], color, *, scale: float = 0.45, below: bool = False) -> int:
    """Text on a filled box: above the point (instance labels) or below it (HUD). Returns the box's bottom y."""
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
    return top + th + base + 4
