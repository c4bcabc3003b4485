"""CUDA device memory, pinned host buffers, streams and events for the GPU backends (the TensorRT
runner; a PyTorch CUDA backend can share it), through cuda-python's runtime bindings
(`cuda.bindings.runtime`), imported lazily: importing this module needs no GPU and no cuda-python.

A `Device` owns everything it makes and frees it in one order (`close`):

1. synchronize every stream it made, checking each result, so no copy or kernel still uses a
   buffer (a batch may be in flight when a run stops or fails);
2. free the device buffers, then the pinned host buffers, checking each result; when a stream
   could not be synchronized (the device reported an error) the buffers are left allocated,
   said so, since freeing memory a kernel may still use is undefined behaviour and a process
   whose device failed has to exit anyway;
3. destroy the events, then the streams (CUDA releases them once their pending work is done).

Every step is tried even after one failed; the failures are raised together at the end, as one
BackendError. `close` twice is a no-op.

Events are made with `cudaEventBlockingSync | cudaEventDisableTiming`: with CUDA's default
scheduling a thread waiting in `cudaEventSynchronize` spins a whole core (CUDA Runtime API,
cudaEventCreateWithFlags: "cudaEventBlockingSync: Specifies that event should use blocking
synchronization. A host thread that uses cudaEventSynchronize() to wait on an event created with
this flag will block until the event actually completes"), taken from the CPU-budgeted decode and
encode stages; timing is off since no event here is timed (it also makes them cheaper). Streams
are made non-blocking (`cudaStreamNonBlocking`): no implicit ordering with the legacy default
stream another library in the process may use.

`Device.wait(event)` records the wait's wall and thread-CPU time (`time.thread_time`, the clock the
pipeline's per-stage `cpu_ms_per_frame` uses: the wait runs on the stage's own thread, so it is in
that stage's CPU time and, here, also apart in `waits`).

NEVER RUN ON A GPU here (no GPU, no driver): tested against tests/backends/fake_tensorrt.py's
double of these bindings, and every name used is checked against the real cuda-python
(tests/backends/test_device.py).
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass

import numpy as np

from streamseg.errors import BackendError

log = logging.getLogger("streamseg")

_thread_time = time.thread_time  # the stage CPU clock (tests replace it)


def cudart():
    """cuda-python's runtime module, or one clear error naming the extra that installs it."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6 layout
        except ImportError:
            raise BackendError("the GPU backends need cuda-python: pip install 'streamseg[tensorrt]'") from None
    return runtime


def check(result, what: str):
    """cuda-python returns (err, value...): raise on an error, return the value(s)."""
    rt = cudart()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise BackendError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


def gpu_name() -> tuple[str, str] | None:
    """(GPU name, compute capability) of device 0, or None without a usable GPU."""
    try:
        rt = cudart()
    except BackendError:
        return None
    err, count = rt.cudaGetDeviceCount()
    if err != rt.cudaError_t.cudaSuccess or not count:
        return None
    err, prop = rt.cudaGetDeviceProperties(0)
    if err != rt.cudaError_t.cudaSuccess:
        return None
    name = prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return name, f"{prop.major}.{prop.minor}"


class PinnedBuffer:
    """Page-locked host memory (cudaMallocHost): what async copies need to overlap."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = check(cudart().cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes})")

    def array(self, shape, dtype) -> np.ndarray:
        """A numpy view of the pinned memory (no copy)."""
        count = int(np.prod(shape))
        n = count * np.dtype(dtype).itemsize
        if n > self.nbytes:
            raise BackendError(f"batch needs {n} bytes, the pinned buffer holds {self.nbytes}")
        raw = (ctypes.c_char * max(n, 1)).from_address(int(self.ptr))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class DeviceBuffer:
    """Device memory (cudaMalloc)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = check(cudart().cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})")

    def __int__(self) -> int:
        return int(self.ptr)


class Stream:
    def __init__(self, name: str) -> None:
        rt = cudart()
        self.name = name
        self.handle = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    def __int__(self) -> int:
        return int(self.handle)


