"""Codecs: how an attribute's data becomes bytes in a standard format, and back.

Chosen by type, first match wins: user codecs (:func:`register_codec`), then

=========  =======  ========================================================================
codec      ext      data
=========  =======  ========================================================================
npy        .npy     a numpy array (no object dtype): NumPy's own format, never pickled,
                    written and read in a streaming way
txt        .txt     ``str`` (UTF-8)
bin        .bin     ``bytes``
json       .json    plain data (None, bool, int, float, str, bytes, list, tuple, dict, set,
                    frozenset, range, numpy scalars and arrays, ParameterSet) as tagged JSON that
                    round-trips types exactly; ordinary JSON where the value is ordinary
parquet    .parquet a pandas DataFrame or Series, when pandas and pyarrow are installed
                    (``gitstore[pandas]``): Apache Parquet written by pyarrow, index (with
                    names), dtypes and ``attrs`` kept in pandas' metadata; a Series (its name)
                    and column labels that are not text (ints, tuples, a MultiIndex, a
                    RangeIndex) in the file's ``gitstore`` metadata; never pickled
netcdf     .nc      an xarray Dataset or DataArray (``gitstore[xarray]``): netCDF-4 (see
                    :mod:`gitstore.codecs_ext`)
safetensors         a ``torch.Tensor`` (``gitstore[torch]``): safetensors (see
 .safetensors       :mod:`gitstore.codecs_ext`)
pickle     .pkl     anything else, only with ``allow_pickle=True``
=========  =======  ========================================================================

Tagged JSON: JSON types stand for themselves; a dict whose keys are all strings not starting
with ``$`` is a JSON object; everything else is an object with one ``$``-key, e.g.
``{"$tuple": [1, 2]}``, ``{"$float": "nan"}``, ``{"$int": "<digits>"}`` (beyond 64 bits), ``{"$dict": [[1, "a"]]}``, ``{"$bytes": "<b64>"}``.

Codec plugins: a distribution that declares entry points in the group ``gitstore.codecs``
(``[project.entry-points."gitstore.codecs"]`` in its ``pyproject.toml``) has them loaded by the
``gitstore`` command line at start, and by the library the first time it meets a format it does
not know (or by :func:`load_codec_plugins`). Each entry point names a callable, called with no
arguments, or a module, imported; either calls :func:`register_codec`.

Data in a format no codec here reads (a user codec whose plugin is not installed) is *unknown*,
not corrupt: reading it raises :class:`~gitstore.errors.UnknownCodecError`, listing and copying
it work (copies keep its bytes).
"""

from __future__ import annotations

import base64
import io
import json
import math
import pickle
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

try:  # optional speed-up: 5-10x faster than the json module on numbers (see README)
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

from . import codecs_ext as _ext
from .errors import (
    CorruptEntryError,
    DataError,
    UnknownCodecError,
    UnsupportedDataError,
    UntrustedDataError,
)
from .keys import canonical_bytes
from .params import ParameterSet

__all__ = [
    "Codec",
    "choose_codec",
    "codec_by_ext",
    "codec_by_name",
    "decode_bytes",
    "encode_bytes",
    "from_tagged",
    "load_codec_plugins",
    "register_codec",
    "to_tagged",
    "unknown_codec",
]

BinaryIO = IO[bytes]


@dataclass(frozen=True)
class Codec:
    """One data format. ``accepts`` says whether it can encode a value."""

    name: str
    ext: str
    accepts: Callable[[Any], bool]
    write: Callable[[Any, BinaryIO], None]
    read: Callable[[BinaryIO], Any]
    trusted: bool = True  # False: reading runs code (pickle)
    #: False for a stand-in: a format the store names but no codec here reads
    #: (see :func:`unknown_codec`); it carries the name or the extension the store recorded
    known: bool = True


# --- tagged JSON -----------------------------------------------------------------------------

