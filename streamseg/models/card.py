"""Model cards: how to feed a model and how to read its outputs (engines/*.yaml)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from streamseg.errors import ModelError

Format = Literal["semantic-logits", "semantic-argmax", "yolo-seg"]
TASK_OF_FORMAT = {"semantic-logits": "semantic", "semantic-argmax": "semantic", "yolo-seg": "instance"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Strict):
    name: str | None = Field(None, description="Input tensor name; default: the model's only input.")
    size_wh: tuple[int, int] = Field(description="Model input width and height in pixels.")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["rgb", "bgr"] = "rgb"
    scale: float = Field(1 / 255, description="Pixel values 0..255 are multiplied by this ...")
    mean: tuple[float, float, float] = Field((0.0, 0.0, 0.0), description="... then this is subtracted ...")
    std: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="... and the result divided by this.")
    resize: Literal["stretch", "letterbox"] = "stretch"
    pad_value: int = Field(114, ge=0, le=255, description="Letterbox padding grey level.")


class Head(_Strict):
    output: str = Field(description="Output tensor name (N x C x H x W scores).")
    labels: list[str | None] = Field(description="Label per channel; null = this head says nothing there.")


class Thresholds(_Strict):
    conf: float = Field(0.25, ge=0, le=1, description="Minimum class score.")
    iou: float = Field(0.45, ge=0, le=1, description="NMS IoU threshold (class-aware).")
    mask: float = Field(0.5, gt=0, lt=1, description="Mask probability threshold.")
    max_detections: int = Field(100, ge=1)


class YoloOutputs(_Strict):
    detections: str | None = Field(None, description="[B, 4+nc+nm, N] tensor; default: the rank-3 output.")
    protos: str | None = Field(None, description="[B, nm, h, w] tensor; default: the rank-4 output.")


class ModelCard(_Strict):
    name: str
    file: Path = Field(description="ONNX file, relative to the card.")
    task: Literal["semantic", "instance"]
    format: Format
    description: str = ""
    input: InputSpec
    labels: list[str] | Literal["from_model"] | None = Field(
        None, description="Class names by index; from_model reads the ONNX metadata `names`."
    )
    heads: list[Head] | None = Field(None, description="semantic-logits: one entry per output head.")
    output: str | None = Field(None, description="semantic-argmax: the class-id output (default: the only one).")
    outputs: YoloOutputs = YoloOutputs()
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Overlay group -> labels drawn as it (road, lane, car, person, ...)."
    )
    keep_ungrouped: bool = Field(False, description="yolo-seg: keep instances whose class is in no group.")
    end2end: bool | None = Field(
        None,
        description="yolo-seg: the head is end-to-end (YOLO26: [B, K, 6+nm] = x1, y1, x2, y2, score, class, "
        "coefficients; top-k inside, no NMS); null = from the file's `end2end` metadata or its output shape.",
    )
    thresholds: Thresholds = Thresholds()
    training: dict | None = Field(None, description="How the model was made and what it measured (free form).")

    _path: Path | None = PrivateAttr(None)  # where the card was read from (set by load_card)

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if TASK_OF_FORMAT[self.format] != self.task:
            raise ValueError(f"format {self.format} is for task {TASK_OF_FORMAT[self.format]}, not {self.task}")
        if self.format == "semantic-logits" and not self.heads:
            raise ValueError("semantic-logits needs `heads` (output name and channel labels)")
        if self.format in ("semantic-argmax", "yolo-seg") and self.labels is None:
            raise ValueError(f"{self.format} needs `labels`")
        if self.end2end is not None and self.format != "yolo-seg":
            raise ValueError("end2end applies to yolo-seg cards only")
        return self

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def model_path(self) -> Path:
        base = self._path.parent if self._path else Path.cwd()
        return (base / self.file).resolve()

    @property
    def group_names(self) -> list[str]:
        return list(self.groups)


def ungrouped_warning(card: ModelCard, labels: list[str]) -> str | None:
    """A card whose `groups` take none of the model's labels draws and reports nothing (a card
    made from an export whose class names are numbers gets `groups: {}`): say so, naming the
    card and what to fill in. None when some label is in a group."""
    named = [lab for lab in labels if lab not in (None, "", "background")]
    if {lab for members in card.groups.values() for lab in members} & set(named):
        return None
    shown = ", ".join(map(str, named[:6])) + (", ..." if len(named) > 6 else "")
    example = f"{{car: [{named[0]}]}}" if named else "{road: [LABEL]}"
    return (
        f"{card.path or card.name}: no label of the model is in any group, so nothing will be drawn or reported; "
        f"fill in `groups:` with the labels each group (road, lane, car, person, ...) draws, e.g. groups: {example} "
        f"(labels: {shown or 'none'})"
    )


def labels_from_metadata(metadata: dict[str, str]) -> list[str] | None:
    """Class names from an Ultralytics export's `names` metadata ("{0: 'person', ...}")."""
    raw = metadata.get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)  # a literal dict; never eval
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        return [str(names[i]) for i in range(len(names))] if set(names) == set(range(len(names))) else None
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def resolve_labels(card: ModelCard, metadata: dict[str, str]) -> list[str]:
    """The card's labels, reading the model's `names` metadata for `labels: from_model`."""
    if card.labels != "from_model":
        return list(card.labels or [])
    labels = labels_from_metadata(metadata)
    if labels is None:
        raise ModelError(f"{card.name}: labels: from_model, but the ONNX file has no readable `names` metadata")
    return labels


def load_card(path: str | Path) -> ModelCard:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model card not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: cannot read model card: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{p}: a model card is a mapping of keys")
    try:
        card = ModelCard.model_validate(data)
    except ValidationError as e:
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"]) or "(top level)"
            parts.append(f"{where}: {'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}")
        raise ModelError(f"{p}: " + "; ".join(parts)) from None
    card._path = p.resolve()
    if not card.model_path.is_file():
        raise ModelError(f"{p}: model file not found: {card.model_path}")
    return card
