import numpy as np
import pytest

from streamseg.evaluate import InstanceMeter, SemanticMeter, ap_101, gt_instances, mask_iou_matrix
from streamseg.frames import Instances, SemanticResult


def instances(boxes_masks, scores, groups, shape=(20, 30)):
    h, w = shape
    masks = np.zeros((len(boxes_masks), h, w), bool)
    xyxy = []
    for k, (x0, y0, x1, y1) in enumerate(boxes_masks):
        masks[k, y0:y1, x0:x1] = True
        xyxy.append([x0, y0, x1, y1])
    return Instances(
        np.array(xyxy, np.float32).reshape(-1, 4),
        masks,
        np.zeros(len(scores), np.int32),
        np.array(scores, np.float32),
        list(groups),
        list(groups),
    )


def test_semantic_iou_hand_built():
    gm = np.zeros((10, 10), np.uint8)
    gm[5:, :] = 1  # predicted road: rows 5..9 (50 px)
    pred = SemanticResult(gm.copy(), ["bg", "road"], gm, ["road"])
    gt_labels = ["background", "road", "ignore"]
    gt = np.zeros((10, 10), np.uint8)
    gt[4:, :] = 1  # true road: rows 4..9 (60 px)
    m = SemanticMeter()
    m.add(pred, gt, gt_labels)
    assert m.iou()["road"] == pytest.approx(50 / 60)
    gt2 = gt.copy()
    gt2[4] = 2  # the missed row becomes "ignore": perfect
    m2 = SemanticMeter()
    m2.add(pred, gt2, gt_labels)
    assert m2.iou()["road"] == pytest.approx(1.0)
    m.add(pred, gt2, gt_labels)  # accumulated over frames: (50 + 50) / (60 + 50)
    assert m.iou()["road"] == pytest.approx(100 / 110)


@pytest.mark.parametrize(
    "scores, tp, n_gt, expected",
    [
        ([0.9, 0.8], [True, True], 2, 1.0),
        ([0.9, 0.8], [False, True], 1, 0.5),
        ([0.9, 0.8], [True, False], 1, 1.0),
        ([0.9], [True], 2, 51 / 101),  # recall reaches 0.5: the 51 points up to 0.5 have precision 1
        ([], [], 3, 0.0),
        ([0.5], [False], 0, None),
    ],
)
def test_ap_101(scores, tp, n_gt, expected):
    got = ap_101(scores, tp, n_gt)
    assert got == (None if expected is None else pytest.approx(expected))


def test_instance_matching_with_ignored_small_objects():
    inst_map = np.zeros((20, 30), np.int32)
    label_map = np.zeros((20, 30), np.uint8)
    labels = ["bg", "car", "person"]
    inst_map[2:12, 2:12], label_map[2:12, 2:12] = 1, 1  # car, 100 px
    inst_map[2:12, 15:25], label_map[2:12, 15:25] = 2, 2  # person, 100 px
    inst_map[15:18, 26:29], label_map[15:18, 26:29] = 3, 1  # tiny car, 9 px: ignored
    gt = gt_instances(inst_map, label_map, labels, {"car", "person"})
    assert gt.groups == ["car", "person", "car"] and gt.areas.tolist() == [100, 100, 9]
    pred = instances(
        [(2, 2, 12, 11), (15, 2, 25, 12), (26, 15, 29, 18), (0, 14, 5, 19)],
        [0.9, 0.8, 0.7, 0.95],
        ["car", "person", "car", "car"],
    )
    ious = mask_iou_matrix(pred, gt, (20, 30))
    assert ious[0, 0] == pytest.approx(0.9) and ious[1, 1] == 1.0 and ious[2, 2] == 1.0 and ious[3].max() == 0
    m = InstanceMeter(["car", "person"], min_area=20)
    m.add(pred, gt, (20, 30))
    s = m.summary()
    assert s["ground_truth"] == {"car": 1, "person": 1}
    assert s["predictions"] == {"car": 2, "person": 1}  # the tiny one is neither right nor wrong
    # car: the false positive scores highest -> precision 1/2 at recall 1
    assert s["ap50"] == {"car": pytest.approx(0.5), "person": 1.0}
    assert s["matched_mean_iou"]["car"] == pytest.approx(0.9)


def test_duplicate_detection_is_a_false_positive():
    inst_map = np.zeros((20, 30), np.int32)
    inst_map[2:12, 2:12] = 1
    label_map = (inst_map > 0).astype(np.uint8)
    gt = gt_instances(inst_map, label_map, ["bg", "car"], {"car"})
    pred = instances([(2, 2, 12, 12), (2, 2, 12, 11)], [0.9, 0.8], ["car", "car"])
    m = InstanceMeter(["car"], min_area=20)
    m.add(pred, gt, (20, 30))
    assert m.summary()["ap50"]["car"] == 1.0  # the duplicate comes after full recall
    assert m.graded.tp["car"] == [True, False]


def test_mostly_hidden_objects_are_ignore_regions_but_count_in_ap50_all():
    inst_map = np.zeros((20, 30), np.int32)
    inst_map[2:12, 2:12] = 1  # in full view
    inst_map[2:12, 15:18] = 2  # 30 px seen of 120: a sliver behind something
    label_map = (inst_map > 0).astype(np.uint8)
    gt = gt_instances(inst_map, label_map, ["bg", "car"], {"car"}, full_areas={1: 100, 2: 120})
    assert gt.visibility.tolist() == [1.0, 0.25]
    missed = instances([(2, 2, 12, 12)], [0.9], ["car"])
    m = InstanceMeter(["car"], min_area=20, min_visibility=0.5)
    m.add(missed, gt, (20, 30))
    s = m.summary()
    assert s["ground_truth"] == {"car": 1} and s["ap50"]["car"] == 1.0  # the sliver is not graded
    assert s["ground_truth_all"] == {"car": 2} and s["ap50_all"]["car"] == pytest.approx(
        51 / 101
    )  # counted here: recall 0.5
    # a prediction on the sliver is neither right nor wrong in the graded figure
    both = instances([(2, 2, 12, 12), (15, 2, 18, 12)], [0.9, 0.95], ["car", "car"])
    m = InstanceMeter(["car"], min_area=20, min_visibility=0.5)
    m.add(both, gt, (20, 30))
    assert m.summary()["ap50"]["car"] == 1.0 and m.summary()["ap50_all"]["car"] == 1.0
