"""Keeping a GitDataStore healthy: verify, stats, prune, gc."""

from __future__ import annotations

import math
import os
import numbers
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._git.lfs import MAX_POINTER, parse_pointer
from .._git.lfs import old as lfs_old
from .._git.layout import VERSIONS, ref_for_version, version_of_ref, version_ref_problem
from .._git.refs import STALE_LOCK_SECONDS
from ..codecs import decode_payload, read_all
from ..errors import (
    CorruptEntryError,
    EntryNotFoundError,
    GitStoreError,
    LfsObjectMissingError,
    InvalidArgumentError,
    NotFetchedError,
    StoreError,
)
from ._git_core import GitCore


def _check_bounds(older_than: Any, keep_last: Any) -> None:
    """Refuse bounds that would prune what nobody meant: negative, NaN, infinite, not numbers.

    Raises:
        InvalidArgumentError: a bound is nonsensical.
    """
    if older_than is not None and (
            isinstance(older_than, bool) or not isinstance(older_than, numbers.Real)
            or not math.isfinite(older_than) or older_than < 0):
        raise InvalidArgumentError(
            f"older_than must be a finite number of seconds >= 0, not {older_than!r}")
    if keep_last is not None and (
            isinstance(keep_last, bool) or not isinstance(keep_last, numbers.Integral) or keep_last < 0):
        raise InvalidArgumentError(f"keep_last must be an integer >= 0, not {keep_last!r}")


