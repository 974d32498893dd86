"""What ``samnas tune-everything`` tunes and how, kept free of torch and Optuna so that the command's
options read their defaults from here without loading the tuning code (:mod:`.tune`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .policies import Policy


@dataclass
class TuneSettings:
    """What to tune: the model (by tag), the device and its budget per image (ms), and how.

    ``budget_ms`` None: the budget is the reference policy's time on the tuning images (in
    ``time_mode``) divided by ``speedup``, worked out before the study opens.
    """

    model_tag: str
    device: str
    budget_ms: float | None
    trials: int = 30
    storage: str | None = None  # Optuna RDB URL (default: the results folder's studies.db)
    out: str | Path | None = None  # policy YAML to write
    sampler: str = "nsga2"
    seed: int = 0
    time_mode: str = "predicted"  # or "measured"
    max_points_per_side: int = 32
    max_crop_layers: int = 1
    reference_policy: Policy | None = None  # whose masks define agreement (default: the dense grid)
    tracking_uri: str | None = None  # MLflow (default: results/mlruns)
    model_meta: dict | None = None  # e.g. {"model_digest": ...}, stored in the policy's meta
    speedup: float | None = None  # with budget_ms None: the budget is the reference policy's time / speedup
    out_dir: str | Path | None = None  # with out None: write the policy to out_dir/<study name>.yaml

    @property
    def study_name(self) -> str:
        from nas.studies.study import study_name

        return study_name(self.model_tag, self.device, self.budget_ms, suffix="everything")
