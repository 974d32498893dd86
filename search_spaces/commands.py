"""``samnas spaces list`` and ``samnas spaces show NAME``: the packaged search spaces."""
from __future__ import annotations

import argparse
from pathlib import Path

from infra.errors import UserError

from .config import JSON_SUFFIXES, dump_config, save_config, versioned
from .space import SearchSpace, available_spaces, format_count, format_table


EXAMPLES = """examples:
  samnas spaces list
  samnas spaces show sam_micro
  samnas spaces show sam_vit_b --format yaml > my_space.yaml     # a space file to edit and pass as --space
  samnas spaces sample sam_vit_b --largest --out subnet.yaml     # a subnet config (edit its blocks)
  samnas spaces sample sam_micro --random --seed 3 --format json
"""


def register(subparsers) -> None:
    """Add the ``spaces`` command group to the ``samnas`` sub-command parsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser("spaces", description="The packaged search spaces and subnet configs drawn from them.",
                                   epilog=EXAMPLES, formatter_class=fmt)
    actions = parser.add_subparsers(dest="spaces_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: _print_help(parser))

    list_parser = actions.add_parser("list", help="one line per packaged search space",
                                     description="Name, model type, blocks, resolutions and number of configs of "
                                     "each packaged search space.", epilog=EXAMPLES, formatter_class=fmt)
    list_parser.set_defaults(func=cmd_list)

    sample_parser = actions.add_parser(
        "sample", help="write a valid subnet config of a space (largest, smallest or random)",
        description="Write a subnet config of the space (YAML by default): the input of `samnas extract`, "
        "`samnas export --config` and `samnas latency predict`.", epilog=EXAMPLES, formatter_class=fmt)
    sample_parser.add_argument("name", metavar="NAME", help="packaged space name (sam_micro, ...) or path to a .yaml")
    which = sample_parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--largest", action="store_true", help="every block kept, at full width and resolution")
    which.add_argument("--smallest", action="store_true", help="the fewest blocks, heads and neurons allowed")
    which.add_argument("--random", action="store_true", help="a random valid config (see --seed)")
    sample_parser.add_argument("--seed", type=int, default=0, help="seed for --random (default: 0)")
    sample_parser.add_argument("--format", choices=("yaml", "json"),
                               help="yaml or json (default: from --out's suffix, else yaml)")
    sample_parser.add_argument("--out", help="file to write (default: print to the terminal)")
    sample_parser.set_defaults(func=cmd_sample)

    show_parser = actions.add_parser(
        "show",
        help="the per-block choices of one search space",
        description="Show a search space: a packaged name (see `samnas spaces list`) or the path of a space .yaml file.",
        epilog=EXAMPLES, formatter_class=fmt,
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


def cmd_sample(args: argparse.Namespace) -> int:
    """Print or write the largest, smallest or a random config of the space."""
    space = SearchSpace.load(args.name)
    config = space.largest() if args.largest else space.smallest() if args.smallest else space.sample(args.seed)
    config = space.validate(config)
    if args.out:
        if args.format and (args.format == "json") != (Path(args.out).suffix.lower() in JSON_SUFFIXES):
            raise UserError(f"--out {args.out}: the suffix does not match --format {args.format} "
                            "(use .json for JSON, .yaml for YAML)")
        save_config(config, args.out)
        print(f"wrote {args.out} ({space.name}, resolution {config.resolution}, "
              f"{len(config.kept_blocks)} of {config.num_blocks} blocks kept)")
    else:
        print(dump_config(versioned(config), args.format or "yaml"), end="")
    return 0
