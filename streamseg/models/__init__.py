"""Models: a card, an engine and the card format's decoder, fed through one preprocessor.

A new output format is a decoder module with the same shape as `semantic.py` /
`yolo_seg.py`, registered in DECODERS.

Fused (`fuse=True`, models/fuse.py): the engine runs one graph that holds the preprocessing and
the pixel-heavy postprocessing too; `prepare` then only stacks the frames (uint8, capture size)
and `decode` does the cheap per-instance rest. The pipeline calls the same methods either way.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from streamseg.backends import Engine, create_engine, resolve_backend
from streamseg.backends.base import Done
from streamseg.errors import ModelError
from streamseg.models import fuse as _fuse
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
        self,
        card: ModelCard,
        engine: Engine,
        *,
        backend_reason: str = "",
        thresholds: dict | None = None,
        fused_host=None,
        workdir: Path | None = None,
    ) -> None:
        self.card = card
        self.thresholds = {k: v for k, v in (thresholds or {}).items() if v is not None}
        self.engine = engine
        self.backend_reason = backend_reason
        self.decoder = None
        self.fused = fused_host is not None  # the engine runs the fused graph (models/fuse.py)
        self._fused = fused_host
        self._workdir = workdir  # where the fused graph was written; removed on exit
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
            if not self.fused and getattr(self.decoder, "needs_probe", False):
                self._probe()  # a fused graph's outputs are fixed-shape: nothing to learn
        except BaseException:
            self.engine.close()
            self._remove_workdir()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.engine.close()
        self._remove_workdir()

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _bind(self) -> None:
        """Check the card against the loaded model and build the decoder."""
        card, eng = self.card, self.engine
        if self.fused:
            if _fuse.FRAMES not in eng.inputs:
                raise ModelError(
                    f"{card.name}: the fused engine has no input {_fuse.FRAMES!r} (it has {sorted(eng.inputs)})"
                )
            self.input_name, self.input_dtype = _fuse.FRAMES, np.dtype(np.uint8)
            self.decoder = self._fused
            return
        name = check_input(card, eng.inputs)
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
        """The engine's input for a batch, and how each frame maps to the model input.
        Fused: the frames themselves (stacked) and the resize tables, no pixel work."""
        if self.fused:
            return self._fused.prepare(images_bgr)
        x, transforms = self.preprocess(images_bgr)
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        return x, transforms

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.batches += 1
        self.frames += _batch_len(x)
        if isinstance(x, _fuse.FrameGroups):
            return x.merge([self.engine.infer(feeds) for _, feeds in x.groups])
        return self.engine.infer(x if isinstance(x, dict) else {self.input_name: x})

    def submit(self, x: np.ndarray):
        """Start inference (see Engine.submit); `collect` the ticket for the outputs."""
        if isinstance(x, _fuse.FrameGroups):  # frames of several sizes: one run per size, now
            return Done(self.infer(x))
        self.batches += 1
        self.frames += _batch_len(x)
        return self.engine.submit(x if isinstance(x, dict) else {self.input_name: x})

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
            "fused": self.fused,
            "resize_in_graph": self._fused.resize_in_graph if self.fused else None,
            "nms": self._fused.nms if self.fused else None,
            "card": self.card.name,
            "why": self.backend_reason,
            "batch_mean": round(self.frames / self.batches, 3) if self.batches else 0.0,
        }


def check_input(card: ModelCard, inputs: dict) -> str:
    """The model input the card feeds, after checking its shape against the card."""
    name = card.input.name or (next(iter(inputs)) if len(inputs) == 1 else None)
    if name is None:
        raise ModelError(f"{card.name}: the model has inputs {sorted(inputs)}; set input.name in the card")
    if name not in inputs:
        raise ModelError(f"{card.name}: the model has no input {name!r} (it has {sorted(inputs)})")
    shape = inputs[name].shape
    w, h = card.input.size_wh
    expect = (3, h, w) if card.input.layout == "NCHW" else (h, w, 3)
    if len(shape) != 4 or any(d is not None and d != e for d, e in zip(shape[1:], expect, strict=True)):
        raise ModelError(
            f"{card.name}: the model's input {name!r} is {shape}, the card says "
            f"{card.input.layout} {w}x{h} ({('N',) + expect})"
        )
    return name


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
    fuse: bool | None = None,
    resize_in_graph: bool | None = None,
    nms: str = "dynamic",
    runtime_needed: bool = True,
) -> SegModel:
    """Load a card and make its (unloaded) model; enter it to load the engine.
    `engine_options` go to the backend's engine as they are (e.g. TensorRT's max_batch, calibration).
    `fuse`: run the fused graph (pre- and postprocessing inside the engine); None = the measured
    default for the backend (models/fuse.py FUSE_DEFAULT). `resize_in_graph`: whether that graph
    resizes the frames itself (None: models/fuse.py RESIZE_IN_GRAPH for the backend). `nms`: the
    fused yolo-seg graph's NMS, "dynamic" or "static" (no data-dependent shape: models/fuse.py)."""
    card = load_card(card_path)
    if task is not None and card.task != task:
        raise ModelError(f"{card_path}: card is for task {card.task!r}, but is configured as the {task} engine")
    if backend == "tensorrt":  # an op TensorRT lacks: one line before anything is looked for or built
        from streamseg.backends.tensorrt_check import refuse_missing_ops

        refuse_missing_ops(card.model_path, card.name)
    # runtime_needed=False: only the graph the backend would get is wanted (backends/tensorrt_check.py)
    name, why = resolve_backend(backend, precision) if runtime_needed else (backend, "graph only")
    options = dict(engine_options or {})
    if hint and name == "openvino":  # latency | throughput: OpenVINO's performance hint
        options.setdefault("hint", hint.upper())
    thresholds = {"conf": conf_threshold, "iou": iou_threshold, "max_det": max_detections}
    from streamseg.models.fixed_size import with_input_size

    fixed = None
    if name in ("openvino", "tensorrt"):  # a dynamic-size export gets the card's H and W (see fixed_size)
        inp = card.input
        fixed = with_input_size(
            card.model_path, inp.name, inp.layout, inp.size_wh,
            explicit_gathers=name == "openvino", uint8_casts=name == "tensorrt",
        )
    path = fixed[0] if fixed else card.model_path
    model = None
    if fuse is not False and (fuse or _fuse.FUSE_DEFAULT.get(name, {}).get(card.task, False)):
        if resize_in_graph is None:
            resize_in_graph = _fuse.RESIZE_IN_GRAPH.get(name, True)
        try:
            model = _open_fused(
                card, path, name, why, precision, threads, cache_dir, options, thresholds, resize_in_graph, nms
            )
        except _fuse.NotFusable:
            if fuse:  # asked for: say why not
                raise
            # the default: a format the fused graphs do not cover yet runs the numpy path
    if model is None:
        engine = create_engine(name, path, precision=precision, threads=threads, cache_dir=cache_dir, **options)
        model = SegModel(card, engine, backend_reason=why, thresholds=thresholds)
    if fixed:
        weakref.finalize(model, fixed[1].cleanup)
    return model


