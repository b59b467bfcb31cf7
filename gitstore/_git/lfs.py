"""Large attributes as Git LFS objects: pointers in the tree, content in ``lfs/objects``.

An attribute of at least :data:`LFS_THRESHOLD` bytes (configurable per store: the git config
``gitstore.lfsThreshold``, or the store's ``lfs_threshold`` argument) is written as a git-lfs
*pointer* blob (the text of git-lfs's ``docs/spec.md``)::

    version https://git-lfs.github.com/spec/v1
    oid sha256:<64 hex digits>
    size <bytes>

with its content in git-lfs's own layout under the store's git directory,
``lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>``: a plain file (a ``.npy`` opens with numpy, or as
a read-only memory map), written straight from the caller's buffers (no copy) with SHA-256
computed on a second thread while it is written, then renamed into place (atomic). The real
``git lfs`` client reads a clone of the store (``git lfs fetch`` over ``file://``).

Any payload that itself *looks* like a pointer is stored as an LFS object too, whatever its
size: so every pointer-shaped blob in a gitstore tree is a pointer, and a malformed one is a
damaged entry (:class:`~gitstore.errors.CorruptEntryError`), never data.

Integrity: content is checked against its SHA-256 before its first use. A file this store
wrote or downloaded (hashed on the way in), or hashed once on a read, is recorded in
``gitstore/lfs-verified/<oid>`` with its inode, size, ctime and mtime (in nanoseconds); a
later read whose open file has the same four values skips re-hashing (any write, ``chmod``,
rename or replacement of the file changes its ctime). ``verify`` re-hashes everything.

Transfer follows the Git LFS batch API (``docs/api/batch.md``): see :class:`LfsClient`, and
:func:`endpoint_for` for where the server is.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..errors import (
    CorruptEntryError,
    LfsObjectMissingError,
    NoLfsServerError,
    RemoteError,
)
from .shared import Adjust, makedirs
from .large import _as_bytes_view, _writev_all

if TYPE_CHECKING:
    import http.client

__all__ = [
    "LFS_THRESHOLD",
    "POINTER_SIZES",
    "LfsClient",
    "LfsReader",
    "LfsStore",
    "Pointer",
    "endpoint_for",
    "looks_like_pointer",
    "parse_pointer",
]

#: attributes at least this large become LFS objects (measured: benchmarks/bench_lfs.py)
LFS_THRESHOLD = 8 << 20
#: a pointer file is below this size (git-lfs's own bound)
MAX_POINTER = 1024
#: the sizes a well-formed pointer can have (a size of 1 to 19 digits): listings and pushes
#: read only blobs of these sizes to find pointers
POINTER_SIZES = range(len(b"version https://git-lfs.github.com/spec/v1\noid sha256:\nsize \n")
                      + 64 + 1, len(b"version https://git-lfs.github.com/spec/v1\noid sha256:"
                                    b"\nsize \n") + 64 + 20)
_VERSION = b"version https://git-lfs.github.com/spec/v1\n"
_PREFIX = b"version https://git-lfs"  # any git-lfs pointer (older spec URLs included)
_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\n"
                      rb"oid sha256:([0-9a-f]{64})\n"
                      rb"size (0|[1-9][0-9]{0,18})\n\Z")
_OID = re.compile(r"[0-9a-f]{64}\Z")
_STEP = 16 << 20  # bytes read (and hashed on a second thread) at a time
_MEDIA = "application/vnd.git-lfs+json"
_MAX_JSON = 16 << 20  # a batch response larger than this is refused (hostile server)
_BATCH = 100  # objects per batch request, as git-lfs sends them
_WORKERS = 4  # concurrent transfers
TIMEOUT = 60.0

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Pointer:
    """A git-lfs pointer: the content's SHA-256 (hex) and size."""

    oid: str
    size: int

    def text(self) -> bytes:
        """The pointer file, as git-lfs writes it."""
        return _VERSION + b"oid sha256:%s\nsize %d\n" % (self.oid.encode(), self.size)


