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

- For TensorRT, a graph output made by a Cast from an integer type to UINT8 (YOLO26-sem's
  class ids: ArgMax INT64 -> Cast UINT8) becomes Mod 256 -> Cast FLOAT -> Cast UINT8: TensorRT
  converts UINT8 only to and from FP32/FP16 (NVIDIA/TensorRT include/NvInferRuntimeBase.h,
  `DataType::kUINT8`: "kUINT8 conversions are only supported for {kFLOAT, kHALF}"). The Mod
  keeps the wrap-around of the integer -> UINT8 cast, so the values are the same.

ONNX Runtime runs the user's file as it is (it needs none of these); OpenVINO gets the first two,
TensorRT the first and the last. The copy is a temporary file, made again on every load (never read back from a cache
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


INTEGER_TYPES = (2, 3, 4, 5, 6, 7, 12, 13)  # TensorProto UINT8, INT8, UINT16, INT16, INT32, INT64, UINT32, UINT64
FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def elem_types(m) -> dict[str, int]:
    """The element type of every tensor of the graph whose type ONNX's inference knows."""
    import onnx

    types = {i.name: i.data_type for i in m.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(m).graph
    except Exception:  # a custom op or a broken model: what the graph itself declares
        inferred = m.graph
    for vi in (*inferred.input, *inferred.value_info, *inferred.output):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for n in m.graph.node:  # a Cast says its output type even where inference gave up
        if n.op_type == "Cast":
            types[n.output[0]] = next(a.i for a in n.attribute if a.name == "to")
    return types


def _uint8_output_casts(m) -> list[tuple]:
    """(Cast node, its input's type) for each Cast from an integer type to UINT8 that makes a graph output."""
    outputs = {o.name for o in m.graph.output}
    casts = [
        n
        for n in m.graph.node
        if n.op_type == "Cast" and n.output[0] in outputs and any(a.name == "to" and a.i == 2 for a in n.attribute)
    ]
    if not casts:
        return []
    types = elem_types(m)
    return [(n, types[n.input[0]]) for n in casts if types.get(n.input[0]) in INTEGER_TYPES and types[n.input[0]] != 2]


def _uint8_through_float(graph, casts) -> None:
    """integer -> UINT8 casts (graph outputs) as integer -> Mod 256 -> FLOAT -> UINT8: the same
    values, with UINT8 converted only from FP32 as TensorRT requires."""
    from onnx import TensorProto, helper

    rewrite = {n.output[0]: t for n, t in casts}
    nodes = []
    for node in graph.node:
        if node.op_type != "Cast" or node.output[0] not in rewrite:
            nodes.append(node)
            continue
        src, out = node.input[0], node.output[0]
        p = f"{node.name or out}/streamseg_uint8"
        divisor = helper.make_tensor(f"{p}/256", rewrite[out], [], [256])  # Mod wants the source's type
        nodes += [
            helper.make_node("Constant", [], [f"{p}/256"], value=divisor),
            helper.make_node("Mod", [src, f"{p}/256"], [f"{p}/wrapped"], fmod=0),
            helper.make_node("Cast", [f"{p}/wrapped"], [f"{p}/float"], to=TensorProto.FLOAT),
            helper.make_node("Cast", [f"{p}/float"], [out], name=node.name, to=TensorProto.UINT8),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def with_input_size(
    model_path: Path,
    input_name: str | None,
    layout: str,
    size_wh: tuple[int, int],
    *,
    explicit_gathers: bool = True,
    uint8_casts: bool = False,
) -> tuple[Path, tempfile.TemporaryDirectory] | None:
    """The portable copy of the model (see the module's docstring), or None when the model
    needs none (`explicit_gathers`: rewrite GatherElements too; `uint8_casts`: integer -> UINT8
    output casts through FP32, for TensorRT). Keep the returned folder alive while the engine runs."""
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
    casts = _uint8_output_casts(m) if uint8_casts else []
    if not (dynamic or gathers or casts):
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
    if casts:
        _uint8_through_float(m.graph, casts)
    tmp = tempfile.TemporaryDirectory(prefix="streamseg-model-")
    w, h = size_wh
    out = Path(tmp.name) / f"{model_path.stem}-{w}x{h}.onnx"
    try:
        onnx.save(m, str(out))
    except (OSError, ValueError) as e:
        tmp.cleanup()
        raise ModelError(f"{model_path.name}: cannot write a fixed-size copy: {e}") from None
    return out, tmp
