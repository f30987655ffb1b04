"""What every experiment shares: a frozen config whose content hash is its identity (open_lth's
``foundations/hparams.py`` / ``desc.py`` pattern), and how a results folder records it.

An experiment's ``Config`` subclasses :class:`ExperimentConfig` and holds everything that
determines the results (and nothing that does not: worker count, store path, progress bars are
keyword arguments of ``run``). ``config.key()`` is the sha256 of the experiment name and the
canonical JSON of the fields; equal configs have equal keys in every process and on every machine.
``run`` writes ``config.json`` (name, key, fields) into the results folder and puts ``config_key`` in
``summary.json``, so :func:`finished_summary` can tell whether a folder holds a finished run of a
given config.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from ..reporting import atomic_write_json


def _plain(value: Any) -> Any:
    """JSON-ready copy: tuples become lists, dict keys strings, nested dataclasses dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Base of the experiments' configs. Subclasses are ``@dataclass(frozen=True)``, set ``NAME``
    and may validate / normalise their fields in ``__post_init__`` (call ``super().__post_init__()``
    first; use :meth:`_set` to replace a field's value)."""

    NAME: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # lists become tuples: hashable, and one spelling per value
            value = getattr(self, f.name)
            if isinstance(value, list):
                self._set(f.name, tuple(value))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """The fields as plain JSON values (tuples as lists)."""
        return _plain(self)

    def to_json(self) -> str:
        """Canonical JSON of the fields (sorted keys, no spaces)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def key(self) -> str:
        """First 16 hex digits of sha256(NAME + canonical JSON of the fields)."""
        return hashlib.sha256(f"{self.NAME}\n{self.to_json()}".encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line: name, key and the fields, e.g. ``bench [3f2a...]: suites=rss, time_limit=1.0``."""
        parts = []
        for name, value in self.to_dict().items():
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"{name}={text}")
        return f"{self.NAME} [{self.key()}]: " + ", ".join(parts)

    @classmethod
    def from_dict(cls, data: dict):
        """The config of ``to_dict()`` output (unknown keys are an error naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.NAME or cls.__name__}: unknown config field(s) {', '.join(unknown)}; "
                             f"fields are {', '.join(sorted(names))}")
        return cls(**data)


def finished_run(out, config: ExperimentConfig, progress: bool = True) -> dict | None:
    """``skip_finished`` for every experiment: the summary (with ``out``) of a finished run of ``config``
    in ``out``, announced, or None when there is work to do."""
    done = finished_summary(out, config)
    if done is None:
        return None
    if progress:
        print(f"{config.describe()}: finished run found in {out}; nothing to do", flush=True)
    return {**done, "out": str(out)}


def start_run(config, config_class: type, out, progress: bool = True, skip_finished: bool = False):
    """The opening of every experiment's ``run``: checks the config's type, prepares the output folder
    (:func:`prepare_out`) and, with ``skip_finished``, looks for a finished run of this config there.
    Returns (start time, output folder, the finished run's summary or None)."""
    import time

    if not isinstance(config, config_class):
        raise TypeError(f"config: expected {config_class.__module__}.{config_class.__name__}, got "
                        f"{type(config).__name__}")
    started = time.time()
    out = prepare_out(config, out, progress)
    done = finished_run(out, config, progress) if skip_finished else None
    return started, out, done


def config_record(config: ExperimentConfig) -> dict:
    """What ``config.json`` and ``summary.json`` store about a config."""
    return {"experiment": config.NAME, "config_key": config.key(), "config": config.to_dict()}


def write_config(out, config: ExperimentConfig) -> Path:
    """``<out>/config.json``: the experiment name, the config key and the fields (atomic write)."""
    return atomic_write_json(Path(out) / "config.json", config_record(config))


def finished_summary(out, config: ExperimentConfig) -> dict | None:
    """The ``summary.json`` of ``out`` if it records a finished run of exactly ``config``
    (same experiment and config key), else None."""
    try:
        summary = json.loads((Path(out) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if summary.get("experiment") != config.NAME or summary.get("config_key") != config.key():
        return None
    return summary


# ----------------------------------------------------------------------------- run folders
def prepare_out(config: ExperimentConfig, out=None, progress: bool = True) -> Path:
    """The folder a run of ``config`` writes to (:func:`pipelines.paths.run_dir`: a fresh
    ``slth-runs/<experiment>/<key>/`` unless ``out`` is given), with its ``config.json`` written.

    An explicit ``out`` that holds another run's results (another config, or files without a
    ``config.json``) is announced on stderr as being replaced; the same config is announced as updated."""
    import sys

    from ..paths import run_dir

    path = run_dir(config.NAME, config.key(), out)
    if out is not None and any(path.iterdir()):
        try:
            old = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict) or old.get("config_key") != config.key():
            what = (f"{old.get('experiment')} [{old.get('config_key')}]" if isinstance(old, dict)
                    else "results of an unrecorded config")
            print(f"replacing the {what} in {path} with {config.NAME} [{config.key()}]", file=sys.stderr, flush=True)
        elif progress:
            print(f"updating the results of {config.NAME} [{config.key()}] in {path}", file=sys.stderr, flush=True)
    write_config(path, config)
    return path


def record_run(out, config: ExperimentConfig, command: str, started: float, stages: dict | None = None,
               **extra) -> dict:
    """Append this run to ``<out>/runs.jsonl`` (one JSON line per run: command, config key, versions,
    machine, start time, wall seconds, stage seconds): a rerun adds its timing, it never erases the first."""
    import time

    from ..reporting import atomic_write_text, machine_info

    record = {"experiment": config.NAME, "config_key": config.key(), "command": command,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
              "wall_seconds": round(time.time() - started, 2), "stages": stages or {}, "machine": machine_info(),
              **extra}
    path = Path(out) / "runs.jsonl"
    try:
        previous = path.read_text()
    except OSError:
        previous = ""
    if previous and not previous.endswith("\n"):
        previous += "\n"
    atomic_write_text(path, previous + json.dumps(record, default=str) + "\n")
    return record


def past_runs(out) -> list[dict]:
    """The records of :func:`record_run` in ``<out>/runs.jsonl``, oldest first (damaged lines skipped)."""
    runs = []
    try:
        lines = (Path(out) / "runs.jsonl").read_text().splitlines()
    except OSError:
        return runs
    for line in lines:
        try:
            runs.append(json.loads(line))
        except ValueError:
            continue
    return runs


def runs_markdown(out) -> list[str]:
    """A markdown table of every run recorded in ``<out>/runs.jsonl`` (oldest first): when, wall time,
    command, machine, so a report keeps the first run's timing after any number of reruns."""
    runs = past_runs(out)
    if not runs:
        return []
    lines = ["| started | wall | command | machine |", "|---|---|---|---|"]
    for r in runs:
        m = r.get("machine", {})
        machine = (f"{m.get('machine', '?')}, {m.get('cpu_count', '?')} cores, Python {m.get('python', '?')}, "
                   f"torch {m.get('versions', {}).get('torch', '?')}, load {m.get('load_average', float('nan')):.2f}")
        wall = float(r.get("wall_seconds", float("nan")))
        lines.append(f"| {r.get('started', '?')} | {wall:.1f} s ({wall / 60:.1f} min) | `{r.get('command', '')}` | {machine} |")
    return lines
