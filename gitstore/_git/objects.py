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
import heapq
import itertools
import logging
import mmap
import os
import re
import struct
import sys
import threading
import time
import zlib
from array import array
from binascii import hexlify
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dulwich.errors import ChecksumMismatch

from ..errors import CorruptEntryError
from .shared import makedirs

__all__ = ["Obj", "ObjectDB", "TreeEntries", "WriteGate", "object_id", "pack_entry_header"]

_log = logging.getLogger("gitstore")

BLOB, TREE, COMMIT = 3, 2, 1
#: the largest tree and commit read (a gitstore tree holds at most 256 folders, or one
#: entry's files; a commit's message lists a batch's changes): a pulled object that declares
#: more (a few compressed bytes can declare gigabytes) is refused before it is inflated
MAX_TREE_BYTES = 64 << 20
MAX_COMMIT_BYTES = 256 << 20
_BOUNDED = {TREE: MAX_TREE_BYTES, COMMIT: MAX_COMMIT_BYTES}
_TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
_TYPE_NUMBERS = {name: num for num, name in _TYPE_NAMES.items()}
TreeEntries = dict[bytes, tuple[int, bytes]]  # name -> (mode, hex id)
# (type number, raw content), or with its id when the producer computed it already
Obj = tuple[int, bytes] | tuple[int, bytes, bytes]

#: packs with at least this many bytes are left alone by the tiered merge (git gc handles them)
MERGE_MAX_BYTES = 256 * 1024 * 1024
#: merge a size tier once it holds this many packs
MERGE_FAN_IN = 12


def object_id(type_num: int, data: bytes) -> bytes:
    """The hex object id git gives ``data`` of this type."""
    h = hashlib.sha1(_TYPE_NAMES[type_num] + b" %d\x00" % len(data))
    h.update(data)
    return h.hexdigest().encode("ascii")


#: one tree entry: octal mode, space, name, NUL, 20-byte id
_TREE_ENTRY = re.compile(rb"([0-7]+) ([^\x00]+)\x00(.{20})", re.DOTALL)


#: a fan-out tree: nothing but folders named by two hex digits (29 bytes each)
_FAN_OUT = re.compile(rb"(?:40000 [0-9a-f]{2}\x00.{20})*", re.DOTALL)


def _parse_tree(data: bytes) -> tuple[TreeEntries, dict[bytes, int]]:
    """Entries and, for each name, the offset of its id in ``data``.

    One regular-expression pass (half the time of a loop of ``index`` calls: a new process's
    first read parses the fan-out trees on its way); when its matches do not tile ``data``
    exactly, the entry-by-entry parse decides (and says what is wrong)."""
    entries: TreeEntries = {}
    offsets: dict[bytes, int] = {}
    pos = 0
    for mode, name, sha in _TREE_ENTRY.findall(data):
        pos += len(mode) + len(name) + 2
        entries[name] = (int(mode, 8), hexlify(sha))
        offsets[name] = pos
        pos += 20
    if pos == len(data):
        return entries, offsets
    return _parse_tree_strictly(data)


def _parse_tree_strictly(data: bytes) -> tuple[TreeEntries, dict[bytes, int]]:
    entries: TreeEntries = {}
    offsets: dict[bytes, int] = {}
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
        offsets[name] = nul + 1
        pos = nul + 21
    return entries, offsets


def _tree_sort_key(item: tuple[bytes, tuple[int, bytes]]) -> bytes:
    name, (mode, _sha) = item
    return name + b"/" if mode == 0o40000 else name


def serialize_tree(entries: TreeEntries) -> bytes:
    """Raw tree content in git's order (directories sort as if they ended in '/')."""
    return _serialize_tree(entries)[0]


def _serialize_tree(entries: TreeEntries) -> tuple[bytes, dict[bytes, int]]:
    parts = []
    offsets: dict[bytes, int] = {}
    at = 0
    for name, (mode, sha) in sorted(entries.items(), key=_tree_sort_key):
        head = b"%o %s\x00" % (mode, name)
        parts.append(head)
        parts.append(bytes.fromhex(sha.decode()))
        offsets[name] = at + len(head)
        at += len(head) + 20
    return b"".join(parts), offsets


def _splice(raw: bytes, offsets: dict[bytes, int], changed: dict[bytes, bytes]) -> bytes:
    """``raw`` with the ids of existing entries replaced (same names, same modes)."""
    out = bytearray(raw)
    for name, sha in changed.items():
        at = offsets[name]
        out[at:at + 20] = bytes.fromhex(sha.decode())
    return bytes(out)


#: a blob at least this large is deflated only if a sample of it shrinks below 90 %
SAMPLED = 16 << 10
_SAMPLE_PART = 4 << 10


def _deflate(type_num: int, data: bytes, level: int = 1) -> bytes:
    """An object's zlib stream: deflated at ``level``, or *stored* (zlib level 0: a copy,
    5 bytes of header per 64 KiB) where deflating does not pay: trees (mostly ids, which do
    not compress; ``git gc`` deflates and deltifies them later), commits (a new process's
    first read inflates the tip commit whole to check its id, and a batch's message names
    every entry: 132 KB for 1,000 entries, which inflate in ~300 µs from level 1, ~60 µs
    stored) and blobs of at least
    :data:`SAMPLED` bytes whose sample (three 4 KiB slices) does not shrink below 90 %.
    Level-1 deflate runs at ~20-35 MB/s on random data, a stored copy at GB/s."""
    if type_num in (TREE, COMMIT) or (type_num == BLOB and len(data) >= SAMPLED and
                            not _sample_shrinks(data)):
        return zlib.compress(data, 0)
    return zlib.compress(data, level)


