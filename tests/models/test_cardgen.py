"""`streamseg models card MODEL.onnx [-o CARD.yaml]`: cards written from what the file says."""

import onnx
import pytest
import yaml

from streamseg.errors import ModelError
from streamseg.models import load_card
from streamseg.models.cardgen import make_card, propose_groups
from tests.conftest import SHARED, run_streamseg
from tests.models_factory import constant_yolo_model, red_logits_model, yolo_case

FORMATS = SHARED / "models" / "formats"
needs_formats = pytest.mark.skipif(not FORMATS.is_dir(), reason="../shared/data/models/formats not present")

COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
COCO += [f"thing {i}" for i in range(8, 80)]  # the rest of the 80 do not matter here
CITYSCAPES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip


@pytest.mark.parametrize(
    "labels, groups",
    [
        (
            ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"],
            {"person": ["person"], "cycle": ["bicycle", "motorcycle"], "car": ["car", "bus", "truck"]},
        ),
        (
            CITYSCAPES,
            {
                "road": ["road"],
                "sidewalk": ["sidewalk"],
                "building": ["building"],
                "vegetation": ["vegetation"],
                "sky": ["sky"],
                "person": ["person"],
                "cycle": ["rider", "motorcycle", "bicycle"],
                "car": ["car", "truck", "bus"],
            },
        ),
        (["0", "1", "2"], {}),
        (["Drivable_Area", "lane-marking"], {"road": ["Drivable_Area"], "lane": ["lane-marking"]}),
    ],
)
def test_groups_proposed_from_label_names(labels, groups):
    assert propose_groups(labels) == groups


def _renamed(src, dst, names):
    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == "names":
            p.value = repr(dict(enumerate(names)))
    onnx.save(m, str(dst))
    return dst


@needs_formats
@pytest.mark.parametrize(
    "model, names, expect",
    [
        (
            "yolo11n-seg-random.onnx",
            None,
            {"task": "instance", "format": "yolo-seg", "end2end": False, "labels": [str(i) for i in range(80)]},
        ),
        ("yolo26n-seg-e2e-random.onnx", None, {"task": "instance", "format": "yolo-seg", "end2end": True}),
        ("yolo26n-sem-random.onnx", None, {"task": "semantic", "format": "semantic-argmax", "output": "output0"}),
        (
            "yolo26n-seg-e2e-random.onnx",
            "coco",
            {"groups": {"person": ["person"], "cycle": ["bicycle", "motorcycle"], "car": ["car", "bus", "truck"]}},
        ),
        (
            "yolo26n-sem-random.onnx",
            "cityscapes",
            {"labels": CITYSCAPES, "groups": propose_groups(CITYSCAPES)},
        ),
    ],
)
def test_cards_of_the_real_exports_say_what_the_file_says_and_check_passes(tmp_path, model, names, expect):
    src = FORMATS / model
    if names:
        src = _renamed(src, tmp_path / model, COCO if names == "coco" else CITYSCAPES)
    out = tmp_path / "cards" / "my.yaml"
    r = run_streamseg("models", "card", src, "-o", out)
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(out.read_text())
    assert data["input"] == {
        "name": "images",
        "size_wh": [320, 320],  # the export's imgsz: its input is dynamic
        "layout": "NCHW",
        "color": "rgb",
        "scale": pytest.approx(1 / 255),
        "resize": "letterbox",
        "pad_value": 114,
    }
    for key, value in expect.items():
        assert data[key] == value, key
    assert (out.parent / data["file"]).resolve() == src.resolve()  # relative to the card
    text = out.read_text()
    assert ("FILL IN" in text) == (names is None)  # numeric names: no group can be proposed, and it says so
    check = run_streamseg("models", "check", out)
    assert check.returncode == 0 and ": ok (" in check.stdout, check.stderr
    if "end2end" in expect:
        assert ("end-to-end head, no NMS" in check.stdout) == expect["end2end"]


def test_an_unknown_export_says_what_must_be_filled_in_and_is_never_guessed(tmp_path):
    red_logits_model(tmp_path / "seg.onnx", outputs=("da", "ll"))  # no metadata at all
    text = make_card(tmp_path / "seg.onnx", tmp_path / "seg.yaml")
    (tmp_path / "seg.yaml").write_text(text)
    data = yaml.safe_load(text)
    assert data["format"] == "semantic-logits" and data["input"]["size_wh"] == [64, 48]
    assert [h["output"] for h in data["heads"]] == ["da", "ll"]
    # what the file does not say is marked, line by line
    for line in ("color: rgb", "scale:", "mean:", "std:", "resize: stretch"):
        assert next(x for x in text.splitlines() if x.strip().startswith(line)).endswith("# FILL IN (not in the file)")
    assert "FILL IN: heads[0].labels" in text and "FILL IN: no label name says road" in text
    assert data["groups"] == {}
    load_card(tmp_path / "seg.yaml")  # still a valid card to start from