def _open_fused(
    card, path, name, why, precision, threads, cache_dir, options, thresholds, resize_in_graph, nms="dynamic"
) -> SegModel:
    """Build the card's fused graph (from the gated INT8 model for int8) and an engine on it.
    `path`: the model to fuse (the card's file, or its fixed-size copy for OpenVINO/TensorRT)."""
    import onnx

    core = path
    if precision == "int8":
        from streamseg.backends.cache import EngineCache, gated_int8

        cache = EngineCache(cache_dir) if cache_dir is not None else None
        # TensorRT takes its symmetric Q/DQ model, made by the CPU quantizer and gated on ONNX Runtime
        core = gated_int8(cache, card.model_path, name)
        options["prequantized"] = True
    from streamseg.backends.onnx_files import check_external_data

    check_external_data(core)  # also: a file that is no ONNX model is one clear line
    ins, outs, meta = _fuse.core_specs(onnx.load(str(core), load_external_data=False))
    check_input(card, ins)
    decoder = DECODERS[card.format](card, outs, meta)
    if card.format == "yolo-seg" and getattr(decoder, "end2end", False) is True:
        raise _fuse.NotFusable(f"{card.name}: cannot fuse YOLO26's end-to-end head yet (it runs unfused)")
    given = {k: v for k, v in thresholds.items() if v is not None}
    if given:
        if not hasattr(decoder, "set_thresholds"):
            raise ModelError(f"{card.name}: thresholds apply to instance models only")
        decoder.set_thresholds(**given)
    fused = _fuse.build_fused(card, core, decoder, resize_in_graph=resize_in_graph, nms=nms, backend=name)
    if name == "torch":  # the fused graph is the contract; torch runs its pre/post as torch code
        from streamseg.models.fuse_torch import TorchFusion

        options["fused"] = TorchFusion(Path(core), card, decoder, resize_in_graph)
    workdir = Path(tempfile.mkdtemp(prefix="streamseg-fused-"))
    # named as the model: engines report and refuse things by the file name the user knows
    try:
        path = fused.save(workdir / card.model_path.name)
        engine = create_engine(name, path, precision=precision, threads=threads, cache_dir=cache_dir, **options)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return SegModel(
        card,
        engine,
        backend_reason=why,
        thresholds=thresholds,  # already in the graph and its host decoder; kept for describe()
        fused_host=_fuse.FusedHost(card, decoder, resize_in_graph, fused.nms),
        workdir=workdir,
    )


def _batch_len(x) -> int:
    if isinstance(x, dict):
        return len(x[_fuse.FRAMES])
    return len(x)


__all__ = ["DECODERS", "ModelCard", "SegModel", "load_card", "open_model"]
