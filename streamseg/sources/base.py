"""The source interface: `read()` the next decoded frame, as a context manager."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SourceFrame:
    image_bgr: np.ndarray  # H x W x 3 uint8
    pts: float  # seconds from the stream's start
    capture_ns: int | None = None  # perf_counter_ns() clock, when the source knows the capture time
    truth: GroundTruth | None = None  # synthetic sources know every pixel's label


@dataclass
class GroundTruth:
    """Per-pixel truth of a frame: class ids into `labels`, and instance ids (0 = none)."""

    label_map: np.ndarray  # H x W uint8
    instance_map: np.ndarray  # H x W int32
    labels: list[str]
    full_areas: dict[int, int] | None = None  # instance id -> unoccluded in-frame area, when known
    # instance id -> (kind, lateral m, ahead m, on the road) for the cars and persons in view (synthetic)
    placements: dict[int, tuple] | None = None
    camera: dict | None = None  # the scene's camera: height_m, focal_px, horizon_row, far_m (synthetic)
    contact_view: dict[int, float] | None = None  # instance id -> share of its ground contact in view (synthetic)


class Source:
    """A stream of frames. `open()` fails with a SourceError naming the problem; `read()` returns
    None at the end of the stream; decode failures the source skipped are counted in `decode_errors`
    and, where the source can name them (the image file that failed), said in `bad_input`."""

    live = False  # a camera or network stream (drop old frames) rather than a recording
    scheme = ""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fps: float | None = None
        self.size_wh: tuple[int, int] | None = None
        self.frame_count: int | None = None  # when known in advance
        self.decode_errors = 0
        # how long the source holds a frame after its capture before read() can give it (a jitter
        # buffer's latency): part of every frame's age, so part of a live stream's latency budget
        self.delivery_ms = 0.0
        self.bad_input: list[str] = []  # what was wrong with the input, each named (a file, where it ended)

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> SourceFrame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def cancel(self) -> None:
        """Make a read() blocked on the network or a backoff return soon (the run is stopping)."""

    def paced_in(self, mode: str) -> bool:
        """Whether the pipeline plays this source's frames at their timestamps in `mode` (a
        resolved mode: offline, live or realtime). A recording or the synthetic scene asked for
        `live` or `realtime` behaves like a camera, one frame per 1/fps; a live source is paced
        by itself, and `offline` takes frames as fast as the engines do."""
        return mode in ("live", "realtime") and not self.live

    def describe(self) -> dict:
        from streamseg.uris import redact

        return {
            "uri": redact(self.uri),
            "kind": self.scheme,
            "live": self.live,
            "fps": self.fps,
            "size_wh": list(self.size_wh) if self.size_wh else None,
            "frame_count": self.frame_count,
        }
