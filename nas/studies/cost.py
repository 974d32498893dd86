"""What a search trial costs: wall time split into evaluation, latency prediction, sampler and the rest.

Each completed trial records (``nas.search.run.Objective``) ``eval_s`` (quality evaluation),
``predict_s`` (latency predictor) and ``sample_s`` (the sampler's own work for the trial, as
:class:`TimedSampler` adds it up: relative sampling, ``before_trial``, answering suggestions). Its wall time is ``datetime_complete - datetime_start``;
the rest ("other") is FLOP/parameter counting and storage writes. Trials of studies made before
``sample_s`` was recorded count it as part of "other".
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import optuna

from nas.studies.record import TrialRecord

PARTS = ("eval_s", "predict_s", "sample_s", "other_s")


@dataclass(frozen=True)
class TrialCost:
    wall_s: float
    eval_s: float
    predict_s: float
    sample_s: float

    @property
    def other_s(self) -> float:
        return max(0.0, self.wall_s - self.eval_s - self.predict_s - self.sample_s)


def trial_costs(trials) -> list[TrialCost]:
    """Costs of the completed trials among ``trials`` (FrozenTrials) that recorded their timings."""
    out = []
    for t in trials:
        if t.state != optuna.trial.TrialState.COMPLETE or t.datetime_complete is None:
            continue
        record = TrialRecord.read(t)
        if record.eval_s is None:
            continue
        out.append(TrialCost(wall_s=(t.datetime_complete - t.datetime_start).total_seconds(),
                             eval_s=float(record.eval_s), predict_s=float(record.predict_s or 0.0),
                             sample_s=float(record.sample_s or 0.0)))
    return out


def mean_costs(costs: list[TrialCost]) -> dict[str, float]:
    """Mean seconds per trial: ``wall_s`` and each of :data:`PARTS` (they add up to ``wall_s``)."""
    if not costs:
        return {k: float("nan") for k in ("wall_s", *PARTS)}
    return {k: statistics.fmean(getattr(c, k) for c in costs) for k in ("wall_s", *PARTS)}


def cost_line(trials, evaluator_images: int | None = None) -> str:
    """One line for the search summary: mean wall time per trial and its parts."""
    costs = trial_costs(trials)
    if not costs:
        return "search cost: no completed trial recorded its timings"
    m = mean_costs(costs)
    share = (lambda k: f"{100 * m[k] / m['wall_s']:.0f}%") if m["wall_s"] > 0 else (lambda k: "-")
    per_image = (f"; each trial runs the subnet's image encoder once per evaluation image ({evaluator_images})"
                 if evaluator_images else "")
    return (f"search cost: {m['wall_s']:.3f} s per trial (mean of {len(costs)}) = evaluation {m['eval_s']:.3f} s "
            f"({share('eval_s')}) + latency prediction {1000 * m['predict_s']:.2f} ms ({share('predict_s')}) + "
            f"sampler {m['sample_s']:.3f} s ({share('sample_s')}) + other {m['other_s']:.3f} s "
            f"({share('other_s')}: FLOP counting, storage){per_image}")


class TimedSampler(optuna.samplers.BaseSampler):
    """Wraps a sampler and adds up, per trial, the seconds spent in it (``seconds(trial_id)``).

    So a trial's ``sample_s`` is the sampler's own work, apart from Optuna's storage writes.
    """

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner
        self._seconds: dict[int, float] = {}

    def seconds(self, trial_id: int) -> float:
        return self._seconds.get(trial_id, 0.0)

    def _timed(self, trial, call, *args):
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            self._seconds[trial._trial_id] = self.seconds(trial._trial_id) + time.perf_counter() - start

    def infer_relative_search_space(self, study, trial):
        return self._timed(trial, self.inner.infer_relative_search_space, study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._timed(trial, self.inner.sample_relative, study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._timed(trial, self.inner.sample_independent, study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._timed(trial, self.inner.before_trial, study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.inner.after_trial(study, trial, state, values)
        self._seconds.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
