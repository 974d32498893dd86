"""The space of segment-everything policies that tuning searches: what a trial may suggest."""
from __future__ import annotations

import optuna

from .policies import Policy, policy_from_dict


def suggest_policy(trial: optuna.Trial, max_points_per_side: int = 32, max_crop_layers: int = 1) -> Policy:
    """A policy from the trial: kind, grid density, thresholds, crops and the kind's own knobs."""
    sides = [s for s in (4, 6, 8, 12, 16, 24, 32, 48, 64) if s <= max_points_per_side] or [max_points_per_side]
    kind = trial.suggest_categorical("kind", ["grid", "hierarchical", "adaptive"])
    d = {
        "kind": kind,
        "points_per_side": trial.suggest_categorical("points_per_side", sides),
        "pred_iou_thresh": trial.suggest_float("pred_iou_thresh", 0.3, 0.95),
        "stability_score_thresh": trial.suggest_float("stability_score_thresh", 0.5, 0.98),
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
        d["confidence_thresh"] = trial.suggest_float("confidence_thresh", 0.3, 0.95)
    if kind == "adaptive":
        d["stop_coverage"] = trial.suggest_float("stop_coverage", 0.5, 1.0)
    return policy_from_dict(d)
