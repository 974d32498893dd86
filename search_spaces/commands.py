"""``samnas spaces list`` and ``samnas spaces show NAME``: the packaged search spaces."""
from __future__ import annotations

import argparse

from .config import dump_config
from .space import SearchSpace, available_spaces, format_count, format_table


def register(subparsers) -> None:
    """Add the ``spaces`` command group to the ``samnas`` sub-command parsers."""
    parser = subparsers.add_parser("spaces", help="list the search spaces, or show one")
    actions = parser.add_subparsers(dest="spaces_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: _print_help(parser))

    list_parser = actions.add_parser("list", help="one line per packaged search space")
    list_parser.set_defaults(func=cmd_list)

    show_parser = actions.add_parser(
        "show",
        help="the per-block choices of one search space",
        description="Show a search space: a packaged name (see `samnas spaces list`) or the path of a space .yaml file.",
    )
    show_parser.add_argument("name", metavar="NAME", help="packaged space name (sam_micro, ...) or path to a .yaml")
    show_parser.add_argument(
        "--format",
        choices=("table", "yaml", "json"),
        default="table",
        help="table (default) for people; yaml/json print the space file in its loadable form",
    )
    show_parser.set_defaults(func=cmd_show)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    """Print name, model type, blocks, resolutions and number of configs of each packaged space."""
    rows = [("name", "model type", "blocks", "resolutions", "configs")]
    for name in available_spaces():
        space = SearchSpace.load(name)
        rows.append(
            (
                space.name,
                space.model_type,
                str(space.num_blocks),
                ",".join(map(str, space.resolutions)),
                format_count(space.num_configs()),
            )
        )
    print("\n".join(format_table(rows)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one space as a table, or its space file as YAML or JSON."""
    space = SearchSpace.load(args.name)
    fmt = getattr(args, "format", "table")
    if fmt == "table":
        print(space.describe())
    else:
        # In JSON the override keys become strings; SearchSpace.from_dict reads "0" as block 0.
        print(dump_config(space.to_dict(), fmt), end="")
    return 0
