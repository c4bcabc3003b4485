"""Decoding a file: GStreamer (decodebin, I420 pulled and converted as FFmpeg converts it) against OpenCV/FFmpeg.

    python benchmarks/decode.py [--video V] [--reps 3] [--out DIR]

Prints frames/s of each (alternating, median of the repetitions), their ratio, how far the two
decoders' frames are apart (mean and max absolute difference, share of values within +-1),
and the I420 -> BGR conversion alone: streamseg's FFmpeg-exact one against cv2.cvtColor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, write_result  # noqa: E402

from streamseg import gst  # noqa: E402
from streamseg.sources.file import FileSource  # noqa: E402
from streamseg.sources.gst import file_source  # noqa: E402


def decode(src) -> tuple[float, float, list[np.ndarray]]:
    """frames/s (wall clock), CPU ms per frame (every thread of the process: decoder threads
    included; far less swayed by other load on a shared machine than wall time), frames."""
    frames = []
    with src:
        t0, c0 = time.perf_counter(), time.process_time()
        while (f := src.read()) is not None:
            frames.append(f.image_bgr)
        return len(frames) / (time.perf_counter() - t0), (time.process_time() - c0) * 1e3 / len(frames), frames


def conversion_ms(video: str, reps: int = 200) -> dict:
    """I420 -> BGR of one frame of `video`, best of 5 rounds of `reps`: ours and cv2.cvtColor's."""
    try:
        from streamseg.sources.yuv import i420_to_bgr
    except ImportError:  # a tree from before the FFmpeg-exact conversion
        return {}

    with FileSource(video, video) as src:
        bgr = src.read().image_bgr
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr[: h // 2 * 2, : w // 2 * 2], cv2.COLOR_BGR2YUV_I420)
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    y, u, v = i420[:h], i420[h : h + h // 4].reshape(h // 2, w // 2), i420[h + h // 4 :].reshape(h // 2, w // 2)
    out = {}
    for name, fn in (
        ("ffmpeg_exact", lambda: i420_to_bgr(y, u, v)),
        ("cvtColor", lambda: cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)),
    ):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, (time.perf_counter() - t0) / reps)
        out[name] = round(best * 1e3, 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--video", default=str(ROOT.parent / "shared" / "data" / "video" / "udacity-solidWhiteRight-960x540.mp4")
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not gst.available():
        print("decode benchmark: GStreamer is not installed", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    g_fps, o_fps, g_cpu, o_cpu = [], [], [], []
    for rep in range(args.reps):
        for name in ("gst", "opencv") if rep % 2 == 0 else ("opencv", "gst"):
            if name == "gst":
                fps, cpu, gf = decode(file_source(args.video, args.video))
                g_fps.append(fps)
                g_cpu.append(cpu)
            else:
                fps, cpu, of = decode(FileSource(args.video, args.video))
                o_fps.append(fps)
                o_cpu.append(cpu)
        print(
            f"rep {rep + 1}: gstreamer {g_fps[-1]:.1f} fps ({g_cpu[-1]:.2f} CPU ms/frame), "
            f"opencv {o_fps[-1]:.1f} fps ({o_cpu[-1]:.2f} CPU ms/frame)",
            flush=True,
        )
    n = min(len(gf), len(of))
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(gf[:n], of[:n], strict=True)]
    mad = float(np.mean([d.mean() for d in diffs]))
    convert = conversion_ms(args.video)
    result = {
        "benchmark": "decode",
        "date": dt.date.today().isoformat(),
        "machine": machine_info(0),
        "video": Path(args.video).name,
        "frames": {"gstreamer": len(gf), "opencv": len(of)},
        "gstreamer_fps": {"median": statistics.median(g_fps), "runs": g_fps},
        "opencv_fps": {"median": statistics.median(o_fps), "runs": o_fps},
        "ratio_gstreamer_over_opencv": statistics.median(g_fps) / statistics.median(o_fps),
        "cpu_ms_per_frame": {
            "gstreamer": min(g_cpu),
            "opencv": min(o_cpu),
            "runs_gstreamer": g_cpu,
            "runs_opencv": o_cpu,
        },
        "mean_abs_diff": round(mad, 3),
        "max_abs_diff": int(max(d.max() for d in diffs)),
        "within_1": round(float(np.mean([(d <= 1).mean() for d in diffs])), 6),
        "convert_ms_per_frame": convert,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    write_result(result, args.out, "decode.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
