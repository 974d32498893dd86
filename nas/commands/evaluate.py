"""``samnas evaluate``: a model's quality on a COCO-style folder, and the function benchmarks call.

:func:`evaluate_model` measures one model (a checkpoint, an exported subnet, or the packaged
reference) on images with COCO annotations, instances or panoptic (``scenes.annotations``):

- **prompted**: box and point mIoU through :class:`nas.quality.coco.CocoEvaluator` (things only
  for a panoptic file), with the oracle variants and the box-fill baseline (the prompt box itself
  as the mask) on the same instances;
- **segment-everything** (with a policy): class-agnostic mask AR@10/100/1000 (COCOeval, segm,
  ``useCats=0``) against every segment, things and stuff alike, plus masks and ms per image.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path

from infra.cliargs import positive_int
from infra.errors import UserError
from supernet.model_source import MODEL_TYPE_HELP

EXAMPLES = """examples:
  samnas evaluate --images tiny_coco/val2017 --annotations tiny_coco/annotations/instances_val2017.json
  samnas evaluate --checkpoint sam_vit_b.pth --images val2017/ --annotations panoptic_val2017.json --format json
  samnas evaluate --subnet my_subnet/ --images val2017/ --annotations panoptic_val2017.json --everything policy.yaml
  samnas evaluate --images val2017/ --annotations panoptic_val2017.json --everything default --max-images 20
"""
FORMATS = ("table", "json", "csv")
DESCRIPTION = """A model's quality on a COCO-style folder of photos (instances or panoptic annotations).

Prompted: box and point mIoU, each instance prompted by its ground-truth box or by the point
farthest from its boundary (things only for a panoptic file), with the best-of-outputs
("oracle") variants and the box-fill baseline (the prompt box itself as the mask) on the same
instances, and the mask-resolution ceiling (the ground truth after a round trip through the
model's low-res mask grid: what any model at this input size could score at best), overall and per COCO object size (small < 32x32 px of mask area, medium < 96x96,
large; "-" where no instance falls in the range). With --everything: class-agnostic mask AR@10/100/1000 (COCOeval) against every
segment, things and stuff alike, plus masks and milliseconds per image.
"""
PROMPTED = ("box_miou", "point_miou", "box_fill_miou", "mask_ceiling_miou", "box_miou_oracle", "point_miou_oracle")


def everything_ar(model, images_dir: str | Path, annotations: str | Path, policy, max_images: int | None = None,
                  progress: bool = False) -> dict:
    """Mask AR@10/100/1000 of ``policy`` on the annotated images of ``images_dir`` (things and stuff).

    Images are taken in the annotation file's order, those with at least one segment and a readable
    file of the annotated size, ``max_images`` at most. Returns the AR values, ``everything_images``,
    ``segments`` (ground truth), ``masks_per_image`` and ``ms_per_image`` (median, generator wall time).
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from scenes.annotations import load_coco
    from scenes.images import load_image
    from supernet.modeling.predictor import predictor_for

    from nas.everything.generator import MaskGenerator
    from nas.everything.policies import policy_from_dict
    from nas.everything.quality import mask_ar

    coco = load_coco(annotations)
    folder = Path(images_dir)
    chosen = []
    for info in coco.dataset["images"]:
        if max_images is not None and len(chosen) >= max_images:
            break
        if not coco.imgToAnns.get(info["id"]):
            continue
        path = folder / info["file_name"]
        try:
            image = load_image(path)
        except UserError:
            continue
        if image.shape[:2] == (info["height"], info["width"]):
            chosen.append((info["id"], image))
    if not chosen:
        raise UserError(f"{annotations}: no annotated image of it could be read from {folder}")
    gen = MaskGenerator(predictor_for(model), policy_from_dict({**policy.to_dict(), "output_mode": "coco_rle"}))
    preds, ms = {}, []
    with torch.inference_mode():
        for image_id, image in tqdm(chosen, desc="segment-everything", unit="image", disable=not progress,
                                    leave=False):
            preds[image_id] = gen.generate(image)
            ms.append(gen.stats["total_ms"])
    ar = mask_ar(coco.dataset, preds)
    return {**{k: v for k, v in ar.items() if k.startswith("AR@")}, "everything_images": len(chosen),
            "segments": sum(len(coco.imgToAnns[i]) for i in preds),
            "masks_per_image": float(np.mean([len(r) for r in preds.values()])),
            "ms_per_image": float(np.median(ms))}


