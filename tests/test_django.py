"""DjangoORMDataStore on SQLite and PostgreSQL, and copying between backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import HOW_TO_POSTGRES, POSTGRES_URL, fresh_postgres, postgres_available
from typer.testing import CliRunner

from gitstore import (
    DjangoORMDataStore,
    GitDataStore,
    ParameterSet,
    ShelveDataStore,
    copy_entries,
    key_of,
)
from gitstore.errors import CorruptEntryError, StoreLocationError
from gitstore.keygenerators import hash_pickle
from gitstore_cli.main import app


def test_seed_scenario(tmp_path: Path) -> None:
    """The seed's test: an SQLite database, a data root dir, store and retrieve."""
    datastore = DjangoORMDataStore(
        database_parameters={"DATABASE_ENGINE": "sqlite3",
                             "DATABASE_NAME": str(tmp_path / "test_datastore.db")},
        data_root_dir=str(tmp_path / "test_datastore_data"))
    c1 = SimpleComponent(ParameterSet({"a": 1, "b": 2}))
    datastore.store(c1, "data", list(range(1000)))
    c2 = SimpleComponent(ParameterSet({"a": 1, "b": 2}))
    assert datastore.retrieve(c2, "data") == list(range(1000))
    assert (tmp_path / "test_datastore.db").exists()
    assert len(list((tmp_path / "test_datastore_data").rglob("*.json"))) == 1


def test_several_stores_in_one_process(tmp_path: Path) -> None:
    a = DjangoORMDataStore(data_root_dir=tmp_path / "a")
    b = DjangoORMDataStore(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "bdata")
    c = SimpleComponent({"x": 1})
    a.store(c, "v", "in a")
    b.store(c, "v", "in b")
    assert (a.retrieve(c, "v"), b.retrieve(c, "v")) == ("in a", "in b")
    assert (tmp_path / "a" / "index.db").exists()


def test_equal_data_is_stored_once_and_files_are_checked(tmp_path: Path) -> None:
    s = DjangoORMDataStore(data_root_dir=tmp_path)
    for i in range(3):
        s.store(SimpleComponent({"i": i}), "v", "same bytes")
    files = [p for p in tmp_path.glob("??/*")]
    assert len(files) == 1
    files[0].write_bytes(b"tampered")
    with pytest.raises(CorruptEntryError):
        s.retrieve(SimpleComponent({"i": 0}), "v")


def test_inputs_are_foreign_keys(tmp_path: Path) -> None:
    s = DjangoORMDataStore(data_root_dir=tmp_path)
    a = SimpleComponent({"x": 1})
    b = SimpleComponent({"y": 2}, input=a)
    s.store(a, "v", 1)
    s.store(b, "v", 2)
    from gitstore.backends.djangostore.models import ComponentState

    state = ComponentState.objects.using(s.alias).get(key=key_of(b))
    assert [x.key for x in state.inputs.all()] == [key_of(a)]
    assert state.type.name.endswith("SimpleComponent")


def test_data_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(StoreLocationError):
        DjangoORMDataStore(data_root_dir=f)


PROJECT_SETTINGS = """
import os
SECRET_KEY = "test"
INSTALLED_APPS = ["gitstore.backends.djangostore"]
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {default!r}}},
    "results": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {results!r}}},
}}
USE_TZ = True
"""

PROJECT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import django
django.setup()
from django.core.management import call_command
call_command("migrate", "gitstore", database="results", verbosity=0)
from components import SimpleComponent
from gitstore import DjangoORMDataStore
store = DjangoORMDataStore("results", {data!r}, migrate=False)
store.store(SimpleComponent({{"x": 1}}), "v", [1, 2, 3])
print(store.retrieve(SimpleComponent({{"x": 1}}), "v"))
"""


def test_inside_an_existing_project(tmp_path: Path) -> None:
    (tmp_path / "proj_settings.py").write_text(PROJECT_SETTINGS.format(
        default=str(tmp_path / "default.db"), results=str(tmp_path / "results.db")))
    script = tmp_path / "run.py"
    script.write_text(PROJECT_SCRIPT.format(tests=str(Path(__file__).parent),
                                            data=str(tmp_path / "data")))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="proj_settings",
               PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1, 2, 3]"
    assert (tmp_path / "results.db").exists()


WRITER = """
import sys
sys.path.insert(0, {tests!r})
from components import SimpleComponent
from gitstore import DjangoORMDataStore
store = DjangoORMDataStore({url!r}, {data!r})
worker, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    store.store(SimpleComponent({{"w": worker, "i": i}}), "v", [worker, i])
    if i < 40:
        store.store(SimpleComponent({{"shared": i}}), "v", "same for all")
