"""Elastic supernet and subnet extraction on sam_micro."""
from __future__ import annotations

import json

import pytest
import torch

from supernet.modeling.build import build_sam
from supernet.elastic.activation import active_config, active_subnet, full_config, set_active_subnet
from infra.errors import CheckpointError, ConfigError
from supernet.elastic.extract import extract, load_subnet, save_subnet, subnet_metadata


def micro_config(resolution=192):
    # micro: 6 blocks, 4 heads, mlp 512, global blocks 2 and 5
    return {
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
    }


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
        assert active_config(model)["blocks"][1] == {"keep": False}
        sub = model.image_encoder(x)
    assert not torch.allclose(sub, full)
    assert active_config(model) == {k: v for k, v in full_config(model).items() if k != "space"}


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
    assert json.loads((tmp_path / "sub" / "subnet.json").read_text())["config"] == cfg
    loaded = load_subnet(tmp_path / "sub")
    x = images(192)
    assert torch.equal(loaded.image_encoder(x), sub.image_encoder(x))


def test_load_subnet_errors(tmp_path):
    with pytest.raises(CheckpointError, match="subnet.json: not found"):
        load_subnet(tmp_path)
    (tmp_path / "subnet.json").write_text("{bad")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_subnet(tmp_path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["blocks"].pop(), r"blocks: expected a list of 6"),
        (lambda c: c["blocks"][0].update(heads=9), r"blocks\[0\]\.heads: 9 must be an integer in \[1, 4\]"),
        (lambda c: c["blocks"][2].update(mlp=0), r"blocks\[2\]\.mlp: 0 must be"),
        (lambda c: c.update(resolution=200), r"resolution: 200 must be a multiple of 16"),
    ],
)
def test_config_that_does_not_fit(model, mutate, message):
    cfg = micro_config()
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        set_active_subnet(model, cfg)
