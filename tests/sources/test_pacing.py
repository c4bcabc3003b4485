"""`--mode live` on a recording or the synthetic scene plays it like a camera: one frame per 1/fps."""

import json

import pytest

from streamseg.sources.base import Source
from streamseg.sources.file import FileSource
from streamseg.sources.gst import GstSource
from streamseg.sources.images import ImagesSource
from streamseg.sources.synthetic import SyntheticSource
from tests.conftest import run_streamseg

SOURCES = {
    "synthetic": lambda: SyntheticSource("synthetic://driving", fps=15),
    "file": lambda: FileSource("a.mp4", "a.mp4"),
    "images": lambda: ImagesSource("images://d", "d"),
    "camera": lambda: GstSource("v4l2:///dev/video0", "v4l2src ! appsink", live=True),
}


@pytest.mark.parametrize(
    "source, mode, paced",
    [
        ("synthetic", "live", True),
        ("synthetic", "realtime", True),
        ("synthetic", "offline", False),
        ("file", "live", True),
        ("file", "realtime", True),
        ("file", "offline", False),
        ("images", "live", True),
        ("camera", "live", False),  # a camera brings its frames at its own rate
        ("camera", "offline", False),
    ],
)
def test_which_sources_the_pipeline_paces(source, mode, paced):
    src: Source = SOURCES[source]()
    assert src.paced_in(mode) is paced


def test_live_mode_on_the_synthetic_scene_comes_at_its_rate(tiny, tmp_path):
    fps, n = 15, 30  # two seconds of footage
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"sources: [{{uri: 'synthetic://driving?size=160x90&fps={fps}&seed=3&frames={n}', mode: live}}]\n"
        f"engines:\n  semantic: {{card: {tiny / 'red.yaml'}, backend: onnxruntime, threads: 1}}\n"
        f"sinks: [null://]\nmetrics: {{report: {tmp_path / 'r.json'}, progress: false}}\n"
    )
    r = run_streamseg("run", "-c", cfg, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["sources"]["cam0"]["mode"] == "live"
    assert rep["frames"]["in"] == n
    # paced, the last frame is taken (n - 1) / fps after the first, whatever the machine's speed;
    # unpaced, the tiny model took all 30 in 0.33-0.86 s (48-91 frames/s) on this loaded 2-core machine
    assert rep["wall_s"] >= (n - 1) / fps * 0.98, rep["wall_s"]
    assert rep["fps"] <= fps * 1.1, rep["fps"]
    # and a 64x48 model keeps up with 15 frames/s: few drops (the run, unpaced with the demo
    # models, dropped 58% of its frames)
    assert rep["frames"]["out"] >= n - 3, rep["frames"]
