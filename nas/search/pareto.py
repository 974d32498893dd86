"""Querying Pareto fronts of stored studies: table, JSON, CSV and a plot."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna

from infra.errors import UserError
from infra.fileio import atomic_write_bytes
from search_spaces.config import SubnetConfig, is_config_mapping

from nas.search.hypervolume import front_indices
from nas.studies.record import TrialRecord
from nas.studies.study import open_storage, parse_study_name, predictor_line

FORMATS = ("table", "json", "csv")
# Study attribute holding the front subnets measured on the device after the search (nas.search.verify):
# {"device", "threads", "budget_ms", "measured_at", "trials": {"<trial number>": {"median_ms", "p10_ms", "p90_ms",
# "repeats", "speed_factor"}}}: speed_factor is the drift probe's current / profiled latency in the same rounds
# (nas.search.verify). A trial whose measured median is over its study budget is not feasible, so it leaves the front.
MEASURED_ATTR = "measured_front"
# Short y-axis labels per evaluator (the table and the card carry the full definition).
QUALITY_LABELS = {
    "fidelity": "fidelity: mask IoU vs. the full model",
    "coco": "coco: mIoU vs. ground truth",
}


@dataclass(frozen=True)
class TrialPoint:
    """One completed trial: quality in [0, 1], predicted latency in ms, size, and where it lives."""

    study: str
    trial: int
    space: str
    device: str
    budget_ms: float
    quality: float
    predicted_ms: float
    params: int
    flops: int
    config: str  # canonical JSON: a SubnetConfig's key (a policy's JSON in segment-everything studies)
    measured_ms: float | None = None  # median ms measured on the device after the search (nas.search.verify), if it was

    @property
    def feasible(self) -> bool:
        """Predicted within the study budget, and measured within it too where it was measured."""
        return self.predicted_ms <= self.budget_ms and (self.measured_ms is None or self.measured_ms <= self.budget_ms)

    @property
    def subnet(self) -> SubnetConfig | None:
        """The subnet config; None for a config without encoder blocks (a segment-everything policy)."""
        data = json.loads(self.config)
        return SubnetConfig.from_dict(data) if is_config_mapping(data) else None

    @property
    def precision(self) -> str:
        """``fp32``, ``int8`` or ``mixed (k/n int8)`` (kept blocks; :attr:`SubnetConfig.precision_label`);
        ``n/a`` for a segment-everything policy."""
        subnet = self.subnet
        return subnet.precision_label if subnet is not None else "n/a"

    @property
    def precision_kind(self) -> str:
        """``fp32``, ``int8`` or ``mixed``: what ``pareto --precision`` filters on (``n/a`` as above)."""
        subnet = self.subnet
        return subnet.precision_kind if subnet is not None else "n/a"


def load_studies(storage: str | None, include_everything: bool = False,
                 results=None) -> tuple[list[TrialPoint], dict[str, dict]]:
    """Completed trials of every encoder study in ``storage`` (None: the studies.db of the results folder
    ``results``), and ``{study: info}`` for each such study.

    ``info``: the parsed name (space, device, budget_ms) plus the study's attributes (evaluator,
    ``quality_definition``, ``predictor``). Read-only: a missing SQLite file is an error, not created.
    """
    store = open_storage(storage, create=False, results=results)
    points, studies = [], {}
    for summary in optuna.get_all_study_summaries(store, include_best_trial=False):
        try:
            info = parse_study_name(summary.study_name)
        except UserError:
            continue  # not one of ours
        if info["suffix"] and not include_everything:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        studies[summary.study_name] = {**study.user_attrs, **info}
        points += study_points(study)
    return points, studies


def measured_ms_of(study: optuna.Study) -> dict[int, float]:
    """``{trial number: median ms}`` of the trials measured on the device after the search (:data:`MEASURED_ATTR`)."""
    trials = (study.user_attrs.get(MEASURED_ATTR) or {}).get("trials") or {}
    return {int(n): float(m["median_ms"]) for n, m in trials.items()}


def study_points(study: optuna.Study) -> list[TrialPoint]:
    """The completed trials of one encoder study, with their measured latency where the front was measured."""
    info = parse_study_name(study.study_name)
    measured = measured_ms_of(study)
    points = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = TrialRecord.read(t)
        points.append(TrialPoint(
            study=study.study_name, trial=t.number, space=info["space"], device=info["device"],
            budget_ms=info["budget_ms"], quality=float(t.values[0]), predicted_ms=float(t.values[1]),
            params=int(record.params or 0), flops=int(record.flops or 0), config=record.config_json,
            measured_ms=measured.get(t.number),
        ))
    return points


def load_points(storage: str | None, device: str | None = None, space: str | None = None,
                include_everything: bool = False, results=None) -> list[TrialPoint]:
    """Completed trials of every matching encoder study in ``storage`` (read-only: creates no file)."""
    points, _ = load_studies(storage, include_everything, results)
    return [p for p in points if (device is None or p.device == device) and (space is None or p.space == space)]


def pareto_front(points: list[TrialPoint], budget_ms: float | None = None,
                 min_quality: float | None = None, precision: str | None = None) -> list[TrialPoint]:
    """Non-dominated feasible points (within their study budget, ``budget_ms`` and ``min_quality``, and of
    ``precision`` ``fp32`` / ``int8`` / ``mixed`` when given: the front among those alone), fastest first.

    Exact duplicates in (quality, latency) keep the first trial only.
    """
    cands = [p for p in points if p.feasible and (budget_ms is None or p.predicted_ms <= budget_ms)
             and (min_quality is None or p.quality >= min_quality)
             and (precision is None or p.precision_kind == precision)]
    cands.sort(key=lambda p: (p.study, p.trial))  # which of two points tied in both objectives stays
    keep = front_indices([p.quality for p in cands], [p.predicted_ms for p in cands])
    return [cands[i] for i in keep]


def _row(p: TrialPoint, nested: bool = True) -> dict:
    """One output row; ``config`` as an object (``nested``) or as one compact JSON string (CSV)."""
    row = asdict(p)
    row["precision"] = p.precision
    row["quality"] = round(p.quality, 6)
    row["predicted_ms"] = round(p.predicted_ms, 3)
    row["measured_ms"] = None if p.measured_ms is None else round(p.measured_ms, 3)
    config = json.loads(p.config)
    row["config"] = config if nested else json.dumps(config, sort_keys=True, separators=(",", ":"))
    return row


def render(front: list[TrialPoint], fmt: str) -> str:
    """The front as an aligned text table, JSON or CSV."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {list(FORMATS)}")
    if fmt == "json":  # each row's config is an object: `samnas export --config` reads a row saved alone
        return json.dumps([_row(p) for p in front], indent=2) + "\n"
    if fmt == "csv":  # config: one column of compact JSON
        buf = io.StringIO()
        fields = [*TrialPoint.__dataclass_fields__, "precision"]
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(_row(p, nested=False) for p in front)
        return buf.getvalue()
    header = ["quality", "pred. ms", "meas. ms", "params (M)", "GFLOPs", "precision", "study", "trial"]
    body = [[f"{p.quality:.4f}", f"{p.predicted_ms:.2f}", "-" if p.measured_ms is None else f"{p.measured_ms:.2f}",
             f"{p.params / 1e6:.2f}", f"{p.flops / 1e9:.2f}", p.precision, p.study, str(p.trial)] for p in front]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in body]
    if not body:
        lines.append("(no feasible trials match)")
    return "\n".join(lines) + "\n"


