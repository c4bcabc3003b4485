import numpy as np
import pytest

from streamseg.backends.base import TensorSpec
from streamseg.errors import ModelError
from streamseg.models.card import ModelCard
from streamseg.models.preprocess import ResizeTransform
from streamseg.models.yolo_seg import YoloSegDecoder, labels_from_metadata, nms_xyxy
from tests.models_factory import yolo_case


def card(**kw):
    base = dict(
        name="y",
        file="y.onnx",
        task="instance",
        format="yolo-seg",
        input={"size_wh": [64, 64], "resize": "letterbox"},
        labels=["car", "person", "bus"],
        groups={"car": ["car", "bus"], "person": ["person"]},
    )
    base.update(kw)
    return ModelCard.model_validate(base)


SPECS = {
    "output0": TensorSpec("output0", (1, 9, 6), np.dtype("float32")),
    "output1": TensorSpec("output1", (1, 2, 16, 16), np.dtype("float32")),
}


def test_nms_suppresses_overlaps_within_a_class_only():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert nms_xyxy(boxes, scores, 0.5).tolist() == [0, 3]
    assert nms_xyxy(boxes, scores, 0.5, class_id=np.array([0, 0, 1, 0])).tolist() == [0, 2, 3]
    assert nms_xyxy(boxes, scores, 0.9).tolist() == [0, 1, 3]  # 0 vs 1: IoU 0.68 < 0.9; 1 vs 2 identical
    assert nms_xyxy(boxes, scores, 0.5, max_detections=1).tolist() == [0]
    assert nms_xyxy(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


def test_decode_hand_built_case_on_a_letterboxed_frame():
    det, protos = yolo_case()
    dec = YoloSegDecoder(card(), SPECS, {})
    # a 128x64 frame letterboxed into 64x64: scale 0.5, 16 px padding top and bottom
    t = ResizeTransform.fit((128, 64), (64, 64), "letterbox")
    (inst,) = dec.decode({"output0": det[None], "output1": protos[None]}, [t])
    # kept: class 0 at 0.9, class 1 at 0.7 (same place, other class), class 2 at 0.6; others suppressed
    assert inst.labels == ["car", "person", "bus"]
    assert inst.groups == ["car", "person", "car"]
    np.testing.assert_allclose(inst.score, [0.9, 0.7, 0.6], atol=1e-6)
    # box 0: input (12, 12, 28, 28) -> frame ((12-0)/0.5, (12-16)/0.5, ...) clipped at 0
    np.testing.assert_allclose(inst.xyxy[0], [24, 0, 56, 24], atol=1e-4)
    np.testing.assert_allclose(inst.xyxy[2], [86, 36, 106, 76 - 12], atol=1e-4)  # y clipped to 64
    assert inst.masks.shape == (3, 64, 128)
    # prototype 0 is positive everywhere, so each mask is exactly its box
    for k in range(3):
        x0, y0, x1, y1 = inst.xyxy[k].round().astype(int)
        m = inst.masks[k]
        assert m[y0:y1, x0:x1].all()
        assert m.sum() == (x1 - x0) * (y1 - y0)


def test_mask_follows_the_prototype_through_the_letterbox():
    det, _ = yolo_case()
    ph = pw = 16
    protos = np.full((2, ph, pw), -8.0, np.float32)
    protos[0, :, :8] = 8.0  # left half of the input is "on"
    dec = YoloSegDecoder(card(), SPECS, {})
    det = det.copy()
    det[0:4, 0] = (32, 32, 64, 32)  # box covering the whole letterboxed content
    t = ResizeTransform.fit((128, 64), (64, 64), "letterbox")
    (inst,) = dec.decode({"output0": det[None], "output1": protos[None]}, [t])
    m = inst.masks[0]
    assert m[:, :60].all() and not m[:, 68:].any()  # input x 32 = frame x 64


def test_thresholds_and_ungrouped_classes():
    det, protos = yolo_case()
    dec = YoloSegDecoder(card(groups={"car": ["car"]}), SPECS, {})
    (inst,) = dec.decode(
        {"output0": det[None], "output1": protos[None]}, [ResizeTransform.fit((64, 64), (64, 64), "letterbox")]
    )
    assert inst.labels == ["car"]  # person and bus are in no group: dropped
    dec = YoloSegDecoder(card(groups={"car": ["car"]}, keep_ungrouped=True), SPECS, {})
    dec.set_thresholds(conf=0.05)
    (inst,) = dec.decode(
        {"output0": det[None], "output1": protos[None]}, [ResizeTransform.fit((64, 64), (64, 64), "letterbox")]
    )
    assert sorted(inst.labels) == ["bus", "car", "car", "person", "person"]
    assert inst.groups.count(None) == 3


def test_empty_result_when_nothing_passes():
    det, protos = yolo_case()
    det[4:7] = 0.0
    dec = YoloSegDecoder(card(), SPECS, {})
    (inst,) = dec.decode(
        {"output0": det[None], "output1": protos[None]}, [ResizeTransform.fit((50, 40), (64, 64), "letterbox")]
    )
    assert len(inst) == 0 and inst.masks.shape == (0, 40, 50)


@pytest.mark.parametrize(
    "kw, specs, error",
    [
        (
            {"labels": ["car", "person"], "groups": {}},
            SPECS,
            "has 9 rows, but 4 box values + 2 labels + 2 mask coefficients make 8",
        ),
        ({}, {"output0": SPECS["output0"]}, "cannot tell which output is which"),
        ({"outputs": {"detections": "dets", "protos": "output1"}}, SPECS, "no output 'dets'"),
        ({"groups": {"car": ["truck"]}}, SPECS, "group 'car' names label 'truck'"),
        ({"labels": "from_model"}, SPECS, "no readable `names` metadata"),
    ],
)
def test_card_that_does_not_fit_the_outputs(kw, specs, error):
    with pytest.raises(ModelError, match=error.replace("(", r"\(").replace("+", r"\+")):
        YoloSegDecoder(card(**kw), specs, {})


def test_labels_from_ultralytics_metadata():
    assert labels_from_metadata({"names": "{0: 'person', 1: 'bicycle'}"}) == ["person", "bicycle"]
    assert labels_from_metadata({"names": "__import__('os')"}) is None
    assert labels_from_metadata({}) is None


# Letterbox un-mapping: a frame that does not fill the square input is padded on one axis,
# and each mask must come back to the frame with that padding taken off. Frames of 128x64
# (landscape: 16 px of padding above and below) and 64x128 (portrait: 16 px left and right)
# go into the 64x64 input at scale 0.5; prototypes are 16x16, one cell per 4 input pixels.
# Each prototype is "on" in one band of cells across the padded axis; a band of cells
# [a, b) is input pixels [4a, 4b), frame pixels [(4a - 16) / 0.5, (4b - 16) / 0.5).
BANDS = [  # prototype cells on -> frame pixels the mask covers along the padded axis
    ((4, 6), (0, 16)),  # just below the top (or right of the left) padding
    ((7, 9), (24, 40)),  # the middle
    ((10, 12), (48, 64)),  # just above the bottom (or left of the right) padding
]


def band_case(axis):
    """Three instances, each box the whole input, instance k "on" in prototype band k across `axis`."""
    nm = len(BANDS)
    protos = np.full((nm, 16, 16), -8.0, np.float32)
    det = np.zeros((4 + 3 + nm, nm), np.float32)
    for k, ((a, b), _) in enumerate(BANDS):
        if axis == "y":
            protos[k, a:b, :] = 8.0
        else:
            protos[k, :, a:b] = 8.0
        det[0:4, k] = (32, 32, 64, 64)  # each box: the whole input, padding included
        det[4 + k, k] = 0.9  # one class each, so NMS keeps all three boxes
        det[4 + 3 + k, k] = 1.0  # instance k uses prototype k only
    specs = {
        "output0": TensorSpec("output0", (1, 4 + 3 + nm, nm), np.dtype("float32")),
        "output1": TensorSpec("output1", (1, nm, 16, 16), np.dtype("float32")),
    }
    return det, protos, specs


def assert_bands(inst, axis, frame_wh):
    w, h = frame_wh
    np.testing.assert_allclose(inst.xyxy, [[0, 0, w, h]] * len(BANDS))  # the padding is cut off the box too
    assert inst.labels == ["car", "person", "bus"]
    for k, (_, (lo, hi)) in enumerate(BANDS):
        m = inst.masks[k] if axis == "y" else inst.masks[k].T  # rows along the padded axis
        on = np.flatnonzero(m.any(axis=1))
        assert on.tolist() == list(range(lo, hi)), (axis, k, on)
        assert m[lo:hi].all()  # whole rows (columns): the other axis has no padding to undo


@pytest.mark.parametrize("axis", ["y", "x"])
def test_each_mask_lands_where_its_prototype_band_is_after_the_padding(axis):
    frame_wh = (128, 64) if axis == "y" else (64, 128)
    t = ResizeTransform.fit(frame_wh, (64, 64), "letterbox")
    assert (t.pad_x, t.pad_y) == ((0, 16) if axis == "y" else (16, 0))  # the case this test is about
    det, protos, specs = band_case(axis)
    (inst,) = YoloSegDecoder(card(), specs, {}).decode({"output0": det[None], "output1": protos[None]}, [t])
    assert_bands(inst, axis, frame_wh)


def test_a_batch_of_a_landscape_and_a_portrait_frame_undoes_each_frames_own_padding():
    det_y, protos_y, specs = band_case("y")
    det_x, protos_x, _ = band_case("x")
    specs = {n: TensorSpec(n, (None, *s.shape[1:]), s.dtype) for n, s in specs.items()}
    transforms = [ResizeTransform.fit((128, 64), (64, 64), "letterbox"), ResizeTransform.fit((64, 128), (64, 64), "letterbox")]
    outputs = {"output0": np.stack([det_y, det_x]), "output1": np.stack([protos_y, protos_x])}
    landscape, portrait = YoloSegDecoder(card(), specs, {}).decode(outputs, transforms)
    assert landscape.masks.shape == (3, 64, 128) and portrait.masks.shape == (3, 128, 64)
    assert_bands(landscape, "y", (128, 64))
    assert_bands(portrait, "x", (64, 128))


def test_a_mask_in_a_small_box_is_cut_to_the_box_in_both_letterbox_directions():
    # one prototype "on" in the input's upper-left quadrant (cells 0..8 on both axes = input
    # 0..32) and a box around the input's centre: the mask is the box's upper-left quarter
    nm = 2
    protos = np.full((nm, 16, 16), -8.0, np.float32)
    protos[0, :8, :8] = 8.0
    det = np.zeros((4 + 3 + nm, 1), np.float32)
    det[0:4, 0] = (32, 32, 24, 24)  # input (20, 20, 44, 44)
    det[4, 0] = 0.9
    det[4 + 3, 0] = 1.0
    specs = {
        "output0": TensorSpec("output0", (1, 9, 1), np.dtype("float32")),
        "output1": TensorSpec("output1", (1, nm, 16, 16), np.dtype("float32")),
    }
    dec = YoloSegDecoder(card(), specs, {})
    for frame_wh, box, on in [
        # landscape 128x64, pad_y 16: input x = 0.5 X, input y = 0.5 Y + 16
        ((128, 64), (40, 8, 88, 56), (slice(8, 32), slice(40, 64))),
        # portrait 64x128, pad_x 16: input x = 0.5 X + 16, input y = 0.5 Y
        ((64, 128), (8, 40, 56, 88), (slice(40, 64), slice(8, 32))),
    ]:
        t = ResizeTransform.fit(frame_wh, (64, 64), "letterbox")
        (inst,) = dec.decode({"output0": det[None], "output1": protos[None]}, [t])
        np.testing.assert_allclose(inst.xyxy[0], box)
        m = inst.masks[0]
        rows, cols = on
        # bilinear sampling rounds the band's inner corner off, so compare its extent
        assert np.flatnonzero(m.any(axis=1)).tolist() == list(range(rows.start, rows.stop)), frame_wh
        assert np.flatnonzero(m.any(axis=0)).tolist() == list(range(cols.start, cols.stop)), frame_wh
        assert m[rows, cols].mean() > 0.97, frame_wh
