"""Talking to git remotes through dulwich's client (plumbing): fetch and push refs.

Every transport dulwich speaks works: a path, ``file://``, ``git://``, ``http(s)://``,
``ssh://``. Transport failures become :class:`~gitstore.errors.RemoteError`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import RemoteError

__all__ = ["fetch_refs", "link_objects", "local_gitdir", "no_merges", "push_refs"]

#: seconds before a silent remote is given up on
TIMEOUT = 30.0


@contextmanager
def _translated(url: str) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT)  # dulwich's TCP and HTTP clients set none of their own
    try:
        yield
    except RemoteError:
        raise
    except Exception as exc:  # dulwich raises many kinds: socket, HTTP, protocol, OS errors
        raise RemoteError(f"remote {url}: {type(exc).__name__}: {exc}", url) from None
    finally:
        socket.setdefaulttimeout(previous)


def _client(url: str) -> tuple[Any, str]:
    from dulwich.client import get_transport_and_path

    return get_transport_and_path(url)


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
def no_merges(gitdir: str) -> Iterator[None]:
    """Hold off gitstore's pack merging in ``gitdir`` (its merger skips a held lock)."""
    path = os.path.join(gitdir, "gitstore", "locks", "merge")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only remote: nobody merges there through us either
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

    This is what ``git clone --local`` does; it trades sending only what is missing for not
    re-encoding anything. Objects ``dst`` does not need are dropped by its next ``gc``.
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


def fetch_refs(repo: Any, url: str, wanted: Callable[[str], bool],
               progress: Callable[[bytes], None] | None = None) -> dict[str, bytes]:
    """Fetch the objects of the remote refs that ``wanted`` accepts; return those refs.

    Raises:
        RemoteError: the remote cannot be reached or read.
    """
    chosen: dict[str, bytes] = {}

    def determine_wants(refs: dict[bytes, bytes | None], depth: int | None = None
                        ) -> list[bytes]:
        for name, sha in refs.items():
            if sha is not None and wanted(name.decode()):
                chosen[name.decode()] = sha
        return [sha for sha in set(chosen.values()) if sha not in repo.object_store]

    git = shutil.which("git")
    with _translated(url):
        client, path = _client(url)
        if git is None:
            client.fetch(path, repo, determine_wants=determine_wants, progress=progress)
        else:
            _fetch_with_index_pack(git, repo, client, path, determine_wants, progress)
    return chosen


def _fetch_with_index_pack(git: str, repo: Any, client: Any, path: str,
                           determine_wants: Any, progress: Any) -> None:
    """Receive the pack with dulwich's client and index it with ``git index-pack`` (as
    ``git fetch`` does; dulwich's own indexer resolves deltas object by object in Python, ~4x
    slower). Used when git is installed, like ``gc``; dulwich's path otherwise."""
    gitdir = repo.controldir() if not repo.bare else repo.path
    proc = subprocess.Popen([git, "--git-dir", gitdir, "index-pack", "--stdin", "--fix-thin"],
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
        client.fetch_pack(path, determine_wants, repo.get_graph_walker(), pack_data, progress)
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


def push_refs(repo: Any, url: str, decide: Callable[[dict[str, bytes]], dict[str, bytes]],
              progress: Callable[[bytes], None] | None = None,
              generate_pack_data: Any = None) -> dict[str, str | None]:
    """Push: ``decide(remote refs)`` returns ``{ref: new id}`` to send. Returns
    ``{ref: error or None}`` for each ref sent (an error: the remote refused that update).

    Raises:
        RemoteError: the remote cannot be reached, or refused the whole push.
    """
    sent: dict[str, bytes] = {}

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        current = {k.decode(): v for k, v in refs.items()}
        sent.update(decide(current))
        new = dict(refs)
        for name, sha in sent.items():
            new[name.encode()] = sha
        return new

    with _translated(url):
        client, path = _client(url)
        result = client.send_pack(path, update_refs,
                                  generate_pack_data=generate_pack_data or repo.generate_pack_data,
                                  progress=progress)
    status = getattr(result, "ref_status", None) or {}
    return {name: (status.get(name.encode()) or None) for name in sent}
