"""One instance type for the three subset-sum families.

- RSS (Lueker 1998; ICLR 2022 Sec. 3 and Appendix C): scalars x_1..x_n, target z,
  minimise |z - sum_i a_i x_i| over a in {0,1}^n.
- RFSS ("On the sparsity of the SLTH", fixed-size subset sum): the same with sum_i a_i = k.
- MRSS (NeurIPS 2023, Theorem 5): vectors X_i in R^d, target z in R^d,
  minimise ||z - sum_i a_i X_i||_inf, optionally with sum_i a_i = k.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class InstanceError(ValueError):
    """Invalid instance data; the message names the field and the fix (one line).

    From :meth:`Instance.load` the message is ``"<file>: <field>: <what is wrong and the fix>"``.
    """


#: Largest instance a file may declare, in candidate entries n*d (float64: 8 bytes each). A file that
#: declares more is refused before anything is allocated (a corrupt or hostile header could otherwise
#: ask for terabytes). Subset-sum instances solved here are orders of magnitude smaller.
MAX_ENTRIES = 50_000_000
#: Largest ``.json`` instance file read (Python's JSON objects take ~5-10x the text's size in memory).
MAX_JSON_BYTES = 256 * 2 ** 20
FORMAT = "slth-instance/1"
_NPZ_FIELDS = ("candidates", "target", "cardinality", "format")
_KIND_NAMES = {"b": "booleans", "U": "text", "S": "bytes", "V": "structured records", "M": "dates",
               "m": "time spans", "O": "Python objects"}


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) if "\n" in str(text) or "\r" in str(text) else str(text)


def _real_array(value, field: str) -> np.ndarray:
    """``value`` as a new float64 array, refusing anything that is not made of real numbers."""
    if isinstance(value, (str, bytes, dict)):
        raise InstanceError(f"{field}: got {type(value).__name__} {_short(value)}, not numbers; pass a "
                            f"number or a list of numbers")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise InstanceError(f"{field}: not a rectangular array of real numbers ({_one_line(exc)}); pass a "
                            f"list of numbers (or of equal-length lists of numbers)") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise InstanceError(f"{field}: complex values (dtype {arr.dtype}) are not allowed - the imaginary part "
                            f"would be dropped; pass real numbers")
    if kind == "O":  # Python objects: integers beyond int64, Fractions, Decimals, None, lists, ...
        flat = arr.reshape(-1)
        out = np.empty(flat.shape, dtype=np.float64)
        for i, v in enumerate(flat):
            where = f"entry {i}" if arr.ndim else "value"
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Number):
                raise InstanceError(f"{field}: {where} is {type(v).__name__} {_short(v)}, not a real number; "
                                    f"pass numbers")
            if not isinstance(v, numbers.Real):
                raise InstanceError(f"{field}: {where} is complex ({_short(v)}) - the imaginary part would be "
                                    f"dropped; pass real numbers")
            try:
                out[i] = float(v)
            except (OverflowError, ValueError, TypeError):
                raise InstanceError(f"{field}: {where} ({_short(v)}) is too large for float64 (at most "
                                    f"~1.8e308 in magnitude); rescale the instance") from None
        return out.reshape(arr.shape)
    if kind not in "iuf":
        raise InstanceError(f"{field}: holds {_KIND_NAMES.get(kind, f'dtype {arr.dtype}')} (dtype {arr.dtype}), "
                            f"not real numbers; pass floats")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.array(arr, dtype=np.float64, copy=True)  # float128 beyond float64 becomes inf: refused below


def _cardinality(value, n: int) -> int | None:
    """None, or a Python int / numpy integer scalar (or 0-d integer array) k with 0 <= k <= n."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InstanceError(f"cardinality: the cardinality must be an integer or None, got {_short(value)} "
                            f"({type(value).__name__}); pass a whole number 0 <= k <= n, or None for no "
                            f"cardinality constraint")
    k = int(value)
    if not 0 <= k <= n:
        raise InstanceError(f"cardinality: the cardinality k={_short(k)} is outside 0..n={n}; choose 0 <= k <= "
                            f"number of candidates")
    return k


