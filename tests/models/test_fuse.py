"""The fused graph (models/fuse.py) against today's numpy/OpenCV path: same pixels in, same results out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from streamseg.errors import ModelError
from streamseg.models import DECODERS, fuse, load_card, open_model
from streamseg.models.card import ModelCard
from streamseg.models.fixed_size import with_input_size
from streamseg.models.fuse import build_fused, compare_results, core_specs, frames_batch
from streamseg.models.preprocess import Preprocessor
from tests import models_factory as mf
from tests.conftest import CARDS, ROOT, TWIN, UDACITY, YOLO, needs_shared_models
from tests.models.test_fixed_size import uint8_cast_problems

BACKENDS = ["onnxruntime", "openvino"]


def _card(path: Path, size_wh, resize: str, color: str = "rgb", mean=(0, 0, 0), std=(1, 1, 1)) -> ModelCard:
    card = ModelCard.model_validate(
        {
            "name": "red",
            "file": path.name,
            "task": "semantic",
            "format": "semantic-logits",
            "input": {"size_wh": list(size_wh), "resize": resize, "color": color, "mean": mean, "std": std},
            "heads": [{"output": "seg", "labels": [None, "a"]}],
        }
    )
    card._path = path.parent / "card.yaml"
    return card


def _model_input(card: ModelCard, model_path: Path, image: np.ndarray, in_graph: bool = True, backend=None) -> np.ndarray:
    """What the fused graph feeds the model for one frame (the model's input tensor, exposed)."""
    _, outs, meta = core_specs(onnx.load(str(model_path)))
    dec = DECODERS[card.format](card, outs, meta)
    fused = build_fused(card, model_path, dec, resize_in_graph=in_graph, backend=backend).model
    fused.graph.output.append(onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    if in_graph:
        feeds, _ = frames_batch([image], card.input.size_wh, card.input.resize)
    else:  # the host resizes with OpenCV; the graph casts (first: no UINT8 intermediate), orders, scales
        feeds = {"frames": Preprocessor.for_input(card.input).fit([image])[0]}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))["images"]


@pytest.mark.parametrize(
    "dst, resize, src",
    [
        ((64, 48), "stretch", (128, 96)),  # exactly 2x: OpenCV's area-average path
        ((64, 48), "stretch", (100, 75)),
        ((64, 48), "stretch", (64, 48)),  # same size: a copy
        ((50, 37), "stretch", (1280, 720)),
        ((67, 41), "letterbox", (960, 540)),
        ((67, 41), "letterbox", (101, 203)),  # padding left and right
        ((320, 320), "letterbox", (1280, 720)),
        ((320, 320), "letterbox", (960, 540)),
    ],
)
@pytest.mark.parametrize(
    "in_graph, backend",
    [(True, None), (False, "tensorrt"), (False, "onnxruntime")],  # host resize: cast first / uint8 planes first
)
def test_fused_preprocessing_is_bit_exact_with_opencv(tmp_path, dst, resize, src, in_graph, backend):
    """The graph's integer resize reproduces cv2.resize(INTER_LINEAR) + pad + colour + scale exactly
    (it fails with ONNX's own float Resize, which is off by one grey level on ~6% of pixels); with
    the resize on the host, the graph's colour and scale are exact too."""
    model = mf.red_logits_model(tmp_path / "red.onnx", size_wh=dst)
    card = _card(model, dst, resize, color="rgb", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.2))
    image = np.random.default_rng(0).integers(0, 256, (src[1], src[0], 3), dtype=np.uint8)
    want, _ = Preprocessor.for_input(card.input)([image])
    np.testing.assert_array_equal(_model_input(card, model, image, in_graph, backend), want)


def test_a_batch_of_mixed_sizes_runs_one_group_per_size(tiny):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for w, h in ((128, 96), (100, 75), (128, 96))]
    with open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=True, resize_in_graph=True) as fused:
        assert fused.fused
        together = fused.run(images)
        alone = [fused.run([im])[0] for im in images]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.label_map, b.label_map)


