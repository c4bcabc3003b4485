"""The engine layer stands alone: no module in streamseg/backends imports models, quantize or the
pipeline, not even inside a function (issue 19: the circle backends <-> cache <-> tensorrt <->
models <-> quantize)."""

import ast
import subprocess
import sys
from pathlib import Path

BACKENDS = Path(__file__).resolve().parents[2] / "streamseg" / "backends"
HIGHER = ("streamseg.models", "streamseg.quantize", "streamseg.pipeline", "streamseg.cli", "streamseg.bench")


def test_no_backend_module_imports_a_higher_layer():
    offenders = []
    for path in sorted(BACKENDS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(HIGHER)]
    assert not offenders, offenders


def test_importing_the_backends_loads_no_model_code():
    code = (
        "import sys, streamseg.backends, streamseg.backends.cache, streamseg.backends.tensorrt, "
        "streamseg.backends.tensorrt_build, streamseg.backends.onnxruntime, streamseg.backends.openvino; "
        "print(sorted(m for m in sys.modules if m.startswith('streamseg.') and not m.startswith('streamseg.backends')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['streamseg.errors']"
