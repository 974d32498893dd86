"""The typed latency predictor report: what report.json and predictor.joblib hold, read and written unchanged."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import joblib
import pytest

from infra.errors import UserError
from nas.latency.predictor import LatencyPredictor
from nas.latency.report import PartReport, PredictorReport

GOLDEN = Path(__file__).resolve().parent / "data" / "latency_predictor_v1" / "predictor.joblib"


@pytest.fixture(scope="module")
def stored() -> dict:
    """The reports pickled with the golden predictors (one per fitting method), as plain dicts."""
    return {name: state["report"] for name, state in joblib.load(GOLDEN)["spaces"].items()}


def test_stored_reports_round_trip_unchanged(stored):
    for data in stored.values():
        report = PredictorReport.from_dict(data)
        assert report.to_dict() == data and list(report.to_dict()) == list(data)  # same keys, same order
        assert report.encoder is report.part("encoder") and report.encoder.method == data["parts"]["encoder"]["method"]
        assert report.encoder.mape_pct == data["parts"]["encoder"]["mape_pct"]
        assert report.encoder.cv[report.encoder.method]["mape_pct"] == report.encoder.mape_pct
        assert list(report.encoder.to_dict()) == list(data["parts"]["encoder"])


def test_predictor_state_carries_the_report_as_before(stored):
    state = joblib.load(GOLDEN)["spaces"]["lut"]
    predictor = LatencyPredictor.from_state(state)
    assert isinstance(predictor.report, PredictorReport)
    assert predictor.state()["report"] == state["report"]
    assert predictor.recalibrated(1.5).report == predictor.report


def test_unknown_keys_are_kept_and_missing_ones_named(stored):
    data = {**stored["gbr"], "added_later": 1}
    data["parts"] = {k: {**v, "also_new": [1]} for k, v in data["parts"].items()}
    assert PredictorReport.from_dict(data).to_dict() == data
    broken = {k: v for k, v in stored["gbr"].items() if k != "networks"}
    with pytest.raises(UserError) as info:
        PredictorReport.from_dict(broken, "report.json: spaces.sam_micro")
    assert str(info.value) == ("report.json: spaces.sam_micro: missing field(s) networks; "
                               "refit with `samnas latency fit`")
    part = {k: v for k, v in stored["gbr"]["parts"]["encoder"].items() if k not in ("method", "cv")}
    with pytest.raises(UserError, match=r"parts\.encoder: missing field\(s\) method, cv"):
        PredictorReport.from_dict({**stored["gbr"], "parts": {"encoder": part}})
    report = PredictorReport.from_dict(stored["gbr"])
    with pytest.raises(UserError, match=r"no 'encoder\+decoder@1' part \(fitted: encoder\)"):
        report.part("encoder+decoder@1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.encoder.mape_pct = 1.0
    assert isinstance(report.encoder, PartReport)
