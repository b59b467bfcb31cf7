"""Storage backends. Each implements :class:`~gitstore.backends.base.AbstractDataStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import AbstractDataStore, Entry
from .git import Explanation, GitDataStore

if TYPE_CHECKING:
    from .orm import DjangoORMDataStore
    from .shelve import ShelveDataStore

__all__ = ["AbstractDataStore", "DjangoORMDataStore", "Entry", "Explanation", "GitDataStore",
           "ShelveDataStore"]


def __getattr__(name: str) -> Any:
    # imported on first use (PEP 562): opening a git store does not load the others
    if name == "DjangoORMDataStore":
        from .orm import DjangoORMDataStore

        globals()[name] = DjangoORMDataStore
        return DjangoORMDataStore
    if name == "ShelveDataStore":
        from .shelve import ShelveDataStore

        globals()[name] = ShelveDataStore
        return ShelveDataStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
