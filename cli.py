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
    "supernet.train_commands",
    "nas.latency.commands",
    "nas.commands",
    "nas.reference",
    "nas.everything.commands",
    "nas.evaluate",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samnas",
        description="Neural architecture search and auto-tuning for the Segment Anything Model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from supernet.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
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
