"""``samnas train-reference``: train the packaged ``sam_micro`` reference SAM from scratch.

No pretrained SAM weights can be downloaded here, so the project trains its own small SAM
on generated scenes (``scenes.synthetic``) with SAM's recipe, and measures it on held-out
generated scenes with the same COCO evaluator the search uses. The weights ship as package
data (``supernet/weights/sam_micro.pt``) with a model card beside them.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import torch

from supernet.elastic.build import build_sam
from supernet.checkpoint import load_sam
from infra.cliargs import non_negative_int, open_fraction, positive_float, positive_int
from infra.fileio import atomic_torch_save, atomic_write_text
from supernet.reference import WEIGHTS_DIR
from infra.errors import UserError
from scenes.sources import CocoScenes, MixedScenes, SyntheticScenes
from scenes.synthetic import write_coco_dataset
from nas.training.settings import FOCAL_ALPHA
from nas.training.train import TrainSettings, train

from nas.measure.fingerprint import machine_fingerprint
from nas.quality import make_evaluator

EXAMPLES = """examples:
  # the packaged model: real COCO photos (train splits) plus synthetic scenes, on a GPU
  samnas train-reference --coco ../shared/data/coco128/images/train2017 \\
      --annotations ../shared/data/coco128/annotations/panoptic_train2017.json \\
      --coco ../shared/data/tiny_coco/train2017 \\
      --annotations ../shared/data/tiny_coco/annotations/instances_train2017.json \\
      --eval-coco ../shared/data/tiny_coco/val2017 \\
      --eval-annotations ../shared/data/tiny_coco/annotations/instances_val2017.json --device cuda
  samnas train-reference                        # synthetic scenes only (no photos needed)
  samnas train-reference --steps 200 --out /tmp/micro.pt   # a quick smoke run
"""
LOSS_POINTS = 4096  # pixels per mask for the mask losses (nas.training.train.LossFrame), of 256 x 256
HELD_OUT_SEED_OFFSET = 10_000  # evaluation scenes come from a generator stream training never uses


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-reference", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", action="append", default=[], metavar="DIR",
                   help="a folder of training photos; repeat for several (each pairs with one --annotations)")
    p.add_argument("--annotations", action="append", default=[], metavar="JSON",
                   help="COCO instances or panoptic file of the --coco folder in the same position")
    p.add_argument("--synthetic-share", type=float, default=0.25,
                   help="share of each batch drawn from synthetic scenes when photos are given (default 0.25)")
    p.add_argument("--eval-coco", action="append", default=[], metavar="DIR",
                   help="held-out photos scored for the card (never trained on); repeatable")
    p.add_argument("--eval-annotations", action="append", default=[], metavar="JSON",
                   help="annotations of the --eval-coco folder in the same position")
    p.add_argument("--steps", type=positive_int, default=2400, help="optimizer steps (default 2400)")
    p.add_argument("--minutes", type=positive_float, default=None,
                   help="instead of --steps: as many steps as fit in this many minutes, timed on a first few steps")
    p.add_argument("--batch-images", type=positive_int, default=4, help="images per step (default 4)")
    p.add_argument("--prompts-per-image", type=positive_int, default=4, help="target masks per image and step (default 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    p.add_argument("--loss-points", type=non_negative_int, default=LOSS_POINTS, metavar="N",
                   help=f"pixels per mask at which the mask losses are computed: half uniform, half around the "
                        f"mask (default {LOSS_POINTS}; 0: all 65,536, about 4x slower per step on a CPU)")
    p.add_argument("--focal-alpha", type=open_fraction, default=FOCAL_ALPHA, metavar="A",
                   help=f"the focal loss's foreground weight, background 1 - A (default {FOCAL_ALPHA})")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order (default 0)")
    p.add_argument("--init", default=None, metavar="CKPT", help="start from these sam_micro weights instead of random ones")
    p.add_argument("--eval-images", type=positive_int, default=40, help="held-out synthetic scenes for the card (default 40)")
    p.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--out", default=str(WEIGHTS_DIR / "sam_micro.pt"), help="weights file (card written beside it)")
    p.add_argument("--selection", default=None, metavar="TEXT",
                   help="how these weights were chosen among runs (which data the choice looked at), for the card")
    p.add_argument("--evaluate-only", action="store_true",
                   help="score the --out weights again on the held-out data and rewrite the card's evaluation")
    p.set_defaults(func=run_train_reference)


DESCRIPTION = """Train the packaged sam_micro reference SAM.

