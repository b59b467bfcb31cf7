"""Queries by parameter (issue 16 item 2): ``gitstore ls --where``, typed as keys are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from gitstore import GitDataStore
from gitstore.errors import InvalidArgumentError, QueryError
from gitstore.query import flatten, parse_where
from gitstore_cli.main import app

runner = CliRunner()

FLAT = flatten({"tau": 12.0, "n": 3, "big": 20, "flag": True, "name": "a'b",
                "model": {"kind": "lif", "tau_m": 20.0, "on": False}, "none": None,
                "xs": [1, 2], "nan": float("nan")})


@pytest.mark.parametrize("query, expected", [
    ("tau >= 10 and n == 3", True),
    ("tau >= 10 and n == 4", False),
    ("TAU >= 10", False),  # names are case-sensitive, keywords are not
    ("tau >= 10 AND n == 3", True),
    ("big == 20", True),
    ("big == 20.0", False),  # 20 and 20.0 have different keys
    ("model.tau_m == 20", False),
    ("model.tau_m == 20.0", True),
    ("flag == true", True),
    ("flag == 1", False),  # true is not 1
    ("n == true", False),
    ("model.on == false", True),
    ("model.on == 0", False),
    ("big > 19.5 and big < 20.5", True),  # ordering compares numbers by value
    ("flag > 0", False),  # booleans are not numbers
    ("model.kind == 'lif'", True),
    ('model.kind == "lif"', True),
    ("model.kind != 'lif'", False),
    ("model.kind in ['a', 'lif']", True),
    ("model.kind not in ['a', 'lif']", False),
    ("n in [3.0, 4.0]", False),
    ("n in [1, 3]", True),
    ("name == 'a\\'b'", True),
    ("model.kind < 'm'", True),
    ("model.kind < 5", False),  # a string and a number never compare
    ("missing == 1", False),
    ("missing != 1", False),  # any comparison on what an entry lacks is false
    ("not missing == 1", True),
    ("exists missing", False),
    ("exists model.kind", True),
    ("none == null", True),
    ("xs == [1, 2]", True),
    ("xs == [1.0, 2]", False),
    ("nan == nan", True),  # one NaN, as its key
    ("(n == 4 or tau == 12.0) and not (flag == false)", True),
    ("not not n == 3", True),
    ("tau>=1e1", True),
    ("big == 2_0", True),
    ("tau >= -inf", True),
])
def test_typed_comparisons(query: str, expected: bool) -> None:
    assert parse_where(query)(FLAT) is expected


@pytest.mark.parametrize("query, position", [
    ("tau >=", 6),
    ("tau = 3", 4),
    ("tau >= 3 and", 12),
    ("(n == 3", 7),
    ("n == lif", 5),
    ("n @ 3", 2),
    ("n == 3 n == 4", 7),
    ("n in 3", 2),
    ("", 0),
    ("n == 'open", 5),
    ("__import__('os').system('true') == 1", 16),
])
def test_syntax_errors_name_the_position(query: str, position: int) -> None:
    with pytest.raises(QueryError) as info:
        parse_where(query)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)
    assert isinstance(info.value, InvalidArgumentError)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    for text in ["(" * 5000 + "n == 1" + ")" * 5000, "not " * 5000 + "n == 1",
                 "n in " + "[" * 3000, "n == 1" + " or n == 1" * 900]:
        try:
            parse_where(text)(FLAT)
        except QueryError:
            pass


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_query_error(text: str) -> None:
    try:
        predicate = parse_where(text)
    except QueryError as exc:
        assert 0 <= exc.position <= len(text)
        return
    assert predicate(FLAT) in (True, False)


def test_flatten_names_as_parameter_set_does() -> None:
    from gitstore import ParameterSet

    d: dict[str, Any] = {"a": 1, "m": {"x": {"y": 2}, "z": 3}, "w": {0: 0.5}}
    assert flatten(d) == ParameterSet(d).flatten()
    assert list(flatten(d)) == list(ParameterSet(d).flatten())


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s, s.batch():
        for tau in (5, 10, 20):
            for n in (1, 3):
                s.store(SimpleComponent({"tau": tau, "n": n, "net": {"kind": "lif"}},
                                        version="v1"), "r", tau * n)
        s.store(SimpleComponent({"tau": 20.0, "n": 3}, version="v1"), "r", 0)
        s.store(SimpleComponent({"a": True}, version="v1"), "r", 0)
        s.store(SimpleComponent({"a": 1}, version="v1"), "r", 1)
    return path


def _ls(path: Path, *args: str) -> Any:
    result = runner.invoke(app, ["--store", str(path), "ls", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _params(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with GitDataStore(path) as s:
        return sorted((s.find(r["key"]).component["parameters"] for r in rows), key=repr)


def test_ls_where(sweep: Path) -> None:
    rows = _ls(sweep, "--where", "tau >= 10 and n == 3")
    assert _params(sweep, rows) == sorted([{"tau": 10, "n": 3, "net": {"kind": "lif"}},
                                           {"tau": 20, "n": 3, "net": {"kind": "lif"}},
                                           {"tau": 20.0, "n": 3}], key=repr)
    assert len(_ls(sweep, "--where", "tau == 20")) == 2  # not the 20.0
    assert len(_ls(sweep, "--where", "tau == 20.0")) == 1
    assert len(_ls(sweep, "--where", "net.kind == 'lif' and tau < 10")) == 2
    assert len(_ls(sweep, "--where", "a == true")) == 1
    assert len(_ls(sweep, "--where", "a == 1")) == 1


def test_ls_param_is_typed(sweep: Path) -> None:
    # --param a=1 used to match a: true as well (1 == True in Python)
    assert _params(sweep, _ls(sweep, "--param", "a=1")) == [{"a": 1}]
    assert _params(sweep, _ls(sweep, "--param", "a=true")) == [{"a": True}]
    assert len(_ls(sweep, "--param", "tau=20")) == 2


def test_ls_where_syntax_error_is_one_line(sweep: Path) -> None:
    result = runner.invoke(app, ["--store", str(sweep), "ls", "--where", "tau >= and n"])
    assert result.exit_code == 1
    assert "position 7" in result.stderr and "Traceback" not in result.output
