"""Builders for the official segment-anything oracle with the same shapes as our models (tests only)."""
from __future__ import annotations

from functools import partial

import torch

from conftest import oracle
from supernet.modeling.arch import SamArch


def official_sam(arch: SamArch):
    """An official ``segment_anything.modeling.Sam`` with ``arch``'s dimensions (random weights)."""
    sa = oracle()
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.img_size // arch.patch_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.depth, embed_dim=arch.embed_dim, img_size=arch.img_size, mlp_ratio=arch.mlp_dim / arch.embed_dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch.num_heads, patch_size=arch.patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=arch.global_attn_indexes,
            window_size=arch.window_size, out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(arch.img_size, arch.img_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.prompt_embed_dim,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=arch.decoder_heads),
            transformer_dim=arch.prompt_embed_dim, iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(arch.pixel_mean), pixel_std=list(arch.pixel_std),
    )
    return model.eval(), sa
