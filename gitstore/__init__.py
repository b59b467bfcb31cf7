"""gitstore: cache the results of long computations in a git repository.

A *component* (anything with ``parameters``, ``input`` and ``version``) is stored under a key
derived from what it is and what it was computed from; see the README for a tour.
"""

from __future__ import annotations

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
