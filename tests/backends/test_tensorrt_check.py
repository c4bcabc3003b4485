"""TensorRT's ONNX parser rules on the CPU (streamseg/backends/tensorrt_check.py): for each rule a
tiny graph that breaks it gets the one line naming it; every graph the product can hand TensorRT
passes (the shared dynamically-quantized YOLOv8n is refused, by the op rule); `engines export`
writes a graph onnx.checker accepts and a trtexec line naming its real inputs."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from streamseg.backends import tensorrt_check as tc
from streamseg.models import tensorrt_graphs as tg

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "models"
F, U8, I32, I64, B = T.FLOAT, T.UINT8, T.INT32, T.INT64, T.BOOL


def vi(name, t, shape):
    return helper.make_tensor_value_info(name, t, shape)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def n(op, ins, outs, name=None, **attrs):
    return helper.make_node(op, ins, outs, name=name or f"{op.lower()}_node", **attrs)


# (case, graph, expected rule, level, the node the line must name)
def _cases():
    yield "clean", model([n("Relu", ["x"], ["y"])], [vi("x", F, [1, 4])], [vi("y", F, [1, 4])]), None, None, None
    yield (
        "2f ConvInteger",
        model(
            [n("ConvInteger", ["x", "w"], ["y"])],
            [vi("x", U8, [1, 1, 4, 4])], [vi("y", I32, [1, 1, 4, 4])], [const("w", np.ones((1, 1, 1, 1), np.uint8))],
        ),
        "op-unsupported", "error", "convinteger_node",
    )  # fmt: skip
    yield (
        "2f DynamicQuantizeLinear",
        model(
            [n("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]), n("Cast", ["q"], ["y"], name="c", to=F)],
            [vi("x", F, [4])], [vi("y", F, [4])],
        ),
        "op-unsupported", "error", "dynamicquantizelinear_node",
    )  # fmt: skip
    yield (
        "vendor op",
        model([helper.make_node("FusedGemm", ["x"], ["y"], name="fg", domain="com.microsoft")], [vi("x", F, [2])], [vi("y", F, [2])]),
        "op-unsupported", "error", "fg",
    )  # fmt: skip
    yield (
        "2a uint8 frames transposed",
        model(
            [n("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]), n("Cast", ["t"], ["y"], name="c", to=F)],
            [vi("x", U8, [1, 4, 4, 3])], [vi("y", F, [1, 3, 4, 4])],
        ),
        "uint8-use", "error", "transpose_node",
    )  # fmt: skip
    yield (
        "2a uint8 intermediate",
        model(
            [n("Cast", ["x"], ["u"], name="to_u8", to=U8), n("Cast", ["u"], ["y"], name="to_f", to=F)],
            [vi("x", F, [4])], [vi("y", F, [4])],
        ),
        "uint8-intermediate", "error", "to_u8",
    )  # fmt: skip
    yield (
        "2b cast INT64 -> UINT8",
        model([n("Cast", ["x"], ["y"], to=U8)], [vi("x", I64, [4])], [vi("y", U8, [4])]),
        "uint8-cast", "error", "cast_node",
    )  # fmt: skip
    yield (
        "2b cast UINT8 -> INT32",
        model([n("Cast", ["x"], ["y"], to=I32)], [vi("x", U8, [4])], [vi("y", I32, [4])]),
        "uint8-cast", "error", "cast_node",
    )  # fmt: skip
    yield (
        "2c GatherND batch_dims=1 on rank 2",
        model(
            [n("GatherND", ["d", "i"], ["y"], batch_dims=1)],
            [vi("d", F, [2, 10]), vi("i", I64, [2, 3, 1])], [vi("y", F, [2, 3])],
        ),
        "gathernd-batch-dims", "error", "gathernd_node",
    )  # fmt: skip
    yield (
        "2d TopK sorted=0",
        model([n("TopK", ["x", "k"], ["v", "i"], sorted=0)], [vi("x", F, [1, 10])],
              [vi("v", F, [1, 3]), vi("i", I64, [1, 3])], [const("k", np.array([3], np.int64))]),
        "topk-sorted", "error", "topk_node",
    )  # fmt: skip
    yield (
        "2d TopK K=5000",
        model([n("TopK", ["x", "k"], ["v", "i"])], [vi("x", F, [1, 8000])],
              [vi("v", F, [1, 5000]), vi("i", I64, [1, 5000])], [const("k", np.array([5000], np.int64))]),
        "topk-k", "error", "topk_node",
    )  # fmt: skip
    yield (
        "2d TopK K at run time",
        model([n("TopK", ["x", "k"], ["v", "i"])], [vi("x", F, [1, 10]), vi("k", I64, [1])],
              [vi("v", F, [1, None]), vi("i", I64, [1, None])]),
        "topk-k", "error", "topk_node",
    )  # fmt: skip
    yield (
        "2e Q/DQ uint8 zero point",
        model(
            [n("QuantizeLinear", ["x", "s", "z"], ["q"]), n("DequantizeLinear", ["q", "s", "z"], ["y"])],
            [vi("x", F, [4])], [vi("y", F, [4])],
            [const("s", np.float32(0.1)), const("z", np.uint8(128))],
        ),
        "qdq-int8-symmetric", "error", "quantizelinear_node",
    )  # fmt: skip
    yield (
        "2e Q/DQ int8 zero point not 0",
        model(
            [n("QuantizeLinear", ["x", "s", "z"], ["q"]), n("DequantizeLinear", ["q", "s", "z"], ["y"])],
            [vi("x", F, [4])], [vi("y", F, [4])],
            [const("s", np.float32(0.1)), const("z", np.int8(3))],
        ),
        "qdq-int8-symmetric", "error", "quantizelinear_node",
    )  # fmt: skip
    yield (
        "2e DQ of an INT32 bias",
        model(
            [n("DequantizeLinear", ["b", "s"], ["y"])], [], [vi("y", F, [4])],
            [const("b", np.ones(4, np.int32)), const("s", np.float32(0.1))],
        ),
        "qdq-type", "error", "dequantizelinear_node",
    )  # fmt: skip
    nms_in = [vi("boxes", F, [1, 6000, 4]), vi("scores", F, [1, 2, 6000])]
    yield (
        "2g NMS feeding a Gather",
        model(
            [n("NonMaxSuppression", ["boxes", "scores", "m"], ["sel"]), n("Gather", ["sel", "c"], ["g"], axis=1),
             n("Shape", ["g"], ["y"])],
            [vi("boxes", F, [1, 100, 4]), vi("scores", F, [1, 2, 100])], [vi("y", I64, [2])],
            [const("m", np.array([10], np.int64)), const("c", np.array([2], np.int64))],
        ),
        "data-dependent-shape", "warning", "nonmaxsuppression_node",
    )  # fmt: skip
    yield (
        "2g NMS over 6000 boxes",
        model([n("NonMaxSuppression", ["boxes", "scores"], ["sel"]), n("Shape", ["sel"], ["y"])], nms_in, [vi("y", I64, [2])]),
        "nms-box-limit", "warning", "nonmaxsuppression_node",
    )  # fmt: skip
    yield (
        "output sized by data",
        model([n("NonZero", ["x"], ["nz"]), n("Transpose", ["nz"], ["y"], perm=[1, 0])],
              [vi("x", F, [4, 4])], [vi("y", I64, [None, 2])]),
        "output-data-dependent", "error", "transpose_node",
    )  # fmt: skip
    yield (
        "op type not in the table",
        model([n("Equal", ["a", "b"], ["y"])], [vi("a", B, [4]), vi("b", B, [4])], [vi("y", B, [4])]),
        "op-type", "error", "equal_node",
    )  # fmt: skip
    yield (
        "type TensorRT has none of",
        model([n("Cast", ["x"], ["y"], to=F)], [vi("x", T.UINT16, [4])], [vi("y", F, [4])]),
        "dtype", "error", "x",
    )  # fmt: skip
    yield (
        "opset below 9",
        model([n("Relu", ["x"], ["y"])], [vi("x", F, [4])], [vi("y", F, [4])], opset=8),
        "opset-range", "error", "(model)",
    )  # fmt: skip
    yield (
        "Resize cubic",
        model([n("Resize", ["x", "", "s"], ["y"], mode="cubic")], [vi("x", F, [1, 1, 4, 4])], [vi("y", F, [1, 1, 8, 8])],
              [const("s", np.array([1, 1, 2, 2], np.float32))]),
        "resize-mode", "error", "resize_node",
    )  # fmt: skip
    yield (
        "ScatterND with reduction",
        model([n("ScatterND", ["d", "i", "u"], ["y"], reduction="add")],
              [vi("d", F, [4]), vi("i", I64, [1, 1]), vi("u", F, [1])], [vi("y", F, [4])]),
        "scatternd-reduction", "error", "scatternd_node",
    )  # fmt: skip
    yield (
        "Slice axes at run time (10.1 only)",
        model([n("Slice", ["x", "b", "e", "a"], ["y"])], [vi("x", F, [4, 4]), vi("a", I64, [1])], [vi("y", F, None)],
              [const("b", np.array([0], np.int64)), const("e", np.array([2], np.int64))]),
        "axes-constant", "error", "slice_node",
    )  # fmt: skip
    yield (
        "ReduceSum axes at run time",
        model([n("ReduceSum", ["x", "a"], ["y"])], [vi("x", F, [2, 3]), vi("a", I64, [1])], [vi("y", F, None)]),
        "axes-constant", "error", "reducesum_node",
    )  # fmt: skip


CASES = list(_cases())


@pytest.mark.parametrize("case,graph,rule,level,node", CASES, ids=[c[0] for c in CASES])
def test_each_rule_names_the_node_the_op_and_what_to_do(case, graph, rule, level, node):
    found = tc.check_model(graph)
    if rule is None:
        assert found == []
        return
    hit = [f for f in found if f.rule == rule]
    assert len(hit) == 1, [f.line() for f in found]
    f = hit[0]
    assert f.level == level and f.node == node
    line = f.line()
    assert "\n" not in line and f"[{rule}," in line and f"({f.op})" in line and f"'{node}'" in line and " -> " in line
    # no other error on a graph built to break one rule
    assert [x.rule for x in tc.errors(found)] == ([rule] if level == "error" else [])
    assert f.versions == (("10",) if "10.1 only" in case else ("10", "11"))


def test_op_tables_name_their_commits_and_lack_the_ops_of_2f():
    tables = tc.op_table()
    assert tables["10"]["commit"].startswith("96e781103cfc") and tables["11"]["commit"].startswith("7c51a63a7191")
    for v in ("10", "11"):
        ops = tables[v]["ops"]
        assert not ops["ConvInteger"]["supported"] and not ops["DynamicQuantizeLinear"]["supported"]
        assert ops["Conv"]["supported"] and "UINT8" not in ops["Transpose"]["types"]
        assert "`sorted` must be 1" in ops["TopK"]["restrictions"]
    assert tables["10"]["opset"] == [9, 20] and tables["11"]["opset"] == [9, 24]


def test_regenerating_the_table_from_markdown_gives_the_committed_rows(tmp_path):
    """tools/tensorrt_ops.py parses operators.md; rows the snapshot holds come out the same."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tensorrt_ops", ROOT / "tools" / "tensorrt_ops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    md = (
        "TensorRT 10.1 supports operators in the inclusive range of opset 9 to opset 20.\n\n"
        "> Note: UINT8 is only supported as network input or output tensor types.\n\n"
        "| Operator | Supported | Supported Types | Restrictions |\n|---|---|---|---|\n"
        "| TopK                      | Y          | FP32, FP16, BF16, INT32, INT64 | `sorted` must be 1. `K` input must be less than 3840.\n"
        "| ConstantOfShape           | Y          | FP32, FP16, BF16, INT32, INF64, BOOL |\n"
        "| ConvInteger               | N          |\n"
    )
    parsed = mod.parse(md)
    committed = tc.op_table()["10"]["ops"]
    assert parsed["opset"] == [9, 20] and parsed["notes"] == [tc.op_table()["10"]["notes"][-1]]
    for op in ("TopK", "ConstantOfShape", "ConvInteger"):
        assert parsed["ops"][op] == committed[op]


