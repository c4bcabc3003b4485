import json
import time

import cv2
import numpy as np
import pytest

from streamseg.errors import SinkError
from streamseg.frames import Frame, Instances, SemanticResult
from streamseg.sinks import StreamInfo, open_sink


def frame(sid="cam0", seq=0, wh=(32, 24)):
    w, h = wh
    f = Frame(sid, seq, seq / 10, np.full((h, w, 3), 60, np.uint8), time.perf_counter_ns())
    gm = np.zeros((h, w), np.uint8)
    gm[h // 2 :] = 1
    f.semantic = SemanticResult(gm.copy(), ["background", "drivable"], gm, ["road"])
    masks = np.zeros((1, h, w), bool)
    masks[0, 2:6, 3:9] = True
    f.instances = Instances(
        np.array([[3, 2, 9, 6]], np.float32),
        masks,
        np.array([2], np.int32),
        np.array([0.8], np.float32),
        ["car"],
        ["car"],
    )
    f.stamp("decode")
    f.overlay_bgr = f.image_bgr.copy()
    return f


@pytest.mark.parametrize(
    "uri, error",
    [
        ("out.txt", "cannot tell what to write"),
        ("tcp://x", "unknown sink scheme 'tcp://'.*known: display://, events://, file://, http://, null://, rtp://, rtsp://"),
        ("http://h:99999?token=hunter2", r"http://h:99999\?token=\*\*\*: expected HOST:PORT"),
        ("out.webm", "cannot tell what to write"),
    ],
)
def test_bad_sink_uris(uri, error):
    with pytest.raises(SinkError, match=error):
        open_sink(uri)


@pytest.mark.parametrize("name", ["a.mp4", "a.jsonl"])
def test_unwritable_destination(tmp_path, name):
    (tmp_path / "file").write_text("x")
    sink = open_sink(str(tmp_path / "file" / name))  # a folder that is a file
    with pytest.raises(SinkError, match="cannot write"):
        sink.open({"cam0": StreamInfo("cam0", 10, (32, 24))})


def test_jsonl_lines(tmp_path):
    p = tmp_path / "deep" / "r.jsonl"
    sink = open_sink(str(p))
    with sink:
        sink.open({"cam0": StreamInfo("cam0", 10, (32, 24))})
        for i in range(3):
            sink.write(frame(seq=i))
    lines = [json.loads(line) for line in p.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [0, 1, 2]
    r = lines[1]
    assert r["stream"] == "cam0" and r["pts"] == 0.1 and r["size_wh"] == [32, 24]
    assert r["groups"] == {"road": 0.5}
    assert r["instances"] == [
        {"label": "car", "group": "car", "class_id": 2, "score": 0.8, "xyxy": [3.0, 2.0, 9.0, 6.0], "mask_area": 24}
    ]
    assert "decode" in r["latency_ms"]


def test_video_one_file_per_stream(tmp_path):
    sink = open_sink(str(tmp_path / "o.mp4"))
    streams = {s: StreamInfo(s, 10, (32, 24)) for s in ("front", "rear")}
    with sink:
        sink.open(streams)
        for i in range(5):
            sink.write(frame("front", i))
            sink.write(frame("rear", i, wh=(40, 30) if i == 2 else (32, 24)))  # odd size: resized
    for s in streams:
        cap = cv2.VideoCapture(str(tmp_path / f"o.{s}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
        assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (32, 24)


def test_registry_takes_new_schemes_like_the_sources(tmp_path):
    """Sinks and sources share one registry shape: register(scheme, factory(uri, rest, query, options))."""
    from streamseg.sinks import SINKS, register
    from streamseg.sinks.null import NullSink
    from streamseg.sources import SOURCES

    assert type(SINKS) is type(SOURCES)
    seen = []

    def factory(uri, rest, query, options):
        seen.append((rest, query, options))
        return NullSink(uri)

    register("testsink", factory)
    try:
        assert isinstance(open_sink("testsink://a/b?x=1", "opts"), NullSink)
        assert seen == [("a/b", {"x": "1"}, "opts")]
        assert "testsink://" in str(pytest.raises(SinkError, open_sink, "nope://x").value)
    finally:
        SINKS.unregister("testsink")


def test_preview_limits_come_from_a_configs_sink_and_the_uri_wins():
    from streamseg.config import SinkConfig
    from streamseg.sinks import open_sink

    opts = SinkConfig(uri="http://127.0.0.1:8080", max_clients=3, read_timeout_s=2.5)
    sink = open_sink("http://127.0.0.1:8080", opts)
    assert (sink.max_clients, sink.read_timeout_s) == (3, 2.5)
    sink = open_sink("http://127.0.0.1:8080?max_clients=5", opts)
    assert (sink.max_clients, sink.read_timeout_s) == (5, 2.5)
    sink = open_sink("http://127.0.0.1:8080")
    assert (sink.max_clients, sink.read_timeout_s) == (32, 10.0)  # the defaults
