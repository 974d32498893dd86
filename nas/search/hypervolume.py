"""Two-objective hypervolume (maximise quality, minimise latency) and its expected improvement.

Plain arrays in, so the benchmark, the reference front and the surrogate sampler share one
definition. The region measured is bounded by a reference point ``(ref_quality, ref_ms)``:
usually quality 0 and the latency budget, so a point slower than the budget adds nothing.

For a set of points, the *attainment* ``A(x)`` is the best quality among points at most ``x``
ms slow (``ref_quality`` where there is none); the hypervolume is the integral of
``A(x) - ref_quality`` over ``[0, ref_ms]``... from the fastest point on, since nothing is
attained before it. A new point ``(q, m)`` adds ``integral over [m, ref_ms] of max(0, q - A(x))``;
when ``q`` is Gaussian, that expectation is a sum of expected improvements over the steps of
``A``, one closed form per step (:func:`expected_improvement`).
"""
from __future__ import annotations

import numpy as np


def front_indices(quality, ms, ref_ms: float = np.inf, ref_quality: float = -np.inf) -> np.ndarray:
    """Indices of the non-dominated points within the reference point, fastest first.

    A point is kept iff its quality beats every faster (or equally fast) point's. Points tied in
    both objectives keep the first in input order (the sort is stable), so callers that pre-sort
    choose which one stays. Non-finite values and points outside ``(ref_quality, ref_ms)`` are dropped.
    """
    q = np.asarray(quality, dtype=float).ravel()
    m = np.asarray(ms, dtype=float).ravel()
    if q.shape != m.shape:
        raise ValueError(f"quality and ms differ in length: {q.size} vs {m.size}")
    keep = np.flatnonzero((m <= ref_ms) & (q >= ref_quality) & np.isfinite(q) & np.isfinite(m))
    order = keep[np.lexsort((-q[keep], m[keep]))]  # by latency, then best quality first
    out, best = [], -np.inf
    for i in order:
        if q[i] > best:
            out.append(i)
            best = q[i]
    return np.array(out, dtype=int)


def front_2d(quality, ms, ref_ms: float = np.inf, ref_quality: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """The non-dominated points within the reference point, fastest first: ``(quality, ms)`` arrays.

    Quality increases along the result. Ties in both objectives keep one point (:func:`front_indices`).
    """
    idx = front_indices(quality, ms, ref_ms, ref_quality)
    return np.asarray(quality, dtype=float).ravel()[idx], np.asarray(ms, dtype=float).ravel()[idx]


def hypervolume_2d(quality, ms, ref_ms: float, ref_quality: float = 0.0) -> float:
    """Area (quality x ms) dominated by the points and bounded by ``(ref_quality, ref_ms)``.

    Points slower than ``ref_ms`` or worse than ``ref_quality`` add nothing; an empty set gives 0.
    """
    fq, fm = front_2d(quality, ms, ref_ms, ref_quality)
    if fq.size == 0:
        return 0.0
    widths = np.diff(np.append(fm, ref_ms))
    return float(np.sum(widths * (fq - ref_quality)))


def _steps(quality, ms, ref_ms: float, ref_quality: float) -> tuple[np.ndarray, np.ndarray]:
    """The attainment function as steps: left edges (starting at -inf) and the level on each step."""
    fq, fm = front_2d(quality, ms, ref_ms, ref_quality)
    edges = np.concatenate(([-np.inf], fm))
    levels = np.concatenate(([ref_quality], fq))
    return edges, levels


def _overlaps(cand_ms: np.ndarray, edges: np.ndarray, ref_ms: float) -> np.ndarray:
    """``(n, steps)``: how much of each step lies in ``[cand_ms, ref_ms]``."""
    right = np.append(edges[1:], ref_ms)
    left = np.maximum(edges[None, :], np.asarray(cand_ms, float)[:, None])
    return np.clip(right[None, :] - left, 0.0, None)


def improvement(cand_quality, cand_ms, quality, ms, ref_ms: float, ref_quality: float = 0.0) -> np.ndarray:
    """Hypervolume each candidate ``(cand_quality[i], cand_ms[i])`` would add, alone, to the points."""
    edges, levels = _steps(quality, ms, ref_ms, ref_quality)
    gain = np.clip(np.asarray(cand_quality, float)[:, None] - levels[None, :], 0.0, None)
    return np.sum(_overlaps(cand_ms, edges, ref_ms) * gain, axis=1)


def expected_improvement(mean, std, cand_ms, quality, ms, ref_ms: float, ref_quality: float = 0.0) -> np.ndarray:
    """Expected hypervolume improvement of candidates whose quality is ``N(mean, std^2)`` and latency known.

    Exact: per step of the attainment function at level ``a`` and width ``w`` within
    ``[cand_ms, ref_ms]``, ``w * E[max(0, q - a)] = w * (std * pdf(z) + (mean - a) * cdf(z))``
    with ``z = (mean - a) / std``. A zero ``std`` gives :func:`improvement` of the mean.
    """
    from scipy.stats import norm  # here, not at the top: front queries (samnas pareto) need no scipy (~1 s)

    mean = np.asarray(mean, float)[:, None]
    std = np.maximum(np.asarray(std, float)[:, None], 1e-12)
    edges, levels = _steps(quality, ms, ref_ms, ref_quality)
    z = (mean - levels[None, :]) / std
    gain = std * norm.pdf(z) + (mean - levels[None, :]) * norm.cdf(z)
    return np.sum(_overlaps(cand_ms, edges, ref_ms) * gain, axis=1)
