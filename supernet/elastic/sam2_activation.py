"""Activating a subnet config on the SAM 2 supernet (:class:`supernet.elastic.sam2_modules.ElasticHiera`).

The entry points are :mod:`supernet.elastic.activation`'s, which dispatch here for a :class:`Sam2`.
A SAM 2 config has one :class:`BlockChoice` per trunk block, each naming its ``stage`` (0 for the
first, as the trunk counts them); block 0 and every stage-transition (q-pool) block must be kept,
since skipping them would change the stage widths and strides. Heads are the first ``k`` of the
block's own (1 .. the stage's heads), MLP the first ``k`` neurons (1 .. the stage's MLP width);
the input side is a multiple of 32 pixels, at most the model's.
"""
from __future__ import annotations

from infra.errors import ConfigError
from supernet.elastic.precision import check_precision
from supernet.elastic.sam2_modules import ElasticHiera
from supernet.elastic.subnet_config import BlockChoice, SubnetConfig
from supernet.modeling.sam2.arch import SIDE_MULTIPLE, Sam2BlockSpec, fixed_reason
from supernet.modeling.sam2.model import Sam2


def block_specs(model: Sam2) -> list[Sam2BlockSpec]:
    """The full-size spec of each trunk block of ``model``, in order."""
    return [block.spec for block in model.image_encoder.trunk.blocks]


def sam2_full_config(model: Sam2, space: str | None = None) -> SubnetConfig:
    """Every block kept at its full heads and MLP width, at the model's built input side."""
    blocks = tuple(BlockChoice(True, s.heads, s.mlp_dim, stage=s.stage) for s in block_specs(model))
    return SubnetConfig(space, model.arch.img_size, blocks)


def elastic_trunk(model: Sam2) -> ElasticHiera:
    """``model``'s trunk when it is the supernet's; TypeError for a plain :class:`Sam2`."""
    trunk = model.image_encoder.trunk
    if not isinstance(trunk, ElasticHiera):
        raise TypeError("a plain Sam2 runs one architecture; activate subnets on the supernet "
                        "(supernet.elastic.build.build_sam2_supernet, or load_sam2(..., elastic=True))")
    return trunk


def sam2_active_config(model: Sam2) -> SubnetConfig:
    """The config currently active on the SAM 2 supernet ``model`` (``space`` None)."""
    trunk = elastic_trunk(model)
    blocks = tuple(
        BlockChoice(True, b.attn.active_heads, b.mlp.active_hidden, stage=b.spec.stage) if on
        else BlockChoice.skipped(b.spec.stage)
        for b, on in zip(trunk.blocks, trunk.active_blocks))
    return SubnetConfig(None, model.resolution, blocks)


def sam2_check_fits(model: Sam2, config: SubnetConfig) -> None:
    """Raise a one-line ConfigError naming the field when ``config`` does not fit ``model``'s trunk."""
    specs = block_specs(model)
    if config.num_blocks != len(specs):
        raise ConfigError(f"blocks: expected a list of {len(specs)} entries (one per Hiera block) for this model, "
                          f"got {config.num_blocks}")
    res, top = config.resolution, model.arch.img_size
    if res % SIDE_MULTIPLE or not 0 < res <= top:
        raise ConfigError(f"resolution: {res!r} must be a multiple of {SIDE_MULTIPLE} in (0, {top}]")
    for i, (choice, spec) in enumerate(zip(config.blocks, specs)):
        where = f"blocks[{i}]"
        if choice.stage != spec.stage:
            raise ConfigError(f"{where}.stage: {choice.stage} does not match the model (block {i} is in stage "
                              f"{spec.stage})")
        if not choice.keep:
            reason = fixed_reason(i, spec)
            if reason:
                raise ConfigError(f"{where}.keep: false not allowed, block {i} cannot be skipped: {reason}")
            continue
        if not 1 <= choice.heads <= spec.heads:
            raise ConfigError(f"{where}.heads: {choice.heads!r} must be an integer in [1, {spec.heads}]")
        if not 1 <= choice.mlp <= spec.mlp_dim:
            raise ConfigError(f"{where}.mlp: {choice.mlp!r} must be an integer in [1, {spec.mlp_dim}]")
        check_precision(choice.precision, f"{where}.precision")

