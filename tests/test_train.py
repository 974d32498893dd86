"""Training mechanics on sam_micro: losses, exact resume, sandwich + distillation, re-ranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam
from nas.training.losses import dice_loss, focal_loss, mask_iou, mask_loss, sam_loss
from scenes.sources import Scene
from nas.training.train import (LossFrame, SubnetLoss, TrainSettings, corrective_points, load_training_state,
                                loss_frame, train, upscale)
from infra.errors import UserError


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
    loss, iou, best = sam_loss(logits, torch.tensor([[0.0, 1.0]]), target)
    assert iou.item() == 1.0 and loss < 1.0 and best.tolist() == [1]


def test_focal_alpha_weighs_foreground_against_background():
    """A missed foreground pixel costs alpha x its focal term, a false background one (1 - alpha) x."""
    target = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[-2.0, 2.0]])  # both pixels wrong by the same margin
    for alpha in (0.25, 0.5, 0.75):
        fg = focal_loss(logits[:, :1], target[:, :1], alpha=alpha)
        bg = focal_loss(logits[:, 1:], target[:, 1:], alpha=alpha)
        assert (fg / bg).item() == pytest.approx(alpha / (1 - alpha))
    # sam_loss passes alpha on; its IoU term is 0 here (predicted 0, actual 0), so it is the mask loss
    missed = torch.tensor([[-2.0, -2.0]])  # the foreground pixel missed, the background one right
    out = sam_loss(missed[:, None], torch.zeros(1, 1), target, alpha=0.75)
    assert out.loss.item() == pytest.approx(mask_loss(missed, target, alpha=0.75).item())
    assert out.loss.item() > mask_loss(missed, target).item() + 1  # more than at the default alpha 0.25


def test_loss_frame_samples_are_the_upscaled_logits_and_weigh_what_they_stand_for():
    gen = torch.Generator().manual_seed(0)
    low = torch.randn(3, 2, 16, 16, generator=gen)
    every = LossFrame(64, torch.arange(64 * 64).repeat(3, 1), None)  # every pixel, as samples
    assert torch.allclose(every.logits(low), upscale(low, 64).flatten(2), atol=1e-5)
    masks = torch.zeros(3, 64, 64)
    masks[0, 10:20, 30:34] = 1  # 40 px
    masks[1, :, :] = 1  # the whole frame
    masks[2, 60:, 62:] = 1  # a corner: the grown box is clipped at the border
    frame = LossFrame.sampled(masks, 20000, gen)
    assert frame.index.shape == (3, 20000) and int(frame.index.max()) < 64 * 64
    assert torch.equal(frame.targets(masks), masks.flatten(1).gather(1, frame.index))
    # weighted sums estimate pixel counts: the mask's area and the frame's
    assert (frame.weights * frame.targets(masks)).sum(1).tolist() == pytest.approx([40, 4096, 8], rel=0.05)
    assert frame.weights.sum(1).tolist() == pytest.approx([4096] * 3, rel=0.05)
    # half the samples fall in the mask's box grown by a quarter of its side: rows 8..21, columns 29..34
    x, y = frame.index % 64, frame.index // 64
    inside = ((x[0] >= 29) & (x[0] <= 34) & (y[0] >= 8) & (y[0] <= 21)).float().mean()
    assert 0.5 <= inside < 0.52
    dense = loss_frame(TrainSettings(steps=1), masks, gen)
    assert dense.index is None and dense.targets(masks) is masks
    assert loss_frame(TrainSettings(steps=1, loss_points=64), masks, gen).index.shape == (3, 64)


def test_weighted_sampled_loss_estimates_the_dense_loss():
    """Weighted by the pixels each sample stands for, the sampled loss is the every-pixel loss in
    expectation; unweighted it would over-weight the sampled region (focal outweighing dice)."""
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(4, 64, 64)
    masks[0, 5:9, 40:46] = 1  # a small object
    masks[1, 10:50, 8:30] = 1
    masks[2, 30:34, 0:64] = 1
    masks[3, 0:64, 0:64] = 1
    low = torch.randn(4, 1, 16, 16, generator=gen) * 3
    dense = mask_loss(upscale(low, 64).flatten(0, 1), masks)
    estimates = []
    for _ in range(20):
        frame = LossFrame.sampled(masks, 2048, gen)
        estimates.append(mask_loss(frame.logits(low).flatten(0, 1), frame.targets(masks), frame.weights))
    assert torch.stack(estimates).mean(0).tolist() == pytest.approx(dense.tolist(), rel=0.03)
    frame = LossFrame.sampled(masks, 2048, gen)
    unweighted = mask_loss(frame.logits(low).flatten(0, 1), frame.targets(masks))
    assert abs(unweighted[0] - dense[0]) > 0.1 * dense[0]  # the small object's loss, far off without weights


def test_sampled_iou_weighs_each_sample():
    logits = torch.tensor([[5.0, 5.0, -5.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    assert mask_iou(logits, targets).item() == pytest.approx(1 / 3)
    assert mask_iou(logits, targets, torch.tensor([[8.0, 1.0, 1.0]])).item() == pytest.approx(0.8)


def test_corrective_point_for_a_target_smaller_than_half_a_cell_is_positive():
    target = torch.zeros(1, 4, 4)
    target[0, 1, 2] = 0.25  # soft: no cell is more than half inside, so the binarised target is empty
    gen = torch.Generator().manual_seed(0)
    coords, labels = corrective_points(torch.full((1, 4, 4), -5.0), target, gen)
    assert coords.tolist() == [[[2.0, 1.0]]] and labels.tolist() == [[1]]
    missed = torch.zeros(1, 4, 4)
    missed[0, 3, 0] = 1.0  # a real error: the target pixel the prediction missed
    coords, labels = corrective_points(torch.full((1, 4, 4), -5.0), missed, gen)
    assert coords.tolist() == [[[0.0, 3.0]]] and labels.tolist() == [[1]]
    coords, labels = corrective_points(torch.full((1, 4, 4), 5.0), missed, gen)  # everything else is false
    assert labels.item() == 0 and coords[0, 0].tolist() != [0.0, 3.0]


@pytest.mark.parametrize("loss_points", [0, 256])
def test_sampled_loss_trains(loss_points):
    """With every pixel or 256 samples per mask the loss is finite and reaches the decoder's weights."""
    model = build_sam("micro", seed=0)
    step = SubnetLoss(model, None, settings(loss_points=loss_points, prompts_per_image=3))
    loss, stats = step(Rectangles().scenes(0, 0, 2), seed=1)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= stats["iou"] <= 1
    assert model.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.grad.abs().sum() > 0


