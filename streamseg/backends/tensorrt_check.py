"""TensorRT's ONNX parser rules, checked on the CPU: would TensorRT 10 / 11 import this graph?

The graph checked is the one the builder parses (`builder_graph`: the card's fused graph, its
fixed-size copy, the FP16 copy, the gated Q/DQ model, made by the same functions `open_model` and
`tensorrt_build.build_plan` use), and no TensorRT is needed. Each finding is one line: node, op,
rule, and what to do. Errors are what the parser or builder refuses; warnings are what only a GPU
can settle (data-dependent shapes, NMS box limits).

Sources (each rule cites its own):
- the op table: onnx-tensorrt's docs/operators.md for TensorRT 10 (10.1-GA) and 11 (the commit
  TensorRT 11.1 pins), kept as data in tensorrt_ops/operators.json (tools/tensorrt_ops.py);
- onnx-tensorrt's importer at its 10.1-GA commit 96e781103cfc (ModelImporter.cpp,
  onnxOpImporters.cpp, importerUtils.cpp): ONNX_TRT_10 below;
- TensorRT's public headers at NVIDIA/TensorRT 82d1dca8 (the 11.1 release): TRT_11 below.
The 11.1 parser's sources are not public at that commit beyond operators.md; where a rule cites
the 10.1 importer, the 11.1 table states the same restriction.

Read and found to need no rule for our graphs (ONNX_TRT_10): INT64 graph inputs and outputs are
kept INT64, with a warning to bind them as such (ModelImporter.cpp l.418-421, 795-798; the runner
binds each tensor with the engine's own dtype); an INT32 graph output must be declared INT32
(l.788-792), which a valid ONNX graph is; GatherND casts INT64 indices to INT32 unless the data is
INT64 (onnxOpImporters.cpp l.1978-1982); TopK's indices are cast to INT64 (l.5785-5786).
"""

from __future__ import annotations

import functools
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from streamseg.errors import ModelError

ONNX_TRT_10 = "onnx/onnx-tensorrt@96e781103cfc (10.1-GA)"
ONNX_TRT_11 = "onnx/onnx-tensorrt@7c51a63a7191 (pinned by TensorRT 11.1)"
TRT_11 = "NVIDIA/TensorRT@82d1dca8 (11.1)"
VERSIONS = ("10", "11")
TOPK_MAX_K = 3840  # TRT_11 include/NvInfer.h ITopKLayer::setK / setInput: "only values up to 3840"
# TRT_11 include/NvInfer.h INMSLayer, l.6230: "2000 for SM 5.3 and 6.2 devices, and 5000 otherwise"
NMS_MAX_BOXES = 5000
# ops whose outputs have a size known only at run time
DATA_DEPENDENT = {"NonMaxSuppression", "NonZero"}
# consumers that turn such a size into the shape of what they produce
SHAPE_FOLLOWERS = {"Gather", "GatherND", "GatherElements", "ScatterND", "ScatterElements"}

# ONNX elem_type -> the names operators.md uses. DOUBLE: "TensorRT will attempt to cast DOUBLE down
# to FLOAT" (operators.md note); importerUtils.cpp convertDtype (ONNX_TRT_10, l.314-335) lists the
# ONNX types the parser converts at all: any other is refused.
_TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
               16: "BF16", 17: "FP8", 22: "INT4", 23: "FP4"}  # fmt: skip
