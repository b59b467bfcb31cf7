"""Building the pack a push sends, from gitstore's own packs (plumbing).

What to send (:func:`missing_objects`): the commits reachable from the pushed tips and not from
the remote's, painted in date order as git does; then, for each of those commits, the trees and
blobs of its tree that sit neither at the same place in its parents' trees nor in the trees of
the remote's commits its history starts from (git's "edges", whose trees the remote holds).
Trees are compared as sets of raw entries, each tree parsed once by one regular expression (C
speed) into ``{b"<mode> <name>": raw id}``: a store built one commit per store changes one path
a commit, so each commit costs a few set differences of small trees, not a walk of every root.

How to send it: a tree goes as a delta against its first parent's tree at the same place when
that tree went earlier in the pack (the common prefix and suffix copied, the changed entries
inserted: a few dozen bytes where a fan-out tree holds ~7 KB; chains of at most 50, as git's
``pack.depth``). Other objects that sit undeltified in gitstore's packs are found through the
packs' indexes (their fan-out, then a search of the sorted names, the pack that answered last
asked first) and sent as their compressed bytes, checked against the index's CRC-32: nothing is
inflated or deflated again. Deltas of the store's own (after ``git repack``) are resolved
through dulwich and sent whole; large loose blobs are streamed. No thin packs.

An object the remote holds only at another place (the same value stored under another key) is
sent again if no edge holds it at the same place; git's receive-pack keeps one copy.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import mmap
import os
import re
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import CorruptEntryError
from .large import LARGE, LooseReader, pack_entry_header
from .objects import _TYPE_NAMES, COMMIT, TREE, ObjectDB, _pack_header, _parse_tree

if TYPE_CHECKING:
    from dulwich.pack import UnpackedObject

__all__ = ["generate_pack_data", "missing_objects"]

BLOB = 3
_DIR = b"40000 "
_GITLINK = b"160000 "
_BLOB_MODES = (b"100644 ", b"100755 ", b"120000 ")
#: one tree entry: ``<mode> <name>\0<20-byte id>``
_ENTRY = re.compile(rb"([0-7]+ [^\x00]*)\x00(.{20})", re.S)
#: pack entries larger than this are sent in pieces of this size
_PIECE = 4 << 20
#: trees and commits read straight from a pack up to this size (larger: through ObjectDB.read,
#: which enforces the limits on what a tree or commit may declare)
_DIRECT = 16 << 20
_TREES_KEPT = 1024  # a fan-out tree of 256 entries takes ~40 KB parsed
#: copied bytes written to the socket at a time
_GROUP = 256 << 10
#: the longest chain of deltas sent (git's pack.depth)
_DEPTH = 50

Tree = dict[bytes, bytes]  # b"<mode> <name>" -> raw id


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _copy(offset: int, size: int) -> bytes:
    """A delta's copy instruction (git's ``Documentation/gitformat-pack.txt``)."""
    cmd, out = 0x80, bytearray()
    for i in range(4):
        if (offset >> 8 * i) & 0xFF:
            cmd |= 1 << i
            out.append((offset >> 8 * i) & 0xFF)
    for i in range(3):
        if (size >> 8 * i) & 0xFF:
            cmd |= 0x10 << i
            out.append((size >> 8 * i) & 0xFF)
    return bytes([cmd]) + out


def _common_ends(old: bytes, new: bytes) -> tuple[int, int]:
    """The lengths of the common prefix and (not overlapping it) suffix of two byte strings,
    by XOR of their bytes as integers (C speed)."""
    n_old, n_new = len(old), len(new)
    m = min(n_old, n_new)
    x = int.from_bytes(old[:m], "big") ^ int.from_bytes(new[:m], "big")
    prefix = m - (x.bit_length() + 7) // 8
    y = int.from_bytes(old[n_old - m:], "big") ^ int.from_bytes(new[n_new - m:], "big")
    suffix = m if not y else ((y & -y).bit_length() - 1) // 8
    return prefix, min(suffix, m - prefix)


def _delta(old: bytes, new: bytes, prefix: int, suffix: int) -> bytes | None:
    """A git delta making ``new`` from ``old``: their common ``prefix`` and ``suffix`` copied,
    what lies between inserted; None unless it saves most of ``new`` (a commit changes few
    entries of a tree, so its tree and its parent's share nearly all their bytes)."""
    n_old, n_new = len(old), len(new)
    if 2 * (prefix + suffix) < n_new or max(n_old, n_new) >= 1 << 24:
        return None
    out = [_varint(n_old), _varint(n_new)]
    if prefix:
        out.append(_copy(0, prefix))
    middle = new[prefix:n_new - suffix]
    for at in range(0, len(middle), 127):
        piece = middle[at:at + 127]
        out.append(bytes([len(piece)]) + piece)
    if suffix:
        out.append(_copy(n_old - suffix, suffix))
    return b"".join(out)


class _Pack:
    """One pack and its version-2 index, both mapped (no file descriptor stays open)."""

    def __init__(self, base: str) -> None:
        self.idx = _map(base + ".idx")
        try:
            self.data = _map(base + ".pack")
        except BaseException:
            self.idx.close()
            raise
        idx = self.idx
        if len(idx) < 8 + 1024 + 40 or idx[:8] != b"\377tOc\x00\x00\x00\x02":
            raise ValueError("not a version-2 pack index")
        self.fanout = struct.unpack_from(">256L", idx, 8)
        self.count = self.fanout[255]
        self.names_at = 8 + 1024
        self.crcs_at = self.names_at + 20 * self.count
        self.offsets_at = self.crcs_at + 4 * self.count
        self.large_at = self.offsets_at + 4 * self.count
        if len(idx) < self.large_at + 40:
            raise ValueError("truncated pack index")
        self._ends: array[int] | None = None

    def find(self, raw: bytes) -> int | None:
        """The position of an object in the index, or None."""
        first = raw[0]
        lo = self.fanout[first - 1] if first else 0
        start, stop = self.names_at + 20 * lo, self.names_at + 20 * self.fanout[first]
        at = self.idx.find(raw, start, stop)
        while at >= 0 and (at - self.names_at) % 20:  # straddles two names: look further
            at = self.idx.find(raw, at + 1, stop)
        return None if at < 0 else (at - self.names_at) // 20

    def offset(self, i: int) -> int:
        offset: int = struct.unpack_from(">L", self.idx, self.offsets_at + 4 * i)[0]
        if offset & 0x80000000:
            offset = struct.unpack_from(">Q", self.idx,
                                        self.large_at + 8 * (offset & 0x7FFFFFFF))[0]
        return offset

    def crc(self, i: int) -> int:
        crc: int = struct.unpack_from(">L", self.idx, self.crcs_at + 4 * i)[0]
        return crc

    def end(self, offset: int) -> int:
        """Where the entry starting at ``offset`` ends (the next entry, or the trailer)."""
        if self._ends is None:
            small = struct.unpack_from(f">{self.count}L", self.idx, self.offsets_at)
            offsets = [self.offset(i) if o & 0x80000000 else o for i, o in enumerate(small)] \
                if any(o & 0x80000000 for o in small) else list(small)
            offsets.sort()
            offsets.append(len(self.data) - 20)
            self._ends = array("Q", offsets)
        return self._ends[bisect.bisect_right(self._ends, offset)]

    def close(self) -> None:
        self.idx.close()
        self.data.close()


def _map(path: str) -> mmap.mmap:
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


class _Objects:
    """Reads for one push: commits and trees parsed once, objects located in the packs."""

    def __init__(self, db: ObjectDB) -> None:
        self.db = db
        self.packs: list[_Pack] = []
        try:
            names = sorted(os.listdir(db.pack_dir))
        except FileNotFoundError:
            names = []
        for name in names:
            if name.endswith(".idx"):
                try:
                    self.packs.append(_Pack(os.path.join(db.pack_dir, name[:-4])))
                except (OSError, ValueError, struct.error):
                    continue  # merged away meanwhile, or unreadable: ObjectDB.read finds it
        self._last = 0
        # tree id -> (entries, raw content, width of every entry or 0)
        self._trees: dict[bytes, tuple[Tree, bytes, int]] = {}
        self.commits: dict[bytes, tuple[int, bytes, list[bytes]]] = {}
        #: tree id -> (base tree id, git delta from the base): a tree against its first
        #: parent's at the same place (sent as a delta when that base is sent before it)
        self.deltas: dict[bytes, tuple[bytes, bytes]] = {}

    def close(self) -> None:
        for pack in self.packs:
            pack.close()
        self.packs = []

    def locate(self, raw: bytes) -> tuple[_Pack, int] | None:
        n = len(self.packs)
        for k in range(n):
            at = (self._last + k) % n
            i = self.packs[at].find(raw)
            if i is not None:
                self._last = at  # a commit's objects share a pack: ask this one first next
                return self.packs[at], i
        return None

    def read(self, raw: bytes, type_num: int) -> bytes:
        """The content of a tree or commit, checked against its id.

        Raises:
            CorruptEntryError: missing, damaged, or not of this type.
        """
        found = self.locate(raw)
        if found is not None:
            pack, i = found
            offset = pack.offset(i)
            head = pack.data[offset:offset + 32]
            try:
                kind, size, length = pack_entry_header(head)
            except IndexError:
                kind, size, length = 0, 0, 0
            if kind == type_num and size <= _DIRECT:
                # deflate's worst case (zlib's compressBound) bounds what to read
                stop = offset + length + size + (size >> 12) + (size >> 14) + 64
                inflater = zlib.decompressobj()
                try:
                    data = inflater.decompress(pack.data[offset + length:stop], size + 1)
                except zlib.error:
                    data = b""
                if len(data) == size and inflater.eof and hashlib.sha1(
                        _TYPE_NAMES[type_num] + b" %d\x00" % size + data).digest() == raw:
                    return data
        # a delta, a loose object, or a damaged copy: ObjectDB checks it and tries other copies
        return self.db.read(raw.hex().encode(), type_num)

    def commit(self, raw: bytes) -> tuple[int, bytes, list[bytes]]:
        """(commit time, raw tree id, raw parent ids) of a commit.

        Raises:
            CorruptEntryError: missing, damaged or malformed.
        """
        found = self.commits.get(raw)
        if found is None:
            header = self.read(raw, COMMIT).partition(b"\n\n")[0].split(b"\n")
            try:
                if not header[0].startswith(b"tree ") or len(header[0]) != 45:
                    raise ValueError
                tree = bytes.fromhex(header[0][5:].decode())
                parents = [bytes.fromhex(line[7:].decode()) for line in header
                           if line.startswith(b"parent ")]
                when = next((int(line.rsplit(b" ", 2)[1]) for line in header
                             if line.startswith(b"committer ")), 0)
            except (ValueError, IndexError, UnicodeDecodeError):
                raise CorruptEntryError(f"commit {raw.hex()} is malformed",
                                        expected=raw.hex()) from None
            found = self.commits[raw] = (when, tree, parents)
        return found

    def tree(self, raw: bytes) -> Tree:
        """A tree's entries, ``{b"<mode> <name>": raw id}``.

        Raises:
            CorruptEntryError: missing, damaged or malformed.
        """
        found = self._trees.get(raw)
        if found is None:
            return self._parse(raw, self.read(raw, TREE))
        return found[0]

    def _parse(self, raw: bytes, data: bytes) -> Tree:
        entries = dict(_ENTRY.findall(data))
        if sum(map(len, entries)) + 21 * len(entries) != len(data):
            # not read whole by the expression (or a name twice): parse it strictly
            try:
                parsed = _parse_tree(data)[0]
            except ValueError:
                raise CorruptEntryError(f"tree {raw.hex()} is malformed",
                                        expected=raw.hex()) from None
            entries = {b"%o %s" % (mode, name): bytes.fromhex(sha.decode())
                       for name, (mode, sha) in parsed.items()}
        sizes = set(map(len, entries))
        self._keep(raw, entries, data, sizes.pop() + 21 if len(sizes) == 1 else 0)
        return entries

    def _keep(self, raw: bytes, entries: Tree, data: bytes, width: int) -> None:
        if len(self._trees) >= _TREES_KEPT:
            del self._trees[next(iter(self._trees))]
        self._trees[raw] = (entries, data, width)

    def diff(self, raw: bytes, base: bytes | None) -> tuple[Tree, Iterable[tuple[bytes, bytes]]]:
        """A tree's entries, and those of them ``base`` (a tree) does not hold.

        gitstore's fan-out trees hold entries of one width (``40000 ab``, ``40000 <key>``) and
        a commit changes few of them, so when ``base`` is such a tree and the new tree has its
        length, the bytes that differ are found by one XOR of the two trees as integers, and
        only the entries spanning them are parsed: everything before is the same bytes at the
        same entry boundaries, and so is everything after once the parse of the new tree
        lands on a boundary of ``base``'s.

        Raises:
            CorruptEntryError: missing, damaged or malformed.
        """
        if base is None:
            mine = self.tree(raw)
            return mine, mine.items()
        old = self._trees.get(base)
        if old is None:
            self.tree(base)
            old = self._trees[base]
        old_entries, old_data, width = old
        found = self._trees.get(raw)
        if found is not None:
            return found[0], found[0].items() - old_entries.items()
        data = self.read(raw, TREE)
        size = len(data)
        if size == len(old_data):
            x = int.from_bytes(data, "big") ^ int.from_bytes(old_data, "big")
            first = size - (x.bit_length() + 7) // 8  # the first byte that differs
            last = size - 1 - ((x & -x).bit_length() - 1) // 8  # the last one
            ends = (first, size - 1 - last) if x else (size, 0)
        else:
            ends = _common_ends(old_data, data) if min(size, len(old_data)) >= 256 else (0, 0)
        delta = _delta(old_data, data, *ends) if size >= 256 else None
        if delta is not None:
            self.deltas[raw] = (base, delta)
        if width and size == len(old_data):
            start, stop = first - first % width, last - last % width + width
            window = _ENTRY.findall(data, start, stop)
            if x and len(window) * width == stop - start and \
                    all(len(head) + 21 == width for head, _id in window):
                mine = old_entries.copy()
                before = _ENTRY.findall(old_data, start, stop)
                for head, _id in before:
                    del mine[head]
                mine.update(window)
                if len(mine) * width == size:  # no name twice
                    self._keep(raw, mine, data, width)
                    return mine, set(window).difference(before)
        mine = self._parse(raw, data)
        return mine, mine.items() - old_entries.items()


def _paint(objects: _Objects, want: set[bytes], have: set[bytes]) -> set[bytes]:
    """The commits reachable from ``want`` and not from ``have``: a walk in date order (as
    git's). It goes on while a commit reachable from ``have`` is as recent as the oldest
    commit found new so far (it could still reach it: commits made in the same second, a
    store's usual case, are in no reliable order). Clock skew can only leave a commit the
    remote holds counted as new (sent again), never the reverse."""
    interesting, uninteresting = 1, 2
    flag: dict[bytes, int] = {}
    heap: list[tuple[int, int, bytes]] = []
    counter = itertools.count()
    waiting: set[bytes] = set()  # interesting commits in the heap
    done: set[tuple[bytes, int]] = set()
    oldest = 1 << 62  # the time of the oldest commit flagged interesting

    def push(sha: bytes, when: int, state: int) -> None:
        nonlocal oldest
        flag[sha] = state
        if state == interesting:
            waiting.add(sha)
            oldest = min(oldest, when)
        else:
            waiting.discard(sha)
        heapq.heappush(heap, (-when, next(counter), sha))

    for sha in have:
        push(sha, objects.commit(sha)[0], uninteresting)
    for sha in want:
        if sha not in flag:
            push(sha, objects.commit(sha)[0], interesting)
    while heap and (waiting or -heap[0][0] >= oldest):
        _when, _n, sha = heapq.heappop(heap)
        state = flag[sha]
        if (sha, state) in done:
            continue
        done.add((sha, state))
        waiting.discard(sha)
        if state == uninteresting:
            try:
                parents = objects.commit(sha)[2]
            except CorruptEntryError:
                continue  # a commit of the remote's we cannot read limits nothing
            for parent in parents:
                if flag.get(parent) != uninteresting:
                    try:
                        when = objects.commit(parent)[0]
                    except CorruptEntryError:
                        continue
                    push(parent, when, uninteresting)
        else:
            for parent in objects.commit(sha)[2]:
                if parent not in flag:
                    push(parent, objects.commit(parent)[0], interesting)
    return {sha for sha, state in flag.items() if state == interesting}


def _parents_first(objects: _Objects, commits: set[bytes]) -> list[bytes]:
    order: list[bytes] = []
    seen: set[bytes] = set()
    for start in sorted(commits):
        stack = [(start, False)]
        while stack:
            sha, expanded = stack.pop()
            if expanded:
                order.append(sha)
                continue
            if sha in seen:
                continue
            seen.add(sha)
            stack.append((sha, True))
            stack.extend((p, False) for p in objects.commit(sha)[2]
                         if p in commits and p not in seen)
    return order


def _new_in_tree(objects: _Objects, tree: bytes, bases: list[bytes], sent: set[bytes],
                 out: list[tuple[int, bytes]]) -> None:
    """Add to ``out`` what ``tree`` holds that ``bases`` (trees at the same place, which the
    remote holds or receives; the first parent's first) do not, skipping what is in ``sent``."""
    stack = [(tree, bases)]
    while stack:
        sha, here = stack.pop()
        if sha in sent or sha in here:
            continue
        sent.add(sha)
        out.append((TREE, sha))
        mine, new = objects.diff(sha, here[0] if here else None)
        theirs = [objects.tree(base) for base in here]
        if len(theirs) > 1:
            new = [(head, child) for head, child in new
                   if all(t.get(head) != child for t in theirs[1:])]
        for head, child in new:
            if head.startswith(_DIR):
                stack.append((child, list(dict.fromkeys(t[head] for t in theirs if head in t))))
            elif child not in sent and not head.startswith(_GITLINK):
                name = head.partition(b" ")[2]
                if any(t.get(mode + name) == child for t in theirs for mode in _BLOB_MODES):
                    continue  # the same blob, only its mode changed
                sent.add(child)
                out.append((BLOB, child))


def missing_objects(db: ObjectDB, want: set[bytes], have: set[bytes]) -> list[tuple[int, bytes]]:
    """``(type, hex id)`` of each object reachable from ``want`` that a remote holding
    ``have`` (hex commit ids; those this store lacks are ignored) lacks, each once.

    Raises:
        CorruptEntryError: an object to send, or a commit or tree leading to one, is missing
            or damaged.
    """
    objects = _Objects(db)
    try:
        return [(t, raw.hex().encode()) for t, raw in _missing(objects, want, have)]
    finally:
        objects.close()


def _missing(objects: _Objects, want: set[bytes], have: set[bytes]) -> list[tuple[int, bytes]]:
    known_have = set()
    for sha in have:
        raw = bytes.fromhex(sha.decode())
        try:
            objects.commit(raw)
        except CorruptEntryError:
            continue  # a commit this store never saw (another machine's): no help
        known_have.add(raw)
    wanted = {bytes.fromhex(sha.decode()) for sha in want}
    new = _paint(objects, wanted, known_have)
    out: list[tuple[int, bytes]] = []
    sent: set[bytes] = set()
    edges_of: dict[bytes, frozenset[bytes]] = {}
    for commit in _parents_first(objects, new):
        _when, tree, parents = objects.commit(commit)
        edges: frozenset[bytes] = frozenset()
        for parent in parents:
            mine = edges_of[parent] if parent in new else frozenset((parent,))
            edges = mine if not edges or edges == mine else edges | mine
        edges_of[commit] = edges
        bases: dict[bytes, None] = {}  # ordered: the first parent's tree first
        for base in itertools.chain(parents, sorted(edges)):
            try:
                bases[objects.commit(base)[1]] = None
            except CorruptEntryError:
                if base in new:
                    raise
                # an edge we cannot read: no help, what it would have excluded is sent
        sent.add(commit)
        out.append((COMMIT, commit))
        _new_in_tree(objects, tree, list(bases), sent, out)
    return out


def _loose_entry(path: str, sha: bytes) -> Iterator[bytes]:
    """A large loose blob as a pack entry, streamed: the pack header, then its content in a new
    zlib stream of stored blocks (the loose file's stream also covers git's object header, so it
    cannot be copied). The object's id is checked when the last byte has been read."""
    reader = LooseReader(path, sha)
    try:
        yield _pack_header(3, reader.size)
        yield b"\x78\x01"
        adler, left = 1, reader.size
        if not left:
            yield struct.pack("<BHH", 1, 0, 0xFFFF)
        while left:
            data = reader.read(min(left, 4 << 20))
            if not data:
                raise reader._corrupt("truncated")
            adler = zlib.adler32(data, adler)
            for start in range(0, len(data), 65535):
                block = data[start: start + 65535]
                left -= len(block)
                yield struct.pack("<BHH", 1 if left == 0 else 0, len(block),
                                  len(block) ^ 0xFFFF) + block
        yield struct.pack(">L", adler & 0xFFFFFFFF)
        reader.finish()
    finally:
        reader.close()


def _pieces(pack: _Pack, start: int, end: int, crc: int, sha: bytes) -> Iterator[bytes]:
    """A large pack entry, sent in pieces; its CRC-32 is checked once the last is read (a
    mismatch ends the push: the remote discards a pack that stops short)."""
    got = 0
    for at in range(start, end, _PIECE):
        piece = pack.data[at:min(end, at + _PIECE)]
        got = zlib.crc32(piece, got)
        yield piece
    if got != crc:
        raise CorruptEntryError(f"object {sha.decode()} is damaged in its pack (CRC-32)",
                                expected=sha.decode())


def _record(objects: _Objects, type_num: int, raw: bytes) -> UnpackedObject:
    from dulwich.pack import UnpackedObject  # (importing gitstore does not pay for it)

    sha = raw.hex().encode()
    found = objects.locate(raw)
    if found is not None:
        pack, i = found
        start = pack.offset(i)
        end = pack.end(start)
        if start < end <= len(pack.data) and (pack.data[start] >> 4) & 7 == type_num:
            record = UnpackedObject(type_num, sha=raw, decomp_chunks=[])
            if end - start > _PIECE:
                record.comp_chunks = _pieces(pack, start, end, pack.crc(i), sha)  # type: ignore
                return record
            chunk = pack.data[start:end]
            if zlib.crc32(chunk) == pack.crc(i):
                record.comp_chunks = [chunk]  # header and deflated data, sent as they are
                return record
    loose = os.path.join(objects.db.gitdir, "objects", sha[:2].decode(), sha[2:].decode())
    if type_num == BLOB and os.path.exists(loose) and os.path.getsize(loose) >= LARGE:
        record = UnpackedObject(type_num, sha=raw, decomp_chunks=[])
        record.comp_chunks = _loose_entry(loose, sha)  # type: ignore[assignment]
        return record
    data = objects.db.read(sha, type_num)  # checked; a delta resolved, another copy found
    return UnpackedObject(type_num, sha=raw, decomp_chunks=[data], decomp_len=len(data))


def _ofs(distance: int) -> bytes:
    """An OFS_DELTA's distance back to its base (git's big-endian varint, each continuation
    adding one)."""
    out = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


class _Counted:
    """A streamed entry's chunks, counting the bytes that went by."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.size += len(chunk)
            yield chunk


def _entries(objects: _Objects, found: list[tuple[int, bytes]], ofs_delta: bool
             ) -> Iterator[UnpackedObject]:
    """The records of the pack, in order. A tree whose delta base (its first parent's tree at
    the same place) went before it goes as a delta (at most :data:`_DEPTH` deep, as git's
    ``pack.depth``): an OFS_DELTA when the remote takes them, else a REF_DELTA naming a base
    in the same pack (never a thin pack). The copied bytes of up to :data:`_GROUP` bytes of
    consecutive records ride on the first of them (the others carry none): dulwich writes each
    record's chunks to the socket as they come, one system call each, which cost more than
    finding the objects. The pack's bytes are the same, in the same order."""
    from dulwich.pack import UnpackedObject

    at = 12  # after the pack's header
    placed: dict[bytes, tuple[int, int]] = {}  # id -> (offset in this pack, delta depth)
    held: list[UnpackedObject] = []
    size = 0

    def flush() -> Iterator[UnpackedObject]:
        nonlocal size
        if held:
            joined = b"".join(r.comp_chunks[0] for r in held)  # type: ignore[index]
            for r in held[1:]:
                r.comp_chunks = []
            held[0].comp_chunks = [joined]
            yield from held
            held.clear()
            size = 0

    for type_num, raw in found:
        depth = 0
        delta = objects.deltas.pop(raw, None) if type_num == TREE else None
        base = placed.get(delta[0]) if delta is not None else None
        if delta is not None and base is not None and base[1] < _DEPTH:
            record = UnpackedObject(type_num, sha=raw, decomp_chunks=[])
            head = _pack_header(6, len(delta[1])) + _ofs(at - base[0]) if ofs_delta else \
                _pack_header(7, len(delta[1])) + delta[0]
            record.comp_chunks = [head + zlib.compress(delta[1], 1)]
            depth = base[1] + 1
        else:
            record = _record(objects, type_num, raw)
        placed[raw] = (at, depth)
        chunks = record.comp_chunks
        if isinstance(chunks, list) and len(chunks) == 1:  # bytes in hand
            at += len(chunks[0])
            held.append(record)
            size += len(chunks[0])
            if size >= _GROUP:
                yield from flush()
            continue
        yield from flush()  # what is held goes first
        if chunks is None:  # re-deflated by dulwich: deflate it here, to know its length
            data = b"".join(record.decomp_chunks)
            record.comp_chunks = [_pack_header(type_num, len(data)) + zlib.compress(data, 1)]
            at += len(record.comp_chunks[0])
            yield record
        else:  # streamed
            counted = _Counted(iter(chunks))
            record.comp_chunks = counted  # type: ignore[assignment]
            yield record  # dulwich reads all its chunks before asking for the next record
            at += counted.size
    yield from flush()


def generate_pack_data(db: ObjectDB) -> Any:
    """A ``generate_pack_data`` for dulwich's ``send_pack`` that reuses our packs' bytes."""

    def generate(have: set[bytes], want: set[bytes], *, ofs_delta: bool = False,
                 progress: Any = None) -> tuple[int, Iterator[UnpackedObject]]:
        objects = _Objects(db)
        try:
            found = _missing(objects, set(want), set(have))
        except BaseException:
            objects.close()
            raise

        def records() -> Iterator[UnpackedObject]:
            try:
                yield from _entries(objects, found, ofs_delta)
            finally:
                objects.close()

        return len(found), records()

    return generate
