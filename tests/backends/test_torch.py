"""The torch backend (streamseg/backends/torch_backend.py, models/fuse_torch.py) on this machine's CPU:
it agrees with the ONNX Runtime path on the bundled and the shared real models, batches for real,
converts the format fixtures (or says in one line which op it cannot), and its NMS is torchvision's
when torchvision imports and its own otherwise."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from tests.conftest import CARDS, ROOT, SHARED, TWIN, UDACITY, YOLO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("onnx2torch") is None or importlib.util.find_spec("torch") is None,
    reason="the torch extra (torch, onnx2torch) is not installed",
)
FORMATS = SHARED / "models" / "formats"


def _synthetic(n: int, seed: int = 3):
    from streamseg.sources import open_source

    with open_source(f"synthetic://driving?size=1280x720&seed={seed}&frames={n}") as src:
        return [f.image_bgr for f in iter(src.read, None)]


def _udacity(n: int):
    import cv2

    cap = cv2.VideoCapture(str(UDACITY))
    frames = [cap.read()[1] for _ in range(n * 20)][::20]
    return [f for f in frames if f is not None]


def _agreement(card, frames, **torch_kw):
    from streamseg.models import open_model
    from streamseg.models.fuse import compare_results

    with open_model(str(card), backend="onnxruntime") as ref:
        a = [ref.run([f])[0] for f in frames]
    with open_model(str(card), backend="torch", **torch_kw) as m:
        assert m.fused and m.describe()["device"] == "cpu"
        b = [m.run([f])[0] for f in frames]
        return compare_results(m.task, a, b), m.describe()


@pytest.mark.parametrize(
    "card, frames",
    [
        (ROOT / "engines" / "synth-semantic.yaml", "synthetic"),
        (ROOT / "engines" / "synth-instance.yaml", "synthetic"),
        (CARDS / "twinlitenet-bdd.yaml", "udacity"),
    ],
    ids=["synth-semantic", "synth-instance", "twinlitenet"],
)
def test_fused_torch_agrees_with_onnxruntime(card, frames):
    if frames == "udacity" and not (TWIN.is_file() and UDACITY.is_file()):
        pytest.skip("../shared/data not present")
    stats, d = _agreement(card, _synthetic(3) if frames == "synthetic" else _udacity(2))
    if "pixels_agree" in stats:
        assert stats["pixels_agree"] >= 0.999, stats
    else:
        assert stats["instances"] > 0 and stats["unmatched"] == 0 and stats["min_mask_iou"] >= 0.99, stats
        assert d["nms_op"] in ("torch", "torchvision")


@pytest.mark.skipif(not (YOLO.is_file() and UDACITY.is_file()), reason="../shared/data not present")
def test_dynamic_int8_yolov8n_runs_and_mostly_agrees():
    """ONNX Runtime's dynamic INT8 (DynamicQuantizeLinear + ConvInteger) through our two converters.
    Not bit-exact: ORT's own sigmoid rounds differently in the last bit, which flips a few uint8
    activations per layer and grows over 60 layers; the boxes and classes hold, the masks move a little."""
    stats, _ = _agreement(CARDS / "yolov8n-seg-coco.yaml", _udacity(3))
    assert stats["instances"] > 0 and stats["min_mask_iou"] >= 0.8, stats


def test_fp16_runs_the_half_model_with_fp32_io():
    stats, d = _agreement(ROOT / "engines" / "synth-semantic.yaml", _synthetic(2), precision="fp16")
    assert d["precision"] == "fp16" and stats["pixels_agree"] >= 0.999, stats


def test_dynamic_batch_is_one_call_and_equals_single_frames():
    from streamseg.models import open_model

    frames = _synthetic(3, seed=5)
    with open_model(str(ROOT / "engines" / "synth-instance.yaml"), backend="torch") as m:
        x, tr = m.prepare(frames)
        calls = m.engine.calls
        batch = m.engine.infer(x)
        assert m.engine.calls == calls + 1 and batch["count"].shape == (3,)
        for i, f in enumerate(frames):
            one = m.engine.infer(m.prepare([f])[0])
            k = int(one["count"][0])
            assert k == batch["count"][i]
            np.testing.assert_allclose(one["boxes_xyxy"][0, :k], batch["boxes_xyxy"][i, :k], atol=1e-3)
        # the fused graph's contract: its fixed-shape outputs, names and dtypes
        assert {k: (v.dtype, v.shape[1:]) for k, v in batch.items()} == {
            "boxes_xyxy": (np.float32, (100, 4)),
            "scores": (np.float32, (100,)),
            "class_id": (np.int32, (100,)),
            "mask_logits": (np.float32, (100, 90, 160)),
            "count": (np.int32, ()),
        }


@pytest.mark.parametrize(
    "name, error",
    [
        ("yolo11n-seg-random.onnx", None),
        ("yolo26n-sem-random.onnx", None),
        ("yolo26n-seg-e2e-random.onnx", "operation_type='ReduceMax', version=18"),
    ],
)
def test_format_fixtures_convert_or_name_the_missing_op(name, error):
    import onnxruntime as ort
    import torch

    from streamseg.backends.torch_backend import convert
    from streamseg.errors import ModelError

    path = FORMATS / name
    if not path.is_file():
        pytest.skip("../shared/data/models/formats not present")
    if error:
        with pytest.raises(ModelError, match=error) as e:
            convert(path)
        assert "\n" not in str(e.value)
        return
    net, ins, outs = convert(path)
    x = np.random.default_rng(0).random((2, 3, 320, 320), np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(outs, {ins[0]: x})
    with torch.inference_mode():
        got = net(torch.from_numpy(x))
    got = got if isinstance(got, tuple | list) else (got,)
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_allclose(g.numpy().astype(np.float32), r.astype(np.float32), atol=1e-3)


def _random_boxes(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2)) * 200
    wh = rng.random((n, 2)) * 60 + 2
    return np.concatenate([xy, xy + wh], 1).astype(np.float32), rng.random(n).astype(np.float32), rng.integers(0, 3, n)


def test_own_nms_is_the_numpy_decoders_nms():
    import torch

    from streamseg.models.fuse_torch import nms_xyxy
    from streamseg.models.yolo_seg import nms_xyxy as numpy_nms

    boxes, scores, cls = _random_boxes(300)
    got = nms_xyxy(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cls), 0.5).numpy()
    want = numpy_nms(boxes, scores, 0.5, class_id=cls)
    np.testing.assert_array_equal(np.sort(got), np.sort(np.asarray(want)))
    assert list(scores[got]) == sorted(scores[got], reverse=True)


def test_torchvision_nms_is_used_when_it_imports(monkeypatch):
    """A torchvision that imports is taken; here a stand-in module, since this machine's CPU torch has
    no matching torchvision (without one, YoloPost falls back to its own NMS: the agreement tests)."""
    import torch

    from streamseg.models import fuse_torch
    from streamseg.models.card import load_card
    from streamseg.models.yolo_seg import YoloSegDecoder

    calls = []

    def batched_nms(boxes, scores, idxs, iou):
        calls.append(len(boxes))
        return fuse_torch.nms_xyxy(boxes, scores, idxs, iou)

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.batched_nms, tv.ops = batched_nms, ops
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.ops", ops)
    card = load_card(str(ROOT / "engines" / "synth-instance.yaml"))
    import onnx

    from streamseg.models.fuse import core_specs

    _, outs, meta = core_specs(onnx.load(str(card.model_path), load_external_data=False))
    post = fuse_torch.YoloPost(card, YoloSegDecoder(card, outs, meta))
    assert post.batched_nms is batched_nms
    det = torch.zeros(1, 4 + 2 + 16, 10)
    det[0, :4] = torch.tensor([50.0, 50.0, 20.0, 20.0])[:, None]  # ten copies of one box
    det[0, 4] = torch.linspace(0.4, 0.9, 10)
    res = post({"output0": det, "output1": torch.zeros(1, 16, 90, 160)})
    assert calls == [10] and int(res["count"][0]) == 1 and float(res["scores"][0, 0]) == pytest.approx(0.9)


def test_onnx2torch_import_leaves_no_stand_in_torchvision():
    from streamseg.backends.torch_backend import _onnx2torch

    _onnx2torch()
    tv = sys.modules.get("torchvision")
    assert tv is None or getattr(tv, "__file__", None) is not None  # a real one, or none


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"precision": "int8"}, "runs fp32 or fp16; not int8"),
        ({"cuda_graphs": True}, "cuda_graphs needs a CUDA device"),
        ({"device": "cuda"}, "asked for cuda, but torch sees no CUDA device"),
    ],
)
def test_bad_options_are_one_clear_error(kw, error):
    from streamseg.backends import create_engine
    from streamseg.backends.torch_backend import cuda_device
    from streamseg.errors import BackendError

    if cuda_device() is not None and "cuda" in error:
        pytest.skip("a GPU is present")
    with pytest.raises(BackendError, match=error):
        create_engine("torch", ROOT / "engines" / "synth-semantic.onnx", **kw).load()


def test_auto_picks_torch_on_cuda_after_tensorrt(monkeypatch):
    import streamseg.backends as backends
    from streamseg.backends import torch_backend

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tensorrt" else real_find(n, *a))
    monkeypatch.setattr(torch_backend, "cuda_device", lambda: "NVIDIA H100 80GB HBM3")
    assert backends.resolve_backend("auto") == ("torch", "auto: no TensorRT here, torch on CUDA (NVIDIA H100 80GB HBM3)")
    name, why = backends.resolve_backend("auto", "int8")
    assert name != "torch" and "the torch backend has no int8" in why
    monkeypatch.setattr(torch_backend, "cuda_device", lambda: None)
    name, why = backends.resolve_backend("auto")
    assert name in ("openvino", "onnxruntime") and "torch sees no CUDA device" in why


def test_copy_throughput_runs_through_the_staging_code():
    from streamseg.backends.torch_backend import copy_throughput

    res = copy_throughput(1 << 20, repeats=2, device="cpu")
    assert res["h2d_gb_s"] > 0 and res["d2h_gb_s"] > 0 and res["pinned"] is False


def test_torch_device_views_copies_and_counts_waits_on_the_cpu():
    """backends/device.py's interface on torch: buffers viewed as arrays/tensors, copies, one counted wait."""
    import torch

    from streamseg.backends.device import TorchDevice
    from streamseg.errors import BackendError

    with TorchDevice("cpu") as dev:
        s, e = dev.stream("s"), dev.event("e")
        pin, buf = dev.pinned_buffer(64), dev.device_buffer(64)
        pin.array((2, 3), np.int32)[...] = [[1, 2, 3], [4, 5, 6]]
        dev.upload(buf, pin, 24, s)
        assert buf.tensor((3, 2), torch.int32).tolist() == [[1, 2], [3, 4], [5, 6]]
        back = dev.pinned_buffer(64)
        dev.to_host(back, buf.tensor((6,), torch.int32) * 2, s)
        dev.record(e, s)
        dev.wait(e)
        assert back.array((6,), np.int32).tolist() == [2, 4, 6, 8, 10, 12] and dev.waits.count == 1
        with pytest.raises(BackendError, match="batch needs 128 bytes, the buffer holds 64"):
            pin.array((32,), np.float32)
