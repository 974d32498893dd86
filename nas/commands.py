"""``samnas search``, ``samnas pareto`` and ``samnas export``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from search_spaces.config import SubnetConfig, load_config
from search_spaces.space import SearchSpace
from infra.cliargs import positive_float, positive_int
from infra.errors import UserError
from infra.wording import plural

from infra.fileio import results_origin, tracking_uri
from supernet.elastic.precision import PRECISION_KINDS

from .pareto import FORMATS, export_hint, load_points, measured_ms_of, pareto_front, plot_front, render, render_fronts
from .record import TrialRecord
from .study import DEFAULT_SAMPLER, SAMPLERS, default_storage, open_storage, predictor_line, study_name

SEARCH_EXAMPLES = """examples:
  samnas search                                   # demo: sam_micro, built-in weights, generated images
  samnas search --trials 80 --budget-ms 4 --sampler tpe --seed 1
  samnas search --space sam_vit_b --device cpu-torch --budget-ms 4000 \\
      --checkpoint vit_b_ranked.pt --images photos/ --trials 200
  samnas search --space sam_vit_b --device cuda-torch --budget-ms 25 --checkpoint ranked.pt \\
      --images val2017/ --annotations instances_val2017.json --storage postgresql://user@db/samnas

With no latency predictor for a cpu-torch device yet, the search first profiles this machine
with 1 thread (on a small or busy machine 1 thread repeats far better than 2; see README).
After the search, when this machine is the profiled device, the front subnets are timed here
and any that run over the budget leave the front (--no-verify skips it).
"""
PARETO_EXAMPLES = """examples:
  samnas pareto                                   # every front in the store, one per study
  samnas pareto --device cpu-torch --plot front.png
  samnas pareto --study 'sam_micro@cpu-torch@30ms' --format json > front.json
  samnas pareto --device cpu-torch --space sam_vit_b --budget-ms 3000 --min-quality 0.8 --format csv
  samnas pareto --results /data/samnas-results
"""
EXPORT_EXAMPLES = """examples:
  samnas export --study 'sam_micro@cpu-torch@30ms' --trial 17 --out my_subnet/   # after search --budget-ms 30
  samnas export --config subnet.yaml --checkpoint vit_b_ranked.pt --device cpu-torch --out my_subnet/
  samnas export --config front.json --out my_subnet/   # a config, subnet.json, card.json or pareto row

Run the exported subnet without PyTorch (ONNX Runtime or OpenVINO):
  from deploy import Runner
  masks, iou, low_res = Runner.from_folder("my_subnet/").predict("photo.jpg", points=[[320, 240]], labels=[1])

Load the exported subnet in PyTorch:
  from supernet.elastic.extract import load_subnet
  model = load_subnet("my_subnet/")              # reads subnet.pt + subnet.json
  masks, scores, logits = SamPredictor(model).predict(...)   # supernet.modeling.predictor.SamPredictor
