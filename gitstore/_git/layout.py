"""Where things live in a gitstore repository: version → ref name, key → tree path.

Every version has one ref, ``refs/gitstore/versions/<version>``; its tree holds each entry at
``<hex[0:2]>/<hex[2:4]>/<hex>/`` (``component.yaml`` plus ``<attribute>.<ext>`` blobs). Two
fan-out levels keep every tree at most 256 entries wide up to ~16 million entries, so a store
rewrites three small trees whatever the size of the store.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from ..component import version_text
from ..errors import InvalidComponentError
from ..keys import key_hex

__all__ = ["NAMESPACE", "VERSIONS", "entry_path", "ref_for_version", "version_of_ref"]

NAMESPACE = "refs/gitstore"
VERSIONS = f"{NAMESPACE}/versions/"


def ref_for_version(version: object) -> str:
    """The ref that holds a version's results; names git forbids are percent-encoded.

    Raises:
        InvalidComponentError: the version is empty.
    """
    text = version_text(version)  # one text per version, whatever its type (issue 11, item 8)
    if not text:
        raise InvalidComponentError("a component's version must not be empty", "version")
    # quote() keeps A-Z a-z 0-9 _ . - ~ and what we add to `safe`; '~' is forbidden in refs
    name = quote(text, safe="+").replace("~", "%7E")
    if name.startswith(".") or ".." in name or name.endswith((".", ".lock")):
        name = name.replace(".", "%2E")
    return VERSIONS + name


def version_of_ref(ref: str) -> str:
    """Inverse of :func:`ref_for_version`."""
    return unquote(ref[len(VERSIONS):])


def entry_path(key: str) -> tuple[bytes, bytes, bytes]:
    """The three tree names that lead to an entry."""
    digest = key_hex(key).encode("ascii")
    return digest[:2], digest[2:4], digest
