"""What a network push sends (every object the remote lacks, once, nothing it holds) and what
a pull receives (what is new, not the whole history again).

Stores are built one commit per store (the common case), with removed entries, entries stored
again, values changed, a second version and merges. The pack git daemon receives is kept
(``receive.unpackLimit=1``) and its objects compared with ``git rev-list --objects NEW --not
OLD`` run on the pushing store, git's own answer to "what does the remote lack"; then the
remote passes ``git fsck --strict`` and a fresh store pulling from it reads every entry.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon

from gitstore import GitDataStore


def C(x: int, version: str = "v1") -> SimpleComponent:
    return SimpleComponent({"x": x}, version=version)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A bare repository served by git daemon that keeps every pack it receives."""
    base = tmp_path / "served"
    base.mkdir()
    remote = base / "results.git"
    git("init", "-q", "--bare", str(remote))
    git("--git-dir", str(remote), "config", "receive.unpackLimit", "1")
    with git_daemon(base) as prefix:
        yield remote, prefix + "results.git"


def packs(gitdir: Path) -> set[str]:
    return {p.name for p in (gitdir / "objects" / "pack").glob("*.idx")}


def pack_objects(gitdir: Path, idx_names: set[str]) -> list[str]:
    """The ids in these packs, with repeats (an object sent twice appears twice)."""
    out = []
    for name in sorted(idx_names):
        with open(gitdir / "objects" / "pack" / name, "rb") as f:
            listing = subprocess.run(["git", "show-index"], stdin=f, capture_output=True,
                                     text=True, check=True).stdout
        out.extend(line.split()[1] for line in listing.splitlines())
    return out


def remote_tips(remote: Path) -> list[str]:
    return git("--git-dir", str(remote), "for-each-ref", "--format=%(objectname)",
               "refs/gitstore/").split()


def lacking(store: GitDataStore, new: list[str], old: list[str]) -> set[str]:
    """git's own answer: the objects reachable from ``new`` and not from ``old``."""
    listing = git("--git-dir", str(store.gitdir), "rev-list", "--objects", *new,
                  *(["--not", *old] if old else []))
    return {line.split()[0] for line in listing.splitlines()}


def push_and_compare(store: GitDataStore, remote: Path, url: str) -> list[str]:
    """Push; assert the packs received hold exactly what git says the remote lacked."""
    before_packs, before_tips = packs(remote), remote_tips(remote)
    loose_before = set((remote / "objects").glob("??/*"))
    store.push(url)
    assert set((remote / "objects").glob("??/*")) == loose_before  # all came in packs
    sent = pack_objects(remote, packs(remote) - before_packs)
    expected = lacking(store, remote_tips(remote), before_tips)
    assert len(sent) == len(set(sent)), "an object was sent twice"
    assert set(sent) - expected == set(), "sent objects the remote had"
    assert expected - set(sent) == set(), "the remote still lacks objects"
    return sent


def check_remote(remote: Path, tmp_path: Path, expect: dict[tuple[int, str], object]) -> None:
    git("--git-dir", str(remote), "fsck", "--strict", "--no-dangling")
    fresh = GitDataStore(tmp_path / f"fresh-{len(list(tmp_path.iterdir()))}")
    fresh.pull(str(remote))
    for (x, version), value in expect.items():
        assert fresh.retrieve(C(x, version), "value") == value, (x, version)
    fresh.close()


