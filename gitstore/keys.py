"""Canonical encoding of component states and the keys derived from them.

The key scheme ``k1-sha256`` is the SHA-256 of a type-tagged, length-prefixed encoding of::

    ("gitstore-state", 1) + full_type + version + parameters + input keys

Every value carries a one-byte tag, so ``1``, ``1.0``, ``True`` and ``"1"`` differ; mappings are
encoded with their items sorted by encoded key, so insertion order does not matter and a plain
dict, our ParameterSet and the ``parameters`` package's ParameterSet give the same bytes; floats
are their IEEE-754 bits (every NaN becomes the one quiet NaN; ``-0.0`` and ``0.0`` differ);
numpy values are dtype, shape and little-endian bytes. Inputs enter as their own keys (a Merkle
chain), each input object hashed once per call however often it is shared (a diamond).

Parameter names with dots: in the parameters (the top mapping and mappings nested as values
of mappings, not mappings inside lists), a name ``"a.b"`` means the parameter ``b`` of the set
``a``, as in :class:`~gitstore.ParameterSet` and the ``parameters`` package; so
``{"a.b": 1, "a": {"c": 2}}`` is keyed as ``{"a": {"b": 1, "c": 2}}``, and a name given both
as a value and as a set (``{"a.b": 1, "a": 5}``) raises :class:`~gitstore.errors.ParameterError`.
Mappings without dotted names are encoded as they are (so no pinned key moved).

Values with no faithful encoding are refused with
:class:`~gitstore.errors.UnhashableParameterError`: strings holding lone surrogates (not
Unicode text), integers too long for ``str()`` (``sys.get_int_max_str_digits``), and values
nested deeper than :data:`MAX_DEPTH` levels (which includes every value that contains itself).
A ``parameters.ParameterRange`` or ``ParameterDist`` (a sweep, not one value) is refused with
:class:`~gitstore.errors.SweepParameterError`: key each point of
:func:`gitstore.params.points` instead.

Added with memoized functions (issue 14), each with its own tag so no pinned key moved:
``datetime``/``date`` (ISO text), ``pathlib`` paths (POSIX text), ``Enum`` members (type and
value), dataclasses and ``NamedTuple``s (type and fields), ``Decimal`` and ``Fraction`` (their
text: ``Decimal("1.0")`` and ``Decimal("1.00")`` differ), and :class:`KeyedBy` (a value keyed by
a digest of its content, or an input's position); pandas ``DataFrame`` and ``Series`` by
content (index with its names, columns, each column's dtype and values; ``object`` and
pandas' string columns both keyed as ``str`` and only when they hold ``str``; other extension
dtypes, e.g. ``category`` or ``Int64``, are refused; ``attrs`` are not keyed).

Changing anything here changes keys: ``tests/data/golden_keys.yaml`` pins them. A new encoding
must come with a new scheme name.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import pathlib
import struct
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from .component import full_type, get_inputs, get_parameters, get_version
from .errors import (
    CyclicInputError,
    ParameterError,
    SweepParameterError,
    UnhashableParameterError,
)

__all__ = ["KEY_SCHEME", "MAX_DEPTH", "KeyedBy", "PinnedKey", "canonical_bytes", "expand_dotted",
           "key_hex", "key_of", "split_key", "sweep_kind"]

KEY_SCHEME = "k1-sha256"
#: how deeply values may nest (lists, mappings, sets); deeper is refused, never a RecursionError
MAX_DEPTH = 100
_QNAN = b"\x7f\xf8\x00\x00\x00\x00\x00\x00"


def _u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def _too_deep(value: Any, path: str) -> UnhashableParameterError:
    t = type(value)
    return UnhashableParameterError(
        path, f"{t.__module__}.{t.__qualname__}",
        f"nested deeper than {MAX_DEPTH} levels (a value that contains itself?)")


def _encode(value: Any, path: str, out: list[bytes], depth: int = 0) -> None:
    t = type(value)
    if depth > MAX_DEPTH:
        raise _too_deep(value, path)
    if value is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if value else b"F")
    elif t is int:
        try:
            digits = str(value).encode()
        except ValueError:  # over sys.get_int_max_str_digits() digits
            raise UnhashableParameterError(
                path, "int", f"an integer of more than {sys.get_int_max_str_digits()} digits "
                "(store it as a string, or as bytes)") from None
        out.append(b"i" + _u64(len(digits)) + digits)
    elif t is float:
        bits = _QNAN if value != value else struct.pack(">d", value)
        out.append(b"f" + bits)
    elif t is str:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise UnhashableParameterError(
                path, "str", "holds a lone surrogate (not valid Unicode text)") from None
        out.append(b"s" + _u64(len(data)) + data)
    elif t is bytes:
        out.append(b"b" + _u64(len(value)) + value)
    elif t is list or t is tuple:
        out.append((b"l" if t is list else b"t") + _u64(len(value)))
        for i, item in enumerate(value):
            _encode(item, f"{path}[{i}]", out, depth + 1)
    elif isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            kb: list[bytes] = []
            _encode(k, f"{path}<key>", kb, depth + 1)
            vb: list[bytes] = []
            _encode(v, f"{path}.{k}" if path else str(k), vb, depth + 1)
            items.append((b"".join(kb), b"".join(vb)))
        items.sort()
        out.append(b"d" + _u64(len(items)))
        for kb_, vb_ in items:
            out.append(kb_)
            out.append(vb_)
    elif t is set or t is frozenset:
        members = []
        for item in value:
            mb: list[bytes] = []
            _encode(item, f"{path}{{}}", mb, depth + 1)
            members.append(b"".join(mb))
        members.sort()
        out.append((b"S" if t is set else b"Z") + _u64(len(members)))
        out.extend(members)
    elif _is_numpy(value):
        _encode_numpy(value, path, out)
    elif _is_pandas(value):
        _encode_pandas(value, path, out, depth)
    else:
        _encode_more(value, path, out, depth)


def _type_name(t: type) -> str:
    module = t.__module__
    if module == "__main__":
        from .component import main_module_name

        module = main_module_name()
    return f"{module}.{t.__qualname__}"


def _encode_more(value: Any, path: str, out: list[bytes], depth: int) -> None:
    """Tags added with issue 14 (memoized functions' arguments); no pinned key moves."""
    t = type(value)
    if t is datetime.datetime:
        out.append(b"D")
        _encode(value.isoformat(), path, out, depth + 1)
    elif t is datetime.date:
        out.append(b"Y")
        _encode(value.isoformat(), path, out, depth + 1)
    elif isinstance(value, pathlib.PurePath):
        out.append(b"P")
        _encode(value.as_posix(), path, out, depth + 1)
    elif isinstance(value, enum.Enum):
        out.append(b"E")
        _encode(_type_name(t), path, out, depth + 1)
        _encode(value.value, f"{path}.value" if path else "value", out, depth + 1)
    elif t is getattr(sys.modules.get("decimal"), "Decimal", None):  # not imported: not one
        out.append(b"M")
        _encode(str(value), path, out, depth + 1)
    elif t is getattr(sys.modules.get("fractions"), "Fraction", None):
        out.append(b"Q")
        _encode(str(value), path, out, depth + 1)
    elif isinstance(value, KeyedBy):
        out.append(b"H")
        _encode(value.kind, path, out, depth + 1)
        _encode(value.digest, path, out, depth + 1)
    elif isinstance(value, tuple) and hasattr(t, "_fields"):
        out.append(b"U")
        _encode(_type_name(t), path, out, depth + 1)
        _encode(dict(zip(t._fields, value, strict=True)), path, out, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.append(b"C")
        _encode(_type_name(t), path, out, depth + 1)
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        _encode(fields, path, out, depth + 1)
    else:
        _refuse(value, path)


@dataclasses.dataclass(frozen=True)
class KeyedBy:
    """A value keyed by something else than its own encoding: an input of a memoized call
    (``kind="input"``, ``digest`` its position), an array or a file by the SHA-256 of its
    content (``"array"``, ``"file"``)."""

    kind: str
    digest: str | int


def sweep_kind(value: Any) -> str | None:
    """``"ParameterRange"`` or ``"ParameterDist"`` for the ``parameters`` package's sweep
    values (and their subclasses), else None."""
    for cls in type(value).__mro__:
        if cls.__name__ in ("ParameterRange", "ParameterDist") and \
                cls.__module__.split(".")[0] == "parameters":
            return cls.__name__
    return None


def _refuse(value: Any, path: str) -> None:
    t = type(value)
    name = f"{t.__module__}.{t.__qualname__}"
    kind = sweep_kind(value)
    if kind is not None:
        raise SweepParameterError(
            path, name, f"a {kind} describes a sweep (many values), not one value: key each "
            "point of the parameters.ParameterSpace, e.g. for p in gitstore.params.points(space)")
    if t.__name__ == "ParameterReference" and t.__module__.split(".")[0] == "parameters":
        raise UnhashableParameterError(
            path, name, "a reference to another parameter: call replace_references() first")
    raise UnhashableParameterError(path, name)


def _is_pandas(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, (pd.DataFrame, pd.Series))


def _pandas_dtype(pd: Any, dtype: Any, path: str) -> str:
    """The dtype's text in a key: numpy dtypes by their descr; ``object`` and pandas' string
    dtype both as ``"str"`` (pandas 3 gives strings its own dtype; the content is the same)."""
    import numpy as np

    if isinstance(dtype, pd.StringDtype) or dtype == np.dtype(object):
        return "str"
    if isinstance(dtype, np.dtype):
        return str(np.lib.format.dtype_to_descr(dtype.newbyteorder("<")
                                                if dtype.byteorder == ">" else dtype))
    raise UnhashableParameterError(
        path, f"pandas {dtype} column",
        "only numpy dtypes and str columns have a key: convert it (e.g. .astype(...))")


def _encode_pandas_values(pd: Any, values: Any, dtype: str, path: str, out: list[bytes],
                          depth: int) -> None:
    _encode(dtype, path, out, depth + 1)
    if dtype != "str":
        _encode_numpy(values.to_numpy(), path, out)
        return
    items = values.to_numpy(dtype=object).tolist()
    for item in items:
        if type(item) is not str:
            raise UnhashableParameterError(
                path, f"pandas column holding {type(item).__qualname__}",
                "object columns are keyed only when they hold str (no missing values)")
    _encode(items, path, out, depth + 1)


def _encode_pandas_index(pd: Any, index: Any, path: str, out: list[bytes], depth: int) -> None:
    out.append(b"X" + _u64(index.nlevels))
    _encode(list(index.names), path, out, depth + 1)
    for level in range(index.nlevels):
        values = index.get_level_values(level)
        _encode_pandas_values(pd, values, _pandas_dtype(pd, values.dtype, path), path, out, depth)


def _encode_pandas(value: Any, path: str, out: list[bytes], depth: int) -> None:
    """A DataFrame (tag ``G``) as its index, its columns (an index), then each column's dtype
    and values; a Series (tag ``V``) as its name, index, dtype and values. ``attrs`` are not
    keyed."""
    import pandas as pd

    if isinstance(value, pd.Series):
        out.append(b"V")
        _encode(value.name, f"{path}.name", out, depth + 1)
        _encode_pandas_index(pd, value.index, f"{path}.index", out, depth)
        _encode_pandas_values(pd, value, _pandas_dtype(pd, value.dtype, path), path, out, depth)
        return
    out.append(b"G")
    _encode_pandas_index(pd, value.index, f"{path}.index", out, depth)
    _encode_pandas_index(pd, value.columns, f"{path}.columns", out, depth)
    out.append(_u64(value.shape[1]))
    for i in range(value.shape[1]):
        column = value.iloc[:, i]
        where = f"{path}[{value.columns[i]!r}]"
        _encode_pandas_values(pd, column, _pandas_dtype(pd, column.dtype, where), where, out,
                              depth)


def _is_numpy(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, (np.ndarray, np.generic))


def _encode_numpy(value: Any, path: str, out: list[bytes]) -> None:
    import numpy as np

    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise UnhashableParameterError(path, "numpy object array", "object dtype has no bytes")
    if arr.dtype.fields is not None:
        _encode_structured(np, arr, value, out)
        return
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind == "b":  # a bool's byte may be any non-zero value (a view of bytes)
        arr = arr.view(np.uint8) != 0
    if arr.dtype.kind in "fc" and arr.size:
        # every NaN gets the one quiet-NaN bit pattern (complex: each half on its own)
        flt = arr.view(f"<f{arr.dtype.itemsize // 2}") if arr.dtype.kind == "c" else arr
        nans = np.isnan(flt)
        if nans.any():
            flt = flt.copy()
            flt[nans] = np.nan
            arr = flt.view(arr.dtype)
        arr = _zero_float_padding(np, arr)
    descr = str(np.lib.format.dtype_to_descr(arr.dtype)).encode()
    data = arr.tobytes()
    tag = b"n" if isinstance(value, np.generic) else b"a"
    shape = b"".join(_u64(n) for n in arr.shape)
    out.append(tag + _u64(len(descr)) + descr + _u64(arr.ndim) + shape + _u64(len(data)) + data)


def _float_bytes(np: Any, dt: Any) -> int:
    """How many bytes of one real float of ``dt`` (kind f or c) hold its value: the rest is
    padding (x86's 80-bit long double sits in 12 or 16 bytes, 6 of them uninitialised)."""
    size = dt.itemsize // 2 if dt.kind == "c" else dt.itemsize
    if size > 8 and np.finfo(np.longdouble).nmant == 63 and \
            np.dtype(np.longdouble).itemsize == size:
        return 10
    return int(size)


def _zero_float_padding(np: Any, arr: Any) -> Any:
    """``arr`` (contiguous, little-endian floats) with the padding bytes of each float zeroed:
    equal long doubles give equal bytes (a copy only when there is padding)."""
    used = _float_bytes(np, arr.dtype)
    size = arr.dtype.itemsize // 2 if arr.dtype.kind == "c" else arr.dtype.itemsize
    if used == size or not arr.size:
        return arr
    arr = arr.copy()
    raw = arr.reshape(-1).view(np.uint8).reshape(-1, size)
    raw[:, used:] = 0
    return arr


def _packed_little_endian(np: Any, dt: Any) -> Any:
    """``dt`` with every field packed (no padding, no offsets) and little-endian."""
    if dt.fields is not None:
        fields = []
        for name in dt.names:
            sub, _offset, *title = dt.fields[name]
            fields.append(((title[0], name) if title else name, _packed_little_endian(np, sub)))
        return np.dtype(fields)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return np.dtype((_packed_little_endian(np, base), shape))
    return dt.newbyteorder("<") if dt.byteorder in (">", "=") else dt


def _leaves(arr: Any) -> Iterator[Any]:
    """Writable views of every float, complex or bool leaf of a structured array."""
    if arr.dtype.fields is not None:
        for name in arr.dtype.names:
            yield from _leaves(arr[name])
    elif arr.dtype.kind in "fcb":
        yield arr


def _encode_structured(np: Any, arr: Any, value: Any, out: list[bytes]) -> None:
    """A structured array by its values: fields packed, little-endian, NaNs made one.

    Padding between fields (``align=True``, explicit offsets) is not part of the value, and is
    often uninitialised memory: it never reaches the key. Two arrays with the same field
    names, field types and values give the same bytes, whatever their layout or byte order.
    """
    canonical = _packed_little_endian(np, arr.dtype)
    packed = np.empty(arr.shape, dtype=canonical)
    packed[...] = arr  # field by field (same names, same order): converts, drops padding
    for leaf in _leaves(packed):  # writable views into `packed`
        if leaf.dtype.kind == "b":
            leaf[...] = leaf.view(np.uint8) != 0
            continue
        for flt in (leaf.real, leaf.imag) if leaf.dtype.kind == "c" else (leaf,):
            flt[np.isnan(flt)] = np.nan
            used = _float_bytes(np, flt.dtype)
            if used < flt.dtype.itemsize:  # a view of the same item size: always allowed
                flt.view((np.uint8, (flt.dtype.itemsize,)))[..., used:] = 0
    descr = repr(np.lib.format.dtype_to_descr(canonical)).encode()
    data = packed.tobytes()
    tag = b"r" if isinstance(value, np.generic) else b"R"
    shape = b"".join(_u64(n) for n in packed.shape)
    out.append(tag + _u64(len(descr)) + descr + _u64(packed.ndim) + shape + _u64(len(data)) + data)


def expand_dotted(parameters: Any, path: str = "", depth: int = 0) -> Any:
    """``parameters`` with every dotted name nested: ``{"a.b": 1}`` → ``{"a": {"b": 1}}``.

    Returns ``parameters`` itself when no name (in it or in the mappings it holds as values)
    has a dot. Mappings inside lists are left as they are, as :class:`ParameterSet` does.

    Raises:
        ParameterError: a name is given both as a value and as a parameter set, or twice.
        UnhashableParameterError: mappings nest deeper than :data:`MAX_DEPTH`.
    """
    if depth > MAX_DEPTH:
        raise _too_deep(parameters, path)
    changed = False
    values: list[tuple[Any, Any]] = []
    for name, value in parameters.items():
        if isinstance(value, Mapping):
            inner = expand_dotted(value, _join(path, name), depth + 1)
            changed = changed or inner is not value
            value = inner
        if type(name) is str and "." in name:
            changed = True
        values.append((name, value))
    if not changed:
        return parameters
    out: dict[Any, Any] = {}
    for name, value in values:
        parts = name.split(".") if type(name) is str else [name]
        for part in reversed(parts[1:]):
            value = {part: value}
        _merge_into(out, parts[0], value, path, _join(path, name))
    return out


def _join(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def _merge_into(out: dict[Any, Any], name: Any, value: Any, path: str, given: str) -> None:
    where = _join(path, name)
    if name not in out:
        out[name] = value
    elif isinstance(out[name], Mapping) and isinstance(value, Mapping):
        merged = dict(out[name])  # never write into the caller's mappings
        for k, v in value.items():
            _merge_into(merged, k, v, where, given)
        out[name] = merged
    else:
        raise ParameterError(
            f"parameter {given!r} clashes with {where!r}: a dotted name is the same as nesting "
            f"(see gitstore.ParameterSet), and {where!r} is given twice, "
            "as a value and as a parameter set or as two values")


def canonical_bytes(value: Any, path: str = "") -> bytes:
    """The canonical, type-tagged encoding of a value.

    Raises:
        UnhashableParameterError: a value (named by its dotted path) has no canonical encoding.
    """
    out: list[bytes] = []
    _encode(value, path, out)
    return b"".join(out)


def split_key(key: str) -> tuple[str, str]:
    """``"k1-sha256:ab12…"`` → ``("k1-sha256", "ab12…")``; a bare hex digest gets the scheme."""
    scheme, sep, digest = key.rpartition(":")
    return (scheme if sep else KEY_SCHEME), digest


def key_hex(key: str) -> str:
    """The hex digest part of a key."""
    return split_key(key)[1]


class _KeyComputer:
    """Computes keys of a component graph, each object once, detecting loops."""

    def __init__(self) -> None:
        self.memo: dict[int, str] = {}
        self.keep: list[Any] = []  # keep objects alive so ids stay unique during the call
        self.stack: list[Any] = []
        self.on_stack: set[int] = set()

    def key(self, component: Any) -> str:
        """The key of ``component``; its inputs first, depth first, without recursion (a
        chain of thousands of components is keyed like a short one)."""
        if type(component) is PinnedKey:
            return component.key
        cached = self.memo.get(id(component))
        if cached is not None:
            return cached
        # each frame: a component, and its inputs once they are listed (None: not yet)
        frames: list[tuple[Any, tuple[bool, list[Any]] | None]] = [(component, None)]
        while frames:
            current, listed = frames[-1]
            ident = id(current)
            if listed is None:
                if ident in self.memo:  # reached twice (a diamond) before it was expanded
                    frames.pop()
                    continue
                is_list, inputs = get_inputs(current)
                self.stack.append(current)
                self.on_stack.add(ident)
                frames[-1] = (current, (is_list, inputs))
                for child in reversed(inputs):
                    if type(child) is PinnedKey or id(child) in self.memo:
                        continue
                    if id(child) in self.on_stack:
                        start = next(i for i, c in enumerate(self.stack) if c is child)
                        loop = [full_type(c) for c in self.stack[start:]] + [full_type(child)]
                        raise CyclicInputError(loop)
                    frames.append((child, None))
                continue
            frames.pop()
            self.stack.pop()
            self.on_stack.discard(ident)
            is_list, inputs = listed
            input_keys = [c.key if type(c) is PinnedKey else self.memo[id(c)] for c in inputs]
            encoded_inputs: Any = input_keys if is_list else \
                (input_keys[0] if input_keys else None)
            state = state_bytes(full_type(current), get_version(current),
                                get_parameters(current), encoded_inputs)
            self.memo[ident] = f"{KEY_SCHEME}:{hashlib.sha256(state).hexdigest()}"
            self.keep.append(current)
        return self.memo[id(component)]


class PinnedKey:
    """Stands for a component known only by its key (an input named in a description)."""

    parameters = None
    input = None

    def __init__(self, key: str) -> None:
        self.key = key


def state_bytes(type_name: str, version: Any, parameters: Any, inputs: Any) -> bytes:
    """The canonical encoding of one state; ``inputs`` is None, a key, or a list of keys."""
    out: list[bytes] = [b"gitstore-state\x00\x01"]
    _encode(type_name, "<type>", out)
    _encode(version, "<version>", out)
    _encode(expand_dotted(parameters) if parameters is not None else {}, "", out)
    _encode(inputs, "<input>", out)
    return b"".join(out)


def key_of(component: Any) -> str:
    """The key of a component: ``"k1-sha256:<64 hex digits>"``.

    Raises:
        InvalidComponentError: the component (or an input) lacks ``parameters`` or ``input``.
        CyclicInputError: the inputs form a loop (the error lists it).
        UnhashableParameterError: a parameter has no canonical encoding (the error names it).
        ParameterError: a dotted parameter name clashes with another (``{"a.b": 1, "a": 5}``).
    """
    return _KeyComputer().key(component)


def keys_of(components: list[Any]) -> list[str]:
    """Keys of several components, sharing the work on common inputs."""
    computer = _KeyComputer()
    return [computer.key(c) for c in components]

