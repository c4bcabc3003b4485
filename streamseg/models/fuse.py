"""One graph per model: preprocessing + the model + postprocessing, built from the card.

The fused graph takes what a source gives, `frames` uint8 [N, H, W, 3] BGR at capture size
(H and W dynamic), and does in the engine what `Preprocessor` and the decoders do in numpy:
resize or letterbox (bilinear, half-pixel centres like cv2.INTER_LINEAR, rounded to whole
grey levels as cv2's uint8 output is), colour order, scale/mean/std, layout. After the
model it reduces the outputs to compact fixed-shape tensors:

- semantic (`semantic-logits`, `semantic-argmax`): `label_map` uint8 [N, h, w], the class of
  each pixel at model resolution (heads combined as SemanticLogitsDecoder does);
- `yolo-seg`: each anchor's best class and score, the card's class filter, class-aware NMS
  (ONNX NonMaxSuppression: score > conf, suppress IoU > iou, as `nms_xyxy`), then the
  best `max_detections` by score into fixed slots: `boxes_xyxy` [N, M, 4] (input pixels),
  `scores` [N, M], `class_id` int32 [N, M] (-1 in empty slots), `mask_logits` [N, M, ph, pw]
  (coefficients @ prototypes at prototype resolution, cropped to the box plus a 3-cell
  margin, the most the host's bilinear sampling into the frame reads), `count` int32 [N].
  `nms="static"` makes the same selection with no data-dependent shape after the NMS node
  (`_select_static`), for a TensorRT that refuses the default's gathers on NMS's [K, 3] output.

Every graph keeps TensorRT's ONNX parser rules (issue 25 §2, each cited where it is kept): no
UINT8 tensor but the frames and `label_map`, GatherND on rank-3 data only, TopK sorted with a
constant K <= TRT_TOPK_MAX.

The in-graph resize is cv2's own fixed-point arithmetic from host-made tables (bit-exact wherever
OpenCV downscales, which every capture size in the project's data does; a frame smaller than the
model input differs by one grey level on under 1% of values). On the CPU backends the measured
default resizes with OpenCV before the graph instead (`RESIZE_IN_GRAPH`).

What stays on the host is per-instance and cheap: mapping boxes to the frame and warping
each mask's logits into its box at frame resolution (the same code path as the numpy
decoder, so the two agree), and the semantic crop and nearest-neighbour resize.

Tool: plain `onnx.helper` nodes appended to the model's own graph. The pre/post graphs are
~40 standard nodes; onnx (already a dependency, maintained by the ONNX project) builds and
checks them with no new package, and writing them at the model's own opset avoids the
opset/IR conversion `onnx.compose.merge_models` would need (the shared models are opset 12,
17 and 20). onnxscript or onnx-graphsurgeon would add a dependency for no capability we use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamseg.backends.base import TensorSpec, graph_specs
from streamseg.errors import ModelError
from streamseg.frames import Instances, SemanticResult
from streamseg.models.card import ModelCard
from streamseg.models.fixed_size import FLOAT_TYPES, INTEGER_TYPES, elem_types
from streamseg.models.preprocess import RESIZE_ROWS, Preprocessor, ResizeTransform, resize_tables
from streamseg.models.yolo_seg import masks_in_frame

FRAMES = "frames"
RESIZE_X, RESIZE_Y = "resize_x", "resize_y"
MASK_MARGIN_CELLS = 3.0
# TensorRT's TopK takes k up to 3840 (NVIDIA/TensorRT include/NvInfer.h, ITopKLayer::setK: "Currently
# only values up to 3840 are supported"; onnx-tensorrt docs/operators.md, TopK)
TRT_TOPK_MAX = 3840
NMS_VARIANTS = ("dynamic", "static")
CPU_BACKENDS = ("onnxruntime", "openvino")  # graphs for these may hold uint8 intermediates


def core_specs(model: onnx.ModelProto) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec], dict[str, str]]:
    """Inputs, outputs (as TensorSpec) and metadata of an ONNX model, without a runtime."""
    return graph_specs(model)


class _Builder:
    """Appends nodes to a graph under unique names, at the graph's opset."""

    def __init__(self, graph: onnx.GraphProto, opset: int) -> None:
        self.g = graph
        self.opset = opset
        self.n = 0
        self.nodes: list[onnx.NodeProto] = []

    def name(self, hint: str) -> str:
        self.n += 1
        return f"fuse/{hint}_{self.n}"

    def const(self, value, dtype=None, hint: str = "c") -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.g.initializer.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1, **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if outputs == 1 else outs

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int = 0) -> str:
        """ReduceSum took its axes as an input from opset 13, the other reductions from 18."""
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [x, self.const([axis], np.int64)], keepdims=keepdims)
        return self.op(op_type, [x], axes=[axis], keepdims=keepdims)

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        return self.op(
            "Slice", [x, self.const([start], np.int64), self.const([end], np.int64), self.const([axis], np.int64)]
        )


@dataclass(frozen=True)
class FusedModel:
    """A fused ONNX model and what the host needs to read its outputs."""

    model: onnx.ModelProto
    task: str
    outputs: tuple[str, ...]
    resize_in_graph: bool = True
    nms: str | None = None  # yolo-seg: which NMS variant (NMS_VARIANTS)

    def save(self, path: str | Path) -> Path:
        onnx.save(self.model, str(path))
        return Path(path)


