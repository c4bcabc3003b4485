import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from streamseg.backends import create_engine
from streamseg.errors import ModelError
from streamseg.models.make_dynamic import make_dynamic
from tests.conftest import TWIN, needs_shared_models


def reshape_model(path, allowzero=0):
    """[1,3,4,4] -> conv -> Reshape to the constant [1, 2, 16] (the batch baked in)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 2, 16])
    w = numpy_helper.from_array(np.random.default_rng(0).random((2, 3, 1, 1), np.float32), "W")
    shape = numpy_helper.from_array(np.array([1, 2, 16], np.int64), "S")
    nodes = [
        helper.make_node("Conv", ["images", "W"], ["c"]),
        helper.make_node("Reshape", ["c", "S"], ["flat"], allowzero=allowzero),
    ]
    m = helper.make_model(
        helper.make_graph(nodes, "r", [x], [y], [w, shape]), opset_imports=[helper.make_opsetid("", 17)]
    )
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_batch_one_model_becomes_dynamic_and_batches_for_real(tiny, tmp_path):
    msg = make_dynamic(tiny / "red_b1.onnx", tmp_path / "dyn.onnx")
    assert "now dynamic" in msg
    with create_engine("onnxruntime", tmp_path / "dyn.onnx", threads=1) as e:
        assert e.max_batch is None
        out = e.infer({"images": np.zeros((4, 3, 48, 64), np.float32)})
        assert e.calls == 1 and out["seg"].shape == (4, 2, 48, 64)


def test_reshapes_that_bake_the_batch_are_fixed(tmp_path):
    msg = make_dynamic(reshape_model(tmp_path / "r.onnx"), tmp_path / "d.onnx")
    assert "1 reshapes now keep the batch" in msg
    with create_engine("onnxruntime", tmp_path / "d.onnx", threads=1) as e:
        assert e.infer({"images": np.ones((3, 3, 4, 4), np.float32)})["flat"].shape == (3, 2, 16)


def test_what_cannot_be_fixed_is_refused_saying_where(tmp_path):
    with pytest.raises(ModelError, match="still fixes the batch to 1"):
        make_dynamic(reshape_model(tmp_path / "r.onnx", allowzero=1), tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()


def test_already_dynamic_and_not_onnx(tiny, tmp_path):
    with pytest.raises(ModelError, match="already dynamic"):
        make_dynamic(tiny / "red.onnx", tmp_path / "x.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        make_dynamic(tmp_path / "bad.onnx", tmp_path / "x.onnx")


@needs_shared_models
def test_twinlitenet_becomes_dynamic(tmp_path):
    assert "now dynamic" in make_dynamic(TWIN, tmp_path / "twin.onnx")
