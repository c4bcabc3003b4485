import numpy as np
import pytest

from streamseg.evaluate import InstanceMeter, SemanticMeter, ap_101, gt_instances, mask_iou_matrix
from streamseg.frames import Event, Instances, SemanticResult


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


# the instance model graded per pixel, group merging, Cityscapes instance ids --------------
def test_instance_masks_graded_per_pixel_as_the_union_per_group():
    from streamseg.evaluate import instance_group_masks

    pred = instances([(0, 0, 10, 10), (5, 0, 15, 10), (20, 0, 25, 5)], [0.9, 0.8, 0.7], ["car", "car", "person"])
    masks = instance_group_masks(pred, ["car", "person"], (20, 30))
    assert masks["car"].sum() == 150 and masks["person"].sum() == 25  # the two cars overlap on 50 px
    gt = np.zeros((20, 30), np.uint8)
    gt[0:10, 0:12] = 1  # car pixels of a CamVid-like label image: 120 px
    m = SemanticMeter()
    m.add_masks(masks, gt, ["background", "car", "person"])
    assert m.iou() == {"car": pytest.approx(120 / 150), "person": 0.0}


def test_merge_grades_lane_as_road_on_both_sides():
    gm = np.zeros((10, 10), np.uint8)
    gm[5:, :] = 1  # road
    gm[5:, 4:6] = 2  # lane paint over the road
    pred = SemanticResult(gm.copy(), ["bg", "road", "lane"], gm, ["road", "lane"])
    gt = np.zeros((10, 10), np.uint8)
    gt[5:, :] = 1  # the dataset labels the paint as road
    plain = SemanticMeter()
    plain.add(pred, gt, ["background", "road"])
    assert plain.iou() == {"road": pytest.approx(40 / 50), "lane": 0.0}
    merged = SemanticMeter({"lane": "road"})
    merged.add(pred, gt, ["background", "road"])
    assert merged.iou() == {"road": 1.0}
    gt_lane = gt.copy()
    gt_lane[5:, 4:6] = 2  # a dataset that has lane labels: merged into road too
    merged.add(pred, gt_lane, ["background", "road", "lane"])
    assert merged.iou() == {"road": 1.0}


def test_cityscapes_instance_ids_and_file_names(tmp_path):
    from streamseg.sources.images import cityscapes_instances, find_label_files

    # 7: road; 26: a group of cars (a crowd, no instance); 24000: the first person (index 0)
    ids = np.array([[7, 26, 26001, 26001], [24000, 24000, 24002, 0]], np.int32)
    cls, inst = cityscapes_instances(ids)
    assert cls.tolist() == [[7, 26, 26, 26], [24, 24, 24, 0]]
    assert inst.tolist() == [[0, 0, 26001, 26001], [24000, 24000, 24002, 0]]
    img = tmp_path / "aachen_000000_000019_leftImg8bit.png"
    for name in ("aachen_000000_000019_gtFine_labelIds.png", "aachen_000000_000019_gtFine_instanceIds.png"):
        (tmp_path / name).write_bytes(b"")
    assert find_label_files(tmp_path, img) == (
        tmp_path / "aachen_000000_000019_gtFine_labelIds.png",
        tmp_path / "aachen_000000_000019_gtFine_instanceIds.png",
    )
    assert find_label_files(tmp_path, tmp_path / "other.jpg") == (None, None)


