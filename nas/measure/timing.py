"""Wall-clock timing with warm-up and repeats; medians and spread in milliseconds."""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import platform
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


MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest allowed mmap threshold on 64-bit Linux
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of freed heap instead of trimming it
GLIBC_DEFAULT_BYTES = 128 * 2**10  # glibc's default mmap and trim thresholds (malloc.h, mallopt(3))
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
_held = 0  # how many steady_allocator blocks are open in this process (nested timings set it up once)


def _glibc():
    """glibc's ``mallopt`` owner (ctypes CDLL), or None on another libc or platform."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def allocator_setup() -> str:
    """What :func:`steady_allocator` sets while timings run, as text for device fingerprints.

    Changes nothing: ``"glibc mmap_threshold=... trim_threshold=..."``, or ``"default"`` where
    malloc is not glibc's.
    """
    if _glibc() is None:
        return "default"
    return f"glibc mmap_threshold={MMAP_THRESHOLD_BYTES} trim_threshold={TRIM_THRESHOLD_BYTES}"


def _env_bytes(name: str) -> int:
    """A ``MALLOC_*_`` variable glibc read at start-up (its value in bytes), else glibc's default."""
    try:
        return int(os.environ.get(name, GLIBC_DEFAULT_BYTES))
    except ValueError:
        return GLIBC_DEFAULT_BYTES


@contextlib.contextmanager
def steady_allocator():
    """Fix glibc malloc's thresholds inside the block (a timing), restore them after; yields :func:`allocator_setup`.

    By default glibc hands freed blocks above a threshold back to the kernel (munmap, heap
    trimming) and moves that threshold as the process allocates, so whether a model's
    activation buffers are reused or page-faulted in afresh on every run depends on what the
    process did before. On this project's 2-core VM that made the same sam_micro subnets 10-20%
    slower in one profiling run than in another, by input size, with five times the system time
    (exploratory runs of benchmarks/latency.py).
    Fixing the mmap threshold at :data:`MMAP_THRESHOLD_BYTES` and trimming only above
    :data:`TRIM_THRESHOLD_BYTES` keeps freed memory for reuse; a deployment gets the same with
    ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647`` in its environment
    (or with jemalloc/tcmalloc). Every timing in :mod:`nas.measure.timing` runs inside this block.

    On leaving the outermost block both thresholds go back to glibc's defaults (128 KiB, or the
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` values the process started with) and
    the freed heap the block kept is handed back (``malloc_trim``).
    glibc has no call to turn its moving mmap threshold back on once ``mallopt`` has set one,
    so after a timing it stays at that default instead of moving. Other C libraries are left as
    they are. Not thread-safe: timings run one at a time.
    """
    global _held
    libc = _glibc()
    setup = allocator_setup()
    if libc is not None and _held == 0:
        if not (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
            setup = "default"
    _held += 1
    try:
        yield setup
    finally:
        _held -= 1
        if libc is not None and _held == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _env_bytes("MALLOC_MMAP_THRESHOLD_"))
            libc.mallopt(_M_TRIM_THRESHOLD, _env_bytes("MALLOC_TRIM_THRESHOLD_"))
            if hasattr(libc, "malloc_trim"):
                libc.malloc_trim(0)  # hand back the freed heap the timing kept, as the default threshold would


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
    with steady_allocator():
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


def visit_runs(repeats: int, warmup: int, rounds: int) -> tuple[int, int]:
    """Timed and untimed runs per visit when a measurement's runs are shared out over ``rounds`` rounds.

    Rounded up, and at least one timed run (see :func:`time_rounds`).
    """
    return max(1, math.ceil(repeats / rounds)), math.ceil(warmup / rounds)


ROUND_TOLERANCE = 0.05  # rounds whose speeds differ by at most about +-5% count as one steady state


@dataclass
class RoundTimings:
    """What :func:`time_rounds` measured.

    ``timings``: per callable, the :class:`Timing` of its timed runs in the ``kept`` rounds
    (ms); ``per_round``: per callable, its median in every round run (ms); ``factors``: per
    round, the machine's relative slowness (:func:`speed_factors`); ``kept``: the rounds
    that count, the largest group of rounds that ran at one steady speed.
    """

    timings: list[Timing]
    per_round: list[list[float]]
    factors: list[float]
    kept: list[int]


