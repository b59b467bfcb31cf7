"""``GitDataStore``: results as git objects, one commit per store, one ref per version.

Layout (see :mod:`gitstore._git.layout`)::

    refs/gitstore/versions/<version>  ->  commit  ->  tree
        <hex[0:2]>/<hex[2:4]>/<hex>/component.yaml      type, version, parameters, input keys
        <hex[0:2]>/<hex[2:4]>/<hex>/<attribute>.<ext>   one blob per attribute, ext = codec

The class is assembled from parts: storing, reading and history (:mod:`._git_core`), remotes
(:mod:`._git_remotes`), code revisions (:mod:`._git_revisions`) and maintenance
(:mod:`._git_maintenance`); the plumbing they share lives in :mod:`gitstore._git`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._git_core import Commit, GitCore
from ._git_maintenance import MaintenanceMixin
from ._git_remotes import RemotesMixin
from ._git_revisions import Explanation, RevisionsMixin, resolve_revision

if TYPE_CHECKING:
    from ..graph import LineageGraph

__all__ = ["Commit", "Explanation", "GitDataStore", "resolve_revision"]


class GitDataStore(RemotesMixin, RevisionsMixin, MaintenanceMixin, GitCore):
    """A store in a git repository.

    Args:
        path: a bare repository created on first use, or an existing repository (bare or
            not), whose ``refs/gitstore/`` namespace the store then uses.
        allow_pickle: see :class:`~gitstore.backends.base.AbstractDataStore`.
        author: ``"Name <email>"`` recorded in commits.
        create: create the repository if it does not exist.
        lfs_threshold: see :class:`~gitstore.backends._git_core.GitCore` (Git LFS objects).
        network_ok: do not warn that the store is on a network file system (NFS, Lustre...),
            where writers on several machines at once are not supported.

    Raises:
        StoreLocationError: ``path`` is a file, a non-empty directory that is not a git
            repository, or cannot be created.
    """

    def graph(self, component_or_key: Any) -> LineageGraph:
        """The input graph of a result (:func:`gitstore.graph.lineage`): a key or unique
        prefix, an :class:`Entry` or a component. ``.to_dot()`` gives DOT text,
        ``.render("svg")`` a picture (with Graphviz); Jupyter shows it as SVG.

        Raises:
            EntryNotFoundError, AmbiguousKeyError: a key that names no entry, or several.
        """
        from ..graph import lineage

        return lineage(self, component_or_key)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the store's location and options: a worker process (multiprocessing,
        joblib, Dask) reopens the store; caches, locks, open packs and a batch in progress stay
        here."""
        return (_reopen, (type(self), str(self.path), self.allow_pickle, self.author.decode(),
                          self.lfs_threshold, self.network_ok))


def _reopen(cls: type[GitDataStore], path: str, allow_pickle: bool, author: str,
            lfs_threshold: int | None = None, network_ok: bool = False) -> GitDataStore:
    return cls(path, allow_pickle=allow_pickle, author=author, create=False,
               lfs_threshold=lfs_threshold, network_ok=network_ok)
