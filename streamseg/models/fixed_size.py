"""A copy of an export that every backend compiles: the card's input size written in, and
GatherElements made explicit.

- An export with a dynamic input size (Ultralytics `dynamic=True`: N x 3 x H x W all symbolic)
  gets the card's H and W, the batch axis left dynamic: a TensorRT profile needs every axis
  but the batch, and the card fixes the size the model is fed at anyway.
- YOLO26's end-to-end head gathers its top-k with GatherElements whose indices are smaller
  than the data outside the gather axis ([B, 300, 4] indices into [B, 2100, 116] data).
  ONNX's coordinate equations allow it and ONNX Runtime runs it; OpenVINO's shape check
  demands equal sizes and refuses the model. Slicing the data to the indices' size outside
  the axis first is the same computation, which every backend accepts.

ONNX Runtime runs the user's file as it is (it needs neither); OpenVINO gets both changes,
TensorRT the input size. The copy is a temporary file, made again on every load (never read back from a cache
folder, so nothing unchecked is loaded) and deleted with the model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from streamseg.errors import ModelError


def _image_input(m, input_name: str | None):
    """The graph input the card feeds (by name, else the only one), or None."""
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    if input_name:
        return next((i for i in inputs if i.name == input_name), None)
    return inputs[0] if len(inputs) == 1 else None  # several: the card check names the problem


def _dynamic_dims(inp) -> list[int | None] | None:
    """The input's dims (None = symbolic) when any axis but the batch is symbolic, else None."""
    if inp is None:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    return dims if len(dims) == 4 and None in dims[1:] else None


def _explicit_gather_elements(graph) -> int:
    """Before each GatherElements, slice its data to the indices' size on every axis but the
    gather axis (a no-op where they are equal). Returns how many were rewritten."""
    from onnx import TensorProto, helper

    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "GatherElements":
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        data, idx = node.input[0], node.input[1]
        p = f"{node.name or node.output[0]}/streamseg_slice"
        c_axis, c_zero, c_one = f"{p}/axis", f"{p}/zero", f"{p}/one"
        nodes += [
            helper.make_node("Constant", [], [c_axis], value=helper.make_tensor(c_axis, TensorProto.INT64, [], [axis])),
            helper.make_node("Constant", [], [c_zero], value=helper.make_tensor(c_zero, TensorProto.INT64, [], [0])),
            helper.make_node("Constant", [], [c_one], value=helper.make_tensor(c_one, TensorProto.INT64, [], [1])),
            helper.make_node("Shape", [idx], [f"{p}/idx_shape"]),
            helper.make_node("Shape", [data], [f"{p}/data_shape"]),
            helper.make_node("Size", [f"{p}/idx_shape"], [f"{p}/rank"]),
            helper.make_node("Range", [c_zero, f"{p}/rank", c_one], [f"{p}/dims"]),
        ]
        dims = f"{p}/dims"
        if axis < 0:  # compare against the axis as written
            nodes.append(helper.make_node("Sub", [dims, f"{p}/rank"], [f"{p}/dims_neg"]))
            dims = f"{p}/dims_neg"
        nodes += [
            helper.make_node("Equal", [dims, c_axis], [f"{p}/is_axis"]),
            # the data's own size on the gather axis, the indices' size elsewhere
            helper.make_node("Where", [f"{p}/is_axis", f"{p}/data_shape", f"{p}/idx_shape"], [f"{p}/ends"]),
            helper.make_node("Sub", [f"{p}/ends", f"{p}/ends"], [f"{p}/starts"]),
            helper.make_node("Slice", [data, f"{p}/starts", f"{p}/ends"], [f"{p}/data"]),
        ]
        node.input[0] = f"{p}/data"
        nodes.append(node)
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def with_input_size(
    model_path: Path, input_name: str | None, layout: str, size_wh: tuple[int, int], *, explicit_gathers: bool = True
) -> tuple[Path, tempfile.TemporaryDirectory] | None:
    """The portable copy of the model (see the module's docstring), or None when the model
    needs none (`explicit_gathers`: rewrite GatherElements too). Keep the returned folder
    alive while the engine runs."""
    import onnx

    if model_path.suffix.lower() != ".onnx" or not model_path.is_file():
        return None
    try:
        m = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # not ONNX, or not readable: the backend's load names the problem
        return None
    inp = _image_input(m, input_name)
    dynamic = _dynamic_dims(inp) is not None
    gathers = explicit_gathers and any(n.op_type == "GatherElements" for n in m.graph.node)
    if not (dynamic or gathers):
        return None
    from streamseg.models.onnx_check import check_external_data

    check_external_data(model_path)  # external data must stay in the model's folder; it is inlined
    onnx.load_external_data_for_model(m, str(model_path.parent))
    if dynamic:
        w, h = size_wh
        want = (3, h, w) if layout == "NCHW" else (h, w, 3)
        for d, v in zip(list(inp.type.tensor_type.shape.dim)[1:], want, strict=True):
            if d.HasField("dim_value") and d.dim_value != v:
                raise ModelError(f"{model_path.name}: input {inp.name!r} has {d.dim_value} where the card says {v}")
            d.Clear()
            d.dim_value = v
    if gathers:
        _explicit_gather_elements(m.graph)
    tmp = tempfile.TemporaryDirectory(prefix="streamseg-model-")
    w, h = size_wh
    out = Path(tmp.name) / f"{model_path.stem}-{w}x{h}.onnx"
    try:
        onnx.save(m, str(out))
    except (OSError, ValueError) as e:
        tmp.cleanup()
        raise ModelError(f"{model_path.name}: cannot write a fixed-size copy: {e}") from None
    return out, tmp
