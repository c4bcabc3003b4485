"""Models: a card, an engine and the card format's decoder, fed through one preprocessor.

A new output format is a decoder module with the same shape as `semantic.py` /
`yolo_seg.py`, registered in DECODERS.
"""

from __future__ import annotations

import weakref

import numpy as np

from streamseg.backends import Engine, create_engine, resolve_backend
from streamseg.errors import ModelError
from streamseg.models.card import ModelCard, load_card
from streamseg.models.preprocess import Preprocessor, ResizeTransform
from streamseg.models.semantic import SemanticArgmaxDecoder, SemanticLogitsDecoder
from streamseg.models.yolo_seg import YoloSegDecoder

DECODERS = {
    "semantic-logits": SemanticLogitsDecoder,
    "semantic-argmax": SemanticArgmaxDecoder,
    "yolo-seg": YoloSegDecoder,
}


class SegModel:
    """A loaded model: preprocess frames, run the engine, decode results. A context manager."""

    def __init__(
        self, card: ModelCard, engine: Engine, *, backend_reason: str = "", thresholds: dict | None = None
    ) -> None:
        self.card = card
        self.thresholds = {k: v for k, v in (thresholds or {}).items() if v is not None}
        self.engine = engine
        self.backend_reason = backend_reason
        self.decoder = None
        self.preprocess = Preprocessor.for_input(card.input)
        self.batches = 0
        self.frames = 0

    @property
    def task(self) -> str:
        return self.card.task

    def __enter__(self) -> SegModel:
        self.engine.on_specs = self._bind  # before a slow build, where the backend allows
        try:
            self.engine.load()
            if self.decoder is None:
                self._bind()
            if getattr(self.decoder, "needs_probe", False):
                self._probe()
        except BaseException:
            self.engine.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.engine.close()

    def _bind(self) -> None:
        """Check the card against the loaded model and build the decoder."""
        card, eng = self.card, self.engine
        name = card.input.name or (next(iter(eng.inputs)) if len(eng.inputs) == 1 else None)
        if name is None:
            raise ModelError(f"{card.name}: the model has inputs {sorted(eng.inputs)}; set input.name in the card")
        if name not in eng.inputs:
            raise ModelError(f"{card.name}: the model has no input {name!r} (it has {sorted(eng.inputs)})")
        shape = eng.inputs[name].shape
        w, h = card.input.size_wh
        expect = (3, h, w) if card.input.layout == "NCHW" else (h, w, 3)
        if len(shape) != 4 or any(d is not None and d != e for d, e in zip(shape[1:], expect, strict=True)):
            raise ModelError(
                f"{card.name}: the model's input {name!r} is {shape}, the card says "
                f"{card.input.layout} {w}x{h} ({('N',) + expect})"
            )
        self.input_name = name
        self.input_dtype = eng.inputs[name].dtype
        self.decoder = DECODERS[card.format](card, eng.outputs, eng.metadata)
        if self.thresholds:
            if not hasattr(self.decoder, "set_thresholds"):
                raise ModelError(f"{card.name}: thresholds apply to instance models only")
            self.decoder.set_thresholds(**self.thresholds)

    def _probe(self) -> None:
        """Outputs with dynamic shapes: run one grey frame, so a card that does not fit the file
        fails here, before any frame is read, rather than on the first batch."""
        w, h = self.card.input.size_wh
        n = self.engine.max_batch or 1
        x, transforms = self.prepare([np.full((h, w, 3), 114, np.uint8)] * n)
        self._check_outputs(outs := self.engine.infer({self.input_name: x}), n)
        self.decoder.decode(outs, transforms)

    def run(self, images_bgr: list[np.ndarray]):
        """Convenience: preprocess, infer and decode in one call (the pipeline times them separately)."""
        x, transforms = self.prepare(images_bgr)
        return self.decode(self.infer(x), transforms)

    def prepare(self, images_bgr: list[np.ndarray]) -> tuple[np.ndarray, list[ResizeTransform]]:
        x, transforms = self.preprocess(images_bgr)
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        return x, transforms

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.batches += 1
        self.frames += len(x)
        return self.engine.infer({self.input_name: x})

    def submit(self, x: np.ndarray):
        """Start inference (see Engine.submit); `collect` the ticket for the outputs."""
        self.batches += 1
        self.frames += len(x)
        return self.engine.submit({self.input_name: x})

    def collect(self, ticket) -> dict[str, np.ndarray]:
        return self.engine.collect(ticket)

    def decode(self, outputs: dict[str, np.ndarray], transforms: list[ResizeTransform]):
        self._check_outputs(outputs, len(transforms))
        return self.decoder.decode(outputs, transforms)

    def _check_outputs(self, outputs: dict[str, np.ndarray], n: int) -> None:
        """An engine that returns the wrong shape or NaN/inf fails this batch with the reason,
        instead of drawing garbage (the pipeline drops the batch's frames as engine errors)."""
        for name, spec in self.engine.outputs.items():
            arr = outputs.get(name)
            if arr is None:
                raise ModelError(f"{self.card.name}: the engine returned no output {name!r}")
            expect = (n, *spec.shape[1:])
            if arr.ndim != len(expect) or any(e is not None and e != a for e, a in zip(expect, arr.shape, strict=True)):
                raise ModelError(f"{self.card.name}: output {name!r} has shape {arr.shape}, expected {expect}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise ModelError(f"{self.card.name}: output {name!r} holds NaN or inf")

    def describe(self) -> dict:
        return {
            **self.engine.describe(),
            "card": self.card.name,
            "why": self.backend_reason,
            "batch_mean": round(self.frames / self.batches, 3) if self.batches else 0.0,
        }


def open_model(
    card_path: str,
    *,
    backend: str = "auto",
    precision: str = "fp32",
    threads: int = 0,
    task: str | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    max_detections: int | None = None,
    cache_dir: str | None = None,
    engine_options: dict | None = None,
    hint: str | None = None,
) -> SegModel:
    """Load a card and make its (unloaded) model; enter it to load the engine.
    `engine_options` go to the backend's engine as they are (e.g. TensorRT's max_batch, calibration)."""
    card = load_card(card_path)
    if task is not None and card.task != task:
        raise ModelError(f"{card_path}: card is for task {card.task!r}, but is configured as the {task} engine")
    name, why = resolve_backend(backend, precision)
    options = dict(engine_options or {})
    if hint and name == "openvino":  # latency | throughput: OpenVINO's performance hint
        options.setdefault("hint", hint.upper())
    from streamseg.models.fixed_size import with_input_size

    fixed = None
    if name in ("openvino", "tensorrt"):  # a dynamic-size export gets the card's H and W (see fixed_size)
        inp = card.input
        fixed = with_input_size(card.model_path, inp.name, inp.layout, inp.size_wh, explicit_gathers=name == "openvino")
    path = fixed[0] if fixed else card.model_path
    engine = create_engine(name, path, precision=precision, threads=threads, cache_dir=cache_dir, **options)
    thresholds = {"conf": conf_threshold, "iou": iou_threshold, "max_det": max_detections}
    model = SegModel(card, engine, backend_reason=why, thresholds=thresholds)
    if fixed:
        weakref.finalize(model, fixed[1].cleanup)
    return model


__all__ = ["DECODERS", "ModelCard", "SegModel", "load_card", "open_model"]
