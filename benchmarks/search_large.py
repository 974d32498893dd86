"""Benchmark for the search on a full-size space: the default sampler against random search on ViT-B.

``benchmarks/search.py`` measures every sampler on ``sam_micro`` against a reference front of
thousands of evaluated configs. On ViT-B such a pool is out of reach on a CPU (a trial costs
seconds), so this script asks the narrower question of issue 15: at ``--trials`` trials, does
the default sampler beat random search, seed by seed, and what does a trial cost?

On ``--space`` (default ``sam_vit_b``) at one ``--resolution`` (default 512 px), with the
weights :func:`common.ranked_model` gives (random weights standing in for a checkpoint on ViT-B),
quality from the fidelity evaluator on ``--images`` held-out photos, latency from a ``cpu-torch``
predictor profiled here at ``--threads`` threads, budget ``--budget-frac`` of the full model's
predicted latency. Each sampler runs ``--trials`` trials per seed; reported per run: hypervolume
(quality x ms, reference point quality 0 at the budget), front size, and the mean wall time per
trial split into evaluation, prediction, sampler and the rest; and a trial's cost in full-model
encoder passes at the searched resolution (one pass timed here).

    python benchmarks/search_large.py --threads 1                     # sam_vit_b at 512, 64 trials, seed 0 (~40 min)
    python benchmarks/search_large.py --space sam_micro --resolution 128 --trials 3 --samples 5 --images 2 --topic search_large_smoke
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import torch

from common import PHOTOS, held_out_photos, load_averages, machine_header, markdown_table, ranked_model, reproduce_command, write_results

from nas.studies.cost import PARTS, mean_costs, trial_costs
from nas.search.hypervolume import hypervolume_2d
from nas.latency import ProfileSettings, fit_device, load_predictor, profile_device
from nas.latency.profile import restrict_resolutions
from nas.search.pareto import load_points, pareto_front
from nas.quality import make_evaluator
from nas.search.run import SearchSettings, run_search
from nas.search.samplers import DEFAULT_SAMPLER, SAMPLERS
from nas.measure.timing import time_callable
from search_spaces.space import SearchSpace
from supernet.elastic.extract import extract


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sam_vit_b")
    parser.add_argument("--resolution", type=int, default=512, help="input side searched (default 512)")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--samplers", nargs="+", default=[DEFAULT_SAMPLER, "random"], choices=SAMPLERS)
    parser.add_argument("--budget-frac", type=float, default=0.7,
                        help="budget as a fraction of the full model's predicted latency (default 0.7, as `search`)")
    parser.add_argument("--photos", help=f"held-out photo folder (default: {PHOTOS})")
    parser.add_argument("--images", type=int, default=4, help="photos the fidelity evaluator scores on")
    parser.add_argument("--samples", type=int, default=12, help="subnets profiled to fit the predictor")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topic", default="search_vit_b")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = load_averages()
    started = time.perf_counter()

    space = restrict_resolutions(SearchSpace.load(args.space), [args.resolution])
    model, _, weights = ranked_model(space.model_type)
    images, images_text = held_out_photos(args.photos, args.images)
    t0 = time.perf_counter()
    evaluator = make_evaluator("fidelity", model, images=images, max_images=args.images)
    reference_s = time.perf_counter() - t0
    tmp = tempfile.TemporaryDirectory(prefix="samnas-search-large-")
    root = Path(tmp.name) / "latency"
    t0 = time.perf_counter()
    profile_device(space, "cpu-torch", ProfileSettings(blocks=True, samples=args.samples, threads=args.threads,
                                                       resolutions=[args.resolution], progress=False), root=root)
    fit_device("cpu-torch", root=root, space=space.name)
    latency = load_predictor("cpu-torch", space=space.name, root=root)
    profile_s = time.perf_counter() - t0
    full = space.largest()
    budget = round(args.budget_frac * latency.predict_ms(full), 2)
    x = torch.randn(1, 3, args.resolution, args.resolution, generator=torch.Generator().manual_seed(0))
    encoder = extract(model, full).image_encoder.eval()
    with torch.inference_mode():
        full_pass = time_callable(lambda: encoder(x), repeats=3, warmup=1)
    print(f"profiled in {profile_s:.0f} s, budget {budget} ms, full pass {full_pass.median_ms:.0f} ms", flush=True)

    rows = []
    for seed in args.seeds:
        for sampler in args.samplers:
            db = Path(tmp.name) / f"{sampler}-s{seed}.db"
            storage = f"sqlite:///{db}"
            settings = SearchSettings(space=space.name, device="cpu-torch", budget_ms=budget, trials=args.trials,
                                      sampler=sampler, seed=seed, storage=storage)
            t0 = time.perf_counter()
            run_search(settings, model, space, evaluator, latency, progress=False)
            wall = time.perf_counter() - t0
            points = load_points(storage)
            trials = optuna.load_study(study_name=settings.study_name, storage=storage).get_trials(deepcopy=False)
            costs = mean_costs(trial_costs(trials))
            hv = hypervolume_2d([p.quality for p in points], [p.predicted_ms for p in points], budget)
            rows.append({"seed": seed, "sampler": sampler + (" (default)" if sampler == DEFAULT_SAMPLER else ""),
                         "trials": len(points), "hv": round(hv, 3), "front": len(pareto_front(points)),
                         "best_quality": round(max((p.quality for p in points if p.feasible), default=0.0), 4),
                         "search_s": round(wall), "s_per_trial": round(costs["wall_s"], 2),
                         **{k: round(costs[k], 3) for k in PARTS},
                         "full_passes_per_trial": round(costs["wall_s"] * 1000 / full_pass.median_ms, 2)})
            print(rows[-1], flush=True)

    checks = []
    for seed in args.seeds:
        by = {r["sampler"].split(" ")[0]: r["hv"] for r in rows if r["seed"] == seed}
        if DEFAULT_SAMPLER in by and "random" in by:
            win = by[DEFAULT_SAMPLER] > by["random"]
            checks.append(f"seed {seed}: {DEFAULT_SAMPLER} HV {by[DEFAULT_SAMPLER]:.3f} vs random {by['random']:.3f} "
                          f"({'+' if win else ''}{100 * (by[DEFAULT_SAMPLER] / by['random'] - 1):.1f}%): "
                          f"{'beats' if win else 'does NOT beat'} random")
    command = reproduce_command("search_large.py", argv)
    header = machine_header(command, args.trials, threads=args.threads, repeats_line=(
        f"- repeats: {args.trials} trials per sampler and seed (seeds {', '.join(map(str, args.seeds))}); one full-model "
        f"encoder pass timed as the median of 3 runs"))
    header += (f"\n- load average (1/5/15 min): {load_start} at the start, {load_averages()} at the end; whole run {time.perf_counter() - started:.0f} s"
               f"\n- model: {space.model_type} (`{args.space}` at {args.resolution} px); weights: {weights}"
               f"\n- quality: fidelity evaluator (agreement with the full model at its native input side) on "
               f"{images_text}; its reference outputs took {reference_s:.0f} s once per search set-up, not per trial"
               f"\n- latency: `cpu-torch` predictor profiled here ({args.samples} subnets + block table, "
               f"{profile_s:.0f} s, CV MAPE {latency.report.part('encoder').mape_pct:.1f}%); budget {budget} ms "
               f"({args.budget_frac:g} x the full model's prediction); one full-model encoder pass at "
               f"{args.resolution} px: {full_pass.median_ms:.0f} ms")
    body = "\n".join([
        "Hypervolume in quality x predicted ms over the feasible region, reference point (quality 0, budget). No "
        "reference front: on this CPU a pool of thousands of ViT-B evaluations is out of reach, so the comparison "
        "is against random search at the same number of trials. `s_per_trial` splits into `eval_s` (quality), "
        "`predict_s` (latency prediction), `sample_s` (the sampler) and `other_s` (FLOP counting, storage); "
        "`full_passes_per_trial`: a trial's wall time over one full-model encoder pass at the same resolution.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
        *[f"- {c}" for c in checks],
    ])
    path = write_results(args.topic, f"Search on {args.space} at {args.resolution} px: default sampler against random",
                         header, body, rows)
    print(path.read_text())
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
