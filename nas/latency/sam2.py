"""What profiling times for a SAM 2 (Hiera) space: the lookup table's modules and the deployed encoder.

:func:`nas.latency.profile.kind_module` and :func:`nas.latency.profile.encoder_module` dispatch here for
SAM 2. The lookup table of a SAM 2 space (:func:`nas.latency.store.encoder_block_kinds`) has, per
input side R:

* ``fixed``: the encoder without its trunk blocks, :class:`Sam2FixedPart`: the 7x7 stride-4 patch
  embedding, the position embedding, the FPN neck, the decoder's high-resolution projections
  (``conv_s0``, ``conv_s1``) and ``no_mem_embed``;
* one entry per block kind x heads x MLP width: ``window`` and ``global`` blocks at their stage's grid
  and width, and ``transition`` blocks (a stage's first, whose queries are 2x2-pooled and whose width
  doubles) on the previous stage's grid; each a plain :class:`MultiScaleBlock` with the spec an
  extracted subnet's block has;
* with prompts, ``decoder``: SAM 2's prompt encoder and mask decoder (:class:`Sam2DecoderCall`).

The subnet timed end to end is :class:`supernet.modeling.sam2.model.Sam2EncoderCall`: pixels to the three
tensors SAM 2's decoder takes, as a deployed encoder produces them; its ONNX file for a fresh-process timing
is the one ``samnas export`` writes (:func:`nas.export.sam2_onnx.export_sam2_encoder_onnx`).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from supernet.modeling.sam2.arch import Sam2Arch, Sam2BlockSpec, fixed_reason
from supernet.modeling.sam2.build import build_sam2_from_spec
from supernet.modeling.sam2.hiera import MultiScaleBlock
from supernet.modeling.sam2.model import BACKBONE_STRIDE, Sam2, feature_tuple

from .profile import prompt_inputs
from .store import BlockKind, sam2_block_kind

PATCH_STRIDE = 4  # the Hiera patch embedding's stride: stage s runs on a grid of R / (4 * 2**s) tokens


class Sam2FixedPart(nn.Module):
    """What SAM 2's encoder runs besides its trunk blocks: ``(images (1, 3, R, R), stage 1..n-1 outputs)`` -> the
    outputs of :class:`Sam2EncoderCall`.

    The stage-0 map is the embedded patches; the later stages' maps ``(1, C_s, R/4/2^s, R/4/2^s)`` are
    inputs (in a subnet, the outputs of blocks timed as their own kinds).
    """

    def __init__(self, sam: Sam2) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, images: torch.Tensor, *later_stages: torch.Tensor):
        encoder = self.sam.image_encoder
        x = encoder.trunk.patch_embed(images)
        x = x + encoder.trunk._get_pos_embed(x.shape[1:3])
        levels = encoder.neck([x.permute(0, 3, 1, 2), *later_stages])
        return feature_tuple(self.sam.features_from_levels(levels[: len(levels) - encoder.scalp]))


class Sam2DecoderCall(nn.Module):
    """SAM 2's prompt encoder + mask decoder for single-point prompts:
    ``(image_embed, high_res_s0, high_res_s1, coords (K, 1, 2), labels (K, 1))``."""

    def __init__(self, sam: Sam2) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, image_embed, high_res_s0, high_res_s1, coords, labels):
        features = {"image_embed": image_embed, "high_res_feats": [high_res_s0, high_res_s1]}
        return self.sam.decode(features, points=(coords, labels), multimask_output=True)


def bare_sam2(arch: Sam2Arch, resolution: int) -> Sam2:
    """A SAM 2 at ``resolution`` px (random weights) whose trunk has only its fixed blocks, at 1 head and 1
    MLP neuron: what :class:`Sam2FixedPart` and :class:`Sam2DecoderCall` need, never running a block."""
    fixed = [replace(spec, heads=1, mlp_dim=1) for i, spec in enumerate(arch.block_specs()) if fixed_reason(i, spec)]
    return build_sam2_from_spec(arch, fixed, resolution).eval()


def kind_spec(arch: Sam2Arch, kind: dict) -> Sam2BlockSpec:
    """The block spec of a block-kind entry (its stage, window and transition, at its heads and MLP width)."""
    want = BlockKind(kind["kind"], kind["window"], kind["stage"])
    for spec in arch.block_specs():
        if sam2_block_kind(spec) == want:
            return replace(spec, heads=kind["heads"], mlp_dim=kind["mlp"])
    raise ValueError(f"{arch.name} has no {want.kind} block in stage {want.stage} with window {want.window}")


def stage_grid(resolution: int, stage: int) -> int:
    """Tokens per side of stage ``stage``'s grid at ``resolution`` px."""
    return resolution // (PATCH_STRIDE * 2**stage)


def sam2_kind_module(arch: Sam2Arch, kind: dict, gen: torch.Generator) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """:func:`nas.latency.profile.kind_module` of a SAM 2 entry, fp32: the module and its example inputs."""
    res = kind["resolution"]
    if kind["kind"] == "fixed":
        stages = [torch.randn(1, dim, stage_grid(res, s), stage_grid(res, s), generator=gen)
                  for s, dim in enumerate(arch.stage_dims) if s > 0]
        return Sam2FixedPart(bare_sam2(arch, res)), (torch.randn(1, 3, res, res, generator=gen), *stages)
    if kind["kind"] == "decoder":
        sam, grid = bare_sam2(arch, res), res // BACKBONE_STRIDE
        decoder = sam.sam_mask_decoder  # its high-resolution inputs: conv_s0's at stride 4, conv_s1's at stride 8
        shapes = ((arch.d_model, grid), (decoder.conv_s0.out_channels, 4 * grid),
                  (decoder.conv_s1.out_channels, 2 * grid))
        features = tuple(torch.randn(1, channels, side, side, generator=gen) for channels, side in shapes)
        return Sam2DecoderCall(sam), (*features, *prompt_inputs(res, kind["prompts"], gen))
    spec = kind_spec(arch, kind)
    grid = stage_grid(res, spec.stage - spec.q_pool)  # a transition takes the previous stage's grid
    return MultiScaleBlock(spec), (torch.randn(1, grid, grid, spec.dim, generator=gen),)
