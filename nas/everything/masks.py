"""Mask utilities for segment-everything: point grids, crops, boxes, stability, NMS, RLE, region cleanup.

Plain torch / numpy / pycocotools / scipy (no torchvision, no OpenCV). Conventions, shared with
SAM's automatic mask generator so that results can be compared one to one:

- points are ``(x, y)`` in pixels; normalised grids are in ``[0, 1]``;
- boxes are XYXY in pixels with *inclusive* max coordinates (``[0, 0, 0, 0]`` for an empty mask);
- a crop box is ``[x0, y0, x1, y1]`` with exclusive ``x1, y1``;
- compressed RLE is COCO's form with ``counts`` as a str (JSON-ready); uncompressed RLE is
  ``{"size": [H, W], "counts": [int, ...]}``: run lengths in column-major order, starting with a
  run of zeros (possibly of length 0).

Each function takes the inputs and gives the outputs of its counterpart in SAM's
``segment_anything.utils.amg``; where the names differ, ours are shorter: ``point_grid``
(``build_point_grid``), ``layer_point_grids`` (``build_all_layer_point_grids``), ``crop_boxes``
(``generate_crop_boxes``), ``masks_to_boxes`` (``batched_mask_to_box``), ``stability_scores``
(``calculate_stability_score``), ``near_crop_edge`` (``is_box_near_crop_edge``).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

# ---- point grids and crops --------------------------------------------------------------------


def point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 cell-centred points in ``[0, 1]``, x varying fastest (row-major over y)."""
    if n_per_side < 1:
        return np.zeros((0, 2))
    centres = (np.arange(n_per_side) + 0.5) / n_per_side
    # linspace gives the exact same floats as SAM's own grid (first/last centre, even spacing)
    centres = np.linspace(centres[0], centres[-1], n_per_side)
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """``n_layers + 1`` normalised grids; layer ``i`` has ``int(n / downscale**i)`` points per side."""
    return [point_grid(int(n_per_side / (downscale ** i))) for i in range(n_layers + 1)]


