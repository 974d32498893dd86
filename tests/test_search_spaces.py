"""Search spaces: packaged files against the architectures, validation messages, sampling,
feature encoding, config counting (against brute-force enumeration), config files, commands."""
from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import yaml

from search_spaces import BlockChoice, SearchSpace, SubnetConfig, available_spaces, load_config, save_config
from search_spaces import commands
from search_spaces.config import read_mapping
from supernet.modeling.arch import get_arch
from infra.errors import ConfigError, UserError
from cli_parse import run_with

SAM_PACKAGED = ["sam_micro", "sam_micro_int8", "sam_vit_b", "sam_vit_b_int8", "sam_vit_h", "sam_vit_l"]
SAM2_PACKAGED = ["sam2_hiera_b_plus", "sam2_hiera_l", "sam2_hiera_s", "sam2_hiera_t", "sam2_micro"]  # tests/test_sam2_spaces.py
PACKAGED = SAM2_PACKAGED + SAM_PACKAGED


@pytest.fixture(scope="module")
def vit_b() -> SearchSpace:
    return SearchSpace.load("sam_vit_b")


@pytest.fixture(scope="module")
def micro() -> SearchSpace:
    return SearchSpace.load("sam_micro")


def tiny_space_yaml(min_global: int = 1) -> str:
    """A micro-type space with few choices, small enough to enumerate by hand."""
    return f"""
name: tiny
model_type: micro
num_blocks: 6
resolutions: [128, 256]
global_blocks: [2, 5]
min_global_blocks: {min_global}
defaults: {{heads: [4], mlp: [512]}}
overrides:
  0: {{heads: [2, 4]}}
  1: {{mlp: [512, 256], skippable: true}}
  2: {{skippable: true}}
  5: {{heads: [4, 2], skippable: true}}
"""


