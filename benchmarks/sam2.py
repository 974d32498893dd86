"""Benchmark: SAM 2.1 Hiera image encoders beside SAM ViT-B on this CPU: latency, parameters, FLOPs.

For each Hiera space (``sam2_hiera_t``, ``sam2_hiera_s``, ``sam2_hiera_b_plus`` by default), its full
model and three sampled subnets (``SearchSpace.sample(seed)``, fixed seeds), and the full SAM ViT-B
encoder as the reference, at each input side (1024 and 512): the extracted subnet's image path is
timed with PyTorch eager, all models of one side in the same interleaved rounds
(:func:`nas.measure.timing.time_rounds`), so that a slow spell of the machine touches each a little.

What is timed is the image path a user runs once per image: for SAM 2 the Hiera trunk, the FPN neck,
``conv_s0``/``conv_s1`` and ``no_mem_embed`` (``Sam2.embed_images``); for SAM the ViT encoder and its
neck (``image_encoder``). Random weights: latency and size do not depend on weight values.

    python benchmarks/sam2.py --threads 1                       # the table in results/sam2.md (~10 min)
    python benchmarks/sam2.py --spaces sam2_micro --reference none --resolutions 256 --rounds 1 --repeats 1 --topic sam2_smoke
"""
from __future__ import annotations

import argparse
import gc
import sys

import torch

from common import machine_header, markdown_table, reproduce_command, write_results

from nas.measure.timing import time_rounds
from search_spaces.counting import count
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam, build_sam2_supernet
from supernet.elastic.extract import extract

DEFAULT_SPACES = ["sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b_plus"]


def shape_of(space: SearchSpace, config) -> str:
    """``"12/12 blocks, 23 heads, 9216 MLP units"``: what a config keeps of the space's largest."""
    kept = config.kept_blocks
    return (f"{len(kept)}/{len(space.largest().kept_blocks)} blocks, {sum(b.heads for b in kept)} heads, "
            f"{sum(b.mlp for b in kept)} MLP units")


def entries(space_name: str, resolution: int, seeds: list[int], full_only: bool) -> list[dict]:
    """The models of one space to time at ``resolution``: ``{space, subnet, shape, counts, run}`` each."""
    space = SearchSpace.load(space_name)
    sam2 = space.is_sam2
    model = (build_sam2_supernet if sam2 else build_sam)(space.model_type, seed=0).eval()
    configs = [("full", space.largest())] + ([] if full_only else [(f"sample seed {s}", space.sample(s)) for s in seeds])
    x = torch.randn(1, 3, resolution, resolution)
    out = []
    for name, config in configs:
        config = space.validate(config.replace(resolution=resolution))
        sub = extract(model, config).eval()
        run = (lambda s=sub: s.embed_images(x)) if sam2 else (lambda s=sub: s.image_encoder(x))
        out.append({"space": space_name, "subnet": name, "shape": shape_of(space, config),
                    "counts": count(model, config), "run": run})
    return out


def time_side(resolution: int, args) -> list[dict]:
    """Every model at one input side, timed in the same interleaved rounds; one table row each."""
    items = []
    for name in args.spaces:
        items += entries(name, resolution, args.seeds, full_only=False)
    if args.reference != "none":
        items += entries(args.reference, resolution, args.seeds, full_only=True)
    gc.collect()
    with torch.inference_mode():
        result = time_rounds([item["run"] for item in items], rounds=args.rounds, repeats=args.repeats, warmup=1)
    reference_ms = next((t.median_ms for item, t in zip(items, result.timings)
                         if item["space"] == args.reference), None)
    rows = []
    for item, timing in zip(items, result.timings):
        counts = item["counts"]
        rows.append({
            "resolution": resolution, "space": item["space"], "subnet": item["subnet"], "shape": item["shape"],
            "params_M": round(counts.total_params / 1e6, 2), "encoder_params_M": round(counts.encoder_params / 1e6, 2),
            "encoder_GFLOPs": round(counts.encoder_flops / 1e9, 2),
            "median_ms": round(timing.median_ms, 1), "p10_ms": round(timing.p10_ms, 1), "p90_ms": round(timing.p90_ms, 1),
            "spread_pct": round(timing.spread_pct, 1), "runs": timing.repeats,
            "vs_reference": round(timing.median_ms / reference_ms, 3) if reference_ms else "",
        })
        print(rows[-1], flush=True)
    return rows


NOTES = (
    "Random weights (latency, parameters and FLOPs do not depend on weight values). Batch 1, PyTorch eager fp32, "
    "`torch.inference_mode`, extracted subnets with physically sliced weights. All models of one input side were "
    "timed in the same interleaved rounds (each round visits every model once, in a fresh random order); "
    "`median_ms` is the median over the kept rounds' runs, spread is p10-p90. `vs_reference`: median over the full "
    "SAM ViT-B encoder's at the same side. FLOPs follow fvcore's convention (one multiply-add = one flop); "
    "`encoder_*` counts the image path (for SAM 2: trunk, neck, conv_s0/s1), `params_M` the whole model "
    "(with prompt encoder and mask decoder). Subnets are `SearchSpace.sample(seed)` of each space."
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=DEFAULT_SPACES)
    parser.add_argument("--reference", default="sam_vit_b", help="SAM space whose full encoder is timed beside (none: no reference)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model, spread over the rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--topic", default="sam2")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    for resolution in args.resolutions:
        rows += time_side(resolution, args)
    repeats_line = (f"- timing: {args.rounds} interleaved rounds, {args.repeats} timed runs per model in all after 1 "
                    f"warm-up per visit; median and p10-p90 spread")
    header = machine_header(reproduce_command("sam2.py", argv), args.repeats, repeats_line, threads=args.threads)
    write_results(args.topic, "SAM 2.1 Hiera encoders beside SAM ViT-B: CPU latency, parameters, FLOPs (random weights)",
                  header, NOTES + "\n\n" + markdown_table(rows, list(rows[0])), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
