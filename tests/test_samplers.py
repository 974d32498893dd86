"""Hypervolume, the surrogate and seeded-NSGA-II samplers, the reference pool cache and the cost split.

Fast: a synthetic quality function and an analytic latency model stand in for the evaluator and
the fitted predictor (the real ones run in tests/test_search.py and benchmarks/search.py).
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import optuna
import pytest

from nas.studies.cost import TimedSampler, mean_costs, trial_costs
from nas.search.hypervolume import expected_improvement, front_2d, hypervolume_2d, improvement
from nas.search.pool_front import QualityMemo, load_or_build
from nas.search.samplers import PROPOSAL_ATTR, SeededNSGAIISampler, SurrogateSampler
from nas.search.samplers.quality_model import MODELS, QualityModel
from nas.search.samplers.stall import GAIN_PCT, MOVE_PCT, hv_history, outlook
from nas.search.samplers.design import (crossover, encode_many, mutate, spread_over_latency, spread_per_resolution,
                                        uniform_shrinks)
from nas.search.run import suggest_config
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

SPACE = SearchSpace.load("sam_micro")


# ------------------------------------------------------------------------------------------ hypervolume

def test_hypervolume_hand_made_sets():
    # front (10 ms, 0.5) and (40 ms, 0.8), reference 100 ms: 30 * 0.5 + 60 * 0.8
    assert hypervolume_2d([0.5, 0.8, 0.4], [10, 40, 50], ref_ms=100) == pytest.approx(63.0)
    # a single point: a rectangle
    assert hypervolume_2d([0.25], [20], ref_ms=100) == pytest.approx(80 * 0.25)
    # a dominated point, an exact duplicate and a point slower than the reference add nothing
    assert hypervolume_2d([0.5, 0.8, 0.4, 0.8, 0.99], [10, 40, 50, 40, 120], ref_ms=100) == pytest.approx(63.0)
    # reference quality above 0: only what exceeds it counts; points below it add nothing
    assert hypervolume_2d([0.5, 0.8, 0.1], [10, 40, 5], ref_ms=100, ref_quality=0.2) == pytest.approx(
        30 * 0.3 + 60 * 0.6)
    # a staircase of three points: 10*(0.2) + 10*(0.4) + 30*(0.9) over [10, 50]
    assert hypervolume_2d([0.9, 0.2, 0.4], [30, 10, 20], ref_ms=60) == pytest.approx(10 * 0.2 + 10 * 0.4 + 30 * 0.9)
    assert hypervolume_2d([], [], ref_ms=100) == 0.0
    assert hypervolume_2d([0.9], [150], ref_ms=100) == 0.0
    # a point exactly at the reference latency encloses no area
    assert hypervolume_2d([0.9], [100], ref_ms=100) == 0.0


def test_front_2d_keeps_non_dominated_points_fastest_first():
    q, m = front_2d([0.5, 0.6, 0.55, 0.9, 0.7, 0.6], [10, 20, 30, 150, 40, 20], ref_ms=100)
    assert q.tolist() == [0.5, 0.6, 0.7] and m.tolist() == [10, 20, 40]


def _grid_area(quality, ms, ref_ms, ref_quality=0):
    """Unit cells of an integer grid dominated by some point (independent brute force)."""
    cells = 0
    for x, y in itertools.product(range(int(ref_ms)), range(ref_quality, 20)):
        # cell [x, x+1] x [y, y+1] is dominated if a point is at most x ms and at least y+1 quality
        cells += any(mm <= x and qq >= y + 1 for qq, mm in zip(quality, ms))
    return cells


def test_hypervolume_matches_brute_force_on_integer_sets():
    rng = np.random.default_rng(0)
    for _ in range(25):
        n = int(rng.integers(1, 9))
        quality = rng.integers(0, 20, n).tolist()
        ms = rng.integers(0, 40, n).tolist()
        assert hypervolume_2d(quality, ms, ref_ms=30) == pytest.approx(_grid_area(quality, ms, 30))


def test_improvement_is_the_hypervolume_gained():
    quality, ms = [0.5, 0.8, 0.4], [10, 40, 50]
    cands_q = np.array([0.6, 0.9, 0.3, 0.85, 0.7])
    cands_ms = np.array([20, 5, 60, 45, 120])
    gained = improvement(cands_q, cands_ms, quality, ms, ref_ms=100)
    expected = [hypervolume_2d(quality + [q], ms + [m], 100) - hypervolume_2d(quality, ms, 100)
                for q, m in zip(cands_q, cands_ms)]
    assert gained == pytest.approx(expected)
    assert gained[2] == 0.0 and gained[4] == 0.0  # dominated, and slower than the reference


def test_expected_improvement_closed_form():
    quality, ms = [0.5, 0.8], [10, 40]
    mean, std, cand_ms = np.array([0.6, 0.7]), np.array([0.1, 0.05]), np.array([20.0, 30.0])
    # no spread: the improvement of the mean
    assert expected_improvement(mean, np.zeros(2), cand_ms, quality, ms, 100) == pytest.approx(
        improvement(mean, cand_ms, quality, ms, 100))
    # Monte Carlo agrees with the closed form
    rng = np.random.default_rng(0)
    draws = mean[:, None] + std[:, None] * rng.standard_normal((2, 100_000))
    mc = [improvement(draws[i], np.full(draws.shape[1], cand_ms[i]), quality, ms, 100).mean() for i in range(2)]
    assert expected_improvement(mean, std, cand_ms, quality, ms, 100) == pytest.approx(mc, rel=0.02)


# ------------------------------------------------------------------------------------------ designs

class FakeLatency:
    """Latency that grows with resolution^2 and the kept heads and MLP width (an analytic stand-in)."""

    weights = np.array([1.0, 0.83, 1.21, 0.67, 1.09, 0.94])  # per block, so that latencies vary finely

    def predict_ms(self, config) -> float:
        enc = SPACE.encode(config)
        return float(1.0 + 20 * enc[0] ** 2 * (self.weights @ (0.6 * enc[2::3] + 0.4 * enc[3::3])))

    def predict_many(self, configs):
        return np.array([self.predict_ms(c) for c in configs])


def fake_quality(config) -> float:
    """Saturating in resolution and capacity, with block 2 (a global block) worth more than the rest."""
    enc = SPACE.encode(config)
    capacity = enc[2::3].sum() + 0.7 * enc[3::3].sum() + 0.8 * enc[1 + 3 * 2]
    return float(np.tanh(1.5 * enc[0] * capacity))


def test_encode_many_agrees_with_the_space():
    rng = np.random.default_rng(3)
    configs = [SPACE.sample(rng) for _ in range(50)]
    assert np.array_equal(encode_many(SPACE, configs), np.array([SPACE.encode(c) for c in configs]))


def test_designs_give_valid_configs():
    rng = np.random.default_rng(1)
    shrinks = uniform_shrinks(SPACE)
    assert SPACE.validate(SPACE.largest()) in shrinks and len(set(shrinks)) == len(shrinks)
    for _ in range(200):
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        for child in (mutate(SPACE, a, rng, genes=3), crossover(SPACE, a, b, rng)):
            if child is not None:
                assert SPACE.validate(child) == child


def test_initial_design_spreads_over_the_latency_range():
    latency, budget = FakeLatency(), 12.0
    design = spread_over_latency(SPACE, latency, budget, 8, seed=0)
    ms = np.sort(latency.predict_many(design))
    low = latency.predict_ms(SPACE.smallest())
    assert len(design) == 8 and ms.max() <= budget and len(set(design)) == 8
    # from the fastest eighth of [fastest, budget] to the slowest, no gap wider than a quarter of it
    width = (budget - low) / 8
    assert ms.min() <= low + width and ms.max() >= budget - width
    assert np.diff(ms).max() <= 2 * width


# ------------------------------------------------------------------------------------------ samplers

def _run(sampler, trials: int, storage=None, name="s") -> optuna.Study:
    latency = FakeLatency()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=TimedSampler(sampler),
                                storage=storage, study_name=name)

    def objective(trial):
        config = suggest_config(trial, SPACE)
        trial.set_user_attr("config", config.key)
        trial.set_user_attr("eval_s", 0.0)
        trial.set_user_attr("sample_s", trial.study.sampler.seconds(trial._trial_id))
        return fake_quality(config), latency.predict_ms(config)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials)
    return study


def _configs(study):
    return [t.user_attrs["config"] for t in sorted(study.trials, key=lambda t: t.number)]


def _hv(study, budget, n=None):
    trials = sorted(study.trials, key=lambda t: t.number)[:n]
    return hypervolume_2d([t.values[0] for t in trials], [t.values[1] for t in trials], budget)


def test_surrogate_is_reproducible_with_a_seed_and_keeps_to_the_budget():
    budget = 12.0
    runs = [_run(SurrogateSampler(SPACE, FakeLatency(), budget, seed=seed), 16) for seed in (4, 4, 5)]
    assert _configs(runs[0]) == _configs(runs[1])
    assert _configs(runs[0]) != _configs(runs[2])
    study = runs[0]
    assert all(t.values[1] <= budget for t in study.trials)  # proposes only within the budget
    assert len(set(_configs(study))) == len(study.trials)  # never the same config twice
    # every trial evaluated what the sampler proposed
    assert all(json.loads(t.system_attrs[PROPOSAL_ATTR]) == json.loads(t.user_attrs["config"]) for t in study.trials)
    # and the sampler's own time is recorded per trial
    costs = trial_costs(study.trials)
    assert len(costs) == 16 and all(c.sample_s > 0 for c in costs)
    assert mean_costs(costs)["sample_s"] <= mean_costs(costs)["wall_s"]


@pytest.mark.slow
def test_surrogate_beats_random_on_a_synthetic_problem():
    """Not a benchmark (see results/search.md), but a search that learns nothing fails this."""
    budget = 12.0
    sur = [_hv(_run(SurrogateSampler(SPACE, FakeLatency(), budget, seed=s), 24), budget) for s in (0, 1)]
    rnd = [_hv(_run(optuna.samplers.RandomSampler(seed=s), 24), budget) for s in (0, 1)]
    assert min(sur) > max(rnd)


def test_surrogate_workers_on_one_storage_spread_out(tmp_path):
    """Two samplers on one RDB study, interleaved: each sees the other's running proposal."""
    budget, storage = 12.0, f"sqlite:///{tmp_path / 'two.db'}"
    a = optuna.create_study(directions=["maximize", "minimize"], storage=storage, study_name="two",
                            sampler=SurrogateSampler(SPACE, FakeLatency(), budget, seed=1))
    b = optuna.load_study(study_name="two", storage=storage,
                          sampler=SurrogateSampler(SPACE, FakeLatency(), budget, seed=1))  # same seed on purpose
    for _ in range(8):
        ta, tb = a.ask(), b.ask()  # both RUNNING at once
        ca, cb = suggest_config(ta, SPACE), suggest_config(tb, SPACE)
        assert ca != cb  # b saw a's proposal and chose another config
        for study, trial, config in ((a, ta, ca), (b, tb, cb)):
            trial.set_user_attr("config", config.key)
            study.tell(trial, [fake_quality(config), FakeLatency().predict_ms(config)])
    assert len({t.user_attrs["config"] for t in a.trials}) == 16


