import numpy as np
import pytest

from streamseg.models.preprocess import Preprocessor, ResizeTransform


@pytest.mark.parametrize(
    "src, dst, mode, scale, pad",
    [
        ((1280, 720), (320, 320), "letterbox", (0.25, 0.25), (0, 70)),
        ((720, 1280), (320, 320), "letterbox", (0.25, 0.25), (70, 0)),
        ((960, 540), (640, 640), "letterbox", (2 / 3, 2 / 3), (0, 140)),
        ((1280, 720), (640, 360), "stretch", (0.5, 0.5), (0, 0)),
        ((100, 100), (64, 48), "stretch", (0.64, 0.48), (0, 0)),
    ],
)
def test_fit(src, dst, mode, scale, pad):
    t = ResizeTransform.fit(src, dst, mode)
    assert (t.scale_x, t.scale_y) == pytest.approx(scale, abs=1e-3)
    assert (t.pad_x, t.pad_y) == pad


@pytest.mark.parametrize("src", [(1280, 720), (960, 540), (333, 777), (17, 5)])
def test_letterbox_round_trip_of_boxes(src):
    t = ResizeTransform.fit(src, (320, 320), "letterbox")
    rng = np.random.default_rng(0)
    w, h = src
    x0 = rng.uniform(0, w / 2, 20)
    y0 = rng.uniform(0, h / 2, 20)
    boxes = np.stack([x0, y0, x0 + rng.uniform(1, w / 2, 20), y0 + rng.uniform(1, h / 2, 20)], 1).astype(np.float32)
    back = t.to_src_xyxy(t.to_input_xyxy(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_letterbox_image_content_and_padding():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = (255, 0, 0)  # left half blue (BGR)
    t = ResizeTransform.fit((200, 100), (64, 64), "letterbox")
    out = t.apply(img, 114)
    x0, y0, x1, y1 = t.content_rect()
    assert (x0, y0, x1, y1) == (0, 16, 64, 48)
    assert (out[:16] == 114).all() and (out[48:] == 114).all()
    assert (out[20:44, 2:30] == (255, 0, 0)).all()
    assert (out[20:44, 34:62] == 0).all()


def test_content_rect_on_a_coarser_grid():
    t = ResizeTransform.fit((1280, 720), (320, 320), "letterbox")  # content rows 70..250
    assert t.content_rect((80, 80)) == (0, 17, 80, 63)


def test_preprocessor_normalizes_and_swaps_to_rgb_nchw():
    img = np.zeros((10, 20, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    pre = Preprocessor((20, 10), color="rgb", scale=1.0, mean=(1, 2, 3), std=(2, 2, 2))
    x, ts = pre([img, img])
    assert x.shape == (2, 3, 10, 20) and x.dtype == np.float32
    np.testing.assert_allclose(x[1, :, 5, 5], [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2])
    assert ts[0].src_wh == (20, 10)


def test_preprocessor_nhwc_bgr():
    img = np.full((4, 4, 3), (1, 2, 3), np.uint8)
    x, _ = Preprocessor((4, 4), layout="NHWC", color="bgr", scale=1.0)([img])
    assert x.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(x[0, 0, 0], [1, 2, 3])


def test_fit_gives_the_resized_uint8_frames_the_float_tensor_is_made_from():
    img = np.random.default_rng(3).integers(0, 256, (540, 960, 3), dtype=np.uint8)
    pre = Preprocessor((320, 320), resize="letterbox", color="rgb")
    buf, (t,) = pre.fit([img])
    x, _ = pre([img])
    assert buf.dtype == np.uint8 and buf.shape == (1, 320, 320, 3)
    np.testing.assert_array_equal(x[0], buf[0][..., ::-1].transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255))
    assert (t.pad_x, t.pad_y) == (0, 70) and (buf[0, :70] == 114).all()
