"""Ref updates that survive many writers and killed writers.

A writer holds an ``flock`` on a per-ref lock file while it reads the tip, builds on it and moves
the ref; the kernel releases an ``flock`` when its holder dies, so a killed writer never blocks the
others. The ref itself moves as git moves it (``<ref>.lock`` created with O_EXCL, written, renamed
over the ref) after checking that it still holds the expected value, so a git process updating
the ref concurrently is not overwritten either. A ``<ref>.lock`` left by a killed writer is removed
once we hold the flock and it is older than :data:`STALE_LOCK_SECONDS`.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import ConcurrencyError, CorruptEntryError, StoreError
from .layout import ref_name_problem
from .shared import makedirs

__all__ = ["RefFiles"]

STALE_LOCK_SECONDS = 2.0
LOCK_TIMEOUT_SECONDS = 60.0


def _is_hex_sha(value: bytes) -> bool:
    return len(value) == 40 and not value.strip(b"0123456789abcdef")


class RefFiles:
    """Reads and compare-and-swaps refs of one git directory."""

    def __init__(self, gitdir: str, shared: Callable[[str], None] | None = None) -> None:
        self.gitdir = gitdir
        self._shared = shared  # core.sharedRepository: widen the modes of what we create
        self.lockdir = os.path.join(gitdir, "gitstore", "locks")
        self._paths: dict[str, str] = {}
        self._thread = threading.local()
        self._all_fds: list[int] = []
        self._all_fds_lock = threading.Lock()

    def _adjust(self, path: str) -> None:
        if self._shared is not None:
            self._shared(path)

    def _makedirs(self, path: str) -> None:
        makedirs(path, self._shared)

    def path(self, ref: str) -> str:
        """The file of a loose ref.

        Raises:
            StoreError: ``ref`` is not a valid ref name (``..``, ``.lock``, too long, ...): it
                never names a file, inside the repository or out of it.
        """
        found = self._paths.get(ref)
        if found is None:
            problem = ref_name_problem(ref)
            if problem is not None:
                raise StoreError(f"refused ref name {ref!r}: {problem}")
            found = self._paths[ref] = os.path.join(self.gitdir, *ref.split("/"))
        return found

    def read(self, ref: str, _retry: int = 3) -> bytes | None:
        """The object id a ref points to, or None.

        Raises:
            CorruptEntryError: the ref file holds something other than an object id.
        """
        try:  # os-level calls: this is on every retrieve's path
            fd = os.open(self.path(ref), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return self._read_packed(ref)
        try:
            raw = os.read(fd, 4096)
        except IsADirectoryError:
            return self._read_packed(ref)
        finally:
            os.close(fd)
        value = raw.strip()
        if not _is_hex_sha(value):
            if _retry > 0:  # a read racing an in-place update (see update_in_place)
                time.sleep(0.001)
                return self.read(ref, _retry - 1)
            raise CorruptEntryError(f"ref {ref} is damaged: {raw[:60]!r}")
        return value

    def _read_packed(self, ref: str) -> bytes | None:
        try:
            with open(os.path.join(self.gitdir, "packed-refs"), "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        name = ref.encode()
        for line in lines:
            if line.endswith(b" " + name) and not line.startswith((b"#", b"^")):
                value = line[:40]
                if not _is_hex_sha(value):
                    raise CorruptEntryError(f"packed ref {ref} is damaged")
                return value
        return None

    def list(self, prefix: str) -> dict[str, bytes]:
        """Every ref under ``prefix`` (loose and packed), name → object id."""
        found: dict[str, bytes] = {}
        try:
            with open(os.path.join(self.gitdir, "packed-refs"), "rb") as f:
                for line in f.read().splitlines():
                    if line.startswith((b"#", b"^")) or b" " not in line:
                        continue
                    sha, _, refname = line.partition(b" ")
                    name = refname.decode(errors="replace")
                    if (name.startswith(prefix) and ref_name_problem(name) is None
                            and _is_hex_sha(sha)):
                        found[name] = sha
        except FileNotFoundError:
            pass
        base = self.path(prefix.rstrip("/"))
        for root, _dirs, files in os.walk(base):
            for filename in files:
                if filename.endswith(".lock"):
                    continue
                full = os.path.join(root, filename)
                ref = os.path.relpath(full, self.gitdir).replace(os.sep, "/")
                if ref_name_problem(ref) is not None:
                    continue  # not a ref git could have written: never ours
                value = self.read(ref)
                if value is not None:
                    found[ref] = value
        return found

    @contextmanager
    def locked(self, ref: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the writer lock of ``ref`` (an flock, released by the kernel if we die).

        Raises:
            ConcurrencyError: not acquired within ``timeout`` seconds.
        """
        # one descriptor per thread and ref, kept open: flock excludes open file
        # descriptions, so threads must not share one
        if getattr(self._thread, "pid", None) != os.getpid():
            # a forked child must not share its parent's descriptions (nor its locks)
            self._thread.pid, self._thread.fds = os.getpid(), {}
        fds: dict[str, int] = self._thread.fds
        fd = fds.get(ref, -1)
        if fd < 0:
            self._makedirs(self.lockdir)
            name = os.path.join(self.lockdir, hashlib.sha1(ref.encode()).hexdigest())
            # read-only is enough for flock, and works on a lock file another member made
            fd = fds[ref] = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._adjust(name)
            with self._all_fds_lock:
                self._all_fds.append(fd)
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConcurrencyError(f"could not lock {ref} within {timeout} s") \
                        from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock files this object opened (in every thread)."""
        with self._all_fds_lock:
            for fd in self._all_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._all_fds.clear()
        self._thread = threading.local()

    def compare_and_swap(self, ref: str, old: bytes | None, new: bytes | None) -> bool:
        """Move ``ref`` from ``old`` to ``new`` (None: absent / delete); False if it moved.

        Call with :meth:`locked` held. An existing loose ref is rewritten in place (one
        ``pwrite`` of 41 bytes: on this class of disk creating a file costs 100-250 µs, the
        rewrite 3 µs); creating or deleting a ref follows git's ``<ref>.lock`` protocol.

        Raises:
            ConcurrencyError: git's ``<ref>.lock`` stayed taken by a live process.
        """
        if old is not None and new is not None:
            done = self._update_in_place(ref, old, new)
            if done is not None:
                return done
        path = self.path(ref)
        lock = path + ".lock"
        self._makedirs(os.path.dirname(path))
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                self._clear_stale(lock, deadline)
        self._adjust(lock)  # the ref keeps this mode: other members rewrite it in place
        try:
            if self.read(ref) != old:
                os.close(fd)
                os.unlink(lock)
                return False
            if new is None:
                os.close(fd)
                os.unlink(lock)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                self._drop_packed(ref)
                return True
            os.write(fd, new + b"\n")
            os.close(fd)
            os.rename(lock, path)
            return True
        except BaseException:
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
            raise

    def _update_in_place(self, ref: str, old: bytes, new: bytes) -> bool | None:
        """Rewrite a loose ref's 41 bytes; None when the lock protocol must be used instead.

        Every gitstore writer holds the flock of :meth:`locked`, so no two of them write at
        once. A git process taking ``<ref>.lock`` meanwhile is waited for. A reader racing the
        write can see a mix of two ids; :meth:`read` and the store's readers re-read then.
        """
        path = self.path(ref)
        lock = path + ".lock"
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while os.path.exists(lock):  # git is updating this ref: let it finish
            self._clear_stale(lock, deadline)
        try:
            fd = os.open(path, os.O_RDWR)
        except (FileNotFoundError, NotADirectoryError):
            return None  # only in packed-refs, or not there at all
        except PermissionError:
            return None  # another member's ref, not writable by us: replace it instead
        try:
            current = os.pread(fd, 4096, 0)
            if len(current) != 41 or current[40:] != b"\n":
                return None
            if current[:40] != old:
                return False
            os.pwrite(fd, new, 0)
            return True
        finally:
            os.close(fd)

    def _clear_stale(self, lock: str, deadline: float) -> None:
        try:
            age = time.time() - os.stat(lock).st_mtime
        except FileNotFoundError:
            return
        if age > STALE_LOCK_SECONDS:
            # we hold the flock, so no gitstore writer owns it: a killed writer left it
            try:
                os.unlink(lock)
            except FileNotFoundError:
                pass
            return
        if time.monotonic() > deadline:
            raise ConcurrencyError(f"{lock} stays locked by another process")
        time.sleep(0.002)

    def _drop_packed(self, ref: str) -> None:
        packed = os.path.join(self.gitdir, "packed-refs")
        if not os.path.exists(packed):
            return
        lock = packed + ".lock"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exc:
            raise ConcurrencyError("packed-refs is locked by another process") from exc
        self._adjust(lock)
        try:
            with open(packed, "rb") as f:
                lines = f.read().splitlines(keepends=True)
            out, skip_peel = [], False
            for line in lines:
                if skip_peel and line.startswith(b"^"):
                    continue
                skip_peel = line.rstrip(b"\n").endswith(b" " + ref.encode())
                if not skip_peel:
                    out.append(line)
            os.write(fd, b"".join(out))
            os.close(fd)
            os.rename(lock, packed)
        except BaseException:
            os.unlink(lock)
            raise
