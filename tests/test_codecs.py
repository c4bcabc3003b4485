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


# decoder on the GPU, encoder on the CPU (issue 25, section 4) ------------------------------------
# an H100/H200/A100: nvcodec registers NVDEC's decoders and no encoder (no NVENC on the chip)
DATACENTER = CPU | {"nvh264dec", "nvh265dec", "nvjpegdec"}
ORIN_NANO = JETSON - {"nvv4l2h264enc"}  # a Jetson without NVENC: the same split


@pytest.mark.parametrize("elements, decoder, device", [(DATACENTER, "nvh264dec", "nvidia-gpu"), (ORIN_NANO, "nvv4l2decoder", "jetson")])
def test_a_gpu_without_an_encoder_decodes_on_the_gpu_and_encodes_with_x264(elements, decoder, device, monkeypatch):
    from streamseg import codecs

    monkeypatch.setattr(codecs, "_THREADS", {"n": 0})
    codecs.set_threads(3)  # what the CPU budget gives the codecs
    dec, enc = pick_decoder(elements), pick_encoder(elements)
    assert (dec.element, dec.device, enc.element, enc.device) == (decoder, device, "x264enc", "cpu")
    assert f"the {device} decodes ({decoder}) but has no video encoder" in enc.why
    frag = encoder_fragment(enc, bitrate_kbps=4000, keyframe_interval=30)
    assert frag.startswith("x264enc tune=zerolatency") and frag.endswith(" threads=3")
    r = report(elements)
    assert r["split"] == {
        "decode": device,
        "encode": "cpu",
        "encoder_threads": 3,
        "why": f"{decoder} decodes on the {device}; no hardware encoder, so x264enc encodes on the CPU",
    }


@pytest.mark.parametrize("elements", [CPU, DGPU, JETSON, VAAPI])
def test_no_split_where_decoder_and_encoder_share_a_device(elements):
    assert report(elements)["split"] is None
    assert "no video encoder" not in pick_encoder(elements).why


def test_the_split_is_logged_once_when_the_encoder_is_chosen(monkeypatch, caplog):
    from streamseg import codecs

    monkeypatch.setattr(codecs, "_CHOSEN", {})
    monkeypatch.setattr(codecs, "available_elements", lambda names=codecs.CANDIDATES: set(DATACENTER))
    with caplog.at_level("INFO", logger="streamseg"):
        assert codecs.encoder().element == "x264enc"
        assert codecs.encoder().element == "x264enc"
    lines = [r.getMessage() for r in caplog.records if "decodes on the nvidia-gpu" in r.getMessage()]
    assert len(lines) == 1 and "x264enc encodes on the CPU" in lines[0]


def _gstreamer_with_x264():
    try:
        from streamseg import gst

        Gst, _ = gst.require()
    except Exception:
        return False
    return all(Gst.ElementFactory.find(n) is not None for n in ("x264enc", "h264parse", "decodebin", "videotestsrc"))


@pytest.mark.skipif(not _gstreamer_with_x264(), reason="needs GStreamer with x264enc, h264parse, decodebin")
def test_record_says_which_elements_really_encoded_and_decoded(monkeypatch):
    """gpu-check's record: frames really go through the chosen encoder and decodebin; the elements
    GStreamer made are what it reports, even where the registry list claimed a GPU decoder."""
    from streamseg import codecs

    real = codecs.available_elements()
    r = codecs.record(frames=3, size_wh=(320, 240))
    assert r["used"]["encoded_by"] == "x264enc" and r["used"]["frames_decoded"] == 3
    assert r["used"]["decoded_by"] == r["decoder"]["element"] and "error" not in r["used"]
    # a registry that claims NVDEC here (none is installed): the plan says nvh264dec, the record the truth
    monkeypatch.setattr(codecs, "available_elements", lambda names=codecs.CANDIDATES: real | {"nvh264dec"})
    r = codecs.record(frames=2, size_wh=(320, 240))
    assert r["decoder"]["element"] == "nvh264dec" and r["split"]["decode"] == "nvidia-gpu"
    assert r["used"]["decoded_by"] in ("avdec_h264", "openh264dec") and r["used"]["decoder_device"] == "cpu"
    assert r["used"]["encoded_by"] == "x264enc" and r["used"]["frames_decoded"] == 2
