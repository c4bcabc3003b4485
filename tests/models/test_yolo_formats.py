"""The formats users bring: YOLO26-seg end-to-end, YOLO11-seg, YOLO26-sem, on every CPU backend.

The exports in ../shared/data/models/formats have RANDOM weights: these tests check shapes,
paths and agreement between backends, never accuracy."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from streamseg.backends import create_engine
from streamseg.backends.base import TensorSpec
from streamseg.errors import ModelError
from streamseg.models import open_model
from streamseg.models.cardgen import make_card
from streamseg.models.fixed_size import with_input_size
from streamseg.models.preprocess import ResizeTransform
from streamseg.models.yolo_seg import YoloSegDecoder
from tests.backends import fake_tensorrt as fake
from tests.conftest import SHARED, run_streamseg
from tests.models.test_yolo_seg import card as yolo_card

FORMATS = SHARED / "models" / "formats"
Y11, Y26, SEM = (FORMATS / f for f in ("yolo11n-seg-random.onnx", "yolo26n-seg-e2e-random.onnx", "yolo26n-sem-random.onnx"))
needs_formats = pytest.mark.skipif(not FORMATS.is_dir(), reason="../shared/data/models/formats not present")
BACKENDS = ["onnxruntime", "openvino", "tensorrt"]  # tensorrt: the test double (runs ONNX Runtime inside)


def card(**kw):
    return yolo_card(**{"name": "y26", **kw})  # the decoder tests' card, named for YOLO26


def spec(name, shape):
    return TensorSpec(name, shape, np.dtype("float32"))


E2E = {"output0": spec("output0", (1, 5, 8)), "output1": spec("output1", (1, 2, 16, 16))}  # nm = 2: 6 + 2 = 8
ANCHORS = {"output0": spec("output0", (1, 9, 6)), "output1": spec("output1", (1, 2, 16, 16))}  # 4 + 3 + 2 = 9


def e2e_case():
    """5 rows of x1, y1, x2, y2, score, class, 2 coefficients; prototype 0 is positive everywhere."""
    det = np.array(
        [
            [8, 8, 24, 24, 0.9, 0, 1, 0],  # car
            [10, 10, 26, 26, 0.8, 0, 1, 0],  # car, overlapping the first: end-to-end keeps both (no NMS)
            [40, 40, 56, 56, 0.7, 2, 1, 0],  # bus -> group car
            [30, 30, 40, 40, 0.2, 1, 1, 0],  # person below the threshold
            [0, 0, 10, 10, 0.95, 7, 1, 0],  # class 7 does not exist: dropped
        ],
        np.float32,
    )
    protos = np.zeros((2, 16, 16), np.float32)
    protos[0] = 5.0
    return det, protos


def test_end2end_decode_thresholds_keeps_overlaps_maps_boxes_and_crops_masks():
    det, protos = e2e_case()
    dec = YoloSegDecoder(card(), E2E, {})
    assert dec.end2end is True  # from the shape: [B, K, 6 + nm]
    t = ResizeTransform.fit((128, 64), (64, 64), "letterbox")  # scale 0.5, 16 px padding top and bottom
    (inst,) = dec.decode({"output0": det[None], "output1": protos[None]}, [t])
    assert inst.labels == ["car", "car", "bus"] and inst.groups == ["car", "car", "car"]
    np.testing.assert_allclose(inst.score, [0.9, 0.8, 0.7], atol=1e-6)
    np.testing.assert_allclose(inst.xyxy[0], [16, 0, 48, 16], atol=1e-4)  # (8-0)/0.5, (8-16)/0.5 clipped
    np.testing.assert_allclose(inst.xyxy[2], [80, 48, 112, 64], atol=1e-4)
    assert inst.masks.shape == (3, 64, 128)
    for k in range(3):  # masks are cropped to their boxes
        x0, y0, x1, y1 = inst.xyxy[k].round().astype(int)
        assert inst.masks[k, y0:y1, x0:x1].all() and inst.masks[k].sum() == (x1 - x0) * (y1 - y0)
    dec.set_thresholds(max_det=2)
    (inst,) = dec.decode({"output0": det[None], "output1": protos[None]}, [t])
    np.testing.assert_allclose(inst.score, [0.9, 0.8], atol=1e-6)


@pytest.mark.parametrize(
    "card_says, metadata, specs, expect",
    [
        (None, {}, E2E, True),  # the shape says
        (None, {}, ANCHORS, False),
        (None, {"end2end": "True"}, E2E, True),
        (True, {}, E2E, True),
        (False, {"end2end": "False"}, ANCHORS, False),
        (False, {"end2end": "True"}, E2E, "the card says anchors \\+ NMS, the file's end2end metadata says end-to-end"),
        (True, {}, ANCHORS, "the card says end-to-end"),
        (None, {"end2end": "False"}, E2E, "the file's end2end metadata says anchors"),
    ],
)
def test_which_head_card_metadata_shape_and_disagreements(card_says, metadata, specs, expect):
    c = card(end2end=card_says)
    if isinstance(expect, str):
        with pytest.raises(ModelError, match=expect):
            YoloSegDecoder(c, specs, metadata)
    else:
        assert YoloSegDecoder(c, specs, metadata).end2end is expect


def test_dynamic_shapes_settle_the_head_at_the_first_batch_and_check_it_after():
    dyn = {"output0": spec("output0", (None, None, None)), "output1": spec("output1", (None, 2, None, None))}
    det, protos = e2e_case()
    dec = YoloSegDecoder(card(), dyn, {})
    assert dec.end2end is None and dec.needs_probe
    t = ResizeTransform.fit((64, 64), (64, 64), "letterbox")
    (inst,) = dec.decode({"output0": det[None], "output1": protos[None]}, [t])
    assert dec.end2end is True and len(inst) == 3
    with pytest.raises(ModelError, match="the card says end2end: false"):
        YoloSegDecoder(card(end2end=False), dyn, {}).decode({"output0": det[None], "output1": protos[None]}, [t])


def _gather_model(path):
    """GatherElements with indices smaller than the data outside the axis, as YOLO26's head has."""
    data = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6, 5])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3, 2])
    idx = helper.make_tensor("idx", TensorProto.INT64, [1, 3, 2], [5, 0, 2, 2, 1, 4])
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Slice", ["xs", "zero", "one"], ["b"]),
        helper.make_node("Concat", ["b", "tail"], ["shape"], axis=0),
        helper.make_node("Expand", ["idx", "shape"], ["idx_b"]),
        helper.make_node("GatherElements", ["x", "idx_b"], ["y"], axis=1),
    ]
    inits = [
        idx,
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("tail", TensorProto.INT64, [2], [3, 2]),
    ]
    g = helper.make_graph(nodes, "g", [data], [out], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_gather_elements_made_explicit_computes_the_same_on_every_cpu_backend(tmp_path):
    src = _gather_model(tmp_path / "g.onnx")
    x = np.arange(2 * 6 * 5, dtype=np.float32).reshape(2, 6, 5)
    with create_engine("onnxruntime", src, threads=1) as ref:
        want = ref.infer({"x": x})["y"]
    np.testing.assert_array_equal(want[1], x[1][[[5, 0], [2, 2], [1, 4]], [[0, 1], [0, 1], [0, 1]]])
    copy, keep = with_input_size(src, None, "NCHW", (5, 6))  # no image input: only the gather is rewritten
    for backend in ("onnxruntime", "openvino"):
        with create_engine(backend, copy, threads=1) as eng:
            np.testing.assert_array_equal(eng.infer({"x": x})["y"], want)
    keep.cleanup()


# the real exports ---------------------------------------------------------------------------
def _card_for(model, tmp_path, names=None):
    """A card written by `models card` (from a copy whose `names` are rewritten, when given)."""
    if names is not None:
        m = onnx.load(str(model))
        for p in m.metadata_props:
            if p.key == "names":
                p.value = repr(dict(enumerate(names)))
        model = tmp_path / model.name
        onnx.save(m, str(model))
    path = tmp_path / (model.stem + ".yaml")
    path.write_text(make_card(model, path))
    return path


COCO_SOME = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]


