"""The TensorRT builder's host-side work, which needs no GPU: the FP16 copy and the profile."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamseg.backends.tensorrt_build import DEFAULT_FRAME_HW, BuildSettings, fp16_copy, has_qdq, profile_shapes
from streamseg.models import DECODERS, load_card
from streamseg.models.fuse import FusedHost, build_fused, core_specs


def _fused(tmp_path, card_path):
    card = load_card(str(card_path))
    _, outs, meta = core_specs(onnx.load(str(card.model_path)))
    dec = DECODERS[card.format](card, outs, meta)
    return card, dec, build_fused(card, card.model_path, dec).save(tmp_path / "fused.onnx")


def test_fp16_copy_keeps_io_and_the_fused_nodes_in_fp32_and_agrees(tmp_path, tiny):
    card, dec, path = _fused(tmp_path, tiny / "red.yaml")
    half = onnx.load(str(fp16_copy(path, tmp_path / "half.onnx")))
    f32 = onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.UINT8] + [onnx.TensorProto.INT32] * 2
    assert all(o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 for o in half.graph.output)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)  # the model's weights
    fused_consts = [t for t in half.graph.initializer if t.name.startswith("fuse/") and t.data_type in (f32, 10)]
    assert fused_consts and all(t.data_type == f32 for t in fused_consts)  # pre/post constants untouched
    rng = np.random.default_rng(0)
    host = FusedHost(card, dec, True)
    feeds, _ = host.prepare([rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)])
    a = ort.InferenceSession(str(path)).run(None, feeds)[0]
    b = ort.InferenceSession(half.SerializeToString()).run(None, feeds)[0]
    assert (a == b).mean() >= 0.99


def test_qdq_detection(tmp_path, tiny):
    assert not has_qdq(tiny / "red.onnx")


class _T:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _Net:
    def __init__(self, *inputs):
        self.inputs = inputs
        self.num_inputs = len(inputs)

    def get_input(self, i):
        return self.inputs[i]


def test_profile_spans_batch_and_frame_size_and_refuses_other_dynamic_axes():
    s = BuildSettings(max_batch=8, opt_batch=4)
    shapes = profile_shapes(_Net(_T("frames", (-1, -1, -1, 3)), _T("resize_x", (-1, 5, 640))), s, "m.onnx")
    (lo_h, lo_w), (opt_h, opt_w), (hi_h, hi_w) = DEFAULT_FRAME_HW
    assert shapes[0] == ("frames", (1, lo_h, lo_w, 3), (4, opt_h, opt_w, 3), (8, hi_h, hi_w, 3))
    assert shapes[1] == ("resize_x", (1, 5, 640), (4, 5, 640), (8, 5, 640))
    fixed = profile_shapes(_Net(_T("images", (1, 3, 360, 640))), s, "m.onnx")
    assert fixed == [("images", (1, 3, 360, 640),) * 1 + ((1, 3, 360, 640), (1, 3, 360, 640))]
    from streamseg.errors import ModelError

    with pytest.raises(ModelError, match="dynamic dimensions other than the batch"):
        profile_shapes(_Net(_T("images", (-1, 3, -1, 640))), s, "m.onnx")


def test_a_failure_inside_the_float16_converter_is_one_line_naming_model_step_and_version(tmp_path, tiny, monkeypatch):
    from importlib import metadata

    import onnxruntime.transformers.float16 as f16

    from streamseg.errors import ToolFailure

    def fails(*a, **k):
        raise ValueError("graph\nhas\ttwo lines")

    monkeypatch.setattr(f16, "convert_float_to_float16", fails)
    with pytest.raises(ToolFailure) as e:
        fp16_copy(tiny / "red.onnx", tmp_path / "half.onnx")
    assert str(e.value) == (
        f"red.onnx: the FP16 copy (onnxruntime.transformers.float16) failed inside onnxruntime "
        f"{metadata.version('onnxruntime')}: ValueError: graph has two lines"
    )
    assert e.value.exit_code == 1 and not (tmp_path / "half.onnx").exists()


@pytest.mark.parametrize("card", ["red", "synth-semantic", "synth-instance"])
def test_fp16_copy_of_a_fused_graph_is_a_valid_sorted_onnx_model(tmp_path, tiny, card):
    """The float16 converter appended the Casts it puts around the fused (fp32) nodes after their
    consumers: a graph out of topological order that onnx.checker refuses. The copy is sorted."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    card_path = tiny / "red.yaml" if card == "red" else root / "engines" / f"{card}.yaml"
    _, _, path = _fused(tmp_path, card_path)
    half = onnx.load(str(fp16_copy(path, tmp_path / "half.onnx")))
    onnx.checker.check_model(half, full_check=True)
    assert any(n.op_type == "Cast" for n in half.graph.node)


def test_fp16_copy_keeps_the_quantized_ops_of_an_int8_model_in_float32(tmp_path, tiny):
    """DynamicQuantizeLinear takes float32 only: converted, the shared YOLOv8n-seg's FP16 copy was invalid."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(tiny / "red.onnx"), str(tmp_path / "dyn.onnx"), op_types_to_quantize=["Conv"])
    half_path = fp16_copy(tmp_path / "dyn.onnx", tmp_path / "half.onnx")
    onnx.checker.check_model(onnx.load(str(half_path)), full_check=True)
    x = np.random.default_rng(0).random((1, 3, 48, 64), np.float32)
    ref = ort.InferenceSession(str(tmp_path / "dyn.onnx")).run(None, {"images": x})[0]
    out = ort.InferenceSession(str(half_path)).run(None, {"images": x})[0]
    assert (out.argmax(1) == ref.argmax(1)).mean() > 0.99
