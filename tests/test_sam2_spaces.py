"""SAM 2 search spaces (packaged files against the architectures, validation messages, sampling,
encoding) and SAM 2 parameter and FLOP counts against fvcore and the extracted modules."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from infra.errors import ConfigError
from search_spaces import BlockChoice, SearchSpace, SubnetConfig
from search_spaces.counting import count, count_flops, count_flops_fvcore, count_params
from supernet.elastic.activation import check_fits, full_config
from supernet.elastic.build import build_sam2_supernet
from supernet.elastic.extract import extract
from supernet.modeling.sam2.arch import get_sam2_arch

SAM2_SPACES = ["sam2_hiera_b_plus", "sam2_hiera_l", "sam2_hiera_s", "sam2_hiera_t", "sam2_micro"]


@pytest.fixture(scope="module")
def hiera_t() -> SearchSpace:
    return SearchSpace.load("sam2_hiera_t")


@pytest.fixture(scope="module")
def micro_model():
    return build_sam2_supernet("sam2_micro", seed=0)


@pytest.mark.parametrize("name", SAM2_SPACES)
def test_packaged_space_matches_its_arch(name):
    space = SearchSpace.load(name)
    arch = get_sam2_arch(name)
    specs = arch.block_specs()
    assert space.is_sam2 and space.num_blocks == arch.depth and space.description
    assert max(space.resolutions) == arch.img_size and all(r % 32 == 0 for r in space.resolutions)
    assert space.global_blocks == arch.global_att_blocks
    for b, spec in zip(space.blocks, specs):
        assert (b.stage, max(b.heads), max(b.mlp)) == (spec.stage, spec.heads, spec.mlp_dim)
        assert b.is_global == (spec.window == 0)
        assert not b.skippable if (b.index == 0 or spec.q_pool) else b.skippable  # the fixed blocks, no others
    assert SearchSpace.from_dict(space.to_dict()).blocks == space.blocks  # the file form round-trips


@pytest.mark.parametrize("name", SAM2_SPACES)
def test_largest_is_the_full_model_and_samples_fit_it(name):
    space = SearchSpace.load(name)
    with torch.device("meta"):
        model = build_sam2_supernet(name)
    assert space.largest() == full_config(model, space=name)
    smallest = space.smallest()
    assert space.validate(smallest) == smallest
    assert sum(i in space.global_blocks for i, b in enumerate(smallest.blocks) if b.keep) == space.min_global_blocks
    for seed in range(30):
        config = space.sample(seed)
        assert space.validate(config) == config and config == space.sample(seed)
        check_fits(model, config)
        assert [b.stage for b in config.blocks] == [s.stage for s in get_sam2_arch(name).block_specs()]
        features = space.encode(config)
        assert features.shape == (1 + 3 * space.num_blocks,) and features.min() >= 0 and features.max() <= 1
    assert np.array_equal(space.encode(space.largest())[1:], np.ones(3 * space.num_blocks))


def test_config_file_form_carries_stages(hiera_t):
    config = hiera_t.sample(4)
    data = config.to_dict()
    assert [b.get("stage", 0) for b in data["blocks"]] == [0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3]
    assert hiera_t.validate(SubnetConfig.from_json(config.to_json())) == config


def _broken(space: SearchSpace, change) -> dict:
    data = space.largest().to_dict()
    change(data)
    return data


BAD_CONFIGS = [
    (lambda c: c["blocks"].__setitem__(3, {"keep": False, "stage": 2}),
     "blocks[3].keep: false not allowed, block 3 cannot be skipped: it opens stage 2 (a q-pool transition: "
     "width 192 -> 384)"),
    (lambda c: c["blocks"].__setitem__(10, {"keep": False, "stage": 3}),
     "blocks[10].keep: false not allowed, block 10 cannot be skipped: it opens stage 3 (a q-pool transition: "
     "width 384 -> 768)"),
    (lambda c: c["blocks"].__setitem__(0, {"keep": False}),
     "blocks[0].keep: false not allowed, block 0 cannot be skipped: it is the trunk's first block"),
    (lambda c: c.update(resolution=500), "resolution: 500 not in [1024, 768, 512]"),
    (lambda c: c["blocks"][4].update(heads=1), "blocks[4].heads: 1 not in [2, 3, 4]"),
    (lambda c: c["blocks"][11].update(mlp=3000), "blocks[11].mlp: 3000 not in [768, 1536, 2304, 3072]"),
    (lambda c: c["blocks"][3].update(stage=1), "blocks[3].stage: 1 does not match sam2_hiera_t, whose block 3 is "
                                               "in stage 2"),
    (lambda c: [b.pop("stage", None) for b in c["blocks"]],
     "blocks[1].stage: 0 does not match sam2_hiera_t, whose block 1 is in stage 1 (a block without `stage` is "
     "in stage 0)"),
    (lambda c: c["blocks"][4].update(precision="int8"), "blocks[4].precision: 'int8' not in ['fp32']"),
    (lambda c: [c["blocks"].__setitem__(i, {"keep": False, "stage": 2}) for i in (5, 7)],
     "blocks: keeps 1 of the global-attention blocks [5, 7, 9], at least 2 required (min_global_blocks)"),
]


@pytest.mark.parametrize("change, message", BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_bad_config_gets_one_line_naming_the_field(hiera_t, change, message):
    with pytest.raises(ConfigError) as info:
        hiera_t.validate(_broken(hiera_t, change), source="subnet.yaml")
    assert str(info.value) == f"subnet.yaml: {message}"


def _space_data(name: str) -> dict:
    """The packaged space file of ``name`` as a mapping."""
    with open(SearchSpace.load(name).source) as f:
        return yaml.safe_load(f)


BAD_SPACES = [
    (lambda d: d.update(overrides={2: {"skippable": True}}),
     "overrides.2.skippable: true not allowed, block 2 cannot be skipped: it opens stage 2"),
    (lambda d: d.update(fixed_blocks=[0, 1, 2]), "fixed_blocks: [0, 1, 2] does not match sam2_micro's [0, 1, 2, 4]"),
    (lambda d: d.update(blocks_per_stage=[1, 1, 3]), "blocks_per_stage: [1, 1, 3] does not match sam2_micro's"),
    (lambda d: d.pop("stages"), "stages: missing (required for SAM 2 model types)"),
    (lambda d: d["stages"].pop(), "stages: expected a list of 4 entries"),
    (lambda d: d["stages"][0].update(heads=[1, 2]), "stages[0].heads: 2 exceeds sam2_micro stage 0 heads 1"),
    (lambda d: d["stages"][1].pop("mlp"), "stages[1].mlp: missing (required when defaults has no mlp)"),
    (lambda d: [d["stages"][0].pop("mlp"), d["defaults"].update(mlp=[1024])],
     "defaults.mlp: 1024 exceeds stage 0's 128 (block 0); give stage 0 its own in stages[0].mlp"),
    (lambda d: d.update(resolutions=[256, 240]), "resolutions: 240 is not a multiple of 32 pixels"),
    (lambda d: d.update(overrides={3: {"heads": [8]}}), "overrides.3.heads: 8 exceeds block 3's heads 4"),
]


@pytest.mark.parametrize("change, message", BAD_SPACES, ids=[m.split(":")[0] for _, m in BAD_SPACES])
def test_bad_space_file_names_file_and_field(tmp_path, change, message):
    data = _space_data("sam2_micro")
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_sam1_space_refuses_stage_fields(tmp_path):
    data = _space_data("sam_micro")
    data["stages"] = [{"heads": [4]}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad.yaml: stages: only for SAM 2 model types"):
        SearchSpace.load(path)


def test_precision_dimension_on_a_sam2_space(micro_model):
    data = _space_data("sam2_micro")
    data["defaults"]["precisions"] = ["fp32", "int8"]
    space = SearchSpace.from_dict(data)
    assert space.precisions == ("fp32", "int8") and space.smallest().precision_kind == "int8"
    kinds = {space.sample(seed).precision_kind for seed in range(30)}
    assert kinds == {"fp32", "int8", "mixed"}
    assert len(space.encode(space.smallest())) == 1 + 4 * space.num_blocks
    config = space.smallest()
    assert count(micro_model, config) == count(micro_model, config.with_precision("fp32"))


# --------------------------------------------------------------------------- counting


def _micro_configs(micro_model) -> list[SubnetConfig]:
    space = SearchSpace.load("sam2_micro")
    return [full_config(micro_model), space.smallest(), space.sample(1), space.sample(2),
            full_config(micro_model).replace(resolution=160)]  # 160: stage-3 windows need padding


@pytest.mark.parametrize("index", range(5))
def test_micro_counts_match_fvcore_and_the_extracted_module(micro_model, index):
    config = _micro_configs(micro_model)[index]
    assert count_flops(micro_model, config) == count_flops_fvcore(micro_model, config)
    sub = extract(micro_model, config)
    encoder, total = count_params(micro_model, config)
    assert encoder == sum(p.numel() for p in sub.image_encoder.parameters())
    assert total == sum(p.numel() for p in sub.parameters())


def test_hiera_t_at_512_counts_match_fvcore():
    model = build_sam2_supernet("sam2_hiera_t", seed=0, img_size=512)
    subnet = SubnetConfig.from_dict({"resolution": 512, "blocks": [
        {"heads": 1, "mlp": 192}, {"heads": 1, "mlp": 768, "stage": 1}, {"keep": False, "stage": 1},
        {"heads": 3, "mlp": 1152, "stage": 2}, {"keep": False, "stage": 2}, {"heads": 4, "mlp": 384, "stage": 2},
        {"heads": 2, "mlp": 1536, "stage": 2}, {"keep": False, "stage": 2}, {"heads": 4, "mlp": 768, "stage": 2},
        {"heads": 2, "mlp": 1536, "stage": 2}, {"heads": 6, "mlp": 3072, "stage": 3}, {"keep": False, "stage": 3}]})
    full = full_config(model)
    for config in (full, subnet):
        assert count_flops(model, config) == count_flops_fvcore(model, config)
        assert count_params(model, config)[1] == sum(p.numel() for p in extract(model, config).parameters())
    assert count_flops(model, subnet) < count_flops(model, full)
    # Hiera-T's trunk and neck: about 27 M parameters and 31 G multiply-adds at 512 px (x4 at 1024)
    assert 26e6 < count_params(model, full)[0] < 28e6 and 30e9 < count_flops(model, full) < 33e9


@pytest.mark.slow
def test_hiera_t_at_1024_matches_fvcore():
    model = build_sam2_supernet("sam2_hiera_t", seed=0)
    full = full_config(model)
    assert full.resolution == 1024 and full.blocks[-1] == BlockChoice(True, 8, 3072, stage=3)
    flops = count_flops(model, full)
    assert flops == count_flops_fvcore(model, full)
    # more than 4x the 512-px count: the global blocks' attention grows with the square of the tokens
    assert 4 < flops / count_flops(model, full.replace(resolution=512)) < 5
