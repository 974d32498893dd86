"""Drift probe, recalibration and `samnas latency validate` on sam_micro: fake clocks and real fresh processes."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

import cli
from nas.measure import timing
from nas.latency import ProfileSettings, fit_device, load_predictor, profile_device
from nas.latency import probe as probe_mod
from nas.latency.predictor import lut_index, lut_parts
from nas.latency.probe import probe_configs, run_probe
from nas.latency.profile import block_kinds, restrict_resolutions, sample_configs
from nas.latency.store import DeviceStore
from nas.latency.validate import (KEEP_PROBABILITY, VALIDATION_FILE, prepare_subnet, time_in_fresh_process,
                                  validation_configs)
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam

FINGERPRINT = {"cpu": "fake", "threads": 1, "backend": "torch", "allocator": "fake"}


@pytest.fixture(scope="module")
def space():
    return restrict_resolutions(SearchSpace.load("sam_micro"), [128])


def synthetic_rows(space, n=12):
    """Block timings from a formula, and ``n`` subnets that take 1.1x their lookup-table sum (no clock involved)."""
    blocks = [{**k, "median_ms": 0.5 + 0.1 * k["heads"] + k["mlp"] / 1000, "p10_ms": 0.0, "p90_ms": 0.0,
               "min_ms": 0.0, "max_ms": 0.0, "repeats": 1, "seconds": 0.0} for k in block_kinds(space)]
    lut = lut_index(blocks)

    def row(cfg):
        ms = 1.1 * sum(v for _, v in lut_parts(space, lut, cfg))
        return {"space": space.name, "part": "encoder", "prompts": 0, "resolution": cfg.resolution,
                "config": cfg.key, "median_ms": ms, "p10_ms": ms, "p90_ms": ms, "min_ms": ms, "max_ms": ms,
                "repeats": 1, "seconds": 0.1}

    networks = [row(c) for c in sample_configs(space, n, seed=0)]
    probes = [{**row(c), "space": space.name} for c in probe_configs(space)]
    return blocks, networks, probes


@pytest.fixture
def fake_root(tmp_path, space):
    """A fitted cpu-torch device folder from synthetic rows, with a probe baseline; nothing was timed."""
    blocks, networks, probes = synthetic_rows(space)
    store = DeviceStore("cpu-torch", tmp_path)
    store.add_measurements(FINGERPRINT, {space.name: space.to_dict()}, blocks, networks, probes=probes)
    fit_device("cpu-torch", root=tmp_path)
    return tmp_path


def fake_clock(monkeypatch, slowdown, baseline):
    """perf_counter runs on a fake clock; each probe subnet takes its baseline ms times ``slowdown[0]``."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def backend_build(device, space, threads, seed=0):
        def build(cfg):
            ms = baseline[cfg.key]

            def run():
                clock[0] += ms * slowdown[0] / 1000
            return run
        return build, None, FINGERPRINT

    monkeypatch.setattr(probe_mod, "backend_build", backend_build)


def baseline_ms(root):
    return {p["config"]: p["median_ms"] for p in DeviceStore("cpu-torch", root).probes()["sam_micro"]["probes"]}


# ---------------------------------------------------------------------- the validation sampler


def test_validation_sampler_is_seeded_independent_and_disjoint(space):
    full = SearchSpace.load("sam_micro")
    profiled = sample_configs(full, 60, seed=0)
    configs = validation_configs(full, 300, seed=0, exclude=profiled)
    assert len(configs) == 300 and configs == validation_configs(full, 300, seed=0, exclude=profiled)
    assert validation_configs(full, 20, seed=1) != validation_configs(full, 20, seed=0)
    keys = {c.key for c in configs}
    assert len(keys) == 300 and not keys & {c.key for c in profiled}
    # another distribution than profiling's: blocks 1-5 kept with p=0.7 (profiling: a fair coin for window blocks)
    kept = np.mean([b.keep for c in configs for b in c.blocks[1:]])
    assert abs(kept - KEEP_PROBABILITY) < 0.05
    window = [i for i, b in enumerate(full.blocks) if b.skippable and not b.is_global]
    drawn = sample_configs(full, 300, seed=5)[2:]  # after the largest and the smallest
    prof_kept = np.mean([c.blocks[i].keep for c in drawn for i in window])
    assert abs(prof_kept - 0.5) < 0.05
    assert {c.resolution for c in configs} == set(full.resolutions)
    assert all(sum(c.blocks[i].keep for i in full.global_blocks) >= full.min_global_blocks for c in configs)
    # same seed as profiling, yet not the profiling sampler's draws
    assert validation_configs(full, 1, seed=0)[0] != full.sample(np.random.default_rng(0))
    # a restricted space gives configs at its resolutions only; exclusions by JSON text work too
    small = validation_configs(space, 10, seed=0, exclude=[c.key for c in configs])
    assert {c.resolution for c in small} == {128}
    # an int8 space draws each kept block's precision as well (mixed-precision held-out subnets)
    mixed = validation_configs(SearchSpace.load("sam_micro_int8"), 200, seed=0)
    share = np.mean([b.precision == "int8" for c in mixed for b in c.kept_blocks])
    assert abs(share - 0.5) < 0.06


