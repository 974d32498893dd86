"""Benchmark of the whole user path on a full-size SAM: what each step costs in time and memory.

A user arrives with a Meta-layout checkpoint and photos, and runs, through the ``samnas`` CLI:

1. ``rank`` (wanda) on ``--rank-images`` photos, at the model's full input side;
2. ``train-supernet`` for ``--train-steps`` sandwich steps (largest, smallest and 2 random
   subnets, each distilled from the frozen full model), batch ``--batch-images``, at
   ``--resolution``, then again at each ``--extra-train-resolutions`` side;
3. ``latency profile`` (block lookup table + ``--profile-samples`` subnets) and ``latency fit``
   for this CPU at ``--resolution``;
4. ``search`` (``--search-trials`` trials, fidelity evaluator on ``--eval-images`` photos);
5. ``pareto``, ``export`` (checkpoint, ONNX encoder checked against PyTorch, card) of the
   front's best-quality subnet, and ``everything`` with the exported subnet on
   ``--everything-images`` photos (SAM's dense 32x32 grid).

Every step runs in its own process, as a user runs it. Per step the table gives the wall time,
the peak resident memory of that process (its ``VmHWM``, or a child process's ``ru_maxrss`` if larger), and where its CPU time
went according to cProfile: torch's operators (the model), samnas's own Python, and other
libraries (numpy, Pillow, Optuna, ONNX, ...). The trial cost of the search is compared with one
full-model encoder pass at the search resolution, timed in this process with the same threads.

``--extra-models`` (default ``vit_l vit_h``) are loaded, ranked (wanda, ``--extra-rank-images``
photos) and cut to one sampled subnet with ``extract``, with time and peak memory per step.

Random weights (``build_sam(model_type, seed=0)`` saved in Meta's layout) stand in for the real
checkpoints, which cannot be downloaded on the machine this was written on: time and memory do
not depend on the weight values, the quality numbers of such a run mean nothing.

Photos: the first photos of ``--photos`` (default: ``../shared/data/coco128/images``), train2017
for rank and train-supernet, val2017 for search and everything.

The table also projects each step to a realistic user run (``--project-trials`` search trials,
``--project-steps`` training steps, ``--project-photos`` photos ranked and segmented) by
scaling the measured per-unit cost; setup costs (loading, references) are counted once.

    python benchmarks/vit_b_pipeline.py                              # ViT-B at 1024 px, then vit_l and vit_h
    python benchmarks/vit_b_pipeline.py --resolution 512 --topic vit_b_pipeline_512 --extra-models
    python benchmarks/vit_b_pipeline.py --model-type micro --space sam_micro --resolution 128 --extra-models  # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import yaml

from common import ROOT, machine_header, markdown_table, reproduce_command, shown_path, write_results

from nas.measure.timing import time_callable
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam

PHOTOS = ROOT.parent / "shared" / "data" / "coco128" / "images"
DEVICE = "cpu-torch@pipeline"
RANK_LOOP = ("supernet/elastic/ranking.py", "compute_scores")  # the part of `rank` that grows with the photos
TRAIN_LOOP = ("nas/training/train.py", "train")  # the part of `train-supernet` that grows with the steps


@dataclass
class Step:
    """One measured step: a CLI command in its own process."""

    name: str
    argv: list[str]
    units: int = 1  # how many units of work (photos, steps, trials) the step did
    unit: str = "run"
    project_units: int = 1  # the same step in the projected user run
    loop: tuple[str, str] | None = None  # (file suffix, function) whose cumulative time grows with the units
    fixed_s: float = 0.0  # of the wall time, the part that does not grow with units (start-up, loading, set-up)
    wall_s: float = 0.0
    peak_gib: float = 0.0
    shares: dict = field(default_factory=dict)
    output: str = ""
    status: str = ""  # "ok", or "failed: <its first error line>" (run_step with check=False)


def cpu_shares(profile: Path) -> dict[str, float]:
    """Share of the profiled CPU time in torch's operators, samnas's own code and other libraries."""
    stats = pstats.Stats(str(profile))
    buckets = {"torch": 0.0, "samnas": 0.0, "other": 0.0}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if "torch" in filename or "torch" in name:
            buckets["torch"] += tottime
        elif filename.startswith(str(ROOT)) and "site-packages" not in filename:
            buckets["samnas"] += tottime
        else:
            buckets["other"] += tottime
    total = sum(buckets.values()) or 1.0
    return {k: v / total for k, v in buckets.items()}


# Runs one CLI command under cProfile (none when the profile path is "-") and writes the process's peak
# resident memory (KiB) to a file, whatever the exit: VmHWM of its own address space, not ru_maxrss, which on
# Linux carries over the high-water mark of the process it was forked from (here the benchmark, holding a
# model at times).
LAUNCHER = """
import cProfile, resource, sys
profile, rss, *argv = sys.argv[1:]
sys.argv = ["samnas", *argv]
import cli
code = 0
profiler = cProfile.Profile() if profile != "-" else None
try:
    code = (profiler.runcall(cli.main) if profiler else cli.main()) or 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    if profiler:
        profiler.dump_stats(profile)
    own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    open(rss, "w").write(str(max(own, children)))
