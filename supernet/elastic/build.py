"""The supernet's builder: SAM of a model type with the elastic encoder, randomly initialised."""
from __future__ import annotations

from supernet.elastic.modules import ElasticImageEncoderViT
from supernet.modeling.arch import SamArch
from supernet.modeling.build import build_full
from supernet.modeling.sam import Sam


def build_sam(model_type: str | SamArch, seed: int | None = None) -> Sam:
    """The full model of ``model_type`` (vit_b, vit_l, vit_h, micro) as an elastic supernet, random weights.

    At full width its forward pass is the original SAM's; ``seed`` as :func:`supernet.modeling.build.build_full`
    (a local generator; torch's global one is neither read nor changed).
    """
    return build_full(model_type, seed, encoder_cls=ElasticImageEncoderViT)


MODEL_REGISTRY = {name: (lambda name=name: build_sam(name)) for name in ("vit_b", "vit_l", "vit_h", "micro")}