"""


def concurrent_writers(tmp_path: Path, url: str, workers: int, n: int = 40) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent), url=url,
                                    data=str(tmp_path / "pgdata")))
    procs = [subprocess.Popen([sys.executable, str(script), str(w), str(n)],
                              stderr=subprocess.PIPE) for w in range(workers)]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    s = DjangoORMDataStore(url, tmp_path / "pgdata")
    for w in range(workers):
        for i in range(n):
            assert s.retrieve(SimpleComponent({"w": w, "i": i}), "v") == [w, i]
    assert len(list(s.entries())) == workers * n + 40


def test_postgres_processes_lose_nothing(tmp_path: Path) -> None:
    if not postgres_available():
        pytest.skip(HOW_TO_POSTGRES)
    fresh_postgres(tmp_path).close()
    concurrent_writers(tmp_path, POSTGRES_URL, workers=4)


@pytest.mark.slow
def test_postgres_eight_processes(tmp_path: Path) -> None:
    if not postgres_available():
        pytest.skip(HOW_TO_POSTGRES)
    fresh_postgres(tmp_path).close()
    concurrent_writers(tmp_path, POSTGRES_URL, workers=8, n=250)  # 2,000 entries


def test_sqlite_processes_lose_nothing(tmp_path: Path) -> None:
    concurrent_writers(tmp_path, f"sqlite:///{tmp_path / 'index.db'}", workers=3)


# --- copy between backends ---------------------------------------------------------------------

def filled_git(path: Path) -> list[SimpleComponent]:
    s = GitDataStore(path)
    a = SimpleComponent({"x": 1})
    comps = [a, SimpleComponent({"y": 2}, input=a), SimpleComponent({"z": 3}, version="2.0")]
    for i, c in enumerate(comps):
        s.store(c, "v", {"i": i})
        s.store(c, "text", f"text {i}")
    s.close()
    return comps


def test_copy_git_shelve_django_and_back(tmp_path: Path) -> None:
    comps = filled_git(tmp_path / "a.git")
    git_a = GitDataStore(tmp_path / "a.git")
    shelf = ShelveDataStore(tmp_path / "shelf", hash_pickle)
    django = DjangoORMDataStore(data_root_dir=tmp_path / "dj")
    git_b = GitDataStore(tmp_path / "b.git")
    assert copy_entries(git_a, shelf) == 6
    assert copy_entries(shelf, django) == 6
    assert copy_entries(django, git_b) == 6
    for store in (shelf, django, git_b):
        assert sorted(e.key for e in store.entries()) == sorted(key_of(c) for c in comps)
        for i, c in enumerate(comps):
            assert store.retrieve(c, "v") == {"i": i}
            assert store.retrieve(c, "text") == f"text {i}"


def test_cli_copy(tmp_path: Path) -> None:
    comps = filled_git(tmp_path / "a.git")
    result = CliRunner().invoke(app, ["copy", str(tmp_path / "a.git"),
                                      f"django:{tmp_path / 'dj'}"])
    assert result.exit_code == 0 and "copied 6" in result.stdout
    s = DjangoORMDataStore(data_root_dir=tmp_path / "dj")
    assert s.retrieve(comps[1], "text") == "text 1"
    result = CliRunner().invoke(app, ["copy", f"django:{tmp_path / 'dj'}",
                                      f"shelve:{tmp_path / 'sh'}"])
    assert result.exit_code == 0
    assert ShelveDataStore(tmp_path / "sh").retrieve(comps[0], "v") == {"i": 0}