def test_one_commit_per_store_history_sends_exactly_what_the_remote_lacks(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    remote, url = served
    a = GitDataStore(tmp_path / "a")
    expect: dict[tuple[int, str], object] = {}

    def put(x: int, value: object, version: str = "v1") -> None:
        a.store(C(x, version), "value", value)
        expect[(x, version)] = value

    for i in range(30):
        put(i, [i, "first"])
    for i in range(5):
        put(i, [i, "second version"], "v2")
    sent = push_and_compare(a, remote, url)  # into an empty remote: everything, once
    assert len(sent) > 35 * 3
    check_remote(remote, tmp_path, expect)

    # removals, an entry stored again as it was (its trees are the remote's again), changes
    a.delete(C(3))
    a.delete(C(4))
    put(3, [3, "first"])  # the remote holds this entry's objects at the same place
    put(6, [6, "changed"])
    a.store(C(7), "extra", {"more": 7})
    for i in range(30, 40):
        put(i, [i, "first"])
    push_and_compare(a, remote, url)
    expect[(4, "v1")] = None
    check_remote(remote, tmp_path, expect)

    # back to the remote's exact state after a detour: the detour's trees and two commits
    a.delete(C(30))
    put(30, [30, "first"])
    sent = push_and_compare(a, remote, url)
    kinds = [git("--git-dir", str(a.gitdir), "cat-file", "-t", sha).strip() for sha in sent]
    assert kinds.count("commit") == 2 and "blob" not in kinds
    tip_tree = git("--git-dir", str(a.gitdir), "rev-parse", "refs/gitstore/versions/v1^{tree}")
    assert tip_tree.strip() not in sent


def test_merged_histories_send_only_what_the_remote_lacks(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    remote, url = served
    a, b = GitDataStore(tmp_path / "a"), GitDataStore(tmp_path / "b")
    expect: dict[tuple[int, str], object] = {}
    for i in range(10):
        a.store(C(i), "value", [i, "a"])
        expect[(i, "v1")] = [i, "a"]
    push_and_compare(a, remote, url)
    b.pull(url)
    for i in range(100, 110):  # the other machine adds, removes and pushes first
        b.store(C(i), "value", [i, "b"])
        expect[(i, "v1")] = [i, "b"]
    b.delete(C(0))
    expect[(0, "v1")] = None
    b.store(C(0, "v3"), "value", "b's own version")
    expect[(0, "v3")] = "b's own version"
    push_and_compare(b, remote, url)
    for i in range(200, 210):
        a.store(C(i), "value", [i, "a"])
        expect[(i, "v1")] = [i, "a"]
    a.pull(url)  # a merge commit joins the two histories
    a.store(C(300), "value", "after the merge")
    expect[(300, "v1")] = "after the merge"
    sent = push_and_compare(a, remote, url)
    merges = [sha for sha in sent if git("--git-dir", str(a.gitdir), "cat-file", "-t",
                                         sha).strip() == "commit" and
              len(git("--git-dir", str(a.gitdir), "rev-list", "--parents", "-n1",
                      sha).split()) == 3]
    assert len(merges) == 1
    check_remote(remote, tmp_path, expect)
    # the other side pulls that merge and pushes on top of it
    b.pull(url)
    b.store(C(400), "value", "b again")
    expect[(400, "v1")] = "b again"
    push_and_compare(b, remote, url)
    check_remote(remote, tmp_path, expect)


def test_identical_values_under_many_keys_are_sent_once(
        tmp_path: Path, served: tuple[Path, str]) -> None:
    remote, url = served
    a = GitDataStore(tmp_path / "a")
    for i in range(20):
        a.store(C(i), "value", "the same bytes")
    push_and_compare(a, remote, url)
    check_remote(remote, tmp_path, {(i, "v1"): "the same bytes" for i in range(20)})


def test_push_from_a_store_git_repacked_into_deltas(tmp_path: Path,
                                                    served: tuple[Path, str]) -> None:
    """After ``git repack`` the store's objects are deltas: they are resolved and sent whole
    (no thin pack), and the walk reads its trees through them."""
    remote, url = served
    a = GitDataStore(tmp_path / "a")
    expect: dict[tuple[int, str], object] = {}
    for i in range(20):
        a.store(C(i), "value", [i] * 50)
        expect[(i, "v1")] = [i] * 50
    a.gc()
    git("--git-dir", str(a.gitdir), "repack", "-adf", "-q")
    assert any(line.split()[1] in ("tree", "blob") and len(line.split()) > 5
               for idx in (Path(a.gitdir) / "objects" / "pack").glob("*.idx")
               for line in git("verify-pack", "-v", str(idx)).splitlines()
               if len(line.split()) > 1), "the repack made no deltas"
    push_and_compare(a, remote, url)
    check_remote(remote, tmp_path, expect)


def test_path_push_of_a_one_commit_per_store_history_is_complete(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    a = GitDataStore(tmp_path / "a")
    expect: dict[tuple[int, str], object] = {}
    for i in range(20):
        a.store(C(i), "value", [i])
        expect[(i, "v1")] = [i]
    a.push(str(remote))
    a.delete(C(2))
    expect[(2, "v1")] = None
    a.store(C(5), "value", "changed")
    expect[(5, "v1")] = "changed"
    a.push(str(remote))
    check_remote(remote, tmp_path, expect)
    assert os.listdir(remote / "refs")  # plain git sees the refs


def test_pull_over_git_receives_only_what_is_new(tmp_path: Path,
                                                 served: tuple[Path, str]) -> None:
    """The fetch offers the store's own refs as common commits: the remote sends the new
    entries' objects, not the whole history again."""
    remote, url = served
    a, b = GitDataStore(tmp_path / "a"), GitDataStore(tmp_path / "b")
    for i in range(30):
        a.store(C(i), "value", [i, "old"])
    a.push(url)
    b.pull(url)
    old_tip = remote_tips(remote)
    for i in range(30, 33):
        a.store(C(i), "value", [i, "new"])
    a.push(url)
    before = packs(Path(b.gitdir))
    b.pull(url)
    received = pack_objects(Path(b.gitdir), packs(Path(b.gitdir)) - before)
    expected = lacking(a, remote_tips(remote), old_tip)
    assert expected <= set(received)
    # a thin pack's bases may be added to complete it; the old history is not sent again
    assert len(received) <= 2 * len(expected), (len(received), len(expected))
    assert [b.retrieve(C(i), "value") for i in range(33)] == \
        [[i, "old"] for i in range(30)] + [[i, "new"] for i in range(30, 33)]


def test_incremental_pull_without_the_git_binary(tmp_path: Path) -> None:
    """Without git, dulwich completes the (thin) pack of what is new from the store's own
    objects."""
    import sys

    from test_remotes import FETCH_WITHOUT_GIT

    base = tmp_path / "served"
    base.mkdir()
    a = GitDataStore(base / "r.git")
    for i in range(5):
        a.store(C(i), "value", [i] * 30)
    script = tmp_path / "fetch.py"
    script.write_text(FETCH_WITHOUT_GIT.format(tests=str(Path(__file__).parent)))
    env = {"PATH": os.path.dirname(sys.executable), "HOME": str(tmp_path)}
    with git_daemon(base) as prefix:
        first = subprocess.run([sys.executable, str(script), str(tmp_path / "b"),
                                prefix + "r.git"], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        a.store(C(4), "value", [4] * 31)  # a near copy: a delta against what b has
        for i in range(5, 8):
            a.store(C(i), "value", [i] * 30)
        second = subprocess.run([sys.executable, str(script), str(tmp_path / "b"),
                                 prefix + "r.git"], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["{'v1': 'fast-forward'}", str([4] * 31)]
    git("--git-dir", str(tmp_path / "b"), "fsck", "--strict", "--no-dangling")


@pytest.mark.parametrize("ofs_delta", [True, False])
def test_the_pack_a_push_builds_is_indexed_and_checked_by_git(tmp_path: Path,
                                                              ofs_delta: bool) -> None:
    """Trees go as deltas against their parent's (OFS_DELTA, or REF_DELTA to a base in the same
    pack when the remote does not take those), in chains of at most 50 as git's pack.depth."""
    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.pack import PackChunkGenerator

    from gitstore._git.packgen import generate_pack_data

    a = GitDataStore(tmp_path / "a")
    for i in range(120):
        a.store(C(i), "value", [i])
    tips = {line.encode() for line in remote_tips(Path(a.gitdir))}
    count, records = generate_pack_data(a._db())(set(), tips, ofs_delta=ofs_delta)
    pack = b"".join(PackChunkGenerator(num_records=count, records=records,
                                       object_format=DEFAULT_OBJECT_FORMAT))
    bare = tmp_path / "r.git"
    git("init", "-q", "--bare", str(bare))
    subprocess.run(["git", "--git-dir", str(bare), "index-pack", "--stdin", "--strict"],
                   input=pack, check=True, capture_output=True)
    (idx,) = (bare / "objects" / "pack").glob("*.idx")
    rows = [line.split() for line in git("verify-pack", "-v", str(idx)).splitlines()
            if len(line.split()) in (5, 7) and len(line.split()[0]) == 40]
    assert len(rows) == count == len(lacking(a, sorted(t.decode() for t in tips), []))
    depths = [int(row[5]) for row in rows if len(row) == 7]
    assert depths and max(depths) <= 50
    for ref in git("--git-dir", str(a.gitdir), "for-each-ref", "--format=%(refname) %(objectname)",
                   "refs/gitstore/").splitlines():
        git("--git-dir", str(bare), "update-ref", *ref.split())
    git("--git-dir", str(bare), "fsck", "--strict", "--no-dangling")


def test_commits_of_one_second_the_remote_holds_are_not_sent_again(tmp_path: Path) -> None:
    """Every commit made in the same second (a store's usual case): the walk cannot order them
    by date, and must still find that the new history joins the remote's below a long run of
    the remote's own commits."""
    from gitstore._git.packgen import missing_objects

    store = GitDataStore(tmp_path / "s")
    gitdir = str(store.gitdir)
    env = dict(os.environ, GIT_AUTHOR_DATE="1700000000 +0000",
               GIT_COMMITTER_DATE="1700000000 +0000", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")

    def commit(name: str, *parents: str) -> str:
        blob = subprocess.run(["git", "--git-dir", gitdir, "hash-object", "-w", "--stdin"],
                              input=name, capture_output=True, text=True, check=True,
                              env=env).stdout.strip()
        tree = subprocess.run(["git", "--git-dir", gitdir, "mktree"],
                              input=f"100644 blob {blob}\t{name}\n", capture_output=True,
                              text=True, check=True, env=env).stdout.strip()
        args = [a for p in parents for a in ("-p", p)]
        return subprocess.run(["git", "--git-dir", gitdir, "commit-tree", tree, *args,
                               "-m", name], capture_output=True, text=True, check=True,
                              env=env).stdout.strip()

    base = [commit("a0")]
    for i in range(1, 6):
        base.append(commit(f"a{i}", base[-1]))
    theirs = [base[-1]]
    for i in range(10):  # the remote's long run since the common history
        theirs.append(commit(f"r{i}", theirs[-1]))
    ours = commit("w1", base[-1])
    merge = commit("m", ours, theirs[-1])
    sent = {sha.decode() for _t, sha in missing_objects(store._db(), {merge.encode()},
                                                         {theirs[-1].encode()})}
    assert sent == lacking(store, [merge], [theirs[-1]])
    assert not set(base) & sent
