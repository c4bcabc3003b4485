"""Real TensorRT on a real GPU. Skipped cleanly where there is none (this machine and CI):
nothing in this file has ever run here."""

import importlib.util

import numpy as np
import pytest

from tests.conftest import ROOT, TWIN, needs_shared_models

pytestmark = pytest.mark.gpu


def _gpu():
    if importlib.util.find_spec("tensorrt") is None:
        return None
    from streamseg.backends.tensorrt import gpu_name

    return gpu_name()


requires_gpu = pytest.mark.skipif(_gpu() is None, reason="needs TensorRT 10 and an NVIDIA GPU")


@requires_gpu
@needs_shared_models
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_twinlitenet_plan_agrees_with_onnxruntime(tmp_path, precision):
    from streamseg.backends import create_engine

    x = np.random.default_rng(0).random((1, 3, 360, 640), np.float32)
    with (
        create_engine("tensorrt", TWIN, precision=precision, cache_dir=tmp_path) as trt,
        create_engine("onnxruntime", TWIN) as ref,
    ):
        a, b = trt.infer({"images": x}), ref.infer({"images": x})
        for k in ("da", "ll"):
            assert (a[k].argmax(1) == b[k].argmax(1)).mean() > 0.99


@requires_gpu
def test_bundled_dynamic_model_batches_for_real(tmp_path):
    from streamseg.backends import create_engine

    model = ROOT / "engines" / "synth-instance.onnx"
    x = np.random.default_rng(0).random((4, 3, 360, 640), np.float32)
    with create_engine("tensorrt", model, cache_dir=tmp_path) as trt, create_engine("onnxruntime", model) as ref:
        out = trt.infer({"images": x})
        assert trt.calls == 1
        np.testing.assert_allclose(out["output1"], ref.infer({"images": x})["output1"], atol=1e-2)
    with create_engine("tensorrt", model, cache_dir=tmp_path) as again:
        assert again.cached == "hit"