# mask AP against pycocotools ---------------------------------------------------------------
def _random_scene(rng, shape, n_gt):
    """An instance map of rectangles and ellipses (later ones hide earlier ones), labels 1 = car, 2 = person."""
    import cv2

    h, w = shape
    inst = np.zeros(shape, np.int32)
    lab = np.zeros(shape, np.uint8)
    for k in range(1, n_gt + 1):
        cls = int(rng.integers(1, 3))
        x0, y0 = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
        x1, y1 = x0 + int(rng.integers(6, 30)), y0 + int(rng.integers(6, 24))
        m = np.zeros(shape, np.uint8)
        if rng.random() < 0.5:
            m[y0:y1, x0:x1] = 1
        else:
            box = ((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), float(rng.integers(0, 180))
            cv2.ellipse(m, box, 1, -1)
        inst[m > 0], lab[m > 0] = k, cls
    if rng.random() < 0.5:  # a crowd: group pixels without an instance id (Cityscapes' car groups)
        y, x = int(rng.integers(0, h - 16)), int(rng.integers(0, w - 24))
        inst[y : y + 16, x : x + 24], lab[y : y + 16, x : x + 24] = 0, int(rng.integers(1, 3))
    return inst, lab


def _predictions(rng, gt_masks, gt_groups, shape):
    """For each object: maybe a shifted copy (maybe twice: a duplicate); plus a few false alarms."""
    masks, groups = [], []
    for m, g in zip(gt_masks, gt_groups, strict=True):
        for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
            dy, dx = (int(v) for v in rng.integers(-3, 4, 2))
            masks.append(np.roll(np.roll(m, dy, 0), dx, 1))
            groups.append(g if rng.random() < 0.9 else ("person" if g == "car" else "car"))
    for _ in range(int(rng.integers(0, 3))):
        m = np.zeros(shape, bool)
        y, x = int(rng.integers(0, shape[0] - 8)), int(rng.integers(0, shape[1] - 8))
        m[y : y + 8, x : x + int(rng.integers(4, 12))] = True
        masks.append(m)
        groups.append(str(rng.choice(["car", "person"])))
    keep = [i for i, m in enumerate(masks) if m.any()]
    masks = [masks[i] for i in keep]
    groups = [groups[i] for i in keep]
    xyxy = []
    for m in masks:
        ys, xs = np.nonzero(m)
        xyxy.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    scores = rng.random(len(masks)).astype(np.float32) * 0.98 + 0.01  # distinct: no ties across images
    return Instances(
        np.array(xyxy, np.float32).reshape(-1, 4),
        np.array(masks, bool).reshape(-1, *shape),
        np.zeros(len(masks), np.int32),
        scores,
        list(groups),
        list(groups),
    )


def test_mask_ap50_is_pycocotools_ap_at_iou_0_5():
    """Same predictions, same ground truth: our AP50 per group equals COCOeval's (segm, IoU 0.5,
    all areas, 100 detections) to 1e-6. Our graded figure adds an area/visibility rule of its
    own (unmatched small detections still count), so the cross-check is over every object."""
    import contextlib
    import io

    maskutils = pytest.importorskip("pycocotools.mask")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    shape = (60, 80)
    labels, groups = ["bg", "car", "person"], ["car", "person"]
    meter = InstanceMeter(groups, min_area=0)
    images, anns, dets = [], [], []
    cat = {"car": 1, "person": 2}
    for img_id in range(1, 13):
        inst, lab = _random_scene(rng, shape, int(rng.integers(1, 7)))
        gt = gt_instances(inst, lab, labels, set(groups))
        gt_masks = []
        for pix in gt.pixels:
            m = np.zeros(shape[0] * shape[1], bool)
            m[pix] = True
            gt_masks.append(m.reshape(shape))
        pred = _predictions(rng, gt_masks, gt.groups, shape)  # crowds get predictions too: counted neither way
        meter.add(pred, gt, shape)
        images.append({"id": img_id, "height": shape[0], "width": shape[1]})
        for m, g, crowd in zip(gt_masks, gt.groups, gt.crowd, strict=True):
            rle = maskutils.encode(np.asfortranarray(m.astype(np.uint8)))
            x0, y0, bw, bh = maskutils.toBbox(rle).tolist()
            anns.append(
                {"id": len(anns) + 1, "image_id": img_id, "category_id": cat[g], "segmentation": rle,
                 "area": float(m.sum()), "bbox": [x0, y0, bw, bh], "iscrowd": int(crowd)}
            )  # fmt: skip
        for k in range(len(pred)):
            rle = maskutils.encode(np.asfortranarray(pred.masks[k].astype(np.uint8)))
            dets.append({"image_id": img_id, "category_id": cat[pred.groups[k]], "segmentation": rle,
                         "score": float(pred.score[k])})  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "segm")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [100]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # T x R x K x A x M
    ours = meter.summary()["ap50_all"]
    crowds = sum(a["iscrowd"] for a in anns)
    assert sum(meter.every.n_gt.values()) == len(anns) - crowds > 20 and len(dets) > 20 and crowds >= 3
    for k, g in enumerate(groups):
        theirs = float(np.mean(precision[0, :, k, 0, -1]))
        assert ours[g] == pytest.approx(theirs, abs=1e-6), g
    assert 0.2 < ours["car"] < 0.95  # a test with misses, duplicates and false alarms, not a perfect score


