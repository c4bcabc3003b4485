"""The events sink: one JSON line per analytics event (streamseg.analytics), in the order the
frames leave the pipeline: `{type, stream, seq, pts_s, track_id, label, zone, metrics}`.

Chosen by `events:PATH` (or `events://PATH`), or by a file name ending in `.events.jsonl`.
The run needs an `analytics:` section: without one there would be no events to write.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.base import Sink, StreamInfo, check_writable, release_held

SUFFIX = ".events.jsonl"


class EventsSink(Sink):
    name = "events"
    needs_pixels = False

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri)
        self.path = Path(path)
        self.events = 0
        self._fh = None

    def attach(self, pipeline) -> None:
        if getattr(pipeline.cfg, "analytics", None) is None:
            raise SinkError(
                f"{self.uri}: an events sink needs an `analytics:` section in the config (see docs/analytics.md)"
            )

    def open(self, streams: dict[str, StreamInfo]) -> None:
        check_writable(self.path)
        try:
            self._fh = self.path.open("w", buffering=1 << 16)
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror or e}") from None
        release_held(self.path)

    def write_impl(self, frame: Frame) -> None:
        if not frame.events:
            return
        # one write and a flush per frame: a killed run leaves whole lines only
        self._fh.write("".join(json.dumps(e.to_dict(), separators=(",", ":")) + "\n" for e in frame.events))
        self._fh.flush()
        self.events += len(frame.events)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def describe(self) -> dict:
        return {**super().describe(), "events": self.events}
