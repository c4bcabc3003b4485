"""The TensorRT backend's logic, against test doubles of tensorrt and cuda-python (no GPU here).

What these cannot show - real kernels, real timings, real INT8 accuracy - is in tests/gpu/.
"""

import numpy as np
import pytest

from streamseg.backends import create_engine, resolve_backend
from streamseg.backends.cache import EngineCache
from streamseg.errors import BackendError
from tests.backends import fake_tensorrt as fake


def feed(n):
    x = np.zeros((n, 3, 48, 64), np.float32)
    x[:, 0, :, :32] = 1.0
    return {"images": x}


@pytest.fixture
def trt(monkeypatch):
    return fake.install(monkeypatch)


def test_build_profile_bindings_stream_and_results(trt, tiny, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=tmp_path / "cache") as eng:
        (build,) = fake.BUILDS
        assert build["profile"]["images"] == [[1, 3, 48, 64], [4, 3, 48, 64], [8, 3, 48, 64]]
        assert build["flags"] == [] and build["timing_cache"]
        assert eng.inputs["images"].shape == (None, 3, 48, 64) and eng.max_batch is None
        with create_engine("onnxruntime", tiny / "red.onnx", threads=1) as ref:
            for n in (1, 3, 8, 11):  # 11 > profile max: two chunks
                out = eng.infer(feed(n))["seg"]
                np.testing.assert_allclose(out, ref.infer(feed(n))["seg"], atol=1e-6)
        h2d_stream, compute, d2h_stream = (int(s) for s in fake.CUDA.streams)  # three streams, made in that order
        assert {s for k, _, s in fake.CUDA.copies if k == "cudaMemcpyHostToDevice"} == {h2d_stream}
        assert {s for k, _, s in fake.CUDA.copies if k == "cudaMemcpyDeviceToHost"} == {d2h_stream}
        assert {x[1] for x in fake.CUDA.log if x[0] == "execute"} == {compute}
        h2d = [n for k, n, _ in fake.CUDA.copies if k == "cudaMemcpyHostToDevice"]
        assert h2d[:2] == [1 * 3 * 48 * 64 * 4, 3 * 3 * 48 * 64 * 4]  # exactly the batch, not the buffer
        assert eng.describe()["device"].startswith("Fake RTX 4090") and eng.cached == "built"
    assert not fake.CUDA.device and not fake.CUDA.host and not fake.CUDA.streams  # everything freed
    assert not fake.CUDA.events
    assert (tmp_path / "cache" / "tensorrt.timing-cache").is_file()
    assert len(cache.entries()) == 1


def test_plan_cache_keys_gpu_version_precision_and_refuses_tampering(monkeypatch, tiny, tmp_path):
    fake.install(monkeypatch)
    cache_dir = tmp_path / "cache"
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "built"
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "hit" and len(fake.BUILDS) == 1
    with create_engine("tensorrt", tiny / "red.onnx", precision="fp16", cache_dir=cache_dir) as e:
        assert e.cached == "built" and fake.BUILDS[-1]["flags"] == ["FP16"]
    fake.install(monkeypatch, name=b"Fake A100", cc=(8, 0))  # another GPU: another plan
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "built"
    entries = EngineCache(cache_dir).entries()
    assert {e["device"] for e in entries} == {"Fake RTX 4090 sm8.9", "Fake A100 sm8.0"}
    plan = cache_dir / entries[-1]["file"]
    plan.write_bytes(plan.read_bytes().replace(b"fake_plan", b"evil_plan"))
    with pytest.raises(BackendError, match="does not match the manifest"):
        with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
            pass


def test_int8_needs_calibration_and_feeds_the_calibrator(monkeypatch, tiny, tmp_path):
    fake.install(monkeypatch)
    with pytest.raises(BackendError, match="int8 needs calibration frames"):
        with create_engine("tensorrt", tiny / "red.onnx", precision="int8", cache_dir=tmp_path / "c"):
            pass
    from streamseg.backends.cache import EngineCache as Cache
    from streamseg.backends.tensorrt import TensorRtEngine

    eng = TensorRtEngine(
        tiny / "red.onnx", precision="int8", cache=Cache(tmp_path / "c"), calibration=[feed(2), feed(2), feed(1)]
    )
    with eng:
        assert fake.BUILDS[-1]["flags"] == ["FP16", "INT8"] and fake.BUILDS[-1]["calibration_batches"] == 3
    (table,) = (tmp_path / "c").glob("red-*.int8-calibration")  # keyed by the model's sha256
    assert table.read_bytes() == b"fake-calibration-table"


