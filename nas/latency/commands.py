"""``samnas latency profile | fit | predict | list | import``: per-device latency predictors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nas.measure.timing import MIN_SECONDS, ROUNDS
from infra.cliargs import default_of, non_negative_int, positive_int
from nas.latency.profile import ProfileSettings
from infra.errors import UserError
from infra.wording import plural

if TYPE_CHECKING:  # the CLI imports the predictor (scikit-learn) only for the commands that need it
    from .report import PartReport

MAPE_WARN_PCT = 10.0  # above this cross-validated error, `latency fit` and `search` warn


def predictor_warning(mape_pct: float, threads, device: str, space: str) -> str | None:
    """The warning for a predictor whose CV MAPE is above 10%: likely cause and fix; None when it is fine."""
    if mape_pct <= MAPE_WARN_PCT:
        return None
    cause = (f"{threads} threads on a machine whose speed varies (busy or shared)" if threads and threads > 1
             else "a machine whose speed varied while profiling (busy or shared)")
    return (f"warning: the {device} latency predictor for {space} has a CV MAPE of {mape_pct:.1f}% (> "
            f"{MAPE_WARN_PCT:g}%), so predicted latencies and the budget may be off by that much; likely cause: "
            f"{cause}; fix: profile again with 1 thread, more rounds, on a quieter machine: samnas latency "
            f"profile --space {space} --device {device} --blocks --threads 1 --rounds 5 --replace, "
            f"then samnas latency fit --device {device}")

EXAMPLES = """examples:
  samnas latency profile --space sam_micro --device cpu-torch --blocks --samples 40
  samnas latency fit --device cpu-torch
  samnas latency predict --device cpu-torch --config subnet.yaml
  samnas latency predict --device cpu-torch --config my_subnet/subnet.json
  samnas latency list
  samnas latency probe --device cpu-torch
  samnas latency validate --device cpu-torch --space sam_micro --samples 20
  samnas latency profile --space sam_vit_b --resolutions 512 --device cpu-onnxruntime@edge1 --blocks --out edge1.json
  samnas latency import edge1.json
  samnas latency runtimes --space sam_micro
  samnas latency runtimes --space sam_micro --decoder
  samnas latency runtimes --space sam_vit_b --resolution 512 --threads 1

