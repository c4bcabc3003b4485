"""frames.Instances with lazy masks: the decoder's box crops are pasted into frame-size masks
only when `masks` is first read (streamseg.api's `r.instances.masks`, the overlay, the jsonl)."""

import numpy as np
import pytest

from streamseg.frames import Instances, MaskCrops


def lazy_and_eager():
    rng = np.random.default_rng(4)
    origins = np.array([[3, 2], [10, 0], [0, 7]])
    crops = [rng.random((4, 5)) > 0.5, rng.random((6, 2)) > 0.5, np.zeros((0, 0), bool)]
    eager = np.zeros((3, 12, 16), bool)
    for k, ((x, y), c) in enumerate(zip(origins, crops, strict=True)):
        eager[k, y : y + c.shape[0], x : x + c.shape[1]] = c
    fields = {
        "xyxy": np.array([[3, 2, 8, 6], [10, 0, 12, 6], [0, 7, 0, 7]], np.float32),
        "class_id": np.array([0, 1, 0], np.int32),
        "score": np.array([0.9, 0.8, 0.3], np.float32),
        "labels": ["car", "person", "car"],
        "groups": ["car", "person", "car"],
    }
    return Instances(masks=MaskCrops((16, 12), origins, crops), **fields), eager


def test_masks_are_pasted_at_frame_size_when_first_read_and_kept():
    inst, eager = lazy_and_eager()
    assert "masks" not in vars(inst)  # nothing made yet
    m = inst.masks
    assert m.shape == (3, 12, 16) and m.dtype == bool and np.array_equal(m, eager)
    assert inst.masks is m  # made once


def test_a_slice_of_lazy_instances_stays_lazy_and_pastes_only_its_rows():
    inst, eager = lazy_and_eager()
    person = inst[np.array(inst.labels) == "person"]
    assert "masks" not in vars(person) and "masks" not in vars(inst)
    assert np.array_equal(person.masks, eager[[1]])
    assert np.array_equal(inst[[0, 2]].masks, eager[[0, 2]])


def test_lazy_masks_are_checked_on_construction_and_unknown_attributes_still_fail():
    inst, _ = lazy_and_eager()
    with pytest.raises(ValueError, match="hold 3 crops, got 2"):
        Instances(
            xyxy=inst.xyxy,
            masks=MaskCrops((16, 12), np.zeros((2, 2)), [np.zeros((1, 1), bool)] * 2),
            class_id=inst.class_id,
            score=inst.score,
            labels=inst.labels,
            groups=inst.groups,
        )
    with pytest.raises(AttributeError):
        _ = inst.no_such_field


def test_mask_areas_come_from_the_crops_without_making_frame_size_masks():
    inst, eager = lazy_and_eager()
    areas = inst.mask_areas()
    assert "masks" not in vars(inst)  # the jsonl sink's mask_area no longer pastes K x H x W masks
    assert areas.tolist() == eager.reshape(3, -1).sum(1).tolist()
    _ = inst.masks
    assert inst.mask_areas().tolist() == areas.tolist()  # the same once pasted
    assert Instances.empty((16, 12)).mask_areas().tolist() == []


def test_group_fractions_count_every_group_and_nothing_else():
    from streamseg.frames import SemanticResult

    gm = np.zeros((12, 16), np.uint8)
    gm[:3] = 1
    gm[3:4, :8] = 2
    sem = SemanticResult(np.zeros_like(gm), ["x"], gm, ["road", "lane", "car"])
    assert sem.group_fractions() == {"road": 48 / 192, "lane": 8 / 192, "car": 0.0}
