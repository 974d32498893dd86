"""Measure a search's front on the device itself, and drop the subnets that miss the budget when measured.

The search ranks subnets by *predicted* latency. A predictor is a fitted model (its
cross-validated error is in ``samnas latency fit``'s report, 5-15% on a shared CPU), so a
subnet predicted just inside the budget can run over it. After the search, when this machine
is the device the predictor was profiled on, :func:`verify_front` times every front subnet
as profiling times subnets (:func:`nas.latency.profile.profile` with the subnets' configs:
the predictor's thread count, interleaved rounds, median of the steady rounds), stores the
timings in the study (:data:`nas.search.pareto.MEASURED_ATTR`), and repeats with the new front
until every subnet on it was measured. A subnet measured over the study's budget is no
longer feasible (:attr:`nas.search.pareto.TrialPoint.feasible`), so ``samnas pareto`` and
``samnas export`` never offer it; the next subnet that it dominated takes its place and is
measured in turn.

The budget is compared with the raw measured median: the subnet's latency on the device as
it runs. The drift probe's subnets (:func:`nas.latency.probe.probe_configs`) are timed in the
same rounds, and their speed factor against profiling time is stored beside each measurement
(``samnas search`` prints its range) so that a verification made while the machine ran unusually
fast or slow shows as such. It is not divided out: on this project's VM a measurement of one
subnet moves by 20-30% from one minute to the next, and so do the probe's, so dividing by the
probe's factor added its noise to every subnet (results/search.md, 165 of 174 front subnets
within the budget when measured again that way, 171 of 174 by raw medians).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import optuna

from infra.errors import UserError
from nas.latency.probe import speed_factor
from nas.latency.profile import ProfileSettings, device_problem, profile
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

from nas.search.pareto import MEASURED_ATTR, TrialPoint, pareto_front, study_points

ROUNDS = 3  # interleaved rounds per measurement (as profiling)
REPEATS = 5  # timed runs per measurement, shared out over the rounds
MIN_SECONDS = 0.2  # timed seconds per measurement at least (tiny subnets get more runs)
MAX_PASSES = 20  # measuring passes at most: each measures the front's subnets not yet measured


@dataclass
class FrontCheck:
    """What :func:`verify_front` did: the front now, the subnets measured, and those dropped (over budget)."""

    front: list[TrialPoint]
    measured: list[TrialPoint] = field(default_factory=list)
    dropped: list[TrialPoint] = field(default_factory=list)
    factors: list[float | None] = field(default_factory=list)  # the machine's speed factor in each measuring pass
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the search's output."""
        if not self.measured:
            return "front measured: nothing new to measure (every front subnet was measured before)"
        over = (", ".join(f"trial {p.trial} ({p.measured_ms:.2f} ms, predicted {p.predicted_ms:.2f})"
                          for p in self.dropped) or "none")
        known = [f for f in self.factors if f is not None]
        speed = (f"meanwhile the drift probe ran at {min(known):.2f}-{max(known):.2f}x its profiled latency"
                 if known else "no drift-probe baseline to compare the machine's speed with")
        return (f"front measured on this machine: {len(self.measured)} subnets in {self.seconds:.1f} s ({speed}); "
                f"dropped as over the budget when measured: {over}")


def measure_configs(space: SearchSpace, device: str, configs: list[SubnetConfig], threads: int,
                    progress: bool = False, seed: int = 0, root=None) -> tuple[list[dict], float | None]:
    """Each config's image encoder timed on this machine as ``device``, and the machine's speed factor meanwhile.

    Returns profile rows (``median_ms``, ``p10_ms``, ``p90_ms``, ``repeats``, ...) in the order of ``configs``,
    and :func:`nas.latency.probe.speed_factor` of the drift probe timed in the same rounds. Timed as profiling times subnets
    (same backend, ``threads``, interleaved rounds, a random supernet of the space's architecture: latency
    does not depend on the weights).
    """
    run = profile(space, device, ProfileSettings(blocks=False, configs=configs, repeats=REPEATS, rounds=ROUNDS,
                                                 min_seconds=MIN_SECONDS, threads=threads, seed=seed,
                                                 probes=True, progress=progress))
    return run.networks, speed_factor(run.probes, device, space, root)


def verify_front(study: optuna.Study, space: SearchSpace, device: str, threads: int,
                 progress: bool = False, root=None) -> FrontCheck:
    """Measure the study's front subnets not yet measured, until every front subnet was; see the module doc.

    Raises :class:`infra.errors.UserError` when this machine cannot time ``device`` as it was profiled.
    """
    problem = device_problem(device, threads, root)
    if problem:
        raise UserError(problem)
    check = FrontCheck(front=[])
    start = time.perf_counter()
    for _ in range(MAX_PASSES):
        points = study_points(study)
        check.front = pareto_front(points)
        todo = [p for p in check.front if p.measured_ms is None]
        if not todo:
            break
        rows, factor = measure_configs(space, device, [p.subnet for p in todo], threads,
                                       progress=progress, root=root)
        check.factors.append(factor)
        stored = dict(study.user_attrs.get(MEASURED_ATTR) or {})
        trials = dict(stored.get("trials") or {})
        measured = {}
        for p, row in zip(todo, rows):
            measured[p.trial] = float(row["median_ms"])
            trials[str(p.trial)] = {**{k: row[k] for k in ("median_ms", "p10_ms", "p90_ms", "repeats")},
                                    "speed_factor": factor}
        study.set_user_attr(MEASURED_ATTR, {"device": device, "threads": threads, "budget_ms": todo[0].budget_ms,
                                            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                            "trials": trials})
        for p in todo:
            p = replace(p, measured_ms=measured[p.trial])
            check.measured.append(p)
            if not p.feasible:
                check.dropped.append(p)
    check.seconds = time.perf_counter() - start
    return check
