"""Prompt-sampling policies for segment-everything, and their YAML files.

A :class:`Policy` holds every knob of the generator. ``kind`` picks how prompts are placed:

- ``grid``: SAM's automatic mask generator, a regular ``points_per_side``² grid per crop;
- ``hierarchical``: a sparse ``sparse_points_per_side``² grid first, then the dense grid's points
  only where no confident mask (predicted IoU >= ``confidence_thresh``) was found: outside every
  confident mask and outside the grid cells whose sparse point gave one;
- ``adaptive``: the dense grid's points in coarse-to-fine order, skipping points already inside a
  confident mask, and stopping once a batch of new points is mostly (>= ``stop_coverage``) covered.

The file format is YAML: ``{format: samnas-everything-policy/1, policy: {...}, meta: {...}}``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from infra.errors import ConfigError
from infra.fileio import atomic_write_text

POLICY_FORMAT = "samnas-everything-policy/1"
KINDS = ("grid", "hierarchical", "adaptive")
OUTPUT_MODES = ("binary_mask", "coco_rle", "boxes")


@dataclass
class Policy:
    """Generator parameters; defaults are SAM's automatic mask generator defaults (grid policy)."""

    kind: str = "grid"
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"
    # hierarchical
    sparse_points_per_side: int = 8
    confidence_thresh: float = 0.9
    # adaptive
    stop_coverage: float = 0.9
    min_prompts: int = 16
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


_INT_FIELDS = ("points_per_side", "points_per_batch", "crop_n_layers", "crop_n_points_downscale_factor",
               "min_mask_region_area", "sparse_points_per_side", "min_prompts")
_UNIT_FIELDS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh",
                "crop_overlap_ratio", "confidence_thresh", "stop_coverage")


def validate(p: Policy, where: str = "policy") -> None:
    """Raise ConfigError naming the field when a value is out of range."""
    if p.kind not in KINDS:
        raise ConfigError(f"{where}.kind: {p.kind!r} not in {list(KINDS)}")
    if p.output_mode not in OUTPUT_MODES:
        raise ConfigError(f"{where}.output_mode: {p.output_mode!r} not in {list(OUTPUT_MODES)}")
    for name in _INT_FIELDS:
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ConfigError(f"{where}.{name}: expected a non-negative integer, got {v!r}")
    for name in ("points_per_side", "points_per_batch", "crop_n_points_downscale_factor", "sparse_points_per_side"):
        if getattr(p, name) < 1:
            raise ConfigError(f"{where}.{name}: expected at least 1, got {getattr(p, name)!r}")
    for name in _UNIT_FIELDS + ("stability_score_offset",):
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}.{name}: expected a number, got {v!r}")
    for name in _UNIT_FIELDS:
        if not 0.0 <= getattr(p, name) <= 1.0:
            raise ConfigError(f"{where}.{name}: expected a value in [0, 1], got {getattr(p, name)!r}")
    if not isinstance(p.extra, dict):
        raise ConfigError(f"{where}.extra: expected a mapping")


def policy_from_dict(d: dict, where: str = "policy") -> Policy:
    """A validated Policy from a mapping; unknown keys are an error naming the key."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping of policy fields, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(Policy)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field; expected one of {sorted(known - {'extra'})}")
    p = Policy.__new__(Policy)
    for f in dataclasses.fields(Policy):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        setattr(p, f.name, d.get(f.name, default))
    validate(p, where)
    return p


def save_policy(policy: Policy, path: str | Path, meta: dict | None = None) -> Path:
    """Write the policy YAML atomically; ``meta`` records where it came from (model, device, budget, scores)."""
    doc = {"format": POLICY_FORMAT, "policy": policy.to_dict(), "meta": meta or {}}
    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))


def load_policy(path: str | Path) -> tuple[Policy, dict]:
    """``(policy, meta)`` from a file written by :func:`save_policy`; ConfigError (one line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: policy file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{at}") from None
    if not isinstance(doc, dict) or doc.get("format") != POLICY_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{path}: format {found!r}, expected {POLICY_FORMAT!r} (a file from tune-everything)")
    meta = doc.get("meta") or {}
    return policy_from_dict(doc.get("policy"), where=f"{path}: policy"), meta if isinstance(meta, dict) else {}


def coarse_to_fine_order(n: int) -> np.ndarray:
    """Permutation of the ``n*n`` row-major grid indices so that every prefix is spread evenly.

    Each axis index is ranked by its bit-reversed (van der Corput) position; a point's priority
    is the larger of its two ranks, so the first ``k*k`` points form a roughly uniform sub-grid.
    """
    if n <= 1:
        return np.arange(n * n)
    bits = max(1, int(np.ceil(np.log2(n))))
    rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)])
    rank = np.empty(n, dtype=int)
    rank[np.argsort(rev, kind="stable")] = np.arange(n)
    ry, rx = np.meshgrid(rank, rank, indexing="ij")
    key = np.stack([np.maximum(ry, rx).ravel(), ry.ravel(), rx.ravel()])
    return np.lexsort(key[::-1])
