"""Latency predictors fitted from a device's measurements (scikit-learn), saved per device.

For one search space on one device, and one *part* (``"encoder"``, or
``"encoder+decoder@K"`` for K single-point prompts), the candidates are:

* ``lut``: the additive lookup table, the sum of the timed parts of a config (the
  encoder's fixed part at its resolution, each kept block's kind, the decoder);
* ``lut_scaled``: the lookup table times one factor (the median measured/LUT ratio), which
  absorbs what isolated timings miss (cache effects, the framework's per-call overhead);
* ``lut_linear``: per input resolution, a linear model of the LUT's window-attention ms,
  global-attention ms and number of kept blocks (plus a constant), fitted by least
  squares on the relative error: isolated block timings miss a per-block cost (the
  framework's per-op overhead, reshapes between blocks) and scale differently by kind;
* ``lut_gbr``: the lookup table corrected by gradient boosting: a
  ``GradientBoostingRegressor`` predicts ``log(measured / LUT)`` from the LUT's total
  and its split into parts, and the config's :meth:`SearchSpace.encode` features;
* ``gbr``: gradient boosting on ``log(measured)`` from the config features alone, the
  only candidate when no block table was profiled.

Each candidate is scored with k-fold cross-validation over the timed subnets (MAPE,
RMSE, share of held-out subnets within +-10%); the one with the lowest CV MAPE is then
refitted on every subnet and used. Predictions run no model: validating the config and
one small regressor call, tens to hundreds of microseconds.

``predictor.joblib`` holds, per space, plain data plus scikit-learn estimators, with the
format version and the scikit-learn version; loading a file written by another version
asks to refit (the measurements are kept in plain files, so that is one command). Like
any pickle, load only ``predictor.joblib`` files you wrote: measurements from elsewhere
travel as JSON (``samnas latency import``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.model_selection import KFold

from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from infra.errors import ConfigError, UserError
from infra.fileio import atomic_write_bytes

from .report import PartReport, PredictorReport
from .store import BLOCK_KEY, DeviceStore, encoder_block_kinds, write_json

PREDICTOR_FORMAT = "samnas-latency-predictor/1"
CANDIDATES = ("lut", "lut_scaled", "lut_linear", "lut_gbr", "gbr")
MIN_NETWORKS = 5  # fewer timed subnets cannot be cross-validated meaningfully
WITHIN = 0.10  # the "within +-10%" band


def part_key(part: str, prompts: int) -> str:
    """``"encoder"`` or ``"encoder+decoder@K"``: which timed quantity a model predicts."""
    return part if part == "encoder" else f"{part}@{prompts}"


# ---------------------------------------------------------------------- lookup table


class MissingTiming(KeyError):
    """A lookup-table entry the config needs was never timed."""


def lut_key(model_type: str, kind: str, resolution: int, window: int = -1, heads: int = 0, mlp: int = 0,
            prompts: int = 0, precision: str = "fp32", stage: int = 0) -> tuple:
    """A lookup-table key: the :data:`nas.latency.store.BLOCK_KEY` fields, ``stage`` only when it is not 0.

    ``(model_type, kind, resolution, window, heads, mlp, prompts, precision[, stage])``: a SAM table's
    keys (one stage) are those of every predictor saved before SAM 2's stages existed.
    """
    key = (model_type, kind, resolution, window, heads, mlp, prompts, precision)
    return key + (stage,) if stage else key


def lut_index(block_rows: list[dict]) -> dict[tuple, float]:
    """``{lut_key(...): median_ms}`` from blocks.csv rows (a row without ``precision`` or ``stage``: fp32, 0)."""
    return {lut_key(**{f: r[f] for f in BLOCK_KEY if f in r}): r["median_ms"] for r in block_rows}


def upgrade_lut_keys(lut: Mapping[tuple, float]) -> dict[tuple, float]:
    """A lookup table saved before block precision existed (7-field keys) with ``fp32`` appended."""
    return {(tuple(k) + ("fp32",) if len(k) == 7 else tuple(k)): v for k, v in lut.items()}


LUT_GROUPS = ("fixed", "window", "global", "decoder")  # what each lookup-table part times


def _lut_entries(space: SearchSpace, lut: Mapping[tuple, float], config: SubnetConfig,
                 prompts: int) -> list[tuple[str, str, float]]:
    """``[(part name, group, ms)]`` of a validated config; the group is one of :data:`LUT_GROUPS` (a block's by
    its attention: a SAM 2 transition block is in ``window`` or ``global`` as its window says)."""
    res, mt = config.resolution, space.model_type

    def get(key: tuple) -> float:
        try:
            return lut[key]
        except KeyError:
            raise MissingTiming(key) from None

    entries = [("fixed", "fixed", get(lut_key(mt, "fixed", res)))]
    for i, (entry, kind) in enumerate(zip(config.blocks, encoder_block_kinds(space))):
        if entry.keep:
            key = lut_key(mt, kind.kind, res, kind.window, entry.heads, entry.mlp, 0, entry.precision, kind.stage)
            entries.append((f"blocks[{i}]", "window" if kind.window else "global", get(key)))
    if prompts:
        entries.append(("decoder", "decoder", get(lut_key(mt, "decoder", res, prompts=prompts))))
    return entries


def lut_parts(space: SearchSpace, lut: Mapping[tuple, float], config: SubnetConfig, prompts: int = 0) -> list[tuple[str, float]]:
    """``[(part name, ms), ...]`` of a validated config: ``fixed``, each kept ``blocks[i]``, ``decoder`` if ``prompts``.

    Their sum is the lookup-table prediction. Raises :class:`MissingTiming` when an entry is absent.
    """
    return [(name, ms) for name, _, ms in _lut_entries(space, lut, config, prompts)]


LINEAR_MIN_ROWS = 8  # fewer timed subnets at a resolution: lut_linear uses one scale factor there
# The lookup-table summary, by name: log of the LUT total, then each group's share of it.
SUMMARY_COLUMNS = ("log_lut_ms",) + tuple(f"{group}_share" for group in LUT_GROUPS)


def _lut_summary(entries: list[tuple[str, str, float]]) -> np.ndarray:
    """The :data:`SUMMARY_COLUMNS` of one config's lookup-table entries."""
    total = sum(ms for _, _, ms in entries)
    groups = dict.fromkeys(LUT_GROUPS, 0.0)
    for _, group, ms in entries:
        groups[group] += ms
    return np.array([math.log(total)] + [groups[g] / total for g in LUT_GROUPS])


