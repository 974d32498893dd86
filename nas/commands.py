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

from infra.fileio import results_origin, results_root
from supernet.elastic.precision import PRECISION_KINDS

from .pareto import FORMATS, load_points, pareto_front, plot_front, render, render_fronts
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
  samnas pareto --study 'sam_micro@cpu-torch@3.5ms' --format json > front.json
  samnas pareto --device cpu-torch --space sam_vit_b --budget-ms 3000 --min-quality 0.8 --format csv
  samnas pareto --results /data/samnas-results
"""
EXPORT_EXAMPLES = """examples:
  samnas export --study sam_micro@cpu-torch@60ms --trial 17 --out my_subnet/
  samnas export --config subnet.yaml --checkpoint vit_b_ranked.pt --device cpu-torch --out my_subnet/
  samnas export --config front.json --out my_subnet/   # a config, subnet.json, card.json or pareto row

Load the exported subnet in Python:
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
    p.add_argument("--budget-ms", type=positive_float, help="only subnets predicted at most this fast (ms)")
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
                       "image_encoder.onnx (checked against PyTorch) and card.json/card.md.",
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


def _latency_for(device: str, space: SearchSpace, auto_profile: bool):
    from nas.latency import load_predictor, profile_and_fit_quick

    try:
        return load_predictor(device, space=space.name)
    except UserError:
        if not auto_profile or not device.startswith("cpu-torch"):
            raise
        print(f"NOTE: no latency predictor for {device} and {space.name} yet: profiling this machine first, "
              f"with {DEMO_THREADS} thread (on a small or busy machine 1 thread repeats far better than 2; "
              f"see README). Deploying with more threads? Profile that count: samnas latency profile "
              f"--space {space.name} --device {device}@t4 --blocks --threads 4", flush=True)
        return profile_and_fit_quick(space, device, threads=DEMO_THREADS)


DEMO_THREADS = 1  # threads of the search's automatic first profile (README: 1 thread repeats on a small VM)


def predictor_facts(latency) -> dict:
    """What to say about a latency predictor next to its numbers: CV error, threads, where it was measured."""
    from nas.latency.store import DeviceStore

    part = latency.report.part("encoder")
    fp = DeviceStore(latency.device).fingerprint() or {}
    return {"device": latency.device, "space": latency.space, "method": part.method,
            "cv_mape_pct": round(float(part.mape_pct), 2), "within_10_pct": round(float(part.within_10_pct), 1),
            "subnets": part.networks, "threads": fp.get("threads"), "cpu": fp.get("cpu")}


def quality_definition(evaluator, images: str | None, annotations: str | None) -> str:
    """What "quality" means for this search: evaluator, metric and images, in one line."""
    if evaluator.name == "coco":
        n = len(getattr(evaluator, "items", ()))
        return (f"coco: mean of box- and point-prompt mask IoU against the ground truth of {annotations} "
                f"({n} annotated images from {images})")
    n = len(getattr(evaluator, "references", ()))
    where = f"from {images}" if images else "generated synthetic images"
    return (f"fidelity: mean mask IoU of the subnet's point-prompt masks against the full model's, on {n} images "
            f"({where}); 1.0 = the full model's masks")


def _check_budget(budget: float, latency, space: SearchSpace, device: str) -> None:
    import math

    smallest = float(latency.predict_ms(space.smallest()))
    if budget < smallest:
        raise UserError(f"--budget-ms {budget:g}: below the smallest {space.name} subnet's predicted latency on "
                        f"{device}, {smallest:.2f} ms; no subnet can meet it (give --budget-ms "
                        f"{math.ceil(smallest * 10) / 10:g} or more)")


def probe_latency(predictor, recalibrate: bool):
    """Run the drift probe for ``predictor`` (printing its line and any warning); ``(predictor, record)``.

    With ``recalibrate`` and a factor, the predictor returned scales its predictions by it.
    ``record`` is the probe's JSON-ready result plus ``recalibrated``, for study attributes and cards.
    """
    import sys

    from nas.latency.probe import run_probe

    result = run_probe(predictor)
    print(result.summary())
    if result.warning():
        print(result.warning(), file=sys.stderr)
    if recalibrate and result.factor is not None:
        predictor = predictor.recalibrated(result.factor)
        print(f"NOTE: --recalibrate: predicted latencies are scaled by {result.factor:.3f}")
    return predictor, {**result.as_dict(), "recalibrated": predictor.speed_factor != 1.0}


