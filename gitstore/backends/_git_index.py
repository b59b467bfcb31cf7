"""A derived listing index: what ``ls``, ``entries()``, ``stats`` and ``table()`` need of each
entry, kept in ``<gitdir>/gitstore/listing.sqlite`` so that listing 100k entries reads one file
instead of ~170k trees and 100k ``component.yaml`` blobs.

Never the source of truth, like git's commit-graph: each version ref's row records the commit it
was indexed at; a listing first reads the ref, and when it has moved, brings the rows up to date
by diffing the indexed root tree against the new one (only the subtrees that differ are read) and
dating what changed from the commits in between; a rewritten history, a damaged part or an index
that is missing, unreadable, of another schema or holding anything ill-typed is rebuilt from the
refs (or, where it cannot be written, bypassed: the listing is computed from the trees).

What it holds is computed here from objects read through :class:`ObjectDB` (each checked against
its id): fetched objects land in remote-tracking refs that are not indexed, and entry data is
keyed by the entry's tree id, so a fetch cannot make it say anything the trees do not. Entries
whose description cannot be read, or whose attribute sizes are unknown (a blob not fetched yet),
are not kept: they are computed at each listing. Concurrent listers serialise on SQLite's write
lock (``BEGIN IMMEDIATE``); updates are deterministic functions of commit ids, so the last one in
writes what the first would have. Set ``GITSTORE_LISTING_INDEX=0`` to list without it.
"""

from __future__ import annotations

import gc
import math
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import CorruptEntryError
from .base import Entry

if TYPE_CHECKING:
    from ._git_core import GitCore

try:
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency
    import json

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, allow_nan=False).encode()

    _loads = json.loads  # type: ignore[assignment]

__all__ = ["ListedEntry", "ListingIndex", "index_enabled"]

SCHEMA = 3
_FILE = "listing.sqlite"
_INT64 = 1 << 63
_HEX104 = re.compile("[0-9a-f]{104}").fullmatch  # an entry's digest and its tree id


class ListedEntry:
    """One entry as a listing gives it: its key, type, version, attributes, their sizes
    (bytes; None where unknown), when it last changed (unix time; None if not asked for or
    unknown), its tree id (b"" for a damaged part) and ``problem`` (None, or why it cannot be
    read). ``entry`` (with the whole description) is decoded when first asked for."""

    __slots__ = ("_entry", "_load", "attributes", "date", "key", "problem", "size", "sizes",
                 "tree", "type", "version")

    def __init__(self, entry: Entry | None, sizes: dict[str, int | None], date: float | None,
                 tree: bytes, fields: tuple[str, str, str, tuple[str, ...]] | None = None,
                 load: Callable[[], Entry] | None = None) -> None:
        if entry is not None:
            fields = (entry.key, entry.type if entry.problem is None else "", entry.version,
                      entry.attributes)
        assert fields is not None
        self.key, self.type, self.version, self.attributes = fields
        self.problem = entry.problem if entry is not None else None
        self._entry, self._load = entry, load
        self.sizes, self.date, self.tree = sizes, date, tree
        self.size = sum(s for s in sizes.values() if s is not None)

    @property
    def entry(self) -> Entry:
        if self._entry is None:
            assert self._load is not None
            self._entry = self._load()
            self.problem = self._entry.problem
        return self._entry

    def __repr__(self) -> str:
        return f"ListedEntry({self.key!r}, {self.type!r}, {self.version!r})"


def index_enabled() -> bool:
    return os.environ.get("GITSTORE_LISTING_INDEX", "1").strip().lower() not in (
        "0", "off", "no", "false")


