"""Driving-scene analytics on the road and the instances together: zones, the ego corridor,
lines, and the events they raise. The stage sits between postprocess and overlay:
`AnalyticsStage.process(frame)` sets `frame.events` and `frame.analytics`.

Membership: where an object stands is judged at its **ground contact**, not at one point of
its box. The band is the instance mask's lowest rows (`band`: a share of its height); each
column of the mask whose lowest pixel lies in the band is a contact column, and the ground
just beneath it (a few rows under the mask, where the road shows around the feet or wheels)
is tested against the zone. The share of contact columns inside is the membership share
(`membership: band`). `membership: point` tests the box's bottom-centre point instead.
A semantic zone (`groups: [road, lane]`) is read from the frame's group map at those points:
it follows the road as the segmentation sees it, frame by frame; a polygon zone is a fixed
region in normalized coordinates.

Ego corridor: the drivable component under the frame's bottom centre, narrowed to `width`
(a share of the frame width at the bottom row, shrinking linearly to the road's vanishing
row). Its centre line follows the road's curvature: on flat ground an image row's lateral
scale is proportional to its distance below the horizon, so the ego path's centre in a row
is the road's centre there less the road's bottom-row offset scaled to that row. Without a
road mask, the corridor is the trapezoid of the same width up to the row `top` (or the
camera model's horizon).

Events are edge-triggered per track and zone with `min_frames` debounce and hysteresis
(`enter_share` to go in, at or under `exit_share` to go out), timed by the stream's pts.
A track unseen for `lost_frames` leaves its zones (`exit`/`intrusion_end` with `lost: true`).
Nothing here knows about threads: one `StreamAnalytics` per stream, called in frame order.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamseg.config import AnalyticsConfig, CameraModelConfig, LineConfig, ZoneConfig
from streamseg.errors import UserError
from streamseg.frames import NO_TRACK, Event, Frame, FrameAnalytics, InPath, Instances

log = logging.getLogger("streamseg")

CORRIDOR = "ego_corridor"
MAX_ANALYSIS_W = 640  # without a semantic map, polygon zones are rasterized at most this wide
SPECK = 0.2  # a mask's detached part under this share of its largest part is not its ground contact
REACH = 0.25  # how far under its mask (a share of its box height) a contact follows its group in the map
CORRIDOR_W = 320  # the corridor's component is found on a map at most this wide (strided: cheap, coarse enough)


# geometry --------------------------------------------------------------------------------------------
@dataclass
class Contact:
    """Where one instance meets the ground, in frame pixels."""

    xs: np.ndarray  # contact columns
    ys: np.ndarray  # the mask's lowest row in each
    gap: int  # rows under the mask at which the ground is read
    bottom_xy: tuple[float, float]  # the box's bottom-centre point
    cut: bool = False  # the mask reaches the frame's bottom: its ground contact is out of view

    @property
    def y(self) -> int:
        """The lowest contact row (nearest the camera)."""
        return int(self.ys.max())


def body(crop: np.ndarray, keep: float = SPECK) -> np.ndarray:
    """The mask without its specks: parts (8-connected) smaller than `keep` of its largest part.
    A model's mask may hold a detached blob under the feet (on the road marking a step ahead, in
    the gap under a car): its lowest rows would be taken for the ground contact."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    if n <= 2:  # one part (or none)
        return crop
    area = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(area < keep * area.max()) + 1
    if not small.size:
        return crop
    return crop & ~np.isin(lab, small)


