"""CLI: ``samnas everything``, ``samnas tune-everything`` and ``samnas everything-front``."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from supernet.errors import UserError

TUNE_EPILOG = """examples:
  samnas tune-everything --images photos/ --budget-ms 300 --trials 30 --out policy.yaml
  samnas tune-everything --checkpoint sam_micro.pt --images scenes/train --annotations scenes/annotations/instances_train.json --budget-ms 200 --trials 40
  samnas everything --policy policy.yaml --images photos/ --out masks/
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "model"


def load_model(checkpoint: str | None, subnet: str | None, model_type: str | None = None, log=print):
    """``(Sam, tag)`` from ``--checkpoint``, ``--subnet``, else the packaged sam_micro reference.

    With neither and no packaged weights, a seeded random micro model (and a warning: quality
    figures are then meaningless).
    """
    if checkpoint and subnet:
        raise UserError("give --checkpoint or --subnet, not both")
    if subnet:
        from supernet.extract import load_subnet

        return load_subnet(subnet).eval(), f"subnet-{_slug(Path(subnet).resolve().name)}"
    from supernet.checkpoint import infer_model_type, load_sam, sam_state_dict_from_file

    if checkpoint:
        model = load_sam(checkpoint, model_type)
        sd, _ = sam_state_dict_from_file(checkpoint)
        return model.eval(), f"sam_{infer_model_type(sd)}-{_slug(Path(checkpoint).stem)}"
    from supernet.reference import reference_checkpoint

    ref = reference_checkpoint("micro")
    if ref is not None:
        return load_sam(ref).eval(), "sam_micro"
    from supernet.build import build_sam

    log("warning: no packaged sam_micro weights: using random weights (quality figures are meaningless)")
    return build_sam("micro", seed=0).eval(), "sam_micro-random"


def torch_device(device: str) -> str:
    """Device slug (``cpu-torch``, ``cuda-torch@host``) -> torch device string."""
    return "cuda" if device.split("@")[0].startswith("cuda") else "cpu"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="SAM checkpoint (Meta/HF layout; default: packaged sam_micro)")
    src.add_argument("--subnet", help="folder written by `samnas extract` / `samnas export`")
    p.add_argument("--model-type", help="vit_b | vit_l | vit_h | micro (checked against --checkpoint)")
    p.add_argument("--device", default="cpu-torch", help="device slug (default: cpu-torch)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune-everything", help="tune the segment-everything policy for a model, device and budget",
                       epilog=TUNE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    p.add_argument("--images", required=True, help="folder of tuning images")
    p.add_argument("--annotations", help="COCO instances JSON: mask AR@10/100/1000 instead of agreement")
    p.add_argument("--budget-ms", type=float, required=True, help="time budget per image in ms")
    p.add_argument("--trials", type=int, default=30, help="finished trials the study should hold (default: 30)")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///results/studies.db)")
    p.add_argument("--out", help="policy YAML to write (default: results/everything/<study>.yaml)")
    p.add_argument("--max-images", type=int, default=8, help="tuning images used (default: 8)")
    p.add_argument("--max-points-per-side", type=int, default=32, help="densest grid tried (default: 32)")
    p.add_argument("--max-crop-layers", type=int, default=1, help="most crop layers tried (default: 1)")
    p.add_argument("--time", choices=("predicted", "measured"), default="predicted",
                   help="time objective: cost model + measured filtering (default), or full wall time")
    p.add_argument("--reference-policy", help="policy YAML whose masks define agreement (default: SAM's grid)")
    p.add_argument("--sampler", choices=("nsga2", "tpe", "random"), default="nsga2")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_tune)

    p = sub.add_parser("everything", help="segment everything in a folder of images with a policy file")
    _add_model_args(p)
    p.add_argument("--policy", help="policy YAML from tune-everything (default: SAM's 32x32 grid)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="output folder: <image stem>.json per image + summary.json")
    p.add_argument("--single-json", action="store_true", help="one results.json (COCO results list) instead")
    p.set_defaults(func=run_everything)

    p = sub.add_parser("everything-front", help="Pareto front (quality vs. ms per image) of policy studies")
    p.add_argument("--device", help="only studies on this device")
    p.add_argument("--budget-ms", type=float, help="only points within this time")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///results/studies.db)")
    p.add_argument("--plot", help="also write a PNG of the trials and the front")
    p.set_defaults(func=run_front)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run_tune(args: argparse.Namespace) -> int:
    import torch

    from nas.study import study_name
    from supernet.fileio import results_root

    from .policies import load_policy
    from .tune import load_annotations, read_images, tune_everything

    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    model, tag = load_model(args.checkpoint, args.subnet, args.model_type, log=_log)
    model.to(torch_device(args.device))
    from supernet.predictor import SamPredictor

    images, skipped = read_images(args.images, args.max_images, log=_log)
    annotations = load_annotations(args.annotations, images) if args.annotations else None
    reference = load_policy(args.reference_policy)[0] if args.reference_policy else None
    out = args.out or results_root() / "everything" / f"{study_name(tag, args.device, args.budget_ms, 'everything')}.yaml"
    with torch.no_grad():
        res = tune_everything(SamPredictor(model), images, args.device, args.budget_ms, args.trials, tag,
                              storage=args.storage, annotations=annotations, out=out, sampler=args.sampler,
                              seed=args.seed, time_mode=args.time, max_points_per_side=args.max_points_per_side,
                              max_crop_layers=args.max_crop_layers, reference_policy=reference, log=_log)
    best = res["best"]
    fit = "within" if best["within_budget"] else "OVER"
    print(f"study {res['study']}: {res['trials']} trials; best trial {best['trial']} ({res['policy'].kind}): "
          f"quality {best['quality']:.4f}, {best['time_ms']:.1f} ms/image ({fit} budget)")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(Path(p).name for p, _ in skipped)}")
    print(f"policy written to {res['out']}")
    return 0


