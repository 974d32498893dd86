"""``samnas train-reference``: train the packaged ``sam_micro`` reference SAM from scratch.

No pretrained SAM weights can be downloaded here, so the project trains its own small SAM
on generated scenes (``supernet.synthetic``) with SAM's recipe, and measures it on held-out
generated scenes with the same COCO evaluator the search uses. The weights ship as package
data (``supernet/weights/sam_micro.pt``) with a model card beside them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import torch

from supernet.build import build_sam
from supernet.fileio import atomic_torch_save, atomic_write_text
from supernet.reference import WEIGHTS_DIR
from supernet.scenes import SyntheticScenes
from supernet.synthetic import write_coco_dataset
from supernet.train import TrainSettings, train

from .fingerprint import machine_fingerprint
from .quality import make_evaluator

DESCRIPTION = """Train the packaged sam_micro reference SAM from scratch.

No pretrained SAM weights can be downloaded here, so samnas trains its own small SAM on
generated scenes with SAM's recipe, and measures it on held-out generated scenes with the
same COCO evaluator the search uses. The weights ship with the package
(supernet/weights/sam_micro.pt), with a model card beside them."""
EXAMPLES = """examples:
  samnas train-reference                        # the packaged model: 2400 steps x 4 images, seed 0 (under 30 min on 2 cores)
  samnas train-reference --steps 200 --out /tmp/micro.pt   # a quick smoke run
"""
HELD_OUT_SEED_OFFSET = 10_000  # evaluation scenes come from a generator stream training never uses


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-reference", help="train the small reference SAM (sam_micro) on synthetic scenes",
                       description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2400, help="training steps (default: 2400)")
    p.add_argument("--batch-images", type=int, default=4, help="generated scenes per step (default: 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the scenes (default: 0)")
    p.add_argument("--eval-images", type=int, default=40, help="held-out synthetic scenes for the card")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's current count)")
    p.add_argument("--out", default=str(WEIGHTS_DIR / "sam_micro.pt"), help="weights file (card written beside it)")
    p.set_defaults(func=run_train_reference)


def card_paths(weights: Path) -> tuple[Path, Path]:
    """``sam_micro.pt`` -> ``sam_micro.card.json``, ``sam_micro.card.md``."""
    stem = weights.with_suffix("")
    return Path(f"{stem}.card.json"), Path(f"{stem}.card.md")


def evaluate_reference(model, seed: int, num_images: int) -> dict:
    """Box- and point-prompted mIoU on held-out synthetic scenes (COCO evaluator)."""
    with tempfile.TemporaryDirectory() as tmp:
        ann = write_coco_dataset(tmp, num_images, size=256, seed=seed + HELD_OUT_SEED_OFFSET, split="val")
        evaluator = make_evaluator("coco", model, images=Path(tmp) / "val", annotations=ann)
        result = evaluator.evaluate(model, None)
    return {"score": result.score, **result.metrics, "num_items": result.num_items}


def run_train_reference(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    model = build_sam("micro", seed=args.seed)
    settings = TrainSettings(steps=args.steps, batch_images=args.batch_images, lr=args.lr, warmup_steps=100,
                             seed=args.seed, checkpoint_every=250)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        train(model, SyntheticScenes(seed=args.seed), settings, scratch)
    seconds = time.perf_counter() - began
    atomic_torch_save(model.state_dict(), out)
    quality = evaluate_reference(model, args.seed, args.eval_images)
    fp = machine_fingerprint()
    card = {
        "model": "sam_micro reference (samnas)",
        "weights": out.name,
        "size_bytes": out.stat().st_size,
        "params": sum(p.numel() for p in model.parameters()),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training": {"command": f"samnas train-reference --steps {args.steps} --batch-images {args.batch_images} "
                                f"--lr {args.lr} --seed {args.seed}",
                     "data": "supernet.synthetic scenes, 256x256, 3-7 objects, generated per step",
                     "recipe": "focal(20)+dice(1) on masks (best of 3 for points), MSE on IoU head, "
                               "point and jittered-box prompts, one iterative corrective round",
                     "steps": args.steps, "batch_images": args.batch_images, "seconds": round(seconds, 1),
                     "machine": {k: fp[k] for k in ("cpu", "cores", "torch_threads", "torch")}},
        "evaluation": {"data": f"{args.eval_images} held-out synthetic scenes "
                               f"(seed {args.seed + HELD_OUT_SEED_OFFSET})", **quality},
    }
    card_json, card_md = card_paths(out)
    atomic_write_text(card_json, json.dumps(card, indent=2) + "\n")
    atomic_write_text(card_md, render_reference_card(card))
    print(f"trained in {seconds / 60:.1f} min; box mIoU {quality.get('box_miou', float('nan')):.3f}, "
          f"point mIoU {quality.get('point_miou', float('nan')):.3f}; wrote {out}, {card_json.name}, {card_md.name}")
    return 0


def render_reference_card(card: dict) -> str:
    ev, tr = card["evaluation"], card["training"]
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in ev.items() if isinstance(v, float))
    return f"""# sam_micro reference model

A small SAM ({card['params'] / 1e6:.2f} M parameters, 256 px input) trained from scratch by samnas on
generated scenes, so that demos and tests measure real segmentation quality without downloads.
It is **not** a general-purpose segmenter: it has only seen synthetic shapes.

- weights: `{card['weights']}` ({card['size_bytes'] / 1e6:.1f} MB)
- trained: {tr['steps']} steps x {tr['batch_images']} images in {tr['seconds'] / 60:.1f} min on {tr['machine']['cpu']}
  ({tr['machine']['torch_threads']} threads)
- recipe: {tr['recipe']}
- reproduce: `{tr['command']}`

## Held-out quality ({ev['data']})

| metric | value |
|---|---|
{rows}
"""
