"""Rewrite a fixed-batch-1 ONNX model so its batch axis is dynamic, and prove it.

The inputs' and outputs' first dimension becomes the symbol `batch`. Whether the graph
really allows other batch sizes is then checked by running it: a batch of 3 random
inputs must give what three batch-1 runs give. Graphs that bake the batch into a
constant (a Reshape to [1, ...], say) fail that check, and the command says where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamseg.errors import ModelError


def _unbake_reshapes(model) -> list[str]:
    """Reshapes of activations to a constant shape [1, ...] get [0, ...]: "keep the input's batch".

    Reshapes of constants (a bias to [1, C, 1, 1], say) broadcast, and are left alone.
    Returns the names of the nodes changed.
    """
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    changed = []
    for n in model.graph.node:
        if n.op_type != "Reshape" or len(n.input) < 2 or n.input[0] in consts or n.input[1] not in consts:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in n.attribute):
            continue
        shape = consts[n.input[1]]
        if shape.ndim != 1 or not shape.size or shape[0] != 1:
            continue
        new = shape.copy()
        new[0] = 0
        name = f"{n.input[1]}__dynamic_batch"
        model.graph.initializer.append(numpy_helper.from_array(new.astype(np.int64), name))
        n.input[1] = name
        changed.append(n.name or n.output[0])
    return changed


def make_dynamic(src: str | Path, dst: str | Path, *, check_batch: int = 3) -> str:
    """Write `dst`; returns a one-line summary. Raises ModelError saying why it cannot."""
    import onnx
    import onnxruntime as ort

    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as e:
        raise ModelError(f"{src}: not a readable ONNX file ({e})") from None
    changed = []
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            continue
        if dims[0].dim_param:
            continue  # already symbolic
        if dims[0].dim_value != 1:
            raise ModelError(
                f"{src}: {vi.name} has batch {dims[0].dim_value}, not 1; only batch-1 models are rewritten"
            )
        dims[0].ClearField("dim_value")
        dims[0].dim_param = "batch"
        changed.append(vi.name)
    if not changed:
        raise ModelError(f"{src}: its batch axis is already dynamic")
    unbaked = _unbake_reshapes(model)
    # intermediate shapes inferred for batch 1 would contradict the new axis
    del model.graph.value_info[:]
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))

    so = ort.SessionOptions()
    so.log_severity_level = 4  # the failure is reported below, in one line
    rng = np.random.default_rng(0)
    try:
        sess = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            shape = [check_batch] + [d if isinstance(d, int) else 1 for d in i.shape[1:]]
            feeds[i.name] = rng.random(shape, np.float32)
        together = sess.run(None, feeds)
        apart = [sess.run(None, {k: v[j : j + 1] for k, v in feeds.items()}) for j in range(check_batch)]
    except Exception as e:
        dst.unlink(missing_ok=True)
        import re

        node = re.search(r"Name:'([^']+)'", str(e))
        where = f" at node {node.group(1)}" if node else ""
        raise ModelError(
            f"{src}: the graph still fixes the batch to 1{where} (a batch of {check_batch} does not run); not rewritten"
        ) from None
    for k, out in enumerate(together):
        one_by_one = np.concatenate([a[k] for a in apart])
        if out.shape != one_by_one.shape or not np.allclose(out, one_by_one, rtol=1e-3, atol=1e-4):
            dst.unlink(missing_ok=True)
            diff = float(np.max(np.abs(out - one_by_one))) if out.shape == one_by_one.shape else float("nan")
            raise ModelError(
                f"{src}: with a batch of {check_batch}, output {k} differs from frame-by-frame runs (max abs diff {diff:.3g}; "
                "dynamically quantized models do this: their scales are taken over the whole batch); not rewritten"
            )
    fixed = f"; {len(unbaked)} reshapes now keep the batch" if unbaked else ""
    return f"{dst}: batch axis of {', '.join(changed)} is now dynamic{fixed} (checked: a batch of {check_batch} equals {check_batch} single runs)"
