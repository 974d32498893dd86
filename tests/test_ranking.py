"""Importance ranking: scores, function-preserving permutation, and the ranked checkpoint round trip."""
from __future__ import annotations

import pytest
import torch

from supernet.elastic.build import build_sam
from supernet.elastic.activation import active_subnet
from supernet.elastic.ranked import load_ranked, read_ranking, save_ranked
from supernet.elastic.ranking import METHODS, compute_scores, permute_by_importance, rank_model, magnitude_scores
from supernet.elastic.subnet_config import BlockChoice, SubnetConfig


def calibration(n=2, res=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, res, res, generator=g) for _ in range(n)]


def small_config(model, heads=2, mlp=128):
    return SubnetConfig(None, 256, (BlockChoice(True, heads, mlp),) * len(model.image_encoder.blocks))


@pytest.mark.parametrize("method", METHODS)
@torch.no_grad()
def test_permutation_preserves_full_model(method):
    model = build_sam("micro", seed=0)
    x = calibration(1)[0]
    before = model.image_encoder(x)
    with torch.enable_grad():
        meta = rank_model(model, method, images=lambda: calibration())
    after = model.image_encoder(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    assert meta["method"] == method and len(meta["blocks"]) == 6
    scores = meta["blocks"][0]["head_scores"]
    assert scores == sorted(scores, reverse=True)


def test_scores_have_unit_shapes_and_differ_between_methods():
    model = build_sam("micro", seed=0)
    all_scores = {m: compute_scores(model, m, images=lambda: calibration()) for m in METHODS}
    for scores in all_scores.values():
        assert [tuple(s["heads"].shape) for s in scores] == [(4,)] * 6
        assert [tuple(s["mlp"].shape) for s in scores] == [(512,)] * 6
        assert all(torch.isfinite(s["mlp"]).all() and (s["mlp"] >= 0).all() for s in scores)
    orders = {m: torch.argsort(s[0]["mlp"], descending=True)[:32].tolist() for m, s in all_scores.items()}
    assert orders["magnitude"] != orders["wanda"] or orders["wanda"] != orders["taylor"]


@torch.no_grad()
def test_after_ranking_the_first_units_are_the_most_important():
    model = build_sam("micro", seed=0)
    block = model.image_encoder.blocks[0]
    with torch.no_grad():  # make neuron 300 and head 3 clearly the largest
        block.mlp.lin1.weight[300] *= 50
        block.attn.proj.weight[:, 3 * 32:4 * 32] *= 50
    permute_by_importance(model, magnitude_scores(model))
    s = magnitude_scores(model)[0]
    assert int(torch.argmax(s["mlp"])) == 0 and int(torch.argmax(s["heads"])) == 0


@torch.no_grad()
def test_ranked_subnets_beat_unranked_subnets():
    """Keeping the top half by wanda importance stays closer to the full model than keeping an arbitrary half."""
    model = build_sam("micro", seed=0)
    with torch.no_grad():  # give half the neurons tiny weights: ranking must keep the other half
        for block in model.image_encoder.blocks:
            block.mlp.lin1.weight[::2] *= 0.01
    x = calibration(1, seed=5)[0]
    full = model.image_encoder(x)
    cfg = small_config(model, heads=4, mlp=256)
    with active_subnet(model, cfg):
        err_unranked = (model.image_encoder(x) - full).pow(2).mean()
    rank_model(model, "wanda", images=lambda: calibration())
    with active_subnet(model, cfg):
        err_ranked = (model.image_encoder(x) - full).pow(2).mean()
    assert err_ranked < 0.5 * err_unranked


def test_ranked_checkpoint_round_trip(tmp_path):
    model = build_sam("micro", seed=0)
    meta = rank_model(model, "magnitude")
    path = save_ranked(model, meta, tmp_path / "ranked.pt", source=None, images=[])
    loaded, info = load_ranked(path)
    assert info["method"] == "magnitude" and info["model_type"] == "micro" and "date" in info
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert read_ranking(tmp_path / "missing.pt") is None


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown; expected one of"):
        compute_scores(build_sam("micro", seed=0), "random")
    with pytest.raises(ValueError, match="needs calibration images"):
        compute_scores(build_sam("micro", seed=0), "wanda")
