"""`null://`: discards frames (benchmarks, report-only runs)."""

from streamseg.frames import Frame
from streamseg.sinks.base import Sink


class NullSink(Sink):
    name = "null"
    needs_pixels = False

    def write_impl(self, frame: Frame) -> None:
        pass
