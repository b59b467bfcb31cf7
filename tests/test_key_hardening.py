"""Issue 11, items 7-11, 13 and 18 (parts): wrong keys, unreadable descriptions, raw errors.

Every test here failed on the code before the fix. Hostile entries are built with the real
``git`` binary (hash-object, mktree, commit-tree, update-ref), never through gitstore.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import parameters as neurotools_parameters
import pytest
from components import Typed
from conftest import git
from typer.testing import CliRunner

from gitstore import GitDataStore, ParameterSet, key_of
from gitstore._git.layout import ref_for_version
from gitstore.errors import (
    CorruptEntryError,
    InvalidComponentError,
    ParameterError,
    ParameterFileError,
    UnhashableParameterError,
    UnsupportedDataError,
)
from gitstore_cli.main import app

runner = CliRunner()


def T(params: Any, version: Any = "v1") -> Typed:
    return Typed("hard.Component", params, None, version)


def cli(store: Path, *args: str) -> Any:
    return runner.invoke(app, ["--store", str(store), *args])


def refs(path: Path) -> str:
    return git("--git-dir", str(path), "for-each-ref")


# --- item 7: dotted parameter names ------------------------------------------------------------


def test_dotted_name_beside_its_parent_is_kept_not_dropped() -> None:
    p = ParameterSet("a.b: 1\na:\n  c: 2\n")
    assert p.as_dict() == {"a": {"b": 1, "c": 2}}
    q = ParameterSet({"a": {"c": 2}, "a.b": 1})
    assert q.as_dict() == {"a": {"b": 1, "c": 2}}
    assert key_of(T(p)) != key_of(T(ParameterSet("a:\n  c: 2\n")))


@pytest.mark.parametrize("params", [
    {"a.b": 1, "a": 5},
    {"a": 5, "a.b": 1},
    {"a.b": 1, "a": {"b": 2}},
    {"a": {"b": {"c": 1}}, "a.b": 3},
])
def test_dotted_name_clash_is_refused_everywhere(params: dict[str, Any]) -> None:
    with pytest.raises(ParameterError, match="'a"):
        ParameterSet(params)
    with pytest.raises(ParameterError, match="'a"):
        key_of(T(params))
    text = "".join(f"{k}: {v}\n" for k, v in params.items() if not isinstance(v, dict))
    if "a.b" in params and not isinstance(params.get("a"), dict):
        with pytest.raises(ParameterError):
            ParameterSet(text)


def test_dotted_dict_and_parameterset_give_one_key() -> None:
    nested = {"a": {"b": 1, "c": 2}, "x": {"y": {"z": 3}}}
    dotted = {"a.b": 1, "a": {"c": 2}, "x.y.z": 3}
    half = {"a": {"c": 2, "b": 1}, "x": {"y.z": 3}}
    expected = key_of(T(nested))
    assert key_of(T(dotted)) == expected
    assert key_of(T(half)) == expected
    assert key_of(T(ParameterSet(dotted))) == expected
    assert key_of(T(neurotools_parameters.ParameterSet({"a": {"c": 2}, "a.b": 1,
                                                         "x": {"y": {"z": 3}}}))) == expected
    # the dot inside a list's mapping stays literal, as in ParameterSet
    assert key_of(T({"l": [{"a.b": 1}]})) != key_of(T({"l": [{"a": {"b": 1}}]}))


def test_different_keys_always_show_a_difference(tmp_path: Path) -> None:
    pairs = [
        ({"a": (1, 2)}, {"a": [1, 2]}),
        ({"a": {1: "x"}}, {"a": {"1": "x"}}),
        ({"a.b": 1}, {"a": {"b": 2}}),
        ({"a": 1}, {"a": True}),
    ]
    with GitDataStore(tmp_path / "s.git") as s:
        for a, b in pairs:
            ka, kb = key_of(T(a)), key_of(T(b))
            assert ka != kb
            assert ParameterSet(a).diff(b), (a, b)
            s.store(T(a), "x", 1)
            s.store(T(b), "x", 1)
            assert s.diff(ka, kb), (a, b)
            result = cli(tmp_path / "s.git", "diff", ka, kb)
            assert result.exit_code == 0, result.output
            assert "no difference" not in result.output


# --- item 8: versions that are not strings ------------------------------------------------------


@pytest.mark.parametrize("stored,asked", [
    ((1, 0), (1, 0)),
    ([1, 0], [1, 0]),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ({"x": (1, 2), "y": {"q": 1, "p": 2}}, {"y": {"p": 2, "q": 1}, "x": (1, 2)}),
    (1.5, 1.5),
    (np.int64(3), np.int64(3)),
])
def test_non_string_versions_are_found_again(tmp_path: Path, stored: Any, asked: Any) -> None:
    from gitstore.component import version_text

    with GitDataStore(tmp_path / "s.git") as s:
        s.store(T({"a": 1}, version=stored), "x", [1, 2])
        assert key_of(T({"a": 1}, version=stored)) == key_of(T({"a": 1}, version=asked))
        assert s.retrieve(T({"a": 1}, version=asked), "x") == [1, 2]
        assert s.exists(T({"a": 1}, version=asked), "x")
        (entry,) = list(s.entries())
        assert entry.version == version_text(asked)
        assert list(s.entries(version=asked)) == [entry]
        assert s.delete(T({"a": 1}, version=asked))
        assert list(s.entries()) == []


def test_pinned_version_texts_do_not_move() -> None:
    from gitstore.component import version_text

    # refs already written for string and integer versions keep their names
    assert ref_for_version("v1") == "refs/gitstore/versions/v1"
    assert ref_for_version(1) == "refs/gitstore/versions/1"
    assert ref_for_version("1.0") == "refs/gitstore/versions/1.0"
    assert version_text([1, 0]) == "[1, 0]"  # where tuple versions were filed so far
    assert version_text((1, 0)) == "[1, 0]"


# --- item 9: structured numpy arrays -------------------------------------------------------------


def test_structured_arrays_key_values_not_padding_or_byte_order() -> None:
    packed = np.dtype([("a", "u1"), ("b", "<f8"), ("c", "<i4", (2,))])
    aligned = np.dtype([("a", "u1"), ("b", "<f8"), ("c", "<i4", (2,))], align=True)
    big = np.dtype([("a", "u1"), ("b", ">f8"), ("c", ">i4", (2,))])
    offsets = np.dtype({"names": ["a", "b", "c"], "formats": ["u1", "<f8", ("<i4", (2,))],
                        "offsets": [0, 16, 32], "itemsize": 48})
    values = [(1, 2.5, (3, 4)), (5, math.nan, (7, 8))]
    keys = set()
    for dt in (packed, aligned, big, offsets):
        arr = np.empty(2, dt)  # padding bytes left uninitialised on purpose
        arr[:] = values
        keys.add(key_of(T({"a": arr})))
    assert len(keys) == 1
    other = np.array(values, dtype=packed)
    other["b"][0] = 2.25
    assert key_of(T({"a": other})) not in keys
    renamed = np.array(values, dtype=[("a", "u1"), ("B", "<f8"), ("c", "<i4", (2,))])
    assert key_of(T({"a": renamed})) not in keys
    nan_payload = np.array(values, dtype=packed)
    nan_payload["b"].view("<u8")[1] = 0x7FF8000000000123  # another NaN bit pattern
    assert key_of(T({"a": nan_payload})) in keys


# --- item 10 / 11: descriptions that must round-trip; one bad entry does not break the store ----


def test_long_parameter_name_round_trips_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    long = "p" * 1100
    params = {long: 1, "n": {long + "q": {"deep": 2}}, "short": 3}
    with GitDataStore(path) as s:
        s.store(T(params), "x", 42)
        s.store(T({"b": 1}), "x", 43)
        entries = list(s.entries())
        assert len(entries) == 2
        mine = [e for e in entries if e.key == key_of(T(params))][0]
        assert mine.component["parameters"] == params
        assert s.verify() == []
        assert s.find(mine.key[10:22]).key == mine.key
    assert cli(path, "ls").exit_code == 0
    assert cli(path, "show", key_of(T(params))[10:22]).exit_code == 0
    assert cli(path, "verify").exit_code == 0


def test_parameterset_yaml_round_trips_long_names(tmp_path: Path) -> None:
    p = ParameterSet({"x" * 2000: {"y" * 1500: [1, 2]}, "z": 1})
    assert ParameterSet(p.to_yaml()) == p
    p.save(tmp_path / "p.yaml")
    assert ParameterSet(tmp_path / "p.yaml") == p


def test_non_string_parameter_names_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({1: "x", "a": {2.5: "y", None: 3, True: 4}}), "x", 1)
        s.store(T({"b": 1}), "x", 2)
        (mine,) = [e for e in s.entries() if e.component["parameters"].get(1) == "x"]
        assert mine.component["parameters"] == {1: "x", "a": {2.5: "y", None: 3, True: 4}}
    result = cli(path, "ls")
    assert result.exit_code == 0, result.output
    assert result.output.count("hard.Component") == 2


@pytest.mark.parametrize("params", [{(1, 2): "x"}, {"a": {frozenset({1}): 1}}, {b"k": 1}])
def test_names_yaml_cannot_hold_are_refused_before_writing(tmp_path: Path,
                                                           params: dict[Any, Any]) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        with pytest.raises(ParameterError, match="component.yaml"):
            s.store(T(params), "x", 1)
        assert list(s.entries()) == []
    assert refs(path) == ""


def _hostile_entry(path: Path, version: str, component_yaml: bytes) -> str:
    """An entry whose component.yaml is ``component_yaml``, filed by git plumbing alone."""
    digest = "ab" + "c" * 62
    gd = ["--git-dir", str(path)]

    def blob(data: bytes) -> str:
        return subprocess.run(["git", *gd, "hash-object", "-w", "--stdin"], input=data,
                              capture_output=True, check=True).stdout.decode().strip()

    def tree(lines: str) -> str:
        return subprocess.run(["git", *gd, "mktree"], input=lines.encode(),
                              capture_output=True, check=True).stdout.decode().strip()

    comp = blob(component_yaml)
    attr = blob(b'[1, 2]')
    t3 = tree(f"100644 blob {comp}\tcomponent.yaml\n100644 blob {attr}\tx.json\n")
    t2 = tree(f"040000 tree {t3}\t{digest}\n")
    t1 = tree(f"040000 tree {t2}\t{digest[2:4]}\n")
    root = tree(f"040000 tree {t1}\t{digest[:2]}\n")
    commit = subprocess.run(["git", *gd, "commit-tree", root, "-m", "hostile"],
                            capture_output=True, check=True, text=True).stdout.strip()
    git(*gd, "update-ref", f"refs/gitstore/versions/{version}", commit)
    return digest


BOMB = textwrap.dedent("""\
    key: k1-sha256:abcccc
    type: bomb
    version: bad
    a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
    parameters: {x: *i}
    """).encode()


@pytest.mark.parametrize("content", [
    BOMB,
    b"key: [unclosed\n",
    b"\xff\xfe not utf-8",
    b"- a list\n- not a mapping\n",
    b"key: &x [*x]\ntype: t\nversion: v\n",
    b'"' + b"k" * 1100 + b'": 1\nkey: x\n',
])
def test_one_damaged_description_is_reported_for_that_entry_only(tmp_path: Path,
                                                                 content: bytes) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"good": 1}), "x", 1)
    digest = _hostile_entry(path, "bad", content)
    with GitDataStore(path) as s:
        entries = list(s.entries())
        assert len(entries) == 2
        good = [e for e in entries if e.problem is None]
        bad = [e for e in entries if e.problem is not None]
        assert [e.key for e in good] == [key_of(T({"good": 1}))]
        assert [e.key for e in bad] == [f"k1-sha256:{digest}"]
        assert bad[0].version == "bad"
        with pytest.raises(CorruptEntryError):
            s.find(digest[:10])
        problems = s.verify()
        assert len(problems) == 1 and digest[:12] in problems[0]
    result = cli(path, "ls")
    assert result.exit_code == 0, result.output
    assert "hard.Component" in result.output
    shown = cli(path, "show", digest[:10])
    assert shown.exit_code != 0
    assert "Traceback" not in shown.output


def test_alias_bombs_and_huge_texts_are_refused_by_the_loader() -> None:
    from gitstore import _yaml

    with pytest.raises(_yaml.YAMLLimitError, match="alias"):
        _yaml.load(BOMB)
    with pytest.raises(ParameterFileError):
        ParameterSet(BOMB.decode())
    with pytest.raises(_yaml.YAMLLimitError, match="bytes"):
        _yaml.load("a: " + "x" * (_yaml.MAX_TEXT + 1))
    # a few aliases within bounds still work in parameter files
    p = ParameterSet("base: &b {tau: 1.0}\nexc: *b\ninh: *b\n")
    assert p.exc.tau == 1.0 and p.inh.tau == 1.0


# --- item 18: raw Python errors -----------------------------------------------------------------


def _self_referential() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["me"] = d
    return d


def _deep(n: int) -> dict[str, Any]:
    d: dict[str, Any] = {}
    cur = d
    for _ in range(n):
        cur["x"] = {}
        cur = cur["x"]
    return d


def _self_list() -> dict[str, Any]:
    lst: list[Any] = []
    lst.append(lst)
    return {"l": lst}


@pytest.mark.parametrize("params,match", [
    ({"n": 10 ** 5000}, "digits"),
    ({"s": "ok\ud800"}, "surrogate"),
    ({"ok\udcff": 1}, "surrogate"),
    ({"s": ["x", {"t": "\udfff"}]}, "surrogate"),
    (_self_referential(), "deep"),
    (_self_list(), "deep"),
    (_deep(5000), "deep"),
])
def test_unkeyable_values_are_typed_errors(tmp_path: Path, params: Any, match: str) -> None:
    with pytest.raises(UnhashableParameterError, match=match):
        key_of(T(params))
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        with pytest.raises(UnhashableParameterError):
            s.store(T(params), "x", 1)
    assert refs(path) == ""


def test_versions_and_types_get_the_same_checks() -> None:
    with pytest.raises(UnhashableParameterError, match="surrogate"):
        key_of(T({}, version="v\ud800"))
    with pytest.raises(UnhashableParameterError, match="digits"):
        key_of(T({}, version=10 ** 5000))


def test_parameterset_refuses_deep_and_self_referential_input() -> None:
    for bad in (_deep(5000), _self_referential()):
        with pytest.raises(ParameterError, match="deep"):
            ParameterSet(bad)


def test_save_to_a_missing_folder_is_a_typed_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "p.yaml"
    with pytest.raises(ParameterFileError, match="missing"):
        ParameterSet({"a": 1}).save(target)
    assert not (tmp_path / "missing").exists()


def test_unversioned_class_without_source_file() -> None:
    code = textwrap.dedent("""\
        from gitstore import key_of
        from gitstore.errors import InvalidComponentError
        class Interactive:
            parameters = {"a": 1}
            input = None
        try:
            key_of(Interactive())
        except InvalidComponentError as exc:
            print("TYPED", exc.attribute, exc)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("TYPED version")
    assert "version" in out.stdout
    namespace: dict[str, Any] = {"__name__": "notebook_cell"}
    exec(compile("class Cell:\n    parameters = {}\n    input = None\n", "<cell>", "exec"),
         namespace)
    with pytest.raises(InvalidComponentError, match="explicit 'version'"):
        key_of(namespace["Cell"]())


