"""``samnas train-supernet``: sandwich-rule supernet training with distillation (torchrun-ready)."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from infra.cliargs import default_of, positive_int
from infra.errors import UserError
from nas.training.settings import TrainSettings

EXAMPLES = """examples:
  samnas train-supernet --checkpoint vit_b_ranked.pt --space sam_vit_b --images coco/train2017 \\
      --annotations coco/annotations/instances_train2017.json --steps 20000 --out runs/vit_b
  torchrun --nproc_per_node 2 -m cli train-supernet --checkpoint ranked.pt --space sam_micro \\
      --images data/ --steps 500 --out runs/micro          # data parallel (gloo on CPU, NCCL on GPUs)
  samnas train-supernet ... --out runs/micro --resume      # continue exactly where it stopped
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-supernet", description="Each step trains the largest subnet, the smallest and K random ones, "
                       "distilled from the frozen full model (embedding MSE + mask loss on sampled prompts), "
                       "plus a ground-truth loss when --annotations is given. Writes OUT/supernet.pt (a SAM "
                       "checkpoint, ranking kept) and OUT/checkpoint.pt (exact resume state).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="ranked SAM or SAM 2 supernet checkpoint (from `samnas rank`)")
    p.add_argument("--space", required=True, help="search space whose subnets are trained")
    p.add_argument("--images", required=True, help="training image folder")
    p.add_argument("--annotations", help="COCO instances JSON for the optional ground-truth loss")
    p.add_argument("--steps", type=positive_int, required=True, help="training steps (one sandwich of subnets each)")
    p.add_argument("--out", default="results/scratch/train-supernet", help="output folder")
    # defaults: TrainSettings' (the supernet recipe), shown in the help as %(default)s
    p.add_argument("--batch-images", type=positive_int, default=default_of(TrainSettings, "batch_images"),
                   help="images per step and process (default: %(default)s)")
    p.add_argument("--random-subnets", type=int, default=default_of(TrainSettings, "random_subnets"),
                   help="K random subnets per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=default_of(TrainSettings, "lr"),
                   help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--largest-weight", type=float, default=default_of(TrainSettings, "largest_weight"),
                   help="weight of the largest subnet's loss relative to each other subnet's (default: %(default)s), "
                        "so that training the small ones costs the full model little")
    p.add_argument("--loss-points", type=int, default=default_of(TrainSettings, "loss_points"), metavar="N",
                   help="pixels per mask at which the mask losses are computed, half uniform and half around "
                        "the mask (default %(default)s: every pixel of the subnet's input frame)")
    p.add_argument("--rerank-every", type=int, default=default_of(TrainSettings, "rerank_every"),
                   help="re-rank by magnitude every N steps (default %(default)s: never)")
    p.add_argument("--checkpoint-every", type=int, default=default_of(TrainSettings, "checkpoint_every"),
                   help="write OUT/checkpoint.pt every N steps, for --resume (default: %(default)s)")
    p.add_argument("--seed", type=int, default=default_of(TrainSettings, "seed"),
                   help="seed of the subnets drawn and the data order (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--activation-checkpointing", choices=("auto", "on", "off"), default="auto",
                   help="recompute each encoder block in the backward pass instead of keeping its activations: "
                        "about a third more compute for a fraction of the memory (default auto: on for "
                        "ViT-B/L/H, off for micro and SAM 2)")
    p.add_argument("--teacher-cache", default=None,
                   help="folder for the frozen teacher's image embeddings, computed once per (teacher weights, "
                        "photo, input side) and reused by later steps and runs (default: OUT/teacher-cache; "
                        "'none': keep them in memory only)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: results/mlruns)")
    p.set_defaults(func=run_train_supernet)


