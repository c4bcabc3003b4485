"""The two small real-time networks trained on the synthetic scenes (PyTorch; training only).

SegNetLite: semantic segmentation, a 4-stage depthwise-separable encoder, a context
module at stride 16 (dilated blocks, a stride-32 branch and the image's global mean, so a
flat patch of a near truck is judged by the whole truck) and a 3-step decoder with
skips ending at stride 2; logits upsampled to the input size and arg-maxed in the graph,
so the export is `semantic-argmax` (class ids) and the runtime does the argmax.

YoloSegLite: instance segmentation in the YOLOv8-seg output format: anchor-free heads at
strides 8 and 16 predict (l, t, r, b) distances, class scores and mask coefficients;
prototypes come at stride 4. The graph decodes boxes to (cx, cy, w, h) input pixels and
applies the sigmoid to class scores, exactly like an Ultralytics export.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DS(nn.Module):
    """Depthwise 3x3 (dilated: a wider view at the same cost) + pointwise 1x1, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, s: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.dw = conv_bn(cin, cin, 3, s, groups=cin, dilation=dilation)
        self.pw = conv_bn(cin, cout, 1)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.pw(self.dw(x))
        return x + y if self.res else y


class Encoder(nn.Module):
    def __init__(self, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = widths
        self.s2 = conv_bn(3, c1, 3, 2)
        self.s4 = nn.Sequential(conv_bn(c1, c2, 3, 2), DS(c2, c2))
        self.s8 = nn.Sequential(DS(c2, c3, 2), DS(c3, c3), DS(c3, c3))
        self.s16 = nn.Sequential(DS(c3, c4, 2), DS(c4, c4), DS(c4, c4))

    def forward(self, x):
        x2 = self.s2(x)
        x4 = self.s4(x2)
        x8 = self.s8(x4)
        x16 = self.s16(x8)
        return x2, x4, x8, x16


def up_to(x, ref):
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class Context(nn.Module):
    """Stride-16 features seen at three ranges: dilated blocks (1, 2, 4, 8), a stride-32 branch,
    and the global mean (as in PSPNet's pooling pyramid), fused by a 1x1."""

    def __init__(self, c: int, c32: int) -> None:
        super().__init__()
        self.local = nn.Sequential(*(DS(c, c, dilation=d) for d in (1, 2, 4, 8)))
        self.s32 = nn.Sequential(DS(c, c32, 2), DS(c32, c32), DS(c32, c32))
        self.glob = conv_bn(c32, c, 1)
        self.fuse = conv_bn(c + c32 + c, c, 1)

    def forward(self, x):
        y = self.local(x)
        z = self.s32(y)
        g = self.glob(z.mean((2, 3), keepdim=True)).expand(-1, -1, y.shape[2], y.shape[3])
        return self.fuse(torch.cat([y, up_to(z, y), g], 1))


class SegNetLite(nn.Module):
    def __init__(self, num_classes: int, widths=(16, 32, 64, 96), c32: int = 128) -> None:
        super().__init__()
        self.enc = Encoder(widths)
        c1, c2, c3, c4 = widths
        self.ctx = Context(c4, c32)
        self.lat8 = conv_bn(c3, c3, 1)
        self.dec8 = DS(c4 + c3, c3)
        self.lat4 = conv_bn(c2, c2, 1)
        self.dec4 = DS(c3 + c2, c2)
        # a half-resolution step keeps thin things (people, markings) sharp; the stride-4
        # features are narrowed before they are upsampled, since this step's full-width
        # depthwise convolution was the largest share of a training step
        self.red2 = conv_bn(c2, c1, 1)
        self.dec2 = DS(c1 + c1, c1)
        self.head = nn.Conv2d(c1, num_classes, 1)
        self.export_argmax = False

    def logits_s2(self, x):
        """Class scores at half the input resolution, where the decoder ends (what training scores)."""
        x2, x4, x8, x16 = self.enc(x)
        y = self.ctx(x16)
        y = self.dec8(torch.cat([up_to(y, x8), self.lat8(x8)], 1))
        y = self.dec4(torch.cat([up_to(y, x4), self.lat4(x4)], 1))
        y = self.dec2(torch.cat([up_to(self.red2(y), x2), x2], 1))
        return self.head(y)

    def forward(self, x):
        logits = F.interpolate(self.logits_s2(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.export_argmax:
            return logits.argmax(1)
        return logits


class YoloSegLite(nn.Module):
    def __init__(self, num_classes: int, nm: int = 16, widths=(16, 32, 64, 96)) -> None:
        super().__init__()
        self.nc, self.nm = num_classes, nm
        self.enc = Encoder(widths)
        c1, c2, c3, c4 = widths
        self.p4 = nn.Sequential(DS(c4, c4), DS(c4, c4))
        self.p3 = DS(c4 + c3, c3)
        self.p4_out = DS(c4 + c3, c4)  # P3 fed back down to P4 (PAN)
        self.down3 = conv_bn(c3, c3, 3, 2)
        self.proto = nn.Sequential(DS(c3 + c2, c2), conv_bn(c2, c2, 3), nn.Conv2d(c2, nm, 1))
        no = 4 + num_classes + nm
        self.head3 = nn.Sequential(DS(c3, c3), nn.Conv2d(c3, no, 1))
        self.head4 = nn.Sequential(DS(c4, c4), nn.Conv2d(c4, no, 1))
        self.strides = (8, 16)
        self.export = False
        prior = -4.6  # sigmoid ~ 0.01: few positives at the start, as in RetinaNet
        for head in (self.head3, self.head4):
            nn.init.constant_(head[-1].bias[4 : 4 + num_classes], prior)

    def features(self, x):
        _, x4, x8, x16 = self.enc(x)
        p4 = self.p4(x16)
        p3 = self.p3(torch.cat([up_to(p4, x8), x8], 1))
        p4 = self.p4_out(torch.cat([p4, self.down3(p3)], 1))
        protos = self.proto(torch.cat([up_to(p3, x4), x4], 1))
        return [self.head3(p3), self.head4(p4)], protos

    @staticmethod
    def grid(h: int, w: int, stride: int, device) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        return torch.stack([(xs.flatten() + 0.5) * stride, (ys.flatten() + 0.5) * stride], 1)  # A x 2 cell centres

    def decode(self, heads):
        """Raw head maps -> (boxes xyxy [B,A,4], class logits [B,A,nc], coefs [B,A,nm], centres [A,2], strides [A])."""
        boxes, cls, coef, centres, strides = [], [], [], [], []
        for h, s in zip(heads, self.strides, strict=True):
            b, _, gh, gw = h.shape
            h = h.flatten(2).transpose(1, 2)  # B x A x no
            c = self.grid(gh, gw, s, h.device)
            ltrb = F.softplus(h[..., :4]) * s
            boxes.append(torch.cat([c - ltrb[..., :2], c + ltrb[..., 2:]], -1))
            cls.append(h[..., 4 : 4 + self.nc])
            coef.append(h[..., 4 + self.nc :])
            centres.append(c)
            strides.append(torch.full((gh * gw,), float(s), device=h.device))
        return torch.cat(boxes, 1), torch.cat(cls, 1), torch.cat(coef, 1), torch.cat(centres), torch.cat(strides)

    def forward(self, x):
        heads, protos = self.features(x)
        if not self.export:
            return heads, protos
        boxes, cls, coef, _, _ = self.decode(heads)
        xywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)
        out = torch.cat([xywh, cls.sigmoid(), coef], -1).transpose(1, 2)  # B x (4+nc+nm) x A
        return out, protos
