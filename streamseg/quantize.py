"""INT8 on the CPU, behind an accuracy gate.

Two quantizers write the same thing, a QDQ ONNX model: ONNX Runtime's static
quantization (`onnxruntime`) and Intel's NNCF post-training quantization (`nncf`, the
`openvino` extra). Either runs on either CPU backend; the gated model is stored in the
engine cache for the backend it was judged on (`int8_cache_key`). Which pairing is
fastest was measured (benchmarks/engines.py): the defaults follow that measurement.

Calibration frames come from any source URI, through the model's own preprocessing.
Frames alternate between calibration and the gate, so the gate judges the INT8 model on
frames it was not calibrated on: it runs fp32 and INT8 side by side through the card's
decoder and measures how much they agree - per-group IoU of the semantic masks, or the
mask IoU of matched instances (a missing or extra instance counts as zero). Below the
threshold (default 0.95) the INT8 model is refused, saying by how much.

TensorRT takes only signed INT8 Q/DQ with zero point 0 (symmetric), so its artifact is
made apart (`backend="tensorrt"`): ONNX Runtime's quantizer with QInt8 activations and
weights, both symmetric, biases left in float; judged by the same gate (on ONNX Runtime,
which runs Q/DQ models on the CPU) and cached under a key of its own.

A model that already is quantized (ONNX Runtime's dynamic INT8: ConvInteger and
DynamicQuantizeLinear; or Q/DQ, QLinear*) is refused before any calibration: quantizing it
again makes no INT8 model of the float one. (ONNX Runtime 1.32's quantize_static even
builds a cycle from one: its new Q/DQ tensors `<x>_scale`/`<x>_zero_point` take the names the
dynamic quantization already gave DynamicQuantizeLinear's outputs, so a DynamicQuantizeLinear
reads its own output and saving asserts "Graph is not a DAG"; the nodes were in order.)
A failure inside a quantizer is one line naming the model, the step and the library's
version (errors.third_party), exit code 1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from streamseg.backends.cache import int8_cache_key  # noqa: F401  (where the gated model is kept; re-exported)
from streamseg.errors import ModelError, UserError, third_party

# ops of a model that is already quantized: quantizing it again is refused, naming them
QUANTIZED_OPS = (
    "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear",
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul",
)


def quantized_ops(model_path) -> dict[str, int]:
    """{op: count} of the quantized ops in the model's main graph (empty for a float model)."""
    import collections

    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    counts = collections.Counter(n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))  # most first, then by name


def read_frames(uri: str, n: int) -> list[np.ndarray]:
    from streamseg.sources import open_source

    frames = []
    with open_source(uri) as src:
        while len(frames) < n and (f := src.read()) is not None:
            frames.append(f.image_bgr)
    if not frames:
        raise UserError(f"{uri}: no frames for calibration")
    return frames


def quantize_nncf(model_path: Path, input_name: str, calib: list[np.ndarray], out_path: Path) -> None:
    """NNCF post-training quantization of the ONNX model (its ONNX backend: QDQ out, like ORT's)."""
    try:
        import nncf
    except ImportError:
        raise UserError("the nncf quantizer needs NNCF: pip install 'streamseg[openvino]'") from None
    import logging

    import onnx

    logging.getLogger("nncf").setLevel(logging.ERROR)
    quantized = nncf.quantize(
        onnx.load(str(model_path)),
        nncf.Dataset(calib, lambda x: {input_name: x}),
        subset_size=len(calib),
        # a yolo-seg head concatenates boxes, scores and mask coefficients: one scale cannot carry them all
        ignored_scope=nncf.IgnoredScope(types=["Concat"], validate=False),
    )
    onnx.save(quantized, str(out_path))


