"""No GPU needed: tests/gpu build their plans into gpu-check's cache, never into fresh temporary
ones (each fresh cache rebuilt every plan on the GPU, minutes each)."""

import ast
from pathlib import Path

from streamseg import gpucheck
from tests.gpu.conftest import PLAN_CACHE_ENV, ROOT, plan_cache_dir

HERE = Path(__file__).resolve().parent


def _cache_arguments():
    for path in sorted(HERE.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "cache_dir":
                        yield path.name, node.lineno, ast.unparse(kw.value)


def test_every_plan_in_tests_gpu_goes_to_gpu_checks_cache():
    found = list(_cache_arguments())
    assert len(found) >= 4  # every engine the GPU tests open names a cache
    assert all(value in ("plan_cache", "str(plan_cache)") for _, _, value in found), found


def test_the_cache_is_the_one_gpu_check_names_else_its_default(monkeypatch, tmp_path):
    monkeypatch.setenv(PLAN_CACHE_ENV, str(tmp_path / "c"))
    assert plan_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(PLAN_CACHE_ENV)
    # `streamseg gpu-check` (default --out out/gpu-check.json, run from the root) fills out/gpu-check-cache
    assert plan_cache_dir() == ROOT / "out" / "gpu-check-cache"


def test_gpu_check_hands_its_cache_to_the_tests_gpu_step():
    """gpu-check's `pytest tests/gpu` subprocess gets the cache it built the plans into."""
    tree = ast.parse(Path(gpucheck.__file__).read_text())
    calls = [
        n for n in ast.walk(tree)
        if isinstance(n, ast.Call) and "pytest" in ast.unparse(n.args[0] if n.args else n) and "run" in ast.unparse(n.func)
    ]
    assert calls, "gpu-check no longer runs pytest tests/gpu"
    env = {kw.arg: ast.unparse(kw.value) for kw in calls[0].keywords}.get("env", "")
    assert f"'{PLAN_CACHE_ENV}': cache_dir" in env, env