def settings(**kw):
    # 256 sampled loss points per mask: the dense loss (every pixel, loss_points 0) costs about 4x more per step
    # and is trained in test_sampled_loss_trains[0]; what the other tests check does not depend on the loss
    base = dict(steps=4, batch_images=1, prompts_per_image=2, checkpoint_every=2, warmup_steps=2, lr=1e-3,
                loss_points=256)
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


@pytest.mark.slow
def test_train_supernet_cli_with_torchrun_two_processes(tmp_path):
    """Real DDP: two CPU processes on gloo under torchrun, then the outputs load as a ranked checkpoint."""
    import os
    import socket
    import subprocess
    import sys

    from supernet.elastic.ranked import load_ranked
    from scenes.synthetic import write_coco_dataset

    ann = write_coco_dataset(tmp_path / "data", num_images=3, size=96, seed=0, split="train")
    ckpt = tmp_path / "micro.pth"
    torch.save(build_sam("micro", seed=0).state_dict(), ckpt)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "cli", "train-supernet", "--checkpoint", str(ckpt),
           "--space", "sam_micro", "--images", str(tmp_path / "data" / "train"), "--annotations", str(ann),
           "--steps", "2", "--batch-images", "1", "--random-subnets", "1", "--checkpoint-every", "1",
           "--out", str(tmp_path / "run"), "--tracking-uri", (tmp_path / "mlruns").as_uri()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "data parallel over 2 processes: weights identical on every rank" in proc.stdout + proc.stderr
    model, meta = load_ranked(tmp_path / "run" / "supernet.pt")
    assert meta["model_type"] == "micro" and load_training_state(tmp_path / "run" / "checkpoint.pt")["step"] == 2


@pytest.mark.parametrize("argv, message", [
    (["--images", "{tmp}/empty"], "no images found"),
    (["--space", "sam_vit_b"], "is a micro model, but space sam_vit_b is for vit_b"),
    (["--checkpoint", "{tmp}/junk.pth"], "not a readable weights-only checkpoint"),
    (["--loss-points", "-4"], "--loss-points must be 0 (every pixel) or a number of pixels per mask, got -4"),
])
def test_train_supernet_bad_input_fails_before_training(tmp_path, micro_checkpoint, capsys, argv, message):
    import cli

    (tmp_path / "empty").mkdir()
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    args = {"--checkpoint": str(micro_checkpoint), "--space": "sam_micro", "--images": str(tmp_path / "imgs")}
    for key, value in zip(argv[::2], argv[1::2]):
        args[key] = value.format(tmp=tmp_path)
    full = ["train-supernet", "--steps", "1", "--out", str(tmp_path / "o")] + [x for kv in args.items() for x in kv]
    assert cli.main(full) == 2
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "o").exists()
