"""One command module's parser, as cli.py builds it, for tests that call a command in-process."""
from __future__ import annotations

import argparse

import cli


def parse_with(module, argv: list) -> argparse.Namespace:
    """``argv`` parsed by a ``samnas`` parser holding only ``module.register``'s commands."""
    parser = cli.Parser(prog="samnas")
    module.register(parser.add_subparsers(dest="command"))
    return parser.parse_args([str(a) for a in argv])


def run_with(module, argv: list) -> int:
    """Parse ``argv`` with :func:`parse_with` and run the chosen command as ``samnas`` runs it; its exit code."""
    return cli.run_command(parse_with(module, argv))
