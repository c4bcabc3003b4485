"""`synthetic://driving?size=WxH&fps=N&seed=S&frames=N[&loop=K]`: the procedural driving scene.

Each frame carries its ground truth (label map and instance ids), so evaluation,
tests and benchmarks get exact answers at any size, rate and length.

`loop=K` renders the first K frames once, when the source opens, and replays them in a
cycle: rendering costs about 20 ms of CPU per 1280x720 frame, a fifth of the pipeline's
whole budget on 2 cores, so a load sweep over a rendered-on-the-fly source measures the
generator as much as the pipeline. A pre-rendered source costs a copy per frame.
"""

from __future__ import annotations

from streamseg.errors import SourceError
from streamseg.sources.base import GroundTruth, Source, SourceFrame

KNOWN_KEYS = {"size", "fps", "seed", "frames", "loop", "people"}


_last_rendered: dict[tuple, list] = {}


def _rendered(size_wh, fps, seed, n: int, scene) -> list[tuple]:
    """The first `n` frames of a scene, kept for the last scene asked (a benchmark opens the same
    looped source for every run: it renders once per process)."""
    if n == 0:
        return []
    key = (tuple(size_wh), fps, seed, scene.people, n)
    if key not in _last_rendered:
        _last_rendered.clear()
        _last_rendered[key] = [
            (*scene.render(i), scene.full_areas(), scene.placements(i), scene.contact_in_view()) for i in range(n)
        ]
    return _last_rendered[key]


class SyntheticSource(Source):
    scheme = "synthetic"

    def __init__(
        self,
        uri: str,
        size_wh=(1280, 720),
        fps: float = 30.0,
        seed: int = 0,
        frames: int = 300,
        loop: int = 0,
        people: float = 1.0,
    ) -> None:
        super().__init__(uri)
        self.size_wh = size_wh
        self.fps = fps
        self.seed = seed
        self.frame_count = frames
        self.loop = loop  # 0: render every frame; K: replay the first K, rendered at open()
        self.people = people  # scales the pedestrians walking and crossing (DrivingScene's `people`)
        self._i = 0
        self.scene = None
        self._cache: list[tuple] = []

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
            loop = int(query.get("loop", 0))
            people = float(query.get("people", 1))
        except ValueError:
            raise SourceError(f"{uri}: size=WxH, fps, seed, frames, loop and people must be numbers") from None
        if not 0 <= people <= 10:
            raise SourceError(f"{uri}: people scales the scene's pedestrians: 0..10 (1 = the usual scene)")
        if not (16 <= w <= 8192 and 16 <= h <= 8192) or fps <= 0 or frames < 1:
            raise SourceError(f"{uri}: size must be 16..8192 per side, fps > 0, frames >= 1")
        if not 0 <= loop <= 1000:
            raise SourceError(f"{uri}: loop is 0 (render every frame) or 1..1000 frames rendered once and replayed")
        if min(loop, frames) * w * h * 8 > 2 << 30:  # image 3 + labels 1 + instance ids 4 bytes a pixel
            raise SourceError(f"{uri}: loop={loop} at {w}x{h} would hold over 2 GiB of frames; replay fewer")
        return cls(uri, (w, h), fps, seed, frames, loop, people)

    def open(self) -> None:
        from streamseg.synth.scene import DrivingScene

        self.scene = DrivingScene(self.size_wh, self.fps, self.seed, self.people)
        self._i = 0
        self._cache = _rendered(self.size_wh, self.fps, self.seed, min(self.loop, self.frame_count), self.scene)

    def skip(self, n: int) -> int:
        """Pass over the next `n` frames without rendering them (a paced run that fell behind);
        returns how many there were."""
        k = max(0, min(n, self.frame_count - self._i))
        self._i += k
        return k

    def read(self) -> SourceFrame | None:
        if self._i >= self.frame_count:
            return None
        from streamseg.synth.scene import LABELS

        if self._cache:
            img, label, inst, areas, where, view = self._cache[self._i % len(self._cache)]
            img = img.copy()  # downstream stages may draw on it
            truth = GroundTruth(label, inst, LABELS, areas, where, self.scene.camera(), view)
        else:
            img, label, inst = self.scene.render(self._i)
            truth = GroundTruth(
                label,
                inst,
                LABELS,
                self.scene.full_areas(),
                self.scene.placements(self._i),
                self.scene.camera(),
                self.scene.contact_in_view(),
            )
        f = SourceFrame(img, self._i / self.fps, truth=truth)
        self._i += 1
        return f
