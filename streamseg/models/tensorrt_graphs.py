"""The graphs the tensorrt backend would hand its builder, made from model cards without TensorRT
(`models check --backend tensorrt`, `engines export`, gpu-check), judged by
streamseg.backends.tensorrt_check. Here, above the engine layer, because making them opens
models (fused graphs, fixed-size copies, gated Q/DQ models); the rules stay in backends/."""

from __future__ import annotations

from pathlib import Path

from streamseg.backends.tensorrt_check import BuilderGraph, Finding, check_file, errors
from streamseg.errors import BackendError, UserError


def builder_graph(
    card_path: str | Path,
    out_path: str | Path,
    *,
    precision: str = "fp32",
    max_batch: int = 8,
    resize_in_graph: bool | None = None,
    cache_dir: str | Path | None = None,
    nms: str = "dynamic",
) -> BuilderGraph:
    """Write the exact graph the tensorrt backend would hand its builder for this card to
    `out_path`: open_model's graph (fused with its pre/post-processing when the card fuses,
    resize in the graph by default, the fixed-size copy of a dynamic-size export, the gated Q/DQ
    model for int8) and tensorrt_build.builder_source's FP16 copy. No TensorRT is needed."""
    import tempfile

    import onnx

    from streamseg.backends.tensorrt_build import profile_for
    from streamseg.models import open_model

    model = open_model(
        str(card_path),
        backend="tensorrt",
        precision=precision,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        engine_options={"max_batch": max_batch},
        resize_in_graph=resize_in_graph,
        nms=nms,
        runtime_needed=False,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="streamseg-trt-graph-") as tmp:
            src = model.engine.builder_graph(tmp)
            m = onnx.load(str(src))  # external data, if any, inlined: the file stands alone
            out_path = Path(out_path)
            if out_path.parent != Path(""):
                out_path.parent.mkdir(parents=True, exist_ok=True)
            if src.resolve() != out_path.resolve():
                onnx.save(m, str(out_path))
        fused, rig = model.fused, (model._fused.resize_in_graph if model.fused else None)
        settings = model.engine.settings
    finally:
        model.__exit__(None, None, None)
    init = {i.name for i in m.graph.initializer}
    inputs = [
        (v.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim))
        for v in m.graph.input
        if v.name not in init
    ]
    profile = profile_for(inputs, settings, Path(card_path).name)
    return BuilderGraph(str(card_path), out_path, precision, fused, rig, profile)


def check_card(
    card_path: str | Path,
    *,
    precision: str = "fp32",
    resize_in_graph: bool | None = None,
    cache_dir: str | Path | None = None,
    nms: str = "dynamic",
) -> tuple[BuilderGraph, list[Finding]]:
    """The builder's graph for a card (in a temporary folder, removed) and its findings."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="streamseg-trt-check-") as tmp:
        graph = builder_graph(
            card_path, Path(tmp) / "graph.onnx", precision=precision, resize_in_graph=resize_in_graph,
            cache_dir=cache_dir, nms=nms,
        )  # fmt: skip
        return graph, check_file(graph.path)


def check_all_graphs(cards: dict[str, str | Path], out_dir: str | Path, *, precisions=("fp32", "fp16", "int8"),
                     cache_dir: str | Path | None = None) -> dict:  # fmt: skip
    """The CPU verdict for every graph the tensorrt backend can get from `cards` ({name: card}):
    each precision, resize in the graph on and off; each graph is written under `out_dir` for
    parse_with_real_parser. int8 without a gated Q/DQ model in `cache_dir` is recorded as skipped."""
    import time

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    rows = []
    for name, card in cards.items():
        for precision in precisions:
            for rig in (True, False):
                row = {"model": name, "precision": precision, "resize_in_graph": rig}
                path = out_dir / f"{name}-{precision}-{'resize' if rig else 'sized'}.onnx"
                try:
                    graph = builder_graph(card, path, precision=precision, resize_in_graph=rig, cache_dir=cache_dir)
                except UserError as e:  # no gated int8 model (BackendError), an op TensorRT lacks, ...
                    skip = precision == "int8" and isinstance(e, BackendError)
                    rows.append({**row, "skipped" if skip else "refused": str(e)})
                    continue
                findings = check_file(path)
                rows.append({**row, "graph": str(path), "fused": graph.fused,
                             "errors": [f.line() for f in errors(findings)],
                             "warnings": [f.line() for f in findings if f.level != "error"]})  # fmt: skip
    bad = [r for r in rows if r.get("errors") or r.get("refused")]
    return {"graphs": rows, "refused": len(bad), "seconds": round(time.perf_counter() - t0, 2)}


def parse_with_real_parser(graphs: list[str | Path]) -> dict:
    """Parse each graph with TensorRT's own OnnxParser (no build): every node it refuses, with the
    parser's message, and the seconds it took. {"skipped": why} where `import tensorrt` fails."""
    import time

    try:
        import tensorrt as trt
    except ImportError as e:
        return {"skipped": f"tensorrt does not import: {e}"}
    from streamseg.backends.tensorrt_build import strongly_typed_flag

    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    rows = []
    for path in graphs:
        builder = trt.Builder(logger)
        st = strongly_typed_flag(trt)
        network = builder.create_network(st if st is not None else 0)
        parser = trt.OnnxParser(network, logger)
        ok = bool(parser.parse_from_file(str(path)))
        refused = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            node = getattr(e, "node_name", None)
            op = getattr(e, "node_operator", None)
            refused.append(
                {"node": node() if callable(node) else None, "op": op() if callable(op) else None, "error": str(e)}
            )
        rows.append({"graph": str(path), "parsed": ok, "refused": refused})
    return {"tensorrt": getattr(trt, "__version__", "?"), "graphs": rows,
            "refused": sum(not r["parsed"] for r in rows), "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
