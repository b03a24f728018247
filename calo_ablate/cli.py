"""The `calo-ablate` command: argument parsing and the one place where errors become messages.

Each module of calo_ablate/commands/ registers its sub-commands (their options and the function that does
the work, as `run`); this module puts them under one parser, in the order `--help` lists them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from calo_ablate.commands import data, evaluate, study, train, ui
from calo_ablate.errors import EXIT_ERROR, EXIT_INTERRUPTED, CaloAblateError, error_line
from calo_ablate.model import families  # noqa: F401  (registers the built-in families' config sections)

COMMAND_MODULES = (data, train, evaluate, study, ui)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calo-ablate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CaloAblateError as err:
        print(error_line(err), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("calo-ablate: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
