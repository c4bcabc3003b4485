"""Command line: `streamseg run|models ...` (also `python -m streamseg`).

User mistakes end with one line on stderr and exit code 2; nothing else prints a
traceback unless it is a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from streamseg import __version__
from streamseg.errors import UserError

log = logging.getLogger("streamseg")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamseg", description="Real-time road/car/person segmentation of driving video.")
    p.add_argument("--version", action="version", version=f"streamseg {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run the pipeline on sources, writing sinks and a latency report")
    run.set_defaults(handler=cmd_run)
    run.add_argument("-c", "--config", help="YAML config (configs/*.yaml)")
    run.add_argument("--source", action="append", metavar="URI", help="source URI (repeatable); replaces the config's")
    run.add_argument("--sink", action="append", metavar="URI", help="sink URI (repeatable); replaces the config's")
    run.add_argument("--semantic", metavar="CARD", help="semantic model card")
    run.add_argument("--instance", metavar="CARD", help="instance model card")
    run.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt"])
    run.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"])
    run.add_argument("--mode", choices=["auto", "offline", "live", "realtime"], help="queue policy for all sources")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop each source after N frames")
    run.add_argument("--report", metavar="PATH", help="write the latency report JSON here")
    run.add_argument(
        "--plot", metavar="PATH", help="write the latency plot PNG here (default: beside --report, if the config plots)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    bench = sub.add_parser(
        "bench", help="engines-only limit, naive baseline, pipeline sweep and live load sweep, with plots"
    )
    bench.set_defaults(handler=cmd_bench)
    bench.add_argument("-c", "--config", default=None, help="default: configs/benchmark.yaml of this project")
    bench.add_argument("--source", metavar="URI", help="bench on this source instead (any URI)")
    bench.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt"])
    bench.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"])
    bench.add_argument("--frames", type=int, help="frames per throughput run")
    bench.add_argument("--reps", type=int, help="repetitions of every variant")
    bench.add_argument("--load-seconds", type=float, help="length of each live load run")
    bench.add_argument("--out", default="out/bench", help="folder for bench.json, bench.md and the plots")

    fleet = sub.add_parser("fleet", help="process many recordings on a Ray cluster (or a local Ray instance)")
    fleet.set_defaults(handler=cmd_fleet)
    fleet.add_argument("-c", "--config", required=True, help="YAML config: engines, overlay, sinks (file names)")
    fleet.add_argument("inputs", nargs="+", help="files, folders, globs, or .txt files listing URIs")
    fleet.add_argument("--ray-address", help="an existing Ray cluster (ray://HOST:10001 or HOST:6379); default: local")
    fleet.add_argument("--out", default="out/fleet", help="one folder per recording, and fleet-report.json")
    fleet.add_argument("--workers", type=int, help="Ray actors (default: cluster CPUs / engine threads)")
    fleet.add_argument("--retries", type=int, default=2, help="attempts after the first for a failed recording")
    fleet.add_argument("--no-progress", action="store_true")

    demo = sub.add_parser("demo", help="bundled models on the synthetic driving scene; writes out/demo.*")
    demo.set_defaults(handler=cmd_demo)
    demo.add_argument("-c", "--config", default=None, help="default: configs/demo.yaml of this project")
    demo.add_argument("--max-frames", type=int, metavar="N")
    demo.add_argument("--no-progress", action="store_true")

    ev = sub.add_parser("eval", help="accuracy of models (IoU, mask AP50) against ground truth")
    ev.set_defaults(handler=cmd_eval)
    ev.add_argument("models", nargs="+", metavar="CONFIG_OR_CARD", help="a run config, or model cards")
    ev.add_argument(
        "--source", action="append", metavar="URI", required=True, help="synthetic:// or images:// (repeatable)"
    )
    ev.add_argument("--labels", metavar="DIR", help="label PNGs, matched by file name to an images:// source")
    ev.add_argument(
        "--label-map", metavar="FILE", help="YAML: dataset label id -> group (road, car, person, ignore, ...)"
    )
    ev.add_argument(
        "--min-area",
        type=int,
        default=None,
        help="objects with fewer visible pixels are not graded (default 1024 = 32x32, COCO's medium+large; "
        "--events: 400)",
    )
    ev.add_argument(
        "--min-visibility",
        type=float,
        default=0.5,
        help="objects less visible than this share (when the source knows it) are not graded (default 0.5)",
    )
    ev.add_argument(
        "--merge",
        action="append",
        default=[],
        metavar="GROUP=INTO",
        help="grade GROUP as INTO, in predictions and ground truth (e.g. lane=road); repeatable",
    )
    ev.add_argument("--json", metavar="PATH", help="write the metrics here")
    ev.add_argument(
        "--events",
        action="store_true",
        help="grade analytics events instead: persons' `enter` into the config's first zone (default: on_road = "
        "road + lane) against the synthetic scene's truth, precision and recall (docs/analytics.md)",
    )
    ev.add_argument("--window", type=int, default=3, help="--events: frames an event may be off its truth (3)")

    engines = sub.add_parser("engines", help="build engines into the cache, or list what it holds")
    engines.set_defaults(handler=cmd_engines)
    esub = engines.add_subparsers(dest="engines_command", metavar="ACTION", parser_class=_Parser)
    eb = esub.add_parser("build", help="build (and cache) the engine for a card")
    eb.add_argument("card")
    eb.add_argument("--backend", default="openvino", choices=["onnxruntime", "openvino", "tensorrt"])
    eb.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8"])
    eb.add_argument("--threads", type=int, default=0)
    eb.add_argument("--cache-dir", default="engines/cache")
    eb.add_argument("--calib", metavar="URI", help="int8: frames for calibration and for the accuracy gate")
    eb.add_argument(
        "--calib-frames", type=int, default=64, help="int8: frames to calibrate on (as many again judge it)"
    )
    eb.add_argument("--gate", type=float, default=0.95, help="int8: least agreement with fp32 to accept the model")
    eb.add_argument(
        "--quantizer",
        choices=["onnxruntime", "nncf"],
        help="int8 on the CPU: who quantizes (default: the faster measured here - nncf for openvino, onnxruntime for onnxruntime)",
    )
    eb.add_argument("--max-batch", type=int, default=8, help="tensorrt: the largest batch the plan's profile takes")
    el = esub.add_parser("list", help="what the engine cache holds")
    el.add_argument("--cache-dir", default="engines/cache")

    models = sub.add_parser("models", help="list model cards or check one against its ONNX file")
    models.set_defaults(handler=cmd_models)
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    ml = msub.add_parser("list", help="list the model cards in folders")
    ml.add_argument("dirs", nargs="*", default=["engines"], help="folders holding cards (default: engines)")
    mc = msub.add_parser("check", help="load a card's model and check its inputs and outputs against the card")
    mc.add_argument("cards", nargs="+")
    mk = msub.add_parser("card", help="write a model card from what an ONNX file says (the first step for your own model)")
    mk.add_argument("model", metavar="MODEL.onnx")
    mk.add_argument("-o", "--out", metavar="CARD.yaml", help="write the card here (default: print it)")
    mk.add_argument("--force", action="store_true", help="overwrite an existing CARD.yaml")
    md = msub.add_parser("make-dynamic", help="rewrite a fixed-batch-1 ONNX model with a dynamic batch axis (checked)")
    md.add_argument("src", metavar="IN.onnx")
    md.add_argument("dst", metavar="OUT.onnx")
    gc = sub.add_parser(
        "gpu-check",
        help="on a GPU machine: install TensorRT, build fp16/int8 plans, run tests/gpu and the pipeline; one JSON",
    )
    gc.add_argument("--dry-run", action="store_true", help="everything short of a GPU, against the TensorRT test double")
    gc.add_argument("--out", default="out/gpu-check.json", help="the JSON written (default: out/gpu-check.json)")
    gc.add_argument("--models", default=None, help="comma-separated subset of the four models (default: all)")
    gc.add_argument("--api", type=int, choices=(10, 11), default=11, help="--dry-run: which TensorRT the double models")
    gc.add_argument("--frames", type=int, default=None, help="frames per clip (default 64; 4 with --dry-run)")
    gc.add_argument("--no-tests", action="store_true", help="skip running tests/gpu")
    gc.set_defaults(handler=cmd_gpu_check)
    return p


def main(argv: list[str] | None = None) -> int:
    # OpenCV and FFmpeg print their own warnings for files we already report on in one
    # line (and count decode errors of); they must be quiet before cv2 is imported.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    logging.basicConfig(format="streamseg: %(message)s", level=logging.INFO, stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        if args.quiet:
            logging.getLogger().setLevel(logging.WARNING)
        handler = getattr(args, "handler", None)
        if handler is not None:  # each subcommand's parser names its handler (set_defaults)
            return handler(args)
        build_parser().print_help()
        return 2
    except UserError as e:
        print(f"streamseg: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        print("streamseg: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)


def cmd_gpu_check(args) -> int:
    from streamseg.gpucheck import main as gpu_check

    return gpu_check(args)


def cmd_fleet(args) -> int:
    from streamseg.config import load_config
    from streamseg.fleet import run_fleet

    cfg = load_config(args.config)
    if cfg.engines.semantic is None and cfg.engines.instance is None:
        raise UserError(f"{args.config}: the fleet needs at least one engine")
    r = run_fleet(
        cfg,
        args.inputs,
        Path(args.out),
        ray_address=args.ray_address,
        workers=args.workers,
        retries=args.retries,
        progress=not args.no_progress and sys.stderr.isatty(),
        log=lambda msg: log.info("%s", msg),
    )
    t = r["totals"]
    for row in r["recordings"]:
        if row["status"] == "failed":
            print(f"FAILED {row['uri']}: {row.get('error')} (after {row['attempts']} attempt(s))")
    e2e = (r["latency_ms"] or {}).get("end_to_end") or {}
    print(
        f"{t['done']}/{t['recordings']} recordings done, {t['failed']} failed; {t['frames_this_run']} frames processed in "
        f"{t['wall_s']:.1f} s ({t['throughput_fps']} frames/s); end-to-end p50 {e2e.get('p50')} ms, "
        f"p99 {e2e.get('p99')} ms over all frames; report: {Path(args.out) / 'fleet-report.json'}"
    )
    return 0 if t["failed"] == 0 else 1


def cmd_bench(args) -> int:
    from streamseg.bench import Bench, summary_line
    from streamseg.config import apply_overrides
    from streamseg.sinks.base import check_writable

    cfg = project_config(args.config, "benchmark.yaml")
    path = args.config or "configs/benchmark.yaml"
    cfg = apply_overrides(
        cfg, sources=[args.source] if args.source else None, backend=args.backend, precision=args.precision
    )
    for key in ("frames", "reps", "load_seconds"):
        if getattr(args, key) is not None:
            setattr(cfg.bench, key, getattr(args, key))
    if cfg.engines.semantic is None and cfg.engines.instance is None:
        raise UserError(f"{path}: the bench needs at least one engine (engines.semantic / engines.instance)")
    out = Path(args.out).resolve()
    check_writable(out / "bench.json")
    r = Bench(cfg, out, log=lambda msg: log.info("%s", msg)).run()
    print(Path(out / "bench.md").read_text())
    print(
        f"{summary_line(r)}; written: {out}/bench.json, bench.md, latency_cdf.png, throughput.png, latency_vs_load.png"
    )
    return 0


def cmd_run(args) -> int:
    from streamseg.config import apply_overrides, load_config

    cfg = load_config(args.config)
    cfg = apply_overrides(
        cfg,
        sources=args.source,
        sinks=args.sink,
        semantic=args.semantic,
        instance=args.instance,
        backend=args.backend,
        precision=args.precision,
        max_frames=args.max_frames,
        report=args.report,
        plot=args.plot,
        mode=args.mode,
    )
    if args.no_progress:
        cfg.metrics.progress = False
    return run_config(cfg)


def run_config(cfg) -> int:
    """Run a validated config: output checks, progress bar, signals, report file, summary.

    Exit codes: 0 done; 1 the run failed (no frame came out, the report could not be written);
    2 a user mistake, found before any frame is read; 128 + N after signal N (130 SIGINT,
    143 SIGTERM), once everything is written, as shells report an interrupted command.
    """
    from streamseg.latency import format_summary
    from streamseg.outputs import check_outputs
    from streamseg.pipeline import Pipeline

    check_outputs(cfg)
    report_path = Path(cfg.metrics.report) if cfg.metrics.report else None
    pipe = Pipeline(cfg)
    bar = _ProgressBar(pipe) if cfg.metrics.progress and sys.stderr.isatty() else None
    if bar is not None:
        pipe.on_progress = bar.update
    signals: list[int] = []  # the signals received, first first

    def on_signal(signum, _frame):
        signals.append(signum)
        if pipe.interrupted:
            raise _SecondSignal(signum)  # a second signal: stop waiting for the drain
        log.warning("%s: stopping, finishing frames in flight", signal.Signals(signum).name)
        pipe.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    saved = True
    try:
        pipe.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if bar is not None:
            bar.close()
        # written even when the run failed: what was measured is kept
        if report_path is not None and pipe.last_report is not None:
            saved = _save_report(report_path, pipe.last_report)
    report = pipe.last_report
    if cfg.metrics.plot:
        from streamseg.plots import latency_plot

        try:
            latency_plot(
                pipe.recorder.series(),
                cfg.metrics.plot,
                title=f"{report['frames']['out']} frames, {report['fps']:.1f} fps",
            )
            print(f"latency plot: {cfg.metrics.plot}")
        except OSError as e:
            print(f"streamseg: error: cannot write the plot {cfg.metrics.plot}: {e.strerror or e}", file=sys.stderr)
    if cfg.metrics.summary:
        print(format_summary(report))
        if report_path is not None and saved:
            print(f"report: {report_path}")
    if not saved:
        return 1
    if signals:
        return 128 + signals[0]
    fr = report["frames"]
    if fr["in"] > 0 and fr["out"] == 0:
        print("streamseg: error: no frame came out; see the errors above", file=sys.stderr)
        return 1
    return 0


class _SecondSignal(KeyboardInterrupt):
    """A second SIGINT/SIGTERM during the drain: the run aborts; the exit code names the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _save_report(path: Path, report: dict) -> bool:
    """Write the report; a failure (disk full, folder removed meanwhile) is one line, and the
    run's other outputs stay as they are."""
    from streamseg.outputs import write_report

    try:
        write_report(path, report)
    except OSError as e:
        print(f"streamseg: error: cannot write the report {path}: {e.strerror or e}", file=sys.stderr)
        return False
    return True