def ground_contact(mask_hw: np.ndarray, xyxy: np.ndarray, band: float) -> Contact | None:
    """The contact columns of one instance mask (work on its box crop only), None when empty."""
    h, w = mask_hw.shape
    x0, y0 = max(int(math.floor(xyxy[0])), 0), max(int(math.floor(xyxy[1])), 0)
    x1, y1 = min(int(math.ceil(xyxy[2])) + 1, w), min(int(math.ceil(xyxy[3])) + 1, h)
    crop = mask_hw[y0:y1, x0:x1]
    if crop.size == 0:
        return None
    crop = body(crop)
    cols = crop.any(0)
    if not cols.any():
        return None
    rows = np.flatnonzero(crop.any(1))
    top, bot = int(rows[0]), int(rows[-1])
    lowest = crop.shape[0] - 1 - np.argmax(crop[::-1], axis=0)  # per column: its lowest mask row
    band_h = max(2, math.ceil(band * (bot - top + 1)))
    sel = cols & (lowest > bot - band_h)
    xs = x0 + np.flatnonzero(sel)
    ys = y0 + lowest[sel]
    gap = max(2, band_h // 3)
    if y0 + bot >= h - 1:  # cut off by the frame's bottom: where it stands is not in view
        return Contact(xs, ys, gap, (float((xyxy[0] + xyxy[2]) / 2), float(y0 + bot)), cut=True)
    return Contact(xs, ys, gap, (float((xyxy[0] + xyxy[2]) / 2), float(y0 + bot)))


def extend_down(c: Contact, gmap: np.ndarray, gid: int, frame_wh: tuple[int, int], reach: int) -> Contact:
    """The contact moved down through the segmentation's pixels of the object's own group (at most
    `reach` frame rows): a model's instance mask often stops short of the feet or wheels (its
    masks come from coarse prototypes) where the semantic map still shows the person or car; the
    ground is under those pixels, not under the mask's lowest row."""
    mh, mw = gmap.shape
    sy, sx = mh / frame_wh[1], mw / frame_wh[0]
    steps = max(1, math.ceil(reach * sy))
    r0 = (c.ys * sy).astype(np.int64) + 1
    rows = r0[:, None] + np.arange(steps)[None, :]
    q = np.clip((c.xs * sx).astype(np.int64), 0, mw - 1)
    own = (gmap[np.clip(rows, 0, mh - 1), q[:, None]] == gid) & (rows < mh)
    run = np.cumprod(own, axis=1).sum(1)  # own-group map rows straight under each column's lowest pixel
    if not run.any():
        return c
    ys = np.maximum(c.ys, np.minimum(((r0 + run) / sy).astype(np.int64) - 1, frame_wh[1] - 1))
    return Contact(c.xs, ys, c.gap, c.bottom_xy, c.cut or bool((ys >= frame_wh[1] - 1).any()))


class Sampler:
    """Reads analysis-resolution maps at frame-pixel points (the maps may be smaller than the frame)."""

    def __init__(self, frame_wh: tuple[int, int], map_wh: tuple[int, int]) -> None:
        self.fw, self.fh = frame_wh
        self.mw, self.mh = map_wh
        self.sx, self.sy = self.mw / self.fw, self.mh / self.fh

    def points(self, c: Contact, rule: str, vanish_xy: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """Map indices (rows K x 2, cols K x 2) of the ground just under the contact, per rule.

        The ground is read 1 and `gap` rows under the mask, along the image line through the
        vanishing point: on flat ground that line keeps its lateral position, so a person one
        step beside the kerb is read beside the kerb, not on the (wider, nearer) road below."""
        if rule == "point":
            xs = np.array([c.bottom_xy[0]])
            ys = np.array([c.bottom_xy[1]])
        else:
            xs, ys = c.xs.astype(np.float64), c.ys.astype(np.float64)
        offs = np.array([1.0, float(c.gap)])[None, :]
        vx, vy = vanish_xy
        # near the horizon the estimate of it decides too much: at most a quarter of the way
        gx = xs[:, None] + (xs[:, None] - vx) * np.minimum(offs / np.maximum(ys[:, None] - vy, 1.0), 0.25)
        # at least one map row under the feet' own: on a map coarser than the frame, 1 frame row down
        # is still the row of the object's lowest pixels, which shows the object, not its ground
        feet = (ys[:, None] * self.sy).astype(np.int64)
        r = np.clip(np.maximum(((ys[:, None] + offs) * self.sy).astype(np.int64), feet + 1), 0, self.mh - 1)
        q = np.clip((gx * self.sx).astype(np.int64), 0, self.mw - 1)
        return r, q

    @staticmethod
    def share(
        inside_hw: np.ndarray,
        rq: tuple[np.ndarray, np.ndarray],
        lut: np.ndarray | None = None,
        ground: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> float | None:
        """Share of contact columns whose ground (either row under the mask) is inside: `inside_hw`
        a bool map, or a group map read through `lut` (group id -> inside). `ground`: a group map
        (same size) and which groups hide the ground (a car in front): a column with either point on
        one does not count (the mask's lowest row there is where the thing in front cuts it, not its
        feet: what shows under it may be anything seen past the thing); None when no column counts."""
        r, q = rq
        if not r.size:
            return None
        hit = inside_hw[r, q] if lut is None else lut[inside_hw[r, q]]
        if ground is None:
            return float(hit.any(1).mean())
        cols = ~ground[1][ground[0][r, q]].any(1)
        if not cols.any():
            return None
        return float(hit.any(1)[cols].mean())


def duplicates(inst: Instances, overlap: float = 0.6) -> np.ndarray:
    """K bools: a detection whose mask lies mostly (>= `overlap` of the smaller mask) on a surer one's
    of the same group: the detector's second opinion on one object, which would raise its events
    twice. Masks, not boxes: two people one behind the other share a box, not pixels. Only pairs
    whose boxes overlap that much are compared, on their boxes' intersection."""
    xyxy, score, k = inst.xyxy, inst.score, len(inst)
    out = np.zeros(k, bool)
    if k < 2:
        return out
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = np.clip(xyxy[:, 2:] - xyxy[:, :2], 1e-6, None).prod(-1)
    ratio = inter / np.minimum(area[:, None], area[None, :])
    same = np.array(inst.groups, object)[:, None] == np.array(inst.groups, object)[None, :]
    order = np.arange(k)
    surer = (score[None, :] > score[:, None]) | ((score[None, :] == score[:, None]) & (order[None, :] < order[:, None]))
    h, w = inst.masks.shape[1:]
    for a, b in zip(*np.nonzero((ratio >= overlap) & same & surer), strict=True):
        x0, y0 = (max(int(v), 0) for v in lt[a, b])
        x1, y1 = min(int(math.ceil(rb[a, b, 0])) + 1, w), min(int(math.ceil(rb[a, b, 1])) + 1, h)
        both = np.count_nonzero(inst.masks[a, y0:y1, x0:x1] & inst.masks[b, y0:y1, x0:x1])
        smaller = min(np.count_nonzero(inst.masks[a]), np.count_nonzero(inst.masks[b]))
        if smaller and both >= overlap * smaller:
            out[a] = True
    return out


def group_lut(group_names: list[str], groups: list[str]) -> np.ndarray:
    """256 bools: which group-map values (1-based group ids, 0 = none) are in `groups`."""
    lut = np.zeros(256, bool)
    lut[[group_names.index(g) + 1 for g in groups if g in group_names]] = True
    return lut


def polygon_mask(points: list[tuple[float, float]], map_wh: tuple[int, int]) -> np.ndarray:
    w, h = map_wh
    pts = np.round(np.array(points, np.float64) * [w, h] * 16).astype(np.int32).reshape(-1, 1, 2)
    out = np.zeros((h, w), np.uint8)
    cv2.fillPoly(out, [pts], 1, cv2.LINE_8, 4)
    return out.astype(bool)


def focal_px(cam: CameraModelConfig, frame_w: int) -> float:
    if cam.focal_px is not None:
        return cam.focal_px
    return (frame_w / 2) / math.tan(math.radians(cam.hfov_deg) / 2)


def horizon_row(cam: CameraModelConfig, frame_wh: tuple[int, int]) -> float:
    """The image row of the horizon for a pitched pinhole camera (principal point at the centre)."""
    w, h = frame_wh
    return h / 2 - focal_px(cam, w) * math.tan(math.radians(cam.pitch_deg))


def ground_distance_m(cam: CameraModelConfig, frame_wh: tuple[int, int], row: float) -> float | None:
    """Distance along flat ground to the point seen at image row `row`; None at or above the horizon."""
    w, h = frame_wh
    angle = math.radians(cam.pitch_deg) + math.atan((row - h / 2) / focal_px(cam, w))
    if angle <= 1e-6:
        return None
    return cam.height_m / math.tan(angle)


def road_width_line(comp: np.ndarray, min_rows: int = 6) -> tuple[float, float] | None:
    """(slope, intercept) of the road's width in the image against the row: on flat ground a row's
    width of the road is proportional to its distance below the vanishing row (where the line is
    zero), however far the road is seen (its visible end lies wherever a car, a curve or a building
    hides the rest). Fitted to the rows the frame does not cut off; rows narrowed by something at the
    road's edge (a parked car) fall below the line and are left out, twice over. None when too few
    rows or no widening."""
    ys = np.flatnonzero(~comp[:, 0] & ~comp[:, -1] & comp.any(1))
    if ys.size < min_rows:
        return None
    first = np.argmax(comp[ys], axis=1)
    last = comp.shape[1] - 1 - np.argmax(comp[ys, ::-1], axis=1)
    width = (last - first + 1).astype(np.float64)
    keep = np.ones(ys.size, bool)
    for _ in range(3):
        if keep.sum() < min_rows:
            return None
        slope, icpt = np.polyfit(ys[keep], width[keep], 1)
        if slope <= 0:
            return None
        keep = width >= slope * ys + icpt - np.maximum(2.0, 0.1 * width)
    return float(slope), float(icpt)


def corridor_mask(
    group_map: np.ndarray | None,
    group_ids: list[int],
    map_wh: tuple[int, int],
    width: float,
    top_row: float,
) -> np.ndarray:
    """The ego corridor at analysis resolution: the drivable component under the bottom centre,
    narrowed to `width` along the road's curvature; the trapezoid up to `top_row` (a row of the
    map) when there is no drivable component there."""
    w, h = map_wh
    xs = np.arange(w, dtype=np.float32)[None, :]
    comp = None
    if group_map is not None and group_ids:
        drivable = np.isin(group_map, group_ids).astype(np.uint8)
        _, labels = cv2.connectedComponents(drivable, connectivity=4)
        foot = labels[max(0, h - max(2, h // 25)) :, int(w * (0.5 - width / 4)) : int(w * (0.5 + width / 4)) + 1]
        ids = np.bincount(foot.ravel(), minlength=2)
        ids[0] = 0
        if ids.max() > 0:
            comp = labels == int(ids.argmax())
    if comp is None:  # the trapezoid
        ys = np.arange(h, dtype=np.float32)[:, None]
        scale = np.clip((ys - top_row) / max(h - top_row, 1.0), 0, None)
        return (np.abs(xs - w / 2) <= width * w / 2 * scale) & (ys >= top_row)
    count = comp.sum(1)
    rows = np.flatnonzero(count)
    y_top, y_bot = int(rows[0]), int(rows[-1])
    # a row's road centre: the middle of its extent (a car ahead takes pixels out of the middle of our
    # lane, not of the road: the mean of the pixels would lean away from it); where the frame cuts one
    # side off, half the fitted road width from the side in view; where it cuts both, unknown
    first, last = np.argmax(comp, axis=1), w - 1 - np.argmax(comp[:, ::-1], axis=1)
    cut_l, cut_r = comp[:, 0], comp[:, -1]
    fit = road_width_line(comp)
    half_road = np.zeros(h) if fit is None else (fit[0] * np.arange(h) + fit[1]) / 2
    centre = np.where(cut_l, last - half_road, np.where(cut_r, first + half_road, (first + last) / 2))
    known = (count > 0) & ~(cut_l & cut_r) & ((fit is not None) | ~(cut_l | cut_r))
    if fit is not None:
        y_top = min(max(-fit[1] / fit[0], 0.0), y_top)  # the vanishing row: where the road's width is zero
    span = max(y_bot - y_top, 1)
    scale = np.clip((np.arange(h, dtype=np.float32) - y_top) / span, 0, None)
    # the road's offset from our path scales with the row's distance below the vanishing row: read
    # on the nearest rows where the road's centre is known (curving least there), their median
    near = np.flatnonzero(known & (scale > 0.3))[-max(3, h // 20) :]
    if not near.size:  # no near row shows the road's centre (a wide road filling the frame): any known row
        near = np.flatnonzero(known & (scale > 0))[-max(3, h // 20) :]
    if near.size:
        offset = float(np.median((centre[near] - w / 2) / scale[near]))
        ego_c = np.where(known, centre - offset * scale, w / 2)  # the road's curvature, anchored at the camera
    else:  # nowhere a centre to follow: straight ahead
        ego_c = np.full(h, w / 2)
    return comp & (np.abs(xs - ego_c[:, None]) <= (width * w / 2 * scale)[:, None])


# debounced state ------------------------------------------------------------------------------------
@dataclass
class Hysteresis:
    """Inside/outside of one track in one zone: in at `enter`, out at or under `exit`, a change
    only after it held `min_frames` frames."""

    inside: bool = False
    pending: int = 0
    seen: bool = False  # had evidence once
    announced: bool = False  # its being inside was raised as an event (enter, intrusion_start)
    since_pts: float = 0.0  # when it last went in
    dwell_raised: bool = False
    onset: tuple[int, float] = (0, 0.0)  # (seq, pts) of the pending change's first frame; after a change, its own

    def update(
        self,
        share: float | None,
        enter: float,
        exit_: float,
        min_frames: int,
        appear: bool = True,
        at: tuple[int, float] = (0, 0.0),
    ) -> bool:
        """Feed one frame's share (None: no evidence) and its (seq, pts); True when the state changed,
        and then `onset` is the frame the change began on. `appear` false: the first evidence sets the
        state without a change."""
        if share is None:  # not seen (hidden, cut off): no evidence either way
            return False
        if not self.seen:
            self.seen = True
            if not appear:
                self.inside = share >= enter
                return False
        want = share > exit_ if self.inside else share >= enter
        if want == self.inside:
            self.pending = 0
            return False
        if self.pending == 0:
            self.onset = at
        self.pending += 1
        if self.pending < min_frames:
            return False
        self.inside, self.pending = want, 0
        return True


@dataclass
class LineSide:
    side: int = 0  # -1 left of p0->p1, +1 right, 0 not seen yet
    pending: int = 0
    onset: tuple[int, float] = (0, 0.0)  # (seq, pts) of the pending crossing's first frame


@dataclass
class TrackState:
    label: str
    group: str | None
    last_seq: int
    zones: dict[str, Hysteresis] = field(default_factory=dict)
    lines: dict[str, LineSide] = field(default_factory=dict)
    distances: collections.deque = field(default_factory=lambda: collections.deque(maxlen=12))  # (pts, metres)


def time_to_contact(history, max_span_s: float = 1.0) -> float | None:
    """Seconds until the distance reaches zero at its recent rate (a line fitted over the last
    `max_span_s` of pts); None when it is not closing."""
    pts = [(t, d) for t, d in history if d is not None and history[-1][0] - t <= max_span_s]
    if len(pts) < 3:
        return None
    t = np.array([p[0] for p in pts])
    d = np.array([p[1] for p in pts])
    if t[-1] - t[0] <= 0:
        return None
    rate = float(np.polyfit(t - t[-1], d, 1)[0])
    if rate >= -0.05:  # not closing (or too slowly to say)
        return None
    return round(d[-1] / -rate, 3)


# per stream ------------------------------------------------------------------------------------------
class StreamAnalytics:
    """Zones, lines and the corridor of one stream; `update(frame)` in frame order."""

    def __init__(
        self,
        cfg: AnalyticsConfig,
        stream: str,
        zones: list[ZoneConfig],
        lines: list[LineConfig],
        occluders: tuple[str, ...] = ("car", "person"),
    ) -> None:
        self.cfg, self.stream = cfg, stream
        self.zones, self.lines = zones, lines
        self.occluders = list(occluders)  # semantic groups that stand on the ground and hide it
        self.tracks: dict[int, TrackState] = {}
        self._polys: dict[tuple, np.ndarray] = {}

    def _poly(self, zone: ZoneConfig, map_wh) -> np.ndarray:
        key = (zone.name, map_wh)
        if key not in self._polys:
            self._polys[key] = polygon_mask(zone.polygon, map_wh)
        return self._polys[key]

    def update(self, f: Frame) -> tuple[list[Event], FrameAnalytics]:
        cfg = self.cfg
        fw, fh = f.size_wh
        inst = f.instances if f.instances is not None else Instances.empty((fw, fh))
        sem = f.semantic
        gmap = None
        if sem is not None:
            gmap = sem.small_group_map if sem.small_group_map is not None else sem.group_map
            map_wh = (gmap.shape[1], gmap.shape[0])
        else:
            k = min(1.0, MAX_ANALYSIS_W / fw)
            map_wh = (max(1, round(fw * k)), max(1, round(fh * k)))
        samp = Sampler((fw, fh), map_wh)
        events: list[Event] = []
        out = FrameAnalytics()

        def emit(kind: str, tid: int | None, label: str, zone: str, at: tuple[int, float] | None = None, **metrics):
            """`at`: a debounced change's onset (seq, pts): the event is timed by it, and says which
            frame confirmed it and how much later (`confirmed_seq`, `delay_s`)."""
            seq, pts = (f.seq, float(f.pts)) if at is None else at
            if at is not None:
                metrics.update(confirmed_seq=f.seq, delay_s=round(float(f.pts) - pts, 6))
            events.append(Event(kind, self.stream, seq, pts, tid, label, zone, metrics))

        at = (f.seq, float(f.pts))
        n = len(inst)
        contacts = [ground_contact(inst.masks[i], inst.xyxy[i], cfg.band) for i in range(n)]
        if sem is not None:  # where the segmentation shows more of the object under its mask, its contact is there
            for i, c in enumerate(contacts):
                if c is not None and not c.cut and inst.groups[i] in sem.group_names:
                    reach = max(2, math.ceil(REACH * (inst.xyxy[i][3] - inst.xyxy[i][1])))
                    contacts[i] = extend_down(c, gmap, sem.group_names.index(inst.groups[i]) + 1, (fw, fh), reach)
        # the vanishing point: straight ahead, at the horizon (the camera model's; else where the
        # drivable area ends, on a strided map; else the corridor's `top`)
        step = max(1, math.ceil(map_wh[0] / CORRIDOR_W))
        small = gmap[::step, ::step] if gmap is not None else None
        drive = group_lut(sem.group_names, cfg.corridor.groups) if sem is not None else None
        top = cfg.corridor.top * fh
        if cfg.corridor.camera is not None:
            top = horizon_row(cfg.corridor.camera, (fw, fh))
        elif small is not None and (rows := np.flatnonzero(drive[small].any(1))).size:
            top = rows[0] * step / samp.sy
        vanish = (fw / 2, top)
        hide = group_lut(sem.group_names, self.occluders) if sem is not None else None
        ground = (gmap, hide) if sem is not None else None  # where a thing in front hides the ground
        # the ground under each instance, where it is in view (a cut-off object keeps its state)
        # evidence only from sure detections that are no second opinion on a surer one
        unsure = (inst.score < cfg.min_score) | duplicates(inst)
        points = [
            samp.points(c, cfg.membership, vanish) if c is not None and not c.cut and not unsure[i] else None
            for i, c in enumerate(contacts)
        ]
        tids = [
            None if inst.track_id is None or inst.track_id[i] == NO_TRACK else int(inst.track_id[i]) for i in range(n)
        ]
        watched = [cfg.objects is None or inst.groups[i] in cfg.objects for i in range(n)]
        for i, tid in enumerate(tids):
            if tid is not None:
                st = self.tracks.get(tid)
                if st is None:
                    st = self.tracks[tid] = TrackState(inst.labels[i], inst.groups[i], f.seq)
                st.last_seq = f.seq

        # zones
        for zone in self.zones:
            lut = None
            if zone.groups is not None:
                if sem is None:
                    continue
                inside_map, lut = gmap, group_lut(sem.group_names, zone.groups)  # read at the contact points only
            else:
                inside_map = self._poly(zone, map_wh)
            member = np.zeros(n, bool)
            for i in range(n):
                if not watched[i] or contacts[i] is None:
                    continue
                share = samp.share(inside_map, points[i], lut, ground) if points[i] is not None else None
                tid = tids[i]
                if tid is None:
                    member[i] = share is not None and share >= cfg.enter_share
                    continue
                st = self.tracks[tid]
                hy = st.zones.setdefault(zone.name, Hysteresis())
                if not hy.seen and share is not None:
                    hy.since_pts = float(f.pts)  # dwell counts from the first sighting when it starts inside
                if hy.update(share, cfg.enter_share, cfg.exit_share, cfg.min_frames, cfg.enter_on_appear, at):
                    hy.announced = hy.inside
                    if hy.inside:
                        emit("enter", tid, st.label, zone.name, hy.onset, share=round(share, 3))
                        hy.since_pts, hy.dwell_raised = hy.onset[1], False
                    else:
                        emit(
                            "exit",
                            tid,
                            st.label,
                            zone.name,
                            hy.onset,
                            share=round(share, 3),
                            dwell_s=_dwell(hy, hy.onset[1]),
                        )
                if (
                    hy.inside
                    and zone.dwell_s is not None
                    and not hy.dwell_raised
                    and f.pts - hy.since_pts >= zone.dwell_s
                ):
                    hy.dwell_raised = True
                    emit("dwell", tid, st.label, zone.name, dwell_s=_dwell(hy, float(f.pts)))
                member[i] = hy.inside
            out.zones[zone.name] = member
            counts = collections.Counter(inst.labels[i] for i in np.flatnonzero(member))
            out.counts[zone.name] = dict(sorted(counts.items()))

        # lines: the box's bottom-centre point crossing a segment, with its direction
        for line in self.lines:
            (ax, ay), (bx, by) = ((x * fw, y * fh) for x, y in line.points)
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            for i, tid in enumerate(tids):
                if tid is None or contacts[i] is None or not watched[i]:
                    continue
                gx, gy = contacts[i].bottom_xy
                d = (dx * (gy - ay) - dy * (gx - ax)) / math.sqrt(length2)
                if abs(d) <= line.margin * fw:
                    continue
                cand = 1 if d > 0 else -1
                st = self.tracks[tid]
                ls = st.lines.setdefault(line.name, LineSide())
                if ls.side == 0:
                    ls.side = cand
                    continue
                if cand == ls.side:
                    ls.pending = 0
                    continue
                if ls.pending == 0:
                    ls.onset = at
                ls.pending += 1
                if ls.pending < cfg.min_frames:
                    continue
                t = ((gx - ax) * dx + (gy - ay) * dy) / length2
                ls.side, ls.pending = cand, 0
                if -0.05 <= t <= 1.05:  # passed over the segment, not beside it
                    emit("cross", tid, st.label, line.name, ls.onset, direction="in" if cand > 0 else "out")

        # the ego corridor
        cc = cfg.corridor
        if cc.enabled:
            self._corridor(f, inst, small, step, map_wh, vanish, hide, contacts, unsure, tids, out, emit)

        # tracks gone for good leave their zones
        for tid in [t for t, st in self.tracks.items() if f.seq - st.last_seq >= cfg.lost_frames]:
            st = self.tracks.pop(tid)
            for name, hy in st.zones.items():
                if hy.inside and hy.announced:  # a lost track closes what it opened, and only that
                    kind = "intrusion_end" if name == CORRIDOR else "exit"
                    emit(kind, tid, st.label, name, lost=True, dwell_s=_dwell(hy, float(f.pts)))
        out.shapes = {z.name: np.array(z.polygon) * [fw, fh] for z in self.zones if z.polygon is not None}
        out.shapes.update({ln.name: np.array(ln.points) * [fw, fh] for ln in self.lines})
        return events, out

    def _corridor(self, f, inst, small, step, map_wh, vanish, hide, contacts, unsure, tids, out, emit) -> None:
        cfg, cc = self.cfg, self.cfg.corridor
        fw, fh = f.size_wh
        sem = f.semantic
        ids = [sem.group_names.index(g) + 1 for g in cc.groups if g in sem.group_names] if sem is not None else []
        top = horizon_row(cc.camera, (fw, fh)) if cc.camera is not None else cc.top * fh
        cwh = (small.shape[1], small.shape[0]) if small is not None else tuple(-(-v // step) for v in map_wh)
        csamp = Sampler((fw, fh), cwh)
        corridor = corridor_mask(small, ids, cwh, cc.width, top * csamp.sy)
        out.corridor = corridor
        intruders = np.zeros(len(inst), bool)
        best: InPath | None = None
        best_y = -1
        for i, tid in enumerate(tids):
            if contacts[i] is None or inst.groups[i] not in cc.objects:
                continue
            # an object cut off by the frame's bottom, or whose ground a thing in front hides, keeps its state
            c = contacts[i]
            ground = (small, hide) if small is not None else None
            unseen = c.cut or unsure[i]
            share = None if unseen else csamp.share(corridor, csamp.points(c, cfg.membership, vanish), None, ground)
            row = contacts[i].y
            dist_rows = fh - 1 - row
            dist_m = ground_distance_m(cc.camera, (fw, fh), row) if cc.camera is not None else None
            ttc = None
            inside = share is not None and share >= cfg.enter_share
            if tid is not None:
                st = self.tracks[tid]
                if dist_m is not None:
                    st.distances.append((float(f.pts), dist_m))
                    ttc = time_to_contact(st.distances)
                hy = st.zones.setdefault(CORRIDOR, Hysteresis())
                if hy.update(share, cfg.enter_share, cfg.exit_share, cfg.min_frames, at=(f.seq, float(f.pts))):
                    metrics: dict = {"distance_rows": dist_rows}
                    if dist_m is not None:
                        metrics.update(distance_m=round(dist_m, 2), ttc_s=ttc)
                    hy.announced = hy.inside
                    if hy.inside:
                        emit("intrusion_start", tid, st.label, CORRIDOR, hy.onset, **metrics)
                        hy.since_pts = hy.onset[1]
                    else:
                        emit(
                            "intrusion_end",
                            tid,
                            st.label,
                            CORRIDOR,
                            hy.onset,
                            dwell_s=_dwell(hy, hy.onset[1]),
                            **metrics,
                        )
                inside = hy.inside
                intruders[i] = hy.inside
            if inside and row > best_y:
                best_y = row
                best = InPath(i, tid, inst.labels[i], dist_rows, None if dist_m is None else round(dist_m, 2), ttc)
        out.in_path = best
        out.intruders = intruders


def _dwell(hy: Hysteresis, pts: float) -> float:
    """Seconds inside, from when it went in to `pts`."""
    return round(pts - hy.since_pts, 3)


# the stage ----------------------------------------------------------------------------------------------
class AnalyticsStage:
    """Zones, corridor and lines for every stream: `process(frame)` -> the frame with `events`
    and `analytics` set. Per-stream state is made on a stream's first frame; frames of one
    stream come in order (the runner's one thread). Its own CPU time is kept (`cpu_ns`)."""

    name = "analytics"
    threads = 0  # runs on the overlay's thread, just before drawing
    queue = None

    def __init__(
        self,
        cfg: AnalyticsConfig,
        semantic_groups: list[str] | None = None,
        instance_groups: list[str] | None = None,
        tracking: bool = True,
    ) -> None:
        check(cfg, semantic_groups, instance_groups, tracking)
        self.cfg = cfg
        self.occluders = tuple(instance_groups or ("car", "person"))  # things that hide the ground behind them
        self.streams: dict[str, StreamAnalytics] = {}
        self.totals: collections.Counter = collections.Counter()  # (type, zone) -> events
        self.recent: collections.deque = collections.deque(maxlen=50)  # the last events, for the preview
        self.cpu_ns = 0
        self.frames = 0

    def pool_threads(self) -> int:
        return 0

    def stream(self, sid: str) -> StreamAnalytics:
        s = self.streams.get(sid)
        if s is None:
            zones = [z for z in self.cfg.zones if z.streams is None or sid in z.streams]
            lines = [ln for ln in self.cfg.lines if ln.streams is None or sid in ln.streams]
            s = self.streams[sid] = StreamAnalytics(self.cfg, sid, zones, lines, self.occluders)
        return s

    def process(self, f: Frame) -> Frame:
        t0 = time.thread_time_ns()
        f.events, f.analytics = self.stream(f.stream_id).update(f)
        for e in f.events:
            self.totals[(e.type, e.zone)] += 1
            self.recent.append(e)
        self.cpu_ns += time.thread_time_ns() - t0
        self.frames += 1
        return f

    def warm(self, f: Frame) -> Frame:
        """The warm-up pass: scratch state, so no stream's tracks see it."""
        f.events, f.analytics = StreamAnalytics(
            self.cfg, "warmup", self.cfg.zones, self.cfg.lines, self.occluders
        ).update(f)
        return f

    def summary(self) -> dict:
        """For the report: events by type and zone, and the stage's CPU per frame."""
        by: dict[str, dict[str, int]] = {}
        for (kind, zone), n in sorted(self.totals.items()):
            by.setdefault(kind, {})[zone] = n
        return {
            "events": by,
            "events_total": sum(self.totals.values()),
            "frames": self.frames,
            "cpu_ms_per_frame": round(self.cpu_ns / 1e6 / max(self.frames, 1), 3),
        }


def check(
    cfg: AnalyticsConfig, semantic_groups: list[str] | None, instance_groups: list[str] | None, tracking: bool
) -> None:
    """A config that cannot work with the run's models is one clear error before any frame is read."""
    if not tracking:
        raise UserError("analytics: events are kept per track; turn tracking on (tracking.enabled: true)")
    for z in cfg.zones:
        if z.groups is None:
            continue
        if semantic_groups is None:
            raise UserError(f"analytics: zone {z.name!r} follows groups {z.groups}, but the run has no semantic engine")
        unknown = [g for g in z.groups if g not in semantic_groups]
        if unknown:
            raise UserError(
                f"analytics: zone {z.name!r}: the semantic model has no group {', '.join(map(repr, unknown))} "
                f"(it has: {', '.join(semantic_groups)})"
            )
    if instance_groups is not None:
        for what, groups in (("objects", cfg.objects or []), ("corridor.objects", cfg.corridor.objects)):
            unknown = [g for g in groups if g not in instance_groups]
            if unknown:
                raise UserError(
                    f"analytics.{what}: the instance model has no group {', '.join(map(repr, unknown))} "
                    f"(it has: {', '.join(instance_groups)})"
                )


def analytics_stage(cfg, models: dict) -> AnalyticsStage | None:
    """The run's analytics stage from its Config and opened models; None without an `analytics:` section."""
    if cfg.analytics is None:
        return None
    sem, ins = models.get("semantic"), models.get("instance")
    return AnalyticsStage(
        cfg.analytics,
        list(sem.card.groups) if sem is not None else None,
        list(ins.card.groups) if ins is not None else None,
        cfg.tracking.enabled,
    )
