"""Segment-everything on the runner, in numpy: what ``nas.everything.generator.MaskGenerator`` does in
PyTorch for a grid policy (SAM's automatic mask generator; SAM 2's on a SAM 2 export, whose prompts are in
its square frame and whose masks are upscaled straight from the low-res logits), step for step and in the
same float32 arithmetic, so that both give the same masks: a point grid per crop, decoded in batches; candidates
kept above the predicted-IoU threshold, then by stability score; masks cut by a crop edge dropped;
box NMS within each crop, then across crops (smaller crops first).

Masks are kept as the decoder's low-res logits until NMS has chosen them, then upscaled once more:
a dense grid on a large photo would otherwise hold thousands of full-size masks.
Records (one dict per mask, in NMS order): ``segmentation`` (H x W bool), ``area`` (px), ``bbox``
(XYWH px, width = x_max - x_min), ``predicted_iou``, ``point_coords`` ([[x, y]] px),
``stability_score``, ``crop_box`` (XYWH px).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import DeployError

POLICY_FORMAT = "samnas-everything-policy/1"
# nas.everything.policies.Policy's fields and defaults (tests/test_deploy.py checks that they agree).
DEFAULTS = {"kind": "grid", "points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.88,
            "stability_score_thresh": 0.95, "stability_score_offset": 1.0, "box_nms_thresh": 0.7,
            "crop_n_layers": 0, "crop_nms_thresh": 0.7, "crop_overlap_ratio": 512 / 1500,
            "crop_n_points_downscale_factor": 1, "min_mask_region_area": 0, "output_mode": "binary_mask",
            "sparse_points_per_side": 8, "confidence_thresh": 0.9, "stop_coverage": 0.9, "min_prompts": 16}
UPSCALE_CHUNK = 16  # masks upscaled to the crop's size at once (a 1800 x 1200 crop: 140 MB of float32)


def read_policy(policy) -> dict:
    """A policy file from ``samnas tune-everything`` (path), its document or its ``policy`` mapping -> all
    fields (defaults filled in). DeployError for other formats, unknown fields, and what the runner lacks."""
    where = "policy"
    if isinstance(policy, (str, Path)):
        import yaml

        where = str(policy)
        if not Path(policy).is_file():
            raise DeployError(f"{policy}: policy file not found")
        policy = yaml.safe_load(Path(policy).read_text(encoding="utf-8"))
    if isinstance(policy, dict) and "format" in policy:
        if policy["format"] != POLICY_FORMAT:
            raise DeployError(f"{where}: format {policy['format']!r}, expected {POLICY_FORMAT!r}")
        policy = policy.get("policy")
    if not isinstance(policy, dict):
        raise DeployError(f"{where}: expected a policy mapping (a file written by samnas tune-everything)")
    unknown = sorted(set(policy) - set(DEFAULTS) - {"extra"})
    if unknown:
        raise DeployError(f"{where}: unknown field {unknown[0]!r}; expected one of {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **policy}
    if p["kind"] != "grid":
        raise DeployError(f"{where}: kind {p['kind']!r}: the runner segments everything with grid policies only "
                          "(use `samnas everything` for hierarchical and adaptive ones)")
    if p["min_mask_region_area"] > 0:
        raise DeployError(f"{where}: min_mask_region_area {p['min_mask_region_area']}: the runner does not clean "
                          "small regions; set it to 0")
    return p


def point_grid(n: int) -> np.ndarray:
    """``(n*n, 2)`` float64 cell-centred points in ``[0, 1]``, x varying fastest."""
    centres = (np.arange(n) + 0.5) / n
    centres = np.linspace(centres[0], centres[-1], n) if n > 0 else centres  # the floats of SAM's own grid
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def crop_boxes(hw, n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes ``[x0, y0, x1, y1]`` px and their layer: the image, then ``(2**i)**2`` overlapping crops per layer."""
    h, w = int(hw[0]), int(hw[1])
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2 ** layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        cw, ch = int(math.ceil((overlap * (n - 1) + w) / n)), int(math.ceil((overlap * (n - 1) + h) / n))
        for x0 in [int((cw - overlap) * i) for i in range(n)]:
            for y0 in [int((ch - overlap) * i) for i in range(n)]:
                boxes.append([x0, y0, min(x0 + cw, w), min(y0 + ch, h)])
                layers.append(layer)
    return boxes, layers


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` bool -> ``(N, 4)`` int64 XYXY, max inclusive; ``[0, 0, 0, 0]`` for an empty mask."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    h, w = masks.shape[1:]
    y0, y1 = rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    boxes[~rows.any(axis=1)] = 0
    return boxes


def stability_scores(logits: np.ndarray, threshold: float, offset: float) -> np.ndarray:
    """``(N, H, W)`` -> ``(N,)`` float32: IoU of the masks at ``threshold + offset`` and ``threshold - offset``."""
    inner = (logits > threshold + offset).sum(axis=(1, 2)).astype(np.float32)
    outer = (logits > threshold - offset).sum(axis=(1, 2)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inner / outer


def near_crop_edge(boxes: np.ndarray, crop_box, image_box, tol: float = 20.0) -> np.ndarray:
    """``(N,)`` bool: a side of the crop-frame box lies within ``tol`` px of the crop's edge but not the image's."""
    shifted = boxes.astype(np.float32) + np.array([crop_box[0], crop_box[1]] * 2, np.float32)
    at_crop = np.abs(shifted - np.asarray(crop_box, np.float32)) <= tol
    at_image = np.abs(shifted - np.asarray(image_box, np.float32)) <= tol
    return (at_crop & ~at_image).any(axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy box NMS: indices kept, highest score first (ties in input order); float32 box IoU."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    b = boxes[order].astype(np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = np.clip(np.minimum(b[:, None, 2:], b[None, :, 2:]) - np.maximum(b[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        over = inter / (area[:, None] + area[None, :] - inter) > iou_threshold
    alive, keep = np.ones(len(b), bool), []
    for i in range(len(b)):
        if alive[i]:
            keep.append(i)
            alive[i + 1:] &= ~over[i, i + 1:]
    return order[np.asarray(keep, np.int64)]


def _decode_batches(runner, embedding, points: np.ndarray, crop_hw, batch: int):
    """Yield ``(points (P, 2), low_res (P, 3, 4g, 4g), iou (P, 3))``: the multimask outputs per point
    (crop frame px), decoded ``batch`` points at a time, each point with the padding point (both contracts).

    SAM 2's graph clamps ``low_res_masks`` to +-32, as its predictor returns them, while its automatic mask
    generator upscales the unclamped logits; asked for masks at ``(4g, 4g)``, its ``masks`` output is those
    (a bilinear resize to the same size is the identity)."""
    side, g = runner.contract.resolution, runner.contract.embedding[-1]
    low_res = "masks" if runner.contract.family == "sam2" else "low_res_masks"
    # the graph also upscales every mask to side x side: bound that to 64 Mi floats per call
    batch = max(1, min(batch, (1 << 26) // (4 * side * side)))
    for start in range(0, len(points), batch):
        pts = points[start:start + batch]
        coords = np.zeros((len(pts), 2, 2))
        coords[:, 0] = runner.to_frame(pts, crop_hw)
        labels = np.tile([1.0, -1.0], (len(pts), 1))
        out = runner.decode(embedding, coords, labels, (4 * g, 4 * g))
        yield pts, out[low_res][:, 1:], out["iou_predictions"][:, 1:]


def _crop_candidates(runner, image: np.ndarray, box, grid: np.ndarray, p: dict) -> dict:
    """One crop's candidates after the IoU, stability and crop-edge filters and the crop's NMS:
    ``low`` logits, ``iou``, ``stability``, ``boxes`` (image frame), ``points`` (image frame)."""
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    hw = crop.shape[:2]
    embedding, input_hw, _ = runner.embed(crop)
    thr = runner.contract.mask_threshold
    parts = []
    for pts, low, iou in _decode_batches(runner, embedding, grid * np.array(hw[::-1], float), hw,
                                         p["points_per_batch"]):
        scores = iou.reshape(-1)
        keep = np.flatnonzero(scores > p["pred_iou_thresh"]) if p["pred_iou_thresh"] > 0 else np.arange(len(scores))
        low_k = low.reshape((-1,) + low.shape[2:])[keep]
        stab, boxes = [], []
        for s in range(0, len(keep), UPSCALE_CHUNK):
            logits = runner.upscale(low_k[s:s + UPSCALE_CHUNK], input_hw, hw)
            stab.append(stability_scores(logits, thr, p["stability_score_offset"]))
            boxes.append(masks_to_boxes(logits > thr))
        cand = {"low": low_k, "iou": scores[keep], "points": np.repeat(pts, low.shape[1], axis=0)[keep],
                "stability": np.concatenate(stab) if stab else np.zeros(0, np.float32),
                "boxes": np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int64)}
        ok = cand["stability"] >= p["stability_score_thresh"] if p["stability_score_thresh"] > 0 \
            else np.ones(len(keep), bool)
        ok &= ~near_crop_edge(cand["boxes"], box, [0, 0, image.shape[1], image.shape[0]])
        parts.append({k: v[ok] for k, v in cand.items()})
    data = _cat(parts, (4 * runner.contract.embedding[-1],) * 2)
    data = {k: v[nms(data["boxes"], data["iou"], p["box_nms_thresh"])] for k, v in data.items()}
    data["boxes"] = data["boxes"] + np.array([x0, y0, x0, y0])
    data["points"] = data["points"] + np.array([x0, y0])
    data["crop"] = np.array([list(box) + list(input_hw)] * len(data["iou"]), np.int64).reshape(-1, 6)
    return data


def _cat(parts: list[dict], low_hw) -> dict:
    if not parts:
        return {"low": np.zeros((0,) + tuple(low_hw), np.float32), "iou": np.zeros(0, np.float32),
                "points": np.zeros((0, 2)), "stability": np.zeros(0, np.float32), "boxes": np.zeros((0, 4), np.int64)}
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def generate(runner, image: np.ndarray, policy) -> list[dict]:
    """``(H, W, 3)`` uint8 -> mask records (see the module docstring) with a grid ``policy``."""
    p = read_policy(policy)
    hw = image.shape[:2]
    boxes, layers = crop_boxes(hw, p["crop_n_layers"], p["crop_overlap_ratio"])
    grids = [point_grid(int(p["points_per_side"] / (p["crop_n_points_downscale_factor"] ** i)))
             for i in range(p["crop_n_layers"] + 1)]
    parts = [_crop_candidates(runner, image, box, grids[layer], p) for box, layer in zip(boxes, layers)]
    data = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    if len(boxes) > 1 and len(data["iou"]):
        c = data["crop"]
        scores = np.float32(1) / ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])).astype(np.float32)
        data = {k: v[nms(data["boxes"], scores, p["crop_nms_thresh"])] for k, v in data.items()}
    return [_record(runner, data, i, hw) for i in range(len(data["iou"]))]


def _record(runner, data: dict, i: int, hw) -> dict:
    """Candidate ``i`` as a record, its mask upscaled again from the low-res logits and pasted into the image."""
    x0, y0, x1, y1, in_h, in_w = (int(v) for v in data["crop"][i])
    logits = runner.upscale(data["low"][i:i + 1], (in_h, in_w), (y1 - y0, x1 - x0))
    mask = np.zeros(hw, bool)
    mask[y0:y1, x0:x1] = logits[0] > runner.contract.mask_threshold
    b = data["boxes"][i].tolist()
    return {"segmentation": mask, "area": int(mask.sum()), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            "predicted_iou": float(data["iou"][i]), "point_coords": [data["points"][i].tolist()],
            "stability_score": float(data["stability"][i]), "crop_box": [x0, y0, x1 - x0, y1 - y0]}
