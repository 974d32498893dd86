"""The trial record and the study driver, on a toy objective (no model): what both searches and policy tuning rely on."""
from __future__ import annotations

import json

import optuna
import pytest

from nas.studies import driver
from nas.studies.record import TrialRecord
from search_spaces import SubnetConfig


def test_record_reads_studies_written_before_it_and_writes_canonical_config():
    config = {"space": "sam_micro", "resolution": 128, "blocks": [{"keep": True, "heads": 2, "mlp": 64}]}
    old = {"config": json.dumps(config, sort_keys=True), "quality": 0.5, "params": 10, "host": "h", "pid": 3,
           "some_future_key": 1}  # search.py wrote the config with spaces; unknown keys are left alone
    record = TrialRecord.read(old)
    assert record.config == SubnetConfig.from_dict(config) and record.quality == 0.5 and record.params == 10 and record.flops is None
    attrs = record.attrs()
    assert attrs["config"] == json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert "flops" not in attrs and "some_future_key" not in attrs
    assert TrialRecord.read(attrs) == record
    assert TrialRecord().config_json == "{}"


def test_driver_catches_failures_counts_finished_trials_and_records_workers(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    lines = []

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 1:
            raise ValueError("boom")
        return (x, 1.0 - x), TrialRecord(config={"x": x}, quality=x, predicted_ms=1.0 - x, feasible=True)

    def plan(trials):
        return driver.StudyPlan(name="toy@cpu-torch@1ms", sampler=optuna.samplers.RandomSampler(seed=0),
                                trials=trials, storage=storage, attrs={"device": "cpu-torch", "budget_ms": 1.0})

    study = driver.drive(plan(4), objective, progress=False, log=lines.append,
                         log_line=lambda t: f"trial {t.number}: {t.values[0]:.2f}")
    states = [t.state for t in study.trials]
    assert len(states) == 4 and states.count(optuna.trial.TrialState.FAIL) == 1, "a failed trial counts as finished"
    failed = TrialRecord.read(study.trials[1])
    assert failed.error == "ValueError: boom" and failed.host == driver.current_worker().host
    assert failed.worker == driver.current_worker().worker
    done = TrialRecord.read(study.trials[0])
    assert done.config == {"x": study.trials[0].params["x"]} and done.quality == study.trials[0].values[0]
    assert study.user_attrs == {"device": "cpu-torch", "budget_ms": 1.0}
    assert study.metric_names == ["quality", "predicted_ms"]
    assert len(lines) == 3 and lines[0].startswith("trial 0: ")  # one line per completed trial, without a bar
    # resuming to more trials runs only the missing ones
    assert len(driver.drive(plan(6), objective, progress=False).trials) == 6
    assert driver.finished_trials(study) == 6 and driver.other_hosts_running(study) == []


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_stale_trials_of_a_gone_worker_are_failed(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    plan = driver.StudyPlan(name="toy@cpu-torch@1ms", sampler=optuna.samplers.RandomSampler(seed=0), trials=1,
                            storage=storage)
    study = driver.open_study(plan)
    trial = study.ask()
    TrialRecord(host=driver.current_worker().host, pid=2**22 + 12345).write(trial)  # above pid_max: no such process
    assert driver.fail_stale_trials(study) == [trial.number]
    frozen = study.trials[0]
    assert frozen.state == optuna.trial.TrialState.FAIL and "was gone" in TrialRecord.read(frozen).error


def test_tracker_metric_names_are_valid_for_mlflow():
    from nas.studies.tracking import _NOT_IN_NAMES

    assert _NOT_IN_NAMES.sub("_", "AR@100") == "AR_100" and _NOT_IN_NAMES.sub("_", "mean_iou/x.y") == "mean_iou/x.y"
