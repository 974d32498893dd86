"""Benchmark for int8 as a search dimension: does searching precision buy a faster front at the same quality?

Two searches with the same budget of trials, seed, evaluator and latency predictor, on one
device (``--device``, default ``cpu-torch``) at one resolution:

* **fp32 only**: ``--space`` with every block's precisions cut to ``[fp32]``;
* **with precision**: ``--space`` as it is (every kept block fp32 or int8).

The predictor is profiled here (block table at fp32 and int8, ``--samples`` subnets) into a
temporary folder, at ``--threads`` threads. Quality is the fidelity evaluator (agreement with
the full fp32 model's masks, label-free) on held-out real photos (``--photos``, default the
first ``--images`` of ``../shared/data/coco128/images/val2017``; synthetic scenes when that
folder is missing, and the table says so). An int8 trial is scored on its subnet extracted and
quantized, as it would run.

From each search's front, every subnet that keeps at least ``--keep`` (default 95%) of the full
model's quality is **measured** (not predicted): its image encoder on the device's backend, as
profiling times it (PyTorch eager, or an exported ONNX file in ONNX Runtime, int8 blocks
quantized the way ``samnas export`` does), all candidates of all seeds interleaved in the same
rounds. The fastest measured one per search is compared.

Acceptance (issue 16): the fastest front subnet keeping >= 95% of the full model's quality is at
least 1.3x faster with the precision dimension than fp32-only, same search budget, measured.

    python benchmarks/int8_front.py --threads 1                                   # sam_micro, cpu-torch, 3 seeds
    python benchmarks/int8_front.py --device cpu-onnxruntime --threads 1
    python benchmarks/int8_front.py --space sam_vit_b_int8 --resolution 512 --device cpu-onnxruntime \\
        --trials 48 --seeds 0 --images 4 --samples 12 --threads 1                 # ViT-B (about an hour)
    python benchmarks/int8_front.py --resolution 128 --trials 3 --seeds 0 --images 2 --samples 5 --rounds 1 --topic int8_front_smoke   # smoke test
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import PHOTOS, held_out_photos, load_averages, machine_header, markdown_table, ranked_model, reproduce_command, write_results

from nas.latency import ProfileSettings, fit_device, load_predictor, profile_device
from nas.latency.probe import backend_build
from infra.threads import torch_threads
from nas.latency.profile import restrict_resolutions
from nas.search.pareto import load_points, pareto_front
from nas.quality import make_evaluator
from nas.search.run import SearchSettings, evaluate_config, run_search
from nas.search.samplers import DEFAULT_SAMPLER
from nas.measure.timing import time_rounds
from search_spaces.space import SearchSpace

TARGET_SPEEDUP = 1.3


def fp32_only(space: SearchSpace) -> SearchSpace:
    """``space`` (same name, so one predictor serves both) with every block's precisions cut to ``[fp32]``."""
    data = space.to_dict()
    data["defaults"] = {**data.get("defaults", {}), "precisions": ["fp32"]}
    data["overrides"] = {k: {kk: vv for kk, vv in v.items() if kk != "precisions"}
                         for k, v in (data.get("overrides") or {}).items()}
    return SearchSpace.from_dict(data, source=f"{space.source} (fp32 only)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sam_micro_int8", help="a space with int8 among its precisions")
    parser.add_argument("--device", default="cpu-torch", choices=["cpu-torch", "cpu-onnxruntime"])
    parser.add_argument("--resolution", type=int, default=None, help="input side searched (default: the largest)")
    parser.add_argument("--trials", type=int, default=64, help="trials of each search (the same for both)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER)
    parser.add_argument("--budget-frac", type=float, default=1.0,
                        help="latency budget as a fraction of the full fp32 model's prediction (default 1.0)")
    parser.add_argument("--keep", type=float, default=0.95, help="quality kept, as a fraction of the full model's")
    parser.add_argument("--photos", help=f"held-out photo folder (default: {PHOTOS})")
    parser.add_argument("--images", type=int, default=6, help="photos the fidelity evaluator scores on")
    parser.add_argument("--samples", type=int, default=40, help="subnets profiled to fit the predictor")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds of the measured subnets")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="timed seconds per subnet, over all rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topic", default="int8_front")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = load_averages()
    started = time.perf_counter()

    base = SearchSpace.load(args.space)
    if "int8" not in {p for b in base.blocks for p in b.precisions}:
        parser.error(f"--space {args.space}: no block may run int8 (expected a space like sam_micro_int8)")
    resolution = args.resolution or max(base.resolutions)
    space = restrict_resolutions(base, [resolution])
    spaces = {"fp32 only": fp32_only(space), "with precision": space}
    model, _, weights = ranked_model(space.model_type)
    images, images_text = held_out_photos(args.photos, args.images)
    evaluator = make_evaluator("fidelity", model, images=images, max_images=args.images)

    tmp = tempfile.TemporaryDirectory(prefix="samnas-int8-front-")
    root = Path(tmp.name) / "latency"
    t0 = time.perf_counter()
    profile_device(space, args.device, ProfileSettings(blocks=True, samples=args.samples, threads=args.threads,
                                                       resolutions=[resolution], progress=False), root=root)
    fit_device(args.device, root=root, space=space.name)
    latency = load_predictor(args.device, space=space.name, root=root)
    profile_s = time.perf_counter() - t0
    full = space.validate(fp32_only(space).largest().replace(resolution=resolution))
    full_int8 = space.validate(full.with_precision("int8"))
    budget = round(args.budget_frac * latency.predict_ms(full), 3)
    full_quality = evaluate_config(evaluator, model, full).score
    full_int8_quality = evaluate_config(evaluator, model, full_int8).score
    floor = args.keep * full_quality
    print(f"profiled {args.device} in {profile_s:.0f} s; budget {budget} ms; full model quality {full_quality:.4f}, "
          f"all int8 {full_int8_quality:.4f}", flush=True)

    runs, search_s = {}, {}
    for name, sp in spaces.items():
        for seed in args.seeds:
            db = Path(tmp.name) / f"{name.replace(' ', '_')}-s{seed}.db"
            storage = f"sqlite:///{db}"
            settings = SearchSettings(space=sp.name, device=args.device, budget_ms=budget, trials=args.trials,
                                      sampler=args.sampler, seed=seed, storage=storage)
            t0 = time.perf_counter()
            run_search(settings, model, sp, evaluator, latency, progress=False)
            search_s[(name, seed)] = time.perf_counter() - t0
            front = pareto_front(load_points(storage))
            runs[(name, seed)] = [p for p in front if p.quality >= floor]
            print(f"{name} seed {seed}: {len(front)} front points, {len(runs[(name, seed)])} keep >= "
                  f"{args.keep:.0%}, {search_s[(name, seed)]:.0f} s", flush=True)

    # Measure every candidate (and the full model at fp32 and all int8) in the same interleaved rounds.
    configs = {full.key: full, full_int8.key: full_int8}
    for cands in runs.values():
        for p in cands:
            configs.setdefault(p.config, p.subnet)
    keys = list(configs)
    with torch_threads(args.threads), torch.random.fork_rng(devices=[]):
        build, sync, _ = backend_build(args.device, space, args.threads)
        fns = [build(configs[k]) for k in keys]
        timed = time_rounds(fns, rounds=args.rounds, repeats=args.rounds, warmup=args.rounds, sync=sync,
                            min_seconds=args.min_seconds, shuffle_seed=0)
    measured = dict(zip(keys, (t.median_ms for t in timed.timings)))

    rows, csv_rows, speedups = [], [], []
    for seed in args.seeds:
        best = {}
        for name in spaces:
            cands = runs[(name, seed)]
            best[name] = min(cands, key=lambda p: measured[p.config]) if cands else None
        for name, p in best.items():
            cfg = p.subnet if p else None
            row = {"seed": seed, "search": name, "trials": args.trials,
                   "search_s_per_trial": round(search_s[(name, seed)] / args.trials, 2),
                   "candidates": len(runs[(name, seed)]),
                   "quality": round(p.quality, 4) if p else "-",
                   "predicted_ms": round(p.predicted_ms, 2) if p else "-",
                   "measured_ms": round(measured[p.config], 2) if p else "-",
                   "blocks_kept": len(cfg.kept_blocks) if cfg else "-",
                   "int8_blocks": len(cfg.int8_blocks()) if cfg else "-",
                   "config": p.config if p else ""}
            csv_rows.append(row)
            rows.append({k: v for k, v in row.items() if k != "config"})
        a, b = best["fp32 only"], best["with precision"]
        if a and b:
            speedups.append(measured[a.config] / measured[b.config])
            rows[-1]["speedup_vs_fp32_only"] = f"**{speedups[-1]:.2f}x**"
            rows[-2]["speedup_vs_fp32_only"] = "1"
        else:
            rows[-1]["speedup_vs_fp32_only"] = rows[-2]["speedup_vs_fp32_only"] = "-"
    met = bool(speedups) and len(speedups) == len(args.seeds) and min(speedups) >= TARGET_SPEEDUP

    command = reproduce_command("int8_front.py", argv)
    header = machine_header(command, args.rounds, threads=args.threads, repeats_line=(
        f"- repeats: searches {args.trials} trials each, seeds {', '.join(map(str, args.seeds))}; measured latency "
        f"is the median over {args.rounds} interleaved rounds (every measured subnet once per round, at least "
        f"{args.min_seconds} s of timed runs each), after warm-up"))
    header += (f"\n- load average (1/5/15 min): {load_start} at the start, {load_averages()} at the end; whole run {time.perf_counter() - started:.0f} s"
               f"\n- model: {space.model_type} ({args.space}) at {resolution} px; weights: {weights}"
               f"\n- quality: fidelity to the full fp32 model on {images_text}"
               f"\n- latency: device `{args.device}`, predictor profiled here ({args.samples} subnets + block table "
               f"at fp32 and int8, {profile_s:.0f} s; CV MAPE "
               f"{latency.report.part('encoder').mape_pct:.1f}%); budget {budget} ms "
               f"({args.budget_frac:g} x the full fp32 model's prediction); sampler `{args.sampler}`")
    full_rows = [{"model": "full, fp32", "quality": round(full_quality, 4),
                  "measured_ms": round(measured[full.key], 2)},
                 {"model": "full, every block int8", "quality": round(full_int8_quality, 4),
                  "measured_ms": round(measured[full_int8.key], 2)}]
    columns = ["seed", "search", "trials", "search_s_per_trial", "candidates", "quality", "predicted_ms",
               "measured_ms", "blocks_kept", "int8_blocks", "speedup_vs_fp32_only"]
    body = "\n".join([
        f"Per seed: the fastest (measured) front subnet keeping >= {args.keep:.0%} of the full model's quality "
        f"(quality >= {floor:.4f}), from a search over fp32 only and from a search over fp32 + int8 per block, "
        "same trials, seed, evaluator and predictor. `candidates`: front subnets at that quality, all measured.",
        "",
        markdown_table(rows, columns),
        "",
        markdown_table(full_rows, list(full_rows[0])),
        "",
        f"- **Acceptance (with precision >= {TARGET_SPEEDUP}x faster than fp32 only at >= {args.keep:.0%} quality, "
        f"measured, every seed): {'met' if met else 'NOT met'}** (speedups "
        f"{', '.join(f'{s:.2f}x' for s in speedups) or 'none'}"
        + (f"; mean {statistics.fmean(speedups):.2f}x" if speedups else "") + ").",
        f"- full model, all blocks int8 against fp32 (measured): "
        f"{measured[full.key] / measured[full_int8.key]:.2f}x.",
    ])
    path = write_results(args.topic, f"int8 in the search: {space.model_type} at {resolution} px on {args.device}",
                         header, body, csv_rows)
    print(path.read_text())
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