def _verify_front(study, space: SearchSpace, device: str, threads: int | None):
    """:func:`nas.verify.verify_front` when this machine is ``device`` as profiled; else a note and None."""
    from nas.latency.profile import device_problem
    from .verify import verify_front

    problem = device_problem(device, threads)
    if problem:
        print(f"NOTE: the front is not measured here: {problem}")
        return None
    print("measuring the front subnets on this machine (--no-verify skips this)", flush=True)
    return verify_front(study, space, device, threads, progress=True)


def run_search_command(args: argparse.Namespace) -> int:
    from nas.latency.commands import predictor_warning

    from .cost import cost_line
    from .quality import make_evaluator
    from .driver import HEARTBEAT_GRACE_S, other_hosts_running
    from .search import SearchSettings, run_search
    from .tracking import SearchTracker

    space = SearchSpace.load(args.space)
    if args.budget_ms is not None:
        study_name(space.name, args.device, args.budget_ms)  # a bad device name fails before any work
    latency = _latency_for(args.device, space, not args.no_auto_profile)
    facts = predictor_facts(latency)
    print(predictor_line(facts))
    warning = predictor_warning(facts["cv_mape_pct"], facts.get("threads"), args.device, space.name)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    latency, probe = probe_latency(latency, args.recalibrate)
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
    storage = args.storage or default_storage(create=True)
    settings = SearchSettings(space=space.name, device=args.device, budget_ms=budget, trials=args.trials,
                              sampler=args.sampler, seed=args.seed, storage=storage,
                              extra_attrs={"checkpoint": checkpoint, "space_definition": space.to_dict(),
                                           "evaluator": evaluator.name,
                                           "quality_definition": quality, "predictor": facts,
                                           "latency_probe": probe})
    tracker = SearchTracker(settings.study_name, args.tracking_uri, run_name=f"search-{args.sampler}-seed{args.seed}",
                            params={"space": space.name, "device": args.device, "budget_ms": budget,
                                    "sampler": args.sampler, "seed": args.seed, "trials": args.trials,
                                    "checkpoint": checkpoint, "evaluator": evaluator.name,
                                    "predictor_cv_mape_pct": facts["cv_mape_pct"],
                                    "predictor_threads": facts.get("threads")})

    with tracker:
        study = run_search(settings, model, space, evaluator, latency, tracker=tracker)
        check = None if args.no_verify else _verify_front(study, space, args.device, facts.get("threads"))
        points = [p for p in load_points(storage, device=args.device, space=space.name) if p.study == study.study_name]
        front = pareto_front(points)
        plot = results_root() / "scratch" / f"{study.study_name.replace('@', '_')}.png"
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
    print(predictor_line(facts))
    if warning:
        print(warning, file=sys.stderr)
    others = other_hosts_running(study)
    if others:
        print(f"still RUNNING on other hosts: " + ", ".join(f"trial {n} ({host})" for n, host in others)
              + f"; Optuna fails each {HEARTBEAT_GRACE_S} s after its worker's last heartbeat if that worker is gone")
    print(f"stored in {storage}; MLflow runs in {tracker.uri}; plot {plot}")
    if not front:
        fastest = min((p.predicted_ms for p in points), default=None)
        hint = (f"the fastest completed trial was predicted at {fastest:.2f} ms: --budget-ms {fastest:.2f} or more "
                "would have been feasible" if fastest is not None else "no trial completed")
        print(f"samnas: error: no trial met the budget of {budget:g} ms; {hint}", file=sys.stderr)
        return 1
    print(f"next: samnas export --study '{study.study_name}' --trial {front[-1].trial} --out DIR")
    return 0


# ---------------------------------------------------------------------------- pareto

def _choose(kind: str, value: str | None, valid: list[str], where: str) -> None:
    if value is not None and value not in valid:
        raise UserError(f"--{kind} {value}: no such {kind} in {where}; stored: {', '.join(valid) or 'none'}")


