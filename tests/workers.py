"""Writer processes for the concurrency and crash tests: python workers.py MODE STORE ID N LOG."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from components import SimpleComponent  # noqa: E402

from gitstore import GitDataStore  # noqa: E402


def component(worker: int, i: int) -> SimpleComponent:
    return SimpleComponent({"worker": worker, "i": i}, version=f"v{i % 3}")


def main() -> None:
    mode, path, worker, n, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
        sys.argv[5]
    store = GitDataStore(path)
    with open(log, "a", buffering=1) as out:
        i = 0
        while i < n:
            if mode == "mixed" and i % 10 == 5:
                # a batch of five, then a delete of one of them
                with store.batch(message=f"worker {worker} batch {i}"):
                    for j in range(i, min(i + 5, n)):
                        store.store(component(worker, j), "value", [worker, j])
                for j in range(i, min(i + 5, n)):
                    out.write(f"stored {j}\n")
                i += 5
                continue
            store.store(component(worker, i), "value", [worker, i])
            out.write(f"stored {i}\n")  # only after store() returned
            if mode == "mixed" and i % 7 == 6:
                out.write(f"deleting {i}\n")  # killed in between: either outcome is fine
                store.delete(component(worker, i))
                out.write(f"deleted {i}\n")
            i += 1
            if mode == "gc" and i % 15 == 14:
                store.gc()  # killed midway too
            if mode == "prune" and i % 5 == 4:
                scratch = SimpleComponent({"scratch": i}, version=f"scratch{i % 2}")
                store.store(scratch, "value", i)
                store.prune([f"scratch{i % 2}"])
    store.close()


if __name__ == "__main__":
    main()
