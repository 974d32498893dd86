"""Training: the reference ``sam_micro`` from scratch, and the supernet by the sandwich rule.

Both use SAM's recipe on prompts sampled from ground-truth masks: focal + dice on the
masks (only the best of the multimask outputs for a single point), MSE on the IoU head,
and one iterative round (a corrective point from the error region plus the previous mask
logits as a mask prompt).

Supernet training (``sandwich``) runs, each step, the largest subnet, the smallest and
``k`` random ones, each distilled from the frozen full model (the checkpoint it started
from): MSE on the image embeddings plus focal + dice against the teacher's masks for the
same prompts; the ground-truth loss is added when annotations are given.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .elastic import active_subnet
from .errors import UserError
from .fileio import atomic_torch_save
from .losses import mask_loss, sam_loss
from .sam import Sam
from .scenes import Scene, SceneSource, step_rng
from .transforms import ResizeLongestSide

CHECKPOINT_FORMAT = "samnas-train/1"


@dataclass
class TrainSettings:
    """Hyper-parameters of a run; saved in every checkpoint."""

    steps: int
    batch_images: int = 4  # per rank
    prompts_per_image: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    random_subnets: int = 2  # k of the sandwich rule
    largest_weight: float = 1.0  # the largest subnet's share of a sandwich step, relative to each other subnet's
    use_gt: bool = True
    distill: bool = False
    embed_weight: float = 1.0
    rerank_every: int = 0  # 0: never re-rank during training
    iterative: bool = True
    sandwich: bool = False
    space: dict | None = field(default=None)  # SearchSpace.to_dict() for sandwich sampling


# ---------------------------------------------------------------------------- batches

@dataclass
class PreparedScene:
    image: torch.Tensor  # (3, R, R) normalised and padded
    masks: torch.Tensor  # (K, R, R) float {0, 1}, in the model input frame
    valid: tuple[int, int]  # resized (h, w) before padding


def prepare_scene(model: Sam, scene: Scene, max_masks: int, rng: np.random.Generator) -> PreparedScene:
    """Resize an image and its masks to the model's active resolution (longest side) and pad."""
    res = model.resolution
    resized = ResizeLongestSide(res).apply_image(scene.image)
    h, w = resized.shape[:2]
    image = model.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())[0]
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


def point_prompts(masks: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random foreground point per mask: coords ``(K, 1, 2)`` (x, y) and labels ``(K, 1)``."""
    coords = []
    for m in masks:
        ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
        i = int(rng.integers(len(ys)))
        coords.append([float(xs[i]), float(ys[i])])
    return torch.tensor(coords).view(-1, 1, 2), torch.ones(len(coords), 1, dtype=torch.int)


def box_prompts(masks: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Tight XYXY box per mask, jittered by N(0, 10% of the side) clipped to 20 px: ``(K, 4)``."""
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m > 0.5, as_tuple=True)
        x0, x1, y0, y1 = xs.min().item(), xs.max().item(), ys.min().item(), ys.max().item()
        side = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], dtype=float)
        noise = np.clip(rng.normal(0, 0.1 * side), -20, 20)
        boxes.append(np.array([x0, y0, x1, y1], dtype=float) + noise)
    res = masks.shape[-1]
    return torch.tensor(np.clip(np.array(boxes), 0, res - 1), dtype=torch.float)


def random_points(n: int, valid: tuple[int, int], rng: np.random.Generator):
    """Uniform points inside the valid (unpadded) region, for unlabelled images: ``(n, 1, 2)``, labels ones."""
    h, w = valid
    xy = np.stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)], axis=1)
    return torch.tensor(xy, dtype=torch.float).view(n, 1, 2), torch.ones(n, 1, dtype=torch.int)


def corrective_points(logits: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator):
    """A point in each prediction's error region: label 1 on a missed pixel, 0 on a false one."""
    coords, labels = [], []
    for pred, gt in zip(logits > 0, targets > 0.5):
        err = pred ^ gt
        ys, xs = torch.nonzero(err, as_tuple=True)
        if len(ys) == 0:
            ys, xs = torch.nonzero(gt, as_tuple=True)
        i = int(rng.integers(len(ys)))
        y, x = int(ys[i]), int(xs[i])
        coords.append([float(x), float(y)])
        labels.append(int(gt[y, x]))
    return torch.tensor(coords).view(-1, 1, 2), torch.tensor(labels, dtype=torch.int).view(-1, 1)


