"""The fused graph (models/fuse.py) against today's numpy/OpenCV path: same pixels in, same results out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamseg.models import DECODERS, load_card, open_model
from streamseg.models.card import ModelCard
from streamseg.models.fuse import build_fused, compare_results, core_specs, frames_batch
from streamseg.models.preprocess import Preprocessor
from tests import models_factory as mf
from tests.conftest import CARDS, ROOT, UDACITY, needs_shared_models

BACKENDS = ["onnxruntime", "openvino"]


def _card(path: Path, size_wh, resize: str, color: str = "rgb", mean=(0, 0, 0), std=(1, 1, 1)) -> ModelCard:
    card = ModelCard.model_validate(
        {
            "name": "red",
            "file": path.name,
            "task": "semantic",
            "format": "semantic-logits",
            "input": {"size_wh": list(size_wh), "resize": resize, "color": color, "mean": mean, "std": std},
            "heads": [{"output": "seg", "labels": [None, "a"]}],
        }
    )
    card._path = path.parent / "card.yaml"
    return card


def _model_input(card: ModelCard, model_path: Path, image: np.ndarray) -> np.ndarray:
    """What the fused graph feeds the model for one frame (the model's input tensor, exposed)."""
    _, outs, meta = core_specs(onnx.load(str(model_path)))
    fused = build_fused(card, model_path, DECODERS[card.format](card, outs, meta)).model
    fused.graph.output.append(onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds, _ = frames_batch([image], card.input.size_wh, card.input.resize)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))["images"]


@pytest.mark.parametrize(
    "dst, resize, src",
    [
        ((64, 48), "stretch", (128, 96)),  # exactly 2x: OpenCV's area-average path
        ((64, 48), "stretch", (100, 75)),
        ((64, 48), "stretch", (64, 48)),  # same size: a copy
        ((50, 37), "stretch", (1280, 720)),
        ((67, 41), "letterbox", (960, 540)),
        ((67, 41), "letterbox", (101, 203)),  # padding left and right
        ((320, 320), "letterbox", (1280, 720)),
        ((320, 320), "letterbox", (960, 540)),
    ],
)
def test_fused_preprocessing_is_bit_exact_with_opencv(tmp_path, dst, resize, src):
    """The graph's integer resize reproduces cv2.resize(INTER_LINEAR) + pad + colour + scale exactly
    (it fails with ONNX's own float Resize, which is off by one grey level on ~6% of pixels)."""
    model = mf.red_logits_model(tmp_path / "red.onnx", size_wh=dst)
    card = _card(model, dst, resize, color="rgb", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.2))
    image = np.random.default_rng(0).integers(0, 256, (src[1], src[0], 3), dtype=np.uint8)
    want, _ = Preprocessor.for_input(card.input)([image])
    np.testing.assert_array_equal(_model_input(card, model, image), want)


def test_a_batch_of_mixed_sizes_runs_one_group_per_size(tiny):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in ((128, 96), (100, 75), (128, 96))]
    with open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=True, resize_in_graph=True) as fused:
        assert fused.fused
        together = fused.run(images)
        alone = [fused.run([im])[0] for im in images]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.label_map, b.label_map)


