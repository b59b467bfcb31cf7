"""A GitDataStore's results by code revision (checkout) and explanations of misses."""

from __future__ import annotations

import errno
import itertools
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._git.lfs import looks_like_pointer
from .._git.layout import NAMESPACE, VERSIONS, ref_for_version, version_of_ref
from ..codeid import VERSION_PREFIX, version_of_files
from ..component import (
    full_type,
    get_inputs,
    get_parameters,
    get_version,
    open_code_repo,
    version_text,
)
from dulwich.errors import NotTreeError

from ..errors import (
    CorruptEntryError,
    EntryNotFoundError,
    InvalidAttributeNameError,
    StoreLocationError,
)
from ..keys import PinnedKey, key_hex, key_of
from ..params import ParameterSet
from ._git_core import _DIR, _FILE, GitCore, show_value
from .base import COMPONENT_FILE, Entry, check_attribute_name, code_provenance

_HEX_KEY = re.compile(r"[0-9a-f]{16,128}\Z")
_EXT = re.compile(r"[^/\\\x00-\x1f\x7f]{1,64}\Z")  # as register_codec allows
_EXECUTABLE = 0o100755
_MODES = {0o120000: "symbolic link", 0o160000: "submodule", _DIR: "folder"}


_show = show_value


@dataclass(frozen=True)
class Explanation:
    """What :meth:`GitDataStore.explain` found; ``str()`` gives the text."""

    key: str
    stored: bool
    version: Any
    attributes: list[str]
    nearest: list[tuple[str, list[str]]]
    type: str = ""

    def __str__(self) -> str:
        if self.stored:
            return (f"stored: {self.key} in version {self.version} "
                    f"(attributes: {', '.join(self.attributes)})")
        if not self.nearest:
            return f"not stored: {self.key}; nothing of type {self.type} is stored"
        lines = [f"not stored: {self.key}; nearest stored entries of type {self.type}:"]
        for key, differences in self.nearest:
            lines.append(f"  {key_hex(key)[:12]}: " + ("; ".join(d for d in differences
                                                              if "\n" not in d) or "same"))
            lines += ["    " + d for d in differences if "\n" in d]
        return "\n".join(lines)


#: how deeply :meth:`RevisionsMixin.explain` explains inputs of inputs
MAX_EXPLAIN_DEPTH = 20


