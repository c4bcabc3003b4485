"""The data that flows through the pipeline: frames, batches and results.

Results are plain numpy arrays with their shapes checked on construction, so a
decoder that builds a wrong one fails where the mistake is, not in a sink.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

# Stages in the order a frame passes them. A frame's stamp for a stage is the
# perf_counter_ns() at which that stage finished with it; the stage's latency is
# the gap to the previous stamp, so the stages tile the end-to-end latency exactly
# (waiting in a queue counts to the stage that waited).
STAGES = (
    "decode",  # capture -> decoded image in hand
    "queue",  # decoded -> taken by the batcher
    "batch_wait",  # taken -> batch closed (waiting for batch-mates)
    "preprocess",
    "infer",
    "postprocess",
    "overlay",  # includes waiting for the overlay thread
    "sink",  # overlay done -> written by the last sink
)


@dataclass(eq=False)
class Frame:
    """One decoded image of one stream, with its timestamps and, later, its results."""

    stream_id: str
    seq: int  # 0-based position in its stream, counting every decoded frame
    pts: float  # presentation time in seconds from the stream's start
    image_bgr: np.ndarray  # H x W x 3 uint8
    capture_ns: int  # perf_counter_ns() clock: when the frame was captured (or read)
    stamps: dict[str, int] = field(default_factory=dict)
    semantic: SemanticResult | None = None
    instances: Instances | None = None
    overlay_bgr: np.ndarray | None = None  # the image with its results drawn (when a sink shows pixels)
    truth: object | None = None  # GroundTruth from sources that know it (synthetic)
    events: list[Event] = field(default_factory=list)  # what the analytics stage raised on this frame
    analytics: FrameAnalytics | None = None  # the analytics stage's per-frame view (None: stage off)
    # the sinks' bookkeeping: sinks still to handle this frame, when one last wrote it, and
    # (sink index, reason) of the first sink (in config order) that did not write it
    sinks_pending: int = field(default=0, repr=False)
    written_ns: int | None = field(default=None, repr=False)
    sink_drop: tuple[int, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        img = self.image_bgr
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image_bgr must be HxWx3 uint8, got {img.dtype} {img.shape}")

    @property
    def size_wh(self) -> tuple[int, int]:
        return self.image_bgr.shape[1], self.image_bgr.shape[0]

    def stamp(self, stage: str, t_ns: int | None = None) -> None:
        """Mark the end of `stage` for this frame (now, unless `t_ns` is given)."""
        self.stamps[stage] = time.perf_counter_ns() if t_ns is None else t_ns

    def stage_ms(self) -> dict[str, float]:
        """Latency of each stage this frame finished, in ms."""
        out = {}
        prev = self.capture_ns
        for stage in STAGES:
            t = self.stamps.get(stage)
            if t is None:
                break
            out[stage] = (t - prev) / 1e6
            prev = t
        return out

    def end_to_end_ms(self) -> float:
        return (self.stamps["sink"] - self.capture_ns) / 1e6


@dataclass
class SemanticResult:
    """Per-pixel classes of one frame, at the frame's resolution.

    `label_map` holds indices into `labels`; `group_map` holds 1-based indices into
    `group_names` (0 = no group), the classes the overlay draws (road, lane, ...).
    """

    label_map: np.ndarray  # H x W uint8
    labels: list[str]
    group_map: np.ndarray  # H x W uint8
    group_names: list[str]
    # the group map at the model's resolution (letterbox padding cut away), when it was
    # smaller: the overlay upsamples colours from it smoothly, smoothing votes on it cheaply
    small_group_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.label_map.ndim != 2 or self.label_map.dtype != np.uint8:
            raise ValueError(f"label_map must be HxW uint8, got {self.label_map.dtype} {self.label_map.shape}")
        if self.group_map.shape != self.label_map.shape or self.group_map.dtype != np.uint8:
            raise ValueError(
                f"group_map must be uint8 of shape {self.label_map.shape}, got {self.group_map.dtype} {self.group_map.shape}"
            )

    def mask(self, group: str) -> np.ndarray:
        """Boolean H x W mask of one group."""
        return self.group_map == (self.group_names.index(group) + 1)

    @property
    def masks(self) -> dict[str, np.ndarray]:
        return {name: self.mask(name) for name in self.group_names}

    def group_fractions(self) -> dict[str, float]:
        """Share of the frame's pixels in each group."""
        n = len(self.group_names) + 1
        # OpenCV's histogram: 3x numpy's bincount on a 1280x720 map (0.5 ms against 1.4)
        counts = cv2.calcHist([np.ascontiguousarray(self.group_map)], [0], None, [n], [0, n]).ravel()
        total = max(self.group_map.size, 1)
        return {name: float(counts[i + 1]) / total for i, name in enumerate(self.group_names)}