def validate(candidates, target, cardinality=None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """The one validation of instance data, shared by the constructor, JSON and ``.npz`` loading.

    Returns ``(X, z, k)``: X float64 of shape (n, d) (a 1-D input becomes (n, 1)), z float64 of
    shape (d,), k an ``int`` or None. Raises :class:`InstanceError` (``"<field>: <problem>; <fix>"``).

    Rules: candidates and target are real numbers (ints/floats; no complex, booleans, text or
    objects), finite and representable in float64; candidates has shape (n,) or (n, d) with
    n, d >= 1; target is a scalar or shape (1,) for shape (n,), shape (d,) for (n, d); cardinality
    is None or an integer (Python int or numpy integer, not bool, not a float such as 2.5 or 2.0)
    with 0 <= k <= n.
    """
    X = _real_array(candidates, "candidates")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise InstanceError(f"candidates: the candidates must have shape (n,) or (n, d), got shape {X.shape}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise InstanceError(f"candidates: empty (shape {X.shape}); give at least one candidate")
    finite = np.isfinite(X)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise InstanceError(f"candidates: contains NaN or inf (first at row {bad}); pass finite values "
                            f"representable in float64")
    z = _real_array(target, "target")
    if z.ndim > 1:
        raise InstanceError(f"target: the target must be a scalar or of shape (d,), got shape {z.shape}")
    z = z.reshape(-1)
    if z.size != d:
        raise InstanceError(
            f"target: the target has {z.size} entries but candidates have dimension d={d}; "
            f"target must be a scalar for candidates of shape (n,), or shape (d,) for shape (n, d)")
    if not np.isfinite(z).all():
        raise InstanceError("target: contains NaN or inf; pass a finite target representable in float64")
    return X, z, _cardinality(cardinality, n)


@dataclass(frozen=True, eq=False)
class Instance:
    """A subset-sum instance.

    Args:
        candidates: shape (n,) for RSS/RFSS or (n, d) for MRSS; finite reals.
        target: scalar (or shape (1,)) when candidates is 1-D; shape (d,) when candidates is (n, d).
        cardinality: ``None`` (free subset) or an integer k with 0 <= k <= n (RFSS / fixed-size MRSS).

    Every input goes through :func:`validate` (also what :meth:`load` and :meth:`from_dict` use).
    """

    candidates: np.ndarray
    target: np.ndarray
    cardinality: int | None = None

    def __init__(self, candidates, target, cardinality=None):
        X, z, k = validate(candidates, target, cardinality)
        X.setflags(write=False)
        z.setflags(write=False)
        object.__setattr__(self, "candidates", X)
        object.__setattr__(self, "target", z)
        object.__setattr__(self, "cardinality", k)

    # ------------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        return self.candidates.shape[0]

    @property
    def d(self) -> int:
        return self.candidates.shape[1]

    @property
    def family(self) -> str:
        """``"rss"``, ``"rfss"`` or ``"mrss"``."""
        if self.d > 1:
            return "mrss"
        return "rss" if self.cardinality is None else "rfss"

    # ---------------------------------------------------------------- residual
    def residual(self, mask) -> float:
        """True residual ``||z - sum_i mask_i X_i||_inf`` in float64 for a 0/1 mask.

        Uses ``math.fsum`` per coordinate so the value does not depend on summation order.
        """
        a = np.asarray(mask)
        if a.shape != (self.n,):
            raise InstanceError(f"mask must have shape ({self.n},), got {a.shape}")
        if not np.isin(a, (0, 1)).all():
            raise InstanceError("mask must contain only 0/1 values")
        chosen = self.candidates[a.astype(bool)]
        return max(abs(math.fsum([self.target[j], *(-chosen[:, j])])) for j in range(self.d))

    def feasible(self, mask) -> bool:
        """Whether ``mask`` satisfies the cardinality row (always true without one)."""
        return self.cardinality is None or int(np.asarray(mask).sum()) == self.cardinality

    # -------------------------------------------------------------- identity
    def content_hash(self) -> str:
        """sha256 of the exact float64 bytes of candidates, target and cardinality."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.candidates).tobytes())
        h.update(np.ascontiguousarray(self.target).tobytes())
        h.update(repr((self.candidates.shape, self.cardinality)).encode())
        return h.hexdigest()

    def __eq__(self, other) -> bool:
        return (isinstance(other, Instance) and self.cardinality == other.cardinality
                and np.array_equal(self.candidates, other.candidates)
                and np.array_equal(self.target, other.target))

    def __hash__(self) -> int:
        return hash(self.content_hash())

    def __repr__(self) -> str:
        k = "" if self.cardinality is None else f", k={self.cardinality}"
        return f"Instance({self.family}, n={self.n}, d={self.d}{k})"

    # ------------------------------------------------------------------- I/O
    def to_dict(self) -> dict:
        return {"format": FORMAT, "candidates": self.candidates.tolist(),
                "target": self.target.tolist(), "cardinality": self.cardinality}

    @classmethod
    def from_dict(cls, data: dict) -> "Instance":
        """An instance from :meth:`to_dict`'s JSON object; the same rules as the constructor."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = type(data).__name__ if not isinstance(data, dict) else f"format {_short(data.get('format'))}"
            raise InstanceError(f"format: not an slth instance ({got}): expected a JSON object with "
                                f"\"format\": \"{FORMAT}\" (write it with Instance.save)")
        for key in ("candidates", "target"):
            if key not in data:
                raise InstanceError(f"{key}: missing; an instance needs the fields 'candidates' and 'target'")
        return cls(data["candidates"], data["target"], data.get("cardinality"))

    def save(self, path) -> Path:
        """Save to ``.npz`` (exact bytes) or ``.json`` (repr-exact floats), chosen by suffix."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".json":
            tmp.write_text(json.dumps(self.to_dict()))
        elif path.suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, candidates=self.candidates, target=self.target,
                         cardinality=np.int64(-1 if self.cardinality is None else self.cardinality),
                         format=np.array(FORMAT))
        else:
            raise InstanceError(f"instance file name must end in .npz or .json, got '{path.name}'")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "Instance":
        """Load an instance saved by :meth:`save`. Files are data: no pickle is ever loaded.

        Raises ``FileNotFoundError`` for a missing file and :class:`InstanceError` with the one-line
        message ``"<path>: <field>: <problem and fix>"`` for anything else (corrupt or truncated
        files, invalid JSON, wrong types or shapes, oversized declarations, ...).
        """
        items = cls._load(Path(path), many=False)
        return items[0]

    @classmethod
    def load_many(cls, path) -> list["Instance"]:
        """The instances of one file: a ``.npz``, or a ``.json`` holding one instance or a list of them.
        Errors as in :meth:`load`; an invalid list item is named ``"<path>[i]: <field>: ..."``."""
        return cls._load(Path(path), many=True)

    @classmethod
    def _load(cls, path: Path, many: bool) -> list["Instance"]:
        if not path.is_file():
            raise FileNotFoundError(f"instance file not found: {path}")
        if path.suffix not in (".json", ".npz"):
            raise InstanceError(f"{path}: file: instance file name must end in .npz or .json, got '{path.name}'")
        try:
            if path.suffix == ".npz":
                return [cls(*_read_npz(path))]
            data = _read_json(path)
            if many and isinstance(data, list):
                out = []
                for i, item in enumerate(data):
                    try:
                        out.append(cls.from_dict(item))
                    except InstanceError as exc:
                        located = InstanceError(_one_line(f"{path}[{i}]: {exc}"))
                        located.located = True
                        raise located from None
                return out
            return [cls.from_dict(data)]
        except InstanceError as exc:
            if getattr(exc, "located", False):
                raise
            raise InstanceError(_one_line(f"{path}: {exc}")) from None
        except FileNotFoundError:
            raise
        except (RecursionError, MemoryError) as exc:
            raise InstanceError(f"{path}: file: cannot be read ({type(exc).__name__}); the file is malformed - "
                                f"re-create it with Instance.save") from None
        except OSError as exc:
            raise InstanceError(_one_line(f"{path}: file: cannot be read ({type(exc).__name__}: "
                                          f"{exc.strerror or exc})")) from None
        except Exception as exc:  # noqa: BLE001 - any other failure of reading a file is the file's fault
            raise InstanceError(_one_line(f"{path}: file: cannot be read ({type(exc).__name__}: {exc}); "
                                          f"re-create it with Instance.save")) from None


# ----------------------------------------------------------------------------------- readers
def _read_json(path: Path):
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise InstanceError(f"file: {size} bytes, more than the {MAX_JSON_BYTES} bytes a JSON instance may have; "
                            f"save large instances as .npz")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InstanceError(f"file: not UTF-8 text (byte {exc.start}); is it really a .json instance?") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise InstanceError("file: JSON nested too deeply to be an instance; candidates are a list of numbers "
                            "or of equal-length lists of numbers") from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal beyond Python's digit limit
        if "digits" in str(exc) and not isinstance(exc, json.JSONDecodeError):
            why = _one_line(exc).split(";")[0]
            raise InstanceError(f"file: holds an integer literal with too many digits ({why}); instance values "
                                f"must fit in float64") from None
        raise InstanceError(f"file: not valid JSON ({_one_line(exc)}); re-create it with Instance.save") from None


def _npy_header(fh, field: str):
    """(shape, dtype) from an .npy header, refusing versions, dtypes and sizes we do not load."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InstanceError(f"{field}: unsupported .npy format version {version}; re-create the file with "
                                f"Instance.save")
    except InstanceError:
        raise
    except (ValueError, SyntaxError) as exc:  # damaged members (CRC, zlib, EOF) are reported by the caller
        raise InstanceError(_one_line(f"{field}: malformed .npy header ({exc}); re-create the file with "
                                      f"Instance.save")) from None
    if dtype.hasobject:
        raise InstanceError(f"{field}: holds pickled Python objects (dtype {dtype}), which are never loaded; "
                            f"save plain float arrays with Instance.save")
    count = math.prod(shape)
    if count > MAX_ENTRIES:
        raise InstanceError(f"{field}: declares shape {shape} ({count} entries), more than the {MAX_ENTRIES} "
                            f"entries an instance may have; the file is corrupt or not an instance")
    return shape, dtype, count


def _read_npz(path: Path):
    """(candidates, target, cardinality) from an .npz written by :meth:`Instance.save`, for :func:`validate`."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InstanceError(f"file: not a valid .npz archive ({_one_line(exc)}: truncated or corrupt); "
                            f"re-create it with Instance.save") from None
    with zf:
        names = set(zf.namelist())
        arrays = {}
        for field in _NPZ_FIELDS:
            member = field + ".npy"
            if member not in names:
                continue
            info = zf.getinfo(member)
            try:
                with zf.open(info) as fh:
                    shape, dtype, count = _npy_header(fh, field)
                    if count * dtype.itemsize > info.file_size:
                        raise InstanceError(f"{field}: declares shape {shape} of {dtype} ({count * dtype.itemsize}"
                                            f" bytes) but its archive member holds {info.file_size} bytes; the "
                                            f"file is truncated or corrupt - re-create it with Instance.save")
                with zf.open(info) as fh:
                    arrays[field] = np.lib.format.read_array(fh, allow_pickle=False)
            except InstanceError:
                raise
            except Exception as exc:  # noqa: BLE001 - zlib/CRC/EOF errors of a damaged member
                raise InstanceError(_one_line(f"{field}: cannot be read ({type(exc).__name__}: {exc}); the file "
                                              f"is truncated or corrupt - re-create it with Instance.save")) from None
    for field in ("candidates", "target"):
        if field not in arrays:
            raise InstanceError(f"{field}: missing from the .npz (it has {_short(sorted(names), 80)}); an "
                                f"instance file needs 'candidates' and 'target' arrays (write it with Instance.save)")
    if "format" in arrays:
        fmt = arrays["format"]
        if fmt.dtype.kind != "U" or fmt.shape != () or str(fmt) != FORMAT:
            raise InstanceError(f"format: {_short(fmt.tolist())}, expected '{FORMAT}'; not an slth instance file")
    k = arrays.get("cardinality")
    if k is not None:
        if k.shape != ():
            raise InstanceError(f"cardinality: must be a single integer (shape ()), got shape {k.shape}; "
                                f"write the file with Instance.save")
        if k.dtype.kind in "iu" and int(k) == -1:
            k = None  # the file format's "no cardinality"
    return arrays["candidates"], arrays["target"], k
