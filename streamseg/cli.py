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
        import difflib
        import re

        where = self.prog.removeprefix("streamseg").strip()  # "error: run: ...", not "error: streamseg run: ..."
        if m := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message):  # a mistyped command
            close = difflib.get_close_matches(m[1], re.findall(r"'([^']*)'", m[2]), n=1)
            message += f"; did you mean {close[0]!r}?" if close else ""
        err = UserError(f"{where}: {message}" if where else message)
        if "arguments are required" in message:  # a command given nothing says how it is used
            err.usage = self.format_usage().strip()
        raise err


def _doc(description: str, *examples: str) -> dict:
    """A subcommand's --help: what it does, in a paragraph, and how it is called."""
    import textwrap

    return {
        "description": textwrap.fill(description, 79),  # the raw formatter keeps the examples' lines as written
        "epilog": "examples:\n" + "\n".join(f"  {e}" for e in examples),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


RUN_EPILOG = """
source URIs: a file (drive.mp4, file://drive.mp4), /dev/video0 or v4l2:///dev/video0,
  rtsp://user:pass@cam:554/stream, rtp://@:5000, images://DIR?fps=10, gst://... ! appsink,
  synthetic://driving?size=1280x720&fps=30&frames=300
sink URIs: out.mp4 / out.mkv (H.264), results.jsonl, rtsp://:8554/NAME (served),
  rtp://HOST:PORT, http://127.0.0.1:8080 (browser preview), display://, null://

exit codes: 0 done; 1 the run failed (no frame came out, the report could not be written);
  2 a user mistake, found before any frame is read (nothing already written is touched);
  130 after SIGINT, 143 after SIGTERM, once everything is written"""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamseg", description="Real-time road/car/person segmentation of driving video.")
    p.add_argument("--version", action="version", version=f"streamseg {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    p.add_argument("-v", "--verbose", action="store_true", help="also the internal decisions (schedules, timings)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run the pipeline on sources, writing sinks and a latency report",
        **_doc(
            "Decode every --source, batch its frames into the semantic and instance engines of the model "
            "cards given, draw the masks and write every --sink; print a latency table at the end and write "
            "the report. A config (-c) holds the same and more; flags given here replace its values.",
            "streamseg run --source drive.mp4 --semantic CARD.yaml --instance CARD.yaml --sink out.mp4 --report r.json",
            "streamseg run -c configs/dashcam-replay.yaml --max-frames 100",
            "streamseg run --source rtsp://cam:554/stream --instance CARD.yaml --sink http://127.0.0.1:8080",
        ),
    )
    run.epilog += "\n" + RUN_EPILOG
    run.set_defaults(handler=cmd_run)
    run.add_argument("-c", "--config", help="YAML config (configs/*.yaml)")
    run.add_argument("--source", action="append", metavar="URI", help="source URI (repeatable); replaces the config's")
    run.add_argument("--sink", action="append", metavar="URI", help="sink URI (repeatable); replaces the config's")
    run.add_argument("--semantic", metavar="CARD", help="semantic model card")
    run.add_argument("--instance", metavar="CARD", help="instance model card")
    run.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torch"])
    run.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"])
    run.add_argument("--mode", choices=["auto", "offline", "live", "realtime"], help="queue policy for all sources")
    run.add_argument("--max-frames", type=int, metavar="N", help="stop each source after N frames")
    run.add_argument("--report", metavar="PATH", help="write the latency report JSON here")
    run.add_argument(
        "--plot", metavar="PATH", help="write the latency plot PNG here (default: beside --report, if the config plots)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
    run.add_argument(
        "--strict",
        action="store_true",
        help="bad input (a recording cut short, a frame or image that does not decode) fails the run: exit 1 "
        "(config: pipeline.strict)",
    )
    run.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as streamseg -v")

    bench = sub.add_parser(
        "bench",
        help="engines-only limit, naive baseline, pipeline sweep and live load sweep, with plots",
        **_doc(
            "Measure what the engines can do alone, what a naive loop does, what the pipeline does across "
            "batch sizes and how latency grows with load; writes bench.json, bench.md and plots to --out. "
            "Figures are only comparable on one machine: the report names its CPU.",
            "streamseg bench",
            "streamseg bench --source drive.mp4 --backend onnxruntime --reps 1 --out out/bench-ort",
        ),
    )
    bench.set_defaults(handler=cmd_bench)
    bench.add_argument("-c", "--config", default=None, help="default: configs/benchmark.yaml of this project")
    bench.add_argument("--source", metavar="URI", help="bench on this source instead (any URI)")
    bench.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "tensorrt", "torch"])
    bench.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"])
    bench.add_argument("--frames", type=int, help="frames per throughput run")
    bench.add_argument(
        "--reps", type=int, help="repetitions of every variant (--streams: searches per variant, bench.density.reps)"
    )
    bench.add_argument("--load-seconds", type=float, help="length of each live load run")
    bench.add_argument("--out", default="out/bench", help="folder for bench.json, bench.md and the plots")
    bench.add_argument(
        "--streams",
        action="store_true",
        help="stream density instead: how many live cameras one process carries, against one process per camera "
        "and the naive loop (bench.density in the config; writes density.json, density.md, density.png)",
    )
    bench.add_argument("--max-streams", type=int, metavar="N", help="--streams: most cameras tried per variant")
    bench.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)

    fleet = sub.add_parser(
        "fleet",
        help="process many recordings on a Ray cluster (or a local Ray instance)",
        **_doc(
            "Run one config over many recordings, one Ray actor per worker: each recording gets its own "
            "folder of outputs under --out, failed ones are retried, and fleet-report.json sums them up.",
            "streamseg fleet -c configs/dashcam-replay.yaml recordings/*.mp4",
            "streamseg fleet -c my.yaml list.txt --ray-address ray://head:10001 --out out/fleet",
        ),
    )
    fleet.set_defaults(handler=cmd_fleet)
    fleet.add_argument("-c", "--config", required=True, help="YAML config: engines, overlay, sinks (file names)")
    fleet.add_argument("inputs", nargs="+", help="files, folders, globs, or .txt files listing URIs")
    fleet.add_argument("--ray-address", help="an existing Ray cluster (ray://HOST:10001 or HOST:6379); default: local")
    fleet.add_argument("--out", default="out/fleet", help="one folder per recording, and fleet-report.json")
    fleet.add_argument("--workers", type=int, help="Ray actors (default: cluster CPUs / engine threads)")
    fleet.add_argument("--retries", type=int, default=2, help="attempts after the first for a failed recording")
    fleet.add_argument("--no-progress", action="store_true")

    serve = sub.add_parser(
        "serve",
        help="live cameras on a Ray cluster: placed, moved when a node dies, one /metrics for all",
        **_doc(
            "Run a fleet of live cameras on a Ray cluster (or a local Ray instance): a detached controller "
            "packs the cameras into groups, each one multi-stream live pipeline on a Ray actor; a group whose "
            "node dies is placed again elsewhere and its cameras resume; /metrics and /stats cover the whole "
            "fleet; editing the fleet file adds and removes cameras without touching the others. See docs/fleet.md.",
            "streamseg serve fleet.yaml",
            "streamseg serve fleet.yaml --ray-address 10.0.0.1:6379",
            "streamseg serve fleet.yaml --duration 600",
        ),
    )
    serve.set_defaults(handler=cmd_serve)
    serve.add_argument("fleet", metavar="FLEET.yaml", help="the cameras and the pipeline config they share")
    serve.add_argument("--ray-address", help="an existing Ray cluster (HOST:6379); default: a local Ray instance")
    serve.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until ^C)")

    demo = sub.add_parser(
        "demo",
        help="bundled models on the synthetic driving scene; writes out/demo.*",
        **_doc(
            "Run configs/demo.yaml: the two bundled models on the built-in synthetic driving scene, paced "
            "as a camera would deliver it; writes the overlaid video, per-frame results, the latency report "
            "and plot under ./out/.",
            "streamseg demo",
            "streamseg demo --max-frames 30 --no-progress",
        ),
    )
    demo.set_defaults(handler=cmd_demo)
    demo.add_argument("-c", "--config", default=None, help="default: configs/demo.yaml of this project")
    demo.add_argument("--max-frames", type=int, metavar="N")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
    demo.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as streamseg -v")

    ev = sub.add_parser(
        "eval",
        help="accuracy of models (IoU, mask AP50) against ground truth",
        **_doc(
            "Run model cards (or a config's engines, as configured) over sources that carry ground truth - "
            "the synthetic scene, or images:// with --labels and --label-map - and print per-group IoU and "
            "mask AP50.",
            "streamseg eval engines/synth-semantic.yaml engines/synth-instance.yaml --source synthetic://driving?frames=50",
            "streamseg eval CARD.yaml --source images://frames --labels labels/ --label-map map.yaml --merge lane=road",
        ),
    )
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
    ev.add_argument("--cache-dir", metavar="DIR", help=CACHE_HELP)
    ev.add_argument(
        "--events",
        action="store_true",
        help="grade analytics events instead: persons' `enter` into the config's first zone (default: on_road = "
        "road + lane) and their `intrusion_start` into the ego corridor against the synthetic scene's truth, "
        "precision and recall (docs/analytics.md)",
    )
    ev.add_argument("--window", type=int, default=3, help="--events: frames an event may be off its truth (3)")

    engines = sub.add_parser(
        "engines",
        help="build engines into the cache, or list what it holds",
        **_doc(
            "Build a card's engine ahead of a run (OpenVINO blob, TensorRT plan, gated INT8 model) into the "
            "engine cache, or list the cache. The cache is $STREAMSEG_CACHE_DIR, else "
            "$XDG_CACHE_HOME/streamseg, else ~/.cache/streamseg (--cache-dir overrides it).",
            "streamseg engines build engines/synth-semantic.yaml --backend openvino",
            "streamseg engines build CARD.yaml --precision int8 --calib synthetic://driving?frames=128",
            "streamseg engines list",
        ),
    )
    engines.set_defaults(handler=cmd_engines)
    esub = engines.add_subparsers(dest="engines_command", metavar="ACTION", parser_class=_Parser)
    eb = esub.add_parser(
        "build",
        help="build (and cache) the engine for a card",
        **_doc(
            "Build the card's engine for a backend and precision and store it in the engine cache, so a run "
            "loads it at once. INT8 is calibrated on --calib frames and accepted only when it agrees with "
            "fp32 on as many more (the --gate).",
            "streamseg engines build engines/synth-semantic.yaml",
            "streamseg engines build CARD.yaml --backend tensorrt --precision fp16 --max-batch 8",
            "streamseg engines build CARD.yaml --precision int8 --calib drive.mp4 --cache-dir /data/engines",
        ),
    )
    eb.add_argument("card")
    eb.add_argument("--backend", default="openvino", choices=["onnxruntime", "openvino", "tensorrt"])
    eb.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "int8"])
    eb.add_argument("--threads", type=int, default=0)
    eb.add_argument("--cache-dir", help=CACHE_HELP)
    eb.add_argument("--calib", metavar="URI", help="int8: frames for calibration and for the accuracy gate")
    eb.add_argument(
        "--calib-frames", type=int, default=64, help="int8: frames to calibrate on (as many again judge it)"
    )
    eb.add_argument("--gate", type=float, default=0.95, help="int8: least agreement with fp32 to accept the model")
    eb.add_argument(
        "--quantizer",
        choices=["onnxruntime", "nncf"],
        help="int8: who quantizes (default: the faster measured here - nncf for openvino, onnxruntime for onnxruntime; "
        "tensorrt: onnxruntime, symmetric)",
    )
    eb.add_argument("--max-batch", type=int, default=8, help="tensorrt: the largest batch the plan's profile takes")
    ex = esub.add_parser(
        "export",
        help="write the exact ONNX graph TensorRT's builder gets for a card, and the trtexec line that builds it",
        **_doc(
            "Write the graph the tensorrt backend would hand TensorRT's builder for CARD (fused, fixed-size, FP16 "
            "or the gated Q/DQ model, as the precision says) to OUT.onnx, checked against TensorRT's parser rules, "
            "and print the trtexec command that builds the same plan with NVIDIA's own tool on any GPU machine.",
            "streamseg engines export engines/synth-instance.yaml --backend tensorrt -o instance.onnx",
            "streamseg engines export engines/synth-semantic.yaml --precision fp16 --max-batch 4 -o sem16.onnx",
        ),
    )
    ex.add_argument("card")
    ex.add_argument("--backend", default="tensorrt", choices=["tensorrt"])
    ex.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    ex.add_argument("--max-batch", type=int, default=8, help="the largest batch of the plan's profile")
    ex.add_argument("--cache-dir", metavar="DIR", help="int8: where the gated Q/DQ model is; " + CACHE_HELP)
    ex.add_argument("-o", "--out", required=True, metavar="OUT.onnx")
    el = esub.add_parser(
        "list",
        help="what the engine cache holds",
        **_doc(
            "List the engine cache: each artifact's backend, precision, size, device, sha256 and model.",
            "streamseg engines list",
            "streamseg engines list --cache-dir /data/engines",
        ),
    )
    el.add_argument("--cache-dir", help=CACHE_HELP)

    models = sub.add_parser(
        "models",
        help="list model cards or check one against its ONNX file",
        **_doc(
            "Model cards say how to feed a model and read its outputs. List the cards of a folder, check a "
            "card against its ONNX file, write a first card for your own model, or give a batch-1 export a "
            "dynamic batch axis.",
            "streamseg models list engines tests/fixtures/cards",
            "streamseg models card my-model.onnx -o engines/my-model.yaml",
            "streamseg models check engines/my-model.yaml",
        ),
    )
    models.set_defaults(handler=cmd_models)
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    ml = msub.add_parser(
        "list",
        help="list the model cards in folders",
        **_doc(
            "One line per card (*.yaml) in each folder: task, format, input size and groups, or why it is invalid.",
            "streamseg models list",
            "streamseg models list engines tests/fixtures/cards",
        ),
    )
    ml.add_argument("dirs", nargs="*", default=["engines"], help="folders holding cards (default: engines)")
    mc = msub.add_parser(
        "check",
        help="load a card's model and check its inputs and outputs against the card",
        **_doc(
            "Load each card's ONNX file and check its inputs and outputs against what the card says; a card "
            "whose labels map to no group (nothing would be drawn or reported) is warned about.",
            "streamseg models check engines/synth-semantic.yaml",
            "streamseg models check engines/*.yaml",
        ),
    )
    mc.add_argument("cards", nargs="+")
    mc.add_argument(
        "--backend", choices=["tensorrt"], help="tensorrt: check the graph its builder would get against TensorRT's parser rules"
    )
    mc.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"], help="with --backend tensorrt")
    mc.add_argument("--cache-dir", metavar="DIR", help="int8: where the gated Q/DQ model is; " + CACHE_HELP)
    mk = msub.add_parser(
        "card",
        help="write a model card from what an ONNX file says (the first step for your own model)",
        **_doc(
            "Read an ONNX file's inputs, outputs and metadata and write the card they imply; what the file "
            "does not say is marked FILL IN. The card's `file:` is absolute when printed, relative to the "
            "card with -o, so the card works wherever it is saved.",
            "streamseg models card yolov8n-seg.onnx > engines/yolov8n-seg.yaml",
            "streamseg models card my-model.onnx -o engines/my-model.yaml",
        ),
    )
    mk.add_argument("model", metavar="MODEL.onnx")
    mk.add_argument("-o", "--out", metavar="CARD.yaml", help="write the card here (default: print it)")
    mk.add_argument("--force", action="store_true", help="overwrite an existing CARD.yaml")
    md = msub.add_parser(
        "make-dynamic",
        help="rewrite a fixed-batch-1 ONNX model with a dynamic batch axis (checked)",
        **_doc(
            "Rewrite an export made with a fixed batch of 1 so its batch axis is dynamic, then check that a "
            "batch of several gives the same outputs as one frame at a time.",
            "streamseg models make-dynamic model-b1.onnx model-dyn.onnx",
            "streamseg models make-dynamic shared/twinlitenet.onnx engines/twinlitenet-dyn.onnx",
        ),
    )
    md.add_argument("src", metavar="IN.onnx")
    md.add_argument("dst", metavar="OUT.onnx")
    gc = sub.add_parser(
        "gpu-check",
        help="on a GPU machine: the torch backend's agreement, throughput and pipeline, step by step; one JSON "
        "(--tensorrt: the TensorRT plans flow)",
        **_doc(
            "On a machine with an NVIDIA GPU (the lent one has no TensorRT and no network: make gpu-bundle, "
            "then make gpu-check there): the torch backend's agreement with ONNX Runtime, engine throughput, "
            "the pipeline, copies and codecs, step by step, each with a time limit, into one JSON. --tensorrt: "
            "the TensorRT plans flow (fp16/int8 plans, tests/gpu) on a machine that has it. --dry-run does it "
            "on the CPU.",
            "streamseg gpu-check --out out/gpu-check.json",
            "streamseg gpu-check --dry-run",
            "streamseg gpu-check --tensorrt --out out/gpu-check-trt.json",
        ),
    )
    gc.add_argument("--dry-run", action="store_true", help="everything short of a GPU (torch on the CPU; with --tensorrt, the TensorRT test double)")
    gc.add_argument("--tensorrt", action="store_true", help="the TensorRT flow: install it, build fp16/int8 plans (your own GPU machine)")
    gc.add_argument("--bundle", default=None, help="the folder `make gpu-bundle` wrote (default: gpu-bundle/)")
    gc.add_argument("--out", default="out/gpu-check.json", help="the JSON written (default: out/gpu-check.json)")
    gc.add_argument("--models", default=None, help="comma-separated subset of the four models (default: all)")
    gc.add_argument("--api", type=int, choices=(10, 11), default=11, help="--dry-run: which TensorRT the double models")
    gc.add_argument("--frames", type=int, default=None, help="frames per clip (default 16; 2 with --dry-run)")
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
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise UserError(_unrecognized(parser, args, extra))
        if args.quiet:
            logging.getLogger().setLevel(logging.WARNING)
        if args.verbose:
            logging.getLogger("streamseg").setLevel(logging.DEBUG)
        handler = getattr(args, "handler", None)
        if handler is not None:  # each subcommand's parser names its handler (set_defaults)
            return handler(args)
        build_parser().print_help()
        return 2
    except UserError as e:
        if getattr(e, "usage", None):
            print(e.usage, file=sys.stderr)
        print(f"streamseg: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        print("streamseg: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)


