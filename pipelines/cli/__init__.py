"""The ``slth`` command line: one small module per command over the registries.

``COMMANDS`` maps a command name to its module; each module has ``HELP``, ``EXAMPLE``,
``add_arguments(parser)`` and ``run(args) -> exit code``. ``main`` only looks the name up. Commands
import the library lazily, so ``slth solve`` does not pay for torch. A user error (bad value, missing
file) is one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .args import CliError, Formatter

#: command -> module (relative to this package); adding a command = one module + one line
COMMANDS = {
    "solve": "solve",
    "export": "export",
    "batch": "batch",
    "prune": "prune",
    "verify": "verify",
    "reproduce": "reproduce",
    "bench": "bench",
}


def command_module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only`` set, just that command gets its arguments (the others keep their one-line
    help), so a command never imports what another one needs (``slth solve`` stays free of torch)."""
    parser = argparse.ArgumentParser(prog="slth", description="Strong lottery tickets by subset-sum MILPs.",
                                     formatter_class=Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        mod = command_module(name)
        p = sub.add_parser(name, help=mod.HELP, description=f"{mod.HELP}.\n\nexample:\n  {mod.EXAMPLE}",
                           formatter_class=Formatter)
        if only is None or only == name:
            mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage + one error line (exit 2), or --help (exit 0)
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError, TypeError, CliError) as exc:  # OSError: FileNotFoundError, PermissionError, ...
        print(f"slth {args.command}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
