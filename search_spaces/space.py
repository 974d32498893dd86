"""Search spaces: which subnets of an elastic SAM supernet a search may pick.

A space file (packaged ones are ``search_spaces/<name>.yaml``) looks like::

    name: sam_vit_b              # the name configs refer to in their `space` field
    model_type: vit_b            # supernet.modeling.arch model type; the space must fit its shapes
    description: one line for `samnas spaces list/show`
    num_blocks: 12               # encoder blocks (== the arch's depth)
    resolutions: [1024, 768, 512]  # input sides in pixels, multiples of the patch size
    global_blocks: [2, 5, 8, 11] # global-attention blocks (== the arch's global_attn_indexes)
    min_global_blocks: 2         # a config must keep at least this many global blocks (default 1)
    defaults:                    # choices of every block not overridden below
      heads: [4, 8, 12]          # attention heads that may be kept (the first k, by rank)
      mlp: [1536, 3072]          # MLP hidden widths that may be kept
      skippable: true            # whether the block may be skipped (default false)
      precisions: [fp32, int8]   # optional: precisions a kept block may run at (default [fp32])
    overrides:                   # per-block changes, by block index; only the fields that differ
      0: {skippable: false, precisions: [fp32]}

``precisions`` is the per-block precision dimension (``supernet.elastic.quantize``): ``int8``
runs the block's attention and MLP linear layers dynamically quantized. A space without it
(every packaged fp32 space) offers fp32 only and samples, encodes and counts exactly as
before; its configs carry no ``precision`` field.

SAM 2 spaces (``model_type`` a :data:`supernet.modeling.sam2.arch.SAM2_ARCHS` type) add three fields
and give each block its stage::

    blocks_per_stage: [1, 2, 7, 2]  # Hiera blocks per stage (== the arch's stages)
    fixed_blocks: [0, 1, 3, 10]     # blocks that always run: block 0 and each stage's q-pool
                                    # transition (== the arch's); none of them may be skippable
    stages:                         # per stage (0 first): choices over `defaults`, before `overrides`
      - {heads: [1], mlp: [192, 288, 384]}
      - ...

Heads and MLP widths are bounded per block by its stage (heads double and MLP widths double at
each transition), resolutions are multiples of 32 pixels, and a config's blocks carry
``stage`` (checked against the architecture). Stage widths are fixed.

Loading checks the file against the model's architecture (block count, global blocks,
heads <= num_heads, mlp <= mlp_dim, resolutions <= img_size), so every config a space
allows fits the supernet. A space may be narrower than the model (say, heads at most 8);
the packaged spaces are not: their largest config is exactly the original model.

Parameter and FLOP counts need the model and live outside this module: they take a
``SearchSpace`` (its ``arch`` gives the shapes) and a config returned by ``validate``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from supernet.elastic.precision import DEFAULT_PRECISION, PRECISIONS
from supernet.elastic.subnet_config import BlockChoice, SubnetConfig, reject_unknown, show_value
from supernet.elastic.subnet_config import is_int as _is_int
from supernet.modeling.arch import ARCHS, SamArch, get_arch
from supernet.modeling.sam2.arch import SAM2_ARCHS, SIDE_MULTIPLE, Sam2Arch, fixed_reason, get_sam2_arch
from infra.errors import ConfigError

from .config import read_mapping

PACKAGE_DIR = Path(__file__).resolve().parent
SPACE_FIELDS = (
    "name",
    "model_type",
    "description",
    "num_blocks",
    "resolutions",
    "global_blocks",
    "min_global_blocks",
    "defaults",
    "overrides",
    "blocks_per_stage",
    "fixed_blocks",
    "stages",
)
SAM2_SPACE_FIELDS = ("blocks_per_stage", "fixed_blocks", "stages")  # required for SAM 2, refused for SAM 1
REQUIRED_SPACE_FIELDS = ("name", "model_type", "num_blocks", "resolutions", "global_blocks", "defaults")
CHOICE_FIELDS = ("heads", "mlp", "skippable", "precisions")
FP32_ONLY = (DEFAULT_PRECISION,)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")  # names end up in study names and file names


class _Invalid(Exception):
    """A validation message without the file prefix; turned into ConfigError at the boundary."""


def available_spaces() -> list[str]:
    """Names of the packaged search spaces (``search_spaces/*.yaml``), sorted."""
    return sorted(p.stem for p in PACKAGE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class BlockChoices:
    """What one encoder block may do: keep one of ``heads`` x ``mlp`` x ``precisions``, or be skipped
    if ``skippable``."""

    index: int
    heads: tuple[int, ...]  # allowed numbers of attention heads, ascending
    mlp: tuple[int, ...]  # allowed MLP hidden widths (channels), ascending
    skippable: bool
    is_global: bool  # global attention (else windowed)
    precisions: tuple[str, ...] = FP32_ONLY  # allowed precisions, in PRECISIONS order
    stage: int = 0  # the encoder stage (SAM 2's Hiera); 0 in SAM 1

    @property
    def num_options(self) -> int:
        """Distinct settings of this block: every (heads, mlp, precision), plus skipping."""
        return self.num_widths + int(self.skippable)

    @property
    def num_widths(self) -> int:
        """Distinct settings of this block when kept: every (heads, mlp, precision)."""
        return len(self.heads) * len(self.mlp) * len(self.precisions)

    def choices(self) -> dict:
        """``{"heads": [...], "mlp": [...], "skippable": bool, "precisions": [...]}`` (the space-file form)."""
        return {"heads": list(self.heads), "mlp": list(self.mlp), "skippable": self.skippable,
                "precisions": list(self.precisions)}

    def kept(self, heads: int, mlp: int, precision: str = DEFAULT_PRECISION) -> BlockChoice:
        """This block kept at ``heads``, ``mlp`` and ``precision``."""
        return BlockChoice(True, int(heads), int(mlp), precision, self.stage)

    def skipped(self) -> BlockChoice:
        """This block skipped."""
        return BlockChoice.skipped(self.stage)


@dataclass(frozen=True)
class SearchSpace:
    """A search space over subnets of one SAM model type. Build with :meth:`load` or :meth:`from_dict`."""

    name: str
    model_type: str
    resolutions: tuple[int, ...]  # input sides in pixels, descending
    blocks: tuple[BlockChoices, ...]
    min_global_blocks: int = 1
    description: str = ""
    source: str = field(default="<memory>", compare=False)  # file it came from, for messages

    available_spaces = staticmethod(available_spaces)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, name_or_path: str | Path) -> "SearchSpace":
        """A packaged space by name (``"sam_micro"``) or a space file by path (``.yaml``/``.yml``/``.json``).

        Raises ConfigError listing the packaged names for an unknown name, and naming the
        file and field for a bad file.
        """
        text = str(name_or_path)
        looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml", ".json"))
        if not looks_like_path:
            if text not in available_spaces():
                raise ConfigError(
                    f"search space {text!r} unknown; available: {', '.join(available_spaces())} "
                    "(or give the path of a space .yaml file)"
                )
            name_or_path = PACKAGE_DIR / f"{text}.yaml"
        path = Path(name_or_path)
        return cls.from_dict(read_mapping(path, "search-space"), source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "<memory>") -> "SearchSpace":
        """Parse and check the space-file mapping ``data``; errors read ``<source>: <field>: <problem>``."""
        try:
            return _parse_space(data, source)
        except (_Invalid, ConfigError) as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict:
        """The space-file form (compact ``defaults`` [+ SAM 2's ``stages``] + ``overrides``); ``from_dict``
        reads it back."""
        keys = CHOICE_FIELDS if self.precisions != FP32_ONLY else tuple(k for k in CHOICE_FIELDS if k != "precisions")
        defaults = _most_common(self.blocks, keys)
        stages = []
        if self.is_sam2:
            for stage in range(len(self.arch.stages)):
                common = _most_common([b for b in self.blocks if b.stage == stage], keys)
                stages.append({k: v for k, v in common.items() if v != defaults[k]})
        overrides = {}
        for b in self.blocks:
            base = {**defaults, **stages[b.stage]} if stages else defaults
            diff = {k: v for k, v in b.choices().items() if k in keys and v != base[k]}
            if diff:
                overrides[b.index] = diff
        data = {
            "name": self.name,
            "model_type": self.model_type,
            "description": self.description,
            "num_blocks": self.num_blocks,
            "resolutions": list(self.resolutions),
            "global_blocks": list(self.global_blocks),
            "min_global_blocks": self.min_global_blocks,
            "defaults": defaults,
        }
        if self.is_sam2:
            data.update(blocks_per_stage=list(self.arch.stages), fixed_blocks=sorted(fixed_reasons(self.arch)),
                        stages=stages)
        if overrides:
            data["overrides"] = overrides
        return data

    # ------------------------------------------------------------------ properties

    @property
    def arch(self) -> SamArch | Sam2Arch:
        """The model architecture this space is a subset of."""
        return space_arch(self.model_type)

    @property
    def is_sam2(self) -> bool:
        """Whether the space slices a SAM 2 (Hiera) model."""
        return self.model_type in SAM2_ARCHS

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def global_blocks(self) -> tuple[int, ...]:
        """Indices of the global-attention blocks."""
        return tuple(b.index for b in self.blocks if b.is_global)

    @property
    def skippable_blocks(self) -> tuple[int, ...]:
        """Indices of the blocks that may be skipped."""
        return tuple(b.index for b in self.blocks if b.skippable)

    @property
    def precisions(self) -> tuple[str, ...]:
        """Every precision some block may run at, in PRECISIONS order (``("fp32",)`` for an fp32 space)."""
        return tuple(p for p in PRECISIONS if any(p in b.precisions for b in self.blocks))

    # ------------------------------------------------------------------ validation

    def validate(self, config: Mapping | SubnetConfig, source: str | None = None) -> SubnetConfig:
        """Check ``config`` (a :class:`SubnetConfig` or its dict form) against this space; return it
        with ``space`` filled in.

        The dict form is read by :meth:`SubnetConfig.from_dict` (fields, types and the ``format``
        version; ``keep`` defaults to true, ``precision`` to fp32, a skipped block's other fields
        are dropped). Raises ConfigError whose message names the field, e.g.
        ``blocks[5].heads: 7 not in [4, 8, 12]`` or ``blocks[3].precision: 'int4' not in
        ['fp32', 'int8']``, prefixed by ``source`` when given.
        """
        try:
            if not isinstance(config, SubnetConfig):
                config = SubnetConfig.from_dict(config)
            return self._validate(config)
        except (_Invalid, ConfigError) as exc:
            raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None

    def _validate(self, config: SubnetConfig) -> SubnetConfig:
        if config.space is not None and config.space != self.name:
            raise _Invalid(f"space: {config.space!r} does not match search space {self.name!r}")
        if config.resolution not in self.resolutions:
            raise _Invalid(f"resolution: {config.resolution} not in {list(self.resolutions)}")
        if config.num_blocks != self.num_blocks:
            raise _Invalid(f"blocks: expected a list of {self.num_blocks} entries (one per encoder block), "
                           f"got {config.num_blocks} entries")
        for block, spec in zip(config.blocks, self.blocks):
            self._validate_block(block, spec)
        kept_global = [i for i in self.global_blocks if config.blocks[i].keep]
        if len(kept_global) < self.min_global_blocks:
            raise _Invalid(
                f"blocks: keeps {len(kept_global)} of the global-attention blocks {list(self.global_blocks)}, "
                f"at least {self.min_global_blocks} required (min_global_blocks)"
            )
        return config if config.space == self.name else config.replace(space=self.name)

    def _validate_block(self, block: BlockChoice, spec: BlockChoices) -> None:
        where = f"blocks[{spec.index}]"
        if block.stage != spec.stage:
            if not self.is_sam2:
                raise _Invalid(f"{where}.stage: {block.stage} not in [0] (a SAM 1 encoder has one stage)")
            hint = " (a block without `stage` is in stage 0)" if block.stage == 0 else ""
            raise _Invalid(f"{where}.stage: {block.stage} does not match {self.model_type}, whose block "
                           f"{spec.index} is in stage {spec.stage}{hint}")
        if not block.keep:
            reason = fixed_reasons(self.arch).get(spec.index)
            if reason:
                raise _Invalid(f"{where}.keep: false not allowed, block {spec.index} cannot be skipped: {reason}")
            if not spec.skippable:
                raise _Invalid(
                    f"{where}.keep: false not allowed, block {spec.index} cannot be skipped "
                    f"(skippable blocks: {list(self.skippable_blocks)})"
                )
            return
        if block.heads not in spec.heads:
            raise _Invalid(f"{where}.heads: {block.heads} not in {list(spec.heads)}")
        if block.mlp not in spec.mlp:
            raise _Invalid(f"{where}.mlp: {block.mlp} not in {list(spec.mlp)}")
        if block.precision not in spec.precisions:
            raise _Invalid(f"{where}.precision: {block.precision!r} not in {list(spec.precisions)}")

    # ------------------------------------------------------------------ sampling

    def largest(self) -> SubnetConfig:
        """Every block kept at its most heads, widest MLP and first precision (fp32 when allowed),
        at the largest resolution."""
        blocks = [b.kept(b.heads[-1], b.mlp[-1], b.precisions[0]) for b in self.blocks]
        return SubnetConfig(self.name, self.resolutions[0], tuple(blocks))

    def smallest(self) -> SubnetConfig:
        """Every skippable block skipped, the rest at fewest heads, narrowest MLP and last precision
        (int8 when allowed), at the smallest resolution.

        When ``min_global_blocks`` forces skippable global blocks to stay, the last ones are kept.
        """
        keep = [not b.skippable for b in self.blocks]
        self._keep_globals(keep)
        blocks = [
            b.kept(b.heads[0], b.mlp[0], b.precisions[-1]) if k else b.skipped()
            for b, k in zip(self.blocks, keep)
        ]
        return SubnetConfig(self.name, self.resolutions[-1], tuple(blocks))

    def sample(self, rng: np.random.Generator | int | None = None) -> SubnetConfig:
        """A random valid config; ``rng`` is a numpy Generator or a seed (same seed, same config).

        Each draw is uniform over its own choices: the resolution; keep-or-skip (a fair coin)
        for each skippable block; heads and mlp for each kept block, then its precision when it
        has more than one to choose from (so an fp32-only space draws exactly as before). The keep flags of the
        skippable global blocks are drawn uniformly among those that leave at least
        ``min_global_blocks`` global blocks, so every result is valid without retries.
        This is not uniform over whole configs (that would almost never skip a block).
        """
        rng = np.random.default_rng(rng)
        resolution = self.resolutions[int(rng.integers(len(self.resolutions)))]
        keep = [not b.skippable or (not b.is_global and bool(rng.integers(2))) for b in self.blocks]
        self._keep_globals(keep, rng)
        blocks = []
        for b, k in zip(self.blocks, keep):
            if k:
                heads = b.heads[int(rng.integers(len(b.heads)))]
                mlp = b.mlp[int(rng.integers(len(b.mlp)))]
                precision = b.precisions[int(rng.integers(len(b.precisions)))] if len(b.precisions) > 1 \
                    else b.precisions[0]
                blocks.append(b.kept(heads, mlp, precision))
            else:
                blocks.append(b.skipped())
        return SubnetConfig(self.name, resolution, tuple(blocks))

    def _keep_globals(self, keep: list[bool], rng: np.random.Generator | None = None) -> None:
        """Set ``keep`` for the skippable global blocks (in place).

        With ``rng``: uniformly among the keep patterns with enough global blocks (choose how
        many to keep with weights C(n, k), then which). Without: keep only the last ones needed.
        """
        free = [b.index for b in self.blocks if b.is_global and b.skippable]
        need = max(0, self.min_global_blocks - (len(self.global_blocks) - len(free)))
        if rng is None:
            chosen = set(free[len(free) - need :]) if need else set()
        else:
            counts = np.arange(need, len(free) + 1)
            weights = np.array([math.comb(len(free), int(k)) for k in counts], dtype=float)
            k = int(rng.choice(counts, p=weights / weights.sum()))
            chosen = {free[int(j)] for j in rng.choice(len(free), size=k, replace=False)}
        for i in free:
            keep[i] = i in chosen

    # ------------------------------------------------------------------ features and size

    def feature_names(self) -> list[str]:
        """Names of the :meth:`encode` entries, in order."""
        names = ["resolution"]
        for i in range(self.num_blocks):
            names += [f"blocks[{i}].keep", f"blocks[{i}].heads", f"blocks[{i}].mlp"]
        if "int8" in self.precisions:
            names += [f"blocks[{i}].int8" for i in range(self.num_blocks)]
        return names

    def encode(self, config: Mapping | SubnetConfig) -> np.ndarray:
        """Fixed-length float64 features of a (validated) config, every value in [0, 1].

        Layout, length ``1 + 3 * num_blocks``: ``resolution / arch.img_size``, then per block
        ``keep`` (1 or 0), ``heads / arch.num_heads`` and ``mlp / arch.mlp_dim`` (both 0 when
        skipped; in SAM 2 the block's own full heads and MLP width, which grow by stage). Dividing by the model's sizes, not the space's, keeps features comparable
        across spaces of one model type. A space with int8 among its precisions appends one
        more entry per block, ``blocks[i].int8`` (1 for a kept int8 block, else 0), so the
        first ``1 + 3 * num_blocks`` entries mean the same in every space.
        """
        config = self.validate(config)
        arch = self.arch
        limits = block_limits(arch)
        with_int8 = "int8" in self.precisions
        features = np.zeros((1 + 4 * self.num_blocks) if with_int8 else (1 + 3 * self.num_blocks), dtype=np.float64)
        features[0] = config.resolution / arch.img_size
        for i, block in enumerate(config.blocks):
            if block.keep:
                _, full_heads, full_mlp = limits[i]
                features[1 + 3 * i : 4 + 3 * i] = (1.0, block.heads / full_heads, block.mlp / full_mlp)
                if with_int8 and block.precision == "int8":
                    features[1 + 3 * self.num_blocks + i] = 1.0
        return features

    def num_configs(self) -> int:
        """Number of distinct valid configs (a skipped block counts once, whatever else it says)."""
        others = math.prod(b.num_options for b in self.blocks if not b.is_global)
        # ways[k]: settings of the global blocks seen so far that keep exactly k of them
        ways = [1]
        for b in self.blocks:
            if not b.is_global:
                continue
            widths = b.num_widths
            nxt = [0] * (len(ways) + 1)
            for k, count in enumerate(ways):
                nxt[k + 1] += count * widths
                if b.skippable:
                    nxt[k] += count
            ways = nxt
        return len(self.resolutions) * others * sum(ways[self.min_global_blocks :])

    def describe(self) -> str:
        """A human-readable summary and per-block table (``samnas spaces show``)."""
        lines = [
            f"{self.name}: {self.description}" if self.description else self.name,
            f"  model type    {self.model_type} ({self.num_blocks} encoder blocks)",
            f"  resolutions   {', '.join(map(str, self.resolutions))} px",
            f"  global blocks {', '.join(map(str, self.global_blocks)) or 'none'}"
            f" (at least {self.min_global_blocks} kept)",
            f"  precisions    {', '.join(self.precisions)}" + ("" if self.precisions == FP32_ONLY else " (per block)"),
            f"  configs       {format_count(self.num_configs())}",
            f"  source        {self.source}",
            "",
        ]
        with_precision = self.precisions != FP32_ONLY
        stage = ("stage",) if self.is_sam2 else ()
        rows = [("block",) + stage + ("attention", "skippable", "heads", "mlp")
                + (("precision",) if with_precision else ())]
        for b in self.blocks:
            rows.append(
                (str(b.index),) + ((str(b.stage),) if self.is_sam2 else ()) +
                (
                    "global" if b.is_global else "window",
                    "yes" if b.skippable else "no",
                    ",".join(map(str, b.heads)),
                    ",".join(map(str, b.mlp)),
                )
                + ((",".join(b.precisions),) if with_precision else ())
            )
        return "\n".join(lines + format_table(rows))


def format_count(n: int) -> str:
    """``n`` exactly below a million, else in 3-digit scientific notation (``1.23e+18``)."""
    return str(n) if n < 1_000_000 else f"{float(n):.3g}"


def format_table(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned text columns separated by two spaces; the first row is the header."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


# ---------------------------------------------------------------------- helpers


def _most_common(blocks, keys) -> dict:
    """Per field in ``keys``, the value most of ``blocks`` have (the first seen among ties)."""
    return {key: _plain(Counter(_hashable(b.choices()[key]) for b in blocks).most_common(1)[0][0]) for key in keys}


def space_arch(model_type: str) -> SamArch | Sam2Arch:
    """The architecture of a SAM (``vit_b``, ...) or SAM 2 (``sam2_hiera_t``, ...) model type."""
    return get_sam2_arch(model_type) if model_type in SAM2_ARCHS else get_arch(model_type)


def block_limits(arch: SamArch | Sam2Arch) -> list[tuple[int, int, int]]:
    """``(stage, heads, mlp)`` of each encoder block of the full model (stage 0 throughout in SAM 1)."""
    if isinstance(arch, Sam2Arch):
        return [(spec.stage, spec.heads, spec.mlp_dim) for spec in arch.block_specs()]
    return [(0, arch.num_heads, arch.mlp_dim)] * arch.depth


def fixed_reasons(arch: SamArch | Sam2Arch) -> dict[int, str]:
    """The blocks the architecture needs (index -> why): SAM 2's block 0 and q-pool transitions; none in SAM 1."""
    if not isinstance(arch, Sam2Arch):
        return {}
    reasons = {i: fixed_reason(i, spec) for i, spec in enumerate(arch.block_specs())}
    return {i: why for i, why in reasons.items() if why}


def _global_blocks(arch: SamArch | Sam2Arch) -> list[int]:
    return list(arch.global_att_blocks if isinstance(arch, Sam2Arch) else arch.global_attn_indexes)


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _int_choices(where: str, value, upper: int, what: str) -> tuple[int, ...]:
    """A non-empty list of distinct positive ints, each at most ``upper``; returned ascending."""
    if not isinstance(value, list) or not value:
        raise _Invalid(f"{where}: expected a non-empty list of integers, got {value!r}")
    for v in value:
        if not _is_int(v) or v < 1:
            raise _Invalid(f"{where}: {show_value(v)} is not a positive integer")
        if v > upper:
            raise _Invalid(f"{where}: {v} exceeds {what} {upper}")
    if len(set(value)) != len(value):
        raise _Invalid(f"{where}: {value} has duplicates")
    return tuple(sorted(int(v) for v in value))


def _parse_choices(where: str, data, bounds: dict[str, tuple[int, str]], partial: bool) -> dict:
    """Parse a ``defaults``, ``stages`` or ``overrides`` entry; ``partial`` allows leaving fields out.

    ``bounds``: for ``heads`` and ``mlp``, the largest value allowed and how messages name it.
    """
    if not isinstance(data, Mapping):
        raise _Invalid(f"{where}: expected a mapping with fields {', '.join(CHOICE_FIELDS)}, got {data!r}")
    reject_unknown(data, CHOICE_FIELDS, where + ".")
    out = {}
    for key in ("heads", "mlp"):
        if key in data:
            upper, what = bounds[key]
            out[key] = _int_choices(f"{where}.{key}", data[key], upper, what)
        elif not partial:
            raise _Invalid(f"{where}.{key}: missing (required)")
    if "skippable" in data:
        if not isinstance(data["skippable"], bool):
            raise _Invalid(f"{where}.skippable: {data['skippable']!r} not in [true, false]")
        out["skippable"] = data["skippable"]
    elif not partial:
        out["skippable"] = False
    if "precisions" in data:
        out["precisions"] = _precision_choices(f"{where}.precisions", data["precisions"])
    elif not partial:
        out["precisions"] = FP32_ONLY
    return out


def _precision_choices(where: str, value) -> tuple[str, ...]:
    """A non-empty list of distinct precisions from PRECISIONS; returned in PRECISIONS order."""
    if not isinstance(value, list) or not value:
        raise _Invalid(f"{where}: expected a non-empty list from {list(PRECISIONS)}, got {value!r}")
    for v in value:
        if v not in PRECISIONS:
            raise _Invalid(f"{where}: {v!r} not in {list(PRECISIONS)}")
    if len(set(value)) != len(value):
        raise _Invalid(f"{where}: {value} has duplicates")
    return tuple(p for p in PRECISIONS if p in value)


def _parse_space(data: Mapping, source: str) -> SearchSpace:
    """Build a SearchSpace from a space-file mapping, checking it against the model's architecture."""
    if not isinstance(data, Mapping):
        raise _Invalid(f"expected a mapping with fields {', '.join(SPACE_FIELDS)}")
    reject_unknown(data, SPACE_FIELDS, "")
    for key in REQUIRED_SPACE_FIELDS:
        if key not in data:
            raise _Invalid(f"{key}: missing (required)")
    name = data["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise _Invalid(f"name: {name!r} must be letters, digits, '_', '.' or '-'")
    if data["model_type"] not in ARCHS and data["model_type"] not in SAM2_ARCHS:
        raise _Invalid(f"model_type: {data['model_type']!r} not in {sorted(ARCHS) + sorted(SAM2_ARCHS)}")
    arch = space_arch(data["model_type"])
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _Invalid(f"description: expected text, got {description!r}")
    if data["num_blocks"] != arch.depth or not _is_int(data["num_blocks"]):
        raise _Invalid(f"num_blocks: {data['num_blocks']!r} does not match {arch.name}'s {arch.depth} encoder blocks")
    resolutions = _parse_resolutions(data["resolutions"], arch)
    global_blocks = data["global_blocks"]
    if global_blocks != _global_blocks(arch):
        raise _Invalid(f"global_blocks: {global_blocks!r} does not match {arch.name}'s global-attention blocks "
                       f"{_global_blocks(arch)}")
    min_global = data.get("min_global_blocks", 1)
    if not _is_int(min_global) or not 0 <= min_global <= len(global_blocks):
        raise _Invalid(f"min_global_blocks: {min_global!r} must be an integer in [0, {len(global_blocks)}]")
    per_block = _parse_sam2_blocks(data, arch) if isinstance(arch, Sam2Arch) else _parse_sam_blocks(data, arch)
    limits = block_limits(arch)
    blocks = tuple(
        BlockChoices(i, c["heads"], c["mlp"], c["skippable"], i in global_blocks, c["precisions"], limits[i][0])
        for i, c in enumerate(per_block)
    )
    return SearchSpace(
        name=name,
        model_type=arch.name,
        resolutions=tuple(sorted(resolutions, reverse=True)),
        blocks=blocks,
        min_global_blocks=int(min_global),
        description=description,
        source=source,
    )


def _parse_resolutions(value, arch: SamArch | Sam2Arch) -> tuple[int, ...]:
    """Input sides: multiples of the patch size (SAM) or of 32 pixels (SAM 2), at most the model's."""
    resolutions = _int_choices("resolutions", value, arch.img_size, f"{arch.name} img_size")
    multiple, what = (SIDE_MULTIPLE, "32 pixels (SAM 2's stride-32 stage)") if isinstance(arch, Sam2Arch) \
        else (arch.patch_size, f"the patch size {arch.patch_size}")
    for r in resolutions:
        if r % multiple:
            raise _Invalid(f"resolutions: {r} is not a multiple of {what}")
    return resolutions


def _apply_overrides(data: Mapping, per_block: list[dict], bounds_of) -> None:
    """Merge ``overrides`` (block index -> partial choices) into ``per_block``; ``bounds_of(i)`` bounds block i."""
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise _Invalid(f"overrides: expected a mapping from block index to choices, got {overrides!r}")
    for index, choices in overrides.items():
        if isinstance(index, str) and index.isdigit():  # JSON object keys are strings
            index = int(index)
        if not _is_int(index) or not 0 <= index < len(per_block):
            raise _Invalid(f"overrides: block index {index!r} not in 0..{len(per_block) - 1}")
        per_block[index].update(_parse_choices(f"overrides.{index}", choices, bounds_of(index), partial=True))


def _parse_sam_blocks(data: Mapping, arch: SamArch) -> list[dict]:
    """Each block's choices of a SAM 1 space: ``defaults`` then ``overrides``."""
    for key in SAM2_SPACE_FIELDS:
        if key in data:
            raise _Invalid(f"{key}: only for SAM 2 model types ({', '.join(sorted(SAM2_ARCHS))}); "
                           f"{arch.name} has one stage")
    bounds = {"heads": (arch.num_heads, f"{arch.name} num_heads"), "mlp": (arch.mlp_dim, f"{arch.name} mlp_dim")}
    defaults = _parse_choices("defaults", data["defaults"], bounds, partial=False)
    per_block = [dict(defaults) for _ in range(arch.depth)]
    _apply_overrides(data, per_block, lambda i: bounds)
    return per_block


def _override_of(data: Mapping, index: int) -> Mapping:
    """Block ``index``'s entry in ``overrides`` (keyed by int, or by string in JSON), or ``{}``."""
    overrides = data.get("overrides") or {}
    entry = overrides.get(index, overrides.get(str(index), {}))
    return entry if isinstance(entry, Mapping) else {}


def _sam2_bounds(heads: int, mlp: int, what: str) -> dict[str, tuple[int, str]]:
    return {"heads": (heads, f"{what} heads"), "mlp": (mlp, f"{what} MLP width")}


def _parse_sam2_blocks(data: Mapping, arch: Sam2Arch) -> list[dict]:
    """Each block's choices of a SAM 2 space: ``defaults``, its stage's entry in ``stages``, then ``overrides``;
    the fixed blocks (block 0, the transitions) are never skippable."""
    for key in SAM2_SPACE_FIELDS:
        if key not in data:
            raise _Invalid(f"{key}: missing (required for SAM 2 model types)")
    if data["blocks_per_stage"] != list(arch.stages):
        raise _Invalid(f"blocks_per_stage: {data['blocks_per_stage']!r} does not match {arch.name}'s {list(arch.stages)}")
    fixed = fixed_reasons(arch)
    if data["fixed_blocks"] != sorted(fixed):
        raise _Invalid(f"fixed_blocks: {data['fixed_blocks']!r} does not match {arch.name}'s {sorted(fixed)} "
                       "(block 0 and the first block of each later stage, a q-pool transition)")
    limits = block_limits(arch)
    top = _sam2_bounds(max(h for _, h, _ in limits), max(m for _, _, m in limits), f"{arch.name}'s largest")
    defaults = {"skippable": False, "precisions": FP32_ONLY,
                **_parse_choices("defaults", data["defaults"], top, partial=True)}
    stages = data["stages"]
    if not isinstance(stages, list) or len(stages) != len(arch.stages):
        raise _Invalid(f"stages: expected a list of {len(arch.stages)} entries (choices per stage), got {stages!r}")
    per_stage = [{**defaults, **_parse_choices(f"stages[{s}]", entry, _sam2_bounds(
        arch.stage_heads[s], int(arch.stage_dims[s] * arch.mlp_ratio), f"{arch.name} stage {s}"), partial=True)}
        for s, entry in enumerate(stages)]
    per_block = [dict(per_stage[stage]) for stage, _, _ in limits]
    _apply_overrides(data, per_block, lambda i: _sam2_bounds(limits[i][1], limits[i][2], f"block {i}'s"))
    for i, (stage, heads, mlp) in enumerate(limits):
        choices = per_block[i]
        for key, upper in (("heads", heads), ("mlp", mlp)):
            if key not in choices:
                raise _Invalid(f"stages[{stage}].{key}: missing (required when defaults has no {key})")
            if max(choices[key]) > upper:
                raise _Invalid(f"defaults.{key}: {max(choices[key])} exceeds stage {stage}'s {upper} (block {i}); "
                               f"give stage {stage} its own in stages[{stage}].{key}")
        if i in fixed and choices["skippable"] and _override_of(data, i).get("skippable") is True:
            raise _Invalid(f"overrides.{i}.skippable: true not allowed, block {i} cannot be skipped: {fixed[i]}")
        choices["skippable"] = choices["skippable"] and i not in fixed
    return per_block


__all__ = ["BlockChoices", "SearchSpace", "available_spaces", "block_limits", "fixed_reasons", "format_count",
           "format_table", "space_arch"]
