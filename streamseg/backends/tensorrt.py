"""TensorRT runner (NVIDIA GPUs): runs a deserialized plan with the named-tensor API on CUDA
streams with pinned host buffers. Plans come from the engine cache or from the builder
(tensorrt_build.py); `TensorRtRunner` runs whatever ICudaEngine it is given, as Polygraphy's
TrtRunner does. TensorRT 10 and 11 (the calls used exist in both: tests/backends/test_trt_api.py).

NEVER RUN ON A GPU: this machine and CI have none, and TensorRT cannot be installed here.
The code follows the TensorRT 10/11 Python API (Runtime / ICudaEngine / IExecutionContext:
set_input_shape, set_tensor_address, execute_async_v3) and, for memory, streams and events,
streamseg/backends/device.py (cuda-python's runtime bindings). Its logic (shapes, bindings,
stream use, cache keys, strongly typed builds) is tested against a test double of both modules
(tests/backends/fake_tensorrt.py); tests/gpu/ holds the real-GPU tests, skipped here.

- Plans are cached (key: model sha256 + TensorRT version + GPU name and compute capability +
  precision + profile) with their sha256 in the manifest; a plan that does not match is
  refused, never deserialized.
- Run: two slots, each an execution context with pinned host and device buffers sized
  for the profile's max batch, and three streams: uploads, compute, downloads. submit()
  copies a batch into its slot's pinned buffers and only enqueues: upload (h2d stream),
  event, compute waits on it and runs execute_async_v3, event, download (d2h stream),
  event. collect() waits on that last event, blocking (device.py: events made with
  cudaEventBlockingSync, so the wait takes no core). The pipeline submits batch n+1 before it
  collects batch n, so n+1's upload runs while n computes (`overlaps = True`). With the fused
  graph the upload is the uint8 frames and the download the compact results.
- Every set_input_shape / set_tensor_address result is checked, and an input's shape is checked
  against profile 0's minimum and maximum before it is set, each error naming the tensor and the
  profile (as Polygraphy's TrtRunner: "For input: {name}, failed to set shape to: ..."). An output
  whose shape stays -1 at the profile's maximum needs an output allocator: one clear error.
- close(): the streams synchronized, then the buffers freed, the events and streams destroyed,
  every result checked (device.Device.close): safe with a batch in flight or after an error.
"""

from __future__ import annotations

import logging

import numpy as np

from streamseg.backends import device as cuda
from streamseg.backends.base import Engine, TensorSpec
from streamseg.backends.device import gpu_name  # noqa: F401 - re-exported: backends.resolve_backend, gpu-check
from streamseg.backends.tensorrt_build import (
    DEFAULT_FRAME_HW,
    PRECISIONS,
    BuildSettings,
    build_plan,
    is_strongly_typed,
    timing_cache_name,
    trt_logger,
)
from streamseg.errors import BackendError

log = logging.getLogger("streamseg")


class _Slot:
    """One batch in flight: an execution context, its pinned and device buffers, and the events
    that order its work (uploaded, computed, downloaded)."""

    def __init__(self, context, events: dict[str, cuda.Event]) -> None:
        self.context = context
        self.pinned: dict[str, cuda.PinnedBuffer] = {}
        self.device: dict[str, cuda.DeviceBuffer] = {}
        self.events = events
        self.busy = False


