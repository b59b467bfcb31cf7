"""Issue 12: gitstore's ParameterSet as a faithful superset of NeuroTools' (the ``parameters``
package's), and the seed's scenarios with that package's objects on every backend."""

from __future__ import annotations

import dbm.dumb
import functools
import http.server
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import parameters as nt
import pytest
from components import SimpleComponent
from hypothesis import given, settings
from hypothesis import strategies as st

import gitstore.params as params_module
from gitstore import ParameterSet, ShelveDataStore, key_of
from gitstore.errors import (
    ParameterError,
    ParameterFileError,
    ParameterNameError,
    ParameterSyntaxError,
    SweepParameterError,
    UnhashableParameterError,
)
from gitstore.keygenerators import hash_pickle, join_with_underscores
from gitstore.params import points


def _key(parameters: Any, input: Any = None) -> str:
    return key_of(SimpleComponent(parameters, input=input))


# --- 1. non-parameter attributes -----------------------------------------------------------------

def test_label_and_url_are_attributes_not_parameters() -> None:
    ours = ParameterSet({"a": 1}, label="L")
    assert ours == {"a": 1} and ours.label == "L" and "label" not in ours
    ours._url = "file:///somewhere.param"
    assert ours == {"a": 1} and ours._url == "file:///somewhere.param"
    theirs = nt.ParameterSet({"a": 1}, label="L")
    theirs._url = "file:///elsewhere.param"
    assert _key(ours) == _key(theirs) == _key({"a": 1}) == _key(ParameterSet({"a": 1}))
    assert ParameterSet(theirs).label == "L" and ParameterSet(theirs, "M").label == "M"
    assert pickle.loads(pickle.dumps(ours)).label == "L"
    assert ours.copy().label == "L" and ours.tree_copy().label == "L"
    # a parameter may still be called "label": the attribute and the parameter are apart
    both = ParameterSet({"label": "run"}, label="L")
    assert both["label"] == "run" and both.label == "L"
    assert _key(both) == _key({"label": "run"})


def test_nested_labels_are_the_names_as_in_the_parameters_package() -> None:
    p = ParameterSet({"mydict": {"c": 3}, "ps": ParameterSet({"a": 1}, label="PS")})
    assert p.mydict.label == "mydict" and p.ps.label == "PS"


# --- 2. URLs ------------------------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_load_from_file_and_http_urls(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, base = http_root
    (root / "p.yaml").write_text("a: 1\nb:\n  c: [1, 2]\n")
    (root / "p.param").write_text(nt.ParameterSet({"n": None, "t": (1, 2)}).pretty())
    from_http = ParameterSet(f"{base}/p.yaml")
    assert from_http == {"a": 1, "b": {"c": [1, 2]}} and from_http._url == f"{base}/p.yaml"
    assert ParameterSet(f"{base}/p.param") == {"n": None, "t": (1, 2)}
    assert ParameterSet((root / "p.yaml").as_uri()) == from_http
    assert ParameterSet(f"file://{root}/p.param")["t"] == (1, 2)
    # the parameters package reads the same URLs to the same key
    assert _key(nt.ParameterSet(f"{base}/p.param")) == _key(ParameterSet(f"{base}/p.param"))