@pytest.mark.parametrize("in_graph", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_yolo_seg_matches_numpy_nms_filter_and_masks(tmp_path, backend, in_graph):
    """Class-aware NMS, the score threshold, the class filter (ungrouped classes dropped) and
    max_detections, on a model whose outputs are known (tests/models_factory.yolo_case)."""
    det, protos = mf.yolo_case()
    mf.constant_yolo_model(tmp_path / "y.onnx", det, protos, names=["car", "person", "bus"])
    (tmp_path / "y.yaml").write_text(
        "name: y\nfile: y.onnx\ntask: instance\nformat: yolo-seg\n"
        "input: {size_wh: [64, 64], resize: letterbox}\nlabels: from_model\n"
        "groups: {car: [car], person: [person]}\nthresholds: {conf: 0.25, iou: 0.45}\n"
    )
    image = np.zeros((90, 160, 3), np.uint8)
    for max_det in (None, 1):
        with (
            open_model(str(tmp_path / "y.yaml"), backend=backend, threads=1, fuse=False, max_detections=max_det) as a,
            open_model(
                str(tmp_path / "y.yaml"), backend=backend, threads=1, fuse=True, max_detections=max_det,
                resize_in_graph=in_graph,
            ) as b,
        ):
            ref, new = a.run([image, image]), b.run([image, image])
        for r, n in zip(ref, new, strict=True):
            assert list(n.class_id) == list(r.class_id) == ([0, 1] if max_det is None else [0])  # bus: no group
            np.testing.assert_allclose(n.xyxy, r.xyxy, atol=1e-4)
            np.testing.assert_allclose(n.score, r.score, atol=1e-6)
            np.testing.assert_array_equal(n.masks, r.masks)


def test_fuse_false_keeps_todays_path_and_the_default_follows_the_measurement(tiny):
    from streamseg.models.fuse import FUSE_DEFAULT

    with open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=False) as m:
        assert not m.fused and m.describe()["fused"] is False
        assert m.prepare([np.zeros((48, 64, 3), np.uint8)])[0].dtype == np.float32
    for backend in BACKENDS:
        for card, task in (("red.yaml", "semantic"), ("yolo.yaml", "instance")):
            with open_model(str(tiny / card), backend=backend, threads=1) as m:
                assert m.fused is FUSE_DEFAULT[backend][task]
    assert any(FUSE_DEFAULT[b][t] for b in BACKENDS for t in ("semantic", "instance"))  # fused on a CPU backend
    with open_model(str(tiny / "red.yaml"), backend="openvino", threads=1, fuse=True) as m:
        assert m.fused
        feeds, _ = m.prepare([np.zeros((96, 128, 3), np.uint8)])  # resized by OpenCV to the input size
        assert feeds["frames"].dtype == np.uint8 and feeds["frames"].shape == (1, 48, 64, 3)
    with open_model(str(tiny / "red.yaml"), backend="onnxruntime", threads=1, fuse=True, resize_in_graph=True) as m:
        feeds, _ = m.prepare([np.zeros((96, 128, 3), np.uint8)])  # the frame itself
        assert feeds["frames"].shape == (1, 96, 128, 3)


def test_config_takes_fuse_per_engine():
    from streamseg.config import EngineConfig

    assert EngineConfig(card="x.yaml").fuse is None
    assert EngineConfig(card="x.yaml", fuse=False).fuse is False


# real models, real footage ---------------------------------------------------------------------
def _udacity(n: int, step: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(UDACITY))
    frames = []
    i = 0
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(f)
        i += 1
    return frames


def _demo(n: int) -> list[np.ndarray]:
    from streamseg.sources import open_source

    with open_source(f"synthetic://driving?size=1280x720&seed=0&frames={n}") as src:
        return [f.image_bgr for f in iter(src.read, None)]


def _agree(card: str, backend: str, frames: list[np.ndarray], in_graph: bool) -> dict:
    with (
        open_model(card, backend=backend, threads=1, fuse=False) as a,
        open_model(card, backend=backend, threads=1, fuse=True, resize_in_graph=in_graph) as b,
    ):
        assert b.fused and b.describe()["resize_in_graph"] is in_graph
        return compare_results(a.task, [a.run([f])[0] for f in frames], [b.run([f])[0] for f in frames])


def _check(task: str, stats: dict) -> None:
    if task == "semantic":
        assert stats["pixels_agree"] >= 0.999, stats
    else:
        assert stats["frames_match"] == stats["frames"], stats
        assert stats["min_mask_iou"] >= 0.99, stats