"""


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///<results>/studies.db)")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("search", description="Multi-objective Optuna search (quality vs. predicted latency) over a search "
                       "space, constrained by --budget-ms on --device. Resumes a stopped study of the same name.",
                       epilog=SEARCH_EXAMPLES, formatter_class=fmt)
    p.add_argument("--space", default="sam_micro", help="search space name or .yaml (default: sam_micro)")
    p.add_argument("--device", default="cpu-torch", help="latency device (default: cpu-torch)")
    p.add_argument("--budget-ms", type=positive_float, default=None,
                   help="latency budget in ms (default: 70%% of the full model's predicted latency); below the "
                   "smallest subnet's predicted latency it is an error")
    p.add_argument("--checkpoint", help="ranked supernet checkpoint (default: packaged reference weights)")
    p.add_argument("--images", help="image folder for the quality evaluator (default: generated images)")
    p.add_argument("--annotations", help="COCO instances JSON: quality becomes ground-truth mIoU instead of "
                   "fidelity to the full model")
    p.add_argument("--max-images", type=positive_int, default=8, help="images used per evaluation (default: 8)")
    p.add_argument("--trials", type=positive_int, default=40,
                   help="finished trials the study should hold (default: 40)")
    p.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                   help=f"Optuna sampler (default: {DEFAULT_SAMPLER}, the best measured in results/search.md; "
                   "surrogate = GP quality model + expected hypervolume improvement, nsga2-seeded = NSGA-II whose "
                   "first generation is spread over the latency range)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: <results>/mlruns)")
    p.add_argument("--no-auto-profile", action="store_true",
                   help="fail instead of profiling this machine when the device has no latency predictor")
    p.add_argument("--recalibrate", action="store_true",
                   help="scale predicted latency by the drift probe's speed factor (the device's speed now against "
                   "profiling time; always measured, warned about and recorded in the study). Off by default: a "
                   "study's trials should share one scale, and a budget is usually meant for the device as profiled")
    p.add_argument("--no-verify", action="store_true",
                   help="skip measuring the front after the search. By default, when this machine is the device the "
                   "predictor was profiled on, every front subnet is timed here and any over --budget-ms when measured "
                   "leaves the front (stored in the study; `samnas pareto` shows the measured ms)")
    _add_storage(p)
    p.set_defaults(func=run_search_command)

    p = sub.add_parser("pareto", description="Non-dominated feasible subnets of the stored studies, one front per study. "
                       "With no options: every study in the store.",
                       epilog=PARETO_EXAMPLES, formatter_class=fmt)
    p.add_argument("--study", help="only this study (name as printed by `samnas search`)")
    p.add_argument("--device", help="only studies of this device (e.g. cpu-torch)")
    p.add_argument("--space", help="only studies of this search space (e.g. sam_micro)")
    p.add_argument("--budget-ms", type=positive_float,
                   help="only subnets whose predicted latency is at most this many ms (a tighter budget than "
                   "the study's); the front is then the best among those")
    p.add_argument("--min-quality", type=float, help="only subnets with at least this quality (0-1)")
    p.add_argument("--precision", choices=PRECISION_KINDS,
                   help="only subnets of this precision: fp32 (no int8 block), int8 (every kept block int8) or "
                        "mixed; the front is then the best among those alone")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default) for people; json and csv carry each subnet's config as an object")
    p.add_argument("--plot", help="also write a PNG of all trials, the fronts and the budget lines")
    _add_storage(p)
    p.set_defaults(func=run_pareto_command)

    p = sub.add_parser("export", description="Write subnet.pt + subnet.json (loadable without the supernet), "
                       "image_encoder.onnx and prompt_decoder.onnx (both checked against PyTorch), OpenVINO IR of both "
                       "for an OpenVINO --device, and card.json/card.md.",
                       epilog=EXPORT_EXAMPLES, formatter_class=fmt)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="study name (see `samnas pareto`)")
    src.add_argument("--config", help="subnet config instead of a study trial: YAML/JSON config, subnet.json, "
                     "card.json or a `pareto --format json` row")
    p.add_argument("--trial", type=int, help="trial number within --study")
    p.add_argument("--checkpoint", help="supernet checkpoint (default: the one the study was run with)")
    p.add_argument("--device", help="device whose predictor gives predicted_ms for --config (default with --study: "
                   "the study's); its drift probe runs, and the card compares raw and recalibrated predictions with "
                   "the latency measured here at the device's thread count")
    p.add_argument("--out", help="output folder (default: <results>/exports/<study>-trial<N>)")
    p.add_argument("--no-runtimes", action="store_true",
                   help="skip timing the encoder on every runtime and precision of this CPU for the card "
                        "(saves a compile per runtime: minutes for ViT-B/L/H)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed runs for the measured latency (default: 5)")
    _add_storage(p)
    p.set_defaults(func=run_export_command)


# ---------------------------------------------------------------------------- search

def _load_model(checkpoint: str | None, space: SearchSpace):
    """``(model, checkpoint path or None)`` for a search or export on ``space``."""
    from nas.models import load_model

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


DEMO_THREADS = 1  # threads of the search's automatic first profile (README: 1 thread repeats on a small VM)


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
    import math

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


def _verify_front(study, space: SearchSpace, device: str, threads: int | None, root: Path):
    """:func:`nas.verify.verify_front` when this machine is ``device`` as profiled (latency folder ``root``);
    else a note and None."""
    from nas.latency.profile import device_problem
    from .verify import verify_front

    problem = device_problem(device, threads, root)
    if problem:
        print(f"NOTE: the front is not measured here: {problem}")
        return None
    print("measuring the front subnets on this machine (--no-verify skips this)", flush=True)
    return verify_front(study, space, device, threads, progress=True, root=root)


def run_search_command(args: argparse.Namespace) -> int:
    from nas.latency.commands import predictor_warning
    from nas.latency.profile import check_space_on_device

    from .cost import cost_line
    from .quality import make_evaluator
    from .driver import HEARTBEAT_GRACE_S, other_hosts_running
    from .samplers.stall import outlook
    from .search import SearchSettings, run_search
    from .tracking import SearchTracker

    space = SearchSpace.load(args.space)
    if args.budget_ms is not None:
        study_name(space.name, args.device, args.budget_ms)  # a bad device name fails before any work
    check_space_on_device(space, args.device)
    latency_root = args.results / "latency"
    latency = _latency_for(args.device, space, not args.no_auto_profile, latency_root)
    facts = predictor_facts(latency, latency_root)
    print(predictor_line(facts))
    warning = predictor_warning(facts["cv_mape_pct"], facts.get("threads"), args.device, space.name)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    latency, probe = probe_latency(latency, args.recalibrate, latency_root)
    budget = args.budget_ms
    if budget is None:
        budget = round(0.7 * latency.predict_ms(space.largest()), 1)
        print(f"NOTE: no --budget-ms: using 70% of the full model's predicted latency, {budget:g} ms")
    _check_budget(budget, latency, space, args.device)
    model, checkpoint = _load_model(args.checkpoint, space)
    if args.annotations:  # the COCO evaluator picks annotated images from the folder itself
        evaluator = make_evaluator("coco", model, images=args.images, annotations=args.annotations,
                                   max_images=args.max_images)
    else:
        images = _load_images(args.images, args.max_images, space.resolutions[0])
        evaluator = make_evaluator("fidelity", model, images=images, max_images=args.max_images)
    quality = quality_definition(evaluator, args.images, args.annotations)
    storage = args.storage or default_storage(args.results, create=True)
    settings = SearchSettings(space=space.name, device=args.device, budget_ms=budget, trials=args.trials,
                              sampler=args.sampler, seed=args.seed, storage=storage,
                              extra_attrs={"checkpoint": checkpoint, "space_definition": space.to_dict(),
                                           "evaluator": evaluator.name,
                                           "quality_definition": quality, "predictor": facts,
                                           "latency_probe": probe})
    tracker = SearchTracker(settings.study_name, tracking_uri(args.tracking_uri, args.results),
                            run_name=f"search-{args.sampler}-seed{args.seed}",
                            params={"space": space.name, "device": args.device, "budget_ms": budget,
                                    "sampler": args.sampler, "seed": args.seed, "trials": args.trials,
                                    "checkpoint": checkpoint, "evaluator": evaluator.name,
                                    "predictor_cv_mape_pct": facts["cv_mape_pct"],
                                    "predictor_threads": facts.get("threads")})

    with tracker:
        study = run_search(settings, model, space, evaluator, latency, tracker=tracker)
        check = None if args.no_verify else _verify_front(study, space, args.device, facts.get("threads"), latency_root)
        points = [p for p in load_points(storage, device=args.device, space=space.name) if p.study == study.study_name]
        front = pareto_front(points)
        plot = args.results / "scratch" / f"{study.study_name.replace('@', '_')}.png"
        plot_front(points, front, plot, title=study.study_name, quality_label=evaluator.name)
        tracker.log_front(render(front, "json"), plot)
    failed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)))
    print()
    if evaluator.skipped:
        print(f"skipped {len(evaluator.skipped)} unreadable items: "
              + ", ".join(name for name, _ in evaluator.skipped[:5]) + (" ..." if len(evaluator.skipped) > 5 else ""))
    print(render(front, "table"), end="")
    print(f"\nstudy {study.study_name}: {len(points)} completed trials, {failed} failed, "
          f"{len(front)} on the front")
    if check is not None:
        print(check.summary())
    print(f"quality = {quality}")
    print(cost_line(study.get_trials(deepcopy=False),
                    len(getattr(evaluator, "references", None) or getattr(evaluator, "items", ()))))
    print(outlook(study, budget, study.sampler, args.sampler, measured_ms_of(study)).line())  # more trials?
    print(predictor_line(facts))
    if warning:
        print(warning, file=sys.stderr)
    others = other_hosts_running(study)
    if others:
        print("still RUNNING on other hosts: " + ", ".join(f"trial {n} ({host})" for n, host in others)
              + f"; Optuna fails each {HEARTBEAT_GRACE_S} s after its worker's last heartbeat if that worker is gone")
    print(f"stored in {storage}; MLflow runs in {tracker.uri}; plot {plot}")
    if not front:
        fastest = min((p.predicted_ms for p in points), default=None)
        hint = (f"the fastest completed trial was predicted at {fastest:.2f} ms: --budget-ms {fastest:.2f} or more "
                "would have been feasible" if fastest is not None else "no trial completed")
        print(f"samnas: error: no trial met the budget of {budget:g} ms; {hint}", file=sys.stderr)
        return 1
    print(export_hint(study.study_name, front))
    if args.checkpoint is None and args.images is None:
        print(demo_epilogue(front[-1].quality))
    return 0


def demo_epilogue(best_quality: float) -> str:
    """The demo's last lines (a search on the packaged model and generated images): what its quality means,
    and the way on to a real model."""
    return (f"what the demo's quality means: {best_quality:.2f} = the best subnet's masks overlap the full packaged "
            f"model's own masks by {best_quality:.0%} IoU on average, on generated shapes (agreement with the full "
            "model, not accuracy on photos). The packaged sam_micro is a tiny stand-in trained on CPU, not SAM: "
            "its masks are blobs (box mIoU about 0.4 on COCO).\n"
            "the way on: export the trial above (a standalone subnet, ONNX encoder and card); for a real model, "
            "samnas rank --checkpoint sam_vit_b_01ec64.pth --model-type vit_b --images photos/ --out ranked.pt, "
            "samnas train-supernet, then samnas search --checkpoint ... --images photos/ "
            "(README: Running on your own checkpoint)")


# ---------------------------------------------------------------------------- pareto

def _choose(kind: str, value: str | None, valid: list[str], where: str) -> None:
    if value is not None and value not in valid:
        raise UserError(f"--{kind} {value}: no such {kind} in {where}; stored: {', '.join(valid) or 'none'}")


def run_pareto_command(args: argparse.Namespace) -> int:
    from .pareto import load_studies

    where = args.storage or f"{default_storage(args.results)} (results folder {results_origin(args.results)})"
    points, studies = load_studies(args.storage, results=args.results)
    _choose("study", args.study, sorted(studies), where)
    _choose("device", args.device, sorted({s["device"] for s in studies.values()}), where)
    _choose("space", args.space, sorted({s["space"] for s in studies.values()}), where)
    chosen = {name: info for name, info in studies.items()
              if (args.study is None or name == args.study) and (args.device is None or info["device"] == args.device)
              and (args.space is None or info["space"] == args.space)}
    points = [p for p in points if p.study in chosen]
    if not points:
        picked = ", ".join(f"--{k} {v}" for k, v in (("study", args.study), ("device", args.device),
                                                        ("space", args.space)) if v)
        raise UserError(f"no completed trials{' for ' + picked if picked else ''} in {where} "
                        f"(studies there: {', '.join(sorted(studies)) or 'none'}): run `samnas search` first")
    fronts = {name: pareto_front([p for p in points if p.study == name], args.budget_ms, args.min_quality,
                                 args.precision)
              for name in sorted(chosen)}
    print(render_fronts(fronts, chosen, args.format), end="")
    if args.plot:
        every = [p for f in fronts.values() for p in f]
        label = ", ".join(sorted({str(i.get("evaluator") or "?") for i in chosen.values()}))
        plot_front(points, pareto_front(every, precision=args.precision), args.plot, budget_ms=args.budget_ms,
                   title=", ".join(sorted(chosen)) if len(chosen) <= 2 else f"{len(chosen)} studies",
                   quality_label=label)
        print(f"plot written to {args.plot}", flush=True)
    return 0


# ---------------------------------------------------------------------------- export

def _trial_config(storage: str | None, study_name: str, number: int | None,
                  results: Path) -> tuple[SubnetConfig, dict, optuna.Study]:
    """Trial ``number``'s config, its facts for the card, and its study (``storage`` None: the results
    folder's studies.db)."""
    if number is None:
        raise UserError("--trial is required with --study (see `samnas pareto --study NAME` for the front's trials)")
    store = open_storage(storage, create=False, results=results)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        raise UserError(f"--study {study_name}: no such study in {storage or default_storage(results)}; "
                        f"stored: {', '.join(sorted(names)) or 'none'}") from None
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not trials or trials[0].state != optuna.trial.TrialState.COMPLETE:
        done = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
        shown = ", ".join(map(str, done[:20])) + (" ..." if len(done) > 20 else "")
        raise UserError(f"--trial {number}: no completed trial with that number in study {study_name}; "
                        f"completed: {shown or 'none'}")
    record = TrialRecord.read(trials[0])
    info = {"study": study_name, "trial": number, "quality": record.quality,
            "evaluator": record.evaluator, "metrics": record.metrics,
            "quality_definition": study.user_attrs.get("quality_definition"),
            "predictor": study.user_attrs.get("predictor"),
            "predicted_ms": record.predicted_ms, "predicted_raw_ms": record.predicted_raw_ms,
            "device": study.user_attrs.get("device")}
    return record.config, info, study


