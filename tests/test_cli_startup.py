"""The command line starts fast: listing commands or spaces imports neither torch nor optuna,
and running a command imports only the module that owns it. Measured as imports, not seconds,
so that a busy machine cannot fail it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
before = set(sys.modules)  # the interpreter's own start-up (site, .pth hooks)
sys.argv = ["samnas", *json.loads(sys.argv[1])]
import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "optuna", "mlflow", "onnxruntime", "matplotlib") if m in sys.modules)
# top-level packages the command imported beyond the standard library (not Cython's internal helpers)
outside = sorted({m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)
                 - {"cython_runtime"} - {m for m in sys.modules if m.startswith("_cython")})
print(json.dumps({"code": code, "heavy": heavy, "outside_stdlib": outside}), file=sys.stderr)
"""


def run_cli_in_fresh_process(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["spaces", "list"], ["spaces", "show", "sam_micro"],
                                  ["spaces", "show", "sam2_micro"], []])
def test_listing_imports_neither_torch_nor_optuna(args):
    report = run_cli_in_fresh_process(args)
    assert report["code"] in (0, 2)
    assert report["heavy"] == []


# What `samnas spaces list` may import beyond the standard library: the project's light layers, YAML
# and numpy (a few tenths of a second in all; torch alone takes seconds).
LIGHT = {"cli", "infra", "search_spaces", "supernet", "yaml", "numpy"}


def test_spaces_list_imports_only_light_packages():
    report = run_cli_in_fresh_process(["spaces", "list"])
    assert report["code"] == 0
    assert set(report["outside_stdlib"]) <= LIGHT, sorted(set(report["outside_stdlib"]) - LIGHT)


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