class _ProgressBar:
    """tqdm bar over frames out, with live fps and latency in its postfix."""

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.bar = None

    def update(self, n: int, live: dict) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.pipe.total_frames, unit="frame", leave=True)
        self.bar.n = n
        if live.get("p50") is not None:
            self.bar.set_postfix_str(f"e2e p50 {live['p50']:.0f} ms p99 {live['p99']:.0f} ms", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_models(args) -> int:
    from streamseg.models import load_card, open_model

    if args.models_command == "list":
        rows = []
        for d in args.dirs:
            folder = Path(d)
            if not folder.is_dir():
                raise UserError(f"no such folder: {folder}")
            for f in sorted(folder.glob("*.yaml")):
                try:
                    card = load_card(f)
                    w, h = card.input.size_wh
                    rows.append(f"{str(f):<44} {card.task:<9} {card.format:<16} {w}x{h:<6} {', '.join(card.groups)}")
                except UserError as e:
                    rows.append(f"{str(f):<44} INVALID: {e}")
        print("\n".join(rows) if rows else "no model cards found")
        return 0
    if args.models_command == "check":
        for path in args.cards:
            model = open_model(path, fuse=False)  # the model's own inputs and outputs
            with model:
                eng = model.engine
                ins = ", ".join(f"{n} {list(s.shape)}" for n, s in eng.inputs.items())
                outs = ", ".join(f"{n} {list(s.shape)}" for n, s in eng.outputs.items())
                head = {True: "; end-to-end head, no NMS", False: "; anchors head + NMS"}.get(
                    getattr(model.decoder, "end2end", None), ""
                )
                print(
                    f"{path}: ok ({model.card.format}{head}; inputs {ins}; outputs {outs}; labels {len(model.decoder.labels)})"
                )
        return 0
    if args.models_command == "card":
        from streamseg.models.cardgen import make_card

        if args.out and (Path(args.out).exists() or Path(args.out).is_symlink()) and not args.force:
            raise UserError(f"{args.out} exists; --force overwrites it")
        text = make_card(args.model, args.out)
        if not args.out:
            print(text, end="")
            return 0
        from streamseg.sinks.base import check_writable

        check_writable(Path(args.out))
        Path(args.out).write_text(text)
        todo = text.count("FILL IN")
        print(
            f"wrote {args.out}"
            + (f"; {todo} FILL IN comment(s) say what the file does not" if todo else "")
            + f"; then: streamseg models check {args.out}"
        )
        return 0
    if args.models_command == "make-dynamic":
        from streamseg.models.make_dynamic import make_dynamic

        print(make_dynamic(args.src, args.dst))
        return 0
    raise UserError("models: say `list`, `check CARD`, `card MODEL.onnx [-o CARD.yaml]` or `make-dynamic IN.onnx OUT.onnx`")


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_config(given: str | None, default_name: str):
    """A config (default: this project's configs/NAME); cards named relative to the project resolve from it."""
    from streamseg.config import load_config

    path = Path(given) if given else PROJECT_ROOT / "configs" / default_name
    if not path.is_file():
        raise UserError(f"config not found: {path} (run from a streamseg checkout, or pass -c CONFIG)")
    cfg = load_config(path)
    for task in ("semantic", "instance"):
        ec = getattr(cfg.engines, task)
        if ec is not None and not Path(ec.card).exists() and (PROJECT_ROOT / ec.card).exists():
            ec.card = str(PROJECT_ROOT / ec.card)
    return cfg


def cmd_demo(args) -> int:
    """Run configs/demo.yaml; its relative paths are taken from the project folder, outputs go to ./out."""
    from streamseg.config import apply_overrides

    cfg = apply_overrides(project_config(args.config, "demo.yaml"), max_frames=args.max_frames)
    if args.no_progress:
        cfg.metrics.progress = False
    return run_config(cfg)


def cmd_eval(args) -> int:
    import yaml

    from streamseg.config import EngineConfig, load_config
    from streamseg.evaluate import evaluate

    engines: dict[str, EngineConfig] = {}  # used as they are: backend, precision, thresholds
    cache_dir = "engines/cache"
    analytics = None  # a config's analytics section (--events)
    for path in args.models:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"no such file: {p}")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError:
            raise UserError(f"{p}: not valid YAML") from None
        if isinstance(data, dict) and "format" in data and "task" in data:
            engines[str(data["task"])] = EngineConfig(card=str(p))
        else:
            cfg = load_config(p)
            cache_dir = cfg.engines.cache_dir
            analytics = cfg.analytics
            for task in ("semantic", "instance"):
                ec = getattr(cfg.engines, task)
                if ec is not None:
                    engines[task] = ec
    if not engines:
        raise UserError("nothing to evaluate: give model cards or a config with engines")
    merge = {}
    for item in args.merge:
        group, sep, into = item.partition("=")
        if not sep or not group.strip() or not into.strip():
            raise UserError(f"--merge {item}: say GROUP=INTO, e.g. --merge lane=road")
        merge[group.strip()] = into.strip()
    sources = list(args.source)
    if args.labels or args.label_map:
        if not (args.labels and args.label_map):
            raise UserError("--labels and --label-map go together")
        fixed = []
        for uri in sources:
            if not uri.startswith("images://"):
                raise UserError(f"--labels applies to images:// sources, not {uri}")
            sep = "&" if "?" in uri else "?"
            fixed.append(f"{uri}{sep}labels={args.labels}&label_map={args.label_map}")
        sources = fixed
    if args.events:
        return _eval_events(args, engines, sources, cache_dir, analytics)
    result = evaluate(
        engines,
        sources,
        min_area=1024 if args.min_area is None else args.min_area,
        min_visibility=args.min_visibility,
        cache_dir=cache_dir,
        merge=merge,
    )
    summary = result.summary()
    if result.frames == 0:
        raise UserError(
            "no frame carried ground truth: use synthetic:// sources, or images:// with --labels and --label-map"
        )
    lines = [f"{result.frames} frames with ground truth from {len(sources)} source(s)"]
    if result.engines:
        lines.append(
            "engines: "
            + "; ".join(f"{t} {d.get('card')} on {d.get('backend')} {d.get('precision')}" for t, d in result.engines.items())
        )
    if "semantic_iou" in summary:
        lines.append(
            "semantic IoU: "
            + "  ".join(f"{g} {v:.3f}" if v is not None else f"{g} -" for g, v in summary["semantic_iou"].items())
        )
    if "instance_semantic_iou" in summary:
        lines.append(
            "instance model, per pixel (union of its masks): IoU "
            + "  ".join(
                f"{g} {v:.3f}" if v is not None else f"{g} -" for g, v in summary["instance_semantic_iou"].items()
            )
        )
    if "instance" in summary:
        ins = summary["instance"]
        for g in ins["ap50"]:
            ap, miou = ins["ap50"][g], ins["matched_mean_iou"][g]
            lines.append(
                f"instance {g}: mask AP50 {ap:.3f}"
                if ap is not None
                else f"instance {g}: mask AP50 - (no ground truth)"
            )
            lines[-1] += f"  matched mean IoU {miou:.3f}" if miou is not None else ""
            lines[-1] += f"  ({ins['ground_truth'][g]} objects, {ins['predictions'][g]} graded predictions)"
            every = ins["ap50_all"][g]
            if every is not None:
                lines[-1] += f"; over all {ins['ground_truth_all'][g]} objects: AP50 {every:.3f}"
        lines.append(
            f"(graded: objects with >= {ins['min_area']} visible pixels and >= {ins['min_visibility']:.0%} in view; "
            "the rest are ignore regions)"
        )
    print("\n".join(lines))
    if args.json:
        from streamseg.sinks.base import check_writable

        check_writable(Path(args.json))
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _eval_events(args, engines, sources, cache_dir, analytics) -> int:
    from streamseg.evaluate import evaluate_events

    if analytics is not None and not analytics.zones:
        raise UserError("--events grades `enter` into the config's first zone: its analytics section has none")
    meter, _ = evaluate_events(
        engines,
        sources,
        analytics.model_dump() if analytics is not None else None,
        window=args.window,
        min_area=400 if args.min_area is None else args.min_area,
        cache_dir=cache_dir,
    )
    s = meter.summary()
    if not s["frames"]:
        raise UserError("no frame carried the scene's placements: --events needs synthetic:// sources")
    p, r = s["precision"], s["recall"]
    print(
        f"{s['frames']} frames: {s['group']} enter '{s['zone']}' within {s['window_frames']} frames: "
        f"precision {'-' if p is None else f'{p:.3f}'}  recall {'-' if r is None else f'{r:.3f}'}  "
        f"({s['hits']} hits, {s['false_alarms']} false alarms, {s['misses']} misses of {s['ground_truth']} graded; "
        f"{s['ground_truth_ignored']} not graded, {s['ignored_predictions']} predictions on them or on appearances)"
    )
    if args.json:
        from streamseg.sinks.base import check_writable

        check_writable(Path(args.json))
        Path(args.json).write_text(json.dumps(s, indent=2) + "\n")
    return 0


