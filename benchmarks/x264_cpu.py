"""CPU cost of x264 per 1080p frame at each preset the sinks offer (for docs/gpu-plan.md: what
encoding on the CPU takes when the GPU has no encoder, as H100/H200/A100 have none).

    python benchmarks/x264_cpu.py [--frames 60] [--reps 3] [--threads 1] [--bitrate 4000] [--out DIR]
                                  [--skip-x264] [--skip-host]

Each run: the Udacity dashcam clip (../shared/data/video; the synthetic driving scene where it is
absent) scaled to 1920x1080 and converted to I420 beforehand, pushed through
`appsrc ! x264enc <the sinks' own settings: tune=zerolatency, no B-frames, keyframe every 30> !
fakesink`, the encoder fragment made by streamseg.codecs exactly as the file/RTSP sinks make it.
Measured: the process's CPU time over the run (every thread: x264's own included; the pushing
thread's share is a copy of 3 MB a frame) per frame, and wall-clock frames/s. The presets take
turns inside each repetition, so drifting load from other work on the machine spreads over all.
-> x264_cpu.json

Beside it, the host's other per-frame work at 1080p when the GPU decodes (nvh264dec hands I420/NV12
frames to system memory) and runs the fused graph (frames uploaded as uint8 BGR), one thread each,
thread CPU time: I420 -> BGR with cv2.cvtColor and with streamseg's FFmpeg-exact conversion (what
the GStreamer source uses), and the copy of a BGR frame into the engine's pinned buffer.
-> host_1080p.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from common import machine_info, write_result  # noqa: E402

from streamseg import codecs, gst  # noqa: E402
from streamseg.sinks.gst import PRESETS  # noqa: E402

UDACITY = ROOT.parent / "shared" / "data" / "video" / "udacity-solidWhiteRight-960x540.mp4"
W, H = 1920, 1080


def clip(n: int) -> tuple[list[bytes], str]:
    """n frames of 1080p I420 (bytes), and what they are."""
    frames = []
    if UDACITY.is_file():
        cap = cv2.VideoCapture(str(UDACITY))
        while len(frames) < n:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(bgr, (W, H), interpolation=cv2.INTER_LINEAR))
        what = f"{UDACITY.name} scaled to {W}x{H}"
    if not frames:
        from streamseg.synth.scene import DrivingScene

        scene = DrivingScene(W, H, seed=0)
        frames = [scene.render(i)[0] for i in range(n)]
        what = f"synthetic driving scene {W}x{H}"
    return [cv2.cvtColor(f, cv2.COLOR_BGR2YUV_I420).tobytes() for f in frames[:n]], what


def encode(frames: list[bytes], preset: str, threads: int, bitrate_kbps: int) -> tuple[float, float, int]:
    """(CPU ms per frame, frames/s, bytes out) of one pass through x264enc."""
    Gst, _ = gst.require()
    codecs.set_threads(threads)
    enc = codecs.encoder_fragment(
        codecs.Codec("x264enc", "cpu"), bitrate_kbps=bitrate_kbps, keyframe_interval=30, preset=preset
    )
    caps = f"video/x-raw,format=I420,width={W},height={H},framerate=30/1"
    pipe = gst.parse_launch(
        f'appsrc name=src is-live=false block=true format=time caps="{caps}" ! {enc} ! '
        "fakesink name=out sync=false signal-handoffs=true"
    )
    src, out = pipe.get_by_name("src"), pipe.get_by_name("out")
    size = [0]
    out.connect("handoff", lambda _s, buf, _p: size.__setitem__(0, size[0] + buf.get_size()))
    pipe.set_state(Gst.State.PLAYING)
    t0, c0 = time.perf_counter(), time.process_time()
    for i, data in enumerate(frames):
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = i * Gst.SECOND // 30
        buf.duration = Gst.SECOND // 30
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    msg = pipe.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    cpu_ms = (time.process_time() - c0) * 1000 / len(frames)
    fps = len(frames) / (time.perf_counter() - t0)
    pipe.set_state(Gst.State.NULL)
    if msg is None or msg.type != Gst.MessageType.EOS:
        raise RuntimeError(f"x264enc {preset}: {msg.parse_error() if msg else 'no EOS'}")
    return cpu_ms, fps, size[0]


def host_work(frames: list[bytes], reps: int, iters: int = 40) -> dict:
    """Thread-CPU ms per 1080p frame of the host's work around a GPU decoder and engine."""
    from streamseg.sources.yuv import i420_to_bgr

    cv2.setNumThreads(1)
    planes = []
    for data in frames[:iters]:
        a = np.frombuffer(data, np.uint8)
        y = a[: W * H].reshape(H, W)
        u = a[W * H : W * H * 5 // 4].reshape(H // 2, W // 2)
        v = a[W * H * 5 // 4 :].reshape(H // 2, W // 2)
        planes.append((a.reshape(H * 3 // 2, W), y, u, v))
    pinned = np.empty((H, W, 3), np.uint8)
    bgr = cv2.cvtColor(planes[0][0], cv2.COLOR_YUV2BGR_I420)
    jobs = {
        "i420_to_bgr_cv2": lambda p: cv2.cvtColor(p[0], cv2.COLOR_YUV2BGR_I420),
        "i420_to_bgr_ffmpeg_exact": lambda p: i420_to_bgr(p[1], p[2], p[3]),
        "copy_bgr_into_pinned_buffer": lambda p: np.copyto(pinned, bgr),
    }
    out = {}
    runs: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(reps):
        for name, job in jobs.items():
            c0 = time.thread_time()
            for p in planes:
                job(p)
            runs[name].append((time.thread_time() - c0) * 1000 / len(planes))
    for name, r in runs.items():
        out[name] = {"median": round(statistics.median(r), 3), "min": round(min(r), 3), "max": round(max(r), 3)}
        print(f"{name:30s} CPU ms/frame median {out[name]['median']:6.3f} (min {min(r):.3f}, max {max(r):.3f})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="x264enc threads (the CPU budget's codec threads)")
    ap.add_argument("--bitrate", type=int, default=4000, help="kbit/s (the sinks' default)")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--out", help="result folder (default benchmarks/results/<host>-<date>)")
    ap.add_argument("--skip-x264", action="store_true", help="only the host's other work")
    ap.add_argument("--skip-host", action="store_true", help="only x264")
    args = ap.parse_args()
    presets = args.presets.split(",")
    frames, what = clip(args.frames)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout  # noqa: S603, S607
    flags = next((ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags:")), [])
    common = {
        "date": dt.date.today().isoformat(),
        "machine": machine_info(0),
        "cpu_flags_simd": [f for f in flags if f.startswith(("avx", "sse4", "amx"))],
        "content": what,
        "reps": args.reps,
    }
    if not args.skip_host:
        host = host_work(frames, args.reps)
        note = "thread CPU time per 1080p frame, one thread; the machine was shared with other work (2 vCPUs)"
        write_result({"benchmark": "host_1080p", **common, "note": note, "work": host}, args.out, "host_1080p.json")
    if args.skip_x264:
        return 0
    encode(frames[:5], presets[0], args.threads, args.bitrate)  # warm: plugin loading, first allocation
    runs: dict[str, list[tuple[float, float, int]]] = {p: [] for p in presets}
    for _ in range(args.reps):
        for p in presets:
            runs[p].append(encode(frames, p, args.threads, args.bitrate))
    rows = {}
    for p, r in runs.items():
        cpu = [x[0] for x in r]
        rows[p] = {
            "cpu_ms_per_frame": {"median": round(statistics.median(cpu), 2), "min": round(min(cpu), 2),
                                 "max": round(max(cpu), 2), "runs": [round(c, 2) for c in cpu]},
            "fps_median": round(statistics.median(x[1] for x in r), 1),
            "kbit_per_s": round(statistics.median(x[2] for x in r) * 8 * 30 / len(frames) / 1000),
            "cores_for_30fps": round(statistics.median(cpu) * 30 / 1000, 2),
        }
        print(f"{p:10s} CPU ms/frame median {rows[p]['cpu_ms_per_frame']['median']:7.2f} "
              f"(min {min(cpu):.2f}, max {max(cpu):.2f})  {rows[p]['fps_median']:6.1f} frames/s  "
              f"cores for one 1080p30 stream: {rows[p]['cores_for_30fps']}")
    result = {
        "benchmark": "x264_cpu",
        **common,
        "gstreamer": gst.require()[0].version_string(),
        "frames": len(frames),
        "x264": {"threads": args.threads, "bitrate_kbps": args.bitrate, "tune": "zerolatency", "bframes": 0,
                 "key_int_max": 30},
        "note": "process CPU time per frame, all threads; the machine was shared with other work (2 vCPUs)",
        "presets": rows,
    }
    write_result(result, args.out, "x264_cpu.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
