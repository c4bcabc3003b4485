import numpy as np
import pytest

from streamseg.backends.base import TensorSpec
from streamseg.errors import ModelError
from streamseg.models.card import ModelCard
from streamseg.models.preprocess import ResizeTransform
from streamseg.models.semantic import SemanticArgmaxDecoder, SemanticLogitsDecoder

F32 = np.dtype("float32")


def logits_card(**kw):
    base = dict(
        name="s",
        file="s.onnx",
        task="semantic",
        format="semantic-logits",
        input={"size_wh": [8, 4]},
        heads=[{"output": "da", "labels": [None, "drivable"]}, {"output": "ll", "labels": [None, "lane"]}],
        groups={"road": ["drivable"], "lane": ["lane"]},
    )
    base.update(kw)
    return ModelCard.model_validate(base)


SPECS = {"da": TensorSpec("da", (1, 2, 4, 8), F32), "ll": TensorSpec("ll", (1, 2, 4, 8), F32)}


def two_class(mask):
    """[1, 2, H, W] scores whose argmax is `mask`."""
    return np.stack([np.zeros_like(mask, np.float32), np.where(mask, 1.0, -1.0).astype(np.float32)])[None]


def test_heads_paint_in_order_and_resize_to_the_frame():
    dec = SemanticLogitsDecoder(logits_card(), SPECS, {})
    assert dec.labels == ["background", "drivable", "lane"]
    da = np.zeros((4, 8), bool)
    da[2:] = True  # bottom half drivable
    ll = np.zeros((4, 8), bool)
    ll[:, 4] = True  # one lane column, over the road
    t = ResizeTransform.fit((16, 8), (8, 4), "stretch")
    (res,) = dec.decode({"da": two_class(da), "ll": two_class(ll)}, [t])
    assert res.label_map.shape == (8, 16)
    assert (
        res.label_map[0, 0] == 0 and res.label_map[7, 0] == 1 and res.label_map[7, 8] == 2 and res.label_map[0, 8] == 2
    )
    assert res.mask("road")[4:, :8].all() and not res.mask("road")[:4].any()
    fr = res.group_fractions()
    assert fr["lane"] == pytest.approx(2 / 16)
    assert fr["road"] == pytest.approx((8 * 16 / 2 - 4 * 2) / 128)


def test_letterbox_padding_is_cut_before_resizing():
    card = logits_card(
        input={"size_wh": [8, 8], "resize": "letterbox"},
        heads=[{"output": "da", "labels": [None, "drivable"]}],
        groups={"road": ["drivable"]},
    )
    dec = SemanticLogitsDecoder(card, {"da": TensorSpec("da", (1, 2, 8, 8), F32)}, {})
    t = ResizeTransform.fit((16, 8), (8, 8), "letterbox")  # content rows 2..6
    m = np.zeros((8, 8), bool)
    m[2:4] = True  # top half of the content
    (res,) = dec.decode({"da": two_class(m)}, [t])
    assert res.label_map.shape == (8, 16)
    assert res.label_map[:4].all() and not res.label_map[4:].any()


def test_multiclass_head_uses_argmax():
    card = logits_card(
        heads=[{"output": "seg", "labels": ["road", "car", "sky"]}], groups={"road": ["road"], "car": ["car"]}
    )
    dec = SemanticLogitsDecoder(card, {"seg": TensorSpec("seg", (None, 3, 4, 8), F32)}, {})
    scores = np.zeros((2, 3, 4, 8), np.float32)
    scores[0, 2] = 1  # frame 0 all sky
    scores[1, 1, :, :4] = 1  # frame 1 left car, right road (ties -> channel 0)
    t = ResizeTransform.fit((8, 4), (8, 4), "stretch")
    r0, r1 = dec.decode({"seg": scores}, [t, t])
    assert (r0.group_map == 0).all()
    assert r1.mask("car")[:, :4].all() and r1.mask("road")[:, 4:].all()


def test_argmax_format():
    card = ModelCard.model_validate(
        dict(
            name="a",
            file="a.onnx",
            task="semantic",
            format="semantic-argmax",
            input={"size_wh": [8, 4]},
            labels=["bg", "road", "car"],
            groups={"road": ["road"]},
        )
    )
    dec = SemanticArgmaxDecoder(card, {"ids": TensorSpec("ids", (None, 4, 8), np.dtype("int64"))}, {})
    ids = np.zeros((1, 4, 8), np.int64)
    ids[0, 3] = 1
    ids[0, 0, 0] = 7  # out of range -> label 0
    (res,) = dec.decode({"ids": ids}, [ResizeTransform.fit((8, 4), (8, 4), "stretch")])
    assert res.mask("road")[3].all() and res.mask("road").sum() == 8
    assert res.label_map[0, 0] == 0


@pytest.mark.parametrize(
    "kw, specs, error",
    [
        ({}, {"da": SPECS["da"]}, "no output 'll'"),
        ({}, {**SPECS, "ll": TensorSpec("ll", (1, 3, 4, 8), F32)}, "has 3 channels, the card lists 2 labels"),
        ({}, {**SPECS, "ll": TensorSpec("ll", (1, 4, 8), F32)}, "must be N x C x H x W"),
        ({"groups": {"road": ["asphalt"]}}, SPECS, "group 'road' names label 'asphalt'"),
    ],
)
def test_card_that_does_not_fit(kw, specs, error):
    with pytest.raises(ModelError, match=error):
        SemanticLogitsDecoder(logits_card(**kw), specs, {})


def test_argmax_labels_from_model_read_the_exports_names_uint8_ids_letterboxed():
    """YOLO26-sem: [B, H, W] uint8 class ids, names in the metadata, letterboxed input."""
    card = ModelCard.model_validate(
        dict(
            name="sem",
            file="s.onnx",
            task="semantic",
            format="semantic-argmax",
            input={"size_wh": [8, 8], "resize": "letterbox"},
            labels="from_model",
            groups={"road": ["road"], "car": ["car", "truck"]},
        )
    )
    specs = {"output0": TensorSpec("output0", (None, None, None), np.dtype("uint8"))}
    dec = SemanticArgmaxDecoder(card, specs, {"names": "{0: 'road', 1: 'sidewalk', 2: 'car', 3: 'truck'}"})
    assert dec.labels == ["road", "sidewalk", "car", "truck"]
    ids = np.zeros((1, 8, 8), np.uint8)
    ids[0, 2:6, :4] = 2  # car, left half of the content rows
    ids[0, 2:6, 4:] = 3  # truck: the same group
    t = ResizeTransform.fit((16, 8), (8, 8), "letterbox")  # 16x8 frame: rows 2..5 are the frame
    (res,) = dec.decode({"output0": ids}, [t])
    assert res.label_map.shape == (8, 16)
    assert (res.group_map == res.group_names.index("car") + 1).all()  # padding cut away: all car
    with pytest.raises(ModelError, match="no readable `names` metadata"):
        SemanticArgmaxDecoder(card, specs, {})
