"""Real TensorRT (10.x or 11.x) on a real GPU. Skipped cleanly where there is none (this machine
and CI): nothing in this file has ever run here. `streamseg gpu-check` runs it on a GPU machine,
after building every plan into its cache: these tests use that cache (`plan_cache`, conftest.py)."""

import importlib.util

import numpy as np
import pytest

from tests.conftest import CARDS, ROOT, TWIN, UDACITY, needs_shared_models

pytestmark = pytest.mark.gpu


def _gpu():
    if importlib.util.find_spec("tensorrt") is None:
        return None
    from streamseg.backends.tensorrt import gpu_name

    return gpu_name()


requires_gpu = pytest.mark.skipif(_gpu() is None, reason="needs TensorRT 10/11 and an NVIDIA GPU")


def _frames(n: int):
    import cv2

    cap = cv2.VideoCapture(str(UDACITY))
    out = [cap.read()[1] for _ in range(n)]
    return [f for f in out if f is not None]


@requires_gpu
@needs_shared_models
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_twinlitenet_plan_agrees_with_onnxruntime(plan_cache, precision):
    from streamseg.backends import create_engine

    x = np.random.default_rng(0).random((1, 3, 360, 640), np.float32)
    with (
        create_engine("tensorrt", TWIN, precision=precision, cache_dir=plan_cache) as trt,
        create_engine("onnxruntime", TWIN) as ref,
    ):
        assert trt.describe()["strongly_typed"]
        a, b = trt.infer({"images": x}), ref.infer({"images": x})
        for k in ("da", "ll"):
            assert (a[k].argmax(1) == b[k].argmax(1)).mean() > 0.99


@requires_gpu
def test_bundled_dynamic_model_batches_for_real(plan_cache):
    from streamseg.backends import create_engine

    model = ROOT / "engines" / "synth-instance.onnx"
    x = np.random.default_rng(0).random((4, 3, 360, 640), np.float32)
    with create_engine("tensorrt", model, cache_dir=plan_cache) as trt, create_engine("onnxruntime", model) as ref:
        out = trt.infer({"images": x})
        assert trt.calls == 1
        np.testing.assert_allclose(out["output1"], ref.infer({"images": x})["output1"], atol=1e-2)
    with create_engine("tensorrt", model, cache_dir=plan_cache) as again:
        assert again.cached == "hit"


@requires_gpu
@pytest.mark.skipif(not UDACITY.is_file(), reason="../shared/data/video not present")
@pytest.mark.parametrize(
    "card",
    [ROOT / "engines" / "synth-semantic.yaml", ROOT / "engines" / "synth-instance.yaml", CARDS / "twinlitenet-bdd.yaml",
     CARDS / "yolov8n-seg-coco.yaml"],
    ids=lambda p: p.stem,
)
def test_fused_graph_on_the_gpu_agrees_with_numpy_on_the_cpu(plan_cache, card):
    """The fused graph in fp32 on TensorRT against today's numpy path on ONNX Runtime (CPU)."""
    if "shared" in str(card.resolve()) and not TWIN.is_file():
        pytest.skip("../shared/data/models not present")
    from streamseg.models import load_card, open_model
    from streamseg.models.fuse import compare_results

    frames = _frames(8)
    with (
        open_model(str(card), backend="tensorrt", fuse=True, cache_dir=str(plan_cache)) as gpu,
        open_model(str(card), backend="onnxruntime", fuse=False) as cpu,
    ):
        stats = compare_results(load_card(str(card)).task, cpu.run(frames[:4]) + cpu.run(frames[4:]),
                                gpu.run(frames[:4]) + gpu.run(frames[4:]), mask_iou=0.95)
    if gpu.task == "semantic":
        assert stats["pixels_agree"] >= 0.999, stats
    else:
        assert stats["frames_match"] >= stats["frames"] - 1, stats