class MaintenanceMixin(GitCore):
    """The maintenance operations of :class:`~gitstore.GitDataStore`."""

    def verify(self, progress: Callable[[int, int], None] | None = None, fetch: bool = False,
               not_fetched: list[str] | None = None) -> list[str]:
        """Read every object reachable from the store's refs, check its id, decode every
        attribute; return a description of each problem found (empty: all is well).

        Git LFS content here is re-hashed (SHA-256), whatever the record of files already
        verified says; LFS content not here (fetched lazily) is absent, not a problem, and is
        not downloaded.

        In a partial store (see :meth:`fetch`), a blob its promisor remote still holds is
        absent, not damaged: it is no problem, and is named in ``not_fetched`` (a list the
        caller passes) unless ``fetch`` is true, which first fetches every such blob (one
        request) and then checks it like the others.

        Raises:
            NotFetchedError: with ``fetch``, the promised blobs could not be fetched.
        """
        if fetch:
            self._fetch_promised(self._absent_blobs(self._version_refs()))
        self._local.rehash = True
        try:
            with self._no_fetch():
                return self._verify(progress, not_fetched)
        finally:
            self._local.rehash = False

    def _verify(self, progress: Callable[[int, int], None] | None,
                not_fetched: list[str] | None) -> list[str]:
        problems: list[str] = []
        refs = self._version_refs()
        for ref in sorted(set(self._refs.list(VERSIONS)) - set(refs)):
            problems.append(f"ref {ref} is not a version gitstore writes "
                            f"({version_ref_problem(ref)}): ignored")
        for done, ref in enumerate(refs):
            version = version_of_ref(ref)
            unreadable = False
            try:
                for hexkey, tree, problem in list(self._scan(ref)):
                    if problem is not None:
                        problems.append(problem)
                        unreadable |= not hexkey  # the tip itself: no history to read
                        continue
                    try:
                        entry = self._listed_entry(tree, hexkey.encode(), ref)
                        if entry.problem is not None:
                            raise CorruptEntryError(entry.problem)
                        for attribute in entry.attributes:
                            try:
                                found = self._get(entry.key, attribute, version)
                            except LfsObjectMissingError:
                                continue  # lazily fetched content: absent, not corrupt
                            except NotFetchedError as exc:
                                if not_fetched is not None:
                                    not_fetched.append(
                                        f"version {version}, entry {hexkey[:12]}: {attribute} "
                                        f"not fetched (promised by {exc.remote})")
                                continue
                            if found is not None:
                                if found[0].trusted:
                                    decode_payload(found[0], found[1])
                                else:
                                    read_all(found[1])  # a pickle: its bytes are checked
                    except GitStoreError as exc:
                        problems.append(f"version {version}, entry {hexkey[:12]}: {exc}")
                for _commit in self._commits(ref) if not unreadable else ():
                    pass  # reading each commit checks it
            except GitStoreError as exc:
                problems.append(f"version {version}: {exc}")
            if progress is not None:
                progress(done + 1, len(refs))
        return problems

    def stats(self) -> dict[str, Any]:
        """Entries, versions, bytes on disk, loose and packed objects, Git LFS objects here and
        their bytes (a snapshot: writers may merge packs meanwhile); in a partial store also
        ``not_fetched``, the blobs its promisor remotes still hold."""
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
        lfs_objects, lfs_bytes = 0, 0
        for _oid, lfs_path in self._lfs.oids():
            try:
                lfs_bytes += os.stat(lfs_path).st_size
                lfs_objects += 1
            except FileNotFoundError:
                continue
        figures: dict[str, Any] = {
            "path": str(self.path),
            "versions": len(versions),
            "entries": self.count_entries(),
            "bytes": total,
            "loose_objects": len(loose),
            "packed_objects": packed,
            "packs": packs,
            "lfs_objects": lfs_objects,  # Git LFS content here (lfs/objects)
            "lfs_bytes": lfs_bytes,
        }
        if self._is_partial():  # a partial fetch: blobs its promisor remotes still hold
            figures["not_fetched"] = len(set(self._absent_blobs(self._version_refs())))
        return figures

    def prune(self, versions: list[str] | None = None, older_than: float | None = None,
              keep_last: int | None = None, dry_run: bool = False) -> list[str]:
        """Delete whole versions: those named, those whose last store is older than
        ``older_than`` seconds, or all but the ``keep_last`` most recently stored ones.
        Returns the versions deleted (or that would be, with ``dry_run``). Their objects go
        at the next :meth:`gc`. A version whose tip cannot be read (a damaged or hand-made
        ref) has no date: it is deleted only when named.

        Raises:
            InvalidArgumentError: ``older_than`` is not a finite number of seconds >= 0, or
                ``keep_last`` not an integer >= 0 (nothing is deleted).
            EntryNotFoundError: a named version does not exist (nothing is deleted).
        """
        _check_bounds(older_than, keep_last)
        tips: dict[str, float] = {}
        undated: set[str] = set()  # a damaged tip: only pruned when named
        for ref in self._version_refs():
            try:
                first = next(self._commits(ref), None)
            except CorruptEntryError:
                undated.add(version_of_ref(ref))
                continue
            tips[version_of_ref(ref)] = first[1]["time"] if first else 0.0
        doomed: set[str] = set()
        if versions:
            unknown = [v for v in versions if v not in tips and v not in undated]
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
                    tip = self._refs.read(ref)
                    if tip is not None:
                        self._record_pruned(tip)
                    self._refs.compare_and_swap(ref, tip, None)
        return sorted(doomed)

    def _record_pruned(self, tip: bytes) -> None:
        """Note a pruned tip for the next :meth:`gc`, which frees what only it reached at once
        (other unreachable objects wait :data:`FOREIGN_GRACE_SECONDS`). One short append:
        atomic among concurrent prunes."""
        path = Path(self.gitdir) / "gitstore" / _PRUNED
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if self._shared_perm is not None:
                self._shared_perm(str(path))
            os.write(fd, b"%s %d\n" % (tip, time.time_ns()))
        finally:
            os.close(fd)

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

    def gc(self) -> None:
        """Repack every reachable object into one pack and delete the unreachable ones: those
        of the versions :meth:`prune` removed *now* (their space comes back at once), any
        other after :data:`FOREIGN_GRACE_SECONDS` (an hour).

        Protocol (see :class:`~gitstore._git.objects.WriteGate`): a gitstore writer (a store,
        a fetch or pull, a push to a path remote) holds the store's write gate shared from its
        first object written until its ref has moved; gc holds it exclusive while it decides
        what is unreachable and deletes it. So while gc deletes, no gitstore writer has an
        object that is written but not yet referenced. git processes take no gate: a push
        over ``git://``, ssh or http (git's ``receive-pack``) has its objects unreachable
        from their arrival until its ref moves, so an unreachable object younger than the
        grace is kept (loose) unless only a version pruned since reached it (``prune`` notes
        the tips it deletes; gc makes what they alone reached look old to git). Under the
        gate gc runs ``git repack -A -d --unpack-unreachable=<grace>`` and deletes the loose
        objects ``git prune`` names as unreachable and older than the grace. Temporary files
        are not gc's to delete unless they are over an hour old (a killed writer's): a live
        writer's temporaries are never touched.

        git streams objects from disk, so memory stays small however large the store is;
        gitstore's own pack merging keeps the pack count bounded between ``gc`` runs.

        Raises:
            StoreError: git is not installed or failed, or gc was called inside a batch.
        """
        git = shutil.which("git")
        if git is None:
            raise StoreError("gc needs the git command-line tool")
        if self._gate.held:
            raise StoreError("gc cannot run inside a batch (it waits for the batch to end)")
        base = [git, "--git-dir", self.gitdir]
        with self._refs.locked("gitstore-gc"):  # one gitstore gc at a time
            # a gc killed midway leaves git's lock files (packed-refs.lock, commit-graph.lock,
            # ...): with no gitstore gc running (we hold its lock), one that stays for a few
            # seconds is stale, as git holds them for milliseconds
            self._clear_stale_git_locks()
            with self._gate.exclusive():
                record = self._take_pruned_record()
                self._age_pruned(base, record)
                self._lfs_gc(base, record)
                # unreachable packed objects younger than the grace are kept, loose: a git
                # receive-pack (a push over git://, ssh, http) takes no gate, and its objects
                # are unreachable from their arrival until its ref moves
                expire = f"{int(FOREIGN_GRACE_SECONDS)}.seconds.ago"
                # a partial store (promised blobs absent) cannot have a bitmap index, which
                # git writes by default in a bare repository
                partial = ["--no-write-bitmap-index"] if self._is_partial() else []
                result = subprocess.run([*base, "repack", "-A", "-d", "-q", *partial,
                                         f"--unpack-unreachable={expire}"],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    raise StoreError(f"git repack failed: {result.stderr.strip()}")
                # `git prune --expire=now` would also delete every temporary file, a
                # concurrent fetch's included: let it only name the unreachable objects
                listed = subprocess.run([*base, "prune", "--dry-run", f"--expire={expire}"],
                                        capture_output=True, text=True)
                if listed.returncode != 0:
                    raise StoreError(f"git prune failed: {listed.stderr.strip()}")
                objects = Path(self.gitdir) / "objects"
                for line in listed.stdout.splitlines():
                    sha = line.split(" ", 1)[0]
                    if len(sha) == 40 and not sha.strip("0123456789abcdef"):
                        _remove_file(objects / sha[:2] / sha[2:])
                self._remove_old_temporaries(objects)
                if record is not None:
                    _remove_file(record)

    def _lfs_gc(self, base: list[str], record: Path | None) -> None:
        """Delete Git LFS content no ref (nor the index) reaches through any commit of its
        history: at once when only versions pruned since reached it, else once it is older
        than :data:`FOREIGN_GRACE_SECONDS` (a git-lfs push in flight, or an object of a code
        repository's own git-lfs). Runs under the exclusive write gate: no gitstore writer has
        content written but not yet referenced."""
        have = dict(self._lfs.oids())
        if not have:
            return
        referenced = _lfs_oids(base, ["--all", "--indexed-objects"])
        if referenced is None:
            return  # git could not list them: delete nothing
        pruned: set[str] = set()
        if record is not None:
            tips = [line.split()[0].decode() for line in record.read_bytes().splitlines()
                    if line.split() and len(line.split()[0]) == 40]
            tips = [t for t in tips if not t.strip("0123456789abcdef")]
            if tips:
                pruned = _lfs_oids(base, [*tips, "--not", "--all", "--indexed-objects"]) or set()
        for oid, path in have.items():
            if oid in referenced:
                continue
            if oid in pruned or lfs_old(path, FOREIGN_GRACE_SECONDS):
                _remove_file(Path(path))
                self._lfs.forget(oid)
        tmp = Path(self._lfs.root) / "tmp"
        if tmp.is_dir():
            for leftover in tmp.iterdir():
                if lfs_old(str(leftover), TEMP_GRACE_SECONDS):
                    _remove_file(leftover)

    def _take_pruned_record(self) -> Path | None:
        """Move the prune record aside (a prune meanwhile starts a new one)."""
        path = Path(self.gitdir) / "gitstore" / _PRUNED
        taken = path.with_name(f"{_PRUNED}.gc")
        try:
            if taken.exists():  # a gc killed midway: merge its record into the new one
                with open(taken, "ab") as out, open(path, "rb") as more:
                    out.write(more.read())
                path.unlink()
            else:
                path.rename(taken)
        except FileNotFoundError:
            pass
        return taken if taken.exists() else None

    def _age_pruned(self, base: list[str], record: Path | None) -> None:
        """Make the objects that only pruned versions reached look old to git (their loose
        files, the packs holding them), so that this gc frees them at once. Only files older
        than the prune are touched: an object that arrived since (a push reusing it) keeps
        its age and its grace."""
        if record is None:
            return
        tips: dict[bytes, int] = {}
        for line in record.read_bytes().splitlines():
            sha, _, stamp = line.partition(b" ")
            if len(sha) == 40 and not sha.strip(b"0123456789abcdef") and stamp.isdigit():
                tips[sha] = max(tips.get(sha, 0), int(stamp))
        if not tips:
            return
        when = max(tips.values()) / 1e9
        # --missing=allow-any: in a partial store, git would otherwise fetch promised blobs
        listed = subprocess.run([*base, "rev-list", "--objects", "--ignore-missing",
                                 "--missing=allow-any", "--stdin", "--not", "--all"],
                                input=b"".join(t + b"\n" for t in tips), capture_output=True)
        if listed.returncode != 0:
            return  # nothing aged: those objects go after the grace, like any other
        doomed = {line[:40] for line in listed.stdout.splitlines() if len(line) >= 40}
        objects = Path(self.gitdir) / "objects"
        old = (1, 1)
        remaining = set()
        for sha in doomed:
            loose = objects / sha[:2].decode() / sha[2:40].decode()
            try:
                if loose.stat().st_mtime <= when:
                    os.utime(loose, old)
                continue
            except FileNotFoundError:
                remaining.add(bytes.fromhex(sha.decode()))
            except PermissionError:
                continue  # another member's file (group-shared store): it waits the grace
        if not remaining:
            return
        from dulwich.object_format import SHA1
        from dulwich.objects import RawObjectID
        from dulwich.pack import load_pack_index

        for idx in (objects / "pack").glob("pack-*.idx"):
            pack = idx.with_suffix(".pack")
            try:
                if pack.stat().st_mtime > when:
                    continue
                index = load_pack_index(str(idx), object_format=SHA1)
            except (OSError, ValueError):
                continue
            try:
                for sha in remaining:
                    try:
                        index.object_offset(RawObjectID(sha))
                    except KeyError:
                        continue
                    try:
                        os.utime(pack, old)
                    except PermissionError:
                        pass  # another member's pack: its pruned objects wait the grace
                    break
            finally:
                index.close()

    def _remove_old_temporaries(self, objects: Path) -> None:
        """Delete ``tmp_*`` files over :data:`TEMP_GRACE_SECONDS` old (a killed writer's)."""
        limit = time.time() - TEMP_GRACE_SECONDS
        for pattern in ("tmp_*", "pack/tmp_*", "[0-9a-f][0-9a-f]/tmp_*"):
            for path in objects.glob(pattern):
                try:
                    if path.is_file() and path.lstat().st_mtime < limit:
                        path.unlink()
                except FileNotFoundError:
                    pass


#: a temporary file this old belongs to a writer that died (no write takes an hour)
TEMP_GRACE_SECONDS = 3600.0
#: an unreachable object younger than this may be a push in flight (git's receive-pack takes
#: no gitstore lock): gc keeps it, unless only a version pruned since reached it
FOREIGN_GRACE_SECONDS = 3600.0
_PRUNED = "pruned"


def _lfs_oids(base: list[str], revs: list[str]) -> set[str] | None:
    """The LFS object ids of the pointers reachable from ``revs`` (git rev-list arguments),
    or None if git failed. Only blobs of a pointer's size are read."""
    listed = subprocess.run([*base, "rev-list", "--objects", "--ignore-missing",
                             f"--filter=blob:limit={MAX_POINTER}", *revs],
                            capture_output=True)
    if listed.returncode != 0:
        return None
    ids = b"".join(line[:40] + b"\n" for line in listed.stdout.splitlines() if len(line) >= 40)
    checked = subprocess.run([*base, "cat-file", "--batch-check"], input=ids,
                             capture_output=True)
    if checked.returncode != 0:
        return None
    small = []
    for line in checked.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == b"blob" and 100 <= int(parts[2]) < MAX_POINTER:
            small.append(parts[0])
    if not small:
        return set()
    read = subprocess.run([*base, "cat-file", "--batch"],
                          input=b"".join(s + b"\n" for s in small), capture_output=True)
    if read.returncode != 0:
        return None
    out: set[str] = set()
    data, at = read.stdout, 0
    while at < len(data):
        end = data.index(b"\n", at)
        header = data[at:end].split()
        size = int(header[2]) if len(header) == 3 else 0
        blob = data[end + 1: end + 1 + size]
        at = end + 1 + size + 1
        try:
            pointer = parse_pointer(blob)
        except CorruptEntryError:
            continue
        if pointer is not None:
            out.add(pointer.oid)
    return out


def _remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