# ---------------------------------------------------------------------- fresh-process timing


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=pytest.mark.slow), "onnxruntime"])
def test_fresh_process_times_a_tiny_subnet(tmp_path, space, backend):
    cfg = space.validate(space.smallest())
    path = prepare_subnet(build_sam("micro", seed=0), cfg, backend, tmp_path / "sub")
    result = time_in_fresh_process(backend, path, 128, threads=1, repeats=3, warmup=1, min_seconds=0.01)
    assert result["pid"] != os.getpid() and result["threads"] == 1
    assert result["repeats"] >= 3 and 0 < result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert result["allocator"] == timing.allocator_setup()  # the profiling set-up, in the child too
    with pytest.raises(RuntimeError, match="fresh process failed"):
        time_in_fresh_process(backend, tmp_path / "missing", 128, threads=1, repeats=1, warmup=0, min_seconds=0)


@pytest.mark.slow
def test_fresh_process_times_a_probe_beside_the_subnet(tmp_path, space):
    """With a probe, one process times both, interleaved; the larger probe takes longer than the smallest subnet.

    Only the rounds run at one steady speed count (nas.measure.timing.time_rounds), so on a noisy machine
    either may keep fewer timed runs than asked; each keeps at least one."""
    supernet = build_sam("micro", seed=0)
    small = prepare_subnet(supernet, space.validate(space.smallest()), "torch", tmp_path / "small")
    large = prepare_subnet(supernet, space.validate(space.largest()), "torch", tmp_path / "large")
    result = time_in_fresh_process("torch", small, 128, threads=1, repeats=4, warmup=4, min_seconds=0.05,
                                   probe=(large, 128))
    assert result["repeats"] >= 1 and result["probe_repeats"] >= 1
    assert result["probe_median_ms"] > result["median_ms"] > 0
    assert "probe_median_ms" not in time_in_fresh_process("torch", small, 128, threads=1, repeats=1, warmup=0,
                                                          min_seconds=0)


# ---------------------------------------------------------------------- probe and recalibration


def test_recalibration_scales_predictions_exactly_by_the_probe_factor(fake_root, space, monkeypatch):
    predictor = load_predictor("cpu-torch", root=fake_root)
    base = baseline_ms(fake_root)
    assert len(base) == 3  # smallest, middle, largest
    fake_clock(monkeypatch, [1.25], base)
    result = run_probe(predictor, fake_root, seconds=0.05)
    assert result.source == "probes.json" and result.ratios == pytest.approx([1.25] * 3, rel=1e-9)
    assert result.factor == pytest.approx(1.25, rel=1e-9) and result.spread_pct == pytest.approx(0, abs=1e-6)
    configs = validation_configs(space, 10, seed=0)
    raw = predictor.predict_many(configs)
    recal = predictor.recalibrated(result.factor)
    np.testing.assert_array_equal(recal.predict_many(configs), raw * result.factor)
    np.testing.assert_array_equal(recal.predict_many(configs, raw=True), raw)
    assert recal.predict_ms(configs[0]) == raw[0] * result.factor
    assert recal.lut_ms(configs[0]) == predictor.lut_ms(configs[0])  # the table stays as profiled
    with pytest.raises(ValueError, match="positive"):
        predictor.recalibrated(0.0)


