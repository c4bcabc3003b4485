"""The files a run writes, checked before any frame is read.

Every output is planned from the config: the report, the latency plot, and each file sink's
file for every stream. Two outputs that come to one file are refused (paths compared
resolved: `x.mp4` and `./x.mp4`, symlinks, hard links), and each one is probed by really
opening it (`sinks.base.check_writable`), so a mistake is one line and exit 2 at start-up,
not a traceback after the run. Nothing already on disk is changed by the checks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from streamseg.config import Config
from streamseg.errors import UserError
from streamseg.sinks import open_sink, sink_file
from streamseg.sinks.base import check_writable, release_held, remove_folders, stream_path


@dataclass(frozen=True)
class Output:
    what: str  # how the user named it: "sink 'out.mp4'", "metrics.report 'r.json'"
    path: Path  # the file the run writes


def planned_outputs(cfg: Config) -> list[Output]:
    """Every file the run will write, in config order. Sink URIs are parsed (a bad one is an error)."""
    stream_ids = [sc.id or f"cam{i}" for i, sc in enumerate(cfg.sources)]
    outputs = []
    for sc in cfg.sinks:
        open_sink(sc.uri, sc)  # unopened: only checks the URI, early
        path = sink_file(sc.uri)
        if path is None:
            continue
        if path.suffix.lower() == ".jsonl" or len(stream_ids) <= 1:  # one file for all streams
            outputs.append(Output(f"sink {sc.uri!r}", path))
        else:  # video: one file per stream
            outputs += [
                Output(f"sink {sc.uri!r} (stream {sid})", stream_path(path, sid, len(stream_ids))) for sid in stream_ids
            ]
    if cfg.metrics.report:
        outputs.append(Output(f"metrics.report {cfg.metrics.report!r}", Path(cfg.metrics.report)))
    if cfg.metrics.plot:
        outputs.append(Output(f"metrics.plot {cfg.metrics.plot!r}", Path(cfg.metrics.plot)))
    return outputs


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False


def check_outputs(cfg: Config) -> list[Output]:
    """Refuse two outputs writing one file, then probe each; returns the plan."""
    outputs = planned_outputs(cfg)
    for i, a in enumerate(outputs):
        for b in outputs[:i]:
            if _same_file(a.path, b.path):
                raise UserError(
                    f"{b.what} and {a.what} both write {a.path.resolve()}: give each output its own file"
                )
    made: list[Path] = []
    try:
        for out in outputs:
            made = check_writable(out.path) + made
    except UserError:
        remove_folders(made)  # a refused run leaves no trace
        raise
    return outputs


def report_scratch(path: Path) -> Path | None:
    """The sibling a report is written to before it replaces `path` in one step (so a report is
    never half written), or None where `path` is not a regular file (/dev/stdout): written in place."""
    if path.exists() and not path.is_file():
        return None
    return path.with_name(path.name + ".tmp")


def write_report(path: Path, report: dict) -> None:
    text = json.dumps(report, indent=2) + "\n"
    tmp = report_scratch(path)
    if tmp is None:
        with open(path, "w") as fh:
            release_held(path)  # a FIFO: this is its writer now
            fh.write(text)
        return
    tmp.write_text(text)
    tmp.replace(path)
