"""Ranking the SAM 2 supernet: every method's permutation keeps the full model (within 1e-5), heads are
scored on qkv's output side, and a transition's block-level proj is never permuted."""
from __future__ import annotations

import pytest
import torch

from sam2_oracle import randomise
from supernet.elastic.activation import active_subnet, full_config
from supernet.elastic.build import build_sam2_supernet
from supernet.elastic.ranking import METHODS, magnitude_scores, rank_model
from supernet.elastic.subnet_config import BlockChoice

ATOL = 1e-5


def _images(n: int = 2, side: int = 256):
    gen = torch.Generator().manual_seed(5)
    return [torch.randn(1, 3, side, side, generator=gen) for _ in range(n)]


@torch.no_grad()
def _outputs(model, x):
    stages, levels = model.image_encoder.forward_with_stages(x)
    feats = model.features_from_levels(levels)
    return [*stages, feats["image_embed"], *feats["high_res_feats"]]


@pytest.mark.parametrize("method", METHODS)
def test_ranking_keeps_the_full_model(method):
    model = randomise(build_sam2_supernet("sam2_micro", seed=0), seed=4)
    x = _images(1)[0]
    before = _outputs(model, x)
    shortcuts = {i: b.proj.weight.clone() for i, b in enumerate(model.image_encoder.trunk.blocks) if hasattr(b, "proj")}
    ranking = rank_model(model, method, images=lambda: iter(_images()))
    assert len(ranking["blocks"]) == 5 and len(ranking["blocks"][4]["head_order"]) == 8
    assert any(b["head_order"] != sorted(b["head_order"]) for b in ranking["blocks"])  # something moved
    errors = [(a - b).abs().max().item() for a, b in zip(before, _outputs(model, x))]
    assert max(errors) < ATOL, errors
    for i, weight in shortcuts.items():  # the transitions' own proj (dim -> dim_out) is never permuted
        assert torch.equal(model.image_encoder.trunk.blocks[i].proj.weight, weight)


def test_after_magnitude_ranking_the_first_heads_and_neurons_are_the_largest():
    model = randomise(build_sam2_supernet("sam2_micro", seed=0), seed=6)
    transition = model.image_encoder.trunk.blocks[4]  # stage 3's transition: qkv 128 -> 3 x 256
    assert transition.attn.qkv.weight.shape == (3 * 256, 128)
    rank_model(model, "magnitude")
    for score in magnitude_scores(model):
        for key in ("heads", "mlp"):
            assert torch.all(score[key][:-1] >= score[key][1:])
    # a ranked subnet of the transition's first heads still runs, with the block's width unchanged
    config = full_config(model).with_block(4, BlockChoice(True, 4, 512, stage=3))
    with active_subnet(model, config), torch.no_grad():
        assert model.image_encoder.trunk(_images(1)[0])[-1].shape == (1, 256, 8, 8)
