"""Memoized functions: ``@store.cache``, the first way in for people coming from joblib.Memory.

A call of a cached function is a component:

- ``full_type``: the function's importable module and qualified name (a function defined in a
  script run as ``python pipeline.py`` is ``pipeline.f``, as for classes);
- ``version``: the function's code identity (:func:`gitstore.code_identity`: its module and the
  project-local code that module imports), unless ``version=`` is given to the decorator; a
  function with no source file (defined in a Jupyter notebook cell or a REPL) is
  ``__main__.<name>`` with version ``cell-sha256:<SHA-256 of the function's own source text>``:
  a fresh kernel running the same cell hits, an edited function misses; what the function
  reads from other cells (globals, helpers defined elsewhere) is not part of its version;
- ``parameters``: the bound arguments, defaults applied, ``*args`` as a tuple and ``**kwargs``
  as a mapping, minus the ``ignore``d names;
- ``input``: the calls whose results were passed in as they were returned (lineage).

A hit returns the stored value without calling; a miss calls, stores and returns. ``None`` and
other falsy results are stored and hit like any other.

Lineage: the result of a cached call is remembered (by identity, for this process) while it
lives; passed as is into another cached call (as an argument, or inside a list, tuple or dict
argument), it enters the key as the upstream call's key, not by its bytes, and
``gitstore show`` lists the upstream call as an input. Results that cannot be weakly
referenced (ints, strings, tuples, lists, dicts...) are keyed by their content instead.

numpy arrays that did not come from a cached call are keyed by the SHA-256 of their canonical
encoding (dtype, shape, bytes), computed once per array object per process: an array changed
in place after it was first passed keeps its first digest (pass a copy, or call
:func:`forget_digests`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from .codecs import decode_payload
from .codeid import code_identity, head_commit
from .component import main_module_name
from .errors import (
    CorruptEntryError,
    GitStoreError,
    InvalidComponentError,
    ParameterError,
    UnhashableParameterError,
)
from .keys import KeyedBy, PinnedKey, canonical_bytes

__all__ = ["CachedFunction", "cache", "forget_digests"]

RESULT = "result"  # the attribute a call's value is stored as
_SCALARS = frozenset({int, float, str, bool, type(None), bytes})
_MISSING = object()
_STORED = [0]  # calls stored by this process (under _lock): a waiting thread re-checks

# --- results of cached calls, by identity (lineage) ----------------------------------------------

_lock = threading.Lock()
_RESULTS: dict[int, tuple[weakref.ref[Any], str]] = {}
_DIGESTS: dict[int, tuple[weakref.ref[Any], str]] = {}


def _remember(table: dict[int, tuple[weakref.ref[Any], str]], obj: Any, value: str) -> bool:
    ident = id(obj)

    def gone(_ref: Any, ident: int = ident) -> None:
        with _lock:
            entry = table.get(ident)
            if entry is not None and entry[0]() is None:
                del table[ident]

    try:
        ref = weakref.ref(obj, gone)
    except TypeError:  # ints, strings, tuples, lists...: keyed by content instead
        return False
    with _lock:
        table[ident] = (ref, value)
    return True


def _recall(table: dict[int, tuple[weakref.ref[Any], str]], obj: Any) -> str | None:
    entry = table.get(id(obj))
    if entry is not None and entry[0]() is obj:
        return entry[1]
    return None


def forget_digests() -> None:
    """Forget the content digests of arrays (after changing an array in place)."""
    with _lock:
        _DIGESTS.clear()


def _array_digest(arr: Any) -> str:
    known = _recall(_DIGESTS, arr)
    if known is not None:
        return known
    digest = _fast_array_digest(arr)
    if digest is None:
        digest = hashlib.sha256(canonical_bytes(arr)).hexdigest()
    _remember(_DIGESTS, arr, digest)
    return digest


def _fast_array_digest(arr: Any) -> str | None:
    """``sha256(canonical_bytes(arr))`` without copying the data, for the common case (a
    contiguous little-endian array, no NaN); None otherwise (the caller encodes it)."""
    import struct

    import numpy as np

    dt = arr.dtype
    if dt.fields is not None or dt.subdtype is not None or arr.ndim == 0 or dt.kind not in "biufc" or \
            not arr.flags.c_contiguous or \
            dt.byteorder == ">" or (dt.byteorder == "=" and __import__("sys").byteorder == "big"):
        return None
    if dt.kind in "fc" and arr.size:
        with np.errstate(invalid="ignore", over="ignore"):
            if np.isnan(arr.sum()):  # NaNs (or inf - inf): the exact way
                return None
    descr = str(np.lib.format.dtype_to_descr(dt)).encode()
    h = hashlib.sha256()
    h.update(b"a" + struct.pack(">Q", len(descr)) + descr + struct.pack(">Q", arr.ndim)
             + b"".join(struct.pack(">Q", n) for n in arr.shape)
             + struct.pack(">Q", arr.nbytes))
    if arr.nbytes:
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _file_digest(path: PurePath, name: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise UnhashableParameterError(
            name, "file", f"keyed by content, but {path} cannot be read: {exc.strerror}") from None
    return h.hexdigest()


def _is_ndarray(value: Any) -> bool:
    np = __import__("sys").modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


class _Prepared:
    """Arguments turned into what keys them and what ``component.yaml`` shows."""

    def __init__(self) -> None:
        self.inputs: list[str] = []

    def value(self, value: Any, path: str, depth: int = 0) -> tuple[Any, Any]:
        upstream = _recall(_RESULTS, value)
        if upstream is not None:
            self.inputs.append(upstream)
            return KeyedBy("input", len(self.inputs) - 1), f"<input {upstream}>"
        if depth > 100:
            canonical_bytes(value, path)  # raises the usual "nested too deep"
        t = type(value)
        if t is list or t is tuple:
            pairs = [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            return t(p[0] for p in pairs), [p[1] for p in pairs]
        if t is dict:
            keyed, shown = {}, {}
            for k, v in value.items():
                keyed[k], shown[k] = self.value(v, f"{path}.{k}", depth + 1)
            return keyed, shown
        if _is_ndarray(value) and not value.dtype.hasobject:
            digest = _array_digest(value)
            return KeyedBy("array", digest), f"<array {value.dtype} {list(value.shape)} " \
                f"sha256:{digest[:16]}>"
        return value, _shown(value)  # the key refuses what it cannot encode, naming it


def _shown(value: Any) -> Any:
    """A YAML-safe picture of a keyed value (the key keeps the exact value)."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return value
    if isinstance(value, (list, tuple)) and not hasattr(type(value), "_fields"):
        return [_shown(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((_shown(v) for v in value), key=repr)
    if type(value).__name__ in ("DataFrame", "Series") and \
            type(value).__module__.split(".")[0] == "pandas":
        return f"<{type(value).__name__} shape {list(value.shape)}>"  # keyed by content
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return repr(value)


class _Call:
    """One call of a cached function, as a component."""

    def __init__(self, full_type: str, version: Any, parameters: dict[str, Any],
                 shown: dict[str, Any], inputs: list[str]) -> None:
        self.full_type = full_type
        self.version = version
        self.parameters = parameters
        self.__gitstore_shown__ = shown
        self.__gitstore_code__: dict[str, Any] | None = None
        self.input = [PinnedKey(k) for k in inputs] if inputs else None


def _cell_version(func: Callable[..., Any]) -> str | None:
    """The version of a function defined where there is no source file (a Jupyter cell, a
    REPL): ``cell-sha256:`` and the SHA-256 of the function's own source text (its ``def``
    and decorators, as IPython keeps it); None when even that text is unknown (``exec``)."""
    try:
        text = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    return "cell-sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _function_type(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "__main__"
    if module == "__main__":
        module = main_module_name()
    return f"{module}.{func.__qualname__}"


def _rebuild(store: Any, module: str, qualname: str, ignore: frozenset[str], version: Any,
             content_paths: frozenset[str]) -> CachedFunction:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    func = obj.func if isinstance(obj, CachedFunction) else obj
    return CachedFunction(store, func, ignore, version, content_paths)


class CachedFunction:
    """A function whose calls are stored in ``store`` (see :mod:`gitstore.memo`).

    Differences from joblib.Memory: keys are gitstore's canonical keys (stable across machines
    and Python versions, no pickle); arguments without a canonical encoding are refused
    (:class:`~gitstore.errors.UnhashableParameterError`) rather than pickled; the version is the
    content of the code (the function's module and what it imports from the project), not
    only the function's own source; results are stored with codecs, never pickled unless the
    store allows pickle.
    """

    def __init__(self, store: Any, func: Callable[..., Any], ignore: Iterable[str] = (),
                 version: Any = None, content_paths: Iterable[str] = ()) -> None:
        self.store = store
        self.func = func
        self.ignore = frozenset(ignore)
        self.content_paths = frozenset(content_paths)
        self._version = version
        self.signature = inspect.signature(func)
        unknown = (self.ignore | self.content_paths) - set(self.signature.parameters)
        if unknown:
            raise ParameterError(
                f"{func.__qualname__} has no argument {sorted(unknown)[0]!r} "
                f"(ignore= and content_paths= name arguments of the function)")
        self.full_type = _function_type(func)
        self.is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)
        self._busy: dict[str, threading.Lock] = {}  # one computation per key in a process
        self._cell: str | None = None  # the version of a function with no source file
        self._keys: dict[tuple[Any, ...], str] = {}  # scalar arguments and version -> key

    def __reduce__(self) -> Any:
        # workers (loky, multiprocessing) import the function by its module and name and wrap
        # it again around this store (stores pickle as their location and options)
        module = self.func.__module__
        if module == "__main__":
            module = main_module_name()
        return _rebuild, (self.store, module, self.func.__qualname__, self.ignore,
                          self._version, self.content_paths)

    # --- the call as a component ----------------------------------------------------------------

    @property
    def version(self) -> Any:
        if self._version is not None:
            return self._version
        if self._cell is not None:
            return self._cell
        try:
            return code_identity(self.func).version
        except InvalidComponentError:
            self._cell = _cell_version(self.func)  # a notebook cell, a REPL: no file
            if self._cell is None:
                raise
            return self._cell

    def component(self, *args: Any, **kwargs: Any) -> _Call:
        """The component a call with these arguments is."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterError(f"{self.func.__qualname__}: {exc}") from None
        bound.apply_defaults()
        prepared = _Prepared()
        keyed: dict[str, Any] = {}
        shown: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name in self.ignore:
                continue
            if name in self.content_paths and value is not None:
                if not isinstance(value, (str, os.PathLike)):
                    raise UnhashableParameterError(name, type(value).__name__,
                                                   "keyed by content: give a path")
                path = Path(os.fspath(value))
                digest = _file_digest(path, name)
                keyed[name] = KeyedBy("file", digest)
                shown[name] = f"<file {path.as_posix()} sha256:{digest[:16]}>"
                continue
            keyed[name], shown[name] = prepared.value(value, name)
        return _Call(self.full_type, self.version, keyed, shown, prepared.inputs)

    def _provenance(self, call: _Call) -> _Call:
        """Records the files the version was computed from (as for components), to store."""
        if self._version is None and self._cell is None:
            identity = code_identity(self.func)
            call.__gitstore_code__ = {"head": head_commit(identity.root),
                                      "files": identity.as_mapping()}
        return call

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The key of this call (``k1-sha256:…``)."""
        return str(self.store.key_of(self.component(*args, **kwargs)))

    # --- calling --------------------------------------------------------------------------------

    def _lookup(self, call: _Call) -> tuple[bool, Any, str]:
        key = self.store.key_of(call)
        value = self._stored(key, call.version)
        return (False, None, key) if value is _MISSING else (True, value, key)

    def _stored(self, key: str, version: Any) -> Any:
        """The stored value of a call, or _MISSING."""
        found = self.store._get(key, RESULT, version)
        if found is None:
            return _MISSING
        codec, payload = found
        try:
            return decode_payload(codec, payload, self.store.allow_pickle)
        except CorruptEntryError as exc:
            exc.key = exc.key or key
            raise

    def _keep(self, call: _Call, key: str, value: Any) -> Any:
        self.store.store(self._provenance(call), RESULT, value)
        with _lock:
            _STORED[0] += 1
        _remember(_RESULTS, value, key)
        return value

    def _quick_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]
                   ) -> tuple[Any, str, _Call | None]:
        """(version, key, the call if it was built) of a call whose arguments are all scalars
        (int, float, str, bool, None, bytes), from a per-function table; ``(None, "", None)``
        for other calls. Such arguments are keyed by their content (they cannot be results of
        cached calls), and the version is checked on every call, so the table only saves
        binding and encoding them again."""
        if self.content_paths:
            return None, "", None
        ident: list[Any] = [len(args)]
        for a in args:
            t = type(a)
            if t not in _SCALARS:
                return None, "", None
            ident.append(a.hex() if t is float else a)  # 0.0 and -0.0, 1 and True differ
            ident.append(t)
        for name, a in kwargs.items():
            t = type(a)
            if t not in _SCALARS:
                return None, "", None
            ident += (name, a.hex() if t is float else a, t)
        version = self.version
        if type(version) is not str:
            return None, "", None
        ident.append(version)
        whole = tuple(ident)
        key = self._keys.get(whole)
        call = None
        if key is None:
            call = self.component(*args, **kwargs)
            key = self.store.key_of(call)
            if len(self._keys) >= 4096:
                self._keys.clear()
            self._keys[whole] = key
        return version, key, call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._acall(args, kwargs, force=False)
        version, key, call = self._quick_key(args, kwargs)
        if not key:
            call = self.component(*args, **kwargs)
            version, key = call.version, self.store.key_of(call)
        seen = _STORED[0]
        value = self._stored(key, version)
        if value is not _MISSING:
            _remember(_RESULTS, value, key)
            return value
        with _lock:
            busy = self._busy.setdefault(key, threading.Lock())
        with busy:  # threads of this process asking for one call: one computes, others hit
            if _STORED[0] != seen:  # something was stored meanwhile: perhaps this call
                value = self._stored(key, version)
                if value is not _MISSING:
                    _remember(_RESULTS, value, key)
                    return value
            if call is None:
                call = self.component(*args, **kwargs)
            try:
                return self._keep(call, key, self.func(*args, **kwargs))
            finally:
                with _lock:
                    self._busy.pop(key, None)

    async def _acall(self, args: tuple[Any, ...], kwargs: dict[str, Any], force: bool) -> Any:
        import asyncio

        call = self.component(*args, **kwargs)
        if not force:
            hit, value, key = await asyncio.to_thread(self._lookup, call)
            if hit:
                _remember(_RESULTS, value, key)
                return value
        else:
            key = self.store.key_of(call)
        value = await self.func(*args, **kwargs)
        await asyncio.to_thread(self.store.store, self._provenance(call), RESULT, value)
        _remember(_RESULTS, value, key)
        return value

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Compute (even on a hit), store and return the value (joblib: ``func.call`` also
        returns the value, not a ``(value, metadata)`` pair)."""
        if self.is_async:
            return self._acall(args, kwargs, force=True)
        call = self.component(*args, **kwargs)
        return self._keep(call, self.store.key_of(call), self.func(*args, **kwargs))

    def check_call_in_cache(self, *args: Any, **kwargs: Any) -> bool:
        """Whether this call's value is stored (calls nothing)."""
        call = self.component(*args, **kwargs)
        return RESULT in self.store._attributes(self.store.key_of(call), call.version)

    def clear(self) -> int:
        """Delete every stored call of this function (every version); returns how many."""
        removed = 0
        for entry in list(self.store.entries()):
            if entry.type == self.full_type:
                key = entry.storage_key or entry.key
                removed += bool(self.store._remove(key, None, entry.component.get("version")))
        return removed

    def explain(self, *args: Any, **kwargs: Any) -> str:
        """Why this call hits or misses, in a sentence or two."""
        call = self.component(*args, **kwargs)
        key = self.store.key_of(call)
        if RESULT in self.store._attributes(key, call.version):
            return f"hit: {key} is stored"
        same_type = [e for e in self.store.entries() if e.type == self.full_type]
        if not same_type:
            return f"miss: no call of {self.full_type} is stored"
        from .component import version_text

        mine = version_text(call.version)
        same_version = [e for e in same_type
                        if version_text(e.component.get("version")) == mine]
        if not same_version:
            others = sorted({str(e.component.get("version")) for e in same_type})
            return (f"miss: {self.full_type} is stored only for other versions of its code "
                    f"({', '.join(others)}); this code is {mine}")
        lines = [f"miss: {len(same_version)} call(s) of this version are stored, with other "
                 f"arguments:"]
        for e in same_version[:5]:
            theirs = e.component.get("parameters") or {}
            differ = sorted(
                n for n in set(theirs) | set(call.__gitstore_shown__)
                if theirs.get(n) != call.__gitstore_shown__.get(n))
            lines.append(f"  {e.key}: {', '.join(differ) or 'same arguments, other inputs'}")
        return "\n".join(lines)


