"""The seed's key generators, kept for :class:`~gitstore.ShelveDataStore`.

``join_with_underscores`` gives a readable file name; ``hash_pickle`` a short digest. Both take a
component and return a string that is a valid file name on every common file system.
New code should prefer :func:`gitstore.key_of`, whose encoding is canonical and pinned.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Mapping
from typing import Any

from .component import full_type, get_inputs, get_parameters, get_version, version_text
from .keys import expand_dotted, key_of
from .params import ParameterSet

__all__ = ["hash_pickle", "join_with_underscores"]

_UNSAFE = re.compile(r"[^A-Za-z0-9.+=-]+")
_MAX_READABLE = 150  # bytes of readable text before the digest; file names allow 255


def _inputs_of(component: Any) -> list[Any]:
    return get_inputs(component)[1]


def join_with_underscores(component: Any) -> str:
    """Type, version, ``name=value`` parameters and input keys, joined with underscores.

    The seed's version failed once the parameter set grew past the file-name limit. Here the
    readable part is cut at 150 characters and always followed by 16 hex digits of the
    component's canonical key, so two different states never share a name (characters unsafe in
    file names are replaced, which alone could merge two names) and the result stays under
    255 bytes at any size.
    """
    params = ParameterSet(get_parameters(component) or {})
    parts = [full_type(component).rsplit(".", 1)[-1], _version(get_version(component))]
    parts += [f"{name}={value}" for name, value in sorted(params.flatten().items())]
    readable = _UNSAFE.sub("-", "_".join(parts)).strip(".")[:_MAX_READABLE]
    return f"{readable}_{key_of(component).rpartition(':')[2][:16]}"


def hash_pickle(component: Any) -> str:
    """The seed's scheme: a digest of the pickled identity plus the inputs' own digests.

    Parameters are first put in canonical form (sorted, plain containers), so the digest does
    not depend on dict order or on the ParameterSet class used.

    Raises:
        CyclicInputError, InvalidComponentError, UnhashableParameterError: as :func:`key_of`.
    """
    key_of(component)  # validates the whole graph first: loops, missing attributes, values
    return _hash_pickle(component)


def _hash_pickle(component: Any) -> str:
    """The digest, inputs first, each component once (a diamond is not walked twice), without
    recursion (a chain of thousands of components is no deeper for Python)."""
    done: dict[int, str] = {}
    frames: list[tuple[Any, bool]] = [(component, False)]
    while frames:
        current, expanded = frames.pop()
        if id(current) in done:
            continue
        inputs = _inputs_of(current)
        if not expanded:
            frames.append((current, True))
            frames.extend((c, False) for c in reversed(inputs) if id(c) not in done)
            continue
        # dotted names nest, as in keys (parameters without dots give the seed's digest)
        params = expand_dotted(get_parameters(current) or {})
        identity = (
            full_type(current),
            _version(get_version(current)),
            _plain_sorted(params),
            [done[id(c)] for c in inputs],
        )
        done[id(current)] = hashlib.sha1(pickle.dumps(identity, protocol=4)).hexdigest()
    return done[id(component)]


def _version(version: Any) -> str:
    """``str(version)`` as the seed did, except where that depends on the order of a mapping's
    keys or of a set's members: then :func:`~gitstore.component.version_text`."""
    return version_text(version) if _unordered(version) else str(version)


def _unordered(value: Any) -> bool:
    if isinstance(value, (Mapping, set, frozenset)):
        return True
    return isinstance(value, (list, tuple)) and any(_unordered(v) for v in value)


def _plain_sorted(value: Any) -> Any:
    if isinstance(value, dict):
        items = [(k, _plain_sorted(v)) for k, v in value.items()]
        try:
            return sorted(items)  # the seed's order (names of one type)
        except TypeError:  # names of several types ({1: "x", "a": 2}): one order all the same
            return sorted(items, key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_sorted(v) for v in value)
    return value
