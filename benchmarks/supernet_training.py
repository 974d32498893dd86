"""Benchmark for supernet training on sam_micro: subnet quality after ranking alone vs after training.

Starts from the packaged reference weights, ranks them (wanda), measures the smallest
subnet, a mid-size subnet (predicted latency closest to 50% of the full model's) and the
full model on held-out synthetic scenes (box- and point-prompted mIoU), trains the supernet
with the sandwich rule (largest + smallest + K random, distilled from the frozen full model,
plus, with ``--gt``, the ground-truth loss), and measures the same three subnets again.

    python benchmarks/supernet_training.py --steps 600
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine_header, markdown_table, reproduce_command, write_results

from infra.errors import UserError
from nas.latency import load_predictor, profile_and_fit_quick
from nas.quality import make_evaluator
from nas.training.train import TrainSettings, train
from scenes.images import generated_images
from scenes.sources import SyntheticScenes
from scenes.synthetic import write_coco_dataset
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.checkpoint import load_sam
from supernet.elastic.activation import active_subnet
from supernet.elastic.ranking import rank_model
from supernet.modeling.predictor import image_to_model_input
from supernet.reference import reference_checkpoint


def mid_config(space: SearchSpace, latency, frac: float = 0.5, samples: int = 400, seed: int = 0) -> SubnetConfig:
    """Among sampled full-resolution configs, the one whose predicted latency is closest to ``frac`` x full."""
    target = frac * latency.predict_ms(space.largest())
    rng = np.random.default_rng(seed)
    cands = [space.sample(rng).replace(resolution=space.resolutions[0]) for _ in range(samples)]
    return min(cands, key=lambda c: abs(latency.predict_ms(c) - target))


def evaluate(model, configs: dict, evaluator) -> dict:
    out = {}
    for name, cfg in configs.items():
        with active_subnet(model, cfg):
            r = evaluator.evaluate(model, cfg)
        out[name] = {"box_miou": r.metrics["box_miou"], "point_miou": r.metrics["point_miou"], "score": r.score}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--random-subnets", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--largest-weight", type=float, default=4.0)
    parser.add_argument("--out-topic", default="supernet_training", help="results/<topic>.md and .csv")
    parser.add_argument("--gt", action="store_true", help="add the ground-truth loss (scenes' masks) to distillation")
    parser.add_argument("--eval-images", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ckpt = reference_checkpoint("micro")
    if ckpt is None:
        raise SystemExit("no packaged reference weights: run `samnas train-reference` first")
    space = SearchSpace.load("sam_micro")
    model = load_sam(ckpt)
    calib = [image_to_model_input(model, im)[0] for im in generated_images(8, seed=123)]
    rank_model(model, "wanda", images=lambda: calib)
    try:
        latency = load_predictor("cpu-torch", space="sam_micro")
    except UserError:
        print("no cpu-torch predictor for sam_micro in the results store: profiling this machine first", flush=True)
        latency = profile_and_fit_quick(space, "cpu-torch", threads=1)
    configs = {"smallest": space.smallest(), "mid (~50% latency)": mid_config(space, latency),
               "full": space.largest()}
    pred = {k: latency.predict_ms(v) for k, v in configs.items()}

    with tempfile.TemporaryDirectory() as tmp:
        ann = write_coco_dataset(tmp, args.eval_images, size=256, seed=20_000 + args.seed, split="val")
        evaluator = make_evaluator("coco", model, images=Path(tmp) / "val", annotations=ann)
        before = evaluate(model, configs, evaluator)
        teacher = copy.deepcopy(model)
        settings = TrainSettings(steps=args.steps, batch_images=2, lr=args.lr, warmup_steps=30, seed=args.seed,
                                 sandwich=True, distill=True, use_gt=args.gt, random_subnets=args.random_subnets,
                                 largest_weight=args.largest_weight,
                                 checkpoint_every=args.steps, space=space.to_dict())
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            train(model, SyntheticScenes(seed=args.seed + 1), settings, scratch, teacher=teacher, space=space)
        seconds = time.perf_counter() - start
        after = evaluate(model, configs, evaluator)

    rows = []
    for name in configs:
        for stage, res in (("ranked only", before), ("after supernet training", after)):
            rows.append({"subnet": name, "stage": stage, "predicted_ms": round(pred[name], 2),
                         "box_mIoU": round(res[name]["box_miou"], 4), "point_mIoU": round(res[name]["point_miou"], 4),
                         "mIoU": round(res[name]["score"], 4),
                         "pct_of_full": round(100 * res[name]["score"] / res["full"]["score"], 1)})
    mid_keep = 100 * after["mid (~50% latency)"]["score"] / after["full"]["score"]
    full_drop = 100 * (before["full"]["score"] - after["full"]["score"])
    header = machine_header(reproduce_command("supernet_training.py", argv), 1)
    body = f"""Reference `sam_micro` weights ranked by wanda; quality on {args.eval_images} held-out synthetic scenes
(COCO evaluator: mIoU of the best-scoring mask for a GT-box prompt and for a single point at the
mask's distance-transform maximum; `mIoU` is their mean). Supernet training: {args.steps} steps x 2 images,
sandwich rule (largest, smallest, {args.random_subnets} random), distillation from the frozen full model plus
{'the ground-truth loss' if args.gt else 'no ground-truth loss'}, lr {args.lr}, largest subnet weighted {args.largest_weight:g}x; {seconds / 60:.1f} min. Latency predictions from the fitted `cpu-torch`
predictor.

- mid-size subnet after training keeps **{mid_keep:.1f}%** of the full model's mIoU (target: at least 90%)
- full model mIoU change from supernet training: **{-full_drop:+.2f} points** (target: a loss of at most 1 point)

{markdown_table(rows, list(rows[0]))}

Configs: `{configs}`
"""
    title = "Supernet training on sam_micro" + (", with the ground-truth loss" if args.gt else "")
    write_results(args.out_topic, title, header, body, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