def test_unpicklable_data_with_allow_pickle_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path, allow_pickle=True) as s:
        with pytest.raises(UnsupportedDataError, match="pickle"):
            s.store(T({"a": 1}), "f", lambda x: x)
        with pytest.raises(UnsupportedDataError):
            s.store(T({"a": 1}), "g", {"fine": 1, "gen": (i for i in range(3))})
        assert list(s.entries()) == []


def test_copy_refuses_a_store_with_a_damaged_description(tmp_path: Path) -> None:
    from gitstore import copy_entries

    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"good": 1}), "x", 1)
    _hostile_entry(path, "bad", BOMB)
    with GitDataStore(path) as s, GitDataStore(tmp_path / "d.git") as d:
        with pytest.raises(CorruptEntryError, match="alias"):
            copy_entries(s, d)
        assert list(d.entries()) == []


def test_a_parameterset_that_contains_itself_is_refused_not_recursed() -> None:
    p = ParameterSet({"a": 1})
    p.me = p  # an assignment keeps the object: a loop
    for use in (p.to_yaml, p.as_dict, p.flatten, p.copy):  # flatten: the old dict flat()
        with pytest.raises(ParameterError, match="deep"):
            use()
    with pytest.raises(UnhashableParameterError, match="deep"):
        key_of(T(p))


