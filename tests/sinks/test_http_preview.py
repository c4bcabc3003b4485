"""The browser preview in real headless Chromium: the page loads and moves, the latency panel
shows numbers, /metrics parses as Prometheus text, and the token keeps strangers out."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, free_port, streamseg_popen
from tests.helpers.chromium import Chromium, chromium_path

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs chromium (apt-get install chromium)")
TOKEN = "t0ken-for-tests"


@pytest.fixture
def preview(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = streamseg_popen(
        "run",
        "--source",
        "synthetic://driving?size=640x360&fps=15&seed=3&frames=100000",
        "--mode",
        "realtime",
        "--semantic",
        ROOT / "engines" / "synth-semantic.yaml",
        "--instance",
        ROOT / "engines" / "synth-instance.yaml",
        "--sink",
        f"http://127.0.0.1:{port}?token={TOKEN}",
        "--report",
        tmp_path / "report.json",
        "--no-progress",
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's streamseg, whatever the venv installed
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            stats = json.load(urllib.request.urlopen(f"{url}stats?token={TOKEN}", timeout=2))
            if stats["frames"]["out"] > 5:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run did not start serving: {proc.communicate()[1][-2000:]}")
        time.sleep(0.3)
    yield url, proc, tmp_path
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_preview_page_in_real_chromium(preview):
    url, proc, tmp_path = preview
    with Chromium(1280, 720) as browser:
        page = browser.open(f"{url}?token={TOKEN}", settle_s=2.5)
        assert page.evaluate("document.title") == "streamseg preview"
        assert page.evaluate("document.querySelectorAll('main img').length") == 1
        shots = [page.screenshot()]
        time.sleep(1.0)
        shots.append(page.screenshot())
        a, b = (cv2.imdecode(np.frombuffer(s, np.uint8), cv2.IMREAD_COLOR) for s in shots)
        video = (slice(0, 360), slice(0, 640))  # the video tile, top left
        assert a[video].std() > 10  # a picture, not a blank tile
        assert np.abs(a[video].astype(int) - b[video].astype(int)).mean() > 1.0  # and it moves
        # the panel shows numbers fed from /stats
        for element in ("fps", "p50", "p99"):
            text = page.evaluate(f"document.getElementById('{element}').textContent")
            assert float(text) > 0, (element, text)
        rows = page.evaluate("document.querySelectorAll('#stages tbody tr').length")
        assert rows == 8  # every stage
        if os.environ.get("STREAMSEG_PREVIEW_SCREENSHOT"):  # docs/preview.png is made this way
            (ROOT / os.environ["STREAMSEG_PREVIEW_SCREENSHOT"]).write_bytes(shots[-1])
        page.close()
        # no token: refused, in the browser as everywhere else
        stranger = browser.open(url, settle_s=1.0)
        assert "401" in stranger.evaluate("document.body.innerText")
        stranger.close()
    # /metrics parses as Prometheus text and counts frames
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"{url}metrics?token={TOKEN}", timeout=5).read().decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    out = sum(s.value for s in fams["streamseg_frames_out"].samples if s.name.endswith("_total"))
    assert out > 10
    assert any(s.labels.get("stage") == "infer" for s in fams["streamseg_stage_latency_seconds"].samples)
    # the run ends cleanly on SIGINT, its report written, the token nowhere in it
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # interrupted runs say so
    report = (tmp_path / "report.json").read_text()
    assert json.loads(report)["interrupted"] is True
    assert TOKEN not in report and TOKEN not in err
