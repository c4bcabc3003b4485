"""TensorRT backend (NVIDIA GPUs): plans built from the card's ONNX file, cached, run with the
TensorRT 10 named-tensor API on a CUDA stream with pinned host buffers.

NEVER RUN ON A GPU: this machine and CI have none, and TensorRT cannot be installed here.
The code follows the TensorRT 10 Python API (Builder / OnnxParser / IBuilderConfig /
IOptimizationProfile / ICudaEngine / IExecutionContext: set_input_shape,
set_tensor_address, execute_async_v3) and cuda-python's runtime bindings
(cudaMalloc, cudaMallocHost, cudaMemcpyAsync, cudaStream*). Its logic (shapes, bindings,
stream use, cache keys, builder flags) is tested against a test double of both modules
(tests/backends/fake_tensorrt.py); tests/gpu/ holds the real-GPU tests, skipped here.

- Build: explicit-batch network from ONNX; FP16 and INT8 builder flags (INT8 with an
  entropy calibrator fed by caller-given batches, its cache saved beside the plan); one
  optimization profile over the batch axis (min 1, opt, max); a timing cache reused
  across builds. The plan goes to the engine cache (key: model sha256 + TensorRT version
  + GPU name and compute capability + precision + profile) with its sha256 in the manifest;
  a plan that does not match is refused, never deserialized.
- Run: two slots, each an execution context with pinned host and device buffers sized
  for the profile's max batch, and three streams: uploads, compute, downloads. submit()
  copies a batch into its slot's pinned buffers and only enqueues: upload (h2d stream),
  event, compute waits on it and runs execute_async_v3, event, download (d2h stream),
  event. collect() waits on that last event. The pipeline submits batch n+1 before it
  collects batch n, so n+1's upload runs while n computes (`overlaps = True`).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import numpy as np

from streamseg.backends.base import Engine, TensorSpec
from streamseg.errors import BackendError, ModelError

log = logging.getLogger("streamseg")

_PRECISIONS = ("fp32", "fp16", "int8")


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


class TensorRtEngine(Engine):
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
        calibration=None,
    ) -> None:
        super().__init__(model_path, precision=precision, threads=threads)
        self.cache = cache
        self.max_batch_size = max_batch
        self.opt_batch = min(opt_batch, max_batch)
        self.workspace_mb = workspace_mb
        self.calibration = calibration  # iterable of {input name: N x ... float32} for INT8
        self.cached: str | None = None
        self.device = "cuda"
        self._slots: list[_Slot] = []
        self._streams: dict[str, object] = {}
        self._next_slot = 0

    # build --------------------------------------------------------------------------
    def _profile(self, network) -> list[tuple[str, tuple, tuple, tuple]]:
        """(name, min, opt, max) shapes: the batch axis spans 1..max, other axes as the model says."""
        shapes = []
        for i in range(network.num_inputs):
            t = network.get_input(i)
            dims = tuple(t.shape)
            if any(d < 0 for d in dims[1:]):
                raise ModelError(
                    f"{self.model_path.name}: input {t.name} has dynamic dimensions other than the batch: {dims}"
                )
            if dims[0] >= 0:  # a fixed batch: the plan takes exactly that
                shapes.append((t.name, dims, dims, dims))
            else:
                rest = dims[1:]
                shapes.append((t.name, (1, *rest), (self.opt_batch, *rest), (self.max_batch_size, *rest)))
        return shapes

    def build_plan(self, trt, profile_shapes=None) -> tuple[bytes, list]:
        """Parse the ONNX file and build a serialized plan (bytes), with the profile used."""
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch always
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(self.model_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"{self.model_path.name}: TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if self.precision == "int8":
            if self.calibration is None:
                raise BackendError(
                    "int8 needs calibration frames (streamseg engines build CARD --precision int8 --calib URI)"
                )
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = make_calibrator(trt, self.calibration, self._calib_cache_path())
        shapes = profile_shapes or self._profile(network)
        profile = builder.create_optimization_profile()
        for name, mn, opt, mx in shapes:
            profile.set_shape(name, mn, opt, mx)
        config.add_optimization_profile(profile)
        timing_path = self._timing_cache_path()
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path and timing_path.is_file() else b"")
        config.set_timing_cache(timing, False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"{self.model_path.name}: TensorRT could not build a plan (see its log above)")
        if timing_path is not None:
            timing_path.parent.mkdir(parents=True, exist_ok=True)
            timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        return bytes(plan), shapes

    def _timing_cache_path(self) -> Path | None:
        return self.cache.root / "tensorrt.timing-cache" if self.cache is not None else None

    def _calib_cache_path(self) -> Path | None:
        if self.cache is None:
            return None
        from streamseg.backends.cache import sha256_file

        # keyed by the model's bytes: a changed model never reuses another's calibration
        return self.cache.root / f"{self.model_path.stem}-{sha256_file(self.model_path)[:16]}.int8-calibration"

    # load ----------------------------------------------------------------------------
    def load_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(
                "the tensorrt backend needs TensorRT 10 (pip install 'streamseg[tensorrt]' on a machine with an NVIDIA GPU)"
            ) from None
        if self.precision not in _PRECISIONS:
            raise BackendError(f"the tensorrt backend builds fp32, fp16 or int8 plans, not {self.precision}")
        gpu = gpu_name()
        if gpu is None:
            raise BackendError("the tensorrt backend needs an NVIDIA GPU with a working driver; none found")
        self.device = f"{gpu[0]} (sm {gpu[1]})"
        self.version = trt.__version__
        plan = self._plan(trt, gpu)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise BackendError(
                f"{self.model_path.name}: TensorRT could not deserialize the plan (built for another version or GPU?)"
            )
        cudart = _cudart()
        for role in ("h2d", "compute", "d2h"):
            self._streams[role] = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        for _ in range(2):
            events = {
                k: _check(cudart.cudaEventCreate(), "cudaEventCreate") for k in ("uploaded", "computed", "downloaded")
            }
            self._slots.append(_Slot(self._engine.create_execution_context(), events))
        self._bind(trt)

    def _plan(self, trt, gpu) -> bytes:
        if self.cache is None:
            log.info("building TensorRT plan for %s (%s) - not cached", self.model_path.name, self.precision)
            return self.build_plan(trt)[0]
        from streamseg.backends.cache import CacheKey, sha256_file

        key = CacheKey(
            sha256_file(self.model_path),
            "tensorrt",
            trt.__version__,
            f"{gpu[0]} sm{gpu[1]}",
            self.precision,
            (("max", str(self.max_batch_size)), ("min", "1"), ("opt", str(self.opt_batch))),
        )
        path = self.cache.lookup(key)  # refuses a plan whose bytes changed
        if path is not None:
            self.cached = "hit"
            return path.read_bytes()
        log.info(
            "building TensorRT plan for %s (%s, %s); this takes a while and is cached",
            self.model_path.name,
            self.precision,
            self.device,
        )
        plan, _ = self.build_plan(trt)
        stored = self.cache.store(key, plan, ".plan", {"model": str(self.model_path)})
        log.info("cached %s", stored)
        self.cached = "built"
        return plan

    def _bind(self, trt) -> None:
        eng = self._engine
        self._names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._is_input = {n: eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in self._names}
        self._dtype = {n: np.dtype(trt.nptype(eng.get_tensor_dtype(n))) for n in self._names}
        for n in self._names:
            shape = tuple(eng.get_tensor_shape(n))
            spec_shape = tuple(None if d < 0 else d for d in shape)
            spec = TensorSpec(n, spec_shape, self._dtype[n])
            (self.inputs if self._is_input[n] else self.outputs)[n] = spec
        # each slot: buffers for the largest batch the profile allows, bound to its context
        for slot in self._slots:
            ctx = slot.context
            for n in self._names:
                if self._is_input[n]:
                    ctx.set_input_shape(n, tuple(eng.get_tensor_profile_shape(n, 0)[2]))
            for n in self._names:
                shape = tuple(ctx.get_tensor_shape(n))
                slot.buffers[n] = _Buffer(int(np.prod(shape)) * self._dtype[n].itemsize)
                ctx.set_tensor_address(n, int(slot.buffers[n].device))

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
        return self.collect_impl(self.submit_impl(feeds))

    def submit_impl(self, feeds: dict[str, np.ndarray]):
        """Enqueue upload, run and download of one batch in the next free slot; returns the ticket."""
        cudart = _cudart()
        h2d, compute, d2h = (self._streams[k] for k in ("h2d", "compute", "d2h"))
        slot = self._slots[self._next_slot]
        if slot.busy:
            raise BackendError(f"{self.model_path.name}: two batches already in flight; collect one first")
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
            raise BackendError(f"{self.model_path.name}: execute_async_v3 failed")
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

    def collect_impl(self, ticket) -> dict[str, np.ndarray]:
        slot, outs = ticket
        try:
            _check(_cudart().cudaEventSynchronize(slot.events["downloaded"]), "cudaEventSynchronize")
            return {k: v.copy() for k, v in outs.items()}  # the slot's pinned buffers get the next batch
        finally:
            slot.busy = False

    def close_impl(self) -> None:
        cudart = _cudart()
        for slot in self._slots:
            for b in slot.buffers.values():
                b.free()
            for e in slot.events.values():
                cudart.cudaEventDestroy(e)
        self._slots.clear()
        for s in self._streams.values():
            cudart.cudaStreamDestroy(s)
        self._streams.clear()
        self._engine = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "version": getattr(self, "version", None),
            "cache": self.cached,
            "max_batch": self.max_batch_size,
        }


def make_calibrator(trt, batches, cache_path: Path | None):
    """An IInt8EntropyCalibrator2 fed by an iterable of {input name: N x ... float32} batches."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._it = iter(batches)
            self._buffers: dict[str, _Buffer] = {}
            self._batch_size = 1

        def get_batch_size(self) -> int:
            return self._batch_size

        def get_batch(self, names):
            try:
                batch = next(self._it)
            except StopIteration:
                return None
            cudart = _cudart()
            ptrs = []
            for name in names:
                arr = np.ascontiguousarray(batch[name], np.float32)
                self._batch_size = arr.shape[0]
                buf = self._buffers.get(name)
                if buf is None or buf.nbytes < arr.nbytes:
                    buf = self._buffers[name] = _Buffer(arr.nbytes)
                np.copyto(buf.host_array(arr.shape, np.float32), arr)
                _check(
                    cudart.cudaMemcpy(buf.device, buf.host, arr.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
                    "calibration copy",
                )
                ptrs.append(int(buf.device))
            return ptrs

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_path is not None:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_bytes(bytes(cache))

    return _Calibrator()
