"""The front measured after a search (nas.search.verify): over-budget subnets leave the front, the rest stay."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

import nas.search.verify as verify
from infra.errors import UserError
from nas.latency.profile import device_problem
from nas.latency.store import DeviceStore
from nas.search.pareto import MEASURED_ATTR, load_points, pareto_front, render, study_points
from nas.studies.record import TrialRecord
from search_spaces.space import SearchSpace

BUDGET = 10.0
NAME = f"sam_micro@cpu-torch@{BUDGET:g}ms"


def make_study(tmp_path, trials: list[tuple[float, float, int]]) -> optuna.Study:
    """A finished study holding (quality, predicted ms, resolution) trials: the full model at each resolution."""
    study = optuna.create_study(study_name=NAME, storage=f"sqlite:///{tmp_path / 'studies.db'}",
                                directions=["maximize", "minimize"])
    space = SearchSpace.load("sam_micro")
    for quality, ms, resolution in trials:
        config = space.largest().replace(resolution=resolution)
        record = TrialRecord(config=config, quality=quality, predicted_ms=ms, feasible=ms <= BUDGET)
        study.add_trial(optuna.trial.create_trial(values=[quality, ms], user_attrs=record.attrs()))
    return study


def fake_clock(measured: dict[int, float], calls: list, factor: float | None = 1.0):
    """``measure_configs`` on a fake clock: a subnet (told apart by its resolution) measures ``measured[res]`` ms
    while the machine runs at ``factor`` times its profiled latency."""
    def measure(space, device, configs, threads, progress=False, seed=0, root=None):
        calls.append([c.resolution for c in configs])
        rows = [{"median_ms": measured[c.resolution], "p10_ms": 0.0, "p90_ms": 0.0, "repeats": 3} for c in configs]
        return rows, factor
    return measure


def test_an_over_budget_front_subnet_leaves_and_the_one_it_dominated_is_measured(tmp_path, monkeypatch):
    # resolution tells the trials apart on the fake clock: 128 fast, 192 fast enough, 256 over when measured
    study = make_study(tmp_path, [(0.40, 3.0, 128), (0.55, 8.0, 192), (0.60, 9.5, 256)])
    assert [p.trial for p in pareto_front(study_points(study))] == [0, 1, 2]
    calls = []
    monkeypatch.setattr(verify, "device_problem", lambda device, threads, root=None: None)
    monkeypatch.setattr(verify, "measure_configs", fake_clock({128: 2.5, 192: 9.9, 256: 10.4}, calls))
    check = verify.verify_front(study, SearchSpace.load("sam_micro"), "cpu-torch", threads=1)
    assert [p.trial for p in check.front] == [0, 1]
    assert [p.trial for p in check.dropped] == [2] and check.dropped[0].measured_ms == 10.4
    assert calls == [[128, 192, 256]]  # one pass: nothing new entered the front
    stored = optuna.load_study(study_name=NAME, storage=f"sqlite:///{tmp_path / 'studies.db'}").user_attrs
    assert stored[MEASURED_ATTR]["trials"]["2"]["median_ms"] == 10.4 and stored[MEASURED_ATTR]["budget_ms"] == BUDGET
    # every reader of the store sees the measurement: the front, the table, JSON
    points = load_points(f"sqlite:///{tmp_path / 'studies.db'}")
    assert [p.trial for p in pareto_front(points)] == [0, 1]
    assert json.loads(render(pareto_front(points), "json"))[1]["measured_ms"] == 9.9
    assert "meas. ms" in render(pareto_front(points), "table")
    # measuring again measures nothing new
    again = verify.verify_front(study, SearchSpace.load("sam_micro"), "cpu-torch", threads=1)
    assert not again.measured and len(calls) == 1 and "nothing new" in again.summary()


def test_a_dropped_subnet_brings_the_next_one_onto_the_front_which_is_measured_too(tmp_path, monkeypatch):
    # trial 1 dominates trial 0; once trial 1 is measured over the budget, trial 0 is on the front
    study = make_study(tmp_path, [(0.50, 9.0, 128), (0.60, 8.0, 256)])
    calls = []
    monkeypatch.setattr(verify, "device_problem", lambda device, threads, root=None: None)
    monkeypatch.setattr(verify, "measure_configs", fake_clock({128: 9.5, 256: 12.0}, calls))
    check = verify.verify_front(study, SearchSpace.load("sam_micro"), "cpu-torch", threads=1)
    assert calls == [[256], [128]]
    assert [p.trial for p in check.front] == [0] and check.front[0].measured_ms == 9.5
    assert "trial 1 (12.00 ms, predicted 8.00)" in check.summary()


def test_the_raw_median_is_judged_and_the_probes_speed_factor_is_kept_beside_it(tmp_path, monkeypatch):
    # the drift probe says the machine runs 1.5x slower than when profiled; the raw median still decides
    study = make_study(tmp_path, [(0.50, 9.0, 128), (0.60, 9.5, 256)])
    monkeypatch.setattr(verify, "device_problem", lambda device, threads, root=None: None)
    monkeypatch.setattr(verify, "measure_configs", fake_clock({128: 9.9, 256: 13.5}, [], factor=1.5))
    check = verify.verify_front(study, SearchSpace.load("sam_micro"), "cpu-torch", threads=1)
    assert [p.trial for p in check.front] == [0] and [p.trial for p in check.dropped] == [1]
    assert "drift probe ran at 1.50-1.50x its profiled latency" in check.summary()
    entry = study.user_attrs[MEASURED_ATTR]["trials"]["1"]
    assert entry["median_ms"] == 13.5 and entry["speed_factor"] == 1.5
    (tmp_path / "raw").mkdir()
    monkeypatch.setattr(verify, "measure_configs", fake_clock({128: 9.9}, [], factor=None))
    check = verify.verify_front(make_study(tmp_path / "raw", [(0.50, 9.0, 128)]), SearchSpace.load("sam_micro"),
                                "cpu-torch", threads=1)
    assert [p.trial for p in check.front] == [0] and "no drift-probe baseline" in check.summary()


def test_speed_factor_is_the_median_probe_ratio_against_the_stored_baseline(tmp_path):
    from nas.latency.probe import probe_configs, speed_factor

    space = SearchSpace.load("sam_micro")
    probes = probe_configs(space)
    store = DeviceStore("cpu-torch", tmp_path)
    store.folder.mkdir(parents=True)
    store.write_probes([{"space": space.name, "config": c.key, "median_ms": ms, "p10_ms": ms,
                         "p90_ms": ms, "repeats": 3} for c, ms in zip(probes, (2.0, 4.0, 8.0))])
    now = [{"config": c.key, "median_ms": ms} for c, ms in zip(probes, (3.0, 4.4, 8.0))]
    assert speed_factor(now, "cpu-torch", space, tmp_path) == pytest.approx(1.1)  # median of 1.5, 1.1, 1.0
    assert speed_factor(now, "cpu-torch", space, tmp_path / "none") is None


def test_verify_refuses_a_device_profiled_elsewhere(tmp_path):
    root = tmp_path / "latency"
    assert "no measurements" in device_problem("cpu-torch", 1, root)
    store = DeviceStore("cpu-torch", root)
    store.folder.mkdir(parents=True)
    (store.folder / "fingerprint.json").write_text(json.dumps({"cpu": "Some Phone SoC", "threads": 1,
                                                               "backend": "torch"}))
    problem = device_problem("cpu-torch", 1, root)
    assert "another machine" in problem and "Some Phone SoC" in problem
    study = make_study(tmp_path, [(0.4, 3.0, 128)])
    with pytest.raises(UserError, match="Some Phone SoC"):
        verify.verify_front(study, SearchSpace.load("sam_micro"), "cpu-torch", threads=1, root=root)


def test_measure_configs_times_real_subnets_in_the_order_given():
    space = SearchSpace.load("sam_micro")
    small, large = space.smallest(), space.largest()
    rows, factor = verify.measure_configs(space, "cpu-torch", [large, small], threads=1, root=Path("/nonexistent"))
    assert factor is None  # no stored probe baseline to compare with
    assert [r["resolution"] for r in rows] == [large.resolution, small.resolution]
    assert all(r["median_ms"] > 0 and r["repeats"] >= 1 for r in rows)
    assert rows[0]["median_ms"] > rows[1]["median_ms"]  # the full model at its largest side is the slower
