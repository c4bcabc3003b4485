"""ONNX Runtime backend: the default, runs anywhere on the CPU."""

from __future__ import annotations

import numpy as np

from streamseg.backends.base import Engine, TensorSpec, default_threads
from streamseg.backends.cache import gated_int8
from streamseg.errors import BackendError, ModelError

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_DTYPES.get(arg.type, np.float32)))


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(
        self, model_path, *, precision: str = "fp32", threads: int = 0, cache=None, prequantized: bool = False
    ) -> None:
        super().__init__(model_path, precision=precision, threads=threads)
        self.cache = cache
        self.prequantized = prequantized  # int8: model_path already is the gated Q/DQ model (a fused graph of it)
        self.run_path = self.model_path  # the file actually run (the INT8 one for int8)

    def load_impl(self) -> None:
        import onnxruntime as ort

        if self.precision not in ("fp32", "int8"):
            raise BackendError(
                f"the onnxruntime backend runs fp32, or int8 models built by `streamseg engines build`; not {self.precision}"
            )
        if self.precision == "int8" and not self.prequantized:
            self.run_path = gated_int8(self.cache, self.model_path, "onnxruntime")
        threads = self.threads or default_threads()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers hold both cores between calls; with two sessions and the
        # pipeline's own threads on a small CPU they only steal from each other.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(self.run_path), so, providers=self.providers(ort))
        except Exception as e:  # ORT raises its own exception types for bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{self.model_path.name}: onnxruntime cannot load it: {first}") from None
        self.threads = threads
        self.device = {
            "TensorrtExecutionProvider": "cuda (ORT TensorRT EP)",
            "CUDAExecutionProvider": "cuda (ORT CUDA EP)",
        }.get(self._session.get_providers()[0], "cpu")
        self.inputs = {a.name: _spec(a) for a in self._session.get_inputs()}
        self.outputs = {a.name: _spec(a) for a in self._session.get_outputs()}
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._output_names = list(self.outputs)
        self.version = ort.__version__

    def providers(self, ort) -> list[str]:
        """GPU execution providers first when this onnxruntime build has them (onnxruntime-gpu), then the CPU.

        INT8 QDQ models stay on the CPU provider they were gated with."""
        available = set(ort.get_available_providers())
        gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        return (gpu if self.precision == "fp32" else []) + ["CPUExecutionProvider"]

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results, strict=True))

    def close_impl(self) -> None:
        self._session = None

    def describe(self) -> dict:
        return {**super().describe(), "threads": self.threads, "version": self.version}
