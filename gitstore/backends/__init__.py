"""Storage backends. Each implements :class:`~gitstore.backends.base.AbstractDataStore`."""

from __future__ import annotations

from .base import AbstractDataStore, Entry
from .git import Explanation, GitDataStore
from .orm import DjangoORMDataStore
from .shelve import ShelveDataStore

__all__ = ["AbstractDataStore", "DjangoORMDataStore", "Entry", "Explanation", "GitDataStore",
           "ShelveDataStore"]
