"""Builders for the official sam2 oracle with the same shapes as our SAM 2 models, and a comparison of
segment-everything records (tests only).

The models are built from sam2's classes with the values of ``sam2.1_hiera_{t,s,b+,l}.yaml``
written out here (hydra is not used), random weights.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from conftest import HAVE_TORCHVISION, sam2_oracle
from supernet.modeling.sam2.arch import Sam2Arch

# model-level flags of every sam2.1_hiera_*.yaml, plus build_sam2's dynamic multimask overrides
SAM2_1_FLAGS = dict(
    num_maskmem=7, sigmoid_scale_for_mem_enc=20.0, sigmoid_bias_for_mem_enc=-10.0,
    use_mask_input_as_output_without_sam=True, directly_add_no_mem_embed=True, no_obj_embed_spatial=True,
    use_high_res_features_in_sam=True, multimask_output_in_sam=True, iou_prediction_use_sigmoid=True,
    use_obj_ptrs_in_encoder=True, add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True,
    use_signed_tpos_enc_to_obj_ptrs=True, only_obj_ptrs_in_the_past_for_eval=True, pred_obj_scores=True,
    pred_obj_scores_mlp=True, fixed_no_obj_ptr=True, multimask_output_for_tracking=True,
    use_multimask_token_for_obj_ptr=True, multimask_min_pt_num=0, multimask_max_pt_num=1,
    use_mlp_for_obj_ptr_proj=True, compile_image_encoder=False,
    sam_mask_decoder_extra_args=dict(dynamic_multimask_via_stability=True, dynamic_multimask_stability_delta=0.05,
                                     dynamic_multimask_stability_thresh=0.98),
)
# what SAM 2.0's configs (sam2_hiera_*.yaml) set differently
SAM2_0_FLAGS = dict(SAM2_1_FLAGS, no_obj_embed_spatial=False, add_tpos_enc_to_obj_ptrs=False,
                    proj_tpos_enc_in_obj_ptrs=False, use_signed_tpos_enc_to_obj_ptrs=False)


def official_image_encoder(arch: Sam2Arch):
    """sam2's ``ImageEncoder(Hiera, FpnNeck, scalp=1)`` with ``arch``'s sizes."""
    sam2_oracle()
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    trunk = Hiera(embed_dim=arch.embed_dim, num_heads=arch.num_heads, stages=arch.stages,
                  global_att_blocks=arch.global_att_blocks, window_pos_embed_bkg_spatial_size=arch.window_pos_embed_bkg,
                  window_spec=arch.window_spec)
    neck = FpnNeck(position_encoding=PositionEmbeddingSine(num_pos_feats=arch.d_model, normalize=True, scale=None,
                                                           temperature=10000),
                   d_model=arch.d_model, backbone_channel_list=list(arch.stage_dims[::-1]),
                   fpn_top_down_levels=list(arch.fpn_top_down_levels), fpn_interp_model="nearest")
    return ImageEncoder(trunk=trunk, neck=neck, scalp=1)


def official_memory(d_model: int):
    """sam2's memory attention and memory encoder as the 2.1 configs build them (``d_model`` wide)."""
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention

    rope = dict(rope_theta=10000.0, feat_sizes=[64, 64], embedding_dim=d_model, num_heads=1, downsample_rate=1,
                dropout=0.1)
    layer = MemoryAttentionLayer(
        activation="relu", dim_feedforward=2048, dropout=0.1, pos_enc_at_attn=False, d_model=d_model,
        self_attention=RoPEAttention(**rope), pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        cross_attention=RoPEAttention(**rope, rope_k_repeat=True, kv_in_dim=64))
    attention = MemoryAttention(d_model=d_model, pos_enc_at_input=True, layer=layer, num_layers=4)
    encoder = MemoryEncoder(
        out_dim=64, in_dim=d_model,
        position_encoding=PositionEmbeddingSine(num_pos_feats=64, normalize=True, scale=None, temperature=10000),
        mask_downsampler=MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=Fuser(CXBlock(dim=d_model, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
                    num_layers=2))
    return attention, encoder


def official_sam2(arch: Sam2Arch, img_size: int | None = None, with_memory: bool = False, version: str = "2.1"):
    """sam2's ``SAM2Base`` for ``arch`` at ``img_size`` px, random weights, in eval mode.

    ``SAM2Base`` fixes the decoder at SAM 2's sizes (MLP 2048, 8 heads, IoU head 256 wide); for a
    smaller ``arch`` its decoder is replaced by sam2's ``MaskDecoder`` with ``arch``'s sizes.
    ``with_memory``: the video modules too (for the full checkpoint layout), else ``None``.
    """
    sam2_oracle()
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    memory_attention, memory_encoder = official_memory(arch.d_model) if with_memory else (None, None)
    flags = SAM2_1_FLAGS if version == "2.1" else SAM2_0_FLAGS
    model = SAM2Base(official_image_encoder(arch), memory_attention, memory_encoder,
                     image_size=img_size or arch.img_size, **flags)
    if (arch.decoder_mlp_dim, arch.decoder_heads, arch.iou_head_hidden_dim) != (2048, 8, 256):
        model.sam_mask_decoder = MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=arch.decoder_depth, embedding_dim=arch.d_model,
                                          mlp_dim=arch.decoder_mlp_dim, num_heads=arch.decoder_heads),
            transformer_dim=arch.d_model, iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim, use_high_res_features=True,
            iou_prediction_use_sigmoid=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
            use_multimask_token_for_obj_ptr=True, **flags["sam_mask_decoder_extra_args"])
    return model.eval()


