"""Training: the reference ``sam_micro`` from scratch, and the supernet by the sandwich rule.

Both use SAM's recipe on prompts sampled from ground-truth masks: focal + dice on the
masks (only the best of the multimask outputs for a single point), MSE on the IoU head,
and one iterative round (a corrective point from the error region plus the previous mask
logits as a mask prompt).

Supernet training (``sandwich``) runs, each step, the largest subnet, the smallest and
``k`` random ones, each distilled from the frozen full model (the checkpoint it started
from): MSE on the image embeddings plus focal + dice against the teacher's masks for the
same prompts; the ground-truth loss is added when annotations are given. A SAM 2 supernet trains
the same way in its own input frame, its embedding loss summed over the three decoder inputs (the
embedding and both high-resolution maps, each MSE scaled by the teacher's variance).

Data parallel: run under ``torchrun``; each rank draws its own scenes, every rank trains
the same subnets (drawn from the step number), and gradients are averaged by
``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs). Checkpoints hold the model, the
optimizer, the scheduler, the step and the RNG state, so a resumed run is exact.
"""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from search_spaces.config import SubnetConfig
from supernet.elastic.activation import active_subnet
from infra.errors import UserError
from infra.fileio import atomic_torch_save
from nas.training.losses import mask_loss, sam_loss
from nas.training.settings import TrainSettings
from nas.training.teacher_cache import TeacherCache
from supernet.modeling.predictor import decode_parts, decoder_inputs, image_to_model_input
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2
from scenes.sources import Scene, SceneSource, step_rng

CHECKPOINT_FORMAT = "samnas-train/1"


# ---------------------------------------------------------------------------- batches

@dataclass
class PreparedScene:
    image: torch.Tensor  # (3, R, R) normalised and padded
    masks: torch.Tensor  # (K, R, R) float {0, 1}, in the model input frame
    valid: tuple[int, int]  # resized (h, w) before padding


def prepare_scene(model: Sam | Sam2, scene: Scene, max_masks: int, rng: np.random.Generator) -> PreparedScene:
    """Resize an image and its masks to the model's input frame at its active resolution: SAM's longest
    side, then padded; SAM 2's whole image squeezed to the square (``valid`` is then ``(R, R)``)."""
    res = model.resolution
    image, (h, w) = image_to_model_input(model, scene.image)
    image = image[0]
    masks = scene.masks
    if len(masks) > max_masks:
        masks = [masks[i] for i in sorted(rng.choice(len(masks), max_masks, replace=False))]
    if masks:
        m = torch.as_tensor(np.stack(masks)).float()[:, None]
        m = (F.interpolate(m, (h, w), mode="bilinear", align_corners=False)[:, 0] > 0.5).float()
        m = F.pad(m, (0, res - w, 0, res - h))
        m = m[m.flatten(1).sum(1) > 0]
    else:
        m = torch.zeros(0, res, res)
    return PreparedScene(image, m, (h, w))


def sample_targets(prepared: list[PreparedScene], k: int, rng: np.random.Generator) -> tuple[list[int], torch.Tensor]:
    """``k`` target masks per labelled image: ``(images used, (B * k, R, R) masks)`` image-major.

    An image with fewer than ``k`` masks repeats some (drawn with replacement); images with
    no mask are left out of the list.
    """
    used, chosen = [], []
    for b, p in enumerate(prepared):
        n = len(p.masks)
        if n == 0:
            continue
        idx = rng.choice(n, k, replace=n < k)
        used.append(b)
        chosen.append(p.masks[torch.as_tensor(idx)])
    if not chosen:
        return [], torch.zeros(0)
    return used, torch.cat(chosen)