NO_TRACK = -1  # track_id of a detection that belongs to no track (yet)


class MaskCrops:
    """K instance masks as the decoder makes them: a bool crop per instance and where its box
    starts in the frame. `Instances.masks` pastes them into K x H x W frame-size masks the first
    time it is read, so a run in which nothing reads them (no overlay drawn, no jsonl, a Python
    consumer that does not ask) never makes them: megabytes per frame (docs/python-api.md)."""

    def __init__(self, size_wh: tuple[int, int], origins_xy: np.ndarray, crops: list[np.ndarray]) -> None:
        if len(origins_xy) != len(crops) or any(c.dtype != bool or c.ndim != 2 for c in crops):
            raise ValueError("MaskCrops: one 2-D bool crop per origin")
        self.size_wh = size_wh
        self.origins_xy = np.asarray(origins_xy, np.int64).reshape(-1, 2)
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index) -> MaskCrops:
        idx = np.atleast_1d(np.arange(len(self))[index])
        return MaskCrops(self.size_wh, self.origins_xy[idx], [self.crops[i] for i in idx])

    def paste(self) -> np.ndarray:
        """K x H x W bool at the frame's size."""
        w, h = self.size_wh
        masks = np.zeros((len(self), h, w), bool)
        for k, ((x0, y0), crop) in enumerate(zip(self.origins_xy, self.crops, strict=True)):
            ch, cw = crop.shape
            masks[k, y0 : y0 + ch, x0 : x0 + cw] = crop
        return masks


@dataclass
class Instances:
    """Detected objects of one frame, in the frame's pixel coordinates.

    Like supervision's Detections: parallel arrays, sliceable by index or boolean mask.
    """

    xyxy: np.ndarray  # K x 4 float32
    masks: np.ndarray  # K x H x W bool; given as MaskCrops, made when first read
    class_id: np.ndarray  # K int32, index into the model's labels
    score: np.ndarray  # K float32
    labels: list[str]  # K class names
    groups: list[str | None]  # K overlay groups (car, person, ...) or None
    track_id: np.ndarray | None = None  # K int64, filled by a tracker; NO_TRACK: in no track (yet)

    def __post_init__(self) -> None:
        k = len(self.xyxy)
        if self.xyxy.shape != (k, 4):
            raise ValueError(f"xyxy must be Kx4, got {self.xyxy.shape}")
        if isinstance(self.masks, MaskCrops):
            if len(self.masks) != k:
                raise ValueError(f"masks must hold {k} crops, got {len(self.masks)}")
            self.__dict__["_crops"] = self.__dict__.pop("masks")  # `masks` is made when first read
        elif self.masks.ndim != 3 or self.masks.shape[0] != k or self.masks.dtype != bool:
            raise ValueError(f"masks must be K x H x W bool with K={k}, got {self.masks.dtype} {self.masks.shape}")
        for name, arr in (("class_id", self.class_id), ("score", self.score)):
            if arr.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},), got {arr.shape}")
        if len(self.labels) != k or len(self.groups) != k:
            raise ValueError(f"labels and groups must have {k} entries")
        if self.track_id is not None and self.track_id.shape != (k,):
            raise ValueError(f"track_id must have shape ({k},), got {self.track_id.shape}")

    @classmethod
    def empty(cls, size_wh: tuple[int, int]) -> Instances:
        w, h = size_wh
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            masks=np.zeros((0, h, w), bool),
            class_id=np.zeros(0, np.int32),
            score=np.zeros(0, np.float32),
            labels=[],
            groups=[],
        )

    def __getattr__(self, name: str):
        crops = self.__dict__.get("_crops")
        if name != "masks" or crops is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.__dict__["masks"] = masks = crops.paste()  # once; two threads at once paste the same
        return masks

    def __len__(self) -> int:
        return len(self.xyxy)

    def mask_areas(self) -> np.ndarray:
        """K int64: each mask's pixel count at the frame's size, read from the crops when the
        frame-size masks were not made (a JSONL sink then never makes them: 5 ms a 1280x720 frame)."""
        crops = self.__dict__.get("_crops") if "masks" not in self.__dict__ else None
        if crops is not None:
            return np.array([np.count_nonzero(c) for c in crops.crops], np.int64)
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def __getitem__(self, index) -> Instances:
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        crops = self.__dict__.get("_crops") if "masks" not in self.__dict__ else None
        return Instances(
            xyxy=self.xyxy[idx],
            masks=crops[idx] if crops is not None else self.masks[idx],
            class_id=self.class_id[idx],
            score=self.score[idx],
            labels=[self.labels[i] for i in idx],
            groups=[self.groups[i] for i in idx],
            track_id=None if self.track_id is None else self.track_id[idx],
        )


