"""``ShelveDataStore``: the seed's backend, one small key-value file per component.

The seed kept each component's attributes in a ``shelve`` named after its key. A shelf pickles
every value, so opening a shelf that came from elsewhere can run code. This backend keeps the
layout (one database per key under ``root_dir``, named by ``key_generator``) but stores each value
through the codecs in :mod:`gitstore.codecs` in a plain ``dbm`` database, the layer beneath
``shelve``: nothing is unpickled unless ``allow_pickle=True``.

``dbm.dumb`` has no locking of its own: it keeps a database's index in memory and rewrites it
on close, so two processes storing into one entry lost each other's attributes (448 of 600
acknowledged stores, issue 11). Every operation therefore holds a lock on ``root_dir/.lock``
(``flock``: shared to read, exclusive to write or delete), taken per operation and never
across a ``yield``.
"""

from __future__ import annotations

import dbm.dumb
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import _yaml
from ..codecs import Codec, Payload, codec_by_name, payload_bytes
from ..errors import CorruptEntryError, StoreLocationError, UnsupportedValueError
from ..keygenerators import join_with_underscores
from ..keys import canonical_bytes
from ..params import _yaml_safe
from .base import AbstractDataStore, Entry, ensure_directory, listed_entry

__all__ = ["ShelveDataStore"]

_DESCRIPTION = b"\x00component"  # attribute names never hold NUL
#: the canonical key of the state a shelf holds, and a digest of its version's canonical
#: bytes: a key generator that gives two states one name (``hash_pickle`` does for versions
#: ``1`` and ``"1"``) never mixes them, nor serves one's data for the other
_KEY = b"\x00key"
_VERSION = b"\x00version"
_RECORDS = (_DESCRIPTION, _KEY, _VERSION)
_SUFFIXES = (".dat", ".dir", ".bak")
_LOCK = ".lock"  # no key's files: those end in one of _SUFFIXES


def _text(name: str | bytes) -> str:
    return name.decode() if isinstance(name, bytes) else name


def _version_digest(version: Any) -> bytes:
    """The version as stored in a description (:func:`~gitstore.params._yaml_safe`: tuples as
    lists, numpy values as Python ones), by its type-tagged canonical bytes."""
    return hashlib.sha256(canonical_bytes(version)).hexdigest().encode()


def _another_version(db: Any, version: Any) -> bool:
    """Whether the shelf ``db`` holds a state of another version than ``version`` (None: any)
    under the same name: then it is not the state asked for."""
    stored = db.get(_VERSION)
    return stored is not None and version is not None and \
        stored != _version_digest(_yaml_safe(version))


