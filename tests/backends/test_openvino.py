import numpy as np
import pytest

from streamseg.backends import create_engine
from streamseg.errors import BackendError
from tests.conftest import TWIN, needs_shared_models

ov = pytest.importorskip("openvino")


def feed(n):
    x = np.zeros((n, 3, 48, 64), np.float32)
    x[:, 0, :, :32] = 1.0
    return {"images": x}


def test_dynamic_batch_runs_in_one_call_and_matches_onnxruntime(tiny):
    with (
        create_engine("openvino", tiny / "red.onnx", threads=1) as eng,
        create_engine("onnxruntime", tiny / "red.onnx", threads=1) as ref,
    ):
        assert eng.max_batch is None
        out = eng.infer(feed(4))
        assert eng.calls == 1 and out["seg"].shape == (4, 2, 48, 64)
        np.testing.assert_allclose(out["seg"], ref.infer(feed(4))["seg"], atol=1e-5)


def test_precision_is_pinned_and_reported(tiny):
    with create_engine("openvino", tiny / "red.onnx", threads=1) as eng:
        assert eng.describe()["inference_precision"] == "f32"  # not the CPU's bf16 default
    with pytest.raises(BackendError, match="not int4"):
        with create_engine("openvino", tiny / "red.onnx", precision="int4"):
            pass
    with pytest.raises(BackendError, match="no INT8 model .* --backend openvino --precision int8"):
        with create_engine("openvino", tiny / "red.onnx", precision="int8"):
            pass


@pytest.mark.parametrize("quantizer", ["nncf", "onnxruntime"])
def test_gated_int8_runs_on_openvino(tiny, tmp_path, quantizer):
    from streamseg.quantize import build_int8

    v = build_int8(
        str(tiny / "red.yaml"),
        "synthetic://driving?size=320x180&seed=900&frames=40",
        backend="openvino",
        quantizer=quantizer,
        frames=8,
        cache_dir=tmp_path,
    )
    assert v["agreement"] >= 0.95 and v["backend"] == "openvino" and v["quantizer"] == quantizer
    with create_engine("openvino", tiny / "red.onnx", precision="int8", cache_dir=tmp_path, threads=1) as eng:
        assert str(eng.run_path).endswith(".int8.onnx")
        assert eng.describe()["inference_precision"].startswith("int8")
        cls = eng.infer(feed(2))["seg"].argmax(1)
        with create_engine("openvino", tiny / "red.onnx", threads=1) as ref:
            assert (cls == ref.infer(feed(2))["seg"].argmax(1)).mean() > 0.99


@needs_shared_models
def test_real_model_agrees_with_onnxruntime():
    x = np.random.default_rng(0).random((1, 3, 360, 640), np.float32)
    with create_engine("openvino", TWIN, threads=2) as eng, create_engine("onnxruntime", TWIN, threads=2) as ref:
        a, b = eng.infer({"images": x}), ref.infer({"images": x})
        for k in ("da", "ll"):
            assert (a[k].argmax(1) == b[k].argmax(1)).mean() > 0.999


@pytest.fixture(params=["this-cpu", "no-bf16"])
def cpu(request):
    """Each test that takes it runs on this CPU as it is and again as a CPU without bf16 (a Zen 3)."""
    from streamseg.cpu import cpu_features

    if request.param == "no-bf16":
        return request.getfixturevalue("cpu_without_bf16")
    return cpu_features()


