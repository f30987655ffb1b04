"""Argument types and the user-error exception shared by every command (the bottom of the CLI)."""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from pathlib import Path


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


#: upper bounds of the numeric flags (far above any sensible run; they keep typos from becoming work)
MAX_THREADS = 256  # milp.api.check_options' cap (CP-SAT refuses a huge num_workers as MODEL_INVALID)
MAX_JOBS = 256  # worker processes
MAX_N = 10_000  # random samples per target entry (the paper's studies use n <= 60)
MAX_SECONDS = 10 ** 7  # ~116 days; SCIP takes its limit as int64 milliseconds
MAX_COUNT = 1_000_000  # images, repeats, restarts, steps, epochs, chunk size
SEED_LIMIT = 2 ** 31  # CP-SAT and SCIP take 32-bit signed seeds


def _integer(text: str, ok, expected: str, bounds: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
    return value


def bounded_int(lo: int, hi: int, expected: str = "an integer"):
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        return _integer(text, lambda v: lo <= v <= hi, expected, f"in [{lo}, {hi}]")

    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


def positive_int(text: str) -> int:
    """A count: 1 <= value <= MAX_COUNT."""
    return _integer(text, lambda v: 1 <= v <= MAX_COUNT, "a positive integer", f"in [1, {MAX_COUNT}]")


#: solver threads (``slth solve --threads``)
threads = bounded_int(1, MAX_THREADS, "a positive integer")
#: random samples per target entry (``--n``)
sample_size = bounded_int(1, MAX_N, "a positive integer")


def seed(text: str) -> int:
    """A seed every backend accepts: 0 <= seed < 2^31 (CP-SAT and SCIP take 32-bit signed seeds)."""
    return _integer(text, lambda v: 0 <= v < SEED_LIMIT, "an integer seed", "in [0, 2^31)")


def n_jobs(text: str) -> int:
    return _integer(text, lambda v: 1 <= v <= MAX_JOBS or v == -1, "a positive integer or -1 (all cores)",
                    f"in [1, {MAX_JOBS}] or -1 (all cores)")


def positive_float(text: str) -> float:
    """Seconds: a finite number in (0, MAX_SECONDS]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= MAX_SECONDS:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds in (0, {MAX_SECONDS:g}], got {text!r}")
    return value


def int_list(text: str) -> list[int]:
    """Comma-separated sample sizes, each in [1, MAX_N]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10,15, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > MAX_N:
        raise argparse.ArgumentTypeError(f"expected integers in [1, {MAX_N}], got {text!r}")
    return values


# ---------------------------------------------------------------------- paths, checked before any work
def _writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def check_output_file(path, flag: str, create_parents: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """A file the command will write: not a folder, its folder exists (or, with ``create_parents``, can
    be created: the nearest existing ancestor is a writable folder) and is writable. One-line CliError."""
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise CliError(f"{flag}: {str(p)!r} must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise CliError(f"{flag}: {str(p)!r} is a folder; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise CliError(f"{flag}: {str(p)!r} exists and is not writable")
    parent = p.parent
    if create_parents:
        _creatable_dir(parent, flag, what=str(p))
    elif not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist; create it first"
        raise CliError(f"{flag}: the folder {str(parent)!r} {why}")
    elif not _writable_dir(parent):
        raise CliError(f"{flag}: the folder {str(parent)!r} is not writable")
    return p


def _creatable_dir(p: Path, flag: str, what: str) -> None:
    """``p`` is a writable folder, or can be created (no part of it is a file; the nearest existing
    ancestor is a writable folder)."""
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise CliError(f"{flag}: {what!r} cannot be created: {str(probe)!r} is a file, not a folder")
    if probe.exists() and not _writable_dir(probe):
        raise CliError(f"{flag}: {what!r} cannot be written: the folder {str(probe)!r} is not writable")


def check_output_folder(path, flag: str) -> Path:
    """A folder the command will create or fill (a run folder): not an existing file, and creatable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag}: {str(p)!r} is an existing file; give a folder")
    _creatable_dir(p, flag, what=str(p))
    return p


def check_input_folder(path, flag: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise CliError(f"{flag}: {str(p)!r} is not an existing folder")
    return p


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
