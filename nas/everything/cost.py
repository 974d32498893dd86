"""Time per image of a segment-everything policy, predicted from the generator's counts.

Encoder ms x crops + per-call and per-prompt decoder ms (fitted once on this machine,
:func:`fit_cost_model`) x what the policy asks for + the measured filtering/NMS/RLE time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CostModel:
    """Per-image time in ms from the generator's counts: encoder per crop, decoder per call and per prompt."""

    encoder_ms: float
    decoder_call_ms: float
    decoder_prompt_ms: float

    def predict_ms(self, stats: dict) -> float:
        """``stats`` from :class:`MaskGenerator` -> ms (model part predicted, filtering measured)."""
        overhead = max(0.0, stats["total_ms"] - stats["model_ms"])
        return (self.encoder_ms * stats["crops"] + self.decoder_call_ms * stats["decoder_calls_requested"]
                + self.decoder_prompt_ms * stats["prompts_requested"] + overhead)


def fit_cost_model(predictor, image: np.ndarray, batch: int = 64, repeats: int = 3) -> CostModel:
    """Time ``set_image`` and 1-point / ``batch``-point decoder calls on ``image``; fit a + b * prompts.

    The decoder calls are the generator's: low-res logits only where the predictor offers it
    (upscaling the kept candidates is filtering work, measured in every trial).
    """
    from nas.measure.timing import time_callable

    enc = time_callable(lambda: predictor.set_image(image), repeats=repeats, warmup=1).median_ms
    h, w = image.shape[:2]

    def decode(n: int):
        pts = np.stack([np.linspace(0, w - 1, n), np.linspace(0, h - 1, n)], axis=1)
        coords = torch.as_tensor(predictor.transform.apply_coords(pts, (h, w)), device=predictor.device)
        labels = torch.ones(n, dtype=torch.int, device=predictor.device)
        low_res_only = getattr(predictor, "predict_low_res", None)  # what the generator calls (no upscaling)
        if low_res_only is not None:
            return lambda: low_res_only(coords[:, None], labels[:, None], multimask_output=True)
        return lambda: predictor.predict_torch(coords[:, None], labels[:, None], multimask_output=True,
                                               return_logits=True)

    t1 = time_callable(decode(1), repeats=repeats, warmup=1).median_ms
    tb = time_callable(decode(batch), repeats=repeats, warmup=1).median_ms
    per_prompt = max(0.0, (tb - t1) / (batch - 1))
    return CostModel(encoder_ms=enc, decoder_call_ms=max(0.0, t1 - per_prompt), decoder_prompt_ms=per_prompt)