class RevisionsMixin(GitCore):
    """The code-revision operations of :class:`~gitstore.GitDataStore`."""

    def checkout(self, rev: str, dest: str | os.PathLike[str] | None = None,
                 code_repo: str | os.PathLike[str] = ".",
                 progress: Callable[[int, int], None] | None = None) -> list[Entry]:
        """The results of a code revision, optionally written out as plain files.

        ``rev`` is a stored version name, or anything git resolves in ``code_repo`` (``HEAD~2``,
        a tag, a branch, an abbreviated commit id): its results are those of
        :meth:`versions_for` that commit (by content for code-versioned results, by commit id
        for results of the ``"commit"`` policy). With ``dest``, each entry is written to
        ``dest/<type>/<key[:12]>/component.yaml`` and ``<attribute>.<ext>`` (files that numpy
        or json open without gitstore). The code's working tree is never touched.

        Every name is checked before anything is created: an entry that is not a plain
        gitstore entry (a name that is not a hex key or a safe file name, a symbolic link, a
        sub-tree, a submodule) stops the checkout with nothing written. Inside ``dest`` no
        symbolic link is followed, and each file is replaced atomically (a link in its place is
        replaced, never written through).

        Raises:
            EntryNotFoundError: ``rev`` resolves to nothing, or has no results here.
            CorruptEntryError: an entry holds an unsafe name (nothing is written).
            StoreLocationError: ``dest`` (or a folder in it) cannot be written, is a file, or
                holds a symbolic link where a folder goes; or a result would land inside
                the store itself (nothing is written).
            NotFetchedError: a partial store whose promisor remote cannot give the blobs
                still there (they are fetched first, in one request; nothing is written).
        """
        if rev in self.versions():
            versions, what = [rev], f"version {rev}"
        else:
            commit = resolve_revision(code_repo, rev)
            versions, what = self.versions_for(commit, code_repo), f"commit {commit}"
        scanned = [item for version in versions for item in self._scan(ref_for_version(version))]
        damaged = [problem for _hexkey, _tree, problem in scanned if problem is not None]
        if damaged:  # a folder gitstore never writes (a climbing name...), a missing tree
            raise CorruptEntryError(f"{damaged[0]}: an unsafe or damaged tree; refusing to "
                                    "check out anything (nothing was written)")
        found = [(hexkey, tree) for hexkey, tree, _problem in scanned]
        if not found:
            raise EntryNotFoundError(f"no results for {rev} ({what})")
        entries = [self._entry(tree) for _hexkey, tree in found]
        if dest is None:
            return entries
        # first every name of every entry, then the first byte written
        plans = [self._plan_entry(entry, tree, hexkey)
                 for entry, (hexkey, tree) in zip(entries, found)]
        seen: dict[tuple[str, str], str] = {}
        for (folders, _files), (hexkey, _tree) in zip(plans, found):
            other = seen.setdefault(folders, hexkey)
            if other != hexkey:  # two keys alike in 12 digits: crafted, never by chance
                raise CorruptEntryError(
                    f"entries {other} and {hexkey} would share the folder "
                    f"{'/'.join(folders)}: an unsafe tree; refusing to check out anything "
                    "(nothing was written)")
        target = Path(dest).absolute()
        store = os.path.realpath(self.gitdir)
        real = os.path.realpath(target)  # (inside `target`, no link is followed below)
        for folders, _files in plans:
            where = os.path.join(real, *folders)
            if os.path.commonpath([where, store]) == store:
                raise StoreLocationError(
                    f"cannot write results to {target}: {os.path.join(target, *folders)} "
                    f"would be inside the store {self.gitdir} (nothing was written)",
                    str(target))
        # a partial store: what the remote still holds comes now, in one request (or the
        # checkout stops here, naming it, with nothing written)
        if self._is_partial():
            self._fetch_promised([sha for _folders, files in plans for sha in files.values()])
        try:
            target.mkdir(parents=True, exist_ok=True)
            root = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StoreLocationError(f"cannot write results to {target}: "
                                     f"{exc.strerror or exc}", str(target)) from exc
        try:
            for done, (folders, files) in enumerate(plans):
                self._write_files(root, target, folders, files)
                if progress is not None:
                    progress(done + 1, len(plans))
        finally:
            os.close(root)
        return entries

    def versions_for(self, rev: str, code_repo: str | os.PathLike[str] = ".",
                     remote: str | None = None) -> list[str]:
        """The versions whose results are valid for the code revision ``rev``.

        A code version (``code-...``) is valid when every file its results were computed from
        (``code.files`` of its entries' ``component.yaml``) has, in ``rev``'s tree of
        ``code_repo``, the same git blob id: compared through git trees, without importing or
        running the code, so results computed before ``rev`` was committed, with the same
        code, belong to it. A version of the ``"commit"`` policy is valid when it is ``rev``'s
        commit id. With ``remote``, the versions looked at are that remote's remote-tracking
        ones (fetched before).

        Raises:
            EntryNotFoundError: ``code_repo`` is not a repository, or ``rev`` names no commit.
        """
        commit = resolve_revision(code_repo, rev)
        if remote is None:
            refs = {version: ref_for_version(version) for version in self.versions()}
        else:
            refs = self._tracking_refs(remote)
        valid = [commit] if commit in refs else []
        code = {v: ref for v, ref in refs.items() if v.startswith(VERSION_PREFIX)}
        if not code:
            return valid
        from dulwich.object_store import tree_lookup_path

        with open_code_repo(code_repo) as repo:
            tree = repo[commit.encode()].tree
            blobs: dict[str, str | None] = {}

            def blob_at(path: str) -> str | None:
                if path not in blobs:
                    try:
                        mode, sha = tree_lookup_path(repo.__getitem__, tree,
                                                     path.encode("utf-8", "surrogateescape"))
                        # a file's blob only: never a folder's tree or a submodule's commit
                        blobs[path] = sha.decode() if mode in (_FILE, _EXECUTABLE, 0o120000) \
                            else None
                    except (KeyError, ValueError, NotTreeError):
                        blobs[path] = None
                return blobs[path]

            for version, ref in sorted(code.items()):
                files = self._code_files(version, ref)
                if files and all(blob_at(path) == blob for path, blob in files.items()):
                    valid.append(version)
        return valid

    def _tracking_refs(self, remote: str) -> dict[str, str]:
        """``{version: remote-tracking ref}`` of a remote."""
        _url, tracking = self._url(remote)  # type: ignore[attr-defined]
        prefix = f"{NAMESPACE}/remotes/{tracking}/versions/"
        return {version_of_ref(VERSIONS + ref[len(prefix):]): ref
                for ref in self._refs.list(prefix)}

    def _code_files(self, version: str, ref: str) -> dict[str, str] | None:
        """The ``{path: blob id}`` a code version's results were computed from (read from its
        first entry that records them and whose list gives ``version``), or None."""
        for _hexkey, tree in self._walk(ref):
            try:
                code = self._entry(tree).component.get("code")
            except CorruptEntryError:
                continue
            files = code.get("files") if isinstance(code, dict) else None
            if isinstance(files, dict) and files and all(
                    isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
                if version_of_files(files.items()) == version:
                    return files
        return None

    def pull_rev(self, remote: str, rev: str, code_repo: str | os.PathLike[str] = ".",
                 prefer: str | None = None) -> dict[str, str]:
        """Fetch a remote's versions and merge those valid for the code revision ``rev``
        (:meth:`versions_for`); return ``{version: what happened}`` as :meth:`pull` does.

        Raises:
            RemoteError, MergeConflictError: as :meth:`pull`.
            EntryNotFoundError: ``rev`` names no commit of ``code_repo``.
        """
        fetched = self.fetch(remote)  # type: ignore[attr-defined]
        valid = self.versions_for(rev, code_repo, remote=remote)
        return {v: self._merge_in(ref_for_version(v),  # type: ignore[attr-defined]
                                  fetched[v].encode(), remote, prefer)
                for v in valid if v in fetched}

    def _plan_entry(self, entry: Entry, tree: bytes, hexkey: str
                    ) -> tuple[tuple[str, str], dict[str, bytes]]:
        """Where an entry goes (two folder names below ``dest``) and its files (name → blob).

        Raises:
            CorruptEntryError: a name or mode that is not a plain gitstore entry's.
        """
        def unsafe(what: str) -> CorruptEntryError:
            return CorruptEntryError(f"entry {hexkey[:40]!r} holds an unsafe {what}; refusing "
                                     "to check out anything (nothing was written)", entry.key)

        if not _HEX_KEY.match(hexkey):
            raise unsafe("entry name")
        files = {}
        for name, (mode, sha) in self._db().tree(tree).items():
            try:
                text = name.decode("utf-8")
            except UnicodeDecodeError:
                raise unsafe(f"path {name!r}") from None
            if mode not in (_FILE, _EXECUTABLE):
                raise unsafe(f"{_MODES.get(mode, f'mode {mode:o}')} {text!r}")
            if not _safe_file_name(text):
                raise unsafe(f"path {text!r}")
            files[text] = sha
        return (_safe_part(entry.type, hexkey), hexkey[:12]), files

    def _write_files(self, root: int, target: Path, folders: tuple[str, str],
                     files: dict[str, bytes]) -> None:
        """Write one entry's files below the directory ``root`` (``target``), following no
        symbolic link on the way, each file replaced atomically."""
        where = target
        fds: list[int] = []
        try:
            parent = root
            for name in folders:
                where = where / name
                parent = _open_folder(parent, name, where)
                fds.append(parent)
            for name, sha in files.items():
                where = target.joinpath(*folders, name)
                tmp = f".gitstore-{secrets.token_hex(8)}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666,
                             dir_fd=parent)
                try:
                    with os.fdopen(fd, "wb") as f:
                        blob: Any = self._open_blob(sha)
                        if isinstance(blob, bytes) and looks_like_pointer(blob):
                            blob = self._lfs_open(blob)  # a Git LFS object: its content
                        if isinstance(blob, bytes):
                            f.write(blob)
                        else:  # a large blob: copied in chunks, checked before it is renamed in
                            with blob:
                                chunk = bytearray(4 << 20)
                                while got := blob.readinto(chunk):
                                    f.write(memoryview(chunk)[:got])
                                blob.finish()
                    os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                except BaseException:
                    try:
                        os.unlink(tmp, dir_fd=parent)
                    except FileNotFoundError:
                        pass
                    raise
        except OSError as exc:
            raise StoreLocationError(f"cannot write {where}: {exc.strerror or exc}",
                                     str(where)) from exc
        finally:
            for fd in fds:
                os.close(fd)

    def explain(self, component: Any, attribute: str | None = None) -> Explanation:
        """Why ``component`` is (or is not) served from the store.

        On a hit: where it is. On a miss: the nearest stored entries of the same type, and for
        each what differs: the version, every parameter path with both values, and each input
        (explained recursively: an input met again, as in a pipeline whose stages share
        inputs, says "explained above"; nesting stops at :data:`MAX_EXPLAIN_DEPTH` levels).
        """
        return self._explain(component, attribute, set(), 0)

    def _explain(self, component: Any, attribute: str | None, explained: set[str],
                 depth: int) -> Explanation:
        key = key_of(component)
        explained.add(key)
        version = get_version(component)
        ref = ref_for_version(version)
        names = self._attribute_names(key, ref, None)
        attrs = sorted(n.decode().rsplit(".", 1)[0] for n in names)
        if attrs and (attribute is None or attribute in attrs):
            return Explanation(key, True, version, attrs, [])
        wanted_type = full_type(component)
        params = ParameterSet(get_parameters(component) or {})
        is_list, inputs = get_inputs(component)
        input_keys = [key_of(c) for c in inputs]
        mine_code = code_provenance(component)
        candidates = []
        for entry in self.entries(type=wanted_type):
            if attribute is not None and attribute not in entry.attributes:
                continue
            stored_inputs = entry.component.get("input")
            stored_inputs = stored_inputs if isinstance(stored_inputs, list) else \
                ([stored_inputs] if stored_inputs else [])
            differences: list[str] = []
            if entry.version != version_text(version):
                differences.append(f"version: stored {entry.version!r}, yours {version!r}")
                differences += _code_differences(entry.component.get("code"), mine_code)
            for path, (mine, theirs) in params.diff(entry.component.get("parameters") or {}
                                                    ).items():
                differences.append(f"parameter {path}: stored {_show(theirs)!r}, "
                                   f"yours {_show(mine)!r}")
            differing = []  # inputs to explain, once this entry is among the nearest
            for i, (mine_key, theirs_key) in enumerate(
                    itertools.zip_longest(input_keys, stored_inputs)):
                if mine_key != theirs_key:
                    differing.append((len(differences), i))
                    differences.append(
                        f"input {i}: stored {str(theirs_key)[:22]}, yours {str(mine_key)[:22]}")
            candidates.append((len(differences), entry.key, differences, differing))
        candidates.sort(key=lambda c: (c[0], c[1]))
        nearest = []
        for _n, entry_key, differences, differing in candidates[:3]:
            for at, i in differing:  # only the entries shown: each explains its inputs
                if i >= len(inputs) or isinstance(inputs[i], PinnedKey):
                    continue
                if input_keys[i] in explained:
                    differences[at] += "\n    (explained above)"
                elif depth + 1 >= MAX_EXPLAIN_DEPTH:
                    differences[at] += f"\n    (not explained: {MAX_EXPLAIN_DEPTH} levels deep)"
                else:
                    sub = self._explain(inputs[i], None, explained, depth + 1)
                    differences[at] += "\n    " + "\n    ".join(str(sub).splitlines())
            nearest.append((entry_key, differences))
        return Explanation(key, False, version, [], nearest, wanted_type)


