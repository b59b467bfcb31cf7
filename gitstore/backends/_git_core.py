"""``GitDataStore``: results as git objects, one commit per store, one ref per version.

Layout (see :mod:`gitstore._git.layout`)::

    refs/gitstore/versions/<version>  ->  commit  ->  tree
        <hex[0:2]>/<hex[2:4]>/<hex>/component.yaml      type, version, parameters, input keys
        <hex[0:2]>/<hex[2:4]>/<hex>/<attribute>.<ext>   one blob per attribute, ext = codec

Write path: encode, build blobs; take the store's write gate shared (so ``gc`` deletes no object
written but not yet referenced, see :class:`~gitstore._git.objects.WriteGate`) and the version's
writer lock (flocks the kernel drops if we die); read the tip; edit the three fan-out trees; write
every new object as one pack; move the ref with compare-and-swap. A crash at any point leaves at
most an unreferenced temporary file or pack.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .. import _yaml
from .._git.large import LARGE, LooseReader, write_loose_blob
from .._git.lfs import (
    LFS_THRESHOLD,
    MAX_POINTER,
    POINTER_SIZES,
    LfsReader,
    LfsStore,
    Pointer,
    looks_like_pointer,
    parse_pointer,
)
from .._git.layout import (
    VERSIONS,
    entry_path,
    ref_for_version,
    version_of_ref,
    version_ref_problem,
)
from .._git.objects import BLOB, COMMIT, Obj, ObjectDB, WriteGate, object_id
from .._git.refs import RefFiles
from .._git.shared import Adjust, shared_adjuster
from ..codecs import (
    Codec,
    Payload,
    codec_by_ext,
    decode_payload,
    payload_bytes,
    read_all,
)
from ..component import get_version
from ..errors import (
    AmbiguousKeyError,
    ConcurrencyError,
    CorruptEntryError,
    DiskFullError,
    EntryNotFoundError,
    GitStoreError,
    InvalidArgumentError,
    NotFetchedError,
    NetworkFilesystemWarning,
    StoreError,
    StoreLocationError,
)
from ..keys import KEY_SCHEME, key_hex, key_of
from ..params import MISSING, ParameterSet
from ._attributes import recorded, with_record
from ._git_index import ListedEntry, ListingIndex, index_enabled
from .base import COMPONENT_FILE, AbstractDataStore, Entry, check_attribute_name

__all__ = ["Commit", "GitCore", "ListedEntry", "show_value"]

_DIR = 0o40000
_FILE = 0o100644
_FILE_MODES = frozenset({0o100644, 0o100755})
_COMPONENT = COMPONENT_FILE.encode()
_EMPTY_TREE = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_Store = TypeVar("_Store", bound="GitCore")
Changes = dict[tuple[bytes, ...], tuple[int, bytes] | None]


@dataclass(frozen=True)
class Commit:
    """One commit of a version's history."""

    id: str
    time: float
    message: str
    parents: tuple[str, ...]


@dataclass
class _EntryEdit:
    """Pending changes to one entry: ``reset`` drops what the tip has, then ``files`` apply."""

    reset: bool = False
    files: dict[bytes, tuple[int, bytes] | None] = field(default_factory=dict)


@dataclass
class _Pending:
    """Changes not yet committed: one batch (or one store)."""

    edits: dict[str, dict[tuple[bytes, ...], _EntryEdit]] = field(default_factory=dict)
    blobs: dict[bytes, bytes] = field(default_factory=dict)  # id -> content
    notes: dict[str, list[str]] = field(default_factory=dict)  # ref -> summary lines
    keys: dict[str, list[str]] = field(default_factory=dict)  # ref -> keys touched
    details: dict[str, str] = field(default_factory=dict)  # ref -> body (single store)

    def edit(self, ref: str, entry: tuple[bytes, ...]) -> _EntryEdit:
        return self.edits.setdefault(ref, {}).setdefault(entry, _EntryEdit())

    def changes(self, ref: str) -> Changes:
        """The edits of one ref as tree changes ``{path: value}``."""
        out: Changes = {}
        for entry, edit in self.edits.get(ref, {}).items():
            if edit.reset:
                out[entry] = None
            for name, value in edit.files.items():
                out[(*entry, name)] = value
        return out

    def add_blob(self, data: bytes) -> bytes:
        sha = object_id(BLOB, data)
        self.blobs[sha] = data
        return sha


