"""The subnet config: which blocks an elastic supernet keeps, at which widths, precision and input side.

:class:`SubnetConfig` is a frozen record (``space``, ``resolution``, ``blocks``: a tuple of frozen
:class:`BlockChoice`). It is the one owner of the config's dict/JSON form: :meth:`SubnetConfig.from_dict`
reads every config file samnas ever wrote and :meth:`SubnetConfig.to_dict` / :meth:`~SubnetConfig.to_json`
write it. The JSON form::

    {"space": "sam_vit_b", "resolution": 1024,
     "blocks": [{"keep": true, "heads": 12, "mlp": 3072},
                {"keep": true, "heads": 8, "mlp": 1536, "precision": "int8"},   # fp32 when absent
                {"keep": false}]}                                                # skipped: nothing else

:attr:`SubnetConfig.key` (the canonical JSON: sorted keys, no spaces) is what Optuna studies, latency
stores and caches are keyed on; it is byte-identical to what samnas wrote before this record
existed, so old studies and stores keep matching. A skipped block normalises to ``{keep: false}``
whatever else its entry said, and an fp32 block leaves ``precision`` out, so equal subnets have
equal records, keys and hashes.

Format versions: 1 is the config without ``precision``; 2 added the per-block ``precision``. A
file may name its version in a top-level ``format`` field, which :meth:`from_dict` checks and
drops (an unknown version is refused); ``search_spaces.config.save_config`` writes it.

Stages (SAM 2): a Hiera encoder is a sequence of stages of blocks with a q-pool transition between
stages. Each :class:`BlockChoice` carries its ``stage`` (0 for every SAM 1 block, and then left out
of the JSON form, so SAM 1 keys do not change); :attr:`SubnetConfig.stages` groups the blocks by
stage, in order. SAM 2 spaces read and write ``stage`` per block and check it against the
architecture (a skipped block still belongs to its stage); activation and extraction check it too
(``supernet.elastic.sam2_activation``). SAM 1 spaces refuse any stage other than 0.

This module only checks structure (fields, types, the format version); whether a config is
*allowed* by a search space is :meth:`search_spaces.SearchSpace.validate`. Plain Python (no
torch), like :mod:`supernet.elastic.precision`; it lives in ``supernet.elastic`` rather than
``search_spaces`` because activation, extraction and quantization (below ``search_spaces`` in the
layer order) read configs too.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from infra.errors import ConfigError
from infra.fileio import canonical_json

from .precision import DEFAULT_PRECISION, PRECISIONS, check_precision

CONFIG_FORMAT = "samnas-config/2"  # 2: blocks may carry `precision` (fp32 | int8)
CONFIG_FORMATS = ("samnas-config/1", CONFIG_FORMAT)  # versions this samnas reads
CONFIG_FIELDS = ("space", "resolution", "blocks", "format")
BLOCK_FIELDS = ("keep", "heads", "mlp", "precision", "stage")


def check_config_format(data: Mapping, where: str = "format") -> None:
    """Raise ConfigError when ``data`` names a ``format`` this samnas cannot read (absent is fine)."""
    fmt = data.get("format")
    if fmt is not None and fmt not in CONFIG_FORMATS:
        raise ConfigError(f"{where}: {fmt!r} not in {list(CONFIG_FORMATS)} (written by a newer samnas?)")


@dataclass(frozen=True)
class BlockChoice:
    """One encoder block: kept with ``heads`` attention heads, an ``mlp``-channel MLP hidden layer and
    ``precision`` (``fp32`` | ``int8``), or skipped (``keep=False``; heads and mlp None, fp32).

    ``stage``: the encoder stage the block belongs to (always 0 in SAM 1; see the module docstring).
    """

    keep: bool = True
    heads: int | None = None
    mlp: int | None = None
    precision: str = DEFAULT_PRECISION
    stage: int = 0

    def __post_init__(self) -> None:
        if not self.keep:  # a skipped block says nothing else: equal skips compare and hash equal
            object.__setattr__(self, "heads", None)
            object.__setattr__(self, "mlp", None)
            object.__setattr__(self, "precision", DEFAULT_PRECISION)
        elif self.heads is None or self.mlp is None:
            raise ValueError(f"a kept block needs heads and mlp, got {self!r}")

    @classmethod
    def skipped(cls, stage: int = 0) -> "BlockChoice":
        return cls(keep=False, stage=stage)

    def to_dict(self) -> dict:
        """``{"keep": true, "heads": h, "mlp": m[, "precision": "int8"]}`` or ``{"keep": false}``
        (``stage`` only when not 0)."""
        out: dict = {"keep": True, "heads": self.heads, "mlp": self.mlp} if self.keep else {"keep": False}
        if self.keep and self.precision != DEFAULT_PRECISION:
            out["precision"] = self.precision
        if self.stage:
            out["stage"] = self.stage
        return out


@dataclass(frozen=True)
class SubnetConfig:
    """A subnet of an elastic SAM: ``space`` (the search space's name; None until validated against
    one), ``resolution`` (input side in pixels) and one :class:`BlockChoice` per encoder block."""

    space: str | None
    resolution: int
    blocks: tuple[BlockChoice, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))

    # ------------------------------------------------------------------ the JSON form

    @classmethod
    def from_dict(cls, data, source: str | None = None) -> "SubnetConfig":
        """Read the dict form (any version in :data:`CONFIG_FORMATS`; a ``format`` field is checked and
        dropped). Raises a one-line ConfigError naming the field, prefixed by ``source`` when given,
        e.g. ``subnet.yaml: blocks[3].heads: 'x' is not an integer``."""
        try:
            return _parse_config(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> "SubnetConfig":
        """:meth:`from_dict` of a JSON text (e.g. a stored :attr:`key`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source or 'config'}: not valid JSON ({exc.msg})") from None
        return cls.from_dict(data, source)

    def to_dict(self) -> dict:
        """The dict form, fields in file order (``space`` left out while None); :meth:`from_dict` reads it back."""
        out: dict = {} if self.space is None else {"space": self.space}
        out["resolution"] = self.resolution
        out["blocks"] = [b.to_dict() for b in self.blocks]
        return out

    def to_json(self) -> str:
        """Canonical one-line JSON (sorted keys, no spaces): the key studies, stores and caches use."""
        return canonical_json(self.to_dict())

    @functools.cached_property
    def key(self) -> str:
        """The canonical key: :meth:`to_json` (computed once; the record is frozen)."""
        return self.to_json()

    # ------------------------------------------------------------------ views and changes

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def kept_blocks(self) -> tuple[BlockChoice, ...]:
        """The kept blocks, in order: the extracted subnet's blocks (its numbering)."""
        return tuple(b for b in self.blocks if b.keep)

    @property
    def stages(self) -> tuple[tuple[BlockChoice, ...], ...]:
        """The blocks grouped by ``stage``, in order (one stage holding every block in SAM 1)."""
        groups: dict[int, list[BlockChoice]] = {}
        for b in self.blocks:
            groups.setdefault(b.stage, []).append(b)
        return tuple(tuple(groups[s]) for s in sorted(groups))

    @property
    def uses_precision(self) -> bool:
        """Whether a kept block runs at a precision other than fp32 (its file needs format version 2)."""
        return any(b.keep and b.precision != DEFAULT_PRECISION for b in self.blocks)

    def int8_blocks(self) -> list[int]:
        """Indices, among the *kept* blocks (the extracted subnet's numbering), of the int8 blocks."""
        return [i for i, b in enumerate(self.kept_blocks) if b.precision == "int8"]

    @property
    def precision_kind(self) -> str:
        """``fp32`` (no kept block int8), ``int8`` (every kept block int8) or ``mixed``
        (:data:`supernet.elastic.precision.PRECISION_KINDS`)."""
        n = len(self.int8_blocks())
        return "fp32" if n == 0 else "int8" if n == len(self.kept_blocks) else "mixed"

    @property
    def precision_label(self) -> str:
        """:attr:`precision_kind`, with the count for mixed configs: ``mixed (3/6 int8)``."""
        kind = self.precision_kind
        return kind if kind != "mixed" else f"mixed ({len(self.int8_blocks())}/{len(self.kept_blocks)} int8)"

    def replace(self, **changes) -> "SubnetConfig":
        """A copy with fields changed (``resolution=512``, ``blocks=(...)``, ``space=...``)."""
        return dataclasses.replace(self, **changes)

    def with_block(self, index: int, block: BlockChoice) -> "SubnetConfig":
        """A copy with block ``index`` replaced by ``block``."""
        return self.replace(blocks=self.blocks[:index] + (block,) + self.blocks[index + 1:])

    def with_precision(self, precision: str) -> "SubnetConfig":
        """A copy with every kept block at ``precision``."""
        return self.replace(blocks=tuple(dataclasses.replace(b, precision=precision) if b.keep else b
                                         for b in self.blocks))