@dataclass(frozen=True)
class Features:
    """The regressors' inputs for ``n`` configs, in named groups.

    ``encoding``: :meth:`SearchSpace.encode` rows ``(n, 1 + 3 * blocks)`` (resolution, then per
    block keep / heads / mlp); ``summary``: the :data:`SUMMARY_COLUMNS` ``(n, 5)``, or None
    without a lookup table. The regressors see :attr:`matrix`, summary columns first: the
    layout every saved predictor was fitted on.
    """

    encoding: np.ndarray
    summary: np.ndarray | None = None

    @classmethod
    def stack(cls, rows: Sequence["Features"]) -> "Features":
        """One :class:`Features` of many (each of one or more configs)."""
        summary = None if rows[0].summary is None else np.concatenate([np.atleast_2d(r.summary) for r in rows])
        return cls(np.concatenate([np.atleast_2d(r.encoding) for r in rows]), summary)

    def __len__(self) -> int:
        return len(np.atleast_2d(self.encoding))

    def __getitem__(self, rows) -> "Features":
        """The features of some configs (an index array or mask), as sklearn's folds pick them."""
        return Features(np.atleast_2d(self.encoding)[rows],
                        None if self.summary is None else np.atleast_2d(self.summary)[rows])

    @property
    def matrix(self) -> np.ndarray:
        """``(n, f)``: summary columns (if any), then the encoding."""
        enc = np.atleast_2d(self.encoding)
        return enc if self.summary is None else np.concatenate([np.atleast_2d(self.summary), enc], axis=1)

    def column(self, name: str) -> np.ndarray:
        """One summary column by name (see :data:`SUMMARY_COLUMNS`)."""
        return np.atleast_2d(self.summary)[:, SUMMARY_COLUMNS.index(name)]

    @property
    def resolution(self) -> np.ndarray:
        """The encoded input side of each config."""
        return np.atleast_2d(self.encoding)[:, 0]

    @property
    def kept_blocks(self) -> np.ndarray:
        """How many encoder blocks each config keeps."""
        return np.atleast_2d(self.encoding)[:, 1::3].sum(axis=1)


