"""INT8 on the CPU behind the accuracy gate (ONNX Runtime static quantization)."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from streamseg.backends import create_engine
from streamseg.errors import BackendError, ModelError
from streamseg.frames import SemanticResult
from streamseg.quantize import agreement, build_int8, quantize_onnxruntime
from tests.conftest import CARDS, needs_shared_models, run_streamseg

SYN = "synthetic://driving?size=320x180&seed=900&frames=40"


def test_gate_accepts_a_good_quantization_and_the_backend_runs_it(tiny, tmp_path):
    v = build_int8(str(tiny / "red.yaml"), SYN, frames=8, cache_dir=tmp_path)
    assert v["agreement"] >= 0.95 and v["gate_frames"] == 8
    with create_engine("onnxruntime", tiny / "red.onnx", precision="int8", cache_dir=tmp_path, threads=1) as e:
        assert e.run_path != e.model_path and str(e.run_path).endswith(".int8.onnx")
        x = np.zeros((2, 3, 48, 64), np.float32)
        x[:, 0, :, :32] = 1
        cls = e.infer({"images": x})["seg"].argmax(1)
        assert cls[:, :, :32].all() and not cls[:, :, 32:].any()


def test_gate_refuses_a_broken_quantization_saying_by_how_much(tiny, tmp_path):
    def broken(model_path, input_name, calib, out_path):
        quantize_onnxruntime(model_path, input_name, calib, out_path)
        m = onnx.load(str(out_path))
        for init in m.graph.initializer:  # flip the bias: the "red" class goes everywhere else
            if init.name.startswith("B"):
                arr = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array((arr[::-1]).copy(), init.name))
        onnx.save(m, str(out_path))

    with pytest.raises(ModelError, match=r"below the gate's 0.950 \(short by"):
        build_int8(str(tiny / "red.yaml"), SYN, frames=8, cache_dir=tmp_path, quantizer=broken)
    with pytest.raises(BackendError, match="no INT8 model"):  # nothing was stored
        with create_engine("onnxruntime", tiny / "red.onnx", precision="int8", cache_dir=tmp_path):
            pass


def test_agreement_measure():
    gm = np.zeros((4, 4), np.uint8)
    gm[2:] = 1
    a = SemanticResult(gm.copy(), ["bg", "road"], gm, ["road"])
    gm2 = gm.copy()
    gm2[1] = 1
    b = SemanticResult(gm2.copy(), ["bg", "road"], gm2, ["road"])
    assert agreement("semantic", [a], [a]) == 1.0
    assert agreement("semantic", [a], [b]) == pytest.approx(8 / 12)


def _zero_points(path):
    """{Q/DQ node name: its zero point array} and the DequantizeLinear inputs' dtypes."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zps = {n.name: inits[n.input[2]] if len(n.input) > 2 and n.input[2] else None for n in qdq}
    dq_inputs = {inits[n.input[0]].dtype for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    return qdq, zps, dq_inputs


@pytest.mark.parametrize("card", ["red", "synth-instance"])
def test_tensorrt_int8_is_symmetric_signed_qdq_and_passes_the_gate(tiny, tmp_path, card):
    """TensorRT takes only signed INT8 Q/DQ with zero point 0: every QuantizeLinear/DequantizeLinear
    of its artifact has an int8 zero point equal to 0 (biases stay float: no int32 DequantizeLinear),
    ONNX Runtime runs it, the same gate judges it, and it is cached apart from ONNX Runtime's own."""
    from pathlib import Path

    from streamseg.backends.cache import EngineCache, int8_cache_key

    card_path = tiny / "red.yaml" if card == "red" else Path(__file__).parent.parent / "engines" / "synth-instance.yaml"
    threshold = 0.95 if card == "red" else 0.0  # the instance model's verdict is the gate's to give; here: its form
    v = build_int8(str(card_path), SYN, backend="tensorrt", frames=4, threshold=threshold, cache_dir=tmp_path)
    assert v["backend"] == "tensorrt" and v["quantizer"] == "onnxruntime"
    qdq, zps, dq_inputs = _zero_points(v["file"])
    assert qdq and all(z is not None and z.dtype == np.int8 and not z.any() for z in zps.values()), zps
    assert dq_inputs <= {np.dtype(np.int8)}
    # ONNX Runtime's own INT8 model is the asymmetric one (uint8 activations), under its own key
    model = tiny / "red.onnx" if card == "red" else card_path.with_suffix(".onnx")
    assert int8_cache_key(model, "tensorrt") != int8_cache_key(model, "onnxruntime")
    assert EngineCache(tmp_path).lookup(int8_cache_key(model, "tensorrt")) == Path(v["file"])
    assert EngineCache(tmp_path).lookup(int8_cache_key(model, "onnxruntime")) is None
    if card == "red":
        v_ort = build_int8(str(card_path), SYN, frames=4, cache_dir=tmp_path)
        _, zps_ort, _ = _zero_points(v_ort["file"])
        assert any(z is not None and z.dtype == np.uint8 for z in zps_ort.values())


def _dynamic_int8(tiny, tmp_path):
    """red.onnx as ONNX Runtime's dynamic quantization leaves it (ConvInteger, DynamicQuantizeLinear), with its card."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(tiny / "red.onnx"), str(tmp_path / "red.onnx"), op_types_to_quantize=["Conv"])
    (tmp_path / "red.yaml").write_text((tiny / "red.yaml").read_text())
    return tmp_path / "red.yaml"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tensorrt"])
def test_an_already_quantized_model_is_refused_in_one_line_before_calibration(tiny, tmp_path, backend):
    """The shared YOLOv8n-seg is ONNX Runtime's dynamic INT8: quantize_static on it built a cycle
    (its new `<x>_scale` tensors took the names of DynamicQuantizeLinear's outputs) and asserted
    "Graph is not a DAG" in a traceback. Quantizing an INT8 model again is refused, naming its ops."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    card = _dynamic_int8(tiny, tmp_path)
    with pytest.raises(ModelError, match=r"red.onnx is already quantized \(\d+ ConvInteger, \d+ DynamicQuantizeLinear"):
        build_int8(str(card), "no-such-file.mp4", backend=backend, frames=4, cache_dir=tmp_path / "c")


@pytest.mark.parametrize(
    "quantizer, library, patch",
    [
        ("onnxruntime", "onnxruntime", "onnxruntime.quantization.quantize_static"),
        ("nncf", "nncf", "nncf.quantize"),
    ],
)
def test_a_failure_inside_a_quantizer_is_one_line_naming_model_step_and_version(
    tiny, tmp_path, monkeypatch, capsys, quantizer, library, patch
):
    """`engines build --precision int8`: a quantizer that raises (onnxruntime 1.32's "Graph is not a
    DAG", say) is one line naming the model, the step and the library's version; exit code 1 (the
    run failed, not the user: README's exit codes); no traceback; nothing stored."""
    from importlib import metadata

    from streamseg import cli

    pytest.importorskip(library)
    module, name = patch.rsplit(".", 1)

    def fails(*a, **k):
        raise AssertionError("Graph is not a DAG")

    monkeypatch.setattr(__import__(module, fromlist=[name]), name, fails)
    argv = ["engines", "build", str(tiny / "red.yaml"), "--backend", "openvino" if quantizer == "nncf" else "onnxruntime"]
    argv += ["--precision", "int8", "--quantizer", quantizer, "--calib", SYN, "--calib-frames", "2"]
    argv += ["--cache-dir", str(tmp_path / "c")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"streamseg: error: red.onnx: INT8 quantization ({quantizer} for {argv[4]}) failed inside "
        f"{library} {metadata.version(library)}: AssertionError: Graph is not a DAG"
    )
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.onnx"))


@needs_shared_models
def test_engines_build_int8_of_the_shared_yolov8n_seg_is_one_line(tmp_path):
    """The issue's command (it ended in quantize_static's traceback): now one line, exit 2."""

    r = run_streamseg(
        "engines", "build", CARDS / "yolov8n-seg-coco.yaml", "--backend", "onnxruntime", "--precision", "int8",
        "--calib", "synthetic://driving?size=640x360&fps=30&seed=3&frames=8", "--calib-frames", "4",
        "--cache-dir", tmp_path,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines() == [
        f"streamseg: error: {CARDS / 'yolov8n-seg-coco.yaml'}: yolov8n-seg-int8-320.onnx is already quantized "
        "(76 ConvInteger, 67 DynamicQuantizeLinear): INT8 is made from the float model; run this one as it is (--precision fp32)"
    ]
