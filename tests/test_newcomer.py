"""The newcomer's path at the CLI: where results are found, fail-fast errors, help, round trips.

Every check runs the real ``samnas`` parser, in this process (``cli.main``) or as a
subprocess (``python -m cli``), and asserts the exit code and the message text.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest

import cli
from nas.latency import load_predictor
from search_spaces.space import SearchSpace
from infra.fileio import new_file_mode

ROOT = Path(__file__).resolve().parents[1]
STUDY = "sam_micro@cpu-torch@50ms"
MICRO_WEIGHTS = ROOT / "supernet" / "weights" / "sam_micro.pt"


def run(args, cwd=ROOT, env=None, timeout=600):
    """``python -m cli ARGS`` with the worktree on the path; (returncode, stdout, stderr)."""
    full = {k: v for k, v in os.environ.items() if k != "SAMNAS_RESULTS"}
    full.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})})
    p = subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=cwd, env=full, text=True,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def results(tmp_path_factory, micro_latency):
    """A results folder with a small real cpu-torch predictor for sam_micro (conftest's, copied) and one stored study."""
    root = tmp_path_factory.mktemp("results")
    shutil.copytree(micro_latency, root / "latency")
    storage = f"sqlite:///{root / 'studies.db'}"
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=["maximize", "minimize"])
    space = SearchSpace.load("sam_micro")
    study.set_user_attr("device", "cpu-torch")
    study.set_user_attr("evaluator", "fidelity")
    study.set_user_attr("quality_definition", "fidelity: mean mask IoU against the full model, on 2 test images")
    study.set_user_attr("predictor", {"device": "cpu-torch", "cv_mape_pct": 4.2, "within_10_pct": 95.0,
                                      "threads": 1})
    for i, (q, ms) in enumerate([(0.5, 10.0), (0.7, 20.0), (0.6, 30.0)]):
        t = study.ask()
        cfg = space.sample(i)
        t.set_user_attr("config", json.dumps(cfg.to_dict()))  # as searches wrote it before TrialRecord
        t.set_user_attr("params", 1000)
        t.set_user_attr("flops", 2000)
        study.tell(t, [q, ms])
    return root


def _env(results):
    return {"SAMNAS_RESULTS": str(results)}


# ------------------------------------------------------------------------ 1. results location

