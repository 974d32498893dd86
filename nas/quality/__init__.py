"""Quality evaluators: one number per subnet for the search to maximise.

- ``fidelity`` (:class:`FidelityEvaluator`): agreement with the full model on unlabelled
  images (embedding cosine / MSE, mask IoU for sampled point prompts); any checkpoint.
- ``coco`` (:class:`CocoEvaluator`): ground-truth box and point mIoU on COCO annotations.

All share :class:`Evaluator`'s interface: ``evaluate(model, config) -> QualityResult``.
"""
from __future__ import annotations

from infra.errors import UserError
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

from .base import Evaluator, QualityResult
from .coco import CocoEvaluator
from .fidelity import FidelityEvaluator

EVALUATORS: dict[str, type[Evaluator]] = {"fidelity": FidelityEvaluator, "coco": CocoEvaluator}


def make_evaluator(kind: str, model: Sam | Sam2, images=None, annotations=None, **kw) -> Evaluator:
    """Build the evaluator ``kind`` ("fidelity" or "coco") for the full ``model`` (SAM or SAM 2).

    ``images``: a folder, or a sequence of image paths (fidelity also takes ``(H, W, 3)``
    uint8 arrays). ``annotations``: the COCO JSON (coco only). ``kw`` goes to the
    evaluator: ``max_images`` (both), ``prompts_per_image`` and ``seed`` (fidelity).
    """
    if kind not in EVALUATORS:
        raise UserError(f"quality evaluator {kind!r} unknown; expected one of {', '.join(EVALUATORS)}")
    if images is None:
        raise UserError(f"the {kind} evaluator needs images (a folder or image paths)")
    if kind == "coco":
        if annotations is None:
            raise UserError("the coco evaluator needs a COCO annotations JSON (--annotations)")
        return CocoEvaluator(model, images, annotations, **kw)
    if annotations is not None:
        raise UserError("annotations are given, but the fidelity evaluator does not use them; use kind 'coco'")
    return FidelityEvaluator(model, images, **kw)


__all__ = ["EVALUATORS", "CocoEvaluator", "Evaluator", "FidelityEvaluator", "QualityResult", "make_evaluator"]
