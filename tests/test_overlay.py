import time

import cv2
import numpy as np

from streamseg.config import OverlayConfig
from streamseg.frames import Frame, Instances, SemanticResult
from streamseg.overlay import Overlay


def scene(w=64, h=48):
    f = Frame("cam0", 0, 0.0, np.full((h, w, 3), 100, np.uint8), time.perf_counter_ns())
    gm = np.zeros((h, w), np.uint8)
    gm[30:] = 1  # road at the bottom
    f.semantic = SemanticResult(gm.copy(), ["bg", "drivable"], gm, ["road"])
    f.instances = one_car(h, w, (40, 5, 60, 15))
    return f


def one_car(h: int, w: int, box: tuple[int, int, int, int]) -> Instances:
    """A single car whose mask fills its box (x0, y0, x1, y1) in an h x w frame."""
    x0, y0, x1, y1 = box
    masks = np.zeros((1, h, w), bool)
    masks[0, y0:y1, x0:x1] = True
    return Instances(
        np.array([box], np.float32), masks, np.array([0], np.int32), np.array([0.9], np.float32), ["car"], ["car"]
    )


def test_groups_blended_in_their_colours_and_nothing_else_touched():
    f = scene()
    cfg = OverlayConfig(
        hud=False,
        labels=False,
        contours=False,
        legend=False,
        id_colors=False,
        alpha={"road": 0.5, "car": 1.0},
        colors={"road": (200, 0, 0)},
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


def test_small_group_map_is_upsampled_smoothly():
    """A map at model resolution gives soft edges at the frame's: blends between the two sides."""
    f = scene(w=64, h=48)
    small = np.zeros((12, 16), np.uint8)
    small[6:] = 1
    f.semantic.small_group_map = small
    f.instances = None
    cfg = OverlayConfig(hud=False, legend=False, alpha={"road": 1.0}, colors={"road": (0, 0, 200)})
    out = Overlay(cfg).draw(f)
    column = out[:, 30, 0].astype(int)  # blue channel down the frame: 100 (grey) ... 200 (road)
    assert column[0] == 100 and column[-1] == 200
    steps = sorted(set(column.tolist()))
    assert len(steps) >= 4  # intermediate values: no hard, blocky step


def test_track_ids_colour_and_label_instances():
    from streamseg.overlay import id_color_bgr

    f = scene()
    f.semantic = None
    f.instances.track_id = np.array([12])
    out = Overlay(OverlayConfig(hud=False, legend=False, labels=False, contours=False, alpha={"car": 1.0})).draw(f)
    np.testing.assert_array_equal(out[10, 50], id_color_bgr(12))
    assert id_color_bgr(12) != id_color_bgr(13)


def test_detection_in_no_track_is_drawn_in_a_neutral_colour():
    from streamseg.frames import NO_TRACK
    from streamseg.overlay import UNTRACKED_BGR

    f = scene()
    f.semantic = None
    f.instances.track_id = np.array([NO_TRACK])
    out = Overlay(OverlayConfig(hud=False, legend=False, labels=False, contours=False, alpha={"car": 1.0})).draw(f)
    np.testing.assert_array_equal(out[10, 50], UNTRACKED_BGR)


def test_legend_and_stage_bar():
    f = scene(w=400, h=240)
    f.instances = None
    base = OverlayConfig(labels=False, contours=False, hud=False, legend=False)
    plain = Overlay(base).draw(f)
    legend = Overlay(base.model_copy(update={"legend": True})).draw(f)
    assert (legend[-20:, :40] != plain[-20:, :40]).any() and (legend[:100] == plain[:100]).all()
    stats = {"fps": 20.0, "p50": 50.0, "p99": 90.0, "stages": {"decode": 5.0, "infer": 30.0, "overlay": 5.0}}
    hud = Overlay(base.model_copy(update={"hud": True}), stats=lambda: stats).draw(f)
    bar_rows = hud[30:50, 8:308]
    # the infer segment (3/4 of 300 px) is in its stage colour
    from streamseg.overlay import STAGE_COLORS_BGR

    infer = np.all(bar_rows == STAGE_COLORS_BGR["infer"], axis=-1)
    assert infer.any(axis=0).sum() > 150


def test_disabled_overlay_passes_the_frame_through():
    f = scene()
    out = Overlay(OverlayConfig(enabled=False)).draw(f)
    np.testing.assert_array_equal(out, f.image_bgr)


def test_frame_without_results():
    f = scene()
    f.semantic = f.instances = None
    out = Overlay(OverlayConfig(hud=False)).draw(f)
    np.testing.assert_array_equal(out, f.image_bgr)


def test_blending_only_the_band_of_rows_with_groups_matches_blending_the_whole_frame():
    """Rows without a drawn group are skipped; the result must equal a whole-frame blend."""
    rng = np.random.default_rng(0)
    h, w = 72, 128
    f = Frame("cam0", 0, 0.0, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), time.perf_counter_ns())
    small = np.zeros((18, 32), np.uint8)
    small[7:11, 3:20] = 1  # road in a band in the middle
    small[9:13, 22:30] = 2  # car, half transparent
    names = ["road", "car"]
    f.semantic = SemanticResult(small.copy(), ["bg", "a", "b"], small, names)
    f.semantic.small_group_map = small
    alpha = {"road": 0.6, "car": 0.3}
    colors = {"road": (200, 0, 100), "car": (0, 250, 30)}
    cfg = OverlayConfig(hud=False, legend=False, alpha=alpha, colors=colors)
    out = Overlay(cfg).draw(f)
    # reference: per-pixel alpha and colour upsampled over the whole frame, blended in floats
    a_small = np.zeros(small.shape, np.float32)
    c_small = np.zeros((*small.shape, 3), np.float32)
    for gi, name in enumerate(names, start=1):
        a_small[small == gi] = alpha[name]
        c_small[small == gi] = np.array(colors[name][::-1], np.float32) * alpha[name]
    a = cv2.resize(a_small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    c = cv2.resize(c_small, (w, h), interpolation=cv2.INTER_LINEAR)
    ref = f.image_bgr * (1 - a) + c
    assert np.abs(out.astype(np.float32) - ref).max() <= 3
    np.testing.assert_array_equal(out[:20], f.image_bgr[:20])  # rows above the band untouched
    np.testing.assert_array_equal(out[60:], f.image_bgr[60:])
    assert (out[30:44] != f.image_bgr[30:44]).any()


def test_memory_does_not_grow_with_the_number_of_tracks_seen():
    """Nothing is kept per track colour: 300 tracks with big boxes leave no residue behind."""
    import tracemalloc

    h, w = 360, 640
    ov = Overlay(OverlayConfig(hud=False, legend=False))
    car = one_car(h, w, (50, 20, 600, 340))

    def draw(tid: int) -> None:
        f = Frame("cam0", tid, 0.0, np.full((h, w, 3), 90, np.uint8), time.perf_counter_ns())
        f.instances = car
        f.instances.track_id = np.array([tid])
        ov.draw(f)

    tracemalloc.start()
    try:
        for tid in range(1, 11):
            draw(tid)
        before = tracemalloc.get_traced_memory()[0]
        for tid in range(11, 311):
            draw(tid)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f"overlay kept {grown / 2**20:.1f} MiB after 300 tracks"


def test_hud_shows_processing_latency_when_asked():
    f = scene(w=640, h=240)
    f.instances = None
    f.semantic = None
    stats = {"fps": 20.0, "p50": 1000.0, "p99": 1800.0, "processing_p50": 40.0, "processing_p99": 60.0, "stages": {}}
    cfg = OverlayConfig(labels=False, contours=False, legend=False)
    plain = Overlay(cfg, stats=lambda: stats)
    proc = Overlay(cfg, stats=lambda: stats)
    proc.show_processing = True
    a, b = plain.draw(f), proc.draw(f)
    width = lambda img: int(np.flatnonzero((img[8:30] != f.image_bgr[8:30]).any(axis=(0, 2))).max())  # noqa: E731
    assert width(b) > width(a) + 100  # the HUD line grew by the processing figures
