"""gitstore: cache the results of long computations in a git repository.

A *component* (anything with ``parameters``, ``input`` and ``version``) is stored under a key
derived from what it is and what it was computed from; see the README for a tour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import errors, keygenerators
    from .backends import (
        AbstractDataStore,
        DjangoORMDataStore,
        Entry,
        GitDataStore,
        ShelveDataStore,
    )
    from .codecs import register_codec
    from .codeid import code_identity
    from .component import full_type, set_version_policy, source_version
    from .copy import copy_entries
    from .keys import KEY_SCHEME, key_of
    from .memo import CachedFunction, cache
    from .params import ParameterSet

# imported on first use (PEP 562): ``gitstore --help`` and ``import gitstore.errors`` do not
# pay for the backends, YAML and dulwich
_LAZY = {
    "errors": ".errors", "keygenerators": ".keygenerators",
    "AbstractDataStore": ".backends", "DjangoORMDataStore": ".backends", "Entry": ".backends",
    "GitDataStore": ".backends", "ShelveDataStore": ".backends",
    "register_codec": ".codecs", "code_identity": ".codeid",
    "full_type": ".component", "set_version_policy": ".component",
    "source_version": ".component", "copy_entries": ".copy",
    "KEY_SCHEME": ".keys", "key_of": ".keys",
    "CachedFunction": ".memo", "cache": ".memo", "ParameterSet": ".params",
}

__all__ = [
    "KEY_SCHEME",
    "AbstractDataStore",
    "CachedFunction",
    "DjangoORMDataStore",
    "Entry",
    "GitDataStore",
    "ParameterSet",
    "ShelveDataStore",
    "cache",
    "code_identity",
    "copy_entries",
    "errors",
    "full_type",
    "key_of",
    "keygenerators",
    "register_codec",
    "set_version_policy",
    "source_version",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'gitstore' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(where, __name__)
    value = module if name in ("errors", "keygenerators") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
