"""Architecture hyper-parameters of each SAM model type (the builder registry's data).

Dimensions follow Meta's released models: ViT-B/L/H image encoders at 1024x1024 input,
16x16 patches, a 256-channel neck and a two-way-transformer mask decoder. ``micro`` is
samnas's own small SAM (256x256 input) for tests, the built-in demo and the packaged
reference model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SamArch:
    """Static shape of a SAM model. Pixel sizes in pixels, widths in channels."""

    name: str
    img_size: int = 1024  # input side in pixels (the largest resolution)
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    prompt_embed_dim: int = 256  # neck output channels == decoder transformer width
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_hidden_dim: int = 256
    iou_head_depth: int = 3
    num_multimask_outputs: int = 3
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    @property
    def grid_size(self) -> int:
        """Patch-grid side at full resolution (64 for 1024 / 16)."""
        return self.img_size // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)


ARCHS: dict[str, SamArch] = {
    "vit_b": SamArch("vit_b"),
    "vit_l": SamArch(
        "vit_l", embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096, global_attn_indexes=(5, 11, 17, 23)
    ),
    "vit_h": SamArch(
        "vit_h", embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120, global_attn_indexes=(7, 15, 23, 31)
    ),
    "micro": SamArch(
        "micro",
        img_size=256,
        embed_dim=128,
        depth=6,
        num_heads=4,
        mlp_dim=512,
        global_attn_indexes=(2, 5),
        window_size=8,
        prompt_embed_dim=64,
        decoder_mlp_dim=256,
        decoder_heads=4,
        iou_head_hidden_dim=64,
    ),
}


def get_arch(model_type: str) -> SamArch:
    """Return the architecture for ``model_type`` (vit_b, vit_l, vit_h, micro)."""
    try:
        return ARCHS[model_type]
    except KeyError:
        raise ValueError(f"model type {model_type!r} unknown; expected one of {sorted(ARCHS)}") from None