def _pick_pixels(weights: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One pixel per ``(N, H, W)`` non-negative weight map, drawn in proportion -> ``(N, 2)`` float (x, y)."""
    cum = weights.flatten(1).float().cumsum(1)  # inverse-CDF sampling: 3x faster than multinomial at 256 x 256
    u = torch.rand(len(cum), 1, generator=gen, device=cum.device) * cum[:, -1:]
    flat = torch.searchsorted(cum, u, right=True)[:, 0].clamp(max=cum.shape[1] - 1)
    w = weights.shape[-1]
    return torch.stack([flat % w, flat // w], dim=1).float()


def point_prompts(masks: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly random foreground point per mask: coords ``(K, 1, 2)`` (x, y) and labels ``(K, 1)``."""
    coords = _pick_pixels((masks > 0.5).float(), gen)
    return coords[:, None], torch.ones(len(coords), 1, dtype=torch.int, device=masks.device)


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Inclusive pixel box ``(x0, y0, x1, y1)`` of each non-empty ``(K, H, W)`` mask: ``(K, 4)`` float."""
    fg = masks > 0.5
    idx_x = torch.arange(masks.shape[-1], device=masks.device, dtype=torch.float)
    idx_y = torch.arange(masks.shape[-2], device=masks.device, dtype=torch.float)
    cols, rows = fg.any(1), fg.any(2)  # (K, W), (K, H)
    big = float(max(masks.shape[-2:]))
    x0 = torch.where(cols, idx_x, big).amin(1)
    x1 = torch.where(cols, idx_x, -big).amax(1)
    y0 = torch.where(rows, idx_y, big).amin(1)
    y1 = torch.where(rows, idx_y, -big).amax(1)
    return torch.stack([x0, y0, x1, y1], 1)


# SAM's box jitter: each coordinate moves by N(0, 10% of the box side), at most 20 px of its
# 1024 px input frame. The cap scales with the frame: 5 px at 256 px, not 20 px.
BOX_NOISE_SHARE = 0.1
BOX_NOISE_CAP = 20 / 1024  # share of the input frame's side


def box_prompts(masks: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Tight XYXY box per ``(K, R, R)`` mask, each coordinate jittered by N(0, 10% of the side),
    clipped to ``BOX_NOISE_CAP * R`` px (SAM's 20 px at 1024): ``(K, 4)`` in input-frame pixels."""
    res = masks.shape[-1]
    boxes = tight_boxes(masks)
    x0, y0, x1, y1 = boxes.unbind(1)
    side = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], 1)
    noise = torch.randn(boxes.shape, generator=gen, device=masks.device) * BOX_NOISE_SHARE * side
    cap = BOX_NOISE_CAP * res
    return (boxes + noise.clamp(-cap, cap)).clamp(0, res - 1)


def random_points(n: int, valid: tuple[int, int], rng: np.random.Generator):
    """Uniform points inside the valid (unpadded) region, for unlabelled images: ``(n, 1, 2)``, labels ones."""
    h, w = valid
    xy = np.stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)], axis=1)
    return torch.tensor(xy, dtype=torch.float).view(n, 1, 2), torch.ones(n, 1, dtype=torch.int)


def corrective_points(logits: torch.Tensor, targets: torch.Tensor, gen: torch.Generator):
    """A uniformly random point in each prediction's error region: label 1 on a missed pixel, 0 on a false one.

    ``logits (K, H, W)``, ``targets (K, H, W)`` in [0, 1] (soft targets allowed); a prediction
    without error gets a positive point drawn in proportion to its target (so a soft target
    that is nowhere above one half still gets one). Returns coords ``(K, 1, 2)`` and labels ``(K, 1)``.
    """
    gt = targets > 0.5
    err = (logits > 0) ^ gt
    none = ~err.flatten(1).any(1)
    region = torch.where(none[:, None, None], targets.float(), err.float())
    coords = _pick_pixels(region, gen)
    x, y = coords[:, 0].long(), coords[:, 1].long()
    labels = gt[torch.arange(len(gt), device=gt.device), y, x] | none
    return coords[:, None], labels.int()[:, None]


def upscale(low_res: torch.Tensor, res: int) -> torch.Tensor:
    """Low-res mask logits ``(K, M, r/4, r/4)`` -> ``(K, M, res, res)`` (bilinear)."""
    return F.interpolate(low_res, (res, res), mode="bilinear", align_corners=False)


