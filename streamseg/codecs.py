"""Which GStreamer H.264 decoder and encoder to use: the device's own when present.

Given the elements this machine's GStreamer registry has, `pick_decoder` and `pick_encoder`
choose, in order: NVIDIA's nvcodec elements on a discrete GPU (nvh264dec / nvh264enc), the
V4L2 elements of a Jetson (nvv4l2decoder / nvv4l2h264enc, with nvvidconv in and out of NVMM
memory), VA-API (vah264dec / vah264enc), then the CPU (avdec_h264 / x264enc). Each choice says
what it is and why, for the run report, and carries the pipeline fragments it needs around it.

Pure functions of an element list, so they are tested without GStreamer or a GPU;
`available_elements()` asks the real registry. NEVER RUN with a GPU's elements present: the
fragments follow the elements' documented properties.

On a GPU the video path is then: one upload per frame of the decoded uint8 picture (the fused
engine graph takes frames at capture size, streamseg/models/fuse.py) and one download of the
compact results per batch; the nvcodec decoder and encoder keep the bitstream work off the CPU.

Decoder on the GPU, encoder on the CPU: datacenter GPUs (H100, H200, A100) have NVDEC but no NVENC
(NVIDIA's Video Encode and Decode GPU Support Matrix), so GStreamer's nvcodec plugin registers
nvh264dec there and no nvh264enc (likewise a Jetson Orin Nano: nvv4l2decoder, no nvv4l2h264enc).
Then the decoder is the GPU's and the encoder x264 on the CPU, its threads from the run's CPU
budget (`set_threads`); `report` says so (`split`), `encoder()` logs it once, and `record` (run by
gpu-check) encodes and decodes a few frames to record which elements actually did it.
docs/gpu-plan.md has what that costs for 32 streams of 1080p30.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("streamseg")


@dataclass(frozen=True)
class Codec:
    element: str  # the GStreamer element
    device: str  # nvidia-gpu | jetson | vaapi | cpu
    after: str = ""  # decoders: what must follow before a system-memory BGR/I420 appsink
    before: str = ""  # encoders: what must come before it (memory / format conversion)
    why: str = ""

    @property
    def hardware(self) -> bool:
        return self.device != "cpu"

    def describe(self) -> dict:
        return {"element": self.element, "device": self.device, "why": self.why}


# (element, device, pipeline fragment after/before it): most preferred first
DECODERS = (
    ("nvh264dec", "nvidia-gpu", ""),  # nvcodec: decodes into system (or CUDA) memory as downstream asks
    ("nvv4l2decoder", "jetson", "nvvidconv ! video/x-raw,format=BGRx"),  # NVMM out: convert to system memory
    ("vah264dec", "vaapi", ""),
    ("avdec_h264", "cpu", ""),
    ("openh264dec", "cpu", ""),
)
ENCODERS = (
    ("nvh264enc", "nvidia-gpu", ""),
    ("nvv4l2h264enc", "jetson", "nvvidconv ! video/x-raw(memory:NVMM),format=NV12"),
    ("vah264enc", "vaapi", ""),
    ("x264enc", "cpu", ""),
)
CANDIDATES = tuple(e for e, _, _ in DECODERS + ENCODERS) + ("nvvidconv",)


def _has(available: Iterable[str] | Callable[[str], bool]) -> Callable[[str], bool]:
    if callable(available):
        return available
    names = set(available)
    return names.__contains__


def _pick(table, available, prefer_hardware: bool, kind: str, doing: str):
    """(element, device, the table's third field, why) of the first usable row, or None."""
    has = _has(available)
    for element, device, extra in table:
        if device != "cpu" and not prefer_hardware:
            continue
        if has(element) and (device != "jetson" or has("nvvidconv")):
            if device != "cpu":
                why = f"hardware {kind} present"
            elif prefer_hardware:
                why = f"no hardware {kind} present (looked for {', '.join(e for e, d, _ in table if d != 'cpu')})"
            else:
                why = f"hardware {doing} turned off"
            return element, device, extra, why
    return None


def _gpu_without_encoder(available, prefer_hardware: bool) -> Codec | None:
    """The hardware decoder of a device whose encoder is absent (an H100: nvh264dec, no nvh264enc)."""
    dec = pick_decoder(available, prefer_hardware)
    if dec is None or not dec.hardware:
        return None
    has = _has(available)
    same_device = [e for e, d, _ in ENCODERS if d == dec.device]
    return dec if not any(has(e) for e in same_device) else None


def pick_decoder(available: Iterable[str] | Callable[[str], bool], prefer_hardware: bool = True) -> Codec | None:
    """The H.264 decoder to use, or None when there is none at all."""
    got = _pick(DECODERS, available, prefer_hardware, "decoder", "decoding")
    return Codec(got[0], got[1], after=got[2], why=got[3]) if got else None


def pick_encoder(available: Iterable[str] | Callable[[str], bool], prefer_hardware: bool = True) -> Codec | None:
    """The H.264 encoder to use, or None when there is none at all."""
    got = _pick(ENCODERS, available, prefer_hardware, "encoder", "encoding")
    if got is None:
        return None
    why = got[3]
    gpu = _gpu_without_encoder(available, prefer_hardware) if got[1] == "cpu" else None
    if gpu is not None:
        why += (
            f"; the {gpu.device} decodes ({gpu.element}) but has no video encoder (H100, H200 and A100 have "
            "NVDEC, no NVENC): encoding on the CPU, threads from the CPU budget"
        )
    return Codec(got[0], got[1], before=got[2], why=why)


def split(dec: Codec | None, enc: Codec | None) -> dict | None:
    """Where decoding and encoding run when they run on different devices (a hardware decoder,
    a CPU encoder), else None: what the report says and the log line tells."""
    if dec is None or enc is None or dec.device == enc.device or not dec.hardware or enc.hardware:
        return None
    return {
        "decode": dec.device,
        "encode": enc.device,
        "encoder_threads": threads() or "x264's own (one per core)",
        "why": f"{dec.element} decodes on the {dec.device}; no hardware encoder, so {enc.element} encodes on the CPU",
    }


def encoder_fragment(codec: Codec, *, bitrate_kbps: int, keyframe_interval: int, preset: str = "veryfast") -> str:
    """The encoder's part of a pipeline (conversion before it included), low latency, no B-frames,
    a keyframe every `keyframe_interval` frames, at about `bitrate_kbps`."""
    kbps, gop = int(bitrate_kbps), int(keyframe_interval)
    if codec.element == "nvh264enc":  # bitrate in kbit/s
        body = f"nvh264enc preset=low-latency-hq rc-mode=cbr zerolatency=true bitrate={kbps} gop-size={gop}"
    elif codec.element == "nvv4l2h264enc":  # bitrate in bit/s
        body = (
            f"nvv4l2h264enc bitrate={kbps * 1000} iframeinterval={gop} insert-sps-pps=true "
            "preset-level=1 maxperf-enable=true"
        )
    elif codec.element == "vah264enc":
        body = f"vah264enc bitrate={kbps} key-int-max={gop} b-frames=0"
    elif codec.element == "x264enc":
        body = f"x264enc tune=zerolatency speed-preset={preset} bitrate={kbps} key-int-max={gop} bframes=0"
        if threads():
            body += f" threads={threads()}"
    else:
        raise ValueError(f"no fragment for encoder {codec.element!r}")
    return f"{codec.before} ! {body}" if codec.before else body


# threads each software codec may use (x264enc `threads`, libav decoders' `max-threads`), set once
# per run from the pipeline's CPU budget (streamseg.cpu), as OpenCV's pool is; 0 = the codec's own
_THREADS = {"n": 0}


def set_threads(n: int) -> None:
    _THREADS["n"] = max(0, int(n))


def threads() -> int:
    return _THREADS["n"]


_CHOSEN: dict[str, Codec | None] = {}


def encoder(prefer_hardware: bool = True) -> Codec:
    """The encoder this machine's GStreamer would use (looked up once per process); x264 when the
    registry cannot be read, since every H.264 sink needs one. Decoding on the GPU and encoding on
    the CPU is logged once."""
    if "encoder" not in _CHOSEN:
        have = available_elements()
        _CHOSEN["encoder"] = pick_encoder(have, prefer_hardware)
        where = split(pick_decoder(have, prefer_hardware), _CHOSEN["encoder"])
        if where is not None:
            log.info("codecs: %s (x264 threads: %s)", where["why"], where["encoder_threads"])
    return _CHOSEN["encoder"] or Codec("x264enc", "cpu", why="no encoder found in the registry")


def decoder(prefer_hardware: bool = True) -> Codec | None:
    """The H.264 decoder decodebin should pick here (looked up once per process)."""
    if "decoder" not in _CHOSEN:
        _CHOSEN["decoder"] = pick_decoder(available_elements(), prefer_hardware)
    return _CHOSEN["decoder"]


def decoder_rank_boost(codec: Codec) -> list[str]:
    """The elements whose rank to raise so `decodebin` picks `codec` (the hardware one)."""
    return [codec.element] if codec.hardware else []


def available_elements(names: Iterable[str] = CANDIDATES) -> set[str]:
    """Which of `names` this machine's GStreamer registry has (empty without GStreamer)."""
    try:
        from streamseg import gst

        Gst, _ = gst.require()
    except Exception:  # no GStreamer, no PyGObject: no elements
        return set()
    return {n for n in names if Gst.ElementFactory.find(n) is not None}


def report(available: Iterable[str] | Callable[[str], bool] | None = None, prefer_hardware: bool = True) -> dict:
    """What a run would use, for the run report and `gpu-check`: {"decoder": {...}, "encoder": {...},
    "split": {...} when the decoder is the GPU's and the encoder the CPU's, else None}."""
    have = available_elements() if available is None else available
    dec, enc = pick_decoder(have, prefer_hardware), pick_encoder(have, prefer_hardware)
    return {
        "decoder": dec.describe() if dec else None,
        "encoder": enc.describe() if enc else None,
        "split": split(dec, enc),
    }


def _device_of(element: str) -> str:
    return next((d for e, d, _ in DECODERS + ENCODERS if e == element), "unknown")


def record(frames: int = 8, size_wh: tuple[int, int] = (1920, 1080), prefer_hardware: bool = True) -> dict:
    """For gpu-check: `report()`, plus which elements really encoded and decoded a few frames here
    (`used`): `frames` test frames through the encoder a sink would use, then through `decodebin`
    with the chosen decoder ranked first, as a source does; each element GStreamer made is seen."""
    out = report(None, prefer_hardware)
    try:
        from streamseg import gst

        Gst, _ = gst.require()
    except Exception as e:  # no GStreamer: nothing to run
        out["used"] = {"error": f"GStreamer unavailable: {e}"}
        return out
    have = available_elements()
    enc = pick_encoder(have, prefer_hardware) or Codec("x264enc", "cpu")
    dec = pick_decoder(have, prefer_hardware)
    for name in decoder_rank_boost(dec) if dec else []:
        factory = Gst.ElementFactory.find(name)
        if factory is not None:
            factory.set_rank(Gst.Rank.PRIMARY + 100)
    w, h = size_wh
    desc = (
        f"videotestsrc num-buffers={int(frames)} pattern=ball ! video/x-raw,width={w},height={h},framerate=30/1 ! "
        f"videoconvert ! {encoder_fragment(enc, bitrate_kbps=4000, keyframe_interval=30)} ! h264parse ! "
        "decodebin ! fakesink name=out sync=false signal-handoffs=true"
    )
    made: list[tuple[str, str]] = []  # (factory, klass) of every element made, decodebin's children too
    decoded = [0]
    try:
        pipe = gst.parse_launch(desc)
    except Exception as e:
        out["used"] = {"error": f"cannot build the test pipeline: {e}"}
        return out

    def seen(_bin, _sub, element) -> None:
        factory = element.get_factory()
        if factory is not None:
            made.append((factory.get_name(), factory.get_metadata("klass") or ""))

    pipe.connect("deep-element-added", seen)
    pipe.get_by_name("out").connect("handoff", lambda *_: decoded.__setitem__(0, decoded[0] + 1))
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    decoders = [f for f, k in made if "Decoder" in k and "Video" in k]
    encoders = [f for f, k in made if "Encoder" in k and "Video" in k] or [enc.element]
    used = {
        "encoded_by": encoders[0],
        "encoder_device": _device_of(encoders[0]),
        "decoded_by": decoders[0] if decoders else None,
        "decoder_device": _device_of(decoders[0]) if decoders else None,
        "frames": int(frames),
        "frames_decoded": decoded[0],
        "size": f"{w}x{h}",
    }
    if msg is None or msg.type != Gst.MessageType.EOS:
        used["error"] = str(msg.parse_error()[0].message) if msg is not None else "no end of stream within 60 s"
    out["used"] = used
    return out