# in_graph: the GPU graph (frames at capture size); False: OpenCV resizes, the graph does the rest
VARIANTS = [pytest.param(True, id="resize-in-graph"), pytest.param(False, id="host-resize")]


@needs_shared_models
@pytest.mark.skipif(not UDACITY.is_file(), reason="../shared/data/video not present")
@pytest.mark.parametrize("in_graph", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("card", ["twinlitenet-bdd.yaml", "yolov8n-seg-coco.yaml"])
def test_shared_models_fused_agree_with_numpy_on_udacity(backend, card, in_graph):
    """A subset of the clip (benchmarks/fused.py runs all 221 frames)."""
    path = str(CARDS / card)
    _check(load_card(path).task, _agree(path, backend, _udacity(2, 100), in_graph))


@pytest.mark.parametrize("in_graph", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("card", ["synth-semantic.yaml", "synth-instance.yaml"])
def test_bundled_models_fused_agree_with_numpy_on_the_demo_scene_and_udacity(backend, card, in_graph):
    path = str(ROOT / "engines" / card)
    frames = _demo(1) + (_udacity(1, 1) if UDACITY.is_file() else [])
    _check(load_card(path).task, _agree(path, backend, frames, in_graph))


# what TensorRT's ONNX parser and builder take (issue 25 §2): the graphs TensorRT would be handed ------
# Each rule below reads the produced graph; each is shown to catch the pattern it is about on a
# graph that has it, so none can pass by reading nothing.
FORMATS = ROOT.parent / "shared" / "data" / "models" / "formats"


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for v in (*inferred.input, *inferred.value_info, *inferred.output):
        if v.type.tensor_type.HasField("shape"):
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    return shapes


def gathernd_problems(model: onnx.ModelProto) -> list[str]:
    """TensorRT's kND gather needs batch_dims < rank(data) - 1 (NvInfer.h IGatherLayer; NVIDIA/TensorRT#4469)."""
    shapes = _shapes(model)
    problems = []
    for n in model.graph.node:
        if n.op_type != "GatherND":
            continue
        bd = onnx.helper.get_node_attr_value(n, "batch_dims") if any(a.name == "batch_dims" for a in n.attribute) else 0
        rank = len(shapes[n.input[0]]) if n.input[0] in shapes else None
        if bd and (rank is None or bd >= rank - 1):
            problems.append(f"{n.name}: GatherND batch_dims={bd} on rank {rank} data")
    return problems


def topk_problems(model: onnx.ModelProto) -> list[str]:
    """TopK: sorted=1, K a constant initializer of at most 3840 (onnx-tensorrt docs/operators.md; NvInfer.h)."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    problems = []
    for n in model.graph.node:
        if n.op_type != "TopK":
            continue
        if any(a.name == "sorted" and a.i != 1 for a in n.attribute):
            problems.append(f"{n.name}: TopK sorted=0")
        k = inits.get(n.input[1])
        if k is None or int(np.asarray(k).reshape(-1)[0]) > fuse.TRT_TOPK_MAX:
            problems.append(f"{n.name}: TopK K={k} (a constant <= {fuse.TRT_TOPK_MAX} is needed)")
    return problems


def data_dependent(model: onnx.ModelProto) -> tuple[set[str], list[str]]:
    """Tensors whose shape depends on values (NonMaxSuppression's [K, 3] and what is computed from it;
    a ScatterND's output has its data's shape), and the gathers that read one: what TensorRT 8.5
    refused ("foreign node optimizations incompatible with data-dependent shapes")."""
    dds: set[str] = set()
    gathers = []
    for n in model.graph.node:
        if n.op_type in ("NonMaxSuppression", "NonZero", "Unique"):
            dds.update(n.output)
            continue
        if not any(i in dds for i in n.input):
            continue
        if n.op_type in ("Gather", "GatherND", "GatherElements", "Slice"):
            gathers.append(f"{n.name}: {n.op_type} reads a data-dependent shape")
        if n.op_type == "ScatterND" and n.input[0] not in dds:
            continue
        dds.update(n.output)
    return dds, gathers


def _tensorrt_graph(card_path, in_graph: bool, nms: str = "dynamic", backend="tensorrt", **thresholds) -> onnx.ModelProto:
    """The fused graph models.open_model hands the tensorrt backend (its fixed-size copy fused)."""
    card = load_card(str(card_path))
    inp = card.input
    fixed = with_input_size(card.model_path, inp.name, inp.layout, inp.size_wh, explicit_gathers=False, uint8_casts=True)
    core = fixed[0] if fixed else card.model_path
    try:
        _, outs, meta = core_specs(onnx.load(str(core)))
        decoder = DECODERS[card.format](card, outs, meta)
        if thresholds:
            decoder.set_thresholds(**thresholds)
        return build_fused(card, core, decoder, resize_in_graph=in_graph, nms=nms, backend=backend).model
    finally:
        if fixed:
            fixed[1].cleanup()


def _ids_card(folder: Path) -> Path:
    """A semantic-argmax card whose model ends as YOLO26-sem's does: INT64 ids, Cast to UINT8."""
    ids = mf.uint8_ids_model(folder / "ids.onnx", size_wh=(64, 48))
    (folder / "ids.yaml").write_text(
        f"name: ids\nfile: {ids.name}\ntask: semantic\nformat: semantic-argmax\n"
        "input: {size_wh: [64, 48], resize: stretch}\nlabels: [none, red]\ngroups: {road: [red]}\n"
    )
    return folder / "ids.yaml"


def _graph_cards(tmp_path, tiny) -> list[Path]:
    """Every card whose graph the product can hand TensorRT fused: bundled, tiny, test fixtures and
    the fusable format fixtures (where ../shared/data is present)."""
    cards = [ROOT / "engines" / "synth-semantic.yaml", ROOT / "engines" / "synth-instance.yaml"]
    cards += [tiny / "red.yaml", tiny / "yolo.yaml", _ids_card(tmp_path)]
    if TWIN.is_file() and YOLO.is_file():
        cards += [CARDS / "twinlitenet-bdd.yaml", CARDS / "yolov8n-seg-coco.yaml"]
    if FORMATS.is_dir():
        from tests.models.test_yolo_formats import _card_for

        # YOLO11-seg's export has a symbolic prototype grid (not fusable: it runs unfused) and YOLO26-seg's
        # end-to-end head is not fused yet: their graphs are the fixed-size copies, the model's own nodes
        cards.append(_card_for(FORMATS / "yolo26n-sem-random.onnx", tmp_path))
    return cards


def test_every_fused_graph_keeps_tensorrts_parser_rules_fp32_and_fp16(tmp_path, tiny):
    """(a) no UINT8 tensor but the frames and label_map, and the frames feed only a Cast to float;
    (b) YOLO26-sem's ids read before its UINT8 cast; (c) no GatherND with batch_dims >= rank - 1;
    (d) every TopK sorted with a constant K <= 3840; (g) the static variant: no gather reads a
    data-dependent shape and every output is fixed. Resize in the graph on and off, the FP16 copy too."""
    from streamseg.backends.tensorrt_build import fp16_copy

    checked = []
    for card_path in _graph_cards(tmp_path, tiny):
        instance = load_card(str(card_path)).task == "instance"
        for in_graph in (True, False):
            for nms in ("dynamic", "static") if instance else ("dynamic",):
                fp32 = _tensorrt_graph(card_path, in_graph, nms)
                onnx.save(fp32, str(tmp_path / "g.onnx"))
                fp16 = onnx.load(str(fp16_copy(tmp_path / "g.onnx", tmp_path / "g16.onnx")))
                for precision, g in (("fp32", fp32), ("fp16", fp16)):
                    where = f"{card_path.name} in_graph={in_graph} nms={nms} {precision}"
                    uint8 = uint8_cast_problems(g)
                    if any(n.op_type == "DynamicQuantizeLinear" for n in g.graph.node):
                        # yolov8n-seg-int8-320: dynamically quantized, UINT8 throughout; TensorRT cannot run
                        # it at all (issue 25 §2f, refused by name before any build): our nodes only
                        uint8 = [x for x in uint8 if x.startswith("fuse/")]
                    assert uint8 == [], where
                    assert gathernd_problems(g) == [], where
                    assert topk_problems(g) == [], where
                    dds, gathers = data_dependent(g)
                    if nms == "static":
                        assert gathers == [] and not dds & {o.name for o in g.graph.output}, where
                        assert {n.op_type for n in g.graph.node if set(n.input) & dds} <= {"ReduceMax", "Mul", "Add", "Cast", "ScatterND"}, where
                    elif instance:
                        assert gathers, where  # the default's [K, 3] chain: what the static variant is for
                    checked.append(where)
    assert len(checked) >= 2 * (2 + 4 + 3 + 2)  # semantic cards x 2 x 2 precisions, instance x 4 x 2


def test_the_rules_catch_what_the_old_graphs_had(tmp_path, tiny, monkeypatch):
    """The same rules on the graphs as they were (and the CPU backends' host-resize graph still is):
    UINT8 planes transposed, YOLO26-sem's UINT8 ids read, class ids gathered from rank-2 data, a K
    past 3840."""
    cpu = _tensorrt_graph(tiny / "red.yaml", False, backend="onnxruntime")  # uint8 planes ordered, then cast
    assert any("UINT8 intermediate" in p for p in uint8_cast_problems(cpu))
    monkeypatch.setattr(fuse, "_before_uint8_cast", lambda *a: None)  # read the model's UINT8 ids, as before
    old_ids = _tensorrt_graph(_ids_card(tmp_path), True)
    assert any("UINT8 intermediate output0" in p for p in uint8_cast_problems(old_ids))
    rank2 = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("GatherND", ["d", "i"], ["o"], name="G", batch_dims=1)],
            "g",
            [
                onnx.helper.make_tensor_value_info("d", onnx.TensorProto.INT32, [2, 6]),
                onnx.helper.make_tensor_value_info("i", onnx.TensorProto.INT64, [2, 3, 1]),
            ],
            [onnx.helper.make_tensor_value_info("o", onnx.TensorProto.INT32, None)],
        )
    )
    assert gathernd_problems(rank2) == ["G: GatherND batch_dims=1 on rank 2 data"]
    monkeypatch.undo()
    big = _tensorrt_graph(tiny / "yolo.yaml", True, max_det=fuse.TRT_TOPK_MAX)
    assert topk_problems(big) == []
    for n in big.graph.initializer:  # the same graph with K one past the limit
        if n.name == next(x for x in big.graph.node if x.op_type == "TopK").input[1]:
            n.CopyFrom(onnx.numpy_helper.from_array(np.array([fuse.TRT_TOPK_MAX + 1], np.int64), n.name))
    assert len(topk_problems(big)) == 1


