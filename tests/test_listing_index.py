"""The derived listing index (issue 16 item 2): used when fresh, brought up to date by tree diff
when a ref moved, rebuilt when deleted, damaged, hostile or when history was rewritten; and
``store.table()``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent

from gitstore import GitDataStore, _yaml
from gitstore.table import Table

INDEX = Path("gitstore") / "listing.sqlite"


def shown(store: GitDataStore, **kw: Any) -> list[tuple[Any, ...]]:
    return [(r.key, r.type, r.version, r.attributes, r.sizes, r.date, r.problem,
             r.entry.component) for r in store.listing(**kw)]


def truth(path: Path, **kw: Any) -> list[tuple[Any, ...]]:
    with GitDataStore(path) as s:
        s.use_listing_index = False
        return shown(s, **kw)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "s.git"
    with GitDataStore(p) as s:
        for start in (0, 10):
            with s.batch():
                for i in range(start, start + 10):
                    s.store(SimpleComponent({"i": i, "m": {"tau": float(i)}}, version="v1"),
                            "x", [i] * i)
        s.store(SimpleComponent({"i": 99}, version="v2"), "y", "text")
    return p


@pytest.fixture
def yaml_loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    load = _yaml.load

    def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
        counts["yaml"] += 1
        return load(text, *args, **kwargs)

    monkeypatch.setattr(_yaml, "load", counting)
    return counts


def test_a_fresh_index_lists_without_reading_descriptions(path: Path,
                                                          yaml_loads: Counter[str]) -> None:
    with GitDataStore(path) as s:
        first = shown(s)
    assert (path / INDEX).is_file()
    assert first == truth(path)
    yaml_loads.clear()
    with GitDataStore(path) as s:
        assert shown(s) == first
        assert yaml_loads["yaml"] == 0  # from the index: no component.yaml parsed
        assert s.stats()["entries"] == 21
        assert len(list(s.entries())) == 21 and yaml_loads["yaml"] == 0


def test_the_index_follows_stores_and_deletes_by_tree_diff(path: Path,
                                                          yaml_loads: Counter[str]) -> None:
    with GitDataStore(path) as s:
        shown(s)
        s.store(SimpleComponent({"i": 100}, version="v1"), "x", [1])
        s.delete(SimpleComponent({"i": 3, "m": {"tau": 3.0}}, version="v1"))
        s.store(SimpleComponent({"i": 4, "m": {"tau": 4.0}}, version="v1"), "z", 5)
        yaml_loads.clear()
        now = shown(s)
        assert yaml_loads["yaml"] == 2  # the new and the changed entry only
    assert now == truth(path)
    assert len(now) == 21 and all(r[5] for r in now)


def test_deleted_damaged_or_foreign_index_is_rebuilt(path: Path) -> None:
    want = truth(path)
    with GitDataStore(path) as s:
        shown(s)
    (path / INDEX).unlink()
    with GitDataStore(path) as s:
        assert shown(s) == want
    (path / INDEX).write_bytes(b"not a database at all" * 100)
    with GitDataStore(path) as s:
        assert shown(s) == want
    with sqlite3.connect(path / INDEX) as conn:  # another schema
        conn.execute("PRAGMA user_version=99")
    with GitDataStore(path) as s:
        assert shown(s) == want


def test_hostile_rows_are_not_believed(path: Path) -> None:
    want = truth(path)
    with GitDataStore(path) as s:
        shown(s)
    conn = sqlite3.connect(path / INDEX)
    with conn:
        conn.execute("UPDATE entries SET key = 'k1-sha256:' || substr(key, 12) || 'x', "
                     "attrs = '[[\"x\", -1]]' WHERE substr(tree, 1, 1) < '8'")
        conn.execute("UPDATE entries SET attrs = '[[\"x\", \"<b>huge</b>\"]]' "
                     "WHERE substr(tree, 1, 1) >= '8' AND substr(tree, 1, 1) < 'c'")
        conn.execute("UPDATE entries SET tree = '../../../../etc/passwd' "
                     "WHERE substr(tree, 1, 1) >= 'c'")
        conn.execute("UPDATE descriptions SET data = X'6a7b7d'")  # "j{}": no key in it
        conn.execute("INSERT INTO entries VALUES ('refs/gitstore/versions/v1', 'zz', 'qq', 1, "
                     "'k1-sha256:zz', 't', 'v1', '[]')")
    conn.close()
    with GitDataStore(path) as s:
        assert shown(s) == want
        assert shown(s) == want  # rebuilt


def test_rewritten_history_rebuilds(path: Path) -> None:
    with GitDataStore(path) as s:
        shown(s)
        s.prune(["v1"])
        s.store(SimpleComponent({"i": 7}, version="v1"), "x", 1)
        assert len(list(s.entries(version="v1"))) == 1
    assert truth(path) == truth(path)
    with GitDataStore(path) as s:
        assert shown(s) == truth(path)


def test_concurrent_listers_and_a_writer(path: Path) -> None:
    code = ("import sys, json; from gitstore import GitDataStore\n"
            "s = GitDataStore(sys.argv[1])\n"
            "for _ in range(5): n = len(list(s.listing()))\n"
            "print(n)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(3)]
    with GitDataStore(path) as s:
        for i in range(200, 210):
            s.store(SimpleComponent({"i": i}, version="v1"), "x", i)
    for p in procs:
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 0, errs.decode()
        assert 21 <= int(out) <= 31
    with GitDataStore(path) as s:
        assert shown(s) == truth(path)


def test_without_index_when_it_cannot_be_written(path: Path, tmp_path: Path) -> None:
    (path / "gitstore").mkdir(exist_ok=True)
    (tmp_path / "elsewhere.sqlite").write_bytes(b"")
    (path / INDEX).symlink_to(tmp_path / "elsewhere.sqlite")  # never written through
    with GitDataStore(path) as s:
        assert shown(s) == truth(path)
    assert (tmp_path / "elsewhere.sqlite").read_bytes() == b""


def test_table_rows_columns_and_types(path: Path) -> None:
    with GitDataStore(path) as s:
        table = s.table(version="v1", where="i < 5", pandas=False)
        assert isinstance(table, Table) and len(table) == 5
        assert table.columns[:5] == ["key", "type", "version", "date", "size"]
        assert "i" in table.columns and "m.tau" in table.columns and "size:x" in table.columns
        assert sorted(table.column("i")) == [0, 1, 2, 3, 4]
        assert all(type(v) is float for v in table.column("m.tau"))
        frame = s.table(type="components.SimpleComponent")
        pandas = pytest.importorskip("pandas")
        assert isinstance(frame, pandas.DataFrame) and len(frame) == 21
        assert set(frame["version"]) == {"v1", "v2"}


def test_table_html_is_escaped(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as s:
        s.store(SimpleComponent({"name": "<script>alert(1)</script>", "<b>": 1},
                                version="v1"), "<i>x", 1)
        page = s.table(pandas=False)._repr_html_()
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;" in page


def test_cli_ls_uses_the_index(path: Path) -> None:
    from typer.testing import CliRunner

    from gitstore_cli.main import app

    first = CliRunner().invoke(app, ["--store", str(path), "ls", "--json"])
    second = CliRunner().invoke(app, ["--store", str(path), "ls", "--json"])
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert len(json.loads(first.stdout)) == 21


def _with_recorded_sizes(path: Path, tmp_path: Path, recorded: str) -> str:
    """Rewrite the one entry's component.yaml with an ``attributes`` mapping (as helper
    'partial' records it at store time, or as a hostile remote may write it), with git."""
    ref = "refs/gitstore/versions/v1"
    env = {"GIT_DIR": str(path), "GIT_INDEX_FILE": str(tmp_path / "index"), "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}

    def git(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(["git", *args], env=env, input=data, capture_output=True,
                              check=True).stdout.decode().strip()

    git("read-tree", ref)
    name = next(line.split("\t")[1] for line in git("ls-files", "-s").splitlines()
                if line.endswith("component.yaml"))
    text = git("cat-file", "blob", f"{ref}:{name}") + "\n" + recorded
    blob = git("hash-object", "-w", "--stdin", data=text.encode())
    git("update-index", "--cacheinfo", f"100644,{blob},{name}")
    tree = git("write-tree")
    commit = git("commit-tree", tree, "-p", ref, "-m", "recorded sizes")
    git("update-ref", ref, commit)
    return name


@pytest.mark.parametrize("recorded, expected", [
    ("attributes:\n  x:\n    size: 123456\n    codec: json\n", 123456),
    ("attributes:\n  x:\n    size: -5\n", None),
    ("attributes:\n  x:\n    size: true\n", None),
    ("attributes:\n  x:\n    size: '99'\n", None),
    ("attributes:\n  x:\n    size: 1.0e+30\n", None),
    ("attributes:\n  x: [1, 2]\n", None),
    ("attributes: hello\n", None),
])
def test_sizes_recorded_in_the_description_are_used_when_well_typed(
        tmp_path: Path, recorded: str, expected: int | None) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(SimpleComponent({"n": 1}, version="v1"), "x", list(range(100)))
        actual = len(s.read(next(iter(s.entries())).key, "x", raw=True))
    _with_recorded_sizes(path, tmp_path, recorded)
    for use_index in (True, False):
        with GitDataStore(path) as s:
            s.use_listing_index = use_index
            (row,) = list(s.listing())
            assert row.problem is None
            assert row.sizes == {"x": expected if expected is not None else actual}


def test_listing_uses_recorded_sizes_show_the_objects_own(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(SimpleComponent({"n": 1}, version="v1"), "x", list(range(100)))
    _with_recorded_sizes(path, tmp_path, "attributes:\n  x:\n    size: 123456\n")
    with GitDataStore(path) as s:
        listed = next(iter(s.entries_sized()))
        assert listed[1]["x"] == 123456  # a listing believes a well-typed record
        # show reads the object's own header when it is here (a partial store: the record)
        shown = s.attributes(listed[0].key)["x"]
        assert shown["size"] == len(s.read(listed[0].key, "x", raw=True)) != 123456


def test_ls_table_shows_markup_in_names_as_text(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gitstore_cli.main import app

    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        s.store(SimpleComponent({"n": 1}, version="[/]v1[bold]"), "[red]x", 1)
    result = CliRunner().invoke(app, ["--store", str(path), "ls"])
    assert result.exit_code == 0, result.output
    assert "[/]v1[bold]" in result.stdout and "[red]x" in result.stdout
