"""A local, read-only web browser of a store: ``gitstore ui``.

Pages: the entries (filtered by type, version, code revision and a parameter query), a sweep
(parameters as columns, scalar results beside them, sortable), an entry (its
``component.yaml``, lineage graph, attribute previews and downloads, history), the history of a
version, and two entries side by side. Built on Starlette (ASGI), Jinja2 (templates escaped by
default) and uvicorn (the server): the ``ui`` extra.

Nothing here writes to the store; request input never becomes a path: keys are hex digits
looked up through the store, attribute names are checked and must be the entry's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app, serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'gitstore.ui' has no attribute {name!r}")
