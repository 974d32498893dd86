"""Optuna plumbing shared by architecture searches and policy tuning: study names and storage
(:mod:`.study`), the trial record (:mod:`.record`), the one study driver (:mod:`.driver`), MLflow
logging (:mod:`.tracking`) and a trial's cost split (:mod:`.cost`)."""
