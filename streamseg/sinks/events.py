"""The events sink: one JSON line per analytics event (streamseg.analytics), in the order the
frames leave the pipeline: `{type, stream, seq, pts_s, track_id, label, zone, metrics}`.

Chosen by `events:PATH` (or `events://PATH`), or by a file name ending in `.events.jsonl`.
The run needs an `analytics:` section: without one there would be no events to write.
A JSONL file like the results sink's (same opening and closing), with other lines in it.
"""

from __future__ import annotations

import json

from streamseg.errors import SinkError
from streamseg.frames import Frame
from streamseg.sinks.jsonl import JsonlSink

SUFFIX = ".events.jsonl"


class EventsSink(JsonlSink):
    name = "events"

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri, path)
        self.events = 0

    def attach(self, pipeline) -> None:
        if getattr(pipeline.cfg, "analytics", None) is None:
            raise SinkError(
                f"{self.uri}: an events sink needs an `analytics:` section in the config (see docs/analytics.md)"
            )

    def write_impl(self, frame: Frame) -> None:
        if not frame.events:
            return
        # one write and a flush per frame: a killed run leaves whole lines only
        self._fh.write("".join(json.dumps(e.to_dict(), separators=(",", ":")) + "\n" for e in frame.events))
        self._fh.flush()
        self.events += len(frame.events)

    def describe(self) -> dict:
        return {**super().describe(), "events": self.events}
