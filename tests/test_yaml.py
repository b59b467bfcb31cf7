"""The fast YAML emitter must read back equal through PyYAML's safe loader."""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gitstore import _yaml

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=10,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                     math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@given(st.dictionaries(st.text(max_size=8), values, max_size=6))
def test_dump_reads_back_equal(data: dict[str, Any]) -> None:
    text = _yaml.dump(data)
    assert same(yaml.safe_load(text) or {}, data)
    assert same(_yaml.load(text) or {}, data)


def test_tricky_scalars() -> None:
    data = {"yes": "no", "on": True, "e": 1e-05, "big": 1e300, "neg": -0.0, "null": None,
            "s": "a: b # c", "multi": "line1\nline2", "emoji": "🧠", "1": 1, "": "empty",
            "nested": {"list": [1, 2.5, "x", None, [True]], "empty": {}}, "nan": math.nan}
    assert same(yaml.safe_load(_yaml.dump(data)), data)