def official_and_ours(name: str, side: int, folder):
    """``(official SAM2Base, ours)`` for the model type ``name`` at ``side`` px: the official one with random
    weights (:func:`randomise`, seed 0, its video modules too), saved in Meta's checkpoint layout under
    ``folder`` and loaded into ours with ``load_sam2``, so that loading is exercised as well."""
    from supernet.checkpoint_sam2 import load_sam2
    from supernet.modeling.sam2.arch import get_sam2_arch

    official = randomise(official_sam2(get_sam2_arch(name), side, with_memory=True), seed=0)
    path = folder / f"{name}_{side}.pt"
    torch.save({"model": official.state_dict()}, path)
    return official, load_sam2(path, img_size=side)


@torch.no_grad()
def randomise(model: nn.Module, seed: int, std: float = 0.05) -> nn.Module:
    """Every parameter drawn from N(0, std^2) with a local generator; layer-norm weights from N(1, std^2).

    Layer-norm weights and biases are drawn too, so that a norm wired to the wrong tensor shows.
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        is_norm = "LayerNorm" in type(module).__name__
        for name, p in module.named_parameters(recurse=False):
            p.copy_(torch.randn(p.shape, generator=gen) * std + (1.0 if is_norm and name == "weight" else 0.0))
    return model


@contextmanager
def parameters_on_meta():
    """Every parameter and buffer registered inside goes to the meta device as it is registered.

    sam2's ``Hiera`` calls ``.item()`` while it is built, which a ``torch.device("meta")`` block
    refuses; this is the same "empty weights" idea applied one tensor at a time (each is created
    on the CPU, at most one layer's worth, and replaced at once).
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        register_parameter(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def hf_sam2(arch: Sam2Arch, img_size: int | None = None):
    """transformers' ``Sam2Model`` with ``arch``'s sizes at ``img_size`` px (random weights, eval mode)."""
    if not HAVE_TORCHVISION:  # transformers' image utilities import torchvision (conftest's stand-in)
        pytest.skip("transformers' Sam2Model needs torchvision (pip install -e '.[dev]' -c constraints.txt)")
    transformers = pytest.importorskip("transformers")
    size = img_size or arch.img_size
    backbone = dict(
        model_type="sam2_hiera_det_model", hidden_size=arch.embed_dim, num_attention_heads=arch.num_heads,
        blocks_per_stage=list(arch.stages), embed_dim_per_stage=list(arch.stage_dims),
        num_attention_heads_per_stage=list(arch.stage_heads), window_size_per_stage=list(arch.window_spec),
        global_attention_blocks=list(arch.global_att_blocks),
        window_positional_embedding_background_size=list(arch.window_pos_embed_bkg), image_size=[size, size])
    config = transformers.Sam2Config(
        vision_config=dict(backbone_config=backbone, backbone_channel_list=list(arch.stage_dims[::-1]),
                           backbone_feature_sizes=[[size // s] * 2 for s in (4, 8, 16)], fpn_hidden_size=arch.d_model,
                           fpn_top_down_levels=list(arch.fpn_top_down_levels)),
        prompt_encoder_config=dict(hidden_size=arch.d_model, image_size=size, mask_input_channels=arch.mask_in_chans),
        mask_decoder_config=dict(hidden_size=arch.d_model, mlp_dim=arch.decoder_mlp_dim,
                                 num_attention_heads=arch.decoder_heads, iou_head_hidden_dim=arch.iou_head_hidden_dim,
                                 iou_head_depth=arch.iou_head_depth))
    return transformers.Sam2Model(config).eval()


def assert_same_records(got: list[dict], want: list[dict], least: int = 1) -> None:
    """Segment-everything records (binary masks) that agree: as many (at least ``least``), paired one to one by
    mask IoU (the assignment of the largest total), each pair's masks equal on >= 99.9% of pixels, predicted
    IoU and stability score within 1e-3, the same prompt point (within 1e-3 px) and crop box."""
    from scipy.optimize import linear_sum_assignment

    assert len(got) == len(want) >= least, (len(got), len(want))
    if not want:
        return
    a = np.stack([r["segmentation"] for r in got]).reshape(len(got), -1).astype(np.float32)
    b = np.stack([r["segmentation"] for r in want]).reshape(len(want), -1).astype(np.float32)
    inter = a @ b.T
    iou = inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)
    for i, j in zip(*linear_sum_assignment(-iou)):
        g, w = got[i], want[j]
        assert (g["segmentation"] == w["segmentation"]).mean() >= 0.999, (i, j)
        assert abs(g["predicted_iou"] - w["predicted_iou"]) <= 1e-3, (i, j)
        assert abs(g["stability_score"] - w["stability_score"]) <= 1e-3, (i, j)
        np.testing.assert_allclose(g["point_coords"], w["point_coords"], atol=1e-3)
        assert list(g["crop_box"]) == list(w["crop_box"]), (i, j)
