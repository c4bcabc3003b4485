"""The fixed-size copy (models/fixed_size.py): what it rewrites for TensorRT computes the same values."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamseg.models.fixed_size import FLOAT_TYPES, elem_types, with_input_size
from tests import models_factory as mf
from tests.conftest import SHARED

SEM = SHARED / "models" / "formats" / "yolo26n-sem-random.onnx"


def uint8_cast_problems(model: onnx.ModelProto) -> list[str]:
    """Casts TensorRT refuses: UINT8 converts only to and from FP32/FP16 (NvInferRuntimeBase.h,
    DataType::kUINT8), and a UINT8 tensor may only be a graph input or output (onnx-tensorrt
    ModelImporter.cpp)."""
    types = elem_types(model)
    outputs = {o.name for o in model.graph.output}
    inputs = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    problems = []
    for n in model.graph.node:
        to = onnx.helper.get_node_attr_value(n, "to") if n.op_type == "Cast" else None
        if to == onnx.TensorProto.UINT8 and types.get(n.input[0]) not in FLOAT_TYPES:
            problems.append(f"{n.name or n.output[0]}: Cast to UINT8 from type {types.get(n.input[0])}")
        if any(i in inputs for i in n.input) and (n.op_type != "Cast" or to not in FLOAT_TYPES):
            problems.append(f"{n.name or n.output[0]}: {n.op_type} reads a UINT8 input")
        problems += [
            f"{n.name or o}: UINT8 intermediate {o}"
            for o in n.output
            if types.get(o) == onnx.TensorProto.UINT8 and o not in outputs
        ]
    return problems


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("scale", [None, 600.0])  # 600: ids past 255, which the UINT8 cast wraps
def test_integer_to_uint8_output_cast_goes_through_float_with_the_same_values(tmp_path, scale):
    src = mf.uint8_ids_model(tmp_path / "ids.onnx", scale=scale)
    assert uint8_cast_problems(onnx.load(str(src)))  # the export as it is: INT64 -> UINT8
    assert with_input_size(src, None, "NCHW", (16, 8), explicit_gathers=False) is None  # nothing else to do
    copy, keep = with_input_size(src, None, "NCHW", (16, 8), explicit_gathers=False, uint8_casts=True)
    assert uint8_cast_problems(onnx.load(str(copy))) == []
    x = np.random.default_rng(0).random((2, 3, 8, 16), dtype=np.float32)
    want = _run(src, x)
    if scale is not None:
        assert (np.floor(x * scale).max(axis=1) > 255).any()  # wrapped values are in the test
    np.testing.assert_array_equal(_run(copy, x), want)
    keep.cleanup()


@pytest.mark.skipif(not SEM.is_file(), reason="../shared/data/models/formats not present")
def test_yolo26_sem_copy_for_tensorrt_has_no_integer_uint8_cast_and_the_same_ids(tmp_path):
    copy, keep = with_input_size(SEM, None, "NCHW", (320, 320), explicit_gathers=False, uint8_casts=True)
    assert uint8_cast_problems(onnx.load(str(SEM))) and uint8_cast_problems(onnx.load(str(copy))) == []
    x = np.random.default_rng(1).random((1, 3, 320, 320), dtype=np.float32)
    np.testing.assert_array_equal(_run(copy, x), _run(SEM, x))
    keep.cleanup()
