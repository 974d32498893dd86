"""Training hyper-parameters, kept free of torch so that ``samnas train-supernet --help`` reads its
defaults from here without loading the training code.

The defaults are the supernet recipe (``samnas train-supernet``); ``samnas train-reference``
trains ``sam_micro`` from scratch and passes its own batch, learning rate and warm-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FOCAL_ALPHA = 0.25  # weight of the focal loss's foreground term (background: 1 - alpha); RetinaNet's default


@dataclass
class TrainSettings:
    """Hyper-parameters of a run; saved in every checkpoint. Learning rates are per AdamW step."""

    steps: int
    batch_images: int = 2  # per rank
    prompts_per_image: int = 4
    lr: float = 1e-4  # peak, after the linear warm-up
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    random_subnets: int = 2  # k of the sandwich rule
    # the largest subnet's share of a sandwich step, relative to each other subnet's (docs/decisions.md: 2x lost more
    # of the full model's quality)
    largest_weight: float = 4.0
    use_gt: bool = True
    distill: bool = False
    embed_weight: float = 1.0
    rerank_every: int = 0  # 0: never re-rank during training
    iterative: bool = True
    sandwich: bool = False
    activation_checkpointing: bool = False  # recompute encoder blocks in the backward pass to save memory
    loss_points: int = 0  # pixels per mask at which the mask losses are computed (LossFrame); 0: every pixel
    focal_alpha: float = FOCAL_ALPHA  # the focal loss's foreground weight (background: 1 - alpha)
    space: dict | None = field(default=None)  # SearchSpace.to_dict() for sandwich sampling
