"""The engine layer's bad-input table, through the CLI as a user meets it: one line, exit 2."""

import pytest

from tests.conftest import run_streamseg
from tests.test_cli import one_line_error


def card_for(tmp_path, tiny, onnx_name: str) -> str:
    card = tmp_path / "card.yaml"
    card.write_text((tiny / "red.yaml").read_text().replace("red.onnx", onnx_name))
    return str(card)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda d, tiny: (d / "m.onnx").write_bytes((tiny / "red.onnx").read_bytes()[:-7]),
            "not a readable ONNX file",
        ),
        (lambda d, tiny: (d / "m.onnx").write_text("name: not a model\n" * 50), "not a readable ONNX file"),
    ],
    ids=["truncated-onnx", "not-onnx"],
)
def test_broken_model_files(tmp_path, tiny, video, backend, make, pattern):
    make(tmp_path, tiny)
    card = card_for(tmp_path, tiny, "m.onnx")
    r = run_streamseg("run", "--source", video, "--semantic", card, "--backend", backend, "--max-frames", 2)
    one_line_error(r, pattern)
    assert "m.onnx" in r.stderr


def test_external_data_outside_the_folder(tmp_path, tiny, video):
    import onnx
    from onnx import TensorProto

    m = onnx.load(str(tiny / "red.onnx"))
    w = m.graph.initializer[0]
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "24")):
        e = w.external_data.add()
        e.key, e.value = k, v
    onnx.save(m, str(tmp_path / "ext.onnx"))
    r = run_streamseg("run", "--source", video, "--semantic", card_for(tmp_path, tiny, "ext.onnx"))
    one_line_error(r, "outside the model's folder")


@pytest.mark.parametrize(
    "args, pattern",
    [
        (
            ["run", "--source", "{video}", "--semantic", "{red}", "--backend", "tensorrt"],
            "needs the Python package 'tensorrt'",
        ),
        (["engines", "build", "{red}", "--backend", "tensorrt"], "tensorrt"),
        (
            ["engines", "build", "{red}", "--backend", "onnxruntime", "--precision", "int8"],
            "int8 needs calibration frames",
        ),
        (
            ["engines", "build", "{red}", "--backend", "openvino", "--precision", "int8"],
            "int8 needs calibration frames",
        ),
        (
            ["run", "--source", "{video}", "--semantic", "{red}", "--precision", "int8", "--backend", "onnxruntime"],
            "no INT8 model for red.onnx in the engine cache: build it with `streamseg engines build",
        ),
        (["run", "--source", "{video}", "--semantic", "{red}", "--precision", "bf17"], "invalid choice"),
    ],
)
def test_backend_and_precision_mistakes(tmp_path, tiny, video, args, pattern):
    r = run_streamseg(*[str(a).format(video=video, red=tiny / "red.yaml") for a in args], cwd=tmp_path)
    one_line_error(r, pattern)
