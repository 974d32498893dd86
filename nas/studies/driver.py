"""The one Optuna driver: architecture searches and segment-everything policy tuning both run through it.

Each side supplies only a :class:`StudyPlan` (name, sampler, trials, study attributes) and an
objective that returns ``(values, TrialRecord)``; this module owns the rest:

- the storage and the study (created, or loaded to resume: same name in the same storage),
  its objective names and its user attributes;
- every trial's worker (``host``, ``pid``, its start time) recorded when the trial starts, so a
  resumed study fails at once the RUNNING trials of this host whose process is gone
  (:func:`fail_stale_trials`); trials of other hosts are left to Optuna's heartbeat;
- ``catch``: a trial that raised is recorded as failed with its error, and the study goes on;
- the trial count: a study runs until it holds ``trials`` *finished* trials (complete or
  failed), whoever ran them (``MaxTrialsCallback``); with several workers at once the total
  can overshoot by at most one trial per worker;
- MLflow logging of each finished trial (:class:`nas.studies.tracking.SearchTracker`), and the
  progress bar.

Trials are committed to the storage one by one, so an interrupted study resumes where it stopped.
"""
from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import optuna

from nas.studies.record import TrialRecord
from nas.studies.study import open_storage

METRIC_NAMES = ("quality", "predicted_ms")  # the two objectives, by name
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
HEARTBEAT_GRACE_S = 90  # Optuna fails a RUNNING trial whose heartbeat is this old (nas.studies.study.open_storage)


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


def current_worker() -> TrialRecord:
    """This process as a trial's worker: ``host``, ``pid``, its start time and ``worker`` (``host:pid``).

    Read when asked, never kept from import time: a forked worker is its own process, with its own
    pid and start time, and a record of its parent's would make a resume fail its live trial.
    """
    host, pid = socket.gethostname(), os.getpid()
    return TrialRecord(host=host, pid=pid, pid_start=process_start(pid), worker=f"{host}:{pid}")


@dataclass
class StudyPlan:
    """What the driver needs to know of a study; the objective is passed separately."""

    name: str
    sampler: optuna.samplers.BaseSampler
    trials: int  # finished trials the study should hold
    storage: str | None = None  # Optuna RDB URL (default: the results folder's studies.db)
    attrs: dict = field(default_factory=dict)  # study user attributes (set when they differ)
    directions: tuple[str, ...] = ("maximize", "minimize")
    metric_names: tuple[str, ...] = METRIC_NAMES
    label: str = "search"  # the progress bar's description


Objective = Callable[[optuna.Trial], tuple[Sequence[float], TrialRecord]]


def open_study(plan: StudyPlan) -> optuna.Study:
    """Create the study, or load it to resume; name its objectives and set its attributes."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # per-trial INFO lines: the progress bar says it
    study = optuna.create_study(study_name=plan.name, storage=open_storage(plan.storage),
                                directions=list(plan.directions), sampler=plan.sampler, load_if_exists=True)
    if study.metric_names is None:  # shown by optuna-dashboard and in study.trials_dataframe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(plan.metric_names))
    for key, value in plan.attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    return study


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials of this host whose worker process is gone; return their numbers.

    Trials of other hosts (and trials that recorded no worker) are left to Optuna's heartbeat,
    which fails them :data:`HEARTBEAT_GRACE_S` seconds after their last beat.
    """
    failed = []
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        record = TrialRecord.read(t)
        if record.host != host or not isinstance(record.pid, int):
            continue
        if process_alive(record.pid, record.pid_start):
            continue
        storage = study._storage  # Optuna has no public call to fail another process's trial
        TrialRecord(error=f"worker {host}:{record.pid} was gone when the search resumed").write_stored(
            storage, t._trial_id)
        if storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL):
            failed.append(t.number)
    return failed


def other_hosts_running(study: optuna.Study) -> list[tuple[int, str]]:
    """``(trial number, host)`` of RUNNING trials started on other hosts (or by unknown workers)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    hosts = [(t.number, TrialRecord.read(t).host) for t in running]
    here = socket.gethostname()
    return [(number, str(host or "unknown host")) for number, host in hosts if host != here]


def finished_trials(study: optuna.Study) -> int:
    """Trials that ran to the end, completed or failed: what ``trials`` counts."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _recorded(objective: Objective) -> Callable[[optuna.Trial], Sequence[float]]:
    """``objective`` for Optuna: the worker recorded first, then the trial's record, or its error."""

    def run(trial: optuna.Trial):
        # Recorded first, so that a worker killed mid-trial leaves behind whose trial it was.
        current_worker().write(trial)
        try:
            values, record = objective(trial)
        except Exception as exc:
            TrialRecord(error=f"{type(exc).__name__}: {exc}"[:2000]).write(trial)
            raise
        record.write(trial)
        return values

    return run


def run_study(study: optuna.Study, plan: StudyPlan, objective: Objective, progress: bool = True,
              tracker=None, callbacks=(), postfix: Callable[[optuna.trial.FrozenTrial], str | None] | None = None,
              log_line: Callable[[optuna.trial.FrozenTrial], str | None] | None = None,
              log: Callable[[str], None] = print) -> optuna.Study:
    """Run ``study`` until it holds ``plan.trials`` finished trials; return it.

    ``tracker`` (a :class:`nas.studies.tracking.SearchTracker` whose run is open) gets a nested run per
    finished trial. With ``progress``, a bar whose postfix is ``postfix(trial)``; without,
    ``log(log_line(trial))`` per finished trial when ``log_line`` is given. ``callbacks`` are
    further Optuna callbacks.
    """
    from tqdm.auto import tqdm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stale = fail_stale_trials(study)
    if stale and progress:
        log(f"failed {len(stale)} trial(s) left RUNNING by a worker of this host that is gone: "
            + ", ".join(map(str, stale)))
    remaining = max(0, plan.trials - finished_trials(study))
    bar = tqdm(total=remaining, desc=plan.label, unit="trial", disable=not progress)

    def tick(study_, trial):
        if tracker is not None:
            tracker.log_trial(trial.number, trial.params, TrialRecord.read(trial), trial.state.name)
        bar.update(1)
        text = postfix(trial) if postfix and trial.values else None
        if text:
            bar.set_postfix_str(text)
        line = log_line(trial) if log_line and not progress and trial.values else None
        if line:
            log(line)

    # Stop once the shared study holds enough finished trials, whoever ran them.
    enough = optuna.study.MaxTrialsCallback(plan.trials, states=FINISHED)
    try:
        if remaining:
            study.optimize(_recorded(objective), n_trials=remaining, catch=(Exception,),
                           callbacks=[tick, enough, *callbacks])
    finally:
        bar.close()
    return study


def drive(plan: StudyPlan, objective: Objective, **kwargs) -> optuna.Study:
    """Open (or resume) the study of ``plan`` and run it: :func:`open_study` then :func:`run_study`."""
    return run_study(open_study(plan), plan, objective, **kwargs)
