"""Test doubles of `tensorrt` (the 10.x and the 11.x API surface) and cuda-python's runtime bindings.

`install(monkeypatch, api=10 | 11)` models one release line: 11 has no BuilderFlag.FP16/INT8,
no EXPLICIT_BATCH and no INT8 calibrator. Every name the double offers exists in the real
bindings of the version it models (tests/backends/test_trt_api.py checks it against the
snapshots in tests/backends/tensorrt_names/).

They check what a real GPU run depends on - builder flags and profiles, tensor names,
shapes within the profile, every tensor bound to device memory big enough for it,
copies in the right direction on the engine's stream - and they compute real outputs:
a "plan" names its ONNX file, and execute_async_v3 runs it with ONNX Runtime on the
bytes found at the bound device addresses. Host memory is real (pinned buffers are
numpy views over it); device memory is a dict of bytearrays.
"""

from __future__ import annotations

import base64
import ctypes
import enum
import itertools
import json
import types

import numpy as np
import onnx
import onnxruntime as ort

__version__ = "10.16.1.11"
API = 10


# cuda-python runtime --------------------------------------------------------------------
class cudaError_t(enum.IntEnum):  # noqa: N801 - the real names and values
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorIllegalAddress = 700


# flag values as in cuda.bindings.runtime (tests/backends/test_device.py compares them)
cudaStreamNonBlocking = 1  # noqa: N816
cudaEventDefault = 0  # noqa: N816
cudaEventBlockingSync = 1  # noqa: N816
cudaEventDisableTiming = 2  # noqa: N816


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class _Stream:
    _ids = itertools.count(0x5000)

    def __init__(self) -> None:
        self.handle = next(self._ids)

    def __int__(self) -> int:
        return self.handle


class _Event:
    _ids = itertools.count(0xE000)

    def __init__(self, flags: int = 0) -> None:
        self.handle = next(self._ids)
        self.flags = flags


