"""The SAM 2 supernet (elastic Hiera): full config against the plain model, depth-only subnets against
the official sam2 Hiera built with fewer blocks, extraction, search spaces and counting.

Fast tier: ``sam2_micro`` (256 px) and ``sam2_hiera_t`` at 512 px; larger models are marked slow.
"""
from __future__ import annotations


import json

import pytest
import torch

from infra.errors import CheckpointError, ConfigError
from sam2_oracle import official_image_encoder, randomise
from search_spaces import SearchSpace, SubnetConfig
from supernet.checkpoint_sam2 import load_sam2
from supernet.elastic.activation import active_config, active_subnet, check_fits, full_config, set_active_subnet
from supernet.elastic.build import build_sam2_supernet
from supernet.elastic.extract import extract, load_subnet, save_subnet, subnet_metadata
from supernet.elastic.quantize import is_quantized
from supernet.elastic.sam2_extract import sam2_subnet_arch
from supernet.elastic.sam2_modules import ElasticHiera
from supernet.elastic.subnet_config import BlockChoice
from supernet.modeling.sam2.build import build_sam2

ATOL = 1e-4  # against the official code (the bar)
SIZES = {"sam2_micro": 256, "sam2_hiera_t": 512}  # the fast tier's models and input sides


@pytest.fixture(scope="module")
def supernet():
    """``supernet(name)``: the SAM 2 supernet of ``name`` at its fast-tier side, weights N(0, 0.05^2), built once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = randomise(build_sam2_supernet(name, seed=0, img_size=SIZES.get(name)), seed=1)
        return cache[name]

    return get


def _images(side: int, n: int = 1, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _skipping(model, skip: tuple[int, ...], resolution: int | None = None) -> SubnetConfig:
    """The full config of ``model`` with blocks ``skip`` skipped."""
    config = full_config(model)
    for i in skip:
        config = config.with_block(i, BlockChoice.skipped(config.blocks[i].stage))
    return config.replace(resolution=resolution or config.resolution)


@torch.no_grad()
def _encode(model, x: torch.Tensor) -> list[torch.Tensor]:
    stages, levels = model.image_encoder.forward_with_stages(x)
    return [*stages, *levels]


# --------------------------------------------------------------------------- the full config


@pytest.mark.parametrize("name", ["sam2_micro", "sam2_hiera_t"])
@torch.no_grad()
def test_full_config_is_the_plain_model_bit_for_bit(name):
    side = SIZES[name]
    plain, elastic = build_sam2(name, seed=0, img_size=side), build_sam2_supernet(name, seed=0, img_size=side)
    assert isinstance(elastic.image_encoder.trunk, ElasticHiera)
    assert list(plain.state_dict()) == list(elastic.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), elastic.state_dict().values()))
    space = SearchSpace.load(name)
    with active_subnet(elastic, space.smallest()):  # a subnet ran, then the full model is back
        _encode(elastic, _images(space.smallest().resolution))
    set_active_subnet(elastic, full_config(elastic))
    x = _images(side)
    assert all(torch.equal(a, b) for a, b in zip(_encode(plain, x), _encode(elastic, x)))
    point = (torch.tensor([[[40.0, 60.0]]]), torch.tensor([[1]]))
    ref = plain.decode(plain.embed_images(x), points=point)
    out = elastic.decode(elastic.embed_images(x), points=point)
    assert all(torch.equal(a, b) for a, b in zip(ref, out))


def test_checkpoint_loads_into_the_supernet(tmp_path):
    plain = randomise(build_sam2("sam2_micro", seed=0), seed=3)
    path = tmp_path / "sam2_micro.pt"
    torch.save({"model": plain.state_dict()}, path)
    elastic = load_sam2(path, elastic=True)
    assert isinstance(elastic.image_encoder.trunk, ElasticHiera)
    x = _images(256)
    assert all(torch.equal(a, b) for a, b in zip(_encode(plain, x), _encode(elastic, x)))
    assert active_config(elastic) == full_config(elastic).replace(space=None)


def test_plain_model_refuses_activation():
    with pytest.raises(TypeError, match="build_sam2_supernet"):
        set_active_subnet(build_sam2("sam2_micro", seed=0), full_config(build_sam2("sam2_micro", seed=0)))


# --------------------------------------------------------------------------- depth against the official Hiera


def _official_subnet(model, config: SubnetConfig):
    """sam2's ImageEncoder with the subnet's blocks per stage (global blocks renumbered), holding its weights."""
    official = official_image_encoder(sam2_subnet_arch(model, config)).eval()
    sub = extract(model, config)
    official.load_state_dict(sub.image_encoder.state_dict(), strict=True)
    return official


@pytest.mark.parametrize("name, skip, resolution", [
    ("sam2_micro", (3,), 256),  # micro's one skippable block, its only global one
    ("sam2_micro", (3,), 192),
    ("sam2_hiera_t", (2, 5, 8, 11), 512),  # a global block, a stage's last block
    pytest.param("sam2_hiera_t", (4, 6, 7, 9), 384, marks=pytest.mark.slow),
    pytest.param("sam2_hiera_b_plus", (1, 4, 12, 23), 512, marks=pytest.mark.slow),  # stage 0 has two blocks
])
@torch.no_grad()
def test_depth_only_subnet_matches_the_official_hiera_with_fewer_blocks(supernet, name, skip, resolution):
    model = supernet(name)
    config = _skipping(model, skip, resolution)
    official = _official_subnet(model, config)
    assert len(official.trunk.blocks) == len(config.kept_blocks)
    x = _images(resolution)
    captured = []
    hook = official.trunk.register_forward_hook(lambda m, i, out: captured.extend(out))
    try:
        levels = official(x)["backbone_fpn"]
    finally:
        hook.remove()
    with active_subnet(model, config):
        ours = _encode(model, x)
    expected = [*captured, *levels]
    assert len(ours) == len(expected) == 7
    errors = [(a - b).abs().max().item() for a, b in zip(ours, expected)]
    assert max(errors) < ATOL, errors


# --------------------------------------------------------------------------- extraction


def _configs(name: str, n: int) -> list[SubnetConfig]:
    space = SearchSpace.load(name)
    top = SIZES.get(name, 512)
    configs = [space.smallest()] + [space.sample(seed) for seed in range(n)]
    return [c if c.resolution <= top else c.replace(resolution=top) for c in configs]


@pytest.mark.parametrize("name, n", [("sam2_micro", 4), ("sam2_hiera_t", 1),
                                     pytest.param("sam2_hiera_b_plus", 1, marks=pytest.mark.slow)])
@torch.no_grad()
def test_extracted_subnet_equals_the_supernet_with_the_config_active(supernet, name, n):
    model = supernet(name)
    for config in _configs(name, n):
        sub = extract(model, config)
        kept = config.kept_blocks
        assert len(sub.image_encoder.trunk.blocks) == len(kept)
        first = sub.image_encoder.trunk.blocks[0]
        assert first.attn.qkv.weight.shape[0] == 3 * kept[0].heads * first.spec.head_dim
        assert first.mlp.layers[0].weight.shape[0] == kept[0].mlp
        assert sub.resolution == config.resolution
        x = _images(config.resolution)
        point = (torch.tensor([[[20.0, 30.0]]]), torch.tensor([[1]]))
        with active_subnet(model, config):
            expected = _encode(model, x)
            decoded = model.decode(model.embed_images(x), points=point)
        assert all(torch.equal(a, b) for a, b in zip(_encode(sub, x), expected))
        assert all(torch.equal(a, b) for a, b in zip(sub.decode(sub.embed_images(x), points=point), decoded))


def test_int8_blocks_quantize_on_extraction_only(supernet):
    model = supernet("sam2_micro")
    config = full_config(model).with_precision("int8")
    with pytest.raises(ConfigError, match=r"blocks\[0\].precision: int8 runs only on an extracted subnet"):
        set_active_subnet(model, config)
    sub = extract(model, config)
    assert is_quantized(sub.image_encoder.trunk) and not is_quantized(sub.image_encoder.neck)
    with torch.no_grad():
        out = _encode(sub, _images(256))
    ref = _encode(extract(model, full_config(model)), _images(256))
    assert 0 < max((a - b).abs().max().item() for a, b in zip(out, ref)) < 0.5


# --------------------------------------------------------------------------- activation errors


@pytest.mark.parametrize("change, message", [
    (lambda c: c.with_block(3, BlockChoice.skipped(2)),
     "blocks[3].keep: false not allowed, block 3 cannot be skipped: it opens stage 2 (a q-pool transition: "
     "width 192 -> 384)"),
    (lambda c: c.with_block(0, BlockChoice.skipped()),
     "blocks[0].keep: false not allowed, block 0 cannot be skipped: it is the trunk's first block"),
    (lambda c: c.replace(resolution=496), "resolution: 496 must be a multiple of 32 in (0, 512]"),
    (lambda c: c.replace(resolution=1024), "resolution: 1024 must be a multiple of 32 in (0, 512]"),
    (lambda c: c.with_block(4, BlockChoice(True, 5, 1536, stage=2)), "blocks[4].heads: 5 must be an integer in [1, 4]"),
    (lambda c: c.with_block(4, BlockChoice(True, 4, 1537, stage=2)),
     "blocks[4].mlp: 1537 must be an integer in [1, 1536]"),
    (lambda c: c.with_block(4, BlockChoice(True, 4, 1536, stage=3)),
     "blocks[4].stage: 3 does not match the model (block 4 is in stage 2)"),
    (lambda c: c.replace(blocks=c.blocks[:-1]), "blocks: expected a list of 12 entries (one per Hiera block) for "
                                                "this model, got 11"),
])
def test_configs_that_do_not_fit_get_one_line(supernet, change, message):
    model = supernet("sam2_hiera_t")
    with pytest.raises(ConfigError) as info:
        check_fits(model, change(full_config(model)))
    assert str(info.value) == message


def test_saved_subnet_loads_without_the_supernet(supernet, tmp_path):
    model = supernet("sam2_micro")
    config = SearchSpace.load("sam2_micro").sample(5).with_block(4, BlockChoice(True, 6, 768, "int8", stage=3))
    sub = extract(model, config, quantize=False)
    folder = save_subnet(sub, subnet_metadata(model, config), tmp_path / "sub")
    loaded = load_subnet(folder)
    assert type(loaded) is type(sub) and loaded.resolution == config.resolution
    assert is_quantized(loaded.image_encoder.trunk.blocks[-1]) and not is_quantized(loaded.image_encoder.trunk.blocks[0])
    x = _images(config.resolution)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(_encode(extract(model, config), x), _encode(loaded, x)))
    meta = json.loads((folder / "subnet.json").read_text())
    meta["blocks_spec"].pop()
    (folder / "subnet.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"subnet.json: missing or malformed field \(config keeps 5 blocks"):
        load_subnet(folder)
