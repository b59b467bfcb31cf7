"""Credentials like git (issue 15 item 6), against a real smart-HTTP server with basic auth
(Apache where it runs, see tests/gitservers.py): passwords from the URL, ~/.netrc and git's
credential helpers; never printed, logged, committed or stored in plain text."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git
from gitservers import authenticated_http
from typer.testing import CliRunner

from gitstore import GitDataStore
from gitstore.errors import CredentialError, PlaintextCredentialWarning, RemoteError
from gitstore_cli.main import app

PASSWORD = "Pa55-w0rd-que-nadie-ve"
USERS = {"alice": PASSWORD}


def C(x: int, version: str = "v1") -> SimpleComponent:
    return SimpleComponent({"x": x}, version=version)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(the served repository, its URL without credentials)."""
    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "r.git"))
    with authenticated_http(base, USERS) as prefix:
        yield base / "r.git", prefix + "r.git"


def with_user(url: str, user: str = "alice", password: str | None = None) -> str:
    return url.replace("http://", f"http://{user}{':' + password if password else ''}@")


def nowhere(password: str, *folders: Path) -> None:
    """The password's bytes are in no file under these folders (objects inflated too:
    ``git grep`` cannot see into packs, so every object is read through ``git cat-file``)."""
    needle = password.encode()
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                assert needle not in Path(root, name).read_bytes(), Path(root, name)
        objects = git("--git-dir", str(folder), "cat-file", "--batch-all-objects",
                      "--batch-check=%(objectname)")
        for sha in objects.split():
            assert PASSWORD not in git("--git-dir", str(folder), "cat-file", "-p", sha)


def test_a_password_in_the_url_is_used_and_never_shown_stored_or_committed(
        tmp_path: Path, server: tuple[Path, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo, url = server
    secret_url = with_user(url, password=PASSWORD)
    a = GitDataStore(tmp_path / "a")
    b = GitDataStore(tmp_path / "b")
    a.store(C(1), "value", 1)
    a.push(secret_url)
    b.store(C(2), "value", 2)
    assert b.pull(secret_url) == {"v1": "merged"}  # a merge commit names the remote
    b.push(secret_url)
    assert a.pull(secret_url) == {"v1": "fast-forward"}
    assert a.retrieve(C(2), "value") == 2
    messages = git("--git-dir", str(b.gitdir), "log", "--format=%B", "refs/gitstore/versions/v1")
    assert "merge http://***@127.0.0.1" in messages
    # refused credentials: a clear error, the password in no part of it
    with pytest.raises(CredentialError) as info:
        a.push(with_user(url, password="wrong-" + PASSWORD))
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value.args)
    assert PASSWORD not in str(info.value.remote)
    # a remote that cannot be reached, named by a URL with a password
    with pytest.raises(RemoteError) as unreachable:
        a.push(with_user("http://127.0.0.1:9/r.git", password=PASSWORD))
    assert PASSWORD not in str(unreachable.value)
    nowhere(PASSWORD, Path(a.gitdir), Path(b.gitdir), repo)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


def test_no_credentials_is_a_credential_error_with_advice(tmp_path: Path,
                                                          server: tuple[Path, str]) -> None:
    _repo, url = server
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    with pytest.raises(CredentialError, match="credential helper"):
        a.push(url)
    with pytest.raises(CredentialError):
        a.fetch(url)


def test_netrc(tmp_path: Path, server: tuple[Path, str]) -> None:
    repo, url = server
    netrc = Path(os.environ["HOME"]) / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login alice password {PASSWORD}\n")
    netrc.chmod(0o600)
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    a.push(url)
    b = GitDataStore(tmp_path / "b")
    assert b.pull(url) == {"v1": "created"}
    nowhere(PASSWORD, Path(a.gitdir), Path(b.gitdir), repo)


def test_git_credential_helper_store_fills_approves_and_rejects(
        tmp_path: Path, server: tuple[Path, str]) -> None:
    """``credential.helper store``: the password comes from ~/.git-credentials for a URL with
    only a user (``http://alice@host``) or none; a refused one is erased from it, as git does."""
    repo, url = server
    git("config", "--global", "credential.helper", "store")
    saved = Path(os.environ["HOME"]) / ".git-credentials"
    saved.write_text(with_user(url.rsplit("/", 1)[0] + "/", password=PASSWORD) + "\n")
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    a.push(with_user(url))  # http://alice@host: the helper gives alice's password
    b = GitDataStore(tmp_path / "b")
    assert b.pull(url) == {"v1": "created"}  # no user: the helper gives one
    nowhere(PASSWORD, Path(a.gitdir), Path(b.gitdir), repo)
    saved.write_text(with_user(url.rsplit("/", 1)[0] + "/", password="stale") + "\n")
    with pytest.raises(CredentialError, match="refused the credentials"):
        b.pull(url)
    assert "stale" not in saved.read_text()  # rejected: erased


def test_remote_add_hands_the_password_to_the_helper_or_refuses(
        tmp_path: Path, server: tuple[Path, str]) -> None:
    repo, url = server
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    # no helper: refused, with advice; nothing written
    with pytest.raises(CredentialError, match="credential helper") as info:
        a.remote_add("origin", with_user(url, password=PASSWORD))
    assert PASSWORD not in str(info.value)
    assert a.remotes() == {}
    # a helper: the password goes there, the config keeps the user only
    git("config", "--global", "credential.helper", "store")
    a.remote_add("origin", with_user(url, password=PASSWORD))
    assert a.remotes() == {"origin": with_user(url)}
    assert PASSWORD in (Path(os.environ["HOME"]) / ".git-credentials").read_text()
    a.push("origin")
    nowhere(PASSWORD, Path(a.gitdir), repo)


def test_a_password_already_in_the_config_warns_and_is_masked(
        tmp_path: Path, server: tuple[Path, str]) -> None:
    _repo, url = server
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    git("--git-dir", str(a.gitdir), "config", "remote.origin.url",
        with_user(url, password=PASSWORD))  # as an older gitstore wrote it
    with pytest.warns(PlaintextCredentialWarning, match="origin"):
        shown = a.remotes()
    assert shown == {"origin": with_user(url, password="***")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlaintextCredentialWarning)
        a.push("origin")  # still works
    runner = CliRunner()
    result = runner.invoke(app, ["--store", str(tmp_path / "a"), "remote", "ls"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert f"origin  {with_user(url, password='***')}" in result.output
    lines = [line for line in result.output.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("gitstore: warning: ")
    result = runner.invoke(app, ["--store", str(tmp_path / "a"), "push",
                                 with_user(url, password="wrong" + PASSWORD)])
    assert result.exit_code == 1 and PASSWORD not in result.output