def _frames(n=2):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (240, 427, 3), np.uint8) for _ in range(n)]  # not the model's aspect


def _open(card_path, backend, monkeypatch, tmp_path, **kw):
    if backend == "tensorrt":
        fake.install(monkeypatch)
    return open_model(str(card_path), backend=backend, threads=1, cache_dir=str(tmp_path / "cache"), **kw)


@needs_formats
@pytest.mark.parametrize("backend", BACKENDS)
def test_yolo11_seg_export_batched_on_every_backend(backend, tmp_path, monkeypatch):
    c = _card_for(Y11, tmp_path, COCO_SOME + [str(i) for i in range(8, 80)])
    with _open(c, backend, monkeypatch, tmp_path, conf_threshold=0.0, max_detections=20) as model:
        assert model.engine.max_batch is None  # dynamic batch: batched for real
        calls = model.engine.calls
        out = model.run(_frames(2))
        assert model.engine.calls == calls + 1  # two frames, one engine call
        assert model.decoder.end2end is False
    for inst in out:  # random weights: scores ~1e-4, so threshold 0 keeps max_detections of them
        assert len(inst) == 20 and inst.masks.shape == (20, 240, 427)
        assert set(inst.groups) <= {"car", "person", "cycle"}
        assert (inst.xyxy[:, 2] <= 427).all() and (inst.xyxy[:, 3] <= 240).all()


