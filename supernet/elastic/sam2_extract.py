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

from dataclasses import asdict, replace

import torch

from supernet.checkpoint_sam2 import assign_exact
from supernet.elastic.sam2_activation import block_specs, sam2_check_fits
from supernet.elastic.subnet_config import SubnetConfig
from supernet.modeling.sam2.arch import Sam2Arch, Sam2BlockSpec
from supernet.modeling.sam2.build import build_sam2_from_spec
from supernet.modeling.sam2.model import Sam2

_BLOCKS = "image_encoder.trunk.blocks."
FAMILY = "sam2"  # subnet.json's `family` for a SAM 2 subnet (SAM 1 files have none)
_TUPLE_FIELDS = ("stages", "global_att_blocks", "window_spec", "window_pos_embed_bkg", "fpn_top_down_levels",
                 "pixel_mean", "pixel_std")


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


def _block_state(block, heads: int, mlp: int) -> dict[str, torch.Tensor]:
    """A supernet block's state dict cut to its first ``heads`` heads and ``mlp`` neurons (names inside the block)."""
    state = dict(block.state_dict())
    state["attn.qkv.weight"], state["attn.qkv.bias"] = block.attn.qkv_slice(heads)
    state["attn.proj.weight"] = block.attn.proj.weight[:, : heads * block.spec.head_dim]
    first, second = block.mlp.layers
    state["mlp.layers.0.weight"], state["mlp.layers.0.bias"] = first.weight[:mlp], first.bias[:mlp]
    state["mlp.layers.1.weight"] = second.weight[:, :mlp]
    return state


@torch.no_grad()
def extract_sam2(model: Sam2, config: SubnetConfig) -> Sam2:
    """A standalone plain :class:`Sam2` of ``config``'s size, fp32; its outputs equal ``model``'s with
    ``config`` active. ``config`` is checked to fit first (a one-line ConfigError naming the field)."""
    sam2_check_fits(model, config)
    kept = [i for i, choice in enumerate(config.blocks) if choice.keep]
    with torch.device("meta"):
        sub = build_sam2_from_spec(sam2_subnet_arch(model, config), sam2_subnet_blocks(model, config),
                                   config.resolution)
    state = {key: value for key, value in model.state_dict().items() if not key.startswith(_BLOCKS)}
    blocks = model.image_encoder.trunk.blocks
    for j, i in enumerate(kept):
        choice = config.blocks[i]
        state.update({f"{_BLOCKS}{j}.{name}": value
                      for name, value in _block_state(blocks[i], choice.heads, choice.mlp).items()})
    state = {key: value.clone() for key, value in state.items()}
    sub.load_state_dict(state, strict=True, assign=True)
    # non-persistent buffers were built on the meta device
    sub.pixel_mean, sub.pixel_std = model.pixel_mean.clone(), model.pixel_std.clone()
    return sub.eval()


def sam2_subnet_metadata(model: Sam2, config: SubnetConfig) -> dict:
    """The SAM 2 part of ``subnet.json``: ``family``, the base ``model_type``, the subnet's ``arch``
    (:func:`sam2_subnet_arch`) and each kept block's spec (field -> value)."""
    return {"family": FAMILY, "model_type": model.arch.name, "arch": sam2_subnet_arch(model, config).to_dict(),
            "blocks_spec": [asdict(spec) for spec in sam2_subnet_blocks(model, config)]}


def read_sam2_subnet_shape(meta: dict) -> tuple[Sam2Arch, list[Sam2BlockSpec]]:
    """The subnet architecture and block specs :func:`sam2_subnet_metadata` wrote.

    Malformed metadata raises KeyError, TypeError or ValueError (the caller names the file).
    """
    fields = dict(meta["arch"])
    fields.update({key: tuple(fields[key]) for key in _TUPLE_FIELDS})
    arch = Sam2Arch(**fields)
    specs = [Sam2BlockSpec(**spec) for spec in meta["blocks_spec"]]
    if len(specs) != arch.depth:
        raise ValueError(f"blocks_spec has {len(specs)} blocks, arch.stages {list(arch.stages)}")
    return arch, specs


def build_sam2_subnet(arch: Sam2Arch, specs: list[Sam2BlockSpec], resolution: int,
                      state: dict[str, torch.Tensor], source: str) -> Sam2:
    """The plain :class:`Sam2` of ``arch`` and ``specs`` at ``resolution`` px holding exactly ``state``
    (a one-line CheckpointError naming ``source`` otherwise)."""
    with torch.device("meta"):
        model = build_sam2_from_spec(arch, specs, resolution)
    return assign_exact(model, state, source)
