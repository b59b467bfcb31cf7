from __future__ import annotations

import io
import json
import math
import tracemalloc
from typing import IO, Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gitstore import ParameterSet
from gitstore.codecs import (
    choose_codec,
    codec_by_ext,
    decode_bytes,
    decode_stream,
    encode_bytes,
    register_codec,
    unregister_codec,
)
from gitstore.errors import CorruptEntryError, DataError, UnsupportedDataError, UntrustedDataError

plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
              st.binary()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(), st.tuples(st.integers())),
                        inner, max_size=4),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
        st.sets(st.integers(), max_size=3),
    ),
    max_leaves=15,
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                     math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(a == b)


def round_trip(value: Any) -> Any:
    codec, data = encode_bytes(value)
    return decode_bytes(codec, data)


@given(plain)
def test_plain_data_round_trips_exactly(value: Any) -> None:
    assert same(round_trip(value), value)


@given(st.text())
def test_text_round_trips(value: str) -> None:
    codec, data = encode_bytes(value)
    assert codec.ext == "txt" and decode_bytes(codec, data) == value


@given(st.binary())
def test_bytes_round_trip(value: bytes) -> None:
    codec, data = encode_bytes(value)
    assert codec.ext == "bin" and decode_bytes(codec, data) == value


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_round_trips(value: float) -> None:
    assert same(round_trip(value), value)
    assert same(round_trip([value]), [value])


@given(hnp.arrays(dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
                                  hnp.complex_number_dtypes()),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
def test_arrays_round_trip(arr: Any) -> None:
    codec, data = encode_bytes(arr)
    assert codec.name == "npy" and data.startswith(b"\x93NUMPY")
    assert same(decode_bytes(codec, data), arr)
    assert same(round_trip({"inner": arr})["inner"], arr)


def test_npy_opens_without_gitstore() -> None:
    arr = np.arange(10.0)
    _codec, data = encode_bytes(arr)
    np.testing.assert_array_equal(np.load(io.BytesIO(data), allow_pickle=False), arr)


def test_json_is_ordinary_json_for_ordinary_data() -> None:
    codec, data = encode_bytes({"a": [1, 2.5, "x"], "b": None})
    assert codec.ext == "json" and json.loads(data) == {"a": [1, 2.5, "x"], "b": None}


def test_types_kept() -> None:
    value = {"t": (1, 2), "f": 1.0, 1: "int key", "ps": ParameterSet({"a": {"b": 1}}),
             "np": np.float32(2.5), "$weird": "dollar key"}
    got = round_trip(value)
    assert same({k: v for k, v in got.items() if k not in ("ps", "np")},
                {k: v for k, v in value.items() if k not in ("ps", "np")})
    assert isinstance(got["ps"], ParameterSet) and got["ps"].a.b == 1
    assert type(got["np"]) is np.float32 and got["np"] == np.float32(2.5)


def test_str_and_bytes_codecs() -> None:
    assert choose_codec("x").ext == "txt" and choose_codec(b"x").ext == "bin"
    assert round_trip("é\n") == "é\n" and round_trip(b"\x00") == b"\x00"


class Point:
    def __init__(self, x: float, y: float) -> None:
        self.x, self.y = x, y


def test_register_codec() -> None:
    def write(p: Point, fp: IO[bytes]) -> None:
        fp.write(f"{p.x},{p.y}".encode())

    def read(fp: IO[bytes]) -> Point:
        x, y = fp.read().decode().split(",")
        return Point(float(x), float(y))

    with pytest.raises(UnsupportedDataError):
        choose_codec(Point(1, 2))
    register_codec("point", Point, "point", write, read)
    try:
        codec, data = encode_bytes(Point(1, 2))
        assert codec.name == "point" and data == b"1,2"
        assert decode_bytes(codec_by_ext("point"), data).y == 2.0
        with pytest.raises(DataError):
            register_codec("point2", Point, "point", write, read)  # extension taken
        with pytest.raises(DataError):
            register_codec("yaml", Point, "yaml", write, read)  # reserved
    finally:
        unregister_codec("point")


def test_pickle_only_with_opt_in() -> None:
    with pytest.raises(UnsupportedDataError, match="allow_pickle"):
        encode_bytes(Point(1, 2))
    with pytest.raises(UnsupportedDataError):
        encode_bytes(np.array([Point(1, 2)], dtype=object))
    codec, data = encode_bytes(Point(1, 2), allow_pickle=True)
    assert codec.name == "pickle"
    with pytest.raises(UntrustedDataError):
        decode_bytes(codec, data)
    assert decode_bytes(codec, data, allow_pickle=True).x == 1


def test_hostile_npy_with_pickle_is_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptEntryError):
        decode_bytes(codec_by_ext("npy"), buf.getvalue())


def test_corrupt_json_is_corrupt_entry() -> None:
    with pytest.raises(CorruptEntryError):
        decode_bytes(codec_by_ext("json"), b"{not json")


def test_npy_streams_without_a_second_copy(tmp_path: Any) -> None:
    arr = np.random.default_rng(0).random(4_000_000)  # 32 MB
    path = tmp_path / "a.npy"
    codec = choose_codec(arr)
    tracemalloc.start()
    with open(path, "wb") as f:
        codec.write(arr, f)
    _, peak_write = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    with open(path, "rb") as f:
        back = decode_stream(codec, f)
    _, peak_read = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_write < arr.nbytes * 0.5  # no whole copy on the way out
    assert peak_read < arr.nbytes * 1.5  # the result itself, no second copy
    np.testing.assert_array_equal(back, arr)
