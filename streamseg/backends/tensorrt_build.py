"""TensorRT plan builder: ONNX file -> serialized plan (bytes). The runner (tensorrt.py) runs
whatever plan it is given; this module only builds, as Polygraphy's loader and runner split.

TensorRT 10 and 11 both build *strongly typed* networks (NetworkDefinitionCreationFlag.
STRONGLY_TYPED): every tensor's type comes from the ONNX graph, so precision is chosen by the
graph we hand over, not by builder flags:

- fp32: the (fused) ONNX as it is;
- fp16: an FP16 copy made on the host by ONNX Runtime's float16 converter
  (`onnxruntime.transformers.float16`, shipped with onnxruntime: no new package), keeping the
  graph inputs/outputs and the fused pre/post nodes (`fuse/*`: integer resize, NMS, TopK, mask
  assembly) in fp32; the converter's own block list keeps the ops without fp16 kernels;
- int8: the gated Q/DQ model the CPU quantizers make (streamseg/quantize.py), explicit
  quantization: one INT8 artifact and one accuracy gate for every backend.

TensorRT 11 removed BuilderFlag.FP16/INT8, the INT8 calibrators and EXPLICIT_BATCH (see
tests/backends/tensorrt_names/), and always builds strongly typed: NvInfer.h at the 11.1 commit,
`kSTRONGLY_TYPED TRT_DEPRECATED_ENUM = 0` "Deprecated in TensorRT 11.0. Strongly typed mode is
always enabled. This flag is retained for API compatibility but is ignored." So on 11 and later a
missing flag still means strongly typed (`is_strongly_typed`); the weak-typing flags are used only
by a TensorRT before 11 without STRONGLY_TYPED, which no 10.x release is (kept for an odd build).

- One `trt.Logger` per process (`trt_logger`), shared by the builder, parser and runtime: TensorRT
  warns when a second engine is made with another logger than the first.
- The workspace pool is left to TensorRT (NvInfer.h, MemoryPoolType::kWORKSPACE: "This defaults to
  max device memory. Set to a smaller value to restrict tactics") unless `workspace_mb` is set.
- The timing cache is one file per GPU, compute capability and TensorRT version
  (`timing_cache_name`), attached with `ignore_mismatch=False`; a cache TensorRT refuses
  (set_timing_cache returns false: "A failure will be reported if the CUDA device property in the
  provided cache is different from current environment") is logged and the build starts empty.

NEVER RUN ON A GPU: tested against tests/backends/fake_tensorrt.py and the API snapshot.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from streamseg.errors import BackendError, ModelError

log = logging.getLogger("streamseg")

PRECISIONS = ("fp32", "fp16", "int8")
# frame sizes a fused graph's plan accepts (frames [N, H, W, 3]): min, opt, max height x width
DEFAULT_FRAME_HW = ((16, 16), (720, 1280), (1080, 1920))


@dataclass(frozen=True)
class BuildSettings:
    precision: str = "fp32"
    max_batch: int = 8
    opt_batch: int = 4
    workspace_mb: int | None = None  # None: TensorRT's default (all device memory) for tactics' workspace
    frame_hw: tuple = DEFAULT_FRAME_HW  # (min, opt, max) (h, w) for inputs with dynamic H and W

    @property
    def profile_key(self) -> tuple[tuple[str, str], ...]:
        key = [("max", str(self.max_batch)), ("min", "1"), ("opt", str(self.opt_batch))]
        if self.frame_hw != DEFAULT_FRAME_HW:
            key.append(("frame_hw", repr(self.frame_hw)))
        return tuple(key)


def strongly_typed_flag(trt) -> int | None:
    """create_network's flag bits for a strongly typed network, or None where TensorRT has none."""
    if not hasattr(trt, "NetworkDefinitionCreationFlag") or not hasattr(
        trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"
    ):
        return None
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def trt_major(trt) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def is_strongly_typed(trt) -> bool:
    """Does this TensorRT build strongly typed networks: with the flag, or always (11 and later)."""
    return strongly_typed_flag(trt) is not None or trt_major(trt) >= 11


_LOGGER: dict[str, object] = {}


def trt_logger(trt):
    """The process's one trt.Logger (per tensorrt module: the tests' double is a new module each time)."""
    if _LOGGER.get("module") is not trt:
        _LOGGER["module"], _LOGGER["logger"] = trt, trt.Logger(trt.Logger.WARNING)
    return _LOGGER["logger"]


