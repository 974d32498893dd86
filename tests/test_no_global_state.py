"""No hidden global state: the results folder, malloc settings, worker identity, torch's RNG and thread
count are passed down or restored, never left changed for the rest of the process. And the newcomer's
slips: abbreviated options, `everything --threads`, wording, `pareto` naming the trial to export."""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

import cli
from infra.threads import torch_threads
from infra.wording import plural
from nas.studies import driver
from nas.studies.record import TrialRecord
from nas.studies.study import default_storage, study_name
from search_spaces.space import SearchSpace
from supernet.elastic.build import build_sam

ROOT = Path(__file__).resolve().parents[1]
STUDY = "sam_micro@cpu-torch@30ms"


def _store_study(results: Path, trials=((0.5, 10.0), (0.7, 20.0), (0.6, 25.0)), attrs=None) -> str:
    """A stored study in ``results/studies.db`` with completed trials (quality, predicted ms); its name."""
    results.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{results / 'studies.db'}",
                                directions=["maximize", "minimize"])
    space = SearchSpace.load("sam_micro")
    for key, value in (attrs or {"device": "cpu-torch"}).items():
        study.set_user_attr(key, value)
    for i, (q, ms) in enumerate(trials):
        t = study.ask()
        TrialRecord(config=space.validate(space.smallest() if i == 0 else space.sample(i))).write(t)
        study.tell(t, [q, ms])
    return STUDY


# ------------------------------------------------------------------------ the results folder

def test_results_folder_is_passed_down_and_never_written_to_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SAMNAS_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    chosen = tmp_path / "chosen"
    _store_study(chosen)
    assert cli.main(["pareto", "--results", str(chosen)]) == 0
    out = capsys.readouterr().out
    assert f"== study {STUDY}" in out
    assert "SAMNAS_RESULTS" not in os.environ  # the CLI passed it down instead of exporting it
    # the variable is the user's choice, read by the CLI; library code below it never reads it
    monkeypatch.setenv("SAMNAS_RESULTS", str(chosen))
    assert default_storage() == f"sqlite:///{Path('results') / 'studies.db'}"
    assert default_storage(chosen) == f"sqlite:///{chosen / 'studies.db'}"
    assert cli.main(["pareto"]) == 0 and f"== study {STUDY}" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