# ---------------------------------------------------------------------- one fitted part


def _gbr(seed: int) -> GradientBoostingRegressor:
    """Small, regularised boosting: few samples (tens), smooth targets."""
    return GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                     min_samples_leaf=3, random_state=seed)


class PartModel:
    """The chosen candidate for one part, refitted on all its subnets. ``predict`` takes log-space inputs."""

    def __init__(self, method: str, seed: int = 0) -> None:
        if method not in CANDIDATES:
            raise ValueError(f"unknown method {method!r}")
        self.method = method
        self.seed = seed
        self.log_scale = 0.0
        self.gbr: GradientBoostingRegressor | None = None
        self.linear: dict[float, list[float]] = {}  # lut_linear: resolution feature -> coefficients

    def fit(self, X: Features, log_lut: np.ndarray | None, log_y: np.ndarray) -> "PartModel":
        """``X``: the configs' features; ``log_lut``: log LUT ms ``(n,)`` or None; ``log_y``: log measured ms."""
        if self.method in ("lut_scaled", "lut_linear"):
            self.log_scale = float(np.median(log_y - log_lut))
        if self.method == "lut_linear":
            self.linear = fit_linear(X, np.exp(log_y))
        elif self.method == "lut_gbr":
            self.gbr = _gbr(self.seed).fit(X.matrix, log_y - log_lut)
        elif self.method == "gbr":
            self.gbr = _gbr(self.seed).fit(X.matrix, log_y)
        return self

    def predict_log(self, X: Features, log_lut: np.ndarray | None) -> np.ndarray:
        """Predicted log ms for each config."""
        if self.method == "lut":
            return log_lut
        if self.method == "lut_scaled":
            return log_lut + self.log_scale
        if self.method == "lut_linear":
            return predict_linear(self.linear, X, log_lut + self.log_scale)
        if self.method == "lut_gbr":
            return log_lut + self.gbr.predict(X.matrix)
        return self.gbr.predict(X.matrix)


def linear_design(X: Features) -> tuple[np.ndarray, np.ndarray]:
    """Each config's resolution feature ``(n,)`` and lut_linear's design ``(n, 4)``.

    Design columns: 1, window-attention LUT ms, global-attention LUT ms, kept blocks. The
    fixed part and the decoder are one constant per resolution.
    """
    total = np.exp(X.column("log_lut_ms"))
    design = np.stack([np.ones(len(X)), X.column("window_share") * total, X.column("global_share") * total,
                       X.kept_blocks], axis=1)
    return X.resolution, design


def fit_linear(X: Features, y_ms: np.ndarray) -> dict[float, list[float]]:
    """Per resolution with at least :data:`LINEAR_MIN_ROWS` rows, least-squares coefficients of the relative error."""
    res, design = linear_design(X)
    out = {}
    for r in np.unique(res):
        rows = res == r
        if rows.sum() >= LINEAR_MIN_ROWS:
            w = 1.0 / y_ms[rows]
            coef, *_ = np.linalg.lstsq(design[rows] * w[:, None], y_ms[rows] * w, rcond=None)
            out[float(r)] = [float(c) for c in coef]
    return out


def predict_linear(coefs: dict[float, list[float]], X: Features, fallback_log: np.ndarray) -> np.ndarray:
    """Log ms from the per-resolution coefficients; ``fallback_log`` where a resolution has none (or the sum is <= 0)."""
    res, design = linear_design(X)
    out = np.array(fallback_log, dtype=float)
    for i, r in enumerate(res):
        coef = coefs.get(float(r))
        if coef is not None:
            ms = float(design[i] @ np.asarray(coef))
            if ms > 0:
                out[i] = math.log(ms)
    return out


