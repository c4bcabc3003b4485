"""The TensorRT backend's logic, against test doubles of tensorrt and cuda-python (no GPU here).

What these cannot show - real kernels, real timings, real INT8 accuracy - is in tests/gpu/.
"""

from pathlib import Path

import numpy as np
import pytest

from streamseg.backends import _torch_cuda, create_engine, resolve_backend
from streamseg.backends.cache import EngineCache
from streamseg.errors import BackendError
from tests.backends import fake_tensorrt as fake


def feed(n):
    x = np.zeros((n, 3, 48, 64), np.float32)
    x[:, 0, :, :32] = 1.0
    return {"images": x}


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def trt(monkeypatch, request):
    """The double of TensorRT 10.x, then of 11.x: every test using it runs on both."""
    return fake.install(monkeypatch, api=request.param)


def test_build_profile_bindings_stream_and_results(trt, tiny, tmp_path):
    cache = EngineCache(tmp_path / "cache")
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=tmp_path / "cache") as eng:
        (build,) = fake.BUILDS
        assert build["profile"]["images"] == [[1, 3, 48, 64], [4, 3, 48, 64], [8, 3, 48, 64]]
        assert build["flags"] == [] and build["timing_cache"]
        assert build["strongly_typed"] and build["precision"] == "fp32"
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
    assert (tmp_path / "cache" / f"tensorrt-{trt.__version__}-fake-rtx-4090-sm89.timing-cache").is_file()
    assert len(cache.entries()) == 1


@pytest.mark.parametrize("api", [10, 11])
def test_plan_cache_keys_gpu_version_precision_and_refuses_tampering(monkeypatch, tiny, tmp_path, api):
    fake.install(monkeypatch, api=api)
    cache_dir = tmp_path / "cache"
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "built"
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "hit" and len(fake.BUILDS) == 1
    with create_engine("tensorrt", tiny / "red.onnx", precision="fp16", cache_dir=cache_dir) as e:
        # strongly typed: FP16 comes from an FP16 copy of the graph, not from a builder flag
        assert e.cached == "built" and fake.BUILDS[-1]["flags"] == [] and fake.BUILDS[-1]["precision"] == "fp16"
    fake.install(monkeypatch, api=api, name=b"Fake A100", cc=(8, 0))  # another GPU: another plan
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "built"
    entries = EngineCache(cache_dir).entries()
    assert {e["device"] for e in entries} == {"Fake RTX 4090 sm8.9", "Fake A100 sm8.0"}
    (latest,) = [e for e in entries if e["device"] == "Fake A100 sm8.0"]
    plan = cache_dir / latest["file"]
    plan.write_bytes(plan.read_bytes().replace(b"fake_plan", b"evil_plan"))
    with pytest.raises(BackendError, match="does not match the manifest"):
        with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
            pass


def test_int8_is_the_gated_qdq_model_in_a_strongly_typed_network(trt, tiny, tmp_path):
    """No calibrator (TensorRT 11 has none): INT8 is built from the symmetric Q/DQ model the CPU
    quantizer made for TensorRT and ONNX Runtime's gate accepted; without one, one clear error says how to make it."""
    with pytest.raises(BackendError, match="no INT8 model for red.onnx in the engine cache.*--backend tensorrt"):
        with create_engine("tensorrt", tiny / "red.onnx", precision="int8", cache_dir=tmp_path / "c"):
            pass
    from streamseg.quantize import build_int8

    verdict = build_int8(
        str(tiny / "red.yaml"), "synthetic://driving?size=128x96&seed=1&frames=8", frames=4, cache_dir=tmp_path / "c"
    )
    assert verdict["backend"] == "onnxruntime"
    with pytest.raises(BackendError, match="no INT8 model"):  # ONNX Runtime's asymmetric model is not TensorRT's
        with create_engine("tensorrt", tiny / "red.onnx", precision="int8", cache_dir=tmp_path / "c"):
            pass
    verdict = build_int8(
        str(tiny / "red.yaml"),
        "synthetic://driving?size=128x96&seed=1&frames=8",
        backend="tensorrt",
        frames=4,
        cache_dir=tmp_path / "c",
    )
    assert verdict["backend"] == "tensorrt"
    with create_engine("tensorrt", tiny / "red.onnx", precision="int8", cache_dir=tmp_path / "c") as eng:
        build = fake.BUILDS[-1]
        assert build["precision"] == "int8" and build["strongly_typed"] and build["flags"] == []
        assert Path(build["onnx"]) == Path(verdict["file"])  # the very artifact the gate accepted
        with create_engine("onnxruntime", tiny / "red.onnx", threads=1) as cpu:
            ref = cpu.infer(feed(2))["seg"].argmax(1)
            assert (eng.infer(feed(2))["seg"].argmax(1) == ref).mean() > 0.99