def quantize_onnxruntime(
    model_path: Path, input_name: str, calib: list[np.ndarray], out_path: Path, *, symmetric: bool = False
) -> None:
    """ONNX Runtime's static quantization, QDQ out. `symmetric`: the TensorRT form (QInt8 activations
    and weights with zero point 0, biases in float: TensorRT's Q/DQ take only INT8/FP8/INT4)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    import logging

    logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
    try:
        _quantize(quantize_static, model_path, out_path, _Reader(), QuantFormat, QuantType, symmetric=symmetric)
    finally:
        logging.disable(logging.NOTSET)


def _quantize(quantize_static, model_path, out_path, reader, QuantFormat, QuantType, *, symmetric=False) -> None:  # noqa: N803
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    # TensorRT: signed INT8, zero point 0 everywhere (onnxruntime's documented extra_options)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if symmetric else {}
    quantize_static(
        str(model_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        # per-channel scales need DequantizeLinear's axis, which opsets before 13 lack
        per_channel=opset >= 13,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # convolutions carry the compute; heads that concatenate boxes, scores and
        # coefficients (yolo-seg) would share one scale and lose the scores
        op_types_to_quantize=["Conv", "ConvTranspose", "MatMul", "Gemm"],
        extra_options=extra,
    )


def quantize_onnxruntime_symmetric(model_path: Path, input_name: str, calib: list[np.ndarray], out_path: Path) -> None:
    """The TensorRT form of quantize_onnxruntime: signed INT8, zero point 0."""
    quantize_onnxruntime(model_path, input_name, calib, out_path, symmetric=True)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def agreement(task: str, ref_results: list, new_results: list) -> float:
    """How far the INT8 results agree with fp32 (1.0 = identical)."""
    if task == "semantic":
        inter = union = 0
        for r, q in zip(ref_results, new_results, strict=True):
            for gi in range(1, len(r.group_names) + 1):
                a, b = r.group_map == gi, q.group_map == gi
                inter += np.count_nonzero(a & b)
                union += np.count_nonzero(a | b)
        return 1.0 if union == 0 else inter / union
    scores = []
    for r, q in zip(ref_results, new_results, strict=True):
        taken: set[int] = set()
        total = 0.0
        for i in range(len(r)):
            best, best_iou = None, 0.5
            for j in range(len(q)):
                if j in taken or q.class_id[j] != r.class_id[i]:
                    continue
                v = _iou(r.masks[i], q.masks[j])
                if v >= best_iou:
                    best, best_iou = j, v
            if best is not None:
                taken.add(best)
                total += best_iou
        n = max(len(r), len(q))
        scores.append(1.0 if n == 0 else total / n)
    return float(np.mean(scores))


QUANTIZERS = {"onnxruntime": quantize_onnxruntime, "nncf": quantize_nncf}
# measured on the 2-core VM (benchmarks/results/*/engines.json): the faster pairing per backend
DEFAULT_QUANTIZER = {"onnxruntime": "onnxruntime", "openvino": "nncf", "tensorrt": "onnxruntime"}
# the library each quantizer runs inside (named with its version when it fails)
QUANTIZER_LIBRARY = {"onnxruntime": "onnxruntime", "nncf": "nncf"}
# TensorRT's artifact: made by ONNX Runtime in its symmetric form, judged on ONNX Runtime
TENSORRT_QUANTIZERS = {"onnxruntime": quantize_onnxruntime_symmetric}


def build_int8(
    card_path: str,
    calib_uri: str,
    *,
    backend: str = "onnxruntime",
    quantizer=None,
    frames: int = 64,
    threshold: float = 0.95,
    threads: int = 0,
    cache_dir=None,
) -> dict:
    """Quantize the card's model, gate it against fp32 on `backend`, and store it in the engine cache.
    `quantizer` is a name in QUANTIZERS or a callable (model, input name, frames, out path).
    Returns the gate's verdict."""
    from streamseg.backends import create_engine
    from streamseg.backends.cache import EngineCache
    from streamseg.models import open_model

    if backend not in DEFAULT_QUANTIZER:
        raise UserError(f"INT8 is built for onnxruntime, openvino or tensorrt, not {backend}")
    quantizer = quantizer or DEFAULT_QUANTIZER[backend]
    known = TENSORRT_QUANTIZERS if backend == "tensorrt" else QUANTIZERS
    if isinstance(quantizer, str):
        if quantizer not in known:
            raise UserError(f"unknown quantizer {quantizer!r} for {backend} (known: {', '.join(known)})")
        q_name, quantize, library = quantizer, known[quantizer], QUANTIZER_LIBRARY[quantizer]
    else:
        q_name, quantize = getattr(quantizer, "__name__", "custom"), quantizer
        library = (getattr(quantizer, "__module__", None) or "custom").split(".")[0]
    # TensorRT's symmetric Q/DQ model is judged on ONNX Runtime (the CPU runs it; the GPU is not needed)
    judge = "onnxruntime" if backend == "tensorrt" else backend
    # the quantizer works on the model itself, fed by the numpy preprocessing (its calibration frames)
    ref = open_model(card_path, backend=judge, precision="fp32", threads=threads, fuse=False)
    already = quantized_ops(ref.card.model_path)
    if already:  # the model is not loaded yet: nothing to close
        ops = ", ".join(f"{n} {op}" for op, n in already.items())
        raise ModelError(
            f"{card_path}: {ref.card.model_path.name} is already quantized ({ops}): INT8 is made from the "
            f"float model; run this one as it is (--precision fp32)"
        )
    images = read_frames(calib_uri, 2 * frames)
    calib_imgs, gate_imgs = images[0::2], images[1::2] or images[:1]
    with ref:
        calib = [ref.prepare([img])[0] for img in calib_imgs]
        with tempfile.TemporaryDirectory() as tmp:
            q_path = Path(tmp) / "int8.onnx"
            with third_party(ref.card.model_path.name, f"INT8 quantization ({q_name} for {backend})", library):
                quantize(ref.card.model_path, ref.input_name, calib, q_path)
            ref_res, q_res = [], []
            with create_engine(judge, q_path, precision="fp32", threads=threads) as q_engine:
                for img in gate_imgs:
                    x, t = ref.prepare([img])
                    ref_res += ref.decode(ref.infer(x), t)
                    q_res += ref.decode(q_engine.infer({ref.input_name: x}), t)
            score = agreement(ref.card.task, ref_res, q_res)
            verdict = {
                "agreement": round(score, 4),
                "threshold": threshold,
                "gate_frames": len(gate_imgs),
                "calibration_frames": len(calib),
                "backend": backend,
                "quantizer": q_name,
            }
            if score < threshold:
                raise ModelError(
                    f"{card_path}: INT8 ({q_name} on {backend}) agrees with fp32 at {score:.3f}, below the gate's "
                    f"{threshold:.3f} (short by {threshold - score:.3f}); the INT8 model is refused"
                )
            cache = EngineCache(cache_dir)
            stored = cache.store(
                int8_cache_key(ref.card.model_path, backend),
                q_path.read_bytes(),
                ".int8.onnx",
                {"model": str(ref.card.model_path), "gate": verdict, "calibration": calib_uri},
            )
            verdict["file"] = str(stored)
    return verdict
