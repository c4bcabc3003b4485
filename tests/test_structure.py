"""The house stays easy to live in (issue 28, section 3): the Pipeline class reads in one screen,
and the package has no import circles: a lower layer never imports a higher one (STYLE.md, 12).

Every `import streamseg...` anywhere in a module counts, inside functions and under
TYPE_CHECKING too: a lazy import still ties the two modules together."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, checkout_env

PACKAGE = ROOT / "streamseg"


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the streamseg modules it imports (`from streamseg.x import name` counts as
    streamseg.x.name when that is a module, else as streamseg.x)."""
    mods = modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [known(a.name) for a in node.names if a.name.startswith("streamseg")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("streamseg"):
                targets = [known(f"{node.module}.{a.name}") for a in node.names]
            else:
                continue
            graph[m].update(t for t in targets if t and t != m)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_check_finds_a_circle_when_there_is_one():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    graph = import_graph()
    assert "streamseg.report" in graph["streamseg.pipeline"] and "streamseg.api" in graph["streamseg.pipeline"]


def test_the_former_circles_import_alone_in_a_fresh_interpreter():
    """Each side of the two circles there were imports first, in a new process."""
    for mod in (
        "streamseg.sources.gst",
        "streamseg.sources",
        "streamseg.report",
        "streamseg.pipeline",
        "streamseg.api",
    ):
        r = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True, env=checkout_env())
        assert r.returncode == 0, (mod, r.stderr[-2000:])


def test_the_pipeline_class_reads_in_one_screen():
    tree = ast.parse((PACKAGE / "pipeline.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Pipeline"]
    assert cls.end_lineno - cls.lineno + 1 <= 250
