"""Candidate configs for the samplers: uniform shrinking, random draws, mutations, and an initial
design spread over the latency range by the (cheap) latency predictor."""
from __future__ import annotations

import dataclasses

import numpy as np

from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace, block_limits


def _skip_order(space: SearchSpace) -> list[int]:
    """Skippable blocks in the order uniform shrinking drops them: local blocks from the deepest, then
    global ones from the deepest (while ``min_global_blocks`` allows; the space rejects the rest)."""
    local = [b.index for b in reversed(space.blocks) if b.skippable and not b.is_global]
    glob = [b.index for b in reversed(space.blocks) if b.skippable and b.is_global]
    return local + glob


def uniform_shrinks(space: SearchSpace) -> list[SubnetConfig]:
    """Every "uniform shrink": one resolution, one heads level and one MLP level for all kept blocks
    (the same position in each block's choices), and the first ``k`` blocks of :func:`_skip_order` skipped."""
    order = _skip_order(space)
    levels_h = max(len(b.heads) for b in space.blocks)
    levels_m = max(len(b.mlp) for b in space.blocks)
    out, seen = [], set()
    for res in space.resolutions:
        for k in range(len(order) + 1):
            skipped = set(order[:k])
            for h in range(levels_h):
                for m in range(levels_m):
                    blocks = []
                    for b in space.blocks:
                        if b.index in skipped:
                            blocks.append(b.skipped())
                        else:
                            hi = round(h * (len(b.heads) - 1) / max(1, levels_h - 1))
                            mi = round(m * (len(b.mlp) - 1) / max(1, levels_m - 1))
                            blocks.append(b.kept(b.heads[hi], b.mlp[mi]))
                    config = SubnetConfig(space.name, res, tuple(blocks))
                    try:
                        config = space.validate(config)
                    except Exception:  # too few global blocks left
                        continue
                    if config not in seen:
                        seen.add(config)
                        out.append(config)
    return out


def valid(space: SearchSpace, config: SubnetConfig) -> bool:
    """Whether a config built from ``space``'s own choices (as here) is valid: only skipping too many
    global blocks can break one. Much cheaper than ``space.validate``, which the samplers' tens of
    thousands of candidates per trial cannot afford; proposals are still validated in full."""
    kept = sum(config.blocks[i].keep for i in space.global_blocks)
    return kept >= space.min_global_blocks


def encode_many(space: SearchSpace, configs: list[SubnetConfig]) -> np.ndarray:
    """``space.encode`` of many configs built from the space's own choices, without validating each.

    Same layout and scale as :meth:`SearchSpace.encode` (a test checks they agree): heads and MLP width
    as shares of the block's own full size (in SAM 2 they grow by stage).
    """
    arch = space.arch
    limits = block_limits(arch)
    with_int8 = "int8" in space.precisions
    n = space.num_blocks
    out = np.zeros((len(configs), 1 + (4 if with_int8 else 3) * n))
    for row, config in zip(out, configs):
        row[0] = config.resolution / arch.img_size
        for i, block in enumerate(config.blocks):
            if block.keep:
                _, full_heads, full_mlp = limits[i]
                row[1 + 3 * i: 4 + 3 * i] = (1.0, block.heads / full_heads, block.mlp / full_mlp)
                if with_int8 and block.precision == "int8":
                    row[1 + 3 * n + i] = 1.0
    return out


def mutate(space: SearchSpace, config: SubnetConfig, rng: np.random.Generator,
           genes: int = 1) -> SubnetConfig | None:
    """``config`` with ``genes`` random changes: the resolution, a block kept or skipped, or a block's heads
    or MLP moved one step; None if the result is invalid (too few global blocks)."""
    cfg = config
    for _ in range(genes):
        i = int(rng.integers(len(space.blocks) + 1)) - 1
        if i < 0:
            cfg = cfg.replace(resolution=space.resolutions[int(rng.integers(len(space.resolutions)))])
            continue
        b, entry = space.blocks[i], cfg.blocks[i]
        fields = 3 if len(b.precisions) > 1 else 2  # heads, mlp and, where there is a choice, precision
        what = int(rng.integers(fields + 1)) if b.skippable else 1 + int(rng.integers(fields))
        if what == 0 or not entry.keep:
            if entry.keep:
                cfg = cfg.with_block(i, b.skipped())
            else:
                heads, mlp = b.heads[int(rng.integers(len(b.heads)))], b.mlp[int(rng.integers(len(b.mlp)))]
                precision = b.precisions[int(rng.integers(len(b.precisions)))] if fields == 3 else b.precisions[0]
                cfg = cfg.with_block(i, b.kept(heads, mlp, precision))
            continue
        if what == 3:  # flip the block's precision
            others = [q for q in b.precisions if q != entry.precision]
            cfg = cfg.with_block(i, b.kept(entry.heads, entry.mlp, others[int(rng.integers(len(others)))]))
            continue
        field, choices = ("heads", b.heads) if what == 1 else ("mlp", b.mlp)
        j = choices.index(getattr(entry, field)) + (1 if rng.random() < 0.5 else -1)
        cfg = cfg.with_block(i, dataclasses.replace(entry, **{field: choices[min(max(j, 0), len(choices) - 1)]}))
    return cfg if valid(space, cfg) else None


