"""TensorRT runner (NVIDIA GPUs): runs a deserialized plan with the named-tensor API on CUDA
streams with pinned host buffers. Plans come from the engine cache or from the builder
(tensorrt_build.py); `TensorRtRunner` runs whatever ICudaEngine it is given, as Polygraphy's
TrtRunner does. TensorRT 10 and 11 (the calls used exist in both: tests/backends/test_trt_api.py).

NEVER RUN ON A GPU: this machine and CI have none, and TensorRT cannot be installed here.
The code follows the TensorRT 10/11 Python API (Runtime / ICudaEngine / IExecutionContext:
set_input_shape, set_tensor_address, execute_async_v3) and cuda-python's runtime bindings
(cudaMalloc, cudaMallocHost, cudaMemcpyAsync, cudaStream*). Its logic (shapes, bindings,
stream use, cache keys, strongly typed builds) is tested against a test double of both modules
(tests/backends/fake_tensorrt.py); tests/gpu/ holds the real-GPU tests, skipped here.

- Plans are cached (key: model sha256 + TensorRT version + GPU name and compute capability +
  precision + profile) with their sha256 in the manifest; a plan that does not match is
  refused, never deserialized.
- Run: two slots, each an execution context with pinned host and device buffers sized
  for the profile's max batch, and three streams: uploads, compute, downloads. submit()
  copies a batch into its slot's pinned buffers and only enqueues: upload (h2d stream),
  event, compute waits on it and runs execute_async_v3, event, download (d2h stream),
  event. collect() waits on that last event. The pipeline submits batch n+1 before it
  collects batch n, so n+1's upload runs while n computes (`overlaps = True`). With the fused
  graph the upload is the uint8 frames and the download the compact results.
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np

from streamseg.backends.base import Engine, TensorSpec
from streamseg.backends.tensorrt_build import (
    DEFAULT_FRAME_HW,
    PRECISIONS,
    BuildSettings,
    build_plan,
    strongly_typed_flag,
)
from streamseg.errors import BackendError

log = logging.getLogger("streamseg")


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError:
            raise BackendError("the tensorrt backend needs cuda-python: pip install 'streamseg[tensorrt]'") from None
    return cudart


def _check(result, what: str):
    """cuda-python returns (err, value...); raise on error, return the value(s)."""
    cudart = _cudart()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"CUDA {what} failed: {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def gpu_name() -> tuple[str, str] | None:
    """(GPU name, compute capability) of device 0, or None without a usable GPU."""
    try:
        cudart = _cudart()
    except BackendError:
        return None
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or not count:
        return None
    err, prop = cudart.cudaGetDeviceProperties(0)
    if err != cudart.cudaError_t.cudaSuccess:
        return None
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return name, f"{prop.major}.{prop.minor}"


class _Buffer:
    """A pinned host buffer and a device buffer of the same size."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.host = _check(_cudart().cudaMallocHost(nbytes), "cudaMallocHost")
        self.device = _check(_cudart().cudaMalloc(nbytes), "cudaMalloc")

    def host_array(self, shape, dtype) -> np.ndarray:
        """A numpy view of the pinned host memory (no copy)."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if n > self.nbytes:
            raise BackendError(f"batch needs {n} bytes, buffer holds {self.nbytes}")
        raw = (ctypes.c_char * n).from_address(int(self.host))
        return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self) -> None:
        cudart = _cudart()
        cudart.cudaFreeHost(self.host)
        cudart.cudaFree(self.device)


class _Slot:
    """One batch in flight: an execution context, its buffers, and the events that order its work."""

    def __init__(self, context, events: dict[str, object]) -> None:
        self.context = context
        self.buffers: dict[str, _Buffer] = {}
        self.events = events  # uploaded, computed, downloaded
        self.busy = False


class TensorRtRunner:
    """Runs one deserialized ICudaEngine: I/O specs, two slots of bound buffers, three streams."""

    def __init__(self, trt, engine, name: str = "plan") -> None:
        self.name = name
        self._engine = engine
        self._slots: list[_Slot] = []
        self._streams: dict[str, object] = {}
        self._next_slot = 0
        cudart = _cudart()
        for role in ("h2d", "compute", "d2h"):
            self._streams[role] = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        for _ in range(2):
            events = {
                k: _check(cudart.cudaEventCreate(), "cudaEventCreate") for k in ("uploaded", "computed", "downloaded")
            }
            self._slots.append(_Slot(engine.create_execution_context(), events))
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs: dict[str, TensorSpec] = {}
        self._bind(trt)

    def _bind(self, trt) -> None:
        eng = self._engine
        self._names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._is_input = {n: eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in self._names}
        self._dtype = {n: np.dtype(trt.nptype(eng.get_tensor_dtype(n))) for n in self._names}
        self._max_shape = {}
        for n in self._names:
            shape = tuple(eng.get_tensor_shape(n))
            spec = TensorSpec(n, tuple(None if d < 0 else d for d in shape), self._dtype[n])
            (self.inputs if self._is_input[n] else self.outputs)[n] = spec
        # each slot: buffers for the largest shapes the profile allows, bound to its context
        for slot in self._slots:
            ctx = slot.context
            for n in self._names:
                if self._is_input[n]:
                    self._max_shape[n] = tuple(eng.get_tensor_profile_shape(n, 0)[2])
                    ctx.set_input_shape(n, self._max_shape[n])
            for n in self._names:
                shape = tuple(ctx.get_tensor_shape(n))
                slot.buffers[n] = _Buffer(int(np.prod(shape)) * self._dtype[n].itemsize)
                ctx.set_tensor_address(n, int(slot.buffers[n].device))

    @property
    def max_batch(self) -> int:
        return min(s[0] for s in self._max_shape.values())

    def submit(self, feeds: dict[str, np.ndarray]):
        """Enqueue upload, run and download of one batch in the next free slot; returns the ticket."""
        cudart = _cudart()
        h2d, compute, d2h = (self._streams[k] for k in ("h2d", "compute", "d2h"))
        slot = self._slots[self._next_slot]
        if slot.busy:
            raise BackendError(f"{self.name}: two batches already in flight; collect one first")
        for name, arr in feeds.items():
            top = self._max_shape[name]
            if any(a > m for a, m in zip(arr.shape, top, strict=True)):
                raise BackendError(
                    f"{self.name}: input {name!r} of shape {arr.shape} exceeds the plan's profile {top}"
                    + (" (frames larger than the plan's max frame_hw: rebuild with a larger frame_hw)" if arr.ndim == 4 else "")
                )
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        ctx = slot.context
        for name, arr in feeds.items():
            buf = slot.buffers[name]
            host = buf.host_array(arr.shape, self._dtype[name])
            np.copyto(host, arr, casting="same_kind")
            ctx.set_input_shape(name, arr.shape)
            _check(
                cudart.cudaMemcpyAsync(
                    buf.device, buf.host, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, h2d
                ),
                "copy to device",
            )
        ev = slot.events
        _check(cudart.cudaEventRecord(ev["uploaded"], h2d), "cudaEventRecord")
        _check(cudart.cudaStreamWaitEvent(compute, ev["uploaded"], 0), "cudaStreamWaitEvent")
        if not ctx.execute_async_v3(int(compute)):
            raise BackendError(f"{self.name}: execute_async_v3 failed")
        _check(cudart.cudaEventRecord(ev["computed"], compute), "cudaEventRecord")
        _check(cudart.cudaStreamWaitEvent(d2h, ev["computed"], 0), "cudaStreamWaitEvent")
        outs = {}
        for name in self._names:
            if self._is_input[name]:
                continue
            shape = tuple(ctx.get_tensor_shape(name))
            buf = slot.buffers[name]
            host = buf.host_array(shape, self._dtype[name])
            _check(
                cudart.cudaMemcpyAsync(
                    buf.host, buf.device, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, d2h
                ),
                "copy to host",
            )
            outs[name] = host
        _check(cudart.cudaEventRecord(ev["downloaded"], d2h), "cudaEventRecord")
        slot.busy = True
        return slot, outs

    def collect(self, ticket) -> dict[str, np.ndarray]:
        slot, outs = ticket
        try:
            _check(_cudart().cudaEventSynchronize(slot.events["downloaded"]), "cudaEventSynchronize")
            return {k: v.copy() for k, v in outs.items()}  # the slot's pinned buffers get the next batch
        finally:
            slot.busy = False

    def close(self) -> None:
        cudart = _cudart()
        for slot in self._slots:
            for b in slot.buffers.values():
                b.free()
            for e in slot.events.values():
                cudart.cudaEventDestroy(e)
        self._slots.clear()
        for st in self._streams.values():
            cudart.cudaStreamDestroy(st)
        self._streams.clear()
        self._engine = None


class TensorRtEngine(Engine):
    """The tensorrt backend: a plan from the cache or the builder, run by a TensorRtRunner."""

    backend = "tensorrt"
    overlaps = True

    def __init__(
        self,
        model_path,
        *,
        precision: str = "fp32",
        threads: int = 0,
        cache=None,
        max_batch: int = 8,
        opt_batch: int = 4,
        workspace_mb: int = 1024,
        frame_hw=DEFAULT_FRAME_HW,
        prequantized: bool = False,
        calibration=None,
    ) -> None:
        super().__init__(model_path, precision=precision, threads=threads)
        self.cache = cache
        self.settings = BuildSettings(
            precision=precision,
            max_batch=max_batch,
            opt_batch=min(opt_batch, max_batch),
            workspace_mb=workspace_mb,
            frame_hw=tuple(tuple(x) for x in frame_hw),
        )
        self.max_batch_size = max_batch
        self.prequantized = prequantized  # int8: model_path already is the gated Q/DQ model (or its fused graph)
        if calibration is not None:
            log.info("TensorRT INT8 comes from the gated Q/DQ model; the calibration frames given are not used")
        self.run_path = self.model_path  # the ONNX the plan is built from
        self.cached: str | None = None
        self.build_info: dict = {}
        self.device = "cuda"
        self.runner: TensorRtRunner | None = None

    def load_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(
                "the tensorrt backend needs TensorRT 10 or 11 (pip install 'streamseg[tensorrt]' on a machine with an NVIDIA GPU)"
            ) from None
        if self.precision not in PRECISIONS:
            raise BackendError(f"the tensorrt backend builds fp32, fp16 or int8 plans, not {self.precision}")
        gpu = gpu_name()
        if gpu is None:
            raise BackendError("the tensorrt backend needs an NVIDIA GPU with a working driver; none found")
        if self.precision == "int8" and not self.prequantized:
            from streamseg.backends.cache import gated_int8

            self.run_path = gated_int8(self.cache, self.model_path, "onnxruntime")
        self.device = f"{gpu[0]} (sm {gpu[1]})"
        self.version = trt.__version__
        plan = self._plan(trt, gpu)
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(
                f"{self.model_path.name}: TensorRT could not deserialize the plan (built for another version or GPU?)"
            )
        self.runner = TensorRtRunner(trt, engine, self.model_path.name)
        self.inputs, self.outputs = dict(self.runner.inputs), dict(self.runner.outputs)

    def _build(self, trt) -> bytes:
        timing = self.cache.root / "tensorrt.timing-cache" if self.cache is not None else None
        workdir = self.cache.root / "fp16" if self.cache is not None else None
        plan, _, self.build_info = build_plan(trt, self.run_path, self.settings, timing_cache=timing, workdir=workdir)
        return plan

    def _plan(self, trt, gpu) -> bytes:
        if self.cache is None:
            log.info("building TensorRT plan for %s (%s) - not cached", self.model_path.name, self.precision)
            return self._build(trt)
        from streamseg.backends.cache import CacheKey, sha256_file

        key = CacheKey(
            sha256_file(self.run_path),
            "tensorrt",
            trt.__version__,
            f"{gpu[0]} sm{gpu[1]}",
            self.precision,
            self.settings.profile_key,
        )
        path = self.cache.lookup(key)  # refuses a plan whose bytes changed
        if path is not None:
            self.cached = "hit"
            self.build_info = {"strongly_typed": strongly_typed_flag(trt) is not None}  # as it was built here
            return path.read_bytes()
        log.info(
            "building TensorRT plan for %s (%s, %s); this takes a while and is cached in %s",
            self.model_path.name,
            self.precision,
            self.device,
            self.cache.root,
        )
        plan = self._build(trt)
        stored = self.cache.store(key, plan, ".plan", {"model": str(self.run_path), **self.build_info})
        log.info("cached %s", stored)
        self.cached = "built"
        return plan

    def fits_one_run(self, n: int) -> bool:
        return n <= self.max_batch_size if self.max_batch is None else n == self.max_batch

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        if self.max_batch is None and n > self.max_batch_size:
            # more frames than the profile allows: run in profile-sized chunks
            parts = [
                self.infer_impl({k: v[i : i + self.max_batch_size] for k, v in feeds.items()})
                for i in range(0, n, self.max_batch_size)
            ]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return self.runner.collect(self.runner.submit(feeds))

    def submit_impl(self, feeds: dict[str, np.ndarray]):
        return self.runner.submit(feeds)

    def collect_impl(self, ticket) -> dict[str, np.ndarray]:
        return self.runner.collect(ticket)

    def close_impl(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "version": getattr(self, "version", None),
            "cache": self.cached,
            "max_batch": self.max_batch_size,
            "strongly_typed": self.build_info.get("strongly_typed"),
        }
