"""The drift probe: is this device still as fast as when it was profiled?

A device's speed moves after profiling: thermal throttling on phones and Jetsons,
frequency scaling, other tenants on a shared server or VM (on this project's 2-core VM by
tens of percent for minutes at a time). Profiling therefore also times a few fixed *probe*
subnets (:func:`probe_configs`: the space's smallest, a middle one and its largest, so they
span the latency range), interleaved with everything else of the run, and stores their
medians in ``<device>/probes.json``. :func:`run_probe` times them again, here and now, for
about :data:`PROBE_SECONDS` of timed runs, with the same backend, threads and allocator,
and returns the device's current *speed factor*: the median over the probes of
``current ms / profiled ms`` (1.0: as fast as at profiling; 1.2: everything 20% slower).

``LatencyPredictor.recalibrated(factor)`` scales predictions by it. That helps when the
change is one uniform factor (a slower clock, a steady share of the CPU taken by another
tenant); it cannot help when the change is not uniform (another thread count, cache
contention that slows small and large subnets differently): :attr:`ProbeResult.spread_pct`
(how far the probes disagree) shows that case.

A device folder written before probes existed has no ``probes.json``: the probe then takes
its baseline from ``networks.csv``, whose rows hold the space's smallest and largest
configs (profiling always times them), and says so; without those rows it skips.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from nas.measure.timing import time_rounds
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from infra.errors import UserError

from .store import PROBES_FILE, DeviceStore

PROBE_SECONDS = 0.25  # timed wall time of one probe, over all probe subnets (warm-up and building come on top)
# 0.45 s cost 2.6% of a 40-trial demo search on a machine where the search took 23 s (2026-12-01);
# at 0.25 s five probes in fresh processes on an idle machine read factors 1.015-1.033.
PROBE_ROUNDS = 2  # interleaved rounds per probe subnet (nas.measure.timing.time_rounds)
# A drift is warned about only beyond the predictor's stated error and this floor: on this project's VMs the
# probe reads 0.99-1.05 from one fresh process to the next on an idle machine, and any subnet's timing moves
# 20-30% minute to minute, so a few percent says nothing about the numbers shown.
DRIFT_FLOOR_PCT = 10.0
_warned: set[tuple[str, str]] = set()  # (latency folder, device) already warned about in this process


def probe_configs(space: SearchSpace) -> list[SubnetConfig]:
    """The probe subnets of ``space``: its smallest config, a middle one and its largest (3, or fewer if equal).

    The middle one keeps every block at its middle heads and MLP choice, at the middle
    resolution. Deterministic: the same space gives the same probes.
    """
    blocks = tuple(b.kept(b.heads[len(b.heads) // 2], b.mlp[len(b.mlp) // 2]) for b in space.blocks)
    middle = SubnetConfig(space.name, space.resolutions[len(space.resolutions) // 2], blocks)
    out = []
    for cfg in (space.smallest(), middle, space.largest()):
        cfg = space.validate(cfg)
        if cfg not in out:
            out.append(cfg)
    return out


def baseline(store: DeviceStore, space: SearchSpace) -> tuple[list[dict], str]:
    """``([{"config": SubnetConfig, "median_ms": float}], source)`` for ``space``; ``[]`` when there is none.

    Only probes at ``space``'s resolutions (a space restricted after profiling drops the others).
    ``source`` is ``"probes.json"``, or ``"networks.csv"`` for a folder that predates probes.
    """
    entry = store.probes().get(space.name)
    if entry and entry.get("probes"):
        probes = [{"config": SubnetConfig.from_json(p["config"]), "median_ms": float(p["median_ms"])}
                  for p in entry["probes"]]
        return [p for p in probes if p["config"].resolution in space.resolutions], PROBES_FILE
    rows = {r["config"]: r["median_ms"] for r in store.networks() if r["space"] == space.name and r["part"] == "encoder"}
    found = []
    for cfg in probe_configs(space):
        if cfg.key in rows:
            found.append({"config": cfg, "median_ms": rows[cfg.key]})
    return found, "networks.csv"


def speed_factor(probe_rows: list[dict], device: str, space: SearchSpace, root=None) -> float | None:
    """Median over the probe subnets of measured / profiled ms, from profile rows (``config`` as JSON text,
    ``median_ms``) timed now; None when the device has no stored baseline for them."""
    profiled = {b["config"].key: b["median_ms"] for b in baseline(DeviceStore(device, root), space)[0]}
    ratios = [r["median_ms"] / profiled[r["config"]] for r in probe_rows if r["config"] in profiled]
    return float(statistics.median(ratios)) if ratios else None


@dataclass
class ProbeResult:
    """What one probe found. ``factor`` is None when there was nothing to compare with (``note`` says why).

    ``ratios``: current / profiled ms per probe subnet; ``factor``: their median;
    ``spread_pct``: how far the probes disagree (max / min ratio - 1, in %); ``stated_error_pct``: the
    predictor's cross-validated MAPE; ``seconds``: what the probe took, building included.
    """

    device: str
    space: str
    factor: float | None
    ratios: list[float] = field(default_factory=list)
    current_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    source: str = ""
    stated_error_pct: float | None = None
    seconds: float = 0.0
    note: str = ""
    at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def spread_pct(self) -> float:
        return 100.0 * (max(self.ratios) / min(self.ratios) - 1.0) if self.ratios else 0.0

    @property
    def drift_pct(self) -> float | None:
        """How much slower (positive) or faster (negative) than at profiling, in percent."""
        return None if self.factor is None else 100.0 * (self.factor - 1.0)

    @property
    def outside_stated_error(self) -> bool:
        """Whether the drift is larger than the predictor's stated error (its CV MAPE)."""
        if self.factor is None or self.stated_error_pct is None:
            return False
        return abs(self.drift_pct) > self.stated_error_pct

    @property
    def matters(self) -> bool:
        """Whether the drift moves the numbers shown: beyond the stated error and :data:`DRIFT_FLOOR_PCT`."""
        return self.outside_stated_error and abs(self.drift_pct) > DRIFT_FLOOR_PCT

    def warning(self) -> str | None:
        """A one-line warning when the drift :attr:`matters`, else None."""
        if not self.matters:
            return None
        way = "slower" if self.factor > 1 else "faster"
        return (f"warning: {self.device} now runs {abs(self.drift_pct):.0f}% {way} than when it was profiled "
                f"(probe factor {self.factor:.3f}), beyond the {self.space} predictor's stated error "
                f"(CV MAPE {self.stated_error_pct:.1f}%); raw predictions are off by about that much now "
                "(--recalibrate scales them; profile again if it lasts)")

    def summary(self) -> str:
        """One line for the user."""
        if self.factor is None:
            return f"drift probe skipped: {self.note}"
        text = (f"drift probe ({len(self.ratios)} subnets, {self.seconds:.1f} s): {self.device} runs at "
                f"{self.factor:.3f}x its profiled latency (probes {', '.join(f'{r:.2f}' for r in self.ratios)})")
        return text + (f"; baseline from {self.source}" if self.source != PROBES_FILE else "")

    def as_dict(self) -> dict:
        """JSON-ready, for study attributes, the export card and validation reports."""
        return {**asdict(self), "spread_pct": self.spread_pct}