@dataclass
class LossFrame:
    """Where a batch's mask losses are computed: every pixel of the ``res x res`` input frame, or
    ``P`` sampled pixels per mask (``index``), as Mask2Former and PointRend train.

    Sampled logits are the upscaled logits at those pixel centres (bilinear, the same values
    :func:`upscale` gives there), so the loss stays the full-resolution loss, without computing
    it at every pixel: at 256 px that was 80% of a reference training step. ``weights`` are each
    sample's inverse sampling density (pixels it stands for), so weighted sums estimate pixel
    counts, as the IoU head's targets need.
    """

    res: int
    index: torch.Tensor | None = None  # (K, P) flat pixel indices y * res + x; None: every pixel
    weights: torch.Tensor | None = None  # (K, P) pixels per sample

    @classmethod
    def sampled(cls, masks: torch.Tensor, count: int, gen: torch.Generator) -> "LossFrame":
        """``count`` pixels for each of ``masks (K, R, R)``: half uniform over the frame, half uniform in
        the mask's box grown by a quarter of its side on each edge (where the errors are)."""
        k, res = masks.shape[0], masks.shape[-1]
        device = masks.device
        n_frame = count // 2
        n_box = count - n_frame
        x0, y0, x1, y1 = tight_boxes(masks).unbind(1)
        gx, gy = ((x1 - x0 + 1) / 4).floor(), ((y1 - y0 + 1) / 4).floor()
        x0, x1 = (x0 - gx).clamp(min=0), (x1 + gx).clamp(max=res - 1)
        y0, y1 = (y0 - gy).clamp(min=0), (y1 + gy).clamp(max=res - 1)
        w, h = x1 - x0 + 1, y1 - y0 + 1
        u = torch.rand(k, n_frame + 2 * n_box, generator=gen, device=device)
        xs = torch.cat([(u[:, :n_frame] * res).floor(), x0[:, None] + (u[:, n_frame:n_frame + n_box] * w[:, None]).floor()], 1)
        ys = torch.cat([torch.randint(0, res, (k, n_frame), generator=gen, device=device).float(),
                        y0[:, None] + (u[:, n_frame + n_box:] * h[:, None]).floor()], 1)
        xs, ys = xs.clamp(max=res - 1), ys.clamp(max=res - 1)
        in_box = (xs >= x0[:, None]) & (xs <= x1[:, None]) & (ys >= y0[:, None]) & (ys <= y1[:, None])
        density = n_frame / res ** 2 + in_box.float() * (n_box / (w * h))[:, None]
        return cls(res, (ys * res + xs).long(), 1.0 / density)

    @classmethod
    def uniform(cls, k: int, res: int, count: int, gen: torch.Generator, device) -> "LossFrame":
        """``count`` pixels drawn uniformly for each of ``k`` masks (no mask to centre on)."""
        index = torch.randint(0, res * res, (k, count), generator=gen, device=device)
        return cls(res, index, torch.full((k, count), res * res / count, device=device))

    def logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits ``(K, M, r/4, r/4)`` -> ``(K, M, P)`` at the samples, or ``(K, M, res, res)``."""
        if self.index is None:
            return upscale(low_res, self.res)
        x = (self.index % self.res).float()
        y = torch.div(self.index, self.res, rounding_mode="floor").float()
        grid = torch.stack([(2 * x + 1) / self.res - 1, (2 * y + 1) / self.res - 1], -1)[:, None]  # (K, 1, P, 2)
        return F.grid_sample(low_res, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks ``(K, res, res)`` -> their values at the samples ``(K, P)`` (or as they are)."""
        return masks if self.index is None else masks.flatten(1).gather(1, self.index)

    def candidate_weights(self, m: int) -> torch.Tensor | None:
        """``weights`` for ``m`` candidate masks per prompt, flattened as ``(K * M, P)`` (None for every pixel)."""
        return None if self.weights is None else self.weights.repeat_interleave(m, 0)


def loss_frame(settings: TrainSettings, masks: torch.Tensor, gen: torch.Generator) -> LossFrame:
    """The frame of ``settings.loss_points`` samples per mask of ``masks (K, R, R)`` (every pixel for 0)."""
    if settings.loss_points <= 0:
        return LossFrame(masks.shape[-1])
    return LossFrame.sampled(masks, settings.loss_points, gen)


# ---------------------------------------------------------------------------- one subnet's loss

