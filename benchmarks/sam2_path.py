"""Benchmark of the whole user path on a SAM 2.1 model: each step's wall time and peak memory.

A user arrives with Meta's ``sam2.1_hiera_tiny.pt`` and photos, and runs through the ``samnas`` CLI,
each step in its own process, at ``--threads`` (default 1):

1. ``rank`` (wanda) on ``--rank-images`` photos, at the model's own input side (1024 px);
2. ``train-supernet`` for ``--train-steps`` sandwich steps, batch ``--batch-images``;
3. ``latency profile`` (the block lookup table + ``--profile-samples`` subnets, 3 runs each, 1 round)
   and ``latency fit``;
4. ``search`` (``--search-trials`` trials, fidelity evaluator on ``--eval-images`` photos, then the front
   measured on this machine) and ``pareto``;
5. ``export`` of the front's best-quality subnet (checkpoint, ONNX encoder and decoder checked against
   PyTorch, card with each runtime timed ``--repeats 2``);
6. ``everything`` with the exported subnet on ``--everything-images`` photo(s), default thresholds.

Training, profiling, search and export run on the space restricted to ``--resolution`` px (a copy of
its YAML, as ``benchmarks/vit_b_pipeline.py`` does). A failed step does not end the run: the table
records its status (its first error line) and the steps that needed it are skipped, so the script
also runs where a command does not take SAM 2 yet.

Random weights (``build_sam2(model_type, seed=0)`` saved in Meta's layout, ``{"model": state dict}``)
stand in for the checkpoint, which cannot be downloaded here: time and memory do not depend on
the weight values; the quality numbers of such a run mean nothing.

Photos: ``--photos`` (default ``../shared/data/tiny_coco``): train2017 for rank and training, val2017
for the search; ``--everything-photos`` (default ``../shared/data/images``) for everything.

    python benchmarks/sam2_path.py                 # hiera_t at 512 px: results/sam2_path.md
    python benchmarks/sam2_path.py --space sam2_micro --resolution 256 --rank-images 2 --train-steps 1 \\
        --profile-samples 5 --search-trials 2 --eval-images 2 --topic sam2_path_smoke    # smoke (~2 min)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import ROOT, markdown_table, shown_path
from vit_b_pipeline import (Step, add_path_options, front_rows, latency_steps, path_header, path_work, photo_folder,
                            rank_step, run_step, search_step, space_at, tail_steps, train_step, write_path_table)

from search_spaces.space import SearchSpace
from supernet.modeling.sam2.build import build_sam2

DATA = ROOT.parent / "shared" / "data"
DEVICE = "cpu-torch@sam2_path"
WORK = "WORK"  # how the table shows the temporary work folder in the commands


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="sam2_hiera_t", help="a SAM 2 search space")
    parser.add_argument("--resolution", type=int, default=512, help="input side of training, search and export")
    parser.add_argument("--photos", type=Path, default=DATA / "tiny_coco", help="folder with train2017/, val2017/")
    parser.add_argument("--everything-photos", type=Path, default=DATA / "images")
    add_path_options(parser, threads=1, topic="sam2_path")
    return parser.parse_args(argv)


def write_random_checkpoint(model_type: str, path: Path) -> Path:
    """The full SAM 2 image model of ``model_type`` at random weights (seed 0) in Meta's checkpoint layout."""
    torch.save({"model": build_sam2(model_type, seed=0).state_dict()}, path)
    return path


def planned_steps(args, space: SearchSpace, work: Path) -> list[tuple[Step, tuple[str, ...]]]:
    """The steps up to ``pareto``, each with the names of the steps whose outputs it reads."""
    rank_photos = photo_folder(args.photos / "train2017", args.rank_images, work / "photos_rank")
    eval_photos = photo_folder(args.photos / "val2017", args.eval_images, work / "photos_eval")
    checkpoint = write_random_checkpoint(space.model_type, work / f"{space.model_type}_random.pt")
    space_file = space_at(space, args.resolution, work)
    uri = (work / "mlruns").as_uri()
    profile, fit = latency_steps(space_file, DEVICE, args.profile_samples, args.threads)
    return [
        (rank_step("rank", checkpoint, None, rank_photos, args.rank_images, args.threads, work / "ranked.pt"), ()),
        (train_step("train-supernet", work / "ranked.pt", space_file, rank_photos, args, work / "train", uri),
         ("rank",)),
        (profile, ()),
        (fit, ("latency profile",)),
        (search_step(space_file, DEVICE, work / "train" / "supernet.pt", eval_photos, args, uri),
         ("train-supernet", "latency fit")),
        (Step("pareto", ["pareto", "--space", f"{space.name}_{args.resolution}", "--format", "json"]), ("search",)),
    ]