def run_train_supernet(args: argparse.Namespace) -> int:
    from search_spaces.space import SearchSpace

    from supernet.elastic.ranked import load_ranked, read_ranking, save_ranked
    from scenes.sources import FolderScenes
    from nas.training.teacher_cache import TeacherCache
    from nas.training.train import setup_distributed, train

    # Every check happens before the first step.
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.loss_points < 0:
        raise UserError(f"--loss-points must be 0 (every pixel) or a number of pixels per mask, got {args.loss_points}")
    space = SearchSpace.load(args.space)
    if space.is_sam2 and args.activation_checkpointing == "on":
        raise UserError(f"--activation-checkpointing on: only SAM 1's ViT blocks have it; space {space.name} is "
                        f"SAM 2 (use auto or off)")
    source = FolderScenes(args.images, args.annotations, seed=args.seed)
    model, ranking = load_ranked(args.checkpoint)
    if model.arch.name != space.model_type:
        raise UserError(f"--checkpoint {args.checkpoint} is a {model.arch.name} model, but space {space.name} "
                        f"is for {space.model_type}")
    out = Path(args.out)
    resume = out / "checkpoint.pt" if args.resume else None
    if resume is not None and not resume.is_file():
        raise UserError(f"--resume: {resume} not found")
    teacher = copy.deepcopy(model)
    checkpointing = not space.is_sam2 and (args.activation_checkpointing == "on" or (
        args.activation_checkpointing == "auto" and model.arch.name != "micro"))
    cache_dir = None if args.teacher_cache == "none" else Path(args.teacher_cache or out / "teacher-cache")
    settings = TrainSettings(steps=args.steps, batch_images=args.batch_images, lr=args.lr,
                             random_subnets=args.random_subnets, largest_weight=args.largest_weight,
                             use_gt=args.annotations is not None,
                             distill=True, sandwich=True, rerank_every=args.rerank_every,
                             checkpoint_every=args.checkpoint_every, seed=args.seed, space=space.to_dict(),
                             activation_checkpointing=checkpointing, loss_points=args.loss_points)
    rank, _ = setup_distributed()
    log_metrics, run = None, None
    if rank == 0:
        from infra.fileio import tracking_uri

        uri = tracking_uri(args.tracking_uri, args.results)
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(f"train-supernet@{space.name}")
        run = mlflow.start_run(run_name=out.name)
        mlflow.log_params({"checkpoint": args.checkpoint, "space": space.name, "images": args.images,
                           "annotations": args.annotations, "steps": args.steps, "lr": args.lr,
                           "batch_images": args.batch_images, "random_subnets": args.random_subnets,
                           "rerank_every": args.rerank_every, "seed": args.seed, "loss_points": args.loss_points,
                           "activation_checkpointing": checkpointing, "teacher_cache": str(cache_dir)})

        def mlflow_log(metrics, step):
            mlflow.log_metrics({k.replace("/", "."): v for k, v in metrics.items()}, step=step)

        log_metrics = mlflow_log

    cache = TeacherCache(teacher, cache_dir)
    try:
        train(model, source, settings, out, teacher=teacher, space=space, resume=resume, log_metrics=log_metrics,
              extra={"source_checkpoint": str(args.checkpoint)}, teacher_cache=cache)
    finally:
        if run is not None:
            import mlflow

            mlflow.end_run()
    if rank == 0:
        info = {"method": (ranking or {}).get("method", "none"), "blocks": (ranking or {}).get("blocks", [])}
        path = save_ranked(model, info, out / "supernet.pt", source=args.checkpoint,
                           images=(ranking or {}).get("calibration_images", []))
        meta = read_ranking(path)
        print(f"trained {space.name} supernet for {args.steps} steps; wrote {path} (+ .json) and "
              f"{out / 'checkpoint.pt'}; ranking {meta['method']}")
        print(f"teacher embeddings: {cache.hits} reused, {cache.misses} computed"
              + (f" (cached in {cache_dir})" if cache_dir else "")
              + f"; activation checkpointing {'on' if checkpointing else 'off'}")
    return 0
