"""Talking to git remotes through dulwich's client (plumbing): fetch and push refs.

Every transport dulwich speaks works: a path, ``file://``, ``git://``, ``http(s)://``,
``ssh://``. Transport failures become :class:`~gitstore.errors.RemoteError`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import (
    CredentialError,
    GitStoreError,
    PushRefusedError,
    RemoteError,
    StoreLocationError,
)
from .shared import makedirs

__all__ = ["fetch_objects", "fetch_refs", "link_objects", "local_gitdir", "no_merges", "push_refs"]

#: seconds before a silent remote is given up on
TIMEOUT = 30.0


_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text)


@contextmanager
def _translated(url: str) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)  # dulwich's TCP and HTTP clients set none of their own
    try:
        yield
    except GitStoreError:  # ours, already typed (a refused ref, a missing version...)
        raise
    except Exception as exc:  # dulwich raises many kinds: socket, HTTP, protocol, OS errors
        raise RemoteError(redact(f"remote {url}: {type(exc).__name__}: {exc}"), redact(url)) from None
    finally:
        socket.setdefaulttimeout(previous)


def _client(url: str) -> tuple[Any, str]:
    from dulwich.client import get_transport_and_path

    return get_transport_and_path(url)


_T = TypeVar("_T")


def _http_client(url: str, username: str | None, password: str | None) -> tuple[Any, str]:
    """dulwich's HTTP client for ``url`` (no user or password in it), with these credentials
    (its own ``_url_with_auth`` stays unset: the password is in no URL it may print)."""
    from urllib.parse import urlsplit

    from dulwich.client import Urllib3HttpGitClient

    client = Urllib3HttpGitClient(url, username=username, password=password)
    pool = client.pool_manager
    request = pool.request

    def released_on_401(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # dulwich raises HTTPUnauthorized without releasing the response: its connection
        # would stay open until the collector finds it
        response = request(method, url, *args, **kwargs)
        if response.status in (401, 407):
            response.drain_conn()
            response.release_conn()
        return response

    pool.request = released_on_401  # type: ignore[method-assign]
    return client, urlsplit(url).path


def with_client(url: str, gitdir: str | None, operation: Callable[[Any, str], _T]) -> _T:
    """Run ``operation(client, path)`` on a client for ``url``, with credentials for HTTP(S)
    found as git finds them (:mod:`gitstore._git.credentials`): the URL's, then ``~/.netrc``,
    then, on a 401, git's credential helpers (``git credential fill``; ``approve`` after a
    success, ``reject`` after a refusal). ``operation`` runs again after a 401 (the server
    refuses before anything changes). Call inside :func:`_translated`.

    Raises:
        CredentialError: the server wants credentials and none were found, or refused them.
    """
    from urllib.parse import urlsplit

    from dulwich.client import HTTPUnauthorized

    from . import credentials

    def run(client: Any, path: str) -> _T:
        try:
            return operation(client, path)
        finally:  # keep-alive connections (Apache's) are closed, not left to the collector
            pool = getattr(client, "pool_manager", None)
            if pool is not None:
                pool.clear()
            client.close()

    if urlsplit(url).scheme not in ("http", "https"):
        return run(*_client(url))
    clean, user, password = credentials.split_url(url)
    source = "the URL" if password is not None else None
    if password is None:
        found = credentials.from_netrc(urlsplit(clean).hostname or "")
        if found is not None and (user is None or user == found[0]):
            user, password, source = found[0] or user, found[1], "~/.netrc"
    try:
        return run(*_http_client(clean, user, password))
    except HTTPUnauthorized:
        if source is not None:
            raise CredentialError(f"remote {redact(url)} refused the credentials from "
                                  f"{source} (user {user or '(none)'})", redact(url)) from None
    asked = credentials.fill(gitdir, clean, user)
    if asked is None:
        raise CredentialError(
            f"remote {redact(url)} wants credentials, and none were found: configure a git "
            "credential helper (git config --global credential.helper store; the first "
            "successful git fetch or push over this URL, or 'git credential approve', saves "
            "them), or an entry in ~/.netrc", redact(url))
    try:
        result = run(*_http_client(clean, asked.username, asked.password))
    except HTTPUnauthorized:
        credentials.reject(gitdir, asked)
        raise CredentialError(f"remote {redact(url)} refused the credentials of user "
                              f"{asked.username!r} given by git's credential helper (they "
                              "were rejected there)", redact(url)) from None
    credentials.approve(gitdir, asked)
    return result


def local_gitdir(url: str) -> str | None:
    """The git directory of a remote on this machine (a path or ``file://``), else None."""
    if "://" in url:
        if not url.startswith("file://"):
            return None
        from urllib.parse import unquote, urlparse

        url = unquote(urlparse(url).path)
    elif ":" in url.split("/", 1)[0]:
        return None  # scp-like ssh syntax, host:path
    if os.path.isdir(os.path.join(url, ".git")):
        return os.path.join(url, ".git")
    if os.path.isfile(os.path.join(url, "HEAD")) and os.path.isdir(os.path.join(url, "objects")):
        return url
    return None


@contextmanager
def no_merges(gitdir: str, shared: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold off gitstore's pack merging in ``gitdir`` (its merger skips a held lock).

    The lock file is opened without following links, and only inside ``gitdir``: a remote's
    ``gitstore/locks`` that leads elsewhere is not used (nor created through).
    """
    folder = os.path.join(gitdir, "gitstore", "locks")
    try:
        makedirs(folder, shared)
        if os.path.realpath(folder) != os.path.join(os.path.realpath(gitdir), "gitstore",
                                                    "locks"):
            raise PermissionError("the lock folder leads out of the repository")
        fd = os.open(os.path.join(folder, "merge"),
                     os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        if shared is not None:
            shared(os.path.join(folder, "merge"))
    except OSError:  # a read-only or odd remote: nobody merges there through us either
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def link_objects(src_gitdir: str, dst_gitdir: str) -> int:
    """Give ``dst`` every pack and loose object of ``src`` it lacks: hard links where the two
    share a file system (objects are immutable, so sharing inodes is safe), copies elsewhere.
    Packs go in before their indexes, so readers never see half a pack. Returns files added.

    Unchecked: only for a trusted ``src`` (a push from our own store). What comes *from* a
    path remote goes through :func:`receive_local` instead.
    """
    added = 0
    src_objects = os.path.join(src_gitdir, "objects")
    dst_objects = os.path.join(dst_gitdir, "objects")
    src_packs = os.path.join(src_objects, "pack")
    dst_packs = os.path.join(dst_objects, "pack")
    os.makedirs(dst_packs, exist_ok=True)
    present = set(os.listdir(dst_packs))
    names = os.listdir(src_packs) if os.path.isdir(src_packs) else []
    for name in sorted(n for n in names if n.endswith(".idx")):
        base = name[:-4]
        if base + ".idx" in present:
            continue
        for ext in (".pack", ".idx"):
            added += _link(os.path.join(src_packs, base + ext), os.path.join(dst_packs, base + ext))
    for folder in os.listdir(src_objects):
        if len(folder) != 2:
            continue
        source = os.path.join(src_objects, folder)
        for name in os.listdir(source):
            target = os.path.join(dst_objects, folder, name)
            if not os.path.exists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                added += _link(os.path.join(source, name), target)
    return added


def _link(source: str, target: str) -> int:
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)
        os.replace(tmp, target)
        return 1
    except FileNotFoundError:  # removed meanwhile (a gc): its objects are in another pack
        return 0


# --- what arrives from a remote is checked in a quarantine before the store sees it ---------

_PACK_NAME = re.compile(r"pack-[0-9a-f]{40}\.(pack|idx|rev|promisor)\Z")
_HEX2 = re.compile(r"[0-9a-f]{2}\Z")
_HEX38 = re.compile(r"[0-9a-f]{38}\Z")
_TYPE_NAMES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}


def _is_hex_sha(value: bytes) -> bool:
    return len(value) == 40 and not value.strip(b"0123456789abcdef")


class Incoming:
    """A quarantine for objects received from a remote, as git's ``receive-pack`` keeps one:
    a private object directory ``objects/tmp_objdir-gitstore-*`` whose packs the store never
    reads until :meth:`admit`. A failed or refused fetch removes the directory, so it leaves
    nothing behind (no ``tmp_pack_*``, no unreachable objects).
    """

    PREFIX = "tmp_objdir-gitstore-"

    def __init__(self, gitdir: str, shared: Callable[[str], None] | None = None) -> None:
        self.gitdir = gitdir
        self.objects = os.path.join(gitdir, "objects")
        _clear_abandoned(self.objects)
        self.path = tempfile.mkdtemp(prefix=self.PREFIX, dir=self.objects)
        # held while we live: the kernel drops it if we are killed, which marks the folder
        # as abandoned for the next fetch to remove
        self._lock = os.open(os.path.join(self.path, "lock"),
                             os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.pack_dir = os.path.join(self.path, "pack")
        os.mkdir(self.pack_dir)
        os.mkdir(os.path.join(self.path, "info"))
        with open(os.path.join(self.path, "info", "alternates"), "w") as f:
            f.write(os.path.abspath(self.objects) + "\n")
        self._shared = shared
        self._store: Any = None

    def store(self) -> Any:
        """A dulwich object store that sees the quarantine and, behind it, the store's objects."""
        if self._store is None:
            from dulwich.object_store import DiskObjectStore

            self._store = DiskObjectStore(self.path)
        return self._store

    def git(self) -> tuple[list[str], dict[str, str]] | None:
        """``(git command, environment)`` seeing the quarantine and the store, or None
        without git."""
        git = shutil.which("git")
        if git is None:
            return None
        return [git, "--git-dir", self.gitdir], _git_env(self)

    def _close_store(self) -> None:
        if self._store is not None:
            for alternate in getattr(self._store, "_alternates", None) or []:
                alternate.close()
            self._store.close()
            self._store = None

    def admit(self) -> None:
        """Move what was received into the store: loose objects, then each pack before its
        index (readers use a pack only once its ``.idx`` exists)."""
        self._close_store()
        for folder in sorted(os.listdir(self.path)):
            if not _HEX2.match(folder):
                continue
            target_dir = os.path.join(self.objects, folder)
            if not os.path.isdir(target_dir):
                os.makedirs(target_dir, exist_ok=True)
                self._adjust(target_dir)
            for name in os.listdir(os.path.join(self.path, folder)):
                if _HEX38.match(name):
                    self._move(os.path.join(self.path, folder, name),
                               os.path.join(target_dir, name))
        names = [n for n in os.listdir(self.pack_dir) if _PACK_NAME.match(n)]
        order = {"pack": 0, "rev": 1, "promisor": 1, "idx": 2}
        target_packs = os.path.join(self.objects, "pack")
        os.makedirs(target_packs, exist_ok=True)
        for name in sorted(names, key=lambda n: (order[n.rsplit(".", 1)[1]], n)):
            self._move(os.path.join(self.pack_dir, name), os.path.join(target_packs, name))
        self.discard()

    def _move(self, source: str, target: str) -> None:
        if os.path.exists(target):
            return  # the same name is the same content (an object id, a pack checksum)
        self._adjust(source)
        os.rename(source, target)

    def _adjust(self, path: str) -> None:
        if self._shared is not None:
            self._shared(path)

    def mark_promisor(self, refs: dict[str, bytes] | None = None) -> None:
        """Mark every pack received as a *promisor* pack (a ``.promisor`` file beside it, as
        ``git fetch`` writes for a partial fetch): objects they refer to but lack are
        promised by the remote, which git (``fsck``, ``repack``, ``gc``) then accepts."""
        text = "".join(f"{sha.decode()} {ref}\n" for ref, sha in sorted((refs or {}).items()))
        for name in os.listdir(self.pack_dir):
            if _PACK_NAME.match(name) and name.endswith(".pack"):
                with open(os.path.join(self.pack_dir, name[:-5] + ".promisor"), "w") as f:
                    f.write(text)

    def discard(self) -> None:
        self._close_store()
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


def _clear_abandoned(objects: str) -> None:
    """Remove the quarantines of fetches that were killed (their lock is free). One being
    made this instant has no lock file yet and is left alone unless an hour old."""
    try:
        names = [n for n in os.listdir(objects) if n.startswith(Incoming.PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(objects, name)
        try:
            fd = os.open(os.path.join(path, "lock"), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            try:
                if time.time() - os.lstat(path).st_mtime > 3600:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live fetch
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def incoming(gitdir: str, shared: Callable[[str], None] | None = None) -> Iterator[Incoming]:
    """An :class:`Incoming` quarantine, removed on the way out unless admitted."""
    try:
        quarantine = Incoming(gitdir, shared)
    except OSError as exc:
        raise StoreLocationError(f"cannot receive objects into {gitdir}: "
                                 f"{exc.strerror or exc}", gitdir) from None
    try:
        yield quarantine
    finally:
        quarantine.discard()


def _git_env(quarantine: Incoming) -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_OBJECT_DIRECTORY"] = quarantine.path
    env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = os.path.abspath(quarantine.objects)
    return env


def fetch_refs(quarantine: Incoming, repo: Any, url: str, wanted: Callable[[str], bool],
               check: Callable[[dict[str, bytes]], None],
               progress: Callable[[bytes], None] | None = None,
               filter_spec: bytes | None = None,
               filtered: list[bool] | None = None) -> dict[str, bytes]:
    """Fetch into ``quarantine`` the objects of the remote refs that ``wanted`` accepts, once
    ``check`` (which sees ``{ref: id}`` before anything is downloaded) let them through;
    return those refs. Names are decoded as UTF-8 (undecodable bytes stay as surrogates, for
    ``check`` to refuse).

    ``filter_spec`` (``blob:none``, ``blob:limit=<n>``) asks for a partial fetch; whether the
    server took it (protocol v2 and ``uploadpack.allowFilter``) is appended to ``filtered``.

    Raises:
        RemoteError: the remote cannot be reached or read.
        GitStoreError: what ``check`` raised.
    """
    chosen: dict[str, bytes] = {}
    refused: list[BaseException] = []

    def determine_wants(refs: dict[bytes, bytes | None], depth: int | None = None
                        ) -> list[bytes]:
        for name, sha in refs.items():
            text = name.decode("utf-8", "surrogateescape")
            if sha is not None and wanted(text):
                chosen[text] = sha
        try:
            check(chosen)
        except Exception as exc:  # re-raised once the transport is closed
            refused.append(exc)
            return []
        return [sha for sha in set(chosen.values()) if sha not in repo.object_store]

    git = shutil.which("git")

    def fetch(client: Any, path: str) -> None:
        chosen.clear()
        refused.clear()
        if filter_spec is not None:
            _watch_filter(client, filtered if filtered is not None else [])
        if git is None:
            _fetch_with_dulwich(quarantine, repo, client, path, determine_wants, progress,
                                filter_spec=filter_spec)
        else:
            _fetch_with_index_pack(git, quarantine, repo, client, path, determine_wants,
                                   progress, filter_spec=filter_spec)

    with _translated(url):
        with_client(url, quarantine.gitdir, fetch)
    if refused:
        raise refused[0]
    return chosen


#: local commits offered to a remote as common ancestors in one fetch
_MAX_HAVES = 256


def _graph_walker(repo: Any) -> Any:
    """What we have, offered to the remote: every gitstore ref's commit, then ancestors, up to
    :data:`_MAX_HAVES` commits. dulwich's default offers only ``refs/heads/`` (which a store
    does not use: the remote sent the whole history again on every fetch), and its client
    sends every have before reading an answer, so a walk of the whole history would cost a
    line per commit. A remote-tracking ref's commit is one the remote almost always still has,
    and a have it does not know is ignored (the pack is then larger, never incomplete)."""
    from dulwich.object_store import ObjectStoreGraphWalker

    refs = repo.refs.as_dict(b"refs/gitstore")
    heads = [sha for sha in refs.values() if sha in repo.object_store]
    budget = [_MAX_HAVES]

    def parents(sha: Any) -> Any:
        if budget[0] <= 0:
            return []
        budget[0] -= 1
        try:
            return list(repo.object_store[sha].parents)
        except Exception:  # noqa: BLE001 - missing or damaged: offer nothing below it
            return []

    return ObjectStoreGraphWalker(list(dict.fromkeys(heads)), parents)


def _watch_filter(client: Any, filtered: list[bool]) -> None:
    """Note whether the server offers ``filter`` (dulwich sends the filter only then, over
    protocol v2, and otherwise only logs a warning: we say so ourselves)."""
    negotiate = client._negotiate_upload_pack_capabilities

    def watched(capabilities: set[bytes]) -> Any:
        result = negotiate(capabilities)
        filtered.append(any(c.startswith(b"fetch=") and b"filter" in c.split(b"=", 1)[1].split()
                            for c in result[0]))
        return result

    client._negotiate_upload_pack_capabilities = watched
    client._warn_filter_objects = lambda: None


class _NoHaves:
    """A graph walker that has nothing to offer: the server sends exactly what is wanted."""

    def __next__(self) -> None:
        return None

    next = __next__

    def ack(self, sha: bytes) -> None:
        pass

    def nak(self) -> None:
        pass


def fetch_objects(quarantine: Incoming, url: str, ids: list[bytes],
                  progress: Callable[[bytes], None] | None = None) -> None:
    """Fetch the objects ``ids`` (blobs a partial fetch left behind) into ``quarantine`` by
    id, and check that each arrived as a blob (its id computed from its content by the
    indexer): a server that sends anything else is refused. The received packs are marked
    promisor packs, as ``git`` does for a lazy fetch.

    The server must serve objects by id: protocol v2 does (``git daemon``, ``git
    http-backend``); over protocol v0 it needs ``uploadpack.allowAnySHA1InWant``.

    Raises:
        RemoteError: unreachable, refused, or an object missing or not a blob in its answer.
    """
    wants = sorted(set(ids))

    def determine_wants(refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
        return wants

    git = shutil.which("git")

    def fetch(client: Any, path: str) -> None:
        if git is None:
            _fetch_with_dulwich(quarantine, None, client, path, determine_wants, progress,
                                walker=_NoHaves())
        else:
            _fetch_with_index_pack(git, quarantine, None, client, path, determine_wants,
                                   progress, walker=_NoHaves())

    with _translated(url):  # credentials as for any fetch (URL, ~/.netrc, git's helpers)
        with_client(url, quarantine.gitdir, fetch)
    store = quarantine.store()
    missing, wrong = [], []
    for sha in wants:
        try:
            type_num, _data = store.get_raw(sha)
        except KeyError:
            missing.append(sha.decode())
            continue
        if type_num != 3:
            wrong.append(sha.decode())
    if missing or wrong:
        raise RemoteError(redact(
            f"remote {url} did not send "
            + "; ".join(part for part in (
                f"object(s) {', '.join(missing[:3])}" if missing else "",
                f"blob(s) {', '.join(wrong[:3])} (something else under those ids)"
                if wrong else "") if part)
            + " (nothing was kept)"), url)
    quarantine.mark_promisor()


def _fetch_with_dulwich(quarantine: Incoming, repo: Any, client: Any, path: str,
                        determine_wants: Any, progress: Any, filter_spec: bytes | None = None,
                        walker: Any = None) -> None:
    """Receive the pack into a file of the quarantine, then complete and index it there with
    dulwich (which checks the pack's checksum and computes every object's id)."""
    received = os.path.join(quarantine.path, "received.pack")
    with open(received, "w+b") as f:
        client.fetch_pack(path, determine_wants, walker or _graph_walker(repo), f.write,
                          progress, filter_spec=filter_spec)
        if not f.tell():
            return  # nothing was wanted: no pack came
        f.seek(0)
        quarantine.store().add_thin_pack(f.read, None)
    os.unlink(received)


def _fetch_with_index_pack(git: str, quarantine: Incoming, repo: Any, client: Any, path: str,
                           determine_wants: Any, progress: Any,
                           filter_spec: bytes | None = None, walker: Any = None) -> None:
    """Receive the pack with dulwich's client and index it with ``git index-pack`` (as
    ``git fetch`` does; dulwich's own indexer resolves deltas object by object in Python, ~4x
    slower), into the quarantine. Used when git is installed, like ``gc``; dulwich's path
    otherwise."""
    proc = subprocess.Popen([git, "--git-dir", quarantine.gitdir, "index-pack", "--stdin",
                             "--fix-thin"], env=_git_env(quarantine),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    received = 0

    def pack_data(data: bytes) -> int:
        nonlocal received
        received += len(data)
        proc.stdin.write(data)  # type: ignore[union-attr]
        return len(data)

    try:
        client.fetch_pack(path, determine_wants, walker or _graph_walker(repo), pack_data,
                          progress, filter_spec=filter_spec)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    if not received:  # nothing was wanted: no pack came
        proc.kill()
        proc.communicate()
        return
    _out, error = proc.communicate()
    if proc.returncode != 0:
        raise RemoteError("the pack received could not be indexed: "
                          + error.decode(errors="replace").strip())


# --- a remote on this machine: read without following links out of it ----------------------

def _open_dir(path: str, dir_fd: int | None = None) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def _open_regular(name: str, dir_fd: int, what: str) -> tuple[int, os.stat_result]:
    """Open a file of a remote that must be a regular file (never through a link)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RemoteError(f"{what} is a symbolic link: refused") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RemoteError(f"{what} is not a regular file: refused")
    return fd, st


def local_refs(gitdir: str, prefix: str) -> dict[str, bytes]:
    """The refs under ``prefix`` of a repository on this machine (loose and packed), name →
    object id, as they are claimed: names are not validated here (the caller refuses bad ones),
    but nothing outside ``gitdir`` is read (links are not followed) and a ref that does not hold
    an object id is refused.

    Raises:
        RemoteError: a ref file is a link or holds something other than an object id.
    """
    found: dict[str, bytes] = {}
    root = os.path.realpath(gitdir)
    root_fd = _open_dir(root)
    try:
        fd, _st = _open_regular("packed-refs", root_fd, "the remote's packed-refs")
    except FileNotFoundError:
        fd = -1
    finally:
        os.close(root_fd)
    if fd >= 0:
        with os.fdopen(fd, "rb") as f:
            for line in f.read().splitlines():
                if line.startswith((b"#", b"^")) or not line.strip():
                    continue
                sha, _, refname = line.partition(b" ")
                name = refname.decode("utf-8", "surrogateescape")
                if name.startswith(prefix):
                    if not _is_hex_sha(sha):
                        raise RemoteError(f"packed ref {name!r} does not hold an object id")
                    found[name] = sha
    base = os.path.join(root, *prefix.rstrip("/").split("/"))
    parent = os.path.dirname(base)
    if os.path.realpath(parent) != parent or os.path.islink(base):
        return found  # the ref folders lead out of the repository: read none of them
    for dirpath, _dirs, files in os.walk(base):  # os.walk does not descend into links
        for filename in files:
            full = os.path.join(dirpath, filename)
            name = os.path.relpath(full, root).replace(os.sep, "/")
            if filename.endswith(".lock"):
                continue
            dir_fd = _open_dir(dirpath)
            try:
                fd, _st = _open_regular(filename, dir_fd, f"ref {name!r}")
            except FileNotFoundError:
                continue
            finally:
                os.close(dir_fd)
            with os.fdopen(fd, "rb") as f:
                value = f.read(4096).strip()
            if not _is_hex_sha(value):
                raise RemoteError(f"ref {name!r} does not hold an object id: {value[:60]!r}")
            found[name] = value
    return found


def receive_local(quarantine: Incoming, src_gitdir: str) -> None:
    """Bring into ``quarantine`` every pack and loose object of a repository on this machine
    that the store lacks, each checked: packs are indexed anew (``git index-pack``, or dulwich
    without git), which checks their checksum and the id of every object; loose objects are
    hashed. Nothing is read through a symbolic link. Files owned by us are hard-linked (no
    copy); files of other users are copied (they could rewrite a shared inode later).

    Raises:
        RemoteError: a link, a special file, a damaged pack or object.
    """
    root_fd = _open_dir(os.path.realpath(src_gitdir))
    try:
        try:
            objects_fd = _open_dir("objects", root_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise RemoteError(f"{src_gitdir}/objects is not a folder (a link?): {exc}") from None
        try:
            _receive_packs(quarantine, objects_fd)
            _receive_loose(quarantine, objects_fd)
        finally:
            os.close(objects_fd)
    finally:
        os.close(root_fd)


def _receive_packs(quarantine: Incoming, objects_fd: int) -> None:
    try:
        pack_fd = _open_dir("pack", objects_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RemoteError(f"the remote's objects/pack is not a folder (a link?): {exc}") \
            from None
    try:
        names = set(os.listdir(pack_fd))
        try:
            present = set(os.listdir(os.path.join(quarantine.objects, "pack")))
        except FileNotFoundError:
            present = set()
        for n, name in enumerate(sorted(names)):
            if not _PACK_NAME.match(name) or not name.endswith(".pack"):
                continue
            base = name[:-5]
            if base + ".idx" in present or base + ".idx" not in names:
                continue  # ours already, or still being written there
            try:
                fd, st = _open_regular(name, pack_fd, f"the remote's pack {name}")
            except FileNotFoundError:
                continue  # merged away meanwhile: its objects are in another pack
            placed = os.path.join(quarantine.pack_dir, f"incoming-{n}.pack")
            _place(fd, st, name, pack_fd, placed)
            if st.st_uid == os.geteuid() and _consistent(quarantine, placed, base, pack_fd):
                continue  # ours, and whole: linked as it is
            _index_pack(quarantine, placed, name)
    finally:
        os.close(pack_fd)


def _consistent(quarantine: Incoming, placed: str, base: str, pack_fd: int) -> bool:
    """The fast path for a pack of a remote owned by us (anyone who can write it can write
    our store as well): accept it, with its own index, when both files are whole (the pack's
    SHA-1 trailer, the index's own checksum, the index naming that pack, the same object
    count), without inflating anything. Reads check every object's id anyway. Anything else
    is indexed anew by :func:`_index_pack`."""
    idx = placed[:-5] + ".idx"
    try:
        fd, st = _open_regular(base + ".idx", pack_fd, f"the remote's index {base}.idx")
    except (FileNotFoundError, RemoteError):
        return False
    _place(fd, st, base + ".idx", pack_fd, idx)
    try:
        with open(placed, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if size < 32 or head[:4] != b"PACK" or head[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
                raise ValueError("not a pack")
            digest = hashlib.sha1(head)
            left = size - 20 - 12
            while left > 0:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise ValueError("truncated")
                digest.update(chunk)
                left -= len(chunk)
            trailer = f.read(20)
        with open(idx, "rb") as f:
            index = f.read()
        count = int.from_bytes(head[8:12], "big")
        if (trailer != digest.digest() or len(index) < 8 + 1024 + 40
                or index[:8] != b"\377tOc\0\0\0\2"
                or hashlib.sha1(index[:-20]).digest() != index[-20:]
                or index[-40:-20] != trailer
                or int.from_bytes(index[8 + 255 * 4:8 + 256 * 4], "big") != count):
            raise ValueError("inconsistent")
    except (OSError, ValueError):
        os.unlink(idx)
        return False
    final = os.path.join(quarantine.pack_dir, "pack-" + trailer.hex())
    os.rename(placed, final + ".pack")
    os.rename(idx, final + ".idx")
    return True


def _receive_loose(quarantine: Incoming, objects_fd: int) -> None:
    for folder in sorted(os.listdir(objects_fd)):
        if not _HEX2.match(folder):
            continue
        try:
            folder_fd = _open_dir(folder, objects_fd)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RemoteError(f"the remote's objects/{folder} is not a folder (a link?): "
                              f"{exc}") from None
        try:
            for name in os.listdir(folder_fd):
                if not _HEX38.match(name) or os.path.exists(
                        os.path.join(quarantine.objects, folder, name)):
                    continue
                try:
                    fd, st = _open_regular(name, folder_fd,
                                           f"the remote's object {folder}{name}")
                except FileNotFoundError:
                    continue  # packed meanwhile
                target_dir = os.path.join(quarantine.path, folder)
                os.makedirs(target_dir, exist_ok=True)
                target = os.path.join(target_dir, name)
                _place(fd, st, name, folder_fd, target)
                _check_loose(target, folder + name)
        finally:
            os.close(folder_fd)


def _place(fd: int, st: os.stat_result, name: str, dir_fd: int, target: str) -> None:
    """Put the file ``name`` of ``dir_fd``, opened as ``fd`` (``st`` its status), at
    ``target``: a hard link when it is ours and still the very file opened (``linkat``
    without following links, then checked), else a copy of what ``fd`` reads. Closes ``fd``."""
    try:
        if st.st_uid == os.geteuid():
            try:
                os.link(name, target, src_dir_fd=dir_fd, follow_symlinks=False)
            except OSError:  # another file system, links not allowed: copy
                pass
            else:
                now = os.lstat(target)
                if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev) and \
                        stat.S_ISREG(now.st_mode):
                    return
                os.unlink(target)  # replaced since we opened it: copy what we opened
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
        finally:
            os.close(out)
    finally:
        os.close(fd)


def _index_pack(quarantine: Incoming, placed: str, name: str) -> None:
    """Index a pack received from a path remote, in the quarantine, checking every object."""
    git = shutil.which("git")
    if git is not None:
        result = subprocess.run([git, "--git-dir", quarantine.gitdir, "index-pack", placed],
                                env=_git_env(quarantine), capture_output=True)
        if result.returncode != 0:
            raise RemoteError(f"the remote's pack {name} is damaged: "
                              + result.stderr.decode(errors="replace").strip())
        digest = result.stdout.decode().split()[-1]
        base = placed[:-5]
        final = os.path.join(quarantine.pack_dir, "pack-" + digest)
        for ext in (".rev", ".pack", ".idx"):
            if os.path.exists(base + ext):
                os.rename(base + ext, final + ext)
        return
    try:
        with open(placed, "rb") as f:
            quarantine.store().add_thin_pack(f.read, None)
    except Exception as exc:  # dulwich raises many kinds on a damaged pack
        raise RemoteError(f"the remote's pack {name} is damaged: "
                          f"{type(exc).__name__}: {exc}") from None
    os.unlink(placed)


def _check_loose(path: str, hex_id: str) -> None:
    """A loose object must inflate to ``<type> <size>\\0<content>`` and hash to its name."""
    problem = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            inflate = zlib.decompressobj()
            digest = hashlib.sha1()
            head = b""
            size = -1
            length = 0
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                data = inflate.decompress(chunk)
                if size < 0:
                    head += data
                    if b"\x00" not in head:
                        if len(head) > 64:
                            problem = "has no valid header"
                            break
                        continue
                    header, _, data = head.partition(b"\x00")
                    kind, _, number = header.partition(b" ")
                    if kind not in (b"blob", b"tree", b"commit", b"tag") or \
                            not number.isdigit():
                        problem = "has no valid header"
                        break
                    size = int(number)
                    digest.update(header + b"\x00")
                digest.update(data)
                length += len(data)
            if problem is None and (size < 0 or length != size or not inflate.eof):
                problem = "is truncated or malformed"
            if problem is None and digest.hexdigest() != hex_id:
                problem = "does not match its id"
    except (OSError, zlib.error) as exc:
        problem = f"is unreadable ({exc})"
    if problem is not None:
        raise RemoteError(f"the remote's object {hex_id} {problem}")


#: ref statuses (git's receive-pack, dulwich, our path push) that mean "the remote moved on
#: since you read it": fetch, merge and push again. Anything else is a refusal.
_BEHIND = ("non-fast-forward", "fetch first", "stale info", "the remote ref moved")
#: what receive-pack prints (``rp_error``) when a ref moved between its advertisement and
#: the update ("failed to update ref" also covers a permission error on the server's disk)
_RACE_TEXT = ("but expected", "reference already exists", "unable to resolve reference")


def is_behind(status: str, server_message: str = "") -> bool:
    """Whether a refused ref's ``status`` means only that the remote moved on."""
    if status.startswith(_BEHIND):
        return True
    return status.startswith(("failed to update ref", "failed to lock")) and \
        any(text in server_message for text in _RACE_TEXT)


def printable(data: bytes, limit: int = 2000) -> str:
    """What a remote printed, as one bounded line of printable text (it is untrusted)."""
    text = data.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text.replace("\n", " | "))
    text = " ".join(text.split()).strip(" |")
    return redact(text if len(text) <= limit else text[:limit] + "...")


def push_refs(repo: Any, url: str, decide: Callable[[dict[str, bytes]], dict[str, bytes]],
              progress: Callable[[bytes], None] | None = None,
              generate_pack_data: Any = None) -> dict[str, str | None]:
    """Push: ``decide(remote refs)`` returns ``{ref: new id}`` to send. Returns
    ``{ref: None}`` for each ref updated and ``{ref: status}`` for each the remote refused
    only because it moved on (see :func:`is_behind`).

    Raises:
        PushRefusedError: the server refused for another reason (a hook, a size limit, a
            permission), with what the server printed.
        RemoteError: the remote cannot be reached.
    """
    from dulwich.errors import SendPackError

    sent: dict[str, bytes] = {}
    said: list[bytes] = []

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        current = {k.decode(): v for k, v in refs.items()}
        sent.update(decide(current))
        new = dict(refs)
        for name, sha in sent.items():
            new[name.encode()] = sha
        return new

    def heard(data: bytes) -> None:
        if sum(map(len, said)) < 65536:  # bounded: a remote may say anything, at length
            said.append(data)
        if progress is not None:
            progress(data)

    def send(client: Any, path: str) -> Any:
        sent.clear()
        said.clear()
        return client.send_pack(path, update_refs,
                                generate_pack_data=generate_pack_data or repo.generate_pack_data,
                                progress=heard)

    with _translated(url):
        try:
            result = with_client(url, repo.controldir(), send)
        except SendPackError as exc:
            # the server could not (or would not) take the pack: a size limit
            # (receive.maxInputSize), a quota, a damaged upload; never "behind"
            message = printable(b"".join(said))
            raise PushRefusedError(
                f"remote {redact(url)} refused the pack: {printable(str(exc).encode())}"
                + (f"; the server said: {message}" if message else ""), redact(url),
                {ref: "pack refused" for ref in sent}, message) from None
    status = getattr(result, "ref_status", None) or {}
    out = {name: (status.get(name.encode()) or None) for name in sent}
    message = printable(b"".join(said))
    refused = {ref: error for ref, error in out.items()
               if error is not None and not is_behind(error, message)}
    if refused:
        raise PushRefusedError(
            f"remote {redact(url)} refused the push ("
            + "; ".join(f"{ref}: {printable(why.encode(), 200)}"
                        for ref, why in sorted(refused.items()))
            + ")" + (f"; the server said: {message}" if message else "")
            + " (not retried: the remote did not move on, it said no)", redact(url),
            refused, message)
    return out
