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
