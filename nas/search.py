"""The multi-objective search: Optuna over a search space, under a device's latency budget.

Objectives: quality (maximise, from a ``nas.quality`` evaluator) and predicted latency on
the device (minimise, from a ``nas.latency`` predictor). The budget is a constraint
(``predicted_ms - budget_ms <= 0``) set with ``Trial.set_constraint``, which NSGA-II and TPE
honour (Optuna 5 replaced the samplers' ``constraints_func`` by it). Parameters
and FLOPs are recorded as trial user attributes, with the config as JSON, the evaluator's
name and its per-metric values, and the time spent evaluating and predicting.

Trials are committed to the storage one by one, so an interrupted search resumes where it
stopped; a trial that raised is recorded as failed with its error. Each trial records the
``host`` and ``pid`` of its worker when it starts, so a resumed search fails at once the
RUNNING trials of this host whose process is gone (:func:`fail_stale_trials`); trials of
other hosts are left to Optuna's heartbeat.
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import optuna
from tqdm import tqdm

from search_spaces.counting import count
from search_spaces.space import SearchSpace
from supernet.elastic import active_subnet
from supernet.sam import Sam

from .cost import TimedSampler
from .study import DEFAULT_SAMPLER, make_sampler, open_storage, study_name

METRIC_NAMES = ("quality", "predicted_ms")  # the two objectives, by name
CONSTRAINT = "latency_over_budget_ms"  # Optuna constraint: predicted_ms - budget_ms, feasible when <= 0
HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}"  # which process ran a trial (several may share a study)
HEARTBEAT_GRACE_S = 90  # Optuna fails a RUNNING trial whose heartbeat is this old (nas.study.open_storage)


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/PID/stat`` (state first), or None where there is no such file."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), to tell a reused pid apart; None if unknown."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs (and is the one that started at ``start``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc here: trust kill(0)
    if stat[0] in ("Z", "X"):
        return False  # killed, waiting to be reaped
    return start is None or len(stat) <= 19 or stat[19] == start


PID_START = process_start(os.getpid())


class LatencyModel(Protocol):
    def predict_ms(self, config: dict) -> float: ...


class QualityEvaluator(Protocol):
    name: str

    def evaluate(self, model: Sam, config: dict): ...


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


def suggest_config(trial: optuna.Trial, space: SearchSpace) -> dict:
    """A config drawn through ``trial``'s suggestions; always valid for ``space``.

    Conditional parameters: heads and mlp are asked only for kept blocks, and a skippable
    global block is asked ``keep`` only while skipping it still leaves ``min_global_blocks``.
    (A fixed-length genome, every gene asked in every trial, was tried and gave NSGA-II a
    lower hypervolume on ``sam_micro``; see README.)
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
            blocks.append({
                "keep": True,
                "heads": trial.suggest_categorical(f"b{b.index}.heads", list(b.heads)),
                "mlp": trial.suggest_categorical(f"b{b.index}.mlp", list(b.mlp)),
            })
        else:
            blocks.append({"keep": False})
    return space.validate({"space": space.name, "resolution": resolution, "blocks": blocks})


