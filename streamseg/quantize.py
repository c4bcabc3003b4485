"""INT8 on the CPU: ONNX Runtime static quantization, behind an accuracy gate.

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
    quantize_static(
        str(model_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
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


def build_int8(
    card_path: str,
    calib_uri: str,
    *,
    frames: int = 64,
    threshold: float = 0.95,
    threads: int = 0,
    cache_dir=None,
    quantizer=quantize_onnxruntime,
) -> dict:
    """Quantize the card's model, gate it against fp32, and store it in the engine cache. Returns the gate's verdict."""
    import onnxruntime as ort

    from streamseg.backends.cache import EngineCache
    from streamseg.backends.onnxruntime import int8_cache_key
    from streamseg.models import open_model

    ref = open_model(card_path, backend="onnxruntime", precision="fp32", threads=threads)
    images = read_frames(calib_uri, 2 * frames)
    calib_imgs, gate_imgs = images[0::2], images[1::2] or images[:1]
    with ref:
        calib = [ref.prepare([img])[0] for img in calib_imgs]
        with tempfile.TemporaryDirectory() as tmp:
            q_path = Path(tmp) / "int8.onnx"
            quantizer(ref.card.model_path, ref.input_name, calib, q_path)
            so = ort.SessionOptions()
            so.log_severity_level = 3
            q_sess = ort.InferenceSession(str(q_path), so, providers=["CPUExecutionProvider"])
            names = [o.name for o in q_sess.get_outputs()]
            ref_res, q_res = [], []
            for img in gate_imgs:
                x, t = ref.prepare([img])
                ref_res += ref.decode(ref.infer(x), t)
                q_res += ref.decode(dict(zip(names, q_sess.run(names, {ref.input_name: x}), strict=True)), t)
            score = agreement(ref.card.task, ref_res, q_res)
            verdict = {
                "agreement": round(score, 4),
                "threshold": threshold,
                "gate_frames": len(gate_imgs),
                "calibration_frames": len(calib),
            }
            if score < threshold:
                raise ModelError(
                    f"{card_path}: INT8 agrees with fp32 at {score:.3f}, below the gate's {threshold:.3f} "
                    f"(short by {threshold - score:.3f}); the INT8 model is refused"
                )
            cache = EngineCache(cache_dir or "engines/cache")
            stored = cache.store(
                int8_cache_key(ref.card.model_path),
                q_path.read_bytes(),
                ".int8.onnx",
                {"model": str(ref.card.model_path), "gate": verdict, "calibration": calib_uri},
            )
            verdict["file"] = str(stored)
    return verdict
