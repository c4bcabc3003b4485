import numpy as np
import pytest

from streamseg.errors import SourceError
from streamseg.sources import open_source
from streamseg.synth.scene import LABELS, DrivingScene

CAR, PERSON = LABELS.index("car"), LABELS.index("person")


def test_same_seed_same_frames_other_seed_other_frames():
    a, b, c = DrivingScene((320, 180), 30, 5), DrivingScene((320, 180), 30, 5), DrivingScene((320, 180), 30, 6)
    for i in (0, 17, 90):
        fa, fb, fc = a.render(i), b.render(i), c.render(i)
        for x, y in zip(fa, fb, strict=True):
            np.testing.assert_array_equal(x, y)
        assert not np.array_equal(fa[0], fc[0])
    assert not np.array_equal(a.render(0)[0], a.render(5)[0])  # it moves


@pytest.mark.parametrize("seed", range(6))
def test_ground_truth_is_consistent(seed):
    scene = DrivingScene((640, 360), 30, seed)
    seen = set()
    for i in range(0, 120, 20):
        img, label, inst = scene.render(i)
        assert img.shape == (360, 640, 3) and label.shape == inst.shape == (360, 640)
        # every instance pixel carries its instance's class, one class per instance
        for oid in np.unique(inst[inst > 0]):
            classes = np.unique(label[inst == oid])
            assert len(classes) == 1 and classes[0] in (CAR, PERSON), (oid, classes)
            seen.add(int(classes[0]))
        # and every car/person pixel belongs to an instance
        assert (inst[(label == CAR) | (label == PERSON)] > 0).all()
        # road at the bottom centre, sky at the top
        assert label[-5, 320] in (LABELS.index("road"), LABELS.index("lane"), CAR)
        assert (label[0] == LABELS.index("sky")).mean() > 0.2 or (label[0] == LABELS.index("building")).mean() > 0.2
    assert CAR in seen


def test_full_areas_give_each_object_its_visibility():
    """The unoccluded area of every object: never less than what is visible, and some objects hidden in part."""
    scene = DrivingScene((640, 360), 30, 0)
    shares = []
    for i in range(0, 60, 10):
        _, _, inst = scene.render(i)
        full = scene.full_areas()
        ids, visible = np.unique(inst, return_counts=True)
        for oid, n in zip(ids, visible, strict=True):
            if oid:
                assert n <= full[oid], (i, oid, n, full[oid])
                shares.append(n / full[oid])
    assert max(shares) == 1.0 and min(shares) < 0.5  # in full view, and behind others


def test_instance_ids_are_stable_over_time():
    scene = DrivingScene((640, 360), 30, 1)
    ids = [set(np.unique(scene.render(i)[2])) - {0} for i in (0, 1, 2)]
    assert ids[0] & ids[1] & ids[2]  # the same objects keep their ids frame to frame


def test_varied_scenes():
    scenes = [DrivingScene((64, 36), 30, s) for s in range(40)]
    assert {s.light for s in scenes} == {"day", "dusk", "overcast"}
    assert {s.lanes for s in scenes} == {2, 3, 4}


def test_training_scenes_can_hold_more_people_and_the_default_scene_is_unchanged():
    """`people` scales the pedestrians of a scene (training draws more of the rarest class); 1.0 is the
    scene every source and every evaluation shows, the same for a seed as ever."""
    base, same, crowd = (DrivingScene((320, 180), 30, 3, people=p) for p in (1.0, 1.0, 3.0))
    people = [sum(o.kind == "person" for o in s.objs) for s in (base, same, crowd)]
    assert people[0] == people[1] and people[2] >= 2.5 * people[0]
    np.testing.assert_array_equal(base.render(7)[0], DrivingScene((320, 180), 30, 3).render(7)[0])
    cars = [sum(o.kind == "car" for o in s.objs) for s in (base, crowd)]
    assert cars[0] == cars[1]  # only the people change


