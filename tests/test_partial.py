"""Partial fetch (issue 15, item 4): blobs over a limit stay on the remote until first read.

Real servers: ``git daemon`` and git's smart HTTP with ``uploadpack.allowFilter``, one without
it, a lying server answering a blob request with another blob, a promisor that vanished.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon, http_server, lying_server

from gitstore import GitDataStore
from gitstore._yaml import load
from gitstore.errors import NotFetchedError, PartialFetchWarning, RemoteError, StoreError

N = 6
BIG = 20_000  # float64 values: 160 kB, over the 1k limit used here


def C(i: int) -> SimpleComponent:
    return SimpleComponent({"i": i}, version="v1")


def big(i: int) -> np.ndarray:
    return np.arange(BIG, dtype=np.float64) + i


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A store (bare repository) with N entries, each a large array and a small note, served
    with filters allowed."""
    base = tmp_path / "served"
    base.mkdir()
    with GitDataStore(base / "results.git") as theirs:
        with theirs.batch():
            for i in range(N):
                theirs.store(C(i), "rates", big(i))
                theirs.store(C(i), "note", f"entry {i}")
    git("-C", str(base / "results.git"), "config", "uploadpack.allowFilter", "true")
    return base


@pytest.fixture(params=["git", "http"])
def url(request: pytest.FixtureRequest, served: Path) -> Iterator[str]:
    serve = git_daemon if request.param == "git" else http_server
    with serve(served) as prefix:
        yield prefix + "results.git"


def _absent(store: GitDataStore) -> list[str]:
    """Blob ids the store's trees name and its objects lack (git's own view)."""
    out = subprocess.run(["git", "--git-dir", store.gitdir, "rev-list", "--objects",
                          "--missing=print", "--all"], capture_output=True, text=True,
                         check=True).stdout
    return [line[1:] for line in out.splitlines() if line.startswith("?")]


