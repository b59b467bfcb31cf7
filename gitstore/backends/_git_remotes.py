"""Sharing a GitDataStore through git remotes: remotes, fetch, pull, push, merges."""

from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from .._git import credentials
from .._git.connectivity import check_connected
from .._git.layout import (
    NAMESPACE,
    VERSIONS,
    ref_for_version,
    ref_name_problem,
    version_of_ref,
    version_ref_problem,
)
from .._git.merge import is_ancestor, merge_base, merge_trees
from .._git.objects import COMMIT, Obj, WriteGate, object_id
from .._git.packgen import generate_pack_data
from .._git.refs import RefFiles
from .._git.refs import _is_hex_sha
from .._git.remote import (
    _translated,
    fetch_refs,
    incoming,
    link_objects,
    local_gitdir,
    local_refs,
    no_merges,
    push_refs,
    receive_local,
    redact,
)
from ..errors import (
    ConcurrencyError,
    CorruptEntryError,
    CredentialError,
    EntryNotFoundError,
    MergeConflictError,
    PlaintextCredentialWarning,
    RemoteError,
    StoreError,
)
from ..keys import KEY_SCHEME
from ._git_core import _EMPTY_TREE, GitCore

_REMOTE_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")

#: markers of writers asking the others to let them through (see ``_ask_to_go_first``)
WAITING = f"{NAMESPACE}/waiting/"
#: refused pushes in a row after which a writer asks the others to let it through
ASK_AFTER = 3
#: seconds a marker counts, after the time in its name
MARKER_LIFE = 60.0
#: seconds one push call lets others through, at most
YIELD_AT_MOST = 30.0


def _no_objects(*args: Any, **kwargs: Any) -> tuple[int, Iterator[Any]]:
    """An empty pack: a marker names an object the remote has (which we may lack)."""
    return 0, iter([])


def _others_waiting(remote_refs: dict[str, bytes]) -> bool:
    """Whether the remote holds a fresh marker of a writer asking to go first."""
    now = time.time()
    for ref in remote_refs:
        if ref.startswith(WAITING):
            stamp = ref[len(WAITING):].split("-", 1)[0]
            if stamp.isdigit() and -MARKER_LIFE < now - int(stamp) < MARKER_LIFE:
                return True
    return False


