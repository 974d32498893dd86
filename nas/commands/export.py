"""``samnas export``: a study's trial or a config file, exported as a standalone subnet folder with its card."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from infra.cliargs import positive_int
from infra.errors import UserError
from infra.wording import plural
from search_spaces.config import SubnetConfig, load_config
from search_spaces.space import SearchSpace

from nas.commands.search import add_storage
from nas.studies.record import TrialRecord
from nas.studies.study import default_storage, open_storage, predictor_line

EXPORT_EXAMPLES = """examples:
  samnas export --study 'sam_micro@cpu-torch@30ms' --trial 17 --out my_subnet/   # after search --budget-ms 30
  samnas export --config subnet.yaml --checkpoint vit_b_ranked.pt --device cpu-torch --out my_subnet/
  samnas export --config front.json --out my_subnet/   # a config, subnet.json, card.json or pareto row
  samnas export --subnet extracted/ --out my_subnet/   # a `samnas extract` folder as it is (SAM or SAM 2)

Run the exported subnet without PyTorch (ONNX Runtime or OpenVINO):
  from deploy import Runner
  masks, iou, low_res = Runner.from_folder("my_subnet/").predict("photo.jpg", points=[[320, 240]], labels=[1])

Load the exported subnet in PyTorch:
  from supernet.elastic.extract import load_subnet
  model = load_subnet("my_subnet/")              # reads subnet.pt + subnet.json
  masks, scores, logits = SamPredictor(model).predict(...)   # supernet.modeling.predictor.SamPredictor
"""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("export", description="Write subnet.pt + subnet.json (loadable without the supernet), "
                       "image_encoder.onnx and prompt_decoder.onnx (both checked against PyTorch), OpenVINO IR of both "
                       "for an OpenVINO --device, and card.json/card.md.",
                       epilog=EXPORT_EXAMPLES, formatter_class=fmt)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", help="study name (see `samnas pareto`)")
    src.add_argument("--config", help="subnet config instead of a study trial: YAML/JSON config, subnet.json, "
                     "card.json or a `pareto --format json` row")
    src.add_argument("--subnet", help="an extracted subnet folder (subnet.pt + subnet.json from `samnas extract`), "
                     "exported as it is: no supernet checkpoint needed; SAM and SAM 2 subnets")
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
    add_storage(p)
    p.set_defaults(func=run_export_command)


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


def _export_source(args: argparse.Namespace) -> tuple[SubnetConfig, dict, str | None, optuna.Study | None, Path]:
    """``(config, card facts, checkpoint, study or None, default output folder)`` of --study, --config or --subnet."""
    if args.study:
        config, info, study = _trial_config(args.storage, args.study, args.trial, args.results)
        checkpoint = args.checkpoint or study.user_attrs.get("checkpoint")
        out = args.results / "exports" / f"{args.study.replace('@', '_')}-trial{args.trial}"
        return config, info, checkpoint, study, out
    if args.subnet:
        meta = Path(args.subnet) / "subnet.json"
        if not meta.is_file():
            raise UserError(f"--subnet {args.subnet}: no subnet.json; expected a folder written by `samnas extract`")
        if args.checkpoint:
            raise UserError("--checkpoint: not used with --subnet (the folder holds the subnet's own weights)")
        return load_config(meta), {}, None, None, args.results / "exports" / Path(args.subnet).resolve().name
    return load_config(args.config), {}, args.checkpoint, None, args.results / "exports" / Path(args.config).stem


def _latency_check(args: argparse.Namespace, info: dict, space: SearchSpace, config: SubnetConfig) -> dict | None:
    """The card's latency check for --device (or the study's device): its predictor's drift probe; fills
    ``info``'s device, predictions and predictor facts. None without a device (or, for a study's device,
    without its predictor: a note says so)."""
    from nas.latency import load_predictor
    from nas.search.session import predictor_facts, probe_latency

    device = args.device or info.get("device")
    if not device:
        return None
    latency_root = args.results / "latency"
    try:
        predictor = load_predictor(device, space=space.name, root=latency_root)
    except UserError as exc:
        if args.device:
            raise
        print(f"NOTE: no drift probe or recalibration on the card: {exc}")
        return None
    _, probe = probe_latency(predictor, recalibrate=False, root=latency_root)
    info["device"] = device
    if info.get("predicted_raw_ms") is None:  # a study from before predicted_raw_ms was recorded
        info["predicted_raw_ms"] = info.get("predicted_ms") or predictor.predict_ms(config, raw=True)
    if info.get("predicted_ms") is None:
        info["predicted_ms"] = info["predicted_raw_ms"]
    info.setdefault("predictor", predictor_facts(predictor, latency_root))
    return {"probe": probe, "stated_error_pct": probe["stated_error_pct"],
            "threads": predictor_threads(device, latency_root)}


def run_export_command(args: argparse.Namespace) -> int:
    import torch

    from infra.threads import torch_threads

    from nas.export.subnet import export_subnet, export_subnet_folder
    from nas.search.session import load_space_model

    config, info, checkpoint, study, default_out = _export_source(args)
    space = _space_of(config, study)
    config = space.validate(config, source=args.config or args.subnet or f"trial {args.trial}")
    model = None
    if not args.subnet:
        model, checkpoint = load_space_model(checkpoint, space)
    latency_check = _latency_check(args, info, space, config)
    threads = (info.get("predictor") or {}).get("threads")
    if threads and threads != torch.get_num_threads():
        print(f"NOTE: measuring with {plural(threads, 'thread')}, as the {info['device']} "
              f"predictor was profiled (this process had {torch.get_num_threads()})")
    out = Path(args.out) if args.out else default_out
    options = dict(trial_info=info, repeats=args.repeats, latency_check=latency_check,
                   measure_runtimes=not args.no_runtimes)
    with torch_threads(threads):  # the process's own count again afterwards
        card = (export_subnet_folder(args.subnet, out, **options) if args.subnet
                else export_subnet(model, config, out, source_checkpoint=checkpoint, **options))
    print_export_summary(card, out, info)
    return 0


def print_export_summary(card: dict, out: Path, info: dict) -> None:
    """What ``samnas export`` wrote and measured: files, ONNX checks, latency, the fastest runtime, the check."""
    pred = card["predicted_ms"]
    print(f"exported to {out}: {', '.join(card['files'])} (encoder: {onnx_check_text(card)}; prompt decoder: "
          f"masks agree with PyTorch on {100 * card['decoder_check']['mask_agreement']:.3f}% of pixels)")
    print(f"latency: predicted {pred:.2f} ms" if pred is not None else "latency: no prediction", end="")
    print(f", measured here {card['measured_ms']['torch']:.2f} ms (torch), {card['measured_ms']['onnxruntime']:.2f} ms (ORT)")
    if card.get("runtimes") and card["runtimes"]["rows"]:
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
            print(f"warning: the gap is beyond the predictor's stated error (CV MAPE {check['stated_error_pct']:.1f}%)",
                  file=sys.stderr)


def predictor_threads(device: str, root=None) -> int | None:
    """The thread count ``device`` was profiled with (its fingerprint in the latency folder ``root``), or None."""
    from nas.latency.store import DeviceStore

    return (DeviceStore(device, root).fingerprint() or {}).get("threads")
