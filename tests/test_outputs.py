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


# a refused run loses nothing --------------------------------------------------------------


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("failing", ["http", "rtsp", "prometheus", "display"])
def test_a_refused_run_leaves_every_existing_file_byte_for_byte(tmp_path, video, failing, reliability):
    """Every resource a run needs (ports, the display) is acquired before any existing file
    is opened for writing: files listed before and after the failing sink keep their bytes."""
    import hashlib
    import socket

    from tests.conftest import checkout_env, run_streamseg

    if failing == "rtsp":
        from streamseg import gst

        if not gst.available():
            pytest.skip("GStreamer/PyGObject not installed")
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # another program holds the port
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    old = {
        "before.jsonl": b'{"seq": 0}\n' * 30,
        "before.mp4": video.read_bytes(),
        "after.jsonl": b'{"seq": 1}\n' * 30,
        "after.mp4": video.read_bytes(),
        "r.json": b'{"frames": {}}\n',
    }
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    sink = {
        "http": f"http://127.0.0.1:{port}",
        "rtsp": f"rtsp://127.0.0.1:{port}/live",
        "prometheus": None,
        "display": "display://",
    }[failing]
    sinks = [tmp_path / "before.jsonl", tmp_path / "before.mp4", sink, tmp_path / "after.jsonl", tmp_path / "after.mp4"]
    args = ["run", "--source", video, "--max-frames", "5", "--report", tmp_path / "r.json", "--no-progress"]
    for s in sinks:
        if s is not None:
            args += ["--sink", s]
    if failing == "prometheus":
        (tmp_path / "c.yaml").write_text(f"metrics:\n  prometheus: 127.0.0.1:{port}\n")
        args += ["-c", tmp_path / "c.yaml"]
    env = checkout_env()
    if failing == "display":
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
    try:
        r = run_streamseg(*args, cwd=tmp_path, env=env)
    finally:
        taken.close()
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("streamseg: error: ")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "c.yaml") == sorted(old)
    for name, data in old.items():
        assert _sha256(tmp_path / name) == hashlib.sha256(data).hexdigest(), name
    what = {
        "http": "an http:// sink on a port already taken",
        "rtsp": "an rtsp:// sink on a port already taken",
        "prometheus": "metrics.prometheus on a port already taken",
        "display": "display:// with no display",
    }[failing]
    reliability(
        f"{what}, with .jsonl/.mp4 sinks and a report from an earlier run listed before and after it",
        "one line, exit 2; every port and the display are acquired before any file is opened for writing",
        "- (every existing file byte for byte as it was, sha256)",
    )
