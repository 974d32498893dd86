"""Per-block precision in subnet configs: the allowed values and their check.

Plain Python (no torch), so that reading and validating configs and search spaces stays light;
a config's blocks carry their precision (:class:`supernet.elastic.subnet_config.BlockChoice`),
and :mod:`supernet.elastic.quantize` applies it to an extracted subnet.
"""
from __future__ import annotations

from infra.errors import ConfigError

PRECISIONS = ("fp32", "int8")  # in order: a space's choices and messages list them this way
DEFAULT_PRECISION = "fp32"
PRECISION_KINDS = ("fp32", "int8", "mixed")  # what a whole config is, for listing and filtering fronts


def check_precision(value, where: str, allowed: tuple[str, ...] = PRECISIONS) -> str:
    """``value`` when it is one of ``allowed``; else ConfigError ``<where>: 'x' not in ['fp32', 'int8']``."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: {value!r} not in {list(allowed)}")
    return value
