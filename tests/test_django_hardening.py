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
    writers_against_gc(tmp_path, database, workers=3, n=60)


@pytest.mark.slow
def test_gc_never_collects_an_acknowledged_store_long(tmp_path: Path, database: Any) -> None:
    writers_against_gc(tmp_path, database, workers=6, n=700)