def _sample_shrinks(data: bytes) -> bool:
    """Whether level-1 deflate shrinks a sample of ``data`` below 90 % (its start, and two
    slices from inside: headers compress well and mislead)."""
    n = len(data)
    sample = b"".join(data[at:at + _SAMPLE_PART] for at in (0, n // 3, 2 * n // 3))
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


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


def pack_entry_header(head: bytes) -> tuple[int, int, int]:
    """``(type, size, header length)`` of a pack entry from its first bytes (git's pack
    format: type in bits 4-6 of the first byte, the size as a little-endian varint).

    Raises:
        IndexError: ``head`` ends inside the header.
    """
    type_num = (head[0] >> 4) & 7
    size, shift, i = head[0] & 15, 4, 0
    while head[i] & 0x80:
        i += 1
        size |= (head[i] & 0x7F) << shift
        shift += 7
    return type_num, size, i + 1


def _varints(data: bytes, count: int) -> list[int]:
    """The first ``count`` little-endian base-128 varints of ``data`` (a delta's header)."""
    out, at = [], 0
    for _ in range(count):
        value, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out.append(value)
    return out


class _Unreadable(Exception):
    """A copy of an object that cannot be read (the caller looks for another copy)."""


class _Pack:
    """One pack and its version-2 index, both mapped read-only on first use.

    An id is found with the index's fan-out table (the range of ids sharing its first byte,
    empty for most ids in a small pack) and a binary search of that range in the mapped
    index: no Python object per packed id, so a new process pays nothing per object for
    a pack it opens. A pack deleted meanwhile (merged, or by ``git gc``) stays readable
    through its mappings until :meth:`close`.
    """

    __slots__ = ("base", "size", "_idx", "_data", "_fanout", "_count", "_dulwich")

    #: ranges of the index at most this many ids long are searched with one ``find``
    _SCAN = 16

    def __init__(self, base: str, size: int) -> None:
        self.base = base
        self.size = size  # the .pack's size when listed: packs are searched largest first
        self._idx: mmap.mmap | None = None
        self._data: mmap.mmap | None = None
        self._fanout: tuple[int, ...] = ()
        self._count = 0
        self._dulwich: Any = None

    def _open(self) -> mmap.mmap:
        """Map the index and the pack (raises OSError, or ValueError for an index that is not
        version 2, which only old git writes: its objects are read through dulwich)."""
        with open(self.base + ".idx", "rb") as f:
            idx = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if idx[:8] != b"\377tOc\x00\x00\x00\x02":
                raise ValueError("not a version-2 pack index")
            fanout = struct.unpack_from(">256L", idx, 8)
            count = fanout[255]
            if len(idx) < 1032 + 28 * count + 40:
                raise ValueError("truncated pack index")
            with open(self.base + ".pack", "rb") as f:
                self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            idx.close()
            raise
        self._fanout, self._count, self._idx = fanout, count, idx
        return idx

    def find(self, raw: bytes) -> int | None:
        """The offset of the object with this binary id in the pack, or None."""
        idx = self._idx if self._idx is not None else self._open()
        first = raw[0]
        hi = self._fanout[first]
        lo = self._fanout[first - 1] if first else 0
        while hi - lo > self._SCAN:
            mid = (lo + hi) >> 1
            at = 1032 + 20 * mid
            name = idx[at:at + 20]
            if name < raw:
                lo = mid + 1
            elif name > raw:
                hi = mid
            else:
                return self._offset(mid)
        if lo >= hi:
            return None
        end = 1032 + 20 * hi
        at = idx.find(raw, 1032 + 20 * lo, end)
        while at >= 0 and (at - 1032) % 20:  # an id straddling two names: look further
            at = idx.find(raw, at + 1, end)
        return None if at < 0 else self._offset((at - 1032) // 20)

    def _offset(self, i: int) -> int:
        assert self._idx is not None
        n = self._count
        (offset,) = struct.unpack_from(">L", self._idx, 1032 + 24 * n + 4 * i)
        if offset & 0x80000000:  # a pack over 2 GiB: 64-bit offsets in a table of their own
            (offset,) = struct.unpack_from(">Q", self._idx,
                                           1032 + 28 * n + 8 * (offset & 0x7FFFFFFF))
        return int(offset)

    def header(self, offset: int) -> tuple[int, int, int]:
        """``(type, size, header length)`` of the entry at ``offset``; for a delta, ``size``
        is the size of the object it makes (from the delta's own header).

        Raises:
            _Unreadable: the entry is damaged.
        """
        data = self._data
        assert data is not None
        if not 12 <= offset < len(data) - 20:
            raise _Unreadable(f"offset {offset} outside its pack")
        head = data[offset:offset + 32]
        try:
            type_num, size, length = pack_entry_header(head)
            if type_num in (6, 7):
                at = offset + length
                if type_num == 7:  # REF_DELTA: the base's id comes first
                    at += 20
                else:  # OFS_DELTA: a varint offset to the base
                    while data[at] & 0x80:
                        at += 1
                    at += 1
                inflater = zlib.decompressobj()
                start, end = b"", min(len(data), at + (1 << 20))
                while len(start) < 20 and not inflater.eof and at < end:
                    # a dynamic Huffman block's tables may come before any output
                    chunk = inflater.unconsumed_tail or data[at:at + 256]
                    at += 0 if inflater.unconsumed_tail else len(chunk)
                    start += inflater.decompress(chunk, 20 - len(start))
                size = _varints(start, 2)[1]  # the base's size, then the result's
        except (IndexError, zlib.error) as exc:
            raise _Unreadable(f"its pack entry's header is damaged ({exc})") from None
        return type_num, size, length

    def inflate(self, at: int, size: int) -> bytes:
        """The ``size`` bytes of the zlib stream starting at ``at``.

        Raises:
            _Unreadable: the stream is damaged, or inflates to another size.
        """
        data = self._data
        assert data is not None
        inflater = zlib.decompressobj()
        # deflate grows incompressible data by 5 bytes per 64 KiB block at most: one slice
        # holds the whole stream
        window = size + 5 * (size // 16384 + 1) + 64
        try:
            out = inflater.decompress(data[at:at + window], size + 1)
            while not inflater.eof and len(out) <= size and at + window < len(data):
                at += window  # a stream longer than deflate ever writes: a foreign packer's
                window = 1 << 20
                out += inflater.decompress(inflater.unconsumed_tail + data[at:at + window],
                                           size + 1 - len(out))
        except zlib.error as exc:
            raise _Unreadable(f"its data is damaged ({exc})") from None
        if not inflater.eof or len(out) != size:
            raise _Unreadable(f"its data inflates to {len(out)} bytes, not the {size} its "
                              "header declares")
        return out

    def resolve(self, raw: bytes) -> tuple[int, bytes]:
        """A delta's object, through dulwich (which applies deltas; an external base raises
        KeyError: the caller asks the whole store)."""
        if self._dulwich is None:
            from dulwich.object_format import SHA1  # on first use: dulwich.pack costs
            from dulwich.pack import Pack          # ~20 ms of CPU to import

            self._dulwich = Pack(self.base, object_format=SHA1)
        type_num, data = self._dulwich.get_raw(raw)
        return type_num, bytes(data) if not isinstance(data, bytes) else data

    def close(self) -> None:
        for mapping in (self._idx, self._data):
            if mapping is not None:
                try:
                    mapping.close()
                except BufferError:  # a view is still alive: the mapping goes with it
                    pass
        self._idx = self._data = None
        if self._dulwich is not None:
            self._dulwich.close()
            self._dulwich = None


class ObjectDB:
    """Objects of one repository (use one per thread: dulwich repos are not thread-safe)."""

    def __init__(self, repo: Any = None, cache_size: int = 16384, gitdir: str | None = None
                 ) -> None:
        """``repo``: a dulwich repository; or ``gitdir``, whose dulwich repository is only
        opened when something needs it (reads do not: a new process's first read skips
        parsing the configuration)."""
        self._repo = repo
        if repo is not None:
            gitdir = repo.controldir() if not repo.bare else repo.path
        assert gitdir is not None, "ObjectDB needs a repository or its git directory"
        self.gitdir: str = gitdir
        self.pack_dir = os.path.join(self.gitdir, "objects", "pack")
        # tree id -> (entries, raw content, offset of each entry's id in the raw content)
        self._trees: OrderedDict[bytes, tuple[TreeEntries, bytes, dict[bytes, int]]] = \
            OrderedDict()
        self._commit_trees: dict[bytes, bytes] = {}
        #: fan-out trees (every entry ``40000 <2 hex digits>``) looked up in their raw bytes
        self._fan_outs: dict[bytes, bytes] = {}
        self._cache_size = cache_size
        self._merge_baseline = 0  # pack count after our last merge check
        self._writes = 0
        #: core.sharedRepository: gives what we create the mode git would (None: umask)
        self.shared: Callable[[str], None] | None = None
        # the packs, largest first (listed on first use, see _packs_now)
        self._packs: list[_Pack] = []
        self._packs_checked = float("-inf")
        self._packs_stamp = -2
        self._pack_dir_made = False
        self._hot: _Pack | None = None  # the pack of the last object found

    @property
    def repo(self) -> Any:
        """The dulwich repository (opened on first use)."""
        if self._repo is None:
            from dulwich.repo import Repo

            self._repo = Repo(self.gitdir)
        return self._repo

    @property
    def store(self) -> Any:
        """dulwich's object store (for deltas whose base is in another pack, and remotes)."""
        return self.repo.object_store

    # --- locating --------------------------------------------------------------------------------

    def _packs_now(self) -> list[_Pack]:
        """The packs as last listed; listed again once a second if the folder changed (packs
        come from other writers' stores and merges, fetches and ``git gc``)."""
        now = time.monotonic()
        if now - self._packs_checked > 1.0:
            self._packs_checked = now
            try:
                stamp = os.stat(self.pack_dir).st_mtime_ns
            except OSError:
                stamp = -1
            if stamp != self._packs_stamp:
                self._refresh_packs()
        return self._packs

    def _refresh_packs(self) -> bool:
        """List the pack folder again: new packs are added, vanished ones closed. Returns
        whether a pack was added."""
        self._packs_checked = time.monotonic()
        try:
            self._packs_stamp = os.stat(self.pack_dir).st_mtime_ns
            names = set(os.listdir(self.pack_dir))
        except OSError:
            self._packs_stamp, names = -1, set()
        known = {pack.base: pack for pack in self._packs}
        packs, added = [], False
        for name in names:
            # any .pack with its .idx (git maintenance writes "loose-<hash>.pack" too); the
            # .idx comes last, so its presence says the pack is complete
            if not name.endswith(".pack") or name[:-5] + ".idx" not in names:
                continue
            base = os.path.join(self.pack_dir, name[:-5])
            pack = known.pop(base, None)
            if pack is None:
                try:
                    pack = _Pack(base, os.stat(base + ".pack").st_size)
                except OSError:
                    continue  # removed meanwhile
                added = True
            packs.append(pack)
        for gone in known.values():
            gone.close()
        if self._hot is not None and self._hot.base in known:
            self._hot = None
        packs.sort(key=lambda p: -p.size)  # most objects first: most reads end at the first
        self._packs = packs
        return added

    def _add_pack(self, base: str, size: int) -> None:
        """A pack this process wrote (seen without listing the folder again; one of the same
        name was replaced: its mapping may hold a damaged copy)."""
        self._drop_packs([base])
        self._packs.append(_Pack(base, size))
        self._packs.sort(key=lambda p: -p.size)

    def _drop_packs(self, bases: Iterable[str]) -> None:
        doomed = set(bases)
        if self._hot is not None and self._hot.base in doomed:
            self._hot = None
        for pack in self._packs:
            if pack.base in doomed:
                pack.close()
        self._packs = [p for p in self._packs if p.base not in doomed]

    def locate(self, sha: bytes) -> tuple[_Pack, int] | None:
        """The pack and offset of an object: one search of the packs, largest first, each
        through its index; the folder is listed again on a miss (a pack another process
        just wrote). None when no pack has it (it may be loose)."""
        raw = bytes.fromhex(sha.decode())
        hot = self._hot
        if hot is not None:  # an entry's objects were written together: one pack has them
            try:
                offset = hot.find(raw)
            except (OSError, ValueError):
                offset = None
            if offset is not None:
                return hot, offset
        for attempt in range(2):
            for pack in self._packs_now() if attempt == 0 else self._packs:
                if pack is hot:
                    continue
                try:
                    offset = pack.find(raw)
                except (OSError, ValueError):
                    continue  # vanished before we mapped it, or an index dulwich must read
                if offset is not None:
                    self._hot = pack
                    return pack, offset
            hot = None
            if attempt == 0 and not self._refresh_packs():
                break
        return None

    def close(self) -> None:
        """Unmap the packs and close the repository."""
        for pack in self._packs:
            pack.close()
        self._packs, self._hot = [], None
        if self._repo is not None:
            self._repo.close()

    # --- reading ---------------------------------------------------------------------------------

    def size_of(self, sha: bytes) -> int | None:
        """The size of an object's content as its header declares it (packed, or loose),
        nothing inflated past the header; for a delta, the size of the object it makes.
        None when the object is in no pack and not loose, or its header is unreadable
        (a read says why)."""
        found = self.locate(sha)
        if found is not None:
            pack, offset = found
            try:
                return pack.header(offset)[1]
            except _Unreadable:
                return None
        hex_id = sha.decode()
        try:
            with open(os.path.join(self.gitdir, "objects", hex_id[:2], hex_id[2:]), "rb") as f:
                head = zlib.decompressobj().decompress(f.read(512), 64)
        except (OSError, zlib.error):
            return None
        _kind, _, size = head.partition(b"\x00")[0].partition(b" ")
        return int(size) if size.isdigit() else None

    declared_size = size_of

    def open_blob(self, sha: bytes) -> bytes | Any:
        """A blob's content, checked against its id; for a blob of at least
        :data:`~gitstore._git.large.LARGE` bytes not stored as a delta, a
        :class:`~gitstore._git.large.LooseReader` streaming it (from its pack entry, or its
        loose file), which checks the id once everything is read. One search of the packs,
        one header read.

        Raises:
            CorruptEntryError: missing, or damaged (and no good copy elsewhere).
        """
        from .large import LARGE, LooseReader

        hex_id = sha.decode()
        loose = os.path.join(self.gitdir, "objects", hex_id[:2], hex_id[2:])
        found = self.locate(sha)
        if found is not None:
            pack, offset = found
            try:
                type_num, size, length = pack.header(offset)
            except _Unreadable:
                type_num, size, length = -1, 0, 0
            if type_num != BLOB or size < LARGE:
                return self._read(sha, BLOB, found)
            # a large blob: a loose copy is newer than the pack (written again after a gc,
            # to repair a damaged copy); one more look costs nothing beside the read
            if not os.path.exists(loose):
                try:
                    return LooseReader(pack.base + ".pack", sha, offset + length, size)
                except (FileNotFoundError, CorruptEntryError):
                    return self.read(sha, BLOB)  # vanished, or damaged: find another copy
        try:
            reader = LooseReader(loose, sha)
        except (FileNotFoundError, CorruptEntryError):
            return self.read(sha, BLOB)  # says it is missing, or finds a good copy
        if reader.size >= LARGE:
            return reader
        try:
            data = reader.read()
            reader.finish()
        except CorruptEntryError:
            return self.read(sha, BLOB)  # a damaged loose copy: a packed one may be good
        finally:
            reader.close()
        return data

    def read(self, sha: bytes, expect_type: int | None = None) -> bytes:
        """Raw content of an object, checked against its id.

        Raises:
            CorruptEntryError: missing, unreadable, of the wrong type, or not matching its id.
        """
        return self._read(sha, expect_type, None)

    def _read(self, sha: bytes, expect_type: int | None, found: tuple[_Pack, int] | None
              ) -> bytes:
        """:meth:`read`, given where :meth:`locate` found the object (None: look)."""
        problem = None
        try:
            type_num, data = self._get_raw(sha, expect_type, found)
        except KeyError:
            problem = "is missing"
        except _Unreadable as exc:
            problem = f"is unreadable ({exc})"
        except (zlib.error, ChecksumMismatch, ValueError, AssertionError, OSError,
                struct.error, IndexError) as exc:
            problem = f"is unreadable ({type(exc).__name__}: {exc})"
        if problem is not None:
            other = self._other_copy(sha, expect_type)
            if other is not None:
                return other
            # raised outside the handler: the original traceback would pin dulwich's mmaps
            raise CorruptEntryError(f"object {sha.decode()} {problem}", expected=sha.decode())
        if expect_type is not None and type_num != expect_type:
            other = self._other_copy(sha, expect_type)
            if other is not None:
                return other
            raise CorruptEntryError(
                f"object {sha.decode()} is a {_TYPE_NAMES.get(type_num, b'?').decode()}, "
                f"expected a {_TYPE_NAMES[expect_type].decode()}", expected=sha.decode())
        got = object_id(type_num, data)
        if got != sha:
            other = self._other_copy(sha, expect_type)
            if other is not None:
                return other
            raise CorruptEntryError(f"object {sha.decode()} does not match its id",
                                    expected=sha.decode(), got=got.decode())
        return data

    def _bounded(self, sha: bytes, type_num: int, size: int, expect_type: int | None) -> None:
        limit = _BOUNDED.get(expect_type) if expect_type is not None else None
        if limit is not None and size > limit and type_num in (expect_type, 6, 7):
            assert expect_type is not None
            raise CorruptEntryError(
                f"object {sha.decode()} declares {size} bytes, over the limit of {limit} for "
                f"a {_TYPE_NAMES[expect_type].decode()} (not read)", expected=sha.decode())

    def _get_raw(self, sha: bytes, expect_type: int | None,
                 found: tuple[_Pack, int] | None = None) -> tuple[int, bytes]:
        """(type, content) of the first copy found, packs first: a tree or commit whose
        header declares more than :data:`MAX_TREE_BYTES` / :data:`MAX_COMMIT_BYTES` is
        refused before it is inflated (a few compressed bytes can declare gigabytes).

        Raises:
            KeyError: in no pack and not loose.
            _Unreadable: the copy found is damaged.
        """
        if found is None:
            found = self.locate(sha)
        if found is not None:
            return self._packed_raw(sha, expect_type, *found)
        return self._loose_raw(sha, expect_type)

    def _packed_raw(self, sha: bytes, expect_type: int | None, pack: _Pack, offset: int
                    ) -> tuple[int, bytes]:
        type_num, size, length = pack.header(offset)
        self._bounded(sha, type_num, size, expect_type)
        if type_num in (6, 7):  # a delta (a fetched pack, git gc): dulwich applies it
            try:
                return pack.resolve(bytes.fromhex(sha.decode()))
            except KeyError:  # its base is in another pack
                type_num, data = self.store.get_raw(sha)
                return type_num, bytes(data) if not isinstance(data, bytes) else data
        if type_num not in _TYPE_NAMES:
            raise _Unreadable(f"its pack entry has type {type_num}")
        return type_num, pack.inflate(offset + length, size)

    def _loose_raw(self, sha: bytes, expect_type: int | None) -> tuple[int, bytes]:
        hex_id = sha.decode()
        path = os.path.join(self.gitdir, "objects", hex_id[:2], hex_id[2:])
        try:
            with open(path, "rb") as f:
                compressed = f.read()
        except FileNotFoundError:
            raise KeyError(sha) from None
        inflater = zlib.decompressobj()
        try:
            head = inflater.decompress(compressed, 64)
            header, nul, rest = head.partition(b"\x00")
            kind, _, text = header.partition(b" ")
            type_num = _TYPE_NUMBERS.get(kind, 0)
            if not nul or not type_num or not text.isdigit():
                raise _Unreadable("its loose header is damaged")
            size = int(text)
            self._bounded(sha, type_num, size, expect_type)
            data = rest + inflater.decompress(inflater.unconsumed_tail, size + 1 - len(rest))
        except zlib.error as exc:
            raise _Unreadable(f"its data is damaged ({exc})") from None
        if len(data) != size or not inflater.eof:
            raise _Unreadable(f"its data is not the {size} bytes its header declares")
        return type_num, data

    def _other_copy(self, sha: bytes, expect_type: int | None) -> bytes | None:
        """A good copy of an object whose first copy found is damaged: in another pack, or
        loose (storing the same content again writes one), or None."""
        raw = bytes.fromhex(sha.decode())
        self._refresh_packs()  # a pack written since we last looked

        def packed(pack: _Pack) -> tuple[int, bytes]:
            offset = pack.find(raw)
            if offset is None:
                raise KeyError(sha)
            return self._packed_raw(sha, expect_type, pack, offset)

        for pack in [*self._packs, None]:
            try:
                type_num, data = packed(pack) if pack is not None else \
                    self._loose_raw(sha, expect_type)
            except Exception:  # noqa: BLE001 - absent or damaged too: try the next copy
                continue
            if (expect_type is None or type_num == expect_type) and \
                    object_id(type_num, data) == sha:
                return data
        return None

    def is_intact(self, sha: bytes, expect_type: int) -> bool:
        """Whether a readable copy of the object matches its id."""
        try:
            self.read(sha, expect_type)
        except CorruptEntryError:
            return False
        return True

    def tree(self, sha: bytes) -> TreeEntries:
        """Parsed entries of a tree (cached by id; read and checked once)."""
        return self._tree(sha)[0]

    def _tree(self, sha: bytes) -> tuple[TreeEntries, bytes, dict[bytes, int]]:
        cached = self._trees.get(sha)
        if cached is not None:
            self._trees.move_to_end(sha)  # least recently used goes first
            return cached
        data = self._fan_outs.pop(sha, None) or self.read(sha, TREE)
        try:
            entries, offsets = _parse_tree(data)
        except ValueError:
            entries = None
        if entries is None:
            raise CorruptEntryError(f"tree {sha.decode()} is malformed", expected=sha.decode())
        self._remember_tree(sha, (entries, data, offsets))
        return entries, data, offsets

    def _remember_tree(self, sha: bytes, parsed: tuple[TreeEntries, bytes, dict[bytes, int]]
                       ) -> None:
        self._trees[sha] = parsed
        if len(self._trees) > self._cache_size:
            self._trees.popitem(last=False)

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

    def remember_commit(self, sha: bytes, tree: bytes) -> None:
        """Record the tree of a commit this process wrote (so it is never read back)."""
        self._commit_trees[sha] = tree

    def lookup(self, tree: bytes, path: Sequence[bytes]) -> tuple[int, bytes] | None:
        """Walk ``path`` from ``tree``; ``(mode, id)`` or None if absent."""
        mode, sha = 0o40000, tree
        for name in path:
            if mode != 0o40000:
                return None
            found = self._entry(sha, name)
            if found is None:
                return None
            mode, sha = found
        return mode, sha

    def _entry(self, sha: bytes, name: bytes) -> tuple[int, bytes] | None:
        """One entry of a tree. A fan-out tree (the store's first two levels: 256 entries of
        29 bytes at most) is searched in its raw bytes, checked once to be nothing but such
        entries, rather than parsed into a dict of every entry: a new process's first read
        parses no tree it does not list."""
        cached = self._trees.get(sha)
        if cached is not None:
            self._trees.move_to_end(sha)
            return cached[0].get(name)
        data = self._fan_outs.get(sha)
        if data is None:
            data = self.read(sha, TREE)
            if len(data) < 29 * 8 or not _FAN_OUT.fullmatch(data):
                try:
                    entries, offsets = _parse_tree(data)
                except ValueError:
                    raise CorruptEntryError(f"tree {sha.decode()} is malformed",
                                            expected=sha.decode()) from None
                self._remember_tree(sha, (entries, data, offsets))
                return entries.get(name)
            if len(self._fan_outs) > self._cache_size:
                self._fan_outs.clear()
            self._fan_outs[sha] = data
        # every entry starts at a multiple of 29: a match elsewhere lies inside an id; the
        # last match wins, as in a parsed tree
        needle = b"40000 " + name + b"\x00"
        at = data.rfind(needle)
        while at > 0 and at % 29:
            at = data.rfind(needle, 0, at + len(needle) - 1)
        if at < 0 or at % 29:
            return None
        return 0o40000, hexlify(data[at + 9:at + 29])

    # --- editing ---------------------------------------------------------------------------------

    def edit_tree(self, tree: bytes | None, changes: dict[tuple[bytes, ...], tuple[int, bytes] |
                  None], out: list[Obj]) -> bytes | None:
        """Apply ``{path: (mode, id) or None}`` to ``tree``; new tree objects go to ``out``.

        Returns the new tree id, or None when the result is empty.
        """
        base_entries: TreeEntries = self.tree(tree) if tree is not None else {}
        entries = dict(base_entries)
        children: dict[bytes, dict[tuple[bytes, ...], tuple[int, bytes] | None]] = {}
        reshaped = False  # a name added or removed, or a mode changed: no splicing
        changed: dict[bytes, bytes] = {}
        for path, value in changes.items():
            if len(path) == 1:
                before = entries.get(path[0])
                if value is None:
                    reshaped |= entries.pop(path[0], None) is not None
                else:
                    entries[path[0]] = value
                    reshaped |= before is None or before[0] != value[0]
                    changed[path[0]] = value[1]
            else:
                children.setdefault(path[0], {})[path[1:]] = value
        for name, sub in children.items():
            current = entries.get(name)
            base = current[1] if current is not None and current[0] == 0o40000 else None
            new = self.edit_tree(base, sub, out)
            if new is None:
                reshaped |= entries.pop(name, None) is not None
            else:
                entries[name] = (0o40000, new)
                reshaped |= current is None or current[0] != 0o40000
                changed[name] = new
        if not entries:
            return None
        if tree is not None and not reshaped:
            # the common case (a fan-out tree whose child changed): patch ids in place
            _entries, raw, offsets = self._tree(tree)
            data = _splice(raw, offsets, changed)
        else:
            data, offsets = _serialize_tree(entries)
        sha = object_id(TREE, data)
        if sha != tree:
            out.append((TREE, data, sha))
            self._remember_tree(sha, (entries, data, offsets))
        return sha

    def make_tree(self, entries: TreeEntries, out: list[Obj]) -> bytes | None:
        """A tree of ``entries`` (appended to ``out`` if new); None when empty."""
        if not entries:
            return None
        data, offsets = _serialize_tree(entries)
        sha = object_id(TREE, data)
        out.append((TREE, data, sha))  # written even if known: it may come from an aborted commit
        self._remember_tree(sha, (dict(entries), data, offsets))
        return sha

    # --- writing ---------------------------------------------------------------------------------

    def write_pack(self, objects: Iterable[Obj], level: int = 1) -> list[bytes]:
        """Write objects as one pack (``.pack`` then ``.idx``, each renamed into place).

        Returns their ids. Readers only use a pack once its ``.idx`` exists, so a crash leaves
        at most an unused temporary file.
        """
        ids: list[bytes] = []
        chunks: list[tuple[bytes, bytes]] = []  # (raw id, header + compressed data)
        seen: set[bytes] = set()
        for item in objects:
            type_num, data = item[0], item[1]
            sha = item[2] if len(item) == 3 else object_id(type_num, data)
            ids.append(sha)
            if sha not in seen:
                seen.add(sha)
                chunk = _pack_header(type_num, len(data)) + _deflate(type_num, data, level)
                chunks.append((bytes.fromhex(sha.decode()), chunk))
        self._write_raw_pack(chunks)
        return ids

    def _write_raw_pack(self, chunks: list[tuple[bytes, bytes]], mtime: float | None = None,
                        promisor: bool = False) -> None:
        """Write already-encoded pack entries (no deltas) and their index; ``mtime``: the
        pack's modification time (a merge keeps its newest input's: gc dates unreachable
        objects by their pack's time); ``promisor``: marked as a partial fetch's pack
        (``.promisor``, before the index makes it visible)."""
        if not self._pack_dir_made:
            os.makedirs(self.pack_dir, exist_ok=True)
            self._pack_dir_made = True
        index: list[tuple[bytes, int, int]] = []
        offset = 12
        for raw_id, chunk in chunks:
            index.append((raw_id, offset, zlib.crc32(chunk)))
            offset += len(chunk)
        content = b"".join([b"PACK", struct.pack(">LL", 2, len(chunks))] +
                           [chunk for _id, chunk in chunks])
        checksum = hashlib.sha1(content).digest()
        final = os.path.join(self.pack_dir, "pack-" + checksum.hex())
        tmp_pack = _write_temp(self.pack_dir, ".pack", [content, checksum])
        try:
            tmp_idx = _write_temp(self.pack_dir, ".idx", [_index_v2(index, checksum)])
            self._place_pack(tmp_pack, tmp_idx, final, mtime, promisor)
        except BaseException:
            _unlink(tmp_pack)
            raise
        self._add_pack(final, offset + 20)

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

        Never raises: it runs after a commit has landed, so a merge is housekeeping and its
        failure (a full disk, most likely) is not the caller's. The packs then stay as they
        were (readable), the merge's temporaries are removed, a warning is logged, and the
        merge is retried once :data:`MERGE_FAN_IN` more packs have come.
        """
        try:
            self._maybe_merge()
        except OSError as exc:
            _log.warning("gitstore: merging packs in %s failed (%s); they stay unmerged "
                         "until a later store or gc", self.pack_dir, exc.strerror or exc)
            try:
                self._merge_baseline = self.pack_count()
            except OSError:
                pass

    def _maybe_merge(self) -> None:
        self._writes += 1
        if self._writes % 4:
            return  # look at the pack directory every few writes, not every one
        count = self.pack_count()
        if count < self._merge_baseline + MERGE_FAN_IN:
            return  # not enough new packs since the last look to fill a tier
        lock_path = os.path.join(self.gitdir, "gitstore", "locks", "merge")
        makedirs(os.path.dirname(lock_path), self.shared)
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write
        if self.shared is not None:
            self.shared(lock_path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another writer is merging
            # list the packs only now: a merge that just finished removed some
            for bases in self._full_tiers():
                self._merge(bases)
            self._merge_baseline = max(0, self.pack_count() - MERGE_FAN_IN // 2)
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
            # a partial fetch's packs (git's .promisor marker) merge among themselves only
            tiers.setdefault(-1 - tier if os.path.exists(base + ".promisor") else tier,
                             []).append(base)
        return [bases for bases in tiers.values() if len(bases) >= MERGE_FAN_IN]

    def _merge(self, bases: list[str]) -> None:
        """Merge packs into one, streamed: entries go from file to file through a bounded
        window, never a whole pack in memory (about 70 bytes per object are kept: its id,
        offsets and checksums). Each object is kept once (its copy from the first pack
        that has it); a delta (a fetched pack's, or one ``git gc`` wrote) is resolved and
        written whole, since its base may not be kept from the same pack."""
        inputs: list[_MergeInput] = []
        try:
            for base in bases:
                try:
                    inputs.append(_MergeInput(base))
                except (FileNotFoundError, ValueError):
                    continue  # removed by `git gc` meanwhile, or an index we do not read
            if len(inputs) < 2:
                return
            newest = 0.0
            for inp in inputs:
                newest = max(newest, inp.mtime)
            # a partial fetch's packs merge among themselves and stay marked (see _full_tiers)
            promisor = os.path.exists(inputs[0].base + ".promisor")
            self._write_merged(inputs, newest, promisor)
        finally:
            for inp in inputs:
                inp.close()
        present = [inp.base for inp in inputs]
        self._drop_packs(present)
        names = set(os.listdir(self.pack_dir))
        for base in present:
            # .idx first: without it readers ignore the pack; dulwich re-scans on a miss
            _unlink(base + ".idx")
            _unlink(base + ".pack")
            for ext in (".rev", ".bitmap", ".mtimes", ".promisor"):  # git's own companions (a repack's)
                if os.path.basename(base) + ext in names:
                    _unlink(base + ext)

    def _place_pack(self, tmp_pack: str, tmp_idx: str, final: str, mtime: float | None,
                    promisor: bool) -> None:
        """Make a written pack visible: modes, time, the ``.promisor`` marker, then the pack and
        last its index (readers ignore a pack without one). The index file is removed if this
        fails; the caller removes the pack file."""
        try:
            if self.shared is not None:
                self.shared(tmp_pack)
                self.shared(tmp_idx)
            if mtime is not None:
                os.utime(tmp_pack, (mtime, mtime))
            if promisor:  # before the index makes the pack visible
                with open(final + ".promisor", "w"):
                    pass
            os.rename(tmp_pack, final + ".pack")
            os.rename(tmp_idx, final + ".idx")
        except BaseException:
            _unlink(tmp_idx)
            raise

    def _write_merged(self, inputs: list[_MergeInput], mtime: float,
                      promisor: bool = False) -> None:
        # which copy of each id is kept: the k-way merge of the indexes' sorted ids
        keep = [bytearray(inp.count) for inp in inputs]
        total, last = 0, b""
        for name, k, j in heapq.merge(*(inp.names(k) for k, inp in enumerate(inputs))):
            if name != last:
                keep[k][j] = 1
                total += 1
                last = name
        new_offsets = [array("Q", bytes(8 * inp.count)) for inp in inputs]
        crcs = [array("I", bytes(4 * inp.count)) for inp in inputs]
        checksum = hashlib.sha1()
        tmp_pack = _temp_path(self.pack_dir, ".pack")
        try:
            with open(os.open(tmp_pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444), "wb",
                      buffering=1 << 20) as out:
                def put(part: bytes) -> None:
                    out.write(part)
                    checksum.update(part)

                put(b"PACK" + struct.pack(">LL", 2, total))
                at = 12
                for k, inp in enumerate(inputs):
                    kept, offsets, sums = keep[k], new_offsets[k], crcs[k]
                    # runs of kept entries go as they are (with their checksums from the
                    # index), a window at a time; a delta is resolved and written whole
                    run_from = run_to = -1
                    for j, start, end in [*inp.entries(), (-1, -1, -1)]:
                        if run_from >= 0 and (j < 0 or not kept[j] or start != run_to or
                                              inp.is_delta(start)):
                            for part in inp.span(run_from, run_to):
                                put(part)
                            at += run_to - run_from
                            run_from = run_to = -1
                        if j < 0 or not kept[j]:
                            continue
                        if inp.is_delta(start):
                            chunk = inp.resolve(j, self)
                            offsets[j], sums[j] = at, zlib.crc32(chunk)
                            put(chunk)
                            at += len(chunk)
                            continue
                        if run_from < 0:
                            run_from = start
                        offsets[j] = at + start - run_from
                        sums[j] = inp.crc(j)
                        run_to = end
                digest = checksum.digest()
                out.write(digest)
            final = os.path.join(self.pack_dir, "pack-" + digest.hex())
            tmp_idx = _write_temp(self.pack_dir, ".idx",
                                  _merged_index(inputs, keep, new_offsets, crcs, digest))
            self._place_pack(tmp_pack, tmp_idx, final, mtime, promisor)
        except BaseException:
            _unlink(tmp_pack)
            raise
        self._add_pack(final, at + 20)


class WriteGate:
    """Keeps ``gc`` from deleting objects a writer has written but not yet referenced.

    Protocol (two flock files under ``gitstore/locks/``; the kernel drops a dead holder's lock):

    * a writer holds ``objects`` *shared* from before it writes its first object (a large
      loose blob, a pack, a merged pack) until the ref that makes them reachable has moved
      (:meth:`shared`, re-entrant per thread, so a batch holds it once for its whole block);
      writers never wait for each other;
    * ``gc`` takes ``objects`` *exclusive* (:meth:`exclusive`): while it holds it, no writer
      has an object in flight, so every object unreachable from the refs is garbage and can
      go at once, and every temporary file is a dead writer's;
    * ``gate`` keeps a steady stream of writers from starving ``gc``: a writer takes it shared
      just long enough to take ``objects``, and ``gc`` holds it exclusive while it waits for
      ``objects``, so new writers queue behind ``gc`` (they wait while it runs).
    """

    def __init__(self, gitdir: str, shared: Callable[[str], None] | None = None) -> None:
        self.lockdir = os.path.join(gitdir, "gitstore", "locks")
        self.shared_perm = shared  # core.sharedRepository: modes for the files made here
        self._local = threading.local()
        self._all: list[int] = []
        self._all_lock = threading.Lock()

    def _fds(self) -> tuple[int, int]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # a fork: its own descriptions
            local.pid, local.fds, local.depth = os.getpid(), None, 0
        if local.fds is None:
            makedirs(self.lockdir, self.shared_perm)
            # read-only descriptors: flock needs no write access, so another member of a
            # group-shared store can take the gate on files it did not create
            gate = os.open(os.path.join(self.lockdir, "gate"),
                           os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                objects = os.open(os.path.join(self.lockdir, "objects"),
                                  os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except BaseException:
                os.close(gate)
                raise
            local.fds = (gate, objects)
            if self.shared_perm is not None:
                for name in ("gate", "objects"):
                    self.shared_perm(os.path.join(self.lockdir, name))
            with self._all_lock:
                self._all.extend(local.fds)
        fds_: tuple[int, int] = local.fds
        return fds_

    @property
    def held(self) -> bool:
        """Whether this thread holds the shared lock."""
        return getattr(self._local, "pid", None) == os.getpid() and self._local.depth > 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold ``objects`` shared (re-entrant): objects written meanwhile are safe from gc."""
        gate, objects = self._fds()
        local = self._local
        if local.depth == 0:
            fcntl.flock(gate, fcntl.LOCK_SH)
            try:
                fcntl.flock(objects, fcntl.LOCK_SH)
            finally:
                fcntl.flock(gate, fcntl.LOCK_UN)
        local.depth += 1
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0:
                fcntl.flock(objects, fcntl.LOCK_UN)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold ``objects`` exclusive: waits for the writers in flight, holds off new ones."""
        gate, objects = self._fds()
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(objects, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(objects, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock files of every thread (the store is being closed)."""
        with self._all_lock:
            for fd in self._all:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._all.clear()
        self._local = threading.local()



class _MergeInput:
    """One pack being merged: its index read whole (28 bytes per object), its entries read
    through a window of at most :attr:`WINDOW` bytes.

    Raises:
        ValueError: the index is not version 2, or does not fit its pack (the pack is left
            out of the merge, as it is).
    """

    WINDOW = 1 << 20

    def __init__(self, base: str) -> None:
        self.base = base
        with open(base + ".idx", "rb") as f:
            idx = f.read()
        if idx[:8] != b"\377tOc\x00\x00\x00\x02":
            raise ValueError("not a version-2 pack index")
        (count,) = struct.unpack_from(">L", idx, 8 + 255 * 4)
        if len(idx) < 1032 + 28 * count + 40:
            raise ValueError("truncated pack index")
        self.idx, self.count = idx, count
        small = _big_endian("I", idx[1032 + 24 * count:1032 + 28 * count])
        offsets = array("Q", small)
        for i, offset in enumerate(small):
            if offset & 0x80000000:  # over 2 GiB: in the 64-bit table
                at = 1032 + 28 * count + 8 * (offset & 0x7FFFFFFF)
                if at + 8 > len(idx) - 40:
                    raise ValueError("truncated pack index")
                offsets[i] = struct.unpack_from(">Q", idx, at)[0]
        self.fd = os.open(base + ".pack", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.fstat(self.fd)
            self.size, self.mtime = stat.st_size, stat.st_mtime
            order = sorted(range(count), key=offsets.__getitem__)
            ends = [offsets[j] for j in order[1:]] + [self.size - 20]
            if count and (offsets[order[0]] < 12 or
                          any(offsets[j] >= end for j, end in zip(order, ends))):
                raise ValueError("pack index offsets outside its pack")
        except BaseException:
            os.close(self.fd)
            raise
        self.offsets = offsets
        self._order = array("I", order)
        self._window, self._window_at = b"", 0
        self._dulwich: Any = None

    def names(self, k: int) -> Iterator[tuple[bytes, int, int]]:
        """(id, ``k``, position) of every object, in id order (for heapq.merge)."""
        idx = self.idx
        for j in range(self.count):
            yield idx[1032 + 20 * j:1052 + 20 * j], k, j

    def entries(self) -> Iterator[tuple[int, int, int]]:
        """(position, start, end) of every entry, in the order of the pack."""
        order, offsets = self._order, self.offsets
        for n, j in enumerate(order):
            end = offsets[order[n + 1]] if n + 1 < len(order) else self.size - 20
            yield j, offsets[j], end

    def _read(self, start: int, end: int) -> bytes:
        window, at = self._window, self._window_at
        if at <= start and end <= at + len(window):
            return window[start - at:end - at]
        self._window = os.pread(self.fd, max(end - start, self.WINDOW), start)
        self._window_at = start
        if len(self._window) < end - start:
            raise OSError(f"{self.base}.pack ends early")
        return self._window[:end - start]

    def is_delta(self, start: int) -> bool:
        return (self._read(start, start + 1)[0] >> 4) & 7 in (6, 7)

    def crc(self, j: int) -> int:
        """The checksum the index holds for the entry (copied as it is, it stays right)."""
        return int(struct.unpack_from(">L", self.idx, 1032 + 20 * self.count + 4 * j)[0])

    def span(self, start: int, end: int) -> Iterator[bytes]:
        """The pack's bytes from ``start`` to ``end``, in parts of at most :attr:`WINDOW`."""
        for at in range(start, end, self.WINDOW):
            yield self._read(at, min(end, at + self.WINDOW))

    def resolve(self, j: int, db: ObjectDB) -> bytes:
        """The delta at position ``j`` as a whole object's pack entry."""
        raw = self.idx[1032 + 20 * j:1052 + 20 * j]
        if self._dulwich is None:
            from dulwich.object_format import SHA1  # on first use: dulwich.pack costs
            from dulwich.pack import Pack          # ~20 ms of CPU to import

            self._dulwich = Pack(self.base, object_format=SHA1)
        try:
            type_num, data = self._dulwich.get_raw(raw)
        except KeyError:  # its base is in another pack
            type_num, data = db.store.get_raw(raw.hex().encode())
        data = bytes(data) if not isinstance(data, bytes) else data
        return _pack_header(type_num, len(data)) + _deflate(type_num, data)

    def close(self) -> None:
        os.close(self.fd)
        if self._dulwich is not None:
            self._dulwich.close()
            self._dulwich = None


def _big_endian(code: str, data: bytes) -> array[int]:
    """``data`` as an array of big-endian unsigned integers."""
    out = array(code)
    out.frombytes(data)
    if sys.byteorder == "little":
        out.byteswap()
    return out


def _merged_index(inputs: list[_MergeInput], keep: list[bytearray],
                  offsets: list[array[int]], crcs: list[array[int]], checksum: bytes
                  ) -> list[bytes]:
    """The version-2 index of a merged pack, its ids in order from a k-way merge of the
    inputs' indexes (no sort, no Python object per id)."""
    names = bytearray()
    sums = array("I")
    small = array("I")
    large = array("Q")
    for name, k, j in heapq.merge(*(inp.names(k) for k, inp in enumerate(inputs))):
        if keep[k][j]:
            names += name
            sums.append(crcs[k][j])
            offset = offsets[k][j]
            if offset < 0x80000000:
                small.append(offset)
            else:  # 64-bit offsets go to a table of their own
                small.append(0x80000000 | len(large))
                large.append(offset)
    counts = [0] * 256
    for first in names[::20]:
        counts[first] += 1
    for table in (sums, small, large):
        if sys.byteorder == "little":
            table.byteswap()
    body = [b"\377tOc", struct.pack(">L", 2),
            struct.pack(">256L", *itertools.accumulate(counts)), bytes(names),
            sums.tobytes(), small.tobytes(), large.tobytes(), checksum]
    digest = hashlib.sha1()
    for part in body:
        digest.update(part)
    return [*body, digest.digest()]


def _index_v2(entries: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    """A version-2 pack index (git's ``Documentation/gitformat-pack.txt``)."""
    entries = sorted(entries)
    counts = [0] * 256
    for raw_id, _offset, _crc in entries:
        counts[raw_id[0]] += 1
    fanout = list(itertools.accumulate(counts))
    n = len(entries)
    small: list[int] = []
    large: list[int] = []
    for _raw_id, offset, _crc in entries:
        if offset < 0x80000000:
            small.append(offset)
        else:  # 64-bit offsets go to a table of their own
            small.append(0x80000000 | len(large))
            large.append(offset)
    body = b"".join([
        b"\377tOc", struct.pack(">L", 2), struct.pack(">256L", *fanout),
        b"".join(r for r, _o, _c in entries),
        struct.pack(f">{n}L", *(c for _r, _o, c in entries)),
        struct.pack(f">{n}L", *small),
        struct.pack(f">{len(large)}Q", *large),
        pack_checksum,
    ])
    return body + hashlib.sha1(body).digest()


_TEMP_COUNTER = itertools.count()


def _temp_path(directory: str, suffix: str) -> str:
    # pid + thread + counter make the name unique without mkstemp's retries; git's own
    # `tmp_pack_*` convention lets `git gc` clean up what a killed writer left
    name = f"tmp_pack_gitstore_{os.getpid()}_{threading.get_ident()}_{next(_TEMP_COUNTER)}"
    return os.path.join(directory, name + suffix)


def _write_temp(directory: str, suffix: str, parts: list[bytes]) -> str:
    path = _temp_path(directory, suffix)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except BaseException:
        _unlink(path)
        raise
    return path


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
