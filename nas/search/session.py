"""A search as ``samnas search`` runs it: plan it, run it, and gather what to report.

- :func:`plan_search`: the space, the device's latency predictor (profiled first when the demo
  allows), its drift probe, the budget (checked against the smallest subnet), the model and the
  quality evaluator, and the :class:`~nas.search.run.SearchSettings` with the study's attributes;
- :func:`run_search_session`: the study (:func:`~nas.search.run.run_search`) inside its MLflow run,
  the front measured on this machine when it is the profiled device (:mod:`nas.search.verify`),
  and the front's plot;
- :class:`SearchOutcome`: what the command prints.

The command (``nas.commands.search``) only turns options into a :class:`SearchRequest` and prints
the outcome. Notes about defaults (no ``--budget-ms``, no images, profiling first) are printed as
the plan is made, since they explain the wait that follows.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna

from infra.errors import UserError
from infra.fileio import tracking_uri
from infra.wording import plural
from search_spaces.space import SearchSpace

from nas.search.pareto import TrialPoint, load_points, pareto_front, plot_front, render
from nas.search.run import SearchSettings, run_search
from nas.search.samplers import DEFAULT_SAMPLER
from nas.studies.study import default_storage, predictor_line, study_name

DEMO_THREADS = 1  # threads of the search's automatic first profile (README: 1 thread repeats on a small VM)
DEFAULT_BUDGET_SHARE = 0.7  # without --budget-ms: this share of the full model's predicted latency


@dataclass(frozen=True)
class SearchRequest:
    """What ``samnas search`` was asked for (its options, defaults as the command's).

    ``budget_ms`` None: :data:`DEFAULT_BUDGET_SHARE` of the full model's predicted latency.
    ``checkpoint`` None: the packaged reference weights; ``images`` None: generated images;
    ``annotations``: a COCO JSON, which makes quality ground-truth mIoU instead of fidelity.
    ``storage`` None: ``<results>/studies.db``; ``tracking_uri`` None: ``<results>/mlruns``.
    """

    space: str = "sam_micro"
    device: str = "cpu-torch"
    budget_ms: float | None = None
    trials: int = 40
    sampler: str = DEFAULT_SAMPLER
    seed: int = 0
    checkpoint: str | None = None
    images: str | None = None
    annotations: str | None = None
    max_images: int = 8
    storage: str | None = None
    results: Path = Path("results")
    tracking_uri: str | None = None
    auto_profile: bool = True
    recalibrate: bool = False
    verify: bool = True

    @property
    def is_demo(self) -> bool:
        """The packaged model on generated images: the demo, whose report ends with what its quality means."""
        return self.checkpoint is None and self.images is None


@dataclass
class SearchPlan:
    """Everything a search needs, made before its first trial."""

    space: SearchSpace
    latency: object           # the device's predictor (recalibrated when asked)
    facts: dict               # what to say about the predictor (:func:`predictor_facts`)
    warning: str | None       # the predictor's accuracy warning, if any
    model: object             # the supernet (Sam)
    evaluator: object         # the quality evaluator
    quality: str              # what "quality" means here, one line
    settings: SearchSettings  # budget, storage and the study's attributes


@dataclass
class SearchOutcome:
    """A finished (or resumed and finished) search, as the command reports it."""

    plan: SearchPlan
    study: optuna.Study
    points: list[TrialPoint]  # this study's completed trials
    front: list[TrialPoint]   # its feasible front, fastest first
    check: object | None      # the front measured on this machine (:class:`nas.search.verify.FrontCheck`)
    plot: Path
    tracking_uri: str

    @property
    def failed(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))


def load_space_model(checkpoint: str | None, space: SearchSpace):
    """``(model, checkpoint path or None)`` for a search or export on ``space``."""
    from supernet.model_source import load_model

    model, source = load_model(checkpoint, model_type=None if checkpoint else space.model_type, log=print)
    if model.arch.name != space.model_type:
        raise UserError(f"--checkpoint {checkpoint} is a {model.arch.name} model, but space {space.name} "
                        f"is for {space.model_type}")
    return model, source.path


def _load_images(folder: str | None, max_images: int, size: int):
    from scenes.images import generated_images, list_images

    if folder is None:
        print(f"NOTE: no --images: using {max_images} generated synthetic images")
        return generated_images(max_images, size=size, seed=0)
    list_images(folder)  # a clear error now for a missing or empty folder
    return folder


def _latency_for(device: str, space: SearchSpace, auto_profile: bool, root: Path):
    """The ``device`` predictor for ``space`` from the latency folder ``root``, profiled first when allowed."""
    from nas.latency import load_predictor, profile_and_fit_quick

    try:
        return load_predictor(device, space=space.name, root=root)
    except UserError:
        if not auto_profile or not device.startswith("cpu-torch"):
            raise
        print(f"NOTE: no latency predictor for {device} and {space.name} yet: profiling this machine first, "
              f"with {DEMO_THREADS} thread (on a small or busy machine 1 thread repeats far better than 2; "
              f"see README). Deploying with more threads? Profile that count: samnas latency profile "
              f"--space {space.name} --device {device}@t4 --blocks --threads 4", flush=True)
        return profile_and_fit_quick(space, device, root=root, threads=DEMO_THREADS)


def predictor_facts(latency, root=None) -> dict:
    """What to say about a latency predictor next to its numbers: CV error, threads, where it was measured
    (its fingerprint, read from the latency folder ``root``)."""
    from nas.latency.store import DeviceStore

    part = latency.report.part("encoder")
    fp = DeviceStore(latency.device, root).fingerprint() or {}
    return {"device": latency.device, "space": latency.space, "method": part.method,
            "cv_mape_pct": round(float(part.mape_pct), 2), "within_10_pct": round(float(part.within_10_pct), 1),
            "subnets": part.networks, "threads": fp.get("threads"), "cpu": fp.get("cpu")}


def quality_definition(evaluator, images: str | None, annotations: str | None) -> str:
    """What "quality" means for this search: evaluator, metric and images, in one line."""
    if evaluator.name == "coco":
        n = len(getattr(evaluator, "items", ()))
        return (f"coco: mean of box- and point-prompt mask IoU against the ground truth of {annotations} "
                f"({plural(n, 'annotated image')} from {images})")
    n = len(getattr(evaluator, "references", ()))
    where = f"from {images}" if images else "generated synthetic images"
    return (f"fidelity: mean mask IoU of the subnet's point-prompt masks against the full model's, on "
            f"{plural(n, 'image')} ({where}); 1.0 = the full model's masks")


def _check_budget(budget: float, latency, space: SearchSpace, device: str) -> None:
    smallest = float(latency.predict_ms(space.smallest()))
    if budget < smallest:
        raise UserError(f"--budget-ms {budget:g}: below the smallest {space.name} subnet's predicted latency on "
                        f"{device}, {smallest:.2f} ms; no subnet can meet it (give --budget-ms "
                        f"{math.ceil(smallest * 10) / 10:g} or more)")


def probe_latency(predictor, recalibrate: bool, root=None):
    """Run the drift probe for ``predictor`` (printing its line and any warning); ``(predictor, record)``.

    With ``recalibrate`` and a factor, the predictor returned scales its predictions by it.
    ``record`` is the probe's JSON-ready result plus ``recalibrated``, for study attributes and cards.
    """
    from nas.latency.probe import run_probe, warn_once

    result = run_probe(predictor, root)
    print(result.summary())
    warn_once(result, root)
    if recalibrate and result.factor is not None:
        predictor = predictor.recalibrated(result.factor)
        print(f"NOTE: --recalibrate: predicted latencies are scaled by {result.factor:.3f}")
    return predictor, {**result.as_dict(), "recalibrated": predictor.speed_factor != 1.0}


def _make_evaluator(request: SearchRequest, model, space: SearchSpace):
    from nas.quality import make_evaluator

    if request.annotations:  # the COCO evaluator picks annotated images from the folder itself
        return make_evaluator("coco", model, images=request.images, annotations=request.annotations,
                              max_images=request.max_images)
    images = _load_images(request.images, request.max_images, space.resolutions[0])
    return make_evaluator("fidelity", model, images=images, max_images=request.max_images)


def plan_search(request: SearchRequest) -> SearchPlan:
    """Prepare ``request``'s search, cheapest checks first: a bad device name, a space the device cannot
    run or a budget no subnet meets fails before the model is loaded. Prints the predictor's line, its
    warning (stderr) and the drift probe's line."""
    from nas.latency.commands import predictor_warning
    from nas.latency.profile import check_space_on_device

    space = SearchSpace.load(request.space)
    if request.budget_ms is not None:
        study_name(space.name, request.device, request.budget_ms)  # a bad device name fails before any work
    check_space_on_device(space, request.device)
    latency_root = request.results / "latency"
    latency = _latency_for(request.device, space, request.auto_profile, latency_root)
    facts = predictor_facts(latency, latency_root)
    print(predictor_line(facts))
    warning = predictor_warning(facts["cv_mape_pct"], facts.get("threads"), request.device, space.name)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    latency, probe = probe_latency(latency, request.recalibrate, latency_root)
    budget = request.budget_ms
    if budget is None:
        budget = round(DEFAULT_BUDGET_SHARE * latency.predict_ms(space.largest()), 1)
        print(f"NOTE: no --budget-ms: using {DEFAULT_BUDGET_SHARE:.0%} of the full model's predicted latency, "
              f"{budget:g} ms")
    _check_budget(budget, latency, space, request.device)
    model, checkpoint = load_space_model(request.checkpoint, space)
    evaluator = _make_evaluator(request, model, space)
    quality = quality_definition(evaluator, request.images, request.annotations)
    settings = SearchSettings(
        space=space.name, device=request.device, budget_ms=budget, trials=request.trials, sampler=request.sampler,
        seed=request.seed, storage=request.storage or default_storage(request.results, create=True),
        extra_attrs={"checkpoint": checkpoint, "space_definition": space.to_dict(), "evaluator": evaluator.name,
                     "quality_definition": quality, "predictor": facts, "latency_probe": probe})
    return SearchPlan(space, latency, facts, warning, model, evaluator, quality, settings)


def _verify_front(study, space: SearchSpace, device: str, threads: int | None, root: Path):
    """:func:`nas.search.verify.verify_front` when this machine is ``device`` as profiled (latency folder ``root``);
    else a note and None."""
    from nas.latency.profile import device_problem
    from nas.search.verify import verify_front

    problem = device_problem(device, threads, root)
    if problem:
        print(f"NOTE: the front is not measured here: {problem}")
        return None
    print("measuring the front subnets on this machine (--no-verify skips this)", flush=True)
    return verify_front(study, space, device, threads, progress=True, root=root)


def run_search_session(request: SearchRequest) -> SearchOutcome:
    """Plan and run ``request``'s search (resuming its study if stored), measure its front here when this
    machine is the profiled device, and plot the front to ``<results>/scratch/<study>.png``; each trial
    and the front go to the study's MLflow run."""
    from nas.studies.tracking import SearchTracker

    plan = plan_search(request)
    s, facts = plan.settings, plan.facts
    tracker = SearchTracker(s.study_name, tracking_uri(request.tracking_uri, request.results),
                            run_name=f"search-{s.sampler}-seed{s.seed}",
                            params={"space": s.space, "device": s.device, "budget_ms": s.budget_ms,
                                    "sampler": s.sampler, "seed": s.seed, "trials": s.trials,
                                    "checkpoint": s.extra_attrs["checkpoint"], "evaluator": plan.evaluator.name,
                                    "predictor_cv_mape_pct": facts["cv_mape_pct"],
                                    "predictor_threads": facts.get("threads")})
    with tracker:
        study = run_search(s, plan.model, plan.space, plan.evaluator, plan.latency, tracker=tracker)
        check = None
        if request.verify:
            check = _verify_front(study, plan.space, s.device, facts.get("threads"), request.results / "latency")
        points = [p for p in load_points(s.storage, device=s.device, space=s.space) if p.study == study.study_name]
        front = pareto_front(points)
        plot = request.results / "scratch" / f"{study.study_name.replace('@', '_')}.png"
        plot_front(points, front, plot, title=study.study_name, quality_label=plan.evaluator.name)
        tracker.log_front(render(front, "json"), plot)
    return SearchOutcome(plan, study, points, front, check, plot, tracker.uri)
