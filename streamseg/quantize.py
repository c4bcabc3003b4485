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
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from streamseg.backends.cache import int8_cache_key  # noqa: F401  (where the gated model is kept; re-exported)
from streamseg.errors import ModelError, UserError


def read_frames(uri: str, n: int) -> list[np.ndarray]:
    from streamseg.sources import open_source

    frames = []
    with open_source(uri) as src:
        while len(frames) < n and (f := src.read()) is not None:
            frames.append(f.image_bgr)
    if not frames:
        raise UserError(f"{uri}: no frames for calibration")
    return frames


def calibration_batches(card_path: str, uri: str, frames: int, batch: int) -> list[dict[str, np.ndarray]]:
    """Frames from `uri` through the card's own preprocessing, as {input name: N x ...} batches
    (what TensorRT's entropy calibrator is fed)."""
    from streamseg.models import load_card
    from streamseg.models.preprocess import Preprocessor

    card = load_card(card_path)
    pre = Preprocessor.for_input(card.input)
    name = card.input.name or "images"
    images = read_frames(uri, frames)
    return [{name: pre(images[i : i + batch])[0]} for i in range(0, len(images), max(1, batch))]


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


def quantize_onnxruntime(model_path: Path, input_name: str, calib: list[np.ndarray], out_path: Path) -> None:
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
        _quantize(quantize_static, model_path, out_path, _Reader(), QuantFormat, QuantType)
    finally:
        logging.disable(logging.NOTSET)


def _quantize(quantize_static, model_path, out_path, reader, QuantFormat, QuantType) -> None:  # noqa: N803
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    quantize_static(
        str(model_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        # per-channel scales need DequantizeLinear's axis, which opsets before 13 lack
        per_channel=opset >= 13,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # convolutions carry the compute; heads that concatenate boxes, scores and
        # coefficients (yolo-seg) would share one scale and lose the scores
        op_types_to_quantize=["Conv", "ConvTranspose", "MatMul", "Gemm"],
    )


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
DEFAULT_QUANTIZER = {"onnxruntime": "onnxruntime", "openvino": "nncf"}


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
        raise UserError(f"INT8 on the CPU is built for onnxruntime or openvino, not {backend}")
    quantizer = quantizer or DEFAULT_QUANTIZER[backend]
    if isinstance(quantizer, str):
        if quantizer not in QUANTIZERS:
            raise UserError(f"unknown quantizer {quantizer!r} (known: {', '.join(QUANTIZERS)})")
        q_name, quantize = quantizer, QUANTIZERS[quantizer]
    else:
        q_name, quantize = getattr(quantizer, "__name__", "custom"), quantizer
    # the quantizer works on the model itself, fed by the numpy preprocessing (its calibration frames)
    ref = open_model(card_path, backend=backend, precision="fp32", threads=threads, fuse=False)
    images = read_frames(calib_uri, 2 * frames)
    calib_imgs, gate_imgs = images[0::2], images[1::2] or images[:1]
    with ref:
        calib = [ref.prepare([img])[0] for img in calib_imgs]
        with tempfile.TemporaryDirectory() as tmp:
            q_path = Path(tmp) / "int8.onnx"
            quantize(ref.card.model_path, ref.input_name, calib, q_path)
            ref_res, q_res = [], []
            with create_engine(backend, q_path, precision="fp32", threads=threads) as q_engine:
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
