"""Elastic supernet and subnet extraction on sam_micro."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from supernet.elastic.build import build_sam
from supernet.elastic.modules import ElasticImageEncoderViT
from supernet.modeling.build import build_from_spec
from supernet.elastic.activation import active_config, active_subnet, full_config, set_active_subnet
from infra.errors import CheckpointError, ConfigError
from supernet.elastic.extract import extract, load_subnet, save_subnet, subnet_blocks_spec, subnet_metadata
from supernet.elastic.subnet_config import BlockChoice, SubnetConfig


def micro_config(resolution=192):
    # micro: 6 blocks, 4 heads, mlp 512, global blocks 2 and 5
    return SubnetConfig.from_dict({
        "space": "sam_micro",
        "resolution": resolution,
        "blocks": [
            {"keep": True, "heads": 2, "mlp": 256},
            {"keep": False},
            {"keep": True, "heads": 3, "mlp": 384},
            {"keep": True, "heads": 4, "mlp": 128},
            {"keep": False},
            {"keep": True, "heads": 1, "mlp": 512},
        ],
    })


@pytest.fixture(scope="module")
def model():
    return build_sam("micro", seed=3)


def images(res, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, res, res, generator=g)


@torch.no_grad()
def test_full_config_is_the_original_model(model):
    x = images(256)
    ref = model.image_encoder(x)
    with active_subnet(model, micro_config()):
        pass
    with active_subnet(model, full_config(model)):
        assert torch.equal(model.image_encoder(x), ref)


@torch.no_grad()
def test_subnet_differs_and_context_restores(model):
    cfg = micro_config(256)
    x = images(256)
    full = model.image_encoder(x)
    with active_subnet(model, cfg):
        assert active_config(model).blocks[1] == BlockChoice.skipped()
        sub = model.image_encoder(x)
    assert not torch.allclose(sub, full)
    assert active_config(model) == full_config(model).replace(space=None)


@pytest.mark.parametrize("resolution", [256, 192, 128])
@torch.no_grad()
def test_extracted_equals_active_subnet(model, resolution):
    cfg = micro_config(resolution)
    sub = extract(model, cfg)
    n_sub = sum(p.numel() for p in sub.parameters())
    assert n_sub < sum(p.numel() for p in model.parameters())
    assert len(sub.image_encoder.blocks) == 4
    assert sub.image_encoder.blocks[0].attn.qkv.weight.shape == (3 * 2 * 32, 128)
    x = images(resolution)
    with active_subnet(model, cfg):
        expected = model.image_encoder(x)
        sparse_dense_ref = model.decode(expected[:1], points=(torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]])))
    got = sub.image_encoder(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    out = sub.decode(got[:1], points=(torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]])))
    torch.testing.assert_close(out[0], sparse_dense_ref[0], rtol=0, atol=1e-4)


@torch.no_grad()
def test_save_load_round_trip(model, tmp_path):
    cfg = micro_config(192)
    sub = extract(model, cfg)
    save_subnet(sub, subnet_metadata(model, cfg), tmp_path / "sub")
    assert json.loads((tmp_path / "sub" / "subnet.json").read_text())["config"] == cfg.to_dict()
    loaded = load_subnet(tmp_path / "sub")
    x = images(192)
    assert torch.equal(loaded.image_encoder(x), sub.image_encoder(x))


ELASTIC_ATTRIBUTES = ("active_heads", "active_hidden", "active_blocks", "qkv_slice", "proj_input")


def test_extracted_subnet_is_plain(model):
    cfg = micro_config(192)
    sub = extract(model, cfg)
    kept = cfg.kept_blocks
    for module in sub.modules():
        assert "Elastic" not in type(module).__name__, type(module)
        assert not [a for a in ELASTIC_ATTRIBUTES if hasattr(module, a)], type(module)
    for spec, block in zip(kept, sub.image_encoder.blocks):
        assert block.attn.qkv.out_features == 3 * spec.heads * block.attn.head_dim
        assert block.attn.proj.in_features == spec.heads * block.attn.head_dim
        assert block.mlp.lin1.out_features == block.mlp.lin2.in_features == spec.mlp
    linears = [m for m in sub.image_encoder.modules() if isinstance(m, nn.Linear)]
    assert all(m.weight.shape == (m.out_features, m.in_features) for m in linears)
    # Every Linear runs as a module with its whole weight, so tools that swap modules see all the compute.
    called = []
    hooks = [m.register_forward_hook(lambda m, args, out: called.append((m, args[0].shape[-1], out.shape[-1])))
             for m in linears]
    with torch.no_grad():
        sub.image_encoder(images(192, n=1))
    for h in hooks:
        h.remove()
    assert {id(m) for m, _, _ in called} == {id(m) for m in linears}
    assert all((i, o) == (m.in_features, m.out_features) for m, i, o in called)


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min().item()


# Measured on sam_micro (seed 3, and the packaged reference weights) at 128-256 px: cosine
# 0.99990-0.99995 and relative L2 error 0.010-0.014 between int8-dynamic and fp32 embeddings.
INT8_MIN_COSINE = 0.999
INT8_MAX_REL_ERROR = 0.03


@pytest.mark.parametrize("resolution", [256, 128])
@torch.no_grad()
def test_dynamic_quantization_of_extracted_subnet(model, resolution):
    cfg = micro_config(resolution)
    sub = extract(model, cfg)
    with warnings.catch_warnings():  # torch.ao's eager quantization warns that it is deprecated
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(sub, {nn.Linear}, dtype=torch.qint8)
    assert not any(type(m) is nn.Linear for m in quantized.modules())
    x = images(resolution)
    with active_subnet(model, cfg):
        expected = model.image_encoder(x)
    fp32 = sub.image_encoder(x)
    torch.testing.assert_close(fp32, expected, rtol=0, atol=1e-5)  # quantize_dynamic copies: sub is still fp32
    got = quantized.image_encoder(x)
    assert cosine(got, expected) >= INT8_MIN_COSINE
    assert ((got - expected).norm() / expected.norm()).item() <= INT8_MAX_REL_ERROR
    masks, iou = quantized.decode(got[:1], points=(torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]])))
    assert masks.shape == (1, 3, resolution // 4, resolution // 4) and torch.isfinite(iou).all()


def test_extracted_subnet_exports(model):
    sub = extract(model, micro_config(128))
    x = images(128, n=1)
    program = torch.export.export(sub.image_encoder, (x,))
    with torch.no_grad():
        assert torch.equal(program.module()(x), sub.image_encoder(x))


def test_subnet_state_dict_layout(model):
    """Saved subnets keep the supernet's parameter names (blocks renumbered) with sliced shapes."""
    cfg = micro_config(192)
    got = {k: tuple(v.shape) for k, v in extract(model, cfg).state_dict().items()}
    full = model.state_dict()
    kept = [i for i, b in enumerate(cfg.blocks) if b.keep]
    expected_keys = set()
    for key in full:
        parts = key.split(".")
        if key.startswith("image_encoder.blocks."):
            if int(parts[2]) not in kept:
                continue
            parts[2] = str(kept.index(int(parts[2])))
        expected_keys.add(".".join(parts))
    assert set(got) == expected_keys
    assert got["image_encoder.blocks.1.attn.qkv.weight"] == (3 * 3 * 32, 128)  # block 2: 3 heads
    assert got["image_encoder.blocks.1.mlp.lin2.weight"] == (128, 384)
    assert got["image_encoder.pos_embed"] == (1, 12, 12, 128)


