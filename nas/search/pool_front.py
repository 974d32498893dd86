"""The pool front, which the search benchmark measures searches against (its "reference front" in
results/search.md): the front of a large pool of evaluated configs, cached on disk.

The pool (:func:`build_pool`), all within the budget where the predictor can tell:

1. every uniform shrink of the space (one heads level, one MLP level, the deepest blocks dropped);
2. ``random`` configs drawn by ``SearchSpace.sample``;
3. ``rounds`` rounds of local search: each round mutates (one or two genes) every config on the
   current front of the pool and the compared searches' trials ``per_parent`` times and
   evaluates the new ones.

A search's hypervolume is then reported as a ratio of the hypervolume of the front of this pool
*pooled with every compared run's trials*, so the ratio can never exceed 1 and a search that
finds a better config than the pool raises the reference for everyone.

The cache (:func:`load_or_build`) is one JSON file per key (and :class:`QualityMemo` keeps every
quality measured, so an interrupted or larger pool does not measure a config twice); the key names the space (and its
file's digest), the weights' digest, the evaluator's settings, the latency predictor's digest,
the budget and the pool's own settings, so a change in any of them builds a new pool.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.activation import active_subnet
from infra.fileio import atomic_write_text

from nas.search.hypervolume import front_2d
from nas.search.samplers.design import mutate, uniform_shrinks


def predictor_digest(latency, configs: list[SubnetConfig]) -> str:
    """A digest of what the predictor says about ``configs`` (its behaviour, whatever its file)."""
    values = np.round(np.asarray(latency.predict_many(configs), dtype=float), 6)
    return hashlib.sha256(values.tobytes()).hexdigest()[:16]


def cache_key(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def evaluate_config(model, evaluator, config: SubnetConfig) -> float:
    """Quality of ``config`` as the search's objective measures it."""
    with active_subnet(model, config):
        return float(evaluator.evaluate(model, config).score)


class QualityMemo:
    """Qualities already measured, by the config's key, kept in a JSON file written every ``every`` new ones.

    Quality depends on the weights, the evaluator and the space only (not on the budget or the
    latency predictor), so a memo keyed by those lets a larger or interrupted pool reuse the work.
    """

    def __init__(self, path: Path | None, every: int = 50) -> None:
        self.path, self.every, self._new = path, every, 0
        self.values: dict[str, float] = json.loads(path.read_text()) if path and path.is_file() else {}

    def quality(self, model, evaluator, config: SubnetConfig) -> float:
        key = config.key
        if key not in self.values:
            self.values[key] = evaluate_config(model, evaluator, config)
            self._new += 1
            if self._new % self.every == 0:
                self.flush()
        return self.values[key]

    def flush(self) -> None:
        """Write every quality known, merged with what another process sharing the file wrote since."""
        if self.path is not None:
            if self.path.is_file():
                self.values = {**json.loads(self.path.read_text()), **self.values}
            atomic_write_text(self.path, json.dumps(self.values))


def build_pool(space: SearchSpace, model, evaluator, latency, budget_ms: float, random: int = 1500,
               rounds: int = 8, per_parent: int = 6, seed: int = 0, progress=print,
               memo: QualityMemo | None = None, known: list[dict] = ()) -> list[dict]:
    """Evaluate the pool described in the module docstring; rows ``{config, quality, predicted_ms}``.

    ``known``: rows evaluated elsewhere (e.g. the compared searches' trials); they are not measured
    again, and the local search starts from the front of the pool and them together.
    """
    memo = memo or QualityMemo(None)
    rng = np.random.default_rng([0xF0E7, seed])
    rows: list[dict] = []
    seen: set[SubnetConfig] = {space.validate(x["config"]) for x in known}

    def run(configs: list[SubnetConfig], what: str) -> None:
        fresh = []
        for c in configs:
            if (c := space.validate(c)) not in seen:
                seen.add(c)
                fresh.append(c)
        if not fresh:
            return
        ms = np.asarray(latency.predict_many(fresh), dtype=float)
        start = time.perf_counter()
        for c, m in zip(fresh, ms):
            if m <= budget_ms:
                rows.append({"config": c, "quality": memo.quality(model, evaluator, c), "predicted_ms": float(m)})
        progress(f"reference pool: {what}: {int((ms <= budget_ms).sum())} evaluated in "
                 f"{time.perf_counter() - start:.0f} s, {len(rows)} in all")

    run(uniform_shrinks(space), "uniform shrinks")
    run([space.sample(rng) for _ in range(random)], "random draws")
    for r in range(rounds):
        both = rows + list(known)
        fq, fm = front_2d([x["quality"] for x in both], [x["predicted_ms"] for x in both], budget_ms)
        on_front = set(zip(fq.tolist(), fm.tolist()))
        parents = [x["config"] for x in both if (x["quality"], x["predicted_ms"]) in on_front]
        children = [c for p in parents for _ in range(per_parent)
                    if (c := mutate(space, p, rng, genes=1 + int(rng.integers(2)))) is not None]
        run(children, f"local search round {r + 1}/{rounds} around {len(parents)} front configs")
    memo.flush()
    return rows


def load_or_build(path_dir: Path, key_fields: dict, build) -> tuple[list[dict], Path, bool]:
    """The cached pool for ``key_fields`` under ``path_dir``, or ``build()`` saved there; ``(rows, path, cached)``.

    Rows' ``config`` is a :class:`SubnetConfig` in memory and its dict form in the file."""
    key_fields = json.loads(json.dumps(key_fields, sort_keys=True))  # as stored: lists, not tuples
    path = Path(path_dir) / f"reference_pool_{cache_key(key_fields)}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("key") == key_fields:
            return [{**r, "config": SubnetConfig.from_dict(r["config"])} for r in data["rows"]], path, True
    start = time.perf_counter()
    rows = build()
    stored = [{**r, "config": r["config"].to_dict()} for r in rows]
    atomic_write_text(path, json.dumps({"key": key_fields, "build_s": round(time.perf_counter() - start, 1),
                                        "rows": stored}))
    return rows, path, False