def test_pareto_names_the_trial_to_export_as_search_does(tmp_path, capsys):
    _store_study(tmp_path)
    assert cli.main(["pareto", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # front: trial 0 (0.5, 10 ms) and trial 1 (0.7, 20 ms); trial 2 is dominated; the best quality is suggested
    assert f"next: samnas export --study '{STUDY}' --trial 1 --out DIR" in out
    assert cli.main(["pareto", "--results", str(tmp_path), "--budget-ms", "15"]) == 0
    assert f"--study '{STUDY}' --trial 0 --out DIR" in capsys.readouterr().out
    assert cli.main(["pareto", "--results", str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)  # machine-readable output stays only that
    assert [r["trial"] for r in rows] == [0, 1]


# ------------------------------------------------------------------------ glibc malloc

ALLOCATOR_PROBE = textwrap.dedent("""
    import ctypes, json, sys
    sys.path.insert(0, sys.argv[1])
    from nas.measure import timing
    from nas.measure.fingerprint import machine_fingerprint

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    SIZE = 31 * 2**20  # below the 32 MiB the timings set, far above glibc's 128 KiB default

    def mmapped():
        # whether a block of SIZE comes from mmap (glibc's default) or the heap (the timing set-up)
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(SIZE)
        grew = libc.mallinfo2().hblkhd - before
        libc.free(block)
        return grew >= SIZE

    fingerprint = machine_fingerprint()
    after_fingerprint = mmapped()
    with timing.steady_allocator() as setup:
        inside = mmapped()
    after = mmapped()
    print(json.dumps({"setup": setup, "fingerprint": fingerprint["allocator"], "after_fingerprint": after_fingerprint,
                      "inside": inside, "after": after}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc only")
def test_malloc_settings_change_only_inside_a_timing(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(ALLOCATOR_PROBE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["setup"] == seen["fingerprint"] == f"glibc mmap_threshold={32 * 2**20} trim_threshold={2**31 - 1}"
    assert seen["after_fingerprint"], "the fingerprint reports the set-up without changing malloc"
    assert not seen["inside"], "inside a timing, large blocks are reused from the heap"
    assert seen["after"], "after the timing, glibc's default threshold is back"


# ------------------------------------------------------------------------ worker identity

def _forked_worker(storage: str, started, release) -> None:
    """A search worker started by fork: its trial stays RUNNING until ``release`` is set."""

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        started.set()
        release.wait(120)
        return (x, 1.0), TrialRecord(quality=x, predicted_ms=1.0)

    plan = driver.StudyPlan(name="toy@cpu-torch@1ms", sampler=optuna.samplers.RandomSampler(seed=1), trials=1,
                            storage=storage)
    driver.drive(plan, objective, progress=False)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_resume_leaves_the_live_trial_of_a_forked_worker_alone(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    plan = driver.StudyPlan(name="toy@cpu-torch@1ms", sampler=optuna.samplers.RandomSampler(seed=0), trials=1,
                            storage=storage)
    driver.open_study(plan)  # the parent made the study (and imported the driver) before forking
    ctx = multiprocessing.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_forked_worker, args=(storage, started, release))
    child.start()
    try:
        assert started.wait(120), "the forked worker never started its trial"
        study = optuna.load_study(study_name=plan.name, storage=storage)
        running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
        assert len(running) == 1
        record = TrialRecord.read(running[0])
        assert record.pid == child.pid and record.worker.endswith(f":{child.pid}")
        assert record.pid_start == driver.process_start(child.pid) != driver.process_start(os.getpid())
        # the parent resumes the study: the child's live trial must not be failed as stale
        resumed = driver.drive(plan, lambda t: ((0.5, 1.0), TrialRecord(quality=0.5, predicted_ms=1.0)),
                               progress=False)
        states = {t.number: t.state for t in resumed.get_trials()}
        assert states[running[0].number] == optuna.trial.TrialState.RUNNING
        assert optuna.trial.TrialState.FAIL not in states.values()
    finally:
        release.set()
        child.join(120)
    assert child.exitcode == 0
    final = optuna.load_study(study_name=plan.name, storage=storage).get_trials()
    assert [t.state for t in final] == [optuna.trial.TrialState.COMPLETE] * 2


# ------------------------------------------------------------------------ torch's RNG and threads

def test_seeded_build_uses_its_own_generator():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = build_sam("micro", seed=0)
    assert torch.equal(torch.get_rng_state(), state), "torch's global generator was read or changed"
    b = build_sam("micro", seed=0)
    c = build_sam("micro", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["image_encoder.pos_embed"], sc["image_encoder.pos_embed"])
    assert torch.equal(a.pixel_mean.flatten(), torch.tensor([123.675, 116.28, 103.53]))
    # PyTorch's default initialisation, as the unseeded build draws it: same bounds and spread
    torch.manual_seed(0)
    d = build_sam("micro").state_dict()
    for key in ("image_encoder.blocks.0.attn.qkv.weight", "mask_decoder.output_upscaling.0.weight",
                "image_encoder.blocks.0.mlp.lin1.bias", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"):
        assert sa[key].abs().max() <= d[key].abs().max() * 1.3, key
        assert abs(float(sa[key].std()) / float(d[key].std()) - 1) < 0.3, key
    for name, tensor in sa.items():
        assert torch.isfinite(tensor).all(), name


def test_torch_threads_restores_the_count_and_none_leaves_it():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("a failing block restores too")
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_export_times_at_the_predictors_thread_count_then_restores_the_process_count(tmp_path, capsys):
    predictor = {"device": "cpu-torch", "cv_mape_pct": 5.0, "within_10_pct": 90.0, "threads": 1}
    _store_study(tmp_path, trials=((0.5, 10.0),), attrs={"device": "cpu-torch", "predictor": predictor})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code = cli.main(["export", "--study", STUDY, "--trial", "0", "--results", str(tmp_path), "--repeats", "1",
                         "--out", str(tmp_path / "out")])
        assert code == 0, capsys.readouterr().err
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "NOTE: measuring with 1 thread, as the cpu-torch predictor" in out
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["measured_on"]["torch_threads"] == 1


def test_everything_takes_threads_and_restores_the_count(tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    img = np.full((96, 128, 3), 40, np.uint8)
    img[20:70, 30:90] = (200, 60, 60)
    Image.fromarray(img).save(folder / "a.png")
    before = torch.get_num_threads()
    assert cli.main(["everything", "--images", str(folder), "--out", str(tmp_path / "masks"), "--threads", "1",
                     "--no-progress"]) == 0
    assert torch.get_num_threads() == before
    assert (tmp_path / "masks" / "a.json").is_file()


# ------------------------------------------------------------------------ the newcomer's slips

def _parsers(parser, path=()):
    yield path, parser
    for name, sub in cli.subparsers_of(parser).items():
        yield from _parsers(sub, (*path, name))


def test_no_parser_accepts_abbreviated_options(capsys):
    parsers = list(_parsers(cli.build_parser()))
    assert len(parsers) > 15 and all(not p.allow_abbrev for _, p in parsers)
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["search", "--budget", "5"])
    assert exc.value.code == 2 and "unrecognized arguments: --budget 5" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["search", "--budget-ms", "5"]).budget_ms == 5.0


def test_wording_plurals_and_the_pareto_budget_help():
    assert (plural(1, "thread"), plural(2, "thread"), plural(None, "thread")) == ("1 thread", "2 threads", "? threads")
    from nas.studies.study import predictor_line

    facts = {"device": "cpu-torch", "cv_mape_pct": 4.0, "within_10_pct": 95.0}
    assert predictor_line({**facts, "threads": 1}).endswith("profiled with 1 thread")
    assert predictor_line({**facts, "threads": 4}).endswith("profiled with 4 threads")
    pareto = cli.subcommand_parser(cli.build_parser(), ("pareto",))
    text = next(a.help for a in pareto._actions if "--budget-ms" in a.option_strings)
    assert "this fast" not in text and "predicted latency is at most" in text


def test_main_help_exports_a_study_its_own_examples_make():
    exported = re.findall(r"samnas export --study '([^']+)'", cli.EPILOG)
    searches = [line for line in cli.EPILOG.splitlines() if line.strip().startswith("samnas search")]
    made = set()
    for line in searches:
        args = cli.build_parser().parse_args(line.split("#")[0].split()[1:])
        if args.budget_ms is not None:
            made.add(study_name(args.space, args.device, args.budget_ms))
    assert exported and set(exported) <= made, (exported, made)
