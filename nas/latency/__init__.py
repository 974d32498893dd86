"""Hardware latency predictors: profile a device, fit a predictor, predict subnet latency.

Stable API for the search and the export (other modules are internals)::

    from nas.latency import load_predictor

    predictor = load_predictor("cpu-torch", space="sam_micro")   # root=None: results/latency
    ms = predictor.predict_ms(config)          # image encoder, ms; no model is run (~0.1 ms)
    ms = predictor.predict_ms(config, prompts=1)  # encoder + decoder, if profiled with --prompts 1
    predictor.report.part("encoder").mape_pct   # cross-validated error, see below
    predictor.space, predictor.device           # names

``load_predictor(device, space=None, root=None) -> LatencyPredictor`` raises a one-line
:class:`infra.errors.UserError` that names the command to run when the device has no
fitted predictor; ``predict_ms`` raises :class:`infra.errors.ConfigError` (a UserError)
for a config outside the space the predictor was fitted on (including a resolution that
was not profiled).

``LatencyPredictor.report`` is a :class:`~nas.latency.report.PredictorReport` (``report.py``; its
``to_dict()`` is one space's entry of ``report.json``, ``PredictorReport.from_dict`` reads it)::

    PredictorReport(space, resolutions, lookup_table: bool, block_timings, block_profiling_seconds,
                    networks, profiling_seconds,
                    parts={"encoder" | "encoder+decoder@K": PartReport(
                        method="lut" | "lut_scaled" | "lut_linear" | "lut_gbr" | "gbr",   # the candidate in use
                        mape_pct, rmse_ms, within_10_pct,               # its k-fold CV figures
                        cv={candidate: {...same keys, "max_ape_pct", "n"}},
                        networks, folds, noise_spread_pct, profiling_seconds)})

Producing a predictor (what ``samnas latency profile`` and ``fit`` run)::

    profile_device(space, device, ProfileSettings(blocks=True, samples=30, prompts=0, repeats=5, warmup=2,
                                                  threads=None, seed=0, resolutions=None),
                   root=None, out=None) -> ProfileRun
    fit_device(device, root=None, space=None, folds=5, seed=0) -> dict  (report.json)
    profile_and_fit_quick(space, device, root=None) -> LatencyPredictor
    import_profile_file(path, device=None, root=None) -> dict

Checking a predictor later (``samnas latency probe`` / ``validate``)::

    from nas.latency.probe import run_probe
    result = run_probe(predictor)              # the drift probe: result.factor (None if no baseline), .warning()
    predictor.recalibrated(result.factor)      # predictions times the factor; predict_ms(cfg, raw=True) unscaled
    from nas.latency.validate import validate_predictor
    validate_predictor(device, space=None, root=None, ValidateSettings(samples=20)) -> dict  # + validation.json

Devices are named ``<cpu|cuda>-<torch|onnxruntime>[@tag]``; files live in
``<root>/<device>/`` (see :mod:`nas.latency.store` for the layout).
"""
from __future__ import annotations

from .predictor import PREDICTOR_FORMAT, LatencyPredictor, fit_device, load_predictor
from .profile import ProfileRun, ProfileSettings, profile, profile_and_fit_quick, profile_device
from .report import PartReport, PredictorReport
from .store import PROFILE_FORMAT, import_profile_file, list_devices, resolve_root, validate_device

__all__ = [
    "LatencyPredictor",
    "PREDICTOR_FORMAT",
    "PROFILE_FORMAT",
    "PartReport",
    "PredictorReport",
    "ProfileRun",
    "ProfileSettings",
    "fit_device",
    "import_profile_file",
    "list_devices",
    "load_predictor",
    "profile",
    "profile_and_fit_quick",
    "profile_device",
    "resolve_root",
    "validate_device",
]
