"""The search's own samplers, beside Optuna's (``nas.study.make_sampler`` picks by name).

- ``surrogate`` (:class:`.surrogate.SurrogateSampler`): GP quality model + expected hypervolume
  improvement over candidates the latency predictor keeps within the budget.
- ``nsga2-seeded`` (:class:`.seeded_nsga2.SeededNSGAIISampler`): NSGA-II (population 16, as
  ``nsga2``) whose first generation is spread over the predicted-latency range.

Both need the search space, the latency predictor and the budget, which Optuna's samplers do not.
"""
from __future__ import annotations

from .proposal import PROPOSAL_ATTR, ProposalSampler
from .seeded_nsga2 import SeededNSGAIISampler
from .surrogate import SurrogateSampler

# name -> one line for --help and the benchmark
OWN_SAMPLERS = {
    "surrogate": "GP quality model + expected hypervolume improvement over predictor-filtered candidates",
    "nsga2-seeded": "NSGA-II, population 16, first generation spread over the latency range",
}


def make_own_sampler(name: str, seed: int, space, latency, budget_ms: float, population_size: int = 16):
    if name == "surrogate":
        return SurrogateSampler(space, latency, budget_ms, seed=seed)
    if name == "nsga2-seeded":
        return SeededNSGAIISampler(space, latency, budget_ms, population_size=population_size, seed=seed)
    raise KeyError(name)


__all__ = ["OWN_SAMPLERS", "PROPOSAL_ATTR", "ProposalSampler", "SeededNSGAIISampler", "SurrogateSampler",
           "make_own_sampler"]