def render_fronts(fronts: dict[str, list[TrialPoint]], studies: dict[str, dict], fmt: str) -> str:
    """Several studies' fronts: JSON/CSV rows of all of them, or a table per study that says what
    quality means there and how accurate the latency predictor was."""
    every = [p for name in fronts for p in fronts[name]]
    if fmt != "table":
        return render(every, fmt)
    parts = []
    for name, front in fronts.items():
        info = studies.get(name, {})
        quality = info.get("quality_definition") or f"{info.get('evaluator') or 'unknown evaluator'} (not recorded)"
        hint = export_hint(name, front)
        parts.append(f"== study {name}\n"
                     f"quality = {quality}\n"
                     f"{predictor_line(info.get('predictor'))}\n" + render(front, "table")
                     + (f"{hint}\n" if hint else ""))
    return "\n".join(parts)


def export_hint(study: str, front: list[TrialPoint]) -> str | None:
    """The export command for a front's best-quality trial (``samnas search`` and ``pareto`` print it), or
    None for an empty front."""
    if not front:
        return None
    return f"next: samnas export --study '{study}' --trial {front[-1].trial} --out DIR"


def plot_front(points: list[TrialPoint], front: list[TrialPoint], path: str | Path,
               budget_ms: float | None = None, title: str = "", quality_label: str | None = None) -> Path:
    """PNG: every trial (feasible and not), the front as a step line, and the budget line(s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5), dpi=120)
    feas = [p for p in points if p.feasible]
    infeas = [p for p in points if not p.feasible]
    ax.scatter([p.predicted_ms for p in feas], [p.quality for p in feas], s=14, c="#8fa8c8", label="trials")
    if infeas:
        ax.scatter([p.predicted_ms for p in infeas], [p.quality for p in infeas], s=14, marker="x", c="#c8a08f",
                   label="over study budget (predicted or measured)")
    if front:
        ax.step([p.predicted_ms for p in front], [p.quality for p in front], where="post", c="#1f4e8c", lw=1.8)
        ax.scatter([p.predicted_ms for p in front], [p.quality for p in front], s=30, c="#1f4e8c",
                   label="Pareto front", zorder=3)
    for b in sorted({p.budget_ms for p in points} | ({budget_ms} if budget_ms else set())):
        ax.axvline(b, ls="--", c="#b03030", lw=1, label="budget" if b == budget_ms or budget_ms is None else None)
        # the label sits at the top of the line, in axes coordinates; the legend sits outside the axes
        ax.text(b, 0.98, f"budget {b:g} ms ", color="#b03030", va="top", ha="right", fontsize=8,
                transform=ax.get_xaxis_transform())
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel(f"quality ({QUALITY_LABELS.get(quality_label, quality_label)})" if quality_label else "quality")
    ax.set_title(title or "quality vs. latency")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              borderaxespad=0)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())

