"""Many writers pushing to one remote (issue 15 item 5), and refusals that are not "behind"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon, http_server

from gitstore import GitDataStore
from gitstore.errors import PushRefusedError, RemoteError


def C(x: int, version: str = "v1") -> SimpleComponent:
    return SimpleComponent({"x": x}, version=version)


@pytest.fixture(params=["git", "http"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(the served repository, its URL) over git daemon or smart HTTP."""
    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "r.git"))
    server = git_daemon(base) if request.param == "git" else http_server(base)
    with server as prefix:
        yield base / "r.git", prefix + "r.git"


REFUSING_HOOK = """#!/bin/sh
echo called >> "{log}"
echo "policy: results over 100 MB belong in LFS (refused by pre-receive)" >&2
exit 1
"""


def test_a_hook_refusal_is_reported_at_once_with_the_servers_message(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    repo, url = served
    log = tmp_path / "hook.log"
    hook = repo / "hooks" / "pre-receive"
    hook.write_text(REFUSING_HOOK.format(log=log))
    hook.chmod(0o755)
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    with pytest.raises(PushRefusedError) as info:
        a.push(url)
    message = str(info.value)
    assert "results over 100 MB belong in LFS" in message
    assert "pre-receive hook declined" in message
    assert "has no version" not in message
    assert info.value.refused == {"refs/gitstore/versions/v1": "pre-receive hook declined"}
    assert log.read_text().count("called") == 1  # never retried
    # the remote is as it was; the refusal is a RemoteError for callers catching that
    assert git("--git-dir", str(repo), "for-each-ref") == ""
    assert isinstance(info.value, RemoteError)


def test_a_hook_refusal_of_an_existing_version_is_not_taken_for_behind(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    """The version exists on the remote (so a pull would succeed): still one call, at once."""
    repo, url = served
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    a.push(url)
    log = tmp_path / "hook.log"
    hook = repo / "hooks" / "update"  # per ref: "hook declined"
    hook.write_text(REFUSING_HOOK.format(log=log))
    hook.chmod(0o755)
    a.store(C(2), "value", 2)
    with pytest.raises(PushRefusedError, match="hook declined"):
        a.push(url)
    assert log.read_text().count("called") == 1


def test_a_size_limit_is_a_refusal(tmp_path: Path, served: tuple[Path, str]) -> None:
    """receive.maxInputSize: the server stops reading the pack. It says why (a refusal), or,
    over git://, may hang up before saying it (git's own client then reports "the remote end
    hung up"): either way one error at once, never taken for "behind" and retried."""
    repo, url = served
    git("--git-dir", str(repo), "config", "receive.maxInputSize", "2000")
    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", os.urandom(100_000))  # incompressible: a 100 kB pack
    with pytest.raises(RemoteError) as info:
        a.push(url)
    if isinstance(info.value, PushRefusedError):
        assert "maximum allowed size" in str(info.value)
    else:
        assert "closed the connection" in str(info.value)
    assert "moving on" not in str(info.value)
    assert git("--git-dir", str(repo), "for-each-ref") == ""


WRITER = """
import json, sys
sys.path.insert(0, {tests!r})
from components import SimpleComponent
from gitstore import GitDataStore
from gitstore.errors import GitStoreError
store = GitDataStore(sys.argv[1])
worker, n, url = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
failures = []
for i in range(n):
    store.store(SimpleComponent({{"worker": worker, "i": i}}, version="v1"), "value", [worker, i])
    try:
        store.push(url)
    except GitStoreError as exc:
        failures.append(f"{{type(exc).__name__}}: {{exc}}")
print(json.dumps(failures))
"""


def writers(tmp_path: Path, served: tuple[Path, str], count: int, entries: int) -> None:
    """``count`` processes store ``entries`` each, pushing after every store: every push call
    succeeds and the remote holds everything."""
    repo, url = served
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"w{w}"), str(w),
                               str(entries), url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for w in range(count)]
    failures = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        assert p.returncode == 0, err.decode()
        failures += json.loads(out)
    assert failures == []
    final = GitDataStore(repo)
    for w in range(count):
        for i in range(entries):
            assert final.retrieve(SimpleComponent({"worker": w, "i": i}, version="v1"),
                                  "value") == [w, i]
    assert sum(1 for _ in final.entries("v1")) == count * entries
    # the markers of writers that asked to go first are gone with their push calls
    assert git("--git-dir", str(repo), "for-each-ref", "refs/gitstore/waiting/") == ""
    git("--git-dir", str(repo), "fsck", "--strict")


def test_three_writers_push_after_every_store(tmp_path: Path,
                                              served: tuple[Path, str]) -> None:
    writers(tmp_path, served, 3, 20)