@pytest.mark.slow
def test_read_only_commands_create_nothing_and_say_where_they_looked(tmp_path):
    code, out, err = run(["pareto"], cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1, err
    assert f"no study database at {tmp_path / 'results' / 'studies.db'}" in err
    assert "--results DIR or $SAMNAS_RESULTS" in err and "Traceback" not in err
    code, out, err = run(["export", "--study", STUDY, "--trial", 0], cwd=tmp_path)
    assert code == 2 and "no study database" in err
    code, out, err = run(["latency", "list"], cwd=tmp_path)
    assert code == 0 and f"no devices under {Path('results') / 'latency'}" in out
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.slow
def test_results_flag_wins_over_environment_then_default(results, tmp_path):
    empty = tmp_path / "elsewhere"
    code, out, err = run(["pareto", "--results", results], cwd=tmp_path, env={"SAMNAS_RESULTS": str(empty)})
    assert code == 0 and STUDY in out, err
    code, out, err = run(["pareto"], cwd=tmp_path, env={"SAMNAS_RESULTS": str(empty)})
    assert code == 2 and str(empty / "studies.db") in err and "from --results or $SAMNAS_RESULTS" in err
    shutil.copytree(results, tmp_path / "results")  # ./results is the last resort
    code, out, err = run(["latency", "list"], cwd=tmp_path)
    assert code == 0 and "cpu-torch" in out and "sam_micro" in out
    assert not empty.exists()


# ------------------------------------------------------------------------ 3. pareto

def test_pareto_with_no_options_shows_every_front_grouped_by_study(results, monkeypatch, capsys):
    storage = f"sqlite:///{results / 'studies.db'}"
    other = optuna.create_study(study_name="sam_micro@cpu-torch@t4@80ms", storage=storage,
                                directions=["maximize", "minimize"], load_if_exists=True)
    if not other.trials:
        t = other.ask()
        t.set_user_attr("config", json.dumps(SearchSpace.load("sam_micro").largest().to_dict()))
        other.tell(t, [0.9, 70.0])
    monkeypatch.setenv("SAMNAS_RESULTS", str(results))
    assert cli.main(["pareto"]) == 0
    out = capsys.readouterr().out
    assert f"== study {STUDY}" in out and "== study sam_micro@cpu-torch@t4@80ms" in out
    assert "quality = fidelity: mean mask IoU against the full model" in out
    assert "CV MAPE 4.2%" in out and "profiled with 1 thread" in out
    assert "latency predictor: unknown" in out  # the study without recorded attributes says so
    assert cli.main(["pareto", "--device", "cuda-torch"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda-torch: no such device" in err and "stored: cpu-torch, cpu-torch@t4" in err
    assert cli.main(["pareto", "--study", "nope@cpu-torch@1ms"]) == 2
    assert f"stored: {STUDY}, sam_micro@cpu-torch@t4@80ms" in capsys.readouterr().err
    assert cli.main(["export", "--study", "nope", "--trial", "1"]) == 2
    assert "--study nope: no such study" in capsys.readouterr().err
    assert cli.main(["export", "--study", STUDY, "--trial", "99"]) == 2
    assert "completed: 0, 1, 2" in capsys.readouterr().err


def test_pareto_json_and_csv_carry_the_config_as_an_object(results, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SAMNAS_RESULTS", str(results))
    assert cli.main(["pareto", "--study", STUDY, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["trial"] for r in rows] == [0, 1] and isinstance(rows[0]["config"], dict)
    assert rows[0]["config"] == SearchSpace.load("sam_micro").sample(0).to_dict()
    assert cli.main(["pareto", "--study", STUDY, "--format", "csv"]) == 0
    table = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert json.loads(table[1]["config"]) == rows[1]["config"]
    # a row saved alone, or a one-row list, is a config wherever one is read
    (tmp_path / "row.json").write_text(json.dumps(rows[1]))
    (tmp_path / "one.json").write_text(json.dumps(rows[:1]))
    (tmp_path / "two.json").write_text(json.dumps(rows))
    for name in ("row.json", "one.json"):
        assert cli.main(["latency", "predict", "--device", "cpu-torch", "--config", str(tmp_path / name)]) == 0
        assert "ms predicted for" in capsys.readouterr().out
    assert cli.main(["latency", "predict", "--device", "cpu-torch", "--config", str(tmp_path / "two.json")]) == 2
    assert "a list of 2 rows" in capsys.readouterr().err


def test_pareto_plot_names_quality_and_keeps_the_budget_label_clear(results, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.search.pareto import load_points, pareto_front, plot_front

    points = load_points(f"sqlite:///{results / 'studies.db'}")
    saved = {}
    real_close = plt.close
    plt.close = lambda fig=None: saved.setdefault("fig", fig)  # keep the figure to inspect it
    try:
        plot_front(points, pareto_front(points), tmp_path / "p.png", budget_ms=25, quality_label="fidelity")
    finally:
        plt.close = real_close
    fig = saved["fig"]
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t for t in ax.texts if "budget" in t.get_text()]
    assert labels and "fidelity" in ax.get_ylabel()
    fig_box = fig.bbox
    for t in labels:
        box = t.get_window_extent(renderer)
        assert not box.overlaps(legend), t.get_text()
        assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1
    real_close(fig)


# ------------------------------------------------------------------------ 2 + 5 + 7 + 9: a real search

@pytest.mark.slow
def test_search_fails_fast_on_impossible_budgets_and_states_the_smallest_latency(results):
    smallest = load_predictor("cpu-torch", "sam_micro", root=results / "latency").predict_ms(
        SearchSpace.load("sam_micro").smallest())
    storage = f"sqlite:///{results / 'studies.db'}"
    studies = optuna.get_all_study_names(storage)
    code, out, err = run(["search", "--budget-ms", 0.01, "--trials", 3], env=_env(results))
    assert code == 2 and f"below the smallest sam_micro subnet's predicted latency on cpu-torch, {smallest:.2f} ms" in err
    assert "Traceback" not in err
    # fast because refused before any work: no tracking run, no study opened
    assert not (results / "mlruns").exists() and optuna.get_all_study_names(storage) == studies


@pytest.mark.slow
def test_search_summary_states_quality_and_predictor_error_and_fails_when_nothing_is_feasible(results, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    tracking = tmp_path / "mlruns"
    smallest = load_predictor("cpu-torch", "sam_micro", root=results / "latency").predict_ms(
        SearchSpace.load("sam_micro").smallest())
    budget = round(smallest + 0.005, 3)
    args = ["search", "--trials", 2, "--max-images", 1, "--sampler", "random", "--seed", 5, "--storage", storage,
            "--tracking-uri", tracking.as_uri(), "--budget-ms", budget]
    code, out, err = run(args, env=_env(results))
    assert code == 1, out + err
    assert f"no trial met the budget of {budget:g} ms" in err and "would have been feasible" in err
    assert "next: samnas export" not in out
    assert "latency predictor (cpu-torch): CV MAPE" in out and "profiled with 1 thread" in out
    assert "quality = fidelity: mean mask IoU" in out and "1 image (generated synthetic images)" in out
    assert "Creating a new experiment" not in out + err and "[I " not in out + err  # library noise is hidden


@pytest.mark.slow
def test_resumed_search_names_running_trials_of_other_hosts(results, tmp_path):
    storage = f"sqlite:///{tmp_path / 'h.db'}"
    name = "sam_micro@cpu-torch@1000ms"
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"])
    elsewhere = study.ask()
    elsewhere.set_user_attr("host", "gpu-box-7")
    elsewhere.set_user_attr("pid", 12345)
    code, out, err = run(["search", "--trials", 2, "--max-images", 1, "--budget-ms", 1000, "--storage", storage,
                          "--tracking-uri", (tmp_path / "ml").as_uri()], env=_env(results))
    assert code == 0, out + err
    assert f"still RUNNING on other hosts: trial {elsewhere.number} (gpu-box-7)" in out
    assert "90 s after its worker's last heartbeat" in out
    # no --checkpoint and no --images: the demo, whose last lines say what its quality means and what comes next
    tail = out.strip().splitlines()[-3:]
    assert tail[0].startswith("next: samnas export --study 'sam_micro@cpu-torch@1000ms' --trial ")
    assert tail[1].startswith("what the demo's quality means: ") and "not SAM" in tail[1] and "IoU" in tail[1]
    assert "samnas train-supernet" in tail[2] and "--checkpoint" in tail[2]
    # this machine profiled the device, so the front was timed here after the search (nas.search.verify)
    assert "front measured on this machine:" in out and "meas. ms" in out
    running = optuna.load_study(study_name=name, storage=storage).get_trials(
        states=(optuna.trial.TrialState.RUNNING,))
    assert [t.number for t in running] == [elsewhere.number]  # left to the heartbeat


@pytest.mark.slow
def test_latency_fit_warns_about_a_noisy_predictor(results, tmp_path):
    root = tmp_path / "latency"
    shutil.copytree(results / "latency", root)
    path = root / "cpu-torch" / "networks.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
        fields = list(rows[0])
    rng = np.random.default_rng(0)
    for r in rows:  # the same subnets, timed on a machine whose speed jumped around
        r["median_ms"] = str(float(r["median_ms"]) * float(rng.choice([0.5, 1.0, 2.0])))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    code, out, err = run(["latency", "fit", "--device", "cpu-torch", "--root", root, "--folds", 3])
    assert code == 0, err
    assert "CV MAPE of" in err and "(> 10%)" in err and "--threads 1" in err and "quieter machine" in err


# ------------------------------------------------------------------------ 6. round trips

@pytest.mark.slow
def test_sampled_configs_extract_and_exported_files_round_trip(results, tmp_path):
    if not MICRO_WEIGHTS.is_file():
        pytest.skip("no packaged sam_micro weights")
    for which in ("--largest", "--smallest", "--random"):
        code, out, err = run(["spaces", "sample", "sam_micro", which, "--seed", 3, "--out", tmp_path / "c.yaml"])
        assert code == 0 and "wrote" in out, err
        code, out, err = run(["extract", "--checkpoint", MICRO_WEIGHTS, "--config", tmp_path / "c.yaml",
                              "--out", tmp_path / "sub"])
        assert code == 0, err
    # extract's own help recipe now works as written
    code, out, err = run(["extract", "--help"])
    assert "spaces sample sam_vit_b --largest --out subnet.yaml" in out
    # a space file given as a config says what to do
    code, out, err = run(["spaces", "show", "sam_micro", "--format", "yaml"])
    (tmp_path / "space.yaml").write_text(out)
    code, out, err = run(["extract", "--checkpoint", MICRO_WEIGHTS, "--config", tmp_path / "space.yaml",
                          "--out", tmp_path / "x"])
    assert code == 2 and "search-space file, not a subnet config" in err and "spaces sample sam_micro" in err

    code, out, err = run(["export", "--study", STUDY, "--trial", 1, "--out", tmp_path / "exp", "--repeats", 1],
                         env=_env(results))
    assert code == 0, err
    assert "NOTE: measuring with 1 thread" in out or "profiled with 1 thread" in out
    card = json.loads((tmp_path / "exp" / "card.json").read_text())
    assert card["predictor"]["cv_mape_pct"] == 4.2 and card["predictor"]["threads"] == 1
    assert card["quality_definition"].startswith("fidelity")
    contract = card["onnx_input"]
    res = card["config"]["resolution"]
    assert contract["shape"] == [1, 3, res, res]
    assert contract["normalise"]["pixel_mean"] == [123.675, 116.28, 103.53] and "zeros" in contract["padding"]
    md = (tmp_path / "exp" / "card.md").read_text()
    assert "load_subnet(" in md and "CV MAPE 4.2%" in md and "profiled with 1 thread" in md and "normalise" in md
    for name in ("subnet.pt", "subnet.json", "card.json", "card.md", "image_encoder.onnx", "prompt_decoder.onnx"):
        assert (tmp_path / "exp" / name).stat().st_mode & 0o777 == new_file_mode(), name
    for name in ("subnet.json", "card.json"):
        code, out, err = run(["latency", "predict", "--device", "cpu-torch", "--config", tmp_path / "exp" / name],
                             env=_env(results))
        assert code == 0 and "ms predicted for" in out, err
    code, out, err = run(["extract", "--checkpoint", MICRO_WEIGHTS, "--config", tmp_path / "exp" / "card.json",
                          "--out", tmp_path / "again"])
    assert code == 0, err
    readme = (ROOT / "README.md").read_text()
    assert "load_subnet(" in readme and "pixel_mean = [123.675, 116.28, 103.53]" in readme


# ------------------------------------------------------------------------ 8. help

def _walk(parser, path=()):
    yield path, parser
    for name, sub in cli.subparsers_of(parser).items():
        yield from _walk(sub, path + (name,))


def test_every_command_has_examples_and_help_for_every_option():
    import argparse
    import re

    developer_only = re.compile(r"issue \d|DESIGN\.md|DEVELOPERS|this project|latency_t2|``|:func:|:class:")
    problems = []
    for path, parser in _walk(cli.build_parser()):
        if not path:
            continue
        name = " ".join(path)
        if "samnas " not in (parser.epilog or ""):
            problems.append(f"{name}: no examples")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                problems.append(f"{name} {'/'.join(action.option_strings) or action.dest}: no help text")
        texts = [parser.description or "", parser.epilog or ""] + [a.help or "" for a in parser._actions]
        problems += [f"{name}: developer reference {m.group()!r}" for t in texts for m in developer_only.finditer(t)]
    assert problems == []


def test_help_texts_render_without_markup_or_errors():
    for args in (["train-reference", "--help"], ["spaces", "sample", "--help"], ["pareto", "--help"]):
        code, out, err = run(args)
        assert code == 0 and "examples:" in out and "``" not in out, (args, err)


def test_checkpoint_errors_are_words_not_codes(tmp_path):
    (tmp_path / "notes.pth").write_text("hello, this is not a checkpoint\n")
    assert run(["spaces", "sample", "sam_micro", "--largest", "--out", tmp_path / "c.yaml"])[0] == 0
    code, out, err = run(["extract", "--checkpoint", tmp_path / "notes.pth", "--config", tmp_path / "c.yaml",
                          "--out", tmp_path / "o"])
    assert code == 2 and "a text file, not a PyTorch" in err and "(101)" not in err, err


# ------------------------------------------------------------------------ 10. optuna-dashboard

def test_optuna_dashboard_lists_the_studies_with_named_objectives(tmp_path):
    exe = shutil.which("optuna-dashboard")
    if exe is None:
        pytest.skip("optuna-dashboard not installed (pip install -e '.[dashboard]' -c constraints.txt)")
    from nas.search.run import METRIC_NAMES, SearchSettings, open_study

    storage = f"sqlite:///{tmp_path / 'd.db'}"
    study = open_study(SearchSettings(space="sam_micro", device="cpu-torch", budget_ms=5, storage=storage))
    study.tell(study.ask(), [0.75, 3.5])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, storage, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, body = time.time() + 60, None
        while time.time() < deadline and body is None:
            try:
                body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "the dashboard did not answer within 60 s"
        summaries = body["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["sam_micro@cpu-torch@5ms"]
        detail = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{summaries[0]['study_id']}?after=0", timeout=5).read())
        assert detail["objective_names"] == list(METRIC_NAMES)  # quality and latency, named per trial
        assert detail["trials"][0]["values"] == [0.75, 3.5]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------ 11. the bad-input sweep

def _sweep_cases(results: Path, tmp: Path) -> list[tuple[list, str]]:
    """(argv, text the one-line error must contain: the offending value or file)."""
    cfg, space_file, notes = tmp / "c.yaml", tmp / "space.yaml", tmp / "notes.pth"
    return [
        (["search", "--trials", "0"], "--trials: must be at least 1, got 0"),
        (["search", "--trials", "-3"], "got -3"),
        (["search", "--trials", "many"], "'many'"),
        (["search", "--budget-ms", "-5"], "--budget-ms: must be a positive number, got -5"),
        (["search", "--budget-ms", "0"], "got 0"),
        (["search", "--budget-ms", "nan"], "'nan'"),
        (["search", "--max-images", "0"], "--max-images: must be at least 1, got 0"),
        (["search", "--sampler", "annealing"], "'annealing'"),
        (["search", "--device", "cpu torch", "--budget-ms", "10"], "'cpu torch'"),
        (["search", "--space", "sam_vit_z"], "sam_vit_z"),
        (["search", "--device", "cpu-torch@other", "--no-auto-profile"], "cpu-torch@other"),
        (["pareto", "--device", "tpu-torch"], "--device tpu-torch"),
        (["pareto", "--study", "nope@cpu-torch@1ms"], "--study nope@cpu-torch@1ms"),
        (["pareto", "--space", "sam_vit_z"], "--space sam_vit_z"),
        (["pareto", "--budget-ms", "-1"], "got -1"),
        (["pareto", "--format", "xml"], "'xml'"),
        (["pareto", "--storage", "nosuchdb://x"], "nosuchdb://x"),
        (["pareto", "--results", str(tmp / "nothing-here")], str(tmp / "nothing-here")),
        (["export", "--study", STUDY, "--trial", "99"], "--trial 99"),
        (["export", "--study", "nope", "--trial", "1"], "--study nope"),
        (["export", "--study", STUDY, "--repeats", "0"], "--repeats: must be at least 1, got 0"),
        (["export", "--config", str(tmp / "missing.yaml")], "missing.yaml"),
        (["latency", "profile", "--space", "sam_micro", "--device", "cpu-torch", "--samples", "0"], "--samples 0"),
        (["latency", "profile", "--space", "sam_micro", "--device", "cpu-torch", "--samples", "-2"], "got -2"),
        (["latency", "profile", "--space", "sam_micro", "--device", "cpu-torch", "--threads", "0"],
         "--threads: must be at least 1, got 0"),
        (["latency", "profile", "--space", "sam_micro", "--device", "cpu-torch", "--repeats", "-1"], "got -1"),
        (["latency", "profile", "--space", "sam_micro", "--device", "tpu-torch", "--blocks"], "'tpu-torch'"),
        (["latency", "fit", "--device", "cpu-torch", "--folds", "1"], "--folds must be at least 2, got 1"),
        (["latency", "predict", "--device", "cpu-torch", "--config", str(tmp / "missing.json")], "missing.json"),
        (["latency", "predict", "--device", "cpu-torch@nowhere", "--config", str(cfg)], "cpu-torch@nowhere"),
        (["latency", "import", str(tmp / "edge.json")], "edge.json"),
        (["spaces", "show", "sam_vit_z"], "sam_vit_z"),
        (["spaces", "sample", "sam_vit_z", "--largest"], "sam_vit_z"),
        (["spaces", "sample", "sam_micro", "--largest", "--format", "json", "--out", str(tmp / "x.yaml")], "x.yaml"),
        (["extract", "--checkpoint", str(notes), "--config", str(cfg), "--out", str(tmp / "o")], "notes.pth"),
        (["extract", "--checkpoint", str(tmp / "missing.pth"), "--config", str(cfg), "--out", str(tmp / "o")],
         "missing.pth"),
        (["extract", "--checkpoint", str(MICRO_WEIGHTS), "--config", str(space_file), "--out", str(tmp / "o")],
         "space.yaml"),
        (["rank", "--checkpoint", str(tmp / "missing.pth"), "--method", "magnitude", "--out", str(tmp / "r.pt")],
         "missing.pth"),
        (["rank", "--checkpoint", "x.pth", "--out", "r.pt", "--max-images", "0"], "got 0"),
        (["train-supernet", "--checkpoint", "x.pt", "--space", "sam_micro", "--images", ".", "--steps", "0"],
         "--steps: must be at least 1, got 0"),
        (["tune-everything", "--images", ".", "--budget-ms", "0"], "--budget-ms: must be"),
        (["tune-everything", "--images", ".", "--budget-ms", "100", "--trials", "0"], "--trials: must be at least 1"),
        (["everything", "--images", str(tmp / "no_photos"), "--out", str(tmp / "e")], "no_photos"),
        (["everything", "--images", ".", "--out", str(tmp / "e"), "--policy", str(tmp / "nope.yaml")], "nope.yaml"),
        (["calibrate-everything", "--images", ".", "--target-masks", "0"], "--target-masks: must be"),
        (["evaluate", "--images", ".", "--annotations", str(tmp / "none.json")], "none.json"),
        (["evaluate", "--images", ".", "--annotations", "a.json", "--max-images", "0"], "--max-images: must be"),
        (["train-reference", "--coco", ".", "--out", str(tmp / "r.pt")], "pair up in order"),
    ]


def test_bad_inputs_get_one_line_errors_naming_the_value(results, tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.pth").write_text("not a checkpoint\n")
    assert cli.main(["spaces", "sample", "sam_micro", "--largest", "--out", str(tmp_path / "c.yaml")]) == 0
    assert cli.main(["spaces", "show", "sam_micro", "--format", "yaml"]) == 0
    (tmp_path / "space.yaml").write_text(capsys.readouterr().out.split("\n", 1)[1])
    cases = _sweep_cases(results, tmp_path)
    assert len(cases) >= 30
    failures = []
    for argv, expected in cases:
        monkeypatch.setenv("SAMNAS_RESULTS", str(results))
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's errors
            code = exc.code
        captured = capsys.readouterr()
        err = captured.err.strip()
        if code in (0, None) or expected not in err or "\n" in err or "Traceback" in captured.err + captured.out:
            failures.append(f"{' '.join(argv)} -> exit {code}: {captured.err!r}")
    assert failures == []


@pytest.mark.slow
def test_bad_inputs_as_real_processes(tmp_path):
    """A few of the sweep's cases as real processes: the exit code, one line on stderr, no traceback."""
    for argv, expected in [(["search", "--trials", "-3"], "got -3"),
                           (["latency", "profile", "--space", "sam_micro", "--device", "cpu-torch", "--samples", "0"],
                            "--samples 0"),
                           (["spaces", "sample", "sam_vit_z", "--random"], "sam_vit_z")]:
        code, out, err = run(argv, cwd=tmp_path)
        assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert list(tmp_path.iterdir()) == []
