"""Start-up checks of the files a run writes (streamseg.outputs): clashes and real probes."""

import os

import pytest

from streamseg.config import validate_config
from streamseg.errors import UserError
from streamseg.outputs import check_outputs, planned_outputs


def cfg(tmp_path, sinks, sources=1, report=None, plot=None):
    return validate_config(
        {
            "sources": [f"synthetic://driving?seed={i}" for i in range(sources)],
            "sinks": [s.format(tmp=tmp_path) for s in sinks],
            "metrics": {"report": report and report.format(tmp=tmp_path), "plot": plot and plot.format(tmp=tmp_path)},
        }
    )


def test_one_file_per_stream_is_planned_for_video_sinks(tmp_path):
    c = cfg(tmp_path, ["{tmp}/o.mp4", "{tmp}/o.jsonl", "null://"], sources=2, report="{tmp}/r.json")
    assert [o.path.name for o in planned_outputs(c)] == ["o.cam0.mp4", "o.cam1.mp4", "o.jsonl", "r.json"]


@pytest.mark.parametrize(
    "sinks, sources, report",
    [
        (["{tmp}/x.mp4", "{tmp}/./x.mp4"], 1, None),
        (["{tmp}/x.mp4", "{tmp}/alias/x.mp4"], 1, None),  # alias: a symlink to tmp
        (["{tmp}/x.mp4", "{tmp}/hard.mp4"], 1, None),  # hard.mp4: a hard link to x.mp4
        (["{tmp}/o.mp4"], 2, "{tmp}/o.cam1.mp4"),  # the report on a per-stream file
        (["{tmp}/r.jsonl"], 1, "{tmp}/sub/../r.jsonl"),
    ],
)
def test_two_outputs_one_file_are_refused(tmp_path, sinks, sources, report):
    (tmp_path / "alias").symlink_to(tmp_path)
    (tmp_path / "x.mp4").write_bytes(b"kept")
    os.link(tmp_path / "x.mp4", tmp_path / "hard.mp4")
    with pytest.raises(UserError, match="both write"):
        check_outputs(cfg(tmp_path, sinks, sources, report))
    assert (tmp_path / "x.mp4").read_bytes() == b"kept"


def test_probes_leave_nothing_behind(tmp_path):
    (tmp_path / "old.mp4").write_bytes(b"earlier")
    os.mkfifo(tmp_path / "fifo.jsonl")  # no reader: a blocking open would hang here
    with pytest.raises(UserError, match="cannot write .*fifo.jsonl"):
        check_outputs(cfg(tmp_path, ["{tmp}/old.mp4", "{tmp}/a/b/new.mp4", "{tmp}/fifo.jsonl"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.jsonl", "old.mp4"]  # a/b made, then removed
    check_outputs(cfg(tmp_path, ["{tmp}/old.mp4", "{tmp}/a/b/new.mp4"], plot="{tmp}/p.png"))
    assert (tmp_path / "old.mp4").read_bytes() == b"earlier"
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    assert not (tmp_path / "p.png").exists()


def test_a_fifo_with_its_reader_there_sees_no_end_of_file_before_the_run_wrote(tmp_path):
    """`cat fifo.jsonl` started first: the start-up probe must not hand it an end of file (it
    would stop before the first line); the probe's end is held until the sink has its own."""
    from streamseg.sinks import open_sink
    from streamseg.sinks.base import _HELD

    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        check_outputs(cfg(tmp_path, ["{tmp}/fifo.jsonl"]))
        with pytest.raises(BlockingIOError):  # a writer is there, nothing written: no end of file
            os.read(reader, 100)
        sink = open_sink(str(fifo))
        with sink:
            sink.open({})
            assert str(fifo.resolve()) not in _HELD  # the sink writes it now; the probe let go
            with pytest.raises(BlockingIOError):
                os.read(reader, 100)
        assert os.read(reader, 100) == b""  # the sink closed: now the end of file
    finally:
        os.close(reader)