class RemotesMixin(GitCore):
    """The remote operations of :class:`~gitstore.GitDataStore`."""

    def remote_add(self, name: str, url: str) -> None:
        """Remember a remote (a git URL or path) under ``name``, in the store's git config.

        A password in the URL (``https://user:password@host/...``) is never written there:
        it is handed to the configured git credential helper (``git credential approve``)
        and the URL is stored without it (``https://user@host/...``); with no helper
        configured, the remote is refused with advice.

        Raises:
            StoreError: the name is not ``[A-Za-z0-9._-]+`` or is taken; the URL is not a
                string, is empty, or holds a control character (a newline, NUL...).
            CredentialError: the URL holds a password and no credential helper is
                configured to keep it.
        """
        if not isinstance(url, str) or not url or \
                any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise StoreError("a remote URL is a non-empty string without control characters "
                             f"(newline, tab, NUL...): {redact(str(url))[:80]!r}")
        if not _REMOTE_NAME.match(name) or ref_name_problem(
                f"{NAMESPACE}/remotes/{name}/versions") is not None:
            raise StoreError(f"remote names are letters, digits, '.', '_' and '-' (not "
                             f"beginning with '.', no '..', not ending with '.lock'): {name!r}")
        if name in self._remote_urls():
            raise StoreError(f"remote {name!r} exists already")
        if credentials.has_password(url):
            if not credentials.store_password(self.gitdir, url):
                raise CredentialError(
                    f"remote {name!r}: the URL holds a password, which gitstore does not write "
                    "in plain text into the store's config. Configure a git credential helper "
                    "(git config --global credential.helper store, or cache, or your system's "
                    "keychain) and add the remote again: the password goes to the helper; or "
                    "put it in ~/.netrc; or add the URL without it: "
                    f"{credentials.strip_password(url)}", redact(url))
            url = credentials.strip_password(url)
        config = self._db().repo.get_config()
        config.set((b"remote", name.encode()), b"url", url.encode())
        config.write_to_path()

    def remotes(self) -> dict[str, str]:
        """``{name: url}`` of the remotes added with :meth:`remote_add`, passwords masked
        (``https://user:***@host/...``, should an older config hold one)."""
        return {name: _masked(url) for name, url in self._remote_urls().items()}

    def _remote_urls(self) -> dict[str, str]:
        """``{name: url}`` as configured (a password included: never show these)."""
        from dulwich.repo import Repo

        with Repo(self.gitdir) as repo:  # fresh: another process may have changed it
            config = repo.get_config()
            out = {}
            for section in config.sections():
                if section[0] == b"remote" and len(section) > 1:
                    try:
                        out[section[1].decode()] = config.get(section, b"url").decode()
                    except KeyError:
                        continue
        plain = sorted(name for name, url in out.items() if credentials.has_password(url))
        if plain and not self._warned_plaintext:
            self._warned_plaintext = True
            warnings.warn(PlaintextCredentialWarning(
                f"the store's config ({os.path.join(self.gitdir, 'config')}) holds the "
                f"password of remote(s) {', '.join(plain)} in plain text: remove the remote "
                "and add it again (its password then goes to a git credential helper)"),
                stacklevel=3)
        return out

    _warned_plaintext = False

    def remote_remove(self, name: str) -> None:
        """Forget a remote and its remote-tracking refs.

        Raises:
            StoreError: no such remote.
        """
        if name not in self._remote_urls():
            raise StoreError(f"no remote {name!r}")
        repo = self._db().repo
        config = repo.get_config()
        del config[(b"remote", name.encode())]
        config.write_to_path()
        for ref in self._refs.list(f"{NAMESPACE}/remotes/{name}/"):
            with self._refs.locked(ref):
                self._refs.compare_and_swap(ref, self._refs.read(ref), None)

    def _url(self, remote: str) -> tuple[str, str]:
        """(url, tracking name) of a remote name, URL or path."""
        known = self._remote_urls()
        if remote in known:
            return known[remote], remote
        return remote, "url-" + hashlib.sha1(
            credentials.strip_password(remote).encode()).hexdigest()[:12]

    def fetch(self, remote: str, versions: list[str] | None = None,
              progress: Callable[[bytes], None] | None = None) -> dict[str, str]:
        """Fetch the remote's results (all versions, or these) into remote-tracking refs
        ``refs/gitstore/remotes/<remote>/versions/<version>``; return ``{version: commit id}``.

        Raises:
            RemoteError: the remote cannot be reached or read.
        """
        url, tracking = self._url(remote)
        wanted_refs = {ref_for_version(v) for v in versions} if versions else None

        def wanted(ref: str) -> bool:
            if wanted_refs is not None:
                return ref in wanted_refs
            return ref.startswith(VERSIONS)

        def check(found: dict[str, bytes]) -> None:
            """Refuse the whole fetch, before anything is received, for one bad ref."""
            bad = {ref: problem for ref in sorted(found)
                   if (problem := version_ref_problem(ref)) is not None}
            bad.update({ref: "does not name an object id" for ref, sha in found.items()
                        if ref not in bad and not _is_hex_sha(sha)})
            bad.update({ref: f"its remote-tracking ref would be {problem}"
                        for ref in found if ref not in bad and (problem := ref_name_problem(
                            f"{NAMESPACE}/remotes/{tracking}/versions/{ref[len(VERSIONS):]}"
                        )) is not None})
            if bad:
                raise RemoteError(
                    f"remote {redact(remote)} has refs gitstore refuses (nothing was fetched): "
                    + "; ".join(f"{ref!r}: {why}" for ref, why in bad.items())
                    + (" (pull the good versions by name)" if wanted_refs is None else ""),
                    redact(url))
            if versions:
                missing = sorted(set(versions) - {version_of_ref(r) for r in found})
                if missing:
                    raise EntryNotFoundError(
                        f"remote {redact(remote)} has no version {', '.join(missing)}")

        remote_dir = local_gitdir(url)
        with ExitStack() as gate, incoming(self.gitdir, self._shared_perm) as quarantine:
            if remote_dir is not None and os.path.realpath(remote_dir) != os.path.realpath(
                    self.gitdir):
                # on this machine: link its packs, no pack protocol (see receive_local); its
                # gc must not drop a pack between our reading its refs and linking its packs
                with _translated(url), no_merges(remote_dir), _their_gate(remote_dir):
                    found = {r: s for r, s in local_refs(remote_dir, VERSIONS).items()
                             if wanted(r)}
                    check(found)
                    receive_local(quarantine, remote_dir)
            else:
                found = fetch_refs(quarantine, self._db().repo, url, wanted, check, progress)
            # from the connectivity check (which stops at objects our refs reach: a prune and
            # a gc must not drop them meanwhile) until the refs name what arrived
            gate.enter_context(self._gate.shared())
            with _translated(url):
                # what the store has is complete: stop there
                check_connected(quarantine.store(), found,
                                set(self._refs.list(NAMESPACE + "/").values()),
                                quarantine.git())
            quarantine.admit()
            for ref, sha in found.items():
                local = f"{NAMESPACE}/remotes/{tracking}/versions/{ref[len(VERSIONS):]}"
                with self._refs.locked(local):
                    self._refs.compare_and_swap(local, self._refs.read(local), sha)
        return {version_of_ref(ref): sha.decode() for ref, sha in found.items()}

    def pull(self, remote: str, version: str | None = None, prefer: str | None = None,
             progress: Callable[[bytes], None] | None = None) -> dict[str, str]:
        """Fetch, then merge each fetched version into the local one.

        ``version`` fetches only that version's ref. Returns ``{version: what happened}``
        (``created``, ``up to date``, ``fast-forward``, ``merged``).

        Raises:
            RemoteError: the remote cannot be reached or read.
            MergeConflictError: the same key and attribute hold different bytes on the two
                sides (nothing is changed) and ``prefer`` (``"ours"``/``"theirs"``) is None.
        """
        fetched = self.fetch(remote, [version] if version is not None else None, progress)
        merged = {}
        for v, sha in sorted(fetched.items()):
            try:
                merged[v] = self._merge_in(ref_for_version(v), sha.encode(), remote, prefer)
            except CorruptEntryError as exc:  # what was fetched is checked: ours is damaged
                raise CorruptEntryError(
                    f"local version {v} is damaged, {redact(remote)} was not merged into it "
                    f"({exc}); verify names the damage, prune removes the version"
                    + (f" (merged before it: {', '.join(merged)})" if merged else "")
                ) from None
        return merged

    def push(self, remote: str, versions: list[str] | None = None, prefer: str | None = None,
             attempts: int | None = None, progress: Callable[[bytes], None] | None = None,
             timeout: float = 1800.0) -> dict[str, str]:
        """Push local versions (all, or these) to the remote's same refs.

        When the remote moved on (another machine pushed), its history is fetched and merged
        (as :meth:`pull` does) and the push retried at once, until it lands. Many writers
        pushing to one remote all get through: a writer refused :data:`ASK_AFTER` times in
        a row asks the others, through a marker ref on the remote, to let it through (see
        :meth:`_ask_to_go_first`). Returns ``{version: commit id now on the remote}``.

        Args:
            attempts: give up after this many tries (None: no limit, only ``timeout``).
            timeout: give up after this many seconds of the remote moving on.

        Raises:
            PushRefusedError: the server refused for another reason (a hook, a size limit, a
                permission): reported at once with the server's message, never retried.
            RemoteError: unreachable, or still moving on after ``attempts`` or ``timeout``.
            MergeConflictError: see :meth:`pull`.
        """
        url, _tracking = self._url(remote)
        repo = self._db().repo
        refs = [ref_for_version(v) for v in versions] if versions else self._version_refs()
        remote_dir = local_gitdir(url)
        started = time.monotonic()
        attempt = 0
        marker: str | None = None  # ours, while we ask the others to let us through
        asked_at = 0.0
        yielded = 0.0
        try:
            while True:
                attempt += 1
                local = {ref: sha for ref in refs if (sha := self._refs.read(ref)) is not None}
                self._check_tips(local)
                behind: set[str] = set()
                let_through: list[bool] = []
                seen: dict[str, bytes] = {}

                def decide(remote_refs: dict[str, bytes]) -> dict[str, bytes]:
                    seen.update(remote_refs)
                    if marker is None and yielded < YIELD_AT_MOST and \
                            _others_waiting(remote_refs):
                        let_through.append(True)  # send nothing this time
                        return {}
                    send = {}
                    for ref, sha in local.items():
                        theirs = remote_refs.get(ref)
                        if theirs == sha:
                            continue
                        if theirs is None or (theirs in repo.object_store and
                                              is_ancestor(repo, theirs, sha)):
                            send[ref] = sha
                        elif theirs in repo.object_store and is_ancestor(repo, sha, theirs):
                            continue  # the remote has ours already (merged by another writer)
                        else:
                            behind.add(ref)
                    return send

                if remote_dir is not None:  # on this machine: under its locks, no contention
                    status = self._push_local(remote_dir, local, repo)
                else:
                    status = push_refs(repo, url, decide, progress,
                                       generate_pack_data(self._db()))
                if let_through:
                    pause = random.uniform(0.05, 0.25)
                    time.sleep(pause)
                    yielded += pause
                    attempt -= 1
                    continue
                behind |= {ref for ref, error in status.items() if error}
                if not behind:
                    return {version_of_ref(r): s.decode() for r, s in local.items()}
                if (attempts is not None and attempt >= attempts) or \
                        time.monotonic() - started > timeout:
                    raise RemoteError(
                        f"push to {redact(remote)}: the remote kept moving on ({attempt} "
                        f"attempts in {time.monotonic() - started:.0f} s)", redact(url))
                if remote_dir is None and attempt >= ASK_AFTER and \
                        time.time() - asked_at > MARKER_LIFE / 2:
                    # ask (again: a marker counts for MARKER_LIFE seconds only)
                    old, marker = marker, self._ask_to_go_first(url, seen)
                    asked_at = time.time()
                    if old is not None:
                        self._withdraw(url, old)
                try:
                    self.pull(remote, None, prefer) if len(behind) > 1 else \
                        self.pull(remote, version_of_ref(next(iter(behind))), prefer)
                except EntryNotFoundError:
                    pass  # the remote's ref went away meanwhile: the next try creates it
        finally:
            if marker is not None:
                self._withdraw(url, marker)

    def _ask_to_go_first(self, url: str, remote_refs: dict[str, bytes]) -> str | None:
        """Create the marker ref ``refs/gitstore/waiting/<time>-<writer>`` on the remote:
        writers that see a fresh marker of another writer send nothing and wait a moment
        (for :data:`YIELD_AT_MOST` seconds per push call at most), so the writer that kept
        losing (a fetch, a merge and a push take longer than a winner's one push) gets a
        window. A marker counts for :data:`MARKER_LIFE` seconds after the time in its name
        (a writer that dies leaves one that soon stops counting). It names an object the
        remote has, so nothing is uploaded. Returns its name, or None if it could not be
        made (a server that refuses the namespace: the push goes on without).
        """
        target = next((sha for ref, sha in sorted(remote_refs.items())
                       if ref.startswith(VERSIONS)), None)
        if target is None:
            return None
        name = f"{WAITING}{int(time.time())}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            push_refs(self._db().repo, url, lambda refs: {name: target},
                      generate_pack_data=_no_objects)
        except RemoteError:
            return None
        return name

    def _withdraw(self, url: str, marker: str) -> None:
        """Delete our marker ref on the remote (best effort: it stops counting anyway)."""
        zero = b"0" * 40
        try:
            push_refs(self._db().repo, url,
                      lambda refs: {marker: zero} if marker in refs else {},
                      generate_pack_data=_no_objects)
        except RemoteError:
            pass

    def _check_tips(self, local: dict[str, bytes]) -> None:
        """Refuse to push a version whose tip is not a readable commit (a damaged or
        hand-made ref): the remote would hold it for everyone.

        Raises:
            CorruptEntryError: naming each such version; nothing is pushed.
        """
        db = self._db()
        bad = []
        for ref, sha in sorted(local.items()):
            try:
                db.commit_tree(sha)
            except CorruptEntryError as exc:
                bad.append(f"version {version_of_ref(ref)}: {exc}")
        if bad:
            raise CorruptEntryError("damaged versions are not pushed (nothing was pushed; "
                                    "push the others by name, or prune these): "
                                    + "; ".join(bad))

    def _push_local(self, remote_dir: str, local: dict[str, bytes], repo: Any
                    ) -> dict[str, str | None]:
        """Push to a repository on this machine: link our objects in, then move each ref
        under that repository's own writer locks, fast-forwards only; its write gate is held
        from the first object linked until the refs have moved (its gc drops none of them)."""
        their_gate = WriteGate(remote_dir)
        theirs = RefFiles(remote_dir)
        status: dict[str, str | None] = {}
        try:
            with ExitStack() as gates:
                # our gc must not drop a pack we are linking (its objects would be missing
                # there once the refs move); the two gates are taken in one global order (by
                # path), so two stores pushing to each other while both run gc cannot deadlock
                ours_first = os.path.realpath(self.gitdir) < os.path.realpath(remote_dir)
                for gate in ((self._gate, their_gate) if ours_first else
                             (their_gate, self._gate)):
                    gates.enter_context(gate.shared())
                with no_merges(self.gitdir, self._shared_perm):
                    link_objects(self.gitdir, remote_dir)
                for ref, sha in local.items():
                    with theirs.locked(ref):
                        current = theirs.read(ref)
                        if current == sha:
                            continue
                        if current is None or (current in repo.object_store and
                                               is_ancestor(repo, current, sha)):
                            moved = theirs.compare_and_swap(ref, current, sha)
                            status[ref] = None if moved else "the remote ref moved"
                        else:
                            status[ref] = "non-fast-forward"
        finally:
            theirs.close()
            their_gate.close()
        return status

    def _merge_in(self, ref: str, theirs: bytes, remote: str, prefer: str | None) -> str:
        """Merge commit ``theirs`` into the local ``ref`` (fast-forward when possible)."""
        db = self._db()
        repo = db.repo
        with self._gate.shared(), self._refs.locked(ref):  # the merge commit's pack: see gc
            ours = self._refs.read(ref)
            if ours is None:
                self._refs.compare_and_swap(ref, None, theirs)
                return "created"
            if ours == theirs or is_ancestor(repo, theirs, ours):
                return "up to date"
            if is_ancestor(repo, ours, theirs):
                self._refs.compare_and_swap(ref, ours, theirs)
                return "fast-forward"
            base = merge_base(repo, ours, theirs)
            base_tree = db.commit_tree(base) if base is not None else None
            objects: list[Obj] = []
            tree, conflicts = merge_trees(db, base_tree, db.commit_tree(ours),
                                          db.commit_tree(theirs), objects, prefer)
            if conflicts:
                raise MergeConflictError(sorted({_conflict_name(p) for p in conflicts}))
            if tree is None:
                tree = _EMPTY_TREE
                objects.append((2, b""))
            version = version_of_ref(ref)
            message = (f"merge {redact(remote)} into version {version}\n\n"
                       f"Gitstore-Version: {version}\n")
            raw = self._commit_bytes(tree, ours, message, [theirs])
            commit_id = object_id(COMMIT, raw)
            objects.append((COMMIT, raw))
            db.write_pack(objects)
            db.remember_commit(commit_id, tree)
            if not self._refs.compare_and_swap(ref, ours, commit_id):
                raise ConcurrencyError(f"{ref} moved during a merge")
        return "merged"


