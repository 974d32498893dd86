"""The search's samplers by name (:func:`make_sampler`): Optuna's NSGA-II, TPE and random, and its own two:

- ``surrogate`` (:class:`.surrogate.SurrogateSampler`): GP quality model + expected hypervolume
  improvement over candidates the latency predictor keeps within the budget.
- ``nsga2-seeded`` (:class:`.seeded_nsga2.SeededNSGAIISampler`): NSGA-II (population 16, as
  ``nsga2``) whose first generation is spread over the predicted-latency range.

Both need the search space, the latency predictor and the budget, which Optuna's samplers do not.
"""
from __future__ import annotations

import optuna

from infra.errors import UserError

from .proposal import PROPOSAL_ATTR, ProposalSampler
from .seeded_nsga2 import SeededNSGAIISampler
from .surrogate import SurrogateSampler

SAMPLERS = ("surrogate", "nsga2", "nsga2-seeded", "tpe", "random")
DEFAULT_SAMPLER = "surrogate"  # best measured on sam_micro (benchmarks/search.py, results/search.md)

# name -> one line for --help and the benchmark
OWN_SAMPLERS = {
    "surrogate": "GP quality model + expected hypervolume improvement over predictor-filtered candidates",
    "nsga2-seeded": "NSGA-II, population 16, first generation spread over the latency range",
}
POPULATION_SIZE = 16  # NSGA-II generation size: small, so that tens of trials still make several generations


def make_sampler(name: str, seed: int, space=None, latency=None,
                 budget_ms: float | None = None) -> optuna.samplers.BaseSampler:
    """A seeded sampler by name (see :data:`SAMPLERS`).

    ``surrogate`` and ``nsga2-seeded`` (the search's own) also need the search ``space``, the
    ``latency`` predictor and ``budget_ms``. NSGA-II and TPE
    honour the constraints that objectives set with ``Trial.set_constraint`` (the latency
    budget); the surrogate proposes only configs predicted within it; random search ignores
    it, and the fronts filter afterwards. TPE is multivariate over groups of parameters asked
    together (the search asks conditionally), with constant liar for parallel workers.
    """
    if name in ("surrogate", "nsga2-seeded"):
        if space is None or latency is None or budget_ms is None:
            raise UserError(f"--sampler {name}: needs a search space, latency predictor and budget "
                            "(only `samnas search` has them)")
        if name == "surrogate":
            return SurrogateSampler(space, latency, budget_ms, seed=seed)
        return SeededNSGAIISampler(space, latency, budget_ms, population_size=POPULATION_SIZE, seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=POPULATION_SIZE)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"--sampler {name!r}: expected one of {list(SAMPLERS)}")


__all__ = ["DEFAULT_SAMPLER", "OWN_SAMPLERS", "POPULATION_SIZE", "PROPOSAL_ATTR", "SAMPLERS", "ProposalSampler",
           "SeededNSGAIISampler", "SurrogateSampler", "make_sampler"]
