"""Trained target networks, cached on disk: ``get_trained_lenet5`` and ``ensure_trained_lenet5``.

A model is identified by ``models.training.TrainConfig`` (data set, epochs, seed, the paper's
optimiser settings, and a fingerprint of the training data); its sha256 names the files
``<model_cache_dir()>/lenet5-<dataset>-e<epochs>-s<seed>-<key16>.pt`` (+ ``.json`` sidecar with the
test accuracy, seconds, config). A rerun loads them instead of training (``info["cached"] is True``).
A ``.lock`` file per entry (``flock``) makes a second process that asks for the same model wait for
the first one's training and then load its result, instead of training it again.

Threads: training uses ``TRAIN_THREADS = 1`` intra-op thread by default. The result of float32
training depends (in the last bits, and so in the trained weights) on the thread count, so a fixed
count makes the cached model reproducible on any machine size. Measured on the 2-core machine
(50 epochs = 50 x 938 batches of 64, channels_last, fused Adam), seconds per epoch:

    1 thread, alone               ~4.7-5.0
    2 threads, alone              ~3.0-3.6
    1 thread, two processes at once (MNIST and Fashion-MNIST in parallel)   ~5.1-5.3 each

so training both data sets in two 1-thread processes at once (measured: 267 s for 50 epochs of
both) beats training them one after the other with 2 threads (~300-360 s): ``ensure_trained_lenet5``
does that. (The full 50-epoch runs reached 99.01% on MNIST and 89.73% on Fashion-MNIST, seed 0.)
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

TRAIN_THREADS = 1
PAPER_SETTINGS = {"epochs": 50, "batch_size": 64, "lr": 1e-3, "betas": (0.9, 0.999)}


@contextlib.contextmanager
def _file_lock(path: Path, message: str | None = None):
    """Exclusive ``flock`` on ``path`` (no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if message:
                print(message, file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def lenet5_config(dataset: str, epochs: int = 50, seed: int = 0, train=None, data_dir=None, batch_size: int = 64,
                  lr: float = 1e-3, betas=(0.9, 0.999)):
    """The ``TrainConfig`` of a LeNet5. Its data fingerprint is that of ``train`` when given, else
    that of the data set's training split (``pipelines.data.split_fingerprint``: decoded and hashed
    once per process)."""
    from models.training import TrainConfig, data_fingerprint

    from .data import check_name, split_fingerprint

    dataset = check_name(dataset)
    fingerprint = data_fingerprint(*train) if train is not None else split_fingerprint(dataset, "train", data_dir)
    return TrainConfig(dataset=dataset, epochs=int(epochs), seed=int(seed), batch_size=int(batch_size), lr=float(lr),
                       beta1=float(betas[0]), beta2=float(betas[1]), data_fingerprint=fingerprint)


def get_trained_lenet5(dataset: str, epochs: int = 50, seed: int = 0, data_dir=None, progress: bool = True, *,
                       batch_size: int = 64, lr: float = 1e-3, betas=(0.9, 0.999), num_threads: int = TRAIN_THREADS,
                       train=None, test=None, cache_dir=None, position: int | None = None):
    """``(model, info)``: LeNet5 trained on ``dataset`` ("mnist" or "fashion-mnist") with the paper's
    settings, loaded from the cache when it was trained before, else trained and cached.

    ``data_dir``: IDX directory (``--data-dir``) instead of the packaged data. ``train``/``test``:
    already loaded ``(images, labels)`` to train on instead of the data set's (without them the
    data is loaded only when the model must be trained). ``cache_dir``: default
    ``pipelines.paths.model_cache_dir()``. ``info``: ``cached`` (bool), ``path``, ``test_accuracy``
    (percent), ``epochs``, ``seconds``, ``seconds_per_epoch``, ``config``, ``history``, ...
    The model is float32, in eval mode, on the CPU.
    """
    from models.training import load_trained, save_trained, train_lenet5

    from .data import check_name, load_dataset
    from .paths import model_cache_dir

    dataset = check_name(dataset)
    cache_dir = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    config = lenet5_config(dataset, epochs, seed, train=train, data_dir=data_dir, batch_size=batch_size, lr=lr,
                           betas=betas)
    hit = load_trained(config, cache_dir)
    if hit is not None:
        return hit
    lock = cache_dir / f"{config.stem()}.lock"
    with _file_lock(lock, f"[{dataset}] another process is training this LeNet5 ({config.stem()}); waiting for it"):
        hit = load_trained(config, cache_dir)  # trained by the process we waited for
        if hit is not None:
            return hit
        if train is None:
            train = load_dataset(dataset, "train", root=data_dir)
        if test is None:
            test = load_dataset(dataset, "test", root=data_dir)
        model, info = train_lenet5(train, test, epochs=config.epochs, seed=config.seed, batch_size=config.batch_size,
                                   lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                                   progress=progress, num_threads=num_threads, desc=f"LeNet5 {dataset}",
                                   position=position)
        info.update(config=asdict(config), data_dir=str(data_dir) if data_dir is not None else None)
        path = save_trained(model, info, config, cache_dir)
    info.update(cached=False, path=str(path))
    return model, info


_PRINT_LOCK = threading.Lock()


def _relay(stream) -> None:
    """Print a worker's stdout line by line through ``print`` (whole lines, never interleaved)."""
    for line in stream:
        with _PRINT_LOCK:
            print(line.rstrip("\n"), flush=True)
    stream.close()


def ensure_trained_lenet5(datasets=("mnist", "fashion-mnist"), epochs: int = 50, seed: int = 0, data_dir=None,
                          progress: bool = True, parallel: bool | None = None, cache_dir=None) -> dict:
    """Make sure a cached LeNet5 exists for every data set; returns ``{dataset: info}``.

    With ``parallel`` (default: when more than one model is missing and there are >= 2 CPUs) the
    missing models train at once in separate 1-thread processes (``python -m pipelines.targets``),
    which is the fastest way on a 2-core machine (see the module docstring). A failed worker is
    retried in this process, so its error surfaces here.
    """
    from models.training import load_trained

    from .data import check_name
    from .paths import model_cache_dir

    datasets = list(dict.fromkeys(check_name(d) for d in datasets))
    cache_dir = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    missing = []
    for ds in datasets:  # the fingerprints computed here are kept for the calls below (pipelines.data)
        if load_trained(lenet5_config(ds, epochs, seed, data_dir=data_dir), cache_dir) is None:
            missing.append(ds)
    if parallel is None:
        parallel = len(missing) > 1 and (os.cpu_count() or 1) >= 2
    if parallel and len(missing) > 1:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if progress:
            print(f"training LeNet5 for {', '.join(missing)}: {epochs} epochs each, in {len(missing)} parallel "
                  f"1-thread processes", flush=True)
        procs, readers = [], []
        for i, ds in enumerate(missing):
            cmd = [sys.executable, "-m", "pipelines.targets", ds, "--epochs", str(epochs), "--seed", str(seed),
                   "--threads", str(TRAIN_THREADS), "--position", str(i), "--cache-dir", str(cache_dir)]
            if data_dir is not None:
                cmd += ["--data-dir", str(data_dir)]
            if not progress:
                cmd.append("--quiet")
            # the workers' lines go through this process's stdout (so --log and redirections get them);
            # their tqdm bars (stderr) stay on the terminal
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
            procs.append(p)
            readers.append(threading.Thread(target=_relay, args=(p.stdout,), daemon=True))
            readers[-1].start()
        for p in procs:
            p.wait()
        for r in readers:
            r.join()
    out = {}
    for ds in datasets:  # loads what the workers cached; trains here whatever is still missing
        _, info = get_trained_lenet5(ds, epochs, seed, data_dir, progress, cache_dir=cache_dir)
        info["trained_now"] = ds in missing
        out[ds] = info
    return out


def main(argv=None) -> int:
    """``python -m pipelines.targets DATASET [DATASET] [--epochs 50] [--seed 0] [--data-dir DIR]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.targets",
                                     description="Train (or load from the cache) LeNet5 with the paper's settings.")
    parser.add_argument("datasets", nargs="+", help="mnist and/or fashion-mnist")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="directory with the IDX files instead of the packaged data")
    parser.add_argument("--threads", type=int, default=TRAIN_THREADS, help="torch threads per training process")
    parser.add_argument("--cache-dir", default=None, help="model cache directory (default: the project's)")
    parser.add_argument("--position", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from .data import DatasetError

    try:
        if len(args.datasets) == 1:
            _, info = get_trained_lenet5(args.datasets[0], args.epochs, args.seed, args.data_dir, not args.quiet,
                                         num_threads=args.threads, position=args.position,
                                         cache_dir=args.cache_dir)
            infos = {args.datasets[0]: info}
        else:
            infos = ensure_trained_lenet5(args.datasets, args.epochs, args.seed, args.data_dir, not args.quiet,
                                          cache_dir=args.cache_dir)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for ds, info in infos.items():
        how = "cached" if info.get("cached") else f"trained in {info.get('seconds', float('nan')):.0f} s"
        print(f"{ds}: test accuracy {info['test_accuracy']:.2f}% ({how}, {info.get('seconds_per_epoch', 0):.2f} "
              f"s/epoch, {info.get('num_threads')} thread(s)) -> {info['path']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


#: named targets on the command line -> the data set of their trained LeNet5
NAMED_TARGETS = {"lenet5-mnist": "mnist", "lenet5-fashion-mnist": "fashion-mnist"}


def load_target(spec: str, epochs: int = 50, seed: int = 0, progress: bool = False):
    """(full LeNet5 model, its conv part ``features``) for a named target (``lenet5-mnist``,
    ``lenet5-fashion-mnist``: the cached trained LeNet5, trained first if missing) or a LeNet5
    state_dict file (read with ``weights_only=True``: data, never code)."""
    import torch

    from models.lenet5 import LeNet5
    from models.random_cnn import ConstructionError

    if spec in NAMED_TARGETS:
        ensure_trained_lenet5([NAMED_TARGETS[spec]], epochs, seed, progress=progress)
        model, _ = get_trained_lenet5(NAMED_TARGETS[spec], epochs=epochs, seed=seed, progress=progress)
        return model, model.features
    path = Path(spec)
    if not path.exists():
        raise ConstructionError(f"--target: {spec!r} is neither {' nor '.join(NAMED_TARGETS)} nor an existing file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        model = LeNet5(seed=None)
        model.load_state_dict(sd)
    except Exception as exc:
        raise ConstructionError(f"--target: {path} is not a LeNet5 state_dict ({str(exc).splitlines()[0][:200]}); save "
                                f"one with torch.save(model.state_dict(), FILE)") from exc
    return model, model.features