class GitCore(AbstractDataStore):
    """A store in a git repository.

    Args:
        path: a bare repository created on first use, or an existing repository (bare or
            not), whose ``refs/gitstore/`` namespace the store then uses.
        allow_pickle: see :class:`AbstractDataStore`.
        author: ``"Name <email>"`` recorded in commits.
        lfs_threshold: attributes of at least this many bytes are stored as Git LFS objects
            (see :mod:`gitstore._git.lfs`); None stores every attribute in git. By default,
            the store's git config ``gitstore.lfsThreshold`` (bytes, ``k``/``m``/``g``
            suffixes, or ``off``), else :data:`~gitstore._git.lfs.LFS_THRESHOLD` (8 MiB).
        network_ok: do not warn that the store is on a network file system (NFS, Lustre...),
            where writers on several machines at once are not supported.

    Raises:
        StoreLocationError: ``path`` is a file, a non-empty directory that is not a git
            repository, or cannot be created.
    """

    supports_history = True
    #: list through the derived index in ``<gitdir>/gitstore/listing.sqlite`` (see
    #: :mod:`._git_index`; ``GITSTORE_LISTING_INDEX=0`` turns it off too)
    use_listing_index = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        allow_pickle: bool = False,
        author: str = "gitstore <gitstore@localhost>",
        create: bool = True,
        lfs_threshold: int | None | str = "config",
        network_ok: bool = False,
    ) -> None:
        super().__init__(allow_pickle=allow_pickle)
        self.path = Path(path).absolute()
        self.gitdir = self._open_or_create(create)
        self.network_ok = network_ok
        _warn_if_network(self.gitdir, network_ok)
        self.author = author.encode()
        # core.sharedRepository: modes for what we create, as git gives them (None: umask)
        self._shared_perm: Adjust | None = shared_adjuster(self.gitdir)
        self._refs = RefFiles(self.gitdir, self._shared_perm)
        self._gate = WriteGate(self.gitdir, self._shared_perm)  # gc deletes no object a writer has in flight
        self._local = threading.local()
        self._repos: list[Any] = []
        self._repos_lock = threading.Lock()
        self._blob_cache: dict[bytes, bytes] = {}
        #: component.yaml blob id -> its attributes record, for those written here
        self._records: dict[bytes, dict[str, tuple[int, str]]] = {}
        self._blob_cache_bytes = 0
        self._closed = False
        self._lfs = LfsStore(self.gitdir, self._shared_perm)  # large attributes (Git LFS)
        if hasattr(self, "_lfs_fetch"):  # missing content comes from the remotes (a weak
            me = weakref.ref(self)       # reference: the store stays collectable)
            self._lfs.fetcher = lambda pointer: me()._lfs_fetch(pointer)  # type: ignore[union-attr]
        self.lfs_threshold = _lfs_threshold(self.gitdir) if lfs_threshold == "config" else \
            _checked_threshold(lfs_threshold)
        # close dulwich's packs before interpreter teardown (else __del__ prints noise)
        self._finalizer = weakref.finalize(self, _close_all, self._repos, self._repos_lock)

    # --- opening -------------------------------------------------------------------------------

    def _open_or_create(self, create: bool) -> str:
        try:
            return self._open_or_create_unchecked(create)
        except StoreLocationError:
            raise
        except OSError as exc:  # a folder we may not even look into (another user's)
            raise StoreLocationError(f"cannot open a store at {self.path}: "
                                     f"{exc.strerror or exc}", str(self.path)) from None

    def _open_or_create_unchecked(self, create: bool) -> str:
        p = self.path
        here = str(p)
        # the usual case first, in three plain system calls: a bare store (as gitstore makes
        # them); anything else (or an error) takes the checks below
        if os.path.isfile(os.path.join(here, "HEAD")) and \
                os.path.isdir(os.path.join(here, "objects")) and \
                not os.path.isdir(os.path.join(here, ".git")):
            return here
        if p.exists() and not p.is_dir():
            raise StoreLocationError(f"{p} is a file, not a store", str(p))
        if (p / ".git").is_dir():
            return str(p / ".git")
        if (p / "HEAD").is_file() and (p / "objects").is_dir():
            return str(p)
        if p.exists() and any(p.iterdir()):
            raise StoreLocationError(f"{p} is a non-empty directory, not a git repository",
                                     str(p))
        if not create:
            raise StoreLocationError(f"no store at {p} (run 'gitstore init')", str(p))
        from dulwich.repo import Repo  # only to create one: opening and reads never need it

        tmp = p.with_name(f".{p.name}.init-{os.getpid()}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            Repo.init_bare(str(tmp), mkdir=True).close()
            with open(tmp / "description", "w") as f:
                f.write("gitstore: cached results of computations\n")
            if p.exists():
                p.rmdir()
            os.rename(tmp, p)  # all or nothing: a half-made repository is never seen
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if (p / "HEAD").is_file():  # another process created it meanwhile
                return str(p)
            raise StoreLocationError(f"cannot create a store at {p}: {exc.strerror or exc}",
                                     str(p)) from exc
        return str(p)

    def _db(self) -> ObjectDB:
        db: ObjectDB | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            if self._closed:
                raise StoreError("the store is closed")
            db = ObjectDB(gitdir=self.gitdir)
            with self._repos_lock:
                self._repos.append(db)  # closed with the store: its packs and repository
            db.shared = self._shared_perm
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def close(self) -> None:
        # docstring inherited
        self._closed = True
        self._refs.close()
        self._gate.close()
        _close_all(self._repos, self._repos_lock)
        self._local = threading.local()

    # --- batches -------------------------------------------------------------------------------

    @contextmanager
    def batch(self: _Store, message: str | None = None) -> Iterator[_Store]:
        """Group stores and deletes into one commit per version, all visible or none.

        Nothing is written if the block raises. Inside the block, ``retrieve`` sees the
        block's own stores.
        """
        if getattr(self._local, "pending", None) is not None:
            yield self  # nested: the outer batch commits
            return
        pending = _Pending()
        # the write gate, once a large blob is written, is held until the commit (see _put)
        with ExitStack() as held:
            self._local.pending, self._local.held = pending, held
            try:
                yield self
                self._local.pending = None
                with _disk_errors(self.gitdir):
                    self._commit(pending, message)
            finally:
                self._local.pending = self._local.held = None

    # --- primitives ----------------------------------------------------------------------------

    def _put(self, key: str, description: dict[str, Any], attribute: str, codec: Codec,
             payload: Payload) -> None:
        # docstring inherited
        with _disk_errors(self.gitdir):
            held = getattr(self._local, "held", None)
            if held is not None and not self._gate.held:
                # in a batch: a large blob written now must stay safe from gc until the
                # batch commits
                held.enter_context(self._gate.shared())
            with self._gate.shared():
                self._put_unchecked(key, description, attribute, codec, payload)

    def _put_unchecked(self, key: str, description: dict[str, Any], attribute: str,
                       codec: Codec, payload: Payload) -> None:
        ref = ref_for_version(description["version"])
        own = getattr(self._local, "pending", None)
        pending = own if own is not None else _Pending()
        entry = entry_path(key)
        listing = self._listing(key, ref, pending)
        size = len(payload) if isinstance(payload, bytes) else sum(len(p) for p in payload)
        # sizes and codecs for listing without the blobs (a partial fetch): see _attributes
        records = self._kept_records(listing, pending, attribute, (size, codec.name))
        description = with_record(description, records)
        comp_text = _yaml.dump(description)
        comp = comp_text.encode()
        edit = pending.edit(ref, entry)
        comp_sha = pending.add_blob(comp)
        edit.files[_COMPONENT] = (_FILE, comp_sha)
        if len(self._records) > 4096:
            self._records.clear()
        self._records[comp_sha] = records  # the next attribute stored needs no read of it
        for old in sorted(n for n in listing if n != _COMPONENT):
            if old.rsplit(b".", 1)[0] == attribute.encode():
                edit.files[old] = None
        name = f"{attribute}.{codec.ext}".encode()
        note = ""
        if (self.lfs_threshold is not None and size >= self.lfs_threshold) or (
                isinstance(payload, bytes) and looks_like_pointer(payload)):
            # a Git LFS object: streamed to lfs/objects now, a pointer blob in the tree (a
            # payload that looks like a pointer goes there too: pointers stay unambiguous)
            pointer = self._lfs.write([payload] if isinstance(payload, bytes) else payload)
            sha = pending.add_blob(pointer.text())
            note = f"\n{attribute}.{codec.ext}: {size} bytes, Git LFS object {pointer.oid}"
        elif size >= LARGE:  # streamed to a loose object now, outside the writer lock
            sha, how = write_loose_blob(os.path.join(self.gitdir, "objects"),
                                        [payload] if isinstance(payload, bytes) else payload)
            if self._shared_perm is not None:  # its folder, for the other members
                self._shared_perm(os.path.join(self.gitdir, "objects", sha.decode()[:2]))
            note = f"\n{attribute}.{codec.ext}: {size} bytes, {how}"
        else:
            sha = pending.add_blob(payload_bytes(payload))
        edit.files[name] = (_FILE, sha)
        pending.notes.setdefault(ref, []).append(
            f"store {attribute} of {description['type']} {key_hex(key)[:12]}")
        pending.keys.setdefault(ref, []).append(key)
        pending.details[ref] = f"attribute: {attribute}\n{comp_text}{note}"
        if own is None:
            self._commit(pending, None)

    def _kept_records(self, listing: dict[bytes, bytes], pending: _Pending,
                      attribute: str, record: tuple[int, str]) -> dict[str, tuple[int, str]]:
        """The ``attributes`` record of an entry about to store ``attribute``: what its
        current ``component.yaml`` records for the other attributes it still has, and
        ``record`` (size, codec name) for this one."""
        others = {n.decode("utf-8", "replace").rpartition(".")[0]
                  for n in listing if n != _COMPONENT}
        kept: dict[str, tuple[int, str]] = {}
        comp = listing.get(_COMPONENT)
        cached = self._records.get(comp) if comp is not None else None
        if cached is not None:
            kept = {n: r for n, r in cached.items() if n in others}
        elif comp is not None and others - {attribute}:
            try:
                data = pending.blobs.get(comp) or self._read_blob(comp)
                kept = {n: r for n, r in recorded(_yaml.load(data)).items() if n in others}
            except (GitStoreError, yaml.YAMLError, UnicodeDecodeError, ValueError):
                kept = {}  # unreadable: the other attributes fall back to object headers
        kept[attribute] = record
        return kept

    def _listing(self, key: str, ref: str, pending: _Pending | None) -> dict[bytes, bytes]:
        """The entry's files (name → blob id) as this thread sees them, pending changes included.

        Raises:
            CorruptEntryError: an object on the way is damaged (``.key`` names the entry).
        """
        entry = entry_path(key)
        listing: dict[bytes, bytes] = {}
        root = self._tip_tree(ref)
        if root is not None:
            db = self._db()
            try:
                found = db.lookup(root, entry)
                if found is not None and found[0] == _DIR:
                    listing = {name: sha for name, (_mode, sha) in db.tree(found[1]).items()}
            except CorruptEntryError as exc:
                exc.key = key
                raise
        edit = pending.edits.get(ref, {}).get(entry) if pending is not None else None
        if edit is not None:
            if edit.reset:
                listing.clear()
            for name, value in edit.files.items():
                if value is None:
                    listing.pop(name, None)
                else:
                    listing[name] = value[1]
        return listing

    def _tip_tree(self, ref: str) -> bytes | None:
        """The tree at the tip of ``ref`` (None if the ref does not exist).

        Raises:
            CorruptEntryError: the tip commit is missing or damaged, and stays so on a re-read
                of the ref (a first failure can be a read racing an in-place ref update).
        """
        db = self._db()
        for attempt in range(3):
            tip = self._refs.read(ref)
            if tip is None:
                return None
            try:
                return db.commit_tree(tip)
            except CorruptEntryError:
                if attempt == 2 or self._refs.read(ref) == tip:
                    raise
        return None  # pragma: no cover

    def _attribute_names(self, key: str, ref: str, pending: _Pending | None) -> list[bytes]:
        return sorted(n for n in self._listing(key, ref, pending) if n != _COMPONENT)

    def _attribute_file(self, key: str, attribute: str, version: Any
                        ) -> tuple[Codec, bytes, bytes | None] | None:
        """The codec, blob id and (in a batch, not yet committed) bytes of the file holding
        ``attribute`` of ``key``: in that version, or the first version that has it."""
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        pending = getattr(self._local, "pending", None)
        prefix = attribute.encode() + b"."
        for ref in refs:
            for name, sha in self._listing(key, ref, pending).items():
                if name.startswith(prefix) and b"." not in name[len(prefix):]:
                    data = pending.blobs.get(sha) if pending is not None else None
                    return codec_by_ext(name[len(prefix):].decode()), sha, data
        return None

    def _get(self, key: str, attribute: str, version: Any = None) -> tuple[Codec, Any] | None:
        # docstring inherited
        found = self._attribute_file(key, attribute, version)
        if found is None:
            return None
        codec, sha, data = found
        try:
            got: Any = data if data is not None else self._open_blob(sha)
            if isinstance(got, bytes) and looks_like_pointer(got):
                got = self._lfs_open(got)
        except CorruptEntryError as exc:
            exc.key = key
            raise
        return codec, got

    def _open_blob(self, sha: bytes) -> bytes | LooseReader:
        """A blob's bytes, or for a large blob a stream that checks its id at the end."""
        data = self._blob_cache.get(sha)
        if data is not None:
            return data
        try:
            got: bytes | LooseReader = self._db().open_blob(sha)
        except CorruptEntryError:
            if not self._absent(sha):
                raise
            self._missing_blob(sha)  # a partial store fetches it (or raises)
            got = self._db().open_blob(sha)  # (sees the pack that brought it: streamed if large)
        if isinstance(got, bytes):
            self._cache_blob(sha, got)
        return got

    def _lfs_open(self, pointer_text: bytes) -> LfsReader:
        """A reader of a Git LFS attribute's content (fetched if missing; ``verify`` makes
        it re-hash even a file recorded as verified)."""
        pointer = parse_pointer(pointer_text)
        assert pointer is not None
        return self._lfs.open(pointer, rehash=getattr(self._local, "rehash", False),
                              fetch=not getattr(self._local, "rehash", False))

    def _lfs_pointer(self, key: str, attribute: str, version: Any) -> tuple[Codec, Pointer] | None:
        """The codec and pointer of an attribute stored as a Git LFS object, else None."""
        found = self._attribute_file(key, attribute, version)
        if found is None:
            return None
        codec, sha, data = found
        if data is None:
            if self._blob_size(sha) >= MAX_POINTER:
                return None
            data = self._read_blob(sha)
        pointer = parse_pointer(data)
        return (codec, pointer) if pointer is not None else None

    def retrieve(self, component: Any, attribute_name: str, default: Any = None,
                 mmap_mode: str | None = None) -> Any:
        """The stored ``attribute_name`` of ``component``, or ``default`` (None) if absent.

        ``mmap_mode="r"`` (or ``"c"``, copy-on-write) returns an array stored as a Git LFS
        object as a read-only :class:`numpy.memmap` of its ``.npy`` file, in O(1) once the
        file is recorded as verified (it is hashed once, before its first use, otherwise);
        other attributes load as usual, as with ``joblib.Memory``.

        Raises:
            InvalidArgumentError: ``mmap_mode`` is not None, ``"r"`` or ``"c"`` (a writable
                map would change the store's content).
            UntrustedDataError, CorruptEntryError: see
                :meth:`~gitstore.backends.base.AbstractDataStore.retrieve`.
            LfsObjectMissingError: the content is not here and no remote gave it.
        """
        if mmap_mode is None:
            return super().retrieve(component, attribute_name, default)
        if mmap_mode not in ("r", "c"):
            raise InvalidArgumentError(f"mmap_mode must be 'r' or 'c' (the store's files are "
                                       f"read-only), not {mmap_mode!r}")
        check_attribute_name(attribute_name)
        key = self.key_of(component)
        try:
            found = self._lfs_pointer(key, attribute_name, get_version(component))
            if found is None or found[0].name != "npy":
                return super().retrieve(component, attribute_name, default)
            path = self._lfs.local_path(found[1])
        except CorruptEntryError as exc:
            exc.key = exc.key or key
            raise
        import numpy as np

        try:
            return np.load(path, mmap_mode="r" if mmap_mode == "r" else "c", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise CorruptEntryError(f"cannot map the .npy of LFS object {found[1].oid}: "
                                    f"{exc}", key=key) from exc

    def _blob_size(self, sha: bytes) -> int:
        """A blob's size from its header (packed or loose): nothing is inflated.

        Raises:
            CorruptEntryError: the blob is missing, or its header is damaged and no good
                copy is found.
        """
        cached = self._blob_cache.get(sha)
        if cached is not None:
            return len(cached)
        size = self._db().size_of(sha)
        return size if size is not None else len(self._read_blob(sha))

    def _content_size(self, sha: bytes, size: int) -> int:
        """An attribute's size: the blob's, or for a Git LFS pointer its content's."""
        if size in POINTER_SIZES:  # only a well-formed pointer's sizes (listing stays fast)
            pointer = parse_pointer(self._read_blob(sha))
            if pointer is not None:
                return pointer.size
        return size

    def _cache_blob(self, sha: bytes, data: bytes) -> None:
        if len(data) <= 1 << 20:  # small, verified blobs are kept (immutable by id)
            if self._blob_cache_bytes > 64 << 20:
                self._blob_cache.clear()
                self._blob_cache_bytes = 0
            self._blob_cache[sha] = data
            self._blob_cache_bytes += len(data)

    def _read_blob(self, sha: bytes) -> bytes:
        data = self._blob_cache.get(sha)
        if data is None:
            try:
                data = self._db().read(sha, BLOB)
            except CorruptEntryError:
                if not self._absent(sha):
                    raise
                self._missing_blob(sha)  # a partial store fetches it (or raises)
                data = self._db().read(sha, BLOB)
            self._cache_blob(sha, data)
        return data

    def _absent(self, sha: bytes) -> bool:
        """Whether no copy of the object is here at all (missing, not damaged)."""
        store = self._db().store
        try:
            store._update_pack_cache()  # a pack that arrived since we last looked
        except Exception:  # noqa: BLE001 - a look for a copy: the caller raises anyway
            pass
        return not self._present(sha)

    def _present(self, sha: bytes) -> bool:
        """Whether some copy of the object is here (a loose file or a pack entry), without
        reading it: a damaged copy is present (its read says what is wrong)."""
        hex_id = sha.decode()
        if os.path.exists(os.path.join(self.gitdir, "objects", hex_id[:2], hex_id[2:])):
            return True
        try:
            return bool(self._db().store.contains_packed(sha))
        except Exception:  # noqa: BLE001 - an unreadable index: not absent, say damaged
            return True

    def _missing_blob(self, sha: bytes) -> None:
        """The read path's one hook for an absent blob. A partial store (fetched with a
        filter, see :meth:`RemotesMixin.fetch`) fetches it from its promisor remote and
        returns once it is here; elsewhere absent is damage.

        Raises:
            CorruptEntryError: the store has no promisor remote: the blob is lost.
            NotFetchedError: promised, but it could not be fetched now.
        """
        if not self._fetch_promised([sha]):
            raise CorruptEntryError(f"object {sha.decode()} is missing", expected=sha.decode())

    def _fetch_promised(self, shas: list[bytes]) -> bool:
        """Fetch absent blobs from the store's promisor remotes; False when it has none
        (overridden where remotes are known)."""
        return False

    def _absent_blobs(self, refs: list[str]) -> list[bytes]:
        """Blobs the entries of these versions name and this store lacks."""
        db = self._db()
        out: list[bytes] = []
        for ref in refs:
            for _hexkey, tree, problem in self._scan(ref):
                if problem is None:
                    try:
                        out.extend(sha for _name, (_mode, sha) in db.tree(tree).items()
                                   if not self._present(sha))
                    except CorruptEntryError:
                        continue  # verify names it
        return out

    def _is_partial(self) -> bool:
        """Whether the store fetched partially from some remote (overridden likewise)."""
        return False

    @contextmanager
    def _no_fetch(self) -> Iterator[None]:
        """Reads in this block never fetch: a promised blob raises NotFetchedError (listing,
        sizes, ``verify`` without ``fetch=True``)."""
        before = getattr(self._local, "no_fetch", False)
        self._local.no_fetch = True
        try:
            yield
        finally:
            self._local.no_fetch = before

    def _remove(self, key: str, attribute: str | None, version: Any = None) -> bool:
        # docstring inherited
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        own = getattr(self._local, "pending", None)
        pending = own if own is not None else _Pending()
        entry = entry_path(key)
        removed = False
        for ref in refs:
            names = self._attribute_names(key, ref, pending)
            if attribute is None:
                doomed = names
            else:
                doomed = [n for n in names if n.rsplit(b".", 1)[0] == attribute.encode()]
            if not doomed:
                continue
            removed = True
            edit = pending.edit(ref, entry)
            if len(doomed) == len(names):  # nothing left: the entry goes
                edit.reset = True
                edit.files.clear()
            else:
                for name in doomed:
                    edit.files[name] = None
            what = attribute or "entry"
            pending.notes.setdefault(ref, []).append(f"delete {what} {key_hex(key)[:12]}")
            pending.keys.setdefault(ref, []).append(key)
        if removed and own is None:
            with _disk_errors(self.gitdir):
                self._commit(pending, None)
        return removed

    def _list(self, key: str | None = None, version: Any = None) -> Iterator[Entry]:
        # docstring inherited
        if key is None:
            for entry, _tree in self._listed(version):
                yield entry
            return
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        db = self._db()
        for ref in refs:
            try:
                root = self._tip_tree(ref)
                found = db.lookup(root, entry_path(key)) if root is not None else None
            except CorruptEntryError:
                if version is not None:
                    raise
                continue  # a damaged version elsewhere does not hide this one's entry
            if found is not None and found[0] == _DIR:
                yield self._entry(found[1])

    def _listed(self, version: Any = None) -> Iterator[tuple[Entry, bytes]]:
        """Every entry (of one version, or all) with its tree id (b"" for a damaged part)."""
        for row in self._listed_rows(version, None, None, False, describe=True):
            yield row.entry, row.tree

    def listing(self, version: Any = None, type: str | None = None,
                where: str | Callable[[Mapping[str, Any]], bool] | None = None,
                dates: bool = True) -> Iterator[ListedEntry]:
        """Every entry (of one version, or all; of one type; whose parameters match ``where``)
        with its attributes' sizes and, with ``dates``, when it last changed: what ``ls``
        shows, in one pass. Read from the listing index (``<gitdir>/gitstore/listing.sqlite``,
        brought up to date from the refs first, see :mod:`._git_index`) or, where it cannot be
        used, from the trees: each tree walked once, each ``component.yaml`` parsed once,
        sizes from the ``attributes`` sizes it records or from object headers (no attribute
        is inflated). Damaged entries are listed with their ``problem`` (none match a
        ``where``).

        Args:
            where: a query (:func:`gitstore.query.parse_where`), or a predicate over the
                flattened parameters.

        Raises:
            QueryError: ``where`` does not parse.
        """
        return self._listed_rows(version, type, where, dates, describe=False)

    def table(self, type: str | None = None,
              where: str | Callable[[Mapping[str, Any]], bool] | None = None,
              version: Any = None, pandas: bool | None = None) -> Any:
        """One row per entry: key, type, version, date (when it last changed), size (bytes),
        each parameter as a dotted column (``model.tau``), and ``size:<attribute>`` per
        attribute (see :func:`gitstore.table.rows_of`); damaged entries are left out.
        Attribute values are not read (that would inflate every blob): ``retrieve`` them.

        Returns:
            a pandas ``DataFrame`` when pandas is installed (or ``pandas=True``), else a
            :class:`gitstore.table.Table` (``_repr_html_`` for notebooks, values escaped).

        Raises:
            QueryError: ``where`` does not parse.
        """
        from ..table import Table, rows_of

        rows, columns = rows_of(self._listed_rows(version, type, where, True, describe=True))
        out = Table(rows, columns)
        if pandas is False:
            return out
        try:
            return out.to_pandas()
        except ImportError:
            if pandas:
                raise
            return out

    def _listed_rows(self, version: Any, type: str | None,
                 where: str | Callable[[Mapping[str, Any]], bool] | None, dates: bool,
                 describe: bool) -> Iterator[ListedEntry]:
        """:meth:`listing`; with ``describe``, each row's ``entry`` decoded up front (in bulk)."""
        from ..query import flatten, parse_where

        predicate = parse_where(where) if isinstance(where, str) else where
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        for ref in refs:
            rows = [row for row in self._ref_listing(ref, dates)
                    if type is None or (row.problem is None and row.type == type)]
            if predicate is not None or describe:
                ListingIndex(self).descriptions(rows)
            for row in rows:
                if predicate is not None and (row.problem is not None or row.entry.problem
                                              is not None or not predicate(flatten(
                                                  row.entry.component.get("parameters")
                                                  or {}))):
                    continue
                yield row

    def _ref_listing(self, ref: str, dates: bool) -> Iterator[ListedEntry]:
        if self.use_listing_index and index_enabled():
            listed = ListingIndex(self).listed(ref, dates)
            if listed is not None:
                yield from listed
                return
        scanned = list(self._scan(ref))
        found = self._dates_of(ref, {h for h, _t, p in scanned if p is None}) if dates else {}
        sizes = _HeaderSizes(self)
        try:
            for hexkey, tree, problem in scanned:
                if problem is None:
                    entry, got, _raw = self._entry_row(tree, hexkey.encode(), ref, sizes)
                    yield ListedEntry(entry, got, found.get(hexkey), tree)
                else:
                    key_text = f"{KEY_SCHEME}:{hexkey}"
                    yield ListedEntry(Entry(key_text, (), {"key": key_text,
                                                           "version": version_of_ref(ref)},
                                            problem=problem), {}, None, b"")
        finally:
            sizes.close()

    def _entry_row(self, tree: bytes, name: bytes, ref: str, sizes: _HeaderSizes
                   ) -> tuple[Entry, dict[str, int | None], bytes | None]:
        """The entry in ``tree`` (see :meth:`_listed_entry`), its attributes' sizes and its
        ``component.yaml`` text (None for a damaged entry)."""
        entry = self._listed_entry(tree, name, ref, sizes)
        got: dict[str, int | None] = {}
        if entry.problem is not None:
            return entry, got, None
        names = self._db().tree(tree)
        recorded = entry.component.get("attributes")
        for file_name, (_mode, sha) in sorted(names.items()):
            if file_name == _COMPONENT:
                continue
            attribute = file_name.decode().rpartition(".")[0]
            info = recorded.get(attribute) if isinstance(recorded, dict) else None
            size = info.get("size") if isinstance(info, dict) else None
            # recorded at store time; from a remote, so display only: well-typed or ignored
            if type(size) is not int or size < 0:
                size = sizes.size(sha)
                if size is not None:
                    try:
                        size = self._content_size(sha, size)  # a Git LFS pointer's content
                    except CorruptEntryError:
                        size = None
            got[attribute] = size
        return entry, got, self._read_blob(names[_COMPONENT][1])

    def entries_sized(self, version: Any = None, type: str | None = None
                      ) -> Iterator[tuple[Entry, dict[str, int | None]]]:
        """Entries as :meth:`entries` gives them, each with its attributes' sizes
        (``{attribute: bytes}``, None where the object is missing or damaged; empty for a
        damaged entry), in one pass (see :meth:`listing`)."""
        for row in self._listed_rows(version, type, None, False, describe=True):
            yield row.entry, row.sizes

    def _listed_entry(self, tree: bytes, name: bytes, ref: str,
                      sizes: _HeaderSizes | None = None) -> Entry:
        """The entry in ``tree``; one whose description cannot be read, or names another key
        than the place it is filed at, is listed with its ``problem`` (listing goes on: one
        bad entry never hides the others)."""
        try:
            names = self._db().tree(tree)
            entry = self._entry(tree, names, sizes)
            odd = sorted(n for n, (mode, _sha) in names.items() if mode not in _FILE_MODES)
            if odd:  # a link, a folder, a submodule: no attribute gitstore writes
                raise CorruptEntryError(
                    f"entry tree {tree.decode()} holds {_shown(odd[0])!r}, which is not a "
                    "file")
            if key_hex(entry.key) != name.decode("ascii", "replace"):
                raise CorruptEntryError(
                    f"{COMPONENT_FILE} in {tree.decode()} names key {_shown(entry.key.encode())!r}"
                    f" but is filed under {name.decode('ascii', 'replace')}")
            return entry
        except CorruptEntryError as exc:
            try:
                names = self._db().tree(tree)
            except CorruptEntryError:
                names = {}  # the entry's own tree is missing or damaged: no attributes known
            attrs = tuple(sorted(n.rsplit(b".", 1)[0].decode("utf-8", "replace")
                                 for n in names if n != _COMPONENT))
            key = f"{KEY_SCHEME}:{name.decode('ascii', 'replace')}"
            return Entry(key, attrs, {"key": key, "version": version_of_ref(ref)},
                         problem=str(exc))

    def _entry(self, tree: bytes, names: dict[bytes, tuple[int, bytes]] | None = None,
               sizes: _HeaderSizes | None = None) -> Entry:
        if names is None:
            names = self._db().tree(tree)
        comp = names.get(_COMPONENT)
        if comp is None:
            raise CorruptEntryError(f"entry tree {tree.decode()} has no {COMPONENT_FILE}")
        # from its header: nothing inflated yet
        size = sizes._packed(comp[1]) if sizes is not None else None
        if size is None:
            size = self._blob_size(comp[1])
        if size > _yaml.MAX_TEXT:
            raise CorruptEntryError(f"{COMPONENT_FILE} in {tree.decode()} is unreadable: "
                                    f"{size} bytes, over the limit of {_yaml.MAX_TEXT}")
        try:
            description = _yaml.load(self._read_blob(comp[1]))
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
            why = f": {exc}" if isinstance(exc, _yaml.YAMLLimitError) else ""
            raise CorruptEntryError(f"{COMPONENT_FILE} in {tree.decode()} is unreadable{why}") \
                from exc
        if not isinstance(description, dict) or "key" not in description or \
                not isinstance(description.get("parameters") or {}, dict):
            raise CorruptEntryError(f"{COMPONENT_FILE} in {tree.decode()} is malformed")
        attrs = tuple(sorted(n.rsplit(b".", 1)[0].decode() for n in names if n != _COMPONENT))
        return Entry(str(description["key"]), attrs, description)

    # --- committing ----------------------------------------------------------------------------

    def _commit(self, pending: _Pending, message: str | None) -> None:
        if not pending.edits:
            return
        with self._gate.shared():  # from the first object written until the refs have moved
            self._commit_locked(pending, message)

    def _commit_locked(self, pending: _Pending, message: str | None) -> None:
        db = self._db()
        refs = sorted(pending.edits)
        landed: list[str] = []  # refs moved so far
        for _attempt in range(20):
            with ExitStack() as locks:
                for ref in refs:
                    locks.enter_context(self._refs.locked(ref))
                objects: list[Obj] = [(BLOB, data, sha) for sha, data in pending.blobs.items()]
                updates = []
                for ref in refs:
                    old = self._refs.read(ref)
                    base = db.commit_tree(old) if old is not None else None
                    tree = db.edit_tree(base, pending.changes(ref), objects) or _EMPTY_TREE
                    if tree == base:
                        continue
                    if tree == _EMPTY_TREE:
                        objects.append((2, b""))
                    body = self._message(pending, ref, message)
                    raw = self._commit_bytes(tree, old, body)
                    commit_id = object_id(COMMIT, raw)
                    objects.append((COMMIT, raw, commit_id))
                    db.remember_commit(commit_id, tree)
                    updates.append((ref, old, commit_id))
                if not updates:
                    # the same content is stored already; but if its copy is damaged, this
                    # store is the chance to leave a good one (reads fall back to it)
                    damaged: list[Obj] = [(BLOB, data, sha) for sha, data in
                                          pending.blobs.items() if not db.is_intact(sha, BLOB)]
                    if damaged:
                        db.write_pack(damaged)
                    return
                db.write_pack(objects)
                try:
                    moved = all(self._swap(r, o, n, landed) for r, o, n in updates)
                except OSError as exc:
                    if not landed or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    # a batch over several versions: say what is true
                    raise DiskFullError(
                        f"no space left to store: {exc.strerror}; committed: version(s) "
                        f"{', '.join(version_of_ref(r) for r in landed)}; not committed: "
                        f"{', '.join(version_of_ref(r) for r in refs if r not in landed)}"
                    ) from None
                if moved:
                    break
                # a git process moved a ref under us; what moved stays moved, redo the rest
                refs = [r for r, o, n in updates if self._refs.read(r) != n]
        else:
            raise ConcurrencyError("a ref kept moving under gitstore's writer lock")
        db.maybe_merge()

    def _swap(self, ref: str, old: bytes | None, new: bytes, landed: list[str]) -> bool:
        moved = self._refs.compare_and_swap(ref, old, new)
        if moved:
            landed.append(ref)
        return moved

    def _commit_bytes(self, tree: bytes, parent: bytes | None, message: str,
                      more_parents: list[bytes] | None = None) -> bytes:
        stamp = b"%d +0000" % int(time.time())
        lines = [b"tree " + tree]
        for p in ([parent] if parent is not None else []) + (more_parents or []):
            lines.append(b"parent " + p)
        lines.append(b"author " + self.author + b" " + stamp)
        lines.append(b"committer " + self.author + b" " + stamp)
        return b"\n".join(lines) + b"\n\n" + message.encode("utf-8")

    def _message(self, pending: _Pending, ref: str, message: str | None) -> str:
        notes = pending.notes.get(ref, [])
        version = version_of_ref(ref)
        if message is None and len(notes) == 1:
            subject = notes[0]
            body = pending.details.get(ref, "")
        else:
            subject = message or f"gitstore batch: {len(notes)} changes"
            body = "\n".join(notes)
        trailers = [f"Gitstore-Version: {version}"]
        trailers += [f"Gitstore-Key: {k}" for k in dict.fromkeys(pending.keys.get(ref, []))]
        parts = [subject, body.strip(), "\n".join(trailers)]
        return "\n\n".join(p for p in parts if p) + "\n"

    # --- git-specific API ----------------------------------------------------------------------

    def _version_refs(self) -> list[str]:
        """The store's version refs: only names gitstore writes (a hand-made
        ``versions/%61`` is not version ``a``: never listed, pushed or merged; verify names
        it)."""
        return sorted(ref for ref in self._refs.list(VERSIONS)
                      if version_ref_problem(ref) is None)

    def versions(self) -> list[str]:
        """Every version that has results here."""
        return [version_of_ref(r) for r in self._version_refs()]

    def entries(self, version: Any = None, type: str | None = None) -> Iterator[Entry]:
        """Entries, optionally of one version and/or one component type."""
        for entry in self._list(None, version):
            if type is None or entry.type == type:
                yield entry

    def history(self, component: Any) -> list[Commit]:
        """The commits that changed ``component``'s entry, newest first."""
        return self._history(ref_for_version(get_version(component)), key_of(component))

    def _commits(self, ref: str) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """First-parent history of a ref: (commit id, parsed header and message)."""
        db = self._db()
        sha = self._refs.read(ref)
        while sha is not None:
            raw = db.read(sha, COMMIT)
            header, _, message = raw.partition(b"\n\n")
            lines = header.split(b"\n")
            parents = [line[7:] for line in lines if line.startswith(b"parent ")]
            stamp = next((line for line in lines if line.startswith(b"committer ")), b"0 0 0")
            yield sha, {"parents": parents, "time": float(stamp.rsplit(b" ", 2)[1]),
                        "message": message.decode("utf-8", "replace")}
            sha = parents[0] if parents else None

    def _history(self, ref: str, key: str | None) -> list[Commit]:
        db = self._db()
        out: list[Commit] = []
        path = entry_path(key) if key is not None else None
        for sha, info in self._commits(ref):
            if path is not None:
                parents = info["parents"]
                mine = db.lookup(db.commit_tree(sha), path)
                theirs = db.lookup(db.commit_tree(parents[0]), path) if parents else None
                if mine == theirs:
                    continue
            out.append(Commit(sha.decode(), info["time"], info["message"],
                              tuple(p.decode() for p in info["parents"])))
        return out

    def log(self, key: str | None = None, version: Any = None) -> list[Commit]:
        """Commits newest first: of every version (or one), or those touching one entry.

        ``key`` may be any unique prefix (see :meth:`find`).
        """
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        if key is not None:
            entry = self.find(key)
            refs = [ref_for_version(entry.version)]
            key = entry.key
        commits = []
        for ref in refs:
            try:
                commits.extend(self._history(ref, key))
            except CorruptEntryError:
                if version is not None or key is not None:
                    raise
                # a damaged version does not hide the others' history (verify names it)
        return sorted(commits, key=lambda c: c.time, reverse=True)

    # --- lookups by key (for the command line) --------------------------------------------------

    def _walk(self, ref: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(hex digest, entry tree id) of every readable entry of ``ref`` whose digest starts
        so (damaged parts are skipped: :meth:`_scan` names them)."""
        for hexkey, tree, problem in self._scan(ref, prefix):
            if problem is None:
                yield hexkey, tree

    def _scan(self, ref: str, prefix: str = "") -> Iterator[tuple[str, bytes, str | None]]:
        """(hex digest, entry tree id, None) of every entry of ``ref`` whose digest starts so,
        and (hex prefix, b"", problem) for each part that cannot be read: a tip that is not a
        commit or is missing, a fan-out tree that is missing or damaged, a folder whose name
        is not where gitstore files an entry (a hostile or hand-made tree). One damaged part
        never hides the others, nor the other versions."""
        db = self._db()
        version = version_of_ref(ref)
        try:
            root = self._tip_tree(ref)
            level1 = sorted(db.tree(root).items()) if root is not None else []
        except CorruptEntryError as exc:
            yield "", b"", f"version {version} is unreadable: {exc}"
            return
        p = prefix.encode()
        for n1, (m1, t1) in level1:
            if m1 != _DIR or not (n1.startswith(p[:2]) or p[:2].startswith(n1)):
                continue
            if not _is_hex(n1, 2):
                yield _shown(n1), b"", f"version {version}: {_shown(n1)!r} is not an entry folder"
                continue
            try:
                level2 = sorted(db.tree(t1).items())
            except CorruptEntryError as exc:
                yield n1.decode(), b"", f"version {version}, entries {n1.decode()}…: {exc}"
                continue
            for n2, (m2, t2) in level2:
                if m2 != _DIR or not (n2.startswith(p[2:4]) or p[2:4].startswith(n2)):
                    continue
                where = n1 + b"/" + n2
                if not _is_hex(n2, 2):
                    yield n1.decode(), b"", (f"version {version}: {_shown(where)!r} is not an "
                                             "entry folder")
                    continue
                try:
                    level3 = sorted(db.tree(t2).items())
                except CorruptEntryError as exc:
                    yield (n1 + n2).decode(), b"", (f"version {version}, entries "
                                                    f"{(n1 + n2).decode()}…: {exc}")
                    continue
                for n3, (m3, t3) in level3:
                    if m3 != _DIR or not n3.startswith(p):
                        continue
                    if not _is_hex(n3, 64) or n3[:4] != n1 + n2:
                        yield (n1 + n2).decode(), b"", (
                            f"version {version}: {_shown(where + b'/' + n3)!r} is not an "
                            "entry folder")
                        continue
                    yield n3.decode(), t3, None

    def find(self, prefix: str) -> Entry:
        """The entry whose key starts with ``prefix`` (with or without ``k1-sha256:``).

        Raises:
            EntryNotFoundError: no key starts so.
            AmbiguousKeyError: several do (``.candidates`` lists them).
        """
        if not isinstance(prefix, str):
            raise EntryNotFoundError(f"{prefix!r} is not a key or key prefix (a key is a "
                                     f"string of hex digits, not a {type(prefix).__name__})")
        digest = key_hex(prefix.strip()).lower()
        if not digest or digest.strip("0123456789abcdef"):
            raise EntryNotFoundError(f"{prefix!r} is not a key or key prefix (hex digits)")
        found = {}
        for ref in self._version_refs():
            for hexkey, tree in self._walk(ref, digest):
                found[hexkey] = tree
        if not found:
            raise EntryNotFoundError(f"no entry with a key starting {prefix!r}")
        if len(found) > 1:
            raise AmbiguousKeyError(prefix, sorted(found))
        return self._entry(next(iter(found.values())))

    def attributes(self, key: str | Entry) -> dict[str, dict[str, Any]]:
        """``{attribute: {"file", "codec", "size", "id"}}`` of the entry with this key (prefix),
        or of an :class:`Entry` already found (not looked up again)."""
        entry = key if isinstance(key, Entry) else self.find(key)
        listing = self._listing(entry.key, ref_for_version(entry.version), None)
        record = recorded(entry.component)
        out = {}
        for name, sha in sorted(listing.items()):
            if name == _COMPONENT:
                continue
            attribute, _, ext = name.decode().rpartition(".")
            codec = codec_by_ext(ext)  # None: a format no codec here reads
            size: int | None
            try:  # the object's own size when it is here; else what component.yaml recorded
                if not self._present(sha):
                    raise NotFetchedError("absent")  # not fetched, or missing
                with self._no_fetch():
                    size = self._content_size(sha, self._blob_size(sha))
            except NotFetchedError:  # not fetched (a partial store): recorded, display only
                size = record[attribute][0] if attribute in record else None
            except CorruptEntryError:
                size = None  # damaged (a malformed LFS pointer...): verify names it
            out[attribute] = {"file": name.decode(),
                              "codec": codec.name if codec.known else None,
                              "size": size, "id": sha.decode()}
        return out

    def read(self, key: str, attribute: str, raw: bool = False) -> Any:
        """An attribute of the entry with this key (prefix): decoded, or the file's bytes.

        Raises:
            EntryNotFoundError: no such entry or attribute.
            InvalidAttributeNameError: ``attribute`` cannot be an attribute's name.
            UntrustedDataError: a pickle, without ``allow_pickle=True`` (not for ``raw``).
        """
        check_attribute_name(attribute)
        entry = self.find(key)
        found = self._get(entry.key, attribute, entry.version)
        if found is None:
            raise EntryNotFoundError(
                f"entry {key_hex(entry.key)[:12]} has no attribute {attribute!r} "
                f"(it has: {', '.join(entry.attributes) or 'none'})")
        codec, data = found
        return read_all(data) if raw else decode_payload(codec, data, self.allow_pickle)

    def diff(self, key_a: str, key_b: str) -> dict[str, Any]:
        """What differs between two entries: type, version, each parameter path, inputs."""
        a, b = self.find(key_a).component, self.find(key_b).component
        out: dict[str, Any] = {}
        for field_name in ("type", "version", "input"):
            if a.get(field_name) != b.get(field_name):
                out[field_name] = (a.get(field_name), b.get(field_name))
        params = ParameterSet(a.get("parameters") or {}).diff(b.get("parameters") or {})
        if params:
            out["parameters"] = {k: (show_value(x), show_value(y)) for k, (x, y) in params.items()}
        if not out and a.get("key") != b.get("key"):
            # component.yaml writes tuples and sets as lists, numpy values as plain ones: the
            # keys tell such values apart, the descriptions cannot show how
            out["parameters"] = {"(the type of a value, or of the version)": (
                "equal as written in component.yaml, yet the keys differ",
                "tuple or list, set, numpy or Python number")}
        return out

    def entry_dates(self, version: Any) -> dict[str, float]:
        """When each entry of a version last changed: ``{hex digest: unix time}``."""
        return {key_hex(row.key): row.date for row in self.listing(version)
                if row.date is not None and row.problem is None}

    def _dates_of(self, ref: str, wanted: set[str] | None) -> dict[str, float]:
        """When each entry of ``ref`` (or each of ``wanted``) last changed, from its
        first-parent history: one tree diff per commit, newest first, until all are dated."""
        db = self._db()
        remaining = wanted if wanted is not None else \
            {hexkey for hexkey, _tree in self._walk(ref)}
        remaining = set(remaining)
        dates: dict[str, float] = {}
        try:
            for sha, info in self._commits(ref):
                if not remaining:
                    break
                parents = info["parents"]
                before = db.commit_tree(parents[0]) if parents else None
                for hexkey in _changed_entries(db, db.commit_tree(sha), before):
                    if hexkey in remaining:
                        dates[hexkey] = info["time"]
                        remaining.discard(hexkey)
        except CorruptEntryError:
            pass  # a damaged or truncated history: the entries below it have no date
        return dates

    def count_entries(self) -> int:
        """How many entries the store holds (every version; damaged parts not counted)."""
        total = 0
        for ref in self._version_refs():
            counted = ListingIndex(self).count(ref) \
                if self.use_listing_index and index_enabled() else None
            total += counted if counted is not None else sum(1 for _ in self._walk(ref))
        return total

    # --- maintenance ---------------------------------------------------------------------------

    # --- code revisions --------------------------------------------------------------------------

    # --- remotes -------------------------------------------------------------------------------

class _HeaderSizes:
    """Blob sizes from object headers for one listing pass (see :meth:`ObjectDB.size_of`:
    one search of the packs per object, nothing inflated)."""

    def __init__(self, core: GitCore) -> None:
        self._core = core

    def size(self, sha: bytes) -> int | None:
        """The blob's size; None if it is missing or damaged."""
        try:
            found = self._packed(sha)
            if found is not None:
                return found
            if not self._core._present(sha):
                return None  # not fetched (a partial store) or missing: nothing to read
            with self._core._no_fetch():
                return self._core._blob_size(sha)
        except (CorruptEntryError, NotFetchedError):
            return None

    def _packed(self, sha: bytes) -> int | None:
        return self._core._db().size_of(sha)

    def close(self) -> None:
        pass


def _is_hex(name: bytes, length: int) -> bool:
    return len(name) == length and not name.strip(b"0123456789abcdef")


def _shown(name: bytes) -> str:
    """A tree name from an untrusted tree, printable and short."""
    return name[:80].decode("utf-8", "replace").encode("unicode_escape").decode("ascii")


def _changed_entries(db: ObjectDB, tree: bytes, before: bytes | None,
                     with_trees: bool = False) -> Iterator[Any]:
    """Hex digests of entries that differ between two root trees (walking only what differs);
    with ``with_trees``, ``(hex digest, entry tree id in tree, or None if gone)``."""
    def walk(a: bytes | None, b: bytes | None, depth: int) -> Iterator[Any]:
        ta = db.tree(a) if a is not None else {}
        tb = db.tree(b) if b is not None else {}
        for name in ta.keys() | tb.keys():
            ea, eb = ta.get(name), tb.get(name)
            if ea == eb:
                continue
            if depth == 2:
                if not with_trees:
                    yield name.decode()
                else:
                    yield name.decode("ascii", "replace"), \
                        (ea[1] if ea is not None and ea[0] == _DIR else None)
            else:
                yield from walk(ea[1] if ea and ea[0] == _DIR else None,
                                eb[1] if eb and eb[0] == _DIR else None, depth + 1)
    return walk(tree, before, 0)




def _checked_threshold(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"lfs_threshold is a number of bytes >= 0 or None, not "
                                   f"{value!r}")
    return value


def _lfs_threshold(gitdir: str) -> int | None:
    """``gitstore.lfsThreshold`` from the store's git config (bytes; ``k``/``m``/``g``;
    ``off``), else the default. A value that does not parse is the default."""
    try:
        path = os.path.join(gitdir, "config")
        with open(path, "rb") as f:
            text = f.read().lower()
        if b"lfsthreshold" not in text and b"include" not in text:
            return LFS_THRESHOLD  # not set: every open pays this, not a parse of the file
        from dulwich.config import ConfigFile

        raw = ConfigFile.from_path(path).get(
            (b"gitstore",), b"lfsThreshold").decode().strip().lower()
    except (OSError, KeyError, ValueError):
        return LFS_THRESHOLD
    if raw in ("off", "false", "no", "none"):
        return None
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(raw[-1:], 1)
    digits = raw[:-1] if scale > 1 else raw
    return int(digits) * scale if digits.isdigit() else LFS_THRESHOLD


def _warn_if_network(gitdir: str, network_ok: bool) -> None:
    """Warn (NetworkFilesystemWarning) when the store is on NFS, Lustre or another network
    file system, unless ``network_ok`` or ``GITSTORE_NETWORK_OK=1``."""
    if network_ok or os.environ.get("GITSTORE_NETWORK_OK", "") not in ("", "0"):
        return
    from .._git.filesystem import network_filesystem

    kind = network_filesystem(gitdir)
    if kind is not None:
        warnings.warn(NetworkFilesystemWarning(
            f"the store {gitdir} is on a network file system ({kind}): writers on several "
            "machines at once are not supported there (locks and renames are not reliable "
            "across clients). Use a store per node on local disk, each pushing to a central "
            "remote; one machine writing is fine (network_ok=True or GITSTORE_NETWORK_OK=1 "
            "silences this)"), stacklevel=4)


def show_value(value: Any) -> Any:
    """A parameter value for display (``MISSING`` becomes None)."""
    return None if value is MISSING else value


@contextmanager
def _disk_errors(gitdir: str) -> Iterator[None]:
    """A full disk becomes DiskFullError, a store we may not write to StoreLocationError (the
    writers have already removed their temporaries)."""
    try:
        yield
    except StoreError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(f"no space left to store: {exc.strerror}; nothing was "
                                "written (the store is as it was)") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreLocationError(
                f"cannot write to the store at {gitdir}: {exc.strerror} (a read-only store, "
                "or one owned by another user); nothing was written", gitdir) from None
        raise


def _close_all(repos: list[Any], lock: threading.Lock) -> None:
    with lock:
        for repo in repos:
            try:
                repo.close()
            except BufferError:  # a caller still holds a view into a pack's mmap
                pass
        repos.clear()