class FakeCuda:
    """The `cuda.bindings.runtime` module: state and calls recorded for the tests.

    Work runs at once when it is enqueued, but `log` keeps the order of every call - copies,
    event records, waits, executions, synchronizations - so tests can check that the code
    orders its streams as a real GPU needs: a run waits on an event recorded after its
    inputs were uploaded, and the next batch is uploaded before this one is waited for."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamNonBlocking = cudaStreamNonBlocking
    cudaEventDefault = cudaEventDefault
    cudaEventBlockingSync = cudaEventBlockingSync
    cudaEventDisableTiming = cudaEventDisableTiming

    def __init__(self, gpus: int = 1, name: bytes = b"Fake RTX 4090", cc=(8, 9)) -> None:
        self.gpus, self.name, self.cc = gpus, name, cc
        self.device: dict[int, bytearray] = {}
        self.host: dict[int, ctypes.Array] = {}
        self.streams: list[_Stream] = []
        self.copies: list[tuple[str, int, int]] = []  # (kind, bytes, stream handle)
        self.synced: list[int] = []
        self.events: set[_Event] = set()
        self.event_flags: list[int] = []  # the flags of every event made, in order
        # ("h2d"|"d2h", stream, device addr) ("record", event, stream) ("wait", stream, event)
        # ("execute", stream, context) ("sync", event) ("stream_sync", stream) ("free", addr)
        # ("free_host", addr) ("event_destroy", event) ("stream_destroy", stream)
        self.log: list[tuple] = []
        # work enqueued on a stream and not yet waited for by the host: stream -> addresses it uses
        self.in_flight: dict[int, set[int]] = {}
        self.freed_in_flight: list[int] = []  # addresses freed while a stream's work still used them
        self.fail: dict[str, cudaError_t] = {}  # call name -> the error it returns (a device fault)
        self._next = itertools.count(0x10_0000, 0x10_0000)

    def _failing(self, call: str):
        return (self.fail[call],) if call in self.fail else None

    def _uses(self, stream, *addrs) -> None:
        self.in_flight.setdefault(int(stream), set()).update(addrs)

    def _check_free(self, addr) -> None:
        if any(addr in used for used in self.in_flight.values()):
            self.freed_in_flight.append(addr)

    def cudaGetDeviceCount(self):
        return cudaError_t.cudaSuccess, self.gpus

    def cudaGetDeviceProperties(self, dev):
        return cudaError_t.cudaSuccess, types.SimpleNamespace(name=self.name, major=self.cc[0], minor=self.cc[1])

    def cudaMalloc(self, n):
        addr = next(self._next)
        self.device[addr] = bytearray(n)
        return cudaError_t.cudaSuccess, addr

    def cudaMallocHost(self, n):
        buf = ctypes.create_string_buffer(n)
        self.host[ctypes.addressof(buf)] = buf
        return cudaError_t.cudaSuccess, ctypes.addressof(buf)

    def cudaFree(self, addr):
        if err := self._failing("cudaFree"):
            return err
        self._check_free(addr)
        self.device.pop(addr)
        self.log.append(("free", addr))
        return (cudaError_t.cudaSuccess,)

    def cudaFreeHost(self, addr):
        if err := self._failing("cudaFreeHost"):
            return err
        self._check_free(addr)
        self.host.pop(addr)
        self.log.append(("free_host", addr))
        return (cudaError_t.cudaSuccess,)

    def _new_stream(self):
        s = _Stream()
        self.streams.append(s)
        return cudaError_t.cudaSuccess, s

    def cudaStreamCreate(self):
        return self._new_stream()

    def cudaStreamCreateWithFlags(self, flags):
        assert flags in (0, cudaStreamNonBlocking), flags
        return self._new_stream()

    def cudaStreamDestroy(self, s):
        if err := self._failing("cudaStreamDestroy"):
            return err
        self.streams.remove(s)
        self.log.append(("stream_destroy", int(s)))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, s):
        self.synced.append(int(s))
        self.log.append(("stream_sync", int(s)))
        if err := self._failing("cudaStreamSynchronize"):
            return err  # a device fault: the stream's work never completes
        self.in_flight.pop(int(s), None)
        return (cudaError_t.cudaSuccess,)

    def _new_event(self, flags):
        e = _Event(flags)
        self.events.add(e)
        self.event_flags.append(flags)
        return cudaError_t.cudaSuccess, e

    def cudaEventCreate(self):
        return self._new_event(cudaEventDefault)

    def cudaEventCreateWithFlags(self, flags):
        assert flags & ~(cudaEventBlockingSync | cudaEventDisableTiming) == 0, flags
        return self._new_event(flags)

    def cudaEventDestroy(self, e):
        if err := self._failing("cudaEventDestroy"):
            return err
        self.events.remove(e)
        self.log.append(("event_destroy", e.handle))
        return (cudaError_t.cudaSuccess,)

    def cudaEventRecord(self, e, stream):
        assert e in self.events and stream in self.streams
        self.log.append(("record", e.handle, int(stream)))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamWaitEvent(self, stream, e, flags):
        assert stream in self.streams and any(x[0] == "record" and x[1] == e.handle for x in self.log), (
            "waiting on an event never recorded"
        )
        self.log.append(("wait", int(stream), e.handle))
        # the waiting stream's later work depends on the recorded stream's: track them together
        rec = next(x for x in reversed(self.log) if x[0] == "record" and x[1] == e.handle)
        self._uses(stream, *self.in_flight.get(rec[2], ()))
        return (cudaError_t.cudaSuccess,)

    def cudaEventSynchronize(self, e):
        assert any(x[0] == "record" and x[1] == e.handle for x in self.log), "synchronizing an unrecorded event"
        self.log.append(("sync", e.handle))
        if err := self._failing("cudaEventSynchronize"):
            return err
        # the work before the record on its stream (and what that stream waited on) is done
        rec = next(x for x in reversed(self.log) if x[0] == "record" and x[1] == e.handle)
        self.in_flight.pop(rec[2], None)
        return (cudaError_t.cudaSuccess,)

    def uploaded_before_run(self, stream: int, addr: int) -> bool:
        """Did `stream` wait on an event recorded after the last upload into `addr`, on the upload's stream?"""
        ups = [i for i, x in enumerate(self.log) if x[0] == "h2d" and x[2] == addr]
        if not ups:
            return False
        up_stream = self.log[ups[-1]][1]
        if up_stream == stream:
            return True  # same stream: in order anyway
        recorded = {x[1] for x in self.log[ups[-1] :] if x[0] == "record" and x[2] == up_stream}
        return any(x[0] == "wait" and x[1] == stream and x[2] in recorded for x in self.log[ups[-1] :])

    def _copy(self, dst, src, n, kind, stream):
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            assert src in self.host, "source is not pinned host memory"
            assert len(self.device[dst]) >= n, "device buffer too small"
            self.device[dst][:n] = ctypes.string_at(src, n)
        else:
            assert dst in self.host, "destination is not pinned host memory"
            ctypes.memmove(dst, bytes(self.device[src][:n]), n)
        self.copies.append((kind.name, n, int(stream) if stream is not None else 0))
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.log.append(("h2d", int(stream) if stream is not None else 0, dst))
        else:
            self.log.append(("d2h", int(stream) if stream is not None else 0, src))
        if stream is not None:
            self._uses(stream, dst, src)
        return (cudaError_t.cudaSuccess,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert stream in self.streams, "copy on an unknown stream"
        return self._copy(dst, src, n, kind, stream)

    def cudaMemcpy(self, dst, src, n, kind):
        return self._copy(dst, src, n, kind, None)


# tensorrt -------------------------------------------------------------------------------
class Logger:
    WARNING = 2
    INFO = 3

    def __init__(self, level=2) -> None:
        self.level = level
        LOGGERS.append(self)


LOGGERS: list[Logger] = []  # every trt.Logger made: TensorRT wants one per process


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag10(enum.Enum):
    FP16 = 0
    INT8 = 1
    TF32 = 7


class BuilderFlag11(enum.Enum):  # weak-typing flags removed
    TF32 = 7
    DEBUG = 10


class NetworkDefinitionCreationFlag10(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class NetworkDefinitionCreationFlag11(enum.IntEnum):
    # NvInfer.h at the 11.1 commit: kSTRONGLY_TYPED = 0, deprecated and ignored (always strongly typed)
    STRONGLY_TYPED = 0
    PREFER_JIT_PYTHON_PLUGINS = 1
    PREFER_AOT_PYTHON_PLUGINS = 2


class NetworkDefinitionCreationFlag11Later(enum.IntEnum):
    """A later 11.x that dropped the deprecated flag from its bindings."""

    PREFER_JIT_PYTHON_PLUGINS = 1
    PREFER_AOT_PYTHON_PLUGINS = 2


BuilderFlag = BuilderFlag10
NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag10


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT8 = np.int8
    INT32 = np.int32
    INT64 = np.int64
    UINT8 = np.uint8
    BOOL = np.bool_


def nptype(dt):
    return dt.value


_ONNX_TO_TRT = {
    onnx.TensorProto.FLOAT: DataType.FLOAT,
    onnx.TensorProto.FLOAT16: DataType.HALF,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.BOOL: DataType.BOOL,
}


def _graph_precision(m) -> str:
    """What a strongly typed build of this ONNX runs in: its Q/DQ nodes, its fp16 tensors, else fp32."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer):
        return "fp16"
    return "fp32"


class _Tensor:
    def __init__(self, vi) -> None:
        self.name = vi.name
        dims = vi.type.tensor_type.shape.dim
        self.shape = tuple(d.dim_value if d.dim_value > 0 else -1 for d in dims)
        self.dtype = _ONNX_TO_TRT[vi.type.tensor_type.elem_type]


class _Network:
    def __init__(self, strongly_typed: bool) -> None:
        self.inputs: list[_Tensor] = []
        self.outputs: list[_Tensor] = []
        self.path = None
        self.strongly_typed = strongly_typed
        self.precision = None

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class OnnxParser:
    def __init__(self, network, logger) -> None:
        self.network = network
        self.errors: list[str] = []

    def parse_from_file(self, path) -> bool:
        try:
            m = onnx.load(path)
        except Exception as e:
            self.errors.append(f"cannot read: {e}")
            return False
        self.network.path = path
        self.network.precision = _graph_precision(m)
        inits = {i.name for i in m.graph.initializer}
        self.network.inputs = [_Tensor(v) for v in m.graph.input if v.name not in inits]
        self.network.outputs = [_Tensor(v) for v in m.graph.output]
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name, mn, opt, mx):
        assert all(a <= b <= c for a, b, c in zip(mn, opt, mx, strict=True)), "profile must be min <= opt <= max"
        self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))


class _TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data or b"fake-timing-cache"

    def serialize(self):
        return self.data


class _Config:
    def __init__(self) -> None:
        self.flags: set = set()
        self.pools: dict = {}
        self.profiles: list[_Profile] = []
        self.timing = None

    def set_memory_pool_limit(self, pool, n):
        self.pools[pool] = n

    def set_flag(self, flag):
        self.flags.add(flag)

    def add_optimization_profile(self, p):
        self.profiles.append(p)

    def create_timing_cache(self, data):
        return _TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        """False for a cache from another device unless `ignore_mismatch`, as TensorRT does."""
        if cache.data in REFUSED_TIMING_CACHES and not ignore_mismatch:
            TIMING_CACHES_REFUSED.append(cache.data)
            return False
        self.timing = cache
        return True

    def get_timing_cache(self):
        return self.timing


BUILDS: list[dict] = []  # every build, for the tests to inspect
REFUSED_TIMING_CACHES: set[bytes] = set()  # timing cache contents "from another device"
TIMING_CACHES_REFUSED: list[bytes] = []  # what set_timing_cache refused
REFUSED_SHAPES: set[tuple[str, tuple]] = set()  # (input, shape) set_input_shape refuses though in the profile
DATA_DEPENDENT_OUTPUTS: set[str] = set()  # outputs whose context shape is -1 (as NonZero's is)
REFUSED_ADDRESSES: set[str] = set()  # tensors whose set_tensor_address returns False


class Builder:
    def __init__(self, logger) -> None:
        pass

    def create_network(self, flags=0):
        known = getattr(NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        st = 1 << int(known) if known is not None else None
        assert flags in (0, st), "explicit batch is implied since TensorRT 10; STRONGLY_TYPED is the one flag used"
        return _Network(strongly_typed=API >= 11 or flags == st)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        assert len(config.profiles) == 1
        names = {f.name for f in config.flags}
        if network.strongly_typed:  # as TensorRT: types come from the graph, precision flags are an error
            assert not names & {"FP16", "INT8", "BF16", "FP8"}, "precision flags on a strongly typed network"
        plan = {
            "fake_plan": True,
            "onnx": network.path,
            # a real plan holds the whole network: the double keeps the ONNX bytes, not a path that may go
            "onnx_b64": base64.b64encode(open(network.path, "rb").read()).decode(),
            "strongly_typed": network.strongly_typed,
            "precision": network.precision,
            "flags": sorted(names),
            "pools": {k.name: v for k, v in config.pools.items()},
            "profile": {k: v for k, v in config.profiles[0].shapes.items()},
            "inputs": [(t.name, t.shape, t.dtype.name) for t in network.inputs],
            "outputs": [(t.name, t.shape, t.dtype.name) for t in network.outputs],
            "version": __version__,
        }
        record = {k: v for k, v in plan.items() if k != "onnx_b64"}
        BUILDS.append(json.loads(json.dumps({**record, "timing_cache": config.timing is not None})))
        return json.dumps(plan).encode()


class Runtime:
    def __init__(self, logger) -> None:
        pass

    def deserialize_cuda_engine(self, data):
        try:
            plan = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError):
            return None
        if not plan.get("fake_plan") or plan["version"] != __version__:
            return None
        return _Engine(plan)


class _Engine:
    def __init__(self, plan) -> None:
        self.plan = plan
        self.io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in plan["inputs"]]
        self.io += [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in plan["outputs"]]
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(base64.b64decode(plan["onnx_b64"]), so, providers=["CPUExecutionProvider"])
        self.declared_outputs = {
            o.name: tuple(d if isinstance(d, int) and d > 0 else None for d in o.shape) for o in self.session.get_outputs()
        }

    @property
    def num_io_tensors(self):
        return len(self.io)

    def get_tensor_name(self, i):
        return self.io[i][0]

    def _find(self, name):
        return next(t for t in self.io if t[0] == name)

    def get_tensor_mode(self, name):
        return self._find(name)[3]

    def get_tensor_dtype(self, name):
        return self._find(name)[2]

    def get_tensor_shape(self, name):
        return self._find(name)[1]

    def get_tensor_profile_shape(self, name, profile_index):
        assert profile_index == 0
        return [tuple(s) for s in self.plan["profile"][name]]

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.input_shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.executions: list[int] = []

    def set_input_shape(self, name, shape):
        """False for a shape outside the profile (TensorRT logs why and returns false)."""
        mn, _, mx = self.engine.plan["profile"][name]
        inside = len(shape) == len(mn) and all(a <= s <= b for a, s, b in zip(mn, shape, mx, strict=True))
        if not inside or (name, tuple(shape)) in REFUSED_SHAPES:
            return False
        self.input_shapes[name] = tuple(shape)
        return True

    def _output_shapes(self):
        declared = self.engine.declared_outputs
        if all(d is not None for shape in declared.values() for d in shape[1:]):
            # fixed outputs (a fused graph's): the batch follows the inputs', as TensorRT infers it
            n = next(iter(self.input_shapes.values()))[0]
            return {k: (n, *shape[1:]) for k, shape in declared.items()}
        feeds = {
            n: np.zeros(s, self.engine.get_tensor_dtype(n).value) for n, s in self.input_shapes.items()
        }
        outs = self.engine.session.run(None, feeds)
        return {o.name: r.shape for o, r in zip(self.engine.session.get_outputs(), outs, strict=True)}

    def get_tensor_shape(self, name):
        if name in self.input_shapes:
            return self.input_shapes[name]
        shape = self._output_shapes()[name]
        # TensorRT knows a data-dependent output's size only after the run (NonZero, NMS): -1 here
        return (shape[0], -1, *shape[2:]) if name in DATA_DEPENDENT_OUTPUTS else shape

    def set_tensor_address(self, name, addr):
        """False for a name the engine has no I/O tensor of, or a null address."""
        if not int(addr) or name not in {t[0] for t in self.engine.io} or name in REFUSED_ADDRESSES:
            return False
        self.addresses[name] = int(addr)
        return True

    def execute_async_v3(self, stream_handle):
        cuda = CUDA
        assert isinstance(stream_handle, int) and any(int(s) == stream_handle for s in cuda.streams), (
            "not a live stream"
        )
        names = [t[0] for t in self.engine.io]
        assert set(self.addresses) == set(names), "every I/O tensor needs an address"
        feeds = {}
        for n, shape in self.input_shapes.items():
            assert cuda.uploaded_before_run(stream_handle, self.addresses[n]), f"{n}: run not ordered after its upload"
            dt = np.dtype(self.engine.get_tensor_dtype(n).value)
            nbytes = int(np.prod(shape)) * dt.itemsize
            mem = cuda.device[self.addresses[n]]
            assert len(mem) >= nbytes
            feeds[n] = np.frombuffer(bytes(mem[:nbytes]), dt).reshape(shape)
        outs = self.engine.session.run(None, feeds)
        for o, r in zip(self.engine.session.get_outputs(), outs, strict=True):
            mem = cuda.device[self.addresses[o.name]]
            raw = np.ascontiguousarray(r).tobytes()
            assert len(mem) >= len(raw), f"output {o.name} does not fit its device buffer"
            mem[: len(raw)] = raw
        self.executions.append(stream_handle)
        cuda.log.append(("execute", stream_handle, id(self)))
        cuda.in_flight.setdefault(stream_handle, set()).update(self.addresses.values())
        return True


CUDA = FakeCuda()
VERSIONS = {10: "10.16.1.11", 11: "11.4.0.106"}
# what `import tensorrt` offers; tests/backends/test_trt_api.py checks each against the real bindings
MODULE_NAMES = (
    "__version__",
    "Logger",
    "Builder",
    "OnnxParser",
    "Runtime",
    "MemoryPoolType",
    "BuilderFlag",
    "NetworkDefinitionCreationFlag",
    "TensorIOMode",
    "DataType",
    "nptype",
)


def install(
    monkeypatch, api: int = 10, version: str | None = None, strongly_typed_flag: bool = True, **cuda_kwargs
) -> types.ModuleType:
    """Put the fakes where `import tensorrt` and `from cuda.bindings import runtime` find them,
    modelling TensorRT `api` (10 or 11); `strongly_typed_flag=False` with 11: a later 11.x whose
    bindings dropped the deprecated STRONGLY_TYPED flag."""
    global CUDA, API, BuilderFlag, NetworkDefinitionCreationFlag, __version__
    CUDA = FakeCuda(**cuda_kwargs)
    BUILDS.clear()
    LOGGERS.clear()
    REFUSED_TIMING_CACHES.clear()
    TIMING_CACHES_REFUSED.clear()
    REFUSED_SHAPES.clear()
    DATA_DEPENDENT_OUTPUTS.clear()
    REFUSED_ADDRESSES.clear()
    API = api
    __version__ = version or VERSIONS[api]
    BuilderFlag = BuilderFlag10 if api == 10 else BuilderFlag11
    if api == 10:
        NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag10
    else:
        NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag11 if strongly_typed_flag else NetworkDefinitionCreationFlag11Later
    import importlib.machinery

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    for name in MODULE_NAMES:
        setattr(trt, name, globals()[name])
    runtime = types.ModuleType("cuda.bindings.runtime")
    for name in dir(CUDA):
        if name.startswith("cuda"):
            setattr(runtime, name, getattr(CUDA, name))
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = runtime
    cuda_pkg = types.ModuleType("cuda")
    cuda_pkg.bindings = bindings
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    monkeypatch.setitem(__import__("sys").modules, "cuda", cuda_pkg)
    monkeypatch.setitem(__import__("sys").modules, "cuda.bindings", bindings)
    monkeypatch.setitem(__import__("sys").modules, "cuda.bindings.runtime", runtime)
    return trt
