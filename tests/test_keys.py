from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import parameters as neurotools_parameters
import pytest
import yaml
from components import MultiInput, SimpleComponent, Typed, Unversioned
from hypothesis import given
from hypothesis import strategies as st

import golden_components
from gitstore import KEY_SCHEME, ParameterSet, key_of, source_version
from gitstore.errors import CyclicInputError, InvalidComponentError, UnhashableParameterError
from gitstore.keygenerators import hash_pickle, join_with_underscores
from gitstore.keys import canonical_bytes, split_key

GOLDEN = Path(__file__).parent / "data" / "golden_keys.yaml"


def golden() -> dict[str, str]:
    return yaml.safe_load(GOLDEN.read_text())


def test_golden_keys_never_drift() -> None:
    pinned = golden()
    assert len(pinned) >= 30
    assert golden_components.compute() == pinned


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_golden_keys_in_another_process(seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=seed,
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "golden_components.py")],
                         env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == golden()


def test_key_names_its_scheme() -> None:
    k = key_of(SimpleComponent({"a": 1}))
    scheme, digest = split_key(k)
    assert scheme == KEY_SCHEME == "k1-sha256"
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_one_one_point_oh_true_and_string_differ() -> None:
    keys = {key_of(Typed("t", {"a": v})) for v in (1, 1.0, True, "1")}
    assert len(keys) == 4


def test_list_and_tuple_differ() -> None:
    assert key_of(Typed("t", {"a": [1]})) != key_of(Typed("t", {"a": (1,)}))


def test_container_class_does_not_matter() -> None:
    data = {"net": {"exc": {"tau": 20.0, "n": 3}}, "seed": 1}
    plain = key_of(Typed("t", data))
    assert key_of(Typed("t", ParameterSet(data))) == plain
    assert key_of(Typed("t", neurotools_parameters.ParameterSet(data))) == plain


def test_nan_has_one_encoding() -> None:
    other_nan = struct.unpack(">d", b"\xff\xf8\x00\x00\x00\x00\x00\x01")[0]
    assert math.isnan(other_nan)
    assert key_of(Typed("t", {"a": math.nan})) == key_of(Typed("t", {"a": other_nan}))
    arr1 = np.array([math.nan])
    arr2 = np.frombuffer(b"\x01\x00\x00\x00\x00\x00\xf8\x7f", dtype="<f8").copy()
    assert np.isnan(arr2[0])
    assert key_of(Typed("t", {"a": arr1})) == key_of(Typed("t", {"a": arr2}))


def test_numpy_byte_order_does_not_matter_but_dtype_does() -> None:
    little = np.arange(4, dtype="<i4")
    big = little.astype(">i4")
    assert key_of(Typed("t", {"a": little})) == key_of(Typed("t", {"a": big}))
    assert key_of(Typed("t", {"a": little})) != key_of(Typed("t", {"a": little.astype("<i8")}))
    assert key_of(Typed("t", {"a": little})) != key_of(Typed("t", {"a": little.reshape(2, 2)}))
    # a numpy scalar is not the Python number
    assert key_of(Typed("t", {"a": np.float64(1.0)})) != key_of(Typed("t", {"a": 1.0}))


def test_inputs_change_keys_recursively() -> None:
    a = SimpleComponent({"x": 1})
    b = SimpleComponent({"y": 1}, input=a)
    c = SimpleComponent({"z": 1}, input=b)
    before = key_of(c)
    a.parameters["x"] = 2
    assert key_of(c) != before


def test_single_input_differs_from_list_of_one() -> None:
    a = Typed("t", {"x": 1})
    assert key_of(Typed("u", {}, input=a)) != key_of(MultiInput({}, [a]))


def test_diamond_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    import gitstore.keys as keys_module

    real = keys_module.state_bytes

    def counting(*args: Any) -> bytes:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(keys_module, "state_bytes", counting)
    base = Typed("base", {"x": 1})
    top = MultiInput({}, [Typed("l", {}, base), Typed("r", {}, base)])
    key_of(top)
    assert calls.count("base") == 1 and len(calls) == 4


