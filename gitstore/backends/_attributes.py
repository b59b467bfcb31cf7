"""The ``attributes`` record of ``component.yaml``: each attribute's size and codec.

At store time the git backend writes, beside the description, a top-level mapping::

    attributes:
      rates: {size: 8000128, codec: npy}    # bytes of the stored content, codec name

so that listing, ``show``, ``stats`` and ``verify`` know sizes and codecs without the blobs (a
partial fetch leaves large blobs on the remote until first read). The record is *display
only*: it comes from remotes that may be hostile, so its types are checked, nothing is ever
allocated by a size it claims, and the tree stays the truth for which attributes exist (a
record of an attribute the tree lacks is ignored). The key is never derived from it (keys come
from the component, see :func:`gitstore.keys.key_of`). Stores written before the record
existed have none: readers fall back to object headers.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECORD", "recorded", "with_record"]

#: the key of the record in ``component.yaml``
RECORD = "attributes"
_MAX_CODEC = 64


def recorded(description: Any) -> dict[str, tuple[int, str]]:
    """``{attribute: (size, codec name)}`` from a parsed description: only well-formed items
    (a string name, an int size >= 0, not a bool, and a short string codec) are kept."""
    record = description.get(RECORD) if isinstance(description, dict) else None
    out: dict[str, tuple[int, str]] = {}
    if not isinstance(record, dict):
        return out
    for name, item in record.items():
        if not isinstance(name, str) or not isinstance(item, dict):
            continue
        size, codec = item.get("size"), item.get("codec")
        if type(size) is int and size >= 0 and isinstance(codec, str) and \
                0 < len(codec) <= _MAX_CODEC and codec.isprintable():
            out[name] = (size, codec)
    return out


def with_record(description: dict[str, Any], record: dict[str, tuple[int, str]]
                ) -> dict[str, Any]:
    """A copy of ``description`` whose record is ``record`` (sorted by attribute name)."""
    out = {k: v for k, v in description.items() if k != RECORD}
    out[RECORD] = {name: {"size": size, "codec": codec}
                   for name, (size, codec) in sorted(record.items())}
    return out