def test_engines_build_calibrates_int8_on_frames_from_a_source_uri(monkeypatch, tiny, tmp_path, capsys):
    """`streamseg engines build CARD --backend tensorrt --precision int8 --calib URI --max-batch N`."""
    from streamseg import cli

    fake.install(monkeypatch)
    argv = ["engines", "build", str(tiny / "red.yaml"), "--backend", "tensorrt", "--precision", "int8"]
    argv += ["--calib", "synthetic://driving?size=320x180&seed=3&frames=20", "--calib-frames", "10"]
    argv += ["--max-batch", "4", "--cache-dir", str(tmp_path / "c")]
    assert cli.main(argv) == 0
    build = fake.BUILDS[-1]
    assert build["calibration_batches"] == 3  # 10 frames in batches of at most 4
    assert build["profile"]["images"][2] == [4, 3, 48, 64]  # max of the profile
    assert "built (tensorrt int8)" in capsys.readouterr().out


def test_fixed_batch_model_gets_a_fixed_profile_and_loops(trt, tiny, tmp_path):
    with create_engine("tensorrt", tiny / "red_b1.onnx", cache_dir=None) as eng:
        assert fake.BUILDS[-1]["profile"]["images"] == [[1, 3, 48, 64]] * 3
        assert eng.max_batch == 1
        assert eng.infer(feed(3))["seg"].shape == (3, 2, 48, 64)
        assert sum(x[0] == "execute" for x in fake.CUDA.log) == 3


def test_next_batch_uploads_while_this_one_runs(trt, tiny):
    """submit(n+1) before collect(n): n+1's upload is enqueued before anyone waits for n, each run
    waits on its own upload's event, the two slots never share buffers, and results stay right."""
    a, b = feed(2), feed(3)
    b["images"][:, 0] = 1 - b["images"][:, 0]  # a different picture
    with create_engine("tensorrt", tiny / "red.onnx") as eng, create_engine("onnxruntime", tiny / "red.onnx") as ref:
        assert eng.overlaps
        start = len(fake.CUDA.log)
        ta, tb = eng.submit(a), eng.submit(b)
        with pytest.raises(BackendError, match="two batches already in flight"):
            eng.submit(a)
        out_a, out_b = eng.collect(ta), eng.collect(tb)
        np.testing.assert_allclose(out_a["seg"], ref.infer(a)["seg"], atol=1e-6)
        np.testing.assert_allclose(out_b["seg"], ref.infer(b)["seg"], atol=1e-6)
        log = fake.CUDA.log[start:]
        first_sync = next(i for i, x in enumerate(log) if x[0] == "sync")
        uploads = [x for x in log[:first_sync] if x[0] == "h2d"]
        assert len(uploads) == 2 and uploads[0][2] != uploads[1][2]  # both batches up, into different buffers
        runs = [x for x in log if x[0] == "execute"]
        assert len(runs) == 2 and runs[0][2] != runs[1][2]  # one execution context per slot
        assert eng.collect(eng.submit(a))["seg"].shape == (2, 2, 48, 64)  # a slot is free again after collect


def test_no_gpu_is_one_clear_error_and_auto_falls_back(monkeypatch, tiny):
    fake.install(monkeypatch, gpus=0)
    with pytest.raises(BackendError, match="needs an NVIDIA GPU"):
        with create_engine("tensorrt", tiny / "red.onnx"):
            pass
    assert resolve_backend("auto") == (
        "openvino",
        "auto: TensorRT is installed but no GPU answers, OpenVINO is installed",
    )
    fake.install(monkeypatch)
    assert resolve_backend("auto")[0] == "tensorrt"


def test_tensorrt_missing_is_one_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendError, match="tensorrt"):
        resolve_backend("tensorrt")


def test_a_plan_from_another_tensorrt_version_is_rebuilt_never_loaded(monkeypatch, tiny, tmp_path):
    fake.install(monkeypatch)
    cache_dir = tmp_path / "cache"
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        old_plan = (cache_dir / EngineCache(cache_dir).entries()[0]["file"]).read_bytes()
    monkeypatch.setattr(fake, "__version__", "10.100.0-fake")
    monkeypatch.setattr(__import__("sys").modules["tensorrt"], "__version__", "10.100.0-fake")
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "built"  # the version is in the key: the old plan is not even looked at
    assert {x["backend_version"] for x in EngineCache(cache_dir).entries()} == {"10.99.0-fake", "10.100.0-fake"}
    # and a foreign plan that reached the runtime anyway is one clear error, not a crash
    from streamseg.backends.tensorrt import TensorRtEngine

    monkeypatch.setattr(TensorRtEngine, "_plan", lambda self, trt, gpu: old_plan)
    with pytest.raises(BackendError, match="could not deserialize the plan \\(built for another version or GPU"):
        with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
            pass
