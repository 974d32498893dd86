"""The Optuna search, Pareto queries, export and MLflow logging, on sam_micro with real parts.

Real Optuna storages (SQLite, and PostgreSQL for two workers), a real latency predictor
fitted on this machine, the real fidelity evaluator and a real MLflow file store.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy.exc
import cli
from nas.latency import ProfileSettings, fit_device, load_predictor, profile_device
from nas.search.pareto import TrialPoint, pareto_front, render
from nas.quality import make_evaluator
from nas.search.run import SearchSettings, run_search, suggest_config
from nas.search.samplers import PROPOSAL_ATTR
from nas.search.samplers import DEFAULT_SAMPLER
from nas.studies.study import parse_study_name, study_name
from search_spaces.config import SubnetConfig
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam
from infra.errors import UserError
from supernet.elastic.extract import load_subnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory, micro_latency):
    """A results root with a small real latency predictor for cpu-torch on sam_micro (conftest's, copied)."""
    root = tmp_path_factory.mktemp("results")
    old = os.environ.get("SAMNAS_RESULTS")
    os.environ["SAMNAS_RESULTS"] = str(root)
    shutil.copytree(micro_latency, root / "latency")
    yield root
    if old is None:
        os.environ.pop("SAMNAS_RESULTS", None)
    else:
        os.environ["SAMNAS_RESULTS"] = old


def images(n=2, size=160):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        img = np.full((size, size, 3), 30, np.uint8)
        for _ in range(3):
            x, y, w, h = rng.integers(0, size - 40, 4) // 1
            img[y:y + 30 + h % 20, x:x + 30 + w % 20] = rng.integers(60, 255, 3)
        out.append(img)
    return out


def test_suggested_configs_are_always_valid():
    space = SearchSpace.load("sam_micro")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    globals_kept = []
    for _ in range(60):
        trial = study.ask()
        cfg = suggest_config(trial, space)  # validates, raising on any invalid config
        globals_kept.append(sum(cfg.blocks[i].keep for i in space.global_blocks))
        study.tell(trial, [0.0, 0.0])
    assert min(globals_kept) >= space.min_global_blocks and max(globals_kept) == len(space.global_blocks)


def test_study_names_round_trip():
    name = study_name("sam_vit_b", "cpu-torch@lab1", 2500)
    assert name == "sam_vit_b@cpu-torch@lab1@2500ms"
    assert parse_study_name(name) == {"space": "sam_vit_b", "device": "cpu-torch@lab1", "budget_ms": 2500.0,
                                      "suffix": None}
    with pytest.raises(UserError, match="expected a slug"):
        study_name("sam_micro", "cpu torch", 10)


class Flaky:
    """Wraps a real evaluator and fails on chosen trial calls (to check failed trials are recorded)."""

    def __init__(self, inner, fail_on):
        self.inner, self.fail_on, self.calls, self.name = inner, fail_on, 0, inner.name

    def evaluate(self, model, config):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("synthetic failure for the test")
        return self.inner.evaluate(model, config)


def test_search_records_trials_failures_and_resumes(results, tmp_path):
    space = SearchSpace.load("sam_micro")
    model = build_sam("micro", seed=0)
    latency = load_predictor("cpu-torch", space="sam_micro", root=results / "latency")
    budget = 0.8 * latency.predict_ms(space.largest())
    evaluator = Flaky(make_evaluator("fidelity", model, images=images(), prompts_per_image=4), fail_on={2})
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    settings = SearchSettings(space="sam_micro", device="cpu-torch", budget_ms=budget, trials=4, storage=storage)
    study = run_search(settings, model, space, evaluator, latency, progress=False)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and states.count(optuna.trial.TrialState.FAIL) == 1
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL][0]
    assert "synthetic failure for the test" in failed.user_attrs["error"]
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    for t in done:
        attrs = t.user_attrs
        assert set(attrs) >= {"config", "params", "flops", "predicted_ms", "quality", "evaluator", "metrics"}
        assert attrs["predicted_ms"] == pytest.approx(t.values[1])
        assert space.validate(json.loads(attrs["config"]))
    first = [t.values for t in study.trials]
    # resume: more trials on the same study; earlier ones are kept untouched
    settings.trials = 6
    again = run_search(settings, model, space, evaluator, latency, progress=False)
    assert len(again.trials) == 6
    assert [t.values for t in again.trials[:4]] == first