sys.exit(code)
"""


def cumulative_seconds(profile: Path, file_suffix: str, function: str) -> float:
    """Cumulative seconds of ``function`` defined in a file ending with ``file_suffix`` (0 if never called)."""
    stats = pstats.Stats(str(profile))
    return sum(ct for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items()
               if name == function and filename.endswith(file_suffix))


def first_error_line(output: str) -> str:
    """The line of a failed command's output that says why: samnas's one-line ``samnas: error:``, else the
    last exception line of a traceback, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("samnas: error:"):
            return line
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (raised or lines or ["no output"])[-1]


def run_step(step: Step, work: Path, env: dict, quiet: bool, check: bool = True, profile: bool = True) -> Step:
    """Run ``samnas <argv>`` in a child process (under cProfile with ``profile``); record wall time, peak RSS,
    shares and ``status``. A failed step ends the benchmark, or with ``check=False`` is recorded as failed."""
    stem = work / step.name.replace(" ", "_").replace(":", "")
    prof, rss = stem.with_suffix(".prof"), stem.with_suffix(".rss")
    argv = [sys.executable, "-c", LAUNCHER, str(prof) if profile else "-", str(rss), *step.argv]
    if not quiet:
        print(f"== {step.name}: samnas {' '.join(step.argv)}", flush=True)
    began = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    step.wall_s = time.perf_counter() - began
    step.output = proc.stdout
    if proc.returncode != 0 and check:
        raise SystemExit(f"step {step.name!r} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    step.status = "ok" if proc.returncode == 0 else f"failed: {first_error_line(proc.stdout)}"
    # VmHWM and ru_maxrss are in KiB on Linux; no file when the process died before writing it
    step.peak_gib = int(rss.read_text()) / 2**20 if rss.is_file() else float("nan")
    if profile and prof.is_file():
        step.shares = cpu_shares(prof)
        if step.loop is not None:
            step.fixed_s = max(0.0, step.wall_s - cumulative_seconds(prof, *step.loop))
    if not quiet:
        print(f"   {step.wall_s:.1f} s, peak {step.peak_gib:.2f} GiB, {step.status}", flush=True)
    return step


def photo_folder(src: Path, count: int, dest: Path) -> Path:
    """A folder with links to the first ``count`` photos of ``src`` (sorted by name)."""
    dest.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    if len(photos) < count:
        raise SystemExit(f"{src}: {len(photos)} photos, {count} needed")
    for p in photos:
        link = dest / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return dest


def space_at(space: SearchSpace, resolution: int, work: Path) -> Path:
    """A copy of the space's YAML restricted to one input side (so the search and training stay there)."""
    data = yaml.safe_load(Path(space.source).read_text()) if Path(space.source).is_file() else space.to_dict()
    data = {**data, "name": f"{space.name}_{resolution}", "resolutions": [resolution]}
    path = work / f"{space.name}_{resolution}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def full_encoder_seconds(model_type: str, resolution: int, repeats: int) -> float:
    """Median seconds of one full-model image-encoder pass at ``resolution`` (random weights)."""
    model = build_sam(model_type, seed=0).eval()
    model.set_resolution(resolution)
    x = torch.randn(1, 3, resolution, resolution)
    with torch.inference_mode():
        timing = time_callable(lambda: model.image_encoder(x), repeats=repeats, warmup=1)
    return timing.median_ms / 1000


def bf16_check(model_type: str, resolution: int, photo: Path, repeats: int) -> dict:
    """bf16 autocast against fp32 for the full encoder on one photo: error and time (interleaved runs)."""
    from nas.export.onnx_export import compare_embeddings
    from scenes.images import load_image
    from supernet.modeling.transforms import ResizeLongestSide

    model = build_sam(model_type, seed=0).eval()
    model.set_resolution(resolution)
    resized = ResizeLongestSide(resolution).apply_image(load_image(photo))
    x = model.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())
    times = {"fp32": [], "bf16": []}
    outputs = {}
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round warms up
            for kind in times:
                began = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"):
                    outputs[kind] = model.image_encoder(x).float()
                times[kind].append(time.perf_counter() - began)
    error = compare_embeddings(outputs["bf16"], outputs["fp32"])
    median = {k: sorted(v[1:])[len(v[1:]) // 2] for k, v in times.items()}
    return {**error, "fp32_s": median["fp32"], "bf16_s": median["bf16"]}


def add_path_options(parser: argparse.ArgumentParser, threads: int, topic: str) -> None:
    """The sizes of a user-path run (photos per step, training steps, profiled subnets, search trials), its
    threads and table topic, and the work folder: the options both user-path benchmarks take."""
    parser.add_argument("--rank-images", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--batch-images", type=int, default=1)
    parser.add_argument("--profile-samples", type=int, default=6)
    parser.add_argument("--search-trials", type=int, default=4)
    parser.add_argument("--eval-images", type=int, default=4)
    parser.add_argument("--everything-images", type=int, default=1)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--topic", default=topic)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--quiet", action="store_true")


def rank_step(name: str, checkpoint: Path, model_type: str | None, photos: Path, count: int, threads: int,
              out: Path) -> Step:
    """``samnas rank`` by wanda on ``count`` photos of ``photos`` (``model_type`` None: read from the weights)."""
    typed = ["--model-type", model_type] if model_type else []
    return Step(name, ["rank", "--checkpoint", str(checkpoint), *typed, "--images", str(photos), "--method", "wanda",
                       "--max-images", str(count), "--threads", str(threads), "--out", str(out)],
                count, "photo", loop=RANK_LOOP)


def train_step(name: str, checkpoint: Path, space_file: Path, photos: Path, args, out: Path, uri: str) -> Step:
    """``samnas train-supernet`` for ``args.train_steps`` steps of ``args.batch_images`` photos of ``photos``."""
    return Step(name, ["train-supernet", "--checkpoint", str(checkpoint), "--space", str(space_file), "--images",
                       str(photos), "--steps", str(args.train_steps), "--batch-images", str(args.batch_images),
                       "--out", str(out), "--tracking-uri", uri],
                args.train_steps, "step", loop=TRAIN_LOOP)


def latency_steps(space_file: Path, device: str, samples: int, threads: int) -> list[Step]:
    """``samnas latency profile`` (block table + ``samples`` subnets, 3 runs each, 1 round) and ``latency fit``."""
    return [Step("latency profile", ["latency", "profile", "--space", str(space_file), "--device", device, "--blocks",
                                     "--samples", str(samples), "--repeats", "3", "--rounds", "1", "--warmup", "1",
                                     "--min-seconds", "0", "--threads", str(threads)], samples, "subnet", samples),
            Step("latency fit", ["latency", "fit", "--device", device])]


def search_step(space_file: Path, device: str, checkpoint: Path, photos: Path, args, uri: str) -> Step:
    """``samnas search`` of ``args.search_trials`` trials on ``args.eval_images`` photos, the device profiled."""
    return Step("search", ["search", "--space", str(space_file), "--device", device, "--checkpoint", str(checkpoint),
                           "--images", str(photos), "--max-images", str(args.eval_images), "--trials",
                           str(args.search_trials), "--no-auto-profile", "--tracking-uri", uri],
                args.search_trials, "trial")


def tail_steps(best: dict | None, work: Path, photos: Path, count: int, threads: int) -> list[Step]:
    """``samnas export`` of the front row ``best`` (to ``work/subnet``), then ``everything`` with it on ``count``
    photos of ``photos`` (to ``work/masks``). ``best`` None: the export's study and trial stay placeholders."""
    study, trial = (best["study"], str(best["trial"])) if best else ("STUDY", "N")
    return [Step("export", ["export", "--study", study, "--trial", trial, "--out", str(work / "subnet"),
                            "--repeats", "2"]),
            Step("everything", ["everything", "--subnet", str(work / "subnet"), "--images", str(photos), "--out",
                                str(work / "masks"), "--threads", str(threads), "--no-progress"], count, "photo")]


def front_rows(pareto: Step) -> list[dict]:
    """The rows ``samnas pareto --format json`` printed ([] when it printed none)."""
    try:
        return json.loads(pareto.output[pareto.output.index("["):])
    except ValueError:
        return []


def path_header(script: str, argv, threads: int) -> str:
    """A user-path table's machine header: each step runs once, at ``threads``; the reproducing command
    without ``--keep`` (the work folder is this machine's)."""
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--keep" in shown:
        del shown[shown.index("--keep"):shown.index("--keep") + 2]
    return machine_header(reproduce_command(script, shown), 1, threads=threads,
                          repeats_line="- repeats: each step runs once (its wall time is one measurement)")


def trial_seconds(results: Path, study: str | None = None) -> list[float]:
    """Seconds of every finished search trial (sampling + prediction + evaluation) from the study."""
    import optuna

    from nas.studies.record import TrialRecord

    storage = f"sqlite:///{results / 'studies.db'}"
    out = []
    for summary in optuna.get_all_study_summaries(storage):
        if study and summary.study_name != study:
            continue
        loaded = optuna.load_study(study_name=summary.study_name, storage=storage)
        for t in loaded.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            rec = TrialRecord.read(t)
            out.append((rec.eval_s or 0) + (rec.predict_s or 0) + (rec.sample_s or 0))
    return out


def path_work(keep: Path | None, prefix: str, threads: int) -> tuple[Path, dict]:
    """The work folder (``keep``, or a new temporary one) and the environment every step's command runs in:
    ``threads`` OpenMP/MKL threads, results under ``WORK/results``, MLflow's file store allowed."""
    work = keep or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "SAMNAS_RESULTS": str(work / "results"), "MLFLOW_ALLOW_FILE_STORE": "true", "PYTHONPATH": str(ROOT)}
    return work, env


def write_path_table(topic: str, title: str, header: str, body: str, csv_rows: list[dict], work: Path,
                     keep: Path | None) -> None:
    """Write the path's table to ``results/<topic>.md`` and ``.csv``; remove ``work`` unless it was ``keep``."""
    out = write_results(topic, title, header, body, csv_rows)
    print(f"wrote {shown_path(out)}")
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--space", default="sam_vit_b")
    parser.add_argument("--resolution", type=int, default=1024, help="input side of training, search and export")
    parser.add_argument("--extra-train-resolutions", type=int, nargs="*", default=[512])
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder with train2017/ and val2017/")
    add_path_options(parser, threads=2, topic="vit_b_pipeline")
    parser.add_argument("--extra-models", nargs="*", default=["vit_l", "vit_h"])
    parser.add_argument("--extra-rank-images", type=int, default=1)
    parser.add_argument("--encoder-repeats", type=int, default=3)
    parser.add_argument("--project-trials", type=int, default=200)
    parser.add_argument("--project-steps", type=int, default=1000)
    parser.add_argument("--project-photos", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    work, env = path_work(args.keep, "samnas-pipeline-", args.threads)
    results = work / "results"
    space = SearchSpace.load(args.space)
    res = args.resolution
    rank_photos = photo_folder(args.photos / "train2017", args.rank_images, work / "photos_rank")
    eval_photos = photo_folder(args.photos / "val2017", args.eval_images, work / "photos_eval")
    every_photos = photo_folder(args.photos / "val2017", args.everything_images, work / "photos_everything")

    checkpoint = work / f"sam_{args.model_type}_random.pth"
    torch.save(build_sam(args.model_type, seed=0).state_dict(), checkpoint)
    space_file = space_at(space, res, work)
    space_name = f"{space.name}_{res}"
    uri = (work / "mlruns").as_uri()
    steps = [replace(rank_step("rank", checkpoint, args.model_type, rank_photos, args.rank_images, args.threads,
                               work / "ranked.pt"), project_units=args.project_photos)]
    # train-supernet in the space restricted to each side
    steps += [replace(train_step(f"train-supernet {side}", work / "ranked.pt", space_at(space, side, work), rank_photos,
                                 args, work / f"train{side}", uri), project_units=args.project_steps)
              for side in [res, *args.extra_train_resolutions]]
    steps += [*latency_steps(space_file, DEVICE, args.profile_samples, args.threads),
              replace(search_step(space_file, DEVICE, work / f"train{res}" / "supernet.pt", eval_photos, args, uri),
                      project_units=args.project_trials),
              Step("pareto", ["pareto", "--space", space_name, "--format", "json"])]
    done: list[Step] = []
    for step in steps:
        done.append(run_step(step, work, env, args.quiet))
        if step.name == "search":  # timed straight after the trials, so the machine's speed is alike
            full_s = full_encoder_seconds(args.model_type, res, args.encoder_repeats)
            bf16 = bf16_check(args.model_type, res, sorted(eval_photos.iterdir())[0], args.encoder_repeats)
    best = max(front_rows(done[-1]), key=lambda row: row["quality"])
    export, everything = tail_steps(best, work, every_photos, args.everything_images, args.threads)
    for step in (export, replace(everything, project_units=args.project_photos)):
        done.append(run_step(step, work, env, args.quiet))
    everything = done[-1]
    per_image_ms = [row["ms"] for row in json.loads((work / "masks" / "summary.json").read_text())["images"]]
    everything.fixed_s = max(0.0, everything.wall_s - sum(per_image_ms) / 1000)

    trials = sorted(trial_seconds(results))
    search = next(s for s in done if s.name == "search")
    median_trial = trials[len(trials) // 2] if trials else float("nan")
    search.fixed_s = max(0.0, search.wall_s - sum(trials))

    for extra in args.extra_models:
        ckpt = work / f"sam_{extra}_random.pth"
        torch.save(build_sam(extra, seed=0).state_dict(), ckpt)
        extra_space = SearchSpace.load(f"sam_{extra}")
        config = work / f"sam_{extra}_subnet.json"
        config.write_text(json.dumps(extra_space.sample(1).to_dict()))
        for step in (
            replace(rank_step(f"{extra}: rank", ckpt, extra, rank_photos, args.extra_rank_images, args.threads,
                              work / f"{extra}_ranked.pt"), project_units=args.project_photos),
            Step(f"{extra}: extract", ["extract", "--checkpoint", str(work / f"{extra}_ranked.pt"), "--config",
                                       str(config), "--out", str(work / f"{extra}_subnet")]),
        ):
            done.append(run_step(step, work, env, args.quiet))
        ckpt.unlink()

    rows = []
    for s in done:
        per_unit = (s.wall_s - s.fixed_s) / max(1, s.units)
        projected = s.fixed_s + per_unit * s.project_units
        rows.append({
            "step": s.name,
            "work": f"{s.units} {s.unit}{'s' if s.units != 1 else ''}",
            "wall_s": f"{s.wall_s:.1f}",
            "peak_rss_gib": f"{s.peak_gib:.2f}",
            "torch_share": f"{s.shares.get('torch', 0):.0%}",
            "samnas_share": f"{s.shares.get('samnas', 0):.0%}",
            "other_share": f"{s.shares.get('other', 0):.0%}",
            "projected": f"{s.project_units} {s.unit}s: {projected / 3600:.2f} h" if s.project_units > 1 else "",
        })
    columns = list(rows[0])
    peak = max(s.peak_gib for s in done)
    ratio = median_trial / full_s
    body = "\n".join([
        f"Model: `{args.model_type}` with **random weights in Meta's layout** standing in for a real checkpoint "
        f"(none can be downloaded here): time and memory are what a real checkpoint costs, quality numbers of this "
        f"run mean nothing. Input side {res} px; photos from {shown_path(args.photos)} (train2017 for rank and "
        f"training, val2017 for search and everything).",
        "",
        "Columns: `wall_s` the step's wall time (its own process, start-up included); `peak_rss_gib` that process's "
        "peak resident memory (VmHWM); `*_share` where its profiled CPU time went (cProfile, main thread): "
        "torch's operators (the model), samnas's own Python, other libraries (numpy, Pillow, Optuna, ONNX...). "
        f"`projected`: the step scaled to a user run of {args.project_trials} search trials, {args.project_steps} "
        f"training steps and {args.project_photos} photos, on this CPU (set-up counted once).",
        "",
        markdown_table(rows, columns),
        "",
        f"- largest peak resident memory of any step: **{peak:.2f} GiB** (acceptance: at most 20 GiB in every step)",
        f"- one full-model image-encoder pass at {res} px: {full_s:.2f} s (median of {args.encoder_repeats}, "
        f"{args.threads} threads, in the benchmark's own process)",
        f"- search trials ({len(trials)}, fidelity evaluator on {args.eval_images} photos): median "
        f"{median_trial:.2f} s = **{ratio:.2f}x** one full-model encoder pass (acceptance at 512 px: at most 3x); "
        f"the full model's outputs are computed once per search ({search.fixed_s:.1f} s of set-up, start-up and "
        f"references included), not per trial",
        f"- bf16 autocast for the full encoder at {res} px on one photo, against fp32: cosine {bf16['cosine']:.5f}, "
        f"relative L2 {bf16['rel_l2']:.4f}; {bf16['bf16_s']:.2f} s against {bf16['fp32_s']:.2f} s fp32 "
        + (f"({bf16['fp32_s'] / bf16['bf16_s']:.2f}x faster" if bf16["bf16_s"] < bf16["fp32_s"] else
           f"({bf16['bf16_s'] / bf16['fp32_s']:.2f}x slower: this CPU has no fast bf16")
        + f"; median of {args.encoder_repeats} interleaved runs). "
        + ("The oracle tests hold embeddings to 1e-4 of the official code; bf16's error is larger, so samnas keeps "
           "fp32 for the teacher and evaluation" if bf16["max_abs"] > 1e-4 else
           "bf16's error is within the oracle tests' 1e-4"),
    ])
    header = path_header("vit_b_pipeline.py", argv, args.threads)
    csv_rows = [{**r, "model_type": args.model_type, "resolution": res} for r in rows]
    write_path_table(args.topic, f"The user path on {args.model_type} at {res} px: time and memory per step",
                     header, body, csv_rows, work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