@torch.no_grad()
def test_subnet_saved_by_the_elastic_extractor_loads(model, tmp_path):
    """Subnets saved before extraction gave plain models were elastic-class models of the subnet's widths."""
    cfg = micro_config(192)
    sub = extract(model, cfg)
    old = build_from_spec(model.arch, subnet_blocks_spec(model, cfg), img_size=192,
                          encoder_cls=ElasticImageEncoderViT)
    old.load_state_dict(sub.state_dict(), strict=True)
    save_subnet(old, subnet_metadata(model, cfg), tmp_path / "old")
    loaded = load_subnet(tmp_path / "old")
    x = images(192)
    assert torch.equal(loaded.image_encoder(x), old.image_encoder(x))


def test_load_subnet_errors(tmp_path):
    with pytest.raises(CheckpointError, match="subnet.json: not found"):
        load_subnet(tmp_path)
    (tmp_path / "subnet.json").write_text("{bad")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_subnet(tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c.replace(blocks=c.blocks[:-1]), r"blocks: expected a list of 6"),
        (lambda c: c.with_block(0, BlockChoice(True, 9, 256)), r"blocks\[0\]\.heads: 9 must be an integer in \[1, 4\]"),
        (lambda c: c.with_block(2, BlockChoice(True, 3, 0)), r"blocks\[2\]\.mlp: 0 must be"),
        (lambda c: c.replace(resolution=200), r"resolution: 200 must be a multiple of 16"),
    ],
)
def test_config_that_does_not_fit(model, mutate, message):
    cfg = mutate(micro_config())
    with pytest.raises(ConfigError, match=message):
        set_active_subnet(model, cfg)