def _run_cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _env(results):
    return {**os.environ, "SAMNAS_RESULTS": str(results), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", [DEFAULT_SAMPLER, "random"])
def test_killed_search_loses_no_completed_trial(results, tmp_path, sampler):
    storage = f"sqlite:///{tmp_path / 'kill.db'}"
    args = ["search", "--space", "sam_micro", "--device", "cpu-torch", "--budget-ms", "1000", "--trials", "40",
            "--max-images", "2", "--storage", storage, "--sampler", sampler]
    proc = _run_cli(args, _env(results))
    name = "sam_micro@cpu-torch@1000ms"
    deadline = time.time() + 240
    complete, running = [], []
    while time.time() < deadline and not running:
        time.sleep(0.2)
        # Freeze the worker before reading its study, so that what we read is what it holds when killed:
        # a trial seen RUNNING cannot finish between the read and the kill (a 0.4 s trial used to, under load).
        proc.send_signal(signal.SIGSTOP)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            # a running trial its worker has claimed (host and pid written): one killed in the instant
            # between Optuna creating the trial and the claim is left to the heartbeat, as documented
            running = [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                       if "pid" in t.user_attrs] if len(complete) >= 3 else []
        except (KeyError, sqlalchemy.exc.OperationalError):  # no study yet, or frozen mid-write
            running = []
        if not running:
            proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(complete) >= 3, proc.stdout.read()
    before = {t.number: t.values for t in complete}
    resumed = _run_cli([*args[:-4], "--trials", str(len(before) + 2), "--storage", storage], _env(results))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    study = optuna.load_study(study_name=name, storage=storage)
    after = {t.number: t.values for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert all(after[n] == v for n, v in before.items())  # 0 completed trials lost
    assert len(after) >= len(before) + 2 - 1  # the killed worker's running trial is not counted as finished
    # The killed trial was failed by the resumed search at once (not 90 s later by the heartbeat).
    assert study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) == []
    gone = [t for t in study.get_trials(states=(optuna.trial.TrialState.FAIL,)) if "was gone" in t.user_attrs.get("error", "")]
    assert gone and gone[0].user_attrs["pid"] == proc.pid, out
    assert "left RUNNING by a worker of this host that is gone" in out


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(results):
    from pg import postgres_server

    with postgres_server() as url:
        args = ["search", "--space", "sam_micro", "--device", "cpu-torch", "--budget-ms", "1000", "--trials", "8",
                "--max-images", "2", "--storage", url]
        workers = [_run_cli([*args, "--seed", str(seed)], _env(results)) for seed in (1, 2)]
        outputs = [w.communicate(timeout=600)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        study = optuna.load_study(study_name="sam_micro@cpu-torch@1000ms", storage=url)
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert 8 <= len(complete) <= 10  # each worker may finish the trial it had started
        assert len({t.number for t in complete}) == len(complete)
        assert len({t.user_attrs["worker"] for t in complete}) == 2  # both processes contributed
        # the default (surrogate) sampler proposed what each worker evaluated; a worker skips the configs
        # the other is running (only two proposals made in the same instant can coincide)
        assert DEFAULT_SAMPLER == "surrogate"
        assert all(json.loads(t.system_attrs[PROPOSAL_ATTR]) == json.loads(t.user_attrs["config"]) for t in complete)
        assert len({t.user_attrs["config"] for t in complete}) >= len(complete) - 1


_OPEN_AT = """import sys, time, warnings
warnings.simplefilter("ignore")
from nas.studies.study import open_storage
start = float(sys.argv[2])
while time.time() < start:
    pass
open_storage(sys.argv[1])
print("opened")
"""


@pytest.mark.slow
def test_workers_opening_a_fresh_postgres_database_at_once_all_succeed():
    """Six processes create Optuna's tables in the same instant; the losers of the race retry."""
    from pg import postgres_server

    with postgres_server() as url:
        start = time.time() + 6  # after every process has imported optuna and torch
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, url, str(start)], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(6)]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, outputs
        assert all("opened" in o for o in outputs)
        assert optuna.get_all_study_summaries(url) == []