def test_cycle_is_named() -> None:
    a = Typed("mod.A", {})
    b = Typed("mod.B", {}, a)
    c = Typed("mod.C", {}, b)
    a.input = c
    with pytest.raises(CyclicInputError) as info:
        key_of(c)
    assert info.value.cycle[0] == info.value.cycle[-1]
    assert {"mod.A", "mod.B", "mod.C"} <= set(info.value.cycle)
    assert "mod.A" in str(info.value)


def test_self_loop() -> None:
    a = Typed("mod.A", {})
    a.input = [a]
    with pytest.raises(CyclicInputError):
        key_of(a)


def test_unhashable_parameter_names_the_path() -> None:
    with pytest.raises(UnhashableParameterError) as info:
        key_of(Typed("t", {"net": {"exc": {"cell": object()}}}))
    assert info.value.path == "net.exc.cell"
    with pytest.raises(UnhashableParameterError, match=r"a\[1\]"):
        key_of(Typed("t", {"a": [1, object()]}))
    with pytest.raises(UnhashableParameterError):
        key_of(Typed("t", {"a": np.array([object()], dtype=object)}))


def test_missing_attribute_is_named() -> None:
    class NoInput:
        parameters: dict[str, Any] = {}

    with pytest.raises(InvalidComponentError) as info:
        key_of(NoInput())
    assert info.value.attribute == "input"
    with pytest.raises(InvalidComponentError, match="mapping"):
        key_of(Typed("t", [1, 2]))


def test_version_from_source() -> None:
    from gitstore.codeid import code_identity

    v = code_identity(Unversioned).version
    assert v.startswith("code-") and key_of(Unversioned({"a": 1})) == key_of(Typed(
        f"{Unversioned.__module__}.{Unversioned.__qualname__}", {"a": 1}, None, v))
    commit = Unversioned({"a": 1})
    commit.version_policy = "commit"  # type: ignore[attr-defined]
    assert key_of(commit) == key_of(Typed(
        f"{Unversioned.__module__}.{Unversioned.__qualname__}", {"a": 1}, None,
        source_version(Unversioned)))


def test_source_version_in_git_repo(tmp_path: Path) -> None:
    from conftest import git

    repo = tmp_path / "code"
    repo.mkdir()
    git("init", "-q", str(repo))
    mod = repo / "mymodel_src.py"
    mod.write_text("class Model:\n    pass\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "one", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    sys.path.insert(0, str(repo))
    try:
        import importlib

        import mymodel_src  # type: ignore[import-not-found]

        assert source_version(mymodel_src.Model) == head
        mod.write_text("class Model:\n    x = 1\n")
        importlib.reload(mymodel_src)
        dirty = source_version(mymodel_src.Model)
        assert dirty.startswith(head + "+dirty.")
        mod.write_text("class Model:\n    x = 2\n")
        assert source_version(mymodel_src.Model) not in (dirty, head)
    finally:
        sys.path.remove(str(repo))
        sys.modules.pop("mymodel_src", None)


def test_source_version_outside_repo(tmp_path: Path) -> None:
    mod = tmp_path / "loose_src.py"
    mod.write_text("def f():\n    return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import loose_src  # type: ignore[import-not-found]

        assert source_version(loose_src.f).startswith("src-sha256.")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("loose_src", None)


def test_source_version_of_builtin_is_clear_error() -> None:
    with pytest.raises(InvalidComponentError, match="version"):
        source_version(len)


# --- the seed's key generators -------------------------------------------------------------


def test_join_with_underscores_is_a_file_name_at_any_size(tmp_path: Path) -> None:
    big = SimpleComponent({f"param_{i}": i * 1.5 for i in range(10_000)})
    name = join_with_underscores(big)
    assert len(name.encode()) < 255 and "/" not in name
    (tmp_path / name).write_text("ok")  # the file system accepts it
    small = SimpleComponent({"tau": 10.0})
    assert "tau=10.0" in join_with_underscores(small)
    assert join_with_underscores(small) != join_with_underscores(SimpleComponent({"tau": 11.0}))
    odd = SimpleComponent({"a": "x/y"})
    assert "/" not in join_with_underscores(odd)
    assert join_with_underscores(odd) != join_with_underscores(SimpleComponent({"a": "x_y"}))


def test_hash_pickle_is_stable_and_order_free() -> None:
    a = hash_pickle(SimpleComponent({"a": 1, "b": 2}))
    assert a == hash_pickle(SimpleComponent({"b": 2, "a": 1}))
    assert a != hash_pickle(SimpleComponent({"a": 1, "b": 3}))
    x = SimpleComponent({})
    y = SimpleComponent({}, input=x)
    x.input = y
    with pytest.raises(CyclicInputError):
        hash_pickle(y)


# --- properties ----------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(), st.binary())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            # dotted names nest (and may clash): tested in test_key_hardening
                            st.dictionaries(st.text(max_size=5).filter(lambda s: "." not in s),
                                            inner, max_size=4)),
    max_leaves=12,
)
param_dicts = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: "." not in s),
                              values, max_size=5)