class SubnetLoss(nn.Module):
    """Loss of the active subnet on a batch (a module, so that DDP can wrap it).

    All prompts of a batch are decoded in one call: ``prompts_per_image`` target masks per
    labelled image, each prompted by a point (multimask, best of 3 trained) and by a box,
    each followed by one corrective round; unlabelled images get random points (distillation only).
    """

    def __init__(self, model: Sam | Sam2, teacher: Sam | Sam2 | None, settings: TrainSettings,
                 teacher_cache: TeacherCache | None = None) -> None:
        super().__init__()
        self.model = model
        self.teacher = teacher
        self.settings = settings
        self.teacher_cache = teacher_cache

    def forward(self, scenes: list[Scene], seed: int) -> tuple[torch.Tensor, dict]:
        model, s = self.model, self.settings
        device = model.device
        rng = np.random.default_rng(seed)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(rng.integers(2**62)))
        prepared = [prepare_scene(model, sc, s.prompts_per_image, rng) for sc in scenes]
        images = torch.stack([p.image for p in prepared]).to(device)
        emb = decoder_inputs(model, images)  # SAM: [embedding]; SAM 2: also the two high-resolution maps
        total = emb[0].new_zeros(())
        stats: dict[str, list[float]] = {"iou": [], "embed_mse": []}
        t_emb = None
        if self.teacher is not None and s.distill:
            self.teacher.set_resolution(model.resolution)  # full width, the student's input size
            if self.teacher_cache is not None:
                t_emb = self.teacher_cache.features([sc.image for sc in scenes], images)
            else:
                with torch.no_grad():
                    t_emb = decoder_inputs(self.teacher, images)
            embed = sum(F.mse_loss(e, t) / t.var().clamp(min=1e-8) for e, t in zip(emb, t_emb))
            total = total + s.embed_weight * embed
            stats["embed_mse"].append(float(embed.detach()))
        res = model.resolution
        groups = []  # (embedding rows, points, boxes, targets or None)
        used, targets = sample_targets(prepared, s.prompts_per_image, rng) if s.use_gt else ([], None)
        if used:
            targets = targets.to(device)
            groups.append((used, point_prompts(targets, gen), None, targets))
            groups.append((used, None, box_prompts(targets, gen), targets))
        unlabelled = [b for b in range(len(prepared)) if b not in used]
        if unlabelled and t_emb is not None:
            pts = [random_points(s.prompts_per_image, prepared[b].valid, rng) for b in unlabelled]
            points = (torch.cat([c for c, _ in pts]).to(device), torch.cat([l for _, l in pts]).to(device))
            groups.append((unlabelled, points, None, None))
        for rows, points, boxes, gt in groups:
            e = [part[rows] for part in emb]
            multimask = boxes is None
            low, iou = decode_parts(model, e, points=points, boxes=boxes, multimask_output=multimask)
            if gt is not None:
                frame = loss_frame(s, gt, gen)
                first = sam_loss(frame.logits(low), iou, frame.targets(gt), frame.weights, s.focal_alpha)
                total = total + first.loss * len(rows)
                stats["iou"].extend(first.chosen_iou.tolist())
                if s.iterative:
                    total = total + self._iterative(e, points, boxes, low, first.best, gt, frame, gen) * len(rows)
            elif s.loss_points > 0:
                frame = LossFrame.uniform(len(low), res, s.loss_points, gen, device)
            else:
                frame = LossFrame(res)
            if t_emb is not None:
                with torch.no_grad():
                    t_low, _ = decode_parts(self.teacher, [part[rows] for part in t_emb], points=points,
                                            boxes=boxes, multimask_output=multimask)
                target = torch.sigmoid(frame.logits(t_low)).flatten(0, 1)
                per = mask_loss(frame.logits(low).flatten(0, 1), target, frame.candidate_weights(low.shape[1]),
                                s.focal_alpha)
                total = total + per.view(len(rows), -1).mean(1).sum()
        return total, {k: float(np.mean(v)) for k, v in stats.items() if v}

    def _iterative(self, e, points, boxes, low, best, targets, frame: LossFrame, gen):
        """One corrective round: previous best logits as mask prompt plus an error-region point.

        ``low (K, M, r, r)`` the first round's logits, ``best (K,)`` its chosen candidates
        (:func:`sam_loss`), ``targets (K, R, R)``; the corrective point comes from the chosen
        candidate's error region over every pixel.
        """
        with torch.no_grad():
            prev_low = low[torch.arange(len(best), device=best.device), best][:, None]
            c, l = corrective_points(upscale(prev_low, targets.shape[-1])[:, 0], targets, gen)
        if points is not None:
            c, l = torch.cat([points[0], c], 1), torch.cat([points[1], l], 1)
        low2, iou2 = decode_parts(self.model, e, points=(c, l), boxes=boxes, masks=prev_low.detach(),
                                  multimask_output=False)
        return sam_loss(frame.logits(low2), iou2, frame.targets(targets), frame.weights,
                        self.settings.focal_alpha).loss


# ---------------------------------------------------------------------------- the loop

def is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup_distributed() -> tuple[int, int]:
    """Initialise the process group under torchrun; returns (rank, world size)."""
    if not is_distributed():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def lr_lambda(settings: TrainSettings):
    def f(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def sandwich_weights(n: int, largest_weight: float) -> list[float]:
    """Loss weights of a step's ``n`` subnets (the first is the largest), summing to 1."""
    raw = [largest_weight] + [1.0] * (n - 1)
    return [w / sum(raw) for w in raw]


def sandwich_configs(space, step: int, seed: int, k: int) -> list[SubnetConfig]:
    """Largest, smallest and ``k`` random configs; the same on every rank (drawn from the step)."""
    rng = np.random.default_rng([seed, step, 10_007])
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(k)]


