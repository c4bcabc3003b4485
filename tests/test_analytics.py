import json

import cv2
import numpy as np
import pytest

from streamseg.analytics import (
    AnalyticsStage,
    Hysteresis,
    StreamAnalytics,
    corridor_mask,
    ground_distance_m,
    time_to_contact,
)
from streamseg.config import AnalyticsConfig, CameraModelConfig, validate_config
from streamseg.errors import ConfigError, SinkError, UserError
from streamseg.frames import Event, Frame, Instances, SemanticResult
from tests.conftest import ROOT, run_streamseg

W, H = 200, 100
GROUPS = ["road", "sidewalk"]  # group map values: 1 road, 2 sidewalk


def box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max(), ys.max()]


def frame(seq, objects=(), road=None, pts=None, capture_ns=0) -> Frame:
    """A frame with `objects` [(track_id, label, mask)] and, when `road` (H x W bool) is given, a
    semantic map of road there and sidewalk elsewhere."""
    f = Frame("cam", seq, seq / 10 if pts is None else pts, np.zeros((H, W, 3), np.uint8), capture_ns)
    masks = np.stack([m for _, _, m in objects]) if objects else np.zeros((0, H, W), bool)
    f.instances = Instances(
        xyxy=np.array([box(m) for _, _, m in objects], np.float32).reshape(-1, 4),
        masks=masks,
        class_id=np.zeros(len(objects), np.int32),
        score=np.ones(len(objects), np.float32),
        labels=[lab for _, lab, _ in objects],
        groups=[lab for _, lab, _ in objects],
        track_id=np.array([t for t, _, _ in objects], np.int64),
    )
    if road is not None:
        gm = np.where(road, 1, 2).astype(np.uint8)
        f.semantic = SemanticResult(gm.copy(), GROUPS, gm, GROUPS)
    return f


def person(x0, x1, y0, y1, feet=None) -> np.ndarray:
    """A rectangle; `feet` (x0, x1): only these columns reach the bottom rows (the rest ends 15 rows higher)."""
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    if feet is not None:
        m[y1 - 15 : y1, x0:x1] = False
        m[y1 - 15 : y1, feet[0] : feet[1]] = True
    return m


def analytics(sem_groups=GROUPS, **cfg) -> StreamAnalytics:
    """Zones and lines alone; a track first seen inside raises `enter` unless the test says otherwise."""
    c = AnalyticsConfig.model_validate({"corridor": {"enabled": False}, "enter_on_appear": True, **cfg})
    return StreamAnalytics(c, "cam", c.zones, c.lines)


def run(sa: StreamAnalytics, frames) -> list[Event]:
    out = []
    for f in frames:
        events, _ = sa.update(f)
        out += events
    return out


# membership -------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule, expected", [("band", ["enter"]), ("point", [])])
def test_band_share_and_bottom_centre_point_judge_differently(rule, expected):
    # the zone is the frame's left half; the object's box reaches well past it, but what stands on
    # the ground (its lowest rows, a leg at the left) is inside; its box's bottom centre is outside
    zone = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    obj = person(60, 160, 20, 80, feet=(60, 90))
    sa = analytics(zones=[zone], membership=rule, min_frames=2)
    events = run(sa, [frame(i, [(1, "person", obj)]) for i in range(4)])
    assert [e.type for e in events] == expected
    if expected:
        # raised on frame 1 (min_frames = 2), timed by frame 0, where the change began
        assert (events[0].seq, events[0].zone, events[0].metrics["confirmed_seq"]) == (0, "left", 1)


def test_semantic_zone_follows_a_moving_road_mask():
    # a person stands still; the road (a vertical strip) slides under it and away again
    obj = person(95, 105, 30, 70)
    zone = {"name": "on_road", "groups": ["road"]}
    sa = analytics(zones=[zone], min_frames=1)
    types = []
    for i, x0 in enumerate(range(20, 190, 10)):
        road = np.zeros((H, W), bool)
        road[:, x0 : x0 + 40] = True
        types += [(x0, e.type) for e in sa.update(frame(i, [(7, "person", obj)], road))[0]]
    # in once the strip holds half the feet (x0 = 60: columns 95-99 of 95-104), out once it holds
    # none of them (x0 = 100 still holds half: above exit_share, hysteresis keeps it in)
    assert types == [(60, "enter"), (110, "exit")]