@contextmanager
def _their_gate(gitdir: str) -> Iterator[None]:
    """Hold the write gate of a store on this machine shared, so that its gc keeps its packs
    while we read them; a remote where the gate cannot be taken (read-only, not a gitstore
    store) is read without it."""
    if any(os.path.islink(os.path.join(gitdir, *parts))
           for parts in (("gitstore",), ("gitstore", "locks"))):
        yield  # its lock folder leads out of it: never create files through a link
        return
    gate = WriteGate(gitdir)
    try:
        try:
            held = gate.shared()
            held.__enter__()
        except OSError:
            yield
            return
        try:
            yield
        finally:
            held.__exit__(None, None, None)
    finally:
        gate.close()


def _masked(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    if not credentials.has_password(url):
        return url
    stripped = credentials.strip_password(url)
    scheme, _, rest = stripped.partition("://")
    user, at, host = rest.partition("@")
    return f"{scheme}://{user}:***@{host}" if at else f"{scheme}://***@{rest}"


def _conflict_name(path: str) -> str:
    """``ab/cd/abcd…/rates.json`` → ``k1-sha256:abcd… rates``."""
    parts = path.split("/")
    if len(parts) >= 3:
        name = f"{KEY_SCHEME}:{parts[2]}"
        if len(parts) > 3:
            name += " " + parts[3].rsplit(".", 1)[0]
        return name
    return path
