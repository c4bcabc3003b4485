"""The training recipe end to end at toy size: render, train a few steps, export ONNX with a
dynamic batch axis, calibrate, evaluate, write cards that the pipeline loads. Needs the `train`
extra (PyTorch), which the `test` extra pulls in, so `make test` runs them."""

import functools

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="torch missing: the test extra brings its CPU build (pyproject.toml)")
pytest.importorskip("onnx")

from streamseg.models import open_model  # noqa: E402
from streamseg.synth import train  # noqa: E402


def test_training_steps_are_deterministic_for_a_seed():
    data = train.render_dataset([1000], 3, 9, people=3.0, workers=1)
    torch.set_num_threads(1)
    a, _ = train.train_semantic(data, 2, seed=0, batch=2)
    b, _ = train.train_semantic(data, 2, seed=0, batch=2)
    c, _ = train.train_semantic(data, 2, seed=1, batch=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.fixture
def toy_recipe(monkeypatch):
    """The recipe's own code at toy size: batches of 2 and 2 calibration frames per trial (the
    recipe's 8 and 30 take ~20 s of this test on 2 cores, and the CLI sets neither)."""
    calibrate = train.calibrate_semantic
    monkeypatch.setattr(train, "calibrate_semantic", lambda onnx, card, w, seeds, frames: calibrate(onnx, card, w, seeds, 2))
    for name in ("train_semantic", "train_instance"):
        monkeypatch.setattr(train, name, functools.partial(getattr(train, name), batch=2))


def test_recipe_writes_cards_and_models_the_pipeline_runs(tmp_path, toy_recipe):
    args = ["--out", str(tmp_path), "--iters", "2", "--train-seeds", "1000", "--per-seed", "2", "--threads", "1"]
    args += ["--eval-seeds", "0", "--eval-frames", "2", "--val-seeds", "900"]
    assert train.main(args) == 0
    frame = np.full((720, 1280, 3), 90, np.uint8)
    for task in ("semantic", "instance"):
        card = yaml.safe_load((tmp_path / f"synth-{task}.yaml").read_text())
        recipe = card["training"]["recipe"]
        assert recipe["seed"] == 0 and recipe["iterations"] == 2 and recipe["people"] == 3.0
        assert "--iters 2" in recipe["command"] and card["training"]["metrics"]["frames"] == 2
        assert ("dice" in recipe) == (task == "semantic")  # the instance model has no Dice loss
        assert (tmp_path / card["file"]).stat().st_size < 5e6
        with open_model(str(tmp_path / f"synth-{task}.yaml"), backend="onnxruntime", threads=1) as m:
            results = m.run([frame, frame])  # dynamic batch axis: two frames in one call
        assert len(results) == 2
    assert "logit_bias_alpha" in yaml.safe_load((tmp_path / "synth-semantic.yaml").read_text())["training"]["recipe"]


def test_person_dice_loss_sees_the_pooled_overlap_and_skips_unlabelled_pixels():
    person = train.LABELS.index("person")
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[0, 1:7, 1:7] = person

    def dice(logits):
        return train.person_dice_loss(logits, *train.soft_labels(y, 1)).item()

    right = torch.full((2, len(train.LABELS), 8, 8), -20.0)
    right.scatter_(1, y[:, None], 20.0)
    assert dice(right) < 1e-3
    wrong = torch.full_like(right, -20.0)
    wrong[:, 0] = 20.0  # background everywhere: no person found
    assert dice(wrong) > 0.9
    spill = right.clone()
    spill[1, :, 0, 0] = -20.0
    spill[1, person, 0, 0] = 20.0  # a person claimed on one pixel of the second frame...
    assert dice(spill) > 0.01
    y[1, 0, 0] = 255  # ...which is not labelled: it does not count
    assert dice(spill) < 1e-3


def test_soft_labels_give_each_block_its_class_shares():
    y = torch.tensor([[[4, 5, 1, 1], [4, 255, 1, 1], [255, 255, 0, 2], [255, 255, 2, 2]]])
    probs, labelled = train.soft_labels(y, 2)
    assert probs.shape == (1, len(train.LABELS), 2, 2)
    assert probs[0, 4, 0, 0].item() == pytest.approx(2 / 3) and probs[0, 5, 0, 0].item() == pytest.approx(1 / 3)
    assert probs[0, 1, 0, 1] == 1 and probs[0, 2, 1, 1] == 0.75 and probs[0, 0, 1, 1] == 0.25
    assert labelled.tolist() == [[[0.75, 1.0], [0.0, 1.0]]]  # the all-unlabelled block counts for nothing
    assert probs[0, :, 1, 0].sum() == 0


def test_soft_cross_entropy_with_one_hot_shares_is_the_weighted_cross_entropy():
    from torch.nn import functional as F

    torch.manual_seed(0)
    y = torch.randint(0, len(train.LABELS), (2, 8, 12))
    y[0, :2] = 255
    logits = torch.randn(2, len(train.LABELS), 8, 12)
    w = torch.rand(len(train.LABELS)) + 0.5
    ours = train.weighted_soft_cross_entropy(logits, *train.soft_labels(y, 1), w)
    assert ours.item() == pytest.approx(F.cross_entropy(logits, y, weight=w, ignore_index=255).item(), rel=1e-5)


def test_semantic_net_judges_a_pixel_by_the_whole_frame():
    """The context module's global mean: what happens in one corner reaches the opposite one
    (without it, a flat patch of a near truck looked like a person)."""
    from streamseg.synth.nets import SegNetLite

    torch.manual_seed(0)
    net = SegNetLite(len(train.LABELS)).eval()
    x = torch.rand(1, 3, 64, 1024, requires_grad=True)  # far wider than any convolution's reach
    out = net(x)
    assert out.shape == (1, len(train.LABELS), 64, 1024)
    out[..., -8:, -8:].sum().backward()
    assert x.grad[..., :8, :8].abs().sum() > 0  # the opposite corner moved it


def test_instance_targets_give_each_object_its_box_class_and_mask():
    lab = {n: train.LABELS.index(n) for n in ("road", "car", "person")}
    h, w = 40, 64
    sem = np.full((h, w), lab["road"], np.uint8)
    inst = np.zeros((h, w), np.int32)
    inst[4:20, 8:40], sem[4:20, 8:40] = 7, lab["car"]
    inst[10:36, 44:52], sem[10:36, 44:52] = 3, lab["person"]
    inst[30:32, 2:4], sem[30:32, 2:4] = 9, lab["person"]  # 4 px: smaller than MIN_TRAIN_AREA
    inst[0:4, 0:4] = 5  # an id over road pixels: not a car or a person
    inst[12:16, 36:48], sem[12:16, 36:48] = 7, lab["car"]  # the car again, overlapping the person's box
    sem[12:16, 44:48] = lab["person"]
    inst[12:16, 44:48] = 3
    boxes, classes, masks = train.instance_targets(inst, sem)
    assert boxes.tolist() == [[44, 10, 52, 36], [8, 4, 44, 20]]  # ids in order: 3 (person), 7 (car)
    assert classes.tolist() == [train.INSTANCE_CLASSES.index("person"), train.INSTANCE_CLASSES.index("car")]
    assert masks.shape == (2, h // train.PROTO_STRIDE, w // train.PROTO_STRIDE) and masks.dtype == bool
    assert masks[1, 2, 3] and not masks[1, 8, 3] and masks[0, 5, 11] and not masks[0, 5, 3]
    empty = train.instance_targets(np.zeros((h, w), np.int32), sem)
    assert [a.shape for a in empty] == [(0, 4), (0,), (0, h // 4, w // 4)]


def test_semantic_net_scores_at_half_resolution_and_upsamples_for_export():
    from torch.nn import functional as F

    from streamseg.synth.nets import SegNetLite

    torch.manual_seed(0)
    net = SegNetLite(len(train.LABELS)).eval()
    x = torch.rand(2, 3, 96, 160)
    with torch.no_grad():
        s2, full = net.logits_s2(x), net(x)
    assert s2.shape == (2, len(train.LABELS), 48, 80)
    assert torch.equal(full, F.interpolate(s2, size=(96, 160), mode="bilinear", align_corners=False))
    net.export_argmax = True
    with torch.no_grad():
        assert torch.equal(net(x), full.argmax(1))


def test_freed_training_memory_stays_in_the_heap():
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt")
    assert train.keep_freed_memory() is True


def test_iou_score_targets_teach_the_best_placed_anchor_of_each_object_one():
    iou = torch.tensor([0.8, 0.4, 0.2, 0.5, 0.6])
    g = torch.tensor([0, 0, 0, 1, 1])  # anchors 0-2 on object 0, 3-4 on object 1
    assert train.score_targets(iou, g, 2, "one").tolist() == [1.0] * 5
    got = train.score_targets(iou, g, 2, "iou").tolist()
    assert got == pytest.approx([1.0, 0.5, 0.25, 5 / 6, 1.0])
