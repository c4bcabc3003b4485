"""The preview/metrics HTTP server: routes, token, MJPEG, Prometheus text (no browser here; see
tests/sinks/test_http_preview.py for the page in real Chromium)."""

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from streamseg.web import Frames, WebServer, prometheus_text


class FakePipeline:
    def live_stats(self):
        return {
            "fps": 25.0,
            "end_to_end": {"p50": 40.0, "p99": 90.0},
            "stages": {"decode": {"p50": 3.0, "p99": 5.0}},
            "frames": {"in": 10, "out": 9, "dropped": {"queue_full": 1}, "decode_errors": 0},
            "streams": {"cam0": {"frames_out": 9, "reconnects": 0}},
        }

    def metric_samples(self):
        return {
            "frames_in": {"cam0": 10},
            "frames_out": {"cam0": 9},
            "dropped": {"queue_full": 1},
            "decode_errors": 2,
            "reconnects": {"cam0": 1},
            "fps": 25.0,
            "stages": {"decode": np.array([1.0, 3.0, 30.0]), "infer": np.array([20.0, 20.0, 600.0])},
            "end_to_end": np.array([40.0, 50.0, 700.0]),
        }


@pytest.fixture
def server():
    frames = Frames()
    srv = WebServer("127.0.0.1", 0, FakePipeline(), frames=frames, token="s3cret")
    srv.start()
    yield srv
    srv.stop()


def get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    return urllib.request.urlopen(req, timeout=timeout)


def test_token_required_everywhere(server):
    for path in ("", "stats", "metrics", "stream/cam0.mjpg", "snapshot/cam0.jpg"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(server.url + path)
        assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            get(server.url + path + "?token=wrong")
    assert json.load(get(server.url + "stats?token=s3cret"))["fps"] == 25.0
    assert json.load(get(server.url + "stats", {"Authorization": "Bearer s3cret"}))["frames"]["out"] == 9


def test_binds_loopback_by_default():
    srv = WebServer("", 0, FakePipeline())
    srv.start()
    try:
        assert srv.host == "127.0.0.1" and srv.url.startswith("http://127.0.0.1:")
    finally:
        srv.stop()


def test_metrics_parse_as_prometheus_text(server):
    from prometheus_client.parser import text_string_to_metric_families

    text = get(server.url + "metrics?token=s3cret").read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "streamseg_frames_in",
        "streamseg_frames_dropped",
        "streamseg_decode_errors",
        "streamseg_reconnects",
    } <= set(fams)
    lat = fams["streamseg_stage_latency_seconds"]
    buckets = {(s.labels["stage"], s.labels["le"]): s.value for s in lat.samples if s.name.endswith("_bucket")}
    assert buckets[("decode", "0.005")] == 2 and buckets[("decode", "+Inf")] == 3  # 1 ms, 3 ms <= 5 ms; 30 ms not
    assert buckets[("infer", "0.025")] == 2 and buckets[("infer", "1.0")] == 3
    e2e = fams["streamseg_end_to_end_latency_seconds"]
    total = [s.value for s in e2e.samples if s.name.endswith("_sum")][0]
    assert total == pytest.approx(0.79)


def test_prometheus_text_counts():
    text = prometheus_text(FakePipeline().metric_samples()).decode()
    assert 'streamseg_frames_dropped_total{reason="queue_full"} 1.0' in text
    assert "streamseg_decode_errors_total 2.0" in text


def test_mjpeg_sends_only_new_frames_and_a_slow_client_never_blocks_put(server, reliability):
    frames = server.frames
    img = np.zeros((48, 64, 3), np.uint8)
    frames.put("cam0", img)
    resp = get(server.url + "stream/cam0.mjpg?token=s3cret")
    assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    head = [resp.readline() for _ in range(3)]
    assert head[0] == b"--frame\r\n" and head[1] == b"Content-Type: image/jpeg\r\n"
    n = int(head[2].split(b":")[1])
    resp.readline()
    assert resp.read(n)[:2] == b"\xff\xd8"
    # a client that stops reading: put() stays instant (nothing is written on the caller's thread)
    done = threading.Event()

    def producer():
        for i in range(200):
            frames.put("cam0", np.full((48, 64, 3), i % 255, np.uint8))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert done.wait(2.0)
    t.join()
    resp.close()
    snap = get(server.url + "snapshot/cam0.jpg?token=s3cret").read()
    assert snap[:2] == b"\xff\xd8"  # a JPEG
    reliability(
        "a preview client that stops reading, or goes away",
        "its own thread skips to the newest frame; the pipeline's writes stay instant",
        "0 (the preview only ever shows the newest frame)",
    )


def test_page_lists_streams_with_the_token_passed_on(server):
    server.frames.put("front", np.zeros((8, 8, 3), np.uint8))
    page = get(server.url + "?token=s3cret").read().decode()
    assert "/stream/front.mjpg?token=s3cret" in page and "/stats" in page


def test_prometheus_without_the_preview_page(tiny, video):
    """metrics.prometheus serves /metrics and /stats for the run's duration, no page, no video."""
    from prometheus_client.parser import text_string_to_metric_families

    from streamseg.config import validate_config
    from streamseg.pipeline import Pipeline
    from streamseg.sinks.base import Sink
    from tests.conftest import free_port

    port = free_port()
    seen = {}

    class Scrape(Sink):
        name = "scrape"

        def write_impl(self, frame):
            if frame.seq == 20:
                seen["metrics"] = get(f"http://127.0.0.1:{port}/metrics").read().decode()
                with pytest.raises(urllib.error.HTTPError) as e:
                    get(f"http://127.0.0.1:{port}/")
                seen["page"] = e.value.code

    cfg = validate_config(
        {
            "sources": [str(video)],
            "engines": {"semantic": {"card": str(tiny / "red.yaml"), "threads": 1}},
            "metrics": {"prometheus": f"127.0.0.1:{port}", "progress": False, "summary": False},
            "pipeline": {"batch": {"max_size": 1}},
        }
    )
    Pipeline(cfg, extra_sinks=[Scrape("scrape://")]).run()
    fams = {f.name: f for f in text_string_to_metric_families(seen["metrics"])}
    assert fams["streamseg_frames_out"].samples[0].value >= 15
    assert seen["page"] == 404
    with pytest.raises(urllib.error.URLError):  # gone with the run
        get(f"http://127.0.0.1:{port}/metrics", timeout=1)
