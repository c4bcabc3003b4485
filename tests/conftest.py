from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import models_factory as mf

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CARDS = ROOT / "tests" / "fixtures" / "cards"
UDACITY = SHARED / "video" / "udacity-solidWhiteRight-960x540.mp4"
# the suite's built engines (and those of every streamseg it starts) go to one folder of the
# checkout kept between sessions, never to the user's ~/.cache/streamseg
TEST_CACHE = ROOT / ".test-cache"
os.environ["STREAMSEG_CACHE_DIR"] = str(TEST_CACHE)
BDD_DIR = SHARED / "images" / "bdd100k"
TWIN = SHARED / "models" / "twinlitenet-bdd-360x640.onnx"
YOLO = SHARED / "models" / "yolov8n-seg-int8-320.onnx"

needs_shared_models = pytest.mark.skipif(
    not (TWIN.is_file() and YOLO.is_file()), reason="../shared/data/models not present"
)


def checkout_env(env: dict | None = None) -> dict:
    """The environment with this checkout first on the import path: a run from another folder
    (cwd=tmp_path) tests this checkout's streamseg, not whichever one the venv installed."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_streamseg(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """`python -m streamseg ARGS` as a user would run it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "streamseg", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env=checkout_env(env),
    )


def streamseg_popen(*args, cwd=None, env=None) -> subprocess.Popen:
    """`python -m streamseg ARGS` started in the background (for signals, kills, servers)."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamseg", *map(str, args)],
        cwd=cwd or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=checkout_env(env),
    )


def free_port(kind=socket.SOCK_STREAM) -> int:
    """A port nothing on 127.0.0.1 listens on right now (TCP, or UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_card(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny models and their cards: red-logits semantic (dynamic batch), and a constant yolo-seg."""
    d = tmp_path_factory.mktemp("tiny")
    mf.red_logits_model(d / "red.onnx")
    mf.red_logits_model(d / "red_b1.onnx", batch=1)
    det, protos = mf.yolo_case()
    mf.constant_yolo_model(d / "yolo.onnx", det, protos, names=["car", "person", "bus"])
    write_card(
        d / "red.yaml",
        """\
        name: red
        file: red.onnx
        task: semantic
        format: semantic-logits
        input: {size_wh: [64, 48], resize: stretch}
        heads: [{output: seg, labels: [null, redthing]}]
        groups: {road: [redthing]}
        """,
    )
    write_card(
        d / "red_b1.yaml",
        (d / "red.yaml").read_text().replace("red.onnx", "red_b1.onnx").replace("name: red", "name: red_b1"),
    )
    write_card(
        d / "yolo.yaml",
        """\
        name: yolo
        file: yolo.onnx
        task: instance
        format: yolo-seg
        input: {size_wh: [64, 64], resize: letterbox}
        labels: from_model
        groups: {car: [car, bus], person: [person]}
        """,
    )
    return d


def make_video(path: Path, n: int = 30, size_wh=(96, 64), fps: float = 25.0, square: int = 16) -> Path:
    """A grey video with a red square moving right one pixel per frame."""
    w, h = size_wh
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        x = i % (w - square)
        img[10 : 10 + square, x : x + square] = (0, 0, 230)  # BGR red
        vw.write(img)
    vw.release()
    return path


@pytest.fixture(scope="session")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("video") / "square.mp4")


# reliability table ------------------------------------------------------------------------
# Tests of faults and odd inputs record what they tried; a full, passing run of them writes
# docs/reliability.md, so the table always says what the suite last showed.
_RELIABILITY: list[dict] = []
_RELIABILITY_TESTS: set[str] = set()


@pytest.fixture
def reliability(request):
    def record(fault: str, behaviour: str, lost: str) -> None:
        _RELIABILITY.append({"fault": fault, "behaviour": behaviour, "lost": lost, "test": request.node.nodeid})

    return record


def pytest_collection_modifyitems(session, config, items):
    _RELIABILITY_TESTS.update(i.nodeid for i in items if "reliability" in getattr(i, "fixturenames", ()))


def _whole_suite(config) -> bool:
    """Did this run collect the whole test suite (no paths, -k, -m or --deselect narrowing it)?"""
    args = [Path(a.split("::")[0]).resolve() for a in config.args]
    whole = all(a in (ROOT, ROOT / "tests") for a in args)
    opt = config.option
    return whole and not opt.keyword and not opt.markexpr and not getattr(opt, "deselect", None)


def pytest_sessionfinish(session, exitstatus):
    recorded = {r["test"] for r in _RELIABILITY}
    if not _RELIABILITY_TESTS or exitstatus != 0 or recorded != _RELIABILITY_TESTS or not _whole_suite(session.config):
        return  # a partial or failing run does not rewrite the table
    lines = [
        "# Reliability: faults and odd inputs tried",
        "",
        "Generated by the test suite (`make test`; tests that use the `reliability` fixture) on its",
        'last full passing run: every row is a test that passed. "Lost" counts frames that',
        "were decodable yet did not come out; frames the source itself lost are named as such.",
        "",
        "| fault or input | behaviour | frames lost | test |",
        "|---|---|---|---|",
    ]
    for r in sorted(_RELIABILITY, key=lambda r: (r["test"], r["fault"])):
        lines.append(f"| {r['fault']} | {r['behaviour']} | {r['lost']} | `{r['test'].split('::')[-1]}` |")
    (ROOT / "docs" / "reliability.md").write_text("\n".join(lines) + "\n")


# An AMD EPYC Zen 3's precision-relevant flags: AVX2, no AVX-512, no VNNI, no bf16, no AMX
# (the CPU issue 25 measured a failing `make test` on).
ZEN3_FLAGS = "sse4_2 avx avx2 fma f16c bmi2 aes sha_ni"


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """This process, and the streamseg commands it starts, act as if the CPU were a Zen 3
    (streamseg.cpu.cpu_features reads STREAMSEG_CPU_FLAGS): the no-bf16 paths run on any machine."""
    from streamseg import cpu

    monkeypatch.setenv(cpu.CPU_FLAGS_ENV, ZEN3_FLAGS)
    cpu.reset_cpu_features()
    yield cpu.cpu_features()
    monkeypatch.delenv(cpu.CPU_FLAGS_ENV)
    cpu.reset_cpu_features()
