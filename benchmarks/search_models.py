"""Experiment: the surrogate sampler's quality models (``SurrogateSampler(model=...)``,
``nas/search/samplers/quality_model.py``) compared on real photos, for issue 28's stalled seeds.

On ``sam_micro`` with the packaged reference weights ranked as ``benchmarks/search.py`` ranks them; latency from
a ``cpu-torch`` predictor profiled quickly at ``--threads`` (cached under results/scratch/latency/); quality = the
fidelity evaluator on the TUNING photos: photos 6-11 of the sorted coco128 val folder (photos 0-5 stay held out
for ``benchmarks/search.py``'s table, so what is chosen here is checked there on photos it never saw).

Per budget of ``--budget-frac`` (of the full model's predicted latency): a reference pool of evaluated configs
(``nas.search.pool_front``), then every ``--models`` variant for every ``--seeds`` seed up to the largest of
``--trials`` trials (an in-memory Optuna study; no sampler here reads the trial budget, so the first N trials of a
longer run are exactly an N-trial run). Every quality goes through one ``QualityMemo`` JSON under results/scratch/
(flushed every 50 new evaluations), so the pool and the runs never score a config twice, and finished runs are
kept in a JSON beside it (keyed by the sampler's source), so an interrupted experiment resumes where it stopped.

Reported per variant x budget x trial count: the hypervolume ratio to the reference front (the pool pooled with
every run's trials at that budget), mean, min and each seed's; and, at 32 trials, the Spearman rank correlation
between the model's predictions (fitted on the run's first 32 trials) and the true qualities of the pool's configs
the run did not try: how well the model predicts configs away from its trials.

    OMP_NUM_THREADS=1 python benchmarks/search_models.py --threads 1 --budget-frac 0.6
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from common import RESULTS, TUNING_COUNT, TUNING_START, held_out_photos, load_averages, machine_header, markdown_table, ranked_model, \
    reproduce_command, shown_path, write_results

from infra.errors import UserError
from infra.fileio import atomic_write_text
from nas.latency import load_predictor, profile_and_fit_quick
from nas.quality import make_evaluator
from nas.search.hypervolume import hypervolume_2d
from nas.search.pool_front import QualityMemo, build_pool, cache_key, load_or_build, predictor_digest
from nas.search.run import suggest_config
from nas.search.samplers import quality_model, surrogate
from nas.search.samplers.quality_model import MODELS
from nas.search.samplers.surrogate import SurrogateSampler
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.checkpoint import state_digest

SPEARMAN_AT = 32  # trials after which the model's ranking of the pool is measured
SCRATCH = RESULTS / "scratch"


def latency_predictor(threads: int):
    """``(predictor, how it was had)``: the one cached under results/scratch/latency/, else profiled and fitted now."""
    root = SCRATCH / "latency"
    try:
        return load_predictor("cpu-torch", space="sam_micro", root=root), f"cached in `{shown_path(root)}`"
    except UserError:
        print("no cached cpu-torch predictor for sam_micro: profiling this machine (seconds)", flush=True)
        return (profile_and_fit_quick("sam_micro", "cpu-torch", root=root, threads=threads, progress=False),
                f"profiled and fitted in this run, cached in `{shown_path(root)}`")


def run_one(space, latency, budget: float, name: str, seed: int, trials: int, score, pool: list[dict]) -> dict:
    """One search of ``trials`` trials with the quality model ``name``: ``{trials: [[config key, quality, ms]],
    spearman, wall_s}``; ``score(config)`` is the (memoised) quality."""
    from scipy.stats import spearmanr

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=SurrogateSampler(space, latency, budget, seed=seed, model=name))
    out = {"spearman": None}

    def objective(trial):
        config = suggest_config(trial, space)
        trial.set_user_attr("config", config.key)
        return score(config), float(latency.predict_ms(config))

    def at_32(study, trial):
        if trial.number + 1 != SPEARMAN_AT:
            return
        fitted = SurrogateSampler(space, latency, budget, seed=seed, model=name).quality_model(study)
        tried = {t.user_attrs["config"] for t in study.trials}
        held = [r for r in pool if r["config"].key not in tried]
        mean = fitted.predict([r["config"] for r in held], np.array([r["predicted_ms"] for r in held]))
        out["spearman"] = float(spearmanr(mean, [r["quality"] for r in held]).statistic)

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, callbacks=[at_32])
    out["wall_s"] = time.perf_counter() - start
    out["trials"] = [[t.user_attrs["config"], t.values[0], t.values[1]]
                     for t in sorted(study.trials, key=lambda t: t.number)]
    return out


def hv_of(rows, budget: float) -> float:
    """Hypervolume (quality x ms, reference (0, ``budget``)) of ``[key, quality, ms]`` rows within the budget."""
    rows = [r for r in rows if r[2] <= budget]
    return hypervolume_2d([r[1] for r in rows], [r[2] for r in rows], budget)


def budget_rows(args, frac: float, ctx: dict, runs: dict, runs_path: Path) -> tuple[list[dict], dict]:
    """Build (or load) the pool at ``frac``, run every model and seed not yet in ``runs``: ``(per-seed rows, facts)``."""
    space, model, latency, evaluator, memo = ctx["space"], ctx["model"], ctx["latency"], ctx["evaluator"], ctx["memo"]
    budget = round(frac * latency.predict_ms(space.largest()), 2)
    key = {**ctx["key"], "budget_ms": budget,
           "pool": {"random": args.pool_random, "rounds": args.pool_rounds, "per_parent": 6, "seed": 0}}
    start = time.perf_counter()
    pool, pool_path, cached = load_or_build(SCRATCH, key, lambda: build_pool(
        space, model, evaluator, latency, budget, random=args.pool_random, rounds=args.pool_rounds, memo=memo))
    print(f"{frac:.0%} ({budget} ms): pool of {len(pool)} configs ({'cached' if cached else 'built'}) in "
          f"{time.perf_counter() - start:.0f} s", flush=True)

    def score(config: SubnetConfig) -> float:
        return memo.quality(model, evaluator, config)

    top = max(args.trials)
    for name in args.models:
        for seed in args.seeds:
            tag = f"{name}/{frac}/{seed}"
            if tag in runs and len(runs[tag]["trials"]) >= top:
                continue
            before = len(memo.values)
            runs[tag] = run_one(space, latency, budget, name, seed, top, score, pool)
            runs[tag]["new_evals"] = len(memo.values) - before
            memo.flush()
            atomic_write_text(runs_path, json.dumps(runs))
            print(f"{frac:.0%} {name} seed {seed}: HV@{top} {hv_of(runs[tag]['trials'], budget):.4f}, "
                  f"Spearman@{SPEARMAN_AT} {runs[tag]['spearman']}, {runs[tag]['wall_s']:.0f} s, "
                  f"{runs[tag]['new_evals']} new evaluations", flush=True)
    every = [r for name in args.models for seed in args.seeds for r in runs[f"{name}/{frac}/{seed}"]["trials"]]
    pool_rows = [[r["config"].key, r["quality"], r["predicted_ms"]] for r in pool]
    reference = hv_of(pool_rows + every, budget)
    rows = []
    for name in args.models:
        for n in args.trials:
            for seed in args.seeds:
                run = runs[f"{name}/{frac}/{seed}"]
                value = hv_of(run["trials"][:n], budget)
                rows.append({"budget_frac": frac, "budget_ms": budget, "model": name, "trials": n, "seed": seed,
                             "hv": round(value, 4), "hv_ratio": round(value / reference, 4),
                             "spearman_at_32": "-" if n != SPEARMAN_AT or run["spearman"] is None
                             else round(run["spearman"], 3),
                             "s_per_trial": round(run["wall_s"] / len(run["trials"]), 3)})
    facts = {"frac": frac, "budget": budget, "pool": len(pool), "pool_path": pool_path,
             "pool_hv": hv_of(pool_rows, budget), "reference": reference, "run_trials": len(every)}
    return rows, facts


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per budget x model x trial count: seeds, mean / min / max ratio, each seed's, and the Spearman at 32."""
    out = []
    groups = dict.fromkeys((r["budget_frac"], r["model"], r["trials"]) for r in rows)
    for frac, name, n in groups:
        mine = [r for r in rows if (r["budget_frac"], r["model"], r["trials"]) == (frac, name, n)]
        ratios = [r["hv_ratio"] for r in mine]
        rho = [r["spearman_at_32"] for r in mine if r["spearman_at_32"] != "-"]
        out.append({"budget": f"{frac:.0%}", "model": name + (" (default)" if name == "gp" else ""), "trials": n,
                    "seeds": len(mine), "mean HV ratio": f"{statistics.fmean(ratios):.4f}",
                    "min": f"{min(ratios):.4f}", "max": f"{max(ratios):.4f}",
                    "per seed": " ".join(f"{r['seed']}:{r['hv_ratio']:.3f}" for r in mine),
                    "Spearman@32 mean / min": f"{statistics.fmean(rho):.3f} / {min(rho):.3f}" if rho else "-",
                    "s/trial": f"{statistics.fmean(r['s_per_trial'] for r in mine):.2f}"})
    return out