@pytest.mark.parametrize("in_graph", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_yolo_seg_matches_numpy_nms_filter_and_masks(tmp_path, backend, in_graph):
    """Class-aware NMS, the score threshold, the class filter (ungrouped classes dropped) and
    max_detections, on a model whose outputs are known (tests/models_factory.yolo_case)."""
    det, protos = mf.yolo_case()
    mf.constant_yolo_model(tmp_path / "y.onnx", det, protos, names=["car", "person", "bus"])
    (tmp_path / "y.yaml").write_text(
        "name: y\nfile: y.onnx\ntask: instance\nformat: yolo-seg\n"
        "input: {size_wh: [64, 64], resize: letterbox}\nlabels: from_model\n"
        "groups: {car: [car], person: [person]}\nthresholds: {conf: 0.25, iou: 0.45}\n"
    )
    image = np.zeros((90, 160, 3), np.uint8)
    for max_det in (None, 1):
        with (
            open_model(str(tmp_path / "y.yaml"), backend=backend, threads=1, fuse=False, max_detections=max_det) as a,
            open_model(
                str(tmp_path / "y.yaml"), backend=backend, threads=1, fuse=True, max_detections=max_det,
                resize_in_graph=in_graph,
            ) as b,
        ):
            ref, new = a.run([image, image]), b.run([image, image])
        for r, n in zip(ref, new, strict=True):
            assert list(n.class_id) == list(r.class_id) == ([0, 1] if max_det is None else [0])  # bus: no group
            np.testing.assert_allclose(n.xyxy, r.xyxy, atol=1e-4)
            np.testing.assert_allclose(n.score, r.score, atol=1e-6)
            np.testing.assert_array_equal(n.masks, r.masks)


def test_fuse_false_keeps_todays_path_and_the_default_follows_the_measurement(tiny):
    from streamseg.models.fuse import FUSE_DEFAULT

    with open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=False) as m:
        assert not m.fused and m.describe()["fused"] is False
        assert m.prepare([np.zeros((48, 64, 3), np.uint8)])[0].dtype == np.float32
    for backend in BACKENDS:
        for card, task in (("red.yaml", "semantic"), ("yolo.yaml", "instance")):
            with open_model(str(tiny / card), backend=backend, threads=1) as m:
                assert m.fused is FUSE_DEFAULT[backend][task]
    assert any(FUSE_DEFAULT[b][t] for b in BACKENDS for t in ("semantic", "instance"))  # fused on a CPU backend
    with open_model(str(tiny / "red.yaml"), backend="openvino", threads=1, fuse=True) as m:
        assert m.fused
        feeds, _ = m.prepare([np.zeros((96, 128, 3), np.uint8)])  # resized by OpenCV to the input size
        assert feeds["frames"].dtype == np.uint8 and feeds["frames"].shape == (1, 48, 64, 3)
    with open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=True, resize_in_graph=True) as m:
        feeds, _ = m.prepare([np.zeros((96, 128, 3), np.uint8)])  # the frame itself
        assert feeds["frames"].shape == (1, 96, 128, 3)


def test_config_takes_fuse_per_engine():
    from streamseg.config import EngineConfig

    assert EngineConfig(card="x.yaml").fuse is None
    assert EngineConfig(card="x.yaml", fuse=False).fuse is False


# real models, real footage ---------------------------------------------------------------------
def _udacity(n: int, step: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(UDACITY))
    frames = []
    i = 0
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(f)
        i += 1
    return frames


def _demo(n: int) -> list[np.ndarray]:
    from streamseg.sources import open_source

    with open_source(f"synthetic://driving?size=1280x720&seed=0&frames={n}") as src:
        return [f.image_bgr for f in iter(src.read, None)]


def _agree(card: str, backend: str, frames: list[np.ndarray], in_graph: bool) -> dict:
    with (
        open_model(card, backend=backend, threads=1, fuse=False) as a,
        open_model(card, backend=backend, threads=1, fuse=True, resize_in_graph=in_graph) as b,
    ):
        assert b.fused and b.describe()["resize_in_graph"] is in_graph
        return compare_results(a.task, [a.run([f])[0] for f in frames], [b.run([f])[0] for f in frames])


def _check(task: str, stats: dict) -> None:
    if task == "semantic":
        assert stats["pixels_agree"] >= 0.999, stats
    else:
        assert stats["frames_match"] == stats["frames"], stats
        assert stats["min_mask_iou"] >= 0.99, stats


# in_graph: the GPU graph (frames at capture size); False: OpenCV resizes, the graph does the rest
VARIANTS = [pytest.param(True, id="resize-in-graph"), pytest.param(False, id="host-resize")]


@needs_shared_models
@pytest.mark.skipif(not UDACITY.is_file(), reason="../shared/data/video not present")
@pytest.mark.parametrize("in_graph", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("card", ["twinlitenet-bdd.yaml", "yolov8n-seg-coco.yaml"])
def test_shared_models_fused_agree_with_numpy_on_udacity(backend, card, in_graph):
    """A subset of the clip (benchmarks/fused.py runs all 221 frames)."""
    path = str(CARDS / card)
    _check(load_card(path).task, _agree(path, backend, _udacity(2, 100), in_graph))


@pytest.mark.parametrize("in_graph", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("card", ["synth-semantic.yaml", "synth-instance.yaml"])
def test_bundled_models_fused_agree_with_numpy_on_the_demo_scene_and_udacity(backend, card, in_graph):
    path = str(ROOT / "engines" / card)
    frames = _demo(1) + (_udacity(1, 1) if UDACITY.is_file() else [])
    _check(load_card(path).task, _agree(path, backend, frames, in_graph))
