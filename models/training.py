"""Training LeNet5 as in the ICLR 2022 experiment, and the on-disk format of trained models.

Paper settings (Section 3, Flux.jl defaults): Kaiming-uniform init, Adam (lr 1e-3, betas 0.9/0.999,
eps 1e-8), batch 64, 50 epochs, cross-entropy on the logits, the last partial batch kept (Flux's
DataLoader default). The data is passed in as tensors; this module imports no solver and nothing
from ``pipelines`` (the cache-path wrapper is ``pipelines.targets.get_trained_lenet5``).

Speed on the 2-core CPU: the batches are slices of one in-memory tensor re-ordered by a seeded
permutation each epoch (no DataLoader, no worker processes); model and images in channels_last
(~10% faster for the convolutions and pools on oneDNN); Adam's fused CPU kernel (its step is ~3x
cheaper than the per-parameter loop for these 10 small tensors). Thread count: see
``pipelines/targets.py``.

Caching: ``TrainConfig`` (frozen) hashes to ``config.key()`` = sha256 of its canonical JSON.
``save_trained`` writes ``<stem>.pt`` (a state_dict, ``torch.save``) and ``<stem>.json`` (config,
test accuracy, epochs, seconds, ...) through temp files and ``os.replace``, so a kill never leaves
a half-written file; ``load_trained`` reads with ``torch.load(weights_only=True)`` and only accepts
an entry whose JSON config equals the requested one.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .lenet5 import LeNet5

TRAINING_CODE_VERSION = 1  # bump when a change to the training procedure must invalidate cached models


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model. ``data_fingerprint``: ``data_fingerprint(...)`` of
    the training data, so another data set under the same name never reuses a cached model."""

    dataset: str
    epochs: int = 50
    seed: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    arch: str = "lenet5"
    init: str = "kaiming_uniform"
    data_fingerprint: str = ""
    version: int = TRAINING_CODE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def key(self) -> str:
        """sha256 of the canonical JSON (hex)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def stem(self) -> str:
        """Cache file name without extension, e.g. ``lenet5-mnist-e50-s0-<16 hex>``."""
        return f"{self.arch}-{self.dataset}-e{self.epochs}-s{self.seed}-{self.key()[:16]}"


def data_fingerprint(images, labels) -> str:
    """sha256 (first 16 hex digits) of the float32 images and int64 labels."""
    h = hashlib.sha256()
    x = torch.as_tensor(images, dtype=torch.float32).contiguous()
    y = torch.as_tensor(labels, dtype=torch.int64).contiguous()
    h.update(repr((tuple(x.shape), tuple(y.shape))).encode())
    h.update(x.numpy().tobytes())
    h.update(y.numpy().tobytes())
    return h.hexdigest()[:16]


def _as_images(images) -> torch.Tensor:
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 1, 28, 28)
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"images: expected shape (N, 1, 28, 28) or (N, 784), got {tuple(x.shape)}")
    return x


def evaluate_accuracy(model: torch.nn.Module, images, labels, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent (0-100) of ``model`` on ``images`` (N,1,28,28) / ``labels`` (N,)."""
    x, y = _as_images(images), torch.as_tensor(labels, dtype=torch.int64)
    if len(x) != len(y):
        raise ValueError(f"images and labels differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        return float("nan")
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out = model(x[start:start + batch_size].to(dtype))
            correct += int((out.argmax(1) == y[start:start + batch_size]).sum())
    model.train(was_training)
    return 100.0 * correct / len(x)


def shuffle_generator(seed: int) -> torch.Generator:
    """The generator of the per-epoch permutations: a stream separate from the init's ``seed``."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + 0x5EED) % (2**63))


def _adam(params, **kw) -> torch.optim.Adam:
    """Adam with the fused CPU kernel (same update, ~3x cheaper step than the per-parameter loop)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # torch without fused CPU Adam
        return torch.optim.Adam(params, foreach=False, **kw)


def train_lenet5(train, test=None, *, epochs: int = 50, seed: int = 0, batch_size: int = 64, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, progress: bool = True,
                 num_threads: int | None = None, channels_last: bool = True, desc: str = "LeNet5",
                 position: int | None = None):
    """Train a fresh seeded LeNet5 on ``train = (images, labels)``; returns ``(model, info)``.

    ``test = (images, labels)`` (optional) is only evaluated after the last epoch. ``num_threads``:
    torch intra-op threads while training (None = leave the current setting), restored afterwards.
    ``info``: test_accuracy (percent, NaN without test data), train_loss/train_accuracy of the last
    epoch (running, over the epoch's batches), history (per epoch), seconds, seconds_per_epoch,
    num_threads, torch version, ``cached=False``. The returned model is in eval mode, contiguous
    (NCHW) memory format, float32. ``progress``: a tqdm bar over the epochs (``position``: its row,
    for several processes sharing one terminal).
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1 (got {epochs}, {batch_size})")
    x, y = _as_images(train[0]), torch.as_tensor(train[1], dtype=torch.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"train: need as many labels as images, and at least one (got {len(x)}, {len(y)})")
    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        torch.manual_seed(int(seed))  # nothing below should draw from it, but make sure it is seeded
        model = LeNet5(seed=seed)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
        model.train()
        opt = _adam(model.parameters(), lr=lr, betas=tuple(betas), eps=eps)
        gen = shuffle_generator(seed)
        n = len(x)
        history = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, desc=desc, unit="epoch", dynamic_ncols=True, mininterval=0, position=position,
                       disable=None)  # silent when stderr is not a terminal (the caller prints stage lines)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            te = time.perf_counter()
            perm = torch.randperm(n, generator=gen)
            xs, ys = x[perm], y[perm]  # one gather per epoch; the batches below are views
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.int64)
            for start in range(0, n, batch_size):
                xb, yb = xs[start:start + batch_size], ys[start:start + batch_size]
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    loss_sum += loss.detach() * len(yb)
                    correct += (out.argmax(1) == yb).sum()
            rec = {"epoch": epoch + 1, "loss": float(loss_sum) / n, "accuracy": 100.0 * int(correct) / n,
                   "seconds": round(time.perf_counter() - te, 3)}
            history.append(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['accuracy']:.2f}%", s=f"{rec['seconds']:.1f}")
                bar.update(1)
                if bar.disable and (epoch + 1) % 5 == 0 or bar.disable and epoch + 1 == epochs:  # a log, not a tty
                    el = time.perf_counter() - t0
                    print(f"{desc}: epoch {epoch + 1}/{epochs}, loss {rec['loss']:.4f}, train accuracy "
                          f"{rec['accuracy']:.2f}%, elapsed {el:.0f} s, ETA {el / (epoch + 1) * (epochs - epoch - 1):.0f} s",
                          flush=True)
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        model = model.to(memory_format=torch.contiguous_format).eval()
        test_acc = evaluate_accuracy(model, *test) if test is not None else float("nan")
        threads_used = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    info = {"cached": False, "test_accuracy": test_acc, "epochs": epochs,
            "train_loss": history[-1]["loss"] if history else float("nan"),
            "train_accuracy": history[-1]["accuracy"] if history else float("nan"),
            "seconds": round(seconds, 3), "seconds_per_epoch": round(seconds / epochs, 3) if epochs else 0.0,
            "num_threads": threads_used, "channels_last": channels_last, "torch": torch.__version__,
            "history": history}
    return model, info


# ------------------------------------------------------------------------------------- on disk


def cache_paths(config: TrainConfig, cache_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(``<stem>.pt``, ``<stem>.json``) of ``config`` in ``cache_dir``."""
    d = Path(cache_dir)
    return d / f"{config.stem()}.pt", d / f"{config.stem()}.json"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cached models are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_trained(model: torch.nn.Module, info: dict, config: TrainConfig, cache_dir: str | os.PathLike) -> Path:
    """Write the state_dict and the JSON sidecar (weights first; an entry counts once both exist)."""
    pt, js = cache_paths(config, cache_dir)
    pt.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write(pt, lambda f: torch.save(state, f))
    meta = {k: v for k, v in info.items() if k not in ("cached", "path")}
    meta.update(config=asdict(config), config_key=config.key(), weights=pt.name)
    payload = json.dumps(meta, indent=1, sort_keys=True, default=float).encode()
    _atomic_write(js, lambda f: f.write(payload))
    return pt


def load_trained(config: TrainConfig, cache_dir: str | os.PathLike):
    """``(model, info)`` from the cache, or None if there is no valid entry for ``config``.

    ``info`` is the sidecar's content plus ``cached=True`` and ``path``. An entry whose sidecar is
    unreadable or belongs to another config, or whose weights do not load, counts as absent.
    """
    pt, js = cache_paths(config, cache_dir)
    if not (pt.is_file() and js.is_file()):
        return None
    try:
        meta = json.loads(js.read_text())
        if meta.get("config") != json.loads(json.dumps(asdict(config))):
            return None
        state = torch.load(pt, map_location="cpu", weights_only=True)
        model = LeNet5(seed=0)  # overwritten below; a fixed seed keeps the global RNG untouched
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign entry of any kind: retrain
        import warnings

        warnings.warn(f"ignoring unreadable cached model {pt}: {exc}", RuntimeWarning, stacklevel=2)
        return None
    info = dict(meta, cached=True, path=str(pt))
    return model.eval(), info