def _code_differences(stored: Any, mine: dict[str, Any] | None) -> list[str]:
    """Which code files differ between a stored entry's ``code`` record and yours: path, old
    and new git blob id (``missing`` where one side has no such file)."""
    theirs = stored.get("files") if isinstance(stored, dict) else None
    ours = mine.get("files") if mine is not None else None
    if not isinstance(theirs, dict) or not isinstance(ours, dict):
        return []
    out = []
    for path in sorted(set(theirs) | set(ours), key=str):
        old, new = theirs.get(path), ours.get(path)
        if old != new:
            out.append(f"code {path}: stored {str(old or 'missing')[:12]}, "
                       f"yours {str(new or 'missing')[:12]}")
    return out


def _safe_file_name(name: str) -> bool:
    """Whether a file name of an entry is one gitstore writes: ``component.yaml``, or a valid
    attribute name, a dot and a plain extension."""
    if name == COMPONENT_FILE:
        return True
    stem, dot, ext = name.rpartition(".")
    if not dot or not _EXT.match(ext) or len(name.encode()) > 255:
        return False
    try:
        check_attribute_name(stem)
    except InvalidAttributeNameError:
        return False
    return True


def _open_folder(parent: int, name: str, where: Path) -> int:
    """The folder ``name`` in the directory ``parent`` (created if missing), opened without
    following a symbolic link.

    Raises:
        StoreLocationError: a symbolic link or a file is in the way.
        OSError: it cannot be created or opened.
    """
    try:
        os.mkdir(name, 0o777, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StoreLocationError(f"{where} is a symbolic link or a file, not a folder; "
                                     "checkout follows no link inside its destination",
                                     str(where)) from None
        raise


def _safe_part(type_name: str, fallback: str) -> str:
    """A type name as one safe directory name (a hostile name cannot climb out)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", type_name).lstrip(".")
    return cleaned[:200] or fallback[:12]


def resolve_revision(code_repo: str | os.PathLike[str], rev: str) -> str:
    """The commit id ``rev`` names in a code repository (branches, tags, ``~``/``^``,
    abbreviated ids).

    Raises:
        EntryNotFoundError: not a repository, or ``rev`` names no commit.
    """
    from dulwich.objects import Commit as GitCommit
    from dulwich.objects import Tag
    from dulwich.objectspec import parse_object

    with open_code_repo(code_repo) as repo:
        try:
            obj = parse_object(repo, rev.encode())
        except (KeyError, ValueError):
            prefix = rev.lower().encode()
            matches = [sha for sha in repo.object_store
                       if len(prefix) >= 4 and sha.startswith(prefix) and
                       isinstance(repo[sha], GitCommit)] if not rev.strip("0123456789abcdef") \
                else []
            if len(matches) != 1:
                raise EntryNotFoundError(f"{rev!r} names no commit in {code_repo}") from None
            obj = repo[matches[0]]
        while isinstance(obj, Tag):
            obj = repo[obj.object[1]]
        if not isinstance(obj, GitCommit):
            raise EntryNotFoundError(f"{rev!r} is not a commit")
        return str(obj.id.decode())