class ShelveDataStore(AbstractDataStore):
    """Persistent data store based on ``dbm`` files in a directory, as in the seed.

    Args:
        root_dir: where the files go; created if missing.
        key_generator: component → file name (the seed's ``join_with_underscores`` by default,
            or ``hash_pickle``).
        allow_pickle: see :class:`AbstractDataStore`.

    Raises:
        StoreLocationError: ``root_dir`` is a file, or cannot be created.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        key_generator: Callable[[Any], str] = join_with_underscores,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(allow_pickle=allow_pickle)
        self.root_dir = ensure_directory(Path(root_dir))
        if not os.access(self.root_dir, os.W_OK | os.X_OK):
            raise StoreLocationError(f"{self.root_dir} is not writable", str(self.root_dir))
        self.key_generator = key_generator

    def _path(self, key: str) -> str:
        return str(self.root_dir / key)

    def _exists(self, key: str) -> bool:
        return os.path.exists(self._path(key) + ".dir")

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """Hold the directory's lock: exclusive for writers, shared for readers."""
        try:
            fd = os.open(self.root_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:  # the folder deleted under us, or made unwritable
            raise StoreLocationError(f"cannot use the store at {self.root_dir}: "
                                     f"{exc.strerror or exc}", str(self.root_dir)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    # docstring inherited
    def _put(self, key: str, description: dict[str, Any], attribute: str, codec: Codec,
             payload: Payload) -> None:
        # everything is encoded before a file is created: a refusal leaves nothing behind
        try:
            text = _yaml.dump(description).encode()
        except UnicodeEncodeError:
            raise UnsupportedValueError("the component's description holds a lone surrogate: "
                                        "it cannot be written as UTF-8", "description") from None
        value = codec.name.encode() + b"\x00" + payload_bytes(payload)
        canonical = str(description["key"]).encode()
        version = _version_digest(description["version"])
        with self._locked(exclusive=True), dbm.dumb.open(self._path(key), "c") as db:
            if _DESCRIPTION not in db:
                db[_DESCRIPTION] = text
                db[_KEY] = canonical
                db[_VERSION] = version
            elif db.get(_KEY, canonical) != canonical or db.get(_VERSION, version) != version:
                raise UnsupportedValueError(
                    f"the key generator names two different states {key!r} (this one is "
                    f"{description['key']}, the stored one {_text(db[_KEY])}); nothing was "
                    "written: use a key generator that tells them apart (join_with_underscores "
                    "does) or another backend", "key")
            db[attribute.encode()] = value

    # docstring inherited
    def _get(self, key: str, attribute: str, version: Any = None) -> tuple[Codec, bytes] | None:
        with self._locked(exclusive=False):
            if not self._exists(key):
                return None
            with dbm.dumb.open(self._path(key), "r") as db:
                if _another_version(db, version):
                    return None
                raw = db.get(attribute.encode())
        if raw is None:
            return None
        name, sep, payload = raw.partition(b"\x00")
        if not sep:
            raise CorruptEntryError(f"entry {key}: attribute {attribute!r} has no codec", key)
        return codec_by_name(name.decode()), payload

    # docstring inherited
    def _remove(self, key: str, attribute: str | None, version: Any = None) -> bool:
        with self._locked(exclusive=True):
            return self._remove_locked(key, attribute, version)

    def _remove_locked(self, key: str, attribute: str | None, version: Any) -> bool:
        if not self._exists(key):
            return False
        with dbm.dumb.open(self._path(key), "r") as db:
            if _another_version(db, version):
                return False
        if attribute is not None:
            with dbm.dumb.open(self._path(key), "w") as db:
                if attribute.encode() not in db:
                    return False
                del db[attribute.encode()]
                remaining = [k for k in db.keys() if k not in _RECORDS]
            if remaining:
                return True
        for suffix in _SUFFIXES:
            try:
                os.unlink(self._path(key) + suffix)
            except FileNotFoundError:
                pass
        return True

    def _read_entry(self, name: str, version: Any = None
                    ) -> tuple[bytes, tuple[str, ...]] | None:
        """The description and attribute names of the database ``name``; None when it is not
        an entry of this store (every entry holds a description from its first write): a
        folder or a file named ``*.dir``, another tool's dbm file, an unreadable index; or
        when it holds a state of another version than ``version`` (None: any)."""
        if not os.path.isfile(self._path(name) + ".dir") or \
                not os.path.isfile(self._path(name) + ".dat"):
            return None
        try:
            with dbm.dumb.open(self._path(name), "r") as db:
                if _another_version(db, version):
                    return None
                raw = db.get(_DESCRIPTION)
                if raw is None:
                    return None
                attrs = tuple(sorted(_text(k) for k in db.keys() if k not in _RECORDS))
        except (OSError, ValueError, SyntaxError, TypeError, UnicodeDecodeError,
                RecursionError, MemoryError):  # dbm.dumb's index is literal_eval'd lines
            return None
        return raw, attrs

    # docstring inherited
    def _list(self, key: str | None = None, version: Any = None) -> Iterator[Entry]:
        if key is not None:
            names = [key] if self._exists(key) else []
        else:
            names = sorted(p.name[:-4] for p in self.root_dir.glob("*.dir"))
        for name in names:
            with self._locked(exclusive=False):
                if not self._exists(name):  # deleted since the directory was read
                    continue
                # with a key: a state of another version under the same name is not it
                found = self._read_entry(name, version if key is not None else None)
            if found is None:
                continue  # not written by this store: root_dir may be a shared folder
            raw, attrs = found
            yield listed_entry(name, attrs, raw, storage_key=name)