def cmd_engines(args) -> int:
    from streamseg.backends.cache import EngineCache

    if args.engines_command == "list":
        entries = EngineCache(args.cache_dir).entries()
        if not entries:
            print(f"the engine cache {args.cache_dir} is empty")
        for e in entries:
            print(
                f"{e['file']:<52} {e['backend']:<11} {e['precision']:<5} {e['size'] / 1e6:7.2f} MB  "
                f"{e['device']}  sha256 {e['sha256'][:16]}  model {Path(e.get('model', '?')).name}"
            )
        return 0
    if args.engines_command == "build":
        from streamseg.backends import CACHED
        from streamseg.models import open_model

        if args.precision == "int8" and not args.calib:
            raise UserError("int8 needs calibration frames: --calib URI")
        if args.precision == "int8" and args.backend in ("onnxruntime", "openvino"):
            from streamseg.quantize import build_int8

            v = build_int8(
                args.card,
                args.calib,
                backend=args.backend,
                quantizer=args.quantizer,
                frames=args.calib_frames,
                threshold=args.gate,
                threads=args.threads,
                cache_dir=args.cache_dir,
            )
            print(
                f"{args.card}: INT8 ({v['quantizer']} on {v['backend']}) accepted "
                f"(agreement {v['agreement']:.3f} >= {v['threshold']}) -> {v['file']}"
            )
            return 0
        if args.backend == "onnxruntime":
            print("onnxruntime builds its fp32 engine when it loads the model; nothing to cache")
            return 0
        if args.backend not in CACHED:
            print(f"{args.backend} builds its engine when it loads the model; nothing to cache")
            return 0
        options = {}
        if args.backend == "tensorrt":
            options["max_batch"] = args.max_batch
            if args.precision == "int8":
                from streamseg.quantize import calibration_batches

                options["calibration"] = calibration_batches(args.card, args.calib, args.calib_frames, args.max_batch)
        model = open_model(
            args.card,
            backend=args.backend,
            precision=args.precision,
            threads=args.threads,
            cache_dir=args.cache_dir,
            engine_options=options,
        )
        with model:
            print(f"{args.card}: {model.engine.cached} ({args.backend} {args.precision}) in {args.cache_dir}")
        return 0
    raise UserError("engines: say `build CARD` or `list`")
