"""Benchmark: how much box mIoU a SAM's input size allows on held-out COCO photos (the mask ceiling).

SAM outputs masks on a grid of (input / 4) cells, upscaled to the photo. For each input size this
table gives ``mask_ceiling_miou`` (``nas.quality.coco.mask_ceiling``): the ground-truth masks after a
round trip through that grid, scored like a model's box-prompted masks. It needs the labels only,
no weights, so it bounds every model at that input size, ours and Meta's alike. Beside it: the
box-fill baseline (the prompt box itself as the mask) and the packaged reference's own box mIoU at
its input size, on the same instances.

    python benchmarks/mask_ceiling.py                    # the committed table
    python benchmarks/mask_ceiling.py --resolutions 256  # one input size
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from common import ROOT, machine_header, markdown_table, reproduce_command, shown_path, write_results

from nas.quality.coco import CocoEvaluator, size_range_means
from supernet.elastic.build import build_sam
from supernet.reference import reference_checkpoint

DATA = ROOT.parent / "shared" / "data"
HELD_OUT = (  # (name, images, annotations): the held-out sets of the reference's card
    ("tiny_coco val2017", DATA / "tiny_coco" / "val2017", DATA / "tiny_coco" / "annotations" / "instances_val2017.json"),
    ("coco128 val2017 (things)", DATA / "coco128" / "images" / "val2017",
     DATA / "coco128" / "annotations" / "panoptic_val2017.json"),
)
BOX_TARGET = 0.63  # issue 10's held-out box mIoU target for the packaged reference


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512, 1024],
                    help="input sizes in px, multiples of 16 (default 128 256 512 1024)")
    ap.add_argument("--max-images", type=int, default=None, help="the first N annotated photos of each set (default all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--topic", default="mask_ceiling")
    args = ap.parse_args()
    if any(r <= 0 or r % 16 for r in args.resolutions):
        sys.exit(f"--resolutions: expected positive multiples of 16, got {args.resolutions}")
    missing = [str(p) for _, images, ann in HELD_OUT for p in (images, ann) if not p.exists()]
    if missing:
        sys.exit(f"needs the shared data; missing: {', '.join(missing)}")
    torch.set_num_threads(args.threads)
    weights = reference_checkpoint("micro")
    reference = None
    if weights is not None:
        from supernet.checkpoint import load_sam

        reference = load_sam(weights).eval()
    rows = []
    for name, images, ann in HELD_OUT:
        stand_in = build_sam("micro", seed=0).eval()  # the ceiling needs no weights; the evaluator needs a model
        ev = CocoEvaluator(stand_in, images, ann, max_images=args.max_images)
        areas = np.concatenate([item.areas for item in ev.items])
        box_fill = np.concatenate([item.box_fill for item in ev.items])
        own = {}
        if reference is not None:
            result = ev.evaluate(reference)
            own = {reference.resolution: result.metrics["box_miou"]}
            print(f"{name}: packaged reference box mIoU {own[reference.resolution]:.3f} at {reference.resolution} px",
                  file=sys.stderr)
        for res in args.resolutions:
            ious = ev.ceiling_ious(res)
            by_size = size_range_means(ious, areas)
            rows.append({
                "data": name, "input_px": res, "mask_grid": f"{res // 4}x{res // 4}", "instances": len(ious),
                "ceiling_miou": round(float(ious.mean()), 4),
                **{f"ceiling_{k}": None if v is None else round(v, 4) for k, (_, v) in by_size.items()},
                "ceiling_share_at_or_above_target": round(float((ious >= BOX_TARGET).mean()), 4),
                "box_fill_miou": round(float(box_fill.mean()), 4),
                "reference_box_miou": None if res not in own else round(own[res], 4),
            })
            print(f"{name} at {res} px: ceiling {ious.mean():.3f}", file=sys.stderr)
    header = "\n".join([
        machine_header(reproduce_command("mask_ceiling.py"), 1,
                       "- repeats: none (no timing): each value is computed once, deterministically",
                       threads=args.threads),
        "- data: " + "; ".join(f"{name}: `{shown_path(images)}` with `{shown_path(ann)}` (held out: never trained on)"
                                 for name, images, ann in HELD_OUT),
        "- reference: " + (f"the packaged `{shown_path(weights)}`, scored at its own input size only"
                           if weights else "none packaged: its column is empty"),
    ])
    columns = ["data", "input_px", "mask_grid", "instances", "ceiling_miou", "ceiling_small", "ceiling_medium",
               "ceiling_large", "ceiling_share_at_or_above_target", "box_fill_miou", "reference_box_miou"]
    shown = [{k: (_fmt(v) if isinstance(v, float) or v is None else v) for k, v in r.items()} for r in rows]
    body = f"""Each ground-truth instance (things only for the panoptic file; crowd regions left out) is
resized to the model's input frame, area-averaged into SAM's low-res mask grid (input / 4 cells
a side, the padded square frame), upscaled back with the model's own bilinear path and cut at one
half (`nas.quality.coco.mask_ceiling`). `ceiling_miou`: its mean IoU with the ground truth at
the photo's size, what a perfect model of that input size would score on box prompts (up to the
one-half rule); by COCO object size (mask area small < 32², medium < 96², large above) beside it.
`ceiling_share_at_or_above_target`: the share of instances whose ceiling is at least
{BOX_TARGET} (issue 10's box target). `box_fill_miou`: the prompt box itself as the mask.
`reference_box_miou`: the packaged sam_micro's box mIoU (highest predicted IoU output), at its
own input size only. These are label-only figures: no timing, no weights in the ceiling.

{markdown_table(shown, columns)}
"""
    ref_rows = [r for r in rows if r["reference_box_miou"] is not None]
    if ref_rows:
        body += "\n" + "\n".join(
            f"- {r['data']}: the reference scores {r['reference_box_miou']:.3f}, "
            f"{r['reference_box_miou'] / r['ceiling_miou']:.0%} of the {r['input_px']} px ceiling "
            f"({r['ceiling_miou']:.3f}); the {BOX_TARGET} target is {BOX_TARGET / r['ceiling_miou']:.0%} of it."
            for r in ref_rows) + "\n"
    path = write_results(args.topic, "Mask-resolution ceiling: the box mIoU each input size allows on held-out photos",
                         header, body, rows)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
