"""Reading and writing subnet configs (and other small YAML/JSON mappings) as files.

A subnet config in memory is a :class:`SubnetConfig` (``supernet.elastic.subnet_config``, which
owns its dict form, canonical key and format versions; it sits below this package in the layer
order because activation and extraction read configs too). Its file, YAML or JSON (the suffix
decides)::

    space: sam_vit_b           # the search space it belongs to
    resolution: 1024           # input side in pixels
    blocks:                    # one entry per encoder block, in order
      - {keep: true, heads: 12, mlp: 3072}
      - {keep: true, heads: 8, mlp: 1536, precision: int8}   # fp32 when absent
      - {keep: false}          # a skipped block needs nothing else

Format versions: 1 is the config without ``precision``; 2 added the per-block ``precision``.
A file may name its version in a top-level ``format`` field (``samnas-config/2``);
:func:`save_config` writes it for configs that use precision, and leaves it out of all-fp32
configs, whose files stay exactly as version 1 wrote them. A file without ``format`` is read
as whatever fields it holds (blocks without ``precision`` are fp32), so every older file reads
as all-fp32; an unknown ``format`` is refused. The record in memory and its canonical key
(:attr:`SubnetConfig.key`, what studies and latency stores use) do not change with the file's version.

Whether a config is *allowed* is checked by :meth:`search_spaces.SearchSpace.validate`;
this module only moves configs between files and memory.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from infra.errors import ConfigError
from infra.fileio import atomic_write_text
from supernet.elastic.subnet_config import (
    CONFIG_FORMAT,
    CONFIG_FORMATS,
    BlockChoice,
    SubnetConfig,
    check_config_format,
    is_config_mapping,
)

JSON_SUFFIXES = (".json",)
__all__ = ["CONFIG_FORMAT", "CONFIG_FORMATS", "JSON_SUFFIXES", "BlockChoice", "SubnetConfig", "check_config_format",
           "dump_config", "is_config_mapping", "load_config", "read_mapping", "save_config", "versioned"]


def read_mapping(path: str | Path, what: str = "config") -> dict:
    """Parse the YAML or JSON file at ``path`` (``.json`` is JSON, anything else YAML) into a dict.

    ``what`` names the kind of file in error messages. Raises :class:`ConfigError` naming
    the file when it cannot be read, does not parse, or does not hold a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc})") from None
    try:
        if path.suffix.lower() in JSON_SUFFIXES:
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() in JSON_SUFFIXES else "YAML"
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid {kind} ({detail})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top of the {what} file, got {type(data).__name__}")
    return data


def load_config(path: str | Path) -> SubnetConfig:
    """Read a subnet config from ``path`` (YAML, or JSON for ``.json``); checked for structure (fields,
    types, format version) with errors naming the file, not yet against a search space.

    Besides a plain config, the files samnas writes that hold one are accepted: ``subnet.json``
    (extract/export), ``card.json`` (export) and a ``samnas pareto --format json`` row (or a
    list holding exactly one row), whose ``config`` is an object or a JSON string.
    """
    path = Path(path)
    if path.suffix.lower() in JSON_SUFFIXES:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None  # read_mapping names the problem
        if isinstance(data, list):
            if len(data) != 1:
                raise ConfigError(f"{path}: a list of {len(data)} rows; save the one you want alone "
                                  "(e.g. jq '.[0]' front.json > subnet.json)")
            data = data[0]
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a config object in the list, got {type(data).__name__}")
            return SubnetConfig.from_dict(_inner_config(data, path), source=str(path))
    return SubnetConfig.from_dict(_inner_config(read_mapping(path, "config"), path), source=str(path))


def _inner_config(data: dict, path: Path) -> dict:
    """The config itself: ``data``, or its ``config`` field (subnet.json, card.json, pareto rows)."""
    if not is_config_mapping(data) and "config" in data:
        inner = data["config"]
        if isinstance(inner, str):
            try:
                inner = json.loads(inner)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: field 'config' is not valid JSON ({exc.msg})") from None
        if not isinstance(inner, dict):
            raise ConfigError(f"{path}: field 'config' must be a mapping, got {type(inner).__name__}")
        return inner
    if "resolutions" in data and "model_type" in data:
        name = data.get("name", "NAME")
        raise ConfigError(f"{path}: this is a search-space file, not a subnet config; write a config with "
                          f"`samnas spaces sample {name} --largest --out subnet.yaml`")
    return data


def dump_config(data: dict, fmt: str = "yaml") -> str:
    """Text of a mapping (a config's file form, :func:`versioned`, or a space file) as ``"yaml"`` (one
    flow-style line per block) or ``"json"`` (indented)."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        # default_flow_style=None writes scalar-only mappings/lists on one line: `- {keep: true, ...}`.
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=1000)
    raise ValueError(f"format {fmt!r} unknown; expected 'yaml' or 'json'")


def save_config(config: SubnetConfig | Mapping, path: str | Path) -> Path:
    """Write ``config`` atomically to ``path``: JSON for ``.json``, YAML otherwise. Returns the path.

    A :class:`SubnetConfig` is written in its file form (:func:`versioned`); any other mapping (a
    space file, say) as it is.
    """
    path = Path(path)
    fmt = "json" if path.suffix.lower() in JSON_SUFFIXES else "yaml"
    data = versioned(config) if isinstance(config, SubnetConfig) else dict(config)
    return atomic_write_text(path, dump_config(data, fmt))


def versioned(config: SubnetConfig) -> dict:
    """``config`` as a file holds it: its dict form, with ``format: samnas-config/2`` first when it uses
    precision (all-fp32 files stay exactly as version 1 wrote them)."""
    data = config.to_dict()
    return {"format": CONFIG_FORMAT, **data} if config.uses_precision else data
