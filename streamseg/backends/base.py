"""The engine interface every backend implements.

`Engine.infer()` checks the feed, handles models exported with a fixed batch of 1
(it loops), and calls the backend's `infer_impl()`. Backends never time themselves:
the pipeline takes the timestamps, so every backend is measured the same way.
Engines are context managers: `__enter__` loads, `__exit__` frees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamseg.backends.onnx_files import check_external_data
from streamseg.errors import BackendError


def default_threads() -> int:
    """Intra-op threads of an engine nobody sized (`threads: 0` outside a pipeline, which sizes
    its engines from its CPU budget): the cores this process may use, not the machine's."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None = dynamic axis
    dtype: np.dtype

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the model, or None when the batch axis is dynamic."""
        return self.shape[0] if self.shape and self.shape[0] is not None else None


class Done:
    """A submitted batch that is already finished (backends that run on the caller's thread)."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs


_Done = Done


class Engine:
    """One loaded model on one runtime. Subclasses implement `load_impl`, `infer_impl`, `close_impl`;
    an engine on a device stream (`overlaps = True`) also `submit_impl` and `collect_impl`."""

    backend = "base"
    # submit() only enqueues work on a device: the caller can prepare and submit the next batch
    # (its host-to-device copy overlapping this batch's compute) before collecting this one
    overlaps = False

    def __init__(self, model_path: str | Path, *, precision: str = "fp32", threads: int = 0) -> None:
        self.model_path = Path(model_path)
        self.precision = precision
        self.threads = threads
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs: dict[str, TensorSpec] = {}
        self.metadata: dict[str, str] = {}
        self.device = "cpu"
        self._loaded = False
        # called once inputs/outputs are known, before a slow build where the backend can
        # (OpenVINO): a card that does not fit the model fails before anything is compiled
        self.on_specs = None
        self.calls = 0  # backend calls (a looped fixed-batch model counts each)
        self.frames = 0

    # lifecycle -----------------------------------------------------------------
    def __enter__(self) -> Engine:
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> None:
        if not self._loaded:
            if self.model_path.suffix.lower() == ".onnx":
                check_external_data(self.model_path)
            self.load_impl()
            self._loaded = True

    def specs_known(self) -> None:
        if self.on_specs is not None:
            self.on_specs()

    def close(self) -> None:
        if self._loaded:
            self.close_impl()
            self._loaded = False

    # inference -----------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """Largest batch one backend call takes (None: any)."""
        fixed = {s.fixed_batch for s in self.inputs.values()}
        return fixed.pop() if len(fixed) == 1 and None not in fixed else None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on a batch: {input name: N x ... array} -> {output name: N x ... array}."""
        n = self._check_feeds(feeds)
        self.frames += n
        step = self.max_batch
        if step is None or n == step:
            self.calls += 1
            return self.infer_impl(feeds)
        if n % step:
            raise BackendError(f"{self.model_path.name}: batch {n} is not a multiple of the model's batch {step}")
        parts = []
        for i in range(0, n, step):
            self.calls += 1
            parts.append(self.infer_impl({k: v[i : i + step] for k, v in feeds.items()}))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def submit(self, feeds: dict[str, np.ndarray]):
        """Start a batch and return a ticket for `collect`. On a device stream this only enqueues the
        copies and the run; elsewhere (and for batches the device takes in several runs) it runs now."""
        if self.overlaps and self.fits_one_run(self._check_feeds(feeds)):
            self.frames += next(iter(feeds.values())).shape[0]
            self.calls += 1
            return self.submit_impl(feeds)
        return Done(self.infer(feeds))

    def collect(self, ticket) -> dict[str, np.ndarray]:
        """The outputs of a submitted batch, waiting for them if need be."""
        return ticket.outputs if isinstance(ticket, Done) else self.collect_impl(ticket)

    def fits_one_run(self, n: int) -> bool:
        step = self.max_batch
        return step is None or n == step

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> int:
        """The batch size, after checking the feeds against the model's inputs."""
        if not self._loaded:
            raise RuntimeError("engine used before load()")
        if set(feeds) != set(self.inputs):
            raise BackendError(f"{self.model_path.name}: expected inputs {sorted(self.inputs)}, got {sorted(feeds)}")
        n = None
        for name, arr in feeds.items():
            spec = self.inputs[name]
            if arr.ndim != len(spec.shape) or any(
                d is not None and d != a for d, a in zip(spec.shape[1:], arr.shape[1:], strict=True)
            ):
                raise BackendError(
                    f"{self.model_path.name}: input {name!r} shape {arr.shape} does not fit {spec.shape}"
                )
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise BackendError("inputs disagree on batch size")
        return n

    def describe(self) -> dict:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "model": self.model_path.name,
            "model_batch": "dynamic" if self.max_batch is None else self.max_batch,
        }

    # to implement ------------------------------------------------------------------
    def load_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close_impl(self) -> None:
        pass

    def submit_impl(self, feeds: dict[str, np.ndarray]):
        raise NotImplementedError

    def collect_impl(self, ticket) -> dict[str, np.ndarray]:
        raise NotImplementedError


# ONNX element types -> numpy (the ones our graphs use; anything else reads as float32)
NUMPY_OF_ONNX = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def graph_specs(model) -> tuple[dict, dict, dict[str, str]]:
    """Inputs (initializers apart), outputs (as TensorSpec: unknown dims None) and metadata of an
    ONNX ModelProto, without a runtime."""
    def spec(vi) -> TensorSpec:
        t = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)
        return TensorSpec(vi.name, shape, np.dtype(NUMPY_OF_ONNX.get(t.elem_type, "float32")))

    inits = {i.name for i in model.graph.initializer}
    ins = {v.name: spec(v) for v in model.graph.input if v.name not in inits}
    outs = {v.name: spec(v) for v in model.graph.output}
    return ins, outs, {p.key: p.value for p in model.metadata_props}