def crossover(space: SearchSpace, a: SubnetConfig, b: SubnetConfig, rng: np.random.Generator) -> SubnetConfig | None:
    """Each block (and the resolution) from ``a`` or ``b`` at random; None if invalid."""
    resolution = (a if rng.random() < 0.5 else b).resolution
    blocks = tuple(x if rng.random() < 0.5 else y for x, y in zip(a.blocks, b.blocks))
    cfg = SubnetConfig(space.name, resolution, blocks)
    return cfg if valid(space, cfg) else None


def spread_over_latency(space: SearchSpace, latency, budget_ms: float, n: int, seed: int,
                        random_pool: int = 2000, resolution: int | None = None) -> list[SubnetConfig]:
    """``n`` configs whose predicted latencies spread evenly from the fastest config to ``budget_ms``.

    Candidates: every uniform shrink (:func:`uniform_shrinks`) and ``random_pool`` random draws. The
    range is cut into ``n`` equal slices; each slice takes its uniform shrink nearest to the slice's
    middle if one lies in the slice, else the nearest random draw; the places of empty slices go to
    the unused configs nearest to points spread evenly over the range. The order is shuffled (seeded), so
    that a search cut short early still covers the range roughly.

    ``resolution``: only configs at that input side (random draws moved to it), and the range ends at its
    slowest feasible candidate (a low resolution may not reach the budget).
    """
    rng = np.random.default_rng([0x5EED, seed])
    shrinks = uniform_shrinks(space)
    draws = [space.sample(rng) for _ in range(random_pool)]
    if resolution is not None:
        shrinks = [c for c in shrinks if c.resolution == resolution]
        draws = [c.replace(resolution=resolution) for c in draws]
    pool = shrinks + draws
    ms = np.asarray(latency.predict_many(pool), dtype=float)
    structured = np.arange(len(pool)) < len(shrinks)
    feasible = ms <= budget_ms
    if not feasible.any():
        return []
    low = float(ms[feasible].min())
    high = budget_ms if resolution is None else float(ms[feasible].max())
    width = (high - low) / n
    chosen, used = [], set()
    for k in range(n):
        lo, hi = low + k * width, low + (k + 1) * width
        mid = (lo + hi) / 2
        for prefer in (True, False):
            ok = feasible & (ms >= lo) & (ms <= hi) & (structured == prefer)
            ok &= np.array([c not in used for c in pool]) if used else True
            if ok.any():
                idx = int(np.flatnonzero(ok)[np.argmin(np.abs(ms[ok] - mid))])
                chosen.append(pool[idx])
                used.add(pool[idx])
                break
    # slices that no candidate falls in give their places to the unused configs nearest to points
    # spread evenly over the range
    missing = n - len(chosen)
    for k in range(missing):
        unused = feasible & np.array([c not in used for c in pool])
        if not unused.any():
            break
        target = low + (k + 0.5) * (high - low) / missing
        idx = int(np.flatnonzero(unused)[np.argmin(np.abs(ms[unused] - target))])
        chosen.append(pool[idx])
        used.add(pool[idx])
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def spread_per_resolution(space: SearchSpace, latency, budget_ms: float, n: int, seed: int) -> list[SubnetConfig]:
    """``n`` configs shared among the resolutions (the lower ones get the remainder), each resolution's
    spread over its own feasible latency range (:func:`spread_over_latency`), taken in turns (one of each
    resolution, then the next round), so that a search cut short early has seen every resolution. Places a
    resolution cannot fill (too slow for the budget) go to the design over the whole range."""
    res = sorted(space.resolutions)
    counts = [n // len(res) + (i < n % len(res)) for i in range(len(res))]
    designs = [spread_over_latency(space, latency, budget_ms, k, seed, resolution=r) if k else []
               for r, k in zip(res, counts)]
    out = []
    for turn in range(max(counts)):
        out += [d[turn] for d in designs if turn < len(d) and d[turn] not in out]
    # places a resolution could not fill (none of its configs within the budget) go to the whole range's design
    out += [c for c in spread_over_latency(space, latency, budget_ms, n, seed) if c not in out][:n - len(out)]
    return out
