"""The ``samnas`` command line: thin argument parsing that calls into the packages.

Each command group lives next to the code it drives and exposes ``register(subparsers)``;
this file only lists them. Errors a user can fix (bad path, bad config) are raised as
``UserError`` and printed as one line, never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Every top-level command: the module whose ``register(subparsers)`` adds it, and its one-line help.
# The help lives only here, so `samnas --help` lists every command without importing any command
# module (no torch, no optuna); running a command imports only the module that owns it.
COMMANDS = {
    "spaces": ("search_spaces.commands", "list the search spaces, show one, or sample a subnet config"),
    "rank": ("supernet.commands", "rank heads and MLP neurons by importance and permute the weights"),
    "extract": ("search_spaces.subnet_commands",
                "write a standalone subnet (sliced weights + config) from a supernet checkpoint"),
    "train-supernet": ("nas.training.commands", "train the supernet so that all its subnets work (sandwich rule)"),
    "latency": ("nas.latency.commands", "profile devices and fit latency predictors"),
    "search": ("nas.commands.search", "search Pareto-optimal subnets under a device latency budget"),
    "pareto": ("nas.commands.search", "list the Pareto fronts of stored studies"),
    "export": ("nas.commands.export", "export a subnet: checkpoint, ONNX encoder and decoder (OpenVINO IR for OpenVINO devices), model card"),
    "train-reference": ("nas.commands.train_reference", "train the small reference SAM (sam_micro) on photos and synthetic scenes"),
    "tune-everything": ("nas.everything.commands",
                        "tune the segment-everything policy for a model, device and budget"),
    "everything": ("nas.everything.commands", "segment everything in a folder of images with a policy file"),
    "calibrate-everything": ("nas.everything.commands", "calibrate a model's default segment-everything thresholds"),
    "everything-front": ("nas.everything.commands", "Pareto front (quality vs. ms per image) of policy studies"),
    "evaluate": ("nas.commands.evaluate", "measure a checkpoint or subnet on a COCO-style folder (mIoU, mask AR)"),
}
COMMAND_MODULES = list(dict.fromkeys(module for module, _ in COMMANDS.values()))

# Commands that read or write stored results (studies, latency files, runs, exports): each gets
# ``--results DIR``, which wins over $SAMNAS_RESULTS and ./results (infra.fileio.results_root).
RESULTS_COMMANDS = [
    ("search",), ("pareto",), ("export",),
    ("latency", "profile"), ("latency", "fit"), ("latency", "predict"), ("latency", "list"), ("latency", "import"),
    ("tune-everything",), ("everything-front",),
]

EPILOG = """examples:
  samnas search                                  # a complete demo search, built-in defaults
  samnas search --budget-ms 30                   # the demo at a budget of 30 ms: study sam_micro@cpu-torch@30ms
  samnas pareto --device cpu-torch --plot front.png   # the fronts, each with the trial to export
  samnas export --study 'sam_micro@cpu-torch@30ms' --trial 12 --out my_subnet/   # a trial pareto names
  samnas latency profile --space sam_micro --device cpu-torch --blocks
  samnas spaces list
  samnas spaces show sam_micro
  samnas rank --checkpoint sam_vit_b.pth --model-type vit_b --images photos/ --method wanda --out ranked.pt
  samnas extract --checkpoint ranked.pt --config subnet.yaml --out my_subnet/
  samnas tune-everything --images photos/ --budget-ms 300 --trials 30 --out policy.yaml
  samnas everything --policy policy.yaml --images photos/ --out masks/
  samnas evaluate --images val2017/ --annotations panoptic_val2017.json --everything default
"""


class _Commands(argparse._SubParsersAction):
    """The top-level sub-command action: each command's help comes from :data:`COMMANDS`."""

    def add_parser(self, name, **kwargs):
        if name in COMMANDS:
            kwargs.setdefault("help", COMMANDS[name][1])
        return super().add_parser(name, **kwargs)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the option and value, and the help to read.

    Sub-command parsers inherit the class (argparse creates them with the parent's type). No parser
    accepts an abbreviated option: ``--budget 5`` is an error, not a silent ``--budget-ms 5``.
    """

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def modules_for(argv: list[str]) -> list[str]:
    """The command modules that parsing ``argv`` needs: the one owning its command, or none at all
    (``samnas``, ``samnas --help`` or an unknown command only list the commands)."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    return [COMMANDS[command][0]] if command in COMMANDS else []


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """The full ``samnas`` parser. With ``modules``, only those command modules are imported; every
    other command is listed with its help but has no options (enough for ``samnas --help``)."""
    parser = Parser(
        prog="samnas",
        description="Neural architecture search and auto-tuning for the Segment Anything Model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=_Commands)
    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(name).register(sub)
    for name in COMMANDS:
        if name not in sub.choices:
            sub.add_parser(name)
    order = list(COMMANDS)  # listed in the table's order, whichever modules registered first
    sub._choices_actions.sort(key=lambda action: order.index(action.dest))
    ordered = sorted(sub.choices.items(), key=lambda item: order.index(item[0]))
    sub.choices.clear()  # reordered in place: argparse parses through this same dict (_name_parser_map)
    sub.choices.update(ordered)
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


def subparsers_of_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    """The action holding ``parser``'s sub-commands, or None for a leaf."""
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{name: parser}`` of the sub-commands directly under ``parser`` (empty for a leaf)."""
    action = subparsers_of_action(parser)
    return dict(action.choices) if action else {}


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


def run_command(args: argparse.Namespace):
    """Run the parsed command. The results folder is chosen here, once (``--results``, else
    $SAMNAS_RESULTS, which nothing else reads, else ./results), and every command passes it down."""
    from infra.fileio import results_root

    args.results = results_root(getattr(args, "results", None))
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    from infra.errors import UserError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(modules_for(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(getattr(args, "verbose", False))
    try:
        result = run_command(args)
    except UserError as exc:
        print(f"samnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samnas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `samnas ... | head`: the reader left; not an error of ours
        sys.stdout = open(os.devnull, "w")
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