def test_a_yolo_export_without_names_gets_placeholders_marked_as_such(tmp_path):
    det, protos = yolo_case()
    constant_yolo_model(tmp_path / "y.onnx", det, protos, names=None)
    text = make_card(tmp_path / "y.onnx", tmp_path / "y.yaml")
    data = yaml.safe_load(text)
    assert data["labels"] == ["class_0", "class_1", "class_2"] and data["end2end"] is False
    assert "FILL IN: labels: the file has no `names`" in text


@pytest.mark.parametrize(
    "make, args, error",
    [
        (None, ["{tmp}/none.onnx"], "model file not found"),
        ("text", ["{tmp}/bad.onnx"], "not a readable ONNX file"),
        ("ok", ["{tmp}/ok.onnx", "-o", "{tmp}/exists.yaml"], "exists; --force overwrites it"),
    ],
)
def test_models_card_mistakes_are_one_line_and_exit_2(tmp_path, make, args, error):
    if make == "text":
        (tmp_path / "bad.onnx").write_text("not a model")
    if make == "ok":
        red_logits_model(tmp_path / "ok.onnx")
        (tmp_path / "exists.yaml").write_text("mine\n")
    r = run_streamseg("models", "card", *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert error in r.stderr and len(r.stderr.strip().splitlines()) == 1
    if make == "ok":
        assert (tmp_path / "exists.yaml").read_text() == "mine\n"


def test_make_card_refuses_formats_it_cannot_read(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 8, 3, 8])
    g = helper.make_graph([helper.make_node("Transpose", ["images"], ["boxes"], perm=[0, 2, 1, 3])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "t.onnx"))
    # one rank-4 float output of 8 channels reads as semantic logits, labelled as placeholders
    assert "FILL IN: heads[0].labels" in make_card(tmp_path / "t.onnx")
    y2 = helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 192])
    g2 = helper.make_graph([helper.make_node("Flatten", ["images"], ["v"])], "g", [x], [y2])
    m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17)])
    m2.ir_version = 8
    onnx.save(m2, str(tmp_path / "v.onnx"))
    with pytest.raises(ModelError, match="none of the formats streamseg reads"):
        make_card(tmp_path / "v.onnx")


@pytest.mark.skipif(not (SHARED / "models" / "yolov8n-seg-int8-320.onnx").is_file(), reason="../shared/data absent")
def test_the_card_written_for_the_shared_yolov8n_matches_the_hand_written_fixture(tmp_path):
    from tests.conftest import CARDS

    written = tmp_path / "y.yaml"
    written.write_text(make_card(SHARED / "models" / "yolov8n-seg-int8-320.onnx", written))
    mine, fixture = load_card(written), load_card(CARDS / "yolov8n-seg-coco.yaml")
    assert mine.model_path == fixture.model_path and mine.input == fixture.input
    assert {g: sorted(v) for g, v in mine.groups.items()} == {g: sorted(v) for g, v in fixture.groups.items()}
    assert mine.labels[:8] == ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]
    assert mine.end2end is False and "FILL IN" not in written.read_text()


def test_a_printed_card_works_wherever_it_is_saved_and_says_when_it_maps_no_label(tmp_path):
    """`models card M.onnx > cards/c.yaml` from another folder: `file:` is absolute, so the card
    loads; its class names are numbers, so no group is proposed, and `models check` and `run`
    say so, naming the card and what to fill in (a run used to draw and report nothing, silently)."""
    det, protos = yolo_case()
    constant_yolo_model(tmp_path / "m.onnx", det, protos, names=["0", "1", "2"])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "cards" / "deep").mkdir(parents=True)  # not where the card was printed from
    r = run_streamseg("models", "card", tmp_path / "m.onnx", cwd=tmp_path / "elsewhere")
    assert r.returncode == 0, r.stderr
    card = tmp_path / "cards" / "deep" / "c.yaml"
    card.write_text(r.stdout)
    data = yaml.safe_load(r.stdout)
    assert data["file"] == str((tmp_path / "m.onnx").resolve()) and data["groups"] == {}
    assert load_card(card).model_path == (tmp_path / "m.onnx").resolve()

    check = run_streamseg("models", "check", card, cwd=tmp_path)
    assert check.returncode == 0 and ": ok (" in check.stdout, check.stderr
    warning = f"streamseg: warning: {card}: no label of the model is in any group"
    assert warning in check.stderr and "fill in `groups:`" in check.stderr and "groups: {car: [0]}" in check.stderr
    run = run_streamseg(
        "run", "--source", "synthetic://driving?size=64x48&frames=2", "--instance", card,
        "--backend", "onnxruntime", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0 and warning in run.stderr, run.stderr


def test_a_card_with_a_group_says_nothing(tmp_path, tiny):
    for name in ("red.yaml", "yolo.yaml"):
        r = run_streamseg("models", "check", tiny / name)
        assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