def _exact_json(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` comes back from JSON exactly (types included)."""
    if depth > 200:
        return False
    t = type(value)
    if value is None or t is bool or t is str:
        return True
    if t is int:
        return bool(-_INT64 <= value < _INT64)
    if t is float:
        return math.isfinite(value)
    if t is list:
        return all(_exact_json(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _exact_json(v, depth + 1) for k, v in value.items())
    return False


def encode_row(entry: Entry, sizes: dict[str, int | None], yaml_text: bytes
               ) -> tuple[str, str, str, str, bytes] | None:
    """What the index keeps of a readable entry: key, type, version, attributes with sizes
    (JSON) and the description (JSON when that is exact, else its YAML text); None: keep
    nothing, compute it at each listing."""
    if entry.problem is not None or any(s is None for s in sizes.values()):
        return None
    try:
        described = b"j" + _dumps(entry.component) if _exact_json(entry.component) else \
            b"y" + yaml_text
        attrs = _dumps([[a, sizes[a]] for a in entry.attributes]).decode()
    except (TypeError, ValueError, KeyError):  # a lone surrogate in a string: not kept
        return None
    return entry.key, entry.type, entry.version, attrs, described


def decode_fields(hexkey: str, key: Any, type_: Any, version: Any, attrs: Any
                  ) -> tuple[tuple[str, str, str, tuple[str, ...]], dict[str, int | None]] | None:
    """An index row's listing fields, checked; None if they are anything but what
    :func:`encode_row` writes for this key (then the entry is computed from its tree)."""
    if not (isinstance(key, str) and key.endswith(":" + hexkey) and isinstance(type_, str)
            and isinstance(version, str) and isinstance(attrs, str)):
        return None
    sizes = _attrs(attrs)
    if sizes is None:
        return None
    return (key, type_, version, tuple(sizes)), dict(sizes)


_SEEN: dict[str, dict[str, int | None] | None] = {}


def _attrs(text: str) -> dict[str, int | None] | None:
    """``{attribute: size}`` from an index row's JSON, checked (remembered by text: a sweep's
    entries often share it)."""
    if text in _SEEN:
        return _SEEN[text]
    sizes: dict[str, int | None] | None = {}
    try:
        pairs = _loads(text)
    except ValueError:
        pairs = None
    if not isinstance(pairs, list):
        sizes = None
    else:
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                    and type(pair[1]) is int and pair[1] >= 0):
                sizes = None
                break
            sizes[pair[0]] = pair[1]  # type: ignore[index]
    if len(_SEEN) > 100_000:
        _SEEN.clear()
    _SEEN[text] = sizes
    return sizes


def decode_description(raw: Any, key: str) -> dict[str, Any] | None:
    """The description an index row keeps, checked; None if it is not what
    :func:`encode_row` writes for this key."""
    if not isinstance(raw, bytes) or len(raw) > 64 << 20:
        return None
    try:
        if raw[:1] == b"j":
            component = _loads(raw[1:])
        elif raw[:1] == b"y":
            from .. import _yaml

            component = _yaml.load(raw[1:])
        else:
            return None
    except Exception:  # noqa: BLE001 - not what we wrote: computed from the tree instead
        return None
    if not isinstance(component, dict) or component.get("key") != key or \
            not isinstance(component.get("parameters") or {}, dict):
        return None
    return component


class ListingIndex:
    """The index file of one store (see the module's docstring)."""

    def __init__(self, core: GitCore) -> None:
        self.core = core
        self.folder = os.path.join(core.gitdir, "gitstore")
        self.path = os.path.join(self.folder, _FILE)

    # --- the file --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        """The open index, created (or re-created) as needed; None when it cannot be used (a
        read-only store, a link where the file should be)."""
        for attempt in range(2):
            if os.path.islink(self.folder) or os.path.islink(self.path):
                return None  # never write through a link planted in the store
            try:
                os.makedirs(self.folder, exist_ok=True)
                fresh = not os.path.exists(self.path)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
                try:
                    if fresh and self.core._shared_perm is not None:
                        self.core._shared_perm(self.path)
                    conn.execute("PRAGMA journal_mode=DELETE")
                    conn.execute("PRAGMA synchronous=OFF")  # derived data: rebuilt if torn
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version != SCHEMA:
                        self._create(conn)
                    conn.execute("SELECT ref, tip, root FROM refs LIMIT 1").fetchall()
                    return conn
                except BaseException:
                    conn.close()
                    raise
            except sqlite3.OperationalError:
                return None  # locked too long, read-only, out of space: list from the trees
            except sqlite3.DatabaseError:  # not a database, or a damaged one: made anew
                if attempt == 0 and not self._remove():
                    return None
            except OSError:
                return None
        return None

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                conn.execute(f'DROP TABLE IF EXISTS "{name.replace(chr(34), "")}"')
            conn.execute("CREATE TABLE refs(ref TEXT PRIMARY KEY, tip TEXT NOT NULL, "
                         "root TEXT NOT NULL) WITHOUT ROWID")
            # what a listing shows, in the entry's row (one range scan, no join); the
            # descriptions apart, by tree id: a listing reads the small rows only
            conn.execute("CREATE TABLE entries(ref TEXT NOT NULL, hexkey TEXT NOT NULL, "
                         "tree TEXT NOT NULL, date REAL, key TEXT, type TEXT, version TEXT, "
                         "attrs TEXT, PRIMARY KEY(ref, hexkey)) WITHOUT ROWID")
            conn.execute("CREATE TABLE descriptions(tree TEXT PRIMARY KEY, key TEXT, "
                         "type TEXT, version TEXT, attrs TEXT, data BLOB)")
            conn.execute(f"PRAGMA user_version={SCHEMA}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _remove(self) -> bool:
        """Delete a damaged index (and its journal); False if that is not possible."""
        try:
            for suffix in ("", "-journal", "-wal", "-shm"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
            return True
        except OSError:
            return False

    # --- listing ---------------------------------------------------------------------------

    def listed(self, ref: str, dates: bool) -> list[ListedEntry] | None:
        """Every entry of ``ref`` from the index, brought up to date first; None when the
        index cannot be used for it (the caller lists from the trees)."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            try:
                if not self._update(conn, ref):
                    return None
                rows = conn.execute(
                    "SELECT hexkey, tree, date, key, type, version, attrs FROM entries "
                    "WHERE ref = ? ORDER BY hexkey", (ref,)).fetchall()
                if not all(type(h) is str and type(t) is str and _HEX104(h + t)
                           for h, t, *_rest in rows):
                    # not what we write: rebuilt at the next listing, this one from the trees
                    conn.execute("DELETE FROM refs WHERE ref = ?", (ref,))
                    return None
            except sqlite3.OperationalError:
                return None  # locked too long, read-only (another user's): from the trees
            except sqlite3.DatabaseError:
                conn.close()
                self._remove()  # damaged or hostile: the next listing rebuilds it
                return None
        finally:
            conn.close()
        paused = gc.isenabled()
        gc.disable()  # 100k rows of small objects: no collection pass in between
        try:
            return list(self._rows(ref, rows, dates))
        finally:
            if paused:
                gc.enable()

    def count(self, ref: str) -> int | None:
        """How many entries ``ref`` has (None: the index cannot say)."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            if not self._update(conn, ref):
                return None
            found = conn.execute("SELECT count(*) FROM entries WHERE ref = ?",
                                 (ref,)).fetchone()
            return int(found[0])
        except sqlite3.OperationalError:
            return None
        except sqlite3.DatabaseError:
            conn.close()
            self._remove()
            return None
        finally:
            conn.close()

    def _rows(self, ref: str, rows: list[Any], dates: bool) -> Iterator[ListedEntry]:
        from ._git_core import _HeaderSizes

        sizes: _HeaderSizes | None = None
        try:
            for hexkey, tree, date, key, type_, version, attrs in rows:
                when = float(date) if dates and type(date) in (int, float) and \
                    0 <= date < 1e11 else None  # NaN, or a hostile date: none
                fields = decode_fields(hexkey, key, type_, version, attrs)
                if fields is not None:
                    yield ListedEntry(None, fields[1], when, tree.encode(), fields[0],
                                      self._loader(ref, hexkey, tree, fields[0][0]))
                    continue
                if sizes is None:
                    sizes = _HeaderSizes(self.core)
                entry, found, _raw = self.core._entry_row(tree.encode(), hexkey.encode(), ref,
                                                          sizes)
                yield ListedEntry(entry, found, when, tree.encode())
        finally:
            if sizes is not None:
                sizes.close()

    def _loader(self, ref: str, hexkey: str, tree: str, key: str) -> Callable[[], Entry]:
        def load() -> Entry:
            return self._load(ref, hexkey, tree, key)
        return load

    def _load(self, ref: str, hexkey: str, tree: str, key: str) -> Entry:
        """The whole entry of an index row: its description from the index, or (if that is
        gone or not what we wrote) from its tree."""
        raw = None
        conn = self._connect()
        if conn is not None:
            try:
                found = conn.execute("SELECT data, attrs FROM descriptions WHERE tree = ?",
                                     (tree,)).fetchone()
                raw = found if found is not None else None
            except sqlite3.DatabaseError:
                raw = None
            finally:
                conn.close()
        if raw is not None:
            component = decode_description(raw[0], key)
            fields = decode_fields(hexkey, key, "", "", raw[1])
            if component is not None and fields is not None:
                return Entry(key, fields[0][3], component)
        from ._git_core import _HeaderSizes

        sizes = _HeaderSizes(self.core)
        try:
            return self.core._listed_entry(tree.encode(), hexkey.encode(), ref, sizes)
        finally:
            sizes.close()

    def descriptions(self, rows: list[ListedEntry]) -> None:
        """Decode the ``entry`` of many rows at once (one query, not one per row)."""
        todo = {r.tree.decode(): r for r in rows if r._entry is None}
        if not todo:
            return
        conn = self._connect()
        if conn is None:
            return
        try:
            if len(todo) > 500:
                found = conn.execute("SELECT tree, data FROM descriptions").fetchall()
            else:
                found = []
                for tree in todo:
                    one = conn.execute("SELECT data FROM descriptions WHERE tree = ?",
                                       (tree,)).fetchone()
                    if one is not None:
                        found.append((tree, one[0]))
        except sqlite3.DatabaseError:
            return
        finally:
            conn.close()
        for tree, data in found:
            row = todo.get(tree)
            if row is None:
                continue
            component = decode_description(data, row.key)
            if component is not None:
                row._entry = Entry(row.key, row.attributes, component)

    # --- updating --------------------------------------------------------------------------

    def _update(self, conn: sqlite3.Connection, ref: str) -> bool:
        """Bring ``ref``'s rows up to its tip; False when that cannot be done (a damaged part:
        the caller lists from the trees, which names it)."""
        core = self.core
        tip = core._refs.read(ref)
        found = conn.execute("SELECT tip, root FROM refs WHERE ref = ?", (ref,)).fetchone()
        if tip is not None and found is not None and found[0] == tip.decode():
            return True
        conn.execute("BEGIN IMMEDIATE")
        try:
            ok = self._update_locked(conn, ref)
            conn.execute("COMMIT")
            return ok
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _update_locked(self, conn: sqlite3.Connection, ref: str) -> bool:
        core = self.core
        db = core._db()
        tip = core._refs.read(ref)  # again, under the lock: another lister may have done it
        found = conn.execute("SELECT tip, root FROM refs WHERE ref = ?", (ref,)).fetchone()
        if tip is None:
            conn.execute("DELETE FROM entries WHERE ref = ?", (ref,))
            conn.execute("DELETE FROM refs WHERE ref = ?", (ref,))
            return True
        if found is not None and found[0] == tip.decode():
            return True
        try:
            root = db.commit_tree(tip)
        except CorruptEntryError:
            return False
        changed: dict[str, bytes | None] | None = None
        dated: dict[str, float] = {}
        if found is not None and isinstance(found[0], str) and isinstance(found[1], str):
            changed, dated = self._since(ref, tip, found[0].encode(), found[1].encode(), root)
        if changed is None:  # first time, or a rewritten history: from the trees
            entries: dict[str, bytes] = {}
            for hexkey, entry_tree, problem in core._scan(ref):
                if problem is not None:
                    return False
                entries[hexkey] = entry_tree
            dated = core._dates_of(ref, set(entries))
            conn.execute("DELETE FROM entries WHERE ref = ?", (ref,))
            changed = dict(entries)
        from ._git_core import _HeaderSizes

        sizes = _HeaderSizes(core)
        try:
            known: dict[str, tuple[Any, ...]] = {
                row[0]: row[1:] for row in conn.execute(
                    "SELECT tree, key, type, version, attrs FROM descriptions")} \
                if len(changed) > 1000 else {}
            for hexkey, tree in changed.items():
                if tree is None:
                    conn.execute("DELETE FROM entries WHERE ref = ? AND hexkey = ?",
                                 (ref, hexkey))
                    continue
                text = tree.decode()
                fields = known.get(text)
                if fields is None and len(changed) <= 1000:
                    fields = conn.execute("SELECT key, type, version, attrs FROM descriptions "
                                          "WHERE tree = ?", (text,)).fetchone()
                if fields is None:
                    entry, got, raw = core._entry_row(tree, hexkey.encode(), ref, sizes)
                    data = encode_row(entry, got, raw) if raw is not None else None
                    if data is not None:
                        conn.execute("INSERT OR REPLACE INTO descriptions(tree, key, type, "
                                     "version, attrs, data) VALUES (?, ?, ?, ?, ?, ?)",
                                     (text, *data))
                        fields = data[:4]
                    else:
                        fields = (None, None, None, None)  # computed at each listing
                conn.execute("INSERT OR REPLACE INTO entries(ref, hexkey, tree, date, key, "
                             "type, version, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (ref, hexkey, text, dated.get(hexkey), *fields))
        finally:
            sizes.close()
        conn.execute("INSERT OR REPLACE INTO refs(ref, tip, root) VALUES (?, ?, ?)",
                     (ref, tip.decode(), root.decode()))
        if len(changed) > 1000:  # entries that changed leave rows no ref points at
            conn.execute("DELETE FROM descriptions WHERE tree NOT IN "
                         "(SELECT tree FROM entries)")
        return True

    def _since(self, ref: str, tip: bytes, old_tip: bytes, old_root: bytes, root: bytes
               ) -> tuple[dict[str, bytes | None] | None, dict[str, float]]:
        """What changed on ``ref`` since it was indexed at ``old_tip``: ``{hexkey: new tree or
        None}`` and the date of each change; (None, {}) when ``old_tip`` is not on the new
        first-parent history or a tree on the way cannot be read (then: rebuild)."""
        from ._git_core import _changed_entries, _is_hex

        core = self.core
        db = core._db()
        changed: dict[str, bytes | None] = {}
        dated: dict[str, float] = {}
        try:
            for hexkey, tree in _changed_entries(db, root, old_root, with_trees=True):
                if not _is_hex(hexkey.encode(), 64):
                    return None, {}
                changed[hexkey] = tree
            if not changed:
                return changed, dated
            for sha, info in core._commits(ref):
                if sha == old_tip:
                    return changed, dated
                parents = info["parents"]
                before = db.commit_tree(parents[0]) if parents else None
                for hexkey in _changed_entries(db, db.commit_tree(sha), before):
                    if hexkey in changed and hexkey not in dated:
                        dated[hexkey] = info["time"]
        except CorruptEntryError:
            return None, {}
        return None, {}  # old_tip is not an ancestor: a rewritten history
