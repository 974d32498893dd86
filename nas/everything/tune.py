"""Tuning the segment-everything policy for one model, device and time budget (Optuna, two objectives).

Objectives: quality (maximised) and time per image in ms (minimised), with ``time <= budget`` as
a constraint. Quality is mask AR@K with COCO annotations, else agreement with the model's own
dense grid (:mod:`.quality`); time is predicted by a cost model or measured (:mod:`.cost`,
:mod:`.evaluator`); the policies tried are those of :mod:`.policy_space`.

The study is run by :mod:`nas.studies.driver`, as architecture searches are: the same storage, resuming,
failed-trial handling, trial count (finished trials), worker records, study attributes, MLflow
runs and progress bar. This module supplies the objective and the baseline trials, and picks
the policy to write. The chosen policy can be scored on other photos than it was tuned on
(:func:`~.evaluator.score_policy`), with the same objective, so that what it keeps of the grid
is measured on photos it has not seen.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna

from infra.errors import UserError

from nas.studies.record import TrialRecord

from .evaluator import PolicyEvaluator, score_policy
from .policies import Policy, policy_from_dict, save_policy
from .policy_space import GRID_SIDES, suggest_policy
from .settings import TuneSettings

CONSTRAINT = "time_over_budget_ms"  # Optuna constraint: time_ms - budget_ms, feasible when <= 0


def _baseline_trials(defaults: dict, max_points_per_side: int, trials: int,
                     fitting_side: int | None = None) -> list[dict]:
    """The dense grid and a hierarchical policy at the model's default thresholds, then the plain
    grid of ``fitting_side`` points per side (the densest expected to fit the budget), as many as ``trials``."""
    common = {"points_per_side": min(32, max_points_per_side), "box_nms_thresh": 0.7, "crop_n_layers": 0, **defaults}
    out = [{"kind": "grid", **common},
           {"kind": "hierarchical", **common, "sparse_points_per_side": min(8, max_points_per_side),
            "confidence_thresh": 0.5}]
    if fitting_side is not None and fitting_side < common["points_per_side"]:
        out.append({"kind": "grid", **common, "points_per_side": fitting_side})
    return out[:max(1, trials)]


def fitting_grid_side(reference_ms: float, reference_side: int, fixed_ms: float, budget_ms: float,
                      max_points_per_side: int) -> int | None:
    """The densest grid side among the tuning choices (``GRID_SIDES``) whose time, scaled from the
    reference grid's ``reference_ms`` by its prompt count above the ``fixed_ms`` (the encoder),
    fits ``budget_ms``; None when none does."""
    per_prompt = max(0.0, reference_ms - fixed_ms) / reference_side ** 2
    fits = [side for side in GRID_SIDES
            if side <= max_points_per_side and fixed_ms + per_prompt * side * side <= budget_ms]
    return max(fits) if fits else None


def tune_everything(predictor, images: list, settings: TuneSettings, annotations: tuple[dict, dict] | None = None,
                    eval_images: list | None = None, eval_annotations: tuple[dict, dict] | None = None,
                    log=print, progress: bool = False) -> dict:
    """Run (or resume) the ``<model>@<device>@<budget>ms@everything`` study to ``settings.trials`` finished trials.

    The first trials are the dense grid and a hierarchical policy at the model's default thresholds
    (:func:`~.calibrate.model_defaults`), so the front always holds the baseline, then the
    densest plain grid expected to fit the budget (:func:`fitting_grid_side`; only when the
    reference's time is at hand without another timed pass: predicted time, or a ``speedup``); without
    annotations the reference is that dense grid (or ``settings.reference_policy``). Writes the
    best policy within the budget (highest quality; the fastest trial when none fits) to
    ``settings.out`` (or ``settings.out_dir/<study>.yaml``) and returns a summary dict. Without
    ``settings.budget_ms`` the budget is the reference's time here / ``settings.speedup``. With ``eval_images`` the chosen policy is also
    scored there (``best["held_out"]``): agreement with the same reference policy, or AR@K with
    ``eval_annotations``. ``settings.model_meta`` is stored in the policy's meta so that it is not
    used with another model. ``progress`` shows a bar; without it, one line per trial goes to ``log``.
    """
    from supernet.modeling.sam2.model import Sam2

    from .calibrate import model_defaults

    s = settings
    if s.budget_ms is None and not (s.speedup and s.speedup > 0):
        raise UserError("give a time budget per image (--budget-ms) or a speedup over the reference grid (--speedup)")
    defaults, source = model_defaults(s.model_tag, sam2=isinstance(predictor.model, Sam2))
    reference_policy = s.reference_policy
    if reference_policy is None:
        reference_policy = Policy(points_per_side=32, **defaults)
    else:  # the baseline trials use the reference's thresholds
        defaults = {k: getattr(reference_policy, k) for k in defaults}
        source = "the reference policy"
    evaluator = PolicyEvaluator(predictor, images, annotations, reference_policy, s.time_mode, progress=progress)
    s, budget_source, reference_ms = _settle_budget(s, evaluator, reference_policy, log)
    model_defaults_attr = {**defaults, "source": source}
    study = _run_tuning(s, evaluator, defaults, model_defaults_attr, reference_policy, reference_ms, log, progress)
    best = best_trial(study, s.budget_ms)
    policy = policy_from_dict(TrialRecord.read(best).config)
    meta = _policy_meta(s, best, evaluator, budget_source, reference_ms, model_defaults_attr)
    if eval_images:
        held = score_policy(predictor, policy, eval_images, eval_annotations, reference_policy, s.time_mode,
                            cost=evaluator.cost, progress=progress)
        meta["held_out"] = {"images": len(eval_images), "evaluator": "mask_ar" if eval_annotations else "agreement",
                            "quality": held.quality, "time_ms": held.time_ms, "metrics": held.metrics}
    if s.out is not None:
        save_policy(policy, s.out, meta)
    return {"study": s.study_name, "best": meta, "policy": policy, "trials": len(study.trials),
            "out": str(s.out) if s.out else None, "cost_model": evaluator.cost.__dict__ if evaluator.cost else None}


def _settle_budget(s: TuneSettings, evaluator: PolicyEvaluator, reference_policy: Policy,
                   log) -> tuple[TuneSettings, str, float | None]:
    """``(settings with budget_ms and out set, where the budget came from, the reference's ms or None)``.

    Without ``budget_ms`` the budget is the reference policy's time here / ``speedup``; without ``out``
    and with ``out_dir``, the policy is written to ``out_dir/<study>.yaml``."""
    budget_source, reference_ms = "given", None
    if s.budget_ms is None:
        reference_ms = evaluator.evaluate(reference_policy).time_ms  # decoded already: the cache serves it
        s = dataclasses.replace(s, budget_ms=round(reference_ms / s.speedup, 1))
        budget_source = (f"the reference policy's {reference_ms:.1f} ms ({s.time_mode}, median of "
                         f"{len(evaluator.images)} tuning images) / {s.speedup:g}")
        log(f"budget {s.budget_ms} ms/image: {budget_source}")
    if s.out is None and s.out_dir is not None:
        s = dataclasses.replace(s, out=Path(s.out_dir) / f"{s.study_name}.yaml")
    return s, budget_source, reference_ms


def _evaluator_name(evaluator: PolicyEvaluator) -> str:
    return "mask_ar" if evaluator.gt is not None else "agreement"


def _objective(s: TuneSettings, evaluator: PolicyEvaluator, defaults: dict):
    """The study's objective: a suggested policy's ``(quality, ms per image)`` and its trial record."""
    evaluator_name = _evaluator_name(evaluator)

    def objective(trial: optuna.Trial):
        policy = suggest_policy(trial, s.max_points_per_side, s.max_crop_layers, defaults)
        ev = evaluator.evaluate(policy)
        trial.set_constraint(CONSTRAINT, ev.time_ms - s.budget_ms)
        record = TrialRecord(config=policy.to_dict(), quality=ev.quality, predicted_ms=ev.time_ms,
                             metrics=ev.metrics, stats=ev.stats, evaluator=evaluator_name,
                             feasible=ev.time_ms <= s.budget_ms)
        return (ev.quality, ev.time_ms), record

    return objective


def _trial_line(trial: optuna.trial.FrozenTrial) -> str:
    stats = trial.user_attrs["stats"]
    return (f"trial {trial.number}: {trial.params['kind']} pps={trial.params['points_per_side']} "
            f"quality={trial.values[0]:.4f} time={trial.values[1]:.1f} ms "
            f"prompts/img={stats['prompts_requested']:.0f}")


def _queue_baselines(study: optuna.Study, s: TuneSettings, evaluator: PolicyEvaluator, defaults: dict,
                     reference_policy: Policy, reference_ms: float | None) -> None:
    """A new study's first trials (:func:`_baseline_trials`); the densest grid expected to fit only when
    the reference's time is at hand without another timed pass."""
    if study.trials:
        return
    side = None
    if reference_ms is not None or s.time_mode == "predicted":  # predicted: the cache makes it cheap
        ref_ms = reference_ms if reference_ms is not None else evaluator.evaluate(reference_policy).time_ms
        side = fitting_grid_side(ref_ms, reference_policy.points_per_side,
                                 evaluator.cost.encoder_ms if evaluator.cost else 0.0, s.budget_ms,
                                 s.max_points_per_side)
    for params in _baseline_trials(defaults, s.max_points_per_side, s.trials, side):
        study.enqueue_trial(params, skip_if_exists=True)


def _run_tuning(s: TuneSettings, evaluator: PolicyEvaluator, defaults: dict, model_defaults_attr: dict,
                reference_policy: Policy, reference_ms: float | None, log, progress: bool) -> optuna.Study:
    """Open (or resume) the policy study, queue its baselines and run it to ``s.trials`` finished trials."""
    from nas.search.samplers import make_sampler
    from nas.studies import driver
    from nas.studies.tracking import SearchTracker

    evaluator_name = _evaluator_name(evaluator)
    plan = driver.StudyPlan(
        name=s.study_name, sampler=make_sampler(s.sampler, s.seed), trials=s.trials, storage=s.storage,
        label="tuning",
        attrs={"model": s.model_tag, **(s.model_meta or {}), "device": s.device, "budget_ms": s.budget_ms,
               "evaluator": evaluator_name, "time_mode": s.time_mode, "images": len(evaluator.images),
               "model_defaults": model_defaults_attr})
    study = driver.open_study(plan)
    _queue_baselines(study, s, evaluator, defaults, reference_policy, reference_ms)
    tracker = SearchTracker(s.study_name, s.tracking_uri, run_name=f"tune-{s.sampler}-seed{s.seed}",
                            params={"model": s.model_tag, "device": s.device, "budget_ms": s.budget_ms,
                                    "sampler": s.sampler, "seed": s.seed, "trials": s.trials,
                                    "time_mode": s.time_mode, "evaluator": evaluator_name})
    with tracker:
        driver.run_study(study, plan, _objective(s, evaluator, defaults), progress=progress, tracker=tracker,
                         log=log, postfix=lambda t: f"last {t.values[0]:.3f} @ {t.values[1]:.0f} ms",
                         log_line=_trial_line)
    return study


def _policy_meta(s: TuneSettings, best: optuna.trial.FrozenTrial, evaluator: PolicyEvaluator, budget_source: str,
                 reference_ms: float | None, model_defaults_attr: dict) -> dict:
    """The chosen trial's provenance, written beside its policy."""
    record = TrialRecord.read(best)
    meta = {"study": s.study_name, "trial": best.number, "model": s.model_tag, **(s.model_meta or {}),
            "device": s.device, "budget_ms": s.budget_ms, "budget_source": budget_source,
            "reference_ms": reference_ms, "quality": best.values[0], "time_ms": best.values[1],
            "time_mode": s.time_mode, "evaluator": record.evaluator, "metrics": record.metrics,
            "images": len(evaluator.images), "within_budget": best.values[1] <= s.budget_ms,
            "model_defaults": model_defaults_attr}
    if evaluator.reference_policy is not None:
        meta["reference_policy"] = evaluator.reference_policy.to_dict()
    return meta


def best_trial(study: optuna.Study, budget_ms: float) -> optuna.trial.FrozenTrial:
    """Highest quality within the budget (faster wins ties); the fastest trial when none fits."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise UserError(f"study {study.study_name}: no completed trials")
    fits = [t for t in done if t.values[1] <= budget_ms]
    if fits:
        return max(fits, key=lambda t: (t.values[0], -t.values[1]))
    return min(done, key=lambda t: t.values[1])
