"""Train the bundled models on synthetic driving scenes and export them as ONNX.

    python -m streamseg.synth.train [--task semantic|instance|both] [--out engines/] [--seed 0]
                                    [--iters N] [--train-seeds 1000-1299] [--people 3] [--dice 1.0] [--eval-seeds 0-4]

Needs the `train` extra (PyTorch, CPU build). Deterministic for a seed: the scenes, the
sampling, the initial weights and the update order are all seeded, and torch runs with
deterministic algorithms on the CPU. Training seeds start at 1000; evaluation seeds
(0-99) are never trained on. After training, each model is evaluated with the
pipeline's own pre/postprocessing and the recipe, seed and metrics go into its card.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from streamseg.models.preprocess import ResizeTransform
from streamseg.synth.scene import LABELS, SCENE_VERSION, DrivingScene

DEFAULT_ITERS = {"semantic": 1800, "instance": 1600}  # the bundled models' recipe
INPUT_WH = (640, 360)  # 1280x720 halved: people 20 px wide stay a few cells wide
FRAME_WH = (1280, 720)
INSTANCE_CLASSES = ["car", "person"]
PROTO_STRIDE = 4
MIN_TRAIN_AREA = 6  # input pixels; smaller visible fragments are not taught as objects


def parse_range(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MB in the heap instead of returning them to the OS.

    A training step allocates and frees the same large activation and gradient tensors
    every time; glibc's default maps each one afresh, and zero-filling those new pages was
    a third of a step in torch's profiler (a step 12-18% faster with this). False where
    there is no glibc (the setting is then simply not made).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        return all(
            libc.mallopt(k, v) == 1
            for k, v in ((m_mmap_threshold, 32 << 20), (m_trim_threshold, 1 << 30), (m_top_pad, 256 << 20))
        )
    except (OSError, AttributeError):
        return False


# data ------------------------------------------------------------------------------
def _render_seed(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seed, n, step, people = args
    cv2.setNumThreads(1)
    scene = DrivingScene(FRAME_WH, 30.0, seed, people=people)
    t = ResizeTransform.fit(FRAME_WH, INPUT_WH, "letterbox")
    imgs, sems, insts = [], [], []
    offset = (seed * 7) % step
    for k in range(n):
        img, label, inst = scene.render(offset + k * step)
        imgs.append(t.apply(img, 114))
        x0, y0, x1, y1 = t.content_rect()
        sem = np.full(INPUT_WH[::-1], 255, np.uint8)
        sem[y0:y1, x0:x1] = cv2.resize(label, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        ins = np.zeros(INPUT_WH[::-1], np.int32)
        ins[y0:y1, x0:x1] = cv2.resize(inst, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        sems.append(sem)
        insts.append(ins)
    return np.stack(imgs), np.stack(sems), np.stack(insts)


def sample_weights(data: dict[str, np.ndarray], person_weight: float = 4.0) -> np.ndarray:
    """Draw frames with people in them `person_weight` times as often: people are few and the bars for them high."""
    person = LABELS.index("person")
    has = np.array([np.count_nonzero(s == person) > 50 for s in data["semantic"]])
    w = 1.0 + (person_weight - 1.0) * has
    return w / w.sum()


def load_or_render(
    cache: str | None, seeds: list[int], per_seed: int, step: int, people: float = 1.0
) -> dict[str, np.ndarray]:
    """The training frames, from `cache` (a folder of .npy files) when it holds them for these seeds."""
    key = f"v{SCENE_VERSION}_{seeds[0]}-{seeds[-1]}x{per_seed}s{step}_{INPUT_WH[0]}x{INPUT_WH[1]}" + (
        f"p{people:g}" if people != 1 else ""
    )
    folder = Path(cache) / key if cache else None
    if folder is not None and (folder / "instance.npy").is_file():
        return {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ("image", "semantic", "instance")}
    data = render_dataset(seeds, per_seed, step, people)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for k, v in data.items():
            np.save(folder / f"{k}.npy", v)
    return data


def render_dataset(
    seeds: list[int], per_seed: int, step: int, people: float = 1.0, workers: int = 2
) -> dict[str, np.ndarray]:
    t0 = time.time()
    jobs = [(s, per_seed, step, people) for s in seeds]
    if workers <= 1:
        parts = [_render_seed(j) for j in jobs]
    else:  # spawn, not fork: forking a process whose torch/OpenMP threads already ran can deadlock
        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_render_seed, jobs)
    data = {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(("image", "semantic", "instance"))}
    print(f"rendered {len(data['image'])} frames from {len(seeds)} seeds in {time.time() - t0:.0f} s", flush=True)
    return data


def to_tensor(images_bgr: np.ndarray):
    """NHWC uint8 BGR -> NCHW float RGB 0..1 in channels-last memory (the layout oneDNN's CPU
    convolutions run fastest in: a training step 1.4x faster than in contiguous NCHW)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images_bgr[..., ::-1])).permute(0, 3, 1, 2)
    return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)