def test_tensorrt_build_with_more_detections_than_its_topk_takes_is_one_line(tiny, monkeypatch):
    from tests.backends import fake_tensorrt as fake

    with pytest.raises(ModelError) as e:
        _tensorrt_graph(tiny / "yolo.yaml", True, max_det=fuse.TRT_TOPK_MAX + 1)
    assert str(e.value) == (
        f"yolo: max_detections {fuse.TRT_TOPK_MAX + 1} is more than TensorRT's TopK takes ({fuse.TRT_TOPK_MAX}); "
        f"set max_detections <= {fuse.TRT_TOPK_MAX} for the tensorrt backend"
    )
    fake.install(monkeypatch)
    with pytest.raises(ModelError, match="more than TensorRT's TopK takes"):
        open_model(str(tiny / "yolo.yaml"), backend="tensorrt", fuse=True, max_detections=5000)
    with open_model(str(tiny / "yolo.yaml"), backend="onnxruntime", fuse=True, max_detections=5000) as m:
        assert m.fused  # the CPU backends have no such limit


def test_semantic_argmax_ids_read_before_the_uint8_cast_are_the_same(tmp_path, monkeypatch):
    """(b) the fused label map from the INT64 ids (Mod 256) equals the one from the model's UINT8 ids."""
    card = _ids_card(tmp_path)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    out = {}
    for name, patch in (("new", False), ("old", True)):
        if patch:
            monkeypatch.setattr(fuse, "_before_uint8_cast", lambda *a: None)
        for backend in BACKENDS:
            for in_graph in (True, False):
                with open_model(str(card), backend=backend, threads=1, fuse=True, resize_in_graph=in_graph) as m:
                    out[name, backend, in_graph] = [r.label_map for r in m.run(frames)]
    for (_, backend, in_graph), maps in out.items():
        for a, b in zip(maps, out["old", backend, in_graph], strict=True):
            np.testing.assert_array_equal(a, b)
        assert any(m.any() for m in maps)  # red pixels found: the comparison has something in it


