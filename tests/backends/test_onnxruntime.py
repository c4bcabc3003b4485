import sys

import numpy as np
import pytest

from streamseg.backends import _torch_cuda, create_engine, resolve_backend
from streamseg.errors import BackendError


def feed(n):
    x = np.zeros((n, 3, 48, 64), np.float32)
    x[:, 0, :, :32] = 1.0  # red on the left half
    return {"images": x}


def test_dynamic_batch_runs_in_one_call(tiny):
    with create_engine("onnxruntime", tiny / "red.onnx", threads=1) as eng:
        assert eng.max_batch is None
        out = eng.infer(feed(4))
        assert out["seg"].shape == (4, 2, 48, 64)
        assert eng.calls == 1 and eng.frames == 4
        cls = out["seg"].argmax(axis=1)
        assert cls[:, :, :32].all() and not cls[:, :, 32:].any()


def test_fixed_batch_of_one_loops(tiny):
    with create_engine("onnxruntime", tiny / "red_b1.onnx", threads=1) as eng:
        assert eng.max_batch == 1
        out = eng.infer(feed(3))
        assert out["seg"].shape == (3, 2, 48, 64)
        assert eng.calls == 3
        assert eng.describe()["model_batch"] == 1


def test_wrong_feed_is_refused(tiny):
    with create_engine("onnxruntime", tiny / "red.onnx", threads=1) as eng:
        with pytest.raises(BackendError, match="does not fit"):
            eng.infer({"images": np.zeros((1, 3, 10, 10), np.float32)})
        with pytest.raises(BackendError, match="expected inputs"):
            eng.infer({"x": np.zeros((1, 3, 48, 64), np.float32)})


def test_thread_count_is_explicit(tiny):
    with create_engine("onnxruntime", tiny / "red.onnx", threads=0) as eng:
        assert eng.describe()["threads"] >= 1


def test_precision_other_than_fp32_is_refused(tiny):
    with pytest.raises(BackendError, match="precision int8"):
        with create_engine("onnxruntime", tiny / "red.onnx", precision="int8"):
            pass


def test_backend_resolution(monkeypatch):
    # no TensorRT here: auto takes OpenVINO (installed with the test extra), then ONNX Runtime
    no_torch = _torch_cuda()[1]  # torch on CUDA comes next: not here (not installed, or no GPU)
    assert resolve_backend("auto") == ("openvino", f"auto: no TensorRT here, {no_torch}, OpenVINO is installed")
    assert resolve_backend("auto", "fp16")[0] == "onnxruntime"  # OpenVINO on a CPU: no fp16 through auto
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert resolve_backend("auto") == ("onnxruntime", f"auto: no TensorRT here, {no_torch}, OpenVINO is not installed")
    assert resolve_backend("onnxruntime") == ("onnxruntime", "asked for")
    with pytest.raises(BackendError, match="available: auto, onnxruntime, openvino, tensorrt"):
        resolve_backend("cuda")


def test_gpu_execution_providers_come_first_when_present(tiny, monkeypatch):
    import onnxruntime as ort

    seen = {}
    real = ort.InferenceSession

    def spy(path, so, providers):
        seen["providers"] = providers
        return real(path, so, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(ort, "InferenceSession", spy)
    with create_engine("onnxruntime", tiny / "red.onnx", threads=1):
        pass
    assert seen["providers"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with create_engine("onnxruntime", tiny / "red.onnx", threads=1) as e:
        assert seen["providers"] == ["CPUExecutionProvider"] and e.device == "cpu"