@needs_formats
@pytest.mark.parametrize("backend", BACKENDS)
def test_yolo26_seg_end2end_export_batched_on_every_backend(backend, tmp_path, monkeypatch):
    c = _card_for(Y26, tmp_path, COCO_SOME + [str(i) for i in range(8, 80)])
    assert "end2end: true" in c.read_text()
    with _open(c, backend, monkeypatch, tmp_path, conf_threshold=0.0) as model:
        assert model.engine.max_batch is None
        x, transforms = model.prepare(_frames(2))
        raw = model.infer(x)
        assert raw["output0"].shape == (2, 300, 38) and raw["output1"].shape == (2, 32, 80, 80)
        out = model.decode(raw, transforms)
        assert model.decoder.end2end is True
    kept = np.isin(np.rint(raw["output0"][0, :, 5]), [0, 1, 2, 3, 5, 7]).sum()  # classes in a group
    assert len(out[0]) == min(kept, 100)  # no NMS: every grouped row up to max_detections
    assert out[0].masks.shape[1:] == (240, 427)


@needs_formats
@pytest.mark.parametrize("backend", BACKENDS)
def test_yolo26_sem_export_batched_on_every_backend(backend, tmp_path, monkeypatch):
    cityscapes = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign"]
    cityscapes += ["vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train"]
    cityscapes += ["motorcycle", "bicycle"]
    c = _card_for(SEM, tmp_path, cityscapes)
    with _open(c, backend, monkeypatch, tmp_path) as model:
        assert model.engine.max_batch is None
        out = model.run(_frames(2))
    assert [r.label_map.shape for r in out] == [(240, 427)] * 2
    assert model.decoder.labels == cityscapes
    assert out[0].group_names[:3] == ["road", "sidewalk", "building"]


@needs_formats
def test_openvino_agrees_with_onnxruntime_on_the_real_exports(tmp_path):
    """Same frames, same card (the TensorRT double runs ONNX Runtime inside: nothing to compare)."""
    frames = _frames(2)
    for model_file in (Y11, Y26, SEM):
        c = _card_for(model_file, tmp_path)
        raw = {}
        for backend in ("onnxruntime", "openvino"):
            with open_model(str(c), backend=backend, threads=1, cache_dir=str(tmp_path / "cache"), fuse=False) as m:
                x, _ = m.prepare(frames)
                raw[backend] = m.infer(x)
        for backend in ("openvino",):
            for name, ref in raw["onnxruntime"].items():
                got = raw[backend][name]
                if model_file is Y26 and name == "output0":
                    # random weights tie every score: which anchors the top-k keeps is float noise,
                    # so compare the scores only
                    np.testing.assert_allclose(got[..., 4], ref[..., 4], atol=1e-5)
                elif ref.dtype == np.uint8:
                    assert np.mean(got == ref) > 0.99, (model_file.name, backend)
                else:
                    np.testing.assert_allclose(got, ref, atol=2e-3, err_msg=f"{model_file.name} {backend} {name}")


@needs_formats
def test_a_card_that_contradicts_the_file_is_one_line_and_exit_2(tmp_path):
    c = _card_for(Y26, tmp_path)
    c.write_text(c.read_text().replace("end2end: true", "end2end: false"))
    r = run_streamseg("models", "check", c)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the card says anchors + NMS, the file's end2end metadata says end-to-end" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