def warn_once(result: ProbeResult, root=None, out=None) -> bool:
    """Print ``result``'s warning (to ``out``, default stderr) unless this process already warned about its
    device in the latency folder ``root``; whether it printed. The probe's summary line says the factor every time.
    """
    import sys

    text = result.warning()
    key = (str(DeviceStore(result.device, root).folder.resolve()), result.device)
    if text is None or key in _warned:
        return False
    _warned.add(key)
    print(text, file=out or sys.stderr, flush=True)
    return True


def stated_error(predictor) -> float | None:
    """The predictor's stated error: the cross-validated MAPE (%) of its encoder part."""
    part = predictor.report.encoder if predictor.report is not None else None
    return float(part.mape_pct) if part else None


Build = Callable[[SubnetConfig], Callable[[], object]]


def time_probes(configs: list[SubnetConfig], build: Build, seconds: float = PROBE_SECONDS, rounds: int = PROBE_ROUNDS,
                sync=None) -> list[float]:
    """Median ms of each config, timed in ``rounds`` interleaved rounds for about ``seconds`` in all.

    ``build(config)`` returns a zero-argument callable running the config once.
    """
    fns = [build(cfg) for cfg in configs]
    per = seconds / max(1, len(fns))
    timed = time_rounds(fns, rounds=rounds, repeats=rounds, warmup=rounds, sync=sync, min_seconds=per,
                        shuffle_seed=0)
    return [t.median_ms for t in timed.timings]


def backend_build(device: str, space: SearchSpace, threads: int, seed: int = 0):
    """``(build, sync, fingerprint)`` timing subnets of ``space`` as profiling does for ``device``.

    Call it with ``threads`` torch threads set; ``fingerprint`` is this machine's, as profiling records it.
    """
    from supernet.elastic.build import build_supernet
    from .profile import device_fingerprint, make_backend, network_module

    backend = make_backend(device, threads)
    supernet = build_supernet(space.model_type, seed)
    gen = torch.Generator().manual_seed(seed)

    def build(cfg: SubnetConfig):
        module, inputs = network_module(supernet, cfg, 0, gen)
        return backend.prepare(module, inputs)

    return build, backend.sync, device_fingerprint(backend)


def run_probe(predictor, root=None, seconds: float = PROBE_SECONDS) -> ProbeResult:
    """Time the probe subnets of ``predictor``'s space on its device now; the speed factor against profiling.

    Runs with the device's thread count and backend (:func:`backend_build`); for a backend that profiles in
    several processes (:func:`nas.latency.profile.default_processes`), in as many new processes, each probe's
    median over them. Never raises for a missing baseline or another machine: the result
    then has ``factor`` None and a ``note``.
    """
    from infra.threads import torch_threads

    from .profile import default_processes
    from .store import device_spec

    start = time.perf_counter()
    store = DeviceStore(predictor.device, root)
    space = predictor.search_space
    result = ProbeResult(predictor.device, space.name, None, stated_error_pct=stated_error(predictor))
    probes, source = baseline(store, space)
    if not probes:
        result.note = (f"{store.folder} has no probe baseline for {space.name} (profiled before probes existed); "
                       f"`samnas latency profile --space {space.name} --device {predictor.device}` adds one")
        return result
    result.source = source
    fp = store.fingerprint() or {}
    threads = int(fp.get("threads") or torch.get_num_threads())
    configs = [space.validate(p["config"]) for p in probes]
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        try:
            build, sync, fingerprint = backend_build(predictor.device, space, threads)
            store.check_same_device(fingerprint)
        except UserError as exc:
            result.note = f"cannot probe {predictor.device} here: {exc}"
            return result
        processes = default_processes(device_spec(predictor.device).backend)
        if processes > 1:  # a runtime whose speed is a property of the process: as profiling, several processes
            from .processes import probe_in_processes

            current = probe_in_processes(space, predictor.device, configs, threads, seconds, processes)
        else:
            current = time_probes(configs, build, seconds, sync=sync)
    result.current_ms = current
    result.baseline_ms = [p["median_ms"] for p in probes]
    result.ratios = [c / b for c, b in zip(current, result.baseline_ms)]
    result.factor = float(statistics.median(result.ratios))
    result.seconds = time.perf_counter() - start
    return result
