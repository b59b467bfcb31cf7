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

__all__ = ["NAMESPACE", "VERSIONS", "entry_path", "ref_for_version", "ref_name_problem",
           "version_of_ref", "version_ref_problem"]

NAMESPACE = "refs/gitstore"
VERSIONS = f"{NAMESPACE}/versions/"

#: longest ref name component in bytes: a file name (255 bytes on common file systems) that
#: still has room for git's ``.lock`` suffix
MAX_COMPONENT_BYTES = 250
#: longest ref name in bytes (git's refs live in files: stay far below PATH_MAX)
MAX_REF_BYTES = 1024
_BAD_REF_CHARS = frozenset(" ~^:?*[\\\x7f") | frozenset(chr(c) for c in range(32))


def ref_name_problem(ref: object) -> str | None:
    """Why ``ref`` is not a ref name git and gitstore accept as a file name (None: it is).

    git's ``check-ref-format`` rules: ``refs/`` then non-empty ``/``-separated components,
    none beginning with ``.`` or ending with ``.lock``; no ``..``, ``@{``, control characters,
    space, ``~ ^ : ? * [ \\``; not ending with ``/`` or ``.``. Plus what a file system
    needs: valid UTF-8, components of at most :data:`MAX_COMPONENT_BYTES` bytes.
    """
    if not isinstance(ref, str):
        return "not a string"
    try:
        raw = ref.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if not ref.startswith("refs/"):
        return "not under refs/"
    if len(raw) > MAX_REF_BYTES:
        return f"longer than {MAX_REF_BYTES} bytes"
    if ".." in ref or "@{" in ref:
        return "contains '..' or '@{'"
    bad = sorted(set(ref) & _BAD_REF_CHARS)
    if bad:
        return f"contains forbidden characters {''.join(bad)!r}"
    if ref.endswith(("/", ".")):
        return "ends with '/' or '.'"
    for part in ref.split("/"):
        if not part:
            return "has an empty component ('//')"
        if part.startswith("."):
            return f"a component begins with '.': {part!r}"
        if part.endswith(".lock"):
            return f"a component ends with '.lock': {part!r}"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"a component is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


def version_ref_problem(ref: object) -> str | None:
    """Why ``ref`` is not a version ref gitstore itself would write (None: it is one).

    On top of :func:`ref_name_problem`: it lies under :data:`VERSIONS` and is exactly what
    :func:`ref_for_version` makes of its version (one component, canonical percent-encoding),
    so two different names never land on one file, or on a directory of another.
    """
    problem = ref_name_problem(ref)
    if problem is not None:
        return problem
    assert isinstance(ref, str)
    if not ref.startswith(VERSIONS):
        return f"not under {VERSIONS}"
    try:
        canonical = ref_for_version(version_of_ref(ref))
    except InvalidComponentError as exc:
        return str(exc)
    if canonical != ref:
        return f"not a name gitstore writes for a version (that would be {canonical!r})"
    return None


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
    if len(name) > MAX_COMPONENT_BYTES:
        raise InvalidComponentError(
            f"a version must be at most {MAX_COMPONENT_BYTES} bytes once percent-encoded for a "
            f"ref name (this one is {len(name)}): {text[:40]!r}...", "version")
    return VERSIONS + name


def version_of_ref(ref: str) -> str:
    """Inverse of :func:`ref_for_version`."""
    return unquote(ref[len(VERSIONS):])


def entry_path(key: str) -> tuple[bytes, bytes, bytes]:
    """The three tree names that lead to an entry."""
    digest = key_hex(key).encode("ascii")
    return digest[:2], digest[2:4], digest