def test_membership_reads_the_ground_beside_an_objects_own_pixels():
    # the road mask has a hole where the person is (its own pixels are "person", not road); the
    # ground just under its feet is road: it is on the road
    obj = person(90, 110, 20, 60)
    road = np.ones((H, W), bool)
    road[obj] = False
    sa = analytics(zones=[{"name": "on_road", "groups": ["road"]}], min_frames=1)
    _, fa = sa.update(frame(0, [(1, "person", obj)], road))
    assert fa.zones["on_road"].tolist() == [True]
    assert fa.counts["on_road"] == {"person": 1}


def test_an_object_cut_off_by_the_frames_bottom_keeps_its_state():
    zone = {"name": "top", "polygon": [[0, 0], [1, 0], [1, 0.9], [0, 0.9]]}
    sa = analytics(zones=[zone], min_frames=1)
    inside = person(90, 110, 20, 60)
    cut = person(90, 110, 50, H)  # reaches the last row: where it stands is out of view
    types = [
        e.type for f in (frame(0, [(1, "person", inside)]), frame(1, [(1, "person", cut)])) for e in sa.update(f)[0]
    ]
    assert types == ["enter"]  # no exit: the ground under it was not seen


def test_a_track_first_seen_inside_raises_nothing_unless_enter_on_appear():
    zone = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    inside, outside = person(20, 40, 20, 60), person(150, 170, 20, 60)
    seq = [inside, inside, outside, outside, inside, inside]
    for appear, expected in ((False, ["exit", "enter"]), (True, ["enter", "exit", "enter"])):
        sa = analytics(zones=[zone], min_frames=2, enter_on_appear=appear)
        assert [e.type for e in run(sa, [frame(i, [(1, "person", m)]) for i, m in enumerate(seq)])] == expected


def test_unsure_and_duplicate_detections_give_no_evidence():
    zone = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    inside = person(20, 40, 20, 60)
    sa = analytics(zones=[zone], min_frames=1, min_score=0.6)
    f = frame(0, [(1, "person", inside)])
    f.instances.score[:] = 0.4  # unsure
    assert sa.update(f)[0] == []
    # a second, less sure detection mostly inside the first one's box: one object, one event
    g = frame(1, [(2, "person", inside), (3, "person", person(22, 38, 25, 60))])
    g.instances.score[:] = [0.9, 0.7]
    assert [(e.type, e.track_id) for e in sa.update(g)[0]] == [("enter", 2)]


def test_two_people_one_behind_the_other_are_no_duplicates():
    from streamseg.analytics import duplicates

    front = person(20, 40, 20, 60)
    behind = person(25, 38, 15, 50) & ~front  # its box lies inside the front one's; its pixels do not
    f = frame(0, [(1, "person", front), (2, "person", behind)])
    assert duplicates(f.instances).tolist() == [False, False]
    twice = frame(0, [(1, "person", front), (2, "person", person(21, 39, 21, 60))])
    twice.instances.score[:] = [0.7, 0.9]
    assert duplicates(twice.instances).tolist() == [True, False]  # the less sure of one object's two masks


def test_ground_hidden_by_a_thing_in_front_is_no_evidence():
    # a person on the road; a car in front hides the road under its feet: it stays on the road
    obj = person(95, 105, 30, 60)
    road = np.ones((H, W), bool)
    sa = analytics(zones=[{"name": "on_road", "groups": ["road"]}], min_frames=1)
    assert [e.type for e in sa.update(frame(0, [(1, "person", obj)], road))[0]] == ["enter"]
    f = frame(1, [(1, "person", obj)], road)
    f.semantic.group_map[60:80, 80:120] = 3  # group 3: car
    sem = f.semantic
    f.semantic = SemanticResult(sem.group_map.copy(), [*GROUPS, "car"], sem.group_map, [*GROUPS, "car"])
    events, fa = sa.update(f)
    assert events == [] and fa.zones["on_road"].tolist() == [True]


