"""NSGA-II with a first generation spread over the latency range.

Optuna's NSGA-II draws its first generation at random. Here the first ``population_size`` trials
take configs spread evenly over the predicted-latency range up to the budget
(:func:`.design.spread_over_latency`: uniform shrinks of heads, MLP width and depth, else random
draws), and later generations are NSGA-II's own, honouring the budget constraint that the
objective sets. The population is ``nas.search.samplers.POPULATION_SIZE`` (16, not Optuna's 50) as for
plain ``nsga2``, already sized so that 32 to 128 trials run 2 to 8 generations; keeping it equal
isolates what the seeding adds, and keeps the sampler independent of the trial budget.
"""
from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial

from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

from .design import spread_over_latency
from .proposal import param_value


class SeededNSGAIISampler(optuna.samplers.NSGAIISampler):
    def __init__(self, space: SearchSpace, latency, budget_ms: float, population_size: int = 16,
                 seed: int | None = 0) -> None:
        super().__init__(seed=seed, population_size=population_size)
        self._space, self._latency, self._budget_ms, self._seed0 = space, latency, budget_ms, seed or 0
        self._initial: list[SubnetConfig] | None = None

    def sample_independent(self, study, trial: FrozenTrial, param_name, param_distribution):
        if trial.number < self._population_size:
            if self._initial is None:
                self._initial = spread_over_latency(self._space, self._latency, self._budget_ms,
                                                    self._population_size, self._seed0)
            if trial.number < len(self._initial):
                try:
                    value = param_value(self._initial[trial.number], param_name)
                    if value in getattr(param_distribution, "choices", (value,)):
                        return value
                except (KeyError, IndexError):
                    pass
        return super().sample_independent(study, trial, param_name, param_distribution)