# which input carries the type the table's "Supported Types" speaks of (default: the first)
_TYPED_INPUT = {"Where": 1}
_TYPED_OUTPUT = {"Constant", "ConstantOfShape", "RandomNormal", "RandomUniform"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


@dataclass(frozen=True)
class Finding:
    """One thing TensorRT would refuse (error) or that only a GPU can settle (warning)."""

    node: str
    op: str
    rule: str
    problem: str
    todo: str
    level: str = "error"
    versions: tuple[str, ...] = VERSIONS

    def line(self) -> str:
        trt = " and ".join(self.versions)
        return (
            f"{self.level}: node {self.node!r} ({self.op}) [{self.rule}, TensorRT {trt}]: {self.problem} -> {self.todo}"
        )


@functools.cache
def op_table() -> dict:
    """The operator tables, by TensorRT major version (read once, on first use)."""
    path = Path(__file__).resolve().parent / "tensorrt_ops" / "operators.json"
    return json.loads(path.read_text())["versions"]


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


class _Graph:
    """What the rules read: nodes (subgraphs included), tensor types and shapes, constants, consumers."""

    def __init__(self, model) -> None:
        import onnx
        from onnx import numpy_helper

        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # an exotic graph inference cannot read: check what is declared
            inferred = model
        g = inferred.graph
        self.model = inferred
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        self.types: dict[str, int] = {}
        self.shapes: dict[str, list | None] = {}
        init = {i.name for i in g.initializer}
        self.inputs = [v.name for v in g.input if v.name not in init]
        self.outputs = {v.name for v in g.output}
        for vi in [*g.input, *g.value_info, *g.output]:
            t = vi.type.tensor_type
            if vi.type.HasField("tensor_type"):
                self.types[vi.name] = t.elem_type
                self.shapes[vi.name] = (
                    [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                    if t.HasField("shape")
                    else None
                )
        self.consts = {}
        for t in g.initializer:
            self.types[t.name] = t.data_type
            self.shapes[t.name] = list(t.dims)
            self.consts[t.name] = t
        self.nodes = []
        self._walk(g)
        for n in self.nodes:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = a.t
                        self.types[n.output[0]] = a.t.data_type
                        self.shapes[n.output[0]] = list(a.t.dims)
        self._np = numpy_helper
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def _walk(self, graph) -> None:
        for n in graph.node:
            self.nodes.append(n)
            for a in n.attribute:
                if a.g.node:
                    self._walk(a.g)
                for sub in a.graphs:
                    self._walk(sub)

    def const(self, name: str):
        t = self.consts.get(name)
        return None if t is None else self._np.to_array(t)

    def rank(self, name: str) -> int | None:
        s = self.shapes.get(name)
        return None if s is None else len(s)

    def type_name(self, name: str) -> str | None:
        t = self.types.get(name)
        return None if t is None else _TYPE_NAMES.get(t, f"ONNX type {t}")


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _label(node) -> str:
    return node.name or (node.output[0] if node.output else "?")


def check_model(model) -> list[Finding]:
    """Every finding for an onnx.ModelProto, errors first, in graph order. A node gets one finding
    per rule family (uint8-use and uint8-intermediate of one Transpose are one problem); a node
    whose op TensorRT lacks gets only that, and the nodes of one unsupported op are one finding."""
    g = _Graph(model)
    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    grouped: dict[tuple[str, str], list[Finding]] = {}  # one line for many nodes with one cause
    for rule in RULES:
        for f in rule(g):
            if f.rule == "op-unsupported" or f.rule.startswith("qdq-"):
                grouped.setdefault((f.rule, f.op if f.rule == "op-unsupported" else ""), []).append(f)
                continue
            if f.node in {x.node for (r, _), fs in grouped.items() if r == "op-unsupported" for x in fs}:
                continue
            family = f.rule.split("-")[0]
            if (f.node, family) not in seen:
                seen.add((f.node, family))
                found.append(f)
    for fs in grouped.values():
        first = fs[0]
        more = (
            f" (and {len(fs) - 1} more {'nodes' if first.rule.startswith('qdq-') else first.op + ' nodes'})"
            if len(fs) > 1
            else ""
        )
        found.append(
            Finding(first.node, first.op, first.rule, first.problem + more, first.todo, versions=first.versions)
        )
    order = {_label(n): i for i, n in enumerate(g.nodes)}
    return sorted(found, key=lambda f: (f.level != "error", f.rule != "op-unsupported", order.get(f.node, -1)))


def check_file(path: str | Path) -> list[Finding]:
    import onnx

    return check_model(onnx.load(str(path)))


# rules -----------------------------------------------------------------------------------------
def _ops(g: _Graph):
    """Ops the table marks N or does not list, per version (2f: ConvInteger, DynamicQuantizeLinear).
    Source: operators.md at ONNX_TRT_10 and ONNX_TRT_11 (tensorrt_ops/operators.json); ops of other domains
    (com.microsoft, ...) are not ONNX ops and need a TensorRT plugin (ModelImporter.cpp parseNode,
    ONNX_TRT_10 l.166-167: "No importer registered for op ... Attempting to import as plugin")."""
    tables = op_table()
    for n in g.nodes:
        if n.domain not in ("", "ai.onnx"):
            yield Finding(_label(n), n.op_type, "op-unsupported", f"op of domain {n.domain!r}, not an ONNX op",
                          "export without vendor ops (TensorRT would need a plugin for it)")  # fmt: skip
            continue
        missing = tuple(v for v in VERSIONS if not tables[v]["ops"].get(n.op_type, {}).get("supported"))
        if not missing:
            continue
        if n.op_type in ("ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"):
            todo = "a dynamically/operator-quantized model: give the card the fp32 export; --precision int8 builds TensorRT's Q/DQ model from it"
        else:
            todo = "rewrite it with supported ops, or give TensorRT a plugin for it"
        yield Finding(_label(n), n.op_type, "op-unsupported", "not supported by TensorRT's ONNX parser (operators.md)",
                      todo, versions=missing)  # fmt: skip


def _opset(g: _Graph):
    """The table's opset range ("supports operators in the inclusive range of opset 9 to opset N")."""
    if g.opset is None:
        return
    ranges = {v: op_table()[v]["opset"] for v in VERSIONS}
    outside = tuple(v for v, (lo, hi) in ranges.items() if not lo <= g.opset <= hi)
    if outside:
        lo, hi = max(r[0] for r in ranges.values()), min(r[1] for r in ranges.values())
        said = ", ".join(f"TensorRT {v}: {ranges[v][0]}..{ranges[v][1]}" for v in outside)
        yield Finding("(model)", "opset", "opset-range", f"opset {g.opset} is outside the range TensorRT imports ({said})",
                      f"convert the model to an opset in {lo}..{hi} (onnx.version_converter)", versions=outside)  # fmt: skip


def _dtypes(g: _Graph):
    """Tensor types the parser cannot convert at all (importerUtils.cpp convertDtype, ONNX_TRT_10 l.314-335)."""
    for name, t in g.types.items():
        if t and t not in _TYPE_NAMES:
            node = next((n for n in g.nodes if name in n.output), None)
            yield Finding(_label(node) if node else name, node.op_type if node else "tensor", "dtype",
                          f"tensor {name!r} has ONNX type {t}, which TensorRT has no type for",
                          "cast it to a float, INT32, INT64 or BOOL type")  # fmt: skip


def _uint8(g: _Graph):
    """2a/2b. UINT8 only as graph input or output:
    - ModelImporter.cpp parseNode (ONNX_TRT_10 l.241-254): a node output of type UINT8 that is not a
      graph output -> "TensorRT does not support UINT8 types for intermediate tensors!";
    - operators.md note (both versions): "UINT8 is only supported as network input or output tensor types";
    - include/NvInferRuntimeBase.h DataType::kUINT8 (TRT_11 l.165-177): UINT8 inputs are converted to
      FP32/FP16 before any other layer; "kUINT8 conversions are only supported for {kFLOAT, kHALF}",
      "not supported for {kINT8, kINT32, kBOOL}" (so Cast UINT8 <-> INT32/INT64/BOOL is refused)."""
    for n in g.nodes:
        if n.op_type in _QDQ:  # their UINT8 is the asymmetric quantization _qdq names
            continue
        if n.op_type == "Cast":
            src, dst = g.type_name(n.input[0]), _TYPE_NAMES.get(_attr(n, "to"))
            if "UINT8" in (src, dst) and src != dst and not {src, dst} <= {"UINT8", "FP32", "FP16"}:
                yield Finding(_label(n), n.op_type, "uint8-cast", f"casts {src} to {dst}; TensorRT casts UINT8 only to and from FP32/FP16",
                              "cast through FP32 (or keep the value in its own integer type)")  # fmt: skip
        elif n.op_type not in ("Identity",):
            for i in n.input:
                if i and g.type_name(i) == "UINT8":
                    yield Finding(_label(n), n.op_type, "uint8-use", f"reads UINT8 tensor {i!r}; TensorRT takes UINT8 only into a Cast to FP32/FP16",
                                  "Cast the uint8 tensor to float first, then transpose/gather/resize it")  # fmt: skip
                    break
        for o in n.output:
            if o and g.type_name(o) == "UINT8" and o not in g.outputs and n.op_type != "Constant":
                yield Finding(_label(n), n.op_type, "uint8-intermediate", f"makes UINT8 tensor {o!r}, which is not a graph output",
                              "compute in FP32/FP16 or INT32, and make UINT8 only as a graph output")  # fmt: skip
                break
        if n.op_type == "Constant" and g.type_name(n.output[0]) == "UINT8":
            # include/NvInfer.h INetworkDefinition::addConstant (TRT_11 l.8780): "DataType::kUINT8 not supported"
            yield Finding(_label(n), n.op_type, "uint8-intermediate", "a UINT8 constant (addConstant refuses kUINT8)",
                          "store the constant as FP32 or INT32")  # fmt: skip


def _types(g: _Graph):
    """The table's "Supported Types" column per op (operators.md, both versions). UINT8 is left to
    the uint8 rules above, which say more."""
    tables = op_table()
    for n in g.nodes:
        if n.domain not in ("", "ai.onnx") or n.op_type in ("Cast", *_QDQ):  # Q/DQ: _qdq says more
            continue
        if n.op_type in _TYPED_OUTPUT:
            tensor = n.output[0] if n.output else ""
        else:
            idx = _TYPED_INPUT.get(n.op_type, 0)
            tensor = n.input[idx] if len(n.input) > idx else ""
        have = g.type_name(tensor) if tensor else None
        if have is None or have == "UINT8":
            continue
        bad = []
        for v in VERSIONS:
            row = tables[v]["ops"].get(n.op_type)
            if row and row["supported"] and row["types"]:
                allowed = set(row["types"]) | ({"DOUBLE"} if "FP32" in row["types"] else set())
                if have not in allowed:
                    bad.append(v)
        if bad:
            row = tables[bad[-1]]["ops"][n.op_type]
            yield Finding(_label(n), n.op_type, "op-type", f"{tensor!r} is {have}; TensorRT's {n.op_type} takes {', '.join(row['types'])}",
                          "cast the tensor to a supported type first", versions=tuple(bad))  # fmt: skip


def _gathernd(g: _Graph):
    """2c. include/NvInfer.h IGatherLayer (TRT_11 l.2378, 2429): kND mode needs
    "0 <= nbElementWiseDims < rank(Data)-1" and the indices' last dimension a build-time constant;
    the importer maps `batch_dims` to nbElementWiseDims (onnxOpImporters.cpp GatherND, ONNX_TRT_10
    l.1969-1988). A build failure of exactly this shape: NVIDIA/TensorRT#4469 (10.11)."""
    for n in g.nodes:
        if n.op_type != "GatherND":
            continue
        b = int(_attr(n, "batch_dims", 0))
        r = g.rank(n.input[0])
        if r is not None and not 0 <= b < r - 1:
            yield Finding(_label(n), n.op_type, "gathernd-batch-dims", f"batch_dims={b} on rank-{r} data; TensorRT needs batch_dims < rank(data)-1",
                          "gather from data of rank batch_dims+2 or more (e.g. Unsqueeze [N, A] to [N, A, 1])")  # fmt: skip
        idx = g.shapes.get(n.input[1])
        if idx and idx[-1] is None:
            yield Finding(_label(n), n.op_type, "gathernd-index-depth", "the indices' last dimension is not known at build time",
                          "give the indices a fixed last dimension")  # fmt: skip


def _topk(g: _Graph):
    """2d. operators.md TopK (both versions): "`sorted` must be 1. `K` input must be less than 3840";
    include/NvInfer.h ITopKLayer (TRT_11 l.3448, 3504): "only values up to 3840", a larger run-time K
    is a run-time error. onnxOpImporters.cpp TopK (ONNX_TRT_10 l.5724-5785) takes K as a tensor."""
    import numpy as np

    for n in g.nodes:
        if n.op_type != "TopK":
            continue
        if int(_attr(n, "sorted", 1)) != 1:
            yield Finding(
                _label(n), n.op_type, "topk-sorted", "sorted=0", "set sorted=1 (TensorRT returns sorted results only)"
            )
        k = g.const(n.input[1]) if len(n.input) > 1 else _attr(n, "k")
        k = None if k is None else int(np.max(k))
        if k is None:
            yield Finding(_label(n), n.op_type, "topk-k", f"K is computed at run time; TensorRT fails at run time above {TOPK_MAX_K}",
                          f"make K a constant <= {TOPK_MAX_K}")  # fmt: skip
        elif k > TOPK_MAX_K:
            yield Finding(_label(n), n.op_type, "topk-k", f"K={k} > {TOPK_MAX_K}",
                          f"bound K (max_detections) to {TOPK_MAX_K} or less")  # fmt: skip


def _qdq(g: _Graph):
    """2e. INT8 Q/DQ must be signed INT8 with zero point 0 (symmetric):
    - operators.md (both versions): QuantizeLinear "`y_zero_point` must be 0", DequantizeLinear
      "`x_zero_point` must be zero", DequantizeLinear types INT8/FP8/INT4 (no UINT8, no INT32);
    - onnxOpImporters.cpp QuantDequantLinearHelper (ONNX_TRT_10 l.1346-1500): a UINT8 zero point is
      refused as input type (notInvalidType UINT8) or replaced by INT8 ("TensorRT doesn't support
      QuantizeLinear/DequantizeLinear with UINT8 zero_point"), zero points must be all zeros, and the
      scale must have a static shape. No zero point: ONNX means UINT8, TensorRT uses INT8, so the
      model the CPU gate judged is not the one TensorRT would run."""
    import numpy as np

    for n in g.nodes:
        if n.op_type not in _QDQ:
            continue
        if n.op_type == "DequantizeLinear" and g.type_name(n.input[0]) not in (
            None,
            "INT8",
            "UINT8",
            "FP8",
            "FP4",
            "INT4",
        ):
            yield Finding(_label(n), n.op_type, "qdq-type", f"dequantizes {g.type_name(n.input[0])} (a quantized bias?); TensorRT dequantizes INT8, FP8, FP4, INT4 only",
                          "keep biases in float (onnxruntime quantize_static: extra_options QuantizeBias=False)")  # fmt: skip
            continue
        zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
        zt = g.type_name(zp) if zp else _TYPE_NAMES.get(_attr(n, "output_dtype", 0), None)
        if zt == "UINT8" or (zp is None and n.op_type == "QuantizeLinear" and zt is None):
            yield Finding(_label(n), n.op_type, "qdq-int8-symmetric", "UINT8 quantization (asymmetric, or ONNX's default UINT8)",
                          "quantize with signed INT8, symmetric activations and weights, zero point 0 (the TensorRT INT8 artifact)")  # fmt: skip
            continue
        value = g.const(zp) if zp else None
        if value is not None and np.any(value != 0):
            yield Finding(_label(n), n.op_type, "qdq-int8-symmetric", f"zero point {zp!r} is not all 0",
                          "quantize symmetrically (zero point 0)")  # fmt: skip
        scale = g.shapes.get(n.input[1]) if len(n.input) > 1 else None
        if scale is not None and None in scale:
            yield Finding(_label(n), n.op_type, "qdq-scale", "the scale's shape is dynamic",
                          "make the scale a constant")  # fmt: skip


def _nms(g: _Graph):
    """2g. Warnings only a GPU settles:
    - NonMaxSuppression's [K, 3] output has a data-dependent size; TensorRT 8.5 refused Gather/
      GatherND/ScatterND chains on it ("requires foreign node optimizations incompatible with
      data-dependent shapes"); no 10.x/11.x report either way;
    - include/NvInfer.h INMSLayer (TRT_11 l.6230, 6266-6268): at most 5000 boxes per batch item (2000
      on SM 5.3/6.2) above the score threshold are considered; ONNX considers all of them."""
    for n in g.nodes:
        if n.op_type not in DATA_DEPENDENT:
            continue
        follow, seen, queue = [], set(), deque(o for o in n.output if o)
        while queue:
            t = queue.popleft()
            for c in g.consumers.get(t, []):
                if id(c) in seen:
                    continue
                seen.add(id(c))
                if c.op_type in SHAPE_FOLLOWERS:
                    follow.append(f"{_label(c)} ({c.op_type})")
                if c.op_type not in ("TopK", "ReduceSum", "ReduceMax", "Shape", "Size"):
                    queue.extend(o for o in c.output if o)
        if follow:
            yield Finding(_label(n), n.op_type, "data-dependent-shape", f"its run-time-sized output feeds {', '.join(follow[:3])}"
                          + (f" and {len(follow) - 3} more" if len(follow) > 3 else ""),
                          "only a GPU can tell whether TensorRT builds it (engines.<task>.nms: static leaves one ScatterND into a fixed-size mask)",
                          level="warning")  # fmt: skip
        if n.op_type == "NonMaxSuppression":
            boxes = g.shapes.get(n.input[0])
            count = boxes[1] if boxes and len(boxes) == 3 else None
            if count is None or count > NMS_MAX_BOXES:
                yield Finding(_label(n), n.op_type, "nms-box-limit",
                              f"{count or 'an unknown number of'} boxes per image; TensorRT's NMS considers at most {NMS_MAX_BOXES} above the threshold",
                              f"pre-select at most {NMS_MAX_BOXES} boxes with TopK before NMS", level="warning")  # fmt: skip


def _output_shapes(g: _Graph):
    """A graph output whose size comes from data (NonZero, NMS, a gather on their result) needs an
    IOutputAllocator at run time: NvInfer.h IExecutionContext::getTensorShape (TRT_11) reports -1
    for such a dimension until the allocator is told it; the streamseg runner sizes every output
    from the profile and has none. Sizes stop depending on data at a scatter into a tensor of
    fixed size or a TopK with a constant K."""
    tainted: set[str] = set()
    for n in g.nodes:  # graph order: producers first
        ins = [i for i in n.input if i in tainted]
        if n.op_type in DATA_DEPENDENT:
            tainted.update(o for o in n.output if o)
        elif not ins or n.op_type in ("Shape", "Size"):
            continue
        elif n.op_type in ("ScatterND", "ScatterElements") and n.input[0] not in tainted:
            continue
        elif n.op_type == "TopK" and len(n.input) > 1 and g.const(n.input[1]) is not None and n.input[0] not in tainted:
            continue
        else:
            tainted.update(o for o in n.output if o)
    for n in g.nodes:
        for o in n.output:
            if o in tainted and o in g.outputs:
                yield Finding(_label(n), n.op_type, "output-data-dependent", f"graph output {o!r} has a size set by data at run time",
                              "give the output a fixed size (fixed slots with a count or a mask)")  # fmt: skip


def _attributes(g: _Graph):
    """Attribute restrictions of operators.md (both versions) that graphs like ours can hit."""
    for n in g.nodes:
        op = n.op_type
        if op == "Resize":
            mode = _attr(n, "mode", b"nearest").decode()
            coords = _attr(n, "coordinate_transformation_mode", b"half_pixel").decode()
            nearest = _attr(n, "nearest_mode", b"round_prefer_floor").decode()
            bad = []
            if mode not in ("nearest", "linear"):
                bad.append(f"mode={mode}")
            if coords not in _RESIZE_COORDS:
                bad.append(f"coordinate_transformation_mode={coords}")
            if mode == "nearest" and nearest not in _RESIZE_NEAREST:
                bad.append(f"nearest_mode={nearest}")
            if int(_attr(n, "antialias", 0)):
                bad.append("antialias=1")
            if _attr(n, "keep_aspect_ratio_policy", b"stretch").decode() != "stretch":
                bad.append("keep_aspect_ratio_policy")
            if bad:
                yield Finding(
                    _label(n),
                    op,
                    "resize-mode",
                    f"{', '.join(bad)} unsupported",
                    "use nearest/linear with a supported coordinate mode",
                )
        elif op == "ScatterND" and _attr(n, "reduction", b"none").decode() != "none":
            yield Finding(
                _label(n), op, "scatternd-reduction", "reduction other than none", "scatter without reduction"
            )
        elif op == "MaxPool" and len(n.output) > 1 and n.output[1]:
            yield Finding(
                _label(n), op, "maxpool-indices", "the Indices output is unsupported", "drop the Indices output"
            )
        elif op == "Constant" and any(a.name in ("sparse_value", "value_string", "value_strings") for a in n.attribute):
            yield Finding(_label(n), op, "constant-kind", "sparse or string constant", "store a dense numeric constant")
        elif op in ("Squeeze", "Unsqueeze", "CumSum") or op.startswith("Reduce"):
            # "`axes` must be an initializer" / "resolvable to a constant" (CumSum: `axis`)
            if len(n.input) > 1 and n.input[1] and g.const(n.input[1]) is None:
                yield Finding(
                    _label(n),
                    op,
                    "axes-constant",
                    f"axes {n.input[1]!r} are computed at run time",
                    "give the axes as a constant",
                )
        elif op == "Slice" and len(n.input) > 3 and n.input[3] and g.const(n.input[3]) is None:
            # 10.1's table only: "`axes` must be an initializer"; 11.1's Slice row has no restriction
            yield Finding(_label(n), op, "axes-constant", f"axes {n.input[3]!r} are computed at run time",
                          "give the axes as a constant", versions=("10",))  # fmt: skip


RULES = (_ops, _opset, _dtypes, _uint8, _types, _gathernd, _topk, _qdq, _nms, _output_shapes, _attributes)


# the graph the builder gets ------------------------------------------------------------------------
@dataclass(frozen=True)
class BuilderGraph:
    """The ONNX graph TensorRT's builder would parse for a card, written to `path`, and the
    optimization profile build_plan would give it: [(input, min, opt, max)]."""

    card: str
    path: Path
    precision: str
    fused: bool
    resize_in_graph: bool | None
    profile: list

    def trtexec(self, plan: str | None = None) -> str:
        """The trtexec command that builds the same plan (strongly typed, the same profile)."""
        import shlex

        def dims(shape) -> str:
            return "x".join(str(d) for d in shape)

        args = ["trtexec", f"--onnx={self.path}", "--stronglyTyped"]
        dynamic = [p for p in self.profile if p[1] != p[3]]
        for flag, i in (("--minShapes", 1), ("--optShapes", 2), ("--maxShapes", 3)):
            if dynamic:
                args.append(f"{flag}=" + ",".join(f"{p[0]}:{dims(p[i])}" for p in dynamic))
        args.append(f"--saveEngine={plan or Path(self.path).with_suffix('.plan')}")
        return " ".join(shlex.quote(a) for a in args)


def refuse(findings: list[Finding], name: str) -> None:
    """A ModelError naming the first error (and how many more) when TensorRT would refuse the graph."""
    bad = errors(findings)
    if bad:
        more = (
            f" (+{len(bad) - 1} more: streamseg models check CARD --backend tensorrt lists them)"
            if len(bad) > 1
            else ""
        )
        raise ModelError(f"{name}: TensorRT would refuse this graph: {bad[0].line()}{more}")


def refuse_missing_ops(model_path: str | Path, name: str) -> None:
    """One line naming an op TensorRT's parser lacks (2f: ConvInteger, DynamicQuantizeLinear, ...),
    read from the model file itself: what any graph made from it would still hold. For `run
    --backend tensorrt`, before the runtime is looked for or anything is built."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # not readable: the loader names the problem later
        return
    g = _Graph.__new__(_Graph)
    g.nodes = []
    g._walk(model.graph)
    found = list(_ops(g))
    if found:
        ops = sorted({f.op for f in found})
        f = found[0]
        raise ModelError(
            f"{name}: TensorRT cannot run this model: its ONNX parser has no {', '.join(ops)} "
            f"(node {f.node!r}; onnx-tensorrt operators.md, TensorRT {' and '.join(f.versions)}) -> {f.todo}"
        )
