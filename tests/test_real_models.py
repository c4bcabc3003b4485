"""The two real models from ../shared/data on real footage (skipped when it is absent)."""

import json

import cv2
import numpy as np
import pytest

from streamseg.models import open_model
from tests.conftest import BDD_DIR, CARDS, UDACITY, needs_shared_models, run_streamseg

pytestmark = needs_shared_models


@pytest.fixture(scope="module")
def bdd_results():
    files = sorted(BDD_DIR.glob("*.jpg"))
    if len(files) < 13:
        pytest.skip("BDD frames not present")
    images = [cv2.imread(str(f)) for f in files]
    with (
        open_model(str(CARDS / "twinlitenet-bdd.yaml"), threads=2) as sem,
        open_model(str(CARDS / "yolov8n-seg-coco.yaml"), threads=2) as ins,
    ):
        return images, sem.run(images), ins.run(images)


def test_cars_found_in_most_bdd_frames(bdd_results):
    images, _, instances = bdd_results
    with_cars = [sum(g == "car" for g in inst.groups) for inst in instances]
    assert sum(n > 0 for n in with_cars) >= 9, with_cars  # 13 frames, all of city/highway traffic
    for img, inst in zip(images, instances, strict=True):
        h, w = img.shape[:2]
        assert inst.masks.shape[1:] == (h, w)
        for k in range(len(inst)):
            x0, y0, x1, y1 = inst.xyxy[k]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            ys, xs = np.nonzero(inst.masks[k])
            if len(xs):  # the mask lies inside its box
                assert xs.min() >= int(x0) and xs.max() < np.ceil(x1) + 1
                assert ys.min() >= int(y0) and ys.max() < np.ceil(y1) + 1
        assert (inst.score >= 0.25).all()


def test_road_covers_a_plausible_share_of_the_lower_half(bdd_results):
    images, semantic, _ = bdd_results
    shares = []
    for img, sem in zip(images, semantic, strict=True):
        h = img.shape[0]
        road = sem.mask("road")
        assert road.shape == img.shape[:2]
        shares.append(road[h // 2 :].mean())
        assert road[: h // 3].mean() < 0.05  # the sky is not road
    shares = np.array(shares)
    assert (shares > 0.05).all(), shares
    assert 0.2 < shares.mean() < 0.8, shares


@pytest.mark.skipif(not UDACITY.is_file(), reason="udacity video not present")
def test_cli_on_the_udacity_dashcam_clip(tmp_path):
    n = 12
    r = run_streamseg(
        "run",
        "--source",
        str(UDACITY),
        "--semantic",
        str(CARDS / "twinlitenet-bdd.yaml"),
        "--instance",
        str(CARDS / "yolov8n-seg-coco.yaml"),
        "--sink",
        str(tmp_path / "u.mp4"),
        "--sink",
        str(tmp_path / "u.jsonl"),
        "--report",
        str(tmp_path / "u.json"),
        "--max-frames",
        str(n),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "u.json").read_text())
    assert rep["frames"] == {"in": n, "out": n, "dropped": {}, "decode_errors": 0}
    assert all(s["count"] == n for s in rep["latency_ms"]["stages"].values())
    lines = [json.loads(x) for x in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert len(lines) == n
    assert np.mean([x["groups"]["road"] for x in lines]) > 0.1  # a highway: lots of road
    cap = cv2.VideoCapture(str(tmp_path / "u.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (960, 540)
