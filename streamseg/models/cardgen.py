"""`streamseg models card MODEL.onnx`: a model card written from what the file says.

Facts come from the file: input name, layout and size (static dims, else the export's
`imgsz`), output shapes (one run on a grey frame with ONNX Runtime, since exports leave
them symbolic), class names (`names`), the YOLO head (`end2end`, or the output shape).
Ultralytics exports also fix the preprocessing (RGB, 0..1, letterbox with grey 114).
Groups are proposed from the label names. Whatever the file does not say is written as
the card's default with a `FILL IN` comment, never as a fact.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from streamseg.errors import ModelError
from streamseg.models.card import labels_from_metadata

# label name (lower case; COCO, Cityscapes, BDD100K, Mapillary spellings) -> overlay group
GROUP_OF_LABEL = {
    "road": "road",
    "drivable area": "road",
    "sidewalk": "sidewalk",
    "lane": "lane",
    "lane marking": "lane",
    "car": "car",
    "truck": "car",
    "bus": "car",
    "person": "person",
    "pedestrian": "person",
    "rider": "cycle",  # Cityscapes: a person on a bicycle or motorcycle
    "bicycle": "cycle",
    "motorcycle": "cycle",
    "motorbike": "cycle",
    "building": "building",
    "vegetation": "vegetation",
    "sky": "sky",
}


def propose_groups(labels: list[str]) -> dict[str, list[str]]:
    """Overlay groups from label names: COCO car/truck/bus -> car, person -> person,
    bicycle/motorcycle -> cycle; Cityscapes road, sidewalk, rider (-> cycle), ..."""
    groups: dict[str, list[str]] = {}
    for lab in labels:
        g = GROUP_OF_LABEL.get(re.sub(r"[_\-]+", " ", lab.strip().lower()))
        if g is not None:
            groups.setdefault(g, []).append(lab)
    return groups


@dataclass
class _Facts:
    """What the file says, and what it leaves open (`todo`: lines for the card's header)."""

    input_name: str
    layout: str
    size_wh: tuple[int, int] | None
    dynamic_size: bool
    outputs: dict[str, tuple[tuple[int, ...], np.dtype]]
    metadata: dict[str, str]
    todo: list[str] = field(default_factory=list)


def _read(model: Path) -> _Facts:
    import onnx

    from streamseg.models.onnx_check import check_external_data

    if not model.is_file():
        raise ModelError(f"model file not found: {model}")
    check_external_data(model)
    try:
        m = onnx.load(str(model), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{model}: not an ONNX model ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise ModelError(f"{model}: streamseg feeds models with one image input; this one has {len(inputs)}")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise ModelError(f"{model}: input {inp.name!r} is {dims}; a card needs N x 3 x H x W or N x H x W x 3")
    layout = "NCHW" if dims[1] == 3 else "NHWC"
    h, w = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    meta = {p.key: p.value for p in m.metadata_props}
    facts = _Facts(inp.name, layout, None, h is None or w is None, {}, meta)
    if h and w:
        facts.size_wh = (w, h)
    else:
        imgsz = _imgsz(meta)
        if imgsz is not None:
            facts.size_wh = imgsz
    return facts


def _imgsz(meta: dict[str, str]) -> tuple[int, int] | None:
    """Ultralytics' `imgsz` metadata, [h, w] (or one number), as (w, h)."""
    import ast

    try:
        v = ast.literal_eval(meta.get("imgsz", ""))
    except (ValueError, SyntaxError):
        return None
    if isinstance(v, int):
        return v, v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return int(v[1]), int(v[0])
    return None


def _run_once(model: Path, facts: _Facts) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Output shapes and dtypes from one run on a grey frame (exports leave them symbolic)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{model}: onnxruntime cannot load it: {first}") from None
    w, h = facts.size_wh
    shape = (1, 3, h, w) if facts.layout == "NCHW" else (1, h, w, 3)
    arg = sess.get_inputs()[0]
    dtype = {"tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(arg.type, np.float32)
    if isinstance(arg.shape[0], int) and arg.shape[0] > 0:
        shape = (arg.shape[0], *shape[1:])
    x = np.full(shape, 114 if dtype == np.uint8 else 114 / 255, dtype)
    try:
        outs = sess.run(None, {arg.name: x})
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{model}: a test run at {w}x{h} failed: {first}") from None
    return {o.name: (tuple(a.shape), a.dtype) for o, a in zip(sess.get_outputs(), outs, strict=True)}


def _flow(value) -> str:
    """One value as inline YAML (quoted where YAML needs it)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[1:-1]


def _label_list(labels: list[str], indent: str = "  ") -> str:
    """A YAML list of labels, several per line."""
    lines, line = [], []
    for lab in labels:
        line.append(_flow(lab))
        if len(", ".join(line)) > 90:
            lines.append(", ".join(line))
            line = []
    if line:
        lines.append(", ".join(line))
    return "[\n" + ",\n".join(indent + x for x in lines) + "\n]"


def make_card(model: str | Path, card_path: str | Path | None = None) -> str:
    """The text of a card for `model`; its `file` is relative to `card_path` when given, else
    absolute (a printed card may be saved anywhere: `models card m.onnx > cards/m.yaml`)."""
    model = Path(model)
    facts = _read(model)
    meta = facts.metadata
    ultralytics = "ultralytics" in (meta.get("author", "") + meta.get("description", "")).lower()
    todo: list[str] = []
    if facts.size_wh is None:
        raise ModelError(
            f"{model}: the input size is dynamic and the file does not say what it was trained at (no imgsz "
            "metadata); write the card by hand (see tests/fixtures/cards/)"
        )
    facts.outputs = _run_once(model, facts)
    labels = labels_from_metadata(meta)
    fmt, task, extra = _format(model, facts, labels, todo)
    heads = extra.get("heads", [])
    if labels is None:
        labels = extra.pop("placeholder_labels", None)
    rel = os.path.relpath(model.resolve(), Path(card_path).resolve().parent) if card_path else str(model.resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", model.stem)
    w, h = facts.size_wh
    what = (
        f"an Ultralytics {meta.get('version', '')} export ({meta.get('description', '').strip() or meta.get('task', '')})"
        if ultralytics
        else "an ONNX model without Ultralytics metadata"
    )
    out = [f"# Written by `streamseg models card` from {model.name}: {what}."]
    if facts.dynamic_size:
        out.append(f"# The file takes any input size; {w}x{h} is the size it was exported at (`imgsz`).")
    pre_unknown = not ultralytics
    if pre_unknown:
        todo.append(
            "input: color, scale, mean, std and resize are NOT in the file; the values below are the card's "
            "defaults: set them to what the model was trained with"
        )
    for t in todo:
        out.append(f"# FILL IN: {t}")
    out += [
        f"name: {_flow(name)}",
        f"file: {_flow(rel)}",
        f"task: {task}",
        f"format: {fmt}",
        "input:",
        f"  name: {_flow(facts.input_name)}",
        f"  size_wh: [{w}, {h}]",
        f"  layout: {facts.layout}",
    ]
    note = "  # FILL IN (not in the file)" if pre_unknown else ""
    if ultralytics:
        out += ["  color: rgb", "  scale: 0.00392156862745098   # 1/255", "  resize: letterbox", "  pad_value: 114"]
    else:
        out += [
            f"  color: rgb{note}",
            f"  scale: 0.00392156862745098{note}",
            f"  mean: [0.0, 0.0, 0.0]{note}",
            f"  std: [1.0, 1.0, 1.0]{note}",
            f"  resize: stretch{note}",
        ]
    if fmt == "semantic-logits":
        out.append("heads:")
        for head in extra.pop("heads"):
            out.append(f"  - output: {_flow(head['output'])}")
            out.append(f"    labels: {_flow(head['labels'])}")
    else:
        names_note = "from the file's `names`" if labels_from_metadata(meta) else "FILL IN: the file has no `names`"
        out.append(f"labels: {_label_list(labels)}   # {names_note} ({len(labels)})")
    for key, value in extra.items():
        out.append(f"{key}: {_flow(value)}")
    groups = propose_groups([lab for lab in _all_labels(fmt, labels, heads) if lab])
    if groups:
        out.append("# groups: proposed from the label names; check them")
        out.append("groups:")
        out += [f"  {g}: {_flow(members)}" for g, members in groups.items()]
    else:
        out.append("# FILL IN: no label name says road, car, person, ...: name the labels each overlay group draws")
        out.append("groups: {}")
    return "\n".join(out) + "\n"


def _all_labels(fmt: str, labels, heads) -> list[str]:
    if fmt == "semantic-logits":
        return [lab for head in heads for lab in head["labels"]]
    return list(labels or [])


def _format(model: Path, facts: _Facts, labels: list[str] | None, todo: list[str]) -> tuple[str, str, dict]:
    """(format, task, extra card keys) from the output shapes and the metadata."""
    outs = facts.outputs
    meta_task = facts.metadata.get("task", "").lower()
    r3 = [n for n, (s, _) in outs.items() if len(s) == 3]
    r4 = [n for n, (s, _) in outs.items() if len(s) == 4]
    shapes = ", ".join(f"{n} {list(s)}" for n, (s, _) in outs.items())
    extra: dict = {}
    if len(r3) == 1 and len(r4) == 1 and np.dtype(outs[r3[0]][1]).kind == "f" and meta_task in ("segment", ""):
        det, proto = outs[r3[0]][0], outs[r4[0]][0]
        nm = proto[1]
        e2e_meta = str(facts.metadata.get("end2end", "")).lower()
        if e2e_meta in ("true", "false"):
            end2end = e2e_meta == "true"
        elif det[2] == 6 + nm:
            end2end = True
        else:
            end2end = False
        nc = det[1] - 4 - nm
        if end2end:
            nc = len(labels) if labels else None
        elif labels is not None and len(labels) != nc:
            raise ModelError(f"{model}: {r3[0]} {list(det)} holds {nc} classes, but the file names {len(labels)}")
        if labels is None:
            if nc is None:
                raise ModelError(f"{model}: an end-to-end YOLO head without `names`: the class count is unknown")
            todo.append(f"labels: the file has no `names`; {nc} placeholder names below")
            extra["placeholder_labels"] = [f"class_{i}" for i in range(nc)]
        extra["end2end"] = end2end
        extra["outputs"] = {"detections": r3[0], "protos": r4[0]}
        return "yolo-seg", "instance", extra
    if len(outs) == 1:
        (name, (shape, dtype)), = outs.items()
        ids = np.dtype(dtype).kind in "iub" and (len(shape) == 3 or (len(shape) == 4 and shape[1] == 1))
        if ids:
            if labels is None:
                todo.append("labels: the file has no `names`; list the class name of every id (two placeholders below)")
                extra["placeholder_labels"] = ["class_0", "class_1"]
            extra["output"] = name
            return "semantic-argmax", "semantic", extra
    if r4 and len(r4) == len(outs) and all(np.dtype(outs[n][1]).kind == "f" for n in r4):
        heads = []
        for i, n in enumerate(r4):
            c = outs[n][0][1]
            names = labels if (labels is not None and len(labels) == c and len(r4) == 1) else None
            if names is None:
                names = [None] + [f"{n}_{k}" for k in range(1, c)] if c == 2 else [f"{n}_{k}" for k in range(c)]
                todo.append(f"heads[{i}].labels: name the {c} channels of {n!r} (null = says nothing)")
            heads.append({"output": n, "labels": names})
        extra["heads"] = heads
        return "semantic-logits", "semantic", extra
    raise ModelError(
        f"{model}: outputs {shapes} are none of the formats streamseg reads (yolo-seg, semantic-argmax, "
        "semantic-logits); task "
        + (repr(meta_task) if meta_task else "unknown")
    )