def test_a_model_without_qdq_nodes_is_no_int8_plan(trt, tiny):
    from streamseg.backends.tensorrt import TensorRtEngine

    with pytest.raises(BackendError, match="builds INT8 from the gated Q/DQ model"):
        with TensorRtEngine(tiny / "red.onnx", precision="int8", prequantized=True):
            pass


def test_engines_build_int8_for_tensorrt_gates_its_symmetric_model_then_builds_the_plan(monkeypatch, tiny, tmp_path, capsys):
    """`streamseg engines build CARD --backend tensorrt --precision int8 --calib URI`: one command
    makes TensorRT's symmetric Q/DQ model, gates it on the CPU and builds the plan from it."""
    from streamseg import cli

    fake.install(monkeypatch)
    argv = ["engines", "build", str(tiny / "red.yaml"), "--backend", "tensorrt", "--precision", "int8"]
    argv += ["--calib", "synthetic://driving?size=320x180&seed=3&frames=20", "--calib-frames", "10"]
    argv += ["--max-batch", "4", "--cache-dir", str(tmp_path / "c")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "INT8 (onnxruntime on tensorrt) accepted" in out and "built (tensorrt int8)" in out
    build = fake.BUILDS[-1]
    assert build["precision"] == "int8" and build["profile"]["frames"][2][0] == 4  # fused graph, max batch 4


def test_fused_graph_on_tensorrt_uploads_frames_and_agrees_with_numpy(trt, tiny, tmp_path):
    """The pipeline's default on TensorRT: the fused graph, frames at capture size in, compact
    results out; its profile spans frame sizes; results equal ONNX Runtime's unfused path."""
    from streamseg.models import open_model

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    with (
        open_model(str(tiny / "red.yaml"), backend="tensorrt", cache_dir=str(tmp_path / "c")) as m,
        open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=False) as ref,
    ):
        assert m.fused and m.describe()["resize_in_graph"]
        prof = fake.BUILDS[-1]["profile"]
        assert prof["frames"] == [[1, 16, 16, 3], [4, 720, 1280, 3], [8, 1080, 1920, 3]]
        start = len(fake.CUDA.copies)
        out = m.run(images)
        ups = [n for k, n, _ in fake.CUDA.copies[start:] if k == "cudaMemcpyHostToDevice"]
        assert 3 * 96 * 128 * 3 in ups  # the uint8 frames, once
        for a, b in zip(out, ref.run(images), strict=True):
            np.testing.assert_array_equal(a.label_map, b.label_map)
        with pytest.raises(BackendError, match="exceeds the plan's profile"):
            m.run([np.zeros((1200, 2000, 3), np.uint8)])


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
    no_torch = _torch_cuda()[1]  # torch on CUDA comes next: not here (not installed, or no GPU)
    assert resolve_backend("auto") == (
        "openvino",
        f"auto: TensorRT is installed but no GPU answers, {no_torch}, OpenVINO is installed",
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
    monkeypatch.setattr(fake, "__version__", "11.4.0.106")
    monkeypatch.setattr(__import__("sys").modules["tensorrt"], "__version__", "11.4.0.106")
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir) as e:
        assert e.cached == "built"  # the version is in the key: the old plan is not even looked at
    assert {x["backend_version"] for x in EngineCache(cache_dir).entries()} == {"10.16.1.11", "11.4.0.106"}
    # and a foreign plan that reached the runtime anyway is one clear error, not a crash
    from streamseg.backends.tensorrt import TensorRtEngine

    monkeypatch.setattr(TensorRtEngine, "_plan", lambda self, trt, gpu: old_plan)
    with pytest.raises(BackendError, match="could not deserialize the plan \\(built for another version or GPU"):
        with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
            pass


# issue 25, section 5: the runner and builder read against TensorRT's own sources ----------------
BLOCKING = fake.cudaEventBlockingSync | fake.cudaEventDisableTiming


def test_collect_blocks_on_its_events_instead_of_spinning_and_counts_the_wait(trt, tiny, monkeypatch):
    """(a) every event is made with cudaEventBlockingSync | cudaEventDisableTiming, so the thread in
    collect() sleeps instead of spinning a core; the wait's wall and thread-CPU time are counted."""
    from streamseg.backends import device

    clock = iter(range(1000))
    monkeypatch.setattr(device, "_thread_time", lambda: next(clock) * 0.002)  # each read: 2 ms more CPU
    with create_engine("tensorrt", tiny / "red.onnx") as eng:
        assert fake.CUDA.event_flags and set(fake.CUDA.event_flags) == {BLOCKING}
        eng.collect(eng.submit(feed(2)))
        eng.infer(feed(1))
        d = eng.describe()
        assert d["waits"] == 2 and d["wait_cpu_ms_mean"] == 2.0  # one clock step per wait, in ms