# --- properties: the dotted-name rule and diff agree with keys -----------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_names = st.sampled_from(["a", "b", "c", "a.b", "b.c", "1"]) | st.integers(0, 2)
_leaves = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=False),
                    st.text(max_size=2), st.tuples(st.integers(0, 1)), st.lists(st.integers(0, 1)))
_trees = st.recursive(_leaves, lambda inner: st.dictionaries(_names, inner, max_size=3),
                      max_leaves=8)
_params = st.dictionaries(_names, _trees, max_size=4)


@given(_params, _params)
def test_keys_differ_exactly_when_diff_shows_something(a: dict[Any, Any],
                                                       b: dict[Any, Any]) -> None:
    try:
        ka, kb = key_of(T(a)), key_of(T(b))
    except ParameterError:
        return  # a clash: ParameterSet refuses it too (checked below)
    pa, pb = ParameterSet(a), ParameterSet(b)
    assert key_of(T(pa)) == ka and key_of(T(pb)) == kb
    assert bool(pa.diff(pb)) == (ka != kb)


@given(_params)
def test_parameterset_and_keys_refuse_the_same_clashes(a: dict[Any, Any]) -> None:
    try:
        key_of(T(a))
    except ParameterError:
        with pytest.raises(ParameterError):
            ParameterSet(a)
    else:
        p = ParameterSet(a)
        assert key_of(T(ParameterSet(p.to_yaml()))) == key_of(T(p)) or \
            any(isinstance(v, tuple) for v in p.flatten().values())  # YAML writes tuples as lists


