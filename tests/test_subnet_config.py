"""The typed subnet config: canonical key identical to what studies and stores were keyed on, round
trips, old files, and one-line errors naming the field."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from infra.errors import ConfigError
from search_spaces import BlockChoice, SearchSpace, SubnetConfig, available_spaces, load_config, save_config
from search_spaces.config import versioned

# sha256 of "\n".join(keys) over [largest, smallest, sample(0), ..., sample(199)] of each packaged space,
# recorded with the dict-based code this record replaced (config_to_json of SearchSpace.sample's dicts):
# equal hashes mean the sampler draws the same configs and the record writes them byte for byte as before.
RECORDED = {
    "sam_micro": "20dee815d7a3e63ce24178688b16f69b8fa359522743e96d78049a1dff020625",
    "sam_micro_int8": "4fc816b4f686b53a8b8644af7fa29195aae2d7b42e4f436a4b1574ca9da558ed",
    "sam_vit_b": "90ed7f4ec5da496a4cd3e57cd056c910aa353b8227a127f4076b011b8c45b9f4",
    "sam_vit_b_int8": "96beae749db2cecf762ac4c0972ac4196fd674e0fbb42a628842f67cde021e2a",
    "sam_vit_h": "6e1aef9b149cf13e04ec41fe9e9f01a7c11ca10a1711c99edfd493ebd3f57a49",
    "sam_vit_l": "c5782512d4db3748c3c8ba3b66f205ea762cd1a172b046f64f405edf9582d936",
}


def old_config_to_json(config: dict) -> str:
    """The canonical JSON as samnas computed it before SubnetConfig (search_spaces.config.config_to_json)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def old_normalised(config: SubnetConfig) -> dict:
    """The dict the old SearchSpace.validate returned for ``config``, built independently of the record:
    space, resolution, then ``{keep, heads, mlp}`` per kept block (``precision`` only when not fp32) or
    ``{keep: false}``."""
    blocks = []
    for b in config.blocks:
        if not b.keep:
            blocks.append({"keep": False})
            continue
        entry = {"keep": True, "heads": b.heads, "mlp": b.mlp}
        if b.precision != "fp32":
            entry["precision"] = b.precision
        blocks.append(entry)
    return {"space": config.space, "resolution": config.resolution, "blocks": blocks}


def configs_of(space: SearchSpace, n: int) -> list[SubnetConfig]:
    return [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(n)]


def test_every_sam_space_has_recorded_keys():
    """The SAM 1 spaces all have recorded keys; SAM 2's (with ``stage``) are newer than the old form."""
    assert sorted(RECORDED) == [n for n in available_spaces() if not n.startswith("sam2_")]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_key_is_byte_identical_to_the_old_canonical_json(name):
    space = SearchSpace.load(name)
    configs = configs_of(space, 200)
    keys = [c.key for c in configs]
    assert keys == [old_config_to_json(old_normalised(c)) for c in configs]
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest() == RECORDED[name]
    assert all(c.to_json() == c.key and json.loads(c.key) == c.to_dict() for c in configs)


def test_mutated_and_mixed_configs_keep_the_old_key():
    """Configs the samplers build (mutations, crossovers) and the int8 ones key as the old dicts did."""
    from nas.search.samplers.design import crossover, mutate

    rng = np.random.default_rng(0)
    for name in ("sam_micro_int8", "sam_vit_b_int8"):
        space = SearchSpace.load(name)
        done = 0
        for _ in range(300):
            a, b = space.sample(rng), space.sample(rng)
            child = mutate(space, a, rng, genes=3)
            mixed = crossover(space, a, b, rng)
            for c in (child, mixed):
                if c is not None:
                    assert space.validate(c) == c
                    assert c.key == old_config_to_json(old_normalised(c))
                    done += 1
        assert done > 300


@pytest.mark.parametrize("name", ["sam_micro", "sam_micro_int8", "sam_vit_b_int8"])
def test_dict_round_trip(name):
    space = SearchSpace.load(name)
    for config in configs_of(space, 50):
        data = config.to_dict()
        assert list(data) == ["space", "resolution", "blocks"]
        assert SubnetConfig.from_dict(data) == config
        assert SubnetConfig.from_dict(data).to_dict() == data
        assert SubnetConfig.from_json(config.to_json()) == config
        assert hash(SubnetConfig.from_dict(data)) == hash(config)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    space = SearchSpace.load("sam_micro_int8")
    for seed in range(20):
        config = space.sample(seed)
        path = save_config(config, tmp_path / f"c{seed}{suffix}")
        text = path.read_text()
        assert load_config(path) == config
        assert save_config(load_config(path), tmp_path / f"again{suffix}").read_text() == text  # file -> config -> file
        assert ("samnas-config/2" in text) == config.uses_precision


