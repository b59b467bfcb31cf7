"""Sharing results through real git remotes: paths, file://, git daemon, smart HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon, http_server

from gitstore import GitDataStore, key_of
from gitstore.errors import EntryNotFoundError, MergeConflictError, RemoteError


def C(x: int, version: str = "v1") -> SimpleComponent:
    return SimpleComponent({"x": x}, version=version)


@pytest.fixture(params=["path", "file", "git", "http"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "results.git"))
    if request.param == "path":
        yield str(base / "results.git")
    elif request.param == "file":
        yield (base / "results.git").as_uri()
    elif request.param == "git":
        with git_daemon(base) as prefix:
            yield prefix + "results.git"
    else:
        with http_server(base) as prefix:
            yield prefix + "results.git"


def test_push_fetch_pull_round_trip(tmp_path: Path, remote_url: str) -> None:
    a = GitDataStore(tmp_path / "a")
    b = GitDataStore(tmp_path / "b")
    a.remote_add("origin", remote_url)
    assert a.remotes() == {"origin": remote_url}
    for i in range(5):
        a.store(C(i), "value", i)
    a.store(C(0, "v2"), "value", "other version")
    pushed = a.push("origin")
    assert set(pushed) == {"v1", "v2"}
    assert b.pull(remote_url) == {"v1": "created", "v2": "created"}
    assert [b.retrieve(C(i), "value") for i in range(5)] == list(range(5))
    # the other side adds, the first pulls: a fast-forward
    b.store(C(10), "value", 10)
    b.push(remote_url)
    assert a.pull("origin")["v1"] == "fast-forward"
    assert a.retrieve(C(10), "value") == 10
    a.remote_remove("origin")
    assert a.remotes() == {}


def test_pushed_refs_pass_git_fsck_and_clone(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    a = GitDataStore(tmp_path / "a")
    for i in range(3):
        a.store(C(i), "value", [i])
    a.push(str(remote))
    git("--git-dir", str(remote), "fsck", "--strict")
    clone = tmp_path / "clone.git"
    git("clone", "-q", "--mirror", str(remote), str(clone))
    assert GitDataStore(clone).retrieve(C(2), "value") == [2]


def test_pull_one_version_fetches_only_its_ref(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    a = GitDataStore(remote)
    a.store(C(1, "v1"), "value", 1)
    a.store(C(2, "v2"), "value", 2)
    b = GitDataStore(tmp_path / "b")
    assert b.pull(str(remote), version="v2") == {"v2": "created"}
    assert b.versions() == ["v2"]
    refs = git("--git-dir", str(tmp_path / "b"), "for-each-ref", "--format=%(refname)").split()
    assert all("v1" not in r for r in refs)
    with pytest.raises(EntryNotFoundError):
        b.pull(str(remote), version="v9")


def diverge(tmp_path: Path) -> tuple[GitDataStore, GitDataStore, Path]:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    a = GitDataStore(tmp_path / "a")
    for i in range(3):
        a.store(C(i), "value", i)
    a.push(str(remote))
    b = GitDataStore(tmp_path / "b")
    b.pull(str(remote))
    return a, b, remote


def test_three_way_merge_keeps_additions_and_deletions(tmp_path: Path) -> None:
    a, b, remote = diverge(tmp_path)
    a.store(C(100), "value", "from a")
    a.delete(C(0))                    # deleted on a, untouched on b: stays deleted
    b.store(C(200), "value", "from b")
    b.store(C(1), "extra", "b adds an attribute")
    a.push(str(remote))
    b.push(str(remote))               # refused, fetched, merged, pushed again
    a.pull(str(remote))
    for s in (a, b):
        assert s.retrieve(C(100), "value") == "from a"
        assert s.retrieve(C(200), "value") == "from b"
        assert s.retrieve(C(0), "value") is None
        assert s.retrieve(C(1), "extra") == "b adds an attribute"
        assert s.retrieve(C(2), "value") == 2
    parents = git("--git-dir", str(remote), "log", "-1", "--format=%P",
                  "refs/gitstore/versions/v1").split()
    assert len(parents) == 2  # a merge commit
    git("--git-dir", str(remote), "fsck", "--strict")


def test_conflict_is_reported_and_nothing_overwritten(tmp_path: Path) -> None:
    a, b, remote = diverge(tmp_path)
    a.store(C(1), "value", "a's bytes")
    b.store(C(1), "value", "b's bytes")
    a.push(str(remote))
    before = git("--git-dir", str(tmp_path / "b"), "rev-parse", "refs/gitstore/versions/v1")
    with pytest.raises(MergeConflictError) as info:
        b.pull(str(remote))
    assert info.value.conflicts == [f"{key_of(C(1))} value"]
    assert b.retrieve(C(1), "value") == "b's bytes"
    after = git("--git-dir", str(tmp_path / "b"), "rev-parse", "refs/gitstore/versions/v1")
    assert before == after
    with pytest.raises(MergeConflictError):
        b.push(str(remote))
    b.pull(str(remote), prefer="theirs")
    assert b.retrieve(C(1), "value") == "a's bytes"


def test_conflict_resolved_ours(tmp_path: Path) -> None:
    a, b, remote = diverge(tmp_path)
    a.store(C(1), "value", "a's bytes")
    b.store(C(1), "value", "b's bytes")
    b.delete(C(2))
    a.store(C(2), "value", "a changed what b deleted")
    a.push(str(remote))
    with pytest.raises(MergeConflictError) as info:
        b.pull(str(remote))
    assert len(info.value.conflicts) == 2
    b.push(str(remote), prefer="ours")
    c = GitDataStore(tmp_path / "c")
    c.pull(str(remote))
    assert c.retrieve(C(1), "value") == "b's bytes" and c.retrieve(C(2), "value") is None


WRITER = """
import sys
sys.path.insert(0, {tests!r})
from components import SimpleComponent
from gitstore import GitDataStore
store = GitDataStore(sys.argv[1])
worker = int(sys.argv[2])
for i in range(int(sys.argv[3])):
    store.store(SimpleComponent({{"worker": worker, "i": i}}, version="v1"), "value", [worker, i])
    if i % 3 == 2:
        store.push(sys.argv[4])
