"""Whether a finished search may be short: how far its front moved lately, and what the surrogate still expects.

Two numbers, both in percent of the front's hypervolume now (quality x ms within the budget,
:func:`nas.search.hypervolume.hypervolume_2d`, trials in number order):

- **moved**: the hypervolume of the first ``n`` completed trials against that of the first ``n - k``,
  over the last ``k = max(8, n // 4)`` trials (the *window*);
- **expected**: the surrogate sampler's own estimate of what ``k`` more trials could add
  (:meth:`nas.search.samplers.surrogate.SurrogateSampler.expected_gain`: the ``k`` candidates of highest expected
  hypervolume improvement in the pool it would search now, their qualities drawn jointly from its GP).
  Other samplers have no model of quality: not available.

The verdict compares what the last ``k`` trials did with what the model expects of the next ``k``:

- ``moving``: the front moved by :data:`MOVE_PCT` or more: it is still climbing, more trials would likely help;
- ``stalled``: it moved less, but the model still expects :data:`GAIN_PCT` or more: the search has stopped
  finding what its model says is there (one seed can stall, issue 28), so more trials would likely help;
- ``settled``: it moved less and the model expects less (or has no estimate);
- ``too few``: fewer than ``2 k`` completed trials, too few to tell;
- ``empty``: no completed trial within the budget (no front).

Trials measured over the budget after the search (``nas.search.verify``; given as ``measured``) do not count, as
they leave the front.
The thresholds are set by judgement, not tuned: 1% of the hypervolume is about the gap between two
seeds' fronts at 64 trials on sam_micro (results/search.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna

from nas.search.hypervolume import hypervolume_2d

MOVE_PCT = 1.0  # the front "moves" when its hypervolume grew by this much over the window
GAIN_PCT = 1.0  # the model "expects gains" when k more trials should add this much
MIN_WINDOW = 8


def window(n: int) -> int:
    """Trials looked back over after ``n`` completed ones: a quarter of them, at least :data:`MIN_WINDOW`."""
    return max(MIN_WINDOW, n // 4)


def hv_history(quality, ms, budget_ms: float, ref_quality: float = 0.0) -> np.ndarray:
    """``(n,)``: the hypervolume of the first ``i + 1`` points, for each ``i`` (points in trial order)."""
    q, m = np.asarray(quality, float), np.asarray(ms, float)
    return np.array([hypervolume_2d(q[:i + 1], m[:i + 1], budget_ms, ref_quality) for i in range(len(q))])


@dataclass(frozen=True)
class Outlook:
    """What a finished search says about more trials (see the module docstring); hypervolumes in quality x ms."""

    trials: int
    window: int
    hv_now: float
    hv_before: float  # the hypervolume ``window`` trials ago
    sampler: str
    expected_next: float | None = None  # the model's best expected improvement of one trial; None: no model
    expected_batch: float | None = None  # what ``window`` more trials are expected to add; None: no model

    @property
    def moved_pct(self) -> float:
        return 100.0 * (self.hv_now - self.hv_before) / self.hv_now if self.hv_now > 0 else 0.0

    @property
    def expected_pct(self) -> float | None:
        if self.expected_batch is None:
            return None
        return 100.0 * self.expected_batch / self.hv_now if self.hv_now > 0 else float("inf")

    @property
    def verdict(self) -> str:
        if self.hv_now <= 0:
            return "empty"
        if self.trials < 2 * self.window:
            return "too few"
        if self.hv_now > 0 and self.moved_pct >= MOVE_PCT:
            return "moving"
        expected = self.expected_pct
        return "stalled" if expected is not None and expected >= GAIN_PCT else "settled"

    def line(self) -> str:
        """One plain sentence for the user: the verdict, its two numbers, and what to run."""
        k, n = self.window, self.trials
        moved = f"the front's hypervolume moved {self.moved_pct:+.1f}% over the last {k} trials"
        expected = (f"an estimate of what more trials could add is not available (the {self.sampler} sampler "
                    "has no model of quality)") if self.expected_pct is None else (
            f"the surrogate expects {self.expected_pct:+.1f}% from {k} more")
        more = f"more trials would likely help (`--trials {2 * n}` resumes this study)"
        if self.verdict == "empty":
            return "outlook: no completed trial within the budget, so no front to judge"
        if self.verdict == "too few":
            return (f"outlook: {n} completed trials are too few to tell whether the front has settled "
                    f"(needs {2 * k}); {more}")
        if self.verdict == "moving":
            return f"outlook: {moved}, still climbing ({expected}): {more}"
        if self.verdict == "stalled":
            return (f"outlook: {moved}, but {expected}: the search has stalled short of what its model sees; "
                    f"{more}, or another --seed")
        return f"outlook: {moved} and {expected}: the front has settled"


def outlook(study: optuna.Study, budget_ms: float, sampler=None, name: str | None = None,
            measured: dict[int, float] | None = None, ref_quality: float = 0.0) -> Outlook:
    """The :class:`Outlook` of ``study``'s completed trials under ``budget_ms``.

    ``sampler``: the search's sampler (a ``nas.studies.cost.TimedSampler`` is unwrapped); its estimate is asked
    for when it has one (``expected_gain``), else ``expected_*`` stay None. ``name``: the sampler's name
    as the user chose it (default: its class name). ``measured``: ``{trial number: ms}`` measured on the
    device after the search (``nas.search.pareto.measured_ms_of``); those over the budget do not count.
    """
    over = {t for t, m in (measured or {}).items() if m > budget_ms}
    trials = sorted((t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                     if t.values), key=lambda t: t.number)
    ms = [np.inf if t.number in over else t.values[1] for t in trials]  # measured over the budget: off the front
    history = hv_history([t.values[0] for t in trials], ms, budget_ms, ref_quality)
    n, k = len(trials), window(len(trials))
    now = float(history[-1]) if n else 0.0
    before = float(history[n - k - 1]) if n > k else 0.0
    inner = getattr(sampler, "inner", sampler)
    gain = inner.expected_gain(study, k) if hasattr(inner, "expected_gain") else None
    name = name or (type(inner).__name__ if inner is not None else "unknown")
    return Outlook(trials=n, window=k, hv_now=now, hv_before=before, sampler=name,
                   expected_next=None if gain is None else gain[0], expected_batch=None if gain is None else gain[1])