def test_old_files_load(tmp_path):
    """Version 1 (no precision, no format), version 2 (format named), skipped blocks written as
    ``{keep: false}`` or with leftover fields, and the files that carry a config (subnet.json, card.json,
    pareto rows) all load to the same record."""
    v1 = tmp_path / "v1.yaml"
    v1.write_text("space: sam_micro\nresolution: 128\nblocks:\n- {keep: true, heads: 2, mlp: 256}\n"
                  "- {keep: false}\n- {heads: 4, mlp: 512}\n- {keep: false, heads: 3, mlp: 9}\n"
                  "- {keep: true, heads: 1, mlp: 128}\n- {keep: true, heads: 2, mlp: 128}\n")
    config = load_config(v1)
    assert config.blocks[1] == config.blocks[3] == BlockChoice.skipped()
    assert config.blocks[2] == BlockChoice(True, 4, 512, "fp32")
    assert not config.uses_precision and config.precision_kind == "fp32"
    assert SearchSpace.load("sam_micro").validate(config) == config
    data = config.to_dict()
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps({"format": "samnas-config/2", **data}))
    assert load_config(v2) == config
    v1_named = tmp_path / "v1n.json"
    v1_named.write_text(json.dumps({"format": "samnas-config/1", **data}))
    assert load_config(v1_named) == config
    for name, doc in (("subnet.json", {"format": "samnas-subnet/1", "config": data}),
                      ("card.json", {"name": "x", "config": data}),
                      ("row.json", [{"quality": 0.5, "config": config.key}])):
        (tmp_path / name).write_text(json.dumps(doc))
        assert load_config(tmp_path / name) == config


def test_versioned_file_form():
    space = SearchSpace.load("sam_micro_int8")
    fp32, int8 = space.largest(), space.smallest()
    assert versioned(fp32) == fp32.to_dict()
    assert list(versioned(int8)) == ["format", "space", "resolution", "blocks"]
    assert int8.uses_precision and int8.precision_kind == "int8"
    mixed = fp32.with_block(0, dataclasses.replace(fp32.blocks[0], precision="int8"))
    assert mixed.int8_blocks() == [0] and mixed.precision_label == f"mixed (1/{len(mixed.kept_blocks)} int8)"


BAD = [
    ([1, 2], "config: expected a mapping with fields space, resolution, blocks, format, got list"),
    ({"resolution": 128}, "blocks: missing; expected a list with one entry per encoder block"),
    ({"blocks": [{"keep": False}]}, "resolution: missing (the input side in pixels)"),
    ({"resolution": True, "blocks": [{"keep": False}]}, "resolution: True is not a positive integer"),
    ({"resolution": 128, "blocks": [{"keep": 1}]}, "blocks[0].keep: 1 not in [true, false]"),
    ({"resolution": 128, "blocks": [{"heads": 2}]}, "blocks[0].mlp: missing (a kept block needs heads and mlp)"),
    ({"resolution": 128, "blocks": [{"heads": 2, "mlp": 8, "precision": "int4"}]},
     "blocks[0].precision: 'int4' not in ['fp32', 'int8']"),
    ({"resolution": 128, "blocks": [{"keep": False, "stage": 1}, {"keep": False, "stage": 0}]},
     "blocks[1].stage: 0 after stage 1; stages must not decrease"),
    ({"resolution": 128, "blocks": [{"keep": False}], "format": "samnas-config/3"},
     "format: 'samnas-config/3' not in ['samnas-config/1', 'samnas-config/2'] (written by a newer samnas?)"),
    ({"resolution": 128, "blocks": [{"keep": False}], "width": 3},
     "width: unknown field; allowed fields: space, resolution, blocks, format"),
]


@pytest.mark.parametrize("data, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_fields_get_one_line_naming_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        SubnetConfig.from_dict(data)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        SubnetConfig.from_dict(data, source="subnet.yaml")
    assert str(info.value) == f"subnet.yaml: {message}" and "\n" not in str(info.value)


def test_bad_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space: sam_micro\nresolution: 128\nblocks:\n- {keep: true, heads: x, mlp: 256}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: blocks[0].heads: 'x' is not a positive integer"


def test_record_is_frozen_and_normalised():
    config = SearchSpace.load("sam_micro").largest()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.resolution = 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.blocks[0].heads = 1
    assert BlockChoice(False, 3, 9, "int8") == BlockChoice.skipped()  # a skipped block says nothing else
    with pytest.raises(ValueError):
        BlockChoice(True, None, 256)


def test_stages_view():
    """SAM 1 configs are one stage; a staged config (how SAM 2 would use it) groups blocks by stage and
    writes ``stage`` only where it is not 0, so SAM 1 keys are untouched."""
    config = SearchSpace.load("sam_micro").sample(2)
    assert config.stages == (config.blocks,)
    staged = config.replace(blocks=tuple(dataclasses.replace(b, stage=i // 3) for i, b in enumerate(config.blocks)))
    assert staged.stages == (config.blocks[:3], tuple(dataclasses.replace(b, stage=1) for b in config.blocks[3:]))
    assert SubnetConfig.from_dict(staged.to_dict()) == staged
    assert staged.to_dict()["blocks"][0] == config.to_dict()["blocks"][0]
    assert all(b["stage"] == 1 for b in staged.to_dict()["blocks"][3:])
