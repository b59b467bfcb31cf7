"""Large blobs: streamed into and out of loose objects, never held twice in memory.

A blob over :data:`LARGE` bytes is written as a loose object (``objects/ab/cdef…``) straight from
the caller's buffers (for a numpy array: the ``.npy`` header and the array's own memory). Its
zlib stream is chosen per object: a 1 MiB sample is deflated first, and if it does not shrink
below 90 % the whole blob is written as *stored* deflate blocks (5 bytes of header per 64 KiB,
no compression; zlib at level 1 runs at ~20 MB/s on random float64 data, a copy at GB/s),
otherwise it is deflated at level 1. SHA-1 runs on a second thread while the file is written.

Reading parses stored blocks by hand and ``readinto``s them straight into the caller's buffer
(a preallocated array); other streams (git's own loose objects) go through ``decompressobj``.
The SHA-1 of everything read is checked when the read completes, so a damaged object is a
:class:`~gitstore.errors.CorruptEntryError` before its data is handed out.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from typing import IO, Any

from ..errors import CorruptEntryError
from .objects import _unlink, pack_entry_header

__all__ = ["LARGE", "LooseReader", "pack_entry_header", "write_loose_blob"]

#: blobs at least this large are streamed to loose objects
LARGE = 8 << 20
_BLOCK = 65535
_SAMPLE = 128 << 10  # deflating the sample costs ~6 ms; all of 100 MB would cost ~5 s
_READ_STEP = 256 << 10  # compressed bytes read at a time
_INFLATE_STEP = 1 << 20  # inflated bytes produced at a time (the only buffer of a read)
_MAX_INFLATION = 1032  # deflate's largest expansion ratio (RFC 1951: 258 bytes per 2 bits)

Buffer = bytes | bytearray | memoryview


def _as_bytes_view(buf: Buffer) -> memoryview:
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def compressible(buffers: Sequence[Buffer]) -> tuple[bool, float]:
    """Whether level-1 deflate shrinks a sample of the data below 90 % (and the ratio)."""
    sample = bytearray()
    for buf in buffers:
        view = _as_bytes_view(buf)
        # take from the middle of the largest part too: headers compress well and mislead
        sample += view[: _SAMPLE // 4]
        if len(view) > _SAMPLE:
            for at in (len(view) // 3, 2 * len(view) // 3):
                sample += view[at: at + _SAMPLE // 4]
        if len(sample) >= _SAMPLE:
            break
    if not sample:
        return False, 1.0
    ratio = len(zlib.compress(bytes(sample), 1)) / len(sample)
    return ratio < 0.9, ratio


def write_loose_blob(objects_dir: str, buffers: Sequence[Buffer]) -> tuple[bytes, str]:
    """Write a blob made of ``buffers`` as a loose object; return (hex id, compression note)."""
    views = [_as_bytes_view(b) for b in buffers]
    size = sum(len(v) for v in views)
    header = b"blob %d\x00" % size
    deflate, ratio = compressible(views)
    note = (f"deflated (a sample compressed to {ratio:.0%})" if deflate else
            f"stored uncompressed (a sample compressed only to {ratio:.0%})")
    sha = hashlib.sha1(header)

    def hash_all() -> None:
        for v in views:
            sha.update(v)

    hasher = threading.Thread(target=hash_all)
    hasher.start()  # hashlib releases the GIL on large updates: hashing overlaps the writing
    tmp = os.path.join(objects_dir, f"tmp_obj_gitstore_{os.getpid()}_{threading.get_ident()}")
    try:
        with open(tmp, "wb", buffering=0) as f:
            if deflate:
                _write_deflated(f, [memoryview(header), *views])
            else:
                _write_stored(f.fileno(), [memoryview(header), *views], len(header) + size)
    except BaseException:
        hasher.join()
        _unlink(tmp)
        raise
    hasher.join()
    hex_id = sha.hexdigest()
    folder = os.path.join(objects_dir, hex_id[:2])
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, hex_id[2:])
    # replaced even when an object of this id is there: it was written in full anyway, and
    # the copy there may be damaged (deduplication must not keep broken bytes); a reader
    # that has the old file open keeps reading it
    os.chmod(tmp, 0o444)
    os.replace(tmp, final)
    return hex_id.encode(), note


def _write_stored(fd: int, views: Sequence[memoryview], total: int) -> None:
    """A zlib stream of stored deflate blocks (RFC 1950/1951), written with ``writev`` straight
    from the caller's memory (no copy in user space)."""
    parts: list[bytes | memoryview] = [b"\x78\x01"]
    adler = 1
    left = total
    for view in views:
        adler = zlib.adler32(view, adler)
        for start in range(0, len(view), _BLOCK):
            block = view[start: start + _BLOCK]
            left -= len(block)
            parts.append(struct.pack("<BHH", 1 if left == 0 else 0, len(block),
                                     len(block) ^ 0xFFFF))
            parts.append(block)
            if len(parts) >= 256:
                _writev_all(fd, parts)
                parts = []
    if total == 0:
        parts.append(struct.pack("<BHH", 1, 0, 0xFFFF))
    parts.append(struct.pack(">L", adler & 0xFFFFFFFF))
    _writev_all(fd, parts)