@pytest.mark.slow
def test_cli_search_pareto_export_and_mlflow(results, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    tracking = (tmp_path / "mlruns").as_uri()
    code = cli.main(["search", "--trials", "6", "--max-images", "2", "--storage", storage, "--budget-ms", "1000",
                     "--tracking-uri", tracking])
    out = capsys.readouterr().out
    assert code == 0 and "packaged micro reference weights" in out and "on the front" in out
    # the cost split: wall time per trial = evaluation + latency prediction + sampler + the rest
    assert "search cost:" in out and "evaluation" in out and "sampler" in out
    # the outlook: 6 trials are too few to tell whether the front has settled
    assert "outlook: 6 completed trials are too few to tell" in out and "`--trials 12` resumes" in out
    name = "sam_micro@cpu-torch@1000ms"
    probe = optuna.load_study(study_name=name, storage=storage).user_attrs["latency_probe"]
    assert "drift probe" in out and probe["factor"] > 0 and probe["recalibrated"] is False

    assert cli.main(["pareto", "--device", "cpu-torch", "--storage", storage, "--format", "json",
                     "--plot", str(tmp_path / "front.png")]) == 0
    text = capsys.readouterr().out
    front = json.loads(text[: text.rindex("]") + 1])
    assert front and all(p["predicted_ms"] <= 1000 for p in front)
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["pareto", "--device", "cpu-torch", "--storage", storage, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("study,trial,space")
    assert cli.main(["pareto", "--device", "cuda-torch", "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert "--device cuda-torch: no such device" in err and "stored: cpu-torch" in err

    trial = front[-1]["trial"]
    out_dir = tmp_path / "export"
    assert cli.main(["export", "--study", name, "--trial", str(trial), "--out", str(out_dir), "--storage", storage,
                     "--repeats", "2", "--no-runtimes"]) == 0  # the card's runtime table: tests/test_deploy.py
    card = json.loads((out_dir / "card.json").read_text())
    assert card["predicted_ms"] == pytest.approx(front[-1]["predicted_ms"], rel=1e-3)
    assert card["measured_ms"]["torch"] > 0 and card["onnx_max_abs_diff"] < 1e-3
    check = card["latency_check"]
    assert check["backend"] == "torch" and check["probe_factor"] > 0 and check["measured_ms"] == card["measured_ms"]["torch"]
    assert check["predicted_recalibrated_ms"] == pytest.approx(check["predicted_raw_ms"] * check["probe_factor"])
    assert check["gap_pct"] == pytest.approx(100 * (check["predicted_recalibrated_ms"] / check["measured_ms"] - 1))
    assert check["flag"] == (abs(check["gap_pct"]) > check["stated_error_pct"])
    md = (out_dir / "card.md").read_text()
    assert "predicted for `cpu-torch`" in md and "measured here, torch" in md
    assert "recalibrated by the drift probe" in md and "Latency check (torch" in md
    sub = load_subnet(out_dir)
    assert sub.resolution == SubnetConfig.from_dict(card["config"]).resolution

    import mlflow

    mlflow.set_tracking_uri(tracking)
    exp = mlflow.get_experiment_by_name(name)
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 6
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(parents[0].info.run_id)]
    assert "front.json" in artifacts

    # resumed to 16 trials: the front's movement over the last 8, and the surrogate's own estimate of what more adds
    assert cli.main(["search", "--trials", "16", "--max-images", "2", "--storage", storage, "--budget-ms", "1000",
                     "--tracking-uri", tracking, "--no-verify"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("outlook:"))
    assert "over the last 8 trials" in line and "the surrogate expects" in line and "% from 8 more" in line


def test_pareto_front_logic():
    def p(q, ms, budget=100.0, n=0):
        return TrialPoint("s@cpu-torch@100ms", n, "s", "cpu-torch", budget, q, ms, 1, 1, "{}")

    pts = [p(0.5, 10, n=0), p(0.6, 20, n=1), p(0.55, 30, n=2), p(0.9, 150, n=3), p(0.7, 40, n=4)]
    front = pareto_front(pts)
    assert [x.trial for x in front] == [0, 1, 4]  # 2 is dominated, 3 is over its budget
    assert [x.trial for x in pareto_front(pts, budget_ms=25)] == [0, 1]
    assert [x.trial for x in pareto_front(pts, min_quality=0.65)] == [4]
    assert "(no feasible trials match)" in render([], "table")


def test_pareto_precision_column_and_filter():
    import json

    def cfg(*precisions):
        return json.dumps({"space": "s", "resolution": 128, "blocks": [
            {"heads": 1, "mlp": 128, "keep": True, **({"precision": q} if q else {})} for q in precisions]})

    def p(q, ms, config, n):
        return TrialPoint("s@cpu-torch@100ms", n, "s", "cpu-torch", 100.0, q, ms, 1, 1, config)

    pts = [p(0.5, 10, cfg("int8", "int8"), 0), p(0.6, 20, cfg("int8", None), 1), p(0.7, 30, cfg(None, None), 2),
           p(0.65, 25, cfg("fp32", "fp32"), 3)]
    assert [x.precision for x in pts] == ["int8", "mixed (1/2 int8)", "fp32", "fp32"]
    assert [x.trial for x in pareto_front(pts)] == [0, 1, 3, 2]
    assert [x.trial for x in pareto_front(pts, precision="fp32")] == [3, 2]
    assert [x.trial for x in pareto_front(pts, precision="int8")] == [0]
    assert [x.trial for x in pareto_front(pts, precision="mixed")] == [1]
    table = render(pareto_front(pts), "table")
    assert "precision" in table.splitlines()[0] and "mixed (1/2 int8)" in table
    rows = json.loads(render(pts, "json"))
    assert [r["precision"] for r in rows] == ["int8", "mixed (1/2 int8)", "fp32", "fp32"]
    assert "precision" in render(pts, "csv").splitlines()[0].split(",")
    policy = TrialPoint("s@cpu-torch@100ms@everything", 9, "s", "cpu-torch", 100.0, 0.5, 5, 1, 1,
                        json.dumps({"kind": "grid", "points_per_side": 8}))
    assert policy.precision == "n/a" and pareto_front([policy], precision="fp32") == []
    assert json.loads(render([policy], "json"))[0]["precision"] == "n/a"


def test_pareto_front_is_the_array_front_of_its_feasible_points():
    """`pareto_front` (trial points) and `front_2d` (arrays) are one front: same points on fixed data,
    ties in both objectives keep the lowest (study, trial), and the hypervolume over either agrees."""
    from nas.search.hypervolume import front_2d, hypervolume_2d

    def p(q, ms, n, study="s@cpu-torch@100ms"):
        return TrialPoint(study, n, "s", "cpu-torch", 100.0, q, ms, 1, 1, "{}")

    pts = [p(0.8, 40, 5), p(0.5, 10, 4), p(0.8, 40, 2), p(0.4, 50, 1), p(0.6, 10, 3), p(0.9, 150, 0),
           p(0.6, 10, 0, study="a@cpu-torch@100ms"), p(0.7, 40, 6)]
    front = pareto_front(pts)
    # 0.6 @ 10 ms twice: study "a" sorts first; 0.8 @ 40 ms twice: trial 2 before 5; 0.9 is over budget
    assert [(x.study[0], x.trial) for x in front] == [("a", 0), ("s", 2)]
    feasible = [x for x in pts if x.feasible]
    q, m = front_2d([x.quality for x in feasible], [x.predicted_ms for x in feasible])
    assert q.tolist() == [x.quality for x in front] and m.tolist() == [x.predicted_ms for x in front]
    # front (10 ms, 0.6) and (40 ms, 0.8) with reference 100 ms: 30 * 0.6 + 60 * 0.8
    assert hypervolume_2d([x.quality for x in feasible], [x.predicted_ms for x in feasible], 100) == pytest.approx(66.0)
    assert hypervolume_2d([x.quality for x in front], [x.predicted_ms for x in front], 100) == pytest.approx(66.0)


@pytest.fixture(scope="module")
def int8_latency(tmp_path_factory):
    """sam_micro_int8 at 128 px and a small real cpu-torch predictor for it (fp32 and int8 blocks)."""
    from nas.latency.profile import restrict_resolutions

    space = restrict_resolutions(SearchSpace.load("sam_micro_int8"), [128])  # what is profiled below
    root = tmp_path_factory.mktemp("int8_latency")
    profile_device(space, "cpu-torch", ProfileSettings(samples=8, repeats=1, warmup=1, min_seconds=0, rounds=1,
                                                       max_rounds=1, resolutions=[128], progress=False), root=root)
    fit_device("cpu-torch", root=root, folds=2)
    return space, load_predictor("cpu-torch", space=space.name, root=root)


@pytest.mark.parametrize("sampler", ["random", pytest.param(DEFAULT_SAMPLER, marks=pytest.mark.slow)])
def test_search_over_precision_scores_int8_configs_quantized(tmp_path, sampler, int8_latency):
    """An int8 space is searched over precision too; an int8 trial's quality is measured on the
    subnet extracted and quantized (the supernet refuses int8), fp32 trials on the supernet."""
    from nas.search.run import evaluate_config
    from supernet.elastic.extract import extract

    space, latency = int8_latency
    model = build_sam("micro", seed=0)
    evaluator = make_evaluator("fidelity", model, images=images(), prompts_per_image=2)
    settings = SearchSettings(space=space.name, device="cpu-torch", budget_ms=1e6, trials=8, sampler=sampler,
                              seed=3, storage=f"sqlite:///{tmp_path / 'studies.db'}")
    study = run_search(settings, model, space, evaluator, latency, progress=False)
    configs = [SubnetConfig.from_json(t.user_attrs["config"])
               for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    assert len(configs) == 8 and any(c.int8_blocks() for c in configs)
    int8 = next(c for c in configs if c.int8_blocks())
    direct = evaluator.evaluate(extract(model, int8), None).score
    assert evaluate_config(evaluator, model, int8).score == pytest.approx(direct)
    params = {name for t in study.trials for name in t.params}
    assert any(name.endswith(".precision") for name in params)
