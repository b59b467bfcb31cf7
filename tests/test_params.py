from __future__ import annotations

import copy
import pickle
from pathlib import Path

import parameters as neurotools_parameters
import pytest

from gitstore import ParameterSet
from gitstore.errors import ParameterError, ParameterFileError
from gitstore.params import MISSING

YAML = """
network:
  exc:
    tau_m: 20.0
    n: 800
  inh:
    n: 200
seed: 42
label: run
"""


def test_three_ways_of_access() -> None:
    p = ParameterSet(YAML)
    assert p.network.exc.tau_m == 20.0
    assert p["network"]["exc"]["tau_m"] == 20.0
    assert p["network.exc.tau_m"] == 20.0
    assert isinstance(p.network, ParameterSet)
    assert "network.inh.n" in p and "network.inh.x" not in p
    with pytest.raises(KeyError):
        p["network.nothing"]
    with pytest.raises(AttributeError):
        p.nothing


def test_set_by_path_and_attribute() -> None:
    p = ParameterSet({})
    p["a.b.c"] = 1
    p.d = {"e": 2}
    assert p == {"a": {"b": {"c": 1}}, "d": {"e": 2}}
    assert isinstance(p.d, ParameterSet)
    with pytest.raises(ParameterError):
        p["a.b.c.d"] = 1  # c is a value


def test_from_file_and_save(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text(YAML)
    p = ParameterSet(str(f))
    assert p == ParameterSet(f) == ParameterSet(YAML)
    out = tmp_path / "saved.yaml"
    p.save(out)
    assert ParameterSet(out) == p
    assert ParameterSet(p.to_yaml()) == p


def test_from_parameters_package() -> None:
    theirs = neurotools_parameters.ParameterSet({"a": {"b": 1}, "c": 2.0})
    ours = ParameterSet(theirs)
    assert ours.a.b == 1 and ours == {"a": {"b": 1}, "c": 2.0}


def test_flat_diff_pretty() -> None:
    p = ParameterSet(YAML)
    assert p.flatten()["network.exc.tau_m"] == 20.0 and len(p.flatten()) == 5
    q = p.copy()
    q["network.exc.tau_m"] = 25.0
    q["extra"] = 1
    del q["label"]
    assert p.diff(q) == {"network.exc.tau_m": (20.0, 25.0), "extra": (MISSING, 1),
                         "label": ("run", MISSING)}
    assert p.diff(p.copy()) == {}
    assert '"tau_m": 20.0,' in p.pretty()  # the parameters package's format


def test_copy_is_deep_and_equality() -> None:
    p = ParameterSet(YAML)
    for q in (p.copy(), copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert q == p and isinstance(q, ParameterSet)
        q["network.exc.n"] = 1
        assert p["network.exc.n"] == 800


def test_tuples_survive_yaml() -> None:
    p = ParameterSet({"a": (1, 2)})
    assert ParameterSet(p.to_yaml()).a == [1, 2]  # YAML has no tuples: documented


@pytest.mark.parametrize("text,line", [
    ("a: 1\nb: [1, 2\nc: 3\n", 3),
    ("a: 1\n  b: 2\n", 2),
    ("a: {\n", 2),
])
def test_malformed_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ParameterFileError) as info:
        ParameterSet(f)
    assert info.value.source == str(f) and info.value.line == line
    assert f"bad.yaml, line {line}" in str(info.value)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    with pytest.raises(ParameterFileError):
        ParameterSet("a: !!python/object/apply:os.system ['echo pwned']")


def test_not_a_mapping() -> None:
    with pytest.raises(ParameterFileError, match="mapping"):
        ParameterSet("- 1\n- 2\n")
    with pytest.raises(ParameterError):
        ParameterSet(42)  # type: ignore[arg-type]
    # names that are not strings are kept as they are (issue 11: they key and list like any)
    assert ParameterSet({1: 2, "w": {0: 0.5}}).flatten() == {"[1]": 2, "w[0]": 0.5}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParameterFileError, match="nothere.yaml"):
        ParameterSet(str(tmp_path / "nothere.yaml"))