@pytest.mark.skipif(not FORMATS.is_dir(), reason="../shared/data/models/formats not present")
@pytest.mark.parametrize("backend", BACKENDS)
def test_yolo26_sem_fused_agrees_with_unfused(tmp_path, backend):
    from tests.models.test_yolo_formats import _card_for

    card = _card_for(FORMATS / "yolo26n-sem-random.onnx", tmp_path)
    frames = _demo(1) + (_udacity(1, 1) if UDACITY.is_file() else [])
    for in_graph in (True, False):
        _check("semantic", _agree(str(card), backend, frames, in_graph))


@pytest.mark.parametrize("backend", BACKENDS)
def test_static_nms_gives_the_same_detections_as_the_default(tiny, backend, monkeypatch):
    """(g) on the constant model, with the pre-selection smaller than the anchor count (as on a 640
    model, whose 8400 anchors are more than TensorRT's TopK takes) and larger."""
    image = np.zeros((90, 160, 3), np.uint8)
    for limit in (fuse.TRT_TOPK_MAX, 4):  # 4 of the 6 anchors: more than pass the threshold
        monkeypatch.setattr(fuse, "TRT_TOPK_MAX", limit)
        got = {}
        for nms in fuse.NMS_VARIANTS:
            with open_model(str(tiny / "yolo.yaml"), backend=backend, threads=1, fuse=True, nms=nms) as m:
                assert m.describe()["nms"] == nms
                got[nms] = m.run([image, image])
        for a, b in zip(got["dynamic"], got["static"], strict=True):
            assert list(a.class_id) == list(b.class_id) == [0, 1, 2]  # bus is in the car group here
            np.testing.assert_array_equal(a.xyxy, b.xyxy)
            np.testing.assert_array_equal(a.score, b.score)
            np.testing.assert_array_equal(a.masks, b.masks)
    # nothing passes the threshold: NMS selects nothing ([0, 3]), the scatter writes nothing
    with open_model(str(tiny / "yolo.yaml"), backend=backend, threads=1, fuse=True, nms="static", conf_threshold=0.95) as m:
        assert [len(r) for r in m.run([image, image])] == [0, 0]
    with pytest.raises(ModelError, match="nms must be one of dynamic, static, not 'fast'"):
        with open_model(str(tiny / "yolo.yaml"), backend=backend, threads=1, fuse=True, nms="fast"):
            pass


