from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# no per-example deadline: machines here are noisy (a loaded CI run made one example of a
# property test exceed hypothesis's default 200 ms), and a deadline is a wall-clock threshold
settings.register_profile("gitstore", deadline=None)
settings.load_profile("gitstore")

sys.path.insert(0, os.path.dirname(__file__))

from gitstore import DjangoORMDataStore, GitDataStore, ShelveDataStore  # noqa: E402
from gitstore.backends.base import AbstractDataStore  # noqa: E402
from gitstore.keygenerators import hash_pickle, join_with_underscores  # noqa: E402

GIT = shutil.which("git")


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git configuration leaks into a test (as dulwich's test suite does)."""
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.org")


def git(*args: str, cwd: str | Path | None = None, check: bool = True) -> str:
    """Run the real git binary; return stdout."""
    assert GIT is not None, "the tests need git"
    result = subprocess.run([GIT, *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


POSTGRES_URL = os.environ.get("GITSTORE_TEST_POSTGRES", "postgresql:///gitstore_test")
HOW_TO_POSTGRES = (
    "PostgreSQL tests need a server: pg_ctlcluster 15 main start, a role for this user and a "
    "database gitstore_test (see .ci/run), or GITSTORE_TEST_POSTGRES=postgresql://user@host/db")


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL.replace("postgresql:///", "dbname=", 1)
                             if POSTGRES_URL.startswith("postgresql:///") else POSTGRES_URL,
                             connect_timeout=3):
            return True
    except Exception:
        return False


def fresh_postgres(p: Path) -> DjangoORMDataStore:
    if not postgres_available():
        pytest.skip(HOW_TO_POSTGRES)
    store = DjangoORMDataStore(POSTGRES_URL, p / "pgdata")
    from django.db import connections

    with connections[store.alias].cursor() as cursor:
        cursor.execute("TRUNCATE gitstore_dataitem, gitstore_componentstate_inputs, "
                       "gitstore_componentstate, gitstore_componenttype CASCADE")
    return store


def reopen_postgres(p: Path) -> DjangoORMDataStore:
    return DjangoORMDataStore(POSTGRES_URL, p / "pgdata")


# One factory per backend: the contract suite runs on every one of them.
BACKENDS: dict[str, Callable[[Path], AbstractDataStore]] = {
    "git": lambda p: GitDataStore(p / "store.git"),
    "git-in-worktree": lambda p: _git_in_worktree(p),
    "shelve-underscores": lambda p: ShelveDataStore(p / "shelf", join_with_underscores),
    "shelve-hashpickle": lambda p: ShelveDataStore(p / "shelf", hash_pickle),
    "django-sqlite": lambda p: DjangoORMDataStore(f"sqlite:///{p}/index.db", p / "data"),
    "django-postgres": lambda p: (reopen_postgres(p) if (p / "pgdata").exists()
                                  else fresh_postgres(p)),
}


def _git_in_worktree(p: Path) -> GitDataStore:
    repo = p / "project"
    if not (repo / ".git").exists():
        repo.mkdir()
        git("init", "-q", str(repo))
    return GitDataStore(repo)


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    s = BACKENDS[request.param](tmp_path)
    yield s
    s.close()


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    return lambda: BACKENDS[request.param](tmp_path)
