"""A GitDataStore's results by code revision (checkout) and explanations of misses."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._git.layout import ref_for_version
from ..component import (
    full_type,
    get_inputs,
    get_parameters,
    get_version,
    open_code_repo,
    version_text,
)
from ..errors import (
    CorruptEntryError,
    EntryNotFoundError,
)
from ..keys import PinnedKey, key_hex, key_of
from ..params import ParameterSet
from ._git_core import _DIR, GitCore, show_value
from .base import Entry

_SAFE_FILE = re.compile(r"[^/\\\x00]{1,255}\Z")


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


class RevisionsMixin(GitCore):
    """The code-revision operations of :class:`~gitstore.GitDataStore`."""

    def checkout(self, rev: str, dest: str | os.PathLike[str] | None = None,
                 code_repo: str | os.PathLike[str] = ".",
                 progress: Callable[[int, int], None] | None = None) -> list[Entry]:
        """The results of a code revision, optionally written out as plain files.

        ``rev`` is a stored version name, or anything git resolves in ``code_repo`` (``HEAD~2``,
        a tag, a branch, an abbreviated commit id): its results are those of the version equal
        to that commit id (what :func:`gitstore.source_version` gives components defined in
        that commit's code). With ``dest``, each entry is written to
        ``dest/<type>/<key[:12]>/component.yaml`` and ``<attribute>.<ext>`` (files that numpy
        or json open without gitstore). The code's working tree is never touched.

        Raises:
            EntryNotFoundError: ``rev`` resolves to nothing, or has no results here.
            CorruptEntryError: an entry holds a path that would escape ``dest``.
        """
        version = rev if rev in self.versions() else resolve_revision(code_repo, rev)
        ref = ref_for_version(version)
        found = list(self._walk(ref))
        if not found:
            raise EntryNotFoundError(f"no results for {rev} (version {version})")
        entries = []
        target = Path(dest).absolute() if dest is not None else None
        for done, (hexkey, tree) in enumerate(found):
            entry = self._entry(tree)
            entries.append(entry)
            if target is not None:
                self._write_entry(entry, tree, hexkey, target)
            if progress is not None:
                progress(done + 1, len(found))
        return entries

    def _write_entry(self, entry: Entry, tree: bytes, hexkey: str, target: Path) -> None:
        folder = target / _safe_part(entry.type, hexkey) / hexkey[:12]
        files = {}
        for name, (mode, sha) in self._db().tree(tree).items():
            text = name.decode("utf-8", "replace")
            if mode == _DIR or not _SAFE_FILE.match(text) or text in (".", ".."):
                raise CorruptEntryError(f"entry {hexkey[:12]} holds an unsafe path {text!r}; "
                                        "refusing to write it", entry.key)
            files[text] = sha
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.resolve().is_relative_to(target.resolve()):
            raise CorruptEntryError(f"entry {hexkey[:12]} would be written outside {target}",
                                    entry.key)
        for text, sha in files.items():
            tmp = folder / f".{text}.tmp"
            blob = self._open_blob(sha)
            with open(tmp, "wb") as f:
                if isinstance(blob, bytes):
                    f.write(blob)
                else:  # a large blob: copied in chunks, checked before it is renamed in
                    with blob:
                        chunk = bytearray(4 << 20)
                        while got := blob.readinto(chunk):
                            f.write(memoryview(chunk)[:got])
                        blob.finish()
            os.replace(tmp, folder / text)

    def explain(self, component: Any, attribute: str | None = None) -> Explanation:
        """Why ``component`` is (or is not) served from the store.

        On a hit: where it is. On a miss: the nearest stored entries of the same type, and for
        each what differs: the version, every parameter path with both values, and each input
        (explained recursively).
        """
        key = key_of(component)
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
            for path, (mine, theirs) in params.diff(entry.component.get("parameters") or {}
                                                    ).items():
                differences.append(f"parameter {path}: stored {_show(theirs)!r}, "
                                   f"yours {_show(mine)!r}")
            for i, (mine_key, theirs_key) in enumerate(
                    itertools.zip_longest(input_keys, stored_inputs)):
                if mine_key != theirs_key:
                    line = f"input {i}: stored {str(theirs_key)[:22]}, yours {str(mine_key)[:22]}"
                    if i < len(inputs) and not isinstance(inputs[i], PinnedKey):
                        sub = self.explain(inputs[i])
                        line += "\n    " + "\n    ".join(str(sub).splitlines())
                    differences.append(line)
            candidates.append((len(differences), entry.key, differences))
        candidates.sort(key=lambda c: (c[0], c[1]))
        nearest = [(k, d) for _n, k, d in candidates[:3]]
        return Explanation(key, False, version, [], nearest, wanted_type)


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
