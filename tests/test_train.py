"""Training mechanics on sam_micro: losses, exact resume, sandwich + distillation, re-ranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces.space import SearchSpace
from supernet.build import build_sam
from supernet.losses import dice_loss, focal_loss, mask_iou, sam_loss
from supernet.scenes import Scene
from supernet.train import TrainSettings, load_training_state, train
from supernet.errors import UserError


class Rectangles:
    """Tiny deterministic scenes: bright rectangles on a dark background (test data source)."""

    def scenes(self, step, rank, n):
        rng = np.random.default_rng([7, step, rank])
        out = []
        for _ in range(n):
            img = rng.integers(0, 60, (96, 128, 3)).astype(np.uint8)
            masks = []
            for _ in range(2):
                x0, y0 = rng.integers(0, 70, 2)
                w, h = rng.integers(15, 40, 2)
                m = np.zeros((96, 128), bool)
                m[y0:y0 + h, x0:x0 + w] = True
                for other in masks:
                    other &= ~m
                img[m] = rng.integers(80, 255, 3)
                masks.append(m)
            out.append(Scene(img, [m for m in masks if m.sum() > 10]))
        return out


def test_losses_behave():
    target = torch.zeros(1, 8, 8)
    target[:, 2:6, 2:6] = 1
    good = (target * 20 - 10)
    bad = -good
    assert focal_loss(good, target) < focal_loss(bad, target)
    assert dice_loss(good, target) < 0.05 < dice_loss(bad, target)
    assert mask_iou(good, target).item() == 1.0 and mask_iou(bad, target).item() == 0.0
    logits = torch.stack([bad, good], dim=1)  # (1, 2, 8, 8): the second candidate is right
    loss, iou = sam_loss(logits, torch.tensor([[0.0, 1.0]]), target)
    assert iou.item() == 1.0 and loss < 1.0


def settings(**kw):
    base = dict(steps=4, batch_images=1, prompts_per_image=2, checkpoint_every=2, warmup_steps=2, lr=1e-3)
    return TrainSettings(**{**base, **kw})


def test_resume_is_exact(tmp_path):
    straight = train(build_sam("micro", seed=0), Rectangles(), settings(), tmp_path / "a", progress=False)
    half = train(build_sam("micro", seed=0), Rectangles(), settings(steps=2), tmp_path / "b", progress=False)
    assert load_training_state(tmp_path / "b" / "checkpoint.pt")["step"] == 2
    resumed = train(build_sam("micro", seed=1), Rectangles(), settings(), tmp_path / "b",
                    resume=tmp_path / "b" / "checkpoint.pt", progress=False)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(half.mask_decoder.iou_token.weight, straight.mask_decoder.iou_token.weight)


def test_sandwich_distillation_trains_every_subnet(tmp_path):
    space = SearchSpace.load("sam_micro")
    model = build_sam("micro", seed=0)
    teacher = build_sam("micro", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logged = []
    train(model, Rectangles(), settings(steps=2, sandwich=True, distill=True, random_subnets=1, rerank_every=1),
          tmp_path, teacher=teacher, space=space, progress=False, log_metrics=lambda m, s: logged.append(m))
    assert {"loss/largest", "loss/smallest", "loss/random1", "embed_mse/smallest"} <= set(logged[0])
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("image_encoder.blocks.5.") for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_bad_resume_file(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable training checkpoint"):
        load_training_state(tmp_path / "x.pt")
    torch.save({"format": "other"}, tmp_path / "y.pt")
    with pytest.raises(UserError, match="not a samnas training checkpoint"):
        load_training_state(tmp_path / "y.pt")
