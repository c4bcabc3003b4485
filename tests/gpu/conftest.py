"""tests/gpu build their TensorRT plans into gpu-check's engine cache, so the GPU step that runs
them (`streamseg gpu-check` runs `pytest tests/gpu` after building every plan) loads those plans
instead of building each one again (minutes per plan, from a GPU budget of minutes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# set by gpu-check for its `pytest tests/gpu` step: the cache it has just filled
PLAN_CACHE_ENV = "STREAMSEG_GPU_CHECK_CACHE"


def plan_cache_dir() -> Path:
    """gpu-check's cache: the one it names in the environment, else the one its default `--out
    out/gpu-check.json` (run from the project root, as `make gpu-check` does) fills."""
    named = os.environ.get(PLAN_CACHE_ENV)
    return Path(named) if named else ROOT / "out" / "gpu-check-cache"


@pytest.fixture(scope="session")
def plan_cache() -> Path:
    path = plan_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path
