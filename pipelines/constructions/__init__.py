"""Constructions of pruned random networks: a registry (name -> class) and the one runner.

Adding a construction = one new file with a :class:`~pipelines.constructions.base.Construction`
subclass + one line in ``REGISTRY``. ``slth prune --construction NAME`` lists these names.
"""
from __future__ import annotations

import time


from models.random_cnn import ConstructionError

from .base import Construction, LayerOptions, Subproblem, parse_scale, scaled_target, solve_subproblems
from .dense_rfss import RfssConstruction
from .iclr import IclrConstruction
from .structured import StructuredConstruction

REGISTRY: dict[str, type[Construction]] = {
    IclrConstruction.name: IclrConstruction,
    StructuredConstruction.name: StructuredConstruction,
    RfssConstruction.name: RfssConstruction,
}


def load_pruned(path):
    """A pruned random network file written by any construction's network class, read with the class its
    format tag names (``weights_only=True``; every check of that class's ``load``)."""
    import torch

    from models import random_cnn, random_dense, structured_cnn

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ConstructionError(f"{path}: not a readable pruned-network file ({str(exc).splitlines()[0][:200]})") from None
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt == random_dense.FORMAT:
        return random_dense.PrunedRandomNet.load(path)
    if fmt == structured_cnn.FORMAT:
        return structured_cnn.StructuredRandomCNN.load(path)
    if fmt in random_cnn.READABLE_FORMATS:
        return random_cnn.PrunedRandomCNN.load(path)
    raise ConstructionError(f"{path}: format: {fmt!r:.60} is not a pruned-network format of slth (write it with slth prune)")


def construction_names() -> list[str]:
    return list(REGISTRY)


def get_construction(name: str) -> type[Construction]:
    """The construction class registered under ``name``; a clear error naming the choices otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ConstructionError(f"--construction: unknown construction {name!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def construct(target, n: int, construction: str = "iclr", solver: str = "auto", seed: int = 0,
              dist: str | None = None, scale="none", n_jobs: int = 1, store=None, time_limit=None,
              progress: bool = False, **options):
    """Build the random network of ``construction`` for ``target`` (``options``: that construction's own
    keyword arguments, e.g. ``domain`` and ``k`` of ``structured``), solve every subproblem through the
    batch engine (parallel, resumable from ``store``) and apply the masks
    (:func:`~pipelines.constructions.base.solve_subproblems`). Returns (construction object, info).
    ``dist`` None: the construction's own (ICLR: uniform, the paper's; structured: normal, Theorem 3)."""
    if dist is not None:
        options["dist"] = dist
    c = get_construction(construction)(target, n, seed=seed, scale=scale, **options)
    return c, solve_subproblems(c, solver=solver, n_jobs=n_jobs, store=store, time_limit=time_limit, seed=seed,
                                progress=progress)


def target_network(model, features, construction: str):
    """What ``construction`` prunes of a LeNet5: its conv part ``features``, or the whole network
    ``nn.Sequential(*features, *classifier)`` for constructions with ``WHOLE_NETWORK``."""
    from torch import nn

    if get_construction(construction).WHOLE_NETWORK:
        return nn.Sequential(*model.features, *model.classifier)
    return features


def prune(target: str, n: int, construction: str = "iclr", solver: str = "auto", out=None, seed: int = 0,
          dist: str | None = None, scale="none", n_jobs: int = 2, time_limit=None, store=None, progress: bool = True,
          **options):
    """Python equivalent of ``slth prune``: load a named target (or a LeNet5 state_dict file), prune the
    random network of ``construction`` for its conv part (or the whole LeNet5, for constructions with
    ``WHOLE_NETWORK``), save it to ``out``. Returns (network, info)."""
    from ..paths import store_dir
    from ..targets import load_target

    model, features = load_target(target, progress=progress)
    features = target_network(model, features, construction)
    store = store if store is not None else store_dir() / "construction.sqlite"
    t0 = time.perf_counter()
    c, info = construct(features.double(), n, construction, solver=solver, seed=seed, dist=dist, scale=scale,
                        n_jobs=n_jobs, store=store, time_limit=time_limit, progress=progress, **options)
    info["wall_seconds"] = time.perf_counter() - t0
    g = c.network
    counts = g.parameter_counts()
    info.update(counts, target=sum(p.numel() for p in features.parameters()))
    if hasattr(c, "densities"):
        info["densities"] = c.densities()
    if hasattr(c, "domain_summary"):
        info["domain_summary"] = c.domain_summary()
    if out is not None:
        g.save(out, extra={"target": target, "n": n, "construction": construction, "solver": solver, "seed": seed,
                           "dist": getattr(c, "dist", dist), "scale": str(scale), "lambdas": list(c.lambdas), "options": options, "counts": counts,
                           "statuses": info["statuses"], "max_entry_residual": float(info["residuals"].max())})
    return g, info


__all__ = ["prune", "load_pruned", "Construction", "ConstructionError", "LayerOptions", "Subproblem", "REGISTRY", "construct",
           "construction_names", "get_construction", "target_network", "parse_scale", "scaled_target"]
