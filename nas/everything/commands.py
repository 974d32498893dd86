"""CLI: ``samnas everything``, ``samnas tune-everything`` and ``samnas everything-front``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.cliargs import default_of, positive_float, positive_int
from infra.errors import UserError
from supernet.model_source import MODEL_TYPE_HELP, load_model

from .settings import TuneSettings

TUNE_EPILOG = """examples:
  samnas tune-everything --images photos/ --budget-ms 300 --trials 30 --out policy.yaml
  samnas tune-everything --images coco128/images/train2017 --eval-images coco128/images/val2017 --budget-ms 2000 --trials 30
  samnas tune-everything --images photos/ --speedup 4 --trials 30   # 4x less time per image than the dense grid
  samnas tune-everything --checkpoint sam_micro.pt --images scenes/train --annotations scenes/annotations/instances_train.json --budget-ms 200 --trials 40
  samnas everything --policy policy.yaml --images photos/ --out masks/
  samnas everything --images photos/ --out masks/ --threads 1      # a busy machine: 1 thread can beat torch's default
"""
EVERYTHING_EPILOG = """examples:
  samnas everything --images photos/ --out masks/                  # the model's default thresholds, dense 32x32 grid
  samnas everything --policy policy.yaml --images photos/ --out masks/
  samnas everything --images val2017/ --annotations panoptic_val2017.json --single-json --out dets/   # COCO image ids
"""
CALIBRATE_DESCRIPTION = """A model's default segment-everything thresholds, calibrated without labels.

SAM's automatic mask generator keeps a mask when its predicted IoU is above 0.88 and its
stability score at least 0.95. Those values were set for ViT-H; a smaller model's IoU head
rarely reaches them, and the dense grid then returns no mask at all. Calibration moves both
thresholds together and picks the largest value (in steps of 0.01) at which the dense 32x32
grid still keeps --target-masks masks per calibration photo on average (a COCO photo holds
about 11 panoptic segments, things and stuff). Calibrate on training photos, never on the
photos you report numbers on. For the packaged reference the result goes into its model card;
for any other model, --out writes a policy file to pass to `everything --policy`.
"""
FRONT_EPILOG = """examples:
  samnas everything-front                              # every policy study in ./results/studies.db
  samnas everything-front --device cpu-torch --budget-ms 2000 --format json
  samnas everything-front --plot everything_front.png
"""
CALIBRATE_EPILOG = """examples:
  samnas calibrate-everything --images coco128/images/train2017          # packaged reference: writes its card
  samnas calibrate-everything --checkpoint my_sam.pt --images photos/ --out my_defaults.yaml
  samnas everything --checkpoint my_sam.pt --policy my_defaults.yaml --images photos/ --out masks/
