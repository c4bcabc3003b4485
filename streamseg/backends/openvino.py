"""OpenVINO backend (CPU): the model compiled once per run, precision pinned and reported.

OpenVINO picks bf16 by itself on CPUs that have it; streamseg always sets the
inference precision it was asked for, so `fp32` means fp32 and the report says so.
`int8` runs the QDQ model that passed the accuracy gate (`streamseg engines build CARD
--backend openvino --precision int8 --calib URI`): its quantized layers run in int8,
the rest in f32 (pinned, not left to the bf16 default).
"""

from __future__ import annotations

import numpy as np

from streamseg.backends.base import Engine, TensorSpec, default_threads
from streamseg.backends.cache import gated_int8
from streamseg.errors import BackendError, ModelError, third_party

# streamseg precision -> OpenVINO INFERENCE_PRECISION_HINT
_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def _spec(port) -> TensorSpec:
    ps = port.get_partial_shape()
    shape = tuple(d.get_length() if d.is_static else None for d in ps)
    return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))


class OpenVinoEngine(Engine):
    backend = "openvino"

    def __init__(
        self,
        model_path,
        *,
        precision: str = "fp32",
        threads: int = 0,
        hint: str = "LATENCY",
        cache=None,
        prequantized: bool = False,
    ) -> None:
        super().__init__(model_path, precision=precision, threads=threads)
        self.prequantized = prequantized  # int8: model_path already is the gated Q/DQ model (a fused graph of it)
        self.hint = hint
        self.cache = cache  # an EngineCache, or None to compile every time
        self.cached: str | None = None  # "hit" / "built" when a cache is used
        self.run_path = self.model_path  # the file actually compiled (the gated INT8 one for int8)

    def load_impl(self) -> None:
        import openvino as ov

        from streamseg.cpu import cpu_features

        core = ov.Core()
        if self.precision not in _PRECISION:
            raise BackendError(
                f"the openvino backend runs fp32, bf16 (where the CPU has it), fp16 or gated int8; not {self.precision}"
            )
        cpu = cpu_features()  # the one place CPU features are read (a test can make it a CPU without bf16)
        if self.precision == "bf16" and not cpu.bf16:
            raise BackendError(
                f"precision bf16 asked for, but this CPU has no bf16 support (AVX512_BF16 or AMX): {cpu.describe()}"
            )
        if self.precision == "int8" and not self.prequantized:
            self.run_path = gated_int8(self.cache, self.model_path, "openvino")
        threads = self.threads or default_threads()
        try:
            model = core.read_model(str(self.run_path))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.model_path.name}: OpenVINO cannot read it: {first}") from None
        self.metadata = self._read_metadata()
        self.inputs = {p.get_any_name(): _spec(p) for p in model.inputs}
        self.outputs = {p.get_any_name(): _spec(p) for p in model.outputs}
        self.specs_known()
        config = {
            "INFERENCE_PRECISION_HINT": _PRECISION[self.precision],
            "PERFORMANCE_HINT": self.hint,
            "INFERENCE_NUM_THREADS": str(threads),
        }
        with third_party(self.model_path.name, f"OpenVINO's compilation for the CPU ({self.precision})", "openvino"):
            self._compiled = self._compile(core, model, config)
        self._request = self._compiled.create_infer_request()
        self.threads = threads
        self.inputs = {p.get_any_name(): _spec(p) for p in self._compiled.inputs}
        self.outputs = {p.get_any_name(): _spec(p) for p in self._compiled.outputs}
        self._out_ports = list(self._compiled.outputs)
        self.version = ov.__version__
        self.actual_precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if self.precision == "int8":
            self.actual_precision = f"int8 (QDQ), {self.actual_precision} elsewhere"

    def _read_metadata(self) -> dict[str, str]:
        """The ONNX metadata (class names of YOLO exports) as ORT would give it."""
        try:
            import onnx

            m = onnx.load(str(self.model_path), load_external_data=False)
            return {p.key: p.value for p in m.metadata_props}
        except Exception:
            return {}

    def _compile(self, core, model, config):
        """Compile, or import the blob the cache holds for exactly this model, runtime, CPU and settings."""
        if self.cache is None:
            return core.compile_model(model, "CPU", config)
        import io
        import logging

        import openvino as ov

        from streamseg.backends.cache import CacheKey, sha256_file

        cpu = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
        key = CacheKey(
            sha256_file(self.run_path),
            "openvino",
            ov.__version__,
            cpu,
            self.precision,
            tuple(sorted({"hint": self.hint, "threads": config["INFERENCE_NUM_THREADS"]}.items())),
        )
        log = logging.getLogger("streamseg")
        blob = self.cache.lookup(key)
        if blob is not None:
            self.cached = "hit"
            return core.import_model(io.BytesIO(blob.read_bytes()), "CPU", config)
        log.info(
            "building OpenVINO blob for %s (%s, %s); it will be cached in %s",
            self.model_path.name,
            self.precision,
            cpu,
            self.cache.root,
        )
        compiled = core.compile_model(model, "CPU", config)
        stream = io.BytesIO()
        compiled.export_model(stream)
        path = self.cache.store(key, stream.getvalue(), ".blob", {"model": str(self.run_path)})
        log.debug("cached %s", path)
        self.cached = "built"
        return compiled

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = self._request.infer(feeds)
        return {p.get_any_name(): np.asarray(res[p]) for p in self._out_ports}

    def close_impl(self) -> None:
        self._request = self._compiled = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "threads": self.threads,
            "version": self.version,
            "hint": self.hint,
            "inference_precision": self.actual_precision,
        }
