"""The multi-objective search: Optuna over a search space, under a device's latency budget.

Objectives: quality (maximise, from a ``nas.quality`` evaluator) and predicted latency on
the device (minimise, from a ``nas.latency`` predictor). The budget is a constraint
(``predicted_ms - budget_ms <= 0``) set with ``Trial.set_constraint``, which NSGA-II and TPE
honour (Optuna 5 replaced the samplers' ``constraints_func`` by it). Each trial stores a
:class:`nas.studies.record.TrialRecord`: the config, parameters and FLOPs, the evaluator's name and
its per-metric values, and the time spent evaluating and predicting.

The study itself (storage, resuming, failed trials, the trial count, workers, MLflow, the
progress bar) is run by :mod:`nas.studies.driver`, as policy tuning is; this module supplies the
search space (:func:`suggest_config`) and the objective.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import optuna
import torch

from nas.latency.store import device_spec
from search_spaces.counting import count
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.activation import active_subnet
from supernet.elastic.extract import extract
from supernet.modeling.sam import Sam
from supernet.modeling.sam2.model import Sam2

from nas.studies import driver
from nas.studies.driver import METRIC_NAMES  # noqa: F401 (re-exported: callers import it from here)
from nas.studies.record import TrialRecord
from nas.studies.cost import TimedSampler
from nas.search.samplers import DEFAULT_SAMPLER, make_sampler
from nas.studies.study import study_name

CONSTRAINT = "latency_over_budget_ms"  # Optuna constraint: predicted_ms - budget_ms, feasible when <= 0


class LatencyModel(Protocol):
    def predict_ms(self, config: SubnetConfig) -> float: ...


class QualityEvaluator(Protocol):
    name: str

    def evaluate(self, model: Sam | Sam2, config: SubnetConfig | None): ...


@dataclass
class SearchSettings:
    """What to search: the space, the device and its budget (ms), and how."""

    space: str
    device: str
    budget_ms: float
    trials: int = 40
    sampler: str = DEFAULT_SAMPLER
    seed: int = 0
    storage: str | None = None
    tracking_uri: str | None = None
    extra_attrs: dict = field(default_factory=dict)  # e.g. source checkpoint, evaluator data

    @property
    def study_name(self) -> str:
        return study_name(self.space, self.device, self.budget_ms)


def suggest_config(trial: optuna.Trial, space: SearchSpace) -> SubnetConfig:
    """A config drawn through ``trial``'s suggestions; always valid for ``space``.

    Conditional parameters: heads and mlp (and precision, where a block may be int8) are asked
    only for kept blocks, and a skippable
    global block is asked ``keep`` only while skipping it still leaves ``min_global_blocks``.
    (A fixed-length genome, every gene asked in every trial, was tried and gave NSGA-II a
    lower hypervolume on ``sam_micro``; see docs/decisions.md.)
    """
    resolution = trial.suggest_categorical("resolution", list(space.resolutions))
    globals_left = len(space.global_blocks)
    blocks = []
    for b in space.blocks:
        keep = True
        can_skip = b.skippable and (not b.is_global or globals_left - 1 >= space.min_global_blocks)
        if can_skip:
            keep = trial.suggest_categorical(f"b{b.index}.keep", [True, False])
        if b.is_global and not keep:
            globals_left -= 1
        if keep:
            heads = trial.suggest_categorical(f"b{b.index}.heads", list(b.heads))
            mlp = trial.suggest_categorical(f"b{b.index}.mlp", list(b.mlp))
            precision = trial.suggest_categorical(f"b{b.index}.precision", list(b.precisions)) \
                if len(b.precisions) > 1 else b.precisions[0]
            blocks.append(b.kept(heads, mlp, precision))
        else:
            blocks.append(b.skipped())
    return space.validate(SubnetConfig(space.name, resolution, tuple(blocks)))


def evaluate_config(evaluator: QualityEvaluator, model: Sam | Sam2, config: SubnetConfig, precision: str = "fp32"):
    """Quality of ``config`` as it would run: on the supernet for an fp32 config; for one with int8
    blocks, on the subnet extracted and quantized (the weight-sharing supernet runs fp32 only).

    ``precision`` ``bf16`` (a bf16 device): the subnet runs under torch's bf16 autocast, so the score is that of
    bf16 masks, as the device computes them up to its own rounding (the references stay the fp32 full model's).
    """
    with torch.autocast(next(model.parameters()).device.type, torch.bfloat16, enabled=precision == "bf16"):
        if config.int8_blocks():
            return evaluator.evaluate(extract(model, config), None)
        with active_subnet(model, config):
            return evaluator.evaluate(model, config)


class Objective:
    """Callable objective for :mod:`nas.studies.driver`: suggest a config, predict latency, evaluate quality.

    Returns ``((quality, predicted_ms), TrialRecord)``; the config is recorded as soon as it is
    drawn, so a trial that fails later still shows what it tried.
    """

    def __init__(self, model: Sam | Sam2, space: SearchSpace, evaluator: QualityEvaluator, latency: LatencyModel,
                 budget_ms: float, precision: str = "fp32") -> None:
        self.model, self.space, self.evaluator, self.latency = model, space, evaluator, latency
        self.budget_ms, self.precision = budget_ms, precision

    def __call__(self, trial: optuna.Trial) -> tuple[tuple[float, float], TrialRecord]:
        config = suggest_config(trial, self.space)
        # the sampler's own seconds for this trial (nas.studies.cost.TimedSampler; plan() wraps it)
        sample_s = getattr(trial.study.sampler, "seconds", lambda _id: 0.0)(trial._trial_id)
        TrialRecord(config=config).write(trial)
        counts = count(self.model, config)
        start = time.perf_counter()
        predicted = float(self.latency.predict_ms(config))
        predict_s = time.perf_counter() - start
        trial.set_constraint(CONSTRAINT, predicted - self.budget_ms)
        start = time.perf_counter()
        result = evaluate_config(self.evaluator, self.model, config, self.precision)
        eval_s = time.perf_counter() - start
        record = TrialRecord(
            params=counts.total_params, encoder_params=counts.encoder_params, flops=counts.encoder_flops,
            predicted_ms=predicted,
            # before a drift probe's recalibration (nas.latency.probe); equal to predicted_ms without one
            predicted_raw_ms=predicted / float(getattr(self.latency, "speed_factor", 1.0)),
            quality=float(result.score), evaluator=self.evaluator.name,
            metrics={k: float(v) for k, v in result.metrics.items()},
            feasible=predicted <= self.budget_ms, eval_s=eval_s, predict_s=predict_s, sample_s=sample_s)
        return (float(result.score), predicted), record


def plan(settings: SearchSettings, space: SearchSpace | None = None,
         latency: LatencyModel | None = None) -> driver.StudyPlan:
    """The driver's view of a search: its study name, sampler, trial count and study attributes.

    ``space`` and ``latency`` go to samplers that use them (``nas.search.samplers``); the sampler is
    wrapped so that each trial records the sampler's own seconds (``nas.studies.cost``).
    """
    if space is None or latency is None:
        # Opening a study outside a search (to read it, serve a dashboard, add trials by hand):
        # no trial is sampled through it, and the surrogate would need a space and a predictor.
        sampler = make_sampler("random", settings.seed)
    else:
        sampler = TimedSampler(make_sampler(settings.sampler, settings.seed, space=space, latency=latency,
                                            budget_ms=settings.budget_ms))
    return driver.StudyPlan(
        name=settings.study_name, sampler=sampler, trials=settings.trials,
        storage=settings.storage, label=f"search {settings.study_name}",
        attrs={"space": settings.space, "device": settings.device, "budget_ms": settings.budget_ms,
               **settings.extra_attrs})


def open_study(settings: SearchSettings, space: SearchSpace | None = None,
               latency: LatencyModel | None = None) -> optuna.Study:
    """Create the study, or load it to resume (same name in the same storage).

    Without ``space`` and ``latency`` the study is opened for reading, with a plain random sampler.
    """
    return driver.open_study(plan(settings, space, latency))


def _postfix(trial: optuna.trial.FrozenTrial) -> str:
    return f"quality={trial.values[0]:.3f}, ms={trial.values[1]:.1f}"


def run_search(settings: SearchSettings, model: Sam | Sam2, space: SearchSpace, evaluator: QualityEvaluator,
               latency: LatencyModel, progress: bool = True, callbacks=(), tracker=None) -> optuna.Study:
    """Run (or resume) the study until it holds ``settings.trials`` finished trials (see :mod:`nas.studies.driver`).

    ``tracker``: an open :class:`nas.studies.tracking.SearchTracker`, which gets a nested run per trial.
    """
    objective = Objective(model, space, evaluator, latency, settings.budget_ms, device_spec(settings.device).precision)
    return driver.drive(plan(settings, space, latency), objective, progress=progress, tracker=tracker, callbacks=callbacks,
                        postfix=_postfix)