def timing_cache_name(trt_version: str, gpu: tuple[str, str]) -> str:
    """The timing cache's file name for one TensorRT version on one GPU model (name, compute capability)."""
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu[0]).strip("-").lower() or "gpu"
    return f"tensorrt-{trt_version}-{gpu_slug}-sm{gpu[1].replace('.', '')}.timing-cache"


def _attach_timing_cache(config, timing_cache: Path | None) -> None:
    """The timing cache from `timing_cache` (empty when absent or refused), attached and checked."""
    data = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if data:
        log.warning(
            "TensorRT refused the timing cache %s (another GPU or TensorRT version?); building with an empty one",
            timing_cache,
        )
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
    raise BackendError("TensorRT refused even an empty timing cache (see its log above)")


def has_qdq(onnx_path: str | Path) -> bool:
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)


def fp16_copy(onnx_path: str | Path, out_path: str | Path) -> Path:
    """An FP16 copy of the model: I/O and the fused pre/post nodes stay fp32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(onnx_path))
    keep = [n.name for n in model.graph.node if n.name.startswith("fuse/")]
    converted = convert_float_to_float16(
        model,
        keep_io_types=True,
        node_block_list=keep,
        # + ops whose fp16 range or rounding hurts: reductions over whole maps, exp-like heads
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, "ArgMax", "GatherElements", "GatherND", "ScatterND", "Where"],
    )
    onnx.save(converted, str(out_path))
    return Path(out_path)


def profile_shapes(network, s: BuildSettings, name: str) -> list[tuple[str, tuple, tuple, tuple]]:
    """(input, min, opt, max): the batch axis spans 1..max_batch; a fused graph's frames span
    `frame_hw`; any other dynamic axis is an error naming it."""
    shapes = []
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = tuple(t.shape)
        rest = list(dims[1:])
        lo, opt, hi = list(rest), list(rest), list(rest)
        if len(dims) == 4 and dims[3] == 3 and dims[1] < 0 and dims[2] < 0:  # frames [N, H, W, 3]
            (lo[0], lo[1]), (opt[0], opt[1]), (hi[0], hi[1]) = s.frame_hw
        if any(d < 0 for d in lo):
            raise ModelError(f"{name}: input {t.name} has dynamic dimensions other than the batch: {dims}")
        if dims[0] >= 0:  # a fixed batch: the plan takes exactly that
            shapes.append((t.name, (dims[0], *lo), (dims[0], *opt), (dims[0], *hi)))
        else:
            shapes.append((t.name, (1, *lo), (s.opt_batch, *opt), (s.max_batch, *hi)))
    return shapes


def build_plan(trt, onnx_path: str | Path, s: BuildSettings, *, timing_cache: Path | None = None, workdir=None):
    """Parse the ONNX file and build a serialized plan. Returns (plan bytes, profile, build info)."""
    onnx_path = Path(onnx_path)
    if s.precision not in PRECISIONS:
        raise BackendError(f"the tensorrt backend builds fp32, fp16 or int8 plans, not {s.precision}")
    if s.precision == "int8" and not has_qdq(onnx_path):
        raise BackendError(
            f"{onnx_path.name}: TensorRT builds INT8 from the gated Q/DQ model; quantize and gate it first "
            "(streamseg engines build CARD --backend onnxruntime --precision int8 --calib URI)"
        )
    source = onnx_path
    if s.precision == "fp16":
        import tempfile

        folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="streamseg-fp16-"))
        folder.mkdir(parents=True, exist_ok=True)
        source = fp16_copy(onnx_path, folder / f"{onnx_path.stem}.fp16.onnx")
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    st = strongly_typed_flag(trt)
    strong = st is not None or trt_major(trt) >= 11  # 11: always strongly typed, flag or not
    network = builder.create_network(st if st is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path.name}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    if s.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(s.workspace_mb) << 20)
    if not strong:  # weak typing (a TensorRT before 11 without STRONGLY_TYPED): precision by flags
        if s.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if s.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: the Q/DQ nodes set the scales
    shapes = profile_shapes(network, s, onnx_path.name)
    profile = builder.create_optimization_profile()
    for name, mn, opt, mx in shapes:
        profile.set_shape(name, mn, opt, mx)
    config.add_optimization_profile(profile)
    _attach_timing_cache(config, timing_cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"{onnx_path.name}: TensorRT could not build a plan (see its log above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    info = {"strongly_typed": strong, "source": source.name}
    return bytes(plan), shapes, info
