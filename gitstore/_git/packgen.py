"""Building the pack a push sends, from gitstore's own packs (plumbing).

dulwich's generic pack generation walks every object through its object graph and re-deflates
each one in Python (~10x slower than git here). gitstore's history has a known shape, so the
objects to send are found by diffing each new commit's tree against its parents' (through the
cached trees), and objects that sit undeltified in a pack are sent as their compressed bytes,
copied as they are: nothing is inflated or deflated again.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from dulwich.pack import UnpackedObject

from .large import LARGE, LooseReader
from .objects import COMMIT, TREE, ObjectDB, _pack_header

__all__ = ["generate_pack_data"]

_DIR = 0o40000
_DELTAS = (6, 7)


class _PackIndex:
    """Where each object of the store's packs starts and ends."""

    def __init__(self, pack_dir: str) -> None:
        self.where: dict[bytes, tuple[str, int, int]] = {}
        try:
            names = os.listdir(pack_dir)
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(".idx"):
                continue
            base = os.path.join(pack_dir, name[:-4])
            try:
                with open(base + ".idx", "rb") as f:
                    idx = f.read()
                size = os.stat(base + ".pack").st_size
            except FileNotFoundError:
                continue
            if idx[:8] != b"\377tOc\x00\x00\x00\x02":
                continue
            count = struct.unpack(">L", idx[8 + 255 * 4: 8 + 256 * 4])[0]
            names_at = 8 + 256 * 4
            offsets_at = names_at + 24 * count
            offsets = struct.unpack(f">{count}L", idx[offsets_at: offsets_at + 4 * count])
            if any(o & 0x80000000 for o in offsets):
                continue  # over 2 GiB: read through dulwich instead
            ordered = sorted(offsets)
            end_of = dict(zip(ordered, ordered[1:] + [size - 20]))
            for i, offset in enumerate(offsets):
                raw = idx[names_at + 20 * i: names_at + 20 * (i + 1)]
                self.where.setdefault(raw, (base + ".pack", offset, end_of[offset]))

    def chunk(self, raw_id: bytes) -> bytes | None:
        """The object's pack entry (header and deflated data), or None (absent or a delta)."""
        found = self.where.get(raw_id)
        if found is None:
            return None
        path, start, end = found
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            data = os.pread(fd, end - start, start)
        finally:
            os.close(fd)
        if len(data) != end - start or (data[0] >> 4) & 7 in _DELTAS:
            return None
        return data


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


def _parents(db: ObjectDB, commit: bytes) -> list[bytes]:
    header = db.read(commit, COMMIT).partition(b"\n\n")[0]
    return [line[7:] for line in header.split(b"\n") if line.startswith(b"parent ")]


def _new_objects(db: ObjectDB, tree: bytes, parent_trees: list[bytes], seen: set[bytes],
                 out: list[tuple[int, bytes]]) -> None:
    if tree in seen or tree in parent_trees:
        return
    seen.add(tree)
    out.append((TREE, tree))
    mine = db.tree(tree)
    theirs = [db.tree(t) for t in parent_trees]
    for name, (mode, sha) in mine.items():
        old = [p[name] for p in theirs if name in p]
        if mode == _DIR:
            _new_objects(db, sha, [s for m, s in old if m == _DIR], seen, out)
        elif sha not in seen and all(s != sha for _m, s in old):
            seen.add(sha)
            out.append((3, sha))


def missing_objects(db: ObjectDB, want: set[bytes], have: set[bytes]) -> list[tuple[int, bytes]]:
    """(type, id) of every object reachable from ``want`` and not from ``have``, as far as
    gitstore's histories go (the walk stops at commits the remote has)."""
    out: list[tuple[int, bytes]] = []
    seen: set[bytes] = set()
    stack = [w for w in want if w not in have]
    commits: list[bytes] = []
    while stack:
        commit = stack.pop()
        if commit in seen or commit in have:
            continue
        seen.add(commit)
        commits.append(commit)
        stack.extend(_parents(db, commit))
    for commit in commits:
        out.append((COMMIT, commit))
        parents = [db.commit_tree(p) for p in _parents(db, commit)]
        _new_objects(db, db.commit_tree(commit), parents, seen, out)
    return out


def generate_pack_data(db: ObjectDB) -> Any:
    """A ``generate_pack_data`` for dulwich's ``send_pack`` that reuses our packs' bytes."""

    def generate(have: set[bytes], want: set[bytes], *, ofs_delta: bool = False,
                 progress: Any = None) -> tuple[int, Iterator[UnpackedObject]]:
        known_have = {h for h in have if h in db.store}
        objects = missing_objects(db, set(want), known_have)
        index = _PackIndex(db.pack_dir)

        def records() -> Iterator[UnpackedObject]:
            for type_num, sha in objects:
                raw_id = bytes.fromhex(sha.decode())
                chunk = index.chunk(raw_id)
                loose = os.path.join(db.gitdir, "objects", sha[:2].decode(), sha[2:].decode())
                if chunk is not None:
                    record = UnpackedObject(type_num, sha=raw_id, decomp_chunks=[])
                    record.comp_chunks = [chunk]  # header and deflated data, sent as they are
                elif type_num == 3 and os.path.exists(loose) and os.path.getsize(loose) >= LARGE:
                    record = UnpackedObject(type_num, sha=raw_id, decomp_chunks=[])
                    record.comp_chunks = _loose_entry(loose, sha)  # type: ignore[assignment]
                else:
                    data = db.read(sha)
                    record = UnpackedObject(type_num, sha=raw_id, decomp_chunks=[data],
                                            decomp_len=len(data))
                yield record

        return len(objects), records()

    return generate
