"""``GitDataStore``: results as git objects, one commit per store, one ref per version.

Layout (see :mod:`gitstore._git.layout`)::

    refs/gitstore/versions/<version>  ->  commit  ->  tree
        <hex[0:2]>/<hex[2:4]>/<hex>/component.yaml      type, version, parameters, input keys
        <hex[0:2]>/<hex[2:4]>/<hex>/<attribute>.<ext>   one blob per attribute, ext = codec

Write path: encode, build blobs; take the version's writer lock (an flock the kernel drops if we
die); read the tip; edit the three fan-out trees; write every new object as one pack; move the ref
with compare-and-swap. A crash at any point leaves at most an unreferenced temporary file or pack.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import random
import re
import shutil
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import _yaml
from .._git.large import LARGE, LooseReader, open_packed_blob, write_loose_blob
from .._git.layout import NAMESPACE, VERSIONS, entry_path, ref_for_version, version_of_ref
from .._git.packgen import generate_pack_data
from .._git.merge import is_ancestor, merge_base, merge_trees
from .._git.objects import BLOB, COMMIT, Obj, ObjectDB, object_id
from .._git.refs import STALE_LOCK_SECONDS, RefFiles
from .._git.remote import fetch_refs, link_objects, local_gitdir, no_merges, push_refs
from ..codecs import Codec, Payload, codec_by_ext, decode_payload, payload_bytes, read_all
from ..component import full_type, get_inputs, get_parameters, get_version, open_code_repo
from ..errors import (
    AmbiguousKeyError,
    ConcurrencyError,
    CorruptEntryError,
    DiskFullError,
    EntryNotFoundError,
    GitStoreError,
    MergeConflictError,
    RemoteError,
    StoreError,
    StoreLocationError,
)
from ..keys import KEY_SCHEME, PinnedKey, key_hex, key_of
from ..params import MISSING, ParameterSet
from .base import COMPONENT_FILE, AbstractDataStore, Entry

__all__ = ["Commit", "GitDataStore"]

_DIR = 0o40000
_FILE = 0o100644
_COMPONENT = COMPONENT_FILE.encode()
_EMPTY_TREE = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_REMOTE_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")
Changes = dict[tuple[bytes, ...], tuple[int, bytes] | None]


@dataclass(frozen=True)
class Explanation:
    """What :meth:`GitDataStore.explain` found; ``str()`` gives the text."""

    key: str
    stored: bool
    version: Any
    attributes: list[str]
    nearest: list[tuple[str, list[str]]]
    type: str = ""

    def __str__(self) -> str:
        if self.stored:
            return (f"stored: {self.key} in version {self.version} "
                    f"(attributes: {', '.join(self.attributes)})")
        if not self.nearest:
            return f"not stored: {self.key}; nothing of type {self.type} is stored"
        lines = [f"not stored: {self.key}; nearest stored entries of type {self.type}:"]
        for key, differences in self.nearest:
            lines.append(f"  {key_hex(key)[:12]}: " + ("; ".join(d for d in differences
                                                              if "\n" not in d) or "same"))
            lines += ["    " + d for d in differences if "\n" in d]
        return "\n".join(lines)


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


class GitDataStore(AbstractDataStore):
    """A store in a git repository.

    Args:
        path: a bare repository created on first use, or an existing repository (bare or
            not), whose ``refs/gitstore/`` namespace the store then uses.
        allow_pickle: see :class:`AbstractDataStore`.
        author: ``"Name <email>"`` recorded in commits.

    Raises:
        StoreLocationError: ``path`` is a file, a non-empty directory that is not a git
            repository, or cannot be created.
    """

    supports_history = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        allow_pickle: bool = False,
        author: str = "gitstore <gitstore@localhost>",
        create: bool = True,
    ) -> None:
        super().__init__(allow_pickle=allow_pickle)
        self.path = Path(path).absolute()
        self.gitdir = self._open_or_create(create)
        self.author = author.encode()
        self._refs = RefFiles(self.gitdir)
        self._local = threading.local()
        self._repos: list[Any] = []
        self._repos_lock = threading.Lock()
        self._blob_cache: dict[bytes, bytes] = {}
        self._blob_cache_bytes = 0
        self._closed = False
        # close dulwich's packs before interpreter teardown (else __del__ prints noise)
        self._finalizer = weakref.finalize(self, _close_all, self._repos, self._repos_lock)

    # --- opening -------------------------------------------------------------------------------

    def _open_or_create(self, create: bool) -> str:
        from dulwich.repo import Repo

        p = self.path
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
            from dulwich.repo import Repo

            repo = Repo(self.gitdir)
            with self._repos_lock:
                self._repos.append(repo)
            db = ObjectDB(repo)
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def close(self) -> None:
        # docstring inherited
        self._closed = True
        self._refs.close()
        _close_all(self._repos, self._repos_lock)
        self._local = threading.local()

    # --- batches -------------------------------------------------------------------------------

    @contextmanager
    def batch(self, message: str | None = None) -> Iterator[GitDataStore]:
        """Group stores and deletes into one commit per version, all visible or none.

        Nothing is written if the block raises. Inside the block, ``retrieve`` sees the
        block's own stores.
        """
        if getattr(self._local, "pending", None) is not None:
            yield self  # nested: the outer batch commits
            return
        pending = _Pending()
        self._local.pending = pending
        try:
            yield self
            self._local.pending = None
            with _disk_errors():
                self._commit(pending, message)
        finally:
            self._local.pending = None

    # --- primitives ----------------------------------------------------------------------------

    def _put(self, key: str, description: dict[str, Any], attribute: str, codec: Codec,
             payload: Payload) -> None:
        # docstring inherited
        with _disk_errors():
            self._put_unchecked(key, description, attribute, codec, payload)

    def _put_unchecked(self, key: str, description: dict[str, Any], attribute: str,
                       codec: Codec, payload: Payload) -> None:
        ref = ref_for_version(description["version"])
        own = getattr(self._local, "pending", None)
        pending = own if own is not None else _Pending()
        entry = entry_path(key)
        comp_text = _yaml.dump(description)
        comp = comp_text.encode()
        edit = pending.edit(ref, entry)
        edit.files[_COMPONENT] = (_FILE, pending.add_blob(comp))
        for old in self._attribute_names(key, ref, pending):
            if old.rsplit(b".", 1)[0] == attribute.encode():
                edit.files[old] = None
        name = f"{attribute}.{codec.ext}".encode()
        size = len(payload) if isinstance(payload, bytes) else sum(len(p) for p in payload)
        note = ""
        if size >= LARGE:  # streamed to a loose object now, outside the writer lock
            sha, how = write_loose_blob(os.path.join(self.gitdir, "objects"),
                                        [payload] if isinstance(payload, bytes) else payload)
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

    def _get(self, key: str, attribute: str, version: Any = None) -> tuple[Codec, Any] | None:
        # docstring inherited
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        pending = getattr(self._local, "pending", None)
        prefix = attribute.encode() + b"."
        for ref in refs:
            for name, sha in self._listing(key, ref, pending).items():
                if name.startswith(prefix) and b"." not in name[len(prefix):]:
                    data: Any = pending.blobs.get(sha) if pending is not None else None
                    if data is None:
                        try:
                            data = self._open_blob(sha)
                        except CorruptEntryError as exc:
                            exc.key = key
                            raise
                    return codec_by_ext(name[len(prefix):].decode()), data
        return None

    def _open_blob(self, sha: bytes) -> bytes | LooseReader:
        """A blob's bytes, or for a large loose blob a stream that checks its id at the end."""
        data = self._blob_cache.get(sha)
        if data is not None:
            return data
        hex_id = sha.decode()
        path = os.path.join(self.gitdir, "objects", hex_id[:2], hex_id[2:])
        try:
            reader = LooseReader(path, sha)
        except FileNotFoundError:
            packed = open_packed_blob(self._db().store, sha)  # large, in a pack: stream it
            if packed is None:
                return self._read_blob(sha)
            reader = packed
        if reader.size >= LARGE:
            return reader
        try:
            data = reader.read()
            reader.finish()
        finally:
            reader.close()
        self._cache_blob(sha, data)
        return data

    def _blob_size(self, sha: bytes) -> int:
        blob = self._open_blob(sha)
        if isinstance(blob, bytes):
            return len(blob)
        blob.close()
        return blob.size

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
            data = self._db().read(sha, BLOB)
            self._cache_blob(sha, data)
        return data

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
            with _disk_errors():
                self._commit(pending, None)
        return removed

    def _list(self, key: str | None = None, version: Any = None) -> Iterator[Entry]:
        # docstring inherited
        refs = [ref_for_version(version)] if version is not None else self._version_refs()
        db = self._db()
        for ref in refs:
            root = self._tip_tree(ref)
            if root is None:
                continue
            if key is not None:
                found = db.lookup(root, entry_path(key))
                if found is not None and found[0] == _DIR:
                    yield self._entry(found[1])
                continue
            for _n1, (m1, t1) in sorted(db.tree(root).items()):
                if m1 != _DIR:
                    continue
                for _n2, (m2, t2) in sorted(db.tree(t1).items()):
                    if m2 != _DIR:
                        continue
                    for _n3, (m3, t3) in sorted(db.tree(t2).items()):
                        if m3 == _DIR:
                            yield self._entry(t3)

    def _entry(self, tree: bytes) -> Entry:
        db = self._db()
        names = db.tree(tree)
        comp = names.get(_COMPONENT)
        if comp is None:
            raise CorruptEntryError(f"entry tree {tree.decode()} has no {COMPONENT_FILE}")
        try:
            description = _yaml.load(self._read_blob(comp[1]))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise CorruptEntryError(f"{COMPONENT_FILE} in {tree.decode()} is unreadable") \
                from exc
        if not isinstance(description, dict) or "key" not in description:
            raise CorruptEntryError(f"{COMPONENT_FILE} in {tree.decode()} is malformed")
        attrs = tuple(sorted(n.rsplit(b".", 1)[0].decode() for n in names if n != _COMPONENT))
        return Entry(str(description["key"]), attrs, description)

    # --- committing ----------------------------------------------------------------------------

    def _commit(self, pending: _Pending, message: str | None) -> None:
        if not pending.edits:
            return
        db = self._db()
        refs = sorted(pending.edits)
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
                    return
                db.write_pack(objects)
                if all(self._refs.compare_and_swap(r, o, n) for r, o, n in updates):
                    break
                # a git process moved a ref under us; what moved stays moved, redo the rest
                refs = [r for r, o, n in updates if self._refs.read(r) != n]
        else:
            raise ConcurrencyError("a ref kept moving under gitstore's writer lock")
        db.maybe_merge()

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
        return sorted(self._refs.list(VERSIONS))

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
        commits = [c for ref in refs for c in self._history(ref, key)]
        return sorted(commits, key=lambda c: c.time, reverse=True)

    # --- lookups by key (for the command line) --------------------------------------------------

    def _walk(self, ref: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(hex digest, entry tree id) of every entry of ``ref`` whose digest starts so."""
        db = self._db()
        root = self._tip_tree(ref)
        if root is None:
            return
        p = prefix.encode()
        for n1, (m1, t1) in sorted(db.tree(root).items()):
            if m1 != _DIR or not (n1.startswith(p[:2]) or p[:2].startswith(n1)):
                continue
            for n2, (m2, t2) in sorted(db.tree(t1).items()):
                if m2 != _DIR or not (n2.startswith(p[2:4]) or p[2:4].startswith(n2)):
                    continue
                for n3, (m3, t3) in sorted(db.tree(t2).items()):
                    if m3 == _DIR and n3.startswith(p):
                        yield n3.decode(), t3

    def find(self, prefix: str) -> Entry:
        """The entry whose key starts with ``prefix`` (with or without ``k1-sha256:``).

        Raises:
            EntryNotFoundError: no key starts so.
            AmbiguousKeyError: several do (``.candidates`` lists them).
        """
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

    def attributes(self, key: str) -> dict[str, dict[str, Any]]:
        """``{attribute: {"file", "codec", "size", "id"}}`` of the entry with this key (prefix)."""
        entry = self.find(key)
        listing = self._listing(entry.key, ref_for_version(entry.version), None)
        out = {}
        for name, sha in sorted(listing.items()):
            if name == _COMPONENT:
                continue
            attribute, _, ext = name.decode().rpartition(".")
            out[attribute] = {"file": name.decode(), "codec": codec_by_ext(ext).name,
                              "size": self._blob_size(sha), "id": sha.decode()}
        return out

    def read(self, key: str, attribute: str, raw: bool = False) -> Any:
        """An attribute of the entry with this key (prefix): decoded, or the file's bytes.

        Raises:
            EntryNotFoundError: no such entry or attribute.
            UntrustedDataError: a pickle, without ``allow_pickle=True`` (not for ``raw``).
        """
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
            out["parameters"] = {k: (_show(x), _show(y)) for k, (x, y) in params.items()}
        return out

    def entry_dates(self, version: Any) -> dict[str, float]:
        """When each entry of a version last changed: ``{hex digest: unix time}``."""
        db = self._db()
        ref = ref_for_version(version)
        remaining = {hexkey for hexkey, _tree in self._walk(ref)}
        dates: dict[str, float] = {}
        for sha, info in self._commits(ref):
            if not remaining:
                break
            parents = info["parents"]
            before = db.commit_tree(parents[0]) if parents else None
            for hexkey in _changed_entries(db, db.commit_tree(sha), before):
                if hexkey in remaining:
                    dates[hexkey] = info["time"]
                    remaining.discard(hexkey)
        return dates

    # --- maintenance ---------------------------------------------------------------------------

    def verify(self, progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Read every object reachable from the store's refs, check its id, decode every
        attribute; return a description of each problem found (empty: all is well)."""
        problems: list[str] = []
        refs = self._version_refs()
        for done, ref in enumerate(refs):
            version = version_of_ref(ref)
            try:
                for hexkey, tree in list(self._walk(ref)):
                    try:
                        entry = self._entry(tree)
                        for attribute in entry.attributes:
                            found = self._get(entry.key, attribute, version)
                            if found is not None:
                                if found[0].trusted:
                                    decode_payload(found[0], found[1])
                                else:
                                    read_all(found[1])  # a pickle: its bytes are checked
                    except GitStoreError as exc:
                        problems.append(f"version {version}, entry {hexkey[:12]}: {exc}")
                for _commit in self._commits(ref):
                    pass  # reading each commit checks it
            except GitStoreError as exc:
                problems.append(f"version {version}: {exc}")
            if progress is not None:
                progress(done + 1, len(refs))
        return problems

    def stats(self) -> dict[str, Any]:
        """Entries, versions, bytes on disk, loose and packed objects (a snapshot: writers may
        merge packs meanwhile)."""
        objects = Path(self.gitdir) / "objects"
        loose = [f for d in objects.glob("[0-9a-f][0-9a-f]") for f in d.iterdir()]
        packs, packed, total = 0, 0, 0
        for path in objects.rglob("*"):
            try:
                if not path.is_file():
                    continue
                total += path.stat().st_size
                if path.name.startswith("pack-") and path.suffix == ".pack":
                    with open(path, "rb") as f:
                        packed += int.from_bytes(f.read(12)[8:12], "big")
                    packs += 1
            except FileNotFoundError:
                continue  # merged away while we looked
        versions = self.versions()
        return {
            "path": str(self.path),
            "versions": len(versions),
            "entries": sum(1 for ref in self._version_refs() for _ in self._walk(ref)),
            "bytes": total,
            "loose_objects": len(loose),
            "packed_objects": packed,
            "packs": packs,
        }

    def prune(self, versions: list[str] | None = None, older_than: float | None = None,
              keep_last: int | None = None, dry_run: bool = False) -> list[str]:
        """Delete whole versions: those named, those whose last store is older than
        ``older_than`` seconds, or all but the ``keep_last`` most recently stored ones.
        Returns the versions deleted (or that would be, with ``dry_run``). Their objects go
        at the next :meth:`gc`.
        """
        tips = {}
        for ref in self._version_refs():
            commits = self._commits(ref)
            first = next(commits, None)
            tips[version_of_ref(ref)] = first[1]["time"] if first else 0.0
        doomed: set[str] = set()
        if versions:
            unknown = [v for v in versions if v not in tips]
            if unknown:
                raise EntryNotFoundError(f"no such version: {', '.join(unknown)}")
            doomed.update(versions)
        if older_than is not None:
            limit = time.time() - older_than
            doomed.update(v for v, t in tips.items() if t < limit)
        if keep_last is not None:
            newest = sorted(tips, key=lambda v: tips[v], reverse=True)
            doomed.update(newest[keep_last:])
        if not dry_run:
            for version in sorted(doomed):
                ref = ref_for_version(version)
                with self._refs.locked(ref):
                    self._refs.compare_and_swap(ref, self._refs.read(ref), None)
        return sorted(doomed)

    # --- code revisions --------------------------------------------------------------------------

    def checkout(self, rev: str, dest: str | os.PathLike[str] | None = None,
                 code_repo: str | os.PathLike[str] = ".",
                 progress: Callable[[int, int], None] | None = None) -> list[Entry]:
        """The results of a code revision, optionally written out as plain files.

        ``rev`` is a stored version name, or anything git resolves in ``code_repo`` (``HEAD~2``,
        a tag, a branch, an abbreviated commit id): its results are those of the version equal
        to that commit id (what :func:`gitstore.source_version` gives components defined in
        that commit's code). With ``dest``, each entry is written to
        ``dest/<type>/<key[:12]>/component.yaml`` and ``<attribute>.<ext>`` (files that numpy
        or json open without gitstore). The code's working tree is never touched.

        Raises:
            EntryNotFoundError: ``rev`` resolves to nothing, or has no results here.
            CorruptEntryError: an entry holds a path that would escape ``dest``.
        """
        version = rev if rev in self.versions() else resolve_revision(code_repo, rev)
        ref = ref_for_version(version)
        found = list(self._walk(ref))
        if not found:
            raise EntryNotFoundError(f"no results for {rev} (version {version})")
        entries = []
        target = Path(dest).absolute() if dest is not None else None
        for done, (hexkey, tree) in enumerate(found):
            entry = self._entry(tree)
            entries.append(entry)
            if target is not None:
                self._write_entry(entry, tree, hexkey, target)
            if progress is not None:
                progress(done + 1, len(found))
        return entries

    def _write_entry(self, entry: Entry, tree: bytes, hexkey: str, target: Path) -> None:
        folder = target / _safe_part(entry.type, hexkey) / hexkey[:12]
        files = {}
        for name, (mode, sha) in self._db().tree(tree).items():
            text = name.decode("utf-8", "replace")
            if mode == _DIR or not _SAFE_FILE.match(text) or text in (".", ".."):
                raise CorruptEntryError(f"entry {hexkey[:12]} holds an unsafe path {text!r}; "
                                        "refusing to write it", entry.key)
            files[text] = sha
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.resolve().is_relative_to(target.resolve()):
            raise CorruptEntryError(f"entry {hexkey[:12]} would be written outside {target}",
                                    entry.key)
        for text, sha in files.items():
            tmp = folder / f".{text}.tmp"
            blob = self._open_blob(sha)
            with open(tmp, "wb") as f:
                if isinstance(blob, bytes):
                    f.write(blob)
                else:  # a large blob: copied in chunks, checked before it is renamed in
                    with blob:
                        chunk = bytearray(4 << 20)
                        while got := blob.readinto(chunk):
                            f.write(memoryview(chunk)[:got])
                        blob.finish()
            os.replace(tmp, folder / text)

    def explain(self, component: Any, attribute: str | None = None) -> Explanation:
        """Why ``component`` is (or is not) served from the store.

        On a hit: where it is. On a miss: the nearest stored entries of the same type, and for
        each what differs: the version, every parameter path with both values, and each input
        (explained recursively).
        """
        key = key_of(component)
        version = get_version(component)
        ref = ref_for_version(version)
        names = self._attribute_names(key, ref, None)
        attrs = sorted(n.decode().rsplit(".", 1)[0] for n in names)
        if attrs and (attribute is None or attribute in attrs):
            return Explanation(key, True, version, attrs, [])
        wanted_type = full_type(component)
        params = ParameterSet(get_parameters(component) or {})
        is_list, inputs = get_inputs(component)
        input_keys = [key_of(c) for c in inputs]
        candidates = []
        for entry in self.entries(type=wanted_type):
            if attribute is not None and attribute not in entry.attributes:
                continue
            stored_inputs = entry.component.get("input")
            stored_inputs = stored_inputs if isinstance(stored_inputs, list) else \
                ([stored_inputs] if stored_inputs else [])
            differences: list[str] = []
            if str(entry.version) != str(version):
                differences.append(f"version: stored {entry.version!r}, yours {version!r}")
            for path, (mine, theirs) in params.diff(entry.component.get("parameters") or {}
                                                    ).items():
                differences.append(f"parameter {path}: stored {_show(theirs)!r}, "
                                   f"yours {_show(mine)!r}")
            for i, (mine_key, theirs_key) in enumerate(
                    itertools.zip_longest(input_keys, stored_inputs)):
                if mine_key != theirs_key:
                    line = f"input {i}: stored {str(theirs_key)[:22]}, yours {str(mine_key)[:22]}"
                    if i < len(inputs) and not isinstance(inputs[i], PinnedKey):
                        sub = self.explain(inputs[i])
                        line += "\n    " + "\n    ".join(str(sub).splitlines())
                    differences.append(line)
            candidates.append((len(differences), entry.key, differences))
        candidates.sort(key=lambda c: (c[0], c[1]))
        nearest = [(k, d) for _n, k, d in candidates[:3]]
        return Explanation(key, False, version, [], nearest, wanted_type)

    def _clear_stale_git_locks(self) -> None:
        root = Path(self.gitdir)
        candidates = [*root.glob("*.lock"), *(root / "objects").glob("info/**/*.lock"),
                      *(root / "objects" / "pack").glob("*.lock")]
        for path in candidates:
            try:
                age = time.time() - path.stat().st_mtime
                if age < STALE_LOCK_SECONDS:
                    time.sleep(STALE_LOCK_SECONDS - age)
                    if path.stat().st_mtime > time.time() - STALE_LOCK_SECONDS:
                        continue  # renewed: a live git process holds it
                path.unlink()
            except FileNotFoundError:
                pass

    # --- remotes -------------------------------------------------------------------------------

    def remote_add(self, name: str, url: str) -> None:
        """Remember a remote (a git URL or path) under ``name``, in the store's git config.

        Raises:
            StoreError: the name is not ``[A-Za-z0-9._-]+`` or is taken.
        """
        if not _REMOTE_NAME.match(name):
            raise StoreError(f"remote names are letters, digits, '.', '_' and '-': {name!r}")
        if name in self.remotes():
            raise StoreError(f"remote {name!r} exists already")
        config = self._db().repo.get_config()
        config.set((b"remote", name.encode()), b"url", url.encode())
        config.write_to_path()

    def remotes(self) -> dict[str, str]:
        """``{name: url}`` of the remotes added with :meth:`remote_add`."""
        from dulwich.repo import Repo

        with Repo(self.gitdir) as repo:  # fresh: another process may have changed it
            config = repo.get_config()
            out = {}
            for section in config.sections():
                if section[0] == b"remote" and len(section) > 1:
                    try:
                        out[section[1].decode()] = config.get(section, b"url").decode()
                    except KeyError:
                        continue
            return out

    def remote_remove(self, name: str) -> None:
        """Forget a remote and its remote-tracking refs.

        Raises:
            StoreError: no such remote.
        """
        if name not in self.remotes():
            raise StoreError(f"no remote {name!r}")
        repo = self._db().repo
        config = repo.get_config()
        del config[(b"remote", name.encode())]
        config.write_to_path()
        for ref in self._refs.list(f"{NAMESPACE}/remotes/{name}/"):
            with self._refs.locked(ref):
                self._refs.compare_and_swap(ref, self._refs.read(ref), None)

    def _url(self, remote: str) -> tuple[str, str]:
        """(url, tracking name) of a remote name, URL or path."""
        known = self.remotes()
        if remote in known:
            return known[remote], remote
        return remote, "url-" + hashlib.sha1(remote.encode()).hexdigest()[:12]

    def fetch(self, remote: str, versions: list[str] | None = None,
              progress: Callable[[bytes], None] | None = None) -> dict[str, str]:
        """Fetch the remote's results (all versions, or these) into remote-tracking refs
        ``refs/gitstore/remotes/<remote>/versions/<version>``; return ``{version: commit id}``.

        Raises:
            RemoteError: the remote cannot be reached or read.
        """
        url, tracking = self._url(remote)
        wanted_refs = {ref_for_version(v) for v in versions} if versions else None

        def wanted(ref: str) -> bool:
            if wanted_refs is not None:
                return ref in wanted_refs
            return ref.startswith(VERSIONS)

        remote_dir = local_gitdir(url)
        if remote_dir is not None and os.path.realpath(remote_dir) != os.path.realpath(
                self.gitdir):
            # on this machine: link its packs, no pack protocol (see link_objects)
            with no_merges(remote_dir):
                found = {r: s for r, s in RefFiles(remote_dir).list(VERSIONS).items()
                         if wanted(r)}
                link_objects(remote_dir, self.gitdir)
        else:
            found = fetch_refs(self._db().repo, url, wanted, progress)
        if versions:
            missing = sorted(set(versions) - {version_of_ref(r) for r in found})
            if missing:
                raise EntryNotFoundError(f"remote {remote} has no version {', '.join(missing)}")
        for ref, sha in found.items():
            local = f"{NAMESPACE}/remotes/{tracking}/versions/{ref[len(VERSIONS):]}"
            with self._refs.locked(local):
                self._refs.compare_and_swap(local, self._refs.read(local), sha)
        return {version_of_ref(ref): sha.decode() for ref, sha in found.items()}

    def pull(self, remote: str, version: str | None = None, prefer: str | None = None,
             progress: Callable[[bytes], None] | None = None) -> dict[str, str]:
        """Fetch, then merge each fetched version into the local one.

        ``version`` fetches only that version's ref. Returns ``{version: what happened}``
        (``created``, ``up to date``, ``fast-forward``, ``merged``).

        Raises:
            RemoteError: the remote cannot be reached or read.
            MergeConflictError: the same key and attribute hold different bytes on the two
                sides (nothing is changed) and ``prefer`` (``"ours"``/``"theirs"``) is None.
        """
        fetched = self.fetch(remote, [version] if version else None, progress)
        return {v: self._merge_in(ref_for_version(v), sha.encode(), remote, prefer)
                for v, sha in sorted(fetched.items())}

    def push(self, remote: str, versions: list[str] | None = None, prefer: str | None = None,
             attempts: int = 20, progress: Callable[[bytes], None] | None = None
             ) -> dict[str, str]:
        """Push local versions (all, or these) to the remote's same refs.

        When the remote moved on (another machine pushed), its history is fetched and merged
        (as :meth:`pull` does) and the push retried, up to ``attempts`` times. Returns
        ``{version: commit id now on the remote}``.

        Raises:
            RemoteError: unreachable, or still refused after ``attempts`` tries.
            MergeConflictError: see :meth:`pull`.
        """
        url, _tracking = self._url(remote)
        repo = self._db().repo
        refs = [ref_for_version(v) for v in versions] if versions else self._version_refs()
        for attempt in range(attempts):
            local = {ref: sha for ref in refs if (sha := self._refs.read(ref)) is not None}
            behind: set[str] = set()

            def decide(remote_refs: dict[str, bytes]) -> dict[str, bytes]:
                send = {}
                for ref, sha in local.items():
                    theirs = remote_refs.get(ref)
                    if theirs == sha:
                        continue
                    if theirs is None or (theirs in repo.object_store and
                                          is_ancestor(repo, theirs, sha)):
                        send[ref] = sha
                    else:
                        behind.add(ref)
                return send

            remote_dir = local_gitdir(url)
            if remote_dir is not None:
                status = self._push_local(remote_dir, local, repo)
            else:
                status = push_refs(repo, url, decide, progress,
                                   generate_pack_data(self._db()))
            behind |= {ref for ref, error in status.items() if error}
            if not behind:
                return {version_of_ref(r): s.decode() for r, s in local.items()}
            self.pull(remote, None, prefer) if len(behind) > 1 else \
                self.pull(remote, version_of_ref(next(iter(behind))), prefer)
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # let the other writer finish
        raise RemoteError(f"push to {remote} kept being refused ({attempts} attempts)", url)

    def _push_local(self, remote_dir: str, local: dict[str, bytes], repo: Any
                    ) -> dict[str, str | None]:
        """Push to a repository on this machine: link our objects in, then move each ref
        under that repository's own writer locks, fast-forwards only."""
        with no_merges(self.gitdir):
            link_objects(self.gitdir, remote_dir)
        theirs = RefFiles(remote_dir)
        status: dict[str, str | None] = {}
        try:
            for ref, sha in local.items():
                with theirs.locked(ref):
                    current = theirs.read(ref)
                    if current == sha:
                        continue
                    if current is None or (current in repo.object_store and
                                           is_ancestor(repo, current, sha)):
                        moved = theirs.compare_and_swap(ref, current, sha)
                        status[ref] = None if moved else "the remote ref moved"
                    else:
                        status[ref] = "non-fast-forward"
        finally:
            theirs.close()
        return status

    def _merge_in(self, ref: str, theirs: bytes, remote: str, prefer: str | None) -> str:
        """Merge commit ``theirs`` into the local ``ref`` (fast-forward when possible)."""
        db = self._db()
        repo = db.repo
        with self._refs.locked(ref):
            ours = self._refs.read(ref)
            if ours is None:
                self._refs.compare_and_swap(ref, None, theirs)
                return "created"
            if ours == theirs or is_ancestor(repo, theirs, ours):
                return "up to date"
            if is_ancestor(repo, ours, theirs):
                self._refs.compare_and_swap(ref, ours, theirs)
                return "fast-forward"
            base = merge_base(repo, ours, theirs)
            base_tree = db.commit_tree(base) if base is not None else None
            objects: list[Obj] = []
            tree, conflicts = merge_trees(db, base_tree, db.commit_tree(ours),
                                          db.commit_tree(theirs), objects, prefer)
            if conflicts:
                raise MergeConflictError(sorted({_conflict_name(p) for p in conflicts}))
            if tree is None:
                tree = _EMPTY_TREE
                objects.append((2, b""))
            version = version_of_ref(ref)
            message = (f"merge {remote} into version {version}\n\n"
                       f"Gitstore-Version: {version}\n")
            raw = self._commit_bytes(tree, ours, message, [theirs])
            commit_id = object_id(COMMIT, raw)
            objects.append((COMMIT, raw))
            db.write_pack(objects)
            db.remember_commit(commit_id, tree)
            if not self._refs.compare_and_swap(ref, ours, commit_id):
                raise ConcurrencyError(f"{ref} moved during a merge")
        return "merged"

    def gc(self) -> None:
        """Repack everything into one pack and drop unreachable objects (runs ``git gc``).

        git streams objects from disk, so memory stays small however large the store is;
        gitstore's own pack merging keeps the pack count bounded between ``gc`` runs.

        Raises:
            StoreError: git is not installed or failed.
        """
        git = shutil.which("git")
        if git is None:
            raise StoreError("gc needs the git command-line tool")
        with self._refs.locked("gitstore-gc"):  # one gitstore gc at a time
            # a gc killed midway leaves git's lock files (packed-refs.lock, commit-graph.lock,
            # ...): with no gitstore gc running (we hold its lock), one that stays for a few
            # seconds is stale, as git holds them for milliseconds; and gc.pid can name a
            # zombie no init reaps, hence --force
            self._clear_stale_git_locks()
            # gc.packRefs=false: packing would delete loose refs that writers rewrite in place
            # (see RefFiles.compare_and_swap) while they run; one ref per version needs no
            # packing anyway
            result = subprocess.run([git, "--git-dir", self.gitdir, "-c", "gc.packRefs=false",
                                     "gc", "--quiet", "--force"],
                                    capture_output=True, text=True)
        if result.returncode != 0:
            raise StoreError(f"git gc failed: {result.stderr.strip()}")


def _changed_entries(db: ObjectDB, tree: bytes, before: bytes | None) -> Iterator[str]:
    """Hex digests of entries that differ between two root trees (walking only what differs)."""
    def walk(a: bytes | None, b: bytes | None, depth: int) -> Iterator[str]:
        ta = db.tree(a) if a is not None else {}
        tb = db.tree(b) if b is not None else {}
        for name in ta.keys() | tb.keys():
            ea, eb = ta.get(name), tb.get(name)
            if ea == eb:
                continue
            if depth == 2:
                yield name.decode()
            else:
                yield from walk(ea[1] if ea else None, eb[1] if eb else None, depth + 1)
    return walk(tree, before, 0)


_SAFE_FILE = re.compile(r"[^/\\\x00]{1,255}\Z")


def _safe_part(type_name: str, fallback: str) -> str:
    """A type name as one safe directory name (a hostile name cannot climb out)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", type_name).lstrip(".")
    return cleaned[:200] or fallback[:12]


def resolve_revision(code_repo: str | os.PathLike[str], rev: str) -> str:
    """The commit id ``rev`` names in a code repository (branches, tags, ``~``/``^``,
    abbreviated ids).

    Raises:
        EntryNotFoundError: not a repository, or ``rev`` names no commit.
    """
    from dulwich.objects import Commit as GitCommit
    from dulwich.objects import Tag
    from dulwich.objectspec import parse_object

    with open_code_repo(code_repo) as repo:
        try:
            obj = parse_object(repo, rev.encode())
        except (KeyError, ValueError):
            prefix = rev.lower().encode()
            matches = [sha for sha in repo.object_store
                       if len(prefix) >= 4 and sha.startswith(prefix) and
                       isinstance(repo[sha], GitCommit)] if not rev.strip("0123456789abcdef") \
                else []
            if len(matches) != 1:
                raise EntryNotFoundError(f"{rev!r} names no commit in {code_repo}") from None
            obj = repo[matches[0]]
        while isinstance(obj, Tag):
            obj = repo[obj.object[1]]
        if not isinstance(obj, GitCommit):
            raise EntryNotFoundError(f"{rev!r} is not a commit")
        return str(obj.id.decode())


def _conflict_name(path: str) -> str:
    """``ab/cd/abcd…/rates.json`` → ``k1-sha256:abcd… rates``."""
    parts = path.split("/")
    if len(parts) >= 3:
        name = f"{KEY_SCHEME}:{parts[2]}"
        if len(parts) > 3:
            name += " " + parts[3].rsplit(".", 1)[0]
        return name
    return path


def _show(value: Any) -> Any:
    return None if value is MISSING else value


@contextmanager
def _disk_errors() -> Iterator[None]:
    """A full disk becomes DiskFullError (the writers have already removed their temporaries)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(f"no space left to store: {exc.strerror}; nothing was "
                                "written (the store is as it was)") from None
        raise


def _close_all(repos: list[Any], lock: threading.Lock) -> None:
    with lock:
        for repo in repos:
            try:
                repo.close()
            except BufferError:  # a caller still holds a view into a pack's mmap
                pass
        repos.clear()
