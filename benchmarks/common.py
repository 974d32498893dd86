"""Helpers shared by the benchmark scripts: the machine header and writing tables to results/."""
from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nas.fingerprint import machine_fingerprint  # noqa: E402
from supernet.fileio import atomic_write_text  # noqa: E402


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


def git_commit() -> str:
    """``git rev-parse --short HEAD`` of the repository, or "unknown"."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def repo_relative(path) -> str:
    """``path`` relative to the repository when inside it (tables carry no machine paths), else its name."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return p.name
