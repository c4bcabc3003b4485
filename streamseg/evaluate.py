"""Accuracy of the models through the pipeline's own pre/postprocessing.

Ground truth travels with each frame (`Frame.truth`): from the synthetic source, or from
label PNGs next to an `images://` source. Metrics, accumulated over all frames:

- semantic: IoU per group (intersection and union summed over the dataset); the instance
  model's groups are graded the same way too (the union of a frame's instance masks per group),
  so label sets without instance ids (CamVid-like) grade it;
- `merge` renames groups on both sides before grading (`lane=road`: datasets label lane
  paint as road, while a lane head paints over the drivable area);
- instance: mask AP50 per group (COCO-style 101-point interpolation; predictions matched
  greedily by score to the unmatched ground truth of their group with mask IoU >= 0.5)
  and the mean mask IoU of matched pairs, over the graded objects: at least `min_area`
  visible pixels (1024 = 32x32, COCO's medium and large) and, where the source knows the
  unoccluded area, at least `min_visibility` (0.5) of the object in view. Objects not
  graded are "ignore" regions: predictions on them count neither way. AP50 over every
  object is reported beside it (`ap50_all`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from streamseg.frames import Frame, Instances, SemanticResult
from streamseg.sinks.base import Sink

IGNORE = "ignore"


# semantic ------------------------------------------------------------------------------
class SemanticMeter:
    """IoU per group, intersections and unions summed over the dataset. `merge` renames groups
    on both sides before grading ({"lane": "road"}: a lane head's paint counts as the road a
    dataset labels under it)."""

    def __init__(self, merge: dict[str, str] | None = None) -> None:
        self.merge = dict(merge or {})
        self.inter: dict[str, int] = {}
        self.union: dict[str, int] = {}
        self.frames = 0

    def add(self, pred: SemanticResult, gt_names: np.ndarray, gt_labels: list[str]) -> None:
        """`gt_names`: H x W indices into `gt_labels` (group names, or 'ignore')."""
        self.add_masks({g: pred.group_map == gi for gi, g in enumerate(pred.group_names, start=1)}, gt_names, gt_labels)

    def add_masks(self, masks: dict[str, np.ndarray], gt_names: np.ndarray, gt_labels: list[str]) -> None:
        """Grade one frame's predicted H x W masks per group (e.g. the union of its instance masks)."""
        merged: dict[str, np.ndarray] = {}
        for group, m in masks.items():
            name = self.merge.get(group, group)
            merged[name] = m if name not in merged else (merged[name] | m)
        labels = [self.merge.get(lab, lab) for lab in gt_labels]
        valid = np.ones(gt_names.shape, bool)
        if IGNORE in labels:
            valid = ~np.array([lab == IGNORE for lab in labels])[gt_names]
        for group, m in merged.items():
            p = m & valid
            g = np.array([lab == group for lab in labels])[gt_names]
            self.inter[group] = self.inter.get(group, 0) + int(np.count_nonzero(p & g))
            self.union[group] = self.union.get(group, 0) + int(np.count_nonzero(p | g))
        self.frames += 1

    def iou(self) -> dict[str, float | None]:
        return {g: (self.inter[g] / self.union[g] if self.union[g] else None) for g in self.inter}


