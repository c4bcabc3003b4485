"""benchmarks/engines.py records which backends the machine has, not every registered one."""

import importlib.machinery
import importlib.util
import json
import sys

import pytest

from streamseg.backends import BACKENDS
from tests.conftest import ROOT


@pytest.fixture
def engines_script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_engines", ROOT / "benchmarks" / "engines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(module, monkeypatch, out):
    # no model matches: nothing is timed, the result file is still written
    monkeypatch.setattr(sys, "argv", ["engines.py", "--no-int8", "--models", "no such model", "--out", str(out)])
    assert module.main() == 0
    return json.loads((out / "engines.json").read_text())


def test_backends_present_are_the_installed_ones(engines_script, monkeypatch, tmp_path):
    installed = sorted(n for n, (_, _, runtime) in BACKENDS.items() if importlib.util.find_spec(runtime))
    result = run_main(engines_script, monkeypatch, tmp_path)
    assert result["backends_present"] == installed and "onnxruntime" in installed
    assert result["rows"] == []
    if "tensorrt" not in installed:  # this machine: tensorrt is registered, not installed
        assert result["tensorrt"] == "not measured: TensorRT is not installed here"


@pytest.mark.parametrize(
    "missing, present, tensorrt",
    [
        ({"tensorrt", "onnx2torch"}, ["onnxruntime", "openvino"], "not measured: TensorRT is not installed here"),
        ({"tensorrt", "openvino", "onnx2torch"}, ["onnxruntime"], "not measured: TensorRT is not installed here"),
        ({"onnx2torch"}, ["onnxruntime", "openvino", "tensorrt"], "not measured: this script times the CPU backends only"),
    ],
)
def test_backends_present_follow_what_can_be_imported(engines_script, monkeypatch, tmp_path, missing, present, tensorrt):
    real = importlib.util.find_spec

    def find_spec(name, *a, **kw):
        if name in missing:
            return None
        if name in ("tensorrt", "openvino"):  # pretend it is installed; nothing imports it here
            return importlib.machinery.ModuleSpec(name, None)
        return real(name, *a, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert engines_script.backends_present() == present
    monkeypatch.setattr(engines_script, "variants", lambda: [("onnxruntime", "fp32")])
    result = run_main(engines_script, monkeypatch, tmp_path)
    assert result["backends_present"] == present and result["tensorrt"] == tensorrt


def test_gate_only_writes_the_verdicts_and_times_nothing(engines_script, monkeypatch, tmp_path):
    verdict = {"model": "synth-instance (bundled)", "backend": "onnxruntime", "quantizer": "nncf", "refused": "..."}
    monkeypatch.setattr(engines_script, "build_int8_variants", lambda models, cache, threads: ({}, [verdict]))

    def no_timing(*a, **kw):
        raise AssertionError("--gate-only timed an engine")

    monkeypatch.setattr(engines_script, "time_one", no_timing)
    monkeypatch.setattr(sys, "argv", ["engines.py", "--gate-only", "--models", "synth", "--out", str(tmp_path)])
    assert engines_script.main() == 0
    result = json.loads((tmp_path / "int8_gate.json").read_text())
    assert result["benchmark"] == "engines-int8-gate" and result["int8_gate"] == [verdict]
    assert sorted(result["models"]) == ["synth-instance (bundled)", "synth-semantic (bundled)"]
    assert not (tmp_path / "engines.json").exists()


def test_bf16_is_timed_only_where_the_cpu_has_it(engines_script, monkeypatch):
    """The variants follow streamseg.cpu.cpu_features: a Zen 3 (no bf16) times no openvino bf16."""
    pytest.importorskip("openvino")
    from streamseg import cpu

    for flags, has_bf16 in (("avx2 fma", False), ("avx2 avx512f avx512_bf16", True)):
        monkeypatch.setenv(cpu.CPU_FLAGS_ENV, flags)
        cpu.reset_cpu_features()
        assert (("openvino", "bf16") in engines_script.variants()) is has_bf16
        assert ("openvino", "fp32") in engines_script.variants()
    monkeypatch.delenv(cpu.CPU_FLAGS_ENV)
    cpu.reset_cpu_features()
