"""Evidence for ``benchmarks/search.py``'s photo tables: every front scored again on other photos.

``benchmarks/search.py`` scores quality on photos 0-5 of coco128 val and builds its reference front from the same
scores, so a front there is judged on the photos it was searched on. Here each run's front (the Pareto front of
its first N trials, as its hypervolume counts them) and the reference front (the pool pooled with every run) are
scored again by the fidelity evaluator on photos 6-11 of the same folder, which no search saw, with prompts of
another seed; hypervolumes keep each config's predicted latency. A run's ratio on those photos is its rescored
front's hypervolume over that of every rescored front config together (the rescored reference), so it can never
exceed 1 either.

What this says: whether a search's standing holds on photos it was not tuned on (its own ratio is
self-consistency), and how much of the reference front's height on photos 0-5 was luck of those photos: the notes
above the table give the mean quality change of the reference front's configs between the two photo sets.

    OMP_NUM_THREADS=1 python benchmarks/search_rescore.py --db runs_0.6.db runs_0.8.db --budget-frac 0.6 0.8
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from common import RESULTS, TUNING_COUNT, TUNING_START, held_out_photos, machine_header, markdown_table, ranked_model, reproduce_command, \
    write_results

from nas.latency import load_predictor
from nas.quality import make_evaluator
from nas.search.hypervolume import hypervolume_2d
from nas.search.pareto import load_points, pareto_front
from nas.search.pool_front import QualityMemo
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace

SCRATCH = RESULTS / "scratch"
OTHER_SEED = 1  # prompts of another seed than the search's (0)


def reference_rows(budget: float, prompts: int) -> list[dict]:
    """The newest cached reference pool at ``budget`` with the compared runs in its key (benchmarks/search.py)."""
    found = []
    for path in SCRATCH.glob("reference_pool_*.json"):
        data = json.loads(path.read_text())
        key = data["key"]
        if key.get("budget_ms") == budget and "runs" in key and key["evaluator"].get("prompts") == prompts:
            found.append((path.stat().st_mtime, data["rows"]))
    if not found:
        raise SystemExit(f"no reference pool at {budget} ms in {SCRATCH}: run benchmarks/search.py's tables first")
    return max(found, key=lambda f: f[0])[1]


def hv(rows, budget: float) -> float:
    """Hypervolume of ``(quality, ms)`` rows within the budget, reference (0, budget)."""
    rows = [r for r in rows if r[1] <= budget]
    return hypervolume_2d([r[0] for r in rows], [r[1] for r in rows], budget)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", nargs="+", required=True, help="benchmarks/search.py's study databases (results/scratch/)")
    parser.add_argument("--budget-frac", type=float, nargs="+", default=[0.6])
    parser.add_argument("--trials", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = SearchSpace.load("sam_micro")
    model, _, _ = ranked_model("micro")
    latency = load_predictor("cpu-torch", space="sam_micro")
    images, photos_text = held_out_photos(None, TUNING_COUNT, start=TUNING_START)
    evaluator = make_evaluator("fidelity", model, images=images, max_images=TUNING_COUNT, seed=OTHER_SEED)
    points = [p for db in args.db for p in load_points(f"sqlite:///{SCRATCH / db}")]
    memo = QualityMemo(None)  # each config scored once, though several fronts hold it

    rows, notes = [], []
    for frac in args.budget_frac:
        budget = round(frac * latency.predict_ms(space.largest()), 2)
        mine = [p for p in points if abs(p.budget_ms - budget) < 1e-6 and "photos-" in p.device]
        runs = {}
        for p in mine:
            sampler, seed = p.device.split("photos-")[1].rsplit("-s", 1)
            runs.setdefault((sampler, int(seed)), []).append(p)
        pool = reference_rows(budget, evaluator.prompts_per_image)
        ref_q = [r["quality"] for r in pool] + [p.quality for p in mine]
        ref_ms = [r["predicted_ms"] for r in pool] + [p.predicted_ms for p in mine]
        ref_configs = [json.dumps(r["config"], sort_keys=True) for r in pool] + [p.config for p in mine]
        ref_front = [i for i, q in enumerate(ref_q) if ref_ms[i] <= budget and not any(
            (ref_q[j] >= q and ref_ms[j] <= ref_ms[i]) and (ref_q[j] > q or ref_ms[j] < ref_ms[i]) for j in range(len(ref_q)))]
        fronts = {}
        for (sampler, seed), pts in sorted(runs.items()):
            pts.sort(key=lambda p: p.trial)
            for n in args.trials:
                if len(pts) >= n:
                    fronts[(sampler, n, seed)] = pareto_front(pts[:n], budget_ms=budget)
        every = {SubnetConfig.from_json(ref_configs[i]).key: ref_ms[i] for i in ref_front}
        every.update({SubnetConfig.from_json(p.config).key: p.predicted_ms for f in fronts.values() for p in f})
        print(f"{frac:.0%} ({budget} ms): rescoring {len(every)} front configs on photos {TUNING_START}-"
              f"{TUNING_START + TUNING_COUNT - 1}", flush=True)
        for k in every:
            memo.quality(model, evaluator, SubnetConfig.from_json(k))
        scores = memo.values
        reference_other = hv([(scores[k], ms) for k, ms in every.items()], budget)
        reference_own = hv(list(zip(ref_q, ref_ms)), budget)
        drop = statistics.fmean(scores[SubnetConfig.from_json(ref_configs[i]).key] - ref_q[i] for i in ref_front)
        notes.append(f"- {frac:.0%} ({budget} ms): reference front of {len(ref_front)} configs (pool of {len(pool)} "
                     f"and {len(mine)} run trials), hypervolume {reference_own:.4f} on the search's photos; "
                     f"{len(every)} front configs rescored, reference on the other photos {reference_other:.4f}; "
                     f"the reference front's configs changed by {drop:+.4f} in quality on average")
        for (sampler, n, seed), front in sorted(fronts.items()):
            own = hv([(p.quality, p.predicted_ms) for p in front], budget) / reference_own
            other = hv([(scores[SubnetConfig.from_json(p.config).key], p.predicted_ms) for p in front],
                       budget) / reference_other
            rows.append({"budget_frac": frac, "budget_ms": budget, "sampler": sampler, "trials": n, "seed": seed,
                         "front": len(front), "ratio_search_photos": round(own, 4), "ratio_other_photos": round(other, 4)})
    summary = []
    for key in dict.fromkeys((r["budget_frac"], r["sampler"], r["trials"]) for r in rows):
        mine = [r for r in rows if (r["budget_frac"], r["sampler"], r["trials"]) == key]
        own, other = [r["ratio_search_photos"] for r in mine], [r["ratio_other_photos"] for r in mine]
        summary.append({"budget": f"{key[0]:.0%}", "sampler": key[1], "trials": key[2], "seeds": len(mine),
                        "search photos: mean (min)": f"{statistics.fmean(own):.4f} ({min(own):.4f})",
                        "other photos: mean (min)": f"{statistics.fmean(other):.4f} ({min(other):.4f})",
                        "other photos, per seed": " ".join(f"{r['seed']}:{r['ratio_other_photos']:.3f}" for r in mine)})
    header = machine_header(reproduce_command("search_rescore.py", sys.argv[1:] if argv is None else argv), 0,
                            repeats_line="- repeats: none (no timing: quality only; latency is the predictor's)",
                            threads=args.threads)
    body = (f"Space `sam_micro`, packaged reference weights ranked as `benchmarks/search.py` ranks them. The runs and "
            f"reference pools of `benchmarks/search.py` (databases {', '.join(args.db)}), scored there on photos 0-5 of "
            f"coco128 val (`ratio on search photos`: self-consistency, the searches chose on those scores). Scored "
            f"again here by the fidelity evaluator ({evaluator.prompts_per_image} point prompts per photo, seed "
            f"{OTHER_SEED}) on {photos_text}, which no search saw (`ratio on other photos`: evidence). Latency is the "
            f"predictor's in both.\n\n" + "\n".join(notes) + "\n\n"
            + markdown_table(summary, list(summary[0])) + "\n\nPer run:\n\n" + markdown_table(rows, list(rows[0])))
    write_results("search_rescore", "Search fronts scored again on other photos", header, body, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
