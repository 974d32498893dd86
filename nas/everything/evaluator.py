"""Scoring policies on fixed images: quality (:mod:`.quality`) and time (:mod:`.cost`), one shared cache.

Time is ``predicted`` by default (:class:`~.cost.CostModel`); all evaluations share one
:class:`~.generator.DecoderCache`, so a policy re-decodes only points never seen before.
``measured`` times the whole generator on each image instead (no cache).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.errors import UserError

from .cost import CostModel, fit_cost_model
from .generator import DecoderCache, MaskGenerator
from .policies import Policy, policy_from_dict
from .quality import agreement, mask_ar

TIME_MODES = ("predicted", "measured")


@dataclass
class Evaluation:
    """A policy's result on the tuning images."""

    quality: float
    time_ms: float
    metrics: dict
    stats: dict


class PolicyEvaluator:
    """Runs policies on fixed images with one shared cache; quality by AR@K or agreement.

    Without annotations the reference masks are ``reference_policy``'s (the caller passes the
    model's dense default grid; SAM's own grid when None), made once here: UserError when they are
    empty on every image. ``progress`` shows a bar while the reference is made.
    """

    def __init__(self, predictor, images: list, annotations: tuple[dict, dict] | None = None,
                 reference_policy: Policy | None = None, time_mode: str = "predicted",
                 cost: CostModel | None = None, cache_bytes: int = 2 << 30, progress: bool = False,
                 what: str = "the tuning images") -> None:
        from tqdm.auto import tqdm

        if time_mode not in TIME_MODES:
            raise UserError(f"--time {time_mode!r}: expected one of {list(TIME_MODES)}")
        self.predictor = predictor
        self.images = images
        self.time_mode = time_mode
        self.cache = DecoderCache(cache_bytes)
        self.gt = None
        if annotations is not None:
            gt, ids = annotations
            self.images = [(p, im) for p, im in images if Path(p).name in ids]
            self.ids = {Path(p).name: ids[Path(p).name] for p, _ in self.images}
            self.gt = gt
        self.cost = cost or (fit_cost_model(predictor, self.images[0][1]) if time_mode == "predicted" else None)
        self.reference = None
        self.reference_policy = None
        if self.gt is None:
            ref = reference_policy or Policy()
            ref = policy_from_dict({**ref.to_dict(), "output_mode": "coco_rle"})
            self.reference_policy = ref
            bar = tqdm(self.images, desc="reference grid", unit="image", disable=not progress, leave=False)
            self.reference = [[r["segmentation"] for r in MaskGenerator(predictor, ref, cache=self.cache).generate(im)]
                              for _, im in bar]
            if not any(self.reference):
                raise UserError(f"the reference ({ref.kind} {ref.points_per_side}x{ref.points_per_side}, "
                                f"pred_iou_thresh {ref.pred_iou_thresh:g}, stability_score_thresh "
                                f"{ref.stability_score_thresh:g}) found no mask on any of the {len(self.images)} "
                                f"images of {what}, so agreement with it is undefined: calibrate the model's "
                                f"defaults (samnas calibrate-everything), give --reference-policy with lower "
                                f"thresholds, or pass --annotations")

    def evaluate(self, policy: Policy) -> Evaluation:
        policy = policy_from_dict({**policy.to_dict(), "output_mode": "coco_rle"})
        results, times, totals = [], [], {}
        for _path, img in self.images:
            gen = MaskGenerator(self.predictor, policy, cache=self.cache if self.time_mode == "predicted" else None)
            recs = gen.generate(img)
            results.append(recs)
            times.append(self.cost.predict_ms(gen.stats) if self.time_mode == "predicted" else gen.stats["total_ms"])
            for k in ("prompts_requested", "decoder_calls_requested", "crops", "masks"):
                totals[k] = totals.get(k, 0) + gen.stats[k]
        n = len(self.images)
        stats = {k: v / n for k, v in totals.items()}
        if self.gt is not None:
            metrics = mask_ar(self.gt, {self.ids[Path(p).name]: r for (p, _), r in zip(self.images, results)})
        else:
            metrics = agreement(self.reference, [[x["segmentation"] for x in r] for r in results])
        return Evaluation(quality=metrics["quality"], time_ms=float(np.median(times)), metrics=metrics, stats=stats)


def score_policy(predictor, policy: Policy, images: list, annotations: tuple[dict, dict] | None = None,
                 reference_policy: Policy | None = None, time_mode: str = "predicted",
                 cost: CostModel | None = None, progress: bool = False) -> Evaluation:
    """One policy's quality and time on ``images`` (e.g. held-out photos), with tuning's objective."""
    ev = PolicyEvaluator(predictor, images, annotations, reference_policy, time_mode, cost, progress=progress,
                         what="the evaluation images")
    return ev.evaluate(policy)