def evaluate_model(model, images_dir: str | Path, annotations: str | Path, policy=None,
                   max_images: int | None = None, progress: bool = False) -> dict:
    """Prompted mIoU (and mask AR with ``policy``) of ``model`` on a COCO-style folder; one flat dict.

    Keys: ``images`` and ``instances`` (scored by the prompted part), ``box_miou``, ``point_miou``,
    ``box_fill_miou``, ``mask_ceiling_miou``, ``box_miou_oracle``, ``point_miou_oracle``, the same four mIoUs and the
    instance count per COCO size range (:meth:`~nas.quality.coco.CocoEvaluator.by_size`: ``None``
    for a range without instances), ``skipped``, ``seconds``; with a
    policy also ``AR@10``, ``AR@100``, ``AR@1000``, ``everything_images``, ``segments``,
    ``masks_per_image``, ``ms_per_image``.
    """
    from nas.quality.coco import CocoEvaluator

    began = time.perf_counter()
    evaluator = CocoEvaluator(model, images_dir, annotations, max_images=max_images)
    evaluator.progress = progress
    result = evaluator.evaluate(model, None)
    out = {"images": len(evaluator.items), "instances": result.num_items,
           **{k: result.metrics[k] for k in PROMPTED}, **evaluator.by_size(), "skipped": len(result.skipped)}
    if policy is not None:
        out.update(everything_ar(model, images_dir, annotations, policy, max_images, progress))
    out["seconds"] = round(time.perf_counter() - began, 1)
    return out


def render(row: dict, fmt: str) -> str:
    """One evaluation as a two-column table, a JSON object, or a CSV header + row."""
    if fmt == "json":
        return json.dumps(row, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
        return buf.getvalue()
    width = max(len(k) for k in row)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    for k, v in row.items():
        shown = f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)
        lines.append(f"{k.ljust(width)}  {shown}")
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="SAM or SAM 2 checkpoint (Meta/HF layout; default: the packaged sam_micro "
                                          "reference)")
    src.add_argument("--subnet", help="folder written by `samnas extract` / `samnas export`")
    p.add_argument("--model-type", help=MODEL_TYPE_HELP)
    p.add_argument("--device", default="cpu-torch", help="device slug (default: cpu-torch)")
    p.add_argument("--images", required=True, help="folder the annotations' file_name entries are in")
    p.add_argument("--annotations", required=True, help="COCO instances or panoptic JSON")
    p.add_argument("--everything", metavar="POLICY",
                   help="also mask AR@10/100/1000 with this policy YAML, or 'default' (the model's defaults)")
    p.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    p.add_argument("--max-images", type=positive_int, help="the first N annotated images only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from nas.everything.calibrate import default_policy
    from nas.everything.commands import check_policy_model, model_digest
    from nas.latency.store import torch_device
    from supernet.model_source import load_model
    from supernet.modeling.sam2.model import Sam2
    from nas.everything.policies import load_policy

    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {args.max_images}")
    from scenes.annotations import load_coco

    load_coco(args.annotations)  # a bad file is a one-line error before the model loads
    model, source = load_model(args.checkpoint, args.subnet, args.model_type,
                               log=lambda m: print(m, file=sys.stderr))
    tag = source.tag
    policy = None
    if args.everything == "default":
        policy = default_policy(tag, sam2=isinstance(model, Sam2))
    elif args.everything:
        policy, meta = load_policy(args.everything)
        check_policy_model(args.everything, meta, tag, model_digest(model))
    model.to(torch_device(args.device))
    row = {"model": tag, **evaluate_model(model, args.images, args.annotations, policy, args.max_images,
                                          progress=not args.no_progress)}
    if policy is not None:
        row["policy"] = args.everything
    sys.stdout.write(render(row, args.format))
    return 0
