"""Reads keep working while this process (or another) merges packs away under them."""

from __future__ import annotations

from pathlib import Path

from components import SimpleComponent

from gitstore import GitDataStore


def test_reads_after_merges_in_the_same_process(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s") as first:
        for i in range(40):  # many small packs (some merged already)
            first.store(SimpleComponent({"i": i}), "x", i)
    s = GitDataStore(tmp_path / "s")  # a new process's view: knows the packs, opened none
    assert s.retrieve(SimpleComponent({"i": 0}), "x") == 0
    for i in range(40, 80):  # its own stores merge the packs it listed
        s.store(SimpleComponent({"i": i}), "x", i)
    assert [s.retrieve(SimpleComponent({"i": i}), "x") for i in range(80)] == list(range(80))
    other = GitDataStore(tmp_path / "s")
    assert other.retrieve(SimpleComponent({"i": 5}), "x") == 5
    s.gc()  # git gc replaces every pack under the other reader
    assert [other.retrieve(SimpleComponent({"i": i}), "x") for i in range(0, 80, 3)] == \
        list(range(0, 80, 3))
