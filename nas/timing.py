"""Wall-clock timing with warm-up and repeats; medians and spread in milliseconds."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Summary of repeated runs, all in ms."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    repeats: int

    @property
    def spread_pct(self) -> float:
        """(p90 - p10) / median, in percent."""
        return 100.0 * (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms else 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(samples_ms: list[float]) -> Timing:
    """Median, 10th/90th percentiles, min and max of samples in ms."""
    if not samples_ms:
        raise ValueError("no timing samples")
    arr = np.asarray(samples_ms, dtype=float)
    return Timing(
        median_ms=float(statistics.median(samples_ms)),
        p10_ms=float(np.percentile(arr, 10)),
        p90_ms=float(np.percentile(arr, 90)),
        min_ms=float(arr.min()),
        max_ms=float(arr.max()),
        repeats=len(samples_ms),
    )


MIN_SECONDS = 0.3  # profiling default: least timed wall time per measurement
ROUNDS = 3  # profiling default: interleaved rounds per measurement (see time_rounds)
MAX_RUNS = 2000  # cap on timed runs when ``min_seconds`` asks for more than ``repeats``


def time_callable(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
                  sync: Callable[[], None] | None = None, min_seconds: float = 0.0) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then at least ``repeats`` times timed with ``perf_counter``.

    ``min_seconds``: keep timing until the timed runs add up to at least this long (at most
    :data:`MAX_RUNS` runs), so that a model of a few ms is not judged on a few tens of ms of
    wall time, where one scheduler hiccup moves the median. ``sync`` (for example
    ``torch.cuda.synchronize``) is called before each clock read.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    return summarize(_timed_runs(fn, repeats, warmup, sync, min_seconds))


def _timed_runs(fn: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None] | None,
                min_seconds: float) -> list[float]:
    """The ms of each timed run (see :func:`time_callable`)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    total_ms = 0.0
    while len(samples) < repeats or (total_ms < 1000.0 * min_seconds and len(samples) < MAX_RUNS):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        samples.append((time.perf_counter() - start) * 1000.0)
        total_ms += samples[-1]
    return samples


def split_evenly(total: float, parts: int) -> list[float]:
    """``total`` cut into ``parts`` shares (ints stay ints: 5 in 3 parts is ``[2, 2, 1]``)."""
    if isinstance(total, int):
        return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
    return [total / parts] * parts


def time_rounds(fns: Sequence[Callable[[], object]], rounds: int = 3, repeats: int = 5, warmup: int = 1,
                sync: Callable[[], None] | None = None, min_seconds: float = 0.0, shuffle_seed: int | None = 0,
                on_step: Callable[[int, int], None] | None = None) -> tuple[list[Timing], list[list[float]]]:
    """Time every callable in ``rounds`` interleaved rounds: each round visits every callable once.

    Each visit is :func:`time_callable` with ``warmup`` untimed runs (the caches are cold
    after switching) and its share of ``repeats`` and ``min_seconds`` (at least one timed
    run). Spreading a measurement over the whole time the batch takes means a slow spell of
    the machine (another tenant on a shared VM, a clock change) touches many callables a
    little instead of a few of them wholly. With ``shuffle_seed`` (not None) every round
    visits them in a fresh random order, so that neighbours in the list do not share their
    slow spells round after round. ``fns[i]`` is looked up once per visit, so ``fns`` may be
    a sequence that builds its items on demand.

    Returns, per callable, the :class:`Timing` of all its timed runs together (ms) and its
    median per round (ms, in round order). ``on_step(round, index)`` is called after each visit.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    samples: list[list[float]] = [[] for _ in range(len(fns))]
    per_round: list[list[float]] = [[] for _ in range(len(fns))]
    shares = split_evenly(repeats, rounds)
    rng = np.random.default_rng(shuffle_seed)
    for r in range(rounds):
        order = rng.permutation(len(fns)) if shuffle_seed is not None else range(len(fns))
        for i in order:
            i = int(i)
            runs = _timed_runs(fns[i], max(1, shares[r]), warmup, sync, min_seconds / rounds)
            samples[i] += runs
            per_round[i].append(float(statistics.median(runs)))
            if on_step:
                on_step(r, i)
    return [summarize(s) for s in samples], per_round


def speed_factors(per_round: list[list[float]]) -> list[float]:
    """The machine's relative slowness in each round: median over callables of round median / overall median.

    ``per_round[i][r]`` is callable i's median in round r (from :func:`time_rounds`). 1.0 in
    every round means a steady machine; ``[1.0, 1.3, 1.0]`` means everything ran 30%
    slower during round 2.
    """
    if not per_round or not per_round[0]:
        return []
    ratios = np.asarray([np.asarray(r) / statistics.median(r) for r in per_round if statistics.median(r) > 0])
    return [float(v) for v in np.median(ratios, axis=0)]


def drift_pct(factors: list[float]) -> float:
    """How far the slowest round was from the fastest, in percent (0 for a steady machine)."""
    return 100.0 * (max(factors) / min(factors) - 1.0) if factors else 0.0