def write_space(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def enumerate_configs(space: SearchSpace):
    """Every combination of per-block settings and resolution (valid or not), by brute force."""
    per_block = []
    for b in space.blocks:
        options = [BlockChoice.skipped()] if b.skippable else []
        options += [BlockChoice(True, h, m) for h in b.heads for m in b.mlp]
        per_block.append(options)
    for res in space.resolutions:
        for blocks in itertools.product(*per_block):
            yield SubnetConfig(space.name, res, blocks)


def count_valid(space: SearchSpace) -> int:
    valid = 0
    for config in enumerate_configs(space):
        try:
            space.validate(config)
            valid += 1
        except ConfigError:
            pass
    return valid


# --------------------------------------------------------------------------- packaged spaces


def test_packaged_names():
    assert available_spaces() == PACKAGED
    assert SearchSpace.available_spaces() == PACKAGED


@pytest.mark.parametrize("name", SAM_PACKAGED)
def test_packaged_space_matches_its_arch(name):
    space = SearchSpace.load(name)
    arch = get_arch(space.model_type)
    assert space.name == name
    assert space.num_blocks == arch.depth
    assert max(space.resolutions) == arch.img_size
    assert all(r % arch.patch_size == 0 for r in space.resolutions)
    assert space.global_blocks == tuple(arch.global_attn_indexes)
    for b in space.blocks:
        assert max(b.heads) == arch.num_heads
        assert max(b.mlp) == arch.mlp_dim
        assert b.is_global == (b.index in arch.global_attn_indexes)
    assert not space.blocks[0].skippable
    assert 1 <= space.min_global_blocks <= len(space.global_blocks)
    assert space.description


@pytest.mark.parametrize("name", SAM_PACKAGED)
def test_largest_smallest_sample_validate(name):
    space = SearchSpace.load(name)
    arch = space.arch
    largest = space.largest()
    assert space.validate(largest) == largest
    assert largest.resolution == arch.img_size
    assert all(b == BlockChoice(True, arch.num_heads, arch.mlp_dim) for b in largest.blocks)
    smallest = space.smallest()
    assert space.validate(smallest) == smallest
    assert smallest.resolution == min(space.resolutions)
    kept = [i for i, b in enumerate(smallest.blocks) if b.keep]
    assert sum(i in space.global_blocks for i in kept) == space.min_global_blocks
    for i in kept:
        assert smallest.blocks[i].heads == min(space.blocks[i].heads)
    for seed in range(50):
        config = space.sample(seed)
        assert space.validate(config) == config


def test_micro_largest_is_the_full_model_and_samples_fit_it(micro):
    from supernet.elastic.build import build_sam
    from supernet.elastic.activation import check_fits, full_config

    model = build_sam("micro", seed=0)
    assert micro.largest() == full_config(model, space="sam_micro")
    for seed in range(20):
        check_fits(model, micro.sample(seed))


def test_to_dict_round_trips(tmp_path):
    for name in PACKAGED:
        space = SearchSpace.load(name)
        assert SearchSpace.from_dict(space.to_dict()) == space
        path = save_config(space.to_dict(), tmp_path / f"{name}.json")  # JSON keys become strings
        assert SearchSpace.load(path) == space


# --------------------------------------------------------------------------- sampling


def test_sample_reproducible(vit_b):
    assert vit_b.sample(7) == vit_b.sample(7)
    assert vit_b.sample(np.random.default_rng(3)) == vit_b.sample(np.random.default_rng(3))
    assert len({vit_b.sample(s).key for s in range(20)}) == 20
    rng = np.random.default_rng(0)
    assert vit_b.sample(rng) != vit_b.sample(rng)  # a Generator advances


def test_sample_covers_every_choice(micro):
    samples = [micro.sample(seed) for seed in range(400)]
    assert {c.resolution for c in samples} == set(micro.resolutions)
    for b in micro.blocks:
        entries = [c.blocks[b.index] for c in samples]
        kept = [e for e in entries if e.keep]
        assert {e.heads for e in kept} == set(b.heads)
        assert {e.mlp for e in kept} == set(b.mlp)
        assert (len(kept) < len(entries)) == b.skippable
    for c in samples:
        assert all(type(b.keep) is bool for b in c.blocks)
        assert all(type(v) is int for b in c.to_dict()["blocks"] for k, v in b.items() if k != "keep")


def test_sample_global_patterns_uniform_among_valid(micro):
    # micro: global blocks 2 and 5, both skippable, at least 1 kept -> 3 valid patterns
    patterns = Counter(
        tuple(c.blocks[i].keep for i in micro.global_blocks) for c in (micro.sample(s) for s in range(900))
    )
    assert set(patterns) == {(True, True), (True, False), (False, True)}
    assert all(240 < n < 360 for n in patterns.values()), patterns


def test_sample_respects_min_global_blocks(vit_b):
    counts = Counter()
    for seed in range(300):
        config = vit_b.sample(seed)
        counts[sum(config.blocks[i].keep for i in vit_b.global_blocks)] += 1
    assert set(counts) == {2, 3, 4}


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("name", ["sam_micro", "sam_vit_b"])
def test_encode_fixed_length_in_unit_range(name):
    space = SearchSpace.load(name)
    names = space.feature_names()
    assert len(names) == 1 + 3 * space.num_blocks == len(set(names))
    for config in [space.largest(), space.smallest()] + [space.sample(s) for s in range(20)]:
        features = space.encode(config)
        assert features.shape == (len(names),) and features.dtype == np.float64
        assert np.all((features >= 0) & (features <= 1))
    assert np.all(space.encode(space.largest()) == 1.0)
    smallest = space.smallest()
    features = dict(zip(names, space.encode(smallest)))
    assert features["resolution"] == min(space.resolutions) / space.arch.img_size
    assert features["blocks[1].keep"] == 0 and features["blocks[1].heads"] == 0 and features["blocks[1].mlp"] == 0
    assert features["blocks[0].heads"] == min(space.blocks[0].heads) / space.arch.num_heads


def test_encode_distinguishes_configs(micro):
    encoded = {micro.encode(micro.sample(s)).tobytes() for s in range(30)}
    assert len(encoded) == len({micro.sample(s).key for s in range(30)})


def test_encode_rejects_invalid(vit_b):
    config = vit_b.largest().replace(resolution=300)
    with pytest.raises(ConfigError, match=r"resolution: 300 not in \[1024, 768, 512\]"):
        vit_b.encode(config)
    with pytest.raises(ConfigError, match=r"resolution: 300 not in \[1024, 768, 512\]"):
        vit_b.encode(config.to_dict())  # the dict form is read, then checked the same way


# --------------------------------------------------------------------------- validation


def broken(space: SearchSpace, change) -> dict:
    """The dict form of ``space``'s largest config, changed by ``change``."""
    config = space.largest().to_dict()
    change(config)
    return config


BAD_CONFIGS = [
    (lambda c: c["blocks"][5].update(heads=7), "blocks[5].heads: 7 not in [4, 6, 8, 10, 12]"),
    (lambda c: c["blocks"][5].update(heads=8.0), "blocks[5].heads: 8.0 is not a positive integer"),
    (lambda c: c["blocks"][5].update(heads=0), "blocks[5].heads: 0 is not a positive integer"),
    (lambda c: c["blocks"][1].update(mlp="3072"), "blocks[1].mlp: '3072' is not a positive integer"),
    (lambda c: c["blocks"][3].pop("mlp"), "blocks[3].mlp: missing (a kept block needs heads and mlp)"),
    (lambda c: c["blocks"][3].update(mlp=1000), "blocks[3].mlp: 1000 not in [768, 1536, 2304, 3072]"),
    (lambda c: c.update(resolution=300), "resolution: 300 not in [1024, 768, 512]"),
    (lambda c: c.pop("resolution"), "resolution: missing (the input side in pixels)"),
    (lambda c: c.update(space=7), "space: expected a search-space name, got 7"),
    (lambda c: c.update(width=3), "width: unknown field; allowed fields: space, resolution, blocks, format"),
    (lambda c: c["blocks"][3].update(width=3),
     "blocks[3].width: unknown field; allowed fields: keep, heads, mlp, precision, stage"),
    (lambda c: c["blocks"].pop(), "blocks: expected a list of 12 entries (one per encoder block), got 11 entries"),
    (lambda c: c.update(blocks="all"), "blocks: expected a list with one entry per encoder block, got str"),
    (lambda c: c.update(blocks=[]), "blocks: expected a list with one entry per encoder block, got an empty list"),
    (lambda c: c.pop("blocks"), "blocks: missing; expected a list with one entry per encoder block"),
    (lambda c: c["blocks"].__setitem__(4, 12), "blocks[4]: expected a mapping like {keep: true, heads: H, mlp: M}, got 12"),
    (lambda c: c["blocks"][2].update(keep="yes"), "blocks[2].keep: 'yes' not in [true, false]"),
    (
        lambda c: c["blocks"].__setitem__(0, {"keep": False}),
        "blocks[0].keep: false not allowed, block 0 cannot be skipped (skippable blocks: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])",
    ),
    (
        lambda c: [c["blocks"].__setitem__(i, {"keep": False}) for i in (2, 5, 8)],
        "blocks: keeps 1 of the global-attention blocks [2, 5, 8, 11], at least 2 required (min_global_blocks)",
    ),
    (lambda c: c.update(space="sam_vit_l"), "space: 'sam_vit_l' does not match search space 'sam_vit_b'"),
    # sam_vit_b has no precision dimension: its blocks run fp32 only
    (lambda c: c["blocks"][3].update(precision="int8"), "blocks[3].precision: 'int8' not in ['fp32']"),
    # stages are for SAM 2 (a later issue): a SAM 1 space has one
    (lambda c: c["blocks"][11].update(stage=1), "blocks[11].stage: 1 not in [0] (a SAM 1 encoder has one stage)"),
    (lambda c: c["blocks"][3].update(stage=-1), "blocks[3].stage: -1 is not an integer >= 0"),
    (lambda c: c.update(format="samnas-config/9"),
     "format: 'samnas-config/9' not in ['samnas-config/1', 'samnas-config/2'] (written by a newer samnas?)"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_bad_config_message(vit_b, change, message):
    with pytest.raises(ConfigError) as info:
        vit_b.validate(broken(vit_b, change))
    assert str(info.value) == message


def test_bad_config_not_a_mapping(vit_b):
    with pytest.raises(ConfigError, match="config: expected a mapping with fields space, resolution, blocks, format, got list"):
        vit_b.validate([1, 2])


def test_validate_names_the_source_and_is_a_user_error(vit_b):
    config = broken(vit_b, lambda c: c["blocks"][5].update(heads=7))
    with pytest.raises(ConfigError) as info:
        vit_b.validate(config, source="subnet.yaml")
    assert str(info.value) == "subnet.yaml: blocks[5].heads: 7 not in [4, 6, 8, 10, 12]"
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


def test_validate_normalises(vit_b):
    config = vit_b.largest().to_dict()
    del config["space"]
    config["blocks"][0] = {"heads": np.int64(8), "mlp": 768}  # keep defaults to true
    config["blocks"][1] = {"keep": False, "heads": 99}  # a skipped block's other fields are dropped
    config["blocks"][2] = {"keep": np.bool_(True), "heads": 8, "mlp": 768}
    config["resolution"] = np.int32(512)
    out = vit_b.validate(config)
    assert isinstance(out, SubnetConfig) and out.space == "sam_vit_b"
    assert out.blocks[0] == BlockChoice(True, 8, 768) and type(out.blocks[0].heads) is int
    assert out.blocks[1] == BlockChoice.skipped() and out.blocks[1].to_dict() == {"keep": False}
    assert type(out.blocks[2].keep) is bool
    assert out.resolution == 512 and type(out.resolution) is int
    assert vit_b.validate(out) == out
    assert "space" not in config  # the input is not modified


# --------------------------------------------------------------------------- counting


@pytest.mark.parametrize("min_global, expected", [(0, 72), (1, 60), (2, 24)])
def test_num_configs_tiny_space(tmp_path, min_global, expected):
    # 2 resolutions x block 0: 2 heads x block 1: skip or 2 mlp x globals 2 and 5:
    # block 2 keep (1 way) or skip, block 5 keep (2 ways) or skip -> 6 patterns, 5 with >= 1 kept, 2 with both.
    space = SearchSpace.load(write_space(tmp_path, tiny_space_yaml(min_global)))
    assert space.name == "tiny" and space.resolutions == (256, 128)
    assert space.blocks[5].heads == (2, 4) and space.blocks[1].mlp == (256, 512)
    assert space.num_configs() == expected
    assert count_valid(space) == expected


def test_num_configs_micro_formula(micro):
    per_block = 4 * 4 + 1
    assert micro.num_configs() == 3 * 16 * per_block**3 * (per_block**2 - 1)


def test_tiny_space_sample_and_smallest(tmp_path):
    space = SearchSpace.load(write_space(tmp_path, tiny_space_yaml(2)))
    smallest = space.smallest()
    assert [b.keep for b in smallest.blocks] == [True, False, True, True, True, True]
    for seed in range(30):
        assert all(space.sample(seed).blocks[i].keep for i in (2, 5))


# --------------------------------------------------------------------------- loading spaces


def test_unknown_space_name_lists_available():
    with pytest.raises(ConfigError) as info:
        SearchSpace.load("sam_vit_x")
    assert str(info.value).startswith(f"search space 'sam_vit_x' unknown; available: {', '.join(PACKAGED)}")


BAD_SPACES = [
    (lambda d: d.update(foo=1), "foo: unknown field; allowed fields: name, model_type, description, num_blocks"),
    (lambda d: d.pop("defaults"), "defaults: missing (required)"),
    (lambda d: d.update(model_type="vit_x"), "model_type: 'vit_x' not in ['micro', 'vit_b', 'vit_h', 'vit_l', 'sam2_hiera_b_plus', "
     "'sam2_hiera_l', 'sam2_hiera_s', 'sam2_hiera_t', 'sam2_micro']"),
    (lambda d: d.update(num_blocks=5), "num_blocks: 5 does not match micro's 6 encoder blocks"),
    (lambda d: d.update(global_blocks=[2]), "global_blocks: [2] does not match micro's global-attention blocks [2, 5]"),
    (lambda d: d.update(resolutions=[256, 200]), "resolutions: 200 is not a multiple of the patch size 16"),
    (lambda d: d.update(resolutions=[512]), "resolutions: 512 exceeds micro img_size 256"),
    (lambda d: d.update(min_global_blocks=3), "min_global_blocks: 3 must be an integer in [0, 2]"),
    (lambda d: d.update(defaults={"heads": [8], "mlp": [512]}), "defaults.heads: 8 exceeds micro num_heads 4"),
    (lambda d: d.update(defaults={"heads": [4]}), "defaults.mlp: missing (required)"),
    (
        lambda d: d["defaults"].update(width=1),
        "defaults.width: unknown field; allowed fields: heads, mlp, skippable",
    ),
    (lambda d: d.update(overrides={6: {"skippable": True}}), "overrides: block index 6 not in 0..5"),
    (lambda d: d.update(overrides={1: {"skippable": "yes"}}), "overrides.1.skippable: 'yes' not in [true, false]"),
    (lambda d: d.update(overrides={1: {"heads": [2, 2]}}), "overrides.1.heads: [2, 2] has duplicates"),
    (lambda d: d.update(name="my space"), "name: 'my space' must be letters, digits, '_', '.' or '-'"),
]


@pytest.mark.parametrize("change, message", BAD_SPACES, ids=[m.split(":")[0] for _, m in BAD_SPACES])
def test_bad_space_file_names_file_and_field(tmp_path, change, message):
    data = yaml.safe_load(tiny_space_yaml())
    change(data)
    path = write_space(tmp_path, yaml.safe_dump(data), "bad.yaml")
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_space_file_unreadable(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: search-space file not found"):
        SearchSpace.load(tmp_path / "missing.yaml")
    path = write_space(tmp_path, "name: [unclosed\n", "broken.yaml")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        SearchSpace.load(path)


# --------------------------------------------------------------------------- config files


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_config_round_trip(tmp_path, vit_b, suffix):
    config = vit_b.sample(5)
    path = save_config(config, tmp_path / "sub" / f"subnet{suffix}")
    assert load_config(path) == config
    assert vit_b.validate(load_config(path)) == config
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left
    text = path.read_text()
    if suffix == ".json":
        assert json.loads(text) == config.to_dict()
    else:
        assert "- {keep: true, heads:" in text or "- {keep: false}" in text  # one line per block


def test_save_config_overwrites_atomically(tmp_path, micro):
    path = tmp_path / "c.yaml"
    save_config(micro.largest(), path)
    save_config(micro.smallest(), path)
    assert load_config(path) == micro.smallest()


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad_json = write_space(tmp_path, "{not json", "c.json")
    with pytest.raises(ConfigError, match=r"c\.json: not valid JSON"):
        load_config(bad_json)
    a_list = write_space(tmp_path, "- 1\n- 2\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml: expected a mapping at the top of the config file, got list"):
        load_config(a_list)
    assert read_mapping(write_space(tmp_path, "a: 1\n", "m.yaml")) == {"a": 1}


def test_config_key_is_canonical(micro):
    config = micro.sample(1)
    data = config.to_dict()
    reordered = {"blocks": [dict(reversed(list(b.items()))) for b in data["blocks"]], **data}
    reordered = dict(reversed(list(reordered.items())))
    assert SubnetConfig.from_dict(reordered).key == config.key == config.to_json()
    assert " " not in config.key
    assert json.loads(config.key) == data
    assert SubnetConfig.from_json(config.key) == config


# --------------------------------------------------------------------------- commands


def run_command(argv: list[str]) -> int:
    return run_with(commands, argv)


def test_spaces_list(capsys):
    assert run_command(["spaces", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["name", "model", "type", "blocks", "resolutions", "configs"]
    micro_row = next(line for line in lines if line.startswith("sam_micro"))
    assert micro_row.split() == ["sam_micro", "micro", "6", "256,192,128", "6.79e+07"]
    assert len(lines) == 1 + len(PACKAGED)


def test_spaces_show_formats(capsys, tmp_path, micro):
    assert run_command(["spaces", "show", "sam_micro"]) == 0
    table = capsys.readouterr().out
    assert "global" in table and "256, 192, 128 px" in table and "1,2,3,4" in table
    for fmt, suffix in (("yaml", ".yaml"), ("json", ".json")):
        assert run_command(["spaces", "show", "sam_micro", "--format", fmt]) == 0
        path = write_space(tmp_path, capsys.readouterr().out, f"shown{suffix}")
        assert SearchSpace.load(path) == micro


def test_spaces_show_unknown_is_user_error():
    with pytest.raises(UserError, match="search space 'nope' unknown"):
        run_command(["spaces", "show", "nope"])


def test_spaces_without_action_prints_help(capsys):
    assert run_command(["spaces"]) == 2
    assert "list" in capsys.readouterr().out


# --------------------------------------------------------------------------- precision


@pytest.fixture(scope="module")
def micro_int8() -> SearchSpace:
    return SearchSpace.load("sam_micro_int8")


def test_int8_spaces_are_their_fp32_space_plus_precision(micro, micro_int8, vit_b):
    for fp32, int8 in ((micro, micro_int8), (vit_b, SearchSpace.load("sam_vit_b_int8"))):
        assert fp32.precisions == ("fp32",) and int8.precisions == ("fp32", "int8")
        assert all(b.precisions == ("fp32", "int8") for b in int8.blocks)
        assert [b.choices() | {"precisions": ["fp32"]} for b in int8.blocks] == [b.choices() for b in fp32.blocks]
        assert int8.num_configs() > fp32.num_configs()
        assert int8.largest() == fp32.largest().replace(space=int8.name)  # the largest config is fp32
        assert all(b.precision == "int8" for b in int8.smallest().kept_blocks)
    # an fp32-only space's file and configs carry no precision at all
    assert "precisions" not in json.dumps(micro.to_dict()) and "precision" not in micro.sample(3).key


def test_bad_precision_names_the_field_and_allowed_values(micro_int8):
    for value in ("int4", "INT8", 8, None):
        config = micro_int8.largest().to_dict()
        config["blocks"][3]["precision"] = value
        with pytest.raises(ConfigError) as info:
            micro_int8.validate(config, source="subnet.yaml")
        assert str(info.value) == f"subnet.yaml: blocks[3].precision: {value!r} not in ['fp32', 'int8']"
    bad_space = {**micro_int8.to_dict(), "overrides": {0: {"precisions": ["fp16"]}}}
    with pytest.raises(ConfigError, match=r"overrides\.0\.precisions: 'fp16' not in \['fp32', 'int8'\]"):
        SearchSpace.from_dict(bad_space)


def test_precision_normalised_fp32_left_out(micro_int8):
    config = micro_int8.largest().to_dict()
    config["blocks"][0]["precision"] = "fp32"  # explicit fp32 reads as the default
    config["blocks"][1]["precision"] = "int8"
    config["blocks"][2] = {"keep": False, "precision": "int8"}  # dropped with the other fields of a skipped block
    out = micro_int8.validate(config).to_dict()
    assert out["blocks"][0] == {"keep": True, "heads": 4, "mlp": 512}
    assert out["blocks"][1] == {"keep": True, "heads": 4, "mlp": 512, "precision": "int8"}
    assert out["blocks"][2] == {"keep": False}
    assert micro_int8.validate(out).to_dict() == out


def test_config_without_precision_reads_as_fp32(tmp_path, micro, micro_int8):
    """A config file from before precision (no fields, no format) validates as all-fp32 in both spaces,
    with the canonical JSON it always had."""
    old = tmp_path / "old.yaml"
    old.write_text("space: sam_micro\nresolution: 128\nblocks:\n"
                   + "".join("- {keep: true, heads: 2, mlp: 256}\n" for _ in range(6)))
    config = micro.validate(load_config(old))
    assert config.key == ('{"blocks":[' + ",".join(['{"heads":2,"keep":true,"mlp":256}'] * 6)
                                      + '],"resolution":128,"space":"sam_micro"}')
    as_int8_space = micro_int8.validate(config.replace(space="sam_micro_int8"))
    assert all("precision" not in b for b in as_int8_space.to_dict()["blocks"])
    assert micro_int8.encode(as_int8_space)[1 + 3 * 6:].tolist() == [0.0] * 6


def test_precision_config_files_name_format_2(tmp_path, micro, micro_int8):
    fp32_path = save_config(micro.sample(1), tmp_path / "fp32.yaml")
    assert "format" not in fp32_path.read_text()  # all-fp32 files stay as version 1 wrote them
    config = micro_int8.smallest()
    for suffix in (".yaml", ".json"):
        path = save_config(config, tmp_path / f"int8{suffix}")
        assert path.read_text().lstrip("{ \n").startswith(('format: samnas-config/2', '"format": "samnas-config/2"'))
        assert load_config(path) == config  # the format field is dropped on reading
    (tmp_path / "future.yaml").write_text("format: samnas-config/3\n" + fp32_path.read_text())
    with pytest.raises(ConfigError, match=r"future\.yaml: format: 'samnas-config/3' not in"):
        load_config(tmp_path / "future.yaml")
    assert micro.validate({"format": "samnas-config/1", **micro.largest().to_dict()}) == micro.largest()


def test_precision_sampling_encoding_counting(micro, micro_int8):
    # the fp32 space draws exactly as before precision existed (these configs were recorded before)
    assert micro.sample(0).key == SearchSpace.from_dict(micro.to_dict()).sample(0).key
    samples = [micro_int8.sample(seed) for seed in range(200)]
    precisions = Counter(b.precision for c in samples for b in c.kept_blocks)
    assert set(precisions) == {"fp32", "int8"} and 0.4 < precisions["int8"] / sum(precisions.values()) < 0.6
    assert all(micro_int8.validate(c) == c for c in samples)
    names = micro_int8.feature_names()
    assert names[: len(micro.feature_names())] == micro.feature_names() and names[-1] == "blocks[5].int8"
    for c in samples[:20]:
        features = dict(zip(names, micro_int8.encode(c)))
        for i, b in enumerate(c.blocks):
            assert features[f"blocks[{i}].int8"] == float(b.precision == "int8")
        fp32 = c.replace(space="sam_micro").with_precision("fp32")
        assert micro_int8.encode(c)[: len(micro.feature_names())].tolist() == micro.encode(fp32).tolist()


def test_num_configs_with_precision_matches_enumeration(tmp_path):
    text = tiny_space_yaml(1).replace("defaults: {heads: [4], mlp: [512]}",
                                      "defaults: {heads: [4], mlp: [512], precisions: [fp32, int8]}")
    text += "  3: {precisions: [int8]}\n"
    space = SearchSpace.load(write_space(tmp_path, text))
    assert space.blocks[3].precisions == ("int8",) and space.blocks[0].precisions == ("fp32", "int8")
    valid = 0
    per_block = []
    for b in space.blocks:
        options = [BlockChoice.skipped()] if b.skippable else []
        options += [b.kept(h, m, p) for h in b.heads for m in b.mlp for p in b.precisions]
        per_block.append(options)
    for res in space.resolutions:
        for blocks in itertools.product(*per_block):
            try:
                space.validate(SubnetConfig(space.name, res, blocks))
                valid += 1
            except ConfigError:
                pass
    assert space.num_configs() == valid == 1120  # brute force; the fp32 tiny space has 60
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert all(space.sample(seed).blocks[3].precision == "int8" for seed in range(10))
