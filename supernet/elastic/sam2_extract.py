"""Extracting a SAM 2 subnet: a plain, physically smaller :class:`Sam2` with the config's slices.

``supernet.elastic.extract.extract`` dispatches here for a :class:`Sam2` supernet. The subnet's
trunk has only the kept blocks, each with its first ``heads`` heads (rows of ``qkv`` per q, k and
v, columns of ``proj``) and first ``mlp`` neurons; everything else (patch embedding, position
embeddings, transition shortcuts, neck, prompt encoder, decoder) is copied unchanged. SAM 2's
position embedding is interpolated to the token grid at run time and its windows do not depend
on the input side, so nothing is resampled: the input side is only the subnet's
``set_resolution``. Its architecture (:func:`sam2_subnet_arch`) lists the kept blocks per stage
and renumbers the global-attention blocks, so that a depth-only subnet is exactly what Meta's
``Hiera(stages=..., global_att_blocks=...)`` builds.
"""
from __future__ import annotations

import re
from dataclasses import replace

import torch

from supernet.elastic.sam2_activation import block_specs, sam2_check_fits
from supernet.elastic.subnet_config import SubnetConfig
from supernet.modeling.sam2.arch import Sam2Arch, Sam2BlockSpec
from supernet.modeling.sam2.build import build_sam2_from_spec
from supernet.modeling.sam2.model import Sam2

_BLOCK_KEY = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.(.+)$")


def sam2_subnet_blocks(model: Sam2, config: SubnetConfig) -> list[Sam2BlockSpec]:
    """The spec of each kept block of ``config``, in order, at the config's heads and MLP width."""
    return [replace(spec, heads=choice.heads, mlp_dim=choice.mlp)
            for choice, spec in zip(config.blocks, block_specs(model)) if choice.keep]


def sam2_subnet_arch(model: Sam2, config: SubnetConfig) -> Sam2Arch:
    """``model``'s architecture with the kept blocks per stage, their global blocks renumbered, at the config's side."""
    arch = model.arch
    kept = [i for i, choice in enumerate(config.blocks) if choice.keep]
    specs = block_specs(model)
    stages = tuple(sum(1 for i in kept if specs[i].stage == s) for s in range(len(arch.stages)))
    global_blocks = tuple(j for j, i in enumerate(kept) if i in arch.global_att_blocks)
    return replace(arch, stages=stages, global_att_blocks=global_blocks, img_size=config.resolution)


def _sliced(name: str, tensor: torch.Tensor, spec: Sam2BlockSpec, heads: int, mlp: int) -> torch.Tensor:
    """One block tensor (``name`` inside the block) cut to the first ``heads`` heads and ``mlp`` neurons."""
    hd = spec.head_dim
    if name == "attn.qkv.weight":
        return tensor.view(3, spec.heads, hd, -1)[:, :heads].reshape(3 * heads * hd, -1)
    if name == "attn.qkv.bias":
        return tensor.view(3, spec.heads, hd)[:, :heads].reshape(-1)
    if name == "attn.proj.weight":
        return tensor[:, : heads * hd]
    if name.startswith("mlp.layers.0."):
        return tensor[:mlp]
    if name == "mlp.layers.1.weight":
        return tensor[:, :mlp]
    return tensor


@torch.no_grad()
def extract_sam2(model: Sam2, config: SubnetConfig) -> Sam2:
    """A standalone plain :class:`Sam2` of ``config``'s size, fp32; its outputs equal ``model``'s with
    ``config`` active. ``config`` is checked to fit first (a one-line ConfigError naming the field)."""
    sam2_check_fits(model, config)
    specs = block_specs(model)
    kept = [i for i, choice in enumerate(config.blocks) if choice.keep]
    with torch.device("meta"):
        sub = build_sam2_from_spec(sam2_subnet_arch(model, config), sam2_subnet_blocks(model, config),
                                   config.resolution)
    source = model.state_dict()
    state = {}
    for key in sub.state_dict():
        match = _BLOCK_KEY.match(key)
        if match is None:
            state[key] = source[key].clone()
            continue
        i = kept[int(match.group(1))]
        name, choice = match.group(2), config.blocks[i]
        state[key] = _sliced(name, source[f"image_encoder.trunk.blocks.{i}.{name}"], specs[i], choice.heads,
                             choice.mlp).clone()
    sub.load_state_dict(state, strict=True, assign=True)
    # non-persistent buffers were built on the meta device
    sub.pixel_mean, sub.pixel_std = model.pixel_mean.clone(), model.pixel_std.clone()
    return sub.eval()