No pretrained SAM weights can be downloaded everywhere, so samnas trains its own small SAM
with SAM's recipe (focal + dice, IoU head, point, box and corrective-point prompts) on real
photos with COCO masks (instances or panoptic; random resized crops, flips and colour jitter)
mixed with generated scenes, and measures it on held-out photos (--eval-coco) and held-out
synthetic scenes with the same COCO evaluator the search uses. Without --coco it trains on
synthetic scenes only. The weights ship as package data with a model card beside them.
"""


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
    return {"data": f"{num_images} held-out synthetic scenes (seed {seed + HELD_OUT_SEED_OFFSET})",
            "score": result.score, **result.metrics, "num_items": result.num_items}


def evaluate_photos(model, images: str | Path, annotations: str | Path, held_out: bool = True) -> dict:
    """Box- and point-prompted mIoU on photos (COCO evaluator; things only for panoptic files).

    ``held_out=False`` labels them as training photos: a fit (self-consistency), not evidence.
    ``by_size`` holds the mIoUs per COCO object size (:meth:`nas.quality.coco.CocoEvaluator.by_size`).
    """
    evaluator = make_evaluator("coco", model, images=images, annotations=annotations)
    result = evaluator.evaluate(model, None)
    dataset = Path(annotations).resolve().parent.parent.name  # <dataset>/annotations/<file>.json
    seen = "held out" if held_out else "trained on"
    return {"data": f"{dataset} {Path(images).name} photos ({Path(annotations).name}, {seen})",
            "score": result.score, **result.metrics, "num_items": result.num_items,
            "by_size": evaluator.by_size()}


def _pairs(folders: list[str], annotations: list[str], what: str) -> list[tuple[str, str]]:
    if len(folders) != len(annotations):
        raise UserError(f"--{what}coco and --{what}annotations pair up in order: got {len(folders)} folders "
                        f"and {len(annotations)} annotation files")
    return list(zip(folders, annotations))


def training_source(args: argparse.Namespace, pairs: list[tuple[str, str]]):
    """The scene source: photos mixed with synthetic scenes, or synthetic scenes alone."""
    synthetic = SyntheticScenes(seed=args.seed)
    if not pairs:
        return synthetic, "scenes.synthetic scenes, 256x256, 3-7 objects, generated per step"
    photos = CocoScenes(pairs, seed=args.seed, size=256, progress=True)
    share = args.synthetic_share
    data = (f"{len(photos)} photos with masks ({', '.join(f'{Path(d).name} / {Path(a).name}' for d, a in pairs)}), "
            f"augmented (random resized crop, flip, colour jitter), {1 - share:.0%} of each batch; "
            f"synthetic scenes {share:.0%}")
    if share <= 0:
        return photos, data
    return MixedScenes([photos, synthetic], [1 - share, share], seed=args.seed), data


def steps_for_minutes(model, source, settings: TrainSettings, minutes: float, trial_steps: int = 20) -> int:
    """How many steps of ``settings`` fit in ``minutes``, timed on a copy of ``model`` for ``trial_steps`` steps."""
    import copy

    probe = copy.deepcopy(model)
    trial = dataclasses.replace(settings, steps=trial_steps + 5, checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        train(probe, source, trial, scratch, progress=False)
        per_step = (time.perf_counter() - began) / (trial_steps + 5)
    return max(1, int(minutes * 60 / per_step))


def run_train_reference(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    pairs = _pairs(args.coco, args.annotations, "")
    eval_pairs = _pairs(args.eval_coco, args.eval_annotations, "eval-")
    if args.evaluate_only:
        return _rewrite_evaluation(args, out, eval_pairs, pairs)
    if not pairs:
        print("NOTE: no --coco photos given: training on synthetic scenes only")
    model = load_sam(args.init, "micro") if args.init else build_sam("micro", seed=args.seed)
    model.to(args.device)
    source, data = training_source(args, pairs)
    settings = TrainSettings(steps=args.steps, batch_images=args.batch_images, prompts_per_image=args.prompts_per_image,
                             lr=args.lr, warmup_steps=100, seed=args.seed, checkpoint_every=250,
                             loss_points=args.loss_points, focal_alpha=args.focal_alpha)
    if args.minutes:
        settings.steps = steps_for_minutes(model, source, settings, args.minutes)
        print(f"{settings.steps} steps fit in {args.minutes:g} min on {args.device}")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        train(model, source, settings, scratch)
    seconds = time.perf_counter() - began
    model.to("cpu")
    atomic_torch_save(model.state_dict(), out)
    fp = machine_fingerprint()
    command = (f"samnas train-reference {' '.join(f'--coco {d} --annotations {a}' for d, a in pairs)} "
               f"--synthetic-share {args.synthetic_share} --steps {settings.steps} --batch-images {args.batch_images} "
               f"--prompts-per-image {args.prompts_per_image} --lr {args.lr} --loss-points {args.loss_points} --focal-alpha {args.focal_alpha} --seed {args.seed}"
               + (f" --init {args.init}" if args.init else "") + f" --device {args.device}")
    card = {
        "model": "sam_micro reference (samnas)",
        "weights": out.name,
        "size_bytes": out.stat().st_size,
        "params": sum(p.numel() for p in model.parameters()),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training": {"command": " ".join(command.split()),
                     "data": data,
                     "recipe": f"focal(20, alpha {args.focal_alpha})+dice(1) on masks (best of 3 for points), MSE on IoU head, "
                               "point and jittered-box prompts, one iterative corrective round; "
                               + (f"losses at {settings.loss_points} sampled pixels per mask (half around the mask)"
                                  if settings.loss_points > 0 else "losses at every pixel of the 256x256 input frame"),
                     "steps": settings.steps, "batch_images": args.batch_images,
                     "prompts_per_image": args.prompts_per_image, "seconds": round(seconds, 1),
                     "device": _device_name(args.device),
                     "machine": {k: fp[k] for k in ("cpu", "cores", "torch_threads", "torch")}},
    }
    if args.init:
        card["training"]["init"] = init_provenance(Path(args.init))
    return _write_card(card, model, out, args, eval_pairs, pairs)


def init_provenance(weights: Path) -> dict:
    """What ``--init`` weights were: their file and, when a card lies beside them, how they were trained."""
    card_json, _ = card_paths(weights)
    info = {"weights": weights.name}
    if card_json.is_file():
        earlier = json.loads(card_json.read_text(encoding="utf-8"))
        info["training"] = earlier.get("training")
        if earlier.get("selection"):
            info["training"] = {**info["training"], "selection": earlier["selection"]}
    return info


def _rewrite_evaluation(args: argparse.Namespace, out: Path, eval_pairs, fit_pairs) -> int:
    """``--evaluate-only``: score the existing weights again and rewrite the card's evaluation part
    (and, with ``--coco``, the fit on those training photos)."""
    card_json, _ = card_paths(out)
    if not card_json.is_file():
        raise UserError(f"{card_json}: no model card beside {out} to rewrite")
    card = json.loads(card_json.read_text(encoding="utf-8"))
    model = load_sam(out, "micro")
    return _write_card(card, model.eval(), out, args, eval_pairs, fit_pairs)


def _write_card(card: dict, model, out: Path, args: argparse.Namespace, eval_pairs, fit_pairs) -> int:
    """Score ``model`` on the held-out photos and scenes (and on the training photos, as a fit) and write its card."""
    model.eval()
    if args.selection:
        card["selection"] = args.selection
    card["evaluation"] = [evaluate_photos(model, d, a) for d, a in eval_pairs]
    card["evaluation"].append(evaluate_reference(model, args.seed, args.eval_images))
    card["fit"] = [evaluate_photos(model, d, a, held_out=False) for d, a in fit_pairs]
    card_json, card_md = card_paths(out)
    atomic_write_text(card_json, json.dumps(card, indent=2) + "\n")
    atomic_write_text(card_md, render_reference_card(card))
    tr = card["training"]
    print(f"trained in {tr['seconds'] / 60:.1f} min; wrote {out}, {card_json.name}, {card_md.name}")
    for ev in card["evaluation"] + card["fit"]:
        print(f"  {ev['data']}: box mIoU {ev.get('box_miou', float('nan')):.3f}, "
              f"point mIoU {ev.get('point_miou', float('nan')):.3f} ({ev['num_items']} instances)")
    return 0


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def _stages(training: dict) -> list[dict]:
    """The training runs behind the weights, earliest first (``--init`` stages included)."""
    stages = []
    while training:
        stages.append(training)
        training = (training.get("init") or {}).get("training")
    return stages[::-1]


def _stage_command(training: dict) -> str:
    """A stage's command; runs from before ``--loss-points`` existed computed their losses at every
    pixel, and runs from before ``--focal-alpha`` used 0.25, so that is spelled out for them."""
    command = training["command"]
    for flag, old_value in (("--loss-points", "0"), ("--focal-alpha", "0.25")):
        if flag not in command:
            command = f"{command} {flag} {old_value}"
    return command


def _earlier_stages(training: dict) -> str:
    """A card line on the stages before the last one: their steps and time (empty for one stage)."""
    stages = _stages(training)
    if len(stages) < 2:
        return ""
    runs = ", ".join(f"{t['steps']} steps x {t['batch_images']} images in {t['seconds'] / 60:.1f} min on "
                     f"{t.get('device', 'cpu')}" for t in stages[:-1])
    total = sum(t["seconds"] for t in stages) / 60
    return f"\n- before that: {runs}; {total:.1f} min of training in all"


def _selection_notes(card: dict) -> str:
    """How the weights, and the ``--init`` weights of each earlier stage, were chosen: quoted lines."""
    stages = _stages(card["training"])
    notes = [(f"stage {i} of {len(stages)}: " if len(stages) > 1 else "") + t["selection"]
             for i, t in enumerate(stages[:-1], 1) if t.get("selection")]
    if card.get("selection"):
        notes.append((f"stage {len(stages)} of {len(stages)}: " if len(stages) > 1 else "") + card["selection"])
    return "".join(f"> {note}\n" for note in notes)


def _reproduce(training: dict) -> str:
    """The commands that reproduce the weights, earliest first (``--init`` stages included)."""
    stages = [f"`{_stage_command(t)}`" for t in _stages(training)][::-1]
    if len(stages) == 1:
        return stages[0]
    return "in stages, each starting from the weights of the one before:\n" + "\n".join(
        f"  {i}. {cmd}" for i, cmd in enumerate(reversed(stages), 1))


def _metric_table(rows: list[dict], first: str) -> str:
    """A markdown table of evaluation dicts: ``first`` (the data), instances, then every float metric."""
    metrics = [k for k in rows[0] if isinstance(rows[0][k], float)]
    lines = ["| " + first + " | instances | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    lines += [f"| {ev['data']} | {ev['num_items']} | " + " | ".join(f"{ev.get(k, float('nan')):.4f}" for k in metrics)
              + " |" for ev in rows]
    return "\n".join(lines)


def _size_table(rows: list[dict]) -> str:
    """Box mIoU, box-fill, mask ceiling and point mIoU per COCO object size, for every row that has ``by_size``."""
    from nas.quality.coco import SIZE_RANGES

    def show(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = ["| photos | object size | instances | box_miou | box_fill_miou | mask_ceiling_miou | point_miou |",
             "|---|---|---|---|---|---|---|"]
    for ev in rows:
        sizes = ev.get("by_size")
        if not sizes:
            continue
        for name, _, _ in SIZE_RANGES:
            lines.append(f"| {ev['data']} | {name} | {sizes[f'instances_{name}']} | {show(sizes[f'box_miou_{name}'])} "
                         f"| {show(sizes[f'box_fill_miou_{name}'])} | {show(sizes.get(f'mask_ceiling_miou_{name}'))} "
                         f"| {show(sizes[f'point_miou_{name}'])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def render_reference_card(card: dict) -> str:
    tr = card["training"]
    evaluations = card["evaluation"] if isinstance(card["evaluation"], list) else [card["evaluation"]]
    fit = card.get("fit") or []
    device = tr.get("device", "cpu")
    fit_part = ""
    if fit:
        fit_part = f"""
