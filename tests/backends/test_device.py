"""streamseg/backends/device.py: CUDA streams, events and buffers, against the double of cuda-python's
runtime bindings (no GPU here), and every name it uses checked against the real cuda-python."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from streamseg.backends import device
from streamseg.errors import BackendError
from tests.backends import fake_tensorrt as fake

DEVICE_PY = Path(device.__file__)


def runtime_names_used() -> set[str]:
    """`rt.X` and `cudart().X` in device.py: the runtime attributes it relies on."""
    found = set()
    for node in ast.walk(ast.parse(DEVICE_PY.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if isinstance(v, ast.Name) and v.id == "rt" or (
            isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "cudart"
        ):
            found.add(node.attr)
    return found


def real_runtime():
    return pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed (streamseg[tensorrt])")


def test_every_runtime_name_device_py_uses_exists_in_cuda_python():
    rt = real_runtime()
    used = runtime_names_used()
    assert {"cudaEventCreateWithFlags", "cudaEventBlockingSync", "cudaStreamSynchronize", "cudaFreeHost"} <= used
    assert not sorted(n for n in used if not hasattr(rt, n))
    assert not hasattr(rt.cudaError_t, "nope") and hasattr(rt.cudaError_t, "cudaErrorIllegalAddress")


def test_the_double_offers_only_real_names_with_real_values():
    rt = real_runtime()
    offered = [n for n in dir(fake.FakeCuda) if n.startswith("cuda")]
    assert not sorted(n for n in offered if not hasattr(rt, n))
    for flag in ("cudaEventDefault", "cudaEventBlockingSync", "cudaEventDisableTiming", "cudaStreamNonBlocking"):
        assert int(getattr(fake, flag)) == int(getattr(rt, flag)), flag
    for err in fake.cudaError_t:
        assert int(getattr(rt.cudaError_t, err.name)) == int(err), err.name


def test_without_cuda_python_one_clear_error(monkeypatch):
    for mod in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(BackendError, match=r"need cuda-python: pip install 'streamseg\[tensorrt\]'"):
        device.Device().stream("s")
    assert device.gpu_name() is None


def test_a_copy_round_trip_and_close_in_order(monkeypatch):
    """What a second GPU backend (PyTorch's) uses alone: pinned buffers as numpy views, copies on a
    stream, a blocking event wait, and close() in its order."""
    fake.install(monkeypatch)
    with device.Device("torch-cuda") as dev:
        s = dev.stream("copies")
        done = dev.event("done")
        host, back = dev.pinned_buffer(64), dev.pinned_buffer(64)
        mem = dev.device_buffer(64)
        x = host.array((4, 4), np.float32)
        x[:] = np.arange(16, dtype=np.float32).reshape(4, 4)
        dev.upload(mem, host, x.nbytes, s)
        dev.download(back, mem, x.nbytes, s)
        done.record(s)
        dev.wait(done)
        np.testing.assert_array_equal(back.array((4, 4), np.float32), x)
        assert dev.waits.count == 1 and fake.CUDA.event_flags == [fake.cudaEventBlockingSync | fake.cudaEventDisableTiming]
        with pytest.raises(BackendError, match="batch needs 128 bytes, the pinned buffer holds 64"):
            host.array((8, 4), np.float32)
        start = len(fake.CUDA.log)
    kinds = [x[0] for x in fake.CUDA.log[start:]]
    assert kinds == ["stream_sync", "free", "free_host", "free_host", "event_destroy", "stream_destroy"]
    assert not fake.CUDA.device and not fake.CUDA.host and not fake.CUDA.streams and not fake.CUDA.events


def test_a_failed_allocation_names_the_call(monkeypatch):
    fake.install(monkeypatch)
    monkeypatch.setattr(
        sys.modules["cuda.bindings.runtime"], "cudaMalloc", lambda n: (fake.cudaError_t.cudaErrorInvalidValue, None)
    )
    with pytest.raises(BackendError, match=r"CUDA cudaMalloc\(64\) failed: cudaErrorInvalidValue"):
        device.Device().device_buffer(64)
