"""`null://`: discards frames (benchmarks, report-only runs)."""

from streamseg.frames import Frame
from streamseg.sinks.base import Sink


class NullSink(Sink):
    name = "null"

    def write_impl(self, frame: Frame) -> None:
        pass
