"""What every benchmark records: the machine it ran on, and where its result goes."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def machine_info(threads: int) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "engine_threads": threads,
    }


def write_result(result: dict, out: str | None, filename: str) -> Path:
    """benchmarks/results/<host>-<date>/<filename> unless `out` names another folder."""
    folder = Path(out) if out else ROOT / "benchmarks" / "results" / f"{platform.node()}-{result['date']}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {path}")
    return path
