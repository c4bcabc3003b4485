"""API contract: every `tensorrt` name the backend and its test double use exists in the real
Python bindings of TensorRT 10.x and 11.x.

The snapshots (tests/backends/tensorrt_names/VERSION.txt) are the identifier strings of
`tensorrt_bindings/tensorrt.so` in the `tensorrt-cu12-bindings` wheels (regenerate.py beside them
downloads and extracts them). pybind11 keeps every class, method, attribute and enum member name
as a C string; the linker merges a string into a longer one that ends with it ("Logger" lives in
"ILogger", "INT8" in "UINT8"), so a name counts as present when some snapshot string ends with it.
"""

from __future__ import annotations

import ast
import enum
import inspect
from pathlib import Path

import pytest

from tests.backends import fake_tensorrt as fake

HERE = Path(__file__).resolve().parent
BACKEND_FILES = [
    HERE.parent.parent / "streamseg" / "backends" / "tensorrt.py",
    HERE.parent.parent / "streamseg" / "backends" / "tensorrt_build.py",
]
SNAPSHOT = {10: "10.16.1.11", 11: "11.4.0.106"}
# used only where a TensorRT lacks STRONGLY_TYPED (tensorrt_build.build_plan's weak-typing branch)
WEAK_TYPING_ONLY = {"FP16", "INT8"}


def names(api: int) -> set[str]:
    return set((HERE / "tensorrt_names" / f"{SNAPSHOT[api]}.txt").read_text().split())


def present(name: str, snapshot: set[str]) -> bool:
    return name in snapshot or any(s.endswith(name) for s in snapshot)


def double_surface(api: int, monkeypatch) -> set[str]:
    """Every public name the double's `tensorrt` module offers, with its classes' members."""
    trt = fake.install(monkeypatch, api=api)
    out = set()
    for name in fake.MODULE_NAMES:
        out.add(name)
        obj = getattr(trt, name)
        if inspect.isclass(obj) and issubclass(obj, enum.Enum):
            out.update(obj.__members__)
        elif inspect.isclass(obj):
            out.update(k for k in vars(obj) if not k.startswith("_"))
    # objects the real API hands back (network, parser results, config, profile, engine, context)
    for cls in (fake._Network, fake._Config, fake._Profile, fake._Engine, fake._Context, fake._Tensor):
        out.update(k for k in vars(cls) if not k.startswith("_"))
    inner = {"inputs", "outputs", "path", "strongly_typed", "precision", "flags", "pools", "profiles", "timing"}
    inner |= {"plan", "io", "session", "input_shapes", "addresses", "executions", "engine", "shapes", "errors"}
    inner |= {"network", "data", "level"}
    return out - inner - {"__version__"} | {"__version__"}


def backend_trt_names() -> set[str]:
    """`trt.X.Y...` attribute chains in the backend's source: every link of them."""
    found = set()
    for path in BACKEND_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                chain, cur = [], node
                while isinstance(cur, ast.Attribute):
                    chain.append(cur.attr)
                    cur = cur.value
                if isinstance(cur, ast.Name) and cur.id == "trt":
                    found.update(chain)
    return found


@pytest.mark.parametrize("api", [10, 11])
def test_the_double_offers_nothing_the_real_bindings_lack(api, monkeypatch):
    snapshot = names(api)
    missing = sorted(n for n in double_surface(api, monkeypatch) if not present(n, snapshot))
    assert not missing, f"the TensorRT {SNAPSHOT[api]} double offers names the real module lacks: {missing}"


@pytest.mark.parametrize("api", [10, 11])
def test_every_trt_name_the_backend_uses_exists(api):
    used = backend_trt_names()
    assert {"Builder", "OnnxParser", "Runtime", "NetworkDefinitionCreationFlag", "nptype"} <= used
    need = used - WEAK_TYPING_ONLY if api == 11 else used
    missing = sorted(n for n in need if not present(n, names(api)))
    assert not missing, f"the backend uses names TensorRT {SNAPSHOT[api]} lacks: {missing}"


def test_tensorrt_11_removed_the_weak_typing_and_calibration_api():
    """The facts the strongly typed design rests on, read from the wheels."""
    ten, eleven = names(10), names(11)
    for gone in ("FP16", "EXPLICIT_BATCH", "IInt8EntropyCalibrator2", "int8_calibrator"):
        assert present(gone, ten) and not present(gone, eleven), gone
    for kept in ("STRONGLY_TYPED", "NetworkDefinitionCreationFlag", "execute_async_v3", "set_tensor_address"):
        assert present(kept, ten) and present(kept, eleven), kept


def test_the_weak_typing_branch_is_only_for_a_tensorrt_without_strong_typing(monkeypatch):
    from streamseg.backends.tensorrt_build import strongly_typed_flag

    for api in (10, 11):
        trt = fake.install(monkeypatch, api=api)
        assert strongly_typed_flag(trt) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert not hasattr(fake.BuilderFlag11, "FP16") and not hasattr(fake.BuilderFlag11, "INT8")
