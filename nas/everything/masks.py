"""Mask utilities for segment-everything: point grids, crops, boxes, stability, NMS, RLE, region cleanup.

Plain torch / numpy / pycocotools (no torchvision, no OpenCV). Conventions, shared with SAM's
automatic mask generator so results can be compared one to one:

- points are ``(x, y)`` in pixels; normalised grids are in ``[0, 1]``;
- boxes are XYXY in pixels with *inclusive* max coordinates (``[0, 0, 0, 0]`` for an empty mask);
- a crop box is ``[x0, y0, x1, y1]`` with exclusive ``x1, y1``;
- RLE is COCO's compressed form with ``counts`` as a str (JSON-ready).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pycocotools import mask as mask_utils


def point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` cell-centred points in ``[0, 1]``, x varying fastest (row-major over y)."""
    if n_per_side < 1:
        return np.zeros((0, 2))
    centres = (np.arange(n_per_side) + 0.5) / n_per_side
    # linspace gives the exact same floats as SAM's own grid (first/last centre, even spacing)
    centres = np.linspace(centres[0], centres[-1], n_per_side)
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One normalised grid per crop layer; layer ``i`` has ``int(n / downscale**i)`` points per side."""
    return [point_grid(int(n_per_side / (downscale ** i))) for i in range(n_layers + 1)]


def crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` and their layer index: the whole image, then ``(2**i)**2`` per layer i>=1.

    Neighbouring crops of layer ``i`` overlap by ``overlap_ratio * short_side * 2 / 2**i`` pixels (floored).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2 ** layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        cw = int(math.ceil((overlap * (n - 1) + w) / n))
        ch = int(math.ceil((overlap * (n - 1) + h) / n))
        x0s = [int((cw - overlap) * i) for i in range(n)]
        y0s = [int((ch - overlap) * i) for i in range(n)]
        for x0 in x0s:
            for y0 in y0s:
                boxes.append([x0, y0, min(x0 + cw, w), min(y0 + ch, h)])
                layers.append(layer)
    return boxes, layers


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` bool -> ``(N, 4)`` int64 XYXY with inclusive max; zeros for empty masks."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    rows = masks.any(dim=2)  # (N, H)
    cols = masks.any(dim=1)  # (N, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, -1).amax(dim=1)
    y0 = torch.where(rows, ys, h).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1)
    x0 = torch.where(cols, xs, w).amin(dim=1)
    out = torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)
    empty = ~rows.any(dim=1)
    out[empty] = 0
    return out


def stability_scores(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """``(N, H, W)`` logits -> ``(N,)`` float32: |logits > thr+off| / |logits > thr-off| (nested masks' IoU)."""
    inner = (logits > (threshold + offset)).flatten(1).sum(1, dtype=torch.int32)
    outer = (logits > (threshold - offset)).flatten(1).sum(1, dtype=torch.int32)
    return inner / outer


def box_iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` XYXY -> ``(N, N)`` float32 IoU with area ``(x1-x0)*(y1-y0)`` (as torchvision computes it)."""
    b = boxes.float()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy box NMS: indices kept, highest score first (ties keep input order); drops IoU > threshold."""
    n = len(boxes)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.argsort(scores, descending=True, stable=True)
    over = (box_iou_matrix(boxes[order]) > iou_threshold).numpy()
    alive = np.ones(n, dtype=bool)
    keep = []
    for i in range(n):
        if alive[i]:
            keep.append(i)
            alive[i + 1:] &= ~over[i, i + 1:]
    return order[torch.as_tensor(keep, dtype=torch.int64)]


def near_crop_edge(boxes: torch.Tensor, crop_box: list[int], image_box: list[int], tol: float = 20.0) -> torch.Tensor:
    """``(N, 4)`` crop-frame boxes -> ``(N,)`` bool: a side lies within ``tol`` px of the crop's edge
    but not of the image's edge (such masks are likely cut by the crop)."""
    x0, y0 = crop_box[0], crop_box[1]
    shifted = boxes.float() + torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    crop = torch.tensor(crop_box, dtype=torch.float32)
    image = torch.tensor(image_box, dtype=torch.float32)
    at_crop = (shifted - crop).abs() <= tol
    at_image = (shifted - image).abs() <= tol
    return (at_crop & ~at_image).any(dim=1)


def paste_masks(masks: torch.Tensor, crop_box: list[int], image_hw: tuple[int, int]) -> torch.Tensor:
    """``(N, h, w)`` crop-frame masks -> ``(N, H, W)`` image-frame masks (zeros outside the crop)."""
    x0, y0, x1, y1 = crop_box
    h, w = image_hw
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return masks
    out = torch.zeros((masks.shape[0], h, w), dtype=masks.dtype, device=masks.device)
    out[:, y0:y1, x0:x1] = masks
    return out


def encode_rles(masks: torch.Tensor | np.ndarray) -> list[dict]:
    """``(N, H, W)`` bool -> COCO compressed RLEs ``{"size": [H, W], "counts": str}``."""
    arr = masks.cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if len(arr) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(arr.transpose(1, 2, 0).astype(np.uint8)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def _coco(rles: list[dict]) -> list[dict]:
    return [{"size": list(r["size"]), "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str)
             else r["counts"]} for r in rles]


def decode_rles(rles: list[dict]) -> np.ndarray:
    """COCO RLEs -> ``(N, H, W)`` bool (``(0, 0, 0)`` for an empty list)."""
    if not rles:
        return np.zeros((0, 0, 0), dtype=bool)
    return mask_utils.decode(_coco(rles)).transpose(2, 0, 1).astype(bool)


def rle_areas(rles: list[dict]) -> list[int]:
    """Foreground pixel count of each RLE."""
    return [int(a) for a in mask_utils.area(_coco(rles))] if rles else []


def rle_iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """``(len(a), len(b))`` mask IoU."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(_coco(a), _coco(b), [0] * len(b))).reshape(len(a), len(b))


def remove_small_regions(mask: np.ndarray, min_area: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or drop islands (``'islands'``) smaller than ``min_area`` px.

    Components use 8-connectivity. When every island is small, the largest is kept.
    Returns ``(mask, changed)``.
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    target = ~mask if mode == "holes" else mask
    labels, n = ndimage.label(target, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return mask, False
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask, False
    if mode == "holes":
        return mask | np.isin(labels, small), True
    big = np.flatnonzero(sizes >= min_area) + 1
    if len(big) == 0:
        big = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, big), True
