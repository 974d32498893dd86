"""Benchmark for the elastic supernet: CPU latency, parameters and FLOPs of sam_vit_b subnets.

For the full model and three sampled subnets (fixed seeds), at input sides 1024 and 512,
time the image encoder of the *extracted* subnet (what a user deploys) with torch on this
CPU: one warm-up, then ``--repeats`` timed runs; report the median and the p10-p90 spread.

    python benchmarks/subnets.py --repeats 5
"""
from __future__ import annotations

import argparse
import sys

import torch

from common import machine_header, markdown_table, reproduce_command, write_results

from nas.measure.timing import time_callable
from search_spaces.counting import count
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam
from supernet.elastic.extract import extract


def configs_to_time(space: SearchSpace, resolution: int, seeds: list[int]) -> list[tuple[str, SubnetConfig]]:
    out = [("full", space.largest().replace(resolution=resolution))]
    for seed in seeds:
        out.append((f"sample seed {seed}", space.sample(seed).replace(resolution=resolution)))
    return out


def describe(config: SubnetConfig) -> str:
    kept = config.kept_blocks
    heads = sum(b.heads for b in kept)
    mlp = sum(b.mlp for b in kept)
    return f"{len(kept)} blocks, {heads} heads, {mlp} MLP units"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sam_vit_b")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    space = SearchSpace.load(args.space)
    model = build_sam(space.model_type, seed=0)  # latency and size do not depend on weight values
    rows = []
    for res in args.resolutions:
        for name, cfg in configs_to_time(space, res, args.seeds):
            cfg = space.validate(cfg)
            counts = count(model, cfg)
            sub = extract(model, cfg)
            x = torch.randn(1, 3, res, res)
            with torch.inference_mode():
                # the lambda runs within this iteration, so it sees this sub and x
                timing = time_callable(lambda: sub.image_encoder(x), repeats=args.repeats, warmup=1)  # noqa: B023
            row = {
                "resolution": res,
                "subnet": name,
                "shape": describe(cfg),
                "params_M": round(counts.total_params / 1e6, 2),
                "encoder_params_M": round(counts.encoder_params / 1e6, 2),
                "encoder_GFLOPs": round(counts.encoder_flops / 1e9, 1),
                "median_ms": round(timing.median_ms, 1),
                "p10_ms": round(timing.p10_ms, 1),
                "p90_ms": round(timing.p90_ms, 1),
                "spread_pct": round(timing.spread_pct, 1),
                "repeats": timing.repeats,
            }
            rows.append(row)
            print(row, flush=True)
    header = machine_header(reproduce_command("subnets.py", argv), args.repeats)
    notes = (
        "Image encoder only (the searched part), extracted subnets with physically sliced weights, "
        "random weights (latency and size do not depend on values), batch 1, `torch.inference_mode`. "
        "FLOPs follow fvcore's convention: one multiply-add = one flop. `params_M` is the whole subnet "
        "(encoder + prompt encoder + mask decoder). Subnets are `SearchSpace.sample(seed)` of the "
        f"`{args.space}` space at the given resolution."
    )
    columns = list(rows[0])
    write_results("supernet", f"Supernet subnets of {args.space}: CPU latency, params, FLOPs", header,
                  notes + "\n\n" + markdown_table(rows, columns), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
