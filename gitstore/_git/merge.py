"""Three-way merge of two histories of one version (plumbing).

Trees merge name by name against their merge base: a side that did not change keeps the other
side's change, so an entry added on either side is kept and an entry deleted on one side and
untouched on the other stays deleted. When both sides changed the same file differently (the same
key and attribute with different bytes, or changed on one side and deleted on the other), that is
a conflict: reported, never silently resolved, unless the caller chose ``ours`` or ``theirs``.
"""

from __future__ import annotations

from typing import Any

from ..errors import CorruptEntryError
from .objects import BLOB, Obj, ObjectDB, TreeEntries

__all__ = ["is_ancestor", "merge_base", "merge_trees"]

_DIR = 0o40000
_COMPONENT = b"component.yaml"
Item = tuple[int, bytes] | None  # (mode, id) of one name, or absent


def is_ancestor(repo: Any, ancestor: bytes, descendant: bytes) -> bool:
    """Whether commit ``ancestor`` is reachable from ``descendant`` (both present locally).

    Raises:
        CorruptEntryError: a commit of either history is missing or is not a commit (a
            damaged or hand-made ref).
    """
    from dulwich.graph import can_fast_forward
    from dulwich.objects import ObjectID

    try:
        return bool(can_fast_forward(repo, ObjectID(ancestor), ObjectID(descendant)))
    except _UNREADABLE as exc:
        raise _unreadable(ancestor, descendant, exc) from None


def merge_base(repo: Any, a: bytes, b: bytes) -> bytes | None:
    """The best common ancestor of two commits, or None.

    Raises:
        CorruptEntryError: see :func:`is_ancestor`.
    """
    from dulwich.graph import find_merge_base
    from dulwich.objects import ObjectID

    try:
        bases = find_merge_base(repo, [ObjectID(a), ObjectID(b)])
    except _UNREADABLE as exc:
        raise _unreadable(a, b, exc) from None
    return bytes(bases[0]) if bases else None


#: what dulwich raises on a missing object (KeyError) or one that is not a commit
#: (AssertionError, AttributeError, ValueError)
_UNREADABLE = (KeyError, AssertionError, AttributeError, ValueError)


def _unreadable(a: bytes, b: bytes, exc: BaseException) -> CorruptEntryError:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return CorruptEntryError(f"the history of {a.decode()[:12]} or {b.decode()[:12]} cannot be "
                             f"read (a missing object, or not a commit: {what})")


def merge_trees(db: ObjectDB, base: bytes | None, ours: bytes | None, theirs: bytes | None,
                out: list[Obj], prefer: str | None = None) -> tuple[bytes | None, list[str]]:
    """Merge two root trees against ``base``; new tree objects are appended to ``out``.

    Returns the merged tree id (None if empty) and the conflicting paths. With conflicts and
    no ``prefer``, the tree returned is meaningless and must not be committed.
    """
    conflicts: list[str] = []
    item = _merge(db, _as_dir(base), _as_dir(ours), _as_dir(theirs), b"", out, prefer,
                  conflicts)
    return (item[1] if item is not None else None), conflicts


def _as_dir(tree: bytes | None) -> Item:
    return (_DIR, tree) if tree is not None else None


def _merge(db: ObjectDB, base: Item, ours: Item, theirs: Item, path: bytes, out: list[Obj],
           prefer: str | None, conflicts: list[str]) -> Item:
    if ours == theirs:
        return ours
    if ours == base:
        return theirs
    if theirs == base:
        return ours
    if path.count(b"/") == 2:  # an entry: <hex[0:2]>/<hex[2:4]>/<hex>
        return _merge_entry(db, base, ours, theirs, path, out, prefer, conflicts)
    if all(x is None or x[0] == _DIR for x in (base, ours, theirs)):
        return _merge_dirs(db, base, ours, theirs, path, out, prefer, conflicts)
    if prefer == "ours":
        return ours
    if prefer == "theirs":
        return theirs
    conflicts.append(path.decode("utf-8", "replace"))
    return ours


def _entries(db: ObjectDB, item: Item) -> TreeEntries:
    return db.tree(item[1]) if item is not None and item[0] == _DIR else {}


