"""What every benchmark records: the machine it ran on, and where its result goes."""

from __future__ import annotations

import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the bundled models' cards, by engine task: what most benchmarks run
BUNDLED_CARDS = {
    "semantic": str(ROOT / "engines" / "synth-semantic.yaml"),
    "instance": str(ROOT / "engines" / "synth-instance.yaml"),
}


def machine_info(threads: int) -> dict:
    from streamseg.bench import machine_info as info

    return info(engine_threads=threads)


def write_result(result: dict, out: str | None, filename: str) -> Path:
    """benchmarks/results/<host>-<date>/<filename> unless `out` names another folder."""
    folder = Path(out) if out else ROOT / "benchmarks" / "results" / f"{platform.node()}-{result['date']}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {path}")
    return path
