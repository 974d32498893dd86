"""Benchmark for the search: NSGA-II vs random hypervolume, measured latency of the front, time per trial.

On ``sam_micro`` with the packaged reference weights (ranked by wanda), quality from the
COCO evaluator on held-out synthetic scenes, latency from this machine's fitted
``cpu-torch`` predictor (run ``benchmarks/latency.py`` or ``samnas latency profile`` first).

    python benchmarks/search.py --trials 128 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from common import RESULTS, machine_header, markdown_table, write_results

from nas.latency import load_predictor
from nas.pareto import hypervolume_2d, load_points, pareto_front
from nas.quality import make_evaluator
from nas.search import SearchSettings, run_search
from nas.timing import MIN_SECONDS, time_callable
from search_spaces.space import SearchSpace
from supernet.modeling.build import build_sam
from supernet.checkpoint import load_sam
from supernet.elastic.extract import extract
from scenes.images import generated_images
from supernet.modeling.predictor import image_to_model_input
from supernet.elastic.ranking import rank_model
from supernet.reference import reference_checkpoint
from scenes.synthetic import write_coco_dataset


def ranked_reference():
    path = reference_checkpoint("micro")
    model = load_sam(path) if path else build_sam("micro", seed=0)
    calib = [image_to_model_input(model, im)[0] for im in generated_images(8, seed=123)]
    rank_model(model, "wanda", images=lambda: calib)
    return model, path


def encoder_timing(model, config: dict, repeats: int):
    """Timing (ms) of the extracted subnet's image encoder on one random image, as profiling times it."""
    sub = extract(model, config)
    x = torch.randn(1, 3, config["resolution"], config["resolution"])
    with torch.inference_mode():
        return time_callable(lambda: sub.image_encoder(x), repeats=repeats, warmup=2, min_seconds=MIN_SECONDS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-frac", type=float, default=0.6, help="budget as a fraction of the full model")
    parser.add_argument("--eval-images", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per front subnet")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    space = SearchSpace.load("sam_micro")
    model, ckpt = ranked_reference()
    latency = load_predictor("cpu-torch", space="sam_micro")
    mape = latency.report["parts"]["encoder"]["mape_pct"]
    budget = round(args.budget_frac * latency.predict_ms(space.largest()), 2)
    storage_dir = RESULTS / "scratch"
    storage_dir.mkdir(parents=True, exist_ok=True)
    db = storage_dir / "bench_search.db"
    db.unlink(missing_ok=True)
    storage = f"sqlite:///{db}"
    hv_rows, studies = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        ann = write_coco_dataset(tmp, args.eval_images, size=256, seed=777, split="val")
        evaluator = make_evaluator("coco", model, images=Path(tmp) / "val", annotations=ann)
        for seed in args.seeds:
            row = {"seed": seed}
            for sampler in ("nsga2", "random"):
                settings = SearchSettings(space="sam_micro", device=f"cpu-torch@bench-{sampler}-s{seed}",
                                          budget_ms=budget, trials=args.trials, sampler=sampler, seed=seed,
                                          storage=storage)
                study = run_search(settings, model, space, evaluator, latency, progress=False)
                points = [p for p in load_points(storage) if p.study == study.study_name]
                row[f"hv_{sampler}"] = round(hypervolume_2d(points, ref_ms=budget), 4)
                row[f"front_{sampler}"] = len(pareto_front(points))
                studies[(sampler, seed)] = (study, points)
                print(sampler, seed, row, flush=True)
            row["nsga2_wins"] = row["hv_nsga2"] > row["hv_random"]
            hv_rows.append(row)

    # Measured latency of every subnet on the NSGA-II fronts.
    front_rows = []
    for seed in args.seeds:
        _, points = studies[("nsga2", seed)]
        for p in pareto_front(points):
            import json

            cfg = json.loads(p.config)
            t = encoder_timing(model, cfg, args.repeats)
            front_rows.append({
                "seed": seed, "trial": p.trial, "resolution": cfg["resolution"], "quality": round(p.quality, 4),
                "predicted_ms": round(p.predicted_ms, 2), "measured_ms": round(t.median_ms, 2),
                "p10_ms": round(t.p10_ms, 2), "p90_ms": round(t.p90_ms, 2),
                "error_pct": round(100 * (p.predicted_ms - t.median_ms) / t.median_ms, 1),
                "meets_budget": t.median_ms <= budget,
                "within_stated_error": t.median_ms <= budget * (1 + mape / 100),
            })

    time_rows = []
    for (sampler, seed), (study, _) in sorted(studies.items()):
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        wall = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
        time_rows.append({
            "sampler": sampler, "seed": seed, "trials": len(done),
            "wall_s_per_trial": round(statistics.median(wall), 3),
            "eval_s": round(statistics.median(t.user_attrs["eval_s"] for t in done), 3),
            "predict_ms": round(1000 * statistics.median(t.user_attrs["predict_s"] for t in done), 3),
        })

    # How fast is the machine now compared with when the predictor's measurements were taken?
    full_now = encoder_timing(model, space.largest(), args.repeats)
    full_pred = latency.predict_ms(space.largest())

    wins = sum(r["nsga2_wins"] for r in hv_rows)
    meets = sum(r["meets_budget"] for r in front_rows)
    within = sum(r["within_stated_error"] for r in front_rows)
    header = machine_header("python benchmarks/search.py " + " ".join(sys.argv[1:]), args.repeats)
    body = f"""Space `sam_micro`, weights `{ckpt or 'random (no packaged reference yet)'}` ranked by wanda on 8 generated
images; quality = COCO evaluator (mean of box- and point-prompted mIoU, best-scoring mask) on
{args.eval_images} held-out synthetic scenes; latency = the fitted `cpu-torch` predictor (its CV MAPE
{mape:.1f}%). Budget {budget} ms = {args.budget_frac:.0%} of the full model's predicted latency.
{args.trials} trials per study. Hypervolume in quality x ms over the feasible region, reference point
(quality 0, {budget} ms).

## NSGA-II vs random search (hypervolume, higher is better)

NSGA-II wins on {wins} of {len(hv_rows)} seeds; mean HV NSGA-II
{statistics.mean(r['hv_nsga2'] for r in hv_rows):.4f} vs random {statistics.mean(r['hv_random'] for r in hv_rows):.4f}.

{markdown_table(hv_rows, list(hv_rows[0]))}

## Front subnets measured (image encoder, torch, median of at least {args.repeats} runs and {MIN_SECONDS} s)

{meets} of {len(front_rows)} front subnets meet the budget when measured; {within} of {len(front_rows)} are within
the budget plus the predictor's stated error ({mape:.1f}%). For scale: the full model measures
{full_now.median_ms:.2f} ms now (p10-p90 {full_now.p10_ms:.2f}-{full_now.p90_ms:.2f}) against {full_pred:.2f} ms predicted
from the profile, so this machine runs {100 * (full_now.median_ms / full_pred - 1):+.1f}% vs. profiling time.

{markdown_table(front_rows, list(front_rows[0])) if front_rows else '(empty front)'}

## Wall time per trial (median), split into evaluation and prediction

{markdown_table(time_rows, list(time_rows[0]))}
"""
    write_results("search", "Search benchmark on sam_micro", header, body, hv_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
