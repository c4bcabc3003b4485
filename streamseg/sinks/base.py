"""The sink interface: `write()` one overlaid frame, as a context manager."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamseg.errors import SinkError
from streamseg.frames import Frame


@dataclass(frozen=True)
class StreamInfo:
    stream_id: str
    fps: float | None
    size_wh: tuple[int, int] | None


class Sink:
    """Consumes finished frames on its own thread, behind its own queue.

    `lossless` sinks (files) make the pipeline wait in offline mode; others (previews)
    drop their oldest queued frame when they fall behind.
    """

    lossless = True
    name = "sink"
    needs_pixels = True  # False: results only (jsonl, null, eval) - the overlay is not drawn for it

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.written = 0

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def attach(self, pipeline) -> None:
        """The pipeline this sink serves; sinks that report on it (the preview) keep it."""

    def open(self, streams: dict[str, StreamInfo]) -> None:
        """Check the destination and prepare; errors are SinkErrors naming the problem."""

    def write(self, frame: Frame) -> None:
        self.write_impl(frame)
        self.written += 1

    def write_impl(self, frame: Frame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"uri": self.uri, "kind": self.name, "written": self.written}


def check_writable(path: Path) -> None:
    """Create the file's folder if needed and make sure the file can be written there."""
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SinkError(f"cannot write {path}: cannot create folder {parent}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SinkError(f"cannot write {path}: permission denied")