class TensorRtRunner:
    """Runs one deserialized ICudaEngine: I/O specs, two slots of bound buffers, three streams.
    Its streams, events and buffers belong to a `device.Device`, freed in order by `close`."""

    def __init__(self, trt, engine, name: str = "plan") -> None:
        self.name = name
        self._engine = engine
        self._slots: list[_Slot] = []
        self._next_slot = 0
        self.device = cuda.Device(name)
        try:
            self._streams = {role: self.device.stream(role) for role in ("h2d", "compute", "d2h")}
            for i in range(2):
                events = {k: self.device.event(f"slot{i}.{k}") for k in ("uploaded", "computed", "downloaded")}
                context = engine.create_execution_context()
                if context is None:
                    raise BackendError(f"{name}: TensorRT could not create an execution context (see its log above)")
                self._slots.append(_Slot(context, events))
            self.inputs: dict[str, TensorSpec] = {}
            self.outputs: dict[str, TensorSpec] = {}
            self._bind(trt)
        except BaseException:
            self.close()
            raise

    def _bind(self, trt) -> None:
        eng = self._engine
        self._names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._is_input = {n: eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in self._names}
        self._dtype = {n: np.dtype(trt.nptype(eng.get_tensor_dtype(n))) for n in self._names}
        # (min, max) shapes of profile 0, the one profile the builder makes
        self._profile = {}
        for n in self._names:
            shape = tuple(eng.get_tensor_shape(n))
            spec = TensorSpec(n, tuple(None if d < 0 else d for d in shape), self._dtype[n])
            (self.inputs if self._is_input[n] else self.outputs)[n] = spec
            if self._is_input[n]:
                lo, _, hi = eng.get_tensor_profile_shape(n, 0)
                self._profile[n] = (tuple(lo), tuple(hi))
        # each slot: buffers for the largest shapes the profile allows, bound to its context
        for slot in self._slots:
            ctx = slot.context
            for n in self._names:
                if self._is_input[n]:
                    self._set_shape(ctx, n, self._profile[n][1])
            for n in self._names:
                shape = tuple(ctx.get_tensor_shape(n))
                if any(d < 0 for d in shape):
                    raise BackendError(
                        f"{self.name}: output {n!r} has a data-dependent shape {shape} even at the profile's maximum "
                        "input shapes: it needs an output allocator (IOutputAllocator), which this runner does not have; "
                        "export the model with fixed-size outputs (the fused graph has them)"
                    )
                nbytes = int(np.prod(shape)) * self._dtype[n].itemsize
                slot.pinned[n] = self.device.pinned_buffer(nbytes)
                slot.device[n] = self.device.device_buffer(nbytes)
                if not ctx.set_tensor_address(n, int(slot.device[n])):
                    raise BackendError(f"{self.name}: TensorRT refused the device address of tensor {n!r}")

    def _set_shape(self, ctx, name: str, shape: tuple) -> None:
        if not ctx.set_input_shape(name, tuple(shape)):
            lo, hi = self._profile[name]
            raise BackendError(
                f"{self.name}: TensorRT refused shape {tuple(shape)} for input {name!r} (profile 0: {lo} to {hi})"
            )

    @property
    def max_batch(self) -> int:
        return min(hi[0] for _, hi in self._profile.values())

    def _check_profile(self, name: str, shape: tuple) -> None:
        """The input's shape within profile 0's min and max, or one error naming both (as
        Polygraphy's runner checks before it sets a shape)."""
        if name not in self._profile:
            raise BackendError(f"{self.name}: the plan has no input {name!r} (inputs: {sorted(self._profile)})")
        lo, hi = self._profile[name]
        if len(shape) != len(lo):
            raise BackendError(f"{self.name}: input {name!r} of shape {shape} has rank {len(shape)}, the plan's {len(lo)}")
        if any(a > m for a, m in zip(shape, hi, strict=True)):
            raise BackendError(
                f"{self.name}: input {name!r} of shape {shape} exceeds the plan's profile 0 maximum {hi}"
                + (" (frames larger than the plan's max frame_hw: rebuild with a larger frame_hw)" if len(shape) == 4 else "")
            )
        if any(a < m for a, m in zip(shape, lo, strict=True)):
            raise BackendError(f"{self.name}: input {name!r} of shape {shape} is below the plan's profile 0 minimum {lo}")

    def submit(self, feeds: dict[str, np.ndarray]):
        """Enqueue upload, run and download of one batch in the next free slot; returns the ticket."""
        h2d, compute, d2h = (self._streams[k] for k in ("h2d", "compute", "d2h"))
        slot = self._slots[self._next_slot]
        if slot.busy:
            raise BackendError(f"{self.name}: two batches already in flight; collect one first")
        for name, arr in feeds.items():
            self._check_profile(name, tuple(arr.shape))
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        ctx = slot.context
        for name, arr in feeds.items():
            host = slot.pinned[name].array(arr.shape, self._dtype[name])
            np.copyto(host, arr, casting="same_kind")
            self._set_shape(ctx, name, arr.shape)
            self.device.upload(slot.device[name], slot.pinned[name], host.nbytes, h2d)
        ev = slot.events
        ev["uploaded"].record(h2d)
        ev["uploaded"].block(compute)
        if not ctx.execute_async_v3(int(compute)):
            raise BackendError(f"{self.name}: execute_async_v3 failed (see TensorRT's log above)")
        ev["computed"].record(compute)
        ev["computed"].block(d2h)
        outs = {}
        for name in self._names:
            if self._is_input[name]:
                continue
            shape = tuple(ctx.get_tensor_shape(name))
            host = slot.pinned[name].array(shape, self._dtype[name])
            self.device.download(slot.pinned[name], slot.device[name], host.nbytes, d2h)
            outs[name] = host
        ev["downloaded"].record(d2h)
        slot.busy = True
        return slot, outs

    def collect(self, ticket) -> dict[str, np.ndarray]:
        """Wait (blocking, not spinning) for the ticket's download; its outputs, copied out of the
        slot's pinned buffers, which the next batch reuses."""
        slot, outs = ticket
        try:
            self.device.wait(slot.events["downloaded"])
            return {k: v.copy() for k, v in outs.items()}
        finally:
            slot.busy = False

    def close(self) -> None:
        """Synchronize the streams, free the buffers, destroy events and streams (device.Device.close
        has the order); a batch in flight is waited for, not freed under the device."""
        self._slots.clear()
        self._engine = None
        self.device.close()


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
        workspace_mb: int | None = None,
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
        self.gpu = gpu
        plan = self._plan(trt, gpu)
        engine = trt.Runtime(trt_logger(trt)).deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(
                f"{self.model_path.name}: TensorRT could not deserialize the plan (built for another version or GPU?)"
            )
        self.runner = TensorRtRunner(trt, engine, self.model_path.name)
        self.inputs, self.outputs = dict(self.runner.inputs), dict(self.runner.outputs)

    def _build(self, trt) -> bytes:
        # one timing cache per GPU model and TensorRT version: another's would be refused anyway
        name = timing_cache_name(trt.__version__, self.gpu)
        timing = self.cache.root / name if self.cache is not None else None
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
            self.build_info = {"strongly_typed": is_strongly_typed(trt)}  # as it was built here
            return path.read_bytes()
        log.info(
            "building TensorRT plan for %s (%s, %s); this takes a while and is cached",
            self.model_path.name,
            self.precision,
            self.device,
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
        waits = self.runner.device.waits.describe() if self.runner is not None else {}
        return {
            **super().describe(),
            **waits,
            "version": getattr(self, "version", None),
            "cache": self.cached,
            "max_batch": self.max_batch_size,
            "strongly_typed": self.build_info.get("strongly_typed"),
        }