def test_attributes_record_sizes_and_codecs(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s") as store:
        store.store(C(1), "rates", big(1))
        store.store(C(1), "note", "hello")
        store.store(C(1), "rates", big(1)[:10])  # replaced: its record follows
        entry = next(store.entries())
        record = entry.component["attributes"]
        assert record == {"note": {"size": 5, "codec": "txt"},
                          "rates": {"size": store.attributes(entry)["rates"]["size"],
                                    "codec": "npy"}}
        assert record["rates"]["size"] == 128 + 80
        store.delete(C(1), "note")
        store.store(C(1), "more", b"xy")  # a deleted attribute leaves the record
        record = next(store.entries()).component["attributes"]
        assert sorted(record) == ["more", "rates"]


def test_partial_fetch_reads_on_demand(tmp_path: Path, url: str) -> None:
    with GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", url)
        ours.pull("origin", filter="blob:limit=1k")
        assert ours.promisors() == {"origin": "blob:limit=1k"}
        config = subprocess.run(["git", "--git-dir", ours.gitdir, "config", "-l"],
                                capture_output=True, text=True, check=True).stdout
        assert "remote.origin.promisor=true" in config
        assert len(_absent(ours)) == N  # the large arrays stayed behind
        # listing needs no blob: sizes and codecs from component.yaml
        sized = dict(ours.entries_sized())
        assert len(sized) == N
        assert all(s["rates"] == BIG * 8 + 128 for s in sized.values())
        entry = next(iter(sized))
        assert ours.attributes(entry)["rates"]["codec"] == "npy"
        assert ours.verify() == []  # absent is not corrupt
        assert ours.stats()["not_fetched"] == N
        noted: list[str] = []
        ours.verify(not_fetched=noted)
        assert len(noted) == N and "not fetched" in noted[0]
        assert len(_absent(ours)) == N  # and verify fetched nothing
        # first read: fetched, checked, kept
        np.testing.assert_array_equal(ours.retrieve(C(3), "rates"), big(3))
        assert len(_absent(ours)) == N - 1
        # real git understands the store: fsck passes with promised blobs absent
        fsck = subprocess.run(["git", "--git-dir", ours.gitdir, "fsck", "--strict"],
                              capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stderr


def test_verify_fetch_and_checkout_fetch_what_they_need(tmp_path: Path, served: Path) -> None:
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        ours.pull("origin", filter="blob:none")
        assert ours.promisors() == {"origin": "blob:none"}
        assert len(list(ours.entries())) == N  # descriptions came with the fetch
        ours.checkout("v1", tmp_path / "out")
        files = sorted((tmp_path / "out").rglob("rates.npy"))
        assert len(files) == N
        assert _absent(ours) == []
        assert ours.verify(fetch=True) == []


def test_gc_keeps_blobs_fetched_on_demand(tmp_path: Path, served: Path) -> None:
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        ours.pull("origin", filter="blob:limit=1k")
        np.testing.assert_array_equal(ours.retrieve(C(2), "rates"), big(2))
        ours.store(C(100), "rates", big(100))  # a local result in a partial store
    # the promisor is gone: gc must neither fetch nor drop anything
    with GitDataStore(tmp_path / "ours") as ours:
        ours.gc()
        assert len(_absent(ours)) == N - 1
        np.testing.assert_array_equal(ours.retrieve(C(2), "rates"), big(2))
        np.testing.assert_array_equal(ours.retrieve(C(100), "rates"), big(100))
        assert ours.verify() == []


def test_vanished_promisor_is_a_typed_error_and_the_store_stays_usable(
        tmp_path: Path, served: Path) -> None:
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        ours.pull("origin", filter="blob:limit=1k")
    with GitDataStore(tmp_path / "ours") as ours:  # the daemon has stopped
        with pytest.raises(NotFetchedError) as info:
            ours.retrieve(C(1), "rates")
        assert isinstance(info.value, RemoteError) and len(info.value.object_ids) == 1
        assert ours.retrieve(C(1), "note") == "entry 1"  # small: fetched with the rest
        ours.store(C(1), "extra", 5)
        assert ours.retrieve(C(1), "extra") == 5
        assert len(list(ours.entries())) == N
        with pytest.raises(NotFetchedError):
            ours.checkout("v1", tmp_path / "out")
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.npy"))


def test_a_server_without_filters_sends_everything_and_says_so(tmp_path: Path,
                                                               served: Path) -> None:
    git("-C", str(served / "results.git"), "config", "uploadpack.allowFilter", "false")
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        with pytest.warns(PartialFetchWarning, match="does not allow filters"):
            ours.pull("origin", filter="blob:limit=1k")
        assert _absent(ours) == []
        assert ours.promisors() == {}
        assert ours.verify() == []


def test_a_wrong_blob_for_a_requested_id_is_refused(tmp_path: Path, served: Path) -> None:
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        ours.pull("origin", filter="blob:limit=1k")
    # the promisor's URL now leads to a server that answers with another blob
    other = tmp_path / "other.git"
    git("init", "-q", "--bare", str(other))
    blob = subprocess.run(["git", "--git-dir", str(other), "hash-object", "-w", "--stdin"],
                          input=b"not what was asked" * 100, capture_output=True,
                          check=True).stdout.strip()
    pack = subprocess.run(["git", "--git-dir", str(other), "pack-objects", "--stdout"],
                          input=blob + b"\n", capture_output=True, check=True).stdout
    with lying_server([(blob, b"refs/heads/main")], pack) as lies:
        git("--git-dir", str(tmp_path / "ours"), "config", "remote.origin.url", lies)
        with GitDataStore(tmp_path / "ours") as ours:
            before = sorted(os.listdir(Path(ours.gitdir) / "objects" / "pack"))
            with pytest.raises(NotFetchedError, match="did not send"):
                ours.retrieve(C(1), "rates")
            assert sorted(os.listdir(Path(ours.gitdir) / "objects" / "pack")) == before
            assert blob.decode() not in subprocess.run(
                ["git", "--git-dir", ours.gitdir, "cat-file", "--batch-all-objects",
                 "--batch-check"], capture_output=True, text=True).stdout
            assert ours.verify() == []


def test_filters_are_checked_and_need_a_named_remote(tmp_path: Path, served: Path) -> None:
    with GitDataStore(tmp_path / "ours") as ours:
        with pytest.raises(StoreError, match="filter is"):
            ours.fetch(str(served / "results.git"), filter="tree:0")
        with pytest.raises(StoreError, match="named remote"):
            ours.fetch("git://127.0.0.1:1/x.git", filter="blob:none")


def test_a_description_record_from_a_remote_is_display_only(tmp_path: Path) -> None:
    """A hostile record (wrong types, absurd sizes) never breaks listing."""
    with GitDataStore(tmp_path / "s") as store:
        store.store(C(1), "rates", big(1))
        entry = next(store.entries())
        text = (tmp_path / "c.yaml")
        description = dict(entry.component)
        description["attributes"] = {"rates": {"size": "huge", "codec": ["x"]},
                                     "ghost": {"size": 10**30, "codec": "npy"}}
        from gitstore import _yaml
        text.write_text(_yaml.dump(description))
        assert load(text.read_text())["attributes"]["ghost"]["size"] == 10**30
        from gitstore.backends._attributes import recorded
        assert recorded(load(text.read_text())) == {"ghost": (10**30, "npy")}
        assert recorded({"attributes": {"a": {"size": True, "codec": "npy"}}}) == {}


def test_command_line_on_a_partial_store(tmp_path: Path, served: Path) -> None:
    from typer.testing import CliRunner

    from gitstore_cli.main import app

    runner = CliRunner()
    store = str(tmp_path / "ours")
    with git_daemon(served) as prefix:
        with GitDataStore(store) as ours:
            ours.remote_add("origin", prefix + "results.git")
        done = runner.invoke(app, ["--store", store, "pull", "origin",
                                   "--filter", "blob:limit=1k"])
        assert done.exit_code == 0, done.output
        listed = runner.invoke(app, ["--store", store, "ls", "--json"])
        assert listed.exit_code == 0, listed.output
        key = json.loads(listed.stdout)[0]["key"]
        shown = runner.invoke(app, ["--store", store, "show", key])
        assert shown.exit_code == 0 and "npy" in shown.output, shown.output
        checked = runner.invoke(app, ["--store", store, "verify"])
        assert checked.exit_code == 0 and f"not fetched: {N} attribute" in checked.output
        with GitDataStore(store) as ours:
            assert len(_absent(ours)) == N
        fetched = runner.invoke(app, ["--store", store, "verify", "--fetch"])
        assert fetched.exit_code == 0 and "not fetched" not in fetched.output
    with GitDataStore(store) as ours:
        assert _absent(ours) == []
    bad = runner.invoke(app, ["--store", store, "fetch", "origin", "--filter", "sparse:x"])
    assert bad.exit_code == 1 and "filter is" in bad.output


def test_a_merge_keeps_the_record_in_step_with_the_files(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    with GitDataStore(remote) as base:
        base.store(C(1), "rates", big(1)[:10])
    with GitDataStore(tmp_path / "a") as a, GitDataStore(tmp_path / "b") as b:
        a.pull(str(remote))
        b.pull(str(remote))
        b.store(C(1), "rates", big(1))  # theirs: the same attribute, now larger
        b.push(str(remote))
        a.store(C(1), "note", "mine")  # ours: another attribute of the same entry
        assert a.pull(str(remote)) == {"v1": "merged"}
        entry = next(a.entries())
        assert entry.component["attributes"] == {
            "note": {"size": 4, "codec": "txt"},
            "rates": {"size": BIG * 8 + 128, "codec": "npy"}}
        assert entry.key == next(b.entries()).key


def test_pushing_a_partial_store_elsewhere_sends_whole_versions(tmp_path: Path,
                                                                served: Path) -> None:
    git("init", "-q", "--bare", str(served / "other.git"))
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        ours.pull("origin", filter="blob:none")
        ours.push(prefix + "other.git")
    with GitDataStore(tmp_path / "copy") as copy:
        copy.pull(str(served / "other.git"))
        np.testing.assert_array_equal(copy.retrieve(C(4), "rates"), big(4))
        assert copy.verify() == []


def test_partial_fetch_without_git(tmp_path: Path, served: Path) -> None:
    """Where git is not installed: dulwich indexes the packs, the pure-Python walk lets
    promised blobs be absent (and nothing else)."""
    import sys

    import gitstore
    from dulwich.repo import Repo

    from gitstore._git.connectivity import check_connected

    script = (
        "import sys, shutil; sys.path.insert(0, sys.argv[3])\n"
        "assert shutil.which('git') is None\n"
        "from gitstore import GitDataStore\n"
        "from components import SimpleComponent\n"
        "with GitDataStore(sys.argv[1]) as s:\n"
        "    s.remote_add('origin', sys.argv[2])\n"
        "    s.pull('origin', filter='blob:limit=1k')\n"
        "    assert s.verify() == []\n"
        "    print(s.stats()['not_fetched'], s.retrieve(SimpleComponent({'i': 2}, "
        "version='v1'), 'rates')[:2].tolist())\n")
    env = {"PATH": os.path.dirname(sys.executable), "HOME": str(tmp_path),
           "PYTHONPATH": os.path.dirname(os.path.dirname(gitstore.__file__))}
    with git_daemon(served) as prefix:
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ours"),
                               prefix + "results.git", str(Path(__file__).parent)],
                              env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(N)
    assert done.stdout.strip().endswith("[2.0, 3.0]")
    with GitDataStore(tmp_path / "ours") as ours, Repo(ours.gitdir) as repo:
        tip = {"refs/gitstore/versions/v1": bytes.fromhex(
            ours.log(version="v1")[0].id).hex().encode()}
        check_connected(repo.object_store, tip, [], partial=True)
        with pytest.raises(RemoteError, match="incomplete history"):
            check_connected(repo.object_store, tip, [])


def test_blobs_read_one_by_one_merge_into_promisor_packs_that_gc_keeps(tmp_path: Path) -> None:
    base = tmp_path / "served"
    many = 40
    with GitDataStore(base / "r.git") as theirs, theirs.batch():
        for i in range(many):
            theirs.store(C(i), "rates", np.arange(300.0) + i)  # 2.5 kB: over the limit
    git("-C", str(base / "r.git"), "config", "uploadpack.allowFilter", "true")
    packs = tmp_path / "ours" / "objects" / "pack"
    with git_daemon(base) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "r.git")
        ours.pull("origin", filter="blob:limit=1k")
        for i in range(many):  # one request, one pack each
            assert ours.retrieve(C(i), "rates")[0] == i
        names = os.listdir(packs)
        idx = [n for n in names if n.endswith(".idx")]
        assert len(idx) < many // 2  # merged
        assert all(n[:-4] + ".promisor" in names for n in idx)  # and still promisor packs
    with GitDataStore(tmp_path / "ours") as ours:  # the remote is gone
        ours.gc()
        assert [ours.retrieve(C(i), "rates")[0] for i in range(many)] == list(range(many))
        assert _absent(ours) == []