def instance_group_masks(pred: Instances, groups: list[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Per group, the union of the frame's instance masks: an instance model graded as a semantic one
    (CamVid-like sets have car and pedestrian pixels but no instance ids)."""
    out = {g: np.zeros(shape, bool) for g in groups}
    for k, g in enumerate(pred.groups):
        if g in out:
            out[g] |= pred.masks[k]
    return out


# instance --------------------------------------------------------------------------------
@dataclass
class GtInstances:
    boxes: np.ndarray  # G x 4 (x0, y0, x1, y1), exclusive max
    groups: list[str]
    areas: np.ndarray  # G
    pixels: list[np.ndarray]  # flat pixel indices per instance
    visibility: np.ndarray | None = None  # G: visible / unoccluded area, when the source knows it
    # G: a region of the group's pixels without instance ids (Cityscapes' car groups, COCO's
    # iscrowd): never a miss; a prediction inside one (intersection / prediction area >= the
    # threshold, as COCO measures crowds) counts neither way
    crowd: np.ndarray | None = None


def gt_instances(
    instance_map: np.ndarray,
    label_map: np.ndarray,
    labels: list[str],
    groups: set[str],
    full_areas: dict[int, int] | None = None,
) -> GtInstances:
    """Ground-truth objects of the given groups from an instance-id map (0 = none).
    With `full_areas` (instance id -> unoccluded area) each object also gets its visibility."""
    flat = instance_map.ravel()
    order = np.argsort(flat, kind="stable")
    ids, starts = np.unique(flat[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    w = instance_map.shape[1]
    boxes, names, areas, pixels, vis = [], [], [], [], []
    lab_flat = label_map.ravel()

    def add(pix: np.ndarray, name: str, visibility: float) -> None:
        ys, xs = pix // w, pix % w
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        names.append(name)
        areas.append(len(pix))
        pixels.append(pix)
        if full_areas is not None:
            vis.append(visibility)
    for i, a, b in zip(ids, starts, ends, strict=True):
        if i == 0:
            continue
        pix = order[a:b]
        name = labels[int(np.bincount(lab_flat[pix]).argmax())]
        if name not in groups:
            continue
        add(pix, name, min(1.0, len(pix) / max(full_areas.get(int(i), len(pix)), 1)) if full_areas is not None else 1.0)
    crowd = [False] * len(names)
    if len(ids) and ids[0] == 0:  # pixels of a group that no instance holds
        pix0 = order[starts[0] : ends[0]]
        lab0 = lab_flat[pix0]
        for li, name in enumerate(labels):
            if name not in groups:
                continue
            pix = pix0[lab0 == li]
            if not len(pix):
                continue
            add(pix, name, 1.0)
            crowd.append(True)
    return GtInstances(
        np.array(boxes, np.int64).reshape(-1, 4),
        names,
        np.array(areas, np.int64),
        pixels,
        np.array(vis, np.float64) if full_areas is not None else None,
        np.array(crowd, bool),
    )


def mask_iou_matrix(pred: Instances, gt: GtInstances, shape: tuple[int, int]) -> np.ndarray:
    """K x G mask IoU, computed only where boxes overlap."""
    k, g = len(pred), len(gt.groups)
    out = np.zeros((k, g), np.float64)
    if not k or not g:
        return out
    w = shape[1]
    pred_area = pred.masks.reshape(k, -1).sum(1)
    for j in range(g):
        gx0, gy0, gx1, gy1 = gt.boxes[j]
        ys, xs = gt.pixels[j] // w, gt.pixels[j] % w
        for i in range(k):
            px0, py0, px1, py1 = pred.xyxy[i]
            if px1 <= gx0 or px0 >= gx1 or py1 <= gy0 or py0 >= gy1 or pred_area[i] == 0:
                continue
            inter = int(np.count_nonzero(pred.masks[i][ys, xs]))
            crowd = gt.crowd is not None and gt.crowd[j]
            out[i, j] = inter / pred_area[i] if crowd else inter / (pred_area[i] + gt.areas[j] - inter)
    return out


def ap_101(scores: list[float], tp: list[bool], n_gt: int) -> float | None:
    """COCO-style average precision from scored detections (101 recall points)."""
    if n_gt == 0:
        return None
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.asarray(tp, bool)[order]
    ctp, cfp = np.cumsum(hits), np.cumsum(~hits)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # make it monotone
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


class _APCounter:
    """Scored matches per group for one choice of which objects are graded."""

    def __init__(self, groups: list[str], iou_threshold: float) -> None:
        self.iou_threshold = iou_threshold
        self.scores: dict[str, list[float]] = {g: [] for g in groups}
        self.tp: dict[str, list[bool]] = {g: [] for g in groups}
        self.n_gt = dict.fromkeys(groups, 0)
        self.matched_iou: dict[str, list[float]] = {g: [] for g in groups}

    def add(self, group: str, pi: list[int], gi: list[int], ignored: set[int], scores, ious: np.ndarray) -> None:
        self.n_gt[group] += len(gi) - len(ignored)
        taken: set[int] = set()
        for i in sorted(pi, key=lambda i: -float(scores[i])):
            best, best_iou = None, self.iou_threshold
            for j in gi:  # best unmatched graded object first, then ignore regions
                if j in taken or j in ignored:
                    continue
                if ious[i, j] >= best_iou:
                    best, best_iou = j, ious[i, j]
            if best is not None:
                taken.add(best)
                self.scores[group].append(float(scores[i]))
                self.tp[group].append(True)
                self.matched_iou[group].append(best_iou)
            elif any(ious[i, j] >= self.iou_threshold for j in ignored):
                continue  # on an object not graded: counts neither way
            else:
                self.scores[group].append(float(scores[i]))
                self.tp[group].append(False)

    def ap50(self) -> dict[str, float | None]:
        return {g: ap_101(self.scores[g], self.tp[g], self.n_gt[g]) for g in self.n_gt}


class InstanceMeter:
    """Mask AP50 over the graded objects (`ap50`) and over every object (`ap50_all`).

    Graded: at least `min_area` visible pixels and, where the source knows how much of an
    object is hidden, at least `min_visibility` of it in view. KITTI's "moderate" and
    CityPersons' "reasonable" subsets draw the same kind of line: a sliver of a car seen
    between two others is not what a detector is graded on. Objects not graded are ignore
    regions: a prediction on one counts neither as a hit nor as a false alarm."""

    def __init__(
        self, groups: list[str], min_area: int = 100, iou_threshold: float = 0.5, min_visibility: float = 0.0
    ) -> None:
        self.groups = list(groups)
        self.min_area = min_area
        self.min_visibility = min_visibility
        self.graded = _APCounter(self.groups, iou_threshold)
        self.every = _APCounter(self.groups, iou_threshold)
        self.frames = 0

    def add(self, pred: Instances, gt: GtInstances, shape: tuple[int, int]) -> None:
        self.frames += 1
        ious = mask_iou_matrix(pred, gt, shape)
        for group in self.groups:
            gi = [j for j, n in enumerate(gt.groups) if n == group]
            pi = [i for i, n in enumerate(pred.groups) if n == group]
            crowd = {j for j in gi if gt.crowd is not None and gt.crowd[j]}
            ignored = crowd | {
                j
                for j in gi
                if gt.areas[j] < self.min_area or (gt.visibility is not None and gt.visibility[j] < self.min_visibility)
            }
            self.graded.add(group, pi, gi, ignored, pred.score, ious)
            self.every.add(group, pi, gi, crowd, pred.score, ious)

    def summary(self) -> dict:
        g = self.graded
        return {
            "ap50": g.ap50(),
            "matched_mean_iou": {k: (float(np.mean(v)) if v else None) for k, v in g.matched_iou.items()},
            "ground_truth": dict(g.n_gt),
            "predictions": {k: len(v) for k, v in g.scores.items()},
            "min_area": self.min_area,
            "min_visibility": self.min_visibility,
            "ap50_all": self.every.ap50(),
            "ground_truth_all": dict(self.every.n_gt),
        }


# the sink that grades frames as they come out of the pipeline -------------------------------
@dataclass
class EvalResult:
    semantic: SemanticMeter | None
    instance: InstanceMeter | None
    instance_semantic: SemanticMeter | None = None  # the instance model's groups graded per pixel
    merge: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    frames_without_truth: int = 0
    sources: list[str] = field(default_factory=list)
    engines: dict = field(default_factory=dict)  # what ran: card, backend, precision per task

    def summary(self) -> dict:
        out: dict = {"frames": self.frames, "sources": self.sources, "engines": self.engines}
        if self.semantic is not None:
            out["semantic_iou"] = {g: (round(v, 4) if v is not None else None) for g, v in self.semantic.iou().items()}
        if self.instance_semantic is not None and self.instance_semantic.frames:
            out["instance_semantic_iou"] = {
                g: (round(v, 4) if v is not None else None) for g, v in self.instance_semantic.iou().items()
            }
        if self.merge:
            out["merge"] = dict(self.merge)
        if self.instance is not None and self.instance.frames:
            s = self.instance.summary()
            for key in ("ap50", "ap50_all"):
                s[key] = {g: (round(v, 4) if v is not None else None) for g, v in s[key].items()}
            s["matched_mean_iou"] = {
                g: (round(v, 4) if v is not None else None) for g, v in s["matched_mean_iou"].items()
            }
            out["instance"] = s
        if self.frames_without_truth:
            out["frames_without_truth"] = self.frames_without_truth
        return out


class EvalSink(Sink):
    """Grades each frame against its ground truth; not a file, so nothing is written."""

    name = "eval"
    needs_pixels = False

    def __init__(self, result: EvalResult) -> None:
        super().__init__("eval://")
        self.result = result

    def write_impl(self, frame: Frame) -> None:
        truth = frame.truth
        r = self.result
        if truth is None:
            r.frames_without_truth += 1
            return
        r.frames += 1
        if r.semantic is not None and frame.semantic is not None:
            r.semantic.add(frame.semantic, truth.label_map, truth.labels)
        if frame.instances is None:
            return
        shape = truth.label_map.shape
        inst = frame.instances
        if r.merge:
            inst = replace(inst, groups=[r.merge.get(g, g) if g else g for g in inst.groups])
        if r.instance_semantic is not None:
            groups = sorted({g for g in inst.groups if g} | set(r.instance.groups if r.instance else []))
            r.instance_semantic.add_masks(instance_group_masks(inst, groups, shape), truth.label_map, truth.labels)
        if r.instance is not None and truth.instance_map is not None:
            labels = [r.merge.get(lab, lab) for lab in truth.labels]
            gt = gt_instances(truth.instance_map, truth.label_map, labels, set(r.instance.groups), truth.full_areas)
            r.instance.add(inst, gt, shape)


def evaluate(
    engines: dict,
    sources: list[str],
    *,
    min_area: int = 1024,
    min_visibility: float = 0.5,
    batch: int = 4,
    cache_dir: str | None = "default",
    merge: dict[str, str] | None = None,
) -> EvalResult:
    """Run the pipeline (offline, no overlay) over `sources` and grade every frame.

    `engines`: task -> the typed engine config (`EngineConfig`: card, backend, precision,
    thresholds), used as it is, or a card path (the defaults of a run). `merge`: group
    renames applied to predictions and ground truth before grading (`{"lane": "road"}`).
    `cache_dir`: built engines; "default" the user's cache folder, None build every run."""
    from streamseg.config import EngineConfig, validate_config
    from streamseg.models import load_card
    from streamseg.pipeline import Pipeline

    typed = {t: (ec if isinstance(ec, EngineConfig) else EngineConfig(card=str(ec))) for t, ec in engines.items()}
    merge = dict(merge or {})
    cfg = validate_config(
        {
            "sources": [{"uri": u, "mode": "offline"} for u in sources],
            "engines": {
                **{t: ec.model_dump() for t, ec in typed.items()},
                **({} if cache_dir == "default" else {"cache_dir": cache_dir}),
            },
            "pipeline": {"batch": {"max_size": batch, "max_wait_ms": 0}},
            "overlay": {"enabled": False},
            "tracking": {"enabled": False},  # grade the model's own detections, every one of them
            "metrics": {"progress": False, "summary": False},
        }
    )
    inst_groups = None
    if "instance" in typed:
        inst_groups = list(dict.fromkeys(merge.get(g, g) for g in load_card(typed["instance"].card).groups))
    result = EvalResult(
        SemanticMeter(merge) if "semantic" in typed else None,
        InstanceMeter(inst_groups, min_area, min_visibility=min_visibility) if inst_groups else None,
        instance_semantic=SemanticMeter(merge) if inst_groups else None,
        merge=merge,
        sources=list(sources),
    )
    pipe = Pipeline(cfg, extra_sinks=[EvalSink(result)])
    report = pipe.run().report
    result.engines = {
        t: {k: d.get(k) for k in ("card", "backend", "precision", "inference_precision") if d.get(k) is not None}
        for t, d in report.get("engines", {}).items()
    }
    return result


# analytics events --------------------------------------------------------------------------------
def crossing_seeds(n: int, start: int = 2000, size_wh=(640, 360), fps: float = 15.0, frames: int = 150,
                   near_m: tuple[float, float] = (6.0, 25.0), people: float = 1.0) -> list[int]:
    """The first `n` scene seeds from `start` in which a person steps onto the road within
    `near_m` metres ahead during the first `frames` frames (5 frames clear of either end).
    Training uses seeds 1000-1299 and `streamseg eval`'s defaults 0-4: from 2000 they are unseen."""
    from streamseg.synth.scene import DrivingScene

    out = []
    seed = start
    while len(out) < n:
        scene = DrivingScene(size_wh, fps, seed, people)
        prev: dict[int, bool] = {}
        for i in range(frames):
            now = scene.placements(i)
            if 5 <= i < frames - 5 and any(
                k == "person" and prev.get(o) is False and on and near_m[0] < z < near_m[1]
                for o, (k, _, z, on) in now.items()
            ):
                out.append(seed)
                break
            prev = {o: v[3] for o, v in now.items()}
        seed += 1
    return out


def corridor_half_m(camera: dict, size_wh: tuple[int, int], z: float, width: float = 0.6) -> float | None:
    """Half the ego corridor's width in metres at `z` m ahead, as streamseg.analytics draws it on
    flat ground: `width` of the frame's width at the bottom row, shrinking linearly to the vanishing
    row (on flat ground the horizon, where the analytics' fit of the road's width puts it), so the
    same width in metres at every distance; None where that distance is below the frame or beyond
    the road's end (`far_m`)."""
    w, h = size_wh
    f, hor, cam_h = camera["focal_px"], camera["horizon_row"], camera["height_m"]
    row, end = hor + f * cam_h / z, hor + f * cam_h / camera["far_m"]
    if not end < row <= h - 1:
        return None
    return width * w / 2 * (row - hor) / (h - 1 - hor) * z / f


@dataclass
class _Seen:
    """One person's last state in one stream (ground truth)."""

    inside: bool
    graded: bool


class EventMeter:
    """Precision and recall of persons' `enter` events into a road zone (`kind="enter"`), or of their
    `intrusion_start` into the ego corridor (`kind="intrusion_start"`), against the scene's own
    placements (`GroundTruth.placements`: where each person stands in the world).

    Ground truth: a person in view goes from outside to inside (frame t inside, t-1 not). Inside the
    road: its ground point between the road's edges. Inside the ego corridor: on the road and within
    the corridor's half width (`corridor_half_m`, the analytics' own shape: `corridor_width` of the
    frame at the bottom row, shrinking to where the road ends) of the camera's path, in metres at
    its distance, with the scene's camera (`GroundTruth.camera`). A step is graded when the person's
    visible mask has >= `min_area` pixels and >= `min_visibility` of it is in view at t; events of
    persons not graded are ignore regions, and so are steps of a person whose feet are not in view
    (hidden, behind a thing in front of them, or cut by the frame's edge: bottom row, side columns)
    at any time within `window` frames after: the image cannot show where it stands. A predicted
    event of a track is tied to the person whose pixels its mask covers most (none: a false alarm)
    and timed by its own `seq` (a debounced change's onset); it is a hit when that person has an
    unmatched ground-truth step within `window` frames. An event raised as a track appears already
    inside (within `min_frames` + 1 frames of its first sighting, the person inside then) is an
    appearance, not a step: it counts neither way; so does an unmatched one whose mask is smaller
    than `min_area` (COCO's area ranges ignore such detections)."""

    def __init__(
        self,
        zone: str | None = None,
        group: str = "person",
        window: int = 3,
        min_area: int = 400,
        min_visibility: float = 0.5,
        min_frames: int = 2,
        kind: str = "enter",
        corridor_width: float = 0.6,
    ) -> None:
        if kind not in ("enter", "intrusion_start"):
            raise ValueError(f"EventMeter grades enter or intrusion_start, not {kind!r}")
        self.kind = kind
        self.zone = zone or ("ego_corridor" if kind == "intrusion_start" else "on_road")
        self.group, self.window, self.corridor_width = group, window, corridor_width
        self.min_area, self.min_visibility, self.min_frames = min_area, min_visibility, min_frames
        self.truth: list[tuple[str, int, int, bool]] = []  # (stream, seq, oid, graded)
        self.pred: list[tuple[str, int, int, bool]] = []  # (stream, seq, oid, appearance)
        self._seen: dict[tuple[str, int], _Seen] = {}
        self._first: dict[tuple[str, int], tuple[int, int]] = {}  # (stream, track) -> (first seq, oid)
        self._cut: set[tuple[str, int, int]] = set()  # (stream, oid, seq): its feet out of view
        self.frames = 0

    def add(self, frame: Frame) -> None:
        truth = frame.truth
        if truth is None or truth.placements is None or truth.instance_map is None:
            return
        imap = truth.instance_map
        counts = np.bincount(imap.ravel())
        areas = {o: int(counts[o]) if o < len(counts) else 0 for o in truth.placements}
        inst = frame.instances
        owners: dict[int, tuple[int, str | None, int]] = {}
        if inst is not None and inst.track_id is not None:
            for k, tid in enumerate(inst.track_id):
                if tid >= 0:
                    ids = imap[inst.masks[k]]
                    area = int(ids.size)
                    ids = ids[ids > 0]
                    owners[int(tid)] = (int(np.bincount(ids).argmax()) if ids.size else 0, inst.groups[k], area)
        bottom = set(np.unique(np.concatenate([imap[-1], imap[:, 0], imap[:, -1]])).tolist())
        self.add_truth(
            frame.stream_id,
            frame.seq,
            truth.placements,
            areas,
            truth.full_areas or {},
            bottom,
            owners,
            frame.events,
            lowest_rows(imap, truth.placements),
            truth.camera,
            (imap.shape[1], imap.shape[0]),
            truth.contact_view,
        )

    def add_truth(
        self,
        sid: str,
        seq: int,
        placements: dict,
        areas: dict[int, int],
        full_areas: dict[int, int],
        bottom: set[int],
        owners: dict[int, tuple[int, str | None, int]],
        events: list,
        lowest: dict[int, int] | None = None,
        camera: dict | None = None,
        size_wh: tuple[int, int] | None = None,
        contact_view: dict[int, float] | None = None,
    ) -> None:
        """One frame, reduced: where each object stands, its visible and full areas, the ids on the
        frame's bottom row and side columns, each track's owner (the object its mask covers most),
        group and mask area; with the scene's `camera` and the frame's `size_wh`, each object's lowest
        visible row (`lowest`) says whether its feet are in view (the ego corridor needs the camera),
        and `contact_view` (the share of its ground contact in view) whether enough of them is."""
        self.frames += 1
        for oid, (kind, x, z, on) in placements.items():
            if kind != self.group:
                continue
            area = areas.get(oid, 0)
            graded = area >= self.min_area and area >= self.min_visibility * max(full_areas.get(oid, area), 1)
            if not area or oid in bottom or not _feet_in_view(oid, z, lowest, camera, contact_view):
                self._cut.add((sid, oid, seq))  # where it stands is not in view
            inside = on
            if self.kind == "intrusion_start":
                half = corridor_half_m(camera, size_wh, z, self.corridor_width) if camera and size_wh else None
                inside = on and half is not None and abs(x) <= half
            prev = self._seen.get((sid, oid))
            if prev is not None and inside and not prev.inside:
                self.truth.append((sid, seq, oid, graded))
            self._seen[(sid, oid)] = _Seen(inside, graded)
        for tid, (oid, _, _) in owners.items():
            self._first.setdefault((sid, tid), (seq, oid))
        for e in events:
            if e.type != self.kind or e.zone != self.zone or e.track_id is None or e.track_id not in owners:
                continue
            oid, group, area = owners[e.track_id]
            kind = placements.get(oid, ("",))[0]
            if kind != self.group and group != self.group:
                continue  # a car entering: not what is graded here
            first_seq, _ = self._first[(sid, e.track_id)]
            seen = self._seen.get((sid, oid))
            appearance = seq - first_seq <= self.min_frames and seen is not None and seen.inside
            # as COCO's area ranges: a prediction smaller than graded objects that matches nothing counts neither way
            # matched at the frame the event is timed by (a debounced change's onset), not the one that raised it
            self.pred.append((sid, e.seq, oid if kind == self.group else 0, appearance or area < self.min_area))

    def summary(self) -> dict:
        # an enter is graded only when the person's feet stay in view for the matching window after
        # it (one that steps off the kerb as it leaves the frame at the bottom cannot be seen to)
        self.truth = [
            (sid, seq, oid, g and not any((sid, oid, seq + d) in self._cut for d in range(self.window + 1)))
            for sid, seq, oid, g in self.truth
        ]
        used: set[int] = set()
        tp = fp = ignored = 0
        for sid, seq, oid, appearance in self.pred:
            match = None
            for j, (tsid, tseq, toid, graded) in enumerate(self.truth):
                if j in used or tsid != sid or toid != oid or not oid:
                    continue
                # a step made out of view can be seen only once the feet are back: an event then is
                # that (ignored) step's, not a false alarm
                until = tseq + self.window if graded else self._back_in_view(sid, oid, tseq) + self.window
                if tseq - self.window <= seq <= until:
                    match = j
                    break
            if match is not None:
                used.add(match)
                if self.truth[match][3]:
                    tp += 1
                else:
                    ignored += 1
            elif appearance or (oid and not self._graded_near(sid, oid)):
                ignored += 1
            else:
                fp += 1
        graded = sum(1 for t in self.truth if t[3])
        fn = graded - tp
        return {
            "type": self.kind,
            "zone": self.zone,
            "group": self.group,
            "window_frames": self.window,
            "frames": self.frames,
            "ground_truth": graded,
            "ground_truth_ignored": len(self.truth) - graded,
            "predicted": len(self.pred),
            "hits": tp,
            "false_alarms": fp,
            "misses": fn,
            "ignored_predictions": ignored,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / graded, 4) if graded else None,
        }

    def _back_in_view(self, sid: str, oid: int, seq: int) -> int:
        """The first frame from `seq` on in which the object's ground contact is in view."""
        while (sid, oid, seq) in self._cut:
            seq += 1
        return seq

    def _graded_near(self, sid: str, oid: int) -> bool:
        """Was this person big and visible enough to be graded when last seen?"""
        seen = self._seen.get((sid, oid))
        return seen is not None and seen.graded


def lowest_rows(imap: np.ndarray, placements: dict) -> dict[int, int]:
    """Each placed object's lowest visible row in the instance map (absent: not visible)."""
    ids = [o for o in placements if o > 0]
    if not ids:
        return {}
    mask = np.isin(imap, ids)
    low = np.full(max(ids) + 1, -1, np.int64)
    np.maximum.at(low, imap[mask], np.nonzero(mask)[0])
    return {o: int(low[o]) for o in ids if low[o] >= 0}


CONTACT_IN_VIEW = 0.5  # of an object's ground contact (its silhouette's lowest rows), this much must show


def _feet_in_view(
    oid: int, z: float, lowest: dict[int, int] | None, camera: dict | None, contact_view: dict[int, float] | None = None
) -> bool:
    """The object's visible mask reaches the row where it meets the ground (within a few rows): its
    feet are not behind a thing in front of it; with `contact_view`, at least CONTACT_IN_VIEW of its
    lowest rows show (feet seen only through the gap under a car's body are not in view). Without
    a camera or rows, assumed in view."""
    if contact_view is not None and contact_view.get(oid, 0.0) < CONTACT_IN_VIEW:
        return False
    if lowest is None or camera is None:
        return True
    if oid not in lowest:
        return False
    row = camera["horizon_row"] + camera["focal_px"] * camera["height_m"] / z
    return lowest[oid] >= row - max(2.0, 0.1 * camera["focal_px"] / z)  # ~10 cm of the legs may be hidden


class EventEvalSink(Sink):
    """Grades each frame's analytics events as it leaves the pipeline; writes nothing."""

    name = "eval-events"
    needs_pixels = False

    def __init__(self, *meters: EventMeter) -> None:
        super().__init__("eval-events://")
        self.meters = meters

    def write_impl(self, frame: Frame) -> None:
        for m in self.meters:
            m.add(frame)


def evaluate_events(
    engines: dict,
    sources: list[str],
    analytics: dict | None = None,
    *,
    window: int = 3,
    min_area: int = 400,
    cache_dir: str | None = "engines/cache",
    batch: int = 4,
) -> tuple[dict[str, EventMeter], dict]:
    """Run the pipeline with tracking and analytics (offline, no overlay) over `sources` and grade
    persons' `enter` events into the config's first zone (default `on_road`) and their
    `intrusion_start` into the ego corridor (when it is on) against the scene's placements. Returns
    the meters by event type and the run's report (its `analytics` section holds the stage's CPU per
    frame)."""
    from streamseg.config import EngineConfig, validate_config
    from streamseg.pipeline import Pipeline

    typed = {t: (ec if isinstance(ec, EngineConfig) else EngineConfig(card=str(ec))) for t, ec in engines.items()}
    analytics = analytics or {"zones": [{"name": "on_road", "groups": ["road", "lane"]}]}
    cfg = validate_config(
        {
            "sources": [{"uri": u, "mode": "offline"} for u in sources],
            "engines": {**{t: ec.model_dump() for t, ec in typed.items()}, "cache_dir": cache_dir},
            "pipeline": {"batch": {"max_size": batch, "max_wait_ms": 0}},
            "overlay": {"enabled": False},
            "analytics": analytics,
            "metrics": {"progress": False, "summary": False},
        }
    )
    ac = cfg.analytics
    meters = {}
    if ac.zones:
        meters["enter"] = EventMeter(ac.zones[0].name, window=window, min_area=min_area, min_frames=ac.min_frames)
    if ac.corridor.enabled and "person" in ac.corridor.objects:
        meters["intrusion_start"] = EventMeter(
            window=window,
            min_area=min_area,
            min_frames=ac.min_frames,
            kind="intrusion_start",
            corridor_width=ac.corridor.width,
        )
    report = Pipeline(cfg, extra_sinks=[EventEvalSink(*meters.values())]).run().report
    return meters, report
