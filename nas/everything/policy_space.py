"""The space of segment-everything policies that tuning searches: what a trial may suggest."""
from __future__ import annotations

import optuna

from .policies import Policy, policy_from_dict

THRESHOLD_RANGES = {"pred_iou_thresh": (0.3, 0.95), "stability_score_thresh": (0.5, 0.98),
                    "confidence_thresh": (0.3, 0.95)}
"""The thresholds' search ranges for a model whose defaults lie inside them (SAM's 0.88 / 0.95 do)."""
ANCHORS = {"pred_iou_thresh": "pred_iou_thresh", "stability_score_thresh": "stability_score_thresh",
           "confidence_thresh": "pred_iou_thresh"}
"""The model default each range must include: the confidence threshold is a predicted IoU too."""
THRESHOLD_MARGIN = 0.15  # a default outside its range widens it to reach this far past the default


def threshold_ranges(defaults: dict | None = None) -> dict[str, tuple[float, float]]:
    """The ``(low, high)`` search range of each predicted-IoU or stability threshold, given the model's ``defaults``.

    A model calibrated far below SAM's thresholds (the packaged reference's are near 0.2) would
    find nothing with any threshold of the usual ranges, so each range is widened to reach
    :data:`THRESHOLD_MARGIN` past the model's default, within ``[0, 0.99]``. Without defaults, or
    with defaults inside the ranges by that margin, the ranges are :data:`THRESHOLD_RANGES`.
    """
    out = {}
    for key, (low, high) in THRESHOLD_RANGES.items():
        value = (defaults or {}).get(ANCHORS[key])
        if value is not None:
            low = max(0.0, min(low, round(float(value) - THRESHOLD_MARGIN, 4)))
            high = min(0.99, max(high, round(float(value) + THRESHOLD_MARGIN, 4)))
        out[key] = (low, high)
    return out


GRID_SIDES = (4, 6, 8, 12, 16, 24, 32, 48, 64)  # the grid densities (points per side) tuning chooses among


def suggest_policy(trial: optuna.Trial, max_points_per_side: int = 32, max_crop_layers: int = 1,
                   defaults: dict | None = None) -> Policy:
    """A policy from the trial: kind, grid density, thresholds, crops and the kind's own knobs.

    ``defaults``: the model's default ``pred_iou_thresh`` and ``stability_score_thresh``, which the
    threshold ranges always include (:func:`threshold_ranges`).
    """
    sides = [s for s in GRID_SIDES if s <= max_points_per_side] or [max_points_per_side]
    ranges = threshold_ranges(defaults)
    kind = trial.suggest_categorical("kind", ["grid", "hierarchical", "adaptive"])
    d = {
        "kind": kind,
        "points_per_side": trial.suggest_categorical("points_per_side", sides),
        "pred_iou_thresh": trial.suggest_float("pred_iou_thresh", *ranges["pred_iou_thresh"]),
        "stability_score_thresh": trial.suggest_float("stability_score_thresh", *ranges["stability_score_thresh"]),
        "box_nms_thresh": trial.suggest_float("box_nms_thresh", 0.4, 0.9),
        "crop_n_layers": trial.suggest_int("crop_n_layers", 0, max_crop_layers),
        "output_mode": "coco_rle",
    }
    if d["crop_n_layers"]:
        d["crop_n_points_downscale_factor"] = trial.suggest_categorical("crop_n_points_downscale_factor", [1, 2])
    if kind == "hierarchical":
        d["sparse_points_per_side"] = trial.suggest_categorical("sparse_points_per_side",
                                                                [s for s in sides if s <= 16] or [sides[0]])
    if kind != "grid":
        d["confidence_thresh"] = trial.suggest_float("confidence_thresh", *ranges["confidence_thresh"])
    if kind == "adaptive":
        d["stop_coverage"] = trial.suggest_float("stop_coverage", 0.5, 1.0)
    return policy_from_dict(d)
