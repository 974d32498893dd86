"""Builders: a registry from model type to a randomly initialised :class:`Sam`.

``build_sam("vit_b")`` gives the original architecture (every block full width), which is
also the supernet (``elastic=True``). Extracted subnets call :func:`build_from_spec` with
their own widths and get a plain model.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from supernet.modeling.arch import SamArch, get_arch
from supernet.modeling.image_encoder import ElasticImageEncoderViT, ImageEncoderViT
from supernet.modeling.mask_decoder import MaskDecoder
from supernet.modeling.prompt_encoder import PromptEncoder
from supernet.modeling.sam import Sam
from supernet.modeling.transformer import TwoWayTransformer


def full_blocks_spec(arch: SamArch) -> list[tuple[int, int, int]]:
    """Per block ``(heads, mlp_dim, window_size)`` of the original model; window 0 = global."""
    return [
        (arch.num_heads, arch.mlp_dim, 0 if i in arch.global_attn_indexes else arch.window_size)
        for i in range(arch.depth)
    ]


def build_from_spec(arch: SamArch, blocks_spec: list[tuple[int, int, int]], img_size: int | None = None,
                    elastic: bool = False) -> Sam:
    """A SAM whose encoder blocks have the given ``(heads, mlp_dim, window_size)``; ``img_size`` in pixels.

    ``elastic``: the supernet's encoder (run-time slicing, depth skipping), else plain ``nn.Linear`` layers.
    """
    img_size = img_size or arch.img_size
    encoder_cls = ElasticImageEncoderViT if elastic else ImageEncoderViT
    encoder = encoder_cls(
        img_size=img_size,
        patch_size=arch.patch_size,
        embed_dim=arch.embed_dim,
        head_dim=arch.head_dim,
        blocks_spec=blocks_spec,
        out_chans=arch.prompt_embed_dim,
    )
    grid = img_size // arch.patch_size
    prompt_encoder = PromptEncoder(arch.prompt_embed_dim, (grid, grid), (img_size, img_size))
    decoder = MaskDecoder(
        transformer_dim=arch.prompt_embed_dim,
        transformer=TwoWayTransformer(arch.decoder_depth, arch.prompt_embed_dim, arch.decoder_heads,
                                      arch.decoder_mlp_dim),
        num_multimask_outputs=arch.num_multimask_outputs,
        iou_head_depth=arch.iou_head_depth,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
    )
    return Sam(replace(arch, img_size=img_size), encoder, prompt_encoder, decoder).eval()


def build_sam(model_type: str | SamArch, seed: int | None = None) -> Sam:
    """The full model of ``model_type`` (vit_b, vit_l, vit_h, micro) as an elastic supernet, random weights.

    Random initialisation follows PyTorch defaults; position embeddings and relative
    positions get small random values (not zeros) so that tests exercise them.
    """
    arch = get_arch(model_type) if isinstance(model_type, str) else model_type
    if seed is not None:
        torch.manual_seed(seed)
    model = build_from_spec(arch, full_blocks_spec(arch), elastic=True)
    with torch.no_grad():
        model.image_encoder.pos_embed.normal_(std=0.02)
        for block in model.image_encoder.blocks:
            block.attn.rel_pos_h.normal_(std=0.02)
            block.attn.rel_pos_w.normal_(std=0.02)
    return model


MODEL_REGISTRY = {name: (lambda name=name: build_sam(name)) for name in ("vit_b", "vit_l", "vit_h", "micro")}
