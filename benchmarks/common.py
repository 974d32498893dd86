"""Helpers shared by the benchmark scripts: the machine header and writing tables to results/."""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tables go to results/ unless $SAMNAS_BENCH_RESULTS names another folder (the smoke test's temp folder).
RESULTS = Path(os.environ.get("SAMNAS_BENCH_RESULTS") or ROOT / "results")
# The repository first (Python puts benchmarks/ itself first), so that no script name can shadow a package.
sys.path.insert(0, str(ROOT))

from nas.measure.fingerprint import machine_fingerprint  # noqa: E402
from infra.fileio import atomic_write_text  # noqa: E402


def commit() -> str:
    """The short commit the benchmark runs on, marked when tracked code outside results/ has uncommitted changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("diff", "--quiet", "HEAD", "--", ".", ":(exclude)results").returncode == 1
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" (plus uncommitted changes)" if dirty else "")


def shown_path(path: str | Path) -> str:
    """``path`` as a table may show it: relative to the repository (or its parent, for ../shared),
    never an absolute path of the machine that ran the benchmark."""
    path = Path(path).resolve()
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        if path.is_relative_to(base):
            return prefix + str(path.relative_to(base))
    return path.name


def reproduce_command(script: str, argv: list[str] | None = None) -> str:
    """``python benchmarks/<script> ARGS``: the command line that makes a table (``argv`` None: this process's)."""
    return " ".join(["python", f"benchmarks/{script}", *map(str, sys.argv[1:] if argv is None else argv)])


def load_averages() -> str:
    """This machine's 1-, 5- and 15-minute load averages now, as ``"a / b / c"``."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_header(command: str, repeats: int, repeats_line: str | None = None, threads: int | None = None) -> str:
    """Markdown lines stating the machine, threads, repeats, date and the reproducing command.

    ``repeats_line`` replaces the default "repeats: N timed runs after 1 warm-up" line;
    ``threads``: the threads the timings used, when not torch's current count.
    """
    fp = machine_fingerprint()
    return "\n".join([
        f"- machine: {fp['cpu']}, {fp['cores']} cores, torch {fp['torch']} with {threads or fp['torch_threads']} threads"
        + (f", GPU {fp['gpu']}" if fp["gpu"] else ", no GPU"),
        repeats_line or f"- repeats: {repeats} timed runs after 1 warm-up; latency is the median, spread is p10-p90",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {commit()}",
        f"- reproduce: `{command}`",
        f"- fingerprint: `{json.dumps({k: fp[k] for k in ('cpu', 'cores', 'torch', 'onnxruntime', 'allocator')})}`",
    ])


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(topic: str, title: str, header: str, body: str, rows: list[dict]) -> Path:
    """Write ``results/<topic>.md`` and ``results/<topic>.csv`` atomically."""
    md = RESULTS / f"{topic}.md"
    atomic_write_text(md, f"# {title}\n\n{header}\n\n{body}\n")
    if rows:
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(RESULTS / f"{topic}.csv", buf.getvalue())
    return md


PHOTOS = ROOT.parent / "shared" / "data" / "coco128" / "images" / "val2017"  # held-out real photos
# photos 6-11 of PHOTOS (sorted) tune and check what the benchmarks choose; 0-5 stay held out for search.py's table
TUNING_START, TUNING_COUNT = 6, 6


def ranked_model(model_type: str):
    """``(model, checkpoint path or None, what the weights are)``, ranked as the benchmarks search it.

    The packaged reference where one is shipped (``micro``), ranked by wanda on 8 synthetic
    scenes; otherwise random weights (seed 0) standing in for a checkpoint, ranked by magnitude.
    """
    from scenes.images import generated_images
    from supernet.checkpoint import load_sam
    from supernet.elastic.ranking import rank_model
    from supernet.elastic.build import build_sam
    from supernet.modeling.predictor import image_to_model_input
    from supernet.reference import reference_checkpoint

    path = reference_checkpoint(model_type)
    if path:
        model = load_sam(path)
        calib = [image_to_model_input(model, im)[0] for im in generated_images(8, seed=123)]
        rank_model(model, "wanda", images=lambda: calib)
        return model, path, f"the packaged reference `{shown_path(path)}`, ranked by wanda on 8 synthetic scenes"
    model = build_sam(model_type, seed=0)
    rank_model(model, "magnitude")
    return model, None, "**random weights** (seed 0) standing in for a checkpoint, ranked by magnitude"


def held_out_photos(folder: str | Path | None, n: int, start: int = 0) -> tuple[list, str]:
    """``(images, what they are)``: the first ``n`` photos of ``folder`` (default :data:`PHOTOS`), or
    ``n`` synthetic scenes when it holds none. ``start``: skip that many photos first (a tuning set kept apart
    from the held-out first ones); UserError if the folder holds photos but not ``start + n``."""
    from scenes.images import generated_images

    path = Path(folder) if folder else PHOTOS
    files = sorted(p for p in path.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if path.is_dir() else []
    if files and start:
        if len(files) < start + n:
            from infra.errors import UserError

            raise UserError(f"{shown_path(path)}: {len(files)} photos, fewer than the {start + n} photos {start}-"
                            f"{start + n - 1} of the sorted folder need")
        return ([str(p) for p in files[start:start + n]],
                f"photos {start}-{start + n - 1} of sorted `{shown_path(path)}`")
    if files:
        return ([str(p) for p in files[:n]],
                f"the first {min(n, len(files))} photos of `{shown_path(path)}` (held out: never trained on)")
    return list(generated_images(n, seed=777)), f"{n} synthetic scenes (seed 777; no photos in `{shown_path(path)}`)"