def save_checkpoint(path: Path, model: Sam | Sam2, optimizer, scheduler, step: int, settings: TrainSettings,
                    extra: dict) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "settings": json.dumps(asdict(settings)),
        "extra": json.dumps(extra),
    }
    return atomic_torch_save(state, path)


def load_training_state(path: str | Path) -> dict:
    path = Path(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable training checkpoint ({str(exc).splitlines()[0][:150]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a samnas training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def train(model: Sam | Sam2, source: SceneSource, settings: TrainSettings, out_dir: str | Path,
          teacher: Sam | Sam2 | None = None, space=None, resume: str | Path | None = None,
          log_metrics=None, progress: bool = True, extra: dict | None = None,
          teacher_cache: TeacherCache | None = None) -> Sam | Sam2:
    """Train ``model`` in place for ``settings.steps`` steps; checkpoints go to ``out_dir/checkpoint.pt``.

    ``teacher_cache`` (built on ``teacher``) serves the teacher's image embeddings computed before.
    """
    rank, world = setup_distributed()
    out = Path(out_dir)
    torch.manual_seed(settings.seed)
    if teacher is not None:
        teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    model.train()
    _set_checkpointing(model, settings.activation_checkpointing)
    step_module = SubnetLoss(model, teacher, settings, teacher_cache)
    ddp = None
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(step_module, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(settings))
    start = 0
    if resume:
        state = load_training_state(resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
    bar = tqdm(range(start, settings.steps), desc="training", unit="step", disable=not progress or rank != 0,
               initial=start, total=settings.steps)
    began = time.perf_counter()
    prefetch = ThreadPoolExecutor(max_workers=1)  # the next step's scenes are drawn while this one trains
    pending = prefetch.submit(source.scenes, start, rank, settings.batch_images)
    for step in bar:
        scenes = pending.result()
        if step + 1 < settings.steps:
            pending = prefetch.submit(source.scenes, step + 1, rank, settings.batch_images)
        configs = sandwich_configs(space, step, settings.seed, settings.random_subnets) if settings.sandwich \
            else [None]
        weights = sandwich_weights(len(configs), settings.largest_weight if settings.sandwich else 1.0)
        optimizer.zero_grad(set_to_none=True)
        metrics = {}
        for i, cfg in enumerate(configs):
            last = i == len(configs) - 1
            ctx = active_subnet(model, cfg) if cfg is not None else _null()
            sync = ddp.no_sync() if (ddp is not None and not last) else _null()
            with ctx, sync:
                loss, stats = (ddp or step_module)(scenes, seed=int(step_rng(settings.seed, step, rank).integers(2**31)) + i)
                (loss * weights[i]).backward()
            name = ["largest", "smallest"][i] if settings.sandwich and i < 2 else ("full" if cfg is None else f"random{i - 1}")
            metrics[f"loss/{name}"] = loss.item()
            for k, v in stats.items():
                metrics[f"{k}/{name}"] = v
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        if settings.rerank_every and (step + 1) % settings.rerank_every == 0:
            from supernet.elastic.ranking import magnitude_scores, permute_by_importance

            permute_by_importance(model, magnitude_scores(model), optimizer)
        metrics["lr"] = scheduler.get_last_lr()[0]
        if rank == 0:
            bar.set_postfix(loss=f"{sum(v for k, v in metrics.items() if k.startswith('loss/')):.3f}")
            if log_metrics:
                log_metrics(metrics, step)
            if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
                save_checkpoint(out / "checkpoint.pt", model, optimizer, scheduler, step + 1, settings,
                                {**(extra or {}), "seconds": time.perf_counter() - began})
    prefetch.shutdown(wait=True)
    _set_checkpointing(model, False)
    if world > 1:
        ranks_in_sync(model)
        if rank == 0 and progress:
            print(f"data parallel over {world} processes: weights identical on every rank")
    model.eval()
    return model


def _set_checkpointing(model: Sam | Sam2, on: bool) -> None:
    """Activation checkpointing of SAM's ViT blocks; SAM 2's Hiera blocks run without it."""
    if not isinstance(model, Sam2):
        model.image_encoder.checkpoint_blocks = on


def ranks_in_sync(model: nn.Module) -> None:
    """Raise if the parameters differ between data-parallel ranks (DDP must keep them equal)."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"data-parallel ranks diverged: parameter checksums {[g.item() for g in gathered]}")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
