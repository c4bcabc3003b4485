from __future__ import annotations

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
BDD_DIR = SHARED / "images" / "bdd100k"
TWIN = SHARED / "models" / "twinlitenet-bdd-360x640.onnx"
YOLO = SHARED / "models" / "yolov8n-seg-int8-320.onnx"

needs_shared_models = pytest.mark.skipif(
    not (TWIN.is_file() and YOLO.is_file()), reason="../shared/data/models not present"
)


def run_streamseg(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m streamseg ARGS` as a user would run it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "streamseg", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


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