def build_fused(
    card: ModelCard,
    core_path: str | Path,
    decoder,
    *,
    resize_in_graph: bool = True,
    nms: str = "dynamic",
    backend: str | None = None,
) -> FusedModel:
    """The card's model at `core_path` (fp32, or the gated INT8 QDQ copy) with its preprocessing
    and postprocessing around it. `decoder` is the card's numpy decoder, already given its
    thresholds: the graph reads labels, class filter and thresholds from it.

    resize_in_graph: the graph takes frames at capture size and resizes them itself (the GPU
    graph); False: it takes frames OpenCV already resized/letterboxed to the input size, uint8
    BGR (measured faster on CPU backends, whose integer kernels are slow).
    nms (yolo-seg): "dynamic", ONNX NonMaxSuppression over every anchor, its [K, 3] selection
    gathered and scattered; "static", the same detections with no data-dependent shape after the
    NMS node (see _select_static), for a TensorRT that refuses the dynamic one.
    backend: the engine it is built for: "tensorrt" bounds max_detections to what its TopK takes;
    the CPU backends' graph without the resize orders the uint8 planes before casting (faster there,
    the same values), any other casts the frames first, as TensorRT requires."""
    if nms not in NMS_VARIANTS:
        raise ModelError(f"{card.name}: nms must be one of {', '.join(NMS_VARIANTS)}, not {nms!r}")
    if backend == "tensorrt" and card.task == "instance" and int(getattr(decoder, "max_det", 0)) > TRT_TOPK_MAX:
        raise ModelError(
            f"{card.name}: max_detections {decoder.max_det} is more than TensorRT's TopK takes ({TRT_TOPK_MAX}); "
            f"set max_detections <= {TRT_TOPK_MAX} for the tensorrt backend"
        )
    model = onnx.load(str(core_path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 12:
        model = onnx.version_converter.convert_version(model, 13)
        opset = 13
    ins, outs, _ = core_specs(model)
    in_name = card.input.name or (next(iter(ins)) if len(ins) == 1 else None)
    if in_name not in ins:
        raise NotFusable(f"{card.name}: cannot fuse: the model has inputs {sorted(ins)}; set input.name in the card")
    g = model.graph
    b = _Builder(g, opset)
    in_vi = next(v for v in g.input if v.name == in_name)
    in_type = in_vi.type.tensor_type.elem_type
    batch = in_vi.type.tensor_type.shape.dim[0]
    fixed_batch = batch.dim_value if batch.HasField("dim_value") and batch.dim_value > 0 else None

    _preprocess(b, card, in_name, in_type, resize_in_graph, cast_first=backend not in CPU_BACKENDS)
    if card.task == "semantic":
        types = elem_types(model) if card.format == "semantic-argmax" else {}
        out_vis = _semantic_post(b, card, decoder, outs, types)
        task_outputs = ("label_map",)
    else:
        anchors = _static_dim(model, decoder.det_name, 2) if nms == "static" else None
        out_vis = _yolo_post(b, card, decoder, outs, nms, anchors)
        task_outputs = ("boxes_xyxy", "scores", "class_id", "mask_logits", "count")

    # preprocessing, the model, postprocessing: the node list stays topologically sorted
    n_pre = b.pre_count
    new_nodes = b.nodes[:n_pre] + list(g.node) + b.nodes[n_pre:]
    del g.node[:]
    g.node.extend(new_nodes)
    # inputs: frames replaces the model's input
    kept = [v for v in g.input if v.name != in_name]
    del g.input[:]
    n = fixed_batch if fixed_batch is not None else "batch"
    dw, dh = card.input.size_wh
    if resize_in_graph:
        frame_inputs = [
            helper.make_tensor_value_info(FRAMES, TensorProto.UINT8, [n, "height", "width", 3]),
            helper.make_tensor_value_info(RESIZE_X, TensorProto.INT32, [n, RESIZE_ROWS, dw]),
            helper.make_tensor_value_info(RESIZE_Y, TensorProto.INT32, [n, RESIZE_ROWS, dh]),
        ]
    else:
        frame_inputs = [helper.make_tensor_value_info(FRAMES, TensorProto.UINT8, [n, dh, dw, 3])]
    g.input.extend([*frame_inputs, *kept])
    del g.output[:]
    g.output.extend(out_vis(n))
    # intermediate shape annotations of the old outputs may now be wrong for no one: drop them
    del g.value_info[:]
    _prune(g)
    model.doc_string = f"streamseg fused graph for card {card.name}: uint8 BGR frames in, {', '.join(task_outputs)} out"
    onnx.checker.check_model(model)
    return FusedModel(model, card.task, task_outputs, resize_in_graph, nms if card.task == "instance" else None)


def _prune(g: onnx.GraphProto) -> None:
    """Drop the nodes no graph output needs (the model's outputs that the postprocessing reads
    past, e.g. YOLO26-sem's Cast to UINT8: TensorRT's parser imports every node, dead or not)."""
    needed = {o.name for o in g.output}

    def reads(node: onnx.NodeProto):  # its inputs, and the outer names its subgraphs read
        yield from node.input
        for a in node.attribute:
            for sub in (*([a.g] if a.HasField("g") else []), *a.graphs):
                for n in sub.node:
                    yield from reads(n)

    kept = []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(reads(node))
    if len(kept) < len(g.node):
        del g.node[:]
        g.node.extend(reversed(kept))


def _static_dim(model: onnx.ModelProto, name: str, axis: int) -> int | None:
    """Axis `axis` of tensor `name` where ONNX's shape inference gives a number, else None."""
    if (v := next((o for o in model.graph.output if o.name == name), None)) is not None:
        dims = v.type.tensor_type.shape.dim
        if len(dims) > axis and dims[axis].HasField("dim_value") and dims[axis].dim_value > 0:
            return dims[axis].dim_value
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    except Exception:  # a model ONNX cannot infer: the caller takes the safe default
        return None
    for v in (*inferred.value_info, *inferred.output):
        if v.name == name:
            dims = v.type.tensor_type.shape.dim
            if len(dims) > axis and dims[axis].HasField("dim_value") and dims[axis].dim_value > 0:
                return dims[axis].dim_value
    return None


def _preprocess(
    b: _Builder, card: ModelCard, in_name: str, in_type: int, resize_in_graph: bool, cast_first: bool = True
) -> None:
    """frames uint8 NHWC BGR (+ resize tables) -> the model's input tensor, named as the model's input.

    The resize is cv2's own fixed-point arithmetic, from the tables `resize_tables` makes on the
    host for each capture size: two Gathers per axis and int32 multiplies, so the fused graph feeds
    the model the very pixels `Preprocessor` does (bit for bit where OpenCV downscales, checked in
    the tests). Letterbox padding: columns/rows outside the content have zero weights, and the
    pad grey is added after the cast."""
    spec = card.input
    if resize_in_graph:

        def row(table: str, i: int, shape: list[int]) -> str:
            first = b.op("Gather", [table, b.const(0, np.int64)], axis=0)  # the batch shares one size
            return b.op("Reshape", [b.op("Gather", [first, b.const(i, np.int64)], axis=0), b.const(shape, np.int64)])

        # uint8 -> float -> int32: TensorRT casts uint8 only to and from floating point
        f = b.op("Cast", [b.op("Cast", [FRAMES], to=TensorProto.FLOAT)], to=TensorProto.INT32)  # N, H, W, 3
        x0, x1 = (row(RESIZE_X, i, [-1]) for i in (0, 1))
        a0, a1 = (row(RESIZE_X, i, [1, 1, -1, 1]) for i in (2, 3))
        h = b.op(
            "Add",
            [
                b.op("Mul", [b.op("Gather", [f, x0], axis=2), a0]),
                b.op("Mul", [b.op("Gather", [f, x1], axis=2), a1]),
            ],
        )
        h = b.op("Div", [h, b.const(16, np.int32)])  # N, H, dw, 3 (values >= 0: Div is >> 4)
        y0, y1 = (row(RESIZE_Y, i, [-1]) for i in (0, 1))
        b0, b1 = (row(RESIZE_Y, i, [1, -1, 1, 1]) for i in (2, 3))
        k = b.const(65536, np.int32)
        v = b.op(
            "Add",
            [
                b.op("Div", [b.op("Mul", [b.op("Gather", [h, y0], axis=1), b0]), k]),
                b.op("Div", [b.op("Mul", [b.op("Gather", [h, y1], axis=1), b1]), k]),
            ],
        )
        v = b.op("Div", [b.op("Add", [v, b.const(2, np.int32)]), b.const(4, np.int32)])  # N, dh, dw, 3
        v = b.op("Transpose", [v], perm=[0, 3, 1, 2])  # N, 3, dh, dw
        x = b.op("Cast", [v], to=TensorProto.FLOAT)
        if spec.resize == "letterbox":  # outside the content v is 0: add the pad grey there
            inside = b.op(
                "Mul",
                [row(RESIZE_Y, 4, [1, 1, -1, 1]), row(RESIZE_X, 4, [1, 1, 1, -1])],
            )  # 1, 1, dh, dw: 1 inside
            outside = b.op("Cast", [b.op("Sub", [b.const(1, np.int32), inside])], to=TensorProto.FLOAT)
            x = b.op("Add", [x, b.op("Mul", [outside, b.const(float(spec.pad_value), np.float32)])])
    elif cast_first:
        # TensorRT allows UINT8 only as a graph input or output (onnx-tensorrt ModelImporter.cpp:
        # "TensorRT does not support UINT8 types for intermediate tensors!"; docs/operators.md: "UINT8
        # is only supported as network input or output tensor types"), so the uint8 frames feed
        # nothing but a Cast to FP32 (NvInferRuntimeBase.h, DataType::kUINT8: "kUINT8 conversions are
        # only supported for {kFLOAT, kHALF}")
        x = b.op("Transpose", [b.op("Cast", [FRAMES], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    else:
        # the CPU backends: order the uint8 planes, a quarter of the bytes, then cast (the same
        # values; 0.5 ms of 0.9 ms per 320x320 frame saved on ONNX Runtime, one thread)
        x = b.op("Transpose", [FRAMES], perm=[0, 3, 1, 2])
        if spec.color == "rgb":
            x = b.op("Gather", [x, b.const([2, 1, 0], np.int64)], axis=1)
        x = b.op("Cast", [x], to=TensorProto.FLOAT)
    if spec.color == "rgb" and (resize_in_graph or cast_first):
        x = b.op("Gather", [x, b.const([2, 1, 0], np.int64)], axis=1)
    std = np.asarray(spec.std, np.float32)
    mul = (spec.scale / std).astype(np.float32).reshape(1, 3, 1, 1)
    add = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32).reshape(1, 3, 1, 1)
    x = b.op("Mul", [x, b.const(mul)])
    if np.any(add != 0):
        x = b.op("Add", [x, b.const(add)])
    if spec.layout == "NHWC":
        x = b.op("Transpose", [x], perm=[0, 2, 3, 1])
    b.nodes.append(helper.make_node("Cast", [x], [in_name], name=b.name("Cast"), to=in_type))
    b.pre_count = len(b.nodes)


def _before_uint8_cast(g: onnx.GraphProto, types: dict[str, int], name: str) -> tuple[str, int] | None:
    """(tensor, type): the integer tensor that the model's Cast to UINT8 makes `name` from, directly
    or through the Cast to FLOAT that fixed_size puts in between for TensorRT; None if there is none."""
    producer = {o: n for n in g.node for o in n.output}

    def cast_to(node, to: tuple[int, ...]) -> bool:
        return node is not None and node.op_type == "Cast" and helper.get_node_attr_value(node, "to") in to

    cast = producer.get(name)
    if not cast_to(cast, (TensorProto.UINT8,)):
        return None
    src = cast.input[0]
    if types.get(src) in FLOAT_TYPES and cast_to(producer.get(src), FLOAT_TYPES):
        src = producer[src].input[0]
    t = types.get(src)
    return (src, t) if t in INTEGER_TYPES and t != TensorProto.UINT8 else None


def _semantic_post(b: _Builder, card: ModelCard, decoder, outs: dict[str, TensorSpec], types: dict[str, int]):
    if card.format == "semantic-logits":
        result = None
        for out_name, lut in decoder.heads:
            scores = out_name
            if outs[out_name].dtype != np.float32:
                scores = b.op("Cast", [scores], to=TensorProto.FLOAT)
            if len(lut) == 2 and lut[0] == 0:
                # two channels, the first saying nothing: channel 1 wins where it is strictly larger
                # (numpy's rule, and ArgMax's first maximum); cheaper than ArgMax + a table
                win = b.op("Greater", [b.slice(scores, 1, 2, 1), b.slice(scores, 0, 1, 1)])  # N, 1, h, w
                win = b.op("Reshape", [win, _squeeze1(b, win)])
                if result is None:
                    result = b.op("Mul", [b.op("Cast", [win], to=TensorProto.INT32), b.const(int(lut[1]), np.int32)])
                else:
                    result = b.op("Where", [win, b.const(int(lut[1]), np.int32), result])
                continue
            idx = b.op("ArgMax", [scores], axis=1, keepdims=0)  # first maximum, as numpy
            lab = b.op("Gather", [b.const(lut.astype(np.int32)), idx], axis=0)
            result = lab if result is None else b.op("Where", [b.op("Greater", [lab, b.const(0, np.int32)]), lab, result])
    else:
        ids = decoder.output
        dt = outs[ids].dtype
        source = _before_uint8_cast(b.g, types, ids)
        if source is not None:
            # the model's class ids before its own Cast to UINT8 (YOLO26-sem: ArgMax INT64 -> UINT8):
            # a UINT8 tensor inside the graph is what TensorRT refuses (see _preprocess). Mod 256 is
            # that cast's wrap-around, so the ids are the same; the unused Cast is pruned
            ids = b.op("Mod", [source[0], b.const(256, helper.tensor_dtype_to_np_dtype(source[1]))])
        if outs[decoder.output].shape and len(outs[decoder.output].shape) == 4:
            ids = b.op("Reshape", [ids, _squeeze1(b, ids)])
        if source is None and dt.kind == "f":
            ids = b.op("Round", [ids] if dt == np.float32 else [b.op("Cast", [ids], to=TensorProto.FLOAT)])
        ids = b.op("Cast", [ids], to=TensorProto.INT32)
        ok = b.op(
            "And",
            [b.op("Greater", [ids, b.const(-1, np.int32)]), b.op("Less", [ids, b.const(len(decoder.labels), np.int32)])],
        )
        result = b.op("Mul", [ids, b.op("Cast", [ok], to=TensorProto.INT32)])  # out-of-range ids -> 0
    result = b.op("Cast", [result], to=TensorProto.FLOAT)  # to uint8 through float, as TensorRT casts it
    b.nodes.append(helper.make_node("Cast", [result], ["label_map"], name=b.name("Cast"), to=TensorProto.UINT8))
    return lambda n: [helper.make_tensor_value_info("label_map", TensorProto.UINT8, [n, "h", "w"])]


def _squeeze1(b: _Builder, x: str) -> str:
    """The shape of x [N, 1, h, w] without its second axis (for Reshape)."""
    s = b.op("Shape", [x])
    return b.op("Concat", [b.slice(s, 0, 1, 0), b.slice(s, 2, 4, 0)], axis=0)


def _yolo_post(b: _Builder, card: ModelCard, decoder, outs: dict[str, TensorSpec], nms: str, anchors: int | None):
    nc = decoder.nc
    m = int(decoder.max_det)
    det, protos = decoder.det_name, decoder.proto_name
    for name in (det, protos):
        if outs[name].dtype != np.float32:
            cast = b.op("Cast", [name], to=TensorProto.FLOAT)
            det, protos = (cast, protos) if name == det else (det, cast)
    nm = outs[decoder.proto_name].shape[1]
    if nm is None:
        raise NotFusable(f"{card.name}: cannot fuse: the prototype count (axis 1 of {decoder.proto_name}) is dynamic")
    ph, pw = outs[decoder.proto_name].shape[2:]
    if ph is None or pw is None:
        raise NotFusable(f"{card.name}: cannot fuse: the prototype grid of {decoder.proto_name} is dynamic")
    box = b.op("Transpose", [b.slice(det, 0, 4, 1)], perm=[0, 2, 1])  # N, A, 4 (cx, cy, w, h)
    xy, wh = b.slice(box, 0, 2, 2), b.slice(box, 2, 4, 2)
    half = b.op("Div", [wh, b.const(2.0, np.float32)])
    boxes = b.op("Concat", [b.op("Sub", [xy, half]), b.op("Add", [xy, half])], axis=2)  # N, A, 4 xyxy
    scores = b.slice(det, 4, 4 + nc, 1)  # N, nc, A
    # int32 indices throughout: what TensorRT computes indices in
    cls = b.op("Cast", [b.op("ArgMax", [scores], axis=1, keepdims=1)], to=TensorProto.INT32)  # N, 1, A: first max
    conf = b.op("GatherElements", [scores, cls], axis=1)  # N, 1, A
    keep = b.op("Gather", [b.const(decoder.keep_class.astype(np.float32)), cls], axis=0)
    conf = b.op("Where", [b.op("Greater", [keep, b.const(0.5, np.float32)]), conf, b.const(0.0, np.float32)])
    conf2 = b.op("Reshape", [conf, b.const([0, -1], np.int64)])  # N, A
    a_last = b.op("Sub", [b.slice(b.op("Shape", [conf2]), 1, 2, 0), b.const([1], np.int64)])
    if nms == "static":
        values, index = _select_static(b, decoder, boxes, conf2, cls, a_last, m, anchors)
    else:
        values, index = _select_dynamic(b, decoder, boxes, conf, conf2, cls, m)
    valid = b.op("Greater", [values, b.const(-0.5, np.float32)])  # N, M
    index = b.op("Min", [index, a_last])  # empty slots point at a real anchor; masked below
    gidx = b.op("Reshape", [index, b.const([0, 0, 1], np.int64)])  # N, M, 1
    sel_boxes = b.op("GatherND", [boxes, gidx], batch_dims=1)  # N, M, 4
    # the class ids as [N, A, 1]: TensorRT's GatherND (IGatherLayer kND) needs batch_dims <
    # rank(data) - 1, a rank-2 [N, A] with batch_dims=1 fails its build (NVIDIA/TensorRT#4469)
    cls3 = b.op("Transpose", [cls], perm=[0, 2, 1])
    sel_cls = b.op("Reshape", [b.op("GatherND", [cls3, gidx], batch_dims=1), b.const([0, m], np.int64)])  # N, M
    coefs = b.op("Transpose", [b.slice(det, 4 + nc, 4 + nc + nm, 1)], perm=[0, 2, 1])  # N, A, nm
    sel_coefs = b.op("GatherND", [coefs, gidx], batch_dims=1)  # N, M, nm
    flat_protos = b.op("Reshape", [protos, b.const([0, nm, ph * pw], np.int64)])
    logits = b.op("MatMul", [sel_coefs, flat_protos])  # N, M, ph*pw
    logits = b.op("Reshape", [logits, b.const([0, m, ph, pw], np.int64)])
    # box crop at prototype resolution, with the margin the host's sampling can read
    kx, ky = pw / card.input.size_wh[0], ph / card.input.size_wh[1]
    bp = b.op("Mul", [sel_boxes, b.const(np.array([kx, ky, kx, ky], np.float32))])
    bp = b.op("Reshape", [bp, b.const([0, m, 4, 1], np.int64)])
    cx = b.const((np.arange(pw, dtype=np.float32) + 0.5).reshape(1, 1, 1, pw))
    cy = b.const((np.arange(ph, dtype=np.float32) + 0.5).reshape(1, 1, ph, 1))
    margin = b.const(MASK_MARGIN_CELLS, np.float32)
    x0 = b.op("Sub", [b.slice(bp, 0, 1, 2), margin])
    y0 = b.op("Sub", [b.slice(bp, 1, 2, 2), margin])
    x1 = b.op("Add", [b.slice(bp, 2, 3, 2), margin])
    y1 = b.op("Add", [b.slice(bp, 3, 4, 2), margin])
    # x bounds are [N, M, 1, 1] against cells [1, 1, 1, pw]; the same for y against [1, 1, ph, 1]
    inside_x = b.op("And", [b.op("Greater", [cx, x0]), b.op("Less", [cx, x1])])
    inside_y = b.op("And", [b.op("Greater", [cy, y0]), b.op("Less", [cy, y1])])
    inside = b.op("And", [inside_x, inside_y])
    b.nodes.append(
        helper.make_node("Where", [inside, logits, b.const(-1e4, np.float32)], ["mask_logits"], name=b.name("Where"))
    )
    valid4 = b.op("Reshape", [valid, b.const([0, m, 1], np.int64)])
    b.nodes.append(
        helper.make_node("Where", [valid4, sel_boxes, b.const(0.0, np.float32)], ["boxes_xyxy"], name=b.name("W"))
    )
    b.nodes.append(helper.make_node("Where", [valid, values, b.const(0.0, np.float32)], ["scores"], name=b.name("W")))
    b.nodes.append(
        helper.make_node("Where", [valid, sel_cls, b.const(-1, np.int32)], ["class_id"], name=b.name("W"))
    )
    b.nodes.append(
        helper.make_node(
            "Cast", [b.reduce("ReduceSum", b.op("Cast", [valid], to=TensorProto.INT32), 1)], ["count"], name=b.name("C"),
            to=TensorProto.INT32,
        )
    )

    def vis(n):
        return [
            helper.make_tensor_value_info("boxes_xyxy", TensorProto.FLOAT, [n, m, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, m]),
            helper.make_tensor_value_info("class_id", TensorProto.INT32, [n, m]),
            helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, [n, m, ph, pw]),
            helper.make_tensor_value_info("count", TensorProto.INT32, [n]),
        ]

    return vis


def _pad(b: _Builder, x: str, k: int, value: float) -> str:
    """x [N, L] with k slots of `value` after it: a TopK of k stays a constant whatever L is."""
    n_shape = b.slice(b.op("Shape", [x]), 0, 1, 0)
    shape = b.op("Concat", [n_shape, b.const([k], np.int64)], axis=0)
    filler = b.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.array([value], np.float32)))
    return b.op("Concat", [x, filler], axis=1)


def _top(b: _Builder, x: str, k: int, largest: int = 1) -> tuple[str, str]:
    """TopK as TensorRT takes it (onnx-tensorrt docs/operators.md: "`sorted` must be 1. `K` input must
    be less than 3840"): sorted, k a constant initializer (build_fused bounds it for TensorRT)."""
    return b.op("TopK", [x, b.const([k], np.int64)], outputs=2, axis=1, largest=largest, sorted=1)


def _nms(b: _Builder, decoder, boxes: str, conf: str, cls: str, m: int) -> str:
    """Class-aware NMS: each anchor competes in its own best class only (one candidate per anchor,
    as in numpy). boxes [N, L, 4], conf and cls [N, 1, L] -> the class scores [N, nc, L] it ran on
    and its selection [K, 3] (batch, class, index)."""
    nc = decoder.nc
    onehot = b.op("Equal", [b.const(np.arange(nc, dtype=np.int32).reshape(1, nc, 1)), cls])
    scores = b.op("Where", [onehot, conf, b.const(0.0, np.float32)])  # N, nc, L
    limits = [b.const([m], np.int64), b.const([decoder.iou], np.float32), b.const([decoder.conf], np.float32)]
    return scores, b.op("NonMaxSuppression", [boxes, scores, *limits], center_point_box=0)


def _select_dynamic(b: _Builder, decoder, boxes, conf, conf2, cls, m: int) -> tuple[str, str]:
    """NMS over every anchor, its [K, 3] selection gathered and scattered into [N, A]: the best
    `m` (score, anchor) per image, -1 in empty slots."""
    _, selected = _nms(b, decoder, boxes, conf, cls, m)
    ba = b.op("Gather", [selected, b.const([0, 2], np.int64)], axis=1)  # K, 2
    picked = b.op("GatherND", [conf2, ba])
    dense = b.op("ScatterND", [b.op("Sub", [b.op("Mul", [conf2, b.const(0.0, np.float32)]), b.const(1.0, np.float32)]), ba, picked])
    return _top(b, _pad(b, dense, m, -1.0), m)


def _select_static(b: _Builder, decoder, boxes, conf2, cls, a_last, m: int, anchors: int | None) -> tuple[str, str]:
    """The same selection with no data-dependent shape after the NMS node: the best P anchors by
    score (P = TRT_TOPK_MAX, or the anchor count when it is smaller and known), NMS on those, its
    selection turned into a fixed [N, nc, P] mask by one ScatterND, then fixed-slot gathers.

    NMS decides each box from the higher-scored boxes only, so while no more than P anchors pass
    the score threshold, NMS sees the same candidates in the same (anchor) order as the dynamic
    variant and keeps the same boxes; beyond that it keeps the best P (TensorRT's own NMS layer
    considers at most 5000 boxes per image anyway: NvInfer.h, INMSLayer::setTopKBoxLimit)."""
    p = min(anchors, TRT_TOPK_MAX) if anchors else TRT_TOPK_MAX
    padded = _pad(b, conf2, p, -1.0)  # N, A + P: fillers below any threshold
    _, best = _top(b, padded, p)  # N, P: the best first
    # back into anchor order: NMS meets its candidates in the order the dynamic variant gives them
    order, _ = _top(b, best, p, largest=0)  # N, P ascending
    p_score = b.op("GatherElements", [padded, order], axis=1)  # N, P
    p_anchor = b.op("Min", [order, a_last])  # fillers point at a real anchor; their score is -1
    p_boxes = b.op("GatherND", [boxes, b.op("Reshape", [p_anchor, b.const([0, p, 1], np.int64)])], batch_dims=1)
    p_cls = b.op("GatherElements", [cls, b.op("Reshape", [p_anchor, b.const([0, 1, p], np.int64)])], axis=2)
    p_conf = b.op("Reshape", [p_score, b.const([0, 1, p], np.int64)])
    scores, selected = _nms(b, decoder, p_boxes, p_conf, p_cls, m)  # selected: K, 3 (batch, class, slot)
    # the selection as a mask of fixed size: ones scattered at (batch, class, slot), any class
    ones = b.op("Add", [b.op("Mul", [b.reduce("ReduceMax", selected, 1), b.const(0, np.int64)]), b.const(1, np.int64)])
    hit = b.op("ScatterND", [b.op("Mul", [scores, b.const(0.0, np.float32)]), selected, b.op("Cast", [ones], to=TensorProto.FLOAT)])
    kept = b.op("Greater", [b.reduce("ReduceMax", hit, 1), b.const(0.5, np.float32)])  # N, P
    dense = b.op("Where", [kept, p_score, b.const(-1.0, np.float32)])
    values, slot = _top(b, _pad(b, dense, m, -1.0), m)
    slot = b.op("Min", [slot, b.const(p - 1, np.int64)])  # empty slots; masked by their -1 score
    return values, b.op("GatherElements", [p_anchor, slot], axis=1)


# which engines run fused by default, per backend and task: measured on the CPU backends
# (benchmarks/fused.py, results under benchmarks/results/: fused where it was not slower);
# TensorRT: fused, the point of fusing, though never yet measured on a GPU

class NotFusable(ModelError):
    """This model's format or shapes are not covered by the fused graphs (it runs unfused by default)."""


FUSE_DEFAULT = {
    "onnxruntime": {"semantic": False, "instance": True},
    "openvino": {"semantic": True, "instance": True},
    "tensorrt": {"semantic": True, "instance": True},
    "torch": {"semantic": True, "instance": True},  # pre/post on the GPU: the point of the backend
}
# where the fused graph's resize runs, per backend: in the graph on the GPU; with OpenCV before the
# graph on the CPU backends (their int32 kernels made the in-graph resize slower: benchmarks/fused.py)
RESIZE_IN_GRAPH = {"onnxruntime": False, "openvino": False, "tensorrt": True, "torch": True}


# host side ---------------------------------------------------------------------------------
def frames_batch(images_bgr: list[np.ndarray], size_wh: tuple[int, int], mode: str):
    """Frames as the fused graph takes them: groups of equal capture size, each one uint8
    [n, H, W, 3] array, with their positions in the batch; and every frame's ResizeTransform
    (computed, not applied: the graph does the pixel work)."""
    transforms = [ResizeTransform.fit((im.shape[1], im.shape[0]), size_wh, mode) for im in images_bgr]
    shapes = [im.shape for im in images_bgr]
    if all(s == shapes[0] for s in shapes):
        return _feeds(images_bgr, transforms[0]), transforms
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(s, []).append(i)
    return (
        FrameGroups([(idx, _feeds([images_bgr[i] for i in idx], transforms[idx[0]])) for idx in groups.values()]),
        transforms,
    )


def _feeds(images_bgr: list[np.ndarray], t: ResizeTransform) -> dict[str, np.ndarray]:
    """The fused graph's inputs for frames of one size (the tables repeat along the batch axis
    so an engine that splits a batch splits them too)."""
    tx, ty = resize_tables(t)
    n = len(images_bgr)
    return {
        FRAMES: np.stack(images_bgr),
        RESIZE_X: np.ascontiguousarray(np.broadcast_to(tx, (n, *tx.shape))),
        RESIZE_Y: np.ascontiguousarray(np.broadcast_to(ty, (n, *ty.shape))),
    }


@dataclass
class FrameGroups:
    """A batch whose frames differ in size: one engine call per size (outputs are per frame and
    fixed-shape, so they are put back in batch order)."""

    groups: list[tuple[list[int], dict[str, np.ndarray]]]

    def __len__(self) -> int:
        return sum(len(idx) for idx, _ in self.groups)

    def merge(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        n = len(self)
        out = {}
        for k in parts[0]:
            first = parts[0][k]
            arr = np.empty((n, *first.shape[1:]), first.dtype)
            for (idx, _), p in zip(self.groups, parts, strict=True):
                arr[idx] = p[k]
            out[k] = arr
        return out


class FusedSemanticDecoder:
    """`label_map` at model resolution -> SemanticResult at frame resolution (crop, nearest resize),
    exactly what the numpy decoders do after their argmax."""

    def __init__(self, decoder) -> None:
        self.inner = decoder
        self.labels = decoder.labels
        self.output_names = ["label_map"]

    def decode(self, outputs: dict[str, np.ndarray], transforms: list[ResizeTransform]) -> list[SemanticResult]:
        import cv2

        d = self.inner
        results = []
        for lm, t in zip(outputs["label_map"], transforms, strict=True):
            x0, y0, x1, y1 = t.content_rect((lm.shape[1], lm.shape[0]))
            lm = np.ascontiguousarray(lm[y0:y1, x0:x1])
            gm = d.group_lut[lm]
            small = None
            if lm.shape[::-1] != t.src_wh:
                small = gm
                lm = cv2.resize(lm, t.src_wh, interpolation=cv2.INTER_NEAREST)
                gm = cv2.resize(gm, t.src_wh, interpolation=cv2.INTER_NEAREST)
            results.append(SemanticResult(lm, d.labels, gm, d.group_names, small))
        return results


class FusedYoloDecoder:
    """Fixed slots -> Instances: boxes to frame pixels, each mask's logits warped into its box."""

    def __init__(self, decoder) -> None:
        self.inner = decoder
        self.labels = decoder.labels
        self.output_names = ["boxes_xyxy", "scores", "class_id", "mask_logits", "count"]

    def decode(self, outputs: dict[str, np.ndarray], transforms: list[ResizeTransform]) -> list[Instances]:
        d = self.inner
        res = []
        for i, t in enumerate(transforms):
            k = int(outputs["count"][i])
            if k == 0:
                res.append(Instances.empty(t.src_wh))
                continue
            xyxy = t.to_src_xyxy(outputs["boxes_xyxy"][i, :k])
            class_id = outputs["class_id"][i, :k].astype(np.int32)
            res.append(
                Instances(
                    xyxy=xyxy.astype(np.float32),
                    masks=masks_in_frame(outputs["mask_logits"][i, :k], xyxy, t, d.input_wh, d.mask_logit),
                    class_id=class_id,
                    score=outputs["scores"][i, :k].astype(np.float32),
                    labels=[d.labels[c] for c in class_id],
                    groups=[d.group_of_class[c] for c in class_id],
                )
            )
        return res


def host_decoder(card: ModelCard, decoder):
    """The host half of a fused model's decoding."""
    return FusedSemanticDecoder(decoder) if card.task == "semantic" else FusedYoloDecoder(decoder)


class FusedHost:
    """What stays on the host around a fused graph: stacking (or, for a graph without the resize,
    OpenCV-resizing) the frames, and the cheap per-instance decoding."""

    def __init__(self, card: ModelCard, decoder, resize_in_graph: bool, nms: str | None = None) -> None:
        self.card = card
        self.resize_in_graph = resize_in_graph
        self.nms = nms  # the yolo-seg graph's NMS variant, for describe()
        self.decoder = host_decoder(card, decoder)
        self.output_names = self.decoder.output_names
        self._pre = None if resize_in_graph else Preprocessor.for_input(card.input)
        self.numpy_decoder = decoder

    def __getattr__(self, name: str):
        # labels, groups, thresholds...: what callers read off a decoder, from the card's numpy one
        if name.startswith("_") or name == "numpy_decoder":
            raise AttributeError(name)
        return getattr(self.numpy_decoder, name)

    def prepare(self, images_bgr: list[np.ndarray]):
        if self.resize_in_graph:
            return frames_batch(images_bgr, self.card.input.size_wh, self.card.input.resize)
        buf, transforms = self._pre.fit(images_bgr)
        return {FRAMES: buf}, transforms

    def decode(self, outputs: dict[str, np.ndarray], transforms: list[ResizeTransform]):
        return self.decoder.decode(outputs, transforms)


__all__ = ["FRAMES", "FrameGroups", "FusedHost", "FusedModel", "build_fused", "core_specs", "frames_batch", "host_decoder"]


def compare_results(task: str, ref: list, new: list, mask_iou: float = 0.99) -> dict:
    """How two result lists of the same frames agree: semantic, the fraction of pixels with the
    same class; instance, frames whose instances match one to one (same class, mask IoU >=
    `mask_iou`, greedy by IoU), and the lowest IoU among matched instances."""
    if task == "semantic":
        same = total = 0
        worst = 1.0
        for r, n in zip(ref, new, strict=True):
            eq = np.count_nonzero(r.label_map == n.label_map)
            same += eq
            total += r.label_map.size
            worst = min(worst, eq / r.label_map.size)
        return {"frames": len(ref), "pixels_agree": same / max(total, 1), "worst_frame": worst}
    frames_ok = 0
    min_iou = 1.0
    instances = mismatched = 0
    for r, n in zip(ref, new, strict=True):
        instances += len(r)
        ok = len(r) == len(n)
        taken: set[int] = set()
        for i in range(len(r)):
            best, best_iou = None, -1.0
            for j in range(len(n)):
                if j in taken or n.class_id[j] != r.class_id[i]:
                    continue
                union = np.count_nonzero(r.masks[i] | n.masks[j])
                iou = 1.0 if union == 0 else np.count_nonzero(r.masks[i] & n.masks[j]) / union
                if iou > best_iou:
                    best, best_iou = j, iou
            if best is None or best_iou < mask_iou:
                ok = False
                mismatched += 1
            if best is not None:
                taken.add(best)
                min_iou = min(min_iou, best_iou)
        frames_ok += ok
    return {
        "frames": len(ref),
        "frames_match": frames_ok,
        "instances": instances,
        "unmatched": mismatched,
        "min_mask_iou": min_iou,
    }
