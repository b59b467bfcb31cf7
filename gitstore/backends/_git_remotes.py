"""Sharing a GitDataStore through git remotes: remotes, fetch, pull, push, merges."""

from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from .._git import credentials
from .._git.connectivity import check_connected
from .._git.lfs import LfsClient, Pointer, endpoint_for, link_into, pointers_in
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
    fetch_objects,
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
    LfsObjectMissingError,
    MergeConflictError,
    NoLfsServerError,
    NotFetchedError,
    PartialFetchWarning,
    PlaintextCredentialWarning,
    RemoteError,
    StoreError,
)
from ..keys import KEY_SCHEME
from ._git_core import _EMPTY_TREE, GitCore

_REMOTE_NAME = re.compile(r"[A-Za-z0-9._-]+\Z")
_FILTER = re.compile(r"blob:none\Z|blob:limit=[0-9]{1,12}[kmg]?\Z")
_DIR_MODE = 0o40000
_COMPONENT_PATH = b"/component.yaml"
#: descriptions are far smaller than this: a partial fetch with a blob limit at least this
#: large brings them all (one over it is fetched on first read)
_DESCRIPTIONS_FIT = 16 << 10


def _limit(filter_spec: str) -> int:
    """The byte limit of a ``blob:limit=<n>[kmg]`` filter (0 for ``blob:none``)."""
    if not filter_spec.startswith("blob:limit="):
        return 0
    number = filter_spec[len("blob:limit="):]
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(number[-1:], 1)
    return int(number.rstrip("kmg")) * scale

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
              progress: Callable[[bytes], None] | None = None,
              lfs_content: bool = False, filter: str | None = None) -> dict[str, str]:
        """Fetch the remote's results (all versions, or these) into remote-tracking refs
        ``refs/gitstore/remotes/<remote>/versions/<version>``; return ``{version: commit id}``.

        ``filter`` (``"blob:limit=64k"``, ``"blob:none"``) makes a *partial* fetch, as
        ``git clone --filter`` does: blobs over the limit stay on the remote until first read
        (each fetched by id then, checked, through the same quarantine); entry descriptions
        always come (listing needs them). The remote is recorded as a promisor
        (``remote.<name>.promisor``, ``remote.<name>.partialclonefilter``), so ``git`` reads
        the store too, and later fetches from it use the same filter unless given another
        (``filter="none"`` fetches everything). A server that does not allow filters
        (``uploadpack.allowFilter``, protocol v2) sends everything: a
        :class:`PartialFetchWarning` says so. A remote on this machine is linked, not
        downloaded: a filter does not apply to it.

        Attributes stored as Git LFS objects come as pointers: their content is downloaded on
        first read (from this remote, the LFS server git-lfs's rules name for it), or now for
        the fetched tips with ``lfs_content=True``.

        Raises:
            NoLfsServerError: with ``lfs_content``, the remote has no LFS server.
            RemoteError: the remote cannot be reached or read.
            StoreError: a filter that is not ``blob:none`` or ``blob:limit=<n>[kmg]``, or a
                filter for a remote that is not named (see :meth:`remote_add`).
        """
        url, tracking = self._url(remote)
        filter_spec = self._filter_for(remote, filter)
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
                filter_spec = None
            else:
                took: list[bool] = []
                found = fetch_refs(quarantine, self._db().repo, url, wanted, check, progress,
                                   filter_spec, took)
                if filter_spec is not None and found and not any(took):
                    warnings.warn(PartialFetchWarning(
                        f"remote {redact(remote)} does not allow filters "
                        "(uploadpack.allowFilter, over protocol v2): everything was fetched"),
                        stacklevel=2)
                    filter_spec = None
            # from the connectivity check (which stops at objects our refs reach: a prune and
            # a gc must not drop them meanwhile) until the refs name what arrived
            gate.enter_context(self._gate.shared())
            with _translated(url):
                # what the store has is complete: stop there
                check_connected(quarantine.store(), found,
                                set(self._refs.list(NAMESPACE + "/").values()),
                                quarantine.git(), partial=filter_spec is not None)
            if filter_spec is not None:
                quarantine.mark_promisor(found)
                self._record_promisor(remote, filter_spec.decode())
            quarantine.admit()
            for ref, sha in found.items():
                local = f"{NAMESPACE}/remotes/{tracking}/versions/{ref[len(VERSIONS):]}"
                with self._refs.locked(local):
                    self._refs.compare_and_swap(local, self._refs.read(local), sha)
        self._lfs_remember_source(remote)
        if lfs_content and found:
            self._lfs_download(remote, url, list(found.values()))
        if filter_spec is not None and _limit(filter_spec.decode()) < _DESCRIPTIONS_FIT:
            try:
                self._fetch_descriptions(found.values())
            except NotFetchedError:
                pass  # fetched, and described on first read instead
        return {version_of_ref(ref): sha.decode() for ref, sha in found.items()}

    # --- partial fetch: promisor remotes, blobs fetched on first read ---------------------------

    def _filter_for(self, remote: str, filter: str | None) -> bytes | None:
        """The filter to ask ``remote`` for: the one given, else the one recorded for it."""
        if filter is None:
            if remote not in self.remotes():
                return None
            recorded = self._remote_config(remote, b"partialclonefilter")
            return recorded.encode() if recorded and _FILTER.match(recorded) else None
        if filter == "none":
            return None
        if not isinstance(filter, str) or not _FILTER.match(filter):
            raise StoreError(f"a filter is 'blob:none' or 'blob:limit=<n>[k|m|g]' (or 'none'), "
                             f"not {str(filter)[:40]!r}")
        if remote not in self.remotes():
            raise StoreError(f"a partial fetch needs a named remote (remote_add), from which "
                             f"missing blobs are fetched later; {redact(remote)!r} is not one")
        return filter.encode()

    def _remote_config(self, name: str, field: bytes) -> str | None:
        from dulwich.repo import Repo

        with Repo(self.gitdir) as repo:
            try:
                return repo.get_config().get((b"remote", name.encode()), field).decode()
            except (KeyError, UnicodeDecodeError):
                return None

    def _record_promisor(self, name: str, filter_spec: str) -> None:
        """Record ``name`` as a promisor remote the way ``git clone --filter`` does.
        (``extensions.partialClone`` is not written: dulwich refuses to open a repository
        with an extension it does not know, and git since 2.24 needs only these two.)"""
        config = self._db().repo.get_config()
        section = (b"remote", name.encode())
        config.set(section, b"promisor", True)
        config.set(section, b"partialclonefilter", filter_spec.encode())
        config.write_to_path()

    def promisors(self) -> dict[str, str]:
        """``{name: filter}`` of the remotes this store fetched partially from: blobs they
        promise are fetched from them on first read."""
        from dulwich.repo import Repo

        out = {}
        with Repo(self.gitdir) as repo:
            config = repo.get_config()
            for section in config.sections():
                if section[0] == b"remote" and len(section) > 1 and \
                        config.get_boolean(section, b"promisor", False):
                    try:
                        flt = config.get(section, b"partialclonefilter").decode()
                    except KeyError:
                        flt = ""
                    out[section[1].decode()] = flt
        return out

    def _is_partial(self) -> bool:
        # docstring inherited
        return bool(self.promisors())

    def _fetch_promised(self, shas: list[bytes]) -> bool:
        # docstring inherited
        store = self._db().store
        try:
            store._update_pack_cache()  # packs that arrived since we last looked
        except Exception:  # noqa: BLE001 - a look for copies: what is absent is fetched
            pass
        wanted = sorted({sha for sha in shas if not self._present(sha)})
        if not wanted:
            return True
        promisors = self.promisors()
        if not promisors:
            return False
        shown = ", ".join(s.decode()[:12] for s in wanted[:3]) + \
            (f" and {len(wanted) - 3} more" if len(wanted) > 3 else "")
        if getattr(self._local, "no_fetch", False):
            raise NotFetchedError(f"blob(s) {shown} not fetched (promised by "
                                  f"{', '.join(promisors)})", [s.decode() for s in wanted])
        known = self._remote_urls()  # as configured: never shown
        problems = []
        for name in promisors:
            url = known.get(name)
            if url is None:
                problems.append(f"promisor remote {name!r} has no URL")
                continue
            try:
                with self._gate.shared(), incoming(self.gitdir, self._shared_perm) as quarantine:
                    fetch_objects(quarantine, url, wanted)
                    quarantine.admit()
                    # a pack per read: merged as the store's own are (promisor packs apart)
                    self._db().maybe_merge()
                return True
            except RemoteError as exc:
                problems.append(str(exc))
        raise NotFetchedError(
            f"blob(s) {shown} are not here (a partial fetch) and could not be fetched: "
            + "; ".join(problems) + " (the store is unchanged)",
            [s.decode() for s in wanted], ", ".join(promisors))

    def _fetch_descriptions(self, tips: Iterable[bytes]) -> None:
        """Fetch, in one request, the ``component.yaml`` blobs a partial fetch left behind
        (a limit under :data:`_DESCRIPTIONS_FIT`, or ``blob:none``): listing needs every
        description. Their ids come from ``git ls-tree -r`` (trees only: it reads no blob, so
        it fetches none), or a walk of the trees without git."""
        git = shutil.which("git")
        ids: list[bytes] = []
        for tip in tips:
            if git is not None:
                listed = subprocess.run([git, "--git-dir", self.gitdir, "ls-tree", "-r",
                                         tip.decode()], capture_output=True)
                if listed.returncode == 0:
                    ids.extend(line[12:52] for line in listed.stdout.splitlines()
                               if line[7:12] == b"blob " and line.endswith(_COMPONENT_PATH))
                    continue
            db = self._db()
            for _hexkey, tree in self._walk_tip(db.commit_tree(tip)):
                found = db.tree(tree).get(b"component.yaml")
                if found is not None:
                    ids.append(found[1])
        absent = [sha for sha in ids if _is_hex_sha(sha) and not self._present(sha)]
        if absent:
            self._fetch_promised(absent)

    def _walk_tip(self, root: bytes) -> Iterator[tuple[bytes, bytes]]:
        db = self._db()
        for n1, (m1, t1) in db.tree(root).items():
            if m1 != _DIR_MODE:
                continue
            for n2, (m2, t2) in db.tree(t1).items():
                if m2 != _DIR_MODE:
                    continue
                for n3, (m3, t3) in db.tree(t2).items():
                    if m3 == _DIR_MODE:
                        yield n3, t3

    def pull(self, remote: str, version: str | None = None, prefer: str | None = None,
             progress: Callable[[bytes], None] | None = None,
             lfs_content: bool = False, filter: str | None = None) -> dict[str, str]:
        """Fetch, then merge each fetched version into the local one.

        ``version`` fetches only that version's ref. Returns ``{version: what happened}``
        (``created``, ``up to date``, ``fast-forward``, ``merged``). ``filter``: a partial
        fetch (see :meth:`fetch`).

        ``lfs_content``: see :meth:`fetch`.

        Raises:
            RemoteError: the remote cannot be reached or read.
            MergeConflictError: the same key and attribute hold different bytes on the two
                sides (nothing is changed) and ``prefer`` (``"ours"``/``"theirs"``) is None.
        """
        fetched = self.fetch(remote, [version] if version is not None else None, progress,
                             lfs_content, filter=filter)
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

        Git LFS objects the pushed history holds go first, through the LFS batch API (objects
        the server has are skipped), then the git pack: the remote never holds a pointer
        without its content. A path or ``file://`` remote gets them in its own
        ``lfs/objects``.

        Raises:
            PushRefusedError: the server refused for another reason (a hook, a size limit, a
                permission): reported at once with the server's message, never retried.
            RemoteError: unreachable, or still moving on after ``attempts`` or ``timeout``.
            NoLfsServerError: there are LFS objects to push and the remote has no LFS server
                (nothing was pushed).
            LfsObjectMissingError: the content of an LFS object to push is not here, and no
                remote gave it (nothing was pushed).
            MergeConflictError: see :meth:`pull`.
        """
        url, _tracking = self._url(remote)
        repo = self._db().repo
        refs = [ref_for_version(v) for v in versions] if versions else self._version_refs()
        known = self._remote_urls()
        if self._is_partial() and url not in {known.get(n) for n in self.promisors()}:
            # a partial store pushing elsewhere: what its promisors still hold comes first
            # (the other remote cannot be promised blobs it was never given)
            self._fetch_promised(self._absent_blobs(refs))
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
                self._lfs_push(remote, url, _tracking, local)
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
                    self._lfs_remember_pushed(_tracking, local.values())
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

    # --- Git LFS objects ---------------------------------------------------------------------

    def _lfs_configs(self) -> list[Any]:
        """Where git-lfs settings are read: the store's git config, then ``.lfsconfig`` at the
        root of its work tree (a store in a repository with one)."""
        from dulwich.config import ConfigFile

        configs: list[Any] = []
        places = [os.path.join(self.gitdir, "config")]
        if os.path.realpath(self.path) != os.path.realpath(self.gitdir):
            places.append(os.path.join(self.path, ".lfsconfig"))
        for place in places:
            try:
                configs.append(ConfigFile.from_path(place))
            except (OSError, ValueError):
                continue
        return configs

    def _lfs_where(self, remote: str, url: str, upload: bool) -> tuple[str, str]:
        name = remote if remote in self.remotes() else None
        return endpoint_for(url, self._lfs_configs(), name, upload)

    def _lfs_push(self, remote: str, url: str, tracking: str, local: dict[str, bytes]) -> None:
        """Send the LFS objects of the history being pushed that the remote may lack.

        A store that holds no LFS content and never fetched (so no pointer can be in its
        history: every pointer it wrote has its content here) skips the walk of its history,
        which costs seconds for a long one-commit-per-store history."""
        if next(self._lfs.oids(), None) is None and not self._lfs_sources():
            return
        stop = set(self._refs.list(f"{NAMESPACE}/remotes/{tracking}/").values())
        stop |= self._lfs_pushed(tracking)
        pointers = pointers_in(self._db(), local.values(), stop, self._blob_size,
                               self._read_blob)
        if not pointers:
            return
        todo = sorted(pointers.values(), key=lambda p: p.oid)
        kind, where = self._lfs_where(remote, url, upload=True)
        if kind == "local":
            if not os.path.isdir(where):
                raise NoLfsServerError(f"remote {redact(remote)}: {where} is not a repository "
                                       "to hold LFS objects", url, where)
            link_into(self._lfs, where, todo, self._lfs.local_path)
        else:
            LfsClient(where, remote).upload(self._lfs, todo, self._lfs.local_path)

    def _lfs_pushed_path(self, tracking: str) -> str:
        return os.path.join(self.gitdir, "gitstore", "lfs-pushed",
                            hashlib.sha1(tracking.encode()).hexdigest())

    def _lfs_pushed(self, tracking: str) -> set[bytes]:
        """Commits whose LFS objects this remote was sent already (a push stops there)."""
        try:
            with open(self._lfs_pushed_path(tracking), "rb") as f:
                return {line for line in f.read(1 << 20).split() if _is_hex_sha(line)}
        except OSError:
            return set()

    def _lfs_remember_pushed(self, tracking: str, tips: Any) -> None:
        path = self._lfs_pushed_path(tracking)
        known = list(dict.fromkeys([*tips, *self._lfs_pushed(tracking)]))[:4096]
        _write_small(path, b"".join(t + b"\n" for t in known), self._shared_perm)

    def _lfs_remember_source(self, remote: str) -> None:
        """Note where results were fetched from: missing LFS content is asked there first.
        A URL is kept without its user and password (credentials come from ``~/.netrc``)."""
        entry = remote if remote in self.remotes() else _without_userinfo(remote)
        sources = [entry, *(s for s in self._lfs_sources() if s != entry)][:32]
        _write_small(os.path.join(self.gitdir, "gitstore", "lfs-sources"),
                     "".join(s + "\n" for s in sources).encode(), self._shared_perm)

    def _lfs_sources(self) -> list[str]:
        try:
            with open(os.path.join(self.gitdir, "gitstore", "lfs-sources"), "rb") as f:
                text = f.read(1 << 16).decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if line and not any(
            ord(c) < 0x20 for c in line)]

    def _lfs_fetch(self, pointer: Pointer) -> None:
        """Bring the content of one LFS object missing here, from the remotes results were
        fetched from (most recent first), then the other named remotes.

        Raises:
            RemoteError: a remote sent wrong content (nothing kept), and none sent it right.
            LfsObjectMissingError: no remote has it.
        """
        sources = list(dict.fromkeys([*self._lfs_sources(), *self.remotes()]))
        reasons: list[str] = []
        lied: RemoteError | None = None
        for source in sources:
            url, _tracking = self._url(source)
            try:
                if self._lfs_get(source, url, [pointer]) == []:
                    return
                reasons.append(f"{redact(source)} does not have it")
            except NoLfsServerError as exc:
                reasons.append(str(exc))
            except RemoteError as exc:
                lied = lied or exc
                reasons.append(str(exc))
        if lied is not None:
            raise lied
        raise LfsObjectMissingError(
            f"the content of LFS object {pointer.oid} ({pointer.size} bytes) is not in this "
            "store" + (": " + "; ".join(reasons) if reasons else
                       ", and no remote is known to fetch it from"), pointer.oid)

    def _lfs_get(self, remote: str, url: str, pointers: list[Pointer]) -> list[Pointer]:
        """Download into the store; return the pointers the remote does not have."""
        kind, where = self._lfs_where(remote, url, upload=False)
        if kind == "local":
            root = os.path.join(where, "lfs", "objects")
            return [p for p in pointers
                    if not self._lfs.copy_from(root, p, f"remote {redact(remote)}")]
        return LfsClient(where, remote).download(self._lfs, pointers)

    def _lfs_download(self, remote: str, url: str, tips: list[bytes]) -> None:
        """Download the LFS objects of these commits' trees (not their history) now."""
        pointers = pointers_in(self._db(), tips, (), self._blob_size, self._read_blob,
                               history=False)
        todo = sorted((p for p in pointers.values() if not self._lfs.has(p)),
                      key=lambda p: p.oid)
        if not todo:
            return
        missing = self._lfs_get(remote, url, todo)
        if missing:
            raise LfsObjectMissingError(
                f"remote {redact(remote)} does not have the content of {len(missing)} LFS "
                f"object(s), e.g. {missing[0].oid}", missing[0].oid)

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


def _without_userinfo(url: str) -> str:
    """A URL without its user and password (never written to disk)."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _write_small(path: str, data: bytes, shared: Any) -> None:
    """Replace a small bookkeeping file atomically (best effort: a read-only store skips it)."""
    import tempfile

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        if shared is not None:
            shared(tmp)
        os.replace(tmp, path)
    except OSError:
        pass
