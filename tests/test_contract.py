"""The backend contract, written once and run on every backend (see conftest.BACKENDS)."""

from __future__ import annotations

import inspect
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import MultiInput, SimpleComponent
from conftest import BACKENDS

import gitstore.backends
from gitstore import key_of
from gitstore.backends.base import AbstractDataStore
from gitstore.errors import (
    CyclicInputError,
    InvalidAttributeNameError,
    InvalidComponentError,
    UnsupportedDataError,
    UntrustedDataError,
)


def test_every_backend_has_a_factory() -> None:
    classes = {
        obj.__name__
        for _name, obj in inspect.getmembers(gitstore.backends, inspect.isclass)
        if issubclass(obj, AbstractDataStore) and not inspect.isabstract(obj)
    }
    made = set()
    for factory in BACKENDS.values():
        with tempfile.TemporaryDirectory() as d:
            s = factory(Path(d))
            made.add(type(s).__name__)
            s.close()
    assert classes <= made, f"backends without a factory in conftest.BACKENDS: {classes - made}"


def test_incomplete_backend_fails_at_construction() -> None:
    class Incomplete(AbstractDataStore):
        pass

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


VALUES: list[Any] = [
    None, True, 0, -7, 2**80, 1.5, -0.0, math.inf, "text ü 漢", b"\x00\xffbytes", [1, "a"],
    (1, (2.0, None)), {"a": 1, 2: "int key", (1, 2): "tuple key"}, {1, 2, 3}, frozenset({"x"}),
    {"nested": {"deep": [1, {"x": (True,)}]}},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_keeps_types(store: Any, value: Any) -> None:
    c = SimpleComponent({"a": 1})
    store.store(c, "data", value)
    got = store.retrieve(c, "data")
    assert got == value
    assert type(got) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, got) == math.copysign(1.0, value)


def test_nan_round_trips(store: Any) -> None:
    c = SimpleComponent({"a": 1})
    store.store(c, "x", math.nan)
    assert math.isnan(store.retrieve(c, "x"))


def test_numpy_round_trip(store: Any) -> None:
    c = SimpleComponent({"a": 1})
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.store(c, "arr", arr)
    got = store.retrieve(c, "arr")
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


def test_missing_returns_none_or_default(store: Any) -> None:
    c = SimpleComponent({"a": 1})
    assert store.retrieve(c, "nothing") is None
    assert store.retrieve(c, "nothing", default=42) == 42
    store.store(c, "x", 1)
    assert store.retrieve(c, "other", default="d") == "d"
    assert store.retrieve(SimpleComponent({"a": 2}), "x") is None


def test_store_replaces(store: Any) -> None:
    c = SimpleComponent({"a": 1})
    store.store(c, "x", [1])
    store.store(c, "x", "now a string")
    assert store.retrieve(c, "x") == "now a string"
    entries = list(store.entries())
    assert len(entries) == 1 and entries[0].attributes == ("x",)


def test_exists_and_delete(store: Any) -> None:
    c = SimpleComponent({"a": 1})
    assert not store.exists(c)
    store.store(c, "x", 1)
    store.store(c, "y", 2)
    assert store.exists(c) and store.exists(c, "x") and not store.exists(c, "z")
    assert store.delete(c, "x") is True
    assert not store.exists(c, "x") and store.exists(c, "y")
    assert store.delete(c, "x") is False
    assert store.delete(c) is True
    assert not store.exists(c)
    assert store.delete(c) is False
    assert list(store.entries()) == []


def test_entries_describe_components(store: Any) -> None:
    a = SimpleComponent({"tau": 10.0})
    b = SimpleComponent({"n": 3}, input=a)
    store.store(a, "x", 1)
    store.store(b, "y", 2)
    store.store(b, "z", 3)
    by_key = {e.key: e for e in store.entries()}
    assert set(by_key) == {key_of(a), key_of(b)}
    eb = by_key[key_of(b)]
    assert eb.attributes == ("y", "z")
    assert eb.component["input"] == key_of(a)
    assert eb.component["parameters"] == {"n": 3}
    assert eb.component["type"].endswith("SimpleComponent")
    assert eb.component["version"] == "1.0"


def test_chain_and_list_inputs(store: Any) -> None:
    a = SimpleComponent({"x": 1})
    b = SimpleComponent({"x": 1}, input=a)
    c = MultiInput({"y": 2}, [a, b])
    for comp, value in ((a, "a"), (b, "b"), (c, "c")):
        store.store(comp, "v", value)
    assert [store.retrieve(x, "v") for x in (a, b, c)] == ["a", "b", "c"]
    # a change upstream changes every key downstream
    a2 = SimpleComponent({"x": 2})
    assert store.retrieve(SimpleComponent({"x": 1}, input=a2), "v") is None
    assert store.retrieve(MultiInput({"y": 2}, [a2, b]), "v") is None


