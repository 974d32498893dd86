"""SAM's training losses: focal + dice on mask logits, MSE on the IoU head.

Shapes: logits and targets ``(N, H, W)``; targets in [0, 1] (hard GT or soft teacher masks).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from nas.training.settings import FOCAL_ALPHA

FOCAL_WEIGHT = 20.0  # SAM paper: 20:1 focal to dice
DICE_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA, gamma: float = 2.0,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-mask sigmoid focal loss, mean over pixels: ``(N,)``.

    ``weights``: the pixels each value stands for when the values are samples (``N, P``), so
    that the weighted mean estimates the mean over every pixel (see :func:`mask_loss`).
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if weights is None:
        return loss.flatten(1).mean(1)
    w = weights.flatten(1)
    return (loss.flatten(1) * w).sum(1) / w.sum(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-mask soft dice loss: ``(N,)``; ``weights`` as for :func:`focal_loss` (sums become pixel counts)."""
    prob = torch.sigmoid(logits).flatten(1)
    targets = targets.flatten(1)
    if weights is not None:
        w = weights.flatten(1)
        prob, targets_w = prob * w, targets * w
        return 1 - (2 * (prob * targets).sum(1) + eps) / (prob.sum(1) + targets_w.sum(1) + eps)
    inter = (prob * targets).sum(1)
    return 1 - (2 * inter + eps) / (prob.sum(1) + targets.sum(1) + eps)


def mask_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
              alpha: float = FOCAL_ALPHA) -> torch.Tensor:
    """``20 * focal + dice`` per mask: ``(N,)``; ``alpha`` the focal loss's foreground weight.

    With ``weights (N, P)`` (sampled pixels, each standing for that many pixels), both terms
    estimate their values over every pixel. Without the weights a sampled loss over-weights the
    sampled region: focal then outweighs dice and, with alpha 0.25, pushes small masks to empty
    (a run without them gave 65% of small objects no mask after 250 steps).
    """
    return (FOCAL_WEIGHT * focal_loss(logits, targets, alpha=alpha, weights=weights)
            + DICE_WEIGHT * dice_loss(logits, targets, weights=weights))


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """IoU in [0, 1] of the binarised prediction (logit > 0) with the binarised target: ``(N,)``.

    ``weights (N, P)``: the pixels each value stands for, when logits and targets are samples
    ``(N, P)`` of larger masks (``nas.training.train.LossFrame``).
    """
    pred = logits.flatten(1) > 0
    gt = targets.flatten(1) > 0.5
    w = torch.ones_like(pred, dtype=torch.float) if weights is None else weights.flatten(1).float()
    inter = ((pred & gt).float() * w).sum(1)
    union = ((pred | gt).float() * w).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.ones_like(inter))


class SamLoss(NamedTuple):
    """:func:`sam_loss`'s result."""

    loss: torch.Tensor  # scalar: the chosen candidates' mean mask loss plus the IoU head's MSE
    chosen_iou: torch.Tensor  # (N,) actual IoU of each prompt's chosen candidate
    best: torch.Tensor  # (N,) long: index of the chosen candidate (lowest mask loss)


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor | None = None, alpha: float = FOCAL_ALPHA) -> SamLoss:
    """Loss over ``M`` candidate masks per prompt, SAM style.

    ``logits (N, M, H, W)``, ``iou_pred (N, M)``, ``targets (N, H, W)``; or sampled pixels:
    ``logits (N, M, P)``, ``targets (N, P)`` and ``weights (N, P)`` (:func:`mask_loss`, :func:`mask_iou`). Only the candidate
    with the lowest mask loss is trained (ambiguity-aware); the IoU head regresses the
    actual IoU of every candidate.
    """
    n, m = logits.shape[:2]
    flat_logits = logits.flatten(0, 1)
    flat_targets = targets.repeat_interleave(m, dim=0)
    flat_weights = None if weights is None else weights.repeat_interleave(m, dim=0)
    per_mask = mask_loss(flat_logits, flat_targets, flat_weights, alpha).view(n, m)
    best = per_mask.detach().argmin(dim=1)
    chosen = per_mask.gather(1, best[:, None]).squeeze(1)
    actual_iou = mask_iou(flat_logits.detach(), flat_targets, flat_weights).view(n, m)
    iou_term = F.mse_loss(iou_pred, actual_iou)
    return SamLoss(chosen.mean() + iou_term, actual_iou.gather(1, best[:, None]).squeeze(1), best)
