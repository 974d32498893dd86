"""Benchmark for the latency predictors: held-out accuracy next to the measurement noise.

For each search space (``sam_micro`` at all its resolutions, ``sam_vit_b`` at input side
512 by default) and each device (``cpu-torch`` by default) on this machine:

1. profile, in one run with interleaved rounds, the block lookup table, ``--samples``
   subnets (the training set) and ``--test`` further subnets (the held-out set), fixed seed;
2. fit the predictor on the block table and the training set only (k-fold CV over the
   training set: MAPE, % within +-10%), and score it on the held-out set;
3. time the held-out set again in a second, separate run: against the first, that gives the
   measurement noise, the floor no predictor can beat on this machine; the predictor is
   scored against this later run too (what a user sees measuring a chosen subnet later).
   The median p10-p90 spread of the repeated runs and each run's speed drift between
   rounds are shown too.

Targets (issue 3): at least 90% of held-out subnets within +-10%, MAPE at most 5%.
On a shared VM, compare ``--threads 1`` with the default: on this project's 2-core VM, two
runs of the same micro subnets disagreed by 16% MAPE with 2 threads (results/latency_t2.md)
and by 5.6% with 1 thread (2.7% for vit_b@512; results/latency.md). In exploratory probes (not
committed), the whole machine's speed with 2 threads moved by up to 60% within a minute, with
no CPU steal reported: nothing this process can control.
Nothing is written under results/latency (the runs use a temporary folder); the table
goes to results/latency.md and results/latency.csv.

    python benchmarks/latency.py                       # full: micro + vit_b@512 (minutes)
    python benchmarks/latency.py --spaces sam_micro --samples 12 --test 6 --repeats 2   # smoke test
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import machine_header, markdown_table, reproduce_command, write_results

from nas.latency.predictor import error_metrics, fit_space
from nas.latency.profile import ProfileSettings, profile, restrict_resolutions, sample_configs
from search_spaces.config import SubnetConfig
from nas.measure.timing import MIN_SECONDS, ROUNDS, visit_runs
from search_spaces.space import SearchSpace

DEFAULT_RESOLUTIONS = {"sam_vit_b": [512]}


def held_out_configs(space: SearchSpace, train: list[SubnetConfig], n: int, seed: int) -> list[SubnetConfig]:
    """``n`` distinct sampled configs that are not in ``train``."""
    seen = {c.key for c in train}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(200 * n):
        if len(out) == n:
            break
        cfg = space.validate(space.sample(rng))
        key = cfg.key
        if key not in seen:
            seen.add(key)
            out.append(cfg)
    return out


def medians(rows: list[dict]) -> np.ndarray:
    return np.array([r["median_ms"] for r in rows])


def bench_one(space_name: str, device: str, args) -> dict:
    """Profile, fit and score one (space, device); returns the table row."""
    space = restrict_resolutions(SearchSpace.load(space_name), args.resolutions or DEFAULT_RESOLUTIONS.get(space_name))
    common = dict(repeats=args.repeats, warmup=args.warmup, min_seconds=args.min_seconds, rounds=args.rounds,
                  threads=args.threads, progress=not args.quiet)
    train_cfgs = sample_configs(space, args.samples, seed=args.seed)
    test_cfgs = held_out_configs(space, train_cfgs, args.test, seed=args.seed + 1000)
    run = profile(space, device, ProfileSettings(blocks=True, configs=train_cfgs + test_cfgs, seed=args.seed, probes=False,
                                                 **common))
    train_rows, first = run.networks[:len(train_cfgs)], run.networks[len(train_cfgs):]
    second = profile(space, device, ProfileSettings(blocks=False, configs=test_cfgs, seed=args.seed + 2, probes=False,
                                                    **common))

    if args.save_raw:
        raw = {"space": space.to_dict(), "blocks": run.blocks, "train": train_rows, "test": first,
               "test_later": second.networks, "speed": [run.speed, second.speed], "kept": [run.kept, second.kept]}
        Path(args.save_raw).mkdir(parents=True, exist_ok=True)
        (Path(args.save_raw) / f"{space.name}-{device}-t{args.threads}.json").write_text(json.dumps(raw))
    t0 = time.perf_counter()
    predictor = fit_space(device, space, run.blocks, train_rows, folds=args.folds, seed=args.seed)
    fit_s = time.perf_counter() - t0
    part = predictor.report.part("encoder")
    measured, remeasured, predicted = medians(first), medians(second.networks), predictor.predict_many(test_cfgs)
    test = error_metrics(measured, predicted)
    later = error_metrics(remeasured, predicted)
    lut = error_metrics(measured, np.array([predictor.lut_ms(c) for c in test_cfgs]))
    noise = error_metrics(measured, remeasured)
    spread = [100 * (r["p90_ms"] - r["p10_ms"]) / r["median_ms"] for r in first + second.networks]
    block_s = sum(r["seconds"] for r in run.blocks)
    net_s = sum(r["seconds"] for r in train_rows)
    ok = test["within_10_pct"] >= 90 and test["mape_pct"] <= 5
    return {
        "space": space.name,
        "device": device,
        "threads": args.threads,
        "resolutions": "/".join(map(str, space.resolutions)),
        "method": part.method,
        "heldout_n": test["n"],
        "heldout_mape_pct": round(test["mape_pct"], 1),
        "heldout_within10_pct": round(test["within_10_pct"], 0),
        "cv_mape_pct": round(part.mape_pct, 1),
        "cv_within10_pct": round(part.within_10_pct, 0),
        "lut_only_mape_pct": round(lut["mape_pct"], 1),
        "heldout_later_run_mape_pct": round(later["mape_pct"], 1),
        "heldout_later_run_within10_pct": round(later["within_10_pct"], 0),
        "drift_pct": f"{run.machine_drift_pct:.0f}/{second.machine_drift_pct:.0f}",
        "rounds_run": f"{len(run.speed)}/{len(second.speed)}",
        "rounds_kept": f"{len(run.kept)}/{len(second.kept)}",
        "noise_remeasure_mape_pct": round(noise["mape_pct"], 1),
        "noise_remeasure_within10_pct": round(noise["within_10_pct"], 0),
        "noise_spread_p10_p90_pct": round(float(np.median(spread)), 1),
        "median_subnet_ms": round(float(np.median(measured)), 2),
        "block_timings": len(run.blocks),
        "subnet_timings": len(train_rows),
        "profiling_s": round(block_s + net_s, 1),
        "profiling_blocks_s": round(block_s, 1),
        "fit_s": round(fit_s, 2),
        "meets_target": "yes" if ok else "no",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=["sam_micro", "sam_vit_b"])
    parser.add_argument("--devices", nargs="+", default=["cpu-torch"])
    parser.add_argument("--resolutions", type=int, nargs="+",
                        help="input sides for every space (default: all of sam_micro's, 512 for sam_vit_b)")
    parser.add_argument("--samples", type=int, default=60, help="subnets timed to fit the predictor (default: 60)")
    parser.add_argument("--test", type=int, default=20, help="held-out subnets, timed twice (default: 20)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                        help="least timed wall time per measurement (default: the profiler's)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds per measurement (default: {ROUNDS})")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--save-raw", metavar="DIR", help="also write every timing as JSON under DIR (for analysis)")
    parser.add_argument("--out-topic", default="latency", help="results/<topic>.md and .csv (default: latency)")
    args = parser.parse_args(argv)

    rows = []
    for space in args.spaces:
        for device in args.devices:
            row = bench_one(space, device, args)
            rows.append(row)
            print(row, flush=True)
    command = reproduce_command("latency.py", argv)
    per_visit, warm = visit_runs(args.repeats, args.warmup, args.rounds)
    repeats_line = (f"- repeats: {per_visit * args.rounds} timed runs per measurement, {per_visit} in each of "
                    f"{args.rounds} rounds, each round's visit after {warm} warm-up run(s), and at least "
                    f"{args.min_seconds:g} s of timed runs in all; latency is the median, spread is p10-p90")
    header = machine_header(command, args.repeats, repeats_line, threads=args.threads) + (
        f"\n- profiling: {args.threads} threads; each round visits every measurement of the run in a fresh random "
        "order; a round at another speed than the others (beyond about +-5%) is run again, up to twice the rounds, "
        "and only the largest group of rounds at one steady speed is stored; 0.5 s burn-in first; fixed seeds; "
        "glibc malloc's mmap and trim thresholds fixed (`nas.measure.timing.steady_allocator`)")
    main_cols = ["space", "device", "threads", "resolutions", "method", "heldout_n", "heldout_within10_pct",
                 "heldout_mape_pct", "cv_mape_pct", "lut_only_mape_pct", "meets_target", "noise_remeasure_within10_pct",
                 "noise_remeasure_mape_pct", "noise_spread_p10_p90_pct", "drift_pct", "rounds_run", "rounds_kept",
                 "heldout_later_run_within10_pct",
                 "heldout_later_run_mape_pct"]
    cost_cols = ["space", "device", "median_subnet_ms", "block_timings", "subnet_timings", "profiling_blocks_s",
                 "profiling_s", "fit_s"]
    body = "\n\n".join([
        "Predictor accuracy on held-out subnets (never used in the fit), next to the measurement noise. "
        "Target: at least 90% within +-10% and MAPE at most 5%.",
        markdown_table(rows, main_cols),
        "- `heldout_*`: the fitted predictor against the measured median of the held-out subnets, timed in the same "
        "profiling run as the training subnets and the block table (interleaved rounds) but never used in the fit.\n"
        "- `noise_remeasure_*`: a second, separate run timing the same held-out subnets, against the first: how far "
        "two honest measurements disagree on this machine (the floor for any predictor).\n"
        "- `drift_pct`: in the first/second run, how much slower the machine was in its slowest round than in its "
        "fastest (speed measured by every timing of the run alike); `rounds_run`/`rounds_kept`: rounds run and "
        "rounds stored, the largest group at one steady speed (a round at another speed is run again, up to "
        "twice the rounds asked for).\n"
        "- `heldout_later_run_*`: the predictor against that second run: the error a user sees measuring a chosen "
        "subnet at another time; it includes the machine's drift between runs.\n"
        "- `noise_spread_p10_p90_pct`: median over those subnets of (p90 - p10) / median of the repeated runs.\n"
        f"- `cv_mape_pct`: {args.folds}-fold cross-validation over the training subnets (what `samnas latency fit` reports); "
        "`lut_only_mape_pct`: the plain sum of block timings on the held-out subnets.\n"
        "- `method`: the candidate chosen by CV (lut, lut_scaled = LUT x one factor, lut_linear = LUT parts and block count, linear per resolution, lut_gbr = LUT corrected by "
        "gradient boosting).",
        "What the predictor cost to build:",
        markdown_table(rows, cost_cols),
        "Subnets are extracted (physically sliced weights), batch 1, random weights, image encoder only; "
        "block kinds are timed as standalone blocks with the same shapes.",
    ])
    path = write_results(args.out_topic, "Latency predictors: held-out accuracy vs. measurement noise", header, body,
                         rows)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