def context(args) -> dict:
    """The space, ranked model, predictor, evaluator on the tuning photos, quality memo and cache key fields."""
    space = SearchSpace.load("sam_micro")
    model, ckpt, weights = ranked_model("micro")
    latency, latency_text = latency_predictor(args.threads)
    images, photos_text = held_out_photos(args.photos, TUNING_COUNT, start=TUNING_START)
    if not all(isinstance(i, str) for i in images):
        raise UserError(f"--photos {args.photos}: no photos there; the tuning set is photos "
                        f"{TUNING_START}-{TUNING_START + TUNING_COUNT - 1} of a photo folder")
    evaluator = make_evaluator("fidelity", model, images=images, max_images=TUNING_COUNT)
    eval_key = {"kind": "fidelity", "photos": [Path(i).name for i in images],
                "prompts": evaluator.prompts_per_image, "seed": evaluator.seed}
    key = {"space": space.name, "space_file": space.to_dict(), "weights": state_digest(model), "evaluator": eval_key,
           "predictor": predictor_digest(latency, [space.largest(), space.smallest(), space.sample(1), space.sample(2)])}
    memo = QualityMemo(SCRATCH / f"quality_memo_{cache_key({k: key[k] for k in ('space_file', 'weights', 'evaluator')})}.json")
    quality_text = (f"fidelity evaluator (mean mask IoU of {evaluator.prompts_per_image} seeded point prompts per "
                    f"photo against the full model's masks) on the **tuning photos**: {photos_text}")
    return {"space": space, "model": model, "weights": weights, "latency": latency, "latency_text": latency_text,
            "evaluator": evaluator, "key": key, "memo": memo, "quality_text": quality_text}