class Objective:
    """Callable objective: suggest a config, predict latency, evaluate quality, record attributes."""

    def __init__(self, model: Sam, space: SearchSpace, evaluator: QualityEvaluator, latency: LatencyModel,
                 budget_ms: float, on_trial: Callable[[optuna.Trial, dict], None] | None = None) -> None:
        self.model, self.space, self.evaluator, self.latency = model, space, evaluator, latency
        self.budget_ms = budget_ms
        self.on_trial = on_trial

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        # Recorded first, so that a worker killed mid-trial leaves behind whose trial it was.
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        if PID_START is not None:
            trial.set_user_attr("pid_start", PID_START)
        try:
            config = suggest_config(trial, self.space)
            # the sampler's own seconds for this trial (nas.cost.TimedSampler; open_study wraps it)
            sample_s = getattr(trial.study.sampler, "seconds", lambda _id: 0.0)(trial._trial_id)
            trial.set_user_attr("config", json.dumps(config, sort_keys=True))
            counts = count(self.model, config)
            start = time.perf_counter()
            predicted = float(self.latency.predict_ms(config))
            predict_s = time.perf_counter() - start
            trial.set_constraint(CONSTRAINT, predicted - self.budget_ms)
            start = time.perf_counter()
            with active_subnet(self.model, config):
                result = self.evaluator.evaluate(self.model, config)
            eval_s = time.perf_counter() - start
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        attrs = {
            "params": counts.total_params,
            "encoder_params": counts.encoder_params,
            "flops": counts.encoder_flops,
            "predicted_ms": predicted,
            # before a drift probe's recalibration (nas.latency.probe); equal to predicted_ms without one
            "predicted_raw_ms": predicted / float(getattr(self.latency, "speed_factor", 1.0)),
            "quality": float(result.score),
            "evaluator": self.evaluator.name,
            "metrics": {k: float(v) for k, v in result.metrics.items()},
            "feasible": predicted <= self.budget_ms,
            "eval_s": eval_s,
            "predict_s": predict_s,
            "sample_s": sample_s,
            "worker": WORKER,
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if self.on_trial:
            self.on_trial(trial, attrs)
        return float(result.score), predicted


def open_study(settings: SearchSettings, space: SearchSpace | None = None,
               latency: LatencyModel | None = None) -> optuna.Study:
    """Create the study, or load it to resume (same name in the same storage).

    ``space`` and ``latency`` go to samplers that use them (``nas.samplers``).
    """
    sampler = TimedSampler(make_sampler(settings.sampler, settings.seed, space=space, latency=latency,
                                        budget_ms=settings.budget_ms))
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=open_storage(settings.storage),
        directions=["maximize", "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )
    if study.metric_names is None:  # shown by optuna-dashboard and in study.trials_dataframe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRIC_NAMES))
    meta = {"space": settings.space, "device": settings.device, "budget_ms": settings.budget_ms,
            **settings.extra_attrs}
    for key, value in meta.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials of this host whose worker process is gone; return their numbers.

    Trials of other hosts (and trials that recorded no worker) are left to Optuna's heartbeat,
    which fails them :data:`HEARTBEAT_GRACE_S` seconds after their last beat.
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = t.user_attrs
        if attrs.get("host") != HOST or not isinstance(attrs.get("pid"), int):
            continue
        if process_alive(attrs["pid"], attrs.get("pid_start")):
            continue
        storage = study._storage  # Optuna has no public call to fail another process's trial
        storage.set_trial_user_attr(t._trial_id, "error",
                                    f"worker {HOST}:{attrs['pid']} was gone when the search resumed")
        if storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            failed.append(t.number)
    return failed


def other_hosts_running(study: optuna.Study) -> list[tuple[int, str]]:
    """``(trial number, host)`` of RUNNING trials started on other hosts (or by unknown workers)."""
    return [(t.number, str(t.user_attrs.get("host", "unknown host")))
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get("host") != HOST]


def finished_trials(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=states))


def run_search(settings: SearchSettings, model: Sam, space: SearchSpace, evaluator: QualityEvaluator,
               latency: LatencyModel, progress: bool = True, callbacks=()) -> optuna.Study:
    """Run (or resume) the study until it holds ``settings.trials`` finished trials.

    Workers sharing the study stop as soon as it holds enough; with several workers at
    once the total can overshoot by at most one trial per worker.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(settings, space, latency)
    stale = fail_stale_trials(study)
    if stale and progress:
        print(f"failed {len(stale)} trial(s) left RUNNING by a worker of this host that is gone: "
              + ", ".join(map(str, stale)))
    remaining = max(0, settings.trials - finished_trials(study))
    bar = tqdm(total=remaining, desc=f"search {settings.study_name}", unit="trial", disable=not progress)

    def tick(study_, trial_):
        bar.update(1)
        values = trial_.values
        if values:
            bar.set_postfix(quality=f"{values[0]:.3f}", ms=f"{values[1]:.1f}")

    objective = Objective(model, space, evaluator, latency, settings.budget_ms)
    # Stop once the shared study holds enough finished trials, whoever ran them.
    enough = optuna.study.MaxTrialsCallback(
        settings.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL))
    try:
        if remaining:
            study.optimize(objective, n_trials=remaining, catch=(Exception,),
                           callbacks=[tick, enough, *callbacks])
    finally:
        bar.close()
    return study