def augment(rng: np.random.Generator, img: np.ndarray, *maps: np.ndarray):
    """Zoom-in crops (near objects are rarer than far ones), horizontal flip, brightness/contrast jitter."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        zoom = rng.uniform(1.1, 2.0)
        ch, cw = int(h / zoom), int(w / zoom)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        maps = tuple(
            cv2.resize(np.ascontiguousarray(m[y0 : y0 + ch, x0 : x0 + cw]), (w, h), interpolation=cv2.INTER_NEAREST)
            for m in maps
        )
    if rng.random() < 0.5:
        img = img[:, ::-1]
        maps = tuple(m[:, ::-1] for m in maps)
    a = rng.uniform(0.7, 1.3)
    b = rng.uniform(-25, 25)
    img = np.clip(img.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    return (img, *maps)


def _optimizer(model, lr: float, iters: int):
    """AdamW with a one-cycle schedule: the same recipe for both models."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iters, pct_start=0.1)


def _batches(data, rng: np.random.Generator, iters: int, batch: int, keys: tuple[str, ...], person_weight: float):
    """(iteration, augmented samples): frames drawn with sample_weights, each (image, *maps of `keys`)."""
    n = len(data["image"])
    p = sample_weights(data, person_weight)
    for it in range(iters):
        idx = rng.choice(n, batch, p=p)
        yield it, [augment(rng, data["image"][i], *(data[k][i] for k in keys)) for i in idx]


# semantic --------------------------------------------------------------------------
def soft_labels(y, factor: int = 2):
    """Labels (N,H,W; 255 = unlabelled) -> each class's share of every factor x factor block
    (N,C,H/f,W/f) and the block's labelled share (N,H/f,W/f).

    The scores at stride 2 are compared with the shares of the 2x2 pixels each one stands
    for: picking one pixel per block instead shifted every edge by half a pixel and dropped
    half of each one-pixel lane marking (lane IoU 0.755 -> 0.662, people 0.703 -> 0.692).
    """
    import torch

    n, h, w = y.shape
    counts = torch.zeros(n, len(LABELS), h // factor, w // factor)
    for dy in range(factor):  # one scatter per position in the block, at the small size
        for dx in range(factor):
            yk = y[:, dy::factor, dx::factor]
            valid = yk != 255
            counts.scatter_add_(1, torch.where(valid, yk, 0)[:, None], valid[:, None].float())
    labelled = counts.sum(1)
    return counts / labelled.clamp(min=1e-6)[:, None], labelled / factor**2


def weighted_soft_cross_entropy(logits, probs, labelled, weights):
    """The class-weighted cross-entropy against class shares; with one-hot shares it equals
    F.cross_entropy(weight=weights, ignore_index=255): the sum over pixels divided by the
    sum of the target classes' weights."""
    import torch

    w = weights[None, :, None, None] * probs * labelled[:, None]
    return -(w * torch.log_softmax(logits, 1)).sum() / w.sum().clamp(min=1e-6)


def person_dice_loss(logits, probs, labelled):
    """1 - soft Dice of the person class over the batch: the bar is an IoU pooled over all
    pixels, which the per-pixel cross-entropy alone does not see."""
    import torch

    person = LABELS.index("person")
    p = torch.softmax(logits, 1)[:, person] * labelled
    g = probs[:, person] * labelled
    return 1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1)