def _unrecognized(parser: argparse.ArgumentParser, args, extra: list[str]) -> str:
    """`run: unrecognized arguments: --max-framez (did you mean --max-frames?)`: the error names
    the subcommand the user typed and the closest option it has."""
    import difflib

    for dest in ("command", "engines_command", "models_command"):  # down to the innermost subcommand
        name = getattr(args, dest, None)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not name or not subs or name not in subs[0].choices:
            break
        parser = subs[0].choices[name]
    where = parser.prog.removeprefix("streamseg").strip()
    msg = f"{where + ': ' if where else ''}unrecognized arguments: {' '.join(extra)}"
    flag = next((x.split("=")[0] for x in extra if x.startswith("--")), None)
    options = [o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")]
    close = difflib.get_close_matches(flag[2:], options, n=1) if flag else []  # "--" alike in all: not compared
    return msg + (f" (did you mean --{close[0]}?)" if close else f" (see: {parser.prog} --help)")


def cmd_gpu_check(args) -> int:
    from streamseg.gpucheck import main as gpu_check

    return gpu_check(args)


def cmd_serve(args) -> int:
    import signal
    import threading

    from streamseg.serve import run_serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    snap = run_serve(args.fleet, address=args.ray_address, duration_s=args.duration, stop=stop)
    cams = snap["cameras"].values()
    print(
        f"fleet: {len(snap['cameras'])} camera(s), frames out {sum(c['frames']['out'] for c in cams)}, "
        f"outages {sum(len(c['outages']) for c in cams)}"
    )
    return 130 if stop.is_set() else 0


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
    if args.cache_dir:
        cfg.engines.cache_dir = args.cache_dir
    if cfg.engines.semantic is None and cfg.engines.instance is None:
        raise UserError(f"{path}: the bench needs at least one engine (engines.semantic / engines.instance)")
    out = Path(args.out).resolve()
    if args.streams:
        from streamseg.density import Density

        if args.max_streams is not None:
            cfg.bench.density.max_streams = args.max_streams
        if args.reps is not None:
            cfg.bench.density.reps = args.reps
        check_writable(out / "density.json")
        Density(cfg, out, log=lambda msg: log.info("%s", msg)).run()
        print(Path(out / "density.md").read_text())
        print(f"written: {out}/density.json, density.md, density.png")
        return 0
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
    if args.cache_dir:
        cfg.engines.cache_dir = args.cache_dir
    if args.strict:
        cfg.pipeline.strict = True
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
    if cfg.pipeline.strict and (fr["decode_errors"] or report.get("bad_input")):
        what = "; ".join(report.get("bad_input") or []) or f"{fr['decode_errors']} frame(s) did not decode"
        print(f"streamseg: error: strict: bad input: {what}", file=sys.stderr)
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
    from streamseg.models.card import ungrouped_warning

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
    if args.models_command == "check" and args.backend == "tensorrt":
        from streamseg.backends.cache import default_cache_dir

        return _check_tensorrt(args.cards, args.precision, args.cache_dir or str(default_cache_dir()))
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
                if warning := ungrouped_warning(model.card, list(model.decoder.labels)):
                    log.warning("warning: %s", warning)
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


def _check_tensorrt(cards: list[str], precision: str, cache_dir: str) -> int:
    """`models check --backend tensorrt`: each finding one line on stderr; exit 2 when TensorRT
    would refuse a graph (a model the user must change), 0 when it would not (warnings included)."""
    from streamseg.backends.tensorrt_check import errors
    from streamseg.models.tensorrt_graphs import check_card

    refused = 0
    for path in cards:
        graph, findings = check_card(path, precision=precision, cache_dir=cache_dir)
        for f in findings:
            print(f"streamseg: {path}: {f.line()}", file=sys.stderr)
        bad = errors(findings)
        refused += bool(bad)
        what = f"{'fused' if graph.fused else 'unfused'} {precision} graph" + (
            ", resize in the graph" if graph.resize_in_graph else ""
        )
        verdict = f"REFUSED ({len(bad)} error(s))" if bad else "ok"
        warn = len(findings) - len(bad)
        print(f"{path}: TensorRT 10/11 parser rules: {verdict} ({what}; {warn} warning(s) only a GPU can settle)")
    return 2 if refused else 0


CACHE_HELP = (
    "where built engines are cached (default: $STREAMSEG_CACHE_DIR, else $XDG_CACHE_HOME/streamseg, "
    "else ~/.cache/streamseg; config: engines.cache_dir)"
)
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
    if args.cache_dir:
        cfg.engines.cache_dir = args.cache_dir
    return run_config(cfg)


def cmd_eval(args) -> int:
    import yaml

    from streamseg.config import EngineConfig, load_config
    from streamseg.evaluate import evaluate

    engines: dict[str, EngineConfig] = {}  # used as they are: backend, precision, thresholds
    cache_dir = "default"  # the user's cache folder, unless a config says otherwise
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
    if args.cache_dir:
        cache_dir = args.cache_dir
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
    meters, _ = evaluate_events(
        engines,
        sources,
        analytics.model_dump() if analytics is not None else None,
        window=args.window,
        min_area=400 if args.min_area is None else args.min_area,
        cache_dir=cache_dir,
    )
    summaries = {kind: m.summary() for kind, m in meters.items()}
    if not summaries["enter"]["frames"]:
        raise UserError("no frame carried the scene's placements: --events needs synthetic:// sources")
    for s in summaries.values():
        p, r = s["precision"], s["recall"]
        print(
            f"{s['frames']} frames: {s['group']} {s['type']} '{s['zone']}' within {s['window_frames']} frames: "
            f"precision {'-' if p is None else f'{p:.3f}'}  recall {'-' if r is None else f'{r:.3f}'}  "
            f"({s['hits']} hits, {s['false_alarms']} false alarms, {s['misses']} misses of {s['ground_truth']} "
            f"graded; {s['ground_truth_ignored']} not graded, {s['ignored_predictions']} predictions on them or on "
            "appearances)"
        )
    if args.json:
        from streamseg.sinks.base import check_writable

        check_writable(Path(args.json))
        Path(args.json).write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


def cmd_engines(args) -> int:
    from streamseg.backends.cache import EngineCache, default_cache_dir

    args.cache_dir = args.cache_dir or str(default_cache_dir())
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
    if args.engines_command == "export":
        from streamseg.models.tensorrt_graphs import builder_graph
        from streamseg.sinks.base import check_writable

        check_writable(Path(args.out))
        g = builder_graph(
            args.card, args.out, precision=args.precision, max_batch=args.max_batch, cache_dir=args.cache_dir
        )
        print(f"wrote {args.out}: the {args.precision} graph TensorRT's builder gets for {args.card}; build it with:")
        print(g.trtexec())
        return 0
    if args.engines_command == "build":
        from streamseg.backends import CACHED
        from streamseg.models import open_model

        # TensorRT's parser rules, on the CPU, before any plan is built (int8: on the Q/DQ model, made below)
        if args.backend == "tensorrt" and args.precision != "int8" and _check_tensorrt([args.card], args.precision, args.cache_dir):
            return 2
        if args.precision == "int8" and not args.calib:
            raise UserError("int8 needs calibration frames: --calib URI")
        if args.precision == "int8" and args.backend in ("onnxruntime", "openvino", "tensorrt"):
            from streamseg.quantize import build_int8

            # tensorrt: its symmetric Q/DQ model first (made and gated on the CPU), then the plan below
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
            if args.backend != "tensorrt":
                return 0
            if _check_tensorrt([args.card], args.precision, args.cache_dir):
                return 2
            import importlib.util

            if importlib.util.find_spec("tensorrt") is None:
                print("TensorRT is not installed here: its INT8 model is gated and cached; the same command builds the plan where it is")
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
    raise UserError("engines: say `build CARD`, `export CARD -o OUT.onnx` or `list`")
