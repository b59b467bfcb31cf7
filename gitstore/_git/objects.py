"""Reading and writing git objects: verified reads, cached trees, one small pack per write.

Reads go through dulwich's object store and are checked against their id (SHA-1 of the
object's header and content); parsed trees and commits are immutable and cached by id, so a warm
lookup parses nothing. Writes put all objects of one commit in a single pack (``.pack`` + ``.idx``,
two files) instead of one loose file per object, which is what makes a store cheap; small packs are
merged by size tier (LSM style) so the number of packs stays bounded (see :func:`maybe_merge`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from dulwich.errors import ChecksumMismatch
from dulwich.object_format import SHA1
from dulwich.pack import Pack, PackFileDisappeared, write_pack_index_v2

from ..errors import CorruptEntryError

__all__ = ["Obj", "ObjectDB", "TreeEntries", "object_id"]

BLOB, TREE, COMMIT = 3, 2, 1
_TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
TreeEntries = dict[bytes, tuple[int, bytes]]  # name -> (mode, hex id)
Obj = tuple[int, bytes]  # (type number, raw content)

#: packs with at least this many bytes are left alone by the tiered merge (git gc handles them)
MERGE_MAX_BYTES = 256 * 1024 * 1024
#: merge a size tier once it holds this many packs
MERGE_FAN_IN = 12


def object_id(type_num: int, data: bytes) -> bytes:
    """The hex object id git gives ``data`` of this type."""
    h = hashlib.sha1(_TYPE_NAMES[type_num] + b" %d\x00" % len(data))
    h.update(data)
    return h.hexdigest().encode("ascii")


def parse_tree(data: bytes) -> TreeEntries:
    """Parse raw tree content; raises ValueError on malformed content."""
    entries: TreeEntries = {}
    pos, end = 0, len(data)
    while pos < end:
        space = data.index(b" ", pos)
        nul = data.index(b"\x00", space)
        mode = int(data[pos:space], 8)
        name = data[space + 1:nul]
        sha = data[nul + 1:nul + 21]
        if len(sha) != 20:
            raise ValueError("truncated tree")
        entries[name] = (mode, sha.hex().encode("ascii"))
        pos = nul + 21
    return entries


def _tree_sort_key(item: tuple[bytes, tuple[int, bytes]]) -> bytes:
    name, (mode, _sha) = item
    return name + b"/" if mode == 0o40000 else name


def serialize_tree(entries: TreeEntries) -> bytes:
    """Raw tree content in git's order (directories sort as if they ended in '/')."""
    parts = []
    for name, (mode, sha) in sorted(entries.items(), key=_tree_sort_key):
        parts.append(b"%o %s\x00%s" % (mode, name, bytes.fromhex(sha.decode())))
    return b"".join(parts)


def _pack_header(type_num: int, size: int) -> bytes:
    out = bytearray()
    c = (type_num << 4) | (size & 15)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


