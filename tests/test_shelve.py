"""The seed's own scenarios for ShelveDataStore (NeuroTools datastore documentation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from components import SimpleComponent

from gitstore import ParameterSet, ShelveDataStore
from gitstore.errors import StoreLocationError
from gitstore.keygenerators import hash_pickle, join_with_underscores


@pytest.mark.parametrize("key_generator", [join_with_underscores, hash_pickle])
def test_seed_example(tmp_path: Path, key_generator: object) -> None:
    datastore = ShelveDataStore(root_dir=str(tmp_path / "shelf"), key_generator=key_generator)
    c1 = SimpleComponent(ParameterSet({"a": 1, "b": 2}))
    c1.data = range(1000)
    datastore.store(c1, "data", c1.data)
    c2 = SimpleComponent(ParameterSet({"a": 1, "b": 2}))
    assert datastore.retrieve(c2, "data") == range(1000)
    c3 = SimpleComponent(ParameterSet({"a": 1, "b": 3}))
    assert datastore.retrieve(c3, "data") is None
    # a chain of two components
    c4 = SimpleComponent(ParameterSet({"c": 3}), input=c1)
    datastore.store(c4, "result", [x * 2 for x in range(5)])
    c5 = SimpleComponent(ParameterSet({"c": 3}), input=c2)
    assert datastore.retrieve(c5, "result") == [0, 2, 4, 6, 8]
    c6 = SimpleComponent(ParameterSet({"c": 3}), input=c3)
    assert datastore.retrieve(c6, "result") is None
    # one file set per storage key, named by the key generator
    assert (tmp_path / "shelf" / (key_generator(c4) + ".dir")).exists()  # type: ignore[operator]


def test_creates_missing_root(tmp_path: Path) -> None:
    ShelveDataStore(tmp_path / "a" / "b").close()
    assert (tmp_path / "a" / "b").is_dir()


def test_refuses_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreLocationError, match="is a file"):
        ShelveDataStore(f)
    assert f.read_text() == "x"


def test_large_parameter_set(tmp_path: Path) -> None:
    s = ShelveDataStore(tmp_path)
    c = SimpleComponent({f"p{i}": float(i) for i in range(10_000)})
    s.store(c, "x", 1)
    assert s.retrieve(c, "x") == 1


@pytest.mark.parametrize("version", [0.1, 1, "0.1", (1, 0)])
def test_copy_out_of_a_shelf_keeps_every_entry_whatever_its_version(tmp_path, version):
    """A shelf keys its states by the version as given (0.1 is not "0.1"): copy must ask for
    the version the component had, not its text (it copied 0 of 2 entries, exit 0)."""
    from gitstore import GitDataStore, ShelveDataStore, copy_entries
    from components import SimpleComponent

    shelf = ShelveDataStore(root_dir=str(tmp_path / "shelf"))
    first = SimpleComponent({"a": 1}, version=version)
    second = SimpleComponent({"c": 3}, input=first, version=version)
    shelf.store(first, "data", list(range(10)))
    shelf.store(second, "result", [0, 2, 4])
    with GitDataStore(tmp_path / "copy.git") as git:
        assert copy_entries(shelf, git) == 2
        assert git.retrieve(first, "data") == list(range(10))
        assert git.retrieve(second, "result") == [0, 2, 4]