def run_path(args, space: SearchSpace, work: Path, env: dict) -> list[Step]:
    """Every step, in order; a step whose inputs come from a step that did not succeed is skipped."""
    done: dict[str, Step] = {}

    def run(step: Step, needs: tuple[str, ...], skip: str | None = None) -> None:
        missing = [name for name in needs if done[name].status != "ok"]
        skip = f"{missing[0]} did not succeed" if missing else skip
        if skip:
            step.status, step.peak_gib = f"skipped: {skip}", float("nan")
        else:
            run_step(step, work, env, args.quiet, check=False, profile=False)
        done[step.name] = step

    photos = photo_folder(args.everything_photos, args.everything_images, work / "photos_everything")
    for step, needs in planned_steps(args, space, work):
        run(step, needs)
    front = front_rows(done["pareto"]) if done["pareto"].status == "ok" else []
    best = max(front, key=lambda row: row["quality"]) if front else None
    export, everything = tail_steps(best, work, photos, args.everything_images, args.threads)
    run(export, ("pareto",), None if best else "pareto printed no front")
    run(everything, ("export",))
    return list(done.values())


def table_rows(steps: list[Step], work: Path) -> list[dict]:
    """One row per step (a skipped one without time or memory); the work folder shown as :data:`WORK` and the
    repository as ``.``, so that no path of this machine shows, and ``|`` kept out of the markdown cells."""
    def shown(text: str) -> str:
        return text.replace(str(work), WORK).replace(str(ROOT), ".").replace("|", "/")

    rows = []
    for s in steps:
        ran = not s.status.startswith("skipped")
        rows.append({"step": s.name, "work": f"{s.units} {s.unit}{'s' if s.units != 1 else ''}",
                     "command": shown("samnas " + " ".join(s.argv)), "wall_s": f"{s.wall_s:.1f}" if ran else "",
                     "peak_rss_gib": f"{s.peak_gib:.2f}" if ran and s.peak_gib == s.peak_gib else "",
                     "status": shown(s.status)[:240]})
    return rows


def describe(args, space: SearchSpace, steps: list[Step], rows: list[dict]) -> str:
    """The table's text: what ran, on what weights and photos, and what each column means."""
    ran = [s for s in steps if s.status == "ok"]
    peak = max((s.peak_gib for s in ran), default=float("nan"))
    return "\n".join([
        f"Model: `{space.model_type}` with **random weights** (seed 0) in Meta's SAM 2.1 layout standing in for the "
        "real checkpoint (none can be downloaded here): time and memory are what a real checkpoint costs; the quality "
        f"numbers of this run mean nothing. Training, profiling, search and export on `{space.name}` restricted to "
        f"{args.resolution} px; `rank` runs at the model's own input side. {args.threads} thread(s) in every step. "
        f"Photos: `{shown_path(args.photos)}` train2017 for rank and training, val2017 for the search; "
        f"`{shown_path(args.everything_photos)}` for everything.",
        "",
        f"Sizes: rank on {args.rank_images} photos (wanda); {args.train_steps} training steps of batch "
        f"{args.batch_images}; latency profile of the block table plus {args.profile_samples} subnets (3 timed runs "
        f"each, 1 round), device `{DEVICE}`; search of {args.search_trials} trials (fidelity evaluator on "
        f"{args.eval_images} photos, then the front measured); export of the front's best-quality subnet (each "
        f"runtime timed twice for the card); everything on {args.everything_images} photo(s), default thresholds.",
        "",
        "Columns: `wall_s` the step's wall time, its own process from start-up to exit (one run); `peak_rss_gib` "
        "that process's peak resident memory in GiB (VmHWM, or a child process's ru_maxrss if larger); `status` "
        "`ok`, `failed:` with the command's first error line, or `skipped:` when a step it reads from did not "
        "succeed. `WORK` is the temporary work folder.",
        "",
        markdown_table([{**r, "command": f"`{r['command']}`"} for r in rows], list(rows[0])),
        "",
        f"- steps that succeeded: {len(ran)} of {len(steps)}, {sum(s.wall_s for s in ran):.1f} s in all; largest "
        f"peak resident memory among them: {peak:.2f} GiB",
    ])


def main(argv=None) -> int:
    args = parse_args(argv)
    space = SearchSpace.load(args.space)
    if not space.is_sam2:
        raise SystemExit(f"--space {args.space}: a SAM 1 space; benchmarks/vit_b_pipeline.py runs SAM 1's path")
    work, env = path_work(args.keep, "samnas-sam2-path-", args.threads)
    steps = run_path(args, space, work, env)
    rows = table_rows(steps, work)
    header = path_header("sam2_path.py", argv, args.threads)
    csv_rows = [{**r, "space": space.name, "resolution": args.resolution, "weights": "random"} for r in rows]
    write_path_table(args.topic, f"The user path on SAM 2.1 {space.model_type} at {args.resolution} px "
                     "(random weights): time and memory per step", header, describe(args, space, steps, rows),
                     csv_rows, work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
