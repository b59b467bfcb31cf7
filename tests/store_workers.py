"""Functions that worker processes (multiprocessing spawn, joblib) run with a pickled store."""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from components import SimpleComponent  # noqa: E402


def store_one(store: Any, i: int) -> tuple[str, int]:
    """Store one result through a store that came pickled; return its key and the worker's pid."""
    component = SimpleComponent({"i": i}, version="v1")
    store.store(component, "square", i * i)
    return store.key_of(component), os.getpid()