def _space_of(config: SubnetConfig, study: optuna.Study | None) -> SearchSpace:
    """The space a config belongs to: the one its study was searched in (a study records the whole
    space, so one searched from a space file exports without that file), else the named space."""
    definition = study.user_attrs.get("space_definition") if study is not None else None
    if definition:
        return SearchSpace.from_dict(definition, source=f"study {study.study_name}")
    return SearchSpace.load(config.space or "sam_micro")


def onnx_check_text(card: dict) -> str:
    """How the written ONNX encoder was checked: against PyTorch fp32, or for an int8 encoder against
    the subnet quantized in PyTorch (the tolerance's measure) and against fp32 (what int8 costs)."""
    check = card.get("onnx_int8_check")
    if not check:
        return f"|ORT-torch| {card['onnx_max_abs_diff']:.1e}"
    q, f = check["vs_torch_int8"], check["vs_torch_fp32"]
    return (f"int8: vs PyTorch int8 cosine {q['cosine']:.5f}, relative L2 {q['rel_l2']:.4f}; "
            f"vs fp32 cosine {f['cosine']:.5f}")


def run_export_command(args: argparse.Namespace) -> int:
    import torch

    from infra.threads import torch_threads

    from .export import export_subnet

    if args.study:
        config, info, study = _trial_config(args.storage, args.study, args.trial, args.results)
        checkpoint = args.checkpoint or study.user_attrs.get("checkpoint")
        default_out = args.results / "exports" / f"{args.study.replace('@', '_')}-trial{args.trial}"
    else:
        config, info, checkpoint = load_config(args.config), {}, args.checkpoint
        default_out = args.results / "exports" / Path(args.config).stem
    space = _space_of(config, study if args.study else None)
    config = space.validate(config, source=args.config or f"trial {args.trial}")
    model, checkpoint = _load_model(checkpoint, space)
    device = args.device or info.get("device")
    latency_root = args.results / "latency"
    latency_check = None
    if device:
        from nas.latency import load_predictor

        try:
            predictor = load_predictor(device, space=space.name, root=latency_root)
        except UserError as exc:
            if args.device:
                raise
            print(f"NOTE: no drift probe or recalibration on the card: {exc}")
        else:
            _, probe = probe_latency(predictor, recalibrate=False, root=latency_root)
            info["device"] = device
            if info.get("predicted_raw_ms") is None:  # a study from before predicted_raw_ms was recorded
                info["predicted_raw_ms"] = info.get("predicted_ms") or predictor.predict_ms(config, raw=True)
            if info.get("predicted_ms") is None:
                info["predicted_ms"] = info["predicted_raw_ms"]
            info.setdefault("predictor", predictor_facts(predictor, latency_root))
            latency_check = {"probe": probe, "stated_error_pct": probe["stated_error_pct"],
                             "threads": predictor_threads(device, latency_root)}
    threads = (info.get("predictor") or {}).get("threads")
    if threads and threads != torch.get_num_threads():
        print(f"NOTE: measuring with {plural(threads, 'thread')}, as the {info['device']} "
              f"predictor was profiled (this process had {torch.get_num_threads()})")
    out = Path(args.out) if args.out else default_out
    with torch_threads(threads):  # the process's own count again afterwards
        card = export_subnet(model, config, out, source_checkpoint=checkpoint, trial_info=info,
                             repeats=args.repeats, latency_check=latency_check,
                             measure_runtimes=not args.no_runtimes)
    pred = card["predicted_ms"]
    print(f"exported to {out}: {', '.join(card['files'])} (encoder: {onnx_check_text(card)}; prompt decoder: "
          f"masks agree with PyTorch on {100 * card['decoder_check']['mask_agreement']:.3f}% of pixels)")
    print(f"latency: predicted {pred:.2f} ms" if pred is not None else "latency: no prediction", end="")
    print(f", measured here {card['measured_ms']['torch']:.2f} ms (torch), {card['measured_ms']['onnxruntime']:.2f} ms (ORT)")
    if card.get("runtimes"):
        best = card["runtimes"]["rows"][0]
        print(f"fastest runtime here: {best['runtime']}, {best['median_ms']:.2f} ms ({best['speedup']:.2f}x PyTorch fp32, "
              f"cosine {best['cosine']:.5f}); every runtime is in card.md")
    if info.get("predictor"):
        print(predictor_line(info["predictor"]))
    check = card.get("latency_check")
    if check and check.get("gap_pct") is not None:
        line = (f"latency check on {card['device']}: predicted {check['predicted_raw_ms']:.2f} ms raw, "
                f"{check['predicted_recalibrated_ms']:.2f} ms recalibrated (probe factor "
                f"{check['probe_factor']:.3f}), measured {check['measured_ms']:.2f} ms ({check['backend']}, "
                f"{plural(check['threads'], 'thread')}): gap {check['gap_pct']:+.1f}%")
        print(line)
        if check["flag"]:
            import sys

            print(f"warning: the gap is beyond the predictor's stated error (CV MAPE {check['stated_error_pct']:.1f}%)",
                  file=sys.stderr)
    return 0


def predictor_threads(device: str, root=None) -> int | None:
    """The thread count ``device`` was profiled with (its fingerprint in the latency folder ``root``), or None."""
    from nas.latency.store import DeviceStore

    return (DeviceStore(device, root).fingerprint() or {}).get("threads")