def upscale(low_res: torch.Tensor, res: int) -> torch.Tensor:
    """Low-res mask logits ``(K, M, r/4, r/4)`` -> ``(K, M, res, res)``."""
    return F.interpolate(low_res, (res, res), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------- one subnet's loss

class SubnetLoss(nn.Module):
    """Loss of the active subnet on a batch (a module, so that DDP can wrap it)."""

    def __init__(self, model: Sam, teacher: Sam | None, settings: TrainSettings) -> None:
        super().__init__()
        self.model = model
        self.teacher = teacher
        self.settings = settings

    def forward(self, scenes: list[Scene], seed: int) -> tuple[torch.Tensor, dict]:
        model, s = self.model, self.settings
        rng = np.random.default_rng(seed)
        prepared = [prepare_scene(model, sc, s.prompts_per_image, rng) for sc in scenes]
        images = torch.stack([p.image for p in prepared])
        emb = model.image_encoder(images)
        total = emb.new_zeros(())
        stats: dict[str, list[float]] = {"iou": [], "embed_mse": []}
        t_emb = None
        if self.teacher is not None and s.distill:
            self.teacher.set_resolution(model.resolution)  # full width, the student's input size
            with torch.no_grad():
                t_emb = self.teacher.image_encoder(images)
            embed = F.mse_loss(emb, t_emb) / t_emb.var().clamp(min=1e-8)
            total = total + s.embed_weight * embed
            stats["embed_mse"].append(float(embed))
        res = model.resolution
        for b, p in enumerate(prepared):
            e = emb[b:b + 1]
            labelled = s.use_gt and len(p.masks) > 0
            if labelled:
                prompts = [("points", point_prompts(p.masks, rng)), ("box", box_prompts(p.masks, rng))]
            else:
                prompts = [("points", random_points(s.prompts_per_image, p.valid, rng))]
            for kind, prompt in prompts:
                points = prompt if kind == "points" else None
                boxes = prompt if kind == "box" else None
                multimask = kind == "points"
                low, iou = model.decode(e, points=points, boxes=boxes, multimask_output=multimask)
                if labelled:
                    loss, chosen_iou = sam_loss(upscale(low, res), iou, p.masks)
                    total = total + loss
                    stats["iou"].extend(chosen_iou.tolist())
                    if s.iterative:
                        total = total + self._iterative(e, points, boxes, low, iou, p.masks, rng, res)
                if t_emb is not None:
                    with torch.no_grad():
                        t_low, _ = self.teacher.decode(t_emb[b:b + 1], points=points, boxes=boxes,
                                                       multimask_output=multimask)
                    target = torch.sigmoid(upscale(t_low, res)).flatten(0, 1)
                    total = total + mask_loss(upscale(low, res).flatten(0, 1), target).mean()
        return total, {k: float(np.mean(v)) for k, v in stats.items() if v}

    def _iterative(self, e, points, boxes, low, iou, targets, rng, res):
        """One corrective round: previous best logits as mask prompt plus an error-region point."""
        with torch.no_grad():
            up = upscale(low, res)
            per = mask_loss(up.flatten(0, 1), targets.repeat_interleave(up.shape[1], 0)).view(up.shape[:2])
            best = per.argmin(1)
            prev_low = low[torch.arange(len(best)), best][:, None]
            prev_up = up[torch.arange(len(best)), best]
            c, l = corrective_points(prev_up, targets, rng)
        if points is not None:
            c, l = torch.cat([points[0], c], 1), torch.cat([points[1], l], 1)
        low2, iou2 = self.model.decode(e, points=(c, l), boxes=boxes, masks=prev_low.detach(),
                                       multimask_output=False)
        loss, _ = sam_loss(upscale(low2, res), iou2, targets)
        return loss


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


def sandwich_configs(space, step: int, seed: int, k: int) -> list[dict]:
    """Largest, smallest and ``k`` random configs; the same on every rank (drawn from the step)."""
    rng = np.random.default_rng([seed, step, 10_007])
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(k)]


def save_checkpoint(path: Path, model: Sam, optimizer, scheduler, step: int, settings: TrainSettings,
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


def train(model: Sam, source: SceneSource, settings: TrainSettings, out_dir: str | Path,
          teacher: Sam | None = None, space=None, resume: str | Path | None = None,
          log_metrics=None, progress: bool = True, extra: dict | None = None) -> Sam:
    """Train ``model`` in place for ``settings.steps`` steps; checkpoints go to ``out_dir/checkpoint.pt``."""
    rank, world = setup_distributed()
    out = Path(out_dir)
    torch.manual_seed(settings.seed)
    if teacher is not None:
        teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    model.train()
    step_module = SubnetLoss(model, teacher, settings)
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
    for step in bar:
        scenes = source.scenes(step, rank, settings.batch_images)
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
            from .ranking import magnitude_scores, permute_by_importance

            permute_by_importance(model, magnitude_scores(model), optimizer)
        metrics["lr"] = scheduler.get_last_lr()[0]
        if rank == 0:
            bar.set_postfix(loss=f"{sum(v for k, v in metrics.items() if k.startswith('loss/')):.3f}")
            if log_metrics:
                log_metrics(metrics, step)
            if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
                save_checkpoint(out / "checkpoint.pt", model, optimizer, scheduler, step + 1, settings,
                                {**(extra or {}), "seconds": time.perf_counter() - began})
    if world > 1:
        ranks_in_sync(model)
        if rank == 0 and progress:
            print(f"data parallel over {world} processes: weights identical on every rank")
    model.eval()
    return model


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