def _same_detections(card: str, backend: str, frames, **kw) -> int:
    got = {}
    for nms in fuse.NMS_VARIANTS:
        with open_model(card, backend=backend, threads=1, fuse=True, nms=nms, **kw) as m:
            got[nms] = [m.run([f])[0] for f in frames]
    n = 0
    for a, b in zip(got["dynamic"], got["static"], strict=True):
        assert list(a.class_id) == list(b.class_id)
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.score, b.score)
        np.testing.assert_array_equal(a.masks, b.masks)
        n += len(a)
    return n


@pytest.mark.parametrize("in_graph", VARIANTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_static_nms_same_detections_bundled_model(backend, in_graph):
    frames = _demo(1) + (_udacity(1, 1) if UDACITY.is_file() else [])
    assert _same_detections(str(ROOT / "engines" / "synth-instance.yaml"), backend, frames, resize_in_graph=in_graph) > 0


@needs_shared_models
@pytest.mark.skipif(not UDACITY.is_file(), reason="../shared/data/video not present")
@pytest.mark.parametrize("backend", BACKENDS)
def test_static_nms_same_detections_shared_models(backend):
    """yolov8n-seg on footage at threshold 0, where every one of its 2100 anchors is a candidate:
    the most NMS ever meets from it (one pair of engines: OpenVINO compiles this model for ~10 s)."""
    card = str(CARDS / "yolov8n-seg-coco.yaml")
    assert _same_detections(card, backend, _udacity(1, 1), conf_threshold=0.0, max_detections=100) == 100
