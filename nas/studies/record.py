"""What one trial of a samnas study stores: the one place that writes and reads Optuna trial attributes.

Architecture searches (``nas.search.run``) and segment-everything policy studies
(``nas.everything.tune``) store the same record, each filling the fields it has. Every field
is one Optuna user attribute of the same name; ``config`` is stored as canonical JSON (a subnet
config's :attr:`~search_spaces.SubnetConfig.key`, a policy's sorted compact JSON). Readers go
through :meth:`TrialRecord.read`, which also reads studies written before this record existed
(``config`` was then JSON with spaces; fields a study never wrote come back as None) and returns
an encoder study's config as a :class:`~search_spaces.SubnetConfig`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from infra.fileio import canonical_json
from search_spaces.config import SubnetConfig, is_config_mapping


@dataclass
class TrialRecord:
    """One trial's attributes. None means "not recorded" and is never written."""

    config: SubnetConfig | dict | None = None  # the subnet config, or the policy (policy studies)
    quality: float | None = None  # the first objective, in [0, 1]
    predicted_ms: float | None = None  # the second objective: latency (or time per image) in ms
    predicted_raw_ms: float | None = None  # before a drift probe's recalibration (nas.latency.probe)
    evaluator: str | None = None  # which quality evaluator scored it
    metrics: dict | None = None  # the evaluator's per-metric values
    feasible: bool | None = None  # predicted_ms within the study's budget
    params: int | None = None  # whole-model parameters of the subnet
    encoder_params: int | None = None
    flops: int | None = None  # image-encoder FLOPs
    stats: dict | None = None  # policy studies: the generator's counts per image
    eval_s: float | None = None  # seconds spent evaluating quality
    predict_s: float | None = None  # seconds spent predicting latency
    sample_s: float | None = None  # seconds the sampler spent proposing it (nas.studies.cost.TimedSampler)
    host: str | None = None  # the worker that ran it (written when the trial starts)
    pid: int | None = None
    pid_start: str | None = None  # the worker's process start time, to tell a reused pid apart
    worker: str | None = None  # "host:pid"
    error: str | None = None  # why the trial failed

    def attrs(self) -> dict[str, Any]:
        """The user attributes to store: every recorded field, ``config`` as canonical JSON."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = _config_json(value) if f.name == "config" else value
        return out

    def write(self, trial) -> None:
        """Store the recorded fields on a running ``optuna.Trial``."""
        for key, value in self.attrs().items():
            trial.set_user_attr(key, value)

    def write_stored(self, storage, trial_id: int) -> None:
        """Store the recorded fields on another process's trial, through the study's storage."""
        for key, value in self.attrs().items():
            storage.set_trial_user_attr(trial_id, key, value)

    @classmethod
    def read(cls, trial) -> "TrialRecord":
        """The record of a trial (anything with ``user_attrs``) or of an attributes mapping."""
        attrs = trial if isinstance(trial, dict) else trial.user_attrs
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in attrs.items() if k in known}
        if isinstance(values.get("config"), str):
            values["config"] = json.loads(values["config"])
        if is_config_mapping(values.get("config")):
            values["config"] = SubnetConfig.from_dict(values["config"])
        return cls(**values)

    @property
    def config_json(self) -> str:
        """``config`` as canonical JSON (``"{}"`` when none was recorded)."""
        return _config_json(self.config or {})


def _config_json(config: SubnetConfig | dict) -> str:
    """The canonical JSON of a subnet config (its key) or of a policy's mapping."""
    return config.key if isinstance(config, SubnetConfig) else canonical_json(config)