def test_a_map_coarser_than_the_frame_is_read_under_the_feet_not_on_them():
    # the semantic map at half the frame's size, the person's own pixels on it: one frame row under
    # its lowest mask row (58) is still map row 29, the person's; the ground is read a map row lower
    obj = person(95, 105, 30, 59)
    small = np.ones((H // 2, W // 2), np.uint8)  # road
    small[15:30, 47:53] = 3  # the person, as the semantic model sees it
    f = frame(0, [(1, "person", obj)], np.ones((H, W), bool))
    groups = [*GROUPS, "person"]
    gm = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
    f.semantic = SemanticResult(gm.copy(), groups, gm, groups, small)
    sa = analytics(zones=[{"name": "on_road", "groups": ["road"]}], min_frames=1)
    events, fa = sa.update(f)
    assert [e.type for e in events] == ["enter"] and fa.zones["on_road"].tolist() == [True]


def test_a_detached_speck_under_the_feet_is_not_the_ground_contact():
    # the person stands on the sidewalk; its mask holds a speck 6 rows under the feet, on the road
    # (a model's mask bleeding onto the lane marking a step ahead): the speck's columns would make
    # it "on the road"
    obj = person(90, 110, 20, 60)
    obj[66:68, 92:108] = True
    road = np.zeros((H, W), bool)
    road[63:, :] = True
    sa = analytics(zones=[{"name": "on_road", "groups": ["road"]}], min_frames=1)
    events, fa = sa.update(frame(0, [(1, "person", obj)], road))
    assert events == [] and fa.zones["on_road"].tolist() == [False]


def test_a_mask_that_stops_short_of_the_feet_is_continued_by_the_semantic_map():
    # the instance mask ends at row 49; the semantic map shows the person's legs down to row 55 and
    # the road under them (the sidewalk under the mask's own last row): the person is on the road
    obj = person(95, 105, 20, 50)
    gm = np.full((H, W), 2, np.uint8)  # sidewalk
    gm[56:, :] = 1  # road from row 56
    gm[20:56, 95:105] = 3  # the person, as the semantic model sees it
    groups = [*GROUPS, "person"]
    f = frame(0, [(1, "person", obj)])
    f.semantic = SemanticResult(gm.copy(), groups, gm, groups)
    sa = analytics(zones=[{"name": "on_road", "groups": ["road"]}], min_frames=1)
    events, fa = sa.update(f)
    assert [e.type for e in events] == ["enter"] and fa.zones["on_road"].tolist() == [True]
    # the map's own group only: a car under the person's mask does not continue it
    gm[50:56, 95:105] = 4
    f = frame(0, [(1, "person", obj)])
    f.semantic = SemanticResult(gm.copy(), [*groups, "car"], gm, [*groups, "car"])
    sa = analytics(zones=[{"name": "on_road", "groups": ["road"]}], min_frames=1)
    assert sa.update(f)[0] == []


# debounce, hysteresis, pts ------------------------------------------------------------------------
def test_hysteresis_and_debounce():
    h = Hysteresis()
    steps = [
        (0.6, False),
        (0.2, False),
        (0.6, False),
        (0.6, True),
        (0.4, True),
        (0.35, True),
        (0.3, True),
        (0.3, False),
    ]
    got = []
    for share, _ in steps:
        h.update(share, enter=0.5, exit_=0.3, min_frames=2)
        got.append(h.inside)
    # one frame in is no entry (debounce); 0.4 and 0.35 sit between the thresholds (hysteresis);
    # two frames at 0.3 take it out
    assert got == [s for _, s in steps]


def test_events_are_timed_by_pts_not_the_clock():
    zone = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    sa = analytics(zones=[zone], min_frames=1)
    inside, outside = person(20, 40, 20, 60), person(150, 170, 20, 60)
    pts = [100.0, 100.5, 103.25, 104.0]
    clocks = [9e18, 1, 5, 0]  # capture times are nonsense: nothing may depend on them
    objs = [inside, inside, outside, outside]
    events = run(
        sa,
        [
            frame(i, [(3, "person", o)], pts=p, capture_ns=c)
            for i, (o, p, c) in enumerate(zip(objs, pts, clocks, strict=False))
        ],
    )
    assert [(e.type, e.pts_s) for e in events] == [("enter", 100.0), ("exit", 103.25)]
    assert events[1].metrics["dwell_s"] == 3.25


def test_a_debounced_event_is_timed_by_its_onset_and_says_when_it_was_confirmed():
    # steps in at frame 2 (pts 0.2), holds; min_frames = 3 confirms it on frame 4: the event says
    # it happened at frame 2 and was known 0.2 s later; the exit likewise, with the dwell between onsets
    zone = {"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
    sa = analytics(zones=[zone], min_frames=3, enter_on_appear=False)
    inside, outside = person(20, 40, 20, 60), person(150, 170, 20, 60)
    objs = [outside, outside] + [inside] * 5 + [outside] * 4
    frames = [frame(i, [(3, "person", o)], pts=i / 10) for i, o in enumerate(objs)]
    raised = [(f.seq, e) for f in frames for e in sa.update(f)[0]]
    assert [(at, e.type, e.seq, e.pts_s) for at, e in raised] == [(4, "enter", 2, 0.2), (9, "exit", 7, 0.7)]
    assert [(e.metrics["confirmed_seq"], e.metrics["delay_s"]) for _, e in raised] == [(4, 0.2), (9, 0.2)]
    assert raised[1][1].metrics["dwell_s"] == 0.5


def test_dwell_event_once_after_dwell_s():
    zone = {"name": "kerb", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "dwell_s": 1.0}
    sa = analytics(zones=[zone], min_frames=1)
    obj = person(90, 110, 20, 60)
    events = run(sa, [frame(i, [(5, "person", obj)], pts=i * 0.25) for i in range(10)])
    assert [(e.type, e.pts_s) for e in events] == [("enter", 0.0), ("dwell", 1.0)]
    assert events[1].metrics["dwell_s"] == 1.0


def test_a_lost_track_leaves_its_zones():
    sa = analytics(zones=[{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}], min_frames=1, lost_frames=3)
    obj = person(90, 110, 20, 60)
    events = run(sa, [frame(0, [(5, "person", obj)])] + [frame(i) for i in range(1, 5)])
    assert [(e.type, e.seq, e.metrics.get("lost")) for e in events] == [("enter", 0, None), ("exit", 3, True)]
    # a track whose being inside was never raised (first seen there) leaves silently too
    sa = analytics(
        zones=[{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        min_frames=1,
        lost_frames=3,
        enter_on_appear=False,
    )
    assert run(sa, [frame(0, [(5, "person", obj)])] + [frame(i) for i in range(1, 5)]) == []


# lines --------------------------------------------------------------------------------------------------
def walk(ys, x=100):
    return [person(x - 5, x + 5, y - 20, y) for y in ys]


@pytest.mark.parametrize(
    "ys, x, expected",
    [
        ([40, 45, 50, 55, 60, 65, 70], 100, ["in"]),  # down the image, over the line at y = 0.55
        ([70, 65, 60, 55, 50, 45, 40], 100, ["out"]),  # up
        ([54, 57, 53, 57, 54, 56, 53], 100, []),  # jitter within the margin: nothing
        ([40, 45, 50, 55, 60, 65, 70], 190, []),  # beside the segment's end: no crossing
    ],
)
def test_line_crossing_direction(ys, x, expected):
    line = {"name": "l", "points": [[0.1, 0.55], [0.8, 0.55]], "margin": 0.02}
    sa = analytics(lines=[line], min_frames=2)
    events = run(sa, [frame(i, [(2, "car", m)]) for i, m in enumerate(walk(ys, x))])
    assert [e.metrics["direction"] for e in events] == expected
    assert all(e.type == "cross" and e.zone == "l" for e in events)


# ego corridor ----------------------------------------------------------------------------------------
def test_corridor_is_the_drivable_component_at_the_bottom_centre_narrowed():
    gm = np.full((H, W), 2, np.uint8)  # sidewalk
    ys, xs = np.mgrid[0:H, 0:W]
    road = (ys >= 40) & (np.abs(xs - W / 2 - (H - ys) * 0.3) <= (ys - 40) * 1.6)  # a road curving right
    gm[road] = 1
    gm[5:15, 5:30] = 1  # a patch of road elsewhere, not connected
    c = corridor_mask(gm, [1], (W, H), width=0.5, top_row=40)
    assert not c[5:15, 5:30].any()  # only the component under the camera
    assert (c <= road).all()
    assert c.sum() < road.sum() * 0.7  # narrowed
    assert c[H - 1, W // 2]  # the bottom centre
    # its centre follows the road's bend: higher up it sits right of the frame's centre
    row = c[50]
    assert row.any() and np.flatnonzero(row).mean() > W / 2


@pytest.mark.parametrize("hidden_from", [None, 110], ids=["whole", "far-road-hidden"])
def test_corridor_is_centred_on_the_camera_when_the_frame_cuts_the_road_off(hidden_from):
    # a straight road seen from a camera 1.5 m up, horizon at row 100: its left edge 2 m to our left is
    # in view, its right edge 12 m to our right is not (cut off by the frame's side); far away a
    # building hides it above row `hidden_from`. Our path is the frame's centre column at every row,
    # and the corridor is as wide in metres as its width says at the bottom (its vanishing row is the
    # horizon, wherever the road's visible end is)
    w, h, hor = 640, 360, 100.0
    gm = np.full((h, w), 2, np.uint8)
    ys, xs = np.mgrid[0:h, 0:w]
    k = (ys - hor) / 1.5  # pixels per metre at each row
    gm[(ys > hor) & (xs >= w / 2 - 2 * k) & (xs <= w / 2 + 12 * k)] = 1
    if hidden_from is not None:
        gm[:hidden_from] = 0
    c = corridor_mask(gm, [1], (w, h), width=0.6, top_row=0)
    for row in (150, 250, h - 1):
        cols = np.flatnonzero(c[row])
        half = 0.6 * w / 2 * (row - hor) / (h - 1 - hor)
        assert (cols.min() + cols.max()) / 2 == pytest.approx(w / 2, abs=3), row
        assert (cols.max() - cols.min()) / 2 == pytest.approx(half, abs=3 + 0.03 * half), row


def test_corridor_trapezoid_without_a_road_mask():
    c = corridor_mask(None, [], (W, H), width=0.5, top_row=40)
    assert not c[:40].any()
    assert c[H - 1].sum() == pytest.approx(0.5 * W, abs=2)
    assert np.array_equal(c, c[:, ::-1]) or abs(int(c.sum()) - int(c[:, ::-1].sum())) <= H  # symmetric
    assert c[70].sum() < c[H - 1].sum()


def test_intrusion_and_closest_in_path_with_metres_and_ttc():
    cam = {"height_m": 1.5, "focal_px": 100.0, "pitch_deg": 0.0}
    cfg = AnalyticsConfig.model_validate({"corridor": {"camera": cam, "width": 0.5}, "min_frames": 1})
    sa = StreamAnalytics(cfg, "cam", [], [])
    events, rows = [], []
    for i, bottom in enumerate([60, 62, 65, 70, 78, 90]):  # a person walking towards us, in our path
        ev, fa = sa.update(frame(i, [(4, "person", person(95, 105, bottom - 15, bottom))], pts=i * 0.1))
        events += ev
        rows.append(fa.in_path)
    assert events[0].type == "intrusion_start" and events[0].seq == 0
    assert events[0].metrics["distance_rows"] == H - 1 - 59
    assert all(p is not None and p.track_id == 4 for p in rows)
    assert [p.distance_rows for p in rows] == sorted((p.distance_rows for p in rows), reverse=True)
    # flat ground: row 59 is 9 rows under the centre (50): 1.5 m * 100 px / 9 px
    assert rows[0].distance_m == pytest.approx(1.5 * 100 / 9, abs=0.02)
    assert rows[-1].ttc_s is not None and rows[-1].ttc_s > 0


def test_ground_distance_and_time_to_contact():
    cam = CameraModelConfig(height_m=1.5, focal_px=1000.0)
    assert ground_distance_m(cam, (1280, 720), 460) == pytest.approx(15.0)
    assert ground_distance_m(cam, (1280, 720), 300) is None  # above the horizon
    hfov = CameraModelConfig(height_m=1.5, hfov_deg=90.0)  # focal = half the width
    assert ground_distance_m(hfov, (1280, 720), 360 + 64) == pytest.approx(15.0)
    # closing at 5 m/s from 20 m: 4 s at the start, 3 s one second later
    hist = [(t, 20 - 5 * t) for t in np.arange(0, 1.01, 0.1)]
    assert time_to_contact(hist) == pytest.approx(3.0, abs=0.01)
    assert time_to_contact([(t, 10.0) for t in np.arange(0, 1, 0.1)]) is None  # not closing


# the stage, the sink, the config --------------------------------------------------------------------
def test_stage_counts_events_for_the_report():
    cfg = AnalyticsConfig.model_validate(
        {"zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1]]}], "min_frames": 1, "enter_on_appear": True}
    )
    st = AnalyticsStage(cfg, GROUPS, ["person", "car"])
    st.process(frame(0, [(1, "person", person(150, 160, 10, 40))]))
    s = st.summary()
    assert s["events"] == {"enter": {"all": 1}} and s["frames"] == 1 and s["cpu_ms_per_frame"] >= 0


def test_events_sink_writes_valid_jsonl(tmp_path):
    from streamseg.sinks import open_sink, sink_file
    from streamseg.sinks.events import EventsSink

    for uri in (f"events:{tmp_path}/a.jsonl", f"events://{tmp_path}/a.jsonl", f"{tmp_path}/a.events.jsonl"):
        assert isinstance(open_sink(uri), EventsSink), uri
    assert sink_file(f"events:{tmp_path}/a.jsonl") == tmp_path / "a.jsonl"
    sink = open_sink(f"events:{tmp_path}/ev.jsonl")

    class Pipe:
        class cfg:  # noqa: N801
            analytics = AnalyticsConfig()

    sink.attach(Pipe)
    with sink:
        sink.open({})
        f = frame(0)
        f.events = [
            Event("enter", "cam", 0, 0.5, 3, "person", "on_road", {"share": 0.9}),
            Event("cross", "cam", 0, 0.5, 4, "car", "l", {"direction": "in"}),
        ]
        sink.write(f)
        sink.write(frame(1))  # no events: no line
    lines = (tmp_path / "ev.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["type"] for r in recs] == ["enter", "cross"]
    assert set(recs[0]) == {"type", "stream", "seq", "pts_s", "track_id", "label", "zone", "metrics"}

    class NoAnalytics:
        class cfg:  # noqa: N801
            analytics = None

    with pytest.raises(SinkError, match="needs an `analytics:` section"):
        open_sink(f"events:{tmp_path}/b.jsonl").attach(NoAnalytics)


@pytest.mark.parametrize(
    "analytics, error",
    [
        (
            {"zones": [{"name": "z", "groups": ["road"], "polygon": [[0, 0], [1, 0], [1, 1]]}]},
            "either `polygon` or `groups`",
        ),
        ({"zones": [{"name": "z"}]}, "either `polygon` or `groups`"),
        ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}, "at least 3 points"),
        ({"zones": [{"name": "z", "polygon": [[0, 0], [2, 0], [1, 1]]}]}, "normalized"),
        ({"lines": [{"name": "l", "points": [[0.5, 0.5], [0.5, 0.5]]}]}, "must differ"),
        ({"enter_share": 0.3, "exit_share": 0.5}, "exit_share must not exceed enter_share"),
        (
            {"zones": [{"name": "a", "groups": ["road"]}], "lines": [{"name": "a", "points": [[0, 0], [1, 1]]}]},
            "unique: a",
        ),
        ({"corridor": {"camera": {"height_m": 1.4}}}, "either focal_px or hfov_deg"),
        ({"membership": "box"}, "analytics.membership"),
        ({"zonez": []}, "analytics.zonez: unknown key"),
        ({"min_frames": 0}, "analytics.min_frames"),
    ],
)
def test_config_errors(analytics, error):
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace("`", "`")):
        validate_config({"analytics": analytics})


@pytest.mark.parametrize(
    "analytics, sem, inst, tracking, error",
    [
        ({"zones": [{"name": "z", "groups": ["grass"]}]}, GROUPS, ["person"], True, "no group 'grass'"),
        ({"zones": [{"name": "z", "groups": ["road"]}]}, None, ["person"], True, "no semantic engine"),
        ({"corridor": {"objects": ["bicycle"]}}, GROUPS, ["person", "car"], True, "corridor.objects"),
        ({}, GROUPS, ["person", "car"], False, "turn tracking on"),
    ],
)
def test_stage_refuses_what_the_models_cannot_do(analytics, sem, inst, tracking, error):
    with pytest.raises(UserError, match=error):
        AnalyticsStage(AnalyticsConfig.model_validate(analytics), sem, inst, tracking)


def test_streamseg_run_with_analytics_writes_events(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        f"""\
sources: ["synthetic://driving?size=320x180&fps=10&seed=3&frames=12"]
engines:
  semantic: {{card: {ROOT}/engines/synth-semantic.yaml, backend: onnxruntime}}
  instance: {{card: {ROOT}/engines/synth-instance.yaml, backend: onnxruntime}}
pipeline: {{warmup: false}}
analytics:
  zones: [{{name: on_road, groups: [road, lane]}}]
  min_frames: 2
  enter_on_appear: true   # the cars already on the road at the first frame raise enter
metrics: {{progress: false, summary: false}}
"""
    )
    ev, rep = tmp_path / "out" / "ev.jsonl", tmp_path / "out" / "r.json"
    r = run_streamseg(
        "run", "-c", cfg, "--sink", f"events:{ev}", "--sink", tmp_path / "out" / "f.jsonl", "--report", rep
    )
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in ev.read_text().splitlines()]
    assert recs, "the cars on the road raise enter events"
    assert {r["zone"] for r in recs} <= {"on_road", "ego_corridor"}
    assert any(r["type"] == "enter" and r["label"] == "car" for r in recs)
    report = json.loads(rep.read_text())
    by = report["analytics"]["events"]
    assert sum(n for zones in by.values() for n in zones.values()) == len(recs)
    frames = [json.loads(line) for line in (tmp_path / "out" / "f.jsonl").read_text().splitlines()]
    assert sum(len(f.get("events", [])) for f in frames) == len(recs)  # the same events, per frame


def test_run_refuses_an_analytics_group_the_model_lacks(tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        f"""\
sources: ["synthetic://driving?size=320x180&fps=10&seed=3&frames=3"]
engines:
  semantic: {{card: {ROOT}/engines/synth-semantic.yaml, backend: onnxruntime}}
analytics:
  zones: [{{name: z, groups: [grass]}}]
"""
    )
    r = run_streamseg("run", "-c", cfg, "--sink", tmp_path / "o.mp4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no group 'grass'" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o.mp4").exists()  # refused before any sink was opened