def looks_like_pointer(data: bytes | bytearray | memoryview) -> bool:
    """Whether a blob claims to be a git-lfs pointer (small, and starts like one)."""
    return len(data) < MAX_POINTER and bytes(data[:len(_PREFIX)]) == _PREFIX


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer in ``data``; None if ``data`` does not claim to be one.

    Raises:
        CorruptEntryError: it claims to be a pointer but is not one as the spec writes it
            (strict: the three lines in order, lowercase hex, a decimal size, nothing else).
    """
    if not looks_like_pointer(data):
        return None
    found = _POINTER.match(data)
    if found is None:
        raise CorruptEntryError(f"a malformed Git LFS pointer: {data[:160]!r}")
    return Pointer(found.group(1).decode(), int(found.group(2)))


class _ChainedHasher:
    """SHA-256 over successive parts on a second thread (hashlib releases the GIL), in order."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self._last: threading.Thread | None = None

    def add(self, part: memoryview) -> None:
        previous = self._last

        def work() -> None:
            if previous is not None:
                previous.join()
            self.sha.update(part)

        self._last = threading.Thread(target=work)
        self._last.start()

    def hexdigest(self) -> str:
        self.join()
        return self.sha.hexdigest()

    def join(self) -> None:
        if self._last is not None:
            self._last.join()


