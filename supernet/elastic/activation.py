"""Activating a subnet of the weight-sharing supernet.

A subnet config is a :class:`supernet.elastic.subnet_config.SubnetConfig`: a resolution and one
``BlockChoice(keep, heads, mlp, precision)`` per encoder block.

SAM 2 (a :class:`Sam2` supernet, whose configs name each block's ``stage``) is handled by
:mod:`supernet.elastic.sam2_activation` behind the same functions.

Activating it slices weights at run time: block ``i`` runs its first ``heads`` heads and
first ``mlp`` hidden units, or is skipped; the input side becomes ``resolution`` pixels.
Which values are *allowed* is the search space's business; here we only check that the
config fits the model's shapes. A block's ``precision`` (``int8``, see
``supernet.elastic.quantize``) needs plain linear layers: the supernet runs fp32 only, and
activating a config with an int8 block is refused (extract the subnet and quantize it).
"""
from __future__ import annotations

from contextlib import contextmanager

from infra.errors import ConfigError
from supernet.elastic.precision import DEFAULT_PRECISION, check_precision
from supernet.elastic.build import encoder_blocks
from supernet.elastic.sam2_activation import elastic_trunk, sam2_active_config, sam2_check_fits, sam2_full_config
from supernet.elastic.subnet_config import BlockChoice, SubnetConfig
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2


def full_config(model: Sam | Sam2, space: str | None = None) -> SubnetConfig:
    """The config that runs the whole model: every block at full width, the largest resolution."""
    if isinstance(model, Sam2):
        return sam2_full_config(model, space)
    blocks = tuple(BlockChoice(True, b.attn.num_heads, b.mlp.hidden) for b in model.image_encoder.blocks)
    return SubnetConfig(space, model.image_encoder.img_size, blocks)


def active_config(model: Sam | Sam2) -> SubnetConfig:
    """The config currently active on ``model`` (``space`` None)."""
    if isinstance(model, Sam2):
        return sam2_active_config(model)
    enc = model.image_encoder
    blocks = tuple(BlockChoice(True, b.attn.active_heads, b.mlp.active_hidden) if on else BlockChoice.skipped()
                   for b, on in zip(enc.blocks, enc.active_blocks))
    return SubnetConfig(None, model.resolution, blocks)


def check_fits(model: Sam | Sam2, config: SubnetConfig) -> None:
    """Raise ConfigError naming the field when ``config`` does not fit the model's shapes."""
    if isinstance(model, Sam2):
        return sam2_check_fits(model, config)
    enc = model.image_encoder
    if config.num_blocks != len(enc.blocks):
        raise ConfigError(f"blocks: expected a list of {len(enc.blocks)} entries for this model")
    res = config.resolution
    if res % enc.patch_size or not 0 < res <= enc.img_size:
        raise ConfigError(f"resolution: {res!r} must be a multiple of {enc.patch_size} in (0, {enc.img_size}]")
    for i, (spec, block) in enumerate(zip(config.blocks, enc.blocks)):
        if not spec.keep:
            continue
        if not 1 <= spec.heads <= block.attn.num_heads:
            raise ConfigError(f"blocks[{i}].heads: {spec.heads!r} must be an integer in [1, {block.attn.num_heads}]")
        if not 1 <= spec.mlp <= block.mlp.hidden:
            raise ConfigError(f"blocks[{i}].mlp: {spec.mlp!r} must be an integer in [1, {block.mlp.hidden}]")
        check_precision(spec.precision, f"blocks[{i}].precision")


def set_active_subnet(model: Sam | Sam2, config: SubnetConfig) -> Sam | Sam2:
    """Make ``config`` the active subnet of ``model`` (in place) and return the model.

    Raises ConfigError for a config with an int8 block: the supernet would silently run it fp32.
    """
    check_fits(model, config)
    for i, spec in enumerate(config.blocks):
        if spec.keep and spec.precision != DEFAULT_PRECISION:
            raise ConfigError(f"blocks[{i}].precision: {spec.precision} runs only on an extracted subnet "
                              "(supernet.elastic.extract.extract quantizes it); the weight-sharing supernet runs fp32")
    # the module that holds the depth switches: SAM's encoder, SAM 2's trunk
    switches = elastic_trunk(model) if isinstance(model, Sam2) else model.image_encoder
    for i, (spec, block) in enumerate(zip(config.blocks, encoder_blocks(model))):
        switches.active_blocks[i] = spec.keep
        if spec.keep:
            block.attn.active_heads = spec.heads
            block.mlp.active_hidden = spec.mlp
    model.set_resolution(config.resolution)
    return model


@contextmanager
def active_subnet(model: Sam | Sam2, config: SubnetConfig):
    """Context manager: run ``config`` inside the block, restore the previous subnet after."""
    previous = active_config(model)
    set_active_subnet(model, config)
    try:
        yield model
    finally:
        set_active_subnet(model, previous)
