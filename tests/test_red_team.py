"""Issue 11 attacked again after the fixes: variants the first tests did not try.

Each test here failed on the merged fixes and passes now. Real processes, stores, file systems;
no mocks.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import SimpleComponent, Typed
from typer.testing import CliRunner

from gitstore import DjangoORMDataStore, GitDataStore, ShelveDataStore, key_of
from gitstore.errors import GitStoreError, StoreLocationError
from gitstore.keys import key_hex
from gitstore_cli.main import app

runner = CliRunner()


def T(params: Any, version: Any = "v1", type_name: str = "red.Component") -> Typed:
    return Typed(type_name, params, None, version)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*")) if not p.name.endswith(".lock")
            and not p.name.startswith("listing.sqlite")}  # the derived listing index


def console_script() -> str:
    found = shutil.which("gitstore", path=os.path.dirname(sys.executable))
    assert found
    return found


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([console_script(), *args], capture_output=True, cwd=cwd, timeout=120)


def one_line_failure(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 1, result
    err = result.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("gitstore: error:"), err
    return err


# --- item 9: key the values, not the padding (long doubles, bool bytes) ------------------------

def test_long_double_and_bool_arrays_key_their_values_not_their_spare_bytes() -> None:
    # x86's 80-bit long double sits in 16 bytes: 6 of them are whatever memory held
    garbage = np.frombuffer(bytes(range(256)) * 2, np.longdouble).copy()
    garbage[:] = 1.5
    clean = np.full(len(garbage), 1.5, np.longdouble)
    assert key_of(T({"a": garbage})) == key_of(T({"a": clean}))
    cgarbage = np.frombuffer(bytes(range(256)) * 2, np.clongdouble).copy()
    cgarbage[:] = complex(1, 2)
    assert key_of(T({"a": cgarbage})) == key_of(T({"a": np.full(len(cgarbage), 1 + 2j,
                                                                   np.clongdouble)}))
    structured = np.frombuffer(bytes(range(256)), [("x", np.longdouble), ("c", "<i4", (4,))])
    structured = structured.copy()
    structured["x"] = 2.5
    structured["c"] = 0
    zeroed = np.zeros(len(structured), structured.dtype)
    zeroed["x"] = 2.5
    assert key_of(T({"s": structured})) == key_of(T({"s": zeroed}))
    # a bool's byte can be any non-zero value (a view of bytes); the value is True all the same
    viewed = np.frombuffer(b"\x02\x01\x00\xff", dtype=bool)
    plain = np.array([True, True, False, True])
    assert (viewed == plain).all()
    assert key_of(T({"b": viewed})) == key_of(T({"b": plain}))
    sviewed = np.frombuffer(b"\x05\x00\x00\x00\x00", [("b", "?"), ("i", "<i4")])
    assert key_of(T({"b": sviewed})) == key_of(T({"b": np.array([(True, 0)], sviewed.dtype)}))
    # still different when the values differ
    assert key_of(T({"a": clean})) != key_of(T({"a": np.full(len(clean), 2.5, np.longdouble)}))
    assert key_of(T({"b": plain})) != key_of(T({"b": ~plain}))


# --- item 4: Django gc deletes only the data files a store wrote --------------------------------

def test_django_gc_never_deletes_what_gitstore_did_not_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # a data folder shared with other files: two-letter folders (js, db...), a sub-folder
    (data / "js").mkdir()
    (data / "js" / "app.js").write_text("precious")
    (data / "ab").mkdir()
    (data / "ab" / "notes.txt").write_text("precious")
    (data / "ab" / "sub").mkdir()
    (data / "ab" / "sub" / "deeper.txt").write_text("precious")
    # a digest-named file in the wrong shard, and a shard that is a link out of the folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fake = "cd" + "0" * 62 + ".json"
    (elsewhere / fake).write_text("precious")
    (data / "cd").symlink_to(elsewhere)
    (data / "ab" / fake).write_text("precious")
    store = DjangoORMDataStore(None, data)
    c = SimpleComponent({"n": 1})
    store.store(c, "x", [1, 2])
    kept = set(data.glob("[0-9a-f][0-9a-f]/*"))
    store.store(SimpleComponent({"n": 2}), "x", "orphan")
    store.delete(SimpleComponent({"n": 2}))
    (orphan,) = set(data.glob("[0-9a-f][0-9a-f]/*")) - kept
    assert orphan.name.startswith(hashlib.sha256(orphan.read_bytes()).hexdigest())
    before = {p for p in snapshot(tmp_path) if "precious" in str(snapshot(tmp_path)[p])}
    assert store.gc() == 1  # the orphan, and nothing else
    assert not orphan.exists()
    after = snapshot(tmp_path)
    assert all(after.get(p) == b"precious" for p in before), sorted(before - set(after))
    assert len(before) == 5
    assert store.retrieve(c, "x") == [1, 2]
    store.close()


# --- items 14, 18: checkout never writes into the store itself ---------------------------------

@pytest.mark.parametrize("where", ["store", "refs", "versions", "link", "typed-as-store"])
def test_checkout_never_writes_into_the_store(tmp_path: Path, where: str) -> None:
    path = tmp_path / "s.git"
    type_name = "s.git" if where == "typed-as-store" else "red.Component"
    with GitDataStore(path) as s:
        s.store(T({"n": 1}, type_name=type_name), "x", [1])
        s.store(T({"n": 2}, type_name=type_name), "x", [2])
    (tmp_path / "link").symlink_to(path)
    dest = {"store": path, "refs": path / "refs", "versions": path / "refs/gitstore/versions",
            "link": tmp_path / "link" / "out", "typed-as-store": tmp_path}[where]
    before = snapshot(path)
    with GitDataStore(path) as s:
        with pytest.raises(StoreLocationError, match="inside the store"):
            s.checkout("v1", dest)
        assert snapshot(path) == before
        assert len(list(s.entries())) == 2
        assert s.verify() == []
    result = run_cli("--store", str(path), "checkout", "v1", str(dest))
    assert "inside the store" in one_line_failure(result)
    assert snapshot(path) == before
    listed = run_cli("--store", str(path), "ls")
    assert listed.returncode == 0, listed.stderr


def test_checkout_beside_the_store_still_works(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"n": 1}), "x", [1])
        s.checkout("v1", tmp_path)  # the store's parent: the usual place
    assert (tmp_path / "red.Component" / key_hex(key_of(T({"n": 1})))[:12] / "x.json").exists()


# --- item 21: get -o - writes to stdout; never into the store ----------------------------------

def test_get_o_dash_writes_the_bytes_to_stdout(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"n": 1}), "x", np.arange(4, dtype="<i8"))
        raw = s.read(key_of(T({"n": 1})), "x", raw=True)
    result = run_cli("--store", str(path), "get", key_hex(key_of(T({"n": 1})))[:12], "x",
                     "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == raw and raw.startswith(b"\x93NUMPY")
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("inside", ["refs/gitstore/versions/v1", "HEAD", "config", "new"])
def test_get_o_into_the_store_is_refused(tmp_path: Path, inside: str) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"n": 1}), "x", [1])
    before = snapshot(path)
    result = run_cli("--store", str(path), "get", key_hex(key_of(T({"n": 1})))[:12], "x",
                     "-o", str(path / inside))
    assert "inside the store" in one_line_failure(result)
    assert snapshot(path) == before


# --- item 5: prune bounds in days that overflow seconds ----------------------------------------

@pytest.mark.parametrize("days", ["1e309", "1e304"])
def test_prune_days_that_overflow_are_refused_in_days(tmp_path: Path, days: str) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"n": 1}), "x", [1])
    before = snapshot(path)
    message = one_line_failure(run_cli("--store", str(path), "prune", "--older-than", days))
    assert "--older-than takes a finite number of days" in message
    assert snapshot(path) == before


# --- item 20: a pickled store whose folder is gone -----------------------------------------------

@pytest.mark.parametrize("kind", ["git", "django", "shelve"])
def test_unpickling_a_store_whose_folder_is_gone_is_a_typed_error(tmp_path: Path, kind: str
                                                                  ) -> None:
    folder = tmp_path / "store"
    store: Any = {"git": lambda: GitDataStore(folder),
                  "django": lambda: DjangoORMDataStore(None, folder),
                  "shelve": lambda: ShelveDataStore(folder)}[kind]()
    store.store(SimpleComponent({"n": 1}), "x", 1)
    data = pickle.dumps(store)
    store.close()
    shutil.rmtree(folder)
    with pytest.raises(StoreLocationError):
        again = pickle.loads(data)  # git, django: refused here; shelve: at its first use
        try:
            again.retrieve(SimpleComponent({"n": 1}), "x")
        finally:
            again.close()
    assert not folder.exists()  # never a new, empty store in its place


def test_a_shelf_whose_folder_was_deleted_gives_typed_errors(tmp_path: Path) -> None:
    with ShelveDataStore(tmp_path / "shelf") as s:
        s.store(SimpleComponent({"n": 1}), "x", 1)
        shutil.rmtree(tmp_path / "shelf")
        for use in (lambda: s.store(SimpleComponent({"n": 2}), "x", 2),
                    lambda: s.retrieve(SimpleComponent({"n": 1}), "x"),
                    lambda: s.delete(SimpleComponent({"n": 1}))):
            with pytest.raises(GitStoreError):
                use()


# --- item 10: every name component.yaml holds reads back (YAML 1.1 line breaks) -----------------

@pytest.mark.parametrize("kind", ["git", "shelve", "django"])
@pytest.mark.parametrize("name", ["x\u2028y", "\u2029", "a: b #c\u2028? d"])
def test_names_with_unicode_line_separators_list_and_verify(tmp_path: Path, kind: str,
                                                           name: str) -> None:
    store: Any = {"git": lambda: GitDataStore(tmp_path / "s.git"),
                  "shelve": lambda: ShelveDataStore(tmp_path / "shelf"),
                  "django": lambda: DjangoORMDataStore(None, tmp_path / "data")}[kind]()
    params = {name: 1, "n": {name: [name]}, "v": name}
    with store:
        store.store(T(params), "x", 1)
        store.store(T({"other": 1}), "x", 2)
        entries = {e.key: e for e in store.entries()}
        assert len(entries) == 2
        mine = entries[key_of(T(params))]
        assert getattr(mine, "problem", None) is None
        assert mine.component["parameters"] == params
        if kind == "git":
            assert store.verify() == []
    if kind == "git":
        listed = run_cli("--store", str(tmp_path / "s.git"), "ls")
        assert listed.returncode == 0 and b"(unreadable" not in listed.stdout


HOSTILE_DESCRIPTIONS = [
    b"key: !!python/object/apply:os.system ['touch PWNED']\ntype: t\nversion: v\n",
    b"key: &a [*a]\n",
    b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    b"- not a mapping\n",
    b"parameters: [1, 2]\nkey: x\n",
    b"\xff\xfe",
    b"key: [unclosed\n",
]


@pytest.mark.parametrize("content", HOSTILE_DESCRIPTIONS)
@pytest.mark.parametrize("kind", ["shelve", "django"])
def test_one_hostile_description_never_breaks_a_shelf_or_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, content: bytes) -> None:
    import dbm.dumb
    import sqlite3

    monkeypatch.chdir(tmp_path)
    good, bad = T({"good": 1}), T({"bad": 1})
    store: Any = (ShelveDataStore(tmp_path / "shelf") if kind == "shelve"
                  else DjangoORMDataStore(None, tmp_path / "data"))
    with store:
        store.store(good, "x", 1)
        store.store(bad, "x", 2)
        if kind == "shelve":
            with dbm.dumb.open(str(tmp_path / "shelf" / store.key_of(bad)), "w") as db:
                db[b"\x00component"] = content
        else:
            with sqlite3.connect(tmp_path / "data" / "index.db") as conn:
                conn.execute("UPDATE gitstore_componentstate SET description = ? WHERE key = ?",
                             (content.decode("utf-8", "replace"), key_of(bad)))
        entries = list(store.entries())
        assert len(entries) == 2
        (ok,) = [e for e in entries if e.problem is None]
        (damaged,) = [e for e in entries if e.problem is not None]
        assert ok.key == key_of(good) and ok.component["parameters"] == {"good": 1}
        assert damaged.attributes == ("x",)
        assert store.retrieve(good, "x") == 1
        assert store.retrieve(bad, "x") == 2  # the data is keyed, not described
    assert not (tmp_path / "PWNED").exists()


# --- item 11: a codec plugin that exits or prints never ends or garbles a command ---------------

BAD_PLUGIN = '''
print("hello from a plugin")


def exiting():
    raise SystemExit(0)


def collide():
    from gitstore.codecs import register_codec
    register_codec("myjson", dict, "json", lambda v, f: None, lambda f: None)
'''


def test_a_plugin_that_exits_or_prints_is_skipped_with_a_warning(tmp_path: Path) -> None:
    import json

    site = tmp_path / "site"
    info = site / "gs_bad-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "gs_bad.py").write_text(BAD_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gs-bad\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gitstore.codecs]\nexiting = gs_bad:exiting\ncollide = gs_bad:collide\n")
    (info / "RECORD").write_text("")
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(T({"n": 1}), "x", [1, 2])
    env = dict(os.environ, PYTHONPATH=str(site))
    key = key_hex(key_of(T({"n": 1})))[:12]
    got = subprocess.run([console_script(), "--store", str(path), "get", key, "x"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout == "[1, 2]\n"
    assert "SystemExit" in got.stderr and "'collide'" in got.stderr
    assert "hello from a plugin" in got.stderr
    listed = subprocess.run([console_script(), "--store", str(path), "ls", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0
    assert [row["key"] for row in json.loads(listed.stdout)] == [key_of(T({"n": 1}))]


# --- item 8: a key generator that gives two versions one name never serves a wrong result ------

def test_hash_pickle_shelf_never_serves_another_versions_result(tmp_path: Path) -> None:
    from gitstore.errors import UnsupportedValueError
    from gitstore.keygenerators import hash_pickle

    one, text_one = T({"a": 1}, version=1), T({"a": 1}, version="1")
    assert hash_pickle(one) == hash_pickle(text_one)  # the seed's scheme: str(version)
    assert key_of(one) != key_of(text_one)
    with ShelveDataStore(tmp_path / "shelf", hash_pickle) as s:
        s.store(one, "x", "computed by version 1")
        assert s.retrieve(text_one, "x") is None
        assert not s.exists(text_one) and not s.exists(text_one, "x")
        with pytest.raises(UnsupportedValueError, match="two different states"):
            s.store(text_one, "x", "computed by version '1'")
        assert not s.delete(text_one)
        assert s.retrieve(one, "x") == "computed by version 1"
        (entry,) = s.entries()
        assert entry.key == key_of(one) and entry.attributes == ("x",)
        # names of several types no longer break the seed's digest
        assert hash_pickle(T({1: "x", "a": 2})) == hash_pickle(T({"a": 2, 1: "x"}))
        s.store(T({1: "x", "a": 2}), "y", 3)
        assert s.retrieve(T({"a": 2, 1: "x"}), "y") == 3


# --- items 6, 18: a Django data file replaced by a link, a FIFO, a device or a folder -----------

DAMAGE_SCRIPT = '''
import os, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from components import Typed
from gitstore import DjangoORMDataStore
from gitstore.errors import CorruptEntryError, StoreLocationError
root, damage = Path(sys.argv[1]), sys.argv[2]
s = DjangoORMDataStore(None, root)
c = Typed("red.Component", {"a": 1}, None, "v1")
s.store(c, "x", [1, 2])
(f,) = root.glob("??/*")
f.unlink()
if damage == "folder":
    f.mkdir()
elif damage == "device":
    f.symlink_to("/dev/zero")
elif damage == "fifo":
    os.mkfifo(f)
elif damage == "dangling":
    f.symlink_to(root / "nothing")
elif damage == "link":  # a link to a good copy: still not a file the store wrote
    (root / "copy").write_bytes(b"[1, 2]")
    f.symlink_to(root / "copy")
try:
    s.retrieve(c, "x")
except CorruptEntryError:
    print("corrupt")
try:
    s.store(c, "x", [1, 2])
    print("repaired", s.retrieve(c, "x"))
except StoreLocationError:
    print("refused")
'''


@pytest.mark.parametrize("damage", ["device", "fifo", "folder"])
def test_a_data_file_that_is_not_a_file_is_corrupt_and_a_restore_repairs_it(
        tmp_path: Path, damage: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", DAMAGE_SCRIPT, str(tmp_path / "data"), damage,
         str(Path(__file__).parent)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = "refused" if damage == "folder" else "repaired [1, 2]"
    assert result.stdout.split("\n")[:2] == ["corrupt", expected]


# --- item 18: copy from a mistyped source creates nothing; a database URL never leaks ----------

@pytest.mark.parametrize("source", ["shelve:{d}/missing", "django:{d}/missing",
                                    "django:{d}/missing?db=sqlite:///{d}/index.db"])
def test_copy_from_a_missing_source_creates_nothing(tmp_path: Path, source: str) -> None:
    result = run_cli("copy", source.format(d=tmp_path), f"git:{tmp_path / 'dest.git'}")
    assert "no " in one_line_failure(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["mysql://admin:s3cret@db.example.org/lab",
                                 "postgresql://admin:s3cret@db.example.org:port/lab"])
def test_a_bad_database_url_is_one_line_without_its_password(tmp_path: Path, url: str) -> None:
    from gitstore.errors import StoreError

    with pytest.raises(StoreError) as caught:
        DjangoORMDataStore(url, tmp_path / "data")
    assert "s3cret" not in str(caught.value)
    (tmp_path / "src").mkdir()
    for args in (["copy", f"django:{tmp_path / 'src'}?db={url}", f"git:{tmp_path / 'd.git'}"],
                 ["copy", f"django:?db={url}", f"git:{tmp_path / 'd.git'}"]):
        message = one_line_failure(run_cli(*args))
        assert "s3cret" not in message
    assert not (tmp_path / "d.git").exists()


# --- item 10: a description too large to read back is refused before anything is written -------

@pytest.mark.parametrize("kind", ["git", "shelve", "django"])
def test_a_description_over_the_yaml_bound_is_refused_not_written(tmp_path: Path,
                                                                 kind: str) -> None:
    from gitstore import _yaml
    from gitstore.errors import UnsupportedValueError

    store: Any = {"git": lambda: GitDataStore(tmp_path / "s.git"),
                  "shelve": lambda: ShelveDataStore(tmp_path / "shelf"),
                  "django": lambda: DjangoORMDataStore(None, tmp_path / "data")}[kind]()
    # fewer characters than the bound, more UTF-8 bytes
    huge = T({"s": "é" * (_yaml.MAX_TEXT // 2 + 1)})
    with store:
        store.store(T({"n": 1}), "x", 1)
        with pytest.raises(UnsupportedValueError, match="description"):
            store.store(huge, "x", 2)
        assert [e.key for e in store.entries()] == [key_of(T({"n": 1}))]
        assert all(getattr(e, "problem", None) is None for e in store.entries())
        assert not store.exists(huge)


# --- item 20: a store pickled from inside a batch that holds the write gate ---------------------

def test_a_store_pickled_inside_a_batch_serves_workers_and_commits_after(tmp_path: Path) -> None:
    import multiprocessing

    from gitstore._git.large import LARGE
    from store_workers import store_one

    path = tmp_path / "s.git"
    big = np.arange(LARGE // 8 + 1, dtype="<f8")  # a large blob: the batch takes the gate
    with GitDataStore(path) as s:
        with s.batch():
            s.store(T({"parent": 1}), "big", big)
            with multiprocessing.get_context("spawn").Pool(2) as pool:
                results = pool.starmap_async(store_one, [(s, i) for i in range(4)]).get(600)
            assert {pid for _k, pid in results} - {os.getpid()}
            # the workers' stores are committed; the batch's own is not, yet
            assert s.retrieve(SimpleComponent({"i": 3}, version="v1"), "square") == 9
        assert (s.retrieve(T({"parent": 1}), "big") == big).all()
        assert sorted(s.retrieve(SimpleComponent({"i": i}, version="v1"), "square")
                      for i in range(4)) == [0, 1, 4, 9]
        assert s.verify() == []


# --- items 10, 18: show on pipelines whose stages share inputs, or very long ones --------------

def test_show_expands_each_shared_input_once_and_bounds_depth(tmp_path: Path) -> None:
    import json

    path = tmp_path / "s.git"
    with GitDataStore(path) as s, s.batch():
        layer = [T({"n": 0}, type_name="dag.Source")]
        s.store(layer[0], "x", 0)
        for depth in range(1, 41):  # each stage takes both stages before it: 2^40 paths
            layer = [Typed("dag.Stage", {"d": depth, "j": j}, list(layer)) for j in range(2)]
            for c in layer:
                s.store(c, "x", depth)
        top = key_of(layer[0])
        chain: Any = T({"c": 0}, type_name="chain.Stage")
        s.store(chain, "x", 0)
        for i in range(1, 150):
            chain = Typed("chain.Stage", {"c": i}, chain)
            s.store(chain, "x", i)
    result = run_cli("--store", str(path), "show", "--json", key_hex(top)[:12])
    assert result.returncode == 0, result.stderr
    expanded: list[str] = []
    todo = list(json.loads(result.stdout)["inputs"])
    while todo:
        node = todo.pop()
        if node.get("shown") != "above":
            expanded.append(node["key"])
        todo.extend(node["inputs"])
    assert len(expanded) == len(set(expanded)) == 79  # 39 layers of 2, and the source
    shown = run_cli("--store", str(path), "show", key_hex(key_of(chain))[:12])
    assert shown.returncode == 0, shown.stderr
    assert b"deeper than 100 levels" in shown.stdout


EXPLAIN_SCRIPT = '''
import sys
sys.path.insert(0, sys.argv[2])
from components import Typed
from gitstore import GitDataStore

def dag(source, depth):
    layer = [Typed("dag.Source", {"n": source}, None)]
    every = list(layer)
    for d in range(1, depth + 1):
        layer = [Typed("dag.Stage", {"d": d, "j": j}, list(layer)) for j in range(2)]
        every += layer
    return layer[0], every

with GitDataStore(sys.argv[1]) as s, s.batch():
    for c in dag(0, 15)[1]:
        s.store(c, "x", 1)
with GitDataStore(sys.argv[1]) as s:
    text = str(s.explain(dag(1, 15)[0]))  # a changed source: every stage misses
print(text.count("explained above"), text.count("parameter n: stored 0, yours 1"), len(text))
'''


def test_explain_of_a_pipeline_whose_stages_share_inputs_explains_each_once(tmp_path: Path
                                                                            ) -> None:
    result = subprocess.run([sys.executable, "-c", EXPLAIN_SCRIPT, str(tmp_path / "s.git"),
                             str(Path(__file__).parent)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    above, source_lines, size = map(int, result.stdout.split())
    assert above > 0
    assert source_lines == 1  # the changed source is explained once, not 2^15 times
    assert size < 200_000


# --- item 18: long chains and shared inputs: keys, seed keys and copies without recursion -------

def test_a_chain_of_thousands_of_components_keys_stores_and_copies(tmp_path: Path) -> None:
    from gitstore import copy_entries
    from gitstore.keygenerators import hash_pickle

    chain: Any = T({"i": 0}, type_name="chain.Stage")
    stages = [chain]
    for i in range(1, 2000):
        chain = Typed("chain.Stage", {"i": i}, chain)
        stages.append(chain)
    assert key_of(chain) != key_of(stages[-2])
    assert len(hash_pickle(chain)) == 40
    with GitDataStore(tmp_path / "s.git") as s:
        with s.batch():
            for c in stages:
                s.store(c, "x", c.parameters["i"])
        assert s.retrieve(chain, "x") == 1999
        with ShelveDataStore(tmp_path / "shelf", hash_pickle) as shelf:
            assert copy_entries(s, shelf) == 2000
            assert shelf.retrieve(chain, "x") == 1999


def test_copy_of_a_pipeline_whose_stages_share_inputs_into_a_hash_pickle_shelf(tmp_path: Path
                                                                                ) -> None:
    from gitstore import copy_entries
    from gitstore.keygenerators import hash_pickle

    layer: list[Any] = [T({"n": 0}, type_name="dag.Source")]
    every = list(layer)
    for depth in range(1, 41):  # 2^40 paths through 81 components
        layer = [Typed("dag.Stage", {"d": depth, "j": j}, list(layer)) for j in range(2)]
        every += layer
    assert len(hash_pickle(layer[0])) == 40
    with GitDataStore(tmp_path / "s.git") as s, \
            ShelveDataStore(tmp_path / "shelf", hash_pickle) as shelf:
        with s.batch():
            for c in every:
                s.store(c, "x", 1)
        assert copy_entries(s, shelf) == 81
        assert shelf.retrieve(layer[0], "x") == 1