class Event:
    def __init__(self, name: str) -> None:
        rt = cudart()
        self.name = name
        flags = rt.cudaEventBlockingSync | rt.cudaEventDisableTiming
        self.handle = check(rt.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")

    def record(self, stream: Stream) -> None:
        check(cudart().cudaEventRecord(self.handle, stream.handle), f"cudaEventRecord({self.name})")

    def block(self, stream: Stream) -> None:
        """Make `stream`'s later work wait for this event (on the device: the host goes on)."""
        check(cudart().cudaStreamWaitEvent(stream.handle, self.handle, 0), f"cudaStreamWaitEvent({self.name})")


@dataclass
class Waits:
    """The host's waits for device work: how many, their wall time and the thread CPU they took."""

    count: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def describe(self) -> dict:
        n = max(1, self.count)
        return {
            "waits": self.count,
            "wait_ms_mean": round(self.wall_s * 1000 / n, 3),
            "wait_cpu_ms_mean": round(self.cpu_s * 1000 / n, 3),
        }


class Device:
    """The streams, events and buffers of one GPU user (an engine), freed together by `close`."""

    def __init__(self, name: str = "device") -> None:
        self.name = name
        self.streams: list[Stream] = []
        self.events: list[Event] = []
        self.device_buffers: list[DeviceBuffer] = []
        self.pinned_buffers: list[PinnedBuffer] = []
        self.waits = Waits()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # making ---------------------------------------------------------------------------------
    def stream(self, name: str) -> Stream:
        s = Stream(name)
        self.streams.append(s)
        return s

    def event(self, name: str) -> Event:
        e = Event(name)
        self.events.append(e)
        return e

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        b = DeviceBuffer(nbytes)
        self.device_buffers.append(b)
        return b

    def pinned_buffer(self, nbytes: int) -> PinnedBuffer:
        b = PinnedBuffer(nbytes)
        self.pinned_buffers.append(b)
        return b

    # using ----------------------------------------------------------------------------------
    def upload(self, dst: DeviceBuffer, src: PinnedBuffer, nbytes: int, stream: Stream) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.handle), "copy to device")

    def download(self, dst: PinnedBuffer, src: DeviceBuffer, nbytes: int, stream: Stream) -> None:
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, stream.handle), "copy to host")

    def wait(self, event: Event) -> None:
        """Block this thread (no spinning: see the module's note) until `event` completed."""
        t0, c0 = time.perf_counter(), _thread_time()
        try:
            check(cudart().cudaEventSynchronize(event.handle), f"cudaEventSynchronize({event.name})")
        finally:
            self.waits.count += 1
            self.waits.wall_s += time.perf_counter() - t0
            self.waits.cpu_s += _thread_time() - c0

    # freeing --------------------------------------------------------------------------------
    def synchronize(self) -> bool:
        """Wait for every stream's work (checked); False when one could not be synchronized. The
        runner calls it before it lets go of what the work uses (execution contexts, the engine)."""
        if not self.streams:
            return True
        rt = cudart()
        ok = True
        for s in self.streams:
            try:
                check(rt.cudaStreamSynchronize(s.handle), "cudaStreamSynchronize")
            except BackendError as e:
                log.error("synchronizing a stream: %s", e)
                ok = False
        return ok

    def close(self) -> None:
        """Synchronize every stream, then free the buffers and destroy the events and streams (see
        the module's note for the order and why); raises one BackendError naming what failed."""
        rt = cudart() if self.streams or self.events or self.device_buffers or self.pinned_buffers else None
        if rt is None:
            return
        failed: list[str] = []

        def attempt(call, *args) -> bool:
            try:
                check(call(*args), call.__name__)
                return True
            except BackendError as e:
                failed.append(str(e).removeprefix("CUDA "))
                return False

        synced = all([attempt(rt.cudaStreamSynchronize, s.handle) for s in self.streams])
        if synced:
            for b in self.device_buffers:
                attempt(rt.cudaFree, b.ptr)
            for b in self.pinned_buffers:
                attempt(rt.cudaFreeHost, b.ptr)
        elif self.device_buffers or self.pinned_buffers:
            log.error(
                "%s: a stream could not be synchronized; %d device and %d pinned buffers are left allocated "
                "(work may still use them)",
                self.name,
                len(self.device_buffers),
                len(self.pinned_buffers),
            )
        for e in self.events:
            attempt(rt.cudaEventDestroy, e.handle)
        for s in self.streams:
            attempt(rt.cudaStreamDestroy, s.handle)
        self.streams, self.events, self.device_buffers, self.pinned_buffers = [], [], [], []
        if failed:
            more = f" (and {len(failed) - 1} more: {'; '.join(failed[1:])})" if len(failed) > 1 else ""
            raise BackendError(f"{self.name}: closing the CUDA resources: {failed[0]}{more}")