def test_url_failures_are_typed_and_name_the_url(http_root: tuple[Path, str],
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root, base = http_root
    with pytest.raises(ParameterFileError, match=r"p404\.yaml.*HTTP 404"):
        ParameterSet(f"{base}/p404.yaml")
    with pytest.raises(ParameterFileError, match="missing.param"):
        ParameterSet(f"file://{tmp_path}/missing.param")
    with pytest.raises(ParameterFileError, match="ftp://"):
        ParameterSet("ftp://127.0.0.1/p.yaml")
    with pytest.raises(ParameterFileError) as info:
        ParameterSet(f"http://user:secret@127.0.0.1:{base.rsplit(':', 1)[1]}/nope.yaml")
    assert "secret" not in str(info.value) and "nope.yaml" in str(info.value)
    (root / "big.yaml").write_text("a: " + "1" * 200 + "\n")
    monkeypatch.setattr(params_module, "MAX_URL_BYTES", 100)
    with pytest.raises(ParameterFileError, match="big.yaml.*over 100 bytes"):
        ParameterSet(f"{base}/big.yaml")


def test_a_server_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # connections complete in the kernel; nothing is ever sent back
    try:
        monkeypatch.setattr(params_module, "URL_TIMEOUT", 0.5)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/p.yaml"
        with pytest.raises(ParameterFileError, match=r"127\.0\.0\.1.*p\.yaml"):
            ParameterSet(url)
    finally:
        silent.close()


def test_save_to_a_file_url_is_read_by_both_packages(tmp_path: Path) -> None:
    p = ParameterSet({"n": None, "t": (1, 2), "s": 'C:\\temp "x"', "d": {"f": -1.5e-300}},
                     label="L")
    url = f"file://{tmp_path}/saved.param"
    p.save(url)
    assert p._url == url
    back = ParameterSet(url)
    assert back == p and _key(back) == _key(p) and back._url == url
    assert _key(nt.ParameterSet(url)) == _key(p)  # their eval reads our file to the same values
    with pytest.raises(ParameterFileError, match="local files"):
        p.save("http://127.0.0.1:9/p.param")


def test_save_refuses_what_it_cannot_write_exactly(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(ParameterError, match="exactly"):
        ParameterSet({"w": np.arange(3)}).save(tmp_path / "w.param")
    assert not list(tmp_path.iterdir())


# --- 3. methods ---------------------------------------------------------------------------------

def test_flat_yields_pairs_and_flatten_is_the_dict() -> None:
    p = ParameterSet({"a": {"b": 1, "c": {"d": 2}}, "e": 3})
    assert [name for name, _ in p.flat()] == ["a.b", "a.c.d", "e"]
    assert p.flatten() == {"a.b": 1, "a.c.d": 2, "e": 3} == \
        nt.ParameterSet(p.as_dict()).flatten()
    assert dict(p.flat()) == dict(nt.ParameterSet(p.as_dict()).flat())


def test_pretty_is_the_parameters_package_text() -> None:
    data = {"hello": "world", "n": None, "t": (1, 2), "x": -0.5, "d": {"e": [1, "a"]}}
    assert ParameterSet(data).pretty() == nt.ParameterSet(data).pretty()
    assert ParameterSet(data).pretty(indent="    ") == \
        nt.ParameterSet(data).pretty(indent="    ")
    assert str(ParameterSet(data)) == str(nt.ParameterSet(data))


def test_tree_copy_update_names_parameters_as_there() -> None:
    leaf = [1, 2]
    p = ParameterSet({"a": {"l": leaf}, "b": 1})
    q = p.tree_copy()
    assert q == p and q.a is not p.a and q.a.l is leaf
    q.update({"a.l": 5, "c": {"d": 1}}, b=2)
    assert q == {"a": {"l": 5}, "b": 2, "c": {"d": 1}} and isinstance(q.c, ParameterSet)
    assert list(p.names()) == ["a", "b"] and dict(p.parameters())["b"] == 1
    p.replace_values(**{"a.l": 7})
    assert p.a.l == 7
    with pytest.raises(ParameterError):
        ParameterSet.check_validity("names")


# --- 4. the parameters package's file format ----------------------------------------------------

def test_the_issue_example_is_read_exactly(tmp_path: Path) -> None:
    theirs = nt.ParameterSet({"n": None, "p": (1, 2)})
    theirs.save(str(tmp_path / "p.param"))
    ours = ParameterSet(str(tmp_path / "p.param"))
    assert ours == {"n": None, "p": (1, 2)}
    assert _key(ours) == _key({"n": None, "p": (1, 2)}) == _key(theirs)
    assert ParameterSet(theirs.pretty()) == ours


def test_literal_text_that_yaml_would_read_otherwise_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(nt.ParameterSet({"n": None, "p": (1, 2)}).pretty())
    with pytest.raises(ParameterFileError, match="ambiguous"):
        ParameterSet(str(tmp_path / "p.yaml"))
    (tmp_path / "ok.yaml").write_text('{"a": 1, "b": "x"}')  # both readings agree
    assert ParameterSet(str(tmp_path / "ok.yaml")) == {"a": 1, "b": "x"}


def test_ambiguous_strings_and_code_are_refused(tmp_path: Path) -> None:
    # the parameters package writes 'C:\temp' raw: "\t" may be a tab or a backslash and a t
    with pytest.raises(ParameterFileError, match="ambiguous string"):
        ParameterSet(nt.ParameterSet({"path": "C:\\temp"}).pretty())
    with pytest.raises(ParameterFileError, match="ambiguous string"):
        ParameterSet('{"a": "x" "y"}')
    marker = tmp_path / "pwned"
    for text in (f"{{'a': __import__('os').system('touch {marker}')}}",
                 "{'a': (1).__class__}", "{'a': [x for x in (1, 2)]}", "{'a': 1 + 1}",
                 "{'a': ParameterRange([1, 2])}", "{'a': ref('b'), 'b': 1}", "{**{'a': 1}}",
                 "{'a': 1, 'a': 2}"):
        with pytest.raises(ParameterFileError):
            ParameterSet(text)
    assert not marker.exists()
    with pytest.raises(ParameterSyntaxError):
        ParameterSet("{'a': [" * 400 + "]" * 400 + "}")
    with pytest.raises(ParameterNameError, match="'unknown'"):
        ParameterSet("{'a': unknown}")


def test_literal_format_extras_as_there() -> None:
    assert ParameterSet("{'a': true, 'b': false, 'c': pi, 'd': (1+2j), 'e': -3, 'f': {1, 2}}"
                        ) == {"a": True, "b": False, "c": 3.141592653589793, "d": 1 + 2j,
                              "e": -3, "f": {1, 2}}
    assert ParameterSet("{'a': rate}", update_namespace={"rate": 5.0}) == {"a": 5.0}


_leaf = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
         | st.text(max_size=8) | st.tuples(st.integers(), st.text(max_size=4)))
_tree = st.recursive(_leaf | st.lists(_leaf, max_size=3),
                     lambda inner: st.dictionaries(st.text("abcxyz_", min_size=1, max_size=4),
                                                   inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text("abcdef", min_size=1, max_size=4), _tree, max_size=5))
def test_the_parameters_package_text_is_read_exactly_or_refused(data: dict[str, Any]) -> None:
    text = nt.ParameterSet(data).pretty()
    try:
        ours = ParameterSet(text)
    except ParameterFileError:
        return  # refused (a string it wrote unescaped): never a wrong value
    try:
        theirs = nt.ParameterSet.read_from_str(text)  # eval
    except NameError:  # inf: gitstore reads what it means
        theirs = data
    assert _key(ours) == _key(theirs)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=4), _tree, max_size=5))
