"""The GStreamer decoder's pixels against FFmpeg's (OpenCV's `decoder: opencv`, and ffmpeg itself)."""

import shutil
import subprocess

import numpy as np
import pytest

from streamseg import gst
from streamseg.sources.file import FileSource
from streamseg.sources.yuv import COEFFS, i420_to_bgr
from tests.conftest import CARDS, UDACITY, needs_shared_models

needs_gst = pytest.mark.skipif(not gst.available(), reason="GStreamer/PyGObject not installed")
needs_udacity = pytest.mark.skipif(not UDACITY.is_file(), reason="udacity clip not present")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def frames(src, n):
    out = []
    with src:
        while len(out) < n and (f := src.read()) is not None:
            out.append(f.image_bgr)
    return out


def gst_and_opencv(path, n):
    from streamseg.sources.gst import file_source

    return frames(file_source(str(path), str(path)), n), frames(FileSource(str(path), str(path)), n)


def within_one(a, b) -> float:
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)) <= 1).mean())


@needs_gst
@needs_udacity
def test_gstreamer_pixels_are_ffmpegs_on_the_udacity_clip():
    g, o = gst_and_opencv(UDACITY, 30)
    assert len(g) == len(o) == 30
    for i, (a, b) in enumerate(zip(g, o, strict=True)):
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        # measured: identical (max 0); cv2.cvtColor's own rounding gave 80% within +-1, max 3
        assert (d <= 1).mean() >= 0.999 and d.mean() < 0.01, (i, float(d.mean()), int(d.max()))


@needs_gst
@needs_ffmpeg
@pytest.mark.parametrize(
    "clip, tags, colour",
    [
        ("c.mp4", ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"], ("bt709", False)),
        ("c.mp4", [], ("bt601", False)),  # none named at 1280x720: FFmpeg takes BT.601, GStreamer guessed BT.709
        ("c.mp4", ["-colorspace", "smpte240m"], ("smpte240m", False)),
        ("c.mkv", ["-pix_fmt", "yuvj420p", "-colorspace", "bt470bg", "-color_range", "pc"], ("bt601", True)),
        # GStreamer 1.22's MP4 demuxer calls this one limited range: the source reads the box itself
        ("c.mp4", ["-pix_fmt", "yuvj420p", "-colorspace", "bt470bg", "-color_range", "pc"], ("bt601", True)),
    ],
)
def test_the_matrix_and_range_come_from_the_stream(tmp_path, clip, tags, colour):
    from streamseg.sources.gst import file_source

    clip = tmp_path / clip
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-frames:v", "20"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *tags, str(clip)],
        check=True,
    )
    src = file_source(str(clip), str(clip))
    g = frames(src, 3)
    o = frames(FileSource(str(clip), str(clip)), 3)
    assert src._colour == colour
    for a, b in zip(g, o, strict=True):
        assert within_one(a, b) >= 0.999


def planes(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (h, w), np.uint8),
        rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2), np.uint8),
        rng.integers(0, 256, ((h + 1) // 2, (w + 1) // 2), np.uint8),
    )


def reference(y, u, v, matrix, full):
    """The formula of yuv.py's docstring, written plainly in int64."""
    crv, cbu, cgu, cgv = COEFFS[matrix]
    cgu, cgv = -cgu, -cgv
    cy, oy = (1 << 16, 0) if full else ((1 << 16) * 255 // 219, 16)
    if full:
        crv, cbu, cgu, cgv = (int(c * 224 / 255) for c in (crv, cbu, cgu, cgv))  # C truncates

    def k(c):
        return (c * 8192 + (1 << 15)) >> 16

    h, w = y.shape
    U = u.astype(np.int64).repeat(2, 0).repeat(2, 1)[:h, :w] - 128
    V = v.astype(np.int64).repeat(2, 0).repeat(2, 1)[:h, :w] - 128
    yy = (8 * (y.astype(np.int64) - oy) * k(cy)) >> 16
    r = yy + ((8 * V * k(crv)) >> 16)
    g = yy + ((8 * U * k(cgu)) >> 16) + ((8 * V * k(cgv)) >> 16)
    b = yy + ((8 * U * k(cbu)) >> 16)
    return np.clip(np.stack([b, g, r], -1), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("matrix", sorted(COEFFS))
@pytest.mark.parametrize("full", [False, True])
def test_lookup_tables_compute_the_formula(matrix, full):
    y, u, v = planes(36, 64)
    assert np.array_equal(i420_to_bgr(y, u, v, matrix, full), reference(y, u, v, matrix, full))


def test_odd_sizes_and_strided_planes():
    y, u, v = planes(31, 63, seed=1)
    out = i420_to_bgr(y, u, v)
    assert out.shape == (31, 63, 3) and out.flags.c_contiguous
    assert np.array_equal(out, reference(y, u, v, "bt601", False))
    big = np.zeros((40, 80), np.uint8)  # rows padded, as GStreamer's strides may be
    big[:31, :63] = y
    assert np.array_equal(i420_to_bgr(big[:31, :63], u, v), out)


@needs_gst
@needs_udacity
@needs_shared_models
def test_both_decoders_give_the_same_detections():
    from streamseg.models import open_model

    g, o = gst_and_opencv(UDACITY, 20)
    with open_model(str(CARDS / "yolov8n-seg-coco.yaml"), threads=2) as model:
        found = 0
        for i, (a, b) in enumerate(zip(g, o, strict=True)):
            da, db = model.run([a])[0], model.run([b])[0]
            assert da.labels == db.labels, i
            np.testing.assert_allclose(da.xyxy, db.xyxy, atol=0.5, err_msg=f"frame {i}")
            np.testing.assert_allclose(da.score, db.score, atol=0.002, err_msg=f"frame {i}")
            found += len(da)
    assert found >= 20  # cars in every frame or so: the comparison compared something


def box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


NCLX = b"colrnclx" + bytes([0, 6, 0, 1, 0, 5])


@pytest.mark.parametrize(
    "data, full",
    [
        (b"", None),
        (b"\x00\x00\x00\x04ftyp", None),  # a size smaller than its header
        (b"RIFF....AVI LIST", None),  # not ISO-BMFF
        (box(b"ftyp", b"isom") + box(b"mdat", b"x" * 100) + box(b"moov", b"...." + NCLX + b"\x80"), True),
        (box(b"ftyp", b"isom") + box(b"moov", b"...." + NCLX + b"\x00"), False),
        (box(b"ftyp", b"isom") + box(b"moov", b"trak"), None),  # no colr: the caps decide
        (box(b"ftyp", b"isom") + box(b"moov", b"...." + NCLX), None),  # cut short
    ],
)
def test_mp4_range_from_the_colr_box(tmp_path, data, full):
    from streamseg.sources.gst import mp4_full_range

    (tmp_path / "f.mp4").write_bytes(data)
    assert mp4_full_range(tmp_path / "f.mp4") is full
