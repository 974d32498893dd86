"""Samplers that propose a whole subnet config per trial, as Optuna ``BaseSampler`` subclasses.

The search asks Optuna conditionally (``nas.search.run.suggest_config``: heads and MLP only for
kept blocks), so a sampler that reasons about whole configs decides one in ``before_trial``
and then answers each ``suggest_categorical`` from it. The proposal is also written to the
trial's system attributes (:data:`PROPOSAL_ATTR`), so that workers sharing an RDB study see
what the others are evaluating right now (a RUNNING trial has a proposal but no quality yet).

Where a subclass proposes nothing (``propose`` returns None) or a parameter does not fit the
proposal, a seeded :class:`optuna.samplers.RandomSampler` answers instead.
"""
from __future__ import annotations

import json
from abc import abstractmethod

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

PROPOSAL_ATTR = "samnas:proposal"


def param_value(config: SubnetConfig, name: str):
    """The value of the parameter ``name`` (as ``suggest_config`` names them) in ``config``; KeyError if none
    (also for a skipped block's heads, mlp or precision)."""
    if name == "resolution":
        return config.resolution
    block, _, field = name.partition(".")
    if not block.startswith("b") or field not in ("keep", "heads", "mlp", "precision"):
        raise KeyError(name)
    entry = config.blocks[int(block[1:])]
    if field != "keep" and not entry.keep:
        raise KeyError(name)
    return getattr(entry, field)


def trial_config(trial: FrozenTrial) -> SubnetConfig | None:
    """The config a trial evaluated (its ``config`` user attribute) or, while RUNNING, its proposal."""
    text = trial.user_attrs.get("config") or trial.system_attrs.get(PROPOSAL_ATTR)
    return SubnetConfig.from_json(text) if text else None


class ProposalSampler(optuna.samplers.BaseSampler):
    """Base: ``propose`` a config per trial; the trial's suggestions then read it."""

    def __init__(self, space: SearchSpace, seed: int | None = 0) -> None:
        self.space = space
        self.seed = seed
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._proposals: dict[int, SubnetConfig] = {}  # trial id -> config, in this process

    @abstractmethod
    def propose(self, study: optuna.Study, trial: FrozenTrial) -> SubnetConfig | None:
        """A valid config for ``trial``, or None to let random sampling answer."""

    # Optuna's hooks ------------------------------------------------------------------------

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        config = self.propose(study, trial)
        if config is None:
            return
        config = self.space.validate(config)
        self._proposals[trial._trial_id] = config
        # the config's dict form as sorted JSON with spaces, as proposals were always stored
        study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR,  # Optuna has no public call for this
                                             json.dumps(config.to_dict(), sort_keys=True))

    def sample_independent(self, study, trial, param_name: str, param_distribution: BaseDistribution):
        config = self._proposals.get(trial._trial_id)
        if config is not None:
            try:
                value = param_value(config, param_name)
                choices = getattr(param_distribution, "choices", None)
                if choices is None or value in choices:
                    return value
            except (KeyError, IndexError):
                pass
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state: TrialState, values) -> None:
        self._proposals.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()


def seen_trials(study: optuna.Study, trial: FrozenTrial) -> tuple[list[tuple[SubnetConfig, float, float]],
                                                                  list[SubnetConfig], set[SubnetConfig]]:
    """``(done, pending, tried)``: completed trials as ``(config, quality, predicted_ms)`` by trial
    number; the configs other workers are evaluating now (RUNNING trials with a proposal); and every
    config any trial holds, failed ones included (not worth proposing again)."""
    done, pending, tried = [], [], set()
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.number == trial.number or (cfg := trial_config(t)) is None:
            continue
        tried.add(cfg)
        if t.state == TrialState.COMPLETE and t.values:
            done.append((cfg, float(t.values[0]), float(t.values[1])))
        elif t.state == TrialState.RUNNING:
            pending.append(cfg)
    return done, pending, tried