# ---------------------------------------------------------------------- parsing


def is_config_mapping(data) -> bool:
    """Whether ``data`` is a mapping in the config's dict form (it has ``blocks``), as opposed to the
    other mappings stored where configs are (segment-everything policies in trial records)."""
    return isinstance(data, Mapping) and "blocks" in data


def is_int(value) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def show_value(value) -> str:
    """A value as a message shows it: plain ints for numpy ints, repr otherwise."""
    return str(int(value)) if is_int(value) else repr(value)


def reject_unknown(mapping: Mapping, allowed: tuple[str, ...], prefix: str) -> None:
    """ConfigError ``<prefix><key>: unknown field; allowed fields: ...`` for the first key not in ``allowed``."""
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}: unknown field; allowed fields: {', '.join(allowed)}")


def _int_field(entry: Mapping, name: str, where: str, what: str, minimum: int = 1) -> int:
    if name not in entry:
        raise ConfigError(f"{where}: missing ({what})")
    value = entry[name]
    if not is_int(value) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where}: {show_value(value)} is not {kind}")
    return int(value)


def _parse_config(data) -> SubnetConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping with fields {', '.join(CONFIG_FIELDS)}, "
                          f"got {type(data).__name__}")
    reject_unknown(data, CONFIG_FIELDS, "")
    check_config_format(data)
    space = data.get("space")
    if space is not None and not isinstance(space, str):
        raise ConfigError(f"space: expected a search-space name, got {space!r}")
    resolution = _int_field(data, "resolution", "resolution", "the input side in pixels")
    if "blocks" not in data:
        raise ConfigError("blocks: missing; expected a list with one entry per encoder block")
    entries = data["blocks"]
    if not isinstance(entries, (list, tuple)) or not entries:
        got = "an empty list" if isinstance(entries, (list, tuple)) else type(entries).__name__
        raise ConfigError(f"blocks: expected a list with one entry per encoder block, got {got}")
    blocks = tuple(_parse_block(entry, f"blocks[{i}]") for i, entry in enumerate(entries))
    for i in range(1, len(blocks)):
        if blocks[i].stage < blocks[i - 1].stage:
            raise ConfigError(f"blocks[{i}].stage: {blocks[i].stage} after stage {blocks[i - 1].stage}; "
                              "stages must not decrease")
    return SubnetConfig(space, resolution, blocks)


def _parse_block(entry, where: str) -> BlockChoice:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{keep: true, heads: H, mlp: M}}, got {entry!r}")
    reject_unknown(entry, BLOCK_FIELDS, where + ".")
    keep = entry.get("keep", True)
    if not isinstance(keep, (bool, np.bool_)):
        raise ConfigError(f"{where}.keep: {keep!r} not in [true, false]")
    stage = _int_field(entry, "stage", f"{where}.stage", "", minimum=0) if "stage" in entry else 0
    if not keep:
        return BlockChoice.skipped(stage)  # whatever else a skipped block says is dropped
    need = "a kept block needs heads and mlp"
    heads = _int_field(entry, "heads", f"{where}.heads", need)
    mlp = _int_field(entry, "mlp", f"{where}.mlp", need)
    precision = check_precision(entry.get("precision", DEFAULT_PRECISION), f"{where}.precision", PRECISIONS)
    return BlockChoice(True, heads, mlp, precision, stage)


__all__ = ["BLOCK_FIELDS", "CONFIG_FIELDS", "CONFIG_FORMAT", "CONFIG_FORMATS", "BlockChoice",
           "SubnetConfig", "check_config_format", "is_config_mapping", "is_int", "reject_unknown",
           "show_value"]