## Fit on the training photos (self-consistency, not evidence)

The same measurement on photos the model was trained on (without augmentation). Beside the
held-out rows it tells overfitting (fit far above held-out) from underfitting (both low).

{_metric_table(fit, "training data")}
"""
    sizes = _size_table(evaluations + fit)
    size_part = f"""
## By object size

COCO's ranges of the ground-truth mask area in original-image pixels: small < 32², medium
< 96², large above. `-`: no instance in the range.

{sizes}
""" if sizes else ""
    return f"""# sam_micro reference model

A small SAM ({card['params'] / 1e6:.2f} M parameters, 256 px input) trained from scratch by samnas,
so that demos and tests measure real segmentation quality without downloads. It is a
demonstration model, far below Meta's SAM: its numbers below are what it does on photos it
never saw in training.

- weights: `{card['weights']}` ({card['size_bytes'] / 1e6:.1f} MB)
- data: {tr['data']}
- trained: {tr['steps']} steps x {tr['batch_images']} images in {tr['seconds'] / 60:.1f} min on {device}
  (host CPU {tr['machine']['cpu']}, torch {tr['machine']['torch']}){_earlier_stages(tr)}
- recipe: {tr['recipe']}
- reproduce: {_reproduce(tr)}

{_selection_notes(card)}
## Held-out quality

Box and point mIoU: each instance prompted by its ground-truth box or by the point farthest
from its boundary; the output with the highest predicted IoU is scored (`_oracle`: the best
of the three outputs against the ground truth). Panoptic files: things only.
`box_fill_miou`: the prompt box itself as the mask. `mask_ceiling_miou`: the ground truth after a
round trip through this model's 64x64 low-res mask grid at 256 px input, the most any model of
this input size could score (it depends on the labels and the input size only).

{_metric_table(evaluations, "held-out data")}
{fit_part}{size_part}"""
