"""`results.jsonl`: one JSON line per frame with its instances, group areas and timestamps."""

from __future__ import annotations

import json
from pathlib import Path

from streamseg.errors import SinkError
from streamseg.frames import NO_TRACK, Frame
from streamseg.sinks.base import Sink, StreamInfo, check_writable, release_held


def _track_id(tid) -> int | None:
    return None if tid == NO_TRACK else int(tid)


def frame_record(frame: Frame) -> dict:
    rec = {
        "stream": frame.stream_id,
        "seq": frame.seq,
        "pts": round(frame.pts, 6),
        "size_wh": list(frame.size_wh),
        "capture_ns": frame.capture_ns,
        "latency_ms": {k: round(v, 3) for k, v in frame.stage_ms().items()},
    }
    if frame.semantic is not None:
        rec["groups"] = {k: round(v, 5) for k, v in frame.semantic.group_fractions().items()}
    if frame.instances is not None:
        inst = frame.instances
        areas = inst.mask_areas()
        rec["instances"] = [
            {
                "label": inst.labels[k],
                "group": inst.groups[k],
                "class_id": int(inst.class_id[k]),
                "score": round(float(inst.score[k]), 4),
                "xyxy": [round(float(v), 1) for v in inst.xyxy[k]],
                "mask_area": int(areas[k]),
                # null: tracking is on but this detection is in no track (yet)
                **({"track_id": _track_id(inst.track_id[k])} if inst.track_id is not None else {}),
            }
            for k in range(len(inst))
        ]
    if frame.events:  # what the analytics stage raised on this frame
        rec["events"] = [e.to_dict() for e in frame.events]
    return rec


class JsonlSink(Sink):
    name = "jsonl"
    needs_pixels = False

    def __init__(self, uri: str, path: str) -> None:
        super().__init__(uri)
        self.path = Path(path)
        self._fh = None

    def open(self, streams: dict[str, StreamInfo]) -> None:
        check_writable(self.path)
        try:
            self._fh = self.path.open("w", buffering=1 << 16)
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror or e}") from None
        release_held(self.path)  # a FIFO: this is its writer now

    def write_impl(self, frame: Frame) -> None:
        # one write and a flush per line: a killed run leaves whole lines only
        self._fh.write(json.dumps(frame_record(frame), separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
