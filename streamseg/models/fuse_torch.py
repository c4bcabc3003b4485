"""The fused graph's pre- and postprocessing (models/fuse.py) as torch code, for the torch backend.

Same inputs and the same fixed-shape outputs as the ONNX fused graph, computed the same way, so
`FusedHost` reads either: frames uint8 [N, H, W, 3] BGR (+ the int32 resize tables) in;
`label_map` uint8 [N, h, w], or `boxes_xyxy`, `scores`, `class_id`, `mask_logits`, `count` out.
Everything runs on the engine's device (the GPU when there is one): the resize is cv2's fixed-point
arithmetic from the host's tables (int32, bit for bit as the ONNX graph), NMS is
torchvision.ops.batched_nms when torchvision imports, else `nms_xyxy` below (greedy, the rule
ONNX NonMaxSuppression and the numpy decoder use: score > conf, suppress IoU > iou).

Imports torch: only a model opened on the torch backend loads this module (`TorchFusion` is what
models/__init__.py hands the engine; the backend never imports the models layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamseg.models.fuse import MASK_MARGIN_CELLS


@dataclass(frozen=True)
class TorchFusion:
    """What the torch engine needs to run a card fused: the core ONNX model, and the torch modules
    of the fused graph's pre- and postprocessing (`modules`)."""

    core_path: Path
    card: object  # ModelCard
    decoder: object  # the card's numpy decoder, thresholds set
    resize_in_graph: bool

    @property
    def task(self) -> str:
        return self.card.task

    def modules(self, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(preprocess, postprocess); preprocess gives the model's input in `dtype`."""
        post = SemanticPost if self.card.task == "semantic" else YoloPost
        return Preprocess(self.card, self.resize_in_graph, dtype), post(self.card, self.decoder)


def _torchvision_nms():
    """torchvision.ops.batched_nms, or None where torchvision is absent or does not load
    (a torchvision built for another torch fails at import)."""
    try:
        from torchvision.ops import batched_nms
    except Exception:  # ImportError, or a RuntimeError from a mismatched build's operators
        return None
    return batched_nms


def nms_xyxy(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy class-aware NMS (torchvision's contract): indices kept, by descending score.
    Boxes of different `groups` never suppress each other (offset apart, as batched_nms does)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offset = groups.to(boxes.dtype) * (boxes.max() - boxes.min() + 1)
    b = boxes + offset[:, None]
    order = torch.argsort(scores, descending=True, stable=True)
    b = b[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    union = area[:, None] + area[None, :] - inter
    over = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter)) > iou
    alive = torch.ones(len(b), dtype=torch.bool, device=b.device)
    keep = []
    over_cpu, alive_cpu = over.cpu(), alive.cpu()  # the loop is sequential: run it on the host
    for i in range(len(b)):
        if alive_cpu[i]:
            keep.append(i)
            alive_cpu &= ~over_cpu[i]
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


class Preprocess(torch.nn.Module):
    """frames uint8 NHWC BGR (capture size + resize tables, or already resized) -> the model's input."""

    def __init__(self, card, resize_in_graph: bool, dtype: torch.dtype) -> None:
        super().__init__()
        spec = card.input
        self.resize_in_graph = resize_in_graph
        self.letterbox = spec.resize == "letterbox"
        self.rgb = spec.color == "rgb"
        self.nhwc = spec.layout == "NHWC"
        self.pad = float(spec.pad_value)
        self.dtype = dtype
        std = np.asarray(spec.std, np.float32)
        self.register_buffer("mul", torch.from_numpy((spec.scale / std).astype(np.float32).reshape(1, 3, 1, 1)))
        self.register_buffer(
            "add", torch.from_numpy((-np.asarray(spec.mean, np.float32) / std).astype(np.float32).reshape(1, 3, 1, 1))
        )

    def forward(self, frames: torch.Tensor, resize_x: torch.Tensor | None, resize_y: torch.Tensor | None):
        if self.resize_in_graph:
            tx, ty = resize_x[0].long(), resize_y[0].long()  # the batch shares one size
            f = frames.to(torch.int32)  # N, H, W, 3
            a0, a1 = resize_x[0, 2].view(1, 1, -1, 1), resize_x[0, 3].view(1, 1, -1, 1)
            h = torch.div(f[:, :, tx[0]] * a0 + f[:, :, tx[1]] * a1, 16, rounding_mode="floor")  # N, H, dw, 3
            b0, b1 = resize_y[0, 2].view(1, -1, 1, 1), resize_y[0, 3].view(1, -1, 1, 1)
            v = torch.div(h[:, ty[0]] * b0, 65536, rounding_mode="floor") + torch.div(
                h[:, ty[1]] * b1, 65536, rounding_mode="floor"
            )
            v = torch.div(v + 2, 4, rounding_mode="floor")  # N, dh, dw, 3
            x = v.permute(0, 3, 1, 2).to(torch.float32)
            if self.letterbox:  # outside the content v is 0: the pad grey goes there
                inside = resize_y[0, 4].view(-1, 1) * resize_x[0, 4].view(1, -1)
                x = x + (1 - inside).to(torch.float32) * self.pad
        else:
            x = frames.permute(0, 3, 1, 2).to(torch.float32)
        if self.rgb:
            x = x.flip(1)
        x = x * self.mul + self.add
        if self.nhwc:
            x = x.permute(0, 2, 3, 1)
        return x.contiguous().to(self.dtype)


class SemanticPost(torch.nn.Module):
    """The model's outputs -> `label_map` uint8 [N, h, w], as fuse._semantic_post computes it."""

    def __init__(self, card, decoder) -> None:
        super().__init__()
        self.logits = card.format == "semantic-logits"
        if self.logits:
            self.heads = [(name, torch.from_numpy(np.asarray(lut, np.int64))) for name, lut in decoder.heads]
        else:
            self.ids = decoder.output
            self.n_labels = len(decoder.labels)

    def forward(self, outs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.logits:
            result = None
            for name, lut in self.heads:
                scores = outs[name].float()
                lut = lut.to(scores.device)
                if len(lut) == 2 and int(lut[0]) == 0:  # channel 1 wins where strictly larger
                    win = scores[:, 1] > scores[:, 0]
                    lab = torch.where(win, lut[1], torch.zeros((), dtype=torch.int64, device=win.device))
                    result = lab if result is None else torch.where(win, lut[1], result)
                    continue
                lab = lut[scores.argmax(1)]  # first maximum, as ArgMax and numpy
                result = lab if result is None else torch.where(lab > 0, lab, result)
        else:
            ids = outs[self.ids]
            if ids.dim() == 4:
                ids = ids[:, 0]
            if ids.is_floating_point():
                ids = torch.round(ids.float())
            ids = ids.to(torch.int64)
            result = torch.where((ids > -1) & (ids < self.n_labels), ids, torch.zeros_like(ids))
        return {"label_map": result.to(torch.uint8)}


class YoloPost(torch.nn.Module):
    """YOLO-seg anchors + prototypes -> the fused graph's fixed slots (fuse._yolo_post): per anchor its
    best class and score, the card's class filter, class-aware NMS, the best `max_det` by score, and
    each slot's mask logits at prototype resolution cropped to its box plus the host's margin."""

    def __init__(self, card, decoder) -> None:
        super().__init__()
        self.det, self.protos = decoder.det_name, decoder.proto_name
        self.nc, self.m = decoder.nc, int(decoder.max_det)
        self.conf, self.iou = float(decoder.conf), float(decoder.iou)
        self.register_buffer("keep_class", torch.from_numpy(np.asarray(decoder.keep_class, bool)))
        self.in_wh = card.input.size_wh
        self.batched_nms = _torchvision_nms()

    def _nms(self, boxes, scores, groups):
        if self.batched_nms is not None:
            return self.batched_nms(boxes, scores, groups, self.iou)
        return nms_xyxy(boxes, scores, groups, self.iou)

    def forward(self, outs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        det, protos = outs[self.det].float(), outs[self.protos].float()
        n, _, a = det.shape
        nc, m = self.nc, self.m
        nm, ph, pw = protos.shape[1:]
        box = det[:, :4].transpose(1, 2)  # N, A, 4 (cx, cy, w, h)
        half = box[..., 2:] / 2
        boxes = torch.cat([box[..., :2] - half, box[..., :2] + half], 2)  # N, A, 4 xyxy
        conf, cls = det[:, 4 : 4 + nc].max(1)  # N, A: the first maximum
        conf = torch.where(self.keep_class[cls], conf, torch.zeros_like(conf))
        # candidates: score > conf; each anchor competes in its own best class, per frame
        b_idx, a_idx = torch.nonzero(conf > self.conf, as_tuple=True)
        kept = self._nms(boxes[b_idx, a_idx], conf[b_idx, a_idx], b_idx * nc + cls[b_idx, a_idx])
        dense = torch.full((n, a + m), -1.0, device=det.device)  # M slots of -1 after the anchors
        dense[b_idx[kept], a_idx[kept]] = conf[b_idx[kept], a_idx[kept]]
        values, index = dense.topk(m, dim=1, largest=True, sorted=True)
        valid = values > -0.5  # N, M
        index = index.clamp(max=a - 1)  # empty slots point at a real anchor; masked below
        sel_boxes = torch.gather(boxes, 1, index[..., None].expand(n, m, 4))
        sel_cls = torch.gather(cls, 1, index)
        coefs = det[:, 4 + nc : 4 + nc + nm].transpose(1, 2)  # N, A, nm
        sel_coefs = torch.gather(coefs, 1, index[..., None].expand(n, m, nm))
        logits = (sel_coefs @ protos.reshape(n, nm, ph * pw)).reshape(n, m, ph, pw)
        k = torch.tensor([pw / self.in_wh[0], ph / self.in_wh[1]] * 2, device=det.device)
        bp = (sel_boxes * k)[..., None, None]  # N, M, 4, 1, 1
        cx = torch.arange(pw, device=det.device, dtype=torch.float32) + 0.5
        cy = torch.arange(ph, device=det.device, dtype=torch.float32).view(ph, 1) + 0.5
        mg = MASK_MARGIN_CELLS
        inside = (cx > bp[:, :, 0] - mg) & (cx < bp[:, :, 2] + mg) & (cy > bp[:, :, 1] - mg) & (cy < bp[:, :, 3] + mg)
        return {
            "boxes_xyxy": torch.where(valid[..., None], sel_boxes, torch.zeros_like(sel_boxes)),
            "scores": torch.where(valid, values, torch.zeros_like(values)),
            "class_id": torch.where(valid, sel_cls, torch.full_like(sel_cls, -1)).to(torch.int32),
            "mask_logits": torch.where(inside, logits, torch.full_like(logits, -1e4)),
            "count": valid.sum(1).to(torch.int32),
        }