def train_semantic(data, iters: int, seed: int, batch: int = 8, person_weight: float = 4.0, dice_weight: float = 0.0):
    import torch

    from streamseg.synth.nets import SegNetLite

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SegNetLite(len(LABELS)).to(memory_format=torch.channels_last)
    weights = torch.from_numpy(class_weights(data["semantic"]))
    opt, sched = _optimizer(model, 4e-3, iters)
    t0 = time.time()
    model.train()
    for it, pairs in _batches(data, rng, iters, batch, ("semantic",), person_weight):
        x = to_tensor(np.stack([p[0] for p in pairs]))
        # scored where the decoder ends (stride 2): the full-size softmax and its upsampling
        # were a fifth of a step and teach nothing the bilinear upsampling of the scores
        # does not give
        probs, labelled = soft_labels(torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64)))
        logits = model.logits_s2(x)
        loss = weighted_soft_cross_entropy(logits, probs, labelled, weights)
        if dice_weight:
            loss = loss + dice_weight * person_dice_loss(logits, probs, labelled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if it % 50 == 0 or it == iters - 1:
            print(f"semantic it {it:5d}/{iters} loss {loss.item():.4f} {time.time() - t0:6.0f}s", flush=True)
    return model, time.time() - t0


# instance --------------------------------------------------------------------------
def instance_targets(inst_map: np.ndarray, sem_map: np.ndarray):
    """GT boxes (xyxy input px), classes and masks (proto resolution) from one letterboxed sample.

    One pass over the foreground pixels for all instances (boxes by sorted reductions, the
    class by a joint histogram), not a full-frame comparison per instance.
    """
    ph, pw = inst_map.shape[0] // PROTO_STRIDE, inst_map.shape[1] // PROTO_STRIDE
    empty = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros((0, ph, pw), bool)
    fg = np.flatnonzero(inst_map.ravel() > 0)
    if fg.size == 0:
        return empty
    ids_fg = inst_map.ravel()[fg]
    order = np.argsort(ids_fg, kind="stable")
    fg, ids_fg = fg[order], ids_fg[order]
    ids, starts, area = np.unique(ids_fg, return_index=True, return_counts=True)
    ys, xs = np.divmod(fg, inst_map.shape[1])
    box = np.stack(
        [
            np.minimum.reduceat(xs, starts),
            np.minimum.reduceat(ys, starts),
            np.maximum.reduceat(xs, starts) + 1,
            np.maximum.reduceat(ys, starts) + 1,
        ],
        1,
    )
    k = np.repeat(np.arange(len(ids)), area)
    hist = np.bincount(k * 256 + sem_map.ravel()[fg], minlength=len(ids) * 256).reshape(len(ids), 256)
    names = np.array(LABELS + [""] * (256 - len(LABELS)))[hist.argmax(1)]
    keep = (area >= MIN_TRAIN_AREA) & np.isin(names, INSTANCE_CLASSES)
    if not keep.any():
        return empty
    small = cv2.resize(inst_map.astype(np.float32), (pw, ph), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    classes = np.array([INSTANCE_CLASSES.index(n) for n in names[keep]], np.int64)
    return box[keep].astype(np.float32), classes, small[None] == ids[keep][:, None, None]


def _giou(a, b):
    import torch

    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    return iou - (hull - union) / hull.clamp(min=1e-6), iou


def assign(centres, strides, gt_boxes, radius: float = 2.5):
    """Anchor -> GT index (or -1): centre sampling inside the box, near its centre, at a fitting scale."""
    import torch

    a = len(centres)
    if len(gt_boxes) == 0:
        return torch.full((a,), -1, dtype=torch.long)
    cx, cy = centres[:, 0:1], centres[:, 1:2]
    x0, y0, x1, y1 = (gt_boxes[:, i][None] for i in range(4))
    gcx, gcy = (x0 + x1) / 2, (y0 + y1) / 2
    s = strides[:, None]
    inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
    near = ((cx - gcx).abs() < radius * s) & ((cy - gcy).abs() < radius * s)
    side = torch.maximum(x1 - x0, y1 - y0)
    scale_ok = ((s == 8) & (side <= 96)) | ((s == 16) & (side >= 32))
    cand = inside & near & scale_ok
    # an object too small to contain any anchor centre gets its nearest stride-8 anchor
    dist = (cx - gcx) ** 2 + (cy - gcy) ** 2 + (s != 8) * 1e9
    empty = ~cand.any(0)
    if empty.any():
        nearest = dist[:, empty].argmin(0)
        cand[nearest, torch.nonzero(empty).flatten()] = True
    area = ((x1 - x0) * (y1 - y0)).expand(a, -1)
    area = torch.where(cand, area, torch.full_like(area, float("inf")))
    best = area.argmin(1)
    return torch.where(cand.any(1), best, torch.full_like(best, -1))


def score_targets(iou, gt_index, n_gt: int, kind: str = "one"):
    """What each assigned anchor is taught to score (see `train_instance`): 1, or ("iou") its box's
    IoU with its object over the best IoU among that object's anchors."""
    import torch

    if kind == "one":
        return torch.ones_like(iou)
    q = iou.detach().clamp(min=0.0)
    best = torch.zeros(n_gt, dtype=q.dtype).scatter_reduce(0, gt_index, q, "amax", include_self=False)
    return (q / best[gt_index].clamp(min=1e-6)).clamp(max=1.0)


def _num(v) -> float:
    """A loss term for the log: a tensor (detached) or still the 0.0 it started as."""
    return float(v.detach()) if hasattr(v, "detach") else float(v)


def train_instance(data, iters: int, seed: int, batch: int = 8, person_weight: float = 4.0, cls_target: str = "one"):
    """`cls_target`: what an anchor assigned to an object is taught to score. "one": 1 for every
    assigned anchor (an anchor at the object's edge, with a poor box, learns to be as sure as the
    best one: NMS then keeps a second, shifted box of one person). "iou": its box's IoU with the
    object over the best IoU among that object's anchors (the best-placed anchor 1, the others in
    proportion; the quality-aware score of VarifocalNet and YOLOv8's task-aligned assigner)."""
    import torch
    from torch.nn import functional as F

    from streamseg.synth.nets import YoloSegLite

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    model = YoloSegLite(len(INSTANCE_CLASSES)).to(memory_format=torch.channels_last)
    opt, sched = _optimizer(model, 3e-3, iters)
    t0 = time.time()
    model.train()
    for it, samples in _batches(data, rng, iters, batch, ("instance", "semantic"), person_weight):
        x = to_tensor(np.stack([s[0] for s in samples]))
        heads, protos = model(x)
        boxes, cls_logit, coef, centres, strides = model.decode(heads)
        loss_cls = loss_box = loss_mask = 0.0
        npos = 0
        for b, (_, inst_map, sem_map) in enumerate(samples):
            gb, gc, gm = instance_targets(np.ascontiguousarray(inst_map), np.ascontiguousarray(sem_map))
            gb_t = torch.from_numpy(gb)
            match = assign(centres, strides, gb_t)
            pos = torch.nonzero(match >= 0).flatten()
            target = torch.zeros_like(cls_logit[b])
            if len(pos):
                g = match[pos]
                giou, iou = _giou(boxes[b, pos], gb_t[g])
                target[pos, torch.from_numpy(gc)[g]] = score_targets(iou, g, len(gb_t), cls_target)
                loss_box = loss_box + (1 - giou).sum()
                ph, pw = protos.shape[-2:]
                logits = (coef[b, pos] @ protos[b].flatten(1)).view(-1, ph, pw)
                gt = torch.from_numpy(gm)[g].float()
                # only pixels inside the GT box count (the decoder crops to the box)
                yy = (torch.arange(ph).float()[None, :, None] + 0.5) * PROTO_STRIDE
                xx = (torch.arange(pw).float()[None, None, :] + 0.5) * PROTO_STRIDE
                bx = gb_t[g]
                crop = (
                    (xx >= bx[:, 0, None, None])
                    & (xx <= bx[:, 2, None, None])
                    & (yy >= bx[:, 1, None, None])
                    & (yy <= bx[:, 3, None, None])
                )
                crop = crop.float()
                bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
                loss_mask = loss_mask + ((bce * crop).sum((1, 2)) / crop.sum((1, 2)).clamp(min=1)).sum()
                npos += len(pos)
            loss_cls = loss_cls + F.binary_cross_entropy_with_logits(cls_logit[b], target, reduction="sum")
        norm = max(npos, 1)
        loss = (loss_cls + 2.0 * loss_box + loss_mask) / norm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        if it % 50 == 0 or it == iters - 1:
            print(
                f"instance it {it:5d}/{iters} loss {loss.item():.4f} (cls {_num(loss_cls) / norm:.3f} box {_num(loss_box) / norm:.3f} "
                f"mask {_num(loss_mask) / norm:.3f}, {npos / batch:.0f} pos/img) {time.time() - t0:6.0f}s",
                flush=True,
            )
    return model, time.time() - t0


# export ----------------------------------------------------------------------------
def export_onnx(model, path: Path, output_names: list[str]) -> None:
    import torch

    model.eval()
    x = torch.zeros(1, 3, INPUT_WH[1], INPUT_WH[0])
    dyn = {"images": {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
    torch.onnx.export(
        model,
        x,
        str(path),
        input_names=["images"],
        output_names=output_names,
        dynamic_axes=dyn,
        opset_version=17,
        dynamo=False,
    )


def class_weights(semantic: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Inverse-frequency class weights for the cross-entropy (rare people and markings count more)."""
    counts = np.bincount(semantic[semantic != 255].ravel(), minlength=len(LABELS)).astype(np.float64)
    w = (counts.sum() / np.maximum(counts, 1)) ** power
    return (w / w.mean()).astype(np.float32)


def add_logit_bias(onnx_path: Path, bias: np.ndarray, out_path: Path) -> None:
    """Insert `logits + bias` before the graph's ArgMax.

    A weighted cross-entropy learns scores tilted by log(weight) towards rare classes;
    adding -alpha * log(weight) takes (part of) that tilt back out, so masks of rare
    classes are not fattened. alpha is chosen on validation seeds, not evaluation seeds.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    (node,) = [n for n in g.node if n.op_type == "ArgMax"]
    name = node.input[0]
    g.initializer.append(numpy_helper.from_array(bias.reshape(1, -1, 1, 1).astype(np.float32), "logit_bias"))
    g.node.insert(list(g.node).index(node), helper.make_node("Add", [name, "logit_bias"], [name + "_biased"]))
    node.input[0] = name + "_biased"
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))


def calibrate_semantic(onnx_path: Path, card: dict, weights: np.ndarray, seeds: list[int], frames: int) -> float:
    """Pick alpha in -alpha*log(weights) by mean IoU of road, car and person on validation seeds."""
    import tempfile

    from streamseg.evaluate import evaluate

    best = (-1.0, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for alpha in (0.0, 0.5, 0.75, 1.0):
            trial = Path(tmp) / f"a{alpha}.onnx"
            add_logit_bias(onnx_path, -alpha * np.log(weights), trial)
            card_path = Path(tmp) / f"a{alpha}.yaml"
            write_card(card_path, {**card, "file": str(trial)})
            iou = evaluate(
                {"semantic": str(card_path)},
                [f"synthetic://driving?size={FRAME_WH[0]}x{FRAME_WH[1]}&seed={s}&frames={frames}" for s in seeds],
            ).summary()["semantic_iou"]
            score = float(np.mean([iou["road"], iou["car"], iou["person"]]))
            print(f"calibration alpha {alpha}: {iou} -> {score:.4f}", flush=True)
            best = max(best, (score, alpha))
    return best[1]


def write_card(path: Path, card: dict) -> None:
    path.write_text(yaml.safe_dump(card, sort_keys=False, width=100))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["semantic", "instance", "both"], default="both")
    ap.add_argument("--out", default="engines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, help="optimizer steps (default: semantic 1800, instance 1600)")
    ap.add_argument("--train-seeds", default="1000-1299")
    ap.add_argument("--per-seed", type=int, default=10)
    ap.add_argument("--person-weight", type=float, default=4.0, help="how much more often frames with people are drawn")
    ap.add_argument(
        "--people", type=float, default=3.0, help="pedestrians per training scene, relative to the evaluated scenes"
    )
    ap.add_argument("--dice", type=float, default=1.0, help="weight of the person Dice loss beside the cross-entropy")
    ap.add_argument(
        "--cls-target",
        choices=["one", "iou"],
        default="one",
        help="instance: what an assigned anchor learns to score (1, or its box's IoU over the best one's)",
    )
    ap.add_argument("--eval-seeds", default="0-4")
    ap.add_argument("--val-seeds", default="900-905", help="for calibration; neither trained nor evaluated on")
    ap.add_argument("--eval-frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument(
        "--cache", default=None, help="folder to keep the rendered training frames in (reused when present)"
    )
    ap.add_argument("--render-only", action="store_true", help="render the training frames into --cache and stop")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the cards in --out and update their metrics")
    args = ap.parse_args(argv)
    tasks = ["semantic", "instance"] if args.task == "both" else [args.task]
    out = Path(args.out)
    if args.eval_only:
        for task in tasks:
            card_path = out / f"synth-{task}.yaml"
            card = yaml.safe_load(card_path.read_text())
            card["training"]["metrics"] = evaluate_card(card_path, parse_range(args.eval_seeds), args.eval_frames)
            write_card(card_path, card)
            print(json.dumps(card["training"]["metrics"], indent=1), flush=True)
        return 0
    try:
        import torch
    except ImportError:
        print(
            "streamseg.synth.train needs PyTorch: pip install -e '.[train]' (or pip install torch==2.13.0)",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.use_deterministic_algorithms(True)
    out.mkdir(parents=True, exist_ok=True)
    data = load_or_render(args.cache, parse_range(args.train_seeds), args.per_seed, 9, args.people)
    if args.render_only:
        return 0
    recipe = {
        "command": "python -m streamseg.synth.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "train_seeds": args.train_seeds,
        "frames_per_seed": args.per_seed,
        "person_weight": args.person_weight,
        "people": args.people,
        "frames": int(len(data["image"])),
        "torch": str(torch.__version__),
        "threads": args.threads,
    }
    for task in tasks:
        iters = args.iters or DEFAULT_ITERS[task]
        task_recipe = {**recipe, "iterations": iters} | (
            {"dice": args.dice} if task == "semantic" else {"cls_target": args.cls_target}
        )
        if task == "semantic":
            model, secs = train_semantic(
                data, iters, args.seed, person_weight=args.person_weight, dice_weight=args.dice
            )
            model.export_argmax = True
            onnx_path = out / "synth-semantic.onnx"
            export_onnx(model, onnx_path, ["labels"])
            card = semantic_card(onnx_path.name, {**task_recipe, "train_seconds": round(secs)})
            weights = class_weights(data["semantic"])
            alpha = calibrate_semantic(onnx_path, card, weights, parse_range(args.val_seeds), 30)
            add_logit_bias(onnx_path, -alpha * np.log(weights), onnx_path)
            card["training"]["recipe"]["logit_bias_alpha"] = alpha
        else:
            model, secs = train_instance(
                data, iters, args.seed, person_weight=args.person_weight, cls_target=args.cls_target
            )
            model.export = True
            onnx_path = out / "synth-instance.onnx"
            export_onnx(model, onnx_path, ["output0", "output1"])
            card = instance_card(onnx_path.name, {**task_recipe, "train_seconds": round(secs)})
        card_path = out / f"synth-{task}.yaml"
        write_card(card_path, card)
        print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB) and {card_path}", flush=True)
        try:
            metrics = evaluate_card(card_path, parse_range(args.eval_seeds), args.eval_frames)
        except Exception as e:  # keep the trained model; --eval-only can fill the metrics in later
            print(f"evaluation failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        card["training"]["metrics"] = metrics
        write_card(card_path, card)
        print(json.dumps(metrics, indent=1), flush=True)
    return 0


def input_spec() -> dict:
    """How both bundled models are fed: the pipeline's letterbox to INPUT_WH, RGB, 0..1."""
    return {
        "name": "images",
        "size_wh": list(INPUT_WH),
        "layout": "NCHW",
        "color": "rgb",
        "scale": 1 / 255,
        "resize": "letterbox",
        "pad_value": 114,
    }


def semantic_card(file: str, recipe: dict) -> dict:
    return {
        "name": "synth-semantic",
        "description": "SegNetLite trained on streamseg's synthetic driving scenes (9 classes), dynamic batch.",
        "file": file,
        "task": "semantic",
        "format": "semantic-argmax",
        "input": input_spec(),
        "output": "labels",
        "labels": list(LABELS),
        "groups": {"road": ["road"], "lane": ["lane"], "sidewalk": ["sidewalk"], "car": ["car"], "person": ["person"]},
        "training": {"recipe": recipe},
    }


def instance_card(file: str, recipe: dict) -> dict:
    return {
        "name": "synth-instance",
        "description": "YoloSegLite trained on streamseg's synthetic driving scenes (car, person); YOLOv8-seg output format, dynamic batch.",
        "file": file,
        "task": "instance",
        "format": "yolo-seg",
        "input": input_spec(),
        "labels": list(INSTANCE_CLASSES),
        "outputs": {"detections": "output0", "protos": "output1"},
        "groups": {"car": ["car"], "person": ["person"]},
        "thresholds": {"conf": 0.3, "iou": 0.5, "mask": 0.5, "max_detections": 100},
        "training": {"recipe": recipe},
    }


def evaluate_card(card_path: Path, seeds: list[int], frames: int) -> dict:
    from streamseg.evaluate import evaluate

    card_rel = str(card_path)
    return evaluate(
        {"semantic" if "semantic" in card_path.name else "instance": card_rel},
        [f"synthetic://driving?size={FRAME_WH[0]}x{FRAME_WH[1]}&seed={s}&frames={frames}" for s in seeds],
    ).summary()


if __name__ == "__main__":
    sys.exit(main())