def test_blob_cache_rebuilds_on_change_and_refuses_tampering(tiny, tmp_path, cpu):
    import shutil

    from streamseg.backends.cache import EngineCache

    cache = EngineCache(tmp_path / "cache")
    model = tmp_path / "m.onnx"
    shutil.copy(tiny / "red.onnx", model)
    with create_engine("openvino", model, threads=1) as e:
        ref = e.infer(feed(2))["seg"]
    from streamseg.backends.openvino import OpenVinoEngine

    with OpenVinoEngine(model, threads=1, cache=cache) as e:
        assert e.cached == "built"
    with OpenVinoEngine(model, threads=1, cache=cache) as e:
        assert e.cached == "hit"
        np.testing.assert_allclose(e.infer(feed(2))["seg"], ref, atol=1e-5)
    assert len(cache.entries()) == 1
    with OpenVinoEngine(model, threads=1, hint="THROUGHPUT", cache=cache) as e:  # other settings: other key
        assert e.cached == "built"
    assert len(cache.entries()) == 2
    if cpu.bf16:  # another precision: another key (bf16 where the CPU has it; refused where not, below)
        with OpenVinoEngine(model, threads=1, precision="bf16", cache=cache) as e:
            assert e.cached == "built" and e.describe()["inference_precision"] == "bf16"
        assert len(cache.entries()) == 3
    # a changed model builds anew
    shutil.copy(tiny / "red_b1.onnx", model)
    with OpenVinoEngine(model, threads=1, cache=cache) as e:
        assert e.cached == "built"
    # a tampered artifact is refused, not loaded
    from streamseg.backends.cache import sha256_file

    (entry,) = [e for e in cache.entries() if e["model_sha256"] == sha256_file(model)]
    blob = cache.root / entry["file"]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(BackendError, match="does not match the manifest"):
        with OpenVinoEngine(model, threads=1, cache=cache):
            pass


def test_openvino_and_onnxruntime_survive_gstreamer_in_the_same_process(tiny):
    """GStreamer's libunwind must not replace the C++ unwinder (it made OpenVINO abort)."""
    import subprocess
    import sys

    code = (
        "from streamseg import gst; assert gst.available()\n"
        "from streamseg.backends import create_engine\n"
        f"e = create_engine('openvino', {str(tiny / 'red.onnx')!r}, threads=1); e.load()\n"
        "import onnxruntime as ort\n"
        "try:\n    ort.InferenceSession(b'not a model')\nexcept Exception as x:\n    print('caught', type(x).__name__)\n"
    )
    from streamseg import gst

    if not gst.available():
        pytest.skip("GStreamer not installed")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "caught" in r.stdout


def test_performance_hint_is_selectable(tiny):
    from streamseg.models import open_model

    with open_model(str(tiny / "red.yaml"), backend="openvino", hint="throughput", threads=1) as m:
        assert m.describe()["hint"] == "THROUGHPUT"
    with open_model(str(tiny / "red.yaml"), backend="openvino", threads=1) as m:
        assert m.describe()["hint"] == "LATENCY"


def test_a_cpu_without_bf16_runs_fp32_and_refuses_bf16_in_one_line(tiny, tmp_path, cpu_without_bf16):
    """The paths a Zen 3 takes, proven on whatever CPU runs the suite (the feature read in one place)."""
    from streamseg.backends import resolve_backend
    from tests.conftest import run_streamseg

    assert not cpu_without_bf16.bf16 and cpu_without_bf16.source == "STREAMSEG_CPU_FLAGS"
    with create_engine("openvino", tiny / "red.onnx", threads=1) as eng:
        assert eng.describe()["inference_precision"] == "f32"
        assert eng.infer(feed(1))["seg"].shape == (1, 2, 48, 64)
    with pytest.raises(BackendError, match=r"no bf16 support \(AVX512_BF16 or AMX\): .*\(avx2\)"):
        with create_engine("openvino", tiny / "red.onnx", precision="bf16", threads=1):
            pass
    backend, why = resolve_backend("auto", "bf16")  # auto skips OpenVINO for bf16 here, saying why
    assert backend != "openvino" and "OpenVINO on this CPU runs no bf16" in why
    assert resolve_backend("auto", "fp32")[0] == "openvino"
    # the command line, in a process of its own (the override travels in the environment)
    r = run_streamseg(
        "run", "--semantic", tiny / "red.yaml", "--source", "synthetic://driving?size=64x48&frames=1",
        "--sink", "null://", "--backend", "openvino", "--precision", "bf16",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("streamseg: error: precision bf16 asked for, but this CPU")
