"""Run configuration: YAML validated into typed sections, one per pipeline stage.

Unknown keys and bad values are errors naming the key path (`engines.semantic.backend`).
Paths in a config are taken relative to the current directory, like paths on the
command line; a model card's `file` is relative to the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamseg.backends.cache import default_cache_dir
from streamseg.errors import ConfigError

Mode = Literal["auto", "offline", "live", "realtime"]
BackendName = Literal["auto", "onnxruntime", "openvino", "tensorrt", "torch"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReconnectConfig(Section):
    initial_delay_s: float = Field(0.5, gt=0, le=3600, description="First wait before reopening a live source.")
    max_delay_s: float = Field(
        10.0, gt=0, le=3600, description="The wait doubles after each failed attempt, up to this."
    )
    attempts: int | None = Field(None, ge=1, description="Reopen attempts per outage; null = forever.")


class LiveConfig(Section):
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        le=60_000,
        description="Live/realtime: a frame is dropped (reason `late`) only when, taken by the engines, it could no "
        "longer be out within this many ms of its capture (its age plus the pipeline's recent service time). "
        "null = the source's own jitter buffer (latency_ms, RTSP/RTP) plus 4 frame periods of the stream (160 ms at "
        "25 fps, 267 ms at 15 fps; 200 ms when the rate is unknown): a burst of up to 4 frames passes.",
    )


class SourceConfig(Section):
    uri: str = Field(description="Source URI: a file path, images://dir, rtsp://..., ...")
    id: str | None = Field(None, description="Stream id in results and reports; default: cam0, cam1, ...")
    mode: Mode = Field(
        "auto",
        description="offline: block, never drop (files); live: keep newest, drop oldest (cameras); "
        "realtime: a file paced at its own fps, dropping like live. auto picks by source kind.",
    )
    decoder: Literal["auto", "gstreamer", "opencv"] = Field(
        "auto", description="Files: GStreamer when installed (auto), else OpenCV/FFmpeg."
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    latency_ms: int = Field(100, ge=0, le=10_000, description="RTSP/RTP jitter buffer.")
    stall_timeout_s: float = Field(5.0, gt=0, le=3600, description="A live source silent this long is reopened.")
    open_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="A live source must give a frame this soon at start."
    )
    reconnect: ReconnectConfig = ReconnectConfig()
    live: LiveConfig = LiveConfig()


class BatchConfig(Section):
    max_size: int = Field(
        1,
        ge=1,
        le=256,
        description="Most frames per engine call, across streams. 1: live, batch 4 carried no more cameras than "
        "batch 1 in any profile and backend of `bench --streams` (2026-12-07, 2-core VM; fewer in one of four).",
    )
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="Longest wait for batch-mates once a batch holds a frame."
    )


class PipelineConfig(Section):
    batch: BatchConfig = BatchConfig()
    queue_depth: int = Field(8, ge=1, le=10_000, description="Per-stream and per-sink queue length (offline).")
    live_queue_depth: int = Field(
        0,
        ge=0,
        le=10_000,
        description="Per-stream queue length for live/realtime sources; 0 = the frames of the stream's latency budget "
        "(live.max_latency_ms / frame period + 1, at least 2): deep enough for a network burst, while frames the "
        "budget no longer allows are dropped `late` anyway.",
    )
    cv_threads: int = Field(1, ge=0, le=256, description="OpenCV's own thread pool size (0 = the CPU budget).")
    cpu_cores: int = Field(
        0,
        ge=0,
        le=4096,
        description="The CPU budget every thread pool is sized from (0 = the cores this process may use).",
    )
    malloc_tuning: bool = Field(
        True,
        description="Set glibc's malloc for large per-frame arrays (one arena, freed memory kept): without it the "
        "stages fault pages in for memory they just freed, and their latency spikes (streamseg.cpu.tune_malloc).",
    )
    warmup: bool = Field(
        True,
        description="Before any source is read, pass one rendered driving scene per stream size through the engines, "
        "decoders and overlay on their own threads, so the first frames cost what every later one does.",
    )
    engine_schedule: Literal["auto", "sequential", "concurrent"] = Field(
        "auto",
        description="How the engines of one batch share the cores: one after the other with every core each, side by "
        "side on a share each, or auto: both timed at start-up and the faster kept (stated in the report).",
    )
    strict: bool = Field(
        False,
        description="Bad input fails the run (exit 1): a recording that ends before the frames its header announces, "
        "a frame or image that does not decode. Off: each is named in the log and the report, and counted.",
    )


class EngineConfig(Section):
    card: str = Field(description="Path to the model card (engines/*.yaml).")
    backend: BackendName = Field("auto", description="Inference runtime; auto picks the best one present.")
    precision: Precision = Field("fp32", description="Compute precision asked of the backend.")
    threads: int = Field(0, ge=0, le=256, description="Intra-op threads; 0 = from the pipeline's CPU budget.")
    hint: Literal["latency", "throughput"] = Field(
        "latency", description="OpenVINO performance hint: one request fast (latency) or many in parallel (throughput)."
    )
    conf_threshold: float | None = Field(None, ge=0, le=1, description="Instance score threshold (card default).")
    iou_threshold: float | None = Field(None, ge=0, le=1, description="NMS IoU threshold (card default).")
    max_detections: int | None = Field(None, ge=1, le=10_000, description="Instances kept per frame (card default).")
    fuse: bool | None = Field(
        None,
        description="Run the fused graph: resize, colour, normalization, argmax / NMS and mask assembly inside the "
        "engine (models/fuse.py); false = the numpy/OpenCV path; null = the measured default for the backend.",
    )
    nms: Literal["dynamic", "static"] = Field(
        "dynamic",
        description="The fused instance graph's NMS: dynamic (ONNX NonMaxSuppression, its selection gathered), or "
        "static (the same detections with no data-dependent shape after NMS, for a TensorRT that refuses dynamic).",
    )

    @model_validator(mode="after")
    def _tensorrt_topk(self):
        # TensorRT's TopK takes k <= 3840 (models/fuse.py TRT_TOPK_MAX, with its sources)
        if self.backend == "tensorrt" and self.max_detections is not None and self.max_detections > 3840:
            raise ValueError(f"max_detections {self.max_detections} is more than TensorRT's TopK takes (3840)")
        return self


class EnginesConfig(Section):
    semantic: EngineConfig | None = None
    instance: EngineConfig | None = None
    cache_dir: str | None = Field(
        default_factory=lambda: str(default_cache_dir()),
        description="Built engines (OpenVINO blobs, TensorRT plans), sha256-checked; default: $STREAMSEG_CACHE_DIR, "
        "else $XDG_CACHE_HOME/streamseg, else ~/.cache/streamseg (also --cache-dir); null = build every run.",
    )


class OverlayConfig(Section):
    enabled: bool = Field(True, description="Draw masks; off passes frames through unchanged.")
    alpha: dict[str, float] = Field(
        default_factory=lambda: {"road": 0.45, "lane": 0.7, "car": 0.5, "person": 0.55},
        description="Blend weight per group (others use default_alpha).",
    )
    default_alpha: float = Field(0.5, ge=0, le=1)
    colors: dict[str, tuple[int, int, int]] = Field(
        default_factory=dict, description="RGB colour per group, overriding the built-in palette."
    )
    contours: bool = Field(True, description="Outline each instance.")
    labels: bool = Field(True, description="Write class and score beside each instance.")
    hud: bool = Field(True, description="Show fps, end-to-end latency and a per-stage latency bar in the corner.")
    legend: bool = Field(True, description="Name the groups on screen, with their colours, bottom left.")
    semantic_things: bool = Field(
        False,
        description="Also colour the semantic model's car/person pixels when instances are drawn (off: instances only).",
    )
    id_colors: bool = Field(True, description="Colour each tracked instance by its ID (else by its group).")

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, v: dict[str, float]) -> dict[str, float]:
        for k, a in v.items():
            if not 0 <= a <= 1:
                raise ValueError(f"alpha for {k!r} must be within 0..1, got {a}")
        return v


class TrackingConfig(Section):
    enabled: bool = Field(True, description="Give instances IDs that stay with them across frames.")
    high_score: float = Field(0.5, ge=0, le=1, description="Detections at least this sure start or continue tracks.")
    iou: float = Field(0.3, ge=0, le=1, description="Least box IoU between a track's predicted box and a detection.")
    max_age: int = Field(30, ge=1, le=10_000, description="Frames a track survives unseen (short occlusions).")
    centre_dist: float = Field(
        0.5,
        ge=0,
        le=5,
        description="Confident detections IoU left unmatched continue a free track of about the same height whose "
        "predicted box centre is within this many box heights (a walker's thin box jumps); 0 = off.",
    )


class SmoothingConfig(Section):
    frames: int = Field(
        0, ge=0, le=15, description="Majority vote of each pixel's group over this many frames; 0 or 1 = off."
    )


class DensityConfig(Section):
    profiles: list[str] = Field(
        default_factory=lambda: ["640x360@15", "1280x720@10"], description="Camera profiles, WIDTHxHEIGHT@FPS."
    )
    max_streams: int = Field(16, ge=1, le=256, description="Most cameras tried per variant.")
    seconds: float = Field(10.0, gt=0, le=3600, description="Length of each trial.")
    backends: list[Literal["onnxruntime", "openvino", "tensorrt", "auto"]] = Field(
        default_factory=lambda: ["onnxruntime", "openvino"],
        description="Backends of the one-process variant (the others run ONNX Runtime, as a user's loop does).",
    )
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 2, 4],
        description="Batch sizes of the one-process variant: does batching earn its keep?",
    )
    reps: int = Field(
        3, ge=1, le=20, description="Searches per variant, interleaved; density is their median, with the spread."
    )
    bf16: bool = Field(
        True,
        description="Where the CPU has bf16 (streamseg.cpu) and OpenVINO is installed, also the one-process variant "
        "on OpenVINO bf16 at the smallest batch size: another precision (check it with `streamseg eval`), so it is "
        "reported beside the fp32 ratios, not in them.",
    )

    @field_validator("profiles")
    @classmethod
    def _profiles(cls, v: list[str]) -> list[str]:
        for p in v:
            size, _, fps = p.partition("@")
            w, _, h = size.partition("x")
            if not (w.isdigit() and h.isdigit() and fps.replace(".", "", 1).isdigit() and float(fps) > 0):
                raise ValueError(f"profile {p!r}: expected WIDTHxHEIGHT@FPS, e.g. 640x360@15")
        return v


class BenchConfig(Section):
    source: str = Field(
        "synthetic://driving?size=1280x720&fps=30&seed=7",
        description="Where bench frames come from when the config has no sources (any URI).",
    )
    frames: int = Field(150, ge=10, le=1_000_000, description="Frames per throughput run.")
    warmup: int = Field(10, ge=0, le=10_000, description="Frames run once before measuring.")
    reps: int = Field(3, ge=1, le=50, description="Repetitions of every variant (alternating order).")
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 4], description="Pipeline batch sizes to sweep.")
    streams: list[int] = Field(default_factory=lambda: [1, 2], description="Stream counts to sweep.")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="Batcher wait in the sweep.")
    loads: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0, 1.2, 1.5], description="Live source rates, as shares of capacity."
    )
    load_seconds: float = Field(8.0, gt=0, le=3600, description="Length of each live load run.")
    prerender: int = Field(
        0,
        ge=0,
        le=1000,
        description="synthetic:// sources only: render this many frames once and replay them (loop=K), "
        "so the pipeline is measured, not the scene generator (0 = render every frame).",
    )
    sweep_reps: int = Field(3, ge=1, le=20, description="Repetitions of the whole live sweep (spread reported).")
    capacity_search: tuple[float, float] = Field(
        (0.4, 1.2),
        description="Live capacity search: the bracket of source rates, as shares of the offline rate, bisected "
        "for the highest rate at which drops stay <= 1% and e2e p99 <= 3 x the service time S.",
    )
    capacity_steps: int = Field(5, ge=1, le=12, description="Live runs per capacity search (one search per sweep rep).")

    @field_validator("capacity_search")
    @classmethod
    def _bracket(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] < v[1] <= 10:
            raise ValueError(f"capacity_search {list(v)}: expected [low, high] with 0 < low < high <= 10")
        return v

    service_load: float = Field(
        0.1, gt=0, le=0.5, description="Load of the lone-frame run whose e2e p50 is the service time S."
    )
    density: DensityConfig = DensityConfig()


class SinkConfig(Section):
    uri: str = Field(description="Sink URI: out.mp4, results.jsonl, rtsp://:8554/live, rtp://host:port, null://, ...")
    streams: list[str] | None = Field(
        None,
        min_length=1,
        description="Write only these stream ids (null = every stream): e.g. one camera's overlaid video beside a "
        "JSONL of all. A stream that no sink showing pixels takes is not drawn at all.",
    )
    encoder: Literal["auto", "gstreamer", "opencv"] = Field(
        "auto", description="Video files: x264 through GStreamer when installed (auto), else OpenCV's mp4v."
    )
    bitrate_kbps: int = Field(4000, ge=50, le=200_000, description="H.264 bitrate.")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = Field(
        "veryfast", description="x264 speed preset."
    )
    keyframe_interval: int = Field(30, ge=1, le=1000, description="Frames between keyframes.")
    size: str | None = Field(
        None,
        description="H.264 sinks (GStreamer files, RTSP, RTP, display): encode at WIDTHxHEIGHT instead of the frame's "
        "size, e.g. 640x360 (another sink refuses it): "
        "x264's CPU follows the pixels (a 1280x720 frame cost 10.5 ms to encode on 2 cores).",
    )
    fragment_ms: int = Field(
        1000, ge=100, le=60_000, description="Fragmented MP4: at most this much is lost to a crash."
    )
    token: str | None = Field(None, description="http:// preview: every request must carry ?token=THIS.")

    @field_validator("size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None:
            w, _, h = v.partition("x")
            if not (w.isdigit() and h.isdigit() and int(w) >= 16 and int(h) >= 16 and int(w) % 2 == 0 == int(h) % 2):
                raise ValueError(f"size {v!r}: expected WIDTHxHEIGHT, even numbers from 16, e.g. 640x360")
        return v

    @property
    def size_wh(self) -> tuple[int, int] | None:
        return tuple(map(int, self.size.split("x"))) if self.size else None  # type: ignore[return-value]

    max_clients: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="http:// preview: most connections at once, viewers included (32); 503 past it.",
    )
    read_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="http:// preview: a request must arrive whole within this (10 s)."
    )


class MetricsConfig(Section):
    report: str | None = Field(None, description="Where to write the latency report JSON.")
    plot: str | None = Field(
        None, description="Where to write a PNG of per-stage latency over time and its distribution."
    )
    summary: bool = Field(True, description="Print a latency summary table at the end.")
    progress: bool = Field(True, description="Show a progress bar for offline runs on a terminal.")
    prometheus: str | None = Field(
        None,
        description="Serve /metrics (Prometheus) and /stats at HOST:PORT during the run, e.g. 127.0.0.1:9464.",
    )


# analytics (streamseg.analytics) -------------------------------------------------------------
Point = tuple[float, float]


def _normalized(points: list[Point], what: str) -> list[Point]:
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"{what} points are normalized (0..1 of the frame's width and height), got ({x}, {y})")
    return points


class ZoneConfig(Section):
    name: str = Field(min_length=1, description="The zone's name in events, counts and /metrics.")
    polygon: list[Point] | None = Field(
        None, description="A fixed zone: at least 3 (x, y) points in normalized frame coordinates (0..1)."
    )
    groups: list[str] | None = Field(
        None,
        description="A semantic zone: the semantic model's groups (e.g. [road, lane]) that make it up; "
        "it follows the mask frame by frame.",
    )
    streams: list[str] | None = Field(None, description="The streams the zone applies to; null = every stream.")
    dwell_s: float | None = Field(
        None, gt=0, le=86_400, description="Also raise a `dwell` event once a track has been inside this long (pts)."
    )

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.polygon is None) == (self.groups is None):
            raise ValueError(f"zone {self.name!r}: give either `polygon` or `groups`")
        if self.polygon is not None:
            if len(self.polygon) < 3:
                raise ValueError(f"zone {self.name!r}: a polygon needs at least 3 points")
            _normalized(self.polygon, f"zone {self.name!r}:")
        if self.groups is not None and not self.groups:
            raise ValueError(f"zone {self.name!r}: `groups` names at least one group")
        return self


class LineConfig(Section):
    name: str = Field(min_length=1, description="The line's name in `cross` events.")
    points: tuple[Point, Point] = Field(description="The segment's two ends, normalized (0..1).")
    streams: list[str] | None = Field(None, description="The streams the line applies to; null = every stream.")
    margin: float = Field(
        0.01,
        ge=0,
        le=0.5,
        description="A ground point nearer the line than this (share of the frame's width) "
        "keeps its side: jitter at the line raises no crossings.",
    )

    @field_validator("points")
    @classmethod
    def _points(cls, v):
        _normalized(list(v), "line")
        if v[0] == v[1]:
            raise ValueError("a line's two points must differ")
        return v


class CameraModelConfig(Section):
    height_m: float = Field(gt=0, le=100, description="Camera height above flat ground, metres.")
    focal_px: float | None = Field(None, gt=0, description="Focal length in pixels at the frame's width.")
    hfov_deg: float | None = Field(None, gt=1, lt=179, description="Horizontal field of view (instead of focal_px).")
    pitch_deg: float = Field(0.0, ge=-45, le=45, description="Downward tilt of the optical axis, degrees.")

    @model_validator(mode="after")
    def _focal(self):
        if (self.focal_px is None) == (self.hfov_deg is None):
            raise ValueError("camera: give either focal_px or hfov_deg")
        return self


class CorridorConfig(Section):
    enabled: bool = Field(True, description="Watch the ego corridor (the drivable region ahead) for intrusions.")
    groups: list[str] = Field(
        default_factory=lambda: ["road", "lane"],
        description="Semantic groups that are drivable; the corridor is their component at the frame's bottom "
        "centre (a trapezoid when the run has no semantic model or none of these groups).",
    )
    width: float = Field(0.6, gt=0, le=2, description="Corridor width at the frame's bottom, share of the frame width.")
    top: float = Field(
        0.45, ge=0, lt=1, description="Trapezoid fallback: the row (share of the height) where the corridor ends."
    )
    objects: list[str] = Field(
        default_factory=lambda: ["person", "car"], description="Instance groups whose entering is an intrusion."
    )
    camera: CameraModelConfig | None = Field(
        None, description="Flat-ground camera model: distances in metres and time to contact."
    )


class AnalyticsConfig(Section):
    zones: list[ZoneConfig] = Field(default_factory=list, description="Zones watched for enter/exit/dwell.")
    lines: list[LineConfig] = Field(default_factory=list, description="Segments watched for crossings.")
    corridor: CorridorConfig = CorridorConfig()
    objects: list[str] | None = Field(
        None, description="Instance groups that raise zone and line events; null = every group."
    )
    min_score: float = Field(
        0.6,
        ge=0,
        le=1,
        description="Detections less sure than this give no evidence (a track keeps its state through them): "
        "a car the detector half takes for a person does not walk onto the road.",
    )
    enter_on_appear: bool = Field(
        False,
        description="A track first seen inside a zone raises `enter` (true), or its first sighting only sets its "
        "state (false: events are changes seen happening; a track that starts on an object already inside, after "
        "an occlusion or an ID switch, raises nothing). The ego corridor always raises intrusions on appearance.",
    )
    membership: Literal["band", "point"] = Field(
        "band",
        description="band: the share of an instance's ground-contact band (its mask's lowest rows) inside a zone; "
        "point: the bottom-centre point of its box.",
    )
    band: float = Field(0.15, gt=0, le=1, description="The ground-contact band: this share of the mask's height.")
    enter_share: float = Field(0.5, gt=0, le=1, description="Band share at which an instance is inside.")
    exit_share: float = Field(
        0.3, ge=0, le=1, description="Band share at or under which an inside instance is outside (hysteresis)."
    )
    min_frames: int = Field(2, ge=1, le=1000, description="Frames a change must hold before its event (debounce).")
    lost_frames: int = Field(
        15, ge=1, le=10_000, description="A track unseen this many frames leaves its zones (exit, intrusion_end)."
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.exit_share > self.enter_share:
            raise ValueError("exit_share must not exceed enter_share (hysteresis)")
        names = [z.name for z in self.zones] + [ln.name for ln in self.lines] + ["ego_corridor"]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"zone and line names must be unique: {', '.join(sorted(dup))}")
        return self


class Config(Section):
    sources: list[SourceConfig] = Field(default_factory=list)
    pipeline: PipelineConfig = PipelineConfig()
    engines: EnginesConfig = EnginesConfig()
    overlay: OverlayConfig = OverlayConfig()
    tracking: TrackingConfig = TrackingConfig()
    smoothing: SmoothingConfig = SmoothingConfig()
    sinks: list[SinkConfig] = Field(default_factory=list)
    metrics: MetricsConfig = MetricsConfig()
    max_frames: int | None = Field(None, ge=1, description="Stop each source after this many frames.")
    bench: BenchConfig = BenchConfig()
    analytics: AnalyticsConfig | None = Field(
        None, description="Zones, the ego corridor, lines and their events (streamseg.analytics); null = off."
    )

    @field_validator("sources", "sinks", mode="before")
    @classmethod
    def _uri_shorthand(cls, v):
        # `- video.mp4` is short for `- uri: video.mp4`
        if isinstance(v, list):
            return [{"uri": item} if isinstance(item, str) else item for item in v]
        return v

    @field_validator("engines", mode="before")
    @classmethod
    def _card_shorthand(cls, v):
        # `semantic: engines/x.yaml` is short for `semantic: {card: engines/x.yaml}`
        if isinstance(v, dict):
            return {k: {"card": e} if k in ("semantic", "instance") and isinstance(e, str) else e for k, e in v.items()}
        return v


# the command-line flag behind each key path that apply_overrides sets (list indices as *)
FLAGS = {
    "sources.*.uri": "--source",
    "sources.*.mode": "--mode",
    "sinks.*.uri": "--sink",
    "engines.semantic.card": "--semantic",
    "engines.instance.card": "--instance",
    "engines.semantic.backend": "--backend",
    "engines.instance.backend": "--backend",
    "engines.semantic.precision": "--precision",
    "engines.instance.precision": "--precision",
    "max_frames": "--max-frames",
    "metrics.report": "--report",
    "metrics.plot": "--plot",
}


def _section_at(loc: tuple) -> type[BaseModel] | None:
    """The config section a key path leads to (list indices and dict keys stepped over)."""
    import typing

    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model, todo = None, [field.annotation]
        while todo:  # unwrap Optional[...], list[...], dict[str, ...]
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                model = t
                break
            todo += list(typing.get_args(t))
    return model


def _describe(err: ValidationError, where: str, flags: dict[str, str] | None = None) -> str:
    """One line for all of a validation's errors: each names its key path, or the flag the user
    typed (`flags`); an unknown key names the closest valid one."""
    import difflib

    parts, all_flags = [], True
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        flag = (flags or {}).get(".".join("*" if isinstance(p, int) else str(p) for p in e["loc"]))
        all_flags = all_flags and flag is not None
        if e["type"] == "extra_forbidden":
            section = _section_at(e["loc"][:-1])
            known = list(section.model_fields) if section is not None else []
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1, cutoff=0.5)
            parts.append(f"{path}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else ""))
        elif flag is not None:
            msg = e["msg"][:1].lower() + e["msg"][1:]
            parts.append(f"{flag} {e['input']}: {msg}")
        else:
            parts.append(f"{path}: {e['msg']}")
    return ("" if all_flags else f"{where}: ") + "; ".join(parts)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a YAML config; None gives the defaults."""
    if path is None:
        return Config()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}:{at} not valid YAML: {getattr(e, 'problem', e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    return validate_config(data, str(p))


def validate_config(data: dict, where: str = "config", flags: dict[str, str] | None = None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, where, flags)) from None


def apply_overrides(
    cfg: Config,
    *,
    sources: list[str] | None = None,
    sinks: list[str] | None = None,
    semantic: str | None = None,
    instance: str | None = None,
    backend: str | None = None,
    precision: str | None = None,
    max_frames: int | None = None,
    report: str | None = None,
    plot: str | None = None,
    mode: str | None = None,
) -> Config:
    """Command-line overrides: a repeated --source/--sink replaces the config's list.

    A config that plots (`metrics.plot`) plots beside the report the user moved: `--report
    DIR/r.json` puts the plot at DIR/r.png, unless `plot` (--plot) names its own place.
    """
    data = cfg.model_dump()
    if sources:
        data["sources"] = [{"uri": s} for s in sources]
    if mode:
        for s in data["sources"]:
            s["mode"] = mode
    if sinks:
        data["sinks"] = [{"uri": s} for s in sinks]
    for task, card in (("semantic", semantic), ("instance", instance)):
        if card:
            data["engines"][task] = {**(data["engines"].get(task) or {}), "card": card}
    for task in ("semantic", "instance"):
        eng = data["engines"].get(task)
        if eng is not None:
            if backend:
                eng["backend"] = backend
            if precision:
                eng["precision"] = precision
    if max_frames is not None:
        data["max_frames"] = max_frames
    if report:
        data["metrics"]["report"] = report
        if data["metrics"]["plot"] and not plot:
            data["metrics"]["plot"] = str(Path(report).with_suffix(".png"))
    if plot:
        data["metrics"]["plot"] = plot
    return validate_config(data, "command line", FLAGS)
