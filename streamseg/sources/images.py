"""`images://dir[?fps=N]`: the image files of a folder, in sorted order."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamseg.errors import SourceError
from streamseg.sources.base import GroundTruth, Source, SourceFrame
from streamseg.sources.file import as_bgr

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImagesSource(Source):
    scheme = "images"

    def __init__(
        self, uri: str, path: str, fps: float = 10.0, labels: str | None = None, label_map: str | None = None
    ) -> None:
        super().__init__(uri)
        self.path = Path(path)
        self.fps = fps
        self.labels_dir = Path(labels) if labels else None
        self.label_map_file = Path(label_map) if label_map else None
        self._lut: np.ndarray | None = None
        self._names: list[str] = []
        self._files: list[Path] = []
        self._i = 0
        self._seq = 0

    def open(self) -> None:
        p = self.path
        if not p.is_dir():
            raise SourceError(f"images://{p}: no such folder")
        self._files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not self._files:
            raise SourceError(f"images://{p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.frame_count = len(self._files)
        if self.labels_dir is not None:
            if not self.labels_dir.is_dir():
                raise SourceError(f"labels folder not found: {self.labels_dir}")
            if self.label_map_file is None:
                raise SourceError("labels=DIR needs label_map=FILE (dataset label id -> group)")
            self._lut, self._names = load_label_map(self.label_map_file)

    def read(self) -> SourceFrame | None:
        while self._i < len(self._files):
            f = self._files[self._i]
            self._i += 1
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None or img.size == 0:
                self.decode_errors += 1
                self.bad_input.append(f"cannot decode {f}: skipped")
                continue
            if self.size_wh is None:
                self.size_wh = (img.shape[1], img.shape[0])
            pts = self._seq / self.fps
            self._seq += 1
            return SourceFrame(as_bgr(img), pts, truth=self._truth(f, img.shape[:2]))
        return None

    def _truth(self, image_file: Path, shape_hw: tuple[int, int]) -> GroundTruth | None:
        """The label PNG with the image's file name (any image suffix), mapped to groups; with a
        Cityscapes-style `*_instanceIds.png` beside it, the instances too."""
        if self._lut is None:
            return None
        semantic, instances = find_label_files(self.labels_dir, image_file)
        lab = _read_label(semantic, shape_hw) if semantic else None
        inst = _read_label(instances, shape_hw) if instances else None
        if lab is None and inst is None:
            return None
        instance_map = None
        if inst is not None:
            class_ids, instance_map = cityscapes_instances(inst)
            if lab is None:
                lab = class_ids
        return GroundTruth(self._lut[np.clip(lab, 0, 255).astype(np.uint8)], instance_map, self._names)


def find_label_files(labels_dir: Path, image_file: Path) -> tuple[Path | None, Path | None]:
    """(semantic label PNG, instance-id PNG) for an image. Semantic: the image's name with any
    image suffix, or Cityscapes' `<key>_gtFine_labelIds.png`; instances: `<key>_gtFine_instanceIds.png`
    or `<key>_instanceIds.png`, where `key` is the name without Cityscapes' `_leftImg8bit`."""
    stem = image_file.stem
    key = stem[: -len("_leftImg8bit")] if stem.endswith("_leftImg8bit") else stem
    semantic = [labels_dir / f"{stem}.png", *sorted(labels_dir.glob(f"{stem}.*"))]
    semantic += [labels_dir / f"{key}_gtFine_labelIds.png", labels_dir / f"{key}_labelIds.png"]
    instance = [labels_dir / f"{key}_gtFine_instanceIds.png", labels_dir / f"{key}_instanceIds.png"]
    pick = lambda cands: next((c for c in cands if c.is_file()), None)  # noqa: E731
    return pick(semantic), pick(instance)


def _read_label(path: Path, shape_hw: tuple[int, int]) -> np.ndarray | None:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # 8- or 16-bit ids, as written
    if lab is None:
        return None
    if lab.ndim == 3:
        lab = lab[..., 0]
    if lab.shape != shape_hw:
        lab = cv2.resize(lab, shape_hw[::-1], interpolation=cv2.INTER_NEAREST)
    return lab


def cityscapes_instances(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes `instanceIds`: id >= 1000 is an object (class id = id // 1000, instance = id % 1000),
    id < 1000 a class id without instances (stuff, or a crowd). Returns (class ids, instance map;
    0 = no instance, else the id itself, unique per object)."""
    ids = ids.astype(np.int32)
    objects = ids >= 1000
    return np.where(objects, ids // 1000, ids), np.where(objects, ids, 0).astype(np.int32)


def load_label_map(path: Path) -> tuple[np.ndarray, list[str]]:
    """YAML `labels: {dataset id: group name or ignore}` (+ optional `default:`) -> (LUT, names)."""
    import yaml

    if not path.is_file():
        raise SourceError(f"label map not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
        mapping = {int(k): str(v) for k, v in data["labels"].items()}
        default = str(data.get("default", "background"))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
        raise SourceError(
            f"{path}: a label map is `labels: {{id: group}}` with ids 0..255 (and optionally `default: name`)"
        ) from None
    if any(not 0 <= k <= 255 for k in mapping):
        raise SourceError(f"{path}: label ids must be within 0..255")
    names = sorted({default, *mapping.values()})
    lut = np.full(256, names.index(default), np.uint8)
    for k, v in mapping.items():
        lut[k] = names.index(v)
    return lut, names
