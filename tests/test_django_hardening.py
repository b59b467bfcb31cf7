"""DjangoORMDataStore under attack (issue 11): gc never collects an acknowledged store, a
re-store repairs a damaged data file, a concurrent store and delete of one key and names the
database cannot hold give typed errors, never a raw database error or a half-written entry.

Every PostgreSQL test works in a schema of its own inside the test database, so other tests
(which empty the shared tables) cannot disturb it, and the concurrency tests run real processes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent, Typed
from conftest import HOW_TO_POSTGRES, POSTGRES_URL, postgres_available

from gitstore import DjangoORMDataStore, ShelveDataStore
from gitstore.backends.orm import database_settings
from gitstore.errors import GitStoreError, UnsupportedValueError
from gitstore.keygenerators import hash_pickle

SPAWN = multiprocessing.get_context("spawn")  # Django connections must not cross a fork


def _conninfo() -> str:
    if POSTGRES_URL.startswith("postgresql:///"):
        return POSTGRES_URL.replace("postgresql:///", "dbname=", 1)
    return POSTGRES_URL


@pytest.fixture
def pg_config() -> Iterator[dict[str, Any]]:
    """A Django DATABASES entry for a fresh schema in the PostgreSQL test database."""
    if not postgres_available():
        pytest.skip(HOW_TO_POSTGRES)
    import psycopg

    schema = f"gs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    config = database_settings(POSTGRES_URL, Path())
    assert isinstance(config, dict)
    config["OPTIONS"] = {"options": f"-c search_path={schema}"}
    yield config
    from django.db import connections

    for alias in list(connections.settings):
        if connections.settings[alias].get("OPTIONS") == config["OPTIONS"]:
            connections[alias].close()
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The ``database`` argument of a DjangoORMDataStore, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    return request.getfixturevalue("pg_config")


# --- item 4: gc never collects an acknowledged store --------------------------------------------

def _writer(database: Any, data: str, worker: int, n: int, ack_path: str, go: Any,
            errors: Any) -> None:
    """Store unique data, and data whose file was just left unreferenced; log each ack."""
    try:
        go.wait()
        store = DjangoORMDataStore(database, data)
        with open(ack_path, "a") as ack:
            for i in range(n):
                # a new file: written, then its row committed
                store.store(SimpleComponent({"w": worker, "i": i}), "v", [worker, i])
                ack.write(f"unique {worker} {i}\n")
                ack.flush()
                # a file that exists but that nothing refers to any more: deduplicated
                gone = SimpleComponent({"gone": worker, "i": i})
                store.store(gone, "v", f"reused {worker} {i}")
                store.delete(gone)
                store.store(SimpleComponent({"kept": worker, "i": i}), "v",
                            f"reused {worker} {i}")
                ack.write(f"reused {worker} {i}\n")
                ack.flush()
        store.close()
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def _collector(database: Any, data: str, started: Any, stop: Any, errors: Any) -> None:
    """Run gc() back to back until told to stop."""
    try:
        store = DjangoORMDataStore(database, data)
        while True:
            store.gc()
            started.set()
            if stop.is_set():
                break
        store.close()
    except BaseException:
        errors.put(traceback.format_exc())
        started.set()
        raise


def writers_against_gc(tmp_path: Path, database: Any, workers: int, n: int) -> None:
    data = str(tmp_path / "data")
    DjangoORMDataStore(database, data).close()  # migrated once, before the race
    ack_path = tmp_path / "acks.txt"
    started, stop, errors = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    collector = SPAWN.Process(target=_collector, args=(database, data, started, stop, errors))
    collector.start()
    writers = [SPAWN.Process(target=_writer,
                             args=(database, data, w, n, str(ack_path), started, errors))
               for w in range(workers)]
    for p in writers:
        p.start()
    for p in writers:
        p.join()
    stop.set()
    collector.join()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures[0]
    assert [p.exitcode for p in [*writers, collector]] == [0] * (workers + 1)

    acks = ack_path.read_text().split("\n")[:-1]
    assert len(acks) == 2 * workers * n
    store = DjangoORMDataStore(database, data)

    def check_all() -> None:
        lost = []
        for line in acks:
            kind, w, i = line.split()
            if kind == "unique":
                component, expected = SimpleComponent({"w": int(w), "i": int(i)}), [int(w), int(i)]
            else:
                component, expected = (SimpleComponent({"kept": int(w), "i": int(i)}),
                                       f"reused {w} {i}")
            try:
                if store.retrieve(component, "v") != expected:
                    lost.append(line)
            except GitStoreError as exc:
                lost.append(f"{line}: {exc}")
        assert not lost, f"{len(lost)} of {len(acks)} acknowledged stores lost: {lost[:5]}"

    check_all()
    store.gc()  # a quiet gc keeps every referenced file and drops the unreferenced ones
    check_all()
    names = {p.name for p in Path(data).glob("??/*")}
    assert len(names) == 2 * workers * n
    store.close()


def test_gc_never_collects_an_acknowledged_store(tmp_path: Path, database: Any) -> None:
    writers_against_gc(tmp_path, database, workers=3, n=40)


@pytest.mark.slow
def test_gc_never_collects_an_acknowledged_store_long(tmp_path: Path, database: Any) -> None:
    writers_against_gc(tmp_path, database, workers=6, n=700)


def _overwriter(database: Any, data: str, n: int, go: Any, done: Any, errors: Any) -> None:
    try:
        go.wait()
        store = DjangoORMDataStore(database, data)
        for i in range(n):
            store.store(SimpleComponent({"hot": 1}), "v", ["value", i])
        store.close()
    except BaseException:
        errors.put(traceback.format_exc())
    finally:
        done.set()


def _reader(database: Any, data: str, go: Any, done: Any, errors: Any) -> None:
    try:
        go.wait()
        store = DjangoORMDataStore(database, data)
        while not done.is_set():
            value = store.retrieve(SimpleComponent({"hot": 1}), "v")
            assert value is None or value[0] == "value", value
        store.close()
    except BaseException:
        errors.put(traceback.format_exc())


def test_readers_of_an_overwritten_entry_never_see_its_collected_file(tmp_path: Path,
                                                                       database: Any) -> None:
    """Each overwrite leaves the previous file unreferenced and gc deletes it; a reader that
    had the old row reads the new one instead of reporting a missing file."""
    data = str(tmp_path / "data")
    DjangoORMDataStore(database, data).close()
    started, stop, done, errors = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    collector = SPAWN.Process(target=_collector, args=(database, data, started, stop, errors))
    collector.start()
    procs = [SPAWN.Process(target=_overwriter, args=(database, data, 150, started, done, errors)),
             *[SPAWN.Process(target=_reader, args=(database, data, started, done, errors))
               for _ in range(2)]]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    stop.set()
    collector.join()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures[0]
    store = DjangoORMDataStore(database, data)
    assert store.retrieve(SimpleComponent({"hot": 1}), "v") == ["value", 149]
    store.close()


# --- item 6: a store of the same content leaves a good copy -------------------------------------

def data_file(store: DjangoORMDataStore, component: Any, attribute: str) -> Path:
    from gitstore.backends.djangostore.models import DataItem

    item = DataItem.objects.using(store.alias).get(state__key=store.key_of(component),
                                                   attribute=attribute)
    return store.data_root_dir / item.path


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "missing"])
@pytest.mark.parametrize("size", [100, 3 << 20], ids=["small", "streamed"])
def test_restoring_equal_data_repairs_a_damaged_file(tmp_path: Path, database: Any, damage: str,
                                                     size: int) -> None:
    store = DjangoORMDataStore(database, tmp_path / "data")
    value = bytes(range(256)) * (size // 256)
    first, second = SimpleComponent({"n": 1}), SimpleComponent({"n": 2})
    store.store(first, "v", value)
    path = data_file(store, first, "v")
    if damage == "overwritten":
        path.write_bytes(b"\xff" * len(path.read_bytes()))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:10])
    else:
        path.unlink()
    store.store(second, "v", value)  # other component, same bytes: deduplicated
    assert store.retrieve(second, "v") == value
    assert store.retrieve(first, "v") == value
    assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name.split(".")[0]
    path.write_bytes(b"broken")
    store.store(first, "v", value)  # the same component again
    assert store.retrieve(first, "v") == value
    store.close()


def test_shelve_restore_repairs_a_damaged_value(tmp_path: Path) -> None:
    """The shelve backend keeps no shared copies: a re-store rewrites the value in place."""
    store = ShelveDataStore(tmp_path / "shelf", hash_pickle)
    c = SimpleComponent({"n": 1})
    value = b"payload " * 100
    store.store(c, "v", value)
    dat = next((tmp_path / "shelf").glob("*.dat"))
    dat.write_bytes(dat.read_bytes().replace(b"payload", b"PAYLOAD"))
    assert store.retrieve(c, "v") != value
    store.store(c, "v", value)
    assert store.retrieve(c, "v") == value


def test_a_stale_temporary_never_writes_through_to_a_data_file(tmp_path: Path) -> None:
    """A crashed store can leave its temporary as a hard link to a data file; the next store
    in a process of that pid and thread must not write through it."""
    import threading

    store = DjangoORMDataStore(data_root_dir=tmp_path)
    c = SimpleComponent({"n": 1})
    store.store(c, "v", "kept")
    stale = tmp_path / f".incoming.{os.getpid()}.{threading.get_ident()}.tmp"
    os.link(data_file(store, c, "v"), stale)
    store.store(SimpleComponent({"n": 2}), "v", "other")
    assert store.retrieve(c, "v") == "kept"
    assert not stale.exists()


# --- item 18: concurrent store and delete of one key; names a database cannot hold -------------

def _store_delete(database: Any, data: str, role: int, n: int, go: Any, errors: Any) -> None:
    try:
        go.wait()
        store = DjangoORMDataStore(database, data)
        for i in range(n):
            c = SimpleComponent({"shared": i % 3})
            if role == 0:
                store.delete(c)
            else:
                store.store(c, f"a{role}", [role, i])
                store.store(SimpleComponent({"x": i}, input=c), "v", i)  # c as an input
        store.close()
    except BaseException:
        errors.put(traceback.format_exc())


def test_concurrent_store_and_delete_of_one_key(tmp_path: Path, database: Any) -> None:
    data = str(tmp_path / "data")
    DjangoORMDataStore(database, data).close()
    go, errors = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_store_delete, args=(database, data, role, 150, go, errors))
             for role in range(3)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures[0]
    store = DjangoORMDataStore(database, data)
    for entry in store.entries():  # every listed attribute reads back whole
        for attribute in entry.attributes:
            assert store._get(entry.key, attribute) is not None
    for i in range(3):
        for role in (1, 2):
            value = store.retrieve(SimpleComponent({"shared": i}), f"a{role}")
            assert value is None or value[0] == role
    store.gc()
    store.close()


UNSTORABLE = {
    "type over 255 characters": Typed("m." + "T" * 300, {"a": 1}),
    "type with NUL": Typed("m.T\x00x", {"a": 1}),
    "version over 255 characters": Typed("m.T", {"a": 1}, version="v" * 300),
    "version with NUL": Typed("m.T", {"a": 1}, version="v\x00"),
    "version with a lone surrogate": Typed("m.T", {"a": 1}, version="v\ud800"),
    "type with a lone surrogate": Typed("m.T\ud800", {"a": 1}),
    "parameter with a lone surrogate": Typed("m.T", {"a": "x\ud800"}),
}


@pytest.mark.parametrize("case", sorted(UNSTORABLE))
def test_names_the_database_cannot_hold(tmp_path: Path, database: Any, case: str) -> None:
    """The same refusal on SQLite as on PostgreSQL (a store copies between them), typed, and
    nothing is written."""
    store = DjangoORMDataStore(database, tmp_path / "data")
    with pytest.raises(GitStoreError) as info:
        store.store(UNSTORABLE[case], "v", 1)
    if "surrogate" not in case:  # (a key may refuse lone surrogates before the store sees them)
        assert isinstance(info.value, UnsupportedValueError)
        assert isinstance(info.value, ValueError)
        assert info.value.field in ("type name", "version")
    assert list(store.entries()) == []
    assert [p for p in (tmp_path / "data").rglob("*") if p.suffix in (".json", ".tmp")] == []
    fine = Typed("m." + "T" * 200, {"a": "\x00 is fine in parameters"}, version="v" * 255)
    store.store(fine, "v", 1)
    assert store.retrieve(fine, "v") == 1
    assert [e.key for e in store.entries()] == [store.key_of(fine)]
    store.close()


@pytest.mark.parametrize("case", sorted(UNSTORABLE))
def test_shelve_stores_or_refuses_whole(tmp_path: Path, case: str) -> None:
    """The shelve backend holds any text its YAML can: long names and NUL work; what cannot be
    written is refused before a file is created, so the store keeps listing."""
    store = ShelveDataStore(tmp_path / "shelf", hash_pickle)
    component = UNSTORABLE[case]
    try:
        store.store(component, "v", 1)
    except GitStoreError:
        assert list((tmp_path / "shelf").iterdir()) == []
    else:
        assert store.retrieve(component, "v") == 1
    assert len(list(store.entries())) == len(list((tmp_path / "shelf").glob("*.dir")))


def _shelve_writer(root: str, role: int, n: int, go: Any, errors: Any) -> None:
    try:
        go.wait()
        store = ShelveDataStore(root, hash_pickle)
        for i in range(n):
            store.store(SimpleComponent({"k": i % 5}), f"a{role}_{i}", [role, i])
            if role == 0:  # and a delete racing the others' stores of one key
                store.delete(SimpleComponent({"gone": 1}))
            else:
                store.store(SimpleComponent({"gone": 1}), f"a{role}", i)
    except BaseException:
        errors.put(traceback.format_exc())


def test_shelve_concurrent_writers_of_one_entry_lose_nothing(tmp_path: Path) -> None:
    """dbm has no locking: two processes storing into one entry lost each other's stores."""
    root = str(tmp_path / "shelf")
    ShelveDataStore(root, hash_pickle)
    go, errors = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=_shelve_writer, args=(root, role, 100, go, errors))
             for role in range(3)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, failures[0]
    store = ShelveDataStore(root, hash_pickle)
    lost = [(role, i) for role in range(3) for i in range(100)
            if store.retrieve(SimpleComponent({"k": i % 5}), f"a{role}_{i}") != [role, i]]
    assert not lost, f"{len(lost)} of 300 acknowledged stores lost"
    assert len(list(store.entries())) in (5, 6)
