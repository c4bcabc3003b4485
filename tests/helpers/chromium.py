"""Real headless Chromium for tests, driven over the DevTools protocol (websocket-client).

with Chromium() as browser:
    page = browser.open("http://127.0.0.1:8080/?token=...")
    page.evaluate("document.title"); png = page.screenshot()
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Page:
    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=20, suppress_origin=True)
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        mid = next(self._ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def navigate(self, url: str, settle_s: float = 1.5) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        time.sleep(settle_s)  # MJPEG images never "finish" loading: give the page time instead

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self.ws.close()


class Chromium:
    def __init__(self, width: int = 1280, height: int = 800) -> None:
        self.size = (width, height)
        self.proc: subprocess.Popen | None = None
        self.tmp = None

    def __enter__(self) -> Chromium:
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("no chromium (apt-get install chromium)")
        self.tmp = tempfile.TemporaryDirectory()
        profile = Path(self.tmp.name)
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--no-first-run",
                f"--window-size={self.size[0]},{self.size[1]}",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or len(port_file.read_text().splitlines()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        return self

    def open(self, url: str, settle_s: float = 1.5) -> Page:
        """A new tab showing `url`."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        target = json.load(urllib.request.urlopen(req, timeout=10))
        page = Page(target["webSocketDebuggerUrl"])
        page.navigate(url, settle_s)
        return page

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.tmp is not None:
            self.tmp.cleanup()