class LfsStore:
    """The LFS objects of one store (``<gitdir>/lfs``): write, read, verify, list.

    Args:
        gitdir: the store's git directory.
        shared: widens modes for a group-shared store (``core.sharedRepository``).
    """

    def __init__(self, gitdir: str, shared: Adjust | None = None) -> None:
        self.gitdir = gitdir
        self.root = os.path.join(gitdir, "lfs")
        self.objects = os.path.join(self.root, "objects")
        self._records = os.path.join(gitdir, "gitstore", "lfs-verified")
        self._shared = shared
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        #: called with a pointer whose content is missing here: fetch it (or raise)
        self.fetcher: Callable[[Pointer], None] | None = None

    # --- places ---------------------------------------------------------------------------------

    def path(self, oid: str) -> str:
        """Where the content of ``oid`` lives (git-lfs's layout)."""
        if not _OID.match(oid):
            raise CorruptEntryError(f"{oid[:80]!r} is not a SHA-256 object id")
        return os.path.join(self.objects, oid[:2], oid[2:4], oid)

    def has(self, pointer: Pointer) -> bool:
        """Whether the content is here, of the right size (its hash is checked on read)."""
        try:
            return os.stat(self.path(pointer.oid)).st_size == pointer.size
        except FileNotFoundError:
            return False

    def oids(self) -> Iterator[tuple[str, str]]:
        """``(oid, path)`` of every object file here."""
        try:
            firsts = os.listdir(self.objects)
        except FileNotFoundError:
            return
        for a in firsts:
            try:
                seconds = os.listdir(os.path.join(self.objects, a))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for b in seconds:
                folder = os.path.join(self.objects, a, b)
                try:
                    names = os.listdir(folder)
                except (NotADirectoryError, FileNotFoundError):
                    continue
                for name in names:
                    if _OID.match(name) and name[:2] == a and name[2:4] == b:
                        yield name, os.path.join(folder, name)

    def _tmp(self) -> tuple[int, str]:
        folder = os.path.join(self.root, "tmp")
        makedirs(folder, self._shared)
        return tempfile.mkstemp(dir=folder, prefix=f"gitstore-{os.getpid()}-")

    def _place(self, tmp: str, fd: int, oid: str) -> str:
        """Move a finished temporary file to its object path (read-only), record it verified."""
        final = self.path(oid)
        makedirs(os.path.dirname(final), self._shared)
        os.fchmod(fd, 0o444)
        if self._shared is not None:
            self._shared(tmp)
        # replaced even when present: it was written in full and checked, and a copy there may
        # be damaged (deduplication must not keep broken bytes); a reader of the old keeps it
        os.replace(tmp, final)
        mine = os.fstat(fd)
        try:
            now = os.stat(final)
        except FileNotFoundError:
            return final
        if (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            self._record(oid, now)
        return final

    # --- writing --------------------------------------------------------------------------------

    def write(self, buffers: Sequence[Buffer]) -> Pointer:
        """Write content made of ``buffers`` (no copy of them); return its pointer."""
        views = [_as_bytes_view(b) for b in buffers]
        size = sum(len(v) for v in views)
        hasher = _ChainedHasher()
        for view in views:
            hasher.add(view)  # runs while the file is written
        fd, tmp = self._tmp()
        try:
            try:
                _writev_all(fd, list(views))
            finally:
                hasher.join()
            pointer = Pointer(hasher.hexdigest(), size)
            self._place(tmp, fd, pointer.oid)
        except BaseException:
            _unlink(tmp)
            raise
        finally:
            os.close(fd)
        return pointer

    def receive(self, pointer: Pointer, chunks: Iterable[bytes | memoryview],
                source: str) -> None:
        """Keep content that arrives from elsewhere, once its size and SHA-256 match the
        pointer (bounded: more bytes than the pointer's size are refused as they arrive).

        Raises:
            RemoteError: the content does not match the pointer (nothing is kept).
        """
        fd, tmp = self._tmp()
        try:
            sha = hashlib.sha256()
            got = 0
            for chunk in chunks:
                got += len(chunk)
                if got > pointer.size:
                    raise RemoteError(f"{source} sent more than the {pointer.size} bytes of "
                                      f"LFS object {pointer.oid}: refused")
                sha.update(chunk)
                _writev_all(fd, [memoryview(chunk)])
            if got != pointer.size or sha.hexdigest() != pointer.oid:
                raise RemoteError(f"{source} sent LFS object {pointer.oid} with the wrong "
                                  f"content ({got} bytes, sha256 {sha.hexdigest()}): refused")
            self._place(tmp, fd, pointer.oid)
        except BaseException:
            _unlink(tmp)
            raise
        finally:
            os.close(fd)

    def copy_from(self, other_root: str, pointer: Pointer, source: str) -> bool:
        """Take ``pointer``'s content from another store's ``lfs/objects`` on this machine,
        checked as :meth:`receive` checks it; whether it was there."""
        path = os.path.join(other_root, pointer.oid[:2], pointer.oid[2:4], pointer.oid)
        try:
            # non-blocking: a FIFO put there would block the open until someone writes to it
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RemoteError(f"{source}: LFS object {pointer.oid} is a symbolic link: "
                                  "refused") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RemoteError(f"{source}: LFS object {pointer.oid} is not a regular file "
                              "(a FIFO, a device...): refused")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", buffering=0) as f:
            self.receive(pointer, iter(lambda: f.read(1 << 20), b""), source)
        return True

    # --- reading --------------------------------------------------------------------------------

    def open(self, pointer: Pointer, rehash: bool = False, fetch: bool = True) -> LfsReader:
        """A reader of the content (fetched first if missing, ``fetch`` and a fetcher set).

        Raises:
            LfsObjectMissingError: not here, and no remote gave it.
            CorruptEntryError: the file here is not the pointer's size.
        """
        path = self.path(pointer.oid)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            if not fetch:
                raise LfsObjectMissingError(f"the content of LFS object {pointer.oid} is not in "
                                            "this store", pointer.oid) from None
            self._fetch(pointer)
            f = open(path, "rb", buffering=0)
        return LfsReader(self, f, pointer, rehash)

    def _fetch(self, pointer: Pointer) -> None:
        if self.fetcher is None:
            raise LfsObjectMissingError(
                f"the content of LFS object {pointer.oid} ({pointer.size} bytes) is not in "
                "this store, and no remote is known to fetch it from", pointer.oid)
        self.fetcher(pointer)

    def local_path(self, pointer: Pointer, rehash: bool = False) -> str:
        """The path of the content, checked against the pointer (hashed unless recorded as
        verified), fetched first if missing.

        Raises:
            LfsObjectMissingError, CorruptEntryError: see :meth:`open`.
        """
        reader = self.open(pointer, rehash)
        try:
            if not reader.trusted:
                reader.finish()
            return reader.path
        finally:
            reader.close()

    def _record(self, oid: str, st: os.stat_result) -> None:
        stamp = (st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns)
        self._verified[oid] = stamp
        try:
            makedirs(self._records, self._shared)
            fd, tmp = tempfile.mkstemp(dir=self._records, prefix=".tmp-")
            try:
                os.write(fd, ("%d %d %d %d\n" % stamp).encode())
            finally:
                os.close(fd)
            if self._shared is not None:
                self._shared(tmp)
            os.replace(tmp, os.path.join(self._records, oid))
        except OSError:
            pass  # a read-only store: the record is an optimisation, the file is re-hashed

    def _recorded(self, oid: str, st: os.stat_result) -> bool:
        stamp = (st.st_ino, st.st_size, st.st_ctime_ns, st.st_mtime_ns)
        if self._verified.get(oid) == stamp:
            return True
        try:
            with open(os.path.join(self._records, oid), "rb") as f:
                text = f.read(128)
        except OSError:
            return False
        try:
            found = tuple(int(x) for x in text.split())
        except ValueError:
            return False
        if found == stamp:
            self._verified[oid] = stamp
            return True
        return False

    def forget(self, oid: str) -> None:
        """Drop the verified record of ``oid`` (its content is gone, or damaged)."""
        self._verified.pop(oid, None)
        _unlink(os.path.join(self._records, oid))


class LfsReader:
    """Streams an LFS object's content; ``finish`` checks it against the pointer.

    A file recorded as verified (same inode, size, ctime, mtime) is not hashed again; otherwise
    SHA-256 runs on a second thread, a step behind the reads, and a match is recorded.
    """

    def __init__(self, store: LfsStore, f: Any, pointer: Pointer, rehash: bool) -> None:
        self._store = store
        self._f = f
        self.pointer = pointer
        self.path: str = f.name
        self._stat = os.fstat(f.fileno())
        if self._stat.st_size != pointer.size:
            f.close()
            store.forget(pointer.oid)
            raise CorruptEntryError(
                f"LFS object {pointer.oid} is damaged: {self._stat.st_size} bytes on disk, "
                f"its pointer says {pointer.size}", expected=pointer.oid)
        self.trusted = not rehash and store._recorded(pointer.oid, self._stat)
        self._hasher = None if self.trusted else _ChainedHasher()
        self.size = pointer.size
        self.remaining = pointer.size

    def readinto(self, target: memoryview | bytearray) -> int:
        """Fill ``target`` (as much as is left); returns the bytes written."""
        view = _as_bytes_view(target)
        want = min(len(view), self.remaining)
        done = 0
        while done < want:
            part = view[done: done + min(_STEP, want - done)]
            got = self._f.readinto(part)
            if not got:
                raise CorruptEntryError(f"LFS object {self.pointer.oid} is damaged: truncated",
                                        expected=self.pointer.oid)
            if self._hasher is not None:
                self._hasher.add(part[:got])
            done += got
        self.remaining -= done
        return done

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n`` < 0)."""
        n = self.remaining if n < 0 else min(n, self.remaining)
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf) if got == n else bytes(buf[:got])

    def finish(self) -> None:
        """Check that the content matches its pointer (read what is left first).

        Raises:
            CorruptEntryError: it does not.
        """
        try:
            while self.remaining:
                self.readinto(bytearray(min(self.remaining, _STEP)))
            if self._hasher is not None:
                got = self._hasher.hexdigest()
                if got != self.pointer.oid:
                    self._store.forget(self.pointer.oid)
                    raise CorruptEntryError(
                        f"LFS object {self.pointer.oid} does not match its SHA-256",
                        expected=self.pointer.oid, got=got)
                self._store._record(self.pointer.oid, self._stat)
                self.trusted = True
        finally:
            self.close()

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.join()
        self._f.close()

    def __enter__(self) -> LfsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TRANSFER_TRIES = 3  # attempts of one PUT or verify when the server fails (5xx)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- where the LFS server is ------------------------------------------------------------------

def _config_get(configs: Sequence[Any], section: tuple[bytes, ...], name: bytes) -> str | None:
    for config in configs:
        try:
            return config.get(section, name).decode()  # type: ignore[no-any-return]
        except KeyError:
            continue
    return None


def endpoint_for(url: str, configs: Sequence[Any], remote_name: str | None,
                 upload: bool) -> tuple[str, str]:
    """Where a remote's LFS objects go, by git-lfs's rules (``lfs.pushurl`` for uploads, then
    ``lfs.url``, then ``remote.<name>.lfspushurl``/``lfsurl``, in the store's git config first
    and then ``.lfsconfig``; else derived from the remote's URL: ``<url>/info/lfs``, with
    ``.git`` added when the URL lacks it; ``git://`` and ssh URLs give ``https://host/path``).

    Returns:
        ``("local", gitdir)`` for a path or ``file://`` remote (its own ``lfs/objects``), or
        ``("http", endpoint)``.
    """
    names: list[tuple[tuple[bytes, ...], bytes]] = []
    if upload:
        names.append(((b"lfs",), b"pushurl"))
    names.append(((b"lfs",), b"url"))
    if remote_name is not None:
        if upload:
            names.append(((b"remote", remote_name.encode()), b"lfspushurl"))
        names.append(((b"remote", remote_name.encode()), b"lfsurl"))
    for section, name in names:
        found = _config_get(configs, section, name)
        if found:
            return _classify(found, derived=False)
    return _classify(url, derived=True)


def _classify(url: str, derived: bool) -> tuple[str, str]:
    from .remote import local_gitdir

    if url.startswith("file://") or "://" not in url and not _scp_like(url):
        local = local_gitdir(url)
        if local is None:
            path = unquote(urlsplit(url).path) if url.startswith("file://") else url
            local = path
        return "local", local
    if not derived:
        return "http", url.rstrip("/")
    parts = urlsplit(url) if "://" in url else None
    if parts is None:  # scp-like: [user@]host:path
        host_part, _, path = url.partition(":")
        host = host_part.rpartition("@")[2]
        base = f"https://{host}/{path.lstrip('/')}"
    elif parts.scheme in ("http", "https"):
        base = url.rstrip("/")
    else:  # git://, ssh://: the same host over https, as git-lfs derives it
        base = urlunsplit(("https", parts.hostname or "", parts.path, "", ""))
    base = base.rstrip("/")
    if not base.endswith(".git"):
        base += ".git"
    return "http", base + "/info/lfs"


def _scp_like(url: str) -> bool:
    head = url.split("/", 1)[0]
    return ":" in head and not os.path.exists(url)


# --- the batch API client ---------------------------------------------------------------------

def _auth_header(parts: Any) -> dict[str, str]:
    """Basic auth from the URL's user info, else from ``~/.netrc`` for its host.

    TODO(credentials): ask git's credential helpers (``git credential fill``), as the
    'remote' helper does for git remotes, once that lands in gitstore/_git.
    """
    user, password = parts.username, parts.password
    if user is None or password is None:
        try:
            import netrc

            found = netrc.netrc().authenticators(parts.hostname or "")
        except (OSError, netrc.NetrcParseError):
            found = None
        if found is not None and user in (None, found[0]):
            user, password = found[0], found[2]
    if user is None or password is None:
        return {}
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _shown(url: str) -> str:
    from .remote import redact

    return redact(url)


def _clean_headers(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and not re.search(r"[\r\n\0]", k + v)
            for k, v in value.items()):
        raise RemoteError(f"{where}: the LFS server sent malformed headers")
    return dict(value)


class LfsClient:
    """A Git LFS batch API client for one endpoint (``docs/api/batch.md``), basic transfers.

    Everything the server says is checked: the batch response's shape, each object's oid and
    size against what was asked, action URLs (http or https only), and downloaded content
    against the pointer (size bounded as it arrives, SHA-256) before it is kept.
    """

    def __init__(self, endpoint: str, remote: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.remote = remote
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NoLfsServerError(f"remote {_shown(remote)}: {_shown(endpoint)} is not an "
                                   "http(s) Git LFS endpoint", remote, _shown(endpoint))
        self._auth = _auth_header(parts)

    def _request(self, method: str, url: str, headers: dict[str, str], body: Any = None,
                 length: int | None = None) -> tuple[http.client.HTTPConnection,
                                                     http.client.HTTPResponse]:
        import http.client  # on first use: importing gitstore does not pay for it
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"remote {_shown(self.remote)}: the LFS server gave an action "
                              f"URL that is not http(s): {_shown(url)[:120]!r}", self.remote)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else \
            http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=TIMEOUT, blocksize=1 << 20)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        sent = dict(headers)
        if length is not None:
            sent["Content-Length"] = str(length)
        try:
            conn.request(method, quote(path, safe="/%?&=+:@;,~"), body=body, headers=sent)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def batch(self, operation: str, pointers: Sequence[Pointer]) -> dict[str, dict[str, Any]]:
        """``{oid: object}`` as the server answers a batch request (per object: ``actions``,
        or ``error``; an object with neither is one the server has).

        Raises:
            NoLfsServerError: nothing answers at the endpoint, or not as an LFS server.
            RemoteError: the server refused, or answered something malformed.
        """
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(pointers), _BATCH):
            chunk = pointers[start: start + _BATCH]
            out.update(self._batch(operation, chunk))
        return out

    def _batch(self, operation: str, pointers: Sequence[Pointer]) -> dict[str, dict[str, Any]]:
        import http.client  # on first use: importing gitstore does not pay for it
        body = json.dumps({"operation": operation, "transfers": ["basic"],
                           "objects": [{"oid": p.oid, "size": p.size} for p in pointers],
                           "hash_algo": "sha256"}).encode()
        url = self.endpoint + "/objects/batch"
        shown = _shown(self.endpoint)
        headers = {"Accept": _MEDIA, "Content-Type": _MEDIA, **self._auth}
        try:
            conn, response = self._request("POST", url, headers, body, len(body))
        except (OSError, http.client.HTTPException) as exc:
            raise NoLfsServerError(f"remote {_shown(self.remote)} has no Git LFS server at "
                                   f"{shown} ({type(exc).__name__}: {exc})", self.remote,
                                   shown) from None
        try:
            data = response.read(_MAX_JSON + 1)
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"remote {_shown(self.remote)}: the LFS server at {shown} "
                              f"failed: {exc}", self.remote) from None
        finally:
            response.close()
            conn.close()
        if status in (404, 405, 501):
            raise NoLfsServerError(f"remote {_shown(self.remote)} has no Git LFS server at "
                                   f"{shown} (HTTP {status})", self.remote, shown)
        message = _server_message(data)
        if status != 200:
            raise RemoteError(f"remote {_shown(self.remote)}: the LFS server at {shown} "
                              f"refused the {operation} (HTTP {status}{message})", self.remote)
        if len(data) > _MAX_JSON:
            raise RemoteError(f"remote {_shown(self.remote)}: the LFS server's answer is over "
                              f"{_MAX_JSON} bytes: refused", self.remote)
        try:
            answer = json.loads(data)
        except ValueError:
            raise NoLfsServerError(f"remote {_shown(self.remote)}: {shown} does not answer as "
                                   "a Git LFS server (not JSON)", self.remote, shown) from None
        objects = answer.get("objects") if isinstance(answer, dict) else None
        if not isinstance(objects, list) or answer.get("transfer", "basic") != "basic":
            raise RemoteError(f"remote {_shown(self.remote)}: malformed LFS batch answer",
                              self.remote)
        asked = {p.oid: p for p in pointers}
        out: dict[str, dict[str, Any]] = {}
        for obj in objects:
            if not isinstance(obj, dict) or obj.get("oid") not in asked:
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server answered for "
                                  "an object not asked for", self.remote)
            actions = obj.get("actions")
            if actions is not None and not (isinstance(actions, dict) and all(
                    isinstance(a, dict) and isinstance(a.get("href"), str)
                    for a in actions.values())):
                raise RemoteError(f"remote {_shown(self.remote)}: malformed LFS actions",
                                  self.remote)
            out[str(obj["oid"])] = obj
        return out

    def upload(self, store: LfsStore, pointers: Sequence[Pointer],
               check: Callable[[Pointer], str]) -> int:
        """Upload the objects the server lacks (``check`` returns each one's verified path);
        returns how many were sent. Objects the server has (no ``upload`` action) are skipped.

        Raises:
            NoLfsServerError, RemoteError: see :meth:`batch`; a transfer failed.
        """
        answer = self.batch("upload", pointers)
        todo = []
        for pointer in pointers:
            obj = answer.get(pointer.oid)
            if obj is None:
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server did not answer "
                                  f"for {pointer.oid}", self.remote)
            if "error" in obj:
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server refused "
                                  f"{pointer.oid}: {_error_text(obj['error'])}", self.remote)
            actions = obj.get("actions") or {}
            if "upload" in actions:
                todo.append((pointer, actions))
        _run_all([functools.partial(self._put_checked, p, a, check) for p, a in todo])
        return len(todo)

    def _put_checked(self, pointer: Pointer, actions: dict[str, Any],
                     check: Callable[[Pointer], str]) -> None:
        self._put(pointer, actions, check(pointer))

    def _put(self, pointer: Pointer, actions: dict[str, Any], path: str) -> None:
        action = actions["upload"]
        headers = {"Content-Type": "application/octet-stream",
                   **_clean_headers(action.get("header"), self.remote)}
        with open(path, "rb", buffering=0) as f:
            self._expect_ok("PUT", action["href"], headers, f, pointer.size, pointer)
        verify = actions.get("verify")
        if verify is not None:
            body = json.dumps({"oid": pointer.oid, "size": pointer.size}).encode()
            headers = {"Accept": _MEDIA, "Content-Type": _MEDIA,
                       **_clean_headers(verify.get("header"), self.remote)}
            self._expect_ok("POST", verify["href"], headers, body, len(body), pointer)

    def _expect_ok(self, method: str, href: str, headers: dict[str, str], body: Any,
                   length: int, pointer: Pointer) -> None:
        import http.client  # on first use: importing gitstore does not pay for it
        # a server error (5xx) or a dropped connection is retried, as git-lfs retries
        # transfers (lfs.transfer.maxretries); a refusal (4xx) is reported at once
        for attempt in range(_TRANSFER_TRIES):
            if attempt:
                time.sleep(0.2 * attempt)
                if hasattr(body, "seek"):
                    body.seek(0)
            try:
                conn, response = self._request(method, href, headers, body, length)
                try:
                    data = response.read(64 << 10)
                    status = response.status
                finally:
                    response.close()
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                if attempt + 1 < _TRANSFER_TRIES:
                    continue
                raise RemoteError(f"remote {_shown(self.remote)}: {method} of LFS object "
                                  f"{pointer.oid} failed: {exc}", self.remote) from None
            if status < 500:
                break
        if not 200 <= status < 300:
            raise RemoteError(f"remote {_shown(self.remote)}: the LFS server refused the "
                              f"{method} of {pointer.oid} (HTTP {status}"
                              f"{_server_message(data)})", self.remote)

    def download(self, store: LfsStore, pointers: Sequence[Pointer]) -> list[Pointer]:
        """Download these objects into ``store`` (each checked); return those the server
        does not have (a 404 error in the batch answer).

        Raises:
            NoLfsServerError, RemoteError: see :meth:`batch`; a transfer failed or sent wrong
                content (nothing of it is kept).
        """
        answer = self.batch("download", pointers)
        missing, todo = [], []
        for pointer in pointers:
            obj = answer.get(pointer.oid)
            error = obj.get("error") if obj is not None else {"code": 404}
            if error is not None:
                if isinstance(error, dict) and error.get("code") in (404, 410):
                    missing.append(pointer)
                    continue
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server refused "
                                  f"{pointer.oid}: {_error_text(error)}", self.remote)
            action = (obj.get("actions") or {}).get("download") if obj is not None else None
            if action is None:
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server gave no "
                                  f"download for {pointer.oid}", self.remote)
            todo.append((pointer, action))
        _run_all([functools.partial(self._get, store, p, a) for p, a in todo])
        return missing

    def _get(self, store: LfsStore, pointer: Pointer, action: dict[str, Any]) -> None:
        import http.client  # on first use: importing gitstore does not pay for it
        headers = _clean_headers(action.get("header"), self.remote)
        try:
            conn, response = self._request("GET", action["href"], headers)
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"remote {_shown(self.remote)}: GET of LFS object "
                              f"{pointer.oid} failed: {exc}", self.remote) from None
        try:
            if response.status != 200:
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server refused the "
                                  f"GET of {pointer.oid} (HTTP {response.status}"
                                  f"{_server_message(response.read(64 << 10))})", self.remote)
            declared = response.getheader("Content-Length")
            if declared is not None and declared.strip() != str(pointer.size):
                raise RemoteError(f"remote {_shown(self.remote)}: the LFS server declares "
                                  f"{declared[:20]!r} bytes for {pointer.oid}, its pointer "
                                  f"says {pointer.size}: refused", self.remote)

            def chunks() -> Iterator[bytes | memoryview]:
                if response.chunked:  # http.client decodes tiny chunks slowly: in bulk here
                    yield from _dechunked(response.fp, pointer.size)
                    return
                buf = bytearray(1 << 20)  # one buffer, refilled (no allocation per chunk)
                view = memoryview(buf)
                while got := response.readinto(buf):
                    yield view[:got]

            try:
                store.receive(pointer, chunks(), f"remote {_shown(self.remote)}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise RemoteError(f"remote {_shown(self.remote)}: GET of LFS object "
                                  f"{pointer.oid} failed: {exc}", self.remote) from None
        finally:
            response.close()
            conn.close()


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def _dechunked(fp: Any, limit: int) -> Iterator[bytes]:
    """The body of a chunked HTTP response read from ``fp`` (RFC 9112 section 7.1), in pieces
    of about 1 MiB however small the server's chunks are. At most ``limit`` bytes of data are
    accepted (one more is handed on, for the caller to refuse).

    Raises:
        ValueError: a malformed chunk header, or the stream ends early.
    """
    data = b""
    view = memoryview(data)
    at = 0
    out = bytearray()
    given = 0

    def more() -> None:
        nonlocal data, at, view
        block = fp.read1(1 << 20)
        if not block:
            raise ValueError("the chunked body ends early")
        view.release()
        data = data[at:] + block if at < len(data) else block
        view = memoryview(data)
        at = 0

    while True:
        end = data.find(b"\r\n", at)
        if 0 < end - at <= 16:  # the common case: a whole chunk already read, taken at once
            try:
                size = int(data[at:end], 16)
            except ValueError:
                size = -1  # an extension, or garbage: the careful way below
            stop = end + 2 + size
            if size > 0 and data.startswith(b"\r\n", stop) and \
                    given + len(out) + size <= limit and data[at] in _HEX_DIGITS:
                out += view[end + 2: stop]
                at = stop + 2
                if len(out) >= 1 << 20:
                    given += len(out)
                    yield bytes(out)
                    out.clear()
                continue
        while end < 0:
            if len(data) - at > 1024:
                raise ValueError("a chunk header is too long")
            more()
            end = data.find(b"\r\n", at)
        header = data[at:end].split(b";", 1)[0].strip()
        if not header or len(header) > 16 or header.strip(b"0123456789abcdefABCDEF"):
            raise ValueError(f"a malformed chunk header {data[at:end][:40]!r}")
        size = int(header, 16)
        at = end + 2
        if size == 0:
            break  # trailers are not read: the connection is closed after this response
        if given + len(out) + size > limit:
            size = limit - given - len(out) + 1  # one byte too many: the caller refuses
        while size:
            if at >= len(data):
                more()
            take = min(size, len(data) - at)
            out += data[at: at + take]
            at += take
            size -= take
            if len(out) >= 1 << 20:
                given += len(out)
                yield bytes(out)
                out.clear()
            if given + len(out) > limit:
                yield bytes(out)
                return
        while len(data) - at < 2:
            more()
        if data[at: at + 2] != b"\r\n":
            raise ValueError("a chunk does not end with CRLF")
        at += 2
    if out:
        yield bytes(out)


def _run_all(jobs: list[Callable[[], None]]) -> None:
    """Run transfers a few at a time; the first failure is raised once all have stopped."""
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        futures = [pool.submit(job) for job in jobs]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


def _server_message(data: bytes) -> str:
    try:
        message = json.loads(data).get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {str(message)[:200]}" if message else ""


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('code')} {str(error.get('message', ''))[:200]}"
    return str(error)[:200]


# --- path remotes -----------------------------------------------------------------------------

def link_into(store: LfsStore, other_gitdir: str, pointers: Iterable[Pointer],
              check: Callable[[Pointer], str]) -> int:
    """Give a repository on this machine our objects it lacks, in its ``lfs/objects``
    (hard links where possible, else copies; atomic). Returns how many were added."""
    added = 0
    for pointer in pointers:
        target = os.path.join(other_gitdir, "lfs", "objects", pointer.oid[:2], pointer.oid[2:4],
                              pointer.oid)
        try:
            if os.stat(target).st_size == pointer.size:
                continue
        except FileNotFoundError:
            pass
        source = check(pointer)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)
        os.replace(tmp, target)
        added += 1
    return added


def old(path: str, seconds: float) -> bool:
    """Whether a file was last modified over ``seconds`` ago (False if it is gone)."""
    try:
        return time.time() - os.lstat(path).st_mtime > seconds
    except FileNotFoundError:
        return False


# --- which pointers a history holds -----------------------------------------------------------

def pointers_in(db: Any, tips: Iterable[bytes], stop: Iterable[bytes] = (),
                blob_size: Callable[[bytes], int] | None = None,
                read_blob: Callable[[bytes], bytes] | None = None,
                history: bool = True) -> dict[str, Pointer]:
    """The LFS pointers in the trees of ``tips`` and (with ``history``) of their ancestors,
    not walking past the commits in ``stop`` (what a remote has already). Each tree is
    walked once; only blobs of a pointer's size are read. A malformed pointer is skipped
    (``verify`` names it); a missing object raises CorruptEntryError."""
    from .objects import COMMIT

    size_of = blob_size or (lambda sha: len(db.read(sha)))
    read = read_blob or db.read
    stopped = set(stop)
    seen_commits: set[bytes] = set()
    seen_trees: set[bytes] = set()
    seen_blobs: set[bytes] = set()
    found: dict[str, Pointer] = {}
    todo = [t for t in tips if t not in stopped]
    while todo:
        sha = todo.pop()
        if sha in seen_commits or sha in stopped:
            continue
        seen_commits.add(sha)
        raw = db.read(sha, COMMIT)
        header = raw.partition(b"\n\n")[0]
        for line in header.split(b"\n"):
            if line.startswith(b"tree "):
                _walk_tree(db, line[5:45], seen_trees, seen_blobs, found, size_of, read)
            elif history and line.startswith(b"parent "):
                todo.append(line[7:47])
    return found


def _walk_tree(db: Any, tree: bytes, seen_trees: set[bytes], seen_blobs: set[bytes],
               found: dict[str, Pointer], size_of: Callable[[bytes], int],
               read: Callable[[bytes], bytes]) -> None:
    stack = [tree]
    while stack:
        sha = stack.pop()
        if sha in seen_trees:
            continue
        seen_trees.add(sha)
        for _name, (mode, child) in db.tree(sha).items():
            if mode == 0o40000:
                stack.append(child)
            elif mode in (0o100644, 0o100755) and child not in seen_blobs:
                seen_blobs.add(child)
                if size_of(child) in POINTER_SIZES:
                    try:
                        pointer = parse_pointer(read(child))
                    except CorruptEntryError:
                        continue
                    if pointer is not None:
                        found[pointer.oid] = pointer
