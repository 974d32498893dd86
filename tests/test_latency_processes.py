"""Profiling spread over several processes (nas.latency.processes): the merge, and a real two-process run."""
from __future__ import annotations

import pytest

from nas.latency.processes import merge_runs
from nas.latency.profile import ProfileRun, ProfileSettings, default_processes, profile


def row(config: str, median: float, p10: float, p90: float) -> dict:
    return {"space": "s", "config": config, "median_ms": median, "p10_ms": p10, "p90_ms": p90, "min_ms": p10 - 1,
            "max_ms": p90 + 1, "repeats": 5, "seconds": 0.5}


def run(scale: float, speed: list[float]) -> ProfileRun:
    return ProfileRun("cpu-openvino", {"cpu": "x"}, {"s": {}}, networks=[row("a", 10 * scale, 9, 11),
                                                                          row("b", 2 * scale, 1.5, 3)],
                      rounds=2, speed=speed, kept=[0, 1])


def test_merge_keeps_the_median_over_processes_and_each_process_speed():
    merged = merge_runs([run(1.0, [1.0, 1.0]), run(1.2, [0.9, 1.1]), run(0.9, [1.0, 1.0])])
    a, b = merged.networks
    assert a["median_ms"] == pytest.approx(10.0) and b["median_ms"] == pytest.approx(2.0)
    assert (a["p10_ms"], a["p90_ms"], a["repeats"], a["seconds"]) == (9, 11, 15, 1.5)
    assert merged.process_speed == pytest.approx([1.0, 1.2, 0.9])
    assert merged.process_spread_pct == pytest.approx(100 * (1.2 / 0.9 - 1))
    assert merged.speed == [1.0, 1.0, 0.9, 1.1, 1.0, 1.0] and merged.kept == [0, 1, 2, 3, 4, 5]
    assert merged.rounds == 6 and merged.extra_rounds == 0


def test_merge_refuses_runs_that_timed_different_jobs():
    short = run(1.0, [1.0, 1.0])
    short.networks = short.networks[:1]
    with pytest.raises(RuntimeError, match="different numbers of networks"):
        merge_runs([run(1.0, [1.0, 1.0]), short])


def test_openvino_profiles_in_several_processes_by_default():
    assert default_processes("openvino") == 3 and default_processes("torch") == default_processes("onnxruntime") == 1


@pytest.mark.slow  # two profiling processes: about 25 s
def test_two_real_processes_time_the_same_subnets():
    pytest.importorskip("openvino")
    settings = ProfileSettings(blocks=False, samples=2, threads=1, repeats=2, warmup=1, min_seconds=0.0, rounds=1,
                               progress=False, probes=False, processes=2)
    merged = profile("sam_micro", "cpu-openvino", settings)
    alone = profile("sam_micro", "cpu-openvino", ProfileSettings(**{**settings.__dict__, "processes": 1}))
    assert [r["config"] for r in merged.networks] == [r["config"] for r in alone.networks]
    assert len(merged.process_speed) == 2 and len(merged.speed) == 2
    assert all(r["repeats"] >= 2 * a["repeats"] for r, a in zip(merged.networks, alone.networks))
    assert merged.fingerprint["backend"] == "openvino" and merged.fingerprint["threads"] == 1


@pytest.mark.slow  # three probe processes: about 30 s
def test_openvino_probe_runs_in_fresh_processes(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    import nas.latency.processes as processes
    from nas.latency import fit_device, load_predictor, profile_device
    from nas.latency.probe import run_probe

    launched = []
    real = processes._run_processes
    monkeypatch.setattr(processes, "_run_processes", lambda *a: launched.append(len(a[2])) or real(*a))
    settings = ProfileSettings(blocks=False, samples=6, threads=1, repeats=2, warmup=1, min_seconds=0.0, rounds=1,
                               progress=False, processes=1)
    profile_device("sam_micro", "cpu-openvino", settings, root=tmp_path)
    fit_device("cpu-openvino", root=tmp_path, space="sam_micro")
    result = run_probe(load_predictor("cpu-openvino", space="sam_micro", root=tmp_path), tmp_path, seconds=0.05)
    assert result.factor is not None and len(result.current_ms) == 3, result.note
    assert 0.5 < result.factor < 2.0  # the same machine, seconds later
    assert launched == [3]  # one probe run of three processes