def run_everything(args: argparse.Namespace) -> int:
    import torch

    from supernet.fileio import atomic_write_text
    from supernet.predictor import SamPredictor

    from .generator import MaskGenerator
    from .policies import Policy, load_policy, policy_from_dict
    from .tune import read_images

    policy, meta = load_policy(args.policy) if args.policy else (Policy(), {})
    if policy.output_mode == "binary_mask":  # files hold RLE; binary masks are for library callers
        policy = policy_from_dict({**policy.to_dict(), "output_mode": "coco_rle"})
    model, tag = load_model(args.checkpoint, args.subnet, args.model_type, log=_log)
    model.to(torch_device(args.device))
    gen = MaskGenerator(SamPredictor(model), policy)
    images, skipped = read_images(args.images, log=_log)
    out = Path(args.out)
    rows, everything = [], []
    with torch.no_grad():
        for i, (path, img) in enumerate(images):
            recs = gen.generate(img)
            rows.append({"image": path.name, "masks": len(recs), "ms": round(gen.stats["total_ms"], 2),
                         "prompts": gen.stats["prompts"], "decoder_calls": gen.stats["decoder_calls"]})
            if args.single_json:
                everything += [{"file_name": path.name, "image_id": i + 1, "category_id": 1,
                                "score": r["predicted_iou"], **r} for r in recs]
            else:
                atomic_write_text(out / f"{path.stem}.json", json.dumps(
                    {"image": path.name, "height": img.shape[0], "width": img.shape[1], "annotations": recs}))
    if args.single_json:
        atomic_write_text(out / "results.json", json.dumps(everything))
    summary = {"model": tag, "policy": policy.to_dict(), "policy_meta": meta, "images": rows,
               "skipped": [{"image": p, "reason": why} for p, why in skipped]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    total = sum(r["masks"] for r in rows)
    ms = sorted(r["ms"] for r in rows)
    print(f"{len(rows)} image(s), {total} masks, median {ms[len(ms) // 2]:.1f} ms/image ({policy.kind}); "
          f"written to {out}" + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    return 0


def run_front(args: argparse.Namespace) -> int:
    from nas.pareto import load_points, pareto_front, plot_front, render

    points = [p for p in load_points(args.storage, device=args.device, include_everything=True)
              if p.study.endswith("@everything")]
    front = pareto_front(points, budget_ms=args.budget_ms)
    sys.stdout.write(render(front, args.format))
    if args.plot:
        plot_front(points, front, args.plot, budget_ms=args.budget_ms, title="segment-everything policies")
    return 0
