import cv2
import numpy as np
import pytest

from streamseg.errors import SourceError
from streamseg.sources import open_source, split_uri
from tests.conftest import make_video


def read_all(src):
    frames = []
    with src:
        while (f := src.read()) is not None:
            frames.append(f)
    return frames


@pytest.mark.parametrize(
    "uri, error",
    [
        ("ftp://host/x.mp4", "unknown source scheme 'ftp://'.*known: file://, gst://, images://, rtp://, rtsp://"),
        ("images://", "nothing after images://"),
        ("images://{tmp}/nothing", "no such folder"),
        ("images://{tmp}?fps=abc", "fps='abc' is not a number"),
        ("{tmp}/missing.mp4", "no such file"),
        ("{tmp}", "is a folder; use images://"),
        ("{tmp}/empty.mp4", "is empty"),
        ("{tmp}/random.mp4", "not a video"),
        ("images://{tmp}/noimages", "no image files"),
    ],
)
def test_bad_sources(tmp_path, uri, error):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (tmp_path / "noimages").mkdir()
    (tmp_path / "noimages" / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match=error):
        with open_source(uri.format(tmp=tmp_path)):
            pass


def test_split_uri():
    assert split_uri("a/b.mp4") == ("file", "a/b.mp4", {})
    assert split_uri("IMAGES://d?fps=5") == ("images", "d", {"fps": "5"})


def test_video_file_frames_and_timestamps(tmp_path):
    p = make_video(tmp_path / "v.mp4", n=12, fps=20)
    src = open_source(str(p))
    frames = read_all(src)
    assert len(frames) == 12
    assert src.fps == pytest.approx(20) and src.size_wh == (96, 64) and src.frame_count == 12
    assert frames[0].image_bgr.shape == (64, 96, 3)
    np.testing.assert_allclose([f.pts for f in frames], np.arange(12) / 20, atol=1e-3)
    assert src.decode_errors == 0


def test_file_uri_scheme(tmp_path):
    p = make_video(tmp_path / "v.mp4", n=3)
    assert len(read_all(open_source(f"file://{p}"))) == 3


def test_images_sorted_mixed_sizes_grey_and_unreadable(tmp_path):
    cv2.imwrite(str(tmp_path / "b.png"), np.full((10, 20), 128, np.uint8))  # grey
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((30, 40, 3), np.uint8))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 2] = 255
    cv2.imwrite(str(tmp_path / "c.png"), rgba)
    (tmp_path / "d.jpg").write_bytes(b"not an image")
    src = open_source(f"images://{tmp_path}?fps=5")
    frames = read_all(src)
    assert [f.image_bgr.shape for f in frames] == [(30, 40, 3), (10, 20, 3), (8, 8, 3)]
    assert all(f.image_bgr.dtype == np.uint8 for f in frames)
    assert [f.pts for f in frames] == [0.0, 0.2, 0.4]
    assert src.decode_errors == 1


def test_files_fall_back_to_opencv_without_gstreamer(tmp_path, monkeypatch):
    from streamseg import gst
    from streamseg.sources.file import FileSource

    p = make_video(tmp_path / "v.mp4", n=3)
    monkeypatch.setattr(gst, "available", lambda: False)
    src = open_source(str(p))
    assert isinstance(src, FileSource)
    assert len(read_all(src)) == 3
