"""The training recipe end to end at toy size: render, train a few steps, export ONNX with a
dynamic batch axis, calibrate, evaluate, write cards that the pipeline loads. Needs the `train`
extra (PyTorch); skipped without it."""

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
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


def test_recipe_writes_cards_and_models_the_pipeline_runs(tmp_path):
    args = ["--out", str(tmp_path), "--iters", "2", "--train-seeds", "1000", "--per-seed", "2", "--threads", "1"]
    args += ["--eval-seeds", "0", "--eval-frames", "2", "--val-seeds", "900"]
    assert train.main(args) == 0
    frame = np.full((720, 1280, 3), 90, np.uint8)
    for task in ("semantic", "instance"):
        card = yaml.safe_load((tmp_path / f"synth-{task}.yaml").read_text())
        recipe = card["training"]["recipe"]
        assert recipe["seed"] == 0 and recipe["iterations"] == 2 and recipe["people"] == 3.0
        assert "--iters 2" in recipe["command"] and card["training"]["metrics"]["frames"] == 2
        assert (tmp_path / card["file"]).stat().st_size < 5e6
        with open_model(str(tmp_path / f"synth-{task}.yaml"), backend="onnxruntime", threads=1) as m:
            results = m.run([frame, frame])  # dynamic batch axis: two frames in one call
        assert len(results) == 2
    assert "logit_bias_alpha" in yaml.safe_load((tmp_path / "synth-semantic.yaml").read_text())["training"]["recipe"]


def test_person_dice_loss_sees_the_pooled_overlap_and_skips_unlabelled_pixels():
    person = train.LABELS.index("person")
    y = torch.zeros(2, 8, 8, dtype=torch.long)
    y[0, 1:7, 1:7] = person
    right = torch.full((2, len(train.LABELS), 8, 8), -20.0)
    right.scatter_(1, y[:, None], 20.0)
    assert train.person_dice_loss(right, y).item() < 1e-3
    wrong = torch.full_like(right, -20.0)
    wrong[:, 0] = 20.0  # background everywhere: no person found
    assert train.person_dice_loss(wrong, y).item() > 0.9
    spill = right.clone()
    spill[1, :, 0, 0] = -20.0
    spill[1, person, 0, 0] = 20.0  # a person claimed on one pixel of the second frame...
    assert train.person_dice_loss(spill, y).item() > 0.01
    y[1, 0, 0] = 255  # ...which is not labelled: it does not count
    assert train.person_dice_loss(spill, y).item() < 1e-3


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