# analytics events ----------------------------------------------------------------------------------
def _event(seq, tid):
    from streamseg.frames import Event

    return Event("enter", "s", seq, seq / 15, tid, "person", "on_road", {})


def _frames(meter, n, where, owners=None, events=None, areas=None, cut=()):
    """Feed `n` frames: where[i] = {oid: on_road} for persons in view."""
    for i in range(n):
        pl = {o: ("person", 0.0, 10.0, on) for o, on in where(i).items()}
        meter.add_truth(
            "s", i, pl, (areas or {}).get(i, dict.fromkeys(pl, 1000)), {}, {o for o in pl if i in cut},
            (owners or {}).get(i, {}), (events or {}).get(i, []),
        )


def test_event_meter_hits_misses_false_alarms_and_what_it_ignores():
    from streamseg.evaluate import EventMeter

    m = EventMeter(window=3, min_area=400, min_frames=2)
    # person 5 steps onto the road at frame 10; person 6 stays on the sidewalk; track 1 is person 5
    where = lambda i: {5: i >= 10, 6: False}  # noqa: E731
    owners = {i: {1: (5, "person", 1000), 2: (6, "person", 1000), 3: (0, "person", 1000), 4: (0, "person", 100)} for i in range(30)}
    events = {12: [_event(12, 1)], 20: [_event(20, 2), _event(20, 3), _event(20, 4)]}
    _frames(m, 30, where, owners, events)
    s = m.summary()
    # hit: track 1 within 3 frames of person 5's step; false alarms: person 6 (never on the road) and
    # track 3 (on nothing); track 4 is smaller than graded objects and matches nothing: ignored
    assert (s["hits"], s["misses"], s["false_alarms"], s["ignored_predictions"]) == (1, 0, 2, 1)
    assert s["precision"] == pytest.approx(1 / 3, abs=1e-4) and s["recall"] == 1.0


def test_event_meter_late_events_miss_and_unseen_steps_are_not_graded():
    from streamseg.evaluate import EventMeter

    m = EventMeter(window=3, min_area=400, min_frames=2)
    where = lambda i: {5: i >= 10, 7: i >= 20}  # noqa: E731
    owners = {i: {1: (5, "person", 1000), 2: (7, "person", 1000)} for i in range(30)}
    # person 5's enter comes 5 frames late; person 7 steps on the road as it leaves the frame (cut):
    # its enter, raised in time, counts neither way
    _frames(m, 30, where, owners, {15: [_event(15, 1)], 21: [_event(21, 2)]}, cut=range(20, 24))
    s = m.summary()
    assert (s["ground_truth"], s["ground_truth_ignored"]) == (1, 1)
    assert (s["hits"], s["misses"], s["false_alarms"], s["ignored_predictions"]) == (0, 1, 1, 1)


def test_scene_placements_say_who_stands_on_the_road():
    from streamseg.synth.scene import DrivingScene

    scene = DrivingScene((320, 180), 15, seed=2016)
    left, right = scene._road_edges()
    for i in (0, 60, 126):
        for _oid, (kind, x, z, on) in scene.placements(i).items():
            assert kind in ("car", "person") and 1.5 < z < 180
            assert on == (left <= x <= right)
    # a crossing person steps onto the road in this scene (the first seed evaluate.crossing_seeds finds)
    steps = [
        i for i in range(1, 150)
        if any(k == "person" and on and not scene.placements(i - 1).get(o, ("", 0, 0, True))[3]
               for o, (k, _, _, on) in scene.placements(i).items())
    ]
    assert steps


CAM = {"height_m": 1.5, "focal_px": 500.0, "horizon_row": 160.0, "far_m": 220.0}