def test_structured_arrays_with_complex_fields_key_and_store(tmp_path: Path) -> None:
    little = np.zeros(2, dtype=[("a", "u1"), ("c", "<c16")])
    big = np.zeros(2, dtype=np.dtype([("a", "u1"), ("c", ">c16")], align=True))
    for arr in (little, big):
        arr["c"][0] = complex(math.nan, 1.0)
    assert key_of(T({"s": little})) == key_of(T({"s": big}))
    with GitDataStore(tmp_path / "s.git") as s:
        s.store(T({"s": big, "z": np.complex128(1 + 2j)}), "x", 1)
        assert s.retrieve(T({"s": little, "z": np.complex128(1 + 2j)}), "x") == 1
        assert s.verify() == []


def test_a_name_given_twice_in_a_parameter_file_is_refused() -> None:
    with pytest.raises(ParameterFileError, match="line 4.*'c' is given twice"):
        ParameterSet("a: 1\nb:\n  c: 1\n  c: 2\n")
    # YAML merge keys are not duplicates
    p = ParameterSet("base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n")
    assert p.d.as_dict() == {"x": 1, "y": 2}


@pytest.mark.parametrize("text", ["a: " + "1" * 5000 + "\n", "a: 2001-13-45\n"])
def test_yaml_values_the_loader_cannot_build_are_file_errors(text: str) -> None:
    with pytest.raises(ParameterFileError):
        ParameterSet(text)