def _assert_synced_before_freed(log):
    syncs = [i for i, x in enumerate(log) if x[0] == "stream_sync"]
    frees = [i for i, x in enumerate(log) if x[0] in ("free", "free_host")]
    destroys = [i for i, x in enumerate(log) if x[0] == "event_destroy"]
    stream_destroys = [i for i, x in enumerate(log) if x[0] == "stream_destroy"]
    assert len(syncs) >= 3 and frees and destroys and len(stream_destroys) == 3
    assert max(syncs) < min(frees) and max(frees) < min(destroys) and max(destroys) < min(stream_destroys)


def test_close_with_a_batch_in_flight_synchronizes_every_stream_before_it_frees(trt, tiny):
    """(b) a run stopped between submit and collect: the streams are synchronized (the double
    counts a buffer freed while a stream's copy or run still used it), then buffers freed, then
    events and streams destroyed."""
    eng = create_engine("tensorrt", tiny / "red.onnx")
    eng.load()
    eng.submit(feed(3))  # in flight: uploaded, run, download enqueued, never collected
    start = len(fake.CUDA.log)
    eng.close()
    assert not fake.CUDA.freed_in_flight
    log = fake.CUDA.log[start:]
    _assert_synced_before_freed(log)
    # the execution contexts (TensorRT's activation memory) go only once every stream has drained
    syncs = [i for i, x in enumerate(log) if x[0] == "stream_sync"]
    released = [i for i, x in enumerate(log) if x[0] == "context_released"]
    assert released and len(syncs) >= 3 and sorted(syncs)[2] < min(released), log
    assert not fake.CUDA.device and not fake.CUDA.host and not fake.CUDA.events and not fake.CUDA.streams


@pytest.mark.parametrize(
    "fault, message, freed",
    [
        # the device faulted (sticky error): the streams never drain, so nothing they use is freed
        ("cudaStreamSynchronize", "cudaStreamSynchronize failed: cudaErrorIllegalAddress", False),
        # a free fails: reported, and the events and streams are still destroyed
        ("cudaFree", "cudaFree failed: cudaErrorIllegalAddress", True),
        ("cudaEventDestroy", "cudaEventDestroy failed: cudaErrorIllegalAddress", True),
    ],
)
def test_close_after_a_device_error_checks_every_result_and_frees_nothing_in_use(trt, tiny, fault, message, freed):
    eng = create_engine("tensorrt", tiny / "red.onnx")
    eng.load()
    eng.submit(feed(2))
    fake.CUDA.fail[fault] = fake.cudaError_t.cudaErrorIllegalAddress
    with pytest.raises(BackendError, match=f"closing the CUDA resources: {message}"):
        eng.close()
    assert not fake.CUDA.freed_in_flight  # never a buffer freed under the device
    assert bool(fake.CUDA.log[-1][0] == "stream_destroy") and not fake.CUDA.streams
    assert (not fake.CUDA.host) == freed and (fault == "cudaEventDestroy") == bool(fake.CUDA.events)
    eng.close()  # a second close is a no-op


@pytest.mark.parametrize(
    "refuse, shape, message",
    [
        # inside the profile, but TensorRT says no: its answer is checked, naming tensor and profile
        (("images", (2, 3, 48, 64)), (2, 3, 48, 64),
         r"refused shape \(2, 3, 48, 64\) for input 'images' \(profile 0: \(1, 3, 48, 64\) to \(8, 3, 48, 64\)\)"),
        (None, (2, 3, 40, 64), r"input 'images' of shape \(2, 3, 40, 64\) is below the plan's profile 0 minimum"),
        (None, (2, 3, 48, 80), r"input 'images' of shape \(2, 3, 48, 80\) exceeds the plan's profile 0 maximum"),
    ],
)
def test_submit_checks_the_profile_minimum_and_maximum_and_tensorrts_answer(trt, tiny, refuse, shape, message):
    """(c) a shape outside profile 0 or refused by set_input_shape is one error naming the tensor and
    the profile before anything is enqueued, never a later 'execute_async_v3 failed'."""
    from streamseg.backends.tensorrt import TensorRtRunner

    with create_engine("tensorrt", tiny / "red.onnx") as eng:
        if refuse:
            fake.REFUSED_SHAPES.add(refuse)
        runs = sum(x[0] == "execute" for x in fake.CUDA.log)
        with pytest.raises(BackendError, match=message):
            TensorRtRunner.submit(eng.runner, {"images": np.zeros(shape, np.float32)})
        assert sum(x[0] == "execute" for x in fake.CUDA.log) == runs


