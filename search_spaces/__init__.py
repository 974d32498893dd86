"""Search spaces over subnets of the elastic SAM supernet, and subnet configs.

- :class:`SearchSpace` (``space.py``): a packaged space (``sam_vit_b``, ``sam_vit_l``,
  ``sam_vit_h``, ``sam_micro``; the ``*.yaml`` files here) or a user's space file;
  validates, samples, encodes and counts subnet configs.
- ``config.py``: subnet configs (:class:`SubnetConfig`, re-exported from
  ``supernet.elastic.subnet_config``, with its canonical key ``.key``) as YAML/JSON files
  (:func:`load_config`, :func:`save_config`).
- ``commands.py``: ``samnas spaces list`` and ``samnas spaces show NAME``.

Parameter and FLOP counts per config need the model, so they live in their own module
next to this one; it takes a ``SearchSpace`` and a config from ``SearchSpace.validate``.
"""
from .config import BlockChoice, SubnetConfig, dump_config, load_config, save_config
from .space import BlockChoices, SearchSpace, available_spaces

__all__ = [
    "BlockChoice",
    "BlockChoices",
    "SearchSpace",
    "SubnetConfig",
    "available_spaces",
    "dump_config",
    "load_config",
    "save_config",
]
