"""Engine backends, chosen by name and imported lazily.

A CPU-only install imports cleanly; asking for a backend whose runtime is missing is
one clear error.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from streamseg.backends.base import Engine, TensorSpec
from streamseg.errors import BackendError

# name -> (module, class, the Python module the runtime needs)
BACKENDS = {
    "onnxruntime": ("streamseg.backends.onnxruntime", "OnnxRuntimeEngine", "onnxruntime"),
    "openvino": ("streamseg.backends.openvino", "OpenVinoEngine", "openvino"),
    "tensorrt": ("streamseg.backends.tensorrt", "TensorRtEngine", "tensorrt"),
    # PyTorch on CUDA (or the CPU) through onnx2torch: the GPU path where TensorRT cannot be had
    "torch": ("streamseg.backends.torch_backend", "TorchEngine", "onnx2torch"),
}


def _torch_cuda() -> tuple[str | None, str]:
    """(GPU name, why not) for the torch backend: torch and onnx2torch installed and a CUDA device seen."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx2torch") is None:
        return None, "torch/onnx2torch are not installed"
    from streamseg.backends.torch_backend import cuda_device

    gpu = cuda_device()
    return gpu, "" if gpu else "torch sees no CUDA device"


def resolve_backend(name: str, precision: str = "fp32") -> tuple[str, str]:
    """Pick a concrete backend for `name` ("auto" included); returns (backend, why).

    auto: TensorRT when it is installed and a GPU answers, else torch on CUDA (onnx2torch installed and
    torch sees a GPU), else OpenVINO when installed, else ONNX Runtime - skipping a backend that cannot
    run `precision`."""
    if name == "auto":
        reasons = []
        if importlib.util.find_spec("tensorrt") is not None:
            from streamseg.backends.tensorrt import gpu_name

            gpu = gpu_name()
            if gpu is not None and precision in ("fp32", "fp16", "int8"):
                return "tensorrt", f"auto: TensorRT and a GPU ({gpu[0]})"
            reasons.append(
                "TensorRT is installed but no GPU answers" if gpu is None else f"TensorRT has no {precision}"
            )
        else:
            reasons.append("no TensorRT here")
        if precision in ("fp32", "fp16"):
            gpu, why_not = _torch_cuda()
            if gpu is not None:
                return "torch", f"auto: {', '.join(reasons)}, torch on CUDA ({gpu})"
            reasons.append(why_not)
        else:
            reasons.append(f"the torch backend has no {precision}")
        if importlib.util.find_spec("openvino") is not None:
            from streamseg.cpu import cpu_features

            if precision in ("fp32", "int8") or precision == "bf16" and cpu_features().bf16:
                return "openvino", f"auto: {', '.join(reasons)}, OpenVINO is installed"
            reasons.append(f"OpenVINO on this CPU runs no {precision}")
        else:
            reasons.append("OpenVINO is not installed")
        return "onnxruntime", f"auto: {', '.join(reasons)}"
    if name not in BACKENDS:
        known = ", ".join(["auto", *BACKENDS])
        raise BackendError(f"backend {name!r} is not available in this build (available: {known})")
    runtime = BACKENDS[name][2]
    if importlib.util.find_spec(runtime) is None:
        raise BackendError(f"backend {name!r} needs the Python package {runtime!r}, which is not installed")
    return name, "asked for"


# backends whose built artifacts go to the engine cache
CACHED = {"onnxruntime", "openvino", "tensorrt"}  # onnxruntime: its gated INT8 models


def create_engine(
    name: str,
    model_path: str | Path,
    *,
    precision: str = "fp32",
    threads: int = 0,
    cache_dir: str | Path | None = None,
    **options,
) -> Engine:
    """An unloaded engine of backend `name` (already resolved, not "auto"); `options` go to its constructor."""
    module, cls, _ = BACKENDS[name]
    kwargs = dict(options)
    if name in CACHED and cache_dir is not None:
        from streamseg.backends.cache import EngineCache

        kwargs["cache"] = EngineCache(cache_dir)
    return getattr(importlib.import_module(module), cls)(model_path, precision=precision, threads=threads, **kwargs)


__all__ = ["BACKENDS", "Engine", "TensorSpec", "create_engine", "resolve_backend"]
