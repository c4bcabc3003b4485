"""Tiny ONNX models built in the tests, with behaviour we can predict exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _save(graph, path: Path, metadata: dict[str, str] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="streamseg-tests")
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def red_logits_model(path: Path, size_wh=(64, 48), batch: int | str = "N", outputs=("seg",)) -> Path:
    """NCHW RGB in 0..1 -> per output [N, 2, H, W] logits: class 1 where red > 0.5."""
    w, h = size_wh
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, h, w])
    weight = np.zeros((2, 3, 1, 1), np.float32)
    weight[1, 0] = 1.0  # channel 1 = R
    bias = np.array([0.5, 0.0], np.float32)
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    nodes = [helper.make_node("Conv", ["images", "W", "B"], [outputs[0]])]
    outs = [helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, [batch, 2, h, w])]
    for extra in outputs[1:]:
        nodes.append(helper.make_node("Identity", [outputs[0]], [extra]))
        outs.append(helper.make_tensor_value_info(extra, TensorProto.FLOAT, [batch, 2, h, w]))
    graph = helper.make_graph(nodes, "red", [x], outs, inits)
    return _save(graph, path)


def argmax_model(path: Path, size_wh=(64, 48)) -> Path:
    """NCHW -> [N, H, W] int64 class ids: 1 where red > 0.5 else 0."""
    w, h = size_wh
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, h, w])
    weight = np.zeros((2, 3, 1, 1), np.float32)
    weight[1, 0] = 1.0
    inits = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(np.array([0.5, 0.0], np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "W", "B"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["ids"], axis=1, keepdims=0),
    ]
    out = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", h, w])
    return _save(helper.make_graph(nodes, "argmax", [x], [out], inits), path)


def constant_yolo_model(
    path: Path, det: np.ndarray, protos: np.ndarray, size_wh=(64, 64), batch: int | str = "N", names=None
) -> Path:
    """A yolo-seg shaped model whose outputs are fixed tensors (broadcast over the batch)."""
    w, h = size_wh
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, h, w])
    inits = [
        numpy_helper.from_array(det[None].astype(np.float32), "DET"),
        numpy_helper.from_array(protos[None].astype(np.float32), "PROTO"),
        numpy_helper.from_array(np.zeros(1, np.float32), "ZERO"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m3"], axes=[1, 2, 3], keepdims=1),  # N,1,1,1
        helper.make_node("Mul", ["m3", "ZERO"], ["z4"]),
        helper.make_node("Squeeze", ["z4", "AX3"], ["z3"]),  # N,1,1
        helper.make_node("Add", ["z3", "DET"], ["output0"]),
        helper.make_node("Add", ["z4", "PROTO"], ["output1"]),
    ]
    inits.append(numpy_helper.from_array(np.array([3], np.int64), "AX3"))
    outs = [
        helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, *det.shape]),
        helper.make_tensor_value_info("output1", TensorProto.FLOAT, [batch, *protos.shape]),
    ]
    meta = {"names": repr(dict(enumerate(names)))} if names else None
    return _save(helper.make_graph(nodes, "yolo", [x], outs, inits), path, meta)


def yolo_case(nc: int = 3, nm: int = 2, anchors: int = 6, proto_wh=(16, 16)):
    """Detections with two overlapping class-0 boxes, one class-1 box and low-score noise.

    Prototype 0 is +8 everywhere (mask on inside any box), prototype 1 is -8.
    Returns (det [4+nc+nm, A], protos [nm, ph, pw]).
    """
    det = np.zeros((4 + nc + nm, anchors), np.float32)
    boxes = [  # cx, cy, w, h (input pixels), class, score
        (20, 20, 16, 16, 0, 0.9),
        (21, 21, 16, 16, 0, 0.8),  # overlaps the first: suppressed
        (21, 21, 16, 16, 1, 0.7),  # same place, other class: kept
        (48, 44, 10, 20, 2, 0.6),
        (40, 10, 8, 8, 0, 0.1),  # below threshold
        (10, 50, 8, 8, 1, 0.2),  # below threshold
    ]
    for a, (cx, cy, w, h, c, s) in enumerate(boxes):
        det[0:4, a] = (cx, cy, w, h)
        det[4 + c, a] = s
        det[4 + nc + 0, a] = 1.0  # uses prototype 0 (+)
    pw, ph = proto_wh
    protos = np.stack([np.full((ph, pw), 8.0, np.float32), np.full((ph, pw), -8.0, np.float32)])[:nm]
    return det, protos


def uint8_ids_model(path: Path, size_wh=(16, 8), scale: float | None = None) -> Path:
    """NCHW -> [N, H, W] uint8 class ids, made as YOLO26-sem makes them: an INT64 tensor, then a
    Cast to UINT8 as the graph output. scale None: ArgMax of `red_logits_model`'s two channels
    (1 where red > 0.5); a number: floor(max over channels of x * scale), which wraps past 255."""
    w, h = size_wh
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, h, w])
    if scale is None:
        weight = np.zeros((2, 3, 1, 1), np.float32)
        weight[1, 0] = 1.0
        inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array([0.5, 0.0], np.float32), "B")]
        nodes = [
            helper.make_node("Conv", ["images", "W", "B"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["ids64"], axis=1, keepdims=0),
        ]
    else:
        inits = [numpy_helper.from_array(np.array(scale, np.float32), "S")]
        nodes = [
            helper.make_node("Mul", ["images", "S"], ["scaled"]),
            helper.make_node("Floor", ["scaled"], ["floored"]),
            helper.make_node("Cast", ["floored"], ["as64"], to=TensorProto.INT64),
            helper.make_node("ReduceMax", ["as64"], ["ids64"], axes=[1], keepdims=0),
        ]
    nodes.append(helper.make_node("Cast", ["ids64"], ["output0"], name="/model/Cast", to=TensorProto.UINT8))
    out = helper.make_tensor_value_info("output0", TensorProto.UINT8, ["N", h, w])
    return _save(helper.make_graph(nodes, "uint8_ids", [x], [out], inits), path)