def run_pareto_command(args: argparse.Namespace) -> int:
    from .pareto import load_studies

    where = args.storage or f"{default_storage()} (results folder {results_origin()})"
    points, studies = load_studies(args.storage)
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

def _trial_config(storage: str | None, study_name: str, number: int | None) -> tuple[SubnetConfig, dict, optuna.Study]:
    if number is None:
        raise UserError("--trial is required with --study (see `samnas pareto --study NAME` for the front's trials)")
    store = open_storage(storage, create=False)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        raise UserError(f"--study {study_name}: no such study in {storage or default_storage()}; "
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

    from .export import export_subnet

    if args.study:
        config, info, study = _trial_config(args.storage, args.study, args.trial)
        checkpoint = args.checkpoint or study.user_attrs.get("checkpoint")
        default_out = results_root() / "exports" / f"{args.study.replace('@', '_')}-trial{args.trial}"
    else:
        config, info, checkpoint = load_config(args.config), {}, args.checkpoint
        default_out = results_root() / "exports" / Path(args.config).stem
    space = _space_of(config, study if args.study else None)
    config = space.validate(config, source=args.config or f"trial {args.trial}")
    model, checkpoint = _load_model(checkpoint, space)
    device = args.device or info.get("device")
    latency_check = None
    if device:
        from nas.latency import load_predictor

        try:
            predictor = load_predictor(device, space=space.name)
        except UserError as exc:
            if args.device:
                raise
            print(f"NOTE: no drift probe or recalibration on the card: {exc}")
        else:
            _, probe = probe_latency(predictor, recalibrate=False)
            info["device"] = device
            if info.get("predicted_raw_ms") is None:  # a study from before predicted_raw_ms was recorded
                info["predicted_raw_ms"] = info.get("predicted_ms") or predictor.predict_ms(config, raw=True)
            if info.get("predicted_ms") is None:
                info["predicted_ms"] = info["predicted_raw_ms"]
            info.setdefault("predictor", predictor_facts(predictor))
            latency_check = {"probe": probe, "stated_error_pct": probe["stated_error_pct"],
                             "threads": predictor_threads(device)}
    threads = (info.get("predictor") or {}).get("threads")
    if threads and threads != torch.get_num_threads():
        print(f"NOTE: measuring with {threads} thread{'s' if threads != 1 else ''}, as the {info['device']} "
              f"predictor was profiled (this process had {torch.get_num_threads()})")
        torch.set_num_threads(int(threads))
    out = Path(args.out) if args.out else default_out
    card = export_subnet(model, config, out, source_checkpoint=checkpoint, trial_info=info, repeats=args.repeats,
                         latency_check=latency_check)
    pred = card["predicted_ms"]
    print(f"exported to {out}: subnet.pt, subnet.json, image_encoder.onnx ({onnx_check_text(card)}), card.json, card.md")
    print(f"latency: predicted {pred:.2f} ms" if pred is not None else "latency: no prediction", end="")
    print(f", measured here {card['measured_ms']['torch']:.2f} ms (torch), {card['measured_ms']['onnxruntime']:.2f} ms (ORT)")
    if info.get("predictor"):
        print(predictor_line(info["predictor"]))
    check = card.get("latency_check")
    if check and check.get("gap_pct") is not None:
        line = (f"latency check on {card['device']}: predicted {check['predicted_raw_ms']:.2f} ms raw, "
                f"{check['predicted_recalibrated_ms']:.2f} ms recalibrated (probe factor "
                f"{check['probe_factor']:.3f}), measured {check['measured_ms']:.2f} ms ({check['backend']}, "
                f"{check['threads']} threads): gap {check['gap_pct']:+.1f}%")
        print(line)
        if check["flag"]:
            import sys

            print(f"warning: the gap is beyond the predictor's stated error (CV MAPE {check['stated_error_pct']:.1f}%)",
                  file=sys.stderr)
    return 0


def predictor_threads(device: str) -> int | None:
    """The thread count ``device`` was profiled with (its fingerprint), or None."""
    from nas.latency.store import DeviceStore

    return (DeviceStore(device).fingerprint() or {}).get("threads")
