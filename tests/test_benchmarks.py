"""Smoke test: every benchmark script runs end to end with tiny arguments and writes a table that
names its commit and shows no path of the machine that ran it. The numbers are not checked here
(benchmarks, not tests, produce numbers); what is checked is that the scripts still work with the
current code, so committed tables can be regenerated."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COCO128 = ROOT.parent / "shared" / "data" / "coco128"

# script -> (tiny arguments, topic it writes)
TINY = {
    "subnets.py": (["--space", "sam_micro", "--resolutions", "128", "--seeds", "1", "--repeats", "1", "--threads", "1"],
                    "supernet"),
    "latency.py": (["--spaces", "sam_micro", "--resolutions", "128", "--samples", "8", "--test", "3", "--repeats", "1",
                    "--warmup", "0", "--min-seconds", "0", "--rounds", "1", "--folds", "2", "--threads", "1", "--quiet",
                    "--out-topic", "latency_smoke"], "latency_smoke"),
    "latency_validate.py": (["--spaces", "sam_micro", "--devices", "cpu-torch", "--samples", "8",
                             "--test", "2", "--repeats", "1", "--warmup", "0", "--min-seconds", "0", "--rounds", "1",
                             "--wait-minutes", "0", "--search-trials", "2", "--probe-repeats", "1", "--quiet",
                             "--out-topic", "latency_validate_smoke"], "latency_validate_smoke"),
    "search.py": (["--trials", "4", "8", "--seeds", "0", "--samplers", "surrogate", "random", "--eval-images", "2",
                   "--repeats", "1", "--threads", "1", "--pool-random", "8", "--pool-rounds", "1", "--fresh"], "search"),
    "search_models.py": (["--models", "gp", "per-resolution", "--seeds", "0", "--trials", "4", "10", "--budget-frac",
                          "0.6", "--pool-random", "8", "--pool-rounds", "1", "--threads", "1", "--out",
                          "search_models_smoke"], "search_models_smoke"),
    "fidelity_noise.py": (["--prompts", "2", "--random", "3", "--shrinks", "1", "--images", "2"], "fidelity_noise"),
    "search_rescore.py": (["--db", "bench_search.db", "--trials", "4", "8"], "search_rescore"),
    "supernet_training.py": (["--steps", "2", "--eval-images", "2", "--out-topic", "training_smoke"], "training_smoke"),
    "int8.py": (["--space", "sam_micro_int8", "--resolution", "128", "--repeats", "1", "--warmup", "1",
                 "--topic", "int8_smoke"], "int8_smoke"),
    "int8_front.py": (["--resolution", "128", "--trials", "3", "--seeds", "0", "--images", "2", "--samples", "5",
                       "--rounds", "1", "--min-seconds", "0.05", "--topic", "int8_front_smoke"], "int8_front_smoke"),
    "search_large.py": (["--space", "sam_micro", "--resolution", "128", "--trials", "3", "--samples", "5", "--images", "2",
                         "--topic", "search_large_smoke"], "search_large_smoke"),
    "everything.py": (["--quick", "--tune-images", "2", "--eval-images", "2", "--trials", "2", "--topic", "everything_smoke"],
                      "everything_smoke"),
    "mask_ceiling.py": (["--resolutions", "64", "--max-images", "2", "--topic", "mask_ceiling_smoke"],
                        "mask_ceiling_smoke"),
    "vit_b_pipeline.py": (["--model-type", "micro", "--space", "sam_micro", "--resolution", "128",
                           "--extra-train-resolutions", "--rank-images", "2", "--train-steps", "1", "--eval-images", "2",
                           "--profile-samples", "5", "--search-trials", "2", "--extra-models", "micro",
                           "--threads", "1", "--encoder-repeats", "1", "--topic", "pipeline_smoke", "--quiet"],
                          "pipeline_smoke"),
    "sam2_path.py": (["--space", "sam2_micro", "--resolution", "256", "--rank-images", "2", "--train-steps", "1",
                      "--profile-samples", "5", "--search-trials", "2", "--eval-images", "2", "--quiet",
                      "--topic", "sam2_path_smoke"], "sam2_path_smoke"),
    "sam2.py": (["--spaces", "sam2_micro", "--reference", "sam_micro", "--resolutions", "256", "--seeds", "1",
                 "--rounds", "1", "--repeats", "1", "--topic", "sam2_smoke"], "sam2_smoke"),
    "runtimes.py": (["--part", "runtimes", "--models", "sam_micro:128", "--decoders", "sam_micro:128", "--threads", "1",
                     "--rounds", "1",
                     "--repeats", "1", "--topic", "runtimes_smoke"], "runtimes_smoke"),
}
NEEDS_DATA = {"everything.py", "mask_ceiling.py", "vit_b_pipeline.py", "sam2_path.py", "search_models.py",
              "search_rescore.py"}
# scripts that read what another one wrote: that one runs first, with its tiny arguments, into the same place
FIRST = {"search_rescore.py": "search.py"}
# scripts with a second part, each run with its own tiny arguments
MORE = [("runtimes.py", ["--part", "fronts", "--resolution", "128", "--trials", "3", "--images", "2", "--samples", "5",
                         "--rounds", "1", "--topic", "runtimes_fronts_smoke"], "runtimes_fronts_smoke")]
# Every script but the quickest runs in the slow tier only (seconds to minutes each on 2 cores; minutes
# for everything.py); subnets.py stays in `-m "not slow"` as its benchmark smoke signal.
QUICK = {"subnets.py"}


def test_every_benchmark_script_has_tiny_arguments():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"common.py"}
    assert scripts == set(TINY), "add the new benchmark script to TINY"


CASES = [(s, *TINY[s]) for s in sorted(TINY)] + MORE


@pytest.mark.parametrize("script, args, topic",
                         [pytest.param(*case, marks=() if case[0] in QUICK else pytest.mark.slow) for case in CASES])
def test_benchmark_runs_and_names_its_commit(script, args, topic, tmp_path):
    if script in NEEDS_DATA and not COCO128.is_dir():
        pytest.skip(f"needs {COCO128}")
    env = {**os.environ, "SAMNAS_BENCH_RESULTS": str(tmp_path / "tables"), "SAMNAS_RESULTS": str(tmp_path / "store"),
           "OMP_NUM_THREADS": "1", "MLFLOW_ALLOW_FILE_STORE": "true"}
    for name, argv in ([(FIRST[script], TINY[FIRST[script]][0])] if script in FIRST else []) + [(script, args)]:
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "tables" / f"{topic}.md").read_text()
    assert re.search(r"^- commit: [0-9a-f]{7,}", table, re.M) or "- commit: unknown" in table, table[:600]
    for machine_path in (str(ROOT), str(tmp_path), "/root/", "/home/"):
        assert machine_path not in table, f"{topic}.md shows the machine path {machine_path}"