@given(param_dicts)
def test_equal_states_give_equal_keys(params: dict[str, Any]) -> None:
    import copy

    assert key_of(Typed("t", params)) == key_of(Typed("t", copy.deepcopy(params)))


@given(param_dicts)
def test_dict_order_does_not_matter(params: dict[str, Any]) -> None:
    reversed_params = dict(reversed(list(params.items())))
    assert key_of(Typed("t", params)) == key_of(Typed("t", reversed_params))


@given(values, values)
def test_canonical_encoding_is_injective(a: Any, b: Any) -> None:
    if canonical_bytes(a) == canonical_bytes(b):
        assert _same(a, b)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


# --- pandas arguments, keyed by content (issue 14) -------------------------------------------

def _frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"x": [1.5, 2.5], "s": ["a", "b"]},
                        index=pd.Index([10, 20], name="trial"))


def test_pandas_frames_are_keyed_by_content() -> None:
    import pandas as pd

    base = key_of(Typed("t", {"a": _frame()}))
    assert key_of(Typed("t", {"a": _frame()})) == base  # another object, same content
    changes = []
    f = _frame()
    f.iloc[0, 0] = 1.25
    changes.append(f)  # a value
    changes.append(_frame().rename_axis("run"))  # the index's name
    changes.append(_frame().rename(columns={"x": "y"}))  # a column's name
    changes.append(_frame()[["s", "x"]])  # the columns' order
    changes.append(_frame().astype({"x": "float32"}))  # a dtype
    changes.append(_frame().set_axis([10, 21]))  # the index's values
    keys = {key_of(Typed("t", {"a": c})) for c in changes}
    assert base not in keys and len(keys) == len(changes)
    series = _frame()["x"]
    assert key_of(Typed("t", {"a": series})) != key_of(Typed("t", {"a": series.rename("z")}))
    # strings are strings, whether pandas holds them as object or as its string dtype
    obj = pd.DataFrame({"s": pd.Series(["a", "b"], dtype=object)})
    string = pd.DataFrame({"s": pd.Series(["a", "b"], dtype="string")})
    assert key_of(Typed("t", {"a": obj})) == key_of(Typed("t", {"a": string}))


@pytest.mark.parametrize("column", [
    [1, "a"],  # an object column of mixed values
    ["a", None],  # a missing value
])
def test_pandas_object_columns_hold_str_only(column: list[Any]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"c": pd.Series(column, dtype=object)})
    with pytest.raises(UnhashableParameterError, match="hold str") as info:
        key_of(Typed("t", {"a": frame}))
    assert info.value.path == "a['c']"  # the argument and the column


def test_pandas_extension_dtypes_are_refused_naming_the_argument() -> None:
    import pandas as pd

    frame = pd.DataFrame({"c": pd.Categorical(["x", "y"])})
    with pytest.raises(UnhashableParameterError, match="category"):
        key_of(Typed("t", {"table": frame}))
