"""INT8 on the CPU behind the accuracy gate (ONNX Runtime static quantization)."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from streamseg.backends import create_engine
from streamseg.errors import BackendError, ModelError
from streamseg.frames import SemanticResult
from streamseg.quantize import agreement, build_int8, quantize_onnxruntime

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