store.push(sys.argv[4])
"""


def test_four_machines_one_remote(tmp_path: Path) -> None:
    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "shared.git"))
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    with git_daemon(base) as prefix:
        url = prefix + "shared.git"
        procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"m{w}"),
                                   str(w), "12", url], stderr=subprocess.PIPE)
                 for w in range(4)]
        for p in procs:
            _out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()
    final = GitDataStore(base / "shared.git")
    for w in range(4):
        for i in range(12):
            assert final.retrieve(SimpleComponent({"worker": w, "i": i}, version="v1"),
                                  "value") == [w, i]
    git("--git-dir", str(base / "shared.git"), "fsck", "--strict")


def test_large_array_over_the_network(tmp_path: Path) -> None:
    """A large loose blob is streamed into the pushed pack, and fetched back intact."""
    import numpy as np

    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "big.git"))
    array = np.random.default_rng(5).random(3_000_000)  # 24 MB, a loose object
    a = GitDataStore(tmp_path / "a", lfs_threshold=None)  # in git (LFS: test_lfs.py)
    a.store(C(1), "array", array)
    with git_daemon(base) as prefix:
        a.push(prefix + "big.git")
        b = GitDataStore(tmp_path / "b", lfs_threshold=None)
        b.pull(prefix + "big.git")
    git("--git-dir", str(base / "big.git"), "fsck", "--strict")
    np.testing.assert_array_equal(b.retrieve(C(1), "array"), array)


def test_unreachable_remote_is_a_quick_clear_error(tmp_path: Path) -> None:
    from gitservers import free_port

    a = GitDataStore(tmp_path / "a")
    a.store(C(1), "value", 1)
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="127.0.0.1"):
        a.push(f"git://127.0.0.1:{free_port()}/nothing.git")
    with pytest.raises(RemoteError):
        a.fetch(str(tmp_path / "does-not-exist.git"))
    assert time.monotonic() - t0 < 30
    assert a.retrieve(C(1), "value") == 1


FETCH_WITHOUT_GIT = """
import shutil, sys
sys.path.insert(0, {tests!r})
assert shutil.which("git") is None, "this check needs a PATH without git"
from components import SimpleComponent
from gitstore import GitDataStore
store = GitDataStore(sys.argv[1])
print(store.pull(sys.argv[2]))
print(store.retrieve(SimpleComponent({{"x": 4}}, version="v1"), "value"))
"""


def test_fetch_without_the_git_binary(tmp_path: Path) -> None:
    """Without git on PATH, the pack is indexed by dulwich itself."""
    base = tmp_path / "served"
    base.mkdir()
    a = GitDataStore(base / "r.git")
    for i in range(5):
        a.store(C(i), "value", i * 10)
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_WITHOUT_GIT.format(tests=str(Path(__file__).parent)))
    env = {"PATH": os.path.dirname(sys.executable), "HOME": str(tmp_path)}
    with git_daemon(base) as prefix:
        out = subprocess.run([sys.executable, str(script), str(tmp_path / "b"),
                              prefix + "r.git"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["{'v1': 'created'}", "40"]
