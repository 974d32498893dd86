"""Activating a subnet of the weight-sharing supernet.

A subnet config (see ``search_spaces``) is a dict::

    {"space": "sam_vit_b", "resolution": 1024,
     "blocks": [{"keep": True, "heads": 12, "mlp": 3072}, {"keep": False}, ...]}

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
from supernet.elastic.precision import block_precision, check_precision
from supernet.modeling.sam import Sam


def full_config(model: Sam, space: str | None = None) -> dict:
    """The config that runs the whole model: every block at full width, the largest resolution."""
    return {
        "space": space,
        "resolution": model.image_encoder.img_size,
        "blocks": [
            {"keep": True, "heads": b.attn.num_heads, "mlp": b.mlp.hidden} for b in model.image_encoder.blocks
        ],
    }


def active_config(model: Sam) -> dict:
    """The config currently active on ``model``."""
    enc = model.image_encoder
    blocks = [
        {"keep": True, "heads": b.attn.active_heads, "mlp": b.mlp.active_hidden} if on else {"keep": False}
        for b, on in zip(enc.blocks, enc.active_blocks)
    ]
    return {"resolution": model.resolution, "blocks": blocks}


def check_fits(model: Sam, config: dict) -> None:
    """Raise ConfigError naming the field when ``config`` does not fit the model's shapes."""
    blocks = config.get("blocks")
    enc = model.image_encoder
    if not isinstance(blocks, list) or len(blocks) != len(enc.blocks):
        raise ConfigError(f"blocks: expected a list of {len(enc.blocks)} entries for this model")
    res = config.get("resolution")
    if not isinstance(res, int) or res % enc.patch_size or not 0 < res <= enc.img_size:
        raise ConfigError(f"resolution: {res!r} must be a multiple of {enc.patch_size} in (0, {enc.img_size}]")
    for i, (spec, block) in enumerate(zip(blocks, enc.blocks)):
        if not spec.get("keep", True):
            continue
        heads, mlp = spec.get("heads"), spec.get("mlp")
        if not isinstance(heads, int) or not 1 <= heads <= block.attn.num_heads:
            raise ConfigError(f"blocks[{i}].heads: {heads!r} must be an integer in [1, {block.attn.num_heads}]")
        if not isinstance(mlp, int) or not 1 <= mlp <= block.mlp.hidden:
            raise ConfigError(f"blocks[{i}].mlp: {mlp!r} must be an integer in [1, {block.mlp.hidden}]")
        check_precision(block_precision(spec), f"blocks[{i}].precision")


def set_active_subnet(model: Sam, config: dict) -> Sam:
    """Make ``config`` the active subnet of ``model`` (in place) and return the model.

    Raises ConfigError for a config with an int8 block: the supernet would silently run it fp32.
    """
    check_fits(model, config)
    for i, spec in enumerate(config["blocks"]):
        if spec.get("keep", True) and block_precision(spec) != "fp32":
            raise ConfigError(f"blocks[{i}].precision: {block_precision(spec)} runs only on an extracted subnet "
                              "(supernet.elastic.extract.extract quantizes it); the weight-sharing supernet runs fp32")
    enc = model.image_encoder
    for i, (spec, block) in enumerate(zip(config["blocks"], enc.blocks)):
        keep = bool(spec.get("keep", True))
        enc.active_blocks[i] = keep
        if keep:
            block.attn.active_heads = spec["heads"]
            block.mlp.active_hidden = spec["mlp"]
    model.set_resolution(config["resolution"])
    return model


@contextmanager
def active_subnet(model: Sam, config: dict):
    """Context manager: run ``config`` inside the block, restore the previous subnet after."""
    previous = active_config(model)
    set_active_subnet(model, config)
    try:
        yield model
    finally:
        set_active_subnet(model, previous)