def test_source_uri_and_truth():
    src = open_source("synthetic://driving?size=160x90&fps=15&seed=2&frames=4")
    with src:
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert len(frames) == 4 and src.fps == 15 and src.size_wh == (160, 90)
    assert frames[1].pts == pytest.approx(1 / 15)
    assert frames[0].truth.label_map.shape == (90, 160) and frames[0].truth.labels == LABELS
    assert all(f.truth.full_areas is not None for f in frames)


def test_loop_replays_frames_rendered_once_with_pts_running_on():
    uri = "synthetic://driving?size=160x90&fps=10&seed=3&frames=7"
    with open_source(uri) as src:
        rendered = [src.read() for _ in range(3)]
    with open_source(uri + "&loop=3") as src:
        looped = []
        while (f := src.read()) is not None:
            looped.append(f)
    assert len(looped) == 7
    for i, f in enumerate(looped):
        assert np.array_equal(f.image_bgr, rendered[i % 3].image_bgr)
        assert np.array_equal(f.truth.label_map, rendered[i % 3].truth.label_map)
        assert f.pts == pytest.approx(i / 10)  # time goes on: a camera that sees the same road again
    looped[0].image_bgr[:] = 0  # a stage drawing on one frame leaves the replayed copies alone
    assert np.array_equal(looped[3].image_bgr, rendered[0].image_bgr)


@pytest.mark.parametrize(
    "uri, error",
    [
        ("synthetic://driving?loop=5000", "loop is 0"),
        ("synthetic://city", "one scene, synthetic://driving"),
        ("synthetic://driving?size=big", "must be numbers"),
        ("synthetic://driving?size=8x8", "16..8192"),
        ("synthetic://driving?colour=red", "unknown parameter"),
        ("synthetic://driving?people=many", "must be numbers"),
        ("synthetic://driving?people=20", "0..10"),
    ],
)
def test_bad_synthetic_uris(uri, error):
    with pytest.raises(SourceError, match=error):
        open_source(uri)


def test_people_scales_the_pedestrians_and_the_truth_says_where_they_stand():
    # more pedestrians, more to grade: the same seed with people=3 holds more persons than the usual scene
    def persons(uri):
        src = open_source(uri)
        src.open()
        f = src.read()
        assert f.truth.camera is not None and {"height_m", "focal_px", "horizon_row", "far_m"} <= set(f.truth.camera)
        return sum(1 for o in src.scene.objs if o.kind == "person")

    base = "synthetic://driving?size=160x90&frames=2&seed=7"
    assert persons(base + "&people=3") > persons(base)


def test_the_solid_edge_lines_lie_inside_the_road_on_a_bend():
    # seed 2016, frame 126: a bend (the road's centre 0.39 m off at 19 m). The right edge line is
    # painted 0.3 m inside the road's edge; drawn as a few long chords it bowed out onto the
    # sidewalk, so "road + lane" reached half a metre past the edge the truth uses
    scene = DrivingScene((640, 360), 15, 2016)
    _, label, _ = scene.render(126)
    s = scene.speed * 126 / scene.fps
    _, right = scene._road_edges()
    for z in (15.0, 22.0, 30.0):  # where no car or person stands on the edge
        c = float(scene._curve(z, s))
        assert abs(c) > 0.1
        for x, expected in ((right - 0.3, "lane"), (right + 0.15, "sidewalk")):
            u, v = scene._pt(x + c, 0, z)
            assert LABELS[label[int(v), int(round(u))]] == expected, (z, x)


def test_contact_in_view_says_how_much_of_the_ground_contact_shows():
    scene = DrivingScene((640, 360), 15, 2168)
    # person 77 walks behind a parked car: its feet show under the car's body for a while
    view = []
    for i in (135, 138, 141, 144):
        _, _, inst = scene.render(i)
        view.append(scene.contact_in_view()[77])
        assert (inst == 77).any()
    assert view[0] == 1.0 and view[1] > 0.5 and view[2] < 0.3 and view[3] < 0.15
    full = [v for i in range(0, 150, 10) for v in (scene.render(i), scene.contact_in_view())[1].values()]
    assert min(full) >= 0.0 and max(full) == 1.0
