"""The one copy of what every experiment's report needs: machine info, the command line, status
counts, atomic CSV / JSON / text writes, and figures saved as PNG + PDF.

Every write goes to a temporary name in the destination folder and is moved into place with
``os.replace``, so a kill leaves the old file or the new one, never half a file (the joblib pattern).
This module imports no experiment; matplotlib is imported only by :func:`save_figure`.
"""
from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path

#: distributions whose versions :func:`machine_info` records (when installed)
VERSION_PACKAGES = ("torch", "numpy", "ortools", "highspy", "pulp")


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


def package_version(name: str) -> str | None:
    """Installed version of the distribution ``name`` (read from its metadata, not imported), or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Where a run happened: architecture, CPU count, OS, Python, library versions, load average."""
    versions = {name: package_version(name) for name in VERSION_PACKAGES}
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "versions": {k: v for k, v in versions.items() if v is not None},
            "load_average": load_average()}


def machine_line(load_label: str = "load at end") -> str:
    """One line for a report, e.g. ``x86_64, 2 cores, Python 3.11.7, load at end 1.23``."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{load_label} {load_average():.2f}")


def command_line(argv=None, prog: str = "slth") -> str:
    """``prog`` followed by the shell-quoted arguments (``sys.argv[1:]`` by default)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join([prog, *(shlex.quote(str(a)) for a in args)])


def status_counts(solutions) -> dict[str, int]:
    """How many solutions ended in each status (``Status`` values or plain strings), in order of first
    appearance."""
    counts: dict[str, int] = {}
    for s in solutions:
        status = getattr(s, "status", s)
        key = getattr(status, "value", status)
        counts[key] = counts.get(key, 0) + 1
    return counts


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``, on any
    error it is removed. ``mode``: ``"w"`` (text, ``kwargs`` as for :func:`open`) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_json(path, obj, *, indent: int | None = 1, default=None, sort_keys: bool = False) -> Path:
    """``json.dumps(obj, indent=indent, default=default, sort_keys=sort_keys)`` written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default, sort_keys=sort_keys))


def atomic_write_csv(path, rows, fieldnames, extrasaction: str = "raise") -> Path:
    """A header and one line per row (dicts, through :class:`csv.DictWriter`) written atomically."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fieldnames), extrasaction=extrasaction)
        w.writeheader()
        w.writerows(rows)
    return Path(path)


# ----------------------------------------------------------------------------- figures
def save_figure(fig, out_dir, stem: str, dpi: int = 130, formats=("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<stem>.png`` and ``.pdf`` (each atomically), then close it.
    Returns the written paths."""
    import matplotlib.pyplot as plt

    written = []
    try:
        for ext in formats:
            path = Path(out_dir) / f"{stem}.{ext}"
            with atomic_open(path, "wb") as fh:
                fig.savefig(fh, format=ext, dpi=dpi)
            written.append(path)
    finally:
        plt.close(fig)
    return written
