"""Copying entries between stores of any backends, keeping their keys."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .backends.base import AbstractDataStore, Entry
from .codecs import Codec, read_all
from .errors import CorruptEntryError, StoreError, StoreLocationError, UnknownCodecError
from .keys import PinnedKey
from .params import ParameterSet

__all__ = ["DescribedComponent", "copy_entries", "open_spec"]


class DescribedComponent:
    """A component rebuilt from its description (component.yaml's fields): for backends whose
    storage key is computed from the component (ShelveDataStore's key generators), and for
    ``gitstore explain``. Inputs found in ``known`` are rebuilt too; others stand as their key."""

    input: Any

    def __init__(self, description: dict[str, Any],
                 known: dict[str, dict[str, Any]] | None = None,
                 built: dict[str, DescribedComponent] | None = None) -> None:
        self._describe(description)
        known = known or {}
        built = {} if built is None else built  # key → component: each rebuilt once
        # an input stored in the same store is rebuilt too (hash_pickle needs its identity):
        # first every one reachable (without recursion: a chain may be thousands long), then
        # their inputs wired
        new = []
        todo = list(_input_keys(description.get("input")))
        while todo:
            key = todo.pop()
            if key in built or key not in known:
                continue
            component = DescribedComponent.__new__(DescribedComponent)
            component._describe(known[key])
            built[key] = component
            new.append(key)
            todo.extend(_input_keys(known[key].get("input")))
        for key in new:
            built[key].input = _wired(known[key].get("input"), built)
        self.input = _wired(description.get("input"), built)

    def _describe(self, description: dict[str, Any]) -> None:
        self.full_type = str(description["type"])
        self.version = description["version"]
        self.parameters = ParameterSet(description.get("parameters") or {})
        #: the code record of a code-versioned entry (issue 13): kept, and named by explain
        self.__gitstore_code__ = description.get("code")
        self.input = None


def _input_keys(inputs: Any) -> list[str]:
    return [str(k) for k in inputs] if isinstance(inputs, list) else \
        ([str(inputs)] if inputs else [])


def _wired(inputs: Any, built: dict[str, DescribedComponent]) -> Any:
    rebuilt = [built.get(k) or PinnedKey(k) for k in _input_keys(inputs)]
    return rebuilt if isinstance(inputs, list) else (rebuilt[0] if rebuilt else None)


def copy_entries(source: AbstractDataStore, destination: AbstractDataStore,
                 progress: Callable[[int], None] | None = None) -> int:
    """Copy every entry of ``source`` into ``destination``, bytes and keys unchanged.

    Attributes are copied as their encoded bytes (no decoding: a pickle is copied without being
    loaded, data in a format no codec here reads keeps its bytes too). Into a ShelveDataStore,
    the file name comes from its key generator applied to the component rebuilt from its
    description (exact for parameters YAML represents exactly: no tuples, sets or numpy
    values). Returns the number of attributes copied.

    Raises:
        UnknownCodecError: an attribute's format is unknown here and the destination files
            formats by what the source did not record (a git store records a file extension,
            the other backends a codec name); checked before anything is copied.
    """
    batch = getattr(destination, "batch", None)
    copied = 0
    entries = list(source.entries())
    damaged = [entry for entry in entries if entry.problem is not None]
    if damaged:  # copy all or nothing: run `gitstore verify`, delete or repair them first
        raise CorruptEntryError("; ".join(f"{e.key}: {e.problem}" for e in damaged[:5]),
                                key=damaged[0].key)
    known = {entry.key: entry.component for entry in entries}
    built: dict[str, DescribedComponent] = {}  # inputs rebuilt once for every entry
    _check_codecs(source, destination, entries)
    with batch(message="gitstore copy") if batch is not None else nullcontext():
        for entry in entries:
            storage = _destination_key(destination, entry, known, built)
            for attribute in entry.attributes:
                found = source._get(entry.storage_key or entry.key, attribute, _version(entry))
                if found is None:
                    continue
                codec, payload = found
                destination._put(storage, entry.component, attribute, codec, read_all(payload))
                copied += 1
                if progress is not None:
                    progress(copied)
    return copied


def _version(entry: Entry) -> Any:
    """The version as the component had it (``Entry.version`` is its text: a shelf tells
    ``0.1`` from ``"0.1"``)."""
    return entry.component.get("version", entry.version) if isinstance(entry.component, dict) \
        else entry.version


def _check_codecs(source: AbstractDataStore, destination: AbstractDataStore,
                  entries: list[Entry]) -> None:
    """Refuse, before copying anything, formats unknown here that the destination cannot file."""
    from .backends.git import GitDataStore

    by_ext = isinstance(destination, GitDataStore)
    for entry in entries:
        for attribute in entry.attributes:
            found = source._get(entry.storage_key or entry.key, attribute, _version(entry))
            if found is None:  # listed, yet not there: never report a partial copy as done
                raise StoreError(f"entry {entry.key} lists attribute {attribute!r} but it cannot "
                                 "be read (deleted meanwhile?); nothing was copied")
            codec, payload = found
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                payload.close()
            if not codec.known and not (codec.ext if by_ext else codec.name):
                raise UnknownCodecError(
                    f"cannot copy attribute {attribute!r} of entry {entry.key}: unknown codec "
                    f"{_what(codec)}, and a {type(destination).__name__} records a codec's "
                    f"{'file extension' if by_ext else 'name'}; install the plugin that "
                    "registers it (nothing was copied)", codec.name or codec.ext)


def _what(codec: Codec) -> str:
    return repr(codec.name) if codec.name else f"'.{codec.ext}'"


def _destination_key(destination: AbstractDataStore, entry: Entry,
                     known: dict[str, dict[str, Any]],
                     built: dict[str, DescribedComponent] | None = None) -> str:
    if destination.key_generator is None:
        return entry.key
    return destination.key_generator(DescribedComponent(entry.component, known, built))


def open_spec(spec: str, create: bool = True) -> AbstractDataStore:
    """A store from a command-line spec: ``PATH`` or ``git:PATH`` (git), ``shelve:PATH``,
    ``django:DATA_DIR`` (SQLite index inside) or ``django:DATA_DIR?db=URL``.

    Raises:
        StoreError: an unknown kind of store.
        StoreLocationError: with ``create=False``, no store at that path (nothing is created).
    """
    from .backends.git import GitDataStore
    from .backends.orm import DjangoORMDataStore
    from .backends.shelve import ShelveDataStore

    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("git", "shelve", "django") or len(kind) == 1:
        kind, rest = "git", spec
    if not rest.strip():  # never the current folder by accident
        raise StoreError(f"{spec!r}: a {kind} store needs a path ({kind}:PATH)")
    if kind == "git":
        return GitDataStore(rest, create=create)
    folder, _, query = rest.partition("?") if kind == "django" else (rest, "", "")
    if not folder:  # (the URL may hold a password: never in a message)
        raise StoreError("django stores need a data folder (django:DIR[?db=URL])")
    if not create and not Path(folder).is_dir():  # a mistyped source: nothing created
        raise StoreLocationError(f"no {kind} store at {folder}", folder)
    if kind == "shelve":
        return ShelveDataStore(rest)
    db = parse_qs(query).get("db", [None])[0]
    return DjangoORMDataStore(db, Path(folder))
