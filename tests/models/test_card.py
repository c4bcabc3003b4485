import pytest

from streamseg.errors import ModelError
from streamseg.models import load_card, open_model
from tests.conftest import write_card
from tests.models_factory import red_logits_model


@pytest.mark.parametrize(
    "text, error",
    [
        (
            "name: x\nfile: m.onnx\ntask: semantic\nformat: yolo-seg\ninput: {size_wh: [8, 8]}\nlabels: [a]\n",
            "format yolo-seg is for task instance",
        ),
        ("name: x\nfile: m.onnx\ntask: semantic\nformat: semantic-logits\ninput: {size_wh: [8, 8]}\n", "needs `heads`"),
        (
            "name: x\nfile: m.onnx\ntask: semantic\nformat: semantic-logits\ninput: {size_wh: [8, 8]}\nheads: []\nshape: 1\n",
            "shape: unknown key",
        ),
        (
            "name: x\nfile: gone.onnx\ntask: semantic\nformat: semantic-argmax\ninput: {size_wh: [8, 8]}\nlabels: [a]\n",
            "model file not found",
        ),
        ("just text", "a model card is a mapping"),
    ],
)
def test_bad_cards(tmp_path, text, error):
    (tmp_path / "m.onnx").write_bytes(b"x")
    p = write_card(tmp_path / "c.yaml", text)
    with pytest.raises(ModelError, match=error):
        load_card(p)


def test_missing_card(tmp_path):
    with pytest.raises(ModelError, match="model card not found"):
        load_card(tmp_path / "none.yaml")


def test_file_is_relative_to_the_card(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    red_logits_model(tmp_path / "sub" / "m.onnx")
    write_card(
        tmp_path / "sub" / "c.yaml",
        "name: x\nfile: m.onnx\ntask: semantic\nformat: semantic-logits\ninput: {size_wh: [64, 48]}\nheads: [{output: seg, labels: [null, a]}]\n",
    )
    monkeypatch.chdir(tmp_path)
    assert load_card("sub/c.yaml").model_path == (tmp_path / "sub" / "m.onnx").resolve()


@pytest.mark.parametrize(
    "card_text, error",
    [
        (
            "input: {size_wh: [32, 32]}\nheads: [{output: seg, labels: [null, a]}]",
            r"input 'images' is \('N', 3, 48, 64\)|input 'images' is \(None, 3, 48, 64\)",
        ),
        ("input: {size_wh: [64, 48]}\nheads: [{output: logits, labels: [null, a]}]", "no output 'logits'"),
        ("input: {size_wh: [64, 48], name: image}\nheads: [{output: seg, labels: [null, a]}]", "no input 'image'"),
    ],
)
def test_card_checked_against_the_onnx_file(tmp_path, card_text, error):
    red_logits_model(tmp_path / "m.onnx")
    p = write_card(
        tmp_path / "c.yaml", "name: x\nfile: m.onnx\ntask: semantic\nformat: semantic-logits\n" + card_text + "\n"
    )
    with pytest.raises(ModelError, match=error):
        with open_model(str(p)):
            pass


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"this is not a model")
    p = write_card(
        tmp_path / "c.yaml",
        "name: x\nfile: m.onnx\ntask: semantic\nformat: semantic-argmax\ninput: {size_wh: [8, 8]}\nlabels: [a]\n",
    )
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        with open_model(str(p)):
            pass


def test_task_mismatch(tiny):
    with pytest.raises(ModelError, match="configured as the instance engine"):
        open_model(str(tiny / "red.yaml"), task="instance")


@pytest.mark.parametrize("where", ["../outside.bin", "/etc/passwd", "link.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, where):
    import onnx
    from onnx import TensorProto

    from streamseg.backends import create_engine

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    red_logits_model(model_dir / "m.onnx")
    m = onnx.load(str(model_dir / "m.onnx"))
    w = m.graph.initializer[0]
    (tmp_path / "outside.bin").write_bytes(b"\0" * 64)
    if where == "link.bin":
        (model_dir / "link.bin").symlink_to(tmp_path / "outside.bin")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for k, v in (("location", where), ("offset", "0"), ("length", "24")):
        e = w.external_data.add()
        e.key, e.value = k, v
    onnx.save(m, str(model_dir / "m.onnx"))
    with pytest.raises(ModelError, match="outside the model's folder"):
        with create_engine("onnxruntime", model_dir / "m.onnx"):
            pass


def test_external_data_inside_the_folder_loads(tmp_path):
    import onnx

    from streamseg.backends import create_engine

    red_logits_model(tmp_path / "m.onnx")
    m = onnx.load(str(tmp_path / "m.onnx"))
    onnx.save(
        m,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    with create_engine("onnxruntime", tmp_path / "ext.onnx", threads=1) as e:
        assert "seg" in e.outputs