def time_rounds(fns: Sequence[Callable[[], object]], rounds: int = 3, repeats: int = 5, warmup: int = 1,
                sync: Callable[[], None] | None = None, min_seconds: float = 0.0, shuffle_seed: int | None = 0,
                max_rounds: int | None = None, tolerance: float = ROUND_TOLERANCE,
                on_step: Callable[[int, int], None] | None = None) -> RoundTimings:
    """Time every callable in interleaved rounds; each round visits every callable once.

    Each visit is :func:`time_callable` with ``1/rounds`` of ``warmup``, ``repeats`` and
    ``min_seconds`` (rounded up, and at least one timed run and, when ``warmup`` > 0, one
    untimed run: the caches are cold after switching). Spreading a measurement over the
    whole time the batch takes means a slow spell of the machine (another tenant on a shared
    VM, a clock change) touches many callables a little instead of a few wholly. With
    ``shuffle_seed`` (not None) every round visits them in a fresh random order, so that
    neighbours in the list do not share their slow spells round after round. ``fns[i]`` is
    looked up once per visit, so ``fns`` may be a sequence that builds items on demand.

    After ``rounds`` rounds, the rounds are grouped by the machine's speed in each
    (:func:`speed_factors`; one group spans at most ``2 * tolerance``): while the largest
    group has fewer than ``rounds`` rounds, another round is run, up to ``max_rounds``
    (default ``rounds``, i.e. never). Only the largest group's rounds count, so a stretch
    in which the whole machine ran slower is measured again instead of averaged in.
    ``on_step(round, index)`` is called after each visit.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    max_rounds = max(rounds, max_rounds or rounds)
    runs_per_visit, warm_per_visit = visit_runs(repeats, warmup, rounds)
    samples: list[list[list[float]]] = [[] for _ in range(len(fns))]  # [callable][round] -> ms of each run
    per_round: list[list[float]] = [[] for _ in range(len(fns))]
    rng = np.random.default_rng(shuffle_seed)
    factors: list[float] = []
    kept: list[int] = []
    with steady_allocator():
        for r in range(max_rounds):
            order = rng.permutation(len(fns)) if shuffle_seed is not None else range(len(fns))
            for i in order:
                i = int(i)
                runs = _timed_runs(fns[i], runs_per_visit, warm_per_visit, sync, min_seconds / rounds)
                samples[i].append(runs)
                per_round[i].append(float(statistics.median(runs)))
                if on_step:
                    on_step(r, i)
            if r + 1 >= rounds:
                factors = speed_factors(per_round)
                kept = steady_rounds(factors, tolerance)
                if len(kept) >= rounds:
                    break
    timings = [summarize([ms for k in kept for ms in item[k]]) for item in samples]
    return RoundTimings(timings, per_round, factors, kept)


def steady_rounds(factors: list[float], tolerance: float = ROUND_TOLERANCE) -> list[int]:
    """The largest group of rounds whose speed factors lie within ``1 + 2 * tolerance`` of each other.

    Ties go to the faster group. Returns round indices in increasing order.
    """
    order = sorted(range(len(factors)), key=lambda r: factors[r])
    best: list[int] = []
    for start in range(len(order)):
        group = [r for r in order[start:] if factors[r] <= factors[order[start]] * (1 + 2 * tolerance)]
        if len(group) > len(best):
            best = group
    return sorted(best)


def speed_factors(per_round: list[list[float]]) -> list[float]:
    """The machine's relative slowness in each round: median over callables of round median / overall median.

    ``per_round[i][r]`` is callable i's median in round r. 1.0 in every round means a
    steady machine; ``[1.0, 1.3, 1.0]`` means everything ran 30% slower during round 2.
    """
    if not per_round or not per_round[0]:
        return []
    ratios = np.asarray([np.asarray(r) / statistics.median(r) for r in per_round if statistics.median(r) > 0])
    return [float(v) for v in np.median(ratios, axis=0)]


def drift_pct(factors: list[float]) -> float:
    """How far the slowest round was from the fastest, in percent (0 for a steady machine)."""
    return 100.0 * (max(factors) / min(factors) - 1.0) if factors else 0.0