# every graph the product can hand TensorRT -------------------------------------------------------------
def _format_cards(tmp_dir: Path) -> list[Path]:
    from streamseg.models.cardgen import make_card

    cards = []
    for f in sorted((SHARED / "formats").glob("*.onnx")):
        card = tmp_dir / f"{f.stem}.yaml"
        card.write_text(make_card(str(f), str(card)))
        cards.append(card)
    return cards


def _product_cards(tmp_dir: Path) -> list[Path]:
    cards = sorted((ROOT / "engines").glob("*.yaml")) + sorted((ROOT / "tests" / "fixtures" / "cards").glob("*.yaml"))
    return cards + _format_cards(tmp_dir)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    return _product_cards(tmp_path_factory.mktemp("cards"))


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory):
    """The TensorRT Q/DQ models of both bundled cards and the shared TwinLiteNet (the shared
    YOLOv8n is INT8 already: refused before calibration), made by the product's own quantizer.
    Few calibration frames and the gate at 0: what is checked is the graph's structure, which the
    accuracy gate does not change (it accepts or refuses the same graph)."""
    from streamseg.quantize import build_int8

    cache = tmp_path_factory.mktemp("int8-cache")
    cards = sorted((ROOT / "engines").glob("*.yaml"))
    if (SHARED / "twinlitenet-bdd-360x640.onnx").is_file():
        cards.append(ROOT / "tests" / "fixtures" / "cards" / "twinlitenet-bdd.yaml")
    for card in cards:
        build_int8(str(card), "synthetic://driving?size=320x180&seed=3&frames=8", backend="tensorrt",
                   frames=2, threshold=0.0, cache_dir=str(cache))  # fmt: skip
    return cache, cards