@dataclass
class Event:
    """An edge-triggered happening (streamseg.analytics): `enter`, `exit`, `dwell`, `cross`,
    `intrusion_start`, `intrusion_end`; timed by the stream's pts, never by the wall clock."""

    type: str
    stream: str
    seq: int  # when it happened: a debounced change's first frame (metrics.confirmed_seq: the frame that raised it)
    pts_s: float  # that frame's pts
    track_id: int | None
    label: str
    zone: str  # zone, line, or "ego_corridor"
    metrics: dict = field(default_factory=dict)  # dwell_s, direction, distance_rows, distance_m, ttc_s, ...

    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "stream": self.stream,
            "seq": self.seq,
            "pts_s": round(self.pts_s, 6),
            "track_id": self.track_id,
            "label": self.label,
            "zone": self.zone,
            "metrics": self.metrics,
        }


@dataclass
class InPath:
    """The closest object in the ego corridor on one frame."""

    index: int  # into the frame's instances
    track_id: int | None
    label: str
    distance_rows: int  # image rows from its ground contact to the frame's bottom
    distance_m: float | None = None  # on flat ground, with a camera model
    ttc_s: float | None = None  # time to contact from the distance's change over pts


@dataclass
class FrameAnalytics:
    """What the analytics stage saw on one frame, beside its events."""

    zones: dict[str, np.ndarray] = field(default_factory=dict)  # zone -> K bool: instance inside (debounced where tracked)
    corridor: np.ndarray | None = None  # H' x W' bool (analysis resolution), or None when off
    in_path: InPath | None = None
    intruders: np.ndarray | None = None  # K bool: tracked instances in an intrusion
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # zone -> label -> instances inside
    shapes: dict[str, np.ndarray] = field(default_factory=dict)  # polygon zones and lines, N x 2 frame pixels


@dataclass(eq=False)
class EngineWork:
    """One engine's part of a batch in flight: from submit to decoded results."""

    task: str  # semantic | instance
    transforms: list  # one ResizeTransform per frame (frame <-> model coordinates)
    ticket: object = None  # the engine's handle between submit and collect
    outputs: dict[str, np.ndarray] | None = None  # raw engine outputs, once collected


@dataclass(eq=False)
class Batch:
    """Frames the batcher grouped for one engine call, possibly from several streams, and the
    work in flight for them: one EngineWork per engine, in the order the engines run."""

    frames: list[Frame]
    work: list[EngineWork] = field(default_factory=list)
    started: object = None  # the engines' jobs while they run on their workers (cpu.Started)

    def __len__(self) -> int:
        return len(self.frames)
