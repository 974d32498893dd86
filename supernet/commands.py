"""``samnas rank``: importance-rank a SAM checkpoint into a ranked supernet checkpoint."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from infra.cliargs import positive_int
from infra.errors import UserError
from scenes.images import list_images, load_image
from supernet.modeling.predictor import image_to_model_input
from supernet.elastic.build import MODEL_TYPES
from supernet.elastic.ranked import load_ranked, save_ranked
from supernet.elastic.ranking import METHODS, rank_model

RANK_EXAMPLES = """examples:
  samnas rank --checkpoint sam_vit_b_01ec64.pth --model-type vit_b --images photos/ --method wanda --out vit_b_ranked.pt
  samnas rank --checkpoint model.safetensors --images photos/ --method taylor --max-images 16 --out ranked.pt
  samnas rank --checkpoint sam2.1_hiera_tiny.pt --images photos/ --out hiera_t_ranked.pt   # SAM 2.1: type inferred
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rank",
        description="Score every attention head and MLP neuron of the image encoder on calibration images, "
        "then permute the weights so that each 'keep the first k' slice keeps the most important units. "
        "Writes the ranked checkpoint (still a valid SAM checkpoint) and a JSON sidecar with the ranking.",
        epilog=RANK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True,
                   help="SAM or SAM 2 / 2.1 weights: Meta .pth/.pt or Hugging Face .safetensors/.bin")
    p.add_argument("--model-type", choices=MODEL_TYPES, help="checked against the weights; inferred if omitted")
    p.add_argument("--images", help="folder of calibration images (not needed for --method magnitude)")
    p.add_argument("--method", choices=METHODS, default="wanda", help="importance score (default: wanda)")
    p.add_argument("--max-images", type=positive_int, default=32, help="use at most this many images (default: 32)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="output checkpoint (.pt); metadata goes to the same name with .json")
    p.set_defaults(func=run_rank)


def calibration_paths(folder: str | None, method: str, max_images: int) -> list[Path]:
    """The images a method needs (none for magnitude); UserError when a needed folder is unusable."""
    if method == "magnitude" and folder is None:
        return []
    if folder is None:
        raise UserError(f"--images is required for --method {method}")
    if max_images < 1:
        raise UserError(f"--max-images must be at least 1, got {max_images}")
    return list_images(folder)[:max_images]


def run_rank(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = calibration_paths(args.images, args.method, args.max_images)
    out = Path(args.out)
    if out.suffix == ".json":
        raise UserError(f"--out {out}: give the checkpoint name (.pt); the .json sidecar is written beside it")
    model, previous = load_ranked(args.checkpoint, args.model_type)
    if previous:
        print(f"note: {args.checkpoint} was already ranked by {previous['method']}; ranking again")
    inputs, used, skipped = [], [], []
    for path in tqdm(paths, desc="reading images", unit="img", disable=not paths):
        try:
            inputs.append(image_to_model_input(model, load_image(path))[0])
            used.append(path.name)
        except UserError as exc:
            skipped.append(str(exc))
    for reason in skipped:
        print(f"skipped: {reason}")
    if paths and not inputs:
        raise UserError(f"{args.images}: none of the {len(paths)} images could be read")

    def images():
        return tqdm(inputs, desc=f"{args.method} scores", unit="img")

    start = time.perf_counter()
    ranking = rank_model(model, args.method, images=images if inputs else None)
    save_ranked(model, ranking, out, source=args.checkpoint, images=used)
    print(f"ranked {model.arch.name} by {args.method} on {len(used)} images "
          f"({len(skipped)} skipped) in {time.perf_counter() - start:.1f} s")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
