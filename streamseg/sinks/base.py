"""The sink interface: `write()` one overlaid frame, as a context manager."""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from streamseg.errors import SinkError
from streamseg.frames import Frame


@dataclass(frozen=True)
class StreamInfo:
    stream_id: str
    fps: float | None
    size_wh: tuple[int, int] | None


class FrameDropped(Exception):
    """Raised by `write()` for a frame that did not reach its destination (a send failed) while
    the sink goes on: counted as the sink's drop `reason`, not as its failure."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason


class Sink:
    """Consumes finished frames on its own thread, behind its own queue.

    `lossless` sinks (files) make the pipeline wait in offline mode; others (previews)
    drop their oldest queued frame when they fall behind.
    """

    lossless = True
    name = "sink"
    needs_pixels = True  # False: results only (jsonl, null, eval) - the overlay is not drawn for it
    encodes = False  # True: an H.264 encoder of ours, which takes sinks[].size

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


def stream_path(path: Path, stream_id: str, n_streams: int) -> Path:
    """The file a video sink writes for one stream: `path` itself for a lone stream, else
    `STEM.STREAM.SUFFIX` beside it (o.mp4 -> o.front.mp4, o.rear.mp4)."""
    return path if n_streams == 1 else path.with_name(f"{path.stem}.{stream_id}{path.suffix}")


def check_writable(path: Path) -> list[Path]:
    """Make sure `path` can be written by really opening it, without losing anything already there.

    The file's folder is created if needed. An existing file is opened for appending and closed
    again: nothing is written, nothing truncated. A new file is created exclusively (O_EXCL, so it
    cannot be someone else's) and removed. Permission bits alone do not tell (`os.access` says yes
    to root in /proc). Errors are one-line SinkErrors; folders made for a probe that failed are
    removed again. Returns the folders it made (deepest first), for a caller that gives up later.
    """
    path = Path(path)
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder")
    parent = path.parent
    made = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_folders(made)
        raise SinkError(f"cannot write {path}: cannot create folder {parent}: {e.strerror or e}") from None
    try:
        _probe(path)
    except OSError as e:
        remove_folders(made)
        why = e.strerror or str(e)
        if e.errno == errno.ENOENT:  # the folder is there, yet refuses new names (/proc, /sys)
            why = f"{parent} does not take new files ({why})"
        raise SinkError(f"cannot write {path}: {why}") from None
    return made


# FIFOs a probe opened, held open until their real writer has opened them (release_held): closing
# the probe's end at once would hand a reader that is already there (`cat fifo`) an end of file
# before the run wrote a byte
_HELD: dict[str, int] = {}


def _probe(path: Path) -> None:
    flags = os.O_WRONLY | os.O_NONBLOCK  # non-blocking: a FIFO without a reader fails instead of hanging
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        key = os.path.realpath(path)
        if key in _HELD:
            return
        fd = os.open(path, flags | os.O_APPEND)  # there already: leave it exactly as it is
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            if not _HELD:
                atexit.register(release_held)
            _HELD[key] = fd
        else:
            os.close(fd)
        return
    os.close(fd)
    os.unlink(path)


def release_held(path: Path | str | None = None) -> None:
    """Close the probe's end of a FIFO (all of them: None), once its writer has its own open."""
    keys = list(_HELD) if path is None else [os.path.realpath(path)]
    for key in keys:
        fd = _HELD.pop(key, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def remove_folders(made: list[Path]) -> None:
    """Remove folders a probe made, where they are still empty."""
    for folder in made:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()
