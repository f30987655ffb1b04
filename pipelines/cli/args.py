"""Argument types and the user-error exception shared by every command (the bottom of the CLI)."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import sys


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default (not for required options, flags, or a default of None, which each
    help text explains) and keeps the example lines of a description as written."""

    def _get_help_string(self, action):
        if (action.required or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or "%(default)" in (action.help or "")):
            return action.help
        return super()._get_help_string(action)


def _integer(text: str, ok, expected: str, bounds: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, lambda v: v >= 1, "a positive integer", ">= 1")


def seed(text: str) -> int:
    """A seed every backend accepts: 0 <= seed < 2^31 (CP-SAT and SCIP take 32-bit signed seeds)."""
    return _integer(text, lambda v: 0 <= v < 2 ** 31, "an integer seed", "in [0, 2^31)")


def n_jobs(text: str) -> int:
    return _integer(text, lambda v: v >= 1 or v == -1, "a positive integer or -1 (all cores)", ">= 1 or -1 (all cores)")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (seconds), got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10,15, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def str_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def command_line(argv=None) -> str:
    """The command as typed (``slth ...``), shell-quoted, for reports."""
    args = sys.argv[1:] if argv is None else list(argv)
    return "slth " + " ".join(shlex.quote(a) for a in args)


class _Tee:
    """stdout that also goes, line by line, to a log file (and only there when ``quiet``)."""

    def __init__(self, stream, fh, quiet: bool):
        self.stream, self.fh, self.quiet = stream, fh, quiet

    def write(self, text: str) -> int:
        self.fh.write(text)
        self.fh.flush()
        if not self.quiet:
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.fh.flush()
        if not self.quiet:
            self.stream.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def stage_log(path, quiet: bool):
    """Yields whether to print progress; with ``path``, stdout's lines also go to that file (appended)."""
    if path is None:
        yield not quiet
        return
    try:
        fh = open(path, "a")
    except OSError as exc:
        raise CliError(f"--log: cannot write {path!r} ({exc.strerror})") from None
    old = sys.stdout
    sys.stdout = _Tee(old, fh, quiet)
    try:
        yield True
    finally:
        sys.stdout = old
        fh.close()