def test_our_saved_text_round_trips(tmp_path_factory: Any, data: dict[str, Any]) -> None:
    p = ParameterSet(data)
    target = tmp_path_factory.mktemp("s") / "p.param"
    p.save(target)
    assert _key(ParameterSet(target)) == _key(p)


# --- 5. sweeps ----------------------------------------------------------------------------------

def _space() -> Any:
    space = nt.ParameterSpace({"tau": 10.0, "syn": {"w": 0.5}})
    space.x = nt.ParameterRange([1, 2])
    space.syn.w = nt.ParameterRange([0.1, 0.2])
    return space


def test_a_parameter_range_as_one_value_is_a_typed_error() -> None:
    with pytest.raises(SweepParameterError, match=r"'syn\.w'.*points") as info:
        _key({"syn": {"w": nt.ParameterRange([0.1, 0.2])}})
    assert isinstance(info.value, UnhashableParameterError) and info.value.path == "syn.w"
    with pytest.raises(SweepParameterError):
        _key(_space())
    with pytest.raises(SweepParameterError):
        _key(ParameterSet({"g": nt.GammaDist()}))


def test_points_iterate_every_point_of_a_space(store: Any) -> None:
    space = _space()
    got = list(points(space))
    assert sorted((p.x, p.syn.w) for p in got) == [(1, 0.1), (1, 0.2), (2, 0.1), (2, 0.2)]
    assert all(isinstance(p, ParameterSet) and p.tau == 10.0 for p in got)
    assert sorted(_key(p) for p in got) == sorted(
        _key({"tau": 10.0, "syn": {"w": w}, "x": x}) for x in (1, 2) for w in (0.1, 0.2))
    assert [(p.x, p.syn.w) for p in points(space)] == [(p.x, p.syn.w) for p in got]
    for p in got:
        store.store(SimpleComponent(p), "result", p.x * p.syn.w)
    assert store.retrieve(SimpleComponent({"tau": 10.0, "syn": {"w": 0.2}, "x": 2}),
                          "result") == 0.4
    assert len(list(store.entries())) == 4
    assert list(points(ParameterSet({"a": 1}))) == [{"a": 1}]
    with pytest.raises(ParameterError, match="realize_dists"):
        list(points(nt.ParameterSpace({"g": nt.GammaDist()})))


# --- 6. __main__ type names ---------------------------------------------------------------------

_SCRIPT = """\
from gitstore import key_of
from gitstore.component import full_type

class Stimulus:
    def __init__(self):
        self.parameters = {"rate": 5.0}
        self.input = None
        self.version = "1"

class Named(Stimulus):
    full_type = "my.Stimulus"

if __name__ == "__main__":
    print(full_type(Stimulus()), key_of(Stimulus()), full_type(Named()))
"""

_IMPORTER = """\
import sys
from gitstore import key_of
from gitstore.component import full_type
import importlib
m = importlib.import_module(sys.argv[1])
print(full_type(m.Stimulus()), key_of(m.Stimulus()), full_type(m.Named()))
"""


def _run(*args: str, cwd: Path) -> list[str]:
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.split()