def set_stated_error(predictor, mape_pct: float) -> None:
    """Give ``predictor``'s encoder part a CV MAPE of ``mape_pct`` (%): the error a drift warning compares with."""
    report = predictor.report
    predictor.report = dataclasses.replace(
        report, parts={**report.parts, "encoder": dataclasses.replace(report.encoder, mape_pct=mape_pct)})


def test_drift_warning_fires_when_the_clock_runs_slower(fake_root, monkeypatch, capsys):
    predictor = load_predictor("cpu-torch", root=fake_root)
    set_stated_error(predictor, 5.0)
    slowdown = [1.0]
    fake_clock(monkeypatch, slowdown, baseline_ms(fake_root))
    steady = run_probe(predictor, fake_root, seconds=0.05)
    assert steady.factor == pytest.approx(1.0) and steady.warning() is None
    slowdown[0] = 1.3
    slow = run_probe(predictor, fake_root, seconds=0.05)
    assert slow.outside_stated_error and "30% slower" in slow.warning() and "CV MAPE 5.0%" in slow.warning()
    slowdown[0] = 1.04  # within the stated error: no warning
    assert run_probe(predictor, fake_root, seconds=0.05).warning() is None
    slowdown[0] = 0.8
    assert "20% faster" in run_probe(predictor, fake_root, seconds=0.05).warning()

    slowdown[0] = 1.3  # the command prints the factor and the warning, one line on stderr
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["nas.latency.commands"])
    assert cli.main(["latency", "probe", "--device", "cpu-torch", "--root", str(fake_root), "--seconds", "0.05"]) == 0
    out = capsys.readouterr()
    assert "runs at 1.300x its profiled latency" in out.out
    assert out.err.startswith("warning: cpu-torch now runs 30% slower") and out.err.count("\n") == 1
    # once per device per process: the next command in this process prints the factor, not the warning again
    assert cli.main(["latency", "probe", "--device", "cpu-torch", "--root", str(fake_root), "--seconds", "0.05"]) == 0
    out = capsys.readouterr()
    assert "runs at 1.300x its profiled latency" in out.out and out.err == ""


def test_drift_within_the_floor_says_nothing_even_beyond_a_small_stated_error(fake_root, monkeypatch):
    predictor = load_predictor("cpu-torch", root=fake_root)
    set_stated_error(predictor, 3.0)
    slowdown = [1.06]  # 6% drift: beyond the 3% CV MAPE, but within the machine's usual wobble
    fake_clock(monkeypatch, slowdown, baseline_ms(fake_root))
    drift = run_probe(predictor, fake_root, seconds=0.05)
    assert drift.outside_stated_error and not drift.matters and drift.warning() is None
    slowdown[0] = 1.0 + (probe_mod.DRIFT_FLOOR_PCT + 2) / 100  # beyond both: it matters
    drift = run_probe(predictor, fake_root, seconds=0.05)
    assert drift.matters and f"{probe_mod.DRIFT_FLOOR_PCT + 2:.0f}% slower" in drift.warning()
    set_stated_error(predictor, probe_mod.DRIFT_FLOOR_PCT + 5)  # beyond the floor only
    assert run_probe(predictor, fake_root, seconds=0.05).warning() is None


def test_probe_without_a_baseline(fake_root, space, monkeypatch):
    """A folder from before probes: the baseline comes from networks.csv's smallest/largest rows, else it skips."""
    store = DeviceStore("cpu-torch", fake_root)
    store.path("probes.json").unlink()
    predictor = load_predictor("cpu-torch", root=fake_root)
    rows = {r["config"]: r["median_ms"] for r in store.networks()}
    fake_clock(monkeypatch, [2.0], rows)
    result = run_probe(predictor, fake_root, seconds=0.05)
    assert result.source == "networks.csv" and len(result.ratios) == 2  # profiling always timed these two
    assert result.factor == pytest.approx(2.0) and "baseline from networks.csv" in result.summary()
    networks = [r for r in store.networks() if SubnetConfig.from_json(r["config"]) not in (space.smallest(), space.largest())]
    store.add_measurements(FINGERPRINT, {}, [], networks, replace=True)
    result = run_probe(predictor, fake_root, seconds=0.05)
    assert result.factor is None and "profiled before probes existed" in result.note
    assert result.warning() is None and result.summary().startswith("drift probe skipped")