Device names: <hardware>-<backend>[-bf16][@tag]: cpu-torch, cpu-onnxruntime, cpu-openvino,
cuda-torch, cuda-onnxruntime; -bf16 (cpu-torch-bf16, cpu-openvino-bf16) computes in bfloat16 where
the CPU has AVX512-BF16 or AMX; an optional @tag names a machine (cpu-torch@laptop). Files go to <results>/latency/<device>/, where <results>
is --results DIR, else $SAMNAS_RESULTS, else ./results (--root DIR names the latency folder itself).
"""


def _add_root(p: argparse.ArgumentParser, run) -> None:
    """``--root``, and ``run`` as the action, called with ``args.root`` filled in: ``--root``, else
    ``latency/`` in the results folder the CLI chose (``args.results``)."""
    from .store import resolve_root

    def in_root(args: argparse.Namespace) -> int:
        args.root = resolve_root(args.root, args.results)
        return run(args)

    p.add_argument("--root", help="latency folder itself (default: <results>/latency; see --results)")
    p.set_defaults(func=in_root)


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser(
        "latency",
        description="Measure subnet latency on a device, fit a predictor per device and search space, "
        "and predict the latency of subnet configs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group.set_defaults(func=lambda args: (group.print_help(), 2)[1])
    cmds = group.add_subparsers(dest="latency_command", metavar="ACTION")
    _register_profile(cmds)
    _register_fit(cmds)
    _register_predict(cmds)
    _register_list(cmds)
    _register_probe(cmds)
    _register_validate(cmds)
    _register_runtimes(cmds)
    _register_import(cmds)


def _register_profile(cmds) -> None:
    """``samnas latency profile``: time block kinds and sampled subnets on this machine."""
    p = cmds.add_parser("profile", help="time block kinds and sampled subnets on this machine",
                        description="Time the lookup table's block kinds (--blocks) and --samples subnets end to end "
                        "(warm-up runs, then --repeats timed runs; median and p10-p90 spread). Stores the "
                        "measurements under <root>/<device>/, or with --out writes one JSON file for another "
                        "machine's `samnas latency import`.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="search space name (samnas spaces list) or space file")
    p.add_argument("--device", required=True, help="device name, e.g. cpu-torch, cpu-onnxruntime, cuda-torch[@tag]")
    p.add_argument("--blocks", action="store_true", help="also time every block kind (the lookup table)")
    # defaults: ProfileSettings', shown in the help as %(default)s
    p.add_argument("--samples", type=non_negative_int, default=default_of(ProfileSettings, "samples"),
                   help="subnets timed end to end (default: %(default)s; 0 only with --blocks)")
    p.add_argument("--repeats", type=positive_int, default=default_of(ProfileSettings, "repeats"),
                   help="timed runs per measurement, shared out over the rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=default_of(ProfileSettings, "warmup"),
                   help="untimed runs per measurement, shared out over the rounds, at least one per round "
                        "(default: %(default)s)")
    p.add_argument("--min-seconds", type=float, default=default_of(ProfileSettings, "min_seconds"),
                   help="keep timing a measurement until its runs add up to this long (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=default_of(ProfileSettings, "rounds"),
                   help="split each measurement into this many rounds, interleaved over all measurements, so a "
                   "slow spell of the machine touches every one alike (default: %(default)s)")
    p.add_argument("--max-rounds", type=int,
                   help="run rounds again, up to this many in all, while fewer than --rounds of them ran at one "
                   "steady speed (default: twice --rounds)")
    p.add_argument("--prompts", type=int, default=default_of(ProfileSettings, "prompts"),
                   help="also time encoder + decoder for this many point prompts (default: %(default)s, encoder only)")
    p.add_argument("--resolutions", type=int, nargs="+", help="only these input sides (default: all of the space's)")
    p.add_argument("--threads", type=positive_int,
                   help="intra-op threads (default: torch's current count); on a small or busy machine 1 thread "
                        "repeats far better than 2 (see docs/results.md); profile the count you deploy with")
    p.add_argument("--processes", type=positive_int,
                   help="profile this many times, each in a new process, and keep the median (default: 3 for "
                        "OpenVINO, whose speed differs from process to process; else 1)")
    p.add_argument("--seed", type=int, default=default_of(ProfileSettings, "seed"),
                   help="seed for the sampled subnets and inputs (default: %(default)s)")
    p.add_argument("--out", help="write a portable JSON file instead of storing the measurements here")
    p.add_argument("--replace", action="store_true", help="drop the device's earlier measurements")
    _add_root(p, run_profile)


def _register_fit(cmds) -> None:
    """``samnas latency fit``: fit the device's predictors with k-fold cross-validation."""
    p = cmds.add_parser("fit", help="fit the device's predictors with k-fold cross-validation",
                        description="Fit a predictor per search space measured on the device, report the "
                        "cross-validated MAPE, RMSE and share within +-10%%, save predictor.joblib and report.json. "
                        "Warns when the CV MAPE is above 10%%.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="device name")
    p.add_argument("--space", help="fit only this space (default: every space measured on the device)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the boosting (default: 0)")
    _add_root(p, run_fit)


def _register_predict(cmds) -> None:
    """``samnas latency predict``: a subnet config's predicted latency."""
    p = cmds.add_parser("predict", help="predicted latency of a subnet config on a device",
                        description="Predicted latency of a subnet config (YAML/JSON config, subnet.json, card.json "
                        "or a `pareto --format json` row) on a device, with the predictor's CV error.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="device name")
    p.add_argument("--config", required=True,
                   help="subnet config (YAML, or JSON for .json; also subnet.json, card.json or a pareto row)")
    p.add_argument("--prompts", type=int, default=0, help="add the decoder for this many point prompts (default: 0)")
    p.add_argument("--parts", action="store_true", help="also print the lookup table's parts")
    _add_root(p, run_predict)


def _register_list(cmds) -> None:
    """``samnas latency list``: devices with their sample counts and validation error."""
    p = cmds.add_parser("list", help="devices with their sample counts and validation error",
                        description="One row per device, space and part: timed subnets, method, CV error, status.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_root(p, run_list)


def _register_probe(cmds) -> None:
    """``samnas latency probe``: the device's speed now against profiling time."""
    p = cmds.add_parser("probe", help="re-time the probe subnets: the device's speed now against profiling time",
                        description="Time the few probe subnets stored at profiling (smallest, middle, largest) for "
                        "about a second, with the device's backend and threads, and print the speed factor (current "
                        "/ profiled ms, median over the probes). Warns when it is beyond the predictor's CV MAPE.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="device name")
    p.add_argument("--space", help="search space (default: the only one fitted on the device)")
    p.add_argument("--seconds", type=float, help="timed seconds over all probe subnets (default: the probe's, under a second)")
    _add_root(p, run_probe_command)


def _register_validate(cmds) -> None:
    """``samnas latency validate``: the predictor on held-out subnets timed in fresh processes."""
    p = cmds.add_parser("validate", help="check the predictor on held-out subnets timed in fresh processes",
                        description="Draw held-out subnets with a sampler independent of profiling's (each block kept "
                        "with probability 0.7, heads and MLP uniform, configs the device never timed), time each in a "
                        "fresh process (an exported ONNX file in a new ONNX Runtime session for *-onnxruntime), run "
                        "the drift probe before and after, and report MAPE and the share within +-10%, raw and "
                        "recalibrated by the probe factor. Writes <root>/<device>/validation.json; `samnas latency "
                        "list` shows the latest.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="device name (a cpu-* device profiled on this machine)")
    p.add_argument("--space", help="search space (default: the only one fitted on the device)")
    p.add_argument("--samples", type=positive_int, default=20, help="held-out subnets (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation sampler (default: 0)")
    p.add_argument("--repeats", type=positive_int, default=5, help="least timed runs per subnet (default: 5)")
    p.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                   help=f"least timed seconds per subnet (default: {MIN_SECONDS})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_root(p, run_validate)


def _register_import(cmds) -> None:
    """``samnas latency import``: store another machine's portable profile file."""
    p = cmds.add_parser("import", help="store measurements written by `samnas latency profile --out FILE`",
                        description="Store another machine's measurements (a portable profile file) here.",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="the portable JSON profile file")
    p.add_argument("--device", help="store under this name instead of the file's (e.g. add an @tag)")
    p.add_argument("--replace", action="store_true", help="drop the device's earlier measurements")
    _add_root(p, run_import)


def bf16_hint(device: str, space: str, fingerprint: dict) -> str | None:
    """A note when an fp32 device's backend also offers bf16 and this CPU runs bf16 natively (else None)."""
    from nas.measure.fingerprint import bf16_problem

    from .store import RUNTIME_PRECISIONS, device_spec

    spec = device_spec(device)
    offered = "bf16" in RUNTIME_PRECISIONS[(spec.hardware, spec.backend)]
    if spec.precision != "fp32" or not offered or spec.hardware != "cpu" or bf16_problem(fingerprint):
        return None
    bf16 = f"{spec.hardware}-{spec.backend}-bf16" + (f"@{spec.tag}" if spec.tag else "")
    return (f"note: this CPU computes bf16 natively, so {bf16} may be several times faster with embeddings close "
            f"to fp32; compare: samnas latency runtimes --space {space}")


def run_profile(args: argparse.Namespace) -> int:
    from .profile import profile_device
    from .store import DeviceStore

    if args.samples == 0 and not args.blocks:
        raise UserError("--samples 0: nothing to profile without --blocks; give --samples N with N > 0, or add --blocks")

    settings = ProfileSettings(blocks=args.blocks, samples=args.samples, prompts=args.prompts, repeats=args.repeats,
                               warmup=args.warmup, min_seconds=args.min_seconds, rounds=args.rounds,
                               max_rounds=args.max_rounds, threads=args.threads, seed=args.seed,
                               resolutions=args.resolutions, processes=args.processes)
    run = profile_device(args.space, args.device, settings, root=args.root, out=args.out, replace=args.replace)
    fp = run.fingerprint
    print(f"profiled {', '.join(run.spaces)} on {args.device}: {len(run.blocks)} block timings, "
          f"{len(run.networks)} subnet timings in {run.seconds:.1f} s ({fp['backend']} {fp.get('precision', 'fp32')}, "
          f"{plural(fp['threads'], 'thread')}, {fp['cpu']}{', ' + fp['gpu'] if fp.get('gpu') else ''})")
    hint = bf16_hint(args.device, next(iter(run.spaces)), fp)
    if hint:
        print(hint)
    if len(run.process_speed) > 1:
        print(f"profiled in {len(run.process_speed)} processes, one after another; the slowest ran "
              f"{run.process_spread_pct:.0f}% slower than the fastest; stored: the median over them")
    if run.extra_rounds:
        print(f"the machine's speed moved by up to {run.machine_drift_pct:.0f}% between rounds: ran "
              f"{run.extra_rounds} more round(s) and kept the {len(run.kept)} that ran at one speed")
    if len(run.kept) < run.rounds:
        print(f"warning: only {len(run.kept)} of {len(run.speed)} rounds ran at one speed (the machine's speed moved "
              f"by up to {run.machine_drift_pct:.0f}%: another process, a shared VM, a clock change?); these timings "
              "are less reliable: profile again when it is quiet, or with a larger --max-rounds", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}; on the target machine of the results: samnas latency import {args.out}")
    else:
        print(f"stored in {DeviceStore(args.device, args.root).folder}; next: samnas latency fit --device {args.device}")
    return 0


def _part_line(key: str, part: PartReport) -> str:
    noise = part.noise_spread_pct
    return (f"  {key:<20} {part.method:<10} n={part.networks:<4} CV MAPE {part.mape_pct:.1f}%  "
            f"RMSE {part.rmse_ms:.3g} ms  within +-10% {part.within_10_pct:.0f}%"
            + (f"  (noise p10-p90 {noise:.1f}%)" if noise is not None else ""))


def run_fit(args: argparse.Namespace) -> int:
    from .predictor import fit_device
    from .report import PredictorReport
    from .store import DeviceStore

    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    report = fit_device(args.device, root=args.root, space=args.space, folds=args.folds, seed=args.seed)
    names = [args.space] if args.space else sorted(report["spaces"])
    for name in names:
        rep = PredictorReport.from_dict(report["spaces"][name], f"report.json: spaces.{name}")
        table = "lookup table + " if rep.lookup_table else "no block table (profile --blocks adds one); "
        print(f"{name} on {args.device} ({table}{rep.networks} subnets, resolutions "
              f"{', '.join(map(str, rep.resolutions))}):")
        for key, part in sorted(rep.parts.items()):
            print(_part_line(key, part))
        threads = (DeviceStore(args.device, args.root).fingerprint() or {}).get("threads")
        worst = max(part.mape_pct for part in rep.parts.values())
        warning = predictor_warning(worst, threads, args.device, name)
        if warning:
            print(warning, file=sys.stderr)
    print(f"saved {DeviceStore(args.device, args.root).path('predictor.joblib')} and report.json")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from search_spaces.config import load_config

    from .predictor import load_predictor

    config = load_config(args.config)
    predictor = load_predictor(args.device, space=config.space, root=args.root)
    try:
        ms = predictor.predict_ms(config, prompts=args.prompts)
    except UserError as exc:
        raise type(exc)(f"{args.config}: {exc}") from None
    key = f"encoder+decoder@{args.prompts}" if args.prompts else "encoder"
    part = predictor.report.part(key)
    print(f"{ms:.3f} ms predicted for {Path(args.config).name} ({key}, {predictor.space}) on {args.device}; "
          f"CV MAPE {part.mape_pct:.1f}%, {part.within_10_pct:.0f}% of held-out subnets within +-10%")
    if args.parts and predictor.lut:
        parts = predictor.lut_parts(config, prompts=args.prompts)
        for name, part_ms in parts:
            print(f"  {name:<12} {part_ms:9.3f} ms")
        print(f"  {'lookup sum':<12} {sum(v for _, v in parts):9.3f} ms")
    return 0


def run_probe_command(args: argparse.Namespace) -> int:
    from .probe import PROBE_SECONDS, run_probe, warn_once
    from .validate import check_device_and_space

    predictor = check_device_and_space(args.device, args.space, args.root)
    result = run_probe(predictor, args.root, args.seconds or PROBE_SECONDS)
    print(result.summary())
    if result.factor is not None:
        print(f"stated error of the {predictor.space} predictor: CV MAPE {result.stated_error_pct:.1f}%")
    warn_once(result, args.root)
    return 0


def _metrics(m: dict) -> str:
    return f"MAPE {m['mape_pct']:.1f}%, {m['within_10_pct']:.0f}% within +-10%, median error {m['signed_median_pct']:+.1f}%"


def run_validate(args: argparse.Namespace) -> int:
    from .probe import ProbeResult, warn_once
    from .store import DeviceStore
    from .validate import VALIDATION_FILE, ValidateSettings, validate_predictor

    settings = ValidateSettings(samples=args.samples, seed=args.seed, repeats=args.repeats,
                                min_seconds=args.min_seconds)
    report = validate_predictor(args.device, args.space, args.root, settings, progress=not args.quiet)
    probe = report["probe"]
    factor = report["probe_factor"]
    print(f"validated {report['space']} on {args.device}: {report['samples']} held-out subnets, each timed in a fresh "
          f"process ({plural(report['timing']['threads'], 'thread')}), in {report['seconds']:.0f} s")
    if factor is None:
        print(f"drift probe skipped: {probe['before']['note']}")
    else:
        print(f"probe factor {factor:.3f} (before {probe['before']['factor']:.3f}, after {probe['after']['factor']:.3f})")
    print(f"  raw:          {_metrics(report['raw'])}")
    print(f"  recalibrated: {_metrics(report['recalibrated'])}")
    if report.get("interleaved"):
        f = report["interleaved_probe"]
        print(f"  interleaved:  {_metrics(report['interleaved'])} (each subnet scaled by the probe timed beside it "
              f"in its process: factors {f['factor_min']:.2f}-{f['factor_max']:.2f}, median {f['factor_median']:.2f})")
    print(f"  stated (CV over the profiled subnets): MAPE {report['cv_mape_pct']:.1f}%, "
          f"{report['cv_within_10_pct']:.0f}% within +-10%")
    if factor is not None:
        warn_once(ProbeResult(args.device, report["space"], factor, stated_error_pct=report["cv_mape_pct"]), args.root)
    print(f"wrote {DeviceStore(args.device, args.root).path(VALIDATION_FILE)}")
    return 0


def list_rows(root=None) -> list[dict]:
    """One row per (device, space, part): counts, the chosen method, CV error, latest validation, refit status."""
    from .report import PredictorReport
    from .store import DeviceStore, list_devices
    from .validate import read_validations

    rows = []
    for device in list_devices(root):
        store = DeviceStore(device, root)
        fp = store.fingerprint() or {}
        networks = store.networks()
        report = {name: PredictorReport.from_dict(rep, f"{store.path('report.json')}: spaces.{name}")
                  for name, rep in ((store.report() or {}).get("spaces") or {}).items()}
        counts: dict[tuple[str, str], int] = {}
        for r in networks:
            key = (r["space"], r["part"] if r["part"] == "encoder" else f"{r['part']}@{r['prompts']}")
            counts[key] = counts.get(key, 0) + 1
        blocks = len(store.blocks())
        try:
            validations = read_validations(store)
        except UserError:
            validations = {}
        where = f"{fp.get('backend', '?')}, {plural(fp.get('threads'), 'thread')}, {fp.get('cpu', '?')}"
        for (space, part), n in sorted(counts.items()) or [(("-", "-"), 0)]:
            fitted = report[space].parts.get(part) if space in report else None
            status = "not fitted" if not fitted else ("refit due" if fitted.networks != n else "fitted")
            val = validations.get(space) if part == "encoder" else None
            if val and fitted and val.get("cv_mape_pct") != fitted.mape_pct:
                val = None  # validated an earlier fit
            rows.append({
                "device": device, "space": space, "part": part, "subnets": n, "blocks": blocks,
                "method": fitted.method if fitted else "-",
                "cv_mape_pct": f"{fitted.mape_pct:.1f}" if fitted else "-",
                "within_10_pct": f"{fitted.within_10_pct:.0f}" if fitted else "-",
                "validated_mape_pct": (f"{val['raw']['mape_pct']:.1f}/{val['recalibrated']['mape_pct']:.1f}"
                                       if val else "-"),
                "validated_within_10_pct": (f"{val['raw']['within_10_pct']:.0f}/{val['recalibrated']['within_10_pct']:.0f}"
                                            if val else "-"),
                "validated_at": (f"{val['created'][:16]}Z " + (f"x{val['probe_factor']:.2f}" if val["probe_factor"]
                                                                 else "no probe")) if val else "-",
                "status": status, "measured_on": where,
            })
    return rows


def run_list(args: argparse.Namespace) -> int:
    from search_spaces.space import format_table

    from .store import resolve_root

    rows = list_rows(args.root)
    if not rows:
        print(f"no devices under {resolve_root(args.root)}; profile one with "
              "`samnas latency profile --space sam_micro --device cpu-torch --blocks`")
        return 0
    cols = ["device", "space", "part", "subnets", "blocks", "method", "cv_mape_pct", "within_10_pct",
            "validated_mape_pct", "validated_within_10_pct", "validated_at", "status", "measured_on"]
    heads = ["device", "space", "part", "subnets", "blocks", "method", "CV MAPE %", "within +-10% %",
             "validated MAPE % raw/recal", "validated within +-10% % raw/recal", "validated at, probe factor",
             "status", "measured on"]
    for line in format_table([tuple(heads)] + [tuple(str(r[c]) for c in cols) for r in rows]):
        print(line)
    if all(r["validated_mape_pct"] == "-" for r in rows):
        print("(validated: none yet; `samnas latency validate --device D` times held-out subnets in fresh processes)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from .store import DeviceStore, import_profile_file

    doc = import_profile_file(args.file, device=args.device, root=args.root, replace=args.replace)
    fp = doc["fingerprint"]
    print(f"imported {len(doc['blocks'])} block timings and {len(doc['networks'])} subnet timings of "
          f"{', '.join(sorted(doc['spaces']))} as {doc['device']} (measured on {fp.get('cpu', '?')}, "
          f"{plural(fp.get('threads'), 'thread')}) into {DeviceStore(doc['device'], args.root).folder}; "
          f"next: samnas latency fit --device {doc['device']}")
    return 0


RUNTIMES_HELP = """Time the space's full model (image encoder, random weights) on every runtime and precision installed
here, in interleaved rounds, and print them fastest first with the error of each against PyTorch fp32 on the
same input: ms (median and p10-p90 over the timed runs), the speed-up over PyTorch fp32, the cosine and relative
L2 distance of the embeddings to PyTorch fp32. Then names the device to profile. Module export and compile
time is not counted."""


def _register_runtimes(cmds) -> None:
    p = cmds.add_parser("runtimes", help="which runtime and precision runs the full model fastest here",
                        description=RUNTIMES_HELP, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="sam_micro", help="search space whose full model is timed (default: sam_micro)")
    p.add_argument("--resolution", type=positive_int, help="input side in px (default: the space's largest)")
    p.add_argument("--threads", type=positive_int, default=1, help="intra-op threads of every runtime (default: 1)")
    p.add_argument("--rounds", type=positive_int, default=ROUNDS, help=f"interleaved rounds (default: {ROUNDS})")
    p.add_argument("--repeats", type=positive_int, default=6, help="least timed runs per runtime (default: 6)")
    p.add_argument("--no-int8", action="store_true", help="leave out the int8-block rows")
    p.add_argument("--decoder", action="store_true",
                   help="time the prompt encoder + mask decoder (SAM's ONNX contract, one point) instead of the encoder")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    p.set_defaults(func=run_runtimes)


def run_runtimes(args: argparse.Namespace) -> int:
    import json

    from search_spaces.space import SearchSpace

    from .runtimes import compare_runtimes, decoder_runtimes, installed_cases, recommendation, render_rows, rows_json

    space = SearchSpace.load(args.space)
    cases = installed_cases(int8=not args.no_int8)
    run = decoder_runtimes if args.decoder else compare_runtimes
    rows = run(space, cases, threads=args.threads, resolution=args.resolution, rounds=args.rounds,
               repeats=args.repeats)
    if args.format == "json":
        print(json.dumps({"space": space.name, "threads": args.threads, "rows": rows_json(rows)}, indent=2))
        return 0
    res = args.resolution or max(space.resolutions)
    part = "prompt encoder + mask decoder (one point + padding)" if args.decoder else "full image encoder"
    print(f"{space.name} {part} at {res} px, random weights, {args.threads} thread"
          f"{'s' if args.threads != 1 else ''}, {args.rounds} interleaved rounds:")
    print("\n".join(render_rows(rows)))
    if args.decoder:  # latency predictors model the encoder; the decoder's runtime is chosen at deployment
        best = rows[0]
        print(f"fastest decoder here: {best.case.label} ({best.speedup:.2f}x PyTorch fp32, cosine {best.cosine:.6f})")
    else:
        print(recommendation(rows, space, args.threads))
    return 0
