"""Profiling spread over several processes, for runtimes whose speed is a property of the process.

OpenVINO's CPU plugin runs a compiled model at a speed that is steady inside one process but
moves from one process to the next by one factor shared by every model of that process (on this
project's 2-core AMD VM the same sam_micro subnet read 5.84-6.65 ms in six processes, while six
compilations inside one process agreed within 2%). A profile taken in one process therefore
carries that process's factor into every prediction, and no later probe can tell it apart from
the machine's drift. :func:`profile_in_processes` runs the same profile (same subnets, same block
kinds, same seeds) in ``processes`` new processes, one after another so that they never compete
for the CPU, and keeps each measurement's median over them: an estimate of what a fresh process,
which is what a deployment is, will see.

The drift probe (:func:`nas.latency.probe.run_probe`) is timed the same way, for the same reason:
:func:`probe_in_processes`.

Each process is ``python -m nas.latency.processes JOB.json``: the job holds the space file's
mapping and the settings (or, for the probe, its subnets), the process writes its result as JSON
next to it.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from infra.errors import UserError
from search_spaces.space import SearchSpace

from .profile import ProfileRun, ProfileSettings, profile

SUMMED = ("repeats", "seconds")  # row fields added up over the processes
PARTS = ("blocks", "networks", "probes")


def profile_in_processes(space: SearchSpace | str, device: str, settings: ProfileSettings,
                         processes: int) -> ProfileRun:
    """:func:`nas.latency.profile.profile` run ``processes`` times, each in a new Python process, merged.

    The merged run's rows hold the median over the processes of each measurement's median
    (``median_ms``), the lowest ``p10_ms`` and ``min_ms``, the highest ``p90_ms`` and
    ``max_ms``, and the summed ``repeats`` and ``seconds``; ``speed`` and ``kept`` list every
    process's rounds in turn, and ``process_speed`` each process's slowness relative to the
    merged medians (median over its measurements).
    """
    space = space if isinstance(space, SearchSpace) else SearchSpace.load(space)
    jobs = [{"settings": settings_json(replace(settings, processes=1, process_index=k))} for k in range(processes)]
    return merge_runs([ProfileRun(**out) for out in _run_processes(space, device, jobs, "profiling")])


def probe_in_processes(space: SearchSpace, device: str, configs: list, threads: int, seconds: float,
                       processes: int) -> list[float]:
    """The drift probe's ``configs`` timed as :func:`nas.latency.probe.time_probes` does, in each of ``processes``
    new processes one after another; each config's median ms over the processes."""
    job = {"probe": [c.key for c in configs], "threads": threads, "seconds": seconds}
    outs = _run_processes(space, device, [job] * processes, "probe")
    return [statistics.median(ms) for ms in zip(*(out["current_ms"] for out in outs))]


def _run_processes(space: SearchSpace, device: str, jobs: list[dict], what: str) -> list[dict]:
    """Run each job in its own ``python -m nas.latency.processes``, one after another; their JSON results."""
    from .validate import fresh_env  # the environment every timing subprocess gets

    env = fresh_env()
    outs = []
    with tempfile.TemporaryDirectory(prefix="samnas-processes-") as tmp:
        for k, job in enumerate(jobs):
            path, out = Path(tmp) / f"job{k}.json", Path(tmp) / f"out{k}.json"
            path.write_text(json.dumps({**job, "space": space.to_dict(), "source": space.source, "device": device,
                                        "out": str(out)}), encoding="utf-8")
            done = subprocess.run([sys.executable, "-m", "nas.latency.processes", str(path)], env=env)
            if done.returncode != 0:
                raise UserError(f"{what} process {k + 1} of {len(jobs)} failed (exit {done.returncode}); "
                                "its error is printed above")
            outs.append(json.loads(out.read_text(encoding="utf-8")))
    return outs


def settings_json(settings: ProfileSettings) -> dict:
    """The settings as JSON-ready data (configs as their canonical keys)."""
    data = asdict(settings)
    data["configs"] = None if settings.configs is None else [c.key for c in settings.configs]
    return data


def settings_from_json(data: dict, space: SearchSpace) -> ProfileSettings:
    configs = data.get("configs")
    return ProfileSettings(**{**data, "configs": None if configs is None else
                              [space.validate(json.loads(c)) for c in configs]})


def merge_rows(rows: list[dict]) -> dict:
    """One measurement's rows from several processes as one row (see :func:`profile_in_processes`)."""
    out = dict(rows[0])
    out["median_ms"] = statistics.median(r["median_ms"] for r in rows)
    for key, pick in (("p10_ms", min), ("min_ms", min), ("p90_ms", max), ("max_ms", max)):
        out[key] = pick(r[key] for r in rows)
    for key in SUMMED:
        out[key] = sum(r[key] for r in rows)
    return out


def merge_runs(runs: list[ProfileRun]) -> ProfileRun:
    """Several runs of the same profile (same jobs, same order) as one :class:`ProfileRun`."""
    first = runs[0]
    merged = ProfileRun(first.device, first.fingerprint, first.spaces, rounds=sum(r.rounds for r in runs))
    for name in PARTS:
        lists = [getattr(r, name) for r in runs]
        if len({len(rows) for rows in lists}) != 1:
            raise RuntimeError(f"profiling processes timed different numbers of {name}: {[len(x) for x in lists]}")
        setattr(merged, name, [merge_rows(list(rows)) for rows in zip(*lists)])
    for r in runs:
        merged.kept += [k + len(merged.speed) for k in r.kept]
        merged.speed += r.speed
    merged.seconds = sum(r.seconds for r in runs)
    everything = [row for name in PARTS for row in getattr(merged, name)]
    for r in runs:
        mine = [row for name in PARTS for row in getattr(r, name)]
        merged.process_speed.append(statistics.median(a["median_ms"] / b["median_ms"]
                                                      for a, b in zip(mine, everything) if b["median_ms"] > 0))
    return merged


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    space = SearchSpace.from_dict(job["space"], source=job["source"])
    if "probe" in job:
        result = {"current_ms": _probe_here(space, job)}
    else:
        result = asdict(profile(space, job["device"], settings_from_json(job["settings"], space)))
    Path(job["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


def _probe_here(space: SearchSpace, job: dict) -> list[float]:
    import torch

    from infra.threads import torch_threads

    from .probe import backend_build, time_probes

    configs = [space.validate(json.loads(c)) for c in job["probe"]]
    with torch_threads(int(job["threads"])), torch.random.fork_rng(devices=[]):
        build, sync, _ = backend_build(job["device"], space, int(job["threads"]))
        return time_probes(configs, build, float(job["seconds"]), sync=sync)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
