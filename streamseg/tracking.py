"""Stable instance IDs across frames, and temporal smoothing of semantic masks.

Tracker: ByteTrack's association (Zhang et al., 2022) on boxes with a constant-velocity
motion model, one tracker per stream:

1. every live track predicts its box for this frame (last box + velocity x frames since);
2. confident detections (score >= `high`) are matched to the predictions by IoU, best
   pair first, same class only, in DeepSORT's cascade: tracks seen in the last frame first, then
   those unseen for longer (a track lost a while, extrapolated along its last motion, cannot take
   a live track's object: a person's track would pass to the track of a second opinion on it);
3. the remaining tracks get a second chance with the low-score detections (ByteTrack's
   point: a car half hidden behind another scores low but is still that car);
   then the confident detections still unmatched are matched to the tracks still free by the
   distance between box centres, in units of the box's height (`centre_dist`), for boxes of
   about the same height: a person walking across the image at 15 fps moves its box and swings
   its legs, changing the box's width, and IoU between thin boxes falls fast;
4. unmatched confident detections start new tracks, unless they lie over a detection that
   was just matched (a duplicate NMS let through: two tracks for one object would take
   turns at it); a track unseen for `max_age` frames ends, so an object hidden for a
   moment keeps its ID when it comes back.

Every detection is kept: one that belongs to no track (a low-score detection that continues
none, or a duplicate) gets `track_id` NO_TRACK (-1; `null` in the jsonl, a neutral colour in
the overlay), so tracking never hides what the detector found above `conf_threshold`.

SemanticSmoother: a per-pixel majority vote over the last `frames` group maps at model
resolution (vectorized), and the flicker measure that shows what it does: the share of
pixels whose group changes from one frame to the next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from streamseg.frames import NO_TRACK, Instances


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU, A x 4 and B x 4 xyxy -> A x B."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def centre_closeness(a: np.ndarray, b: np.ndarray, max_dist: float) -> np.ndarray:
    """A x B: 1 - (distance between box centres / the taller box's height) / `max_dist`, 0 where
    that is not positive or the heights differ by more than a factor 1.5."""
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    ha, hb = np.clip(a[:, 3] - a[:, 1], 1e-6, None), np.clip(b[:, 3] - b[:, 1], 1e-6, None)
    tall = np.maximum(ha[:, None], hb[None, :])
    d = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=-1) / tall
    ratio = tall / np.minimum(ha[:, None], hb[None, :])
    return np.where(ratio <= 1.5, np.clip(1 - d / max_dist, 0, None), 0.0)


def greedy_match(score: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col), best score first, each row and column used once, score >= threshold."""
    pairs = []
    if score.size == 0:
        return pairs
    order = np.argsort(-score, axis=None, kind="stable")
    rows, cols = set(), set()
    for flat in order:
        r, c = divmod(int(flat), score.shape[1])
        if score[r, c] < threshold:
            break
        if r in rows or c in cols:
            continue
        rows.add(r)
        cols.add(c)
        pairs.append((r, c))
    return pairs


@dataclass
class _Track:
    tid: int
    class_id: int
    box: np.ndarray  # xyxy at the last match
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # xyxy change per frame
    hits: int = 1

    def predict(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.last_frame)

    def update(self, box: np.ndarray, frame: int) -> None:
        dt = max(frame - self.last_frame, 1)
        v = (box - self.box) / dt
        self.velocity = v if self.hits == 1 else 0.6 * v + 0.4 * self.velocity
        self.box = box.astype(np.float64)
        self.last_frame = frame
        self.hits += 1


class Tracker:
    """Assigns `track_id` to each frame's instances of one stream (call in frame order)."""

    def __init__(
        self,
        *,
        high: float = 0.5,
        match_iou: float = 0.3,
        low_match_iou: float = 0.5,
        max_age: int = 30,
        duplicate_iou: float = 0.6,
        centre_dist: float = 0.5,
    ):
        self.high = high
        self.centre_dist = centre_dist  # 0: off; else the most centre distance, in box heights
        self.duplicate_iou = duplicate_iou  # an unmatched detection this much over a matched one is its duplicate
        self.match_iou = match_iou
        self.low_match_iou = low_match_iou
        self.max_age = max_age
        self.tracks: list[_Track] = []
        self._next_id = 1
        self.frame = -1

    @property
    def started(self) -> int:
        """Tracks started so far (IDs handed out)."""
        return self._next_id - 1

    def update(self, inst: Instances, frame_index: int | None = None) -> Instances:
        self.frame = self.frame + 1 if frame_index is None else frame_index
        f = self.frame
        self.tracks = [t for t in self.tracks if f - t.last_frame <= self.max_age]
        ids = np.zeros(len(inst), np.int64)
        boxes = inst.xyxy.astype(np.float64)
        high = np.flatnonzero(inst.score >= self.high)
        low = np.flatnonzero(inst.score < self.high)
        free = list(range(len(self.tracks)))
        for dets, thr in ((high, self.match_iou), (low, self.low_match_iou)):
            if not len(dets) or not free:
                continue
            pred = np.array([self.tracks[t].predict(f) for t in free])
            iou = iou_matrix(pred, boxes[dets])
            same = np.array([self.tracks[t].class_id for t in free])[:, None] == inst.class_id[dets][None, :]
            iou = np.where(same, iou, 0.0)
            taken, used = set(), set()
            # DeepSORT's matching cascade: tracks seen in the last frame first, then by how long unseen,
            # so a track that was lost for a while (a second opinion's) cannot take over a live one's object
            age = np.array([f - self.tracks[t].last_frame for t in free])
            for a in np.unique(age):
                rows = np.flatnonzero(age == a)
                cols = np.array([c for c in range(len(dets)) if c not in used], np.int64)
                if not len(cols):
                    break
                for r, c in greedy_match(iou[np.ix_(rows, cols)], thr):
                    r, c = int(rows[r]), int(cols[c])
                    track = self.tracks[free[r]]
                    track.update(boxes[dets[c]], f)
                    ids[dets[c]] = track.tid
                    taken.add(r)
                    used.add(c)
            free = [t for k, t in enumerate(free) if k not in taken]
        rest = np.array([d for d in high if ids[d] == 0], np.int64)
        if len(rest) and (ids > 0).any():  # a duplicate of an object matched this frame takes no free track
            over = iou_matrix(boxes[rest], boxes[ids > 0]).max(axis=1)
            rest = rest[over < self.duplicate_iou]
        if self.centre_dist > 0 and len(rest) and free:
            pred = np.array([self.tracks[t].predict(f) for t in free])
            close = centre_closeness(pred, boxes[rest], self.centre_dist)
            same = np.array([self.tracks[t].class_id for t in free])[:, None] == inst.class_id[rest][None, :]
            for r, c in greedy_match(np.where(same, close, 0.0), 1e-9):
                track = self.tracks[free[r]]
                track.update(boxes[rest[c]], f)
                ids[rest[c]] = track.tid
        matched = boxes[ids > 0]
        for d in high:  # new objects start from confident detections only
            if ids[d] == 0 and not (len(matched) and iou_matrix(boxes[d : d + 1], matched).max() >= self.duplicate_iou):
                self.tracks.append(_Track(self._next_id, int(inst.class_id[d]), boxes[d], f))
                ids[d] = self._next_id
                self._next_id += 1
        ids[ids == 0] = NO_TRACK  # a low-score detection that continues no track, or a duplicate
        inst.track_id = ids
        return inst


class SemanticSmoother:
    """Majority vote per pixel over the last `frames` group maps of one stream; measures flicker."""

    def __init__(self, frames: int = 3) -> None:
        self.frames = frames
        self._history: deque[np.ndarray] = deque(maxlen=max(frames, 1))
        self._last: np.ndarray | None = None
        self.flicker_sum = 0.0
        self.flicker_n = 0

    def smooth(self, group_map: np.ndarray) -> np.ndarray:
        """The smoothed map (the input itself when smoothing is off or the size changed)."""
        if self._history and self._history[-1].shape != group_map.shape:
            self._history.clear()
        self._history.append(group_map)
        if self.frames <= 1 or len(self._history) < 3:
            return group_map
        return majority(list(self._history)[-self.frames :])

    def measure(self, shown: np.ndarray) -> None:
        """Flicker: share of pixels whose group differs from the previous frame's (as shown)."""
        if self._last is not None and self._last.shape == shown.shape:
            self.flicker_sum += float(np.count_nonzero(self._last != shown)) / shown.size
            self.flicker_n += 1
        self._last = shown

    @property
    def flicker(self) -> float | None:
        return self.flicker_sum / self.flicker_n if self.flicker_n else None


def majority(maps: list[np.ndarray]) -> np.ndarray:
    """Per-pixel most frequent value of several uint8 maps; ties go to the newest map."""
    newest = maps[-1]
    if len(maps) == 3:
        a, b, c = maps
        # c unless a and b agree against it
        return np.where((a == b) & (b != c), a, c)
    stack = np.stack(maps)
    best = newest.copy()
    best_count = (stack == newest).sum(0)
    for m in maps[:-1]:
        count = (stack == m).sum(0)
        better = count > best_count
        best[better] = m[better]
        best_count = np.maximum(best_count, count)
    return best
