"""Regenerate streamseg/backends/tensorrt_ops/operators.json: onnx-tensorrt's operator table
(docs/operators.md) for each TensorRT major version the tensorrt backend targets, as data.

    git clone https://github.com/onnx/onnx-tensorrt /tmp/onnx-tensorrt   # once
    python tools/tensorrt_ops.py --repo /tmp/onnx-tensorrt               # reads each commit's docs/operators.md
    python tools/tensorrt_ops.py --md 10=ops-10.md --md 11=ops-11.md     # or files you already have

The commits are the ones named in SOURCES below: TensorRT 10 = onnx-tensorrt's 10.1-GA release
commit, TensorRT 11 = the parsers/onnx submodule commit NVIDIA/TensorRT pins at its 11.1 release
(`git ls-tree 82d1dca8 parsers/onnx` in NVIDIA/TensorRT). To move to a newer release, change the
commit here, rerun, and read the diff of the JSON: it shows every op, type and restriction that
changed. The table is onnx-tensorrt's documentation (Apache-2.0), kept as parsed data.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "streamseg" / "backends" / "tensorrt_ops" / "operators.json"
SOURCES = {
    "10": {
        "tensorrt": "10.1",
        "repo": "onnx/onnx-tensorrt",
        "commit": "96e781103cfc4adf4a6bb557e94bac8e693f6f4c",
        "ref": "release/10.1-GA",
    },
    "11": {
        "tensorrt": "11.1",
        "repo": "onnx/onnx-tensorrt",
        "commit": "7c51a63a719180eb5160c874c111746f3fb46a6b",
        "ref": "parsers/onnx submodule of NVIDIA/TensorRT 82d1dca8 (TensorRT 11.1 OSS release)",
    },
}
TYPES = {"FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "INT4", "FP8", "FP4", "UINT8", "BOOL", "DOUBLE"}
TYPO = {"INF64": "INT64"}  # 10.1's ConstantOfShape row says INF64


def parse(md: str) -> dict:
    """The table's rows as {op: {"supported": bool, "types": [...], "restrictions": str}}, the opset
    range and the notes (the lines starting with `> Note:`)."""
    opset = re.search(r"opset (\d+) to opset (\d+)", md)
    notes = [ln[len("> Note: ") :].strip() for ln in md.splitlines() if ln.startswith("> Note: ")]
    ops = {}
    for ln in md.splitlines():
        if not ln.startswith("| ") or ln.startswith("| Operator") or set(ln) <= set("|- "):
            continue
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        name, supported = cells[0], cells[1] == "Y" if len(cells) > 1 else False
        types, rest = [], ""
        if len(cells) > 2:
            words = [TYPO.get(w.strip(), w.strip()) for w in cells[2].split(",") if w.strip()]
            if supported and words and all(w in TYPES for w in words):
                types = words
            else:  # an unsupported op's third cell is prose ("Not supported. ...")
                rest = cells[2]
        if len(cells) > 3:
            rest = " ".join(c for c in [rest, *cells[3:]] if c)
        ops[name] = {"supported": supported, "types": types, "restrictions": rest.replace("<br />", " ").strip()}
    if not ops:
        raise SystemExit("no operator rows found: is this onnx-tensorrt's docs/operators.md?")
    return {"opset": [int(opset[1]), int(opset[2])] if opset else None, "notes": notes, "ops": ops}


def dumps(out: dict) -> str:
    """JSON with one operator a line, so a new release's diff reads op by op."""
    text = json.dumps(out, indent=1)
    return (
        re.sub(
            r'\{\n\s*"supported": (.*?)\n\s*\}',
            lambda m: "{" + re.sub(r"\n\s*", " ", m[0][1:-1]).strip() + "}",
            text,
            flags=re.S,
        )
        + "\n"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", help="a clone of onnx/onnx-tensorrt holding the commits in SOURCES")
    ap.add_argument("--md", action="append", default=[], metavar="MAJOR=FILE", help="operators.md of that major")
    ap.add_argument("-o", "--out", default=str(OUT))
    args = ap.parse_args(argv)
    texts = dict(m.split("=", 1) for m in args.md)
    out = {"about": "onnx-tensorrt docs/operators.md as data; regenerate with tools/tensorrt_ops.py", "versions": {}}
    for major, src in SOURCES.items():
        if major in texts:
            md = Path(texts[major]).read_text()
        elif args.repo:
            md = subprocess.run(  # noqa: S603 - git on a path the user gave
                ["git", "-C", args.repo, "show", f"{src['commit']}:docs/operators.md"],  # noqa: S607
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        else:
            ap.error(f"TensorRT {major}: give --repo or --md {major}=FILE")
        out["versions"][major] = {**src, "file": "docs/operators.md", **parse(md)}
    Path(args.out).write_text(dumps(out))
    n = {k: len(v["ops"]) for k, v in out["versions"].items()}
    print(f"wrote {args.out}: {n} operator rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