def _by_attribute(entries: TreeEntries) -> dict[bytes, tuple[bytes, tuple[int, bytes]]]:
    """``{attribute: (file name, (mode, id))}``: one attribute may change its extension."""
    return {name.rsplit(b".", 1)[0]: (name, item) for name, item in entries.items()
            if name != _COMPONENT}


def _merge_entry(db: ObjectDB, base: Item, ours: Item, theirs: Item, path: bytes,
                 out: list[Obj], prefer: str | None, conflicts: list[str]) -> Item:
    """Merge one entry attribute by attribute (a file's name carries its codec)."""
    b, o, t = (_entries(db, x) for x in (base, ours, theirs))
    ab, ao, at = _by_attribute(b), _by_attribute(o), _by_attribute(t)
    merged: TreeEntries = {}
    for attribute in sorted(ab.keys() | ao.keys() | at.keys()):
        vb, vo, vt = ab.get(attribute), ao.get(attribute), at.get(attribute)
        if vo == vt or vt == vb:
            chosen = vo
        elif vo == vb:
            chosen = vt
        elif prefer in ("ours", "theirs"):
            chosen = vo if prefer == "ours" else vt
        else:
            conflicts.append((path + b"/" + (vo or vt or vb)[0]).decode())  # type: ignore[index]
            chosen = vo
        if chosen is not None:
            merged[chosen[0]] = chosen[1]
    if not merged:
        return None  # no attribute left: the entry goes
    description = o.get(_COMPONENT) or t.get(_COMPONENT) or b.get(_COMPONENT)
    if description is not None:
        merged[_COMPONENT] = _recorded_for(db, description, merged, o, t, out)
    tree = db.make_tree(merged, out)
    return (_DIR, tree) if tree is not None else None


def _merge_dirs(db: ObjectDB, base: Item, ours: Item, theirs: Item, path: bytes,
                out: list[Obj], prefer: str | None, conflicts: list[str]) -> Item:
    b, o, t = _entries(db, base), _entries(db, ours), _entries(db, theirs)
    merged: TreeEntries = {}
    for name in sorted(b.keys() | o.keys() | t.keys()):
        child = _merge(db, b.get(name), o.get(name), t.get(name),
                       path + b"/" + name if path else name, out, prefer, conflicts)
        if child is not None:
            merged[name] = child
    tree = db.make_tree(merged, out)
    return (_DIR, tree) if tree is not None else None


def _recorded_for(db: ObjectDB, description: tuple[int, bytes], merged: TreeEntries,
                  o: TreeEntries, t: TreeEntries, out: list[Obj]) -> tuple[int, bytes]:
    """The description of a merged entry whose ``attributes`` record (sizes and codecs, see
    :mod:`gitstore.backends._attributes`) follows its files: each attribute's record comes
    from the side whose file was kept. Unchanged (the same blob) when it already does, or when
    a description cannot be read (the record is display only; readers fall back)."""
    import yaml

    from .. import _yaml
    from ..backends._attributes import recorded, with_record

    def parsed(item: tuple[int, bytes] | None) -> Any:
        if item is None:
            return None
        try:
            return _yaml.load(db.read(item[1], BLOB))
        except (CorruptEntryError, yaml.YAMLError, UnicodeDecodeError, ValueError):
            return None

    chosen = parsed(description)
    if not isinstance(chosen, dict):
        return description
    sides = [(o, recorded(parsed(o.get(_COMPONENT)))), (t, recorded(parsed(t.get(_COMPONENT))))]
    record: dict[str, tuple[int, str]] = {}
    for name, item in merged.items():
        if name == _COMPONENT:
            continue
        attribute = name.decode("utf-8", "replace").rpartition(".")[0]
        for files, side_record in sides:
            if files.get(name) == item and attribute in side_record:
                record[attribute] = side_record[attribute]
                break
    if record == recorded(chosen):
        return description
    data = _yaml.dump(with_record(chosen, record)).encode()
    out.append((BLOB, data))
    from .objects import object_id

    return (description[0], object_id(BLOB, data))
