"""Plain functions the cache tests wrap with ``store.cache`` and run in worker processes."""

from __future__ import annotations

import os
from typing import Any


def work(x: int, log: str = "") -> dict[str, Any]:
    """Logs the computing process's pid (``log`` is ignored by the tests' decorators)."""
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
    return {"x": x, "square": x * x}


def call_many(cached: Any, xs: list[int], log: str) -> list[int]:
    """Calls ``cached`` for every x, twice: a process computes each call at most once."""
    return [cached(x, log)["square"] for x in xs + xs]