"""


def model_digest(model) -> str:
    """A short fingerprint of a model's weights: every tensor's name, shape and first 64 values.

    It follows the weights, not the file name, so a policy checks it against the model in use.
    """
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(value.shape)).encode())
        h.update(value.detach().flatten()[:64].float().cpu().numpy().tobytes())
    return h.hexdigest()


def check_policy_model(path: str | Path, meta: dict, tag: str, digest: str) -> None:
    """UserError (naming the file) when a policy's meta says it was tuned for another model.

    Compares ``model_digest`` when the policy has one, else the model tag; a policy without
    either (written by hand) is accepted.
    """
    want = meta.get("model_digest")
    other = (want != digest) if want else (meta.get("model") not in (None, tag))
    if other:
        raise UserError(f"{path}: this policy was tuned for model {meta.get('model')!r}"
                        + (f" (weights digest {want})" if want else "")
                        + f", not for the model in use, {tag!r} (digest {digest}); tune one for it with "
                          f"`samnas tune-everything` or calibrate one with `samnas calibrate-everything`")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="SAM or SAM 2 checkpoint (Meta/HF layout; default: packaged sam_micro)")
    src.add_argument("--subnet", help="folder written by `samnas extract` / `samnas export`")
    p.add_argument("--model-type", help=MODEL_TYPE_HELP)
    p.add_argument("--device", default="cpu-torch", help="device slug (default: cpu-torch)")


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("tune-everything", description="Optuna search over prompt policies (grid, hierarchical, adaptive). Quality "
                       "without labels: agreement with the model's own dense 32x32 grid at its default thresholds "
                       "on the same photos (the IoU-weighted share of its masks that a policy reproduces); with "
                       "--annotations: class-agnostic mask AR@10/100/1000.",
                       epilog=TUNE_EPILOG, formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--images", required=True, help="folder of tuning images")
    p.add_argument("--annotations", help="COCO instances or panoptic JSON: mask AR@10/100/1000 instead of agreement")
    p.add_argument("--eval-images", help="folder of other images to score the chosen policy on (held out)")
    p.add_argument("--eval-annotations", help="COCO JSON for --eval-images: AR@K there instead of agreement")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ms", type=positive_float, help="time budget per image in ms")
    budget.add_argument("--speedup", type=positive_float, metavar="X",
                        help="instead of --budget-ms: X times less time per image than the reference grid "
                             "(its time on the tuning images, in the --time mode)")
    # defaults: TuneSettings', shown in the help as %(default)s
    p.add_argument("--trials", type=positive_int, default=default_of(TuneSettings, "trials"),
                   help="finished trials the study should hold (default: %(default)s)")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///results/studies.db)")
    p.add_argument("--out", help="policy YAML to write (default: results/everything/<study>.yaml)")
    p.add_argument("--max-images", type=positive_int, default=8, help="tuning images used (default: 8)")
    p.add_argument("--eval-max-images", type=positive_int, default=8, help="--eval-images used (default: 8)")
    p.add_argument("--max-points-per-side", type=positive_int, default=default_of(TuneSettings, "max_points_per_side"),
                   help="densest grid tried (default: %(default)s)")
    p.add_argument("--max-crop-layers", type=int, default=default_of(TuneSettings, "max_crop_layers"),
                   help="most crop layers tried (default: %(default)s)")
    p.add_argument("--time", choices=("predicted", "measured"), default=default_of(TuneSettings, "time_mode"),
                   help="time objective: cost model + measured filtering (default), or full wall time")
    p.add_argument("--reference-policy", help="policy YAML whose masks define agreement "
                                              "(default: the dense 32x32 grid at the model's default thresholds)")
    p.add_argument("--sampler", choices=("nsga2", "tpe", "random"), default=default_of(TuneSettings, "sampler"),
                   help="Optuna sampler over the policies (default: %(default)s)")
    p.add_argument("--seed", type=int, default=default_of(TuneSettings, "seed"),
                   help="seed of the sampler (default: %(default)s)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: a file store in results/mlruns)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: one line per trial instead")
    p.set_defaults(func=run_tune)

    p = sub.add_parser("everything", description="Automatic mask generation over every image of a folder. Without --policy: "
                       "the dense 32x32 grid at the model's default thresholds (calibrated ones in the packaged "
                       "reference's card; SAM's 0.88 / 0.95 for other checkpoints).",
                       epilog=EVERYTHING_EPILOG, formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--policy", help="policy YAML from tune-everything or calibrate-everything "
                                    "(default: the model's default thresholds, 32x32 grid)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="output folder: <image stem>.json per image + summary.json")
    p.add_argument("--single-json", action="store_true", help="one results.json (COCO results list) instead")
    p.add_argument("--annotations", help="COCO JSON whose image ids --single-json writes (default: file names)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; under load 1 thread can be much faster)")
    p.set_defaults(func=run_everything)

    p = sub.add_parser("calibrate-everything", description=CALIBRATE_DESCRIPTION,
                       epilog=CALIBRATE_EPILOG, formatter_class=fmt)
    _add_model_args(p)
    p.add_argument("--images", required=True, help="calibration photos (training photos, not held-out ones)")
    p.add_argument("--max-images", type=positive_int, default=8, help="images used (default: 8)")
    p.add_argument("--target-masks", type=positive_float, default=12.0, help="masks per image to keep (default: 12)")
    p.add_argument("--card", help="card JSON to write everything_defaults into (default: the packaged "
                                  "reference's card, when the model is the packaged reference)")
    p.add_argument("--out", help="policy YAML to write instead (a 32x32 grid at the calibrated thresholds)")
    p.set_defaults(func=run_calibrate)

    p = sub.add_parser("everything-front", description="The Pareto front of quality against time per image of every stored policy "
                       "study (from tune-everything), one table per study.",
                       epilog=FRONT_EPILOG, formatter_class=fmt)
    p.add_argument("--device", help="only studies on this device")
    p.add_argument("--budget-ms", type=positive_float, help="only points within this time")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="output format (default: table)")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///results/studies.db)")
    p.add_argument("--plot", help="also write a PNG of the trials and the front")
    p.set_defaults(func=run_front)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_tune(args: argparse.Namespace) -> int:
    import torch

    from infra.fileio import tracking_uri
    from nas.latency.store import torch_device
    from nas.studies.study import default_storage
    from scenes.images import read_image_folder
    from supernet.modeling.predictor import predictor_for

    from .policies import load_policy
    from .tune import tune_everything

    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    if args.eval_annotations and not args.eval_images:
        raise UserError("--eval-annotations needs --eval-images")
    model, source = load_model(args.checkpoint, args.subnet, args.model_type, log=_log)
    tag = source.tag
    model.to(torch_device(args.device))
    images, skipped = read_image_folder(args.images, args.max_images, _log_skip)
    annotations = _annotations(args.annotations, images) if args.annotations else None
    eval_images = eval_annotations = None
    if args.eval_images:
        eval_images, eval_skipped = read_image_folder(args.eval_images, args.eval_max_images, _log_skip)
        skipped += eval_skipped
        if args.eval_annotations:
            eval_annotations = _annotations(args.eval_annotations, eval_images)
    digest = model_digest(model)
    reference = None
    if args.reference_policy:
        reference, ref_meta = load_policy(args.reference_policy)
        check_policy_model(args.reference_policy, ref_meta, tag, digest)
    with torch.no_grad():
        settings = TuneSettings(model_tag=tag, device=args.device, budget_ms=args.budget_ms, speedup=args.speedup,
                                trials=args.trials, out=args.out,
                                storage=args.storage or default_storage(args.results, create=True),
                                out_dir=args.results / "everything", sampler=args.sampler, seed=args.seed,
                                time_mode=args.time, max_points_per_side=args.max_points_per_side,
                                max_crop_layers=args.max_crop_layers, reference_policy=reference,
                                tracking_uri=tracking_uri(args.tracking_uri, args.results),
                                model_meta={"model_digest": digest})
        res = tune_everything(predictor_for(model), images, settings, annotations=annotations, log=_log,
                              progress=not args.no_progress, eval_images=eval_images,
                              eval_annotations=eval_annotations)
    best = res["best"]
    fit = "within" if best["within_budget"] else "OVER"
    print(f"study {res['study']}: {res['trials']} trials; best trial {best['trial']} ({res['policy'].kind}): "
          f"quality {best['quality']:.4f} ({best['evaluator']}), {best['time_ms']:.1f} ms/image ({fit} budget)")
    if "held_out" in best:
        h = best["held_out"]
        print(f"on {h['images']} other images ({args.eval_images}): quality {h['quality']:.4f} ({h['evaluator']}), "
              f"{h['time_ms']:.1f} ms/image")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(Path(p).name for p, _ in skipped)}")
    print(f"policy written to {res['out']}")
    return 0


def _log_skip(path: str, why: str) -> None:
    _log(f"skipped {path}: {why}")


def _annotations(path: str, images: list) -> tuple[dict, dict]:
    """``(COCO dataset dict, file name -> image id)`` of ``path`` for tuning on ``images``."""
    from scenes.annotations import image_ids

    coco, ids = image_ids(path, [p.name for p, _ in images])
    return coco.dataset, ids


def _image_ids(annotations: str | None, images: list) -> dict:
    """File name -> the image id to write: from ``annotations`` (every image must be in it), else the name."""
    if not annotations:
        return {Path(p).name: Path(p).name for p, _ in images}
    from scenes.annotations import image_ids

    _, ids = image_ids(annotations, [p.name for p, _ in images], every=True)
    return {name: ids[name] for name in (Path(p).name for p, _ in images)}


def run_everything(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from infra.fileio import atomic_write_text
    from infra.threads import torch_threads
    from nas.latency.store import torch_device
    from scenes.images import list_images, read_image_folder
    from supernet.modeling.predictor import predictor_for
    from supernet.modeling.sam2.model import Sam2

    from .calibrate import default_policy, model_defaults
    from .generator import MaskGenerator
    from .policies import load_policy, policy_from_dict

    if args.annotations and not args.single_json:
        raise UserError("--annotations only sets the image ids of --single-json; add --single-json")
    # bad input is a one-line error before the model loads
    policy, meta = load_policy(args.policy) if args.policy else (None, {})
    list_images(args.images)
    model, model_source = load_model(args.checkpoint, args.subnet, args.model_type, log=_log)
    tag = model_source.tag
    if policy is not None:
        check_policy_model(args.policy, meta, tag, model_digest(model))
        source = f"policy {args.policy}"
    else:
        sam2 = isinstance(model, Sam2)
        policy = default_policy(tag, sam2=sam2)
        source = model_defaults(tag, sam2=sam2)[1]
    if policy.output_mode == "binary_mask":  # files hold RLE; binary masks are for library callers
        policy = policy_from_dict({**policy.to_dict(), "output_mode": "coco_rle"})
    model.to(torch_device(args.device))
    images, skipped = read_image_folder(args.images, on_skip=_log_skip)
    ids = _image_ids(args.annotations, images) if args.single_json else {}
    gen = MaskGenerator(predictor_for(model), policy)
    out = Path(args.out)
    rows, everything, warned = [], [], False
    with torch.inference_mode(), torch_threads(args.threads):
        for path, img in tqdm(images, desc="everything", unit="image", disable=args.no_progress):
            recs = gen.generate(img)
            rows.append({"image": path.name, "masks": len(recs), "ms": round(gen.stats["total_ms"], 2),
                         "prompts": gen.stats["prompts"], "decoder_calls": gen.stats["decoder_calls"]})
            if not recs and not warned:
                warned = True
                tqdm.write(f"warning: {path.name} gave 0 masks with pred_iou_thresh {policy.pred_iou_thresh:g} and "
                           f"stability_score_thresh {policy.stability_score_thresh:g} ({source}); this model may "
                           f"never reach them: tune a policy for it with `samnas tune-everything --images "
                           f"{args.images} ...` (or `samnas calibrate-everything`) and pass it with --policy",
                           file=sys.stderr)
            if args.single_json:
                everything += [{"file_name": path.name, "image_id": ids[path.name], "category_id": 1,
                                "score": r["predicted_iou"], **r} for r in recs]
            else:
                atomic_write_text(out / f"{path.stem}.json", json.dumps(
                    {"image": path.name, "height": img.shape[0], "width": img.shape[1], "annotations": recs}))
    if args.single_json:
        atomic_write_text(out / "results.json", json.dumps(everything))
    summary = {"model": tag, "policy": policy.to_dict(), "policy_source": source, "policy_meta": meta,
               "images": rows, "skipped": [{"image": str(p), "reason": why} for p, why in skipped]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    total = sum(r["masks"] for r in rows)
    ms = sorted(r["ms"] for r in rows)
    print(f"{len(rows)} image(s), {total} masks ({total / len(rows):.1f} per image), median "
          f"{ms[len(ms) // 2]:.1f} ms/image ({policy.kind}, {source}); written to {out}"
          + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    import torch

    from nas.latency.store import torch_device
    from scenes.images import read_image_folder
    from supernet.modeling.predictor import predictor_for

    from .calibrate import REFERENCE_TAG, calibrate_thresholds, reference_card, write_card_defaults
    from .policies import Policy, save_policy

    model, source = load_model(args.checkpoint, args.subnet, args.model_type, log=_log)
    tag = source.tag
    card = args.card or (reference_card() if tag == REFERENCE_TAG and not args.out else None)
    if card is None and not args.out:
        raise UserError(f"model {tag} is not the packaged reference: give --out POLICY.yaml (or --card CARD.json)")
    model.to(torch_device(args.device))
    images, _ = read_image_folder(args.images, args.max_images, _log_skip)
    with torch.no_grad():
        found = calibrate_thresholds(predictor_for(model), images, args.target_masks, progress=True)
    found["calibration_images"] = str(args.images)
    print(f"pred_iou_thresh = stability_score_thresh = {found['pred_iou_thresh']:.2f}: "
          f"{found['masks_per_image']:.1f} masks per image on {found['images']} images (target {args.target_masks:g})")
    if card:
        write_card_defaults(card, found)
        print(f"everything_defaults written to {card}")
    if args.out:
        policy = Policy(pred_iou_thresh=found["pred_iou_thresh"], stability_score_thresh=found["stability_score_thresh"],
                        output_mode="coco_rle")
        save_policy(policy, args.out, {"model": tag, "model_digest": model_digest(model), "calibration": found})
        print(f"policy written to {args.out}")
    return 0


def run_front(args: argparse.Namespace) -> int:
    from nas.search.pareto import load_points, pareto_front, plot_front, render

    points = [p for p in load_points(args.storage, device=args.device, include_everything=True,
                                     results=args.results)
              if p.study.endswith("@everything")]
    front = pareto_front(points, budget_ms=args.budget_ms)
    sys.stdout.write(render(front, args.format))
    if args.plot:
        plot_front(points, front, args.plot, budget_ms=args.budget_ms, title="segment-everything policies")
    return 0
