"""The components whose keys tests/data/golden_keys.yaml pins. Never edit an existing one."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
from components import MultiInput, Typed

from gitstore import ParameterSet
from gitstore.keys import KeyedBy


class Colour(enum.Enum):  # added with issue 14: argument types of memoized functions
    RED = 1
    GREEN = "g"


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: int = 0


class Pair(NamedTuple):
    left: int
    right: str


def T(params: Any, input: Any = None, version: Any = "v1", t: str = "golden.Component") -> Typed:
    return Typed(t, params, input, version)


def _structured(dtype: Any) -> Any:
    arr = np.empty(2, dtype=dtype)  # padding (if any) left uninitialised: must not matter
    arr[:] = [(1, 2.5), (-3, math.nan)]
    return arr


def build() -> dict[str, Any]:
    base = T({"tau": 10.0})
    mid = T({"n": 3}, base, t="golden.Mid")
    out: dict[str, Any] = {
        "empty": T({}),
        "none_parameters": T(None),
        "int": T({"a": 1}),
        "float": T({"a": 1.0}),
        "bool": T({"a": True}),
        "str": T({"a": "1"}),
        "none_value": T({"a": None}),
        "negative_zero": T({"a": -0.0}),
        "positive_zero": T({"a": 0.0}),
        "nan": T({"a": math.nan}),
        "inf": T({"a": math.inf}),
        "minus_inf": T({"a": -math.inf}),
        "big_int": T({"a": 2**100}),
        "unicode": T({"name": "Größe 漢字 🧠"}),
        "bytes": T({"a": b"\x00\x01\xff"}),
        "list": T({"a": [1, 2, 3]}),
        "tuple": T({"a": (1, 2, 3)}),
        "nested": T({"network": {"exc": {"tau_m": 20.0, "n": 800}, "inh": {"n": 200}}}),
        "parameterset": T(ParameterSet({"network": {"exc": {"tau_m": 20.0}}})),
        "set": T({"a": {3, 1, 2}}),
        "frozenset": T({"a": frozenset({"x", "y"})}),
        "int_key": T({"a": {1: "one", 2: "two"}}),
        "version_int": T({"a": 1}, version=1),
        "version_str": T({"a": 1}, version="1"),
        "np_float64": T({"a": np.float64(1.5)}),
        "np_int32": T({"a": np.int32(7)}),
        "np_bool": T({"a": np.bool_(True)}),
        "np_array_f8": T({"a": np.arange(6, dtype="<f8").reshape(2, 3)}),
        "np_array_i2_be": T({"a": np.arange(4, dtype=">i2")}),
        "np_array_nan": T({"a": np.array([1.0, math.nan])}),
        "np_array_empty": T({"a": np.zeros((0, 3))}),
        "single_input": T({"k": 1}, base),
        "chain": T({"k": 2}, mid),
        "list_input": MultiInput({"k": 3}, [base, mid]),
        "diamond": MultiInput({"k": 4}, [T({"l": 1}, base), T({"r": 1}, base)]),
        "empty_list_input": MultiInput({"k": 5}, []),
        # added with issue 11 (never pinned before): structured arrays keyed by value,
        # dotted names as nesting, non-string versions
        "np_structured": T({"a": _structured(np.dtype([("i", "<i4"), ("f", "<f8")]))}),
        "np_structured_aligned_be": T({"a": _structured(
            np.dtype([("i", ">i4"), ("f", ">f8")], align=True))}),
        "np_structured_scalar": T({"a": _structured(
            np.dtype([("i", "<i4"), ("f", "<f8")]))[0]}),
        "np_structured_nested": T({"a": np.array(
            [((1, 2.0), [3, 4])], dtype=[("p", [("x", "u1"), ("y", ">f4")]), ("q", "<i2", (2,))])}),
        "dotted_names": T({"a.b": 1, "a": {"c": 2}, "x.y.z": "w"}),
        "version_tuple": T({"a": 1}, version=(1, 0)),
        "version_dict": T({"a": 1}, version={"major": 1, "minor": 0}),
    }
    # added with issue 14 (memoized functions' arguments): new tags, nothing above moved
    out.update({
        "datetime": T({"a": datetime.datetime(2024, 5, 17, 13, 45, 30, 123456)}),
        "datetime_utc": T({"a": datetime.datetime(2024, 5, 17, 13, 45,
                                                  tzinfo=datetime.timezone.utc)}),
        "date": T({"a": datetime.date(2024, 5, 17)}),
        "path": T({"a": PurePosixPath("data/run 1/spikes.npy")}),
        "path_windows": T({"a": PureWindowsPath("data\\run 1\\spikes.npy")}),
        "enum": T({"a": Colour.RED, "b": Colour.GREEN}),
        "dataclass": T({"a": Point(1.5, 2)}),
        "namedtuple": T({"a": Pair(1, "x")}),
        "decimal": T({"a": Decimal("1.10")}),
        "fraction": T({"a": Fraction(2, 6)}),
        "keyed_input": T({"a": KeyedBy("input", 0)}),
        "keyed_array": T({"a": KeyedBy("array", "ab" * 32)}),
    })
    # added with issue 14 (pandas arguments, keyed by content): new tags, nothing above moved
    import pandas as pd

    frame = pd.DataFrame({"x": np.array([1.5, math.nan], dtype="<f8"),
                          "n": np.array([3, 4], dtype="<i8"), "s": ["a", "b"]},
                         index=pd.Index(np.array([10, 20], dtype="<i8"), name="trial"))
    out.update({
        "pandas_frame": T({"a": frame}),
        "pandas_series": T({"a": pd.Series(np.array([1, 2], dtype="<i4"), name="rate",
                                           index=pd.Index(["p", "q"], dtype=object))}),
    })
    out["list_input"].full_type = "golden.Multi"
    out["diamond"].full_type = "golden.Multi"
    out["empty_list_input"].full_type = "golden.Multi"
    return out


def compute() -> dict[str, str]:
    from gitstore import key_of

    return {name: key_of(c) for name, c in build().items()}


if __name__ == "__main__":  # prints the table; used by the subprocess test
    import json

    print(json.dumps(compute(), sort_keys=True))