def to_tagged(value: Any, path: str = "") -> Any:
    """Turn plain data into JSON-ready tagged form.

    Raises:
        UnsupportedDataError: a value (named by its path) is not plain data.
    """
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        # JSON readers differ beyond 64 bits (some turn them into floats): tag those
        return value if _INT64_MIN <= value <= _INT64_MAX else {"$int": str(value)}
    if t is float:
        if math.isfinite(value):
            return value
        return {"$float": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if t is list:
        return [to_tagged(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if t is tuple:
        return {"$tuple": [to_tagged(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if t is dict or t is ParameterSet:
        tagged = _tagged_dict(value, path)
        return {"$parameterset": tagged} if t is ParameterSet else tagged
    if t is set or t is frozenset:
        items = sorted(value, key=lambda v: canonical_bytes(v, path))
        return {"$" + t.__name__: [to_tagged(v, path + "{}") for v in items]}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if t is range:
        return {"$range": [value.start, value.stop, value.step]}
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise UnsupportedDataError(f"{path or 'data'}: numpy object arrays need pickle")
        body = {
            "dtype": np.lib.format.dtype_to_descr(arr.dtype),
            "shape": list(arr.shape),
            "data": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii"),
        }
        return {"$numpy" if isinstance(value, np.generic) else "$ndarray": body}
    raise UnsupportedDataError(
        f"{path or 'data'}: {t.__module__}.{t.__qualname__} is not plain data; "
        "register a codec for it, or open the store with allow_pickle=True"
    )


def _tagged_dict(value: Any, path: str) -> Any:
    if all(type(k) is str and not k.startswith("$") for k in value):
        return {k: to_tagged(v, f"{path}.{k}" if path else k) for k, v in value.items()}
    return {"$dict": [[to_tagged(k, path + "<key>"), to_tagged(v, f"{path}.{k}")]
                      for k, v in value.items()]}


def from_tagged(value: Any) -> Any:
    """Inverse of :func:`to_tagged`."""
    if isinstance(value, list):
        return [from_tagged(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, body), = value.items()
        if tag.startswith("$"):
            return _untag(tag, body)
    return {k: from_tagged(v) for k, v in value.items()}


def _untag(tag: str, body: Any) -> Any:
    if tag == "$float":
        return float(body)
    if tag == "$int":
        return int(body)
    if tag == "$tuple":
        return tuple(from_tagged(v) for v in body)
    if tag == "$dict":
        return {from_tagged(k): from_tagged(v) for k, v in body}
    if tag == "$parameterset":
        return ParameterSet(from_tagged(body))
    if tag == "$set":
        return {from_tagged(v) for v in body}
    if tag == "$frozenset":
        return frozenset(from_tagged(v) for v in body)
    if tag == "$bytes":
        return base64.b64decode(body)
    if tag == "$range":
        return range(*body)
    if tag in ("$ndarray", "$numpy"):
        import numpy as np

        dtype = np.lib.format.descr_to_dtype(_descr(body["dtype"]))
        arr = np.frombuffer(base64.b64decode(body["data"]), dtype=dtype).reshape(body["shape"])
        return arr[()] if tag == "$numpy" else arr.copy()
    raise CorruptEntryError(f"unknown tag {tag!r} in tagged JSON")


def _descr(d: Any) -> Any:
    # JSON turns the tuples of a structured descr into lists
    if isinstance(d, list):
        return [tuple(_descr(x) for x in item) if isinstance(item, list) else item for item in d]
    return d


def _write_json(value: Any, fp: BinaryIO) -> None:
    fp.write(_json_bytes(value))


def _json_bytes(value: Any) -> bytes:
    return _dump_json(to_tagged(value))


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_STRINGLIKE = {str, bool, type(None)}


def _native(value: Any) -> bool:
    """Whether JSON alone round-trips ``value`` exactly (then no tagging is needed)."""
    t = type(value)
    if t is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if t is str or t is bool or value is None:
        return True
    if t is float:
        return math.isfinite(value)
    if t is list:
        items: Any = value
    elif t is dict:
        for k in value:
            if type(k) is not str or k[:1] == "$":
                return False
        items = value.values()
    else:
        return False
    kinds = set(map(type, items))
    if kinds == {float}:  # a sum is finite only if every term is (an overflow just falls through)
        if math.isfinite(sum(items)):
            return True
    elif kinds <= _STRINGLIKE:
        return True
    for v in items:  # scalars inline: this runs on every store of plain data
        tv = type(v)
        if tv is float:
            if v - v != 0.0:  # inf - inf and nan - nan are nan
                return False
        elif not (tv is str or tv is bool or v is None or _native(v)):
            return False
    return True


def _dump_json(tagged: Any) -> bytes:
    if orjson is not None:
        try:
            return orjson.dumps(tagged)
        except (TypeError, orjson.JSONEncodeError):
            pass  # ints beyond 64 bits, lone surrogates: the standard library copes
    return json.dumps(tagged, ensure_ascii=True, allow_nan=False,
                      separators=(",", ":")).encode("ascii")


def _load_json(data: bytes) -> Any:
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data.decode("utf-8"))


def _read_json(fp: BinaryIO) -> Any:
    data = fp.read()
    value = _load_json(data)
    # every tag is an object key starting with '$', so text without '"$' has none
    return value if b'"$' not in data else from_tagged(value)


def _is_plain(value: Any) -> bool:
    try:
        to_tagged(value)
    except UnsupportedDataError:
        return False
    return True


# --- numpy -----------------------------------------------------------------------------------

def _is_array(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and type(value) is np.ndarray and not value.dtype.hasobject


def _write_npy(value: Any, fp: BinaryIO) -> None:
    import numpy as np

    if value.flags.c_contiguous or value.flags.f_contiguous:
        for part in npy_buffers(value):
            fp.write(part)
        return
    # write_array streams: the header, then the data in buffered chunks (never pickled)
    np.lib.format.write_array(fp, value, allow_pickle=False)


def _read_npy(fp: BinaryIO) -> Any:
    import numpy as np

    fmt = np.lib.format
    if not hasattr(fp, "readinto"):
        # read_array fills one preallocated array from the stream; allow_pickle=False
        # refuses object arrays, so a hostile .npy cannot run code
        return fmt.read_array(fp, allow_pickle=False)
    shape, fortran, dtype = _npy_header(fp)
    if dtype.hasobject:
        raise ValueError("object arrays hold pickles; refusing to load one")
    # the header is untrusted: allocate only what the blob really holds (a stream knows how
    # much is left, checked against the file's size); the array is then filled in place
    count = 1
    for n in shape:
        count *= n
    left = getattr(fp, "remaining", None)
    if left is None and isinstance(fp, io.BytesIO):
        left = len(fp.getbuffer()) - fp.tell()
    if left is not None and count * dtype.itemsize != left:
        raise ValueError(f"the .npy header declares {count * dtype.itemsize} bytes of data, "
                         f"the file holds {left}")
    array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = array.T if fortran else array
    target = memoryview(view).cast("B") if array.size else b""  # type: ignore[arg-type]
    if target and fp.readinto(target) != len(target):
        raise ValueError("the .npy data ends early")
    return array


#: parsed .npy headers by their text: numpy parses one with ast.literal_eval (tens of µs),
#: and a warm cache reads arrays of few shapes over and over
_NPY_HEADERS: dict[bytes, tuple[Any, bool, Any]] = {}


def _npy_header(fp: BinaryIO) -> tuple[Any, bool, Any]:
    """(shape, fortran_order, dtype) of the .npy file at ``fp``'s position; leaves ``fp`` at
    the data. The header is parsed by numpy (which checks it) the first time it is seen."""
    import struct

    start = fp.read(10)
    if len(start) == 10 and start[:6] == b"\x93NUMPY" and start[6] in (1, 2, 3):
        if start[6] == 1:
            size, = struct.unpack("<H", start[8:10])
            lead = start
        else:
            more = fp.read(2)
            size, = struct.unpack("<I", start[8:10] + more)
            lead = start + more
        if size <= 1 << 16:
            text = fp.read(size)
            whole = lead + text
            known = _NPY_HEADERS.get(whole)
            if known is not None:
                return known
            parsed = _parse_npy_header(io.BytesIO(whole))
            if len(_NPY_HEADERS) >= 512:
                _NPY_HEADERS.clear()
            _NPY_HEADERS[whole] = parsed
            return parsed
        return _parse_npy_header(_Joined(lead, fp))
    return _parse_npy_header(_Joined(start, fp))  # numpy says what is wrong with it


def _parse_npy_header(fp: Any) -> tuple[Any, bool, Any]:
    import numpy as np

    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        parsed = fmt.read_array_header_1_0(fp)
    else:
        parsed = fmt.read_array_header_2_0(fp)
    return parsed


class _Joined:
    """Bytes already read, then the rest of a stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(n)
        if n < 0:
            data, self.head = self.head + self.rest.read(), b""
            return data
        data, self.head = self.head[:n], self.head[n:]
        return data + (self.rest.read(n - len(data)) if len(data) < n else b"")


def npy_buffers(value: Any) -> list[Any]:
    """The ``.npy`` file of an array as [header, the array's own memory]: no copy of the data
    (a non-contiguous array is copied once)."""
    import numpy as np

    if not (value.flags.c_contiguous or value.flags.f_contiguous):
        value = np.ascontiguousarray(value)
    fortran = not value.flags.c_contiguous  # as numpy's header_data_from_array_1_0 says
    ident = (value.dtype, value.shape, fortran)
    header = _NPY_WRITTEN.get(ident)
    if header is None:
        fmt = np.lib.format
        buf = io.BytesIO()
        meta = fmt.header_data_from_array_1_0(value)
        try:
            fmt.write_array_header_1_0(buf, meta)
        except ValueError:  # a header over 64 KiB (a very structured dtype)
            buf = io.BytesIO()
            fmt.write_array_header_2_0(buf, meta)
        header = buf.getvalue()
        if len(_NPY_WRITTEN) >= 512:
            _NPY_WRITTEN.clear()
        _NPY_WRITTEN[ident] = header
    body = value.T if fortran else value
    return [header, memoryview(body).cast("B") if value.size else b""]


#: .npy headers written, by (dtype, shape, Fortran order)
_NPY_WRITTEN: dict[tuple[Any, ...], bytes] = {}


# --- pandas (optional: pandas and pyarrow installed) -----------------------------------------

def _is_frame(value: Any) -> bool:
    """A DataFrame or a Series, when pyarrow is installed; pandas is never imported for this
    (a DataFrame means it is)."""
    pd = sys.modules.get("pandas")
    return pd is not None and type(value) in (pd.DataFrame, pd.Series) and _has_pyarrow()


_PYARROW: list[bool] = []


def _has_pyarrow() -> bool:
    if not _PYARROW:
        import importlib.util

        _PYARROW.append(importlib.util.find_spec("pyarrow") is not None)
    return _PYARROW[0]


#: the key, in a Parquet file's metadata, of what pandas' own metadata cannot say (JSON): a
#: Series (``"series": true``, its ``"name"``), column labels that are not text (``"columns"``)
_PANDAS_MARK = b"gitstore"


def _write_parquet(value: Any, fp: BinaryIO) -> None:
    # pandas keeps the index (with its names; a RangeIndex as metadata), the dtypes and attrs
    # in the file's metadata; what it cannot (a Series, column labels that are not text, an
    # index's freq) goes under _PANDAS_MARK. What still would not come back exactly (checked by
    # reading the file back) is refused.
    from .errors import LossyDataError

    data = _parquet_bytes(value)
    problem = _pandas_difference(value, _read_parquet(io.BytesIO(data)))
    if problem:
        raise LossyDataError(f"this {type(value).__name__} would not come back exactly from "
                             f"Parquet: {problem}", problem)
    fp.write(data)


def _parquet_bytes(value: Any) -> bytes:
    import pandas as pd

    mark: dict[str, Any] = {}
    frame = value
    if type(value) is pd.Series:
        mark["series"] = True
        mark["name"] = _to_tagged_label(value.name, "the Series' name")
        frame = value.to_frame(name=value.name if type(value.name) is str else "values")
    columns = frame.columns
    if isinstance(columns, pd.RangeIndex) or not (
            columns.nlevels == 1 and all(type(c) is str for c in columns)):
        mark["columns"] = _column_labels(columns)
        texts = [str(c) for c in columns]
        if len(set(texts)) != len(texts):
            texts = [f"column {i}" for i in range(len(texts))]
        frame = frame.set_axis(texts, axis=1)
    freq = getattr(frame.index, "freq", None)
    if freq is not None:
        mark["freq"] = frame.index.freqstr
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=None)
        meta = dict(table.schema.metadata or {})
        if value.attrs:  # where pandas' own to_parquet keeps them
            meta[b"PANDAS_ATTRS"] = json.dumps(value.attrs).encode("utf-8")
        if mark:
            meta[_PANDAS_MARK] = json.dumps(mark).encode("utf-8")
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(meta), buf)
    except Exception as exc:  # noqa: BLE001 - attrs that are not JSON, mixed object columns,
        # types Arrow has not (complex): nothing is stored
        raise UnsupportedDataError(f"this {type(value).__name__} cannot be stored as Parquet: "
                                   f"{type(exc).__name__}: {exc}") from None
    return buf.getvalue()


def _pandas_difference(a: Any, b: Any) -> str:
    """What differs between a DataFrame or Series and what came back ('' when nothing)."""
    import pandas as pd

    if type(a) is not type(b):
        return f"a {type(a).__name__} came back as a {type(b).__name__}"
    check = pd.testing.assert_series_equal if type(a) is pd.Series else \
        pd.testing.assert_frame_equal
    try:
        check(b, a, check_exact=True, check_index_type=True, check_freq=True,
              check_flags=True, **({} if type(a) is pd.Series else {"check_column_type": True}))
    except AssertionError as exc:
        return " ".join(str(exc).split())[:300]
    if a.attrs != b.attrs or _attrs_text(a.attrs) != _attrs_text(b.attrs):
        return f"attrs {a.attrs!r} came back as {b.attrs!r}"
    return ""


def _attrs_text(attrs: Any) -> Any:
    try:
        return _json_bytes(attrs)
    except UnsupportedDataError:
        return repr(attrs)


def _to_tagged_label(label: Any, what: str) -> Any:
    try:
        return to_tagged(label)
    except UnsupportedDataError:
        from .errors import LossyDataError

        raise LossyDataError(f"{what} {label!r} ({type(label).__name__}) cannot be kept in "
                             "Parquet: labels must be plain data (str, int, float, tuple...)",
                             "label") from None


def _column_labels(columns: Any) -> dict[str, Any]:
    import pandas as pd

    spec: dict[str, Any] = {
        "names": [_to_tagged_label(n, "the column index name") for n in columns.names]}
    if isinstance(columns, pd.RangeIndex):
        spec["range"] = [columns.start, columns.stop, columns.step]
        return spec
    spec["labels"] = [_to_tagged_label(c, "the column label") for c in columns.tolist()]
    if isinstance(columns, pd.MultiIndex):
        spec["multi"] = True
    else:
        spec["dtype"] = str(columns.dtype)
    return spec


def _restore_columns(frame: Any, spec: dict[str, Any]) -> Any:
    import pandas as pd

    names = [from_tagged(n) for n in spec["names"]]
    if "range" in spec:
        columns = pd.RangeIndex(*spec["range"], name=names[0])
    elif spec.get("multi"):
        columns = pd.MultiIndex.from_tuples([from_tagged(c) for c in spec["labels"]],
                                            names=names)
    else:
        columns = pd.Index([from_tagged(c) for c in spec["labels"]], dtype=spec["dtype"],
                           name=names[0])
    attrs = frame.attrs
    frame = frame.set_axis(columns, axis=1)
    frame.attrs = attrs
    return frame


def _read_parquet(fp: BinaryIO) -> Any:
    try:
        import pandas as pd
        import pyarrow.parquet as pq
    except ImportError:
        raise UnknownCodecError(_unknown_message("'parquet' (install gitstore[pandas]: "
                                                 "pandas and pyarrow)"), "parquet") from None
    if not (hasattr(fp, "seek") and hasattr(fp, "seekable") and fp.seekable()):
        fp = io.BytesIO(fp.read())  # Parquet's footer is at the end
    start = fp.tell()
    meta = pq.read_schema(fp).metadata or {}
    fp.seek(start)
    frame = pd.read_parquet(fp, engine="pyarrow")
    if _PANDAS_MARK not in meta:
        return frame
    mark = json.loads(meta[_PANDAS_MARK])
    if not isinstance(mark, dict):
        raise ValueError("the gitstore metadata of this Parquet file is not an object")
    if "columns" in mark:
        frame = _restore_columns(frame, mark["columns"])
    if "freq" in mark:
        attrs = frame.attrs
        frame.index = type(frame.index)(frame.index, freq=mark["freq"])
        frame.attrs = attrs
    if mark.get("series"):
        attrs = frame.attrs
        series = frame.iloc[:, 0]
        series.name = from_tagged(mark.get("name"))
        series.attrs = attrs
        return series
    return frame


# --- the rest --------------------------------------------------------------------------------

def _write_txt(value: str, fp: BinaryIO) -> None:
    fp.write(value.encode("utf-8", "surrogatepass"))


def _write_bin(value: bytes, fp: BinaryIO) -> None:
    fp.write(value)


def _write_pickle(value: Any, fp: BinaryIO) -> None:
    try:
        pickle.dump(value, fp, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        # a lambda, a local class, a generator, an open file...: nothing is written
        raise UnsupportedDataError(
            f"{type(value).__name__} cannot be stored even with allow_pickle=True: pickle "
            f"refused it ({exc})") from None


def _read_pickle(fp: BinaryIO) -> Any:
    return pickle.load(fp)  # noqa: S301 - only reached with allow_pickle=True


_BUILTIN: list[Codec] = [
    Codec("npy", "npy", _is_array, _write_npy, _read_npy),
    Codec("txt", "txt", lambda v: type(v) is str, _write_txt,
          lambda fp: fp.read().decode("utf-8", "surrogatepass")),
    Codec("bin", "bin", lambda v: type(v) is bytes, _write_bin, lambda fp: fp.read()),
    Codec("parquet", "parquet", _is_frame, _write_parquet, _read_parquet),
    Codec("netcdf", "nc", _ext.is_xarray, _ext.write_netcdf, _ext.read_netcdf),
    Codec("safetensors", "safetensors", _ext.is_tensor, _ext.write_safetensors,
          _ext.read_safetensors),
    Codec("json", "json", _is_plain, _write_json, _read_json),
]
_JSON = _BUILTIN[-1]
_PICKLE = Codec("pickle", "pkl", lambda v: True, _write_pickle, _read_pickle, trusted=False)
_USER: list[Codec] = []
_RESERVED_EXTS = {"yaml"}  # component.yaml lives beside the attributes


def register_codec(
    name: str,
    accepts: type | tuple[type, ...] | Callable[[Any], bool],
    ext: str,
    write: Callable[[Any, BinaryIO], None],
    read: Callable[[BinaryIO], Any],
) -> Codec:
    """Add a codec for user types, tried before the built-in ones.

    Args:
        name: unique codec name.
        accepts: a type, a tuple of types, or a predicate on the value.
        ext: file extension (without the dot) that identifies the format in a store.
        write: ``write(value, binary_file)``.
        read: ``read(binary_file) -> value``.

    Raises:
        DataError: the name or extension is taken, or the extension is reserved.
    """
    ext = ext.lstrip(".")
    if not ext or "/" in ext or "\\" in ext or "." in ext or ext in _RESERVED_EXTS or \
            any(ord(c) < 0x20 or ord(c) == 0x7F for c in ext):
        raise DataError(f"codec extension {ext!r} is not allowed")
    if not name:
        raise DataError("a codec needs a name")
    taken = [c for c in _USER + _BUILTIN + [_PICKLE] if c.name == name or c.ext == ext]
    for codec in taken:  # the same registration again (a plugin loaded twice): a no-op
        if (codec.name, codec.ext, codec.write, codec.read) == (name, ext, write, read):
            return codec
    if taken:
        raise DataError(f"codec name {name!r} or extension {ext!r} is already registered")
    predicate: Callable[[Any], bool]
    if isinstance(accepts, (type, tuple)):
        types = accepts

        def predicate(value: Any) -> bool:
            return isinstance(value, types)
    else:
        predicate = accepts
    codec = Codec(name, ext, predicate, write, read)
    _USER.append(codec)
    return codec


def unregister_codec(name: str) -> None:
    """Remove a user codec (mostly for tests)."""
    _USER[:] = [c for c in _USER if c.name != name]


def choose_codec(value: Any, allow_pickle: bool = False) -> Codec:
    """The codec that will store ``value``.

    Raises:
        UnsupportedDataError: only pickle could store it, and ``allow_pickle`` is False.
    """
    for codec in _USER + _BUILTIN:
        if codec.accepts(value):
            return codec
    if allow_pickle:
        return _PICKLE
    try:
        to_tagged(value)
    except UnsupportedDataError as exc:
        raise UnsupportedDataError(str(exc)) from None
    raise UnsupportedDataError(f"no codec for {type(value).__qualname__}")  # pragma: no cover


def _all_codecs() -> list[Codec]:
    return _USER + _BUILTIN + [_PICKLE]


def codec_by_ext(ext: str) -> Codec:
    """The codec that owns a file extension; for one no codec here owns (once the installed
    plugins are loaded), a stand-in (:func:`unknown_codec`) that refuses to decode."""
    return _find(lambda codec: codec.ext == ext) or unknown_codec(ext=ext)


def codec_by_name(name: str) -> Codec:
    """The codec with this name; for a name no codec here has (once the installed plugins are
    loaded), a stand-in (:func:`unknown_codec`) that refuses to decode."""
    return _find(lambda codec: codec.name == name) or unknown_codec(name=name)


def _find(matches: Callable[[Codec], bool]) -> Codec | None:
    """The first codec that ``matches``, loading the installed plugins once if none does."""
    for _attempt in range(2):
        for codec in _all_codecs():
            if matches(codec):
                return codec
        if not _load_plugins_once():
            break
    return None


def unknown_codec(name: str = "", ext: str = "") -> Codec:
    """A stand-in for a format no codec here reads, carrying what the store recorded of it (its
    name, or its file extension). Decoding with it raises
    :class:`~gitstore.errors.UnknownCodecError`; its bytes can still be read and copied."""
    what = f"{name!r}" if name else f"'.{ext}'"

    def refuse(*_args: Any) -> Any:
        raise UnknownCodecError(_unknown_message(what), name or f".{ext}")

    return Codec(name, ext, lambda _value: False, refuse, refuse, known=False)


def _unknown_message(what: str) -> str:
    return (f"unknown codec {what}: no codec registered here reads it (install the plugin "
            f"that registers it: entry point group {PLUGIN_GROUP!r})")


# --- plugins ---------------------------------------------------------------------------------

#: the entry point group of codec plugins
PLUGIN_GROUP = "gitstore.codecs"
_LOADED_PLUGINS: set[str] = set()
_plugins_tried = False


def load_codec_plugins() -> list[str]:
    """Load the installed codec plugins not loaded yet: every entry point of the group
    ``gitstore.codecs``. One naming a callable calls it (no arguments); one naming a module
    imports it; either registers codecs with :func:`register_codec`.

    A plugin that fails (raises, or calls ``sys.exit()``) is skipped (its codecs stay
    unknown); returns one line per failure.
    """
    global _plugins_tried
    _plugins_tried = True
    if not _may_have_plugins():
        return []
    from importlib.metadata import entry_points

    problems = []
    for point in entry_points(group=PLUGIN_GROUP):
        ident = f"{point.name} = {point.value}"
        if ident in _LOADED_PLUGINS:
            continue
        _LOADED_PLUGINS.add(ident)
        try:
            loaded = point.load()
            if callable(loaded) and not isinstance(loaded, types.ModuleType):
                loaded()
        except (Exception, SystemExit) as exc:  # a broken plugin must not break the rest
            # (SystemExit too: a plugin that calls sys.exit() must not end its host silently)
            problems.append(f"codec plugin {point.name!r} ({point.value}) failed to load: "
                            f"{type(exc).__name__}: {exc}")
    return problems


def _may_have_plugins() -> bool:
    """Whether any installed distribution on ``sys.path`` may declare a codec plugin: its
    ``entry_points.txt`` names the group. A quick look (no metadata parsed) that spares the
    command line the full scan (tens of ms in a large environment) when none does; anything
    it cannot look into (a zip on sys.path, an unreadable folder) counts as a maybe."""
    import importlib.machinery
    import os

    for finder in sys.meta_path:  # a finder of distributions that are not folders
        if hasattr(finder, "find_distributions") and \
                finder is not importlib.machinery.PathFinder:
            return True
    needle = PLUGIN_GROUP.encode()
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        except OSError:  # a zip file, a folder we may not list
            return True
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    with open(os.path.join(folder, name, "entry_points.txt"), "rb") as f:
                        if needle in f.read():
                            return True
                except (FileNotFoundError, NotADirectoryError):  # none, or an egg-info file
                    continue
                except OSError:
                    return True
            elif name.endswith(".egg"):
                return True
    return False


def _load_plugins_once() -> bool:
    """Load the plugins if that was never tried; whether it was tried now."""
    if _plugins_tried:
        return False
    load_codec_plugins()
    return True


def encode_bytes(value: Any, allow_pickle: bool = False) -> tuple[Codec, bytes]:
    """Encode in memory: ``(codec, bytes)``.

    Raises:
        UnsupportedDataError: see :func:`choose_codec`.
    """
    for codec in _USER + _BUILTIN[:-1]:
        if codec.accepts(value):
            break
    else:
        if _native(value):  # ordinary JSON: nothing to tag
            return _JSON, _dump_json(value)
        try:  # plain data: tag it once, here, rather than once to check and once to write
            return _JSON, _dump_json(to_tagged(value))
        except UnsupportedDataError:
            if not allow_pickle:
                raise
        codec = _PICKLE
    buf = io.BytesIO()
    codec.write(value, buf)
    return codec, buf.getvalue()


#: arrays at least this large are handed to backends as buffers, not one joined copy
STREAM_THRESHOLD = 1 << 20
Payload = bytes | list[Any]  # bytes, or buffers to be written one after the other


def encode_payload(value: Any, allow_pickle: bool = False) -> tuple[Codec, Payload]:
    """Like :func:`encode_bytes`, but a large array comes as buffers over its own memory.

    Raises:
        UnsupportedDataError: see :func:`choose_codec`.
    """
    if _is_array(value) and value.nbytes >= STREAM_THRESHOLD and not any(
            c.accepts(value) for c in _USER):
        return _BUILTIN[0], npy_buffers(value)
    return encode_bytes(value, allow_pickle)


def payload_bytes(payload: Payload) -> bytes:
    """A payload as one bytes object (for backends that cannot stream)."""
    return payload if isinstance(payload, bytes) else b"".join(payload)


def read_all(payload: Any) -> bytes:
    """A payload from a backend's ``_get`` as bytes (a stream is read and checked)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    try:
        data = payload.read()
        payload.finish()
        return bytes(data)
    finally:
        payload.close()


def decode_payload(codec: Codec, payload: Any, allow_pickle: bool = False) -> Any:
    """Decode bytes, or a stream with ``finish()`` (which checks it) and ``close()``.

    Raises:
        UntrustedDataError: see :func:`check_trusted`.
        UnknownCodecError: no codec here reads this format (the bytes were checked first: a
            damaged stream raises CorruptEntryError instead).
        CorruptEntryError: the data is damaged.
    """
    if not codec.known:
        read_all(payload)  # damaged bytes are corrupt whatever their format
        raise UnknownCodecError(_unknown_message(f"{codec.name!r}" if codec.name
                                                 else f"'.{codec.ext}'"),
                                codec.name or f".{codec.ext}")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return decode_bytes(codec, bytes(payload), allow_pickle)
    try:
        value = decode_stream(codec, payload, allow_pickle)
        payload.finish()  # the data is handed out only once its id has been checked
        return value
    finally:
        payload.close()


def check_trusted(codec: Codec, allow_pickle: bool) -> None:
    """Refuse to decode an untrusted format without the opt-in.

    Raises:
        UntrustedDataError: the codec runs code on load and ``allow_pickle`` is False.
    """
    if not codec.trusted and not allow_pickle:
        raise UntrustedDataError(
            f"this entry holds a {codec.name} (.{codec.ext}); loading it can run code. "
            "Open the store with allow_pickle=True only if you trust where it came from"
        )


def decode_stream(codec: Codec, fp: BinaryIO, allow_pickle: bool = False) -> Any:
    """Decode from a binary stream.

    Raises:
        UntrustedDataError: see :func:`check_trusted`.
        UnknownCodecError: no codec here reads this format.
        CorruptEntryError: the bytes are not valid for the codec.
    """
    if not codec.known:
        codec.read(fp)  # raises UnknownCodecError
    check_trusted(codec, allow_pickle)
    try:
        return codec.read(fp)
    except DataError:
        raise
    except Exception as exc:
        raise CorruptEntryError(f"cannot decode {codec.name} data: {exc}") from exc


def decode_bytes(codec: Codec, data: bytes, allow_pickle: bool = False) -> Any:
    """Decode in memory; see :func:`decode_stream`."""
    return decode_stream(codec, io.BytesIO(data), allow_pickle)
