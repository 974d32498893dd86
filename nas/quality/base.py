"""The quality-evaluator interface and what every evaluator shares.

An evaluator scores a subnet of the supernet with one number to maximise (``score`` in
[0, 1]) plus named metrics. Everything that depends only on the data and the full model
(reference embeddings and masks, prompts, ground truth) is computed once, when the
evaluator is built, so that each search trial only pays for the subnet's forward passes.

Usage, as the search does it::

    evaluator = make_evaluator("fidelity", model, images=folder)
    result = evaluator.evaluate(model, config)   # activates ``config`` for the call
    result.score, result.metrics, result.skipped, result.num_items
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from supernet.elastic.activation import active_subnet, full_config
from supernet.elastic.subnet_config import SubnetConfig
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

log = logging.getLogger(__name__)


@dataclass
class QualityResult:
    """One evaluation of one subnet.

    ``score`` in [0, 1], higher is better (the search's objective); ``metrics`` the
    per-metric values logged as trial attributes; ``skipped`` ``(item, reason)`` for every
    image or annotation that could not be used; ``num_items`` how many items were scored
    (the evaluator's docstring says what an item is).
    """

    score: float
    metrics: dict[str, float]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    num_items: int = 0

    def summary(self, name: str = "quality") -> str:
        """One line: score, metrics, items and the count of skipped items (with the first few named)."""
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items())
        line = f"{name}: score={self.score:.4f} ({metrics}) on {self.num_items} items, {len(self.skipped)} skipped"
        if self.skipped:
            shown = "; ".join(f"{item}: {reason}" for item, reason in self.skipped[:3])
            more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            line += f" ({shown}{more})"
        return line


class Evaluator(ABC):
    """Base of the quality evaluators: ``evaluate(model, config) -> QualityResult``.

    Subclasses set ``name``, build their references in ``__init__`` (or ``prepare``), record
    unusable inputs with :meth:`skip`, and implement :meth:`measure` on whatever subnet is
    active on the model.
    """

    name: str = "evaluator"

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def prepare(self, model: Sam | Sam2) -> None:
        """Recompute whatever depends on the full model (default: nothing)."""

    @abstractmethod
    def measure(self, model: Sam | Sam2) -> QualityResult:
        """Score the subnet currently active on ``model`` (called under ``torch.inference_mode``)."""

    def evaluate(self, model: Sam | Sam2, config: SubnetConfig | None = None) -> QualityResult:
        """Score ``config`` on the supernet ``model`` (restoring the previous subnet after).

        ``config=None`` scores ``model`` as it is, such as an extracted standalone subnet.
        """
        scope = nullcontext(model) if config is None else active_subnet(model, config)
        with torch.inference_mode(), scope:
            return self.measure(model)

    def skip(self, item: str, reason: str) -> None:
        """Record that ``item`` (a file or annotation name) is left out, and why; logged as a warning."""
        reason = " ".join(str(reason).split())[:300]
        log.warning("%s: skipped %s: %s", self.name, item, reason)
        self.skipped.append((item, reason))

    def result(self, score: float, metrics: dict[str, float], num_items: int) -> QualityResult:
        """A :class:`QualityResult` carrying this evaluator's skipped items."""
        return QualityResult(float(score), {k: float(v) for k, v in metrics.items()}, list(self.skipped), num_items)


def full_model(model: Sam | Sam2):
    """Context manager: the full config active on ``model`` inside the block."""
    return active_subnet(model, full_config(model))


def mask_iou(masks: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks ``(..., H, W)`` against broadcastable ``reference`` -> ``(...)`` float.

    Two empty masks agree perfectly (IoU 1).
    """
    inter = (masks & reference).flatten(-2).sum(-1).float()
    union = (masks | reference).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def pick_by_score(values: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``values[b, argmax_m scores[b, m]]`` for ``(B, M)`` tensors -> ``(B,)`` (first max on ties)."""
    best = scores.argmax(dim=1, keepdim=True)
    return values.gather(1, best).squeeze(1)


def batches(count: int, size: int) -> Iterable[slice]:
    """Slices covering ``range(count)`` in chunks of at most ``size`` (bounds memory of full-size masks)."""
    for start in range(0, count, size):
        yield slice(start, min(count, start + size))