def test_a_script_class_is_named_by_its_module(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(_SCRIPT)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "tool.py").write_text(_SCRIPT)
    (tmp_path / "importer.py").write_text(_IMPORTER)
    as_script = _run("pipeline.py", cwd=tmp_path)
    assert as_script[0] == "pipeline.Stimulus" and as_script[2] == "my.Stimulus"
    assert _run("importer.py", "pipeline", cwd=tmp_path) == as_script
    in_package = _run("pkg/tool.py", cwd=tmp_path)
    assert in_package[0] == "pkg.tool.Stimulus"
    assert _run("-m", "pkg.tool", cwd=tmp_path) == in_package
    assert _run("importer.py", "pkg.tool", cwd=tmp_path) == in_package


# --- 7. ShelveDataStore in a shared folder ------------------------------------------------------

@pytest.mark.parametrize("key_generator", [join_with_underscores, hash_pickle])
def test_shelve_in_a_shared_folder_ignores_foreign_files(tmp_path: Path,
                                                         key_generator: Any) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    (shared / "notes.dir").write_text("shopping list\n")
    (shared / "folder.dir").mkdir()
    (shared / "garbage.dir").write_text("(((\n")
    (shared / "garbage.dat").write_text("")
    with dbm.dumb.open(str(shared / "othertool"), "c") as db:
        db[b"x"] = b"1"
    before = sorted((p.name, p.stat().st_size) for p in shared.iterdir())
    datastore = ShelveDataStore(root_dir=str(shared), key_generator=key_generator)
    assert list(datastore.entries()) == []
    c = SimpleComponent(nt.ParameterSet({"a": 1}))
    datastore.store(c, "data", [1, 2])
    entries = list(datastore.entries())
    assert [e.key for e in entries] == [key_of(c)]
    assert datastore.retrieve(SimpleComponent({"a": 1}), "data") == [1, 2]
    assert before == sorted((p.name, p.stat().st_size) for p in shared.iterdir()
                            if p.name in {n for n, _ in before})


# --- 8. the seed's scenarios with the parameters package's ParameterSet, on every backend ------

def test_seed_scenarios_with_parameters_package_sets(store: Any) -> None:
    theirs = nt.ParameterSet({"a": 1, "b": {"c": 2.5, "d": None}}, label="run")
    ours = ParameterSet({"a": 1, "b": {"c": 2.5, "d": None}})
    plain = {"a": 1, "b": {"c": 2.5, "d": None}}
    c1 = SimpleComponent(theirs)
    assert key_of(c1) == _key(ours) == _key(plain)
    c1.data = range(1000)
    store.store(c1, "data", c1.data)
    assert store.retrieve(SimpleComponent(ours), "data") == range(1000)
    assert store.retrieve(SimpleComponent(plain), "data") == range(1000)
    assert store.retrieve(SimpleComponent(nt.ParameterSet({"a": 1, "b": {"c": 2.6}})),
                          "data") is None
    # a chain: the input enters the key
    c4 = SimpleComponent(nt.ParameterSet({"c": 3}), input=c1)
    store.store(c4, "result", [x * 2 for x in range(5)])
    assert store.retrieve(SimpleComponent({"c": 3}, input=SimpleComponent(ours)),
                          "result") == [0, 2, 4, 6, 8]
    assert store.retrieve(SimpleComponent({"c": 3}, input=SimpleComponent({"a": 2})),
                          "result") is None
    # a set read from the parameters package's own text
    c5 = SimpleComponent(ParameterSet(theirs.pretty()))
    assert key_of(c5) == key_of(c1)
    assert {e.key for e in store.entries()} == {key_of(c1), key_of(c4)}
    store.delete(c1, "data")
    assert store.retrieve(c1, "data") is None


def test_url_values_nest_and_a_yaml_file_is_never_fetched_through(tmp_path: Path) -> None:
    (tmp_path / "inner.param").write_text('{\n  "tau": 2.0,\n}')
    outer = tmp_path / "outer.param"
    outer.write_text(f'{{\n  "cell": url("file://{tmp_path}/inner.param"),\n}}')
    p = ParameterSet(str(outer))
    assert p == {"cell": {"tau": 2.0}} and p.cell._url == f"file://{tmp_path}/inner.param"
    assert p.pretty() == f'{{\n  "cell": url("file://{tmp_path}/inner.param"),\n}}'
    (tmp_path / "loop.param").write_text(f'{{"me": url("file://{tmp_path}/loop.param")}}')
    with pytest.raises(ParameterFileError, match="nest"):
        ParameterSet(str(tmp_path / "loop.param"))
    (tmp_path / "u.yaml").write_text(f'{{"cell": url("file://{tmp_path}/inner.param")}}')
    with pytest.raises(ParameterFileError, match="ambiguous"):
        ParameterSet(str(tmp_path / "u.yaml"))
