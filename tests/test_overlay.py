import time

import numpy as np

from streamseg.config import OverlayConfig
from streamseg.frames import Frame, Instances, SemanticResult
from streamseg.overlay import Overlay


def scene(w=64, h=48):
    f = Frame("cam0", 0, 0.0, np.full((h, w, 3), 100, np.uint8), time.perf_counter_ns())
    gm = np.zeros((h, w), np.uint8)
    gm[30:] = 1  # road at the bottom
    f.semantic = SemanticResult(gm.copy(), ["bg", "drivable"], gm, ["road"])
    masks = np.zeros((1, h, w), bool)
    masks[0, 5:15, 40:60] = True
    f.instances = Instances(
        np.array([[40, 5, 60, 15]], np.float32),
        masks,
        np.array([0], np.int32),
        np.array([0.9], np.float32),
        ["car"],
        ["car"],
    )
    return f


def test_groups_blended_in_their_colours_and_nothing_else_touched():
    f = scene()
    cfg = OverlayConfig(
        hud=False, labels=False, contours=False, alpha={"road": 0.5, "car": 1.0}, colors={"road": (200, 0, 0)}
    )
    out = Overlay(cfg).draw(f)
    assert out.shape == f.image_bgr.shape and out is not f.image_bgr
    # road: half of (R=200, G=0, B=0) over grey 100 -> BGR (50, 50, 150)
    np.testing.assert_allclose(out[40, 10], [50, 50, 150], atol=1)
    # car at alpha 1: exactly the car colour (default palette, BGR)
    np.testing.assert_array_equal(out[10, 50], [230, 60, 0])
    # elsewhere unchanged
    np.testing.assert_array_equal(out[10, 10], [100, 100, 100])
    np.testing.assert_array_equal(f.image_bgr[40, 10], [100, 100, 100])  # the input is not drawn on


def test_contours_labels_and_hud_draw_pixels():
    f = scene()
    plain = Overlay(OverlayConfig(hud=False, labels=False, contours=False)).draw(f)
    full = Overlay(OverlayConfig(), stats=lambda: {"fps": 25.0, "p50": 40.0, "p99": 80.0}).draw(f)
    assert (plain[:12] != full[:12]).any()  # HUD in the top band
    assert (plain[14:16, 38:62] != full[14:16, 38:62]).any()  # contour at the box bottom


def test_disabled_overlay_passes_the_frame_through():
    f = scene()
    out = Overlay(OverlayConfig(enabled=False)).draw(f)
    np.testing.assert_array_equal(out, f.image_bgr)


def test_frame_without_results():
    f = scene()
    f.semantic = f.instances = None
    out = Overlay(OverlayConfig(hud=False)).draw(f)
    np.testing.assert_array_equal(out, f.image_bgr)
