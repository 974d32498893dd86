"""SAM's training losses: focal + dice on mask logits, MSE on the IoU head.

Shapes: logits and targets ``(N, H, W)``; targets in [0, 1] (hard GT or soft teacher masks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0  # SAM paper: 20:1 focal to dice
DICE_WEIGHT = 1.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask sigmoid focal loss, mean over pixels: ``(N,)``."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(1).mean(1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-mask soft dice loss: ``(N,)``."""
    prob = torch.sigmoid(logits).flatten(1)
    targets = targets.flatten(1)
    inter = (prob * targets).sum(1)
    return 1 - (2 * inter + eps) / (prob.sum(1) + targets.sum(1) + eps)


def mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``20 * focal + dice`` per mask: ``(N,)``."""
    return FOCAL_WEIGHT * focal_loss(logits, targets) + DICE_WEIGHT * dice_loss(logits, targets)


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


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss over ``M`` candidate masks per prompt, SAM style.

    ``logits (N, M, H, W)``, ``iou_pred (N, M)``, ``targets (N, H, W)``; or sampled pixels:
    ``logits (N, M, P)``, ``targets (N, P)`` and ``weights (N, P)`` for the IoU (:func:`mask_iou`). Only the candidate
    with the lowest mask loss is trained (ambiguity-aware); the IoU head regresses the
    actual IoU of every candidate. Returns (scalar loss, the chosen masks' IoU ``(N,)``).
    """
    n, m = logits.shape[:2]
    flat_logits = logits.flatten(0, 1)
    flat_targets = targets.repeat_interleave(m, dim=0)
    per_mask = mask_loss(flat_logits, flat_targets).view(n, m)
    best = per_mask.argmin(dim=1)
    chosen = per_mask.gather(1, best[:, None]).squeeze(1)
    flat_weights = None if weights is None else weights.repeat_interleave(m, dim=0)
    actual_iou = mask_iou(flat_logits.detach(), flat_targets, flat_weights).view(n, m)
    iou_term = F.mse_loss(iou_pred, actual_iou)
    return chosen.mean() + iou_term, actual_iou.gather(1, best[:, None]).squeeze(1)
