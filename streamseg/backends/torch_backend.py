"""PyTorch backend: a card's ONNX model converted to torch (onnx2torch), on CUDA when a GPU answers,
else on the CPU (so `make test` runs all of it).

Why onnx2torch: a maintained, pure-Python converter (ENOT-AutoDL, an ~80 kB wheel) that turns an
ONNX graph into a torch.fx module of ordinary torch ops, so the model runs wherever torch runs
(CUDA, CPU, fp16 via `.half()`, CUDA graphs, torch.compile) with no runtime of its own. Two
rewrites here widen what it takes: weights that exporters share through Identity/Constant nodes
become initializers (Ultralytics' exports), and ONNX Runtime's dynamic INT8 pair
(DynamicQuantizeLinear + ConvInteger, the shared yolov8n-seg-int8) gets converters that compute
what ONNX Runtime computes (uint8 activations, integer convolution, in float32 arithmetic).

Fused (the default, models/fuse.py): the engine is handed the fused ONNX graph (its inputs and
outputs are this engine's contract) and the card's parts (`fused=`, a models.fuse_torch.TorchFusion);
it runs the core model between torch versions of the graph's pre- and postprocessing (models/fuse_torch.py)
on the device, so only uint8 frames go in and compact fixed-shape outputs come back.

Options, all off unless asked for (gpu-check measures them; nothing assumes them faster):
`cuda_graphs` (replays one captured graph of preprocessing + model per input shape; the NMS
postprocessing has data-dependent shapes and runs eagerly), `compile` (torch.compile of the model).
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

import numpy as np

from streamseg.backends.base import Engine, TensorSpec, default_threads, graph_specs
from streamseg.errors import BackendError, ModelError


def cuda_device() -> str | None:
    """The GPU torch sees (its name), or None: no CUDA build, no driver, or no device."""
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


@contextlib.contextmanager
def _without_torchvision():
    """onnx2torch imports torchvision at import time, for its NonMaxSuppression and RoiAlign converters
    only. Where torchvision is absent (or built for another torch), a stand-in module is put in place
    for the import and taken away after: the converters we use do not touch it, and a graph that has
    those ops fails on them with a clear line."""
    try:
        import torchvision  # noqa: F401

        yield
        return
    except Exception:
        pass

    def missing(*_a, **_k):
        raise BackendError("this model has NonMaxSuppression/RoiAlign nodes, whose torch conversion needs torchvision")

    tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
    ops.nms = ops.box_convert = ops.roi_align = ops.batched_nms = missing
    tv.ops = ops
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.ops")}
    sys.modules.update({"torchvision": tv, "torchvision.ops": ops})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


_REGISTERED = False


def _onnx2torch():
    """The onnx2torch module, with our two converters for ONNX Runtime's dynamic INT8 registered once."""
    global _REGISTERED
    with _without_torchvision():
        import onnx2torch
        from onnx2torch.node_converters.registry import add_converter
        from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node
    if _REGISTERED:
        return onnx2torch
    import torch

    class DynamicQuantizeLinear(torch.nn.Module):
        """ONNX DynamicQuantizeLinear: uint8 values (kept as float), scale, zero point."""

        def forward(self, x):
            x = x.float()
            lo, hi = torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0)
            scale = (hi - lo) / 255.0
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            zp = torch.clamp(torch.round(-lo / safe), 0, 255)
            y = torch.clamp(torch.round(x / safe) + zp, 0, 255)
            return y, scale, zp

    class ConvInteger(torch.nn.Module):
        """ONNX ConvInteger (int32 result; computed in float32: the same integers, to float rounding)."""

        def __init__(self, weight, w_zp, stride, padding, dilation, groups) -> None:
            super().__init__()
            w = torch.from_numpy(weight.astype(np.float32)) - torch.from_numpy(np.asarray(w_zp, np.float32)).reshape(
                -1, 1, 1, 1
            )
            self.register_buffer("w", w)
            self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

        def forward(self, x, x_zp):
            return torch.nn.functional.conv2d(
                x - x_zp, self.w.to(x.dtype), None, self.stride, self.padding, self.dilation, self.groups
            )

    @add_converter(operation_type="DynamicQuantizeLinear", version=11)
    def _dql(node, graph):
        return OperationConverterResult(torch_module=DynamicQuantizeLinear(), onnx_mapping=onnx_mapping_from_node(node))

    @add_converter(operation_type="ConvInteger", version=10)
    def _conv_integer(node, graph):
        a = node.attributes
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET") or pads[: len(pads) // 2] != pads[len(pads) // 2 :]:
            raise BackendError("ConvInteger with auto_pad or asymmetric pads has no torch converter here")
        w = graph.initializers[node.input_values[1]].to_numpy()
        w_zp = graph.initializers[node.input_values[3]].to_numpy() if len(node.input_values) > 3 else np.zeros(1)
        mod = ConvInteger(
            w, w_zp, tuple(a.get("strides", [1, 1])), tuple(pads[: len(pads) // 2]),
            tuple(a.get("dilations", [1, 1])), int(a.get("group", 1)),
        )
        x_zp = node.input_values[2] if len(node.input_values) > 2 and node.input_values[2] else None
        if x_zp is None:
            raise BackendError("ConvInteger without an input zero point has no torch converter here")
        return OperationConverterResult(
            torch_module=mod, onnx_mapping=OnnxMapping(inputs=(node.input_values[0], x_zp), outputs=node.output_values)
        )

    _REGISTERED = True
    return onnx2torch


def _constants_as_initializers(model):
    """Weights reached through Identity or Constant nodes (exporters deduplicate shared tensors so)
    become initializers under the name the consumer uses: onnx2torch reads weights from initializers."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            t = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0])
        elif node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t), node.output[0])
        else:
            keep.append(node)
            continue
        g.initializer.append(t)
        inits[t.name] = t
    del g.node[:]
    g.node.extend(keep)
    return model


# ops whose newer versions only widen their types (or, Split-18, name the output count the older
# converter reads off the node): the newest converter onnx2torch has for an older version runs them
_TYPE_ONLY_BUMPS = {"Reshape", "Split", "Cast", "Shape", "Identity", "Transpose", "Squeeze", "Unsqueeze",
                    "Flatten", "Constant", "ConstantOfShape", "Equal", "Size", "Where"}


def _alias_newer_versions(model) -> None:
    """Register, for this model's opset, the older converters of `_TYPE_ONLY_BUMPS` ops onnx2torch
    lacks a version of (it covers opsets up to 17; the shared models use 20)."""
    from onnx import defs
    from onnx2torch.node_converters import registry

    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    ops = {n.op_type for n in model.graph.node} & _TYPE_ONLY_BUMPS
    # Resize 18/19 add attributes (antialias, axes, keep_aspect_ratio_policy, half_pixel_symmetric):
    # a graph that leaves them at their defaults means what Resize 13 meant
    resize = [n for n in model.graph.node if n.op_type == "Resize"]
    if resize and not any(
        a.name in ("antialias", "axes", "keep_aspect_ratio_policy")
        or (a.name == "coordinate_transformation_mode" and a.s == b"half_pixel_symmetric")
        for n in resize
        for a in n.attribute
    ):
        ops.add("Resize")
    for op in ops:
        try:
            since = defs.get_schema(op, max_inclusive_version=opset).since_version
        except Exception:
            continue
        key = registry.OperationDescription("", op, since)
        if key in registry._CONVERTER_REGISTRY:
            continue
        older = [d for d in registry._CONVERTER_REGISTRY if d.domain == "" and d.operation_type == op and d.version < since]
        if older:
            registry._CONVERTER_REGISTRY[key] = registry._CONVERTER_REGISTRY[max(older, key=lambda d: d.version)]


def convert(path: str | Path):
    """The ONNX model at `path` as a torch module (eval mode, on the CPU), and its input/output names.
    A graph onnx2torch cannot convert is one ModelError naming the op."""
    import onnx

    conv = _onnx2torch()
    model = _constants_as_initializers(onnx.load(str(path)))
    _alias_newer_versions(model)
    inits = {i.name for i in model.graph.initializer}
    ins = [v.name for v in model.graph.input if v.name not in inits]
    outs = [v.name for v in model.graph.output]
    try:
        with _without_torchvision():
            module = conv.convert(model)
    except NotImplementedError as e:  # "Converter is not implemented (OperationDescription(... operation_type='X' ...))"
        raise ModelError(f"{Path(path).name}: the torch backend cannot convert it: {str(e).splitlines()[0]}") from None
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"{Path(path).name}: onnx2torch failed on it: {type(e).__name__}: {e}") from None
    return module.eval(), ins, outs


class TorchEngine(Engine):
    backend = "torch"

    def __init__(
        self,
        model_path,
        *,
        precision: str = "fp32",
        threads: int = 0,
        fused=None,
        device: str | None = None,
        cuda_graphs: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(model_path, precision=precision, threads=threads)
        self.fusion = fused
        self.want_device = device
        self.cuda_graphs = cuda_graphs
        self.compile = compile
        self._graphs: dict = {}

    # lifecycle -----------------------------------------------------------------
    def load_impl(self) -> None:
        import torch

        if self.precision not in ("fp32", "fp16"):
            raise BackendError(f"the torch backend runs fp32 or fp16; not {self.precision}")
        dev = self.want_device or ("cuda" if cuda_device() else "cpu")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("the torch backend was asked for cuda, but torch sees no CUDA device")
        self.torch_device = torch.device(dev)
        self.device = f"cuda ({torch.cuda.get_device_name(self.torch_device)})" if dev.startswith("cuda") else "cpu"
        if self.torch_device.type == "cpu":
            self.threads = self.threads or default_threads()
            torch.set_num_threads(self.threads)
        if self.cuda_graphs and self.torch_device.type != "cuda":
            raise BackendError("cuda_graphs needs a CUDA device")
        # fp32 means fp32 on the GPU too: no TF32 matmuls/convolutions behind the report's back
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.inputs, self.outputs, self.metadata = onnx_specs(self.model_path)
        core_path = self.fusion.core_path if self.fusion else self.model_path
        core, self._core_in, self._core_out = convert(core_path)
        self.specs_known()
        core = core.to(self.torch_device)
        if self.precision == "fp16":
            core = core.half()
        if self.compile:
            core = torch.compile(core, dynamic=False)
        self._core = core
        if self.fusion:
            pre, post = self.fusion.modules(self.dtype)
            self._pre, self._post = pre.to(self.torch_device), post.to(self.torch_device)
            if self.fusion.task != "semantic":
                self.nms = "torchvision" if post.batched_nms is not None else "torch"
        self.version = torch.__version__
        from streamseg.backends.device import TorchDevice

        # the shared device module's interface (backends/device.py) on torch's streams and allocator
        self._dev = TorchDevice(self.torch_device, name=self.model_path.name)
        self._stream = self._dev.stream("engine") if self.torch_device.type == "cuda" else None
        self._done = self._dev.event("outputs")
        self._staging: dict = {}
        self.overlaps = False  # NMS reads back its candidate count: a batch finishes inside submit

    def close_impl(self) -> None:
        if getattr(self, "_dev", None) is not None:
            self._dev.close()  # the stream synchronized before its buffers go
        self._core = self._pre = self._post = self._dev = None
        self._staging = {}
        self._graphs.clear()
        if getattr(self, "torch_device", None) is not None and self.torch_device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    # running -------------------------------------------------------------------
    def _front(self, tensors: dict):
        """Preprocessing + the core model: {input name: device tensor} -> {core output name: tensor}."""
        import torch

        with torch.inference_mode():
            if self.fusion:
                x = self._pre(tensors["frames"], tensors.get("resize_x"), tensors.get("resize_y"))
                args = [x]
            else:
                args = [t.to(self.dtype) if t.is_floating_point() else t for t in (tensors[n] for n in self._core_in)]
            res = self._core(*args)
            res = res if isinstance(res, (tuple, list)) else (res,)
            return dict(zip(self._core_out, res, strict=True))

    def _back(self, outs: dict) -> dict:
        import torch

        with torch.inference_mode():
            if self.fusion:
                return self._post(outs)
            return {k: v.float() if v.is_floating_point() and self.outputs[k].dtype == np.float32 else v for k, v in outs.items()}

    def _buffers(self, key: str, nbytes: int):
        """(pinned host, device) staging buffers for `key`, grown when a batch needs more."""
        have = self._staging.get(key)
        if have is None or have[0].nbytes < nbytes:
            size = max(nbytes, int(have[0].nbytes * 1.5) if have else 0)
            have = self._staging[key] = (self._dev.pinned_buffer(size), self._dev.device_buffer(size))
        return have

    def _to_device(self, feeds: dict[str, np.ndarray]) -> dict:
        import torch

        if self.torch_device.type == "cpu":
            # a read-only batch (broadcast tables) is copied: torch tensors are writable
            return {k: torch.from_numpy(np.ascontiguousarray(v) if v.flags.writeable else v.copy()) for k, v in feeds.items()}
        out = {}
        for k, v in feeds.items():  # pinned staging, then an asynchronous copy on the engine's stream
            pin, dev = self._buffers(f"in:{k}", v.nbytes)
            pin.array(v.shape, v.dtype)[...] = v
            self._dev.upload(dev, pin, v.nbytes, self._stream)
            out[k] = dev.tensor(v.shape, torch_dtype(v.dtype))
        return out

    def _captured(self, feeds: dict[str, np.ndarray]):
        """The CUDA graph of preprocessing + model for these input shapes (captured on first use)."""
        import torch

        key = tuple((k, v.shape, v.dtype.str) for k, v in sorted(feeds.items()))
        g = self._graphs.get(key)
        if g is None:
            static_in = {k: torch.zeros(v.shape, dtype=torch_dtype(v.dtype), device=self.torch_device) for k, v in feeds.items()}
            for k, v in feeds.items():
                static_in[k].copy_(torch.from_numpy(v.copy()))
            side = torch.cuda.Stream(self.torch_device)
            side.wait_stream(torch.cuda.current_stream(self.torch_device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up off the capture (cuDNN picks its kernels)
                    self._front(static_in)
            torch.cuda.current_stream(self.torch_device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._front(static_in)
            g = self._graphs[key] = (graph, static_in, static_out)
        return g

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        stream = self._stream
        staged = self._to_device(feeds)
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx:
            if self.cuda_graphs:
                graph, static_in, static_out = self._captured(feeds)
                for k, t in staged.items():
                    static_in[k].copy_(t, non_blocking=True)
                graph.replay()
                core_out = static_out
            else:
                core_out = self._front(staged)
            out = self._back(core_out)
        if stream is None:
            return {k: v.numpy() for k, v in out.items()}
        host = {}
        for k, v in out.items():
            v = v.contiguous()
            pin, _ = self._buffers(f"out:{k}", v.numel() * v.element_size())
            self._dev.to_host(pin, v, stream)
            host[k] = (pin, tuple(v.shape), v.dtype)
        self._dev.record(self._done, stream)
        self._dev.wait(self._done)
        # copies: the pinned buffers are the next batch's
        return {k: pin.tensor(shape, dt).numpy().copy() for k, (pin, shape, dt) in host.items()}

    def describe(self) -> dict:
        d = {**super().describe(), "version": getattr(self, "version", None), "cuda_graphs": self.cuda_graphs,
             "compile": self.compile}
        if self.device == "cpu":
            d["threads"] = self.threads
        elif getattr(self, "_dev", None) is not None:
            d.update(self._dev.waits.describe())
        if self.fusion and self.fusion.task != "semantic":
            d["nms_op"] = getattr(self, "nms", None)  # which NMS ran (torchvision or ours); "nms" is the variant
        return d


def onnx_specs(path: Path) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec], dict[str, str]]:
    """Inputs, outputs and metadata of the ONNX file the engine was handed (for a fused model: the
    fused graph, whose inputs and outputs the torch modules reproduce)."""
    import onnx

    return graph_specs(onnx.load(str(path), load_external_data=False))


def torch_dtype(dt: np.dtype):
    import torch

    return {
        np.dtype(np.uint8): torch.uint8,
        np.dtype(np.int32): torch.int32,
        np.dtype(np.int64): torch.int64,
        np.dtype(np.float16): torch.float16,
        np.dtype(np.float32): torch.float32,
    }[np.dtype(dt)]


def copy_throughput(nbytes: int = 64 << 20, repeats: int = 10, device: str = "cuda") -> dict:
    """Host<->device copy rate through the staging code the engine uses (backends/device.py's
    TorchDevice: pinned host buffers, copies on its stream, a blocking event): GB/s each way."""
    import time

    from streamseg.backends.device import TorchDevice

    res = {"bytes": nbytes, "repeats": repeats}
    with TorchDevice(device, name="copy-check") as dev:
        stream = dev.stream("copies")
        done = dev.event("copies")
        pin, buf = dev.pinned_buffer(nbytes), dev.device_buffer(nbytes)
        for direction in ("h2d", "d2h"):
            copy = dev.upload if direction == "h2d" else dev.download
            a, b = (buf, pin) if direction == "h2d" else (pin, buf)
            copy(a, b, nbytes, stream)  # warm
            dev.record(done, stream)
            dev.wait(done)
            t0 = time.perf_counter()
            for _ in range(repeats):
                copy(a, b, nbytes, stream)
            dev.record(done, stream)
            dev.wait(done)
            res[f"{direction}_gb_s"] = round(nbytes * repeats / (time.perf_counter() - t0) / 1e9, 2)
        res["pinned"] = dev.cuda
    return res


__all__ = ["TorchEngine", "convert", "copy_throughput", "cuda_device"]
