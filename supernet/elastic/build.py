"""The supernet's builders: SAM (and SAM 2) of a model type with the elastic encoder, randomly initialised."""
from __future__ import annotations

from supernet.elastic.modules import ElasticImageEncoderViT
from supernet.elastic.sam2_modules import ElasticHiera
from supernet.modeling.arch import ARCHS, SamArch
from supernet.modeling.build import build_full
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.arch import SAM2_ARCHS, Sam2Arch
from supernet.modeling.sam2.build import build_sam2
from supernet.modeling.sam2.model import Sam2


def build_sam(model_type: str | SamArch, seed: int | None = None) -> Sam:
    """The full model of ``model_type`` (vit_b, vit_l, vit_h, micro) as an elastic supernet, random weights.

    At full width its forward pass is the original SAM's; ``seed`` as :func:`supernet.modeling.build.build_full`
    (a local generator; torch's global one is neither read nor changed).
    """
    return build_full(model_type, seed, encoder_cls=ElasticImageEncoderViT)


def build_sam2_supernet(model_type: str | Sam2Arch, seed: int | None = None, img_size: int | None = None) -> Sam2:
    """The full SAM 2 of ``model_type`` (sam2_hiera_t, ..., sam2_micro) with the elastic Hiera trunk, random weights.

    With everything active its forward pass is the plain :func:`supernet.modeling.sam2.build.build_sam2`
    model's bit for bit (same ``seed``, same weights); ``img_size`` in pixels (default the model's).
    """
    return build_sam2(model_type, seed, img_size, trunk_cls=ElasticHiera)


def encoder_blocks(model: Sam | Sam2):
    """The searched encoder blocks (an ``nn.ModuleList``): SAM's ViT blocks, or SAM 2's Hiera trunk blocks."""
    return model.image_encoder.trunk.blocks if isinstance(model, Sam2) else model.image_encoder.blocks


MODEL_TYPES = tuple(ARCHS) + tuple(sorted(SAM2_ARCHS))  # every model type a command's --model-type takes


def build_supernet(model_type: str, seed: int | None = None) -> Sam | Sam2:
    """The elastic supernet of any model type: SAM's (:func:`build_sam`) or SAM 2's (:func:`build_sam2_supernet`)."""
    return build_sam2_supernet(model_type, seed) if model_type in SAM2_ARCHS else build_sam(model_type, seed)


MODEL_REGISTRY = {name: (lambda name=name: build_supernet(name)) for name in MODEL_TYPES}
