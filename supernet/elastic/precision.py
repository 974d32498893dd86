"""Per-block precision in subnet configs: the allowed values and how a config states them.

Plain Python (no torch), so that reading and validating configs and search spaces stays light;
:mod:`supernet.elastic.quantize` applies the precision to an extracted subnet.
"""
from __future__ import annotations

from collections.abc import Mapping

from infra.errors import ConfigError

PRECISIONS = ("fp32", "int8")  # in order: a space's choices and messages list them this way
DEFAULT_PRECISION = "fp32"


def block_precision(spec: Mapping) -> str:
    """The precision of one config block entry (``fp32`` when it has no ``precision`` field)."""
    return spec.get("precision", DEFAULT_PRECISION)


def check_precision(value, where: str, allowed: tuple[str, ...] = PRECISIONS) -> str:
    """``value`` when it is one of ``allowed``; else ConfigError ``<where>: 'x' not in ['fp32', 'int8']``."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: {value!r} not in {list(allowed)}")
    return value


def int8_blocks(config: Mapping) -> list[int]:
    """Indices, among the *kept* blocks (the extracted subnet's numbering), of the int8 blocks."""
    kept = [spec for spec in config["blocks"] if spec.get("keep", True)]
    return [i for i, spec in enumerate(kept) if block_precision(spec) == "int8"]


PRECISION_KINDS = ("fp32", "int8", "mixed")  # what a whole config is, for listing and filtering fronts


def config_precision(config: Mapping) -> str:
    """``fp32`` (no kept block int8), ``int8`` (every kept block int8) or ``mixed``."""
    kept = sum(1 for spec in config["blocks"] if spec.get("keep", True))
    n = len(int8_blocks(config))
    return "fp32" if n == 0 else "int8" if n == kept else "mixed"


def precision_label(config: Mapping) -> str:
    """``config_precision``, with the count for mixed configs: ``mixed (3/6 int8)``."""
    kind = config_precision(config)
    if kind != "mixed":
        return kind
    kept = sum(1 for spec in config["blocks"] if spec.get("keep", True))
    return f"mixed ({len(int8_blocks(config))}/{kept} int8)"