def test_seeded_nsga2_first_generation_is_the_latency_spread():
    budget = 12.0
    study = _run(SeededNSGAIISampler(SPACE, FakeLatency(), budget, population_size=8, seed=0), 10)
    design = spread_over_latency(SPACE, FakeLatency(), budget, 8, seed=0)
    assert [SubnetConfig.from_json(c) for c in _configs(study)[:8]] == design


# ------------------------------------------------------------------------------------------ reference pool

def test_reference_pool_is_cached_by_key(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return [{"config": SPACE.smallest(), "quality": 0.5, "predicted_ms": 3.0}]

    key = {"space": "sam_micro", "weights": "abc", "levels": (1, 2)}  # tuples are stored as lists
    rows, path, cached = load_or_build(tmp_path, key, build)
    assert not cached and len(calls) == 1 and path.is_file()
    rows2, path2, cached2 = load_or_build(tmp_path, dict(key), build)
    assert cached2 and rows2 == rows and path2 == path and len(calls) == 1
    _, path3, cached3 = load_or_build(tmp_path, {**key, "weights": "other"}, build)
    assert not cached3 and path3 != path and len(calls) == 2


def test_quality_memo_measures_a_config_once(tmp_path):
    class Counting:
        name, calls = "count", 0

        def evaluate(self, model, config):
            Counting.calls += 1
            return type("R", (), {"score": 0.25})()

    from supernet.elastic.build import build_sam

    model = build_sam("micro", seed=0)
    memo = QualityMemo(tmp_path / "memo.json", every=1)
    config = SPACE.validate(SPACE.smallest())
    assert memo.quality(model, Counting(), config) == 0.25
    assert QualityMemo(tmp_path / "memo.json").quality(model, Counting(), config) == 0.25
    assert Counting.calls == 1
    # two processes sharing the file: each one's flush keeps what the other wrote
    first, second = QualityMemo(tmp_path / "shared.json"), QualityMemo(tmp_path / "shared.json")
    first.values["a"], second.values["b"] = 0.1, 0.2
    first.flush()
    second.flush()
    assert QualityMemo(tmp_path / "shared.json").values == {"a": 0.1, "b": 0.2}


# ------------------------------------------------------------------------------------------ stall detector

def _hand_made_study(qualities, configs) -> optuna.Study:
    """A real in-memory study holding completed trials made by hand: ``configs[i]`` scored ``qualities[i]``
    at FakeLatency's ms (what a search would have stored)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for q, config in zip(qualities, configs):
        study.add_trial(optuna.trial.create_trial(
            values=[q, FakeLatency().predict_ms(config)], user_attrs={"config": config.key},
            params={}, distributions={}))
    return study


def _feasible_draws(n, budget, seed):
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        c = SPACE.sample(rng)
        if FakeLatency().predict_ms(c) <= budget and c not in out:
            out.append(c)
    return out


def test_hv_history_is_the_hypervolume_of_each_prefix():
    q, ms = [0.3, 0.2, 0.5, 0.4], [4.0, 2.0, 6.0, 9.0]
    history = hv_history(q, ms, 10.0)
    assert history == pytest.approx([0.3 * 6, 0.2 * 2 + 0.3 * 6, 0.2 * 2 + 0.3 * 2 + 0.5 * 4, 0.2 * 2 + 0.3 * 2 + 0.5 * 4])


def test_stall_detector_fires_when_the_front_stops_moving_and_the_model_expects_gains():
    budget = 12.0
    configs = _feasible_draws(24, budget, seed=7)
    good = [fake_quality(c) for c in configs[:16]]
    # the last 8 trials: real configs scored far below anything on the front (the front stops moving)
    study = _hand_made_study(good + [0.0] * 8, configs)
    sampler = SurrogateSampler(SPACE, FakeLatency(), budget, seed=0)
    view = outlook(study, budget, TimedSampler(sampler), name="surrogate")
    assert view.trials == 24 and view.window == 8 and view.moved_pct == 0.0
    assert view.expected_pct >= GAIN_PCT and view.verdict == "stalled"
    assert "stalled" in view.line() and "--trials 48" in view.line()


def test_stall_detector_stays_quiet_while_the_front_keeps_improving():
    budget = 12.0
    configs = _feasible_draws(24, budget, seed=7)
    # every trial beats the last at the same or lower latency budget share: the front keeps climbing
    study = _hand_made_study(list(np.linspace(0.1, 0.9, 24)), configs)
    view = outlook(study, budget, SurrogateSampler(SPACE, FakeLatency(), budget, seed=0), name="surrogate")
    assert view.moved_pct >= MOVE_PCT and view.verdict == "moving"
    assert "still climbing" in view.line() and "stalled" not in view.line()


def test_outlook_without_a_model_and_with_too_few_trials():
    budget = 12.0
    configs = _feasible_draws(24, budget, seed=2)
    flat = _hand_made_study([0.5] + [0.0] * 23, configs)  # one good trial first, nothing after it
    view = outlook(flat, budget, optuna.samplers.RandomSampler(seed=0), name="random")
    assert view.expected_pct is None and view.verdict == "settled"
    assert "not available" in view.line() and "has settled" in view.line()
    assert outlook(_hand_made_study([0.5] * 10, configs[:10]), budget).verdict == "too few"
    assert outlook(_hand_made_study([0.5] * 3, configs[:3]), 0.5).verdict == "empty"  # nothing within 0.5 ms
    # the one good trial measured over the budget after the search (nas.search.verify) leaves the front: nothing is left
    assert outlook(flat, budget, measured={0: budget + 1.0, 1: budget - 1.0}).hv_now == 0.0


def test_expected_gain_of_one_candidate_is_its_expected_improvement():
    """Oracle: the Monte Carlo gain of the single best candidate equals its closed-form expected improvement."""
    budget = 12.0
    configs = _feasible_draws(12, budget, seed=5)
    study = _hand_made_study([fake_quality(c) for c in configs], configs)
    next_gain, batch = SurrogateSampler(SPACE, FakeLatency(), budget, seed=0).expected_gain(study, 1, draws=20000)
    assert next_gain > 0 and batch == pytest.approx(next_gain, rel=0.05)
    _, batch8 = SurrogateSampler(SPACE, FakeLatency(), budget, seed=0).expected_gain(study, 8, draws=2000)
    assert batch8 >= batch * 0.95  # eight candidates add at least about what the best one adds


def test_design_per_resolution_covers_every_resolution_first():
    latency, budget = FakeLatency(), 12.0
    res = sorted(SPACE.resolutions)
    feasible = [r for r in res if spread_over_latency(SPACE, latency, budget, 1, 0, resolution=r)]
    assert len(feasible) == 2  # no candidate of the largest side meets this budget: its places go elsewhere
    design = spread_per_resolution(SPACE, latency, budget, 8, seed=0)
    assert len(design) == 8 and len(set(design)) == 8
    assert all(latency.predict_ms(c) <= budget for c in design)
    assert sorted(c.resolution for c in design[:2]) == feasible  # one of each before any second
    assert sum(c.resolution == res[0] for c in design) >= 3
    # each resolution's share spreads over its own feasible range: its slowest pick is near its slowest config
    for r in feasible:
        mine = sorted(latency.predict_ms(c) for c in design if c.resolution == r)
        slowest = min(budget, latency.predict_ms(SPACE.largest().replace(resolution=r)))
        assert mine[-1] >= mine[0] + 0.5 * (slowest - mine[0])
    # with a budget every side meets, three resolutions share 8 places 3/3/2, one of each first
    wide = spread_per_resolution(SPACE, latency, 40.0, 8, seed=0)
    assert sorted(c.resolution for c in wide[:3]) == res
    assert [sum(c.resolution == r for c in wide) for r in res] == [3, 3, 2]


def test_surrogate_starts_from_the_design_it_is_given():
    budget = 40.0
    study = _run(SurrogateSampler(SPACE, FakeLatency(), budget, seed=0, n_init=6, design="per-resolution"), 6)
    assert [SubnetConfig.from_json(c) for c in _configs(study)] == spread_per_resolution(SPACE, FakeLatency(), budget, 6, 0)
    with pytest.raises(ValueError, match="design 'grid'"):
        SurrogateSampler(SPACE, FakeLatency(), budget, design="grid")


# ------------------------------------------------------------------------------------------ quality models

@pytest.mark.parametrize("model", list(MODELS))
def test_every_quality_model_proposes_within_the_budget_reproducibly(model):
    budget = 12.0
    runs = [_run(SurrogateSampler(SPACE, FakeLatency(), budget, seed=seed, model=model), 12) for seed in (3, 3, 4)]
    assert _configs(runs[0]) == _configs(runs[1]) and _configs(runs[0]) != _configs(runs[2])
    assert all(t.values[1] <= budget for t in runs[0].trials)
    assert len(set(_configs(runs[0]))) == 12
    # the stall detector's estimate works on every model: the best candidate's gain, then the batch's
    next_gain, batch = SurrogateSampler(SPACE, FakeLatency(), budget, seed=0, model=model).expected_gain(
        runs[0], 4, draws=500)
    assert next_gain >= 0 and batch >= 0
    fitted = SurrogateSampler(SPACE, FakeLatency(), budget, seed=0, model=model).quality_model(runs[0])
    assert fitted.name == model and fitted.predict([SPACE.smallest()], np.array([2.0])).shape == (1,)
    with pytest.raises(ValueError, match="model 'rf'"):
        SurrogateSampler(SPACE, FakeLatency(), budget, model="rf")


def test_quality_model_features():
    rng = np.random.default_rng(0)
    configs = [SPACE.sample(rng) for _ in range(20)]
    ms = FakeLatency().predict_many(configs)
    enc = encode_many(SPACE, configs)
    features = {name: QualityModel(name, SPACE, 10.0).features(configs, ms) for name in MODELS}
    # the default reads the encoding and ms / budget, as the sampler always did
    assert np.array_equal(features["gp"], np.column_stack([enc, ms / 10.0]))
    assert np.array_equal(features["gp-no-ms"], enc) and np.array_equal(features["gp-trend"], features["gp"])
    assert np.array_equal(features["gp-log"], features["gp"])
    sides = sorted(SPACE.resolutions)
    one_hot = features["per-resolution"][:, :len(sides)]
    assert np.array_equal(one_hot.sum(axis=1), np.ones(len(configs)))
    assert [sides[int(i)] for i in one_hot.argmax(axis=1)] == [c.resolution for c in configs]
    assert np.array_equal(features["per-resolution"][:, len(sides):], features["gp"][:, 1:])
    # summary: the same one-hot sides, then the kept, heads and MLP shares averaged over the blocks, then ms / budget
    n = SPACE.num_blocks
    shares = enc[:, 1:1 + 3 * n].reshape(len(configs), n, 3).mean(axis=1)
    assert np.allclose(features["summary"], np.column_stack([one_hot, shares, ms / 10.0]))


def _linear_quality(configs, ms):
    """A quality linear in the encoding (input side included) and latency: what a trend carries anywhere, where
    a zero-mean GP reverts to the trials' mean away from them."""
    enc = encode_many(SPACE, configs)
    return 0.4 * enc[:, 0] + 0.05 * enc[:, 2::3].sum(axis=1) - 0.01 * ms


def test_trend_models_extrapolate_a_linear_quality_across_input_sides():
    """Fitted on the two larger input sides only, each model predicts the smallest side's configs."""
    rng = np.random.default_rng(1)
    low = min(SPACE.resolutions)
    draws = [SPACE.sample(rng) for _ in range(400)]
    train = [c for c in draws if c.resolution != low][:40]
    test = [c.replace(resolution=low) for c in draws[-60:]]
    errors = {}
    for name in MODELS:
        model = QualityModel(name, SPACE, 12.0)
        ms_train, ms_test = FakeLatency().predict_many(train), FakeLatency().predict_many(test)
        model.fit(train, ms_train, _linear_quality(train, ms_train), optimise=True)
        errors[name] = np.abs(model.predict(test, ms_test) - _linear_quality(test, ms_test)).mean()
    # the scalar-side trend extends the slope through the sides seen; the one-hot trend has no slope across
    # sides, and nothing tells it the unseen side's offset: only the scalar trend must beat the plain GP there
    assert errors["gp-trend"] < 0.5 * errors["gp"], errors


def test_log_gap_model_fits_the_gap_to_one_and_answers_in_quality():
    """gp-log regresses log(1 - quality + floor): its answers are back on the quality scale, its spread by the
    delta method, and a gap that shrinks by factors (quality rising steeply towards the full model) fits better
    than on the quality scale."""
    from nas.search.samplers.quality_model import GAP_FLOOR

    rng = np.random.default_rng(2)
    configs = list(dict.fromkeys(SPACE.sample(rng) for _ in range(120)))
    ms = FakeLatency().predict_many(configs)
    enc = encode_many(SPACE, configs)
    gap = np.exp(-3.0 * (enc[:, 0] - 0.5) - 0.5 * enc[:, 2::3].sum(axis=1))  # shrinking by a factor per part kept
    quality = 1.0 + GAP_FLOOR - gap
    train, test = slice(0, 60), slice(60, None)
    fitted = {name: QualityModel(name, SPACE, 12.0).fit(configs[train], ms[train], quality[train], optimise=True)
              for name in ("gp", "gp-log")}
    log_model = fitted["gp-log"]
    mean, std = log_model.predict(configs[test], ms[test], return_std=True)
    inner_mean, inner_std = log_model.gp.predict(log_model.features(configs[test], ms[test]), return_std=True)
    assert np.allclose(mean, 1.0 + GAP_FLOOR - np.exp(inner_mean))
    assert np.allclose(std, inner_std * np.exp(inner_mean))
    _, cov = log_model.predict(configs[test][:5], ms[test][:5], return_cov=True)
    assert np.allclose(np.sqrt(np.diag(cov)), std[:5], rtol=1e-4)
    errors = {name: np.abs(m.predict(configs[test], ms[test]) - quality[test]).mean() for name, m in fitted.items()}
    assert errors["gp-log"] < errors["gp"], errors
