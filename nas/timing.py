"""Wall-clock timing with warm-up and repeats; medians and spread in milliseconds."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
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
    return summarize(samples)