def test_a_refused_tensor_address_is_an_error_naming_the_tensor(trt, tiny):
    fake.REFUSED_ADDRESSES.add("seg")
    with pytest.raises(BackendError, match="TensorRT refused the device address of tensor 'seg'"):
        with create_engine("tensorrt", tiny / "red.onnx"):
            pass
    assert not fake.CUDA.device and not fake.CUDA.streams and not fake.CUDA.events  # what it made, freed


def test_timing_cache_is_keyed_by_gpu_and_version_and_a_refused_one_starts_empty(monkeypatch, tiny, tmp_path, caplog):
    """(d) one timing cache per GPU model, compute capability and TensorRT version; attached with
    ignore_mismatch=False and its answer checked: a cache TensorRT refuses is logged and the build
    starts from an empty one."""
    cache_dir = tmp_path / "cache"
    fake.install(monkeypatch, api=10)
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
        pass
    fake.install(monkeypatch, api=10, name=b"NVIDIA H100 80GB HBM3", cc=(9, 0))
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
        pass
    fake.install(monkeypatch, api=11)
    with create_engine("tensorrt", tiny / "red.onnx", cache_dir=cache_dir):
        pass
    assert sorted(p.name for p in cache_dir.glob("*.timing-cache")) == [
        "tensorrt-10.16.1.11-fake-rtx-4090-sm89.timing-cache",
        "tensorrt-10.16.1.11-nvidia-h100-80gb-hbm3-sm90.timing-cache",
        "tensorrt-11.4.0.106-fake-rtx-4090-sm89.timing-cache",
    ]
    stale = cache_dir / "tensorrt-11.4.0.106-fake-rtx-4090-sm89.timing-cache"
    stale.write_bytes(b"timings of another device")
    fake.install(monkeypatch, api=11)
    fake.REFUSED_TIMING_CACHES.add(b"timings of another device")
    with caplog.at_level("WARNING", logger="streamseg"):
        with create_engine("tensorrt", tiny / "red.onnx", precision="fp16", cache_dir=cache_dir):
            pass
    assert fake.TIMING_CACHES_REFUSED == [b"timings of another device"]
    assert fake.BUILDS[-1]["timing_cache"] and "refused the timing cache" in caplog.text
    assert stale.read_bytes() == b"fake-timing-cache"  # rewritten from the build's fresh cache


def test_workspace_is_left_to_tensorrt_unless_configured(trt, tiny):
    """(e) NvInfer.h: the workspace pool "defaults to max device memory. Set to a smaller value to
    restrict tactics": no limit unless asked for."""
    with create_engine("tensorrt", tiny / "red.onnx"):
        assert fake.BUILDS[-1]["pools"] == {}
    from streamseg.backends.tensorrt import TensorRtEngine

    with TensorRtEngine(tiny / "red.onnx", workspace_mb=512):
        assert fake.BUILDS[-1]["pools"] == {"WORKSPACE": 512 << 20}


def test_one_trt_logger_for_every_builder_parser_and_runtime(trt, tiny):
    """(e) two engines built and loaded in one process share one trt.Logger (a second one makes
    TensorRT warn that the logger differs)."""
    with create_engine("tensorrt", tiny / "red.onnx"), create_engine("tensorrt", tiny / "red_b1.onnx"):
        assert len(fake.BUILDS) == 2
    assert len(fake.LOGGERS) == 1


def test_an_output_of_unknown_size_is_a_clear_error(trt, tiny):
    """(e) an output whose shape is still -1 at the profile's maximum (data-dependent: NonZero, NMS)
    needs an output allocator: said so, never a negative allocation."""
    fake.DATA_DEPENDENT_OUTPUTS.add("seg")
    with pytest.raises(BackendError, match="output 'seg' has a data-dependent shape .* needs an output allocator"):
        with create_engine("tensorrt", tiny / "red.onnx"):
            pass
    assert not fake.CUDA.device and not fake.CUDA.host


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_11_without_the_flag_is_still_strongly_typed(monkeypatch, tiny, tmp_path, precision):
    """(e) TensorRT 11 is always strongly typed (NvInfer.h, 11.1: kSTRONGLY_TYPED "Deprecated in
    TensorRT 11.0. Strongly typed mode is always enabled"): where its bindings lack the flag, FP16
    still comes from the graph, never from BuilderFlag.FP16 (gone in 11)."""
    fake.install(monkeypatch, api=11, strongly_typed_flag=False)
    with create_engine("tensorrt", tiny / "red.onnx", precision=precision, cache_dir=tmp_path / "c") as eng:
        build = fake.BUILDS[-1]
        assert build["strongly_typed"] and build["flags"] == [] and build["precision"] == precision
        assert eng.describe()["strongly_typed"]
