"""MLflow logging for studies (searches and policy tuning): one experiment per study, one run per
search, a child run per trial.

The default store is a local file store under ``results/mlruns`` (mlflow-skinny needs
``MLFLOW_ALLOW_FILE_STORE=true`` for it, which we set); ``--tracking-uri`` overrides it.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from infra.fileio import tracking_uri as resolve_tracking_uri

from nas.studies.record import TrialRecord

_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_\-. :/]")


class SearchTracker:
    """Context manager around one search run; ``log_trial`` is an Optuna-friendly callback body."""

    def __init__(self, experiment: str, tracking_uri: str | None = None, run_name: str | None = None,
                 params: dict | None = None) -> None:
        self.uri = resolve_tracking_uri(tracking_uri)
        import logging

        import mlflow

        if not logging.getLogger().isEnabledFor(logging.INFO):  # `--verbose` shows MLflow's own lines
            logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment)
        self.run_name = run_name
        self.params = params or {}
        self.run = None

    def __enter__(self) -> "SearchTracker":
        self.run = self.mlflow.start_run(run_name=self.run_name)
        if self.params:
            self.mlflow.log_params({k: str(v)[:500] for k, v in self.params.items()})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")

    def log_trial(self, number: int, params: dict, record: TrialRecord, state: str = "COMPLETE") -> None:
        """A nested run for one trial: its Optuna params, and quality / latency / size metrics."""
        with self.mlflow.start_run(run_name=f"trial-{number}", nested=True):
            self.mlflow.log_params({k: str(v) for k, v in params.items()})
            metrics = {k: float(getattr(record, k)) for k in ("quality", "predicted_ms", "params", "flops", "eval_s",
                                                              "predict_s") if getattr(record, k) is not None}
            # MLflow names allow letters, digits and _-. :/ only: "AR@100" is logged as "metric.AR_100"
            metrics.update({f"metric.{_NOT_IN_NAMES.sub('_', k)}": float(v) for k, v in (record.metrics or {}).items()})
            self.mlflow.log_metrics(metrics)
            self.mlflow.set_tags({"trial": number, "state": state, "feasible": record.feasible})
        self.mlflow.log_metric("trial_quality", float(record.quality or 0.0), step=number)

    def log_front(self, front_json: str, front_png: Path | None = None) -> None:
        """The final front as artifacts (``front.json`` and, when given, the plot)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "front.json"
            path.write_text(front_json)
            self.mlflow.log_artifact(str(path))
        if front_png and Path(front_png).is_file():
            self.mlflow.log_artifact(str(front_png))
        self.mlflow.log_metric("front_size", len(json.loads(front_json)))