def test_probe_refuses_another_machine(fake_root, monkeypatch):
    predictor = load_predictor("cpu-torch", root=fake_root)
    result = run_probe(predictor, fake_root, seconds=0.05)  # really built here: this machine is not "fake"
    assert result.factor is None and "another machine or set-up" in result.note


# ---------------------------------------------------------------------- the command


def run_cli(argv, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["nas.latency.commands"])
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_unknown_device_or_space_is_a_one_line_error(fake_root, capsys, monkeypatch):
    code, out, err = run_cli(["latency", "validate", "--device", "cpu-torch@nowhere", "--root", fake_root],
                             capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1
    assert "device 'cpu-torch@nowhere' has no measurements" in err and "(devices there: cpu-torch)" in err
    code, out, err = run_cli(["latency", "validate", "--device", "cpu-torch", "--space", "sam_vit_b", "--root",
                              fake_root], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "no predictor for space 'sam_vit_b'" in err and "fitted: sam_micro" in err
    code, out, err = run_cli(["latency", "validate", "--device", "tpu-torch", "--root", fake_root], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "cpu-torch, cpu-onnxruntime" in err
    with pytest.raises(SystemExit) as exit_info:  # rejected while parsing, before any work
        run_cli(["latency", "validate", "--device", "cpu-torch", "--samples", 0, "--root", fake_root],
                capsys, monkeypatch)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--samples: must be at least 1, got 0" in err and err.count("\n") == 1
    assert not (fake_root / "cpu-torch" / VALIDATION_FILE).exists()


@pytest.mark.slow
def test_profile_validate_and_list(tmp_path, capsys, monkeypatch):
    """Real parts end to end: profiling stores the probe baseline; validate times 2 subnets in fresh processes."""
    root = tmp_path / "latency"
    profile_device("sam_micro", "cpu-torch", ProfileSettings(blocks=True, samples=8, repeats=2, warmup=1, min_seconds=0,
                                                             rounds=2, max_rounds=2, threads=1, resolutions=[128],
                                                             progress=False), root=root)
    probes = DeviceStore("cpu-torch", root).probes()["sam_micro"]["probes"]
    assert [SubnetConfig.from_json(p["config"]) for p in probes] == probe_configs(restrict_resolutions(
        SearchSpace.load("sam_micro"), [128]))
    fit_device("cpu-torch", root=root)
    code, out, err = run_cli(["latency", "validate", "--device", "cpu-torch", "--samples", 2, "--min-seconds", 0.02,
                              "--quiet", "--root", root], capsys, monkeypatch)
    assert code == 0, err
    assert "2 held-out subnets, each timed in a fresh process (1 thread)" in out and "probe factor" in out
    report = json.loads((root / "cpu-torch" / VALIDATION_FILE).read_text())["spaces"]["sam_micro"]
    assert report["samples"] == 2 and report["probe_factor"] > 0
    base = report["interleaved_probe"]["baseline_ms"]
    for sub in report["subnets"]:
        assert sub["predicted_ms"] == pytest.approx(sub["predicted_raw_ms"] * report["probe_factor"], rel=1e-12)
        assert sub["measured_ms"] > 0
        # interleaved: each subnet's raw prediction scaled by the probe timed beside it, over its profiled ms
        assert sub["interleaved_factor"] == pytest.approx(sub["probe_ms"] / base, rel=1e-12)
        assert sub["predicted_interleaved_ms"] == pytest.approx(sub["predicted_raw_ms"] * sub["interleaved_factor"],
                                                                rel=1e-12)
    assert report["interleaved_probe"]["config"] in {p["config"] for p in probes}
    timed = {r["config"] for r in DeviceStore("cpu-torch", root).networks()}
    assert not {s["config"] for s in report["subnets"]} & timed
    code, out, err = run_cli(["latency", "list", "--root", root], capsys, monkeypatch)
    row = out.splitlines()[1]
    assert f"{report['raw']['mape_pct']:.1f}/{report['recalibrated']['mape_pct']:.1f}" in row
    assert f"x{report['probe_factor']:.2f}" in row
