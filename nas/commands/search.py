"""``samnas search`` and ``samnas pareto``."""
from __future__ import annotations

import argparse
import sys


from infra.cliargs import positive_float, positive_int
from infra.errors import UserError

from infra.fileio import results_origin
from supernet.elastic.precision import PRECISION_KINDS

from nas.search.pareto import FORMATS, export_hint, pareto_front, plot_front, render, render_fronts
from nas.search.samplers import DEFAULT_SAMPLER, SAMPLERS
from nas.studies.study import default_storage, predictor_line

SEARCH_EXAMPLES = """examples:
  samnas search                                   # demo: sam_micro, built-in weights, generated images
  samnas search --trials 80 --budget-ms 4 --sampler tpe --seed 1
  samnas search --space sam2_micro                # SAM 2 (Hiera): the small model, seeded random weights
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
def add_storage(p: argparse.ArgumentParser) -> None:
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
    add_storage(p)
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
    add_storage(p)
    p.set_defaults(func=run_pareto_command)


# ---------------------------------------------------------------------------- search

def run_search_command(args: argparse.Namespace) -> int:
    from nas.search.session import SearchRequest, run_search_session

    request = SearchRequest(
        space=args.space, device=args.device, budget_ms=args.budget_ms, trials=args.trials, sampler=args.sampler,
        seed=args.seed, checkpoint=args.checkpoint, images=args.images, annotations=args.annotations,
        max_images=args.max_images, storage=args.storage, results=args.results, tracking_uri=args.tracking_uri,
        auto_profile=not args.no_auto_profile, recalibrate=args.recalibrate, verify=not args.no_verify)
    outcome = run_search_session(request)
    # the demo's last lines speak of the packaged model: random weights (no packaged reference, as for SAM 2)
    # leave them out
    packaged = outcome.plan.settings.extra_attrs.get("checkpoint") is not None
    return report_search(outcome, demo=request.is_demo and packaged)


def report_search(outcome, demo: bool) -> int:
    """Print a finished search (:class:`nas.search.session.SearchOutcome`): its front, counts, the measured
    front, what quality means, the trials' cost, the predictor, where it is stored, and the trial to export;
    exit status 1 when no trial met the budget."""
    from nas.search.pareto import measured_ms_of
    from nas.search.samplers.stall import outlook
    from nas.studies.cost import cost_line
    from nas.studies.driver import HEARTBEAT_GRACE_S, other_hosts_running

    plan, study, front, points = outcome.plan, outcome.study, outcome.front, outcome.points
    evaluator = plan.evaluator
    print()
    if evaluator.skipped:
        print(f"skipped {len(evaluator.skipped)} unreadable items: "
              + ", ".join(name for name, _ in evaluator.skipped[:5]) + (" ..." if len(evaluator.skipped) > 5 else ""))
    print(render(front, "table"), end="")
    print(f"\nstudy {study.study_name}: {len(points)} completed trials, {outcome.failed} failed, "
          f"{len(front)} on the front")
    if outcome.check is not None:
        print(outcome.check.summary())
    print(f"quality = {plan.quality}")
    print(cost_line(study.get_trials(deepcopy=False),
                    len(getattr(evaluator, "references", None) or getattr(evaluator, "items", ()))))
    settings = plan.settings
    print(outlook(study, settings.budget_ms, study.sampler, settings.sampler, measured_ms_of(study)).line())
    print(predictor_line(plan.facts))
    if plan.warning:
        print(plan.warning, file=sys.stderr)
    others = other_hosts_running(study)
    if others:
        print("still RUNNING on other hosts: " + ", ".join(f"trial {n} ({host})" for n, host in others)
              + f"; Optuna fails each {HEARTBEAT_GRACE_S} s after its worker's last heartbeat if that worker is gone")
    print(f"stored in {plan.settings.storage}; MLflow runs in {outcome.tracking_uri}; plot {outcome.plot}")
    if not front:
        fastest = min((p.predicted_ms for p in points), default=None)
        hint = (f"the fastest completed trial was predicted at {fastest:.2f} ms: --budget-ms {fastest:.2f} or more "
                "would have been feasible" if fastest is not None else "no trial completed")
        print(f"samnas: error: no trial met the budget of {plan.settings.budget_ms:g} ms; {hint}", file=sys.stderr)
        return 1
    print(export_hint(study.study_name, front))
    if demo:
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
    from nas.search.pareto import load_studies

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