def sources_digest() -> str:
    """What a finished run depends on in code: the sampler's and quality models' source."""
    text = "".join(Path(m.__file__).read_text() for m in (surrogate, quality_model))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, nargs="+", default=[32, 64], help="trial counts compared")
    parser.add_argument("--budget-frac", type=float, nargs="+", default=[0.6, 0.8],
                        help="budgets as fractions of the full model's predicted latency")
    parser.add_argument("--photos", help="photo folder (default: coco128's val split); photos 6-11 are used")
    parser.add_argument("--pool-random", type=int, default=800, help="random configs drawn for the reference pool")
    parser.add_argument("--pool-rounds", type=int, default=5, help="local-search rounds of the reference pool")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="search_models", help="table name under results/")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_at_start = load_averages()
    ctx = context(args)
    # one file per set of budgets, so that calls for different budgets may run at once
    runs_path = SCRATCH / f"search_models_runs_{cache_key({**ctx['key'], 'code': sources_digest(), 'budgets': args.budget_frac})}.json"
    runs = json.loads(runs_path.read_text()) if runs_path.is_file() else {}
    rows, facts = [], []
    for frac in args.budget_frac:
        frac_rows, frac_facts = budget_rows(args, frac, ctx, runs, runs_path)
        rows += frac_rows
        facts.append(frac_facts)
    ctx["memo"].flush()
    command = f"OMP_NUM_THREADS={args.threads} " + reproduce_command("search_models.py", argv)
    header = machine_header(command, 0, threads=args.threads, repeats_line=(
        "- timing: none; latency is the predictor's (" + ctx["latency_text"] + ")"))
    header += (f"\n- threads: {args.threads} (torch and `OMP_NUM_THREADS`={os.environ.get('OMP_NUM_THREADS', 'unset')});"
               f" load averages (1/5/15 min) {load_at_start} at the start, {load_averages()} at the end\n"
               f"- weights: {ctx['weights']}\n- quality: {ctx['quality_text']}\n"
               f"- seeds {' '.join(map(str, args.seeds))}; trial counts {' '.join(map(str, args.trials))}; "
               f"runs that finished in an earlier call are read from `{shown_path(runs_path)}` (same code and data)")
    pools = "\n".join(
        f"- {f['frac']:.0%} of the full model = {f['budget']} ms: a pool of **{f['pool']} evaluated configs** "
        f"(every uniform shrink, {args.pool_random} random draws, {args.pool_rounds} rounds of local search; "
        f"`{shown_path(f['pool_path'])}`), hypervolume {f['pool_hv']:.4f}; pooled with the runs' {f['run_trials']} "
        f"trials {f['reference']:.4f}, the denominator of that budget's ratios" for f in facts)
    body = f"""These are **tuning photos** (photos {TUNING_START}-{TUNING_START + TUNING_COUNT - 1}): a choice made
on this table is self-consistent only; the held-out check is `benchmarks/search.py` on photos 0-5.
Models (`nas/search/samplers/quality_model.py`): gp = GP on the encoding + predicted ms / budget (the default);
gp-no-ms = the same without the ms feature; gp-log = gp fitted to log(1 - quality); gp-trend = ridge trend on the
gp features, GP on its residuals; per-resolution = gp-trend with the input side one-hot (an offset per side);
summary = per-resolution with the blocks as three shares.

## Reference fronts

{pools}

## Hypervolume ratio to the reference, per model, budget and trial count

`min` is the worst seed: what one user running one seed may get. Spearman@32: rank correlation between the model
fitted on the first 32 trials and the true quality of the pool's configs it did not try.

{markdown_table(summary_rows(rows), list(summary_rows(rows)[0])) if rows else '(no runs)'}
"""
    write_results(args.out, "Surrogate quality models on sam_micro (issue 28)", header, body, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
