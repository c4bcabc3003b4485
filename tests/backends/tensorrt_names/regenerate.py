"""Regenerate the TensorRT API name snapshots this folder holds, from the real wheels.

    python tests/backends/tensorrt_names/regenerate.py [VERSION ...]

For each version: `pip download --no-deps tensorrt-cu12-bindings==VERSION` (cp311, manylinux
x86_64; the matching `-libs` wheel is not needed, and cannot be had from the registry here),
then every identifier-like string in `tensorrt_bindings/tensorrt.so` (what `strings` shows:
pybind11 keeps each class, method, attribute and enum member name as a C string) plus the names
the package's Python `__init__.py` defines (nptype, volume, ...). Mangled C++ symbols (_Z...) are
left out. One name a line, sorted, in VERSION.txt.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS = ["10.16.1.11", "11.4.0.106"]
IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


def names_of(so: bytes, init_py: str) -> list[str]:
    found = set()
    for run in re.findall(rb"[\x20-\x7e]{2,}", so):  # what `strings -n 2` prints, one run at a time
        if IDENT.fullmatch(run) and not run.startswith(b"_Z"):
            found.add(run.decode())
    tree = ast.parse(init_py)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Assign):
            found.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return sorted(found)


def main(versions: list[str]) -> int:
    for v in versions:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux_2_17_x86_64", f"tensorrt-cu12-bindings=={v}", "-d", tmp,
                ],
                check=True,
            )
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as z:
                so = z.read("tensorrt_bindings/tensorrt.so")
                init_py = z.read("tensorrt_bindings/__init__.py").decode()
        names = names_of(so, init_py)
        (HERE / f"{v}.txt").write_text("\n".join(names) + "\n")
        print(f"{v}: {len(names)} names -> {HERE / f'{v}.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or VERSIONS))