def error_metrics(measured: np.ndarray, predicted: np.ndarray) -> dict:
    """MAPE (%), RMSE (ms), % within +-10%, and the worst absolute percentage error."""
    rel = np.abs(predicted - measured) / measured
    return {
        "mape_pct": float(100 * rel.mean()),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "within_10_pct": float(100 * np.mean(rel <= WITHIN)),
        "max_ape_pct": float(100 * rel.max()),
        "n": int(len(measured)),
    }


def cross_validate(method: str, X: Features, log_lut, log_y: np.ndarray, folds: int, seed: int) -> dict:
    """k-fold CV of one candidate: metrics of the held-out predictions (ms)."""
    pred = np.empty_like(log_y)
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(X.matrix):
        lut_tr = None if log_lut is None else log_lut[train]
        lut_te = None if log_lut is None else log_lut[test]
        model = PartModel(method, seed).fit(X[train], lut_tr, log_y[train])
        pred[test] = model.predict_log(X[test], lut_te)
    return error_metrics(np.exp(log_y), np.exp(pred))


# ---------------------------------------------------------------------- the predictor


class LatencyPredictor:
    """Predicted latency (ms) of subnet configs of one search space on one device.

    ``predict_ms(config)`` is the image encoder's latency; ``predict_ms(config, prompts=K)``
    the encoder plus the decoder for K single-point prompts, when that was profiled.
    ``report`` holds the cross-validation results (see :func:`fit_space`). ``speed_factor``
    (1.0 unless set by :meth:`recalibrated`) multiplies every prediction.
    """

    def __init__(self, device: str, space: SearchSpace, lut: dict[tuple, float], models: dict[str, PartModel],
                 report: PredictorReport | None, speed_factor: float = 1.0) -> None:
        self.device = device
        self.search_space = space
        self.lut = lut
        self.models = models
        self.report = report
        self.speed_factor = float(speed_factor)

    def recalibrated(self, factor: float) -> "LatencyPredictor":
        """This predictor with every prediction scaled by ``factor`` (a drift probe's speed factor).

        The lookup table (:meth:`lut_parts`) stays as profiled; ``predict_many(..., raw=True)`` unscaled.
        """
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"speed factor must be a positive finite number, got {factor!r}")
        return LatencyPredictor(self.device, self.search_space, self.lut, self.models, self.report, factor)

    @property
    def space(self) -> str:
        """The search space's name."""
        return self.search_space.name

    @property
    def parts(self) -> list[str]:
        """Fitted parts: ``"encoder"`` and/or ``"encoder+decoder@K"``."""
        return sorted(self.models)

    def _check(self, config: SubnetConfig | Mapping) -> SubnetConfig:
        try:
            return self.search_space.validate(config)
        except ConfigError as exc:
            hint = ""
            if str(exc).startswith("resolution:"):
                hint = (f" (that resolution was not profiled: run `samnas latency profile --space {self.space} "
                        f"--device {self.device} --blocks --resolutions R` then `samnas latency fit "
                        f"--device {self.device}`)")
            raise ConfigError(f"config outside the space {self.space!r} of the {self.device} predictor: {exc}{hint}"
                              ) from None

    def _model(self, prompts: int | None) -> tuple[str, PartModel]:
        key = part_key("encoder+decoder", prompts) if prompts else "encoder"
        if key not in self.models:
            raise UserError(
                f"the {self.device} predictor for {self.space} has no {key!r} model (fitted: {', '.join(self.parts)}); "
                f"run `samnas latency profile --space {self.space} --device {self.device}"
                + (f" --prompts {prompts}" if prompts else "") + f"` then `samnas latency fit --device {self.device}`"
            )
        return key, self.models[key]

    def lut_parts(self, config: SubnetConfig | Mapping, prompts: int | None = None) -> list[tuple[str, float]]:
        """The lookup table's parts ``[(name, ms)]`` for ``config``; their sum is :meth:`lut_ms`."""
        config = self._check(config)
        try:
            return lut_parts(self.search_space, self.lut, config, prompts or 0)
        except MissingTiming as exc:
            raise self._missing(exc) from None

    def _missing(self, exc: MissingTiming) -> UserError:
        return UserError(
            f"no block timing for {exc.args[0]} on {self.device}: run `samnas latency profile --space "
            f"{self.space} --device {self.device} --blocks` then `samnas latency fit --device {self.device}`"
        )

    def lut_ms(self, config: SubnetConfig | Mapping, prompts: int | None = None) -> float:
        """The plain lookup-table prediction: the sum of :meth:`lut_parts`."""
        return float(sum(ms for _, ms in self.lut_parts(config, prompts)))

    def features(self, config: SubnetConfig, prompts: int) -> tuple[Features, float | None]:
        """The regressors' features of a validated config and its log LUT ms (None without a LUT)."""
        enc = self.search_space.encode(config)
        if not self.lut:
            return Features(enc), None
        summary = _lut_summary(_lut_entries(self.search_space, self.lut, config, prompts))
        return Features(enc, summary), float(summary[0])

    def predict_many(self, configs: Sequence[SubnetConfig | Mapping], prompts: int | None = None, raw: bool = False) -> np.ndarray:
        """Predicted ms of each config, ``(n,)``; times :attr:`speed_factor` unless ``raw``."""
        _, model = self._model(prompts)
        rows, luts = [], []
        for cfg in configs:
            cfg = self._check(cfg)
            try:
                x, log_lut = self.features(cfg, prompts or 0)
            except MissingTiming as exc:
                raise self._missing(exc) from None
            rows.append(x)
            luts.append(log_lut)
        log_lut = None if model.method == "gbr" else np.asarray(luts, dtype=float)
        predicted = np.exp(model.predict_log(Features.stack(rows), log_lut))
        return predicted if raw or self.speed_factor == 1.0 else predicted * self.speed_factor

    def predict_ms(self, config: SubnetConfig | Mapping, prompts: int | None = None, raw: bool = False) -> float:
        """Predicted latency in ms of ``config`` (encoder; plus decoder for ``prompts`` single-point prompts).

        Scaled by :attr:`speed_factor` unless ``raw``.
        """
        return float(self.predict_many([config], prompts, raw)[0])

    # -------------------------------------------------------------- persistence

    def state(self) -> dict:
        """Plain data and estimators, what ``predictor.joblib`` stores for this space."""
        return {
            "device": self.device,
            "space": self.search_space.to_dict(),
            "lut": dict(self.lut),
            "models": {k: {"method": m.method, "seed": m.seed, "log_scale": m.log_scale, "gbr": m.gbr,
                           "linear": m.linear}
                       for k, m in self.models.items()},
            "report": None if self.report is None else self.report.to_dict(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "LatencyPredictor":
        models = {}
        for key, m in state["models"].items():
            model = PartModel(m["method"], m["seed"])
            model.log_scale, model.gbr, model.linear = m["log_scale"], m["gbr"], m.get("linear", {})
            models[key] = model
        space = SearchSpace.from_dict(state["space"], source=f"predictor for {state['device']}")
        report = PredictorReport.from_dict(state["report"], f"predictor for {state['device']}") \
            if state.get("report") else None
        return cls(state["device"], space, upgrade_lut_keys(state["lut"]), models, report)


# ---------------------------------------------------------------------- fitting


def _fit_part(predictor: LatencyPredictor, rows: list[dict], folds: int, seed: int) -> tuple[PartModel, PartReport]:
    """Cross-validate every candidate on ``rows`` (one part), pick the lowest MAPE, refit it on all rows."""
    prompts = rows[0]["prompts"]
    feats, luts = zip(*(predictor.features(predictor.search_space.validate(SubnetConfig.from_json(r["config"])), prompts)
                        for r in rows))
    X = Features.stack(feats)
    log_y = np.log(np.asarray([r["median_ms"] for r in rows]))
    log_lut = None if luts[0] is None else np.asarray(luts, dtype=float)
    methods = ("lut", "lut_scaled", "lut_linear", "lut_gbr") if log_lut is not None else ("gbr",)
    k = min(folds, len(rows))
    cv = {m: cross_validate(m, X, log_lut, log_y, k, seed) for m in methods}
    chosen = min(methods, key=lambda m: (cv[m]["mape_pct"], methods.index(m)))
    model = PartModel(chosen, seed).fit(X, log_lut, log_y)
    spread = [100 * (r["p90_ms"] - r["p10_ms"]) / r["median_ms"] for r in rows if r["median_ms"] > 0]
    report = PartReport(
        method=chosen, networks=len(rows), folds=k, cv=cv,
        **{key: cv[chosen][key] for key in ("mape_pct", "rmse_ms", "within_10_pct")},
        noise_spread_pct=float(np.median(spread)) if spread else None,
        profiling_seconds=float(sum(r["seconds"] for r in rows)),
    )
    return model, report


def fit_space(device: str, space: SearchSpace, blocks: list[dict], networks: list[dict], folds: int = 5,
              seed: int = 0) -> LatencyPredictor:
    """Fit every part measured for ``space`` (``networks`` rows of that space; ``blocks`` rows of the device).

    The predictor's space is ``space`` restricted to the resolutions that were timed end to
    end, so that configs at unmeasured resolutions are refused rather than guessed. Without
    block timings for every needed entry, only the features-only ``gbr`` candidate is fitted.
    """
    rows = [r for r in networks if r["space"] == space.name]
    resolutions = sorted({r["resolution"] for r in rows}, reverse=True)
    data = space.to_dict()
    data["resolutions"] = resolutions or list(space.resolutions)
    space = SearchSpace.from_dict(data, source=space.source)
    lut = {k: v for k, v in lut_index(blocks).items() if k[0] == space.model_type}
    predictor = LatencyPredictor(device, space, lut, {}, None)
    by_part: dict[str, list[dict]] = {}
    for r in rows:
        by_part.setdefault(part_key(r["part"], r["prompts"]), []).append(r)
    if lut and not _lut_covers(predictor, rows):
        predictor.lut = {}
    block_rows = [r for r in blocks if r["model_type"] == space.model_type and r["resolution"] in resolutions]
    parts: dict[str, PartReport] = {}
    for key, part_rows in sorted(by_part.items()):
        if len(part_rows) < MIN_NETWORKS:
            raise UserError(
                f"only {len(part_rows)} timed {key} subnets of {space.name} on {device}, at least {MIN_NETWORKS} "
                f"needed: run `samnas latency profile --space {space.name} --device {device} --samples 30`"
            )
        predictor.models[key], parts[key] = _fit_part(predictor, part_rows, folds, seed)
    block_seconds = float(sum(r["seconds"] for r in block_rows))
    predictor.report = PredictorReport(
        space=space.name, resolutions=resolutions, lookup_table=bool(predictor.lut), block_timings=len(block_rows),
        block_profiling_seconds=block_seconds, parts=parts, networks=len(rows),
        profiling_seconds=block_seconds + sum(p.profiling_seconds for p in parts.values()))
    return predictor


def _lut_covers(predictor: LatencyPredictor, rows: list[dict]) -> bool:
    """Whether every timed subnet's lookup-table entries were timed."""
    for r in rows:
        try:
            lut_parts(predictor.search_space, predictor.lut,
                      predictor.search_space.validate(SubnetConfig.from_json(r["config"])), r["prompts"])
        except MissingTiming:
            return False
    return True


def _profile_hint(device: str, space: str = "S") -> str:
    return (f"run `samnas latency profile --space {space} --device {device} --blocks --samples 30` "
            f"then `samnas latency fit --device {device}`")


def fit_device(device: str, root=None, space: str | None = None, folds: int = 5, seed: int = 0) -> dict:
    """Fit a predictor for every space profiled on ``device`` (or only ``space``); save; return report.json's content.

    Writes ``predictor.joblib`` and ``report.json`` atomically. Spaces not refitted keep
    their previous predictor.
    """
    store = DeviceStore(device, root)
    if not store.exists() or store.fingerprint() is None:
        raise UserError(f"no measurements for device {device} under {store.root}: {_profile_hint(device)}")
    spaces, blocks, networks = store.spaces(), store.blocks(), store.networks()
    names = sorted({r["space"] for r in networks})
    if space is not None:
        if space not in names:
            raise UserError(f"no timed subnets of space {space!r} on {device} (have: {', '.join(names) or 'none'}): "
                            + _profile_hint(device, space))
        names = [space]
    if not names:
        raise UserError(f"no timed subnets on {device} under {store.root}: {_profile_hint(device)}")
    start = time.perf_counter()
    try:
        previous = _read_states(store.path("predictor.joblib")) if store.path("predictor.joblib").is_file() else {}
        old_report = store.report() or {}
    except UserError:  # an old or broken file: refit every space instead of keeping any of it
        previous, old_report = {}, {}
        names = sorted({r["space"] for r in networks})
    states, reports = dict(previous), dict(old_report.get("spaces", {}))
    for name in names:
        if name not in spaces:
            raise UserError(f"{store.path('spaces.json')}: space {name!r} missing; profile it again")
        sp = SearchSpace.from_dict(spaces[name], source=f"{store.path('spaces.json')}[{name}]")
        predictor = fit_space(device, sp, blocks, networks, folds, seed)
        states[name] = predictor.state()
        reports[name] = predictor.report.to_dict()
    save_states(store.path("predictor.joblib"), device, states)
    report = {
        "format": PREDICTOR_FORMAT,
        "device": device,
        "sklearn": sklearn.__version__,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fit_seconds": time.perf_counter() - start,
        "fingerprint": store.fingerprint(),
        "spaces": reports,
    }
    write_json(store.path("report.json"), report)
    return report


def save_states(path, device: str, states: dict) -> None:
    """Write ``{space: state}`` with the format and scikit-learn versions to ``path`` atomically (joblib)."""
    import io

    buf = io.BytesIO()
    joblib.dump({"format": PREDICTOR_FORMAT, "sklearn": sklearn.__version__, "device": device, "spaces": states}, buf)
    atomic_write_bytes(path, buf.getvalue())


def _read_states(path) -> dict:
    """``{space: state}`` from a ``predictor.joblib``; UserError (asking to refit) for another version."""
    device = path.parent.name
    refit = f"run `samnas latency fit --device {device}` to refit it from the stored measurements"
    try:
        data = joblib.load(path)
    except Exception as exc:  # a truncated or foreign file: pickle raises many kinds
        raise UserError(f"{path}: cannot read the predictor ({type(exc).__name__}: {exc}); {refit}") from None
    if not isinstance(data, dict) or data.get("format") != PREDICTOR_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path}: predictor format {found!r}, expected {PREDICTOR_FORMAT!r}; {refit}")
    if data.get("sklearn") != sklearn.__version__:
        raise UserError(f"{path}: written with scikit-learn {data.get('sklearn')}, this is {sklearn.__version__}; {refit}")
    return data["spaces"]


def load_predictor(device: str, space: str | SearchSpace | None = None, root=None) -> LatencyPredictor:
    """The fitted predictor of ``device`` for ``space`` (a name or SearchSpace; optional if only one was fitted).

    Raises a one-line UserError saying what to run when the device, its predictor or the space is missing.
    """
    store = DeviceStore(device, root)
    path = store.path("predictor.joblib")
    name = space.name if isinstance(space, SearchSpace) else space
    if not path.is_file():
        hint = _profile_hint(device, name or "S")
        if store.networks():
            hint = f"run `samnas latency fit --device {device}`"
        raise UserError(f"no predictor for device {device} under {store.root}: {hint}")
    states = _read_states(path)
    if name is None:
        if len(states) != 1:
            raise UserError(f"{path}: predictors for {len(states)} spaces ({', '.join(sorted(states))}); name one")
        name = next(iter(states))
    if name not in states:
        raise UserError(f"no predictor for space {name!r} on device {device} (fitted: {', '.join(sorted(states))}): "
                        + _profile_hint(device, name))
    return LatencyPredictor.from_state(states[name])