# The same small interface on PyTorch's own CUDA machinery, for the torch backend (issue 26): its
# tensors must live in torch's caching allocator and run on torch streams, so it cannot take
# cuda-python's raw pointers. On a CPU device (tests, `gpu-check --dry-run`) the same calls are
# plain copies, so the staging code runs everywhere.
class TorchBuffer:
    """`nbytes` of pinned host memory (or device memory), viewed as arrays or tensors of any shape."""

    def __init__(self, nbytes: int, device, pinned: bool) -> None:
        import torch

        self.nbytes = int(nbytes)
        self.t = torch.empty(self.nbytes, dtype=torch.uint8, device=device, pin_memory=pinned)

    def _need(self, n: int) -> None:
        if n > self.nbytes:
            raise BackendError(f"batch needs {n} bytes, the buffer holds {self.nbytes}")

    def tensor(self, shape, dtype):
        """A tensor view (no copy); `dtype` a torch dtype."""
        count = int(np.prod(shape))
        n = count * dtype.itemsize
        self._need(n)
        return self.t[:n].view(dtype).view(tuple(shape))

    def array(self, shape, dtype) -> np.ndarray:
        """A numpy view of host memory (no copy)."""
        count = int(np.prod(shape))
        n = count * np.dtype(dtype).itemsize
        self._need(n)
        return self.t[:n].numpy().view(dtype).reshape(shape)


class TorchDevice:
    """Device's interface on torch: streams, blocking events, pinned and device buffers, copies on a
    stream, counted waits; `close` synchronizes the streams before it lets go of any buffer."""

    def __init__(self, device="cuda", name: str = "torch") -> None:
        import torch

        self.name = name
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.streams: list = []
        self.buffers: list[TorchBuffer] = []
        self.waits = Waits()

    def __enter__(self) -> TorchDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stream(self, name: str):
        import torch

        s = torch.cuda.Stream(self.device) if self.cuda else None
        self.streams.append(s)
        return s

    def event(self, name: str):
        import torch

        # blocking: a waiting thread sleeps instead of spinning a core (see the module's note)
        return torch.cuda.Event(blocking=True) if self.cuda else None

    def device_buffer(self, nbytes: int) -> TorchBuffer:
        b = TorchBuffer(nbytes, self.device, pinned=False)
        self.buffers.append(b)
        return b

    def pinned_buffer(self, nbytes: int) -> TorchBuffer:
        b = TorchBuffer(nbytes, "cpu", pinned=self.cuda)
        self.buffers.append(b)
        return b

    def _on(self, stream):
        import contextlib

        import torch

        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def upload(self, dst: TorchBuffer, src: TorchBuffer, nbytes: int, stream) -> None:
        with self._on(stream):
            dst.t[:nbytes].copy_(src.t[:nbytes], non_blocking=True)

    def download(self, dst: TorchBuffer, src: TorchBuffer, nbytes: int, stream) -> None:
        with self._on(stream):
            dst.t[:nbytes].copy_(src.t[:nbytes], non_blocking=True)

    def to_host(self, dst: TorchBuffer, tensor, stream) -> None:
        """A device tensor into pinned memory (its bytes from the start of `dst`)."""
        with self._on(stream):
            dst.tensor(tensor.shape, tensor.dtype).copy_(tensor, non_blocking=True)

    def record(self, event, stream) -> None:
        if event is not None:
            event.record(stream)

    def wait(self, event) -> None:
        """Block this thread until `event` completed (a CPU device has nothing in flight)."""
        t0, c0 = time.perf_counter(), _thread_time()
        try:
            if event is not None:
                event.synchronize()
        finally:
            self.waits.count += 1
            self.waits.wall_s += time.perf_counter() - t0
            self.waits.cpu_s += _thread_time() - c0

    def close(self) -> None:
        for s in self.streams:
            if s is not None:
                s.synchronize()
        self.streams, self.buffers = [], []
