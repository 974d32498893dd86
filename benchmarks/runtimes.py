"""Benchmark: the runtimes this CPU offers, and whether the front a search finds depends on the runtime.

Two parts, each its own table:

* **runtimes** (``results/runtimes.md``): each model's full image encoder (random weights) on every installed
  runtime and precision (:func:`nas.latency.runtimes.installed_cases`: PyTorch fp32 and bf16 autocast, ONNX
  Runtime fp32, OpenVINO fp32 and bf16, and every block int8 on each), at each ``--threads``, in interleaved
  rounds; each row's speed-up over PyTorch fp32 and its embeddings' cosine and relative L2 error against
  PyTorch fp32 on the same input. Export and compile time are not counted.
* **fronts** (``results/runtimes_fronts.md``): the same ``sam_micro`` search (seed, trials, evaluator) on two
  devices (default ``cpu-torch`` and ``cpu-openvino-bf16``), each predictor profiled here and each budget at the
  same fraction of its own full model's prediction; quality is fidelity on held-out photos, scored as the
  device computes (bf16 masks on the bf16 device). Every front subnet of both searches is then **measured** on
  both devices in the same interleaved rounds: do the fronts differ, and how fast does each front's subnets run
  on the other runtime?

    python benchmarks/runtimes.py --part runtimes                  # ViT-B at 512 and sam_micro, 1 and 2 threads
    python benchmarks/runtimes.py --part fronts --trials 48 --seeds 0 1 2
    python benchmarks/runtimes.py --part runtimes --models sam_micro:128 --threads 1 --rounds 1 --repeats 1 --topic runtimes_smoke   # smoke test
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import held_out_photos, load_averages, machine_header, markdown_table, ranked_model, reproduce_command, write_results

from nas.latency import ProfileSettings, fit_device, load_predictor, profile_device
from nas.latency.probe import backend_build
from infra.threads import torch_threads
from nas.latency.profile import restrict_resolutions
from nas.latency.runtimes import compare_runtimes, decoder_runtimes, installed_cases
from nas.search.pareto import load_points, pareto_front
from nas.quality import make_evaluator
from nas.search.run import SearchSettings, run_search
from nas.measure.timing import time_rounds
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

TARGET_SPEEDUP, TARGET_COSINE = 4.0, 0.999  # OpenVINO bf16 on ViT-B at 512 px, 1 thread (issue 25)


DECODER_PART = "decoder (1 point + padding, mask input, 300x400 photo)"


def runtime_rows(models: list[str], decoders: list[str], threads: list[int], rounds: int, repeats: int) -> list[dict]:
    """One row per (model, part, threads, runtime), fastest first within each (model, part, threads)."""
    rows = []
    jobs = [(m, "encoder") for m in models] + [(m, DECODER_PART) for m in decoders]
    for item, part in jobs:
        name, res = item.split(":")
        space = SearchSpace.load(name)
        for n in threads:
            t0 = time.perf_counter()
            run = compare_runtimes if part == "encoder" else decoder_runtimes
            result = run(space, installed_cases(), threads=n, resolution=int(res), rounds=rounds, repeats=repeats)
            print(f"{name} {part} at {res} px, {n} thread(s): {time.perf_counter() - t0:.0f} s", flush=True)
            for r in result:
                rows.append({"model": f"{space.model_type} at {res} px", "part": part, "threads": n,
                             "runtime": r.case.label,
                             "median_ms": round(r.timing.median_ms, 2),
                             "p10_p90_ms": f"{r.timing.p10_ms:.2f}-{r.timing.p90_ms:.2f}",
                             "runs": r.timing.repeats, "x_torch_fp32": round(r.speedup, 2),
                             "cosine_to_fp32": round(r.cosine, 6), "rel_l2_to_fp32": round(r.rel_l2, 4)})
    return rows


def runtimes_part(args, argv) -> Path:
    started, load_start = time.perf_counter(), load_averages()
    rows = runtime_rows(args.models, args.decoders, args.threads, args.rounds, args.repeats)
    ov = [r for r in rows if r["model"].startswith("vit_b at 512") and r["part"] == "encoder" and r["threads"] == 1
          and r["runtime"] == "cpu-openvino-bf16"]
    verdict = (f"{ov[0]['x_torch_fp32']:.2f}x, cosine {ov[0]['cosine_to_fp32']:.6f}: "
               + ("met" if ov[0]["x_torch_fp32"] >= TARGET_SPEEDUP and ov[0]["cosine_to_fp32"] >= TARGET_COSINE
                  else "NOT met") if ov else "not measured in this run")
    header = machine_header(reproduce_command("runtimes.py", argv), args.repeats, threads=None, repeats_line=(
        f"- repeats: at least {args.repeats} timed runs per row over {args.rounds} interleaved rounds (every "
        "runtime of a model and thread count once per round, in a fresh random order; a round where the whole "
        "machine ran at another speed is run again), after warm-up; latency is the median, spread p10-p90"))
    header += (f"\n- threads: as the `threads` column says (every runtime's intra-op threads)"
               f"\n- weights: **random weights** (latency and the error against fp32 do not depend on trained values)"
               f"\n- load average (1/5/15 min): {load_start} at the start, {load_averages()} at the end; whole run "
               f"{time.perf_counter() - started:.0f} s")
    body = "\n".join([
        "Each model's full image encoder (and the decoder where `part` says so: SAM's ONNX contract, int8 "
        "does not apply) on every runtime and precision installed here. `x_torch_fp32`: "
        "speed-up over PyTorch fp32 in the same rounds (> 1 is faster); `cosine_to_fp32`, `rel_l2_to_fp32`: the "
        "embeddings against PyTorch fp32 on the same input. bf16: PyTorch autocast, OpenVINO's inference "
        "precision hint; int8 blocks: every encoder block's linear layers dynamically quantized (PyTorch's own; "
        "for ONNX Runtime and OpenVINO, the int8 ONNX that `samnas export` writes).", "",
        markdown_table(rows, list(rows[0])), "",
        f"- **Acceptance (OpenVINO bf16, ViT-B encoder at 512 px, 1 thread: >= {TARGET_SPEEDUP:g}x PyTorch fp32, "
        f"cosine >= {TARGET_COSINE}): {verdict}**"])
    return write_results(args.topic, "Runtimes on this CPU: the full encoder on each runtime and precision",
                         header, body, rows)


def profile_and_search(space, device, args, model, evaluator, tmp: Path) -> dict:
    """Profile and fit ``device`` here, then search once per seed; the front points, predictor and budget."""
    root = tmp / "latency"
    t0 = time.perf_counter()
    profile_device(space, device, ProfileSettings(blocks=True, samples=args.samples, threads=1, progress=False),
                   root=root)
    fit_device(device, root=root, space=space.name)
    latency = load_predictor(device, space=space.name, root=root)
    budget = round(args.budget_frac * latency.predict_ms(space.largest()), 3)
    out = {"latency": latency, "budget": budget, "profile_s": time.perf_counter() - t0, "fronts": {}}
    for seed in args.seeds:
        storage = f"sqlite:///{tmp / f'{device}-s{seed}.db'}"
        settings = SearchSettings(space=space.name, device=device, budget_ms=budget, trials=args.trials, seed=seed,
                                  storage=storage)
        run_search(settings, model, space, evaluator, latency, progress=False)
        out["fronts"][seed] = [p for p in pareto_front(load_points(storage)) if p.feasible]
        print(f"{device} seed {seed}: {len(out['fronts'][seed])} front points", flush=True)
    return out


def measure_on(devices: list[str], space: SearchSpace, configs: dict[str, SubnetConfig], rounds: int) -> dict:
    """``{device: {config key: measured median ms}}``, every config on every device, interleaved per device."""
    measured = {}
    with torch_threads(1):
        for device in devices:
            build, sync, _ = backend_build(device, space, 1)
            keys = list(configs)
            timed = time_rounds([build(configs[k]) for k in keys], rounds=rounds, repeats=rounds, warmup=rounds,
                                sync=sync, min_seconds=0.5, shuffle_seed=0)
            measured[device] = dict(zip(keys, (t.median_ms for t in timed.timings)))
    return measured


def fronts_part(args, argv) -> Path:
    started, load_start = time.perf_counter(), load_averages()
    torch.set_num_threads(1)
    space = SearchSpace.load(args.space)
    space = restrict_resolutions(space, [args.resolution]) if args.resolution else space
    model, _, weights = ranked_model(space.model_type)
    images, images_text = held_out_photos(None, args.images)
    evaluator = make_evaluator("fidelity", model, images=images, max_images=args.images)
    with tempfile.TemporaryDirectory(prefix="samnas-runtime-fronts-") as tmp:
        runs = {d: profile_and_search(space, d, args, model, evaluator, Path(tmp)) for d in args.devices}
        configs = {p.config: p.subnet for run in runs.values() for f in run["fronts"].values() for p in f}
        full = space.largest()
        configs.setdefault(full.key, full)
        measured = measure_on(args.devices, space, configs, args.rounds)
    rows = front_rows(runs, measured, args.devices)
    header = machine_header(reproduce_command("runtimes.py", argv), args.rounds, threads=1, repeats_line=(
        f"- repeats: searches of {args.trials} trials, seeds {', '.join(map(str, args.seeds))}; each front subnet "
        f"measured on each device over {args.rounds} interleaved rounds (>= 0.5 s of timed runs), after warm-up"))
    header += (f"\n- model: {space.model_type} ({space.name}); weights: {weights}"
               f"\n- quality: fidelity to the full fp32 model on {images_text}, scored as each device computes "
               f"(bf16 device: bf16 autocast masks)"
               + "".join(f"\n- `{d}`: predictor profiled here ({args.samples} subnets + block table, "
                         f"{r['profile_s']:.0f} s, CV MAPE {r['latency'].report.part('encoder').mape_pct:.1f}%), "
                         f"budget {r['budget']} ms = {args.budget_frac:g} x its full model's prediction"
                         for d, r in runs.items())
               + f"\n- load average (1/5/15 min): {load_start} at the start, {load_averages()} at the end; whole run "
               f"{time.perf_counter() - started:.0f} s")
    body = fronts_body(rows, runs, measured, args.devices, full.key)
    return write_results(args.topic, f"Fronts per runtime: {space.name} searched on {' and '.join(args.devices)}",
                         header, body, rows)


def front_rows(runs: dict, measured: dict, devices: list[str]) -> list[dict]:
    """One row per front point: which search found it, its quality, and its measured ms on every device."""
    rows = []
    for device, run in runs.items():
        for seed, front in run["fronts"].items():
            for p in sorted(front, key=lambda q: q.predicted_ms):
                cfg = p.subnet
                row = {"searched_on": device, "seed": seed, "quality": round(p.quality, 4),
                       "predicted_ms": round(p.predicted_ms, 2), "resolution": cfg.resolution,
                       "blocks_kept": len(cfg.kept_blocks)}
                for d in devices:
                    row[f"ms_on_{d}"] = round(measured[d][p.config], 2)
                    row[f"within_budget_on_{d}"] = measured[d][p.config] <= runs[d]["budget"]
                row["config"] = p.config
                rows.append(row)
    return rows


def fronts_body(rows: list[dict], runs: dict, measured: dict, devices: list[str], full_key: str) -> str:
    """The per-point table and the summary: overlap of the fronts, and each front's best quality within each
    device's budget when measured there."""
    sets = {d: {p.config for f in r["fronts"].values() for p in f} for d, r in runs.items()}
    a, b = devices[:2]
    lines = ["Every front point of each search, measured on every device (ms, median). `within_budget_on_D`: "
             "measured at or below D's budget.", "",
             markdown_table([{k: v for k, v in r.items() if k != "config"} for r in rows],
                            [k for k in rows[0] if k != "config"]) if rows else "(no front points)", "",
             f"- fronts share {len(sets[a] & sets[b])} of {len(sets[a] | sets[b])} distinct subnets "
             f"({len(sets[a])} on {a}, {len(sets[b])} on {b}, all seeds).",
             "- full model measured: " + ", ".join(f"{measured[d][full_key]:.2f} ms on {d}" for d in devices)
             + f" ({measured[a][full_key] / measured[b][full_key]:.2f}x {a} / {b})."]
    for target in devices:
        budget = runs[target]["budget"]
        for source in devices:
            for seed in runs[source]["fronts"]:
                ok = [r for r in rows if r["searched_on"] == source and r["seed"] == seed
                      and r[f"within_budget_on_{target}"]]
                best = max((r["quality"] for r in ok), default=None)
                lines.append(f"- on {target} (budget {budget} ms), seed {seed}: best measured-feasible quality of "
                             f"the {source} front: {best if best is not None else 'none'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("runtimes", "fronts"), default="runtimes")
    parser.add_argument("--models", nargs="+", default=["sam_vit_b:512", "sam_micro:256"],
                        help="SPACE:RESOLUTION pairs whose full encoder is timed (runtimes part)")
    parser.add_argument("--decoders", nargs="*", default=["sam_micro:256"],
                        help="SPACE:RESOLUTION pairs whose prompt encoder + mask decoder is timed (runtimes part)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (runtimes part)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=6, help="least timed runs per row (runtimes part)")
    parser.add_argument("--space", default="sam_micro", help="space searched (fronts part)")
    parser.add_argument("--resolution", type=int, help="search one input side only (fronts part)")
    parser.add_argument("--devices", nargs=2, default=["cpu-torch", "cpu-openvino-bf16"])
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget-frac", type=float, default=0.6)
    parser.add_argument("--images", type=int, default=6, help="held-out photos the fidelity evaluator scores")
    parser.add_argument("--samples", type=int, default=30, help="subnets profiled per device (fronts part)")
    parser.add_argument("--topic", help="results/<topic>.md (default: runtimes or runtimes_fronts)")
    args = parser.parse_args(argv)
    args.topic = args.topic or ("runtimes" if args.part == "runtimes" else "runtimes_fronts")
    path = runtimes_part(args, argv) if args.part == "runtimes" else fronts_part(args, argv)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