def cache(path_or_store: Any, func: Callable[..., Any] | None = None, *,
          ignore: Iterable[str] = (), version: Any = None,
          content_paths: Iterable[str] = ()) -> Any:
    """``gitstore.cache(".results")`` → a decorator (joblib: ``Memory(".results").cache``).

    ``path_or_store`` is a store, or a folder opened as a :class:`~gitstore.GitDataStore`.
    """
    if isinstance(path_or_store, (str, os.PathLike)):
        from .backends import GitDataStore

        store: Any = GitDataStore(os.fspath(path_or_store))
    elif hasattr(path_or_store, "_get") and hasattr(path_or_store, "store"):
        store = path_or_store
    else:
        raise GitStoreError(f"gitstore.cache needs a folder or a store, not "
                            f"{type(path_or_store).__name__}")
    return decorator(store, func, ignore=ignore, version=version, content_paths=content_paths)


def decorator(store: Any, func: Callable[..., Any] | None = None, *,
              ignore: Iterable[str] = (), version: Any = None,
              content_paths: Iterable[str] = ()) -> Any:
    """``store.cache`` and ``store.cache(ignore=[...])``."""
    if func is not None:
        return CachedFunction(store, func, ignore, version, content_paths)

    def wrap(f: Callable[..., Any]) -> CachedFunction:
        return CachedFunction(store, f, ignore, version, content_paths)
    return wrap