@pytest.mark.parametrize("params", [{"\ud800": 1}, {"a": ["\udc80"]}, {"a": 10 ** 5000}])
def test_parameterset_that_yaml_cannot_write_is_a_typed_error(tmp_path: Path,
                                                              params: dict[str, Any]) -> None:
    p = ParameterSet(params)
    with pytest.raises(ParameterError):
        p.to_yaml()
    with pytest.raises(ParameterError):
        p.save(tmp_path / "p.yaml")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", [(1, 0), {"b": 2, "a": [1, (2, 3)]}])
def test_non_string_versions_in_every_backend(store: Any, version: Any) -> None:
    reordered = dict(reversed(list(version.items()))) if isinstance(version, dict) else version
    c = T({"dotted.name": 1, "dotted": {"other": 2}}, version=version)
    store.store(c, "x", [1, 2])
    same = T({"dotted": {"name": 1, "other": 2}}, version=reordered)
    assert store.retrieve(same, "x") == [1, 2]
    assert store.exists(same, "x")
    assert [e.version for e in store.entries()] == ["[1, 0]" if isinstance(version, tuple)
                                                    else "{'a': [1, [2, 3]], 'b': 2}"]
    assert store.delete(same)
    assert not store.exists(c)


def test_update_nests_dotted_names_as_assignment_does() -> None:
    p = ParameterSet({"a": {"c": 2}})
    p.update({"a.b": 1}, x={"y": 2})
    assert p.as_dict() == {"a": {"b": 1, "c": 2}, "x": {"y": 2}}
    assert isinstance(p.x, ParameterSet)