class ObjectDB:
    """Objects of one repository (use one per thread: dulwich repos are not thread-safe)."""

    def __init__(self, repo: Any, cache_size: int = 4096) -> None:
        self.repo = repo
        self.store = repo.object_store
        self.gitdir: str = repo.controldir() if not repo.bare else repo.path
        self.pack_dir = os.path.join(self.gitdir, "objects", "pack")
        self._trees: OrderedDict[bytes, TreeEntries] = OrderedDict()
        self._commit_trees: dict[bytes, bytes] = {}
        self._cache_size = cache_size

    # --- reading ---------------------------------------------------------------------------------

    def read(self, sha: bytes, expect_type: int | None = None) -> bytes:
        """Raw content of an object, checked against its id.

        Raises:
            CorruptEntryError: missing, unreadable, of the wrong type, or not matching its id.
        """
        problem = None
        try:
            type_num, data = self.store.get_raw(sha)
        except KeyError:
            problem = "is missing"
        except (zlib.error, ChecksumMismatch, ValueError, AssertionError, OSError,
                struct.error, IndexError) as exc:
            problem = f"is unreadable ({type(exc).__name__}: {exc})"
        if problem is not None:
            # raised outside the handler: the original traceback would pin dulwich's mmaps
            raise CorruptEntryError(f"object {sha.decode()} {problem}", expected=sha.decode())
        data = bytes(data) if not isinstance(data, bytes) else data
        if expect_type is not None and type_num != expect_type:
            raise CorruptEntryError(
                f"object {sha.decode()} is a {_TYPE_NAMES.get(type_num, b'?').decode()}, "
                f"expected a {_TYPE_NAMES[expect_type].decode()}", expected=sha.decode())
        got = object_id(type_num, data)
        if got != sha:
            raise CorruptEntryError(f"object {sha.decode()} does not match its id",
                                    expected=sha.decode(), got=got.decode())
        return data

    def tree(self, sha: bytes) -> TreeEntries:
        """Parsed entries of a tree (cached by id; read and checked once)."""
        cached = self._trees.get(sha)
        if cached is not None:
            return cached
        data = self.read(sha, TREE)
        try:
            entries = parse_tree(data)
        except ValueError as exc:
            raise CorruptEntryError(f"tree {sha.decode()} is malformed") from exc
        self._trees[sha] = entries
        if len(self._trees) > self._cache_size:
            self._trees.popitem(last=False)
        return entries

    def commit_tree(self, sha: bytes) -> bytes:
        """The tree id of a commit (cached by commit id)."""
        tree = self._commit_trees.get(sha)
        if tree is None:
            data = self.read(sha, COMMIT)
            if not data.startswith(b"tree ") or len(data) < 45:
                raise CorruptEntryError(f"commit {sha.decode()} is malformed")
            tree = data[5:45]
            if len(self._commit_trees) > self._cache_size:
                self._commit_trees.clear()
            self._commit_trees[sha] = tree
        return tree

    def lookup(self, tree: bytes, path: Sequence[bytes]) -> tuple[int, bytes] | None:
        """Walk ``path`` from ``tree``; ``(mode, id)`` or None if absent."""
        mode, sha = 0o40000, tree
        for name in path:
            if mode != 0o40000:
                return None
            found = self.tree(sha).get(name)
            if found is None:
                return None
            mode, sha = found
        return mode, sha

    # --- editing ---------------------------------------------------------------------------------

    def edit_tree(self, tree: bytes | None, changes: dict[tuple[bytes, ...], tuple[int, bytes] |
                  None], out: list[Obj]) -> bytes | None:
        """Apply ``{path: (mode, id) or None}`` to ``tree``; new tree objects go to ``out``.

        Returns the new tree id, or None when the result is empty.
        """
        entries: TreeEntries = dict(self.tree(tree)) if tree is not None else {}
        children: dict[bytes, dict[tuple[bytes, ...], tuple[int, bytes] | None]] = {}
        for path, value in changes.items():
            if len(path) == 1:
                if value is None:
                    entries.pop(path[0], None)
                else:
                    entries[path[0]] = value
            else:
                children.setdefault(path[0], {})[path[1:]] = value
        for name, sub in children.items():
            current = entries.get(name)
            base = current[1] if current is not None and current[0] == 0o40000 else None
            new = self.edit_tree(base, sub, out)
            if new is None:
                entries.pop(name, None)
            else:
                entries[name] = (0o40000, new)
        if not entries:
            return None
        data = serialize_tree(entries)
        sha = object_id(TREE, data)
        if sha != tree:
            out.append((TREE, data))
            self._trees[sha] = entries
        return sha

    # --- writing ---------------------------------------------------------------------------------

    def write_pack(self, objects: Iterable[Obj], level: int = 1) -> list[bytes]:
        """Write objects as one pack (``.pack`` then ``.idx``, each renamed into place).

        Returns their ids. Readers only use a pack once its ``.idx`` exists, so a crash leaves
        at most an unused temporary file.
        """
        ids: list[bytes] = []
        seen: set[bytes] = set()
        index: list[tuple[bytes, int, int]] = []
        os.makedirs(self.pack_dir, exist_ok=True)
        fd, tmp_pack = tempfile.mkstemp(prefix="tmp_gitstore_", suffix=".pack",
                                        dir=self.pack_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                body = []
                offset = 12
                for type_num, data in objects:
                    sha = object_id(type_num, data)
                    ids.append(sha)
                    if sha in seen:
                        continue
                    seen.add(sha)
                    chunk = _pack_header(type_num, len(data)) + zlib.compress(data, level)
                    index.append((bytes.fromhex(sha.decode()), offset, zlib.crc32(chunk)))
                    body.append(chunk)
                    offset += len(chunk)
                content = b"PACK" + struct.pack(">LL", 2, len(index)) + b"".join(body)
                checksum = hashlib.sha1(content).digest()
                f.write(content)
                f.write(checksum)
            name = "pack-" + checksum.hex()
            final = os.path.join(self.pack_dir, name)
            fd, tmp_idx = tempfile.mkstemp(prefix="tmp_gitstore_", suffix=".idx",
                                           dir=self.pack_dir)
            try:
                with os.fdopen(fd, "wb") as f:
                    write_pack_index_v2(f, sorted(index), checksum)
                os.chmod(tmp_pack, 0o444)
                os.chmod(tmp_idx, 0o444)
                os.rename(tmp_pack, final + ".pack")
                os.rename(tmp_idx, final + ".idx")
            except BaseException:
                _unlink(tmp_idx)
                raise
        except BaseException:
            _unlink(tmp_pack)
            raise
        return ids

    def pack_count(self) -> int:
        try:
            return sum(1 for n in os.listdir(self.pack_dir) if n.endswith(".idx"))
        except FileNotFoundError:
            return 0

    def maybe_merge(self) -> None:
        """Merge small packs tier by tier once a tier holds :data:`MERGE_FAN_IN` packs.

        Tier ``t`` holds packs of ``16**t`` KiB to ``16**(t+1)`` KiB, so every object is
        rewritten about log16(n) times and the number of packs stays near
        ``MERGE_FAN_IN × tiers``. Only one process merges at a time (others skip).
        """
        if self.pack_count() < MERGE_FAN_IN:
            return
        lock_path = os.path.join(self.gitdir, "gitstore", "locks", "merge")
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another writer is merging
            # list the packs only now: a merge that just finished removed some
            for bases in self._full_tiers():
                self._merge(bases)
        finally:
            os.close(fd)

    def _full_tiers(self) -> list[list[str]]:
        tiers: dict[int, list[str]] = {}
        for name in os.listdir(self.pack_dir):
            if not name.endswith(".idx"):
                continue
            base = os.path.join(self.pack_dir, name[:-4])
            try:
                size = os.stat(base + ".pack").st_size
            except FileNotFoundError:
                continue
            if size >= MERGE_MAX_BYTES:
                continue
            tier = 0
            while size >= 1024 * 16 ** (tier + 1):
                tier += 1
            tiers.setdefault(tier, []).append(base)
        return [bases for bases in tiers.values() if len(bases) >= MERGE_FAN_IN]

    def _merge(self, bases: list[str]) -> None:
        objects: list[Obj] = []
        present = []
        for base in bases:
            try:
                with Pack(base, object_format=SHA1) as pack:  # resolves fetched deltas
                    for obj in pack.iterobjects():
                        objects.append((obj.type_num, obj.as_raw_string()))
                present.append(base)
            except (FileNotFoundError, PackFileDisappeared):
                continue  # removed by `git gc` meanwhile
        if not present:
            return
        self.write_pack(objects)
        for base in present:
            # .idx first: without it readers ignore the pack; dulwich re-scans on a miss
            _unlink(base + ".idx")
            _unlink(base + ".pack")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
