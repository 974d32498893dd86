"""``samnas latency validate``: check a device's predictor from outside, against fresh processes.

The predictor's cross-validated error is scored on subnets of the profiling sampler, timed
inside the profiling run: agreement within one window of time. Validation asks what a
user sees later:

1. held-out subnets come from :func:`validation_configs`, a sampler independent of the
   profiling one: its own seed stream and another distribution (each skippable block kept
   with probability :data:`KEEP_PROBABILITY`, heads, MLP width and precision uniform, resolution
   uniform over the profiled ones), never a config the device folder has timed;
2. the drift probe (:mod:`nas.latency.probe`) runs before and after the timings; the
   factor used is their geometric mean;
3. each subnet is extracted, saved as a subnet folder (``*-torch``) or exported to an ONNX
   file (``*-onnxruntime``), and timed in a fresh process (:mod:`nas.latency.fresh`) with the
   device's threads and the profiling allocator set-up; the same process also times the
   middle probe subnet, interleaved with it, which gives the machine's speed factor at the
   very seconds the subnet ran;
4. the report (MAPE, share within +-10%, signed median error; raw, recalibrated by the
   pass's probe factor, and ``interleaved``: recalibrated per subnet by its own probe timing;
   every subnet) goes to ``<device>/validation.json`` (latest per space), which
   ``samnas latency list`` shows beside the CV error.

Why the interleaved factor: on a shared VM the machine's speed moves by tens of percent from
one second to the next (this project's measurements: the same subnet, timed twice in fresh
processes minutes apart on an idle 2-core VM, differed by 14% median and up to 39%), so a
factor probed before and after a pass of 20 subnets cannot follow it. The interleaved column
separates the predictor's own error from the machine's speed at the time; the pass-level
column is what a user who probes once, then runs, can expect.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from nas.measure.timing import MIN_SECONDS
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from infra.errors import UserError

from .predictor import WITHIN, LatencyPredictor, error_metrics, load_predictor
from .store import (DeviceSpec, DeviceStore, device_spec, list_devices, parse_device, read_json, resolve_root,
                    write_json)

VALIDATION_FORMAT = "samnas-latency-validation/1"
VALIDATION_FILE = "validation.json"
KEEP_PROBABILITY = 0.7
WARMUP = 2  # untimed runs before a fresh-process subnet is timed (`latency validate` has no flag for it)
# Seed stream of the validation sampler: numpy seeds it with [VALIDATION_STREAM, seed], a
# different entropy pool from the profiling sampler's default_rng(seed).
VALIDATION_STREAM = 0x7A11DA7E
FRESH_SCRIPT = Path(__file__).resolve().parent / "fresh.py"


# ---------------------------------------------------------------------- the independent sampler


def draw_validation_config(space: SearchSpace, rng: np.random.Generator) -> SubnetConfig | None:
    """One config: each skippable block kept with :data:`KEEP_PROBABILITY`, heads, MLP width (and precision,
    where a block has a choice) uniform; None if it keeps too few global blocks."""
    resolution = space.resolutions[int(rng.integers(len(space.resolutions)))]
    blocks, globals_kept = [], 0
    for b in space.blocks:
        keep = not b.skippable or bool(rng.random() < KEEP_PROBABILITY)
        if keep:
            globals_kept += b.is_global
            heads, mlp = b.heads[int(rng.integers(len(b.heads)))], b.mlp[int(rng.integers(len(b.mlp)))]
            # an int8 space: precision uniform too (fp32-only spaces draw as before)
            precision = b.precisions[int(rng.integers(len(b.precisions)))] if len(b.precisions) > 1 else b.precisions[0]
            blocks.append(b.kept(heads, mlp, precision))
        else:
            blocks.append(b.skipped())
    if globals_kept < space.min_global_blocks:
        return None  # rejected: the draw is conditioned on a valid config
    return space.validate(SubnetConfig(space.name, resolution, tuple(blocks)))


def validation_configs(space: SearchSpace, n: int, seed: int = 0, exclude=()) -> list[SubnetConfig]:
    """``n`` distinct configs from the validation sampler, none of them in ``exclude`` (configs or their keys).

    Returns fewer when the space has too few such configs.
    """
    rng = np.random.default_rng([VALIDATION_STREAM, seed])
    seen = {c if isinstance(c, str) else space.validate(c).key for c in exclude}
    out = []
    for _ in range(200 * n + 100):
        if len(out) == n:
            break
        cfg = draw_validation_config(space, rng)
        if cfg is not None and cfg.key not in seen:
            seen.add(cfg.key)
            out.append(cfg)
    return out


# ---------------------------------------------------------------------- fresh-process timing


def fresh_env() -> dict:
    """The environment of a timing subprocess: this process's, with this checkout importable first."""
    env = dict(os.environ)
    root = str(FRESH_SCRIPT.parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


ONNX_BACKENDS = ("onnxruntime", "openvino")  # backends that run the exported ONNX encoder, not the torch module
FRESH_WHERE = {"torch": "subnet folder, torch eager", "onnxruntime": "ONNX file, new ONNX Runtime session",
               "openvino": "ONNX file, new OpenVINO CPU compile"}


def time_in_fresh_process(backend: str, path: str | Path, resolution: int, threads: int, repeats: int = 5,
                          warmup: int = WARMUP, min_seconds: float = MIN_SECONDS, seed: int = 0,
                          timeout: float = 3600, probe: tuple[str | Path, int] | None = None,
                          precision: str = "fp32") -> dict:
    """Time a saved subnet (folder) or ONNX file in a new Python process; its :mod:`nas.latency.fresh` result.

    ``probe``: ``(path, resolution)`` of a drift probe subnet saved the same way; it is timed in
    the same process, interleaved with the subnet (``probe_median_ms`` in the result).
    """
    job = {"backend": backend, "path": str(path), "resolution": resolution, "threads": threads, "repeats": repeats,
           "warmup": warmup, "min_seconds": min_seconds, "seed": seed, "precision": precision}
    if probe:
        job.update(probe_path=str(probe[0]), probe_resolution=int(probe[1]))
    with tempfile.TemporaryDirectory(prefix="samnas-fresh-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        proc = subprocess.run([sys.executable, str(FRESH_SCRIPT), str(job_path)], capture_output=True, text=True,
                              env=fresh_env(), timeout=timeout)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"timing {path} in a fresh process failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_subnet(supernet, config: SubnetConfig, backend: str, folder: Path) -> Path:
    """Extract ``config`` and write what the fresh process loads: a subnet folder, or ``encoder.onnx`` in it.

    int8 blocks run quantized in both: ``load_subnet`` quantizes them, and the ONNX encoder
    (``encoder.int8.onnx`` then) is quantized as ``samnas export`` does it, SAM's or SAM 2's. A SAM 2 subnet's
    ONNX encoder is the one ``samnas export`` writes (:func:`nas.export.sam2_onnx.export_sam2_encoder_onnx`: the
    module profiling timed, three outputs).
    """
    from nas.export.onnx_export import export_encoder_onnx, model_family, quantize_encoder_onnx
    from nas.export.sam2_onnx import export_sam2_encoder_onnx
    from supernet.elastic.extract import extract, save_subnet, subnet_metadata

    sub = extract(supernet, config, quantize=False)
    if backend not in ONNX_BACKENDS:
        return save_subnet(sub, subnet_metadata(supernet, config), folder)
    family = model_family(sub)
    path = (export_sam2_encoder_onnx if family == "sam2" else export_encoder_onnx)(sub, folder / "encoder.onnx")
    if not config.int8_blocks():
        return path
    return quantize_encoder_onnx(path, folder / "encoder.int8.onnx", config, family=family)


# ---------------------------------------------------------------------- the report


def read_validations(store: DeviceStore) -> dict:
    """``{space: latest validation report}`` of a device ({} if never validated)."""
    path = store.path(VALIDATION_FILE)
    if not path.is_file():
        return {}
    doc = read_json(path, "latency validation report")
    if doc.get("format") != VALIDATION_FORMAT or not isinstance(doc.get("spaces"), dict):
        raise UserError(f"{path}: format {doc.get('format')!r}, expected {VALIDATION_FORMAT!r}; "
                        f"run `samnas latency validate --device {store.device}` again")
    return doc["spaces"]


def write_validation(store: DeviceStore, report: dict) -> Path:
    """Store ``report`` as its space's latest validation in ``validation.json`` (atomically)."""
    try:
        spaces = read_validations(store)
    except UserError:
        spaces = {}  # an unreadable old report is replaced by the new one
    spaces[report["space"]] = report
    return write_json(store.path(VALIDATION_FILE), {"format": VALIDATION_FORMAT, "device": store.device,
                                                    "spaces": spaces})


def signed_median_pct(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Median of (predicted - measured) / measured, in percent: negative when predictions run low."""
    return float(100 * np.median((predicted - measured) / measured))


def check_device_and_space(device: str, space: str | None, root=None):
    """The device's predictor for ``space``; one-line UserError listing the valid devices or spaces."""
    parse_device(device)
    devices = list_devices(root)
    if device not in devices:
        raise UserError(f"device {device!r} has no measurements under {resolve_root(root)} (devices there: "
                        f"{', '.join(devices) or 'none'}); profile it with `samnas latency profile --space S "
                        f"--device {device} --blocks` and `samnas latency fit --device {device}`")
    return load_predictor(device, space=space, root=root)


@dataclass(frozen=True)
class ValidateSettings:
    """How a validation pass draws and times its held-out subnets (``samnas latency validate``'s options).

    ``samples`` held-out subnets drawn with ``seed`` (which also seeds the supernet's random weights and
    the inputs); each timed in a fresh process for at least ``repeats`` runs and ``min_seconds`` seconds
    after ``warmup`` untimed runs. ``probe_seconds``: the drift probe's timed seconds before and after
    (None: the probe's own default). ``interleave_probe``: each fresh process also times the middle
    probe subnet, interleaved with its subnet.
    """

    samples: int = 20
    seed: int = 0
    repeats: int = 5
    warmup: int = WARMUP
    min_seconds: float = MIN_SECONDS
    probe_seconds: float | None = None
    interleave_probe: bool = True


@dataclass
class _HeldOut:
    """A validation pass's subnets and where they run: the device's predictor, folder, spec and threads."""

    predictor: LatencyPredictor
    store: DeviceStore
    spec: DeviceSpec
    threads: int
    configs: list[SubnetConfig]
    profiled: int  # configs the device folder timed, none of which is drawn


def validate_predictor(device: str, space: str | None = None, root=None, settings: ValidateSettings | None = None,
                       progress: bool = True, write: bool = True) -> dict:
    """Validate ``device``'s predictor for ``space`` on held-out subnets timed in fresh processes; the report.

    See the module docstring. With ``settings.interleave_probe`` the report adds ``interleaved``: the raw
    predictions scaled per subnet by the factor of the probe subnet timed beside it at that very time.
    Raises a one-line UserError (before any timing) for an unknown device or space, a device profiled on
    another machine, or a CUDA device. ``write``: store the report in ``<device>/validation.json``.
    """
    from .probe import PROBE_SECONDS, run_probe

    s = settings or ValidateSettings()
    held = _held_out(device, space, root, s)
    start = time.perf_counter()
    seconds = PROBE_SECONDS if s.probe_seconds is None else s.probe_seconds
    before = run_probe(held.predictor, root, seconds)
    reference = interleave_reference(held.store, held.predictor.search_space) if s.interleave_probe else None
    measured = _time_held_out(held, s, reference, progress)
    after = run_probe(held.predictor, root, seconds)
    report = _report(held, s, measured, before, after, reference, seconds=time.perf_counter() - start)
    if write:
        write_validation(held.store, report)
    return report


def _held_out(device: str, space: str | None, root, s: ValidateSettings) -> _HeldOut:
    """Check the device (known, a CPU, profiled on this machine) and draw the held-out configs."""
    from infra.threads import torch_threads

    from .profile import device_fingerprint, make_backend

    if s.samples < 1:
        raise UserError(f"--samples must be at least 1, got {s.samples}")
    predictor = check_device_and_space(device, space, root)
    store = DeviceStore(device, root)
    spec = device_spec(device)
    if spec.hardware != "cpu":
        raise UserError(f"validate times subnets on this machine's CPU; {device} is a {spec.hardware} device")
    fp = store.fingerprint() or {}
    threads = int(fp.get("threads") or torch.get_num_threads())
    with torch_threads(threads):
        store.check_same_device(device_fingerprint(make_backend(device, threads)))
    sp = predictor.search_space
    profiled = [r["config"] for r in store.networks() if r["space"] == sp.name]
    profiled += [p["config"] for p in store.probes().get(sp.name, {}).get("probes", [])]
    configs = validation_configs(sp, s.samples, s.seed, exclude=profiled)
    if not configs:
        raise UserError(f"no config of {sp.name} left that the device folder has not timed")
    return _HeldOut(predictor, store, spec, threads, configs, len(profiled))


def _time_held_out(held: _HeldOut, s: ValidateSettings, reference: dict | None, progress: bool) -> list[dict]:
    """Each held-out subnet's timing (:func:`time_in_fresh_process`), with the probe subnet beside it when
    ``reference`` is given; extracted from a supernet of random weights seeded with ``s.seed``."""
    from supernet.elastic.build import build_supernet

    sp, backend_name = held.predictor.search_space, held.spec.backend
    supernet = build_supernet(sp.model_type, s.seed)
    measured = []
    bar = tqdm(held.configs, desc=f"validating {sp.name} on {held.store.device} (fresh processes)", unit="subnet",
               disable=not progress, dynamic_ncols=True)
    with tempfile.TemporaryDirectory(prefix="samnas-validate-") as tmp:
        probe = None
        if reference:
            probe = (prepare_subnet(supernet, reference["config"], backend_name, Path(tmp) / "probe"),
                     reference["config"].resolution)
        for i, cfg in enumerate(bar):
            path = prepare_subnet(supernet, cfg, backend_name, Path(tmp) / str(i))
            measured.append(time_in_fresh_process(backend_name, path, cfg.resolution, held.threads, s.repeats,
                                                  s.warmup, s.min_seconds, s.seed, probe=probe,
                                                  precision=held.spec.precision))
            shutil.rmtree(Path(tmp) / str(i), ignore_errors=True)
    return measured


def _report(held: _HeldOut, s: ValidateSettings, measured: list[dict], before, after, reference: dict | None,
            seconds: float) -> dict:
    """The validation report (see the module docstring) from the timings and the probes before and after;
    ``seconds``: the pass's wall time."""
    sp, spec, configs = held.predictor.search_space, held.spec, held.configs
    factors = [p.factor for p in (before, after) if p.factor is not None]
    factor = math.exp(sum(math.log(f) for f in factors) / len(factors)) if factors else None
    raw = held.predictor.predict_many(configs, raw=True)
    recal = raw * (factor or 1.0)
    ms = np.array([m["median_ms"] for m in measured])
    part = held.predictor.report.part("encoder")
    report = {
        "device": held.store.device,
        "space": sp.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "samples": len(configs),
        "seed": s.seed,
        "sampler": f"validation sampler: each skippable block kept with p={KEEP_PROBABILITY}, heads, MLP "
                   f"(and precision) uniform, resolution uniform over {list(sp.resolutions)}; configs disjoint from the "
                   f"{held.profiled} the device folder timed",
        "timing": {"where": f"fresh process per subnet ({FRESH_WHERE[spec.backend]}, {spec.precision})",
                   "threads": held.threads, "repeats": s.repeats, "warmup": s.warmup, "min_seconds": s.min_seconds,
                   "allocator": measured[0].get("allocator")},
        "cv_mape_pct": part.mape_pct,
        "cv_within_10_pct": part.within_10_pct,
        "method": part.method,
        "probe_factor": factor,
        "probe": {"before": before.as_dict(), "after": after.as_dict()},
        "raw": {**error_metrics(ms, raw), "signed_median_pct": signed_median_pct(ms, raw)},
        "recalibrated": {**error_metrics(ms, recal), "signed_median_pct": signed_median_pct(ms, recal)},
        "within_band_pct": 100 * WITHIN,
        "subnets": [{"config": c.key, "predicted_raw_ms": float(r), "predicted_ms": float(p),
                     "measured_ms": m["median_ms"], "p10_ms": m["p10_ms"], "p90_ms": m["p90_ms"],
                     "repeats": m["repeats"]}
                    for c, r, p, m in zip(configs, raw, recal, measured)],
        "seconds": seconds,
    }
    if reference:
        _add_interleaved(report, raw, ms, measured, reference)
    return report


def _add_interleaved(report: dict, raw: np.ndarray, ms: np.ndarray, measured: list[dict], reference: dict) -> None:
    """The ``interleaved`` column: raw predictions scaled per subnet by its own probe timing's factor."""
    per = np.array([m["probe_median_ms"] / reference["median_ms"] for m in measured])
    inter = raw * per
    report["interleaved"] = {**error_metrics(ms, inter), "signed_median_pct": signed_median_pct(ms, inter)}
    report["interleaved_probe"] = {"config": reference["config"].key,
                                   "baseline_ms": reference["median_ms"],
                                   "factor_median": float(np.median(per)), "factor_min": float(per.min()),
                                   "factor_max": float(per.max())}
    for sub, m, f, p in zip(report["subnets"], measured, per, inter):
        sub.update(probe_ms=m["probe_median_ms"], interleaved_factor=float(f), predicted_interleaved_ms=float(p))


def interleave_reference(store: DeviceStore, space: SearchSpace) -> dict | None:
    """The probe subnet timed beside each held-out subnet: the middle (by profiled ms) of the probe baseline.

    ``{"config": SubnetConfig, "median_ms": float}``, or None when the device folder has no probe baseline.
    """
    from .probe import baseline

    probes = baseline(store, space)[0]
    return sorted(probes, key=lambda p: p["median_ms"])[len(probes) // 2] if probes else None
