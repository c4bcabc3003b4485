"""`synthetic://driving?size=WxH&fps=N&seed=S&frames=N`: the procedural driving scene.

Each frame carries its ground truth (label map and instance ids), so evaluation,
tests and benchmarks get exact answers at any size, rate and length.
"""

from __future__ import annotations

from streamseg.errors import SourceError
from streamseg.sources.base import GroundTruth, Source, SourceFrame

KNOWN_KEYS = {"size", "fps", "seed", "frames"}


class SyntheticSource(Source):
    scheme = "synthetic"

    def __init__(self, uri: str, size_wh=(1280, 720), fps: float = 30.0, seed: int = 0, frames: int = 300) -> None:
        super().__init__(uri)
        self.size_wh = size_wh
        self.fps = fps
        self.seed = seed
        self.frame_count = frames
        self._i = 0
        self.scene = None

    @classmethod
    def from_uri(cls, uri: str, rest: str, query: dict[str, str]) -> SyntheticSource:
        if rest.strip("/") != "driving":
            raise SourceError(f"{uri}: the synthetic source has one scene, synthetic://driving")
        unknown = set(query) - KNOWN_KEYS
        if unknown:
            raise SourceError(
                f"{uri}: unknown parameter(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(KNOWN_KEYS))})"
            )
        try:
            w, h = (int(v) for v in query.get("size", "1280x720").lower().split("x"))
            fps = float(query.get("fps", 30))
            seed = int(query.get("seed", 0))
            frames = int(query.get("frames", 300))
        except ValueError:
            raise SourceError(f"{uri}: size=WxH, fps, seed and frames must be numbers") from None
        if not (16 <= w <= 8192 and 16 <= h <= 8192) or fps <= 0 or frames < 1:
            raise SourceError(f"{uri}: size must be 16..8192 per side, fps > 0, frames >= 1")
        return cls(uri, (w, h), fps, seed, frames)

    def open(self) -> None:
        from streamseg.synth.scene import DrivingScene

        self.scene = DrivingScene(self.size_wh, self.fps, self.seed)
        self._i = 0

    def read(self) -> SourceFrame | None:
        if self._i >= self.frame_count:
            return None
        from streamseg.synth.scene import LABELS

        img, label, inst = self.scene.render(self._i)
        f = SourceFrame(img, self._i / self.fps, truth=GroundTruth(label, inst, LABELS, self.scene.full_areas()))
        self._i += 1
        return f