def test_corridor_half_width_in_metres_is_the_analytics_trapezoid():
    from streamseg.evaluate import corridor_half_m

    # at 10 m the ground is seen at row 235; the corridor is 0.6 of 640 px wide at the bottom row
    # (359) and shrinks linearly to the vanishing row, on flat ground the horizon (160), as
    # test_analytics' corridor tests pin it: the same width in metres at every distance
    half_px = 0.6 * 320 * (235 - 160) / (359 - 160)
    assert corridor_half_m(CAM, (640, 360), 10.0) == pytest.approx(half_px * 10 / 500)
    assert corridor_half_m(CAM, (640, 360), 40.0) == pytest.approx(corridor_half_m(CAM, (640, 360), 10.0))
    assert corridor_half_m(CAM, (640, 360), 3.0) is None  # below the frame
    assert corridor_half_m(CAM, (640, 360), 300.0) is None  # beyond the road


def test_event_meter_grades_intrusion_start_into_the_ego_corridor():
    from streamseg.evaluate import EventMeter, corridor_half_m

    m = EventMeter(window=3, min_frames=2, kind="intrusion_start")
    half = corridor_half_m(CAM, (640, 360), 10.0)  # about 1.41 m
    # person 5 walks across 10 m ahead from 3 m to our left, 0.1 m a frame: on the road from x = -2.5
    # (frame 5), in the corridor from |x| <= half (frame 16); track 1 is person 5
    xs = [-3 + 0.1 * i for i in range(30)]
    into = next(i for i, x in enumerate(xs) if abs(x) <= half)
    for i, x in enumerate(xs):
        events = (
            # raised 5 frames on, naming the frame after the truth's: matched at its own seq, not at the
            # frame that carried it (outside the 3-frame window)
            [Event("intrusion_start", "s", into + 1, 0.0, 1, "person", "ego_corridor", {})] if i == into + 5 else []
        )
        events += [_event(i, 1)] if i == 6 else []  # its enter: not what this meter grades
        m.add_truth(
            "s",
            i,
            {5: ("person", x, 10.0, x >= -2.5)},
            {5: 1000},
            {},
            set(),
            {1: (5, "person", 1000)},
            events,
            {5: 235},
            CAM,
            (640, 360),
        )
    s = m.summary()
    assert (s["type"], s["zone"], s["ground_truth"], s["hits"], s["false_alarms"]) == (
        "intrusion_start",
        "ego_corridor",
        1,
        1,
        0,
    )
    assert m.truth[0][1] == into == 16


def _one_step(frames: int, event_at: int, lowest, view=None) -> tuple[int, int, int, int]:
    """Person 5 steps onto the road at frame 10, 10 m ahead (its feet at row 235), its track 1 raising
    `enter` timed by `event_at`; `lowest(i)`: its lowest visible row at frame i. (graded, hits, false
    alarms, ignored predictions)."""
    from streamseg.evaluate import EventMeter

    m = EventMeter(window=3, min_frames=2)
    for i in range(frames):
        m.add_truth(
            "s",
            i,
            {5: ("person", 0.0, 10.0, i >= 10)},
            {5: 1000},
            {},
            set(),
            {1: (5, "person", 1000)},
            [_event(event_at, 1)] if i == event_at + 1 else [],
            {5: lowest(i)},
            CAM,
            (640, 360),
            None if view is None else {5: view},
        )
    s = m.summary()
    return s["ground_truth"], s["hits"], s["false_alarms"], s["ignored_predictions"]


@pytest.mark.parametrize(
    "lowest, view, expected",
    [
        (200, None, (0, 0, 0, 1)),  # a car in front hides its legs: its mask ends at row 200
        (235, None, (1, 1, 0, 0)),  # feet in view
        (235, 0.3, (0, 0, 0, 1)),  # its lowest row shows (feet under a car's body), 30% of its contact
        (235, 0.8, (1, 1, 0, 0)),
    ],
)
def test_event_meter_ignores_a_step_whose_feet_are_hidden(lowest, view, expected):
    # when its feet are hidden the step is not graded, and its enter counts neither way; in view, the
    # same enter is a hit
    assert _one_step(20, 10, lambda i: lowest, view) == expected


def test_an_event_when_the_feet_come_back_into_view_belongs_to_the_hidden_step():
    # a car hides its legs in frames 8-15, over the step; the analytics can only see it on the road
    # once its feet show again (frame 16) and raises enter then: that is the ignored step's event, not
    # a false alarm. An enter long after that is one
    for at, expected in ((16, (0, 0, 0, 1)), (30, (0, 0, 1, 0))):
        assert _one_step(40, at, lambda i: 200 if 8 <= i <= 15 else 235) == expected
