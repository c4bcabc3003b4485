"""Choosing the H.264 decoder and encoder from the elements a machine has (no GStreamer needed)."""

import pytest

from streamseg.codecs import encoder_fragment, pick_decoder, pick_encoder, report

CPU = {"avdec_h264", "x264enc", "openh264dec"}
DGPU = CPU | {"nvh264dec", "nvh264enc", "nvh265dec"}
JETSON = CPU | {"nvv4l2decoder", "nvv4l2h264enc", "nvvidconv"}
VAAPI = CPU | {"vah264dec", "vah264enc"}


@pytest.mark.parametrize(
    "elements, decoder, encoder, device",
    [
        (CPU, "avdec_h264", "x264enc", "cpu"),
        (DGPU, "nvh264dec", "nvh264enc", "nvidia-gpu"),
        (JETSON, "nvv4l2decoder", "nvv4l2h264enc", "jetson"),
        (VAAPI, "vah264dec", "vah264enc", "vaapi"),
        (DGPU | JETSON, "nvh264dec", "nvh264enc", "nvidia-gpu"),  # a discrete GPU first
        (JETSON - {"nvvidconv"}, "avdec_h264", "x264enc", "cpu"),  # NVMM needs nvvidconv in and out
        ({"openh264dec", "x264enc"}, "openh264dec", "x264enc", "cpu"),
    ],
)
def test_the_device_codec_is_chosen_when_present(elements, decoder, encoder, device):
    dec, enc = pick_decoder(elements), pick_encoder(elements)
    assert (dec.element, enc.element) == (decoder, encoder)
    assert dec.device == device or device == "cpu" and dec.device == "cpu"
    assert dec.hardware == (device != "cpu")


def test_hardware_can_be_turned_off_and_nothing_is_none():
    assert pick_decoder(DGPU, prefer_hardware=False).element == "avdec_h264"
    assert pick_encoder(DGPU, prefer_hardware=False).why == "hardware encoding turned off"
    assert pick_decoder(set()) is None and pick_encoder(set()) is None
    assert "looked for nvh264dec" in pick_decoder(CPU).why


def test_jetson_fragments_move_frames_in_and_out_of_nvmm():
    dec, enc = pick_decoder(JETSON), pick_encoder(JETSON)
    assert dec.after == "nvvidconv ! video/x-raw,format=BGRx"
    frag = encoder_fragment(enc, bitrate_kbps=4000, keyframe_interval=30)
    assert frag.startswith("nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc bitrate=4000000 ")
    assert "iframeinterval=30" in frag


@pytest.mark.parametrize(
    "elements, expect",
    [
        (DGPU, "nvh264enc preset=low-latency-hq rc-mode=cbr zerolatency=true bitrate=2500 gop-size=15"),
        (CPU, "x264enc tune=zerolatency speed-preset=veryfast bitrate=2500 key-int-max=15 bframes=0"),
    ],
)
def test_encoder_fragment_is_low_latency_at_the_asked_rate(elements, expect, monkeypatch):
    from streamseg import codecs

    monkeypatch.setattr(codecs, "_THREADS", {"n": 0})  # the codec's own thread count
    assert encoder_fragment(pick_encoder(elements), bitrate_kbps=2500, keyframe_interval=15) == expect


def test_x264_gets_the_cpu_budgets_threads(monkeypatch):
    from streamseg import codecs

    monkeypatch.setattr(codecs, "_THREADS", {"n": 0})
    codecs.set_threads(1)
    frag = encoder_fragment(pick_encoder({"x264enc"}), bitrate_kbps=2500, keyframe_interval=15)
    assert frag.endswith(" threads=1")
    assert "threads" not in encoder_fragment(pick_encoder({"nvh264enc"}), bitrate_kbps=2500, keyframe_interval=15)


def test_report_names_both_choices():
    r = report(DGPU)
    assert r["decoder"]["element"] == "nvh264dec" and r["encoder"]["element"] == "nvh264enc"
    assert report(lambda name: name in CPU)["encoder"]["device"] == "cpu"
