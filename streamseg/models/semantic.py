"""Decoders for semantic models: `semantic-logits` (one or several score heads) and
`semantic-argmax` (class ids).

Both take the class of each pixel at the model's resolution (argmax over full-size
logits would cost far more), cut away letterbox padding, and resize the label map to
the frame with nearest-neighbour so class ids stay exact.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamseg.backends.base import TensorSpec
from streamseg.errors import ModelError
from streamseg.frames import SemanticResult
from streamseg.models.card import ModelCard, resolve_labels
from streamseg.models.preprocess import ResizeTransform


class _SemanticDecoder:
    labels: list[str]

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.group_names = card.group_names
        # label index -> 1-based group index (0 = none)
        self.group_lut = np.zeros(256, np.uint8)
        for gi, (group, members) in enumerate(card.groups.items(), start=1):
            for label in members:
                if label not in self.labels:
                    raise ModelError(
                        f"{card.name}: group {group!r} names label {label!r}, which is not among {self.labels}"
                    )
                self.group_lut[self.labels.index(label)] = gi
        if len(self.labels) > 255:
            raise ModelError(f"{card.name}: at most 255 semantic labels are supported")

    def _label_maps(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """N x h x w uint8 label indices at model resolution."""
        raise NotImplementedError

    def decode(self, outputs: dict[str, np.ndarray], transforms: list[ResizeTransform]) -> list[SemanticResult]:
        maps = self._label_maps(outputs)
        results = []
        for lm, t in zip(maps, transforms, strict=True):
            x0, y0, x1, y1 = t.content_rect((lm.shape[1], lm.shape[0]))
            lm = np.ascontiguousarray(lm[y0:y1, x0:x1])
            gm = self.group_lut[lm]
            src_wh = t.src_wh
            small = None
            if lm.shape[::-1] != src_wh:
                small = gm
                lm = cv2.resize(lm, src_wh, interpolation=cv2.INTER_NEAREST)
                gm = cv2.resize(gm, src_wh, interpolation=cv2.INTER_NEAREST)
            results.append(SemanticResult(lm, self.labels, gm, self.group_names, small))
        return results


def _require(card: ModelCard, outputs: dict[str, TensorSpec], name: str) -> TensorSpec:
    if name not in outputs:
        raise ModelError(f"{card.name}: the model has no output {name!r} (it has {sorted(outputs)})")
    return outputs[name]


class SemanticLogitsDecoder(_SemanticDecoder):
    """Heads of N x C x H x W scores; each head's argmax paints its non-null labels, later heads on top."""

    def __init__(self, card: ModelCard, outputs: dict[str, TensorSpec], metadata: dict[str, str]) -> None:
        labels = ["background"]
        for head in card.heads:
            labels += [lab for lab in head.labels if lab is not None and lab not in labels]
        self.labels = labels
        self.heads = []
        for head in card.heads:
            spec = _require(card, outputs, head.output)
            if len(spec.shape) != 4:
                raise ModelError(
                    f"{card.name}: semantic-logits head {head.output!r} must be N x C x H x W, the model gives {spec.shape}"
                )
            if spec.shape[1] is not None and spec.shape[1] != len(head.labels):
                raise ModelError(
                    f"{card.name}: head {head.output!r} has {spec.shape[1]} channels, the card lists {len(head.labels)} labels"
                )
            lut = np.array([0 if lab is None else labels.index(lab) for lab in head.labels], np.uint8)
            self.heads.append((head.output, lut))
        super().__init__(card)
        self.output_names = [h for h, _ in self.heads]

    def _label_maps(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        result = None
        for name, lut in self.heads:
            scores = outputs[name]
            idx = (scores[:, 1] > scores[:, 0]).astype(np.uint8) if scores.shape[1] == 2 else scores.argmax(axis=1)
            lab = lut[idx]
            result = lab if result is None else np.where(lab > 0, lab, result)
        return result


class SemanticArgmaxDecoder(_SemanticDecoder):
    """One N x H x W (or N x 1 x H x W) output of class ids (YOLO26-sem exports give uint8 ids;
    `labels: from_model` reads their `names`)."""

    def __init__(self, card: ModelCard, outputs: dict[str, TensorSpec], metadata: dict[str, str]) -> None:
        self.labels = resolve_labels(card, metadata)
        name = card.output or (next(iter(outputs)) if len(outputs) == 1 else None)
        if name is None:
            raise ModelError(f"{card.name}: the model has several outputs {sorted(outputs)}; set `output` in the card")
        spec = _require(card, outputs, name)
        if len(spec.shape) not in (3, 4) or (len(spec.shape) == 4 and spec.shape[1] not in (1, None)):
            raise ModelError(
                f"{card.name}: semantic-argmax output {name!r} must be N x H x W class ids, got {spec.shape}"
            )
        self.output = name
        self.output_names = [name]
        super().__init__(card)

    def _label_maps(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        ids = outputs[self.output]
        if ids.ndim == 4:
            ids = ids[:, 0]
        if ids.dtype.kind == "f":
            ids = np.rint(ids)
        ids = ids.astype(np.int64)
        return np.where((ids >= 0) & (ids < len(self.labels)), ids, 0).astype(np.uint8)
