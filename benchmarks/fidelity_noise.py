"""How much of a fidelity score is the luck of its prompts: the same subnets scored with two prompt seeds.

On ``sam_micro`` with the packaged reference weights ranked as ``benchmarks/search.py`` ranks them, the fidelity
evaluator (``nas/quality/fidelity.py``: mean mask IoU of seeded single-point prompts against the full model's masks)
on the tuning photos (photos 6-11 of the sorted coco128 val folder; photos 0-5 stay held out for
``benchmarks/search.py``). Each subnet (random draws and uniform shrinks) is scored twice per prompt count, with
prompt seeds 0 and 1; the table gives the two scores' correlation, the sd of their difference (the noise of one
score is that over sqrt 2) beside the subnets' own spread, and the seconds a score takes.

    OMP_NUM_THREADS=1 python benchmarks/fidelity_noise.py --prompts 8 16 32 64
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from common import TUNING_START, held_out_photos, machine_header, markdown_table, ranked_model, reproduce_command, write_results

from nas.quality import make_evaluator
from nas.search.samplers.design import uniform_shrinks
from search_spaces.space import SearchSpace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, nargs="+", default=[8, 16, 32, 64], help="prompts per photo compared")
    parser.add_argument("--random", type=int, default=30, help="random subnets")
    parser.add_argument("--shrinks", type=int, default=10, help="uniform shrinks")
    parser.add_argument("--images", type=int, default=6, help="photos (from photo 6 of the folder on)")
    parser.add_argument("--photos", help="photo folder (default: coco128's val split)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from scipy.stats import pearsonr, spearmanr

    torch.set_num_threads(args.threads)
    space = SearchSpace.load("sam_micro")
    model, _, weights = ranked_model("micro")
    images, photos_text = held_out_photos(args.photos, args.images, start=TUNING_START)
    rng = np.random.default_rng(7)
    shrinks = uniform_shrinks(space)
    configs = [space.sample(rng) for _ in range(args.random)]
    configs += [shrinks[int(i)] for i in rng.choice(len(shrinks), args.shrinks, replace=False)]
    rows = []
    for prompts in args.prompts:
        scores, seconds = [], []
        for seed in (0, 1):
            evaluator = make_evaluator("fidelity", model, images=images, max_images=args.images,
                                       prompts_per_image=prompts, seed=seed)
            start = time.perf_counter()
            scores.append(np.array([evaluator.evaluate(model, c).score for c in configs]))
            seconds.append((time.perf_counter() - start) / len(configs))
        a, b = scores
        rows.append({"prompts per photo": prompts, "subnets": len(configs),
                     "Pearson r": f"{pearsonr(a, b).statistic:.3f}", "Spearman": f"{spearmanr(a, b).statistic:.3f}",
                     "sd of difference": f"{np.std(a - b):.4f}", "noise sd of one score": f"{np.std(a - b) / 2 ** 0.5:.4f}",
                     "subnets' spread (sd)": f"{np.std((a + b) / 2):.4f}", "mean score": f"{np.mean((a + b) / 2):.3f}",
                     "s per score": f"{np.mean(seconds):.3f}"})
        print(rows[-1], flush=True)
    header = machine_header(reproduce_command("fidelity_noise.py", sys.argv[1:] if argv is None else argv), 0,
                            repeats_line="- timing: seconds per score, the mean over the subnets of one pass "
                            "(one run each; the scores are the numbers here)", threads=args.threads)
    body = (f"Space `sam_micro`, weights {weights}; photos: {photos_text} (tuning photos: no table judges a search on "
            f"them). Subnets: {args.random} random draws and {args.shrinks} uniform shrinks, each scored with prompt "
            f"seeds 0 and 1.\n\n" + markdown_table(rows, list(rows[0])))
    write_results("fidelity_noise", "Fidelity scores: the prompts' luck", header, body, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
