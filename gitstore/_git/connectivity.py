"""Is what a fetch received complete? The check ``git fetch`` makes before it moves a ref.

Every object reachable from the new tips must be present, stopping at objects reachable from
refs the store already has (those are complete: the store never moves a ref to anything less).
As git does (``rev-list --objects <new> --not --all``), commits are painted in date order: those
reachable from local refs are *uninteresting*, and the walk ends once no interesting commit is
left. Each new commit's tree is then compared with its parents' trees (parents first), so only
what changed is read: an entry whose id a complete parent tree has at the same place is
complete already.
"""

from __future__ import annotations

import heapq
import subprocess
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from ..errors import RemoteError
from .objects import _parse_tree

__all__ = ["check_connected"]

_COMMIT, _TREE = 1, 2
_TYPE_NAMES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
_DIR = 0o40000
_GITLINK = 0o160000


class _Walk:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.commits: dict[bytes, tuple[int, bytes, list[bytes]]] = {}
        self.trees: OrderedDict[bytes, dict[bytes, tuple[int, bytes]]] = OrderedDict()

    def raw(self, sha: bytes, what: str) -> tuple[int, bytes]:
        try:
            type_num, data = self.store.get_raw(sha)
        except KeyError:
            raise RemoteError(f"incomplete history: {what} {sha.decode()} was not received"
                              ) from None
        except Exception as exc:  # a damaged object: dulwich raises many kinds
            raise RemoteError(f"{what} {sha.decode()} is unreadable: "
                              f"{type(exc).__name__}: {exc}") from None
        return type_num, bytes(data)

    def commit(self, sha: bytes, what: str = "commit") -> tuple[int, bytes, list[bytes]]:
        """(commit time, tree id, parent ids) of a commit."""
        found = self.commits.get(sha)
        if found is None:
            type_num, data = self.raw(sha, what)
            if type_num != _COMMIT:
                raise RemoteError(f"{what} {sha.decode()} is a "
                                  f"{_TYPE_NAMES.get(type_num, '?')}, not a commit")
            header = data.split(b"\n\n", 1)[0].split(b"\n")
            if not header[0].startswith(b"tree ") or len(header[0]) != 45:
                raise RemoteError(f"commit {sha.decode()} is malformed")
            parents = [line[7:] for line in header if line.startswith(b"parent ")]
            when = 0
            for line in header:
                if line.startswith(b"committer "):
                    try:
                        when = int(line.rsplit(b" ", 2)[1])
                    except (IndexError, ValueError):
                        pass
            found = self.commits[sha] = (when, header[0][5:], parents)
        return found


def check_connected(store: Any, tips: dict[str, bytes], complete: Iterable[bytes],
                    git: tuple[list[str], dict[str, str]] | None = None,
                    partial: bool = False) -> None:
    """Check that every object reachable from ``tips`` (``{ref: commit id}``) is in ``store``
    and that each tip is a commit, stopping at what is reachable from ``complete`` (the
    store's own ref tips).

    ``git``: ``(command prefix, environment)`` to let ``git rev-list --objects`` walk (as
    ``git fetch`` does; ~50x faster than this module's own walk, which is used without git).

    ``partial``: a filtered fetch, whose blobs the remote may keep (promised): commits and
    trees must all be here, blobs need not.

    Raises:
        RemoteError: a tip is not a commit, or an object it needs is missing (naming them).
    """
    walk = _Walk(store)
    for ref, sha in sorted(tips.items()):
        walk.commit(sha, f"the commit of remote ref {ref!r},")
    if git is not None:
        _rev_list(store, set(tips.values()), set(complete), *git, partial=partial)
        return
    new = _paint(walk, set(tips.values()), set(complete))
    checked: set[bytes] = set()
    for sha in _parents_first(walk, new):
        _when, tree, parents = walk.commit(sha)
        bases = []
        for parent in parents:
            try:
                bases.append(walk.commit(parent)[1])
            except RemoteError:
                if parent in new:
                    raise
                # a local commit that cannot be read: no help, check everything below
        _check_tree(walk, tree, bases, checked, partial)


