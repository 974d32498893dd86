"""The latency predictor's report: what fitting found, per search space and per timed part.

:class:`PredictorReport` is ``LatencyPredictor.report`` and one space's entry of ``report.json``
(``{"format", "device", ..., "spaces": {name: report}}``); :class:`PartReport` is one fitted part
(``"encoder"`` or ``"encoder+decoder@K"``). ``to_dict`` gives exactly the mapping stored in
``report.json`` and ``predictor.joblib`` (keys unknown to this samnas are kept, so a report
read and written again is unchanged) and ``from_dict`` reads it back, raising a one-line
:class:`infra.errors.UserError` naming the missing field.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from infra.errors import UserError

ENCODER = "encoder"


def _read(cls, data: Mapping, where: str, convert: dict | None = None):
    """``cls`` from ``data``: every field but ``extra`` required, ``convert[name]`` applied where given,
    keys ``cls`` does not know kept in ``extra``."""
    if not isinstance(data, Mapping):
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls) if f.name != "extra"]
    missing = [n for n in names if n not in data]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}; refit with `samnas latency fit`")
    convert = convert or {}
    values = {n: convert[n](data[n]) if n in convert else data[n] for n in names}
    return cls(**values, extra={k: v for k, v in data.items() if k not in names})


@dataclass(frozen=True)
class PartReport:
    """One fitted part: the candidate in use (``method``) and its k-fold CV figures.

    ``mape_pct`` (%), ``rmse_ms`` (ms), ``within_10_pct`` (% of held-out subnets within +-10%);
    ``cv``: every candidate's figures (``nas.latency.predictor.error_metrics``: the same keys plus
    ``max_ape_pct`` and ``n``); ``networks``: timed subnets; ``folds``; ``noise_spread_pct``: median
    p10-p90 spread of the timings (%), None without timings; ``profiling_seconds``: their timing cost.
    """

    method: str
    networks: int
    folds: int
    cv: dict[str, dict]
    mape_pct: float
    rmse_ms: float
    within_10_pct: float
    noise_spread_pct: float | None
    profiling_seconds: float
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "report part") -> "PartReport":
        return _read(cls, data, where, {"cv": dict})

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**out, **self.extra}


@dataclass(frozen=True)
class PredictorReport:
    """What fitting one space's predictor found: ``parts`` by part key (``"encoder"``,
    ``"encoder+decoder@K"``), the resolutions timed end to end, whether a lookup table is used,
    how many block timings and subnets (``networks``) it rests on, and the profiling seconds."""

    space: str
    resolutions: list[int]
    lookup_table: bool
    block_timings: int
    block_profiling_seconds: float
    parts: dict[str, PartReport]
    networks: int
    profiling_seconds: float
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "predictor report") -> "PredictorReport":
        def parts(value) -> dict[str, PartReport]:
            if not isinstance(value, Mapping):
                raise UserError(f"{where}: parts: expected a mapping, got {type(value).__name__}")
            return {k: PartReport.from_dict(v, f"{where}: parts.{k}") for k, v in value.items()}

        return _read(cls, data, where, {"parts": parts, "resolutions": list})

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["parts"] = {k: p.to_dict() for k, p in self.parts.items()}
        return {**out, **self.extra}

    @property
    def encoder(self) -> PartReport | None:
        """The image encoder's part (None if only encoder+decoder parts were fitted)."""
        return self.parts.get(ENCODER)

    def part(self, key: str) -> PartReport:
        """The part ``key``; UserError naming the fitted ones when it was not fitted."""
        if key not in self.parts:
            raise UserError(f"the {self.space} predictor has no {key!r} part (fitted: {', '.join(sorted(self.parts))})")
        return self.parts[key]


__all__ = ["ENCODER", "PartReport", "PredictorReport"]
