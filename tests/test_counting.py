"""Parameter and FLOP counts: closed form against the extracted module and fvcore."""
from __future__ import annotations

import pytest
import torch

from search_spaces.counting import count, count_flops, count_flops_fvcore, count_params
from supernet.elastic.build import build_sam
from supernet.elastic.activation import full_config
from supernet.elastic.extract import extract
from supernet.elastic.subnet_config import SubnetConfig


CONFIGS = [None] + [SubnetConfig.from_dict(c) for c in (  # None: the full model
    {"resolution": 192, "blocks": [{"keep": True, "heads": 2, "mlp": 256}, {"keep": False},
                                   {"keep": True, "heads": 3, "mlp": 384}, {"keep": True, "heads": 4, "mlp": 128},
                                   {"keep": False}, {"keep": True, "heads": 1, "mlp": 512}]},
    {"resolution": 128, "blocks": [{"keep": True, "heads": 1, "mlp": 64}] * 6},
    {"resolution": 208, "blocks": [{"keep": True, "heads": 4, "mlp": 512}] * 6},  # windows need padding
)]


@pytest.fixture(scope="module")
def model():
    return build_sam("micro", seed=0)


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_closed_form_matches_fvcore_and_module(model, index):
    cfg = CONFIGS[index] or full_config(model)
    assert count_flops(model, cfg) == count_flops_fvcore(model, cfg)
    sub = extract(model, cfg)
    enc, total = count_params(model, cfg)
    assert enc == sum(p.numel() for p in sub.image_encoder.parameters())
    assert total == sum(p.numel() for p in sub.parameters())


def test_smaller_configs_count_less(model):
    full = count(model, full_config(model))
    small = count(model, CONFIGS[2])
    assert small.encoder_flops < full.encoder_flops and small.total_params < full.total_params
    assert set(full.as_dict()) == {"encoder_params", "params", "flops"}


@pytest.mark.slow
def test_vit_b_full_is_about_486_gflops():
    with torch.device("meta"):
        model = build_sam("vit_b")
    flops = count_flops(model, full_config(model))
    assert 480e9 < flops < 492e9, flops
