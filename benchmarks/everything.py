"""Benchmark for segment-everything on real photos: a policy tuned without labels vs the dense 32x32 grid.

Model: the packaged ``sam_micro`` reference (random weights only when it is absent; the table says
so), at its default thresholds (``everything_defaults`` in its card; when the card has none, this
run calibrates them on the *train* photos with ``nas.everything.calibrate`` and says so).

1. Tuning (self-consistency, train photos): ``tune_everything`` on ``coco128/images/train2017``
   photos, labels not used: agreement with the model's own dense grid at its default thresholds.
2. Evidence (held-out photos): on ``coco128/images/val2017`` photos with panoptic ground truth, the
   dense grid at the default thresholds (the DEFAULT policy) and the tuned policy run interleaved
   image by image (the order alternates), ``--repeats`` timed runs each after one warm-up, 1 thread:
   time per image and its ratio, agreement of the tuned policy with the grid's masks, class-agnostic
   mask AR@100 against the panoptic segments (things and stuff) for both, masks per photo.

    python benchmarks/everything.py                      # the committed table
    python benchmarks/everything.py --quick              # a few photos and trials: checks it runs
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, machine_header, markdown_table, reproduce_command, write_results

from nas.everything.calibrate import calibrate_thresholds, model_defaults
from nas.everything.commands import model_digest
from supernet.model_source import load_model
from nas.everything.generator import MaskGenerator
from nas.everything.policies import Policy, policy_from_dict
from nas.everything.quality import agreement, mask_ar
from nas.everything.tune import TuneSettings, tune_everything
from scenes.annotations import image_ids
from scenes.images import read_image_folder
from supernet.modeling.predictor import SamPredictor

COCO128 = ROOT.parent / "shared" / "data" / "coco128"
GRID_TIME_SHARE = 4.5  # default budget: the dense grid's predicted time on the tuning photos / this (tune --speedup); a margin over the 4x target


def timed(gen: MaskGenerator, image: np.ndarray, repeats: int) -> tuple[list[dict], float]:
    """Records and the median wall time (ms) of ``repeats`` runs after one warm-up."""
    gen.generate(image)
    times, recs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        recs = gen.generate(image)
        times.append((time.perf_counter() - t) * 1000.0)
    return recs, statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 tuning photos, 4 held-out photos, 6 trials, 1 repeat")
    ap.add_argument("--tune-images", type=int, default=8, help="train2017 photos to tune on (default: 8)")
    ap.add_argument("--eval-images", type=int, default=100, help="held-out val2017 photos (default: 100, all annotated)")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per policy and photo (after 1 warm-up)")
    ap.add_argument("--budget-ms", type=float, help=f"default: 1/{GRID_TIME_SHARE:g} of the dense grid's predicted "
                                                    f"time on all tuning photos (the target is 4x)")
    ap.add_argument("--max-points-per-side", type=int, default=32)
    ap.add_argument("--target-masks", type=float, default=12.0, help="calibration target when the card has none")
    ap.add_argument("--data", default=str(COCO128), help="coco128 folder (default: ../shared/data/coco128)")
    ap.add_argument("--topic", default="everything", help="writes results/<topic>.md and .csv")
    args = ap.parse_args()
    if args.quick:
        args.tune_images, args.eval_images, args.trials, args.repeats = 3, 4, 6, 1
        if args.topic == "everything":
            args.topic = "everything_quick"
    torch.set_num_threads(1)
    command = reproduce_command("everything.py")
    started = time.perf_counter()
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    data = Path(args.data)
    if not (data / "annotations" / "panoptic_val2017.json").is_file():
        print(f"coco128 with panoptic annotations not found at {data}", file=sys.stderr)
        return 2

    model, source = load_model(None, None, log=log)
    tag = source.tag
    predictor = SamPredictor(model)
    weights = "packaged reference `sam_micro.pt`" if tag == "sam_micro" else "RANDOM weights: quality is meaningless"
    skip = lambda path, why: log(f"skipped {path}: {why}")  # noqa: E731
    tune_imgs, _ = read_image_folder(data / "images" / "train2017", args.tune_images, skip)
    val_all, _ = read_image_folder(data / "images" / "val2017", on_skip=skip)
    coco, ids = image_ids(data / "annotations" / "panoptic_val2017.json", [p.name for p, _ in val_all])
    gt = coco.dataset
    annotated = {img["id"] for img in gt["images"]} & {a["image_id"] for a in gt["annotations"]}
    val = [(p, im) for p, im in val_all if ids.get(p.name) in annotated][:args.eval_images]

    with torch.no_grad():
        defaults, source = model_defaults(tag)
        calibration = None
        if "calibrated" not in source:
            calibration = calibrate_thresholds(predictor, tune_imgs, args.target_masks, progress=True)
            defaults = {k: calibration[k] for k in ("pred_iou_thresh", "stability_score_thresh")}
            source = (f"calibrated by this run on the {len(tune_imgs)} train photos (target {args.target_masks:g} "
                      f"masks/photo; the card has none)")
        grid = Policy(points_per_side=32, output_mode="coco_rle", **defaults)
        log(f"defaults {defaults} ({source})")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            settings = TuneSettings(model_tag=tag, device="cpu-torch-1t", budget_ms=args.budget_ms,
                                    speedup=None if args.budget_ms else GRID_TIME_SHARE, trials=args.trials,
                                    storage=f"sqlite:///{Path(tmp) / 'studies.db'}", reference_policy=grid,
                                    max_points_per_side=args.max_points_per_side,
                                    tracking_uri=(Path(tmp) / "mlruns").as_uri(),
                                    model_meta={"model_digest": model_digest(model)})
            tuned = tune_everything(predictor, tune_imgs, settings, progress=True)
        tune_s = time.perf_counter() - t0
        policy = policy_from_dict({**tuned["policy"].to_dict(), "output_mode": "coco_rle"})

        # held-out photos, interleaved image by image
        gens = {"grid": MaskGenerator(predictor, grid), "tuned": MaskGenerator(predictor, policy)}
        recs = {k: [] for k in gens}
        ms = {k: [] for k in gens}
        prompts = {k: [] for k in gens}
        from tqdm.auto import tqdm

        for i, (_path, im) in enumerate(tqdm(val, desc="held-out photos", unit="photo")):
            for name in (("grid", "tuned") if i % 2 == 0 else ("tuned", "grid")):
                r, t = timed(gens[name], im, args.repeats)
                recs[name].append(r)
                ms[name].append(t)
                prompts[name].append(gens[name].stats["prompts"])

    ar = {k: mask_ar(gt, {ids[p.name]: r for (p, _), r in zip(val, recs[k])}) for k in gens}
    ag = agreement([[x["segmentation"] for x in r] for r in recs["grid"]],
                   [[x["segmentation"] for x in r] for r in recs["tuned"]], what="the dense grid (held-out photos)")
    ratios = [g / t for g, t in zip(ms["grid"], ms["tuned"])]
    speedup = statistics.median(ms["grid"]) / statistics.median(ms["tuned"])
    rows = []
    for name, label in (("grid", "DEFAULT: dense 32x32 grid at the default thresholds"), ("tuned", "tuned policy")):
        pol = grid if name == "grid" else policy
        rows.append({"policy": label, "kind": pol.kind, "points_per_side": pol.points_per_side,
                     "pred_iou / stability": f"{pol.pred_iou_thresh:.2f} / {pol.stability_score_thresh:.2f}",
                     "prompts_per_photo": round(float(np.mean(prompts[name])), 1),
                     "masks_per_photo": round(float(np.mean([len(r) for r in recs[name]])), 2),
                     "median_ms": round(statistics.median(ms[name]), 1),
                     "p10_ms": round(float(np.percentile(ms[name], 10)), 1),
                     "p90_ms": round(float(np.percentile(ms[name], 90)), 1),
                     "AR@10": round(ar[name]["AR@10"], 4), "AR@100": round(ar[name]["AR@100"], 4),
                     "AR@1000": round(ar[name]["AR@1000"], 4)})
    ar_share = ar["tuned"]["AR@100"] / ar["grid"]["AR@100"] if ar["grid"]["AR@100"] else float("nan")
    masks_default = rows[0]["masks_per_photo"]
    best = tuned["best"]

    def verdict(ok: bool) -> str:
        return "holds" if ok else "MISSED"

    body = [
        f"- model: sam_micro, {weights}; 1 torch thread",
        f"- default thresholds: {defaults['pred_iou_thresh']:.2f} / {defaults['stability_score_thresh']:.2f} ({source})",
        f"- tuning: {len(tune_imgs)} coco128/train2017 photos, labels not used (agreement with the dense grid); "
        f"{args.trials} trials in {tune_s:.0f} s; budget {best['budget_ms']} ms/photo (predicted time; {best['budget_source']}); best trial {best['trial']}",
        f"- tuned policy: `{tuned['policy'].to_dict()}`",
        f"- held out: {len(val)} coco128/val2017 photos with panoptic ground truth "
        f"({sum(len([a for a in gt['annotations'] if a['image_id'] == ids[p.name]]) for p, _ in val)} segments, "
        f"things and stuff); both policies interleaved photo by photo, {args.repeats} timed run(s) each after 1 warm-up",
        "",
        "## Targets (held-out photos)",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| default policy >= 5 masks per photo | {masks_default} | {verdict(masks_default >= 5)} |",
        f"| tuned policy >= 4x less time per photo than the grid | {speedup:.2f}x (median of per-photo ratios "
        f"{statistics.median(ratios):.2f}x) | {verdict(speedup >= 4)} |",
        f"| >= 90% agreement with the grid's masks | recall {ag['recall']:.3f}, IoU-weighted {ag['quality']:.3f} "
        f"(mean IoU of matches {ag['mean_iou']:.3f}) | {verdict(ag['recall'] >= 0.9)} |",
        f"| >= 95% of the grid's AR@100 | {ar['tuned']['AR@100']:.4f} / {ar['grid']['AR@100']:.4f} = {ar_share:.3f} "
        f"| {verdict(ar_share >= 0.95)} |",
        "",
        "## Held-out photos (evidence): coco128/val2017, panoptic ground truth, class-agnostic (COCOeval useCats=0)",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        "## Train photos (self-consistency, the tuning objective)",
        "",
        f"Agreement of the tuned policy with the dense grid on the {len(tune_imgs)} tuning photos: "
        f"IoU-weighted recall {best['quality']:.3f} (recall {best['metrics'].get('recall', float('nan')):.3f}), "
        f"predicted {best['time_ms']:.0f} ms/photo.",
        "",
        f"Total benchmark time: {time.perf_counter() - started:.0f} s.",
    ]
    csv_rows = [{**r, "set": "coco128/val2017"} for r in rows]
    path = write_results(args.topic, "Segment-everything on real photos: tuned policy vs the dense 32x32 grid",
                         machine_header(command, args.repeats, threads=1), "\n".join(body), csv_rows)
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s; reproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
