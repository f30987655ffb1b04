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