def _rev_list(store: Any, tips: set[bytes], complete: set[bytes], command: list[str],
              env: dict[str, str], partial: bool = False) -> None:
    if not tips:
        return
    known = [sha for sha in sorted(complete) if sha in store]  # a broken local ref: not a stop
    lines = [sha.decode() for sha in sorted(tips)] + ["^" + s.decode() for s in known]
    # --missing=print: a store with a promisor remote must not make git fetch what is
    # missing (git 2.39 fetches lazily unless told otherwise); missing objects are listed
    # instead, and any is an error. A partial fetch leaves blobs out of the walk.
    result = subprocess.run([*command, "rev-list", "--objects", "--stdin", "--missing=print",
                             *(["--filter=blob:none"] if partial else [])],
                            input=("\n".join(lines) + "\n").encode(), env=env,
                            capture_output=True)
    missing = [line[1:41].decode(errors="replace") for line in result.stdout.splitlines()
               if line.startswith(b"?")]
    if result.returncode != 0 or missing:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise RemoteError("incomplete history: "
                          + (f"object {missing[0]} was not received" if missing else
                             message[0] if message else f"git rev-list failed "
                                                          f"({result.returncode})"))


def _paint(walk: _Walk, tips: set[bytes], complete: set[bytes]) -> set[bytes]:
    """The commits reachable from ``tips`` and not from ``complete`` (date-ordered walk)."""
    interesting, uninteresting = 1, 2
    flag: dict[bytes, int] = {}
    heap: list[tuple[int, int, bytes]] = []
    counter = 0
    queued: set[bytes] = set()  # interesting commits waiting in the heap
    done: set[tuple[bytes, int]] = set()

    def when(sha: bytes, local: bool) -> int:
        if local:
            try:
                return walk.commit(sha)[0]
            except RemoteError:
                return 0
        return walk.commit(sha)[0]

    def push(sha: bytes, local: bool) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(heap, (-when(sha, local), counter, sha))

    for sha in complete:
        flag[sha] = uninteresting
        push(sha, True)
    for sha in tips:
        if sha not in flag:
            flag[sha] = interesting
            queued.add(sha)
            push(sha, False)
    while queued and heap:
        _t, _n, sha = heapq.heappop(heap)
        state = flag[sha]
        if (sha, state) in done:
            continue
        done.add((sha, state))
        queued.discard(sha)
        if state == uninteresting:
            try:
                parents = walk.commit(sha)[2]
            except RemoteError:
                continue  # a local commit we cannot read limits nothing
            for parent in parents:
                if flag.get(parent) != uninteresting:
                    flag[parent] = uninteresting
                    queued.discard(parent)
                    try:
                        push(parent, True)
                    except RemoteError:
                        pass
        else:
            for parent in walk.commit(sha)[2]:
                if parent not in flag:
                    flag[parent] = interesting
                    push(parent, False)  # raises when the parent was not received
                    queued.add(parent)
    return {sha for sha, state in flag.items() if state == interesting}


def _parents_first(walk: _Walk, commits: set[bytes]) -> list[bytes]:
    order: list[bytes] = []
    seen: set[bytes] = set()
    for start in sorted(commits):
        if start in seen:
            continue
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
            for parent in walk.commit(sha)[2]:
                if parent in commits and parent not in seen:
                    stack.append((parent, False))
    return order


def _entries(walk: _Walk, tree: bytes, what: str) -> dict[bytes, tuple[int, bytes]]:
    found = walk.trees.get(tree)
    if found is not None:
        walk.trees.move_to_end(tree)
        return found
    type_num, data = walk.raw(tree, what)
    if type_num != _TREE:
        raise RemoteError(f"{what} {tree.decode()} is a {_TYPE_NAMES.get(type_num, '?')}, "
                          "not a tree")
    try:
        found = _parse_tree(data)[0]
    except ValueError:
        raise RemoteError(f"tree {tree.decode()} is malformed") from None
    walk.trees[tree] = found
    if len(walk.trees) > 4096:
        walk.trees.popitem(last=False)
    return found


def _check_tree(walk: _Walk, tree: bytes, bases: list[bytes], checked: set[bytes],
                partial: bool = False) -> None:
    """Check ``tree`` and what it needs; ``bases`` are complete trees at the same place."""
    stack = [(tree, bases)]
    while stack:
        sha, complete = stack.pop()
        if sha in checked or sha in complete:
            continue
        entries = _entries(walk, sha, "tree")
        known: dict[bytes, list[tuple[int, bytes]]] = {}
        for base in complete:
            try:
                for name, value in _entries(walk, base, "tree").items():
                    known.setdefault(name, []).append(value)
            except RemoteError:
                continue  # a base we cannot read proves nothing
        for name, (mode, child) in entries.items():
            same_place = known.get(name, [])
            if (mode, child) in same_place or mode == _GITLINK:
                continue
            if mode == _DIR:
                stack.append((child, [b for m, b in same_place if m == _DIR]))
            elif child not in checked:
                if child not in walk.store and not partial:  # a promised blob, if partial
                    raise RemoteError(f"incomplete history: object {child.decode()} (in tree "
                                      f"{sha.decode()}) was not received")
                checked.add(child)
        checked.add(sha)