def test_reopen_sees_data(store_factory: Any) -> None:
    s = store_factory()
    c = SimpleComponent({"a": 1})
    s.store(c, "x", {"k": [1, 2]})
    s.close()
    with store_factory() as s2:
        assert s2.retrieve(c, "x") == {"k": [1, 2]}


class Opaque:
    def __init__(self, v: int) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.v == self.v


def test_pickle_needs_opt_in(store: Any) -> None:
    c = SimpleComponent({"a": 1})
    with pytest.raises(UnsupportedDataError):
        store.store(c, "obj", Opaque(1))
    with pytest.raises(UnsupportedDataError):
        store.store(c, "obj", [1, Opaque(1)])
    assert list(store.entries()) == []  # nothing written
    store.allow_pickle = True
    store.store(c, "obj", Opaque(3))
    assert store.retrieve(c, "obj") == Opaque(3)
    store.allow_pickle = False
    with pytest.raises(UntrustedDataError):
        store.retrieve(c, "obj")


BAD_NAMES: list[Any] = ["", ".", "..", "a/b", "a\x00b", "x" * 256, 5, None, "component", ".hidden",
                        "a\ud800b"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_attribute_names_write_nothing(store: Any, name: Any) -> None:
    c = SimpleComponent({"a": 1})
    with pytest.raises(InvalidAttributeNameError):
        store.store(c, name, 1)
    assert list(store.entries()) == []


def test_bad_components_write_nothing(store: Any) -> None:
    class NoParams:
        input = None
        version = 1

    class NoInput:
        parameters = {"a": 1}
        version = 1

    with pytest.raises(InvalidComponentError, match="parameters"):
        store.store(NoParams(), "x", 1)
    with pytest.raises(InvalidComponentError, match="input"):
        store.store(NoInput(), "x", 1)
    a = SimpleComponent({"a": 1})
    b = SimpleComponent({"b": 1}, input=a)
    a.input = b
    with pytest.raises(CyclicInputError):
        store.store(b, "x", 1)
    assert list(store.entries()) == []


# --- pandas DataFrames as Parquet (issue 14; pandas and pyarrow are in the test extra) -------

def _frames() -> list[Any]:
    import pandas as pd

    plain = pd.DataFrame({"x": np.array([1.5, np.nan, -0.0], dtype=np.float32),
                          "n": np.array([1, 2, 3], dtype=np.int16),
                          "s": ["a", "é", "漢"],
                          "b": [True, False, True],
                          "t": pd.to_datetime(["2024-01-01", "2024-05-17", "2026-11-26"])},
                         index=pd.Index([10, 20, 30], name="trial"))
    plain.attrs = {"units": {"x": "mV"}, "source": "rig 2"}
    multi = pd.DataFrame({"rate": [1.0, 2.0, 3.0, 4.0]},
                         index=pd.MultiIndex.from_product([["a", "b"], [1, 2]],
                                                          names=["cell", "run"]))
    extension = pd.DataFrame({"c": pd.Categorical(["x", "y", "x"]),
                              "i": pd.array([1, None, 3], dtype="Int64")},
                             index=pd.Index(["p", "q", "r"], name=None))
    return [plain, multi, extension, pd.DataFrame()]


@pytest.mark.parametrize("which", range(4))
def test_dataframes_round_trip_exactly_as_parquet(store: Any, which: int) -> None:
    import pandas as pd

    frame = _frames()[which]
    c = SimpleComponent({"a": which})
    store.store(c, "table", frame)
    got = store.retrieve(c, "table")
    assert type(got) is pd.DataFrame
    pd.testing.assert_frame_equal(got, frame, check_exact=True)  # dtypes, index, names, values
    assert list(got.dtypes) == list(frame.dtypes)
    assert got.index.names == frame.index.names and list(got.columns) == list(frame.columns)
    assert got.attrs == frame.attrs
    assert any(e.endswith(".parquet") or "parquet" in str(e) for e in _formats(store, c))


def _formats(store: Any, c: Any) -> list[str]:
    from gitstore.codecs import encode_bytes

    codec, data = encode_bytes(store.retrieve(c, "table"))
    assert data[:4] == b"PAR1"  # Apache Parquet: opens without gitstore
    return [codec.ext]


def test_dataframe_parquet_opens_without_gitstore(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from gitstore.codecs import encode_bytes

    codec, data = encode_bytes(_frames()[0])
    assert (codec.name, codec.ext) == ("parquet", "parquet")
    (tmp_path / "t.parquet").write_bytes(data)
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names == ["x", "n", "s", "b", "t", "trial"]
