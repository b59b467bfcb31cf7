"""Talking to git remotes through dulwich's client (plumbing): fetch and push refs.

Every transport dulwich speaks works: a path, ``file://``, ``git://``, ``http(s)://``,
``ssh://``. Transport failures become :class:`~gitstore.errors.RemoteError`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import RemoteError

__all__ = ["fetch_refs", "list_refs", "push_refs"]

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


def list_refs(url: str, prefix: str) -> dict[str, bytes]:
    """The remote's refs under ``prefix``.

    Raises:
        RemoteError: the remote cannot be reached or read.
    """
    with _translated(url):
        client, path = _client(url)
        result = client.get_refs(path)
        refs = getattr(result, "refs", result)
        return {k.decode(): v for k, v in refs.items()
                if k.decode().startswith(prefix) and v is not None}


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

    with _translated(url):
        client, path = _client(url)
        client.fetch(path, repo, determine_wants=determine_wants, progress=progress)
    return chosen


def push_refs(repo: Any, url: str, decide: Callable[[dict[str, bytes]], dict[str, bytes]],
              progress: Callable[[bytes], None] | None = None) -> dict[str, str | None]:
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
        result = client.send_pack(path, update_refs, generate_pack_data=repo.generate_pack_data,
                                  progress=progress)
    status = getattr(result, "ref_status", None) or {}
    return {name: (status.get(name.encode()) or None) for name in sent}