def _refused_by_2f(card: Path) -> bool:
    return "yolov8n-seg-int8" in card.read_text()  # the shared dynamically quantized model (ConvInteger)


@pytest.mark.parametrize("resize_in_graph", [True, False], ids=["resize-in-graph", "sized-frames"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_every_graph_the_product_hands_tensorrt_passes(cards, precision, resize_in_graph):
    from streamseg.errors import ModelError

    if not (SHARED / "formats").is_dir():
        pytest.skip("../shared/data/models not present")
    failed = []
    for card in cards:
        if _refused_by_2f(card):
            with pytest.raises(ModelError, match=r"has no ConvInteger, DynamicQuantizeLinear"):
                tg.check_card(card, precision=precision, resize_in_graph=resize_in_graph)
            continue
        graph, findings = tg.check_card(card, precision=precision, resize_in_graph=resize_in_graph)
        failed += [f"{card.name}: {f.line()}" for f in tc.errors(findings)]
    assert failed == [], "\n".join(failed)


def test_the_static_nms_variant_feeds_its_selection_only_into_one_fixed_size_scatter():
    """2g: the default NMS graph gathers on NMS's run-time-sized selection (Gather, GatherND,
    ScatterND: what TensorRT 8.5 refused); the static variant only scatters it into a fixed-size
    mask, with no output sized by data. Both stay warnings: only a GPU settles them."""
    card = ROOT / "engines" / "synth-instance.yaml"
    dd = {}
    for nms in ("dynamic", "static"):
        findings = tg.check_card(card, nms=nms)[1]
        assert tc.errors(findings) == [] and not any(f.rule.startswith("output-") for f in findings)
        dd[nms] = next(f.problem for f in findings if f.rule == "data-dependent-shape")
    assert "(Gather)" in dd["dynamic"] and "(GatherND)" in dd["dynamic"]
    assert "(ScatterND)" in dd["static"] and "(Gather)" not in dd["static"] and "(GatherND)" not in dd["static"]


@pytest.mark.parametrize("resize_in_graph", [True, False], ids=["resize-in-graph", "sized-frames"])
def test_every_int8_graph_passes(int8_cache, resize_in_graph):
    cache, gated = int8_cache
    failed = []
    for card in gated:
        graph, findings = tg.check_card(card, precision="int8", resize_in_graph=resize_in_graph, cache_dir=cache)
        assert graph.fused, card.name  # the fused Q/DQ graph, pre/post included
        failed += [f"{card.name}: {f.line()}" for f in tc.errors(findings)]
    assert failed == [], "\n".join(failed)


# CLI ------------------------------------------------------------------------------------------------
def test_models_check_tensorrt_exit_codes(capsys, tmp_path):
    from streamseg import cli

    assert cli.main(["models", "check", str(ROOT / "engines" / "synth-semantic.yaml"), "--backend", "tensorrt"]) == 0
    assert "parser rules: ok" in capsys.readouterr().out
    bad = tmp_path / "bad.onnx"  # a model whose own Resize TensorRT refuses: the fused graph keeps it
    onnx.save(
        model(
            [
                n("Resize", ["x", "", "s"], ["r"], name="cubic", mode="cubic"),
                n("ArgMax", ["r"], ["y"], axis=1, keepdims=0),
            ],
            [vi("x", F, [1, 3, 8, 8])],
            [vi("y", I64, [1, 8, 8])],
            [const("s", np.array([1, 1, 1, 1], np.float32))],
        ),
        bad,
    )
    card = tmp_path / "bad.yaml"
    card.write_text(
        "name: bad\nfile: bad.onnx\ntask: semantic\nformat: semantic-argmax\nlabels: [a, b]\n"
        "input: {name: x, size_wh: [8, 8], layout: NCHW, color: rgb, resize: stretch}\ngroups: {road: [a]}\n"
    )
    code = cli.main(["models", "check", str(card), "--backend", "tensorrt"])
    out = capsys.readouterr()
    assert code == 2, out
    errs = [ln for ln in out.err.splitlines() if "error:" in ln]
    assert any("'cubic' (Resize) [resize-mode" in ln for ln in errs), errs
    assert all(" -> " in ln for ln in errs) and "REFUSED" in out.out


@pytest.mark.skipif(not (SHARED / "yolov8n-seg-int8-320.onnx").is_file(), reason="../shared/data/models not present")
@pytest.mark.parametrize(
    "argv",
    [
        ["models", "check", "CARD", "--backend", "tensorrt"],
        [
            "run",
            "--instance",
            "CARD",
            "--backend",
            "tensorrt",
            "--source",
            "synthetic://driving?frames=2",
            "--sink",
            "null://",
        ],
        ["engines", "build", "CARD", "--backend", "tensorrt", "--precision", "fp16"],
    ],
    ids=["models-check", "run", "engines-build"],
)
def test_a_model_tensorrt_lacks_an_op_for_is_one_line_naming_it(argv, capsys, tmp_path):
    """2f: before any build or runtime lookup, exit 2, one line naming ConvInteger."""
    from streamseg import cli

    card = str(ROOT / "tests" / "fixtures" / "cards" / "yolov8n-seg-coco.yaml")
    argv = [card if a == "CARD" else a for a in argv] + (["--cache-dir", str(tmp_path)] if argv[0] == "engines" else [])
    assert cli.main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "ConvInteger" in err[0] and "Traceback" not in err[0], err


@pytest.mark.parametrize(
    "card,inputs",
    [
        ("engines/synth-instance.yaml", ["frames", "resize_x", "resize_y"]),
        ("engines/synth-semantic.yaml", ["frames", "resize_x", "resize_y"]),
    ],
)
def test_engines_export_writes_the_checked_graph_and_its_trtexec_line(card, inputs, tmp_path, capsys):
    from streamseg import cli

    out = tmp_path / "g.onnx"
    assert (
        cli.main(["engines", "export", str(ROOT / card), "--precision", "fp16", "--max-batch", "4", "-o", str(out)])
        == 0
    )
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert [v.name for v in m.graph.input] == inputs
    line = capsys.readouterr().out.strip().splitlines()[-1]
    args = shlex.split(line)
    assert args[0] == "trtexec" and f"--onnx={out}" in args and "--stronglyTyped" in args
    shapes = {
        a.split("=")[0]: a.split("=", 1)[1] for a in args if a.startswith(("--minShapes", "--optShapes", "--maxShapes"))
    }
    assert set(shapes) == {"--minShapes", "--optShapes", "--maxShapes"}
    for flag, spec in shapes.items():
        named = [s.split(":")[0] for s in spec.split(",")]
        assert named == inputs, (flag, spec)
    assert shapes["--maxShapes"].startswith("frames:4x1080x1920x3") and shapes["--minShapes"].startswith("frames:1x")
    # the graph written is the graph checked: fp16 inside, uint8 frames in
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_export_profile_is_the_builders(tmp_path):
    """The trtexec profile comes from the builder's own profile function (tensorrt_build.profile_for)."""
    from streamseg.backends.tensorrt_build import BuildSettings, profile_for

    g = tg.builder_graph(ROOT / "engines" / "synth-semantic.yaml", tmp_path / "s.onnx", max_batch=2)
    m = onnx.load(str(g.path))
    dims = [(v.name, tuple(d.dim_value or -1 for d in v.type.tensor_type.shape.dim)) for v in m.graph.input]
    assert g.profile == profile_for(dims, BuildSettings(max_batch=2, opt_batch=2), "s")


# gpu-check's steps ------------------------------------------------------------------------------------
def test_check_all_graphs_and_the_real_parser_step(monkeypatch, tmp_path):
    r = tg.check_all_graphs(
        {"synth-semantic": ROOT / "engines" / "synth-semantic.yaml"}, tmp_path, precisions=("fp32", "int8")
    )
    rows = {(g["precision"], g["resize_in_graph"]): g for g in r["graphs"]}
    assert len(rows) == 4 and "no INT8 model" in rows[("int8", True)]["skipped"]
    assert Path(rows[("fp32", True)]["graph"]).is_file() and rows[("fp32", True)]["errors"] == []
    graphs = [g["graph"] for g in r["graphs"] if "graph" in g]
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert "does not import" in tg.parse_with_real_parser(graphs)["skipped"]
    from tests.backends import fake_tensorrt as fake

    fake.install(monkeypatch)
    parsed = tg.parse_with_real_parser([*graphs, tmp_path / "missing.onnx"])
    assert [g["parsed"] for g in parsed["graphs"]] == [True] * len(graphs) + [False]
    assert parsed["refused"] == 1 and "cannot read" in parsed["graphs"][-1]["refused"][0]["error"]


def test_export_works_for_every_product_graph(cards, tmp_path):
    """Every card's builder graph is written whole (onnx.checker, full check) and its trtexec line
    names the graph's own dynamic inputs; the model TensorRT lacks ops for is refused instead."""
    from streamseg.errors import ModelError

    if not (SHARED / "formats").is_dir():
        pytest.skip("../shared/data/models not present")
    for card in cards:
        out = tmp_path / f"{card.stem}.onnx"
        if _refused_by_2f(card):
            with pytest.raises(ModelError, match="ConvInteger"):
                tg.builder_graph(card, out, precision="fp16")
            continue
        g = tg.builder_graph(card, out, precision="fp16", max_batch=2)
        m = onnx.load(str(out))
        onnx.checker.check_model(m, full_check=True)
        init = {i.name for i in m.graph.initializer}
        names = [v.name for v in m.graph.input if v.name not in init]
        assert [p[0] for p in g.profile] == names, card.name
        dynamic = [p[0] for p in g.profile if p[1] != p[3]]
        args = shlex.split(g.trtexec())
        max_shapes = next((a for a in args if a.startswith("--maxShapes=")), None)
        if dynamic:
            assert [s.split(":")[0] for s in max_shapes.split("=", 1)[1].split(",")] == dynamic, card.name
        else:  # a fixed-shape graph: trtexec takes its shapes from the file
            assert max_shapes is None, card.name