def _writev_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """``os.writev`` until everything is written (it may write less than asked), at most 512
    buffers per call (IOV_MAX is 1024 on Linux)."""
    views = [v for v in (memoryview(p) for p in parts) if len(v)]
    while views:
        written = os.writev(fd, views[:512])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _write_deflated(f: IO[bytes], views: Sequence[memoryview]) -> None:
    compressor = zlib.compressobj(1)
    for view in views:
        for start in range(0, len(view), 4 << 20):
            f.write(compressor.compress(view[start: start + (4 << 20)]))
    f.write(compressor.flush())


class LooseReader:
    """Streams a loose object's content, checking its id once everything has been read.

    Raises:
        CorruptEntryError: the object is damaged (on open, on a read, or in :meth:`finish`).
    """

    def __init__(self, path: str, expected: bytes, offset: int = 0,
                 size: int | None = None) -> None:
        """A loose object at ``path``; or, with ``size``, a pack entry's zlib stream starting at
        ``offset`` (the blob's content only: git's object header is not in a pack's stream)."""
        self.expected = expected
        self._f = open(path, "rb", buffering=0)
        self._sha = hashlib.sha1()
        self._offset = offset
        self._stored = False
        self._block_left = 0
        self._final = False
        self._adler: int | None = 1  # None once bulk reads skipped it (SHA-1 still checks)
        self._inflater: Any = None
        self._pending = b""  # inflated bytes not yet handed out, from self._at on
        self._at = 0
        try:
            available = os.fstat(self._f.fileno()).st_size - offset
            self._f.seek(offset)
            head = self._f.read(2)
            if len(head) != 2 or (head[0] * 256 + head[1]) % 31 or head[0] & 0x0F != 8:
                raise self._corrupt("not a zlib stream")
            first = self._f.read(1)
            self._stored = bool(first) and (first[0] >> 1) & 3 == 0
            self._f.seek(offset + 2)
            if not self._stored:
                self._inflater = zlib.decompressobj()
                self._inflater.decompress(head)
            if size is None:
                header = self._read_header()
                kind, _, text = header.partition(b" ")
                if kind != b"blob" or not text.isdigit():
                    raise self._corrupt("not a blob")
                self.size = int(text)
            else:
                self.size = size
                self._sha.update(b"blob %d\x00" % size)
            # the header is untrusted: a size the file cannot hold would drive allocations
            # (3 GiB for 4 bytes); deflate expands at most ~1032:1
            limit = available if self._stored else available * _MAX_INFLATION + 64
            if self.size > limit:
                raise self._corrupt(f"its header declares {self.size} bytes, more than its "
                                    f"{available} bytes on disk can hold")
            self.remaining = self.size
        except BaseException:
            self._f.close()
            raise

    def _corrupt(self, why: str) -> CorruptEntryError:
        return CorruptEntryError(f"object {self.expected.decode()} is damaged: {why}",
                                 expected=self.expected.decode())

    def _read_header(self) -> bytes:
        header = bytearray()
        while True:
            byte = self._raw_read(1)
            if not byte:
                raise self._corrupt("truncated header")
            if byte == b"\x00":
                return bytes(header)
            header += byte
            if len(header) > 64:
                raise self._corrupt("header too long")

    def _next_stored_block(self) -> None:
        if self._final:
            raise self._corrupt("data ends early")
        head = self._f.read(5)
        if len(head) != 5:
            raise self._corrupt("truncated")
        kind, length, inverse = struct.unpack("<BHH", head)
        if kind & 0xFE or length ^ inverse != 0xFFFF:
            raise self._corrupt("bad stored block")
        self._final = bool(kind & 1)
        self._block_left = length

    def _raw_read(self, n: int) -> bytes:
        """Up to ``n`` content bytes (through the header too), hashed and checksummed."""
        if self._stored:
            while self._block_left == 0:
                self._next_stored_block()
            data = self._f.read(min(n, self._block_left))
            if not data:
                raise self._corrupt("truncated")
            self._block_left -= len(data)
            if self._adler is not None:
                self._adler = zlib.adler32(data, self._adler)
        else:
            self._inflate(n)
            data = self._pending[self._at: self._at + n]
            self._at += len(data)
        self._sha.update(data)
        return data

    def _inflate(self, n: int) -> None:
        """Make sure some inflated bytes are pending: at most about ``n`` (and _INFLATE_STEP)
        at a time, however well the stream compresses, so memory follows what is asked."""
        while self._at >= len(self._pending):
            if self._inflater.eof:
                raise self._corrupt("data ends early")
            tail = self._inflater.unconsumed_tail
            chunk = tail if tail else self._f.read(_READ_STEP)
            try:  # with no input left, zlib may still hold output: ask once more
                out = self._inflater.decompress(chunk, min(max(n, 64), _INFLATE_STEP))
            except zlib.error as exc:
                raise self._corrupt(str(exc)) from None
            if not out and not chunk:
                raise self._corrupt("truncated")
            self._pending, self._at = out, 0

    def readinto(self, target: memoryview | bytearray) -> int:
        """Fill ``target`` (as much as is left); returns the bytes written."""
        view = _as_bytes_view(target)
        want = min(len(view), self.remaining)
        done = 0
        if self._stored:
            # SHA-1 (the check that matters) runs on a second thread, 8 MiB behind the reads;
            # the stream's adler32 is not recomputed: SHA-1 catches whatever it would
            hashed = 0
            pending: list[threading.Thread] = []

            def hash_upto(end: int) -> None:
                nonlocal hashed
                part = view[hashed:end]
                previous = pending[-1] if pending else None

                def work() -> None:
                    if previous is not None:
                        previous.join()
                    self._sha.update(part)

                worker = threading.Thread(target=work)
                worker.start()
                pending.append(worker)
                hashed = end

            try:
                while done < want:
                    while self._block_left == 0:
                        self._next_stored_block()
                    part = view[done: done + min(want - done, self._block_left)]
                    got = self._f.readinto(part)
                    if not got:
                        raise self._corrupt("truncated")
                    self._block_left -= got
                    done += got
                    if done - hashed >= 8 << 20:
                        hash_upto(done)
                hash_upto(done)
            finally:
                if pending:
                    pending[-1].join()
            self._adler = None
        else:
            # inflated a bounded step at a time and copied straight into the target: no
            # intermediate copy of the whole, whatever the compression ratio
            while done < want:
                self._inflate(want - done)
                part = memoryview(self._pending)[self._at: self._at + want - done]
                view[done: done + len(part)] = part
                self._sha.update(part)
                self._at += len(part)
                done += len(part)
        self.remaining -= done
        return done

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n`` < 0).

        Memory follows the data that actually arrives: a stored stream holds what its header
        declares (checked against the file's size on open); a deflated one is read in
        steps, so a header that lies about the size costs nothing before it is caught.
        """
        n = self.remaining if n < 0 else min(n, self.remaining)
        if self._stored:
            buf = bytearray(n)
            got = self.readinto(buf)
            return bytes(buf) if got == n else bytes(buf[:got])
        out = bytearray()
        while len(out) < n:
            step = bytearray(min(n - len(out), max(len(out), _INFLATE_STEP)))
            got = self.readinto(step)
            if not got:
                break
            out += step if got == len(step) else memoryview(step)[:got]
        return bytes(out)

    def finish(self) -> None:
        """Check that the whole object was read and matches its id.

        Raises:
            CorruptEntryError: it does not.
        """
        try:
            if self.remaining:
                self.read()
            if self._stored:
                while self._block_left == 0 and not self._final:
                    self._next_stored_block()
                if self._block_left:
                    raise self._corrupt("longer than its header says")
                trailer = self._f.read(4)
                if len(trailer) != 4 or (self._adler is not None and
                                         struct.unpack(">L", trailer)[0] != self._adler):
                    raise self._corrupt("checksum (adler32) mismatch")
            got = self._sha.hexdigest().encode()
            if got != self.expected:
                raise CorruptEntryError(f"object {self.expected.decode()} does not match its id",
                                        expected=self.expected.decode(), got=got.decode())
        finally:
            self.close()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> LooseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
