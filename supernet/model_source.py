"""The model a command runs on: ``--checkpoint``, ``--subnet``, else the packaged reference weights,
else seeded random weights (with a warning). One place, so that search, export, segment-everything
and evaluation resolve and name models the same way."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.errors import UserError

# --model-type's help where a command takes it as free text (its values: supernet.elastic.build.MODEL_TYPES)
MODEL_TYPE_HELP = ("vit_b | vit_l | vit_h | micro | sam2_hiera_t | sam2_hiera_s | sam2_hiera_b_plus | sam2_hiera_l | "
                   "sam2_micro (checked against --checkpoint; without one, the model to fall back to)")


@dataclass(frozen=True)
class ModelSource:
    """Where a command's model came from.

    ``tag`` names the model in studies, policies and cards: ``sam_<type>`` for the packaged
    reference, ``sam_<type>-<file stem>`` for a checkpoint, ``subnet-<folder>`` for an exported
    subnet, ``sam_<type>-random`` for random weights (``<type>`` for SAM 2 types, which already
    say ``sam2_``: ``sam2_micro-random``). ``path`` is the file or folder read (None for
    random weights); ``ranking`` the checkpoint's ranking metadata (None when never ranked).
    """

    tag: str
    path: str | None
    ranking: dict | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "model"


def model_tag(model_type: str) -> str:
    """``sam_<type>`` for SAM (``sam_vit_b``), the type itself for SAM 2's (``sam2_hiera_t``)."""
    return model_type if model_type.startswith("sam2_") else f"sam_{model_type}"


def load_model(checkpoint: str | None = None, subnet: str | None = None, model_type: str | None = None,
               log=None):
    """``(Sam or Sam2 in eval mode, ModelSource)`` for a command's ``--checkpoint`` / ``--subnet`` options.

    ``model_type`` (micro, vit_b, ..., sam2_hiera_t, sam2_micro, ...) checks a checkpoint and picks
    which packaged reference to fall back to (default micro); SAM 2 has none, so its fallback is
    seeded random weights. A SAM 2 checkpoint is recognised by its keys (Meta's or Hugging Face's).
    A checkpoint path that is the packaged reference is tagged as the reference. Neither option and
    no packaged weights: seeded random weights and a warning through ``log`` (default: print to
    stderr), since quality figures then show the mechanics only.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    if checkpoint and subnet:
        raise UserError("give --checkpoint or --subnet, not both")
    if subnet:
        from supernet.elastic.extract import load_subnet

        model = load_subnet(subnet).eval()
        return model, ModelSource(f"subnet-{_slug(Path(subnet).resolve().name)}", str(subnet))
    from supernet.elastic.ranked import load_ranked
    from supernet.reference import reference_checkpoint

    fallback = model_type or "micro"
    reference = reference_checkpoint(fallback)
    if checkpoint and not (reference is not None and Path(checkpoint).resolve() == reference.resolve()):
        model, ranking = load_ranked(checkpoint, model_type)
        tag = f"{model_tag(model.arch.name)}-{_slug(Path(checkpoint).stem)}"
        return model.eval(), ModelSource(tag, str(checkpoint), ranking)
    if reference is not None:
        if checkpoint is None:
            log(f"NOTE: no --checkpoint: using the packaged {fallback} reference weights ({reference})")
        model, ranking = load_ranked(reference, model_type)
        return model.eval(), ModelSource(model_tag(fallback), str(reference), ranking)
    from supernet.elastic.build import build_supernet

    log(f"NOTE: no --checkpoint and no packaged reference weights for {fallback}: using RANDOMLY "
        f"INITIALISED weights, so quality numbers show the mechanics only")
    return build_supernet(fallback, seed=0).eval(), ModelSource(f"{model_tag(fallback)}-random", None)

