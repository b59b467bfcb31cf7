"""Measures peak memory of storing or loading one large array: python large_worker.py
BACKEND STORE_PATH MEGABYTES (store|load). Prints JSON: array bytes, extra peak bytes."""

from __future__ import annotations

import json
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from components import SimpleComponent  # noqa: E402

from gitstore import DjangoORMDataStore, GitDataStore  # noqa: E402


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def rss_peak() -> int:
    """The resident high-water mark since :func:`rss_now` reset it."""
    return _status("VmHWM")


def rss_now() -> int:
    """Reset the high-water mark (Linux: ``clear_refs`` 5) and return the current size, so an
    earlier transient (numpy's random generator) does not hide what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def main() -> None:
    backend, path, megabytes, action = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    n = megabytes * (1 << 20) // 8
    # git: large attributes as Git LFS objects (the default); gitblob: as git blobs
    store = GitDataStore(path) if backend == "git" else \
        GitDataStore(path, lfs_threshold=None) if backend == "gitblob" else \
        DjangoORMDataStore(data_root_dir=path)
    component = SimpleComponent({"n": n})
    if action == "store":
        array = np.random.default_rng(1).random(n)
        before = rss_now()  # the array exists: what follows must not copy it
        store.store(component, "big", array)
        extra = rss_peak() - before
    else:
        before = rss_now()
        array = store.retrieve(component, "big")
        extra = rss_peak() - before - array.nbytes  # beyond the result itself
        expected = np.random.default_rng(1).random(n)
        assert np.array_equal(array, expected)
    print(json.dumps({"bytes": array.nbytes, "extra": extra}))


if __name__ == "__main__":
    main()
