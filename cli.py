"""The ``samnas`` command line: thin argument parsing that calls into the packages.

Each command group lives next to the code it drives and exposes ``register(subparsers)``;
this file only lists them. Errors a user can fix (bad path, bad config) are raised as
``UserError`` and printed as one line, never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define ``register(subparsers)``; each adds its sub-commands.
COMMAND_MODULES = [
    "search_spaces.commands",
    "supernet.commands",
    "search_spaces.subnet_commands",
    "nas.training.commands",
    "nas.latency.commands",
    "nas.commands",
    "nas.reference",
    "nas.everything.commands",
    "nas.evaluate",
]

# Commands that read or write stored results (studies, latency files, runs, exports): each gets
# ``--results DIR``, which wins over $SAMNAS_RESULTS and ./results (infra.fileio.results_root).
RESULTS_COMMANDS = [
    ("search",), ("pareto",), ("export",),
    ("latency", "profile"), ("latency", "fit"), ("latency", "predict"), ("latency", "list"), ("latency", "import"),
    ("tune-everything",), ("everything-front",),
]

EPILOG = """examples:
  samnas search                                  # a complete demo search, built-in defaults
  samnas pareto --device cpu-torch --plot front.png
  samnas export --study 'sam_micro@cpu-torch@60ms' --trial 12 --out my_subnet/
  samnas latency profile --space sam_micro --device cpu-torch --blocks
  samnas spaces list
  samnas spaces show sam_micro
  samnas rank --checkpoint sam_vit_b.pth --model-type vit_b --images photos/ --method wanda --out ranked.pt
  samnas extract --checkpoint ranked.pt --config subnet.yaml --out my_subnet/
  samnas tune-everything --images photos/ --budget-ms 300 --trials 30 --out policy.yaml
  samnas everything --policy policy.yaml --images photos/ --out masks/
  samnas evaluate --images val2017/ --annotations panoptic_val2017.json --everything default
"""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the option and value, and the help to read.

    Sub-command parsers inherit the class (argparse creates them with the parent's type).
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="samnas",
        description="Neural architecture search and auto-tuning for the Segment Anything Model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for leaf in leaf_parsers(parser):
        leaf.add_argument("--verbose", action="store_true",
                          help="also show the libraries' log messages (Optuna, MLflow, ...)")
    for path in RESULTS_COMMANDS:
        leaf = subcommand_parser(parser, path)
        if leaf is not None:
            leaf.add_argument("--results", metavar="DIR",
                              help="results folder holding studies.db, latency/, mlruns/ and exports/ "
                              "(default: $SAMNAS_RESULTS, else ./results)")
    return parser


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{name: parser}`` of the sub-commands directly under ``parser`` (empty for a leaf)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser under ``parser`` that has no sub-commands of its own (the runnable commands)."""
    subs = subparsers_of(parser)
    if not subs:
        return [parser]
    return [leaf for sp in subs.values() for leaf in leaf_parsers(sp)]


def subcommand_parser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser | None:
    """The parser of ``samnas <path...>``, or None if there is no such command."""
    for name in path:
        parser = subparsers_of(parser).get(name)
        if parser is None:
            return None
    return parser


def configure_logging(verbose: bool) -> None:
    """Library log lines (Optuna's trial lines, MLflow's "Creating a new experiment") only with --verbose."""
    import logging

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:
        for name in ("optuna", "mlflow", "alembic", "sqlalchemy", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from infra.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(getattr(args, "verbose", False))
    try:
        if getattr(args, "results", None):
            from infra.fileio import use_results_root

            use_results_root(args.results)
        result = args.func(args)
    except UserError as exc:
        print(f"samnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samnas: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
