"""The command line starts fast: listing commands or spaces imports neither torch nor optuna,
and running a command imports only the module that owns it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, time
t = time.perf_counter()
sys.argv = ["samnas", *json.loads(sys.argv[1])]
import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "optuna", "mlflow", "onnxruntime", "matplotlib") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "s": time.perf_counter() - t}), file=sys.stderr)
"""


def run_cli_in_fresh_process(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["spaces", "list"], ["spaces", "show", "sam_micro"], []])
def test_listing_imports_neither_torch_nor_optuna(args):
    report = run_cli_in_fresh_process(args)
    assert report["code"] in (0, 2)
    assert report["heavy"] == []


def test_spaces_list_starts_in_under_a_second():
    best = min(run_cli_in_fresh_process(["spaces", "list"])["s"] for _ in range(3))
    assert best < 1.0, f"samnas spaces list took {best:.2f} s (imports included)"


def test_pareto_help_loads_no_torch():
    report = run_cli_in_fresh_process(["pareto", "--help"])
    assert report["code"] == 0 and "torch" not in report["heavy"]


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_command_is_registered_by_the_module_the_table_names(command):
    module, help_text = cli.COMMANDS[command]
    parser = cli.build_parser([module])
    leaf = cli.subcommand_parser(parser, (command,))
    assert leaf._defaults.get("func") or cli.subparsers_of(leaf), f"{module} does not register `{command}`"
    listed = {a.dest: a.help for a in cli.subparsers_of_action(parser)._choices_actions}
    assert listed[command] == help_text


def test_help_lists_every_command_in_the_table_order(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    positions = [out.index(f"    {name} ") if f"    {name} " in out else out.index(f"    {name}\n") for name in cli.COMMANDS]
    assert positions == sorted(positions)
