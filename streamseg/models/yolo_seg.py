"""Decoder for Ultralytics segmentation exports (`yolo-seg`): YOLOv8/YOLO11 and YOLO26.

Outputs: detections [B, 4 + nc + nm, N] (cx, cy, w, h in input pixels, nc class
scores already through a sigmoid, nm mask coefficients) and prototypes
[B, nm, h, w]. We pick each anchor's best class, threshold, run class-aware NMS,
then build each mask as sigmoid(coefficients @ prototypes), sampled straight into
the instance's box at frame resolution: one affine warp per instance maps frame
pixels to prototype cells, which crops to the box and undoes the letterbox at once.

YOLO26's end-to-end head gives [B, K, 6 + nm] instead (x1, y1, x2, y2 in input pixels,
score, class, coefficients; K = the model's own top-k, no NMS needed): thresholds,
masks and crop are the same.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamseg.backends.base import TensorSpec
from streamseg.errors import ModelError
from streamseg.frames import Instances, MaskCrops
from streamseg.models.card import ModelCard, resolve_labels
from streamseg.models.card import labels_from_metadata as labels_from_metadata  # re-exported
from streamseg.models.preprocess import ResizeTransform


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box against K xyxy boxes."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms_xyxy(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_id: np.ndarray | None = None,
    max_detections: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    With `class_id`, boxes of different classes never suppress each other (they are
    shifted apart by class, as torchvision's batched_nms does).
    """
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    boxes = xyxy.astype(np.float64)
    if class_id is not None:
        offset = (boxes.max() - min(boxes.min(), 0) + 1) * class_id.astype(np.float64)
        boxes = boxes + offset[:, None]
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if max_detections is not None and len(keep) >= max_detections:
            break
        rest = order[1:]
        order = rest[box_iou_one_to_many(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, np.int64)


def _meta_bool(metadata: dict[str, str], key: str) -> bool | None:
    v = str(metadata.get(key, "")).strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(v)


def head_from_shape(det_shape, nc: int, nm: int | None) -> bool | None:
    """True: an end-to-end head [B, K, 6+nm]; False: anchors [B, 4+nc+nm, N]; None: the shape does not say."""
    if len(det_shape) != 3 or nm is None:
        return None
    anchors = det_shape[1] is not None and det_shape[1] == 4 + nc + nm
    e2e = det_shape[2] is not None and det_shape[2] == 6 + nm
    if anchors != e2e:
        return e2e
    return None


class YoloSegDecoder:
    """Both YOLO segmentation heads: anchors [B, 4+nc+nm, N] (YOLOv8, YOLO11; NMS here) and
    end-to-end [B, K, 6+nm] (YOLO26's default export: top-k inside the model, no NMS).
    Which one: the card's `end2end`, else the file's `end2end` metadata, else the output's
    shape (at bind time when static, else at the first batch); a card that contradicts the
    file is an error naming both."""

    def __init__(self, card: ModelCard, outputs: dict[str, TensorSpec], metadata: dict[str, str]) -> None:
        self.card = card
        labels = resolve_labels(card, metadata)
        self.labels = labels
        self.det_name = card.outputs.detections or self._by_rank(outputs, 3)
        self.proto_name = card.outputs.protos or self._by_rank(outputs, 4)
        for name in (self.det_name, self.proto_name):
            if name not in outputs:
                raise ModelError(f"{card.name}: the model has no output {name!r} (it has {sorted(outputs)})")
        det, proto = outputs[self.det_name].shape, outputs[self.proto_name].shape
        if len(det) != 3 or len(proto) != 4:
            raise ModelError(
                f"{card.name}: yolo-seg needs detections [B, 4+nc+nm, N] (or end-to-end [B, K, 6+nm]) and "
                f"prototypes [B, nm, h, w]; the model gives {self.det_name} {det} and {self.proto_name} {proto}"
            )
        self.nc = len(labels)
        self.nm = proto[1]
        self.end2end = self._head_kind(det, metadata)
        if None not in (*det[1:], self.nm):
            self.check_shapes(det, proto)  # static shapes: the card is checked now, not at the first batch
        self.output_names = [self.det_name, self.proto_name]
        self.group_of_class: list[str | None] = [None] * self.nc
        for group, members in card.groups.items():
            for label in members:
                if label not in labels:
                    raise ModelError(
                        f"{card.name}: group {group!r} names label {label!r}, which the model does not have"
                    )
                self.group_of_class[labels.index(label)] = group
        keep = [g is not None or card.keep_ungrouped for g in self.group_of_class]
        self.keep_class = np.array(keep, bool)
        th = card.thresholds
        self.conf, self.iou, self.max_det = th.conf, th.iou, th.max_detections
        self.mask_logit = float(np.log(th.mask / (1 - th.mask)))
        self.input_wh = card.input.size_wh

    @property
    def needs_probe(self) -> bool:
        """The outputs' shapes are dynamic where the card is checked: one batch must show them."""
        return self.end2end is None or self.nm is None

    def _head_kind(self, det_shape, metadata: dict[str, str]) -> bool | None:
        name = self.card.name
        said = {
            "the card": self.card.end2end,
            "the file's end2end metadata": _meta_bool(metadata, "end2end"),
            f"the output shape {self.det_name} {tuple(det_shape)}": head_from_shape(det_shape, self.nc, self.nm),
        }
        known = {k: v for k, v in said.items() if v is not None}
        if len(set(known.values())) > 1:
            raise ModelError(
                f"{name}: "
                + ", ".join(f"{k} says {'end-to-end' if v else 'anchors + NMS'}" for k, v in known.items())
                + "; fix the card's end2end (true: YOLO26 end-to-end [B, K, 6+nm]; false: [B, 4+nc+nm, N])"
            )
        return next(iter(known.values()), None)

    def _check_anchor_rows(self, rows: int) -> None:
        if rows != 4 + self.nc + self.nm:
            raise ModelError(
                f"{self.card.name}: output {self.det_name!r} has {rows} rows, but 4 box values + {self.nc} labels "
                f"+ {self.nm} mask coefficients make {4 + self.nc + self.nm} (an end-to-end head would be "
                f"[B, K, {6 + self.nm}])"
            )

    def check_shapes(self, det_shape: tuple[int, ...], proto_shape: tuple[int, ...]) -> None:
        """Check a batch's actual outputs against the card (and settle the head kind once)."""
        nm = proto_shape[1]
        if self.nm is None:
            self.nm = nm
        elif nm != self.nm:
            raise ModelError(f"{self.card.name}: prototypes have {nm} channels, expected {self.nm}")
        kind = head_from_shape(det_shape, self.nc, nm)
        if self.end2end is None:
            if kind is None and det_shape[1] == 4 + self.nc + nm:  # both fit: only the card can say
                raise ModelError(
                    f"{self.card.name}: output {self.det_name!r} {tuple(det_shape)} fits both YOLO heads; "
                    "set end2end: true or false in the card"
                )
            if kind is None:  # neither fits: most often labels that do not match an anchors head
                self._check_anchor_rows(det_shape[1])
            self.end2end = kind
        elif self.end2end and det_shape[2] != 6 + nm:
            raise ModelError(
                f"{self.card.name}: the card says end2end: true ([B, K, 6+{nm}]), but output {self.det_name!r} "
                f"is {tuple(det_shape)}"
                + ("; it is an anchors head: set end2end: false" if kind is False else "")
            )
        elif not self.end2end:
            if kind is True:
                raise ModelError(
                    f"{self.card.name}: output {self.det_name!r} is {tuple(det_shape)}, an end-to-end head "
                    f"[B, K, 6+{nm}], but the card says end2end: false"
                )
            self._check_anchor_rows(det_shape[1])

    def set_thresholds(self, conf: float | None = None, iou: float | None = None, max_det: int | None = None) -> None:
        if conf is not None:
            self.conf = conf
        if iou is not None:
            self.iou = iou
        if max_det is not None:
            self.max_det = max_det

    def _by_rank(self, outputs: dict[str, TensorSpec], rank: int) -> str:
        names = [n for n, s in outputs.items() if len(s.shape) == rank]
        if len(names) != 1:
            raise ModelError(
                f"{self.card.name}: cannot tell which output is which from {{{', '.join(f'{n}: {s.shape}' for n, s in outputs.items())}}}; "
                "set outputs.detections and outputs.protos in the card"
            )
        return names[0]

    def decode(self, outputs: dict[str, np.ndarray], transforms: list[ResizeTransform]) -> list[Instances]:
        det, protos = outputs[self.det_name], outputs[self.proto_name]
        self.check_shapes(det.shape, protos.shape)
        one = self._decode_end2end if self.end2end else self._decode_one
        return [one(det[i], protos[i], t) for i, t in enumerate(transforms)]

    def _decode_end2end(self, pred: np.ndarray, protos: np.ndarray, t: ResizeTransform) -> Instances:
        """K x (x1, y1, x2, y2, score, class, coefficients...): already the model's top-k, no NMS."""
        score = pred[:, 4]
        cls = np.rint(pred[:, 5]).astype(np.int64)
        valid = (cls >= 0) & (cls < self.nc)
        cls = np.where(valid, cls, 0)
        cand = np.flatnonzero((score > self.conf) & valid & self.keep_class[cls])
        if cand.size == 0:
            return Instances.empty(t.src_wh)
        keep = cand[np.argsort(-score[cand], kind="stable")[: self.max_det]]
        xyxy = t.to_src_xyxy(pred[keep, :4])
        return self._instances(pred[keep, 6:], protos, xyxy, cls[keep], score[keep], t)

    def _decode_one(self, pred: np.ndarray, protos: np.ndarray, t: ResizeTransform) -> Instances:
        nc = self.nc
        scores = pred[4 : 4 + nc]  # nc x N
        cls = scores.argmax(axis=0)
        conf = np.take_along_axis(scores, cls[None], axis=0)[0]
        cand = np.flatnonzero((conf > self.conf) & self.keep_class[cls])
        if cand.size == 0:
            return Instances.empty(t.src_wh)
        cx, cy, w, h = pred[0, cand], pred[1, cand], pred[2, cand], pred[3, cand]
        xyxy_in = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        kept = nms_xyxy(xyxy_in, conf[cand], self.iou, cls[cand], self.max_det)
        keep = cand[kept]
        xyxy = t.to_src_xyxy(xyxy_in[kept])
        coefs = pred[4 + nc :, keep].T  # K x nm
        return self._instances(coefs, protos, xyxy, cls[keep], conf[keep], t)

    def _instances(self, coefs, protos, xyxy, cls, score, t: ResizeTransform) -> Instances:
        class_id = cls.astype(np.int32)
        return Instances(
            xyxy=xyxy.astype(np.float32),
            masks=self._masks(coefs, protos, xyxy, t),
            class_id=class_id,
            score=score.astype(np.float32),
            labels=[self.labels[c] for c in class_id],
            groups=[self.group_of_class[c] for c in class_id],
        )

    def _masks(self, coefs: np.ndarray, protos: np.ndarray, xyxy: np.ndarray, t: ResizeTransform) -> np.ndarray:
        nm, ph, pw = protos.shape
        logits = (coefs @ protos.reshape(nm, -1)).reshape(-1, ph, pw).astype(np.float32)
        return masks_in_frame(logits, xyxy, t, self.input_wh, self.mask_logit)


def masks_in_frame(
    logits: np.ndarray, xyxy: np.ndarray, t: ResizeTransform, input_wh: tuple[int, int], mask_logit: float
) -> MaskCrops:
    """K prototype-resolution mask logits -> K frame masks, each sampled (bilinear) into its box
    only: one affine warp per instance maps frame pixels to prototype cells, undoing the
    letterbox and cropping at once. The numpy decoder and the fused graphs' host side both map
    masks through it, so the two agree by construction. The crops are pasted into K x H x W
    frame-size masks when `Instances.masks` is first read."""
    ph, pw = logits.shape[1:]
    sw, sh = t.src_wh
    origins, crops = np.zeros((len(logits), 2), np.int64), []
    # frame pixel centre (X + .5) -> input x = (X + .5) * scale + pad -> prototype cell x * pw / in_w - .5
    kx, ky = pw / input_wh[0], ph / input_wh[1]
    ax, ay = t.scale_x * kx, t.scale_y * ky
    for k, (x0, y0, x1, y1) in enumerate(xyxy):
        bx0, by0 = int(np.floor(x0)), int(np.floor(y0))
        bx1, by1 = min(int(np.ceil(x1)), sw), min(int(np.ceil(y1)), sh)
        if bx1 <= bx0 or by1 <= by0:
            crops.append(np.zeros((0, 0), bool))
            continue
        m = np.array(
            [[ax, 0, (bx0 + 0.5) * ax + t.pad_x * kx - 0.5], [0, ay, (by0 + 0.5) * ay + t.pad_y * ky - 0.5]],
            np.float64,
        )
        crop = cv2.warpAffine(
            np.ascontiguousarray(logits[k], np.float32),
            m,
            (bx1 - bx0, by1 - by0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        origins[k] = bx0, by0
        crops.append(crop > mask_logit)
    return MaskCrops((sw, sh), origins, crops)