def crop_boxes(image_hw: Sequence[int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` (px) and their layer index: the whole image (layer 0),
    then ``(2**i)**2`` crops for each layer ``i >= 1``, column-major over (x, y).

    Neighbouring crops of layer ``i`` overlap by ``int(overlap_ratio * short_side * 2 / 2**i)`` px.
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


def batch_iterator(batch_size: int, *arrays: Sequence) -> Iterator[list]:
    """Yield ``[a[s:s+batch_size] for a in arrays]`` over equal-length sequences (last batch may be short)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not arrays:
        return
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"batch_iterator: all inputs must have the same length, got {[len(a) for a in arrays]}")
    for start in range(0, n, batch_size):
        yield [a[start:start + batch_size] for a in arrays]


# ---- boxes, stability, crop frames -------------------------------------------------------------


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(*, H, W)`` bool -> ``(*, 4)`` int64 XYXY with inclusive max; ``[0, 0, 0, 0]`` for empty masks."""
    lead, (h, w) = masks.shape[:-2], masks.shape[-2:]
    flat = masks.reshape(-1, h, w)
    if flat.shape[0] == 0 or h == 0 or w == 0:
        return torch.zeros(tuple(lead) + (4,), dtype=torch.int64, device=masks.device)
    rows = flat.any(dim=2)  # (N, H)
    cols = flat.any(dim=1)  # (N, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, -1).amax(dim=1)
    y0 = torch.where(rows, ys, h).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1)
    x0 = torch.where(cols, xs, w).amin(dim=1)
    out = torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)
    out[~rows.any(dim=1)] = 0
    return out.reshape(tuple(lead) + (4,))


def box_xyxy_to_xywh(box):
    """XYXY -> XYWH with ``w = x1 - x0``, ``h = y1 - y0``: a ``(*, 4)`` tensor/array or one list of 4."""
    if isinstance(box, torch.Tensor):
        return torch.cat([box[..., :2], box[..., 2:] - box[..., :2]], dim=-1)
    if isinstance(box, np.ndarray):
        return np.concatenate([box[..., :2], box[..., 2:] - box[..., :2]], axis=-1)
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def stability_scores(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """``(*, H, W)`` logits -> ``(*)`` float32: |logits > thr+off| / |logits > thr-off| (nested masks' IoU)."""
    inner = (logits > (threshold + offset)).flatten(-2).sum(-1, dtype=torch.int32)
    outer = (logits > (threshold - offset)).flatten(-2).sum(-1, dtype=torch.int32)
    return inner / outer


def near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int],
                   tol: float = 20.0) -> torch.Tensor:
    """``(N, 4)`` crop-frame boxes -> ``(N,)`` bool: a side lies within ``tol`` px of the crop's edge
    but not of the image's edge (such masks are likely cut by the crop)."""
    shifted = uncrop_boxes_xyxy(boxes.float(), crop_box)
    crop = torch.tensor(list(crop_box), dtype=torch.float32, device=boxes.device)
    image = torch.tensor(list(image_box), dtype=torch.float32, device=boxes.device)
    at_crop = (shifted - crop).abs() <= tol
    at_image = (shifted - image).abs() <= tol
    return (at_crop & ~at_image).any(dim=1)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """``(*, 4)`` crop-frame XYXY boxes -> image frame (adds the crop's ``x0, y0``)."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """``(*, 2)`` crop-frame ``(x, y)`` points -> image frame."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return points + torch.tensor([x0, y0], device=points.device)


def paste_masks(masks: torch.Tensor, crop_box: Sequence[int], image_hw: Sequence[int]) -> torch.Tensor:
    """``(*, h, w)`` crop-frame masks -> ``(*, H, W)`` image-frame masks (zeros outside the crop)."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    h, w = int(image_hw[0]), int(image_hw[1])
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return masks
    out = masks.new_zeros(tuple(masks.shape[:-2]) + (h, w))
    out[..., y0:y1, x0:x1] = masks
    return out


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """``(*, h, w)`` crop-frame masks -> ``(*, orig_h, orig_w)``; see :func:`paste_masks`."""
    return paste_masks(masks, crop_box, (orig_h, orig_w))


# ---- NMS --------------------------------------------------------------------------------------


def box_iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` XYXY -> ``(N, N)`` float32 IoU with area ``(x1-x0)*(y1-y0)`` (as torchvision computes it)."""
    b = boxes.float()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor | None,
                iou_threshold: float) -> torch.Tensor:
    """Greedy NMS within each category: ``(N, 4)`` XYXY, ``(N,)`` scores, ``(N,)`` category ids.

    Returns the kept indices ``(K,)`` int64, highest score first (ties keep input order). A box is
    dropped when its IoU with a kept, higher-scored box of the same category is ``> iou_threshold``
    (torchvision's ``batched_nms`` semantics; ``idxs=None`` puts every box in one category).
    """
    n = len(boxes)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.argsort(scores.cpu(), descending=True, stable=True)
    over = box_iou_matrix(boxes.cpu()[order]) > iou_threshold
    if idxs is not None:
        cat = idxs.cpu()[order]
        over &= cat[:, None] == cat[None, :]
    over = over.numpy()
    alive = np.ones(n, dtype=bool)
    keep = []
    for i in range(n):
        if alive[i]:
            keep.append(i)
            alive[i + 1:] &= ~over[i, i + 1:]
    return order[torch.as_tensor(keep, dtype=torch.int64)]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy box NMS over one category; see :func:`batched_nms` (indices kept, best first)."""
    return batched_nms(boxes, scores, None, iou_threshold)


# ---- RLE --------------------------------------------------------------------------------------


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
    """RLEs as pycocotools wants them: compressed counts as bytes, uncompressed as lists."""
    return [{"size": list(r["size"]), "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str)
             else r["counts"]} for r in rles]


def decode_rles(rles: list[dict]) -> np.ndarray:
    """COCO compressed RLEs -> ``(N, H, W)`` bool (``(0, 0, 0)`` for an empty list)."""
    if not rles:
        return np.zeros((0, 0, 0), dtype=bool)
    return mask_utils.decode(_coco(rles)).transpose(2, 0, 1).astype(bool)


def rle_areas(rles: list[dict]) -> list[int]:
    """Foreground pixel count of each compressed RLE.

    In chunks of 255: pycocotools 2.0.11's ``area`` sizes an internal uint8 array by the RLE count
    and raises OverflowError from 256 RLEs on (numpy 2).
    """
    coco = _coco(rles)
    return [int(a) for start in range(0, len(coco), 255) for a in mask_utils.area(coco[start:start + 255])]


def rle_iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """``(len(a), len(b))`` mask IoU of compressed RLEs."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(_coco(a), _coco(b), [0] * len(b))).reshape(len(a), len(b))


def mask_to_rle_pytorch(masks: torch.Tensor) -> list[dict]:
    """``(N, H, W)`` bool -> N uncompressed RLEs ``{"size": [H, W], "counts": [int, ...]}``.

    Runs are over the column-major (Fortran) flattening, alternating 0/1 and starting with zeros.
    """
    n, h, w = masks.shape
    if n == 0:
        return []
    flat = masks.transpose(1, 2).reshape(n, h * w).cpu()
    edges = torch.nonzero(flat[:, 1:] != flat[:, :-1])  # (E, 2): (mask, position before a change)
    per_mask = torch.bincount(edges[:, 0], minlength=n).tolist() if len(edges) else [0] * n
    starts = torch.split(edges[:, 1] + 1, per_mask)
    out = []
    for i in range(n):
        bounds = torch.cat([torch.zeros(1, dtype=torch.int64), starts[i], torch.tensor([h * w])])
        runs = torch.diff(bounds).tolist()
        out.append({"size": [h, w], "counts": ([0] if bool(flat[i, 0]) else []) + runs})
    return out


def rle_to_mask(rle: dict) -> np.ndarray:
    """One uncompressed RLE -> ``(H, W)`` bool."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape(w, h).T


def area_from_rle(rle: dict) -> int:
    """Foreground pixel count of one uncompressed RLE (the sum of its odd runs)."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(rle: dict) -> dict:
    """One uncompressed RLE -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    h, w = (int(v) for v in rle["size"])
    out = mask_utils.frPyObjects({"size": [h, w], "counts": list(rle["counts"])}, h, w)
    out["counts"] = out["counts"].decode("ascii")
    return out


# ---- small regions ----------------------------------------------------------------------------


def remove_small_regions(mask: np.ndarray, min_area: float, mode: str) -> tuple[np.ndarray, bool]:
    """``(H, W)`` bool: fill holes (``mode='holes'``) or drop islands (``'islands'``) smaller than
    ``min_area`` px. Components use 8-connectivity (the image border counts as background, so a
    background region touching it is a hole too). When every island is small, the largest is kept.
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


# ---- per-mask columns -------------------------------------------------------------------------


class MaskData:
    """Named columns of per-mask values, all of length N: tensors (dim 0), arrays (axis 0) or lists.

    ``filter(keep)`` and ``cat(parts)`` return new containers; columns are never changed in place.
    """

    def __init__(self, **columns: Any) -> None:
        self._cols: dict[str, Any] = {}
        for k, v in columns.items():
            self[k] = v

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, (torch.Tensor, np.ndarray, list)):
            raise TypeError(f"MaskData[{key!r}]: expected a tensor, array or list, got {type(value).__name__}")
        others = {len(v) for k, v in self._cols.items() if k != key}
        if others and len(value) not in others:
            raise ValueError(f"MaskData[{key!r}]: length {len(value)}, the other columns have {others.pop()}")
        self._cols[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._cols[key]

    def __delitem__(self, key: str) -> None:
        del self._cols[key]

    def __contains__(self, key: str) -> bool:
        return key in self._cols

    def __len__(self) -> int:
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def keys(self):
        return self._cols.keys()

    def items(self):
        return self._cols.items()

    def filter(self, keep: torch.Tensor | np.ndarray) -> "MaskData":
        """Rows picked by ``keep``: ``(N,)`` bool, or int indices (order and repeats respected)."""
        keep_t = torch.as_tensor(keep).cpu()
        idx = torch.nonzero(keep_t).flatten() if keep_t.dtype == torch.bool else keep_t.long().flatten()
        out = MaskData()
        for k, v in self._cols.items():
            if isinstance(v, torch.Tensor):
                out._cols[k] = v[idx.to(v.device)]
            elif isinstance(v, np.ndarray):
                out._cols[k] = v[idx.numpy()]
            else:
                out._cols[k] = [v[i] for i in idx.tolist()]
        return out

    @classmethod
    def cat(cls, parts: Sequence["MaskData"]) -> "MaskData":
        """Rows of all ``parts`` in order; every part must have the same columns of the same kind."""
        parts = [p for p in parts if p.keys()]
        out = cls()
        if not parts:
            return out
        names = list(parts[0].keys())
        for p in parts[1:]:
            if sorted(p.keys()) != sorted(names):
                raise ValueError(f"MaskData.cat: columns {sorted(p.keys())} differ from {sorted(names)}")
        for k in names:
            vals = [p[k] for p in parts]
            if isinstance(vals[0], torch.Tensor):
                out._cols[k] = torch.cat(vals, dim=0)
            elif isinstance(vals[0], np.ndarray):
                out._cols[k] = np.concatenate(vals, axis=0)
            else:
                out._cols[k] = [x for v in vals for x in v]
        return out

    def to_numpy(self) -> "MaskData":
        """A copy with every tensor column as a numpy array (on the CPU)."""
        return MaskData(**{k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
                           for k, v in self._cols.items()})

