"""What arrives from a remote is hostile until checked: ref names, histories, packs, files.

Every hostile remote here is built with the real git binary (or served as it is by ``git
daemon``, or by a server that says whatever it is told, for what git itself will not serve).
Each refused fetch must leave the local store exactly as it was: same refs, same object files,
no temporary files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon, lying_server

from gitstore import GitDataStore
from gitstore.errors import RemoteError


def C(x: int, version: str = "1.0") -> SimpleComponent:
    return SimpleComponent({"x": x}, version=version)


def rev(gitdir: Path, ref: str) -> str:
    return git("--git-dir", str(gitdir), "rev-parse", ref).strip()


def state(gitdir: Path) -> tuple[str, list[str]]:
    """Everything a fetch could change: every ref, every file under objects/."""
    refs = git("--git-dir", str(gitdir), "for-each-ref", "--format=%(objectname) %(refname)")
    files = sorted(str(p.relative_to(gitdir)) for p in (gitdir / "objects").rglob("*"))
    return refs, files


def no_temporaries(gitdir: Path) -> None:
    left = [p.name for p in (gitdir / "objects").rglob("tmp*")]
    assert left == [], left


def pack_of(gitdir: Path, *names: str, revs: bool = False) -> bytes:
    """A pack made by git: the objects named (with --revs: all they reach)."""
    args = ["git", "--git-dir", str(gitdir), "pack-objects", "--stdout"]
    if revs:
        args.append("--revs")
    return subprocess.run(args, input="\n".join(names).encode() + b"\n",
                          capture_output=True, check=True).stdout


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[GitDataStore]:
    """The local store: version 1.0 holds our result."""
    store = GitDataStore(tmp_path / "ours.git")
    store.store(C(1), "value", "ours")
    yield store
    store.close()


@pytest.fixture
def theirs(tmp_path: Path) -> Iterator[Path]:
    """A store that will serve as the remote: versions 1.0 (another entry) and 2.0."""
    path = tmp_path / "served" / "theirs.git"
    store = GitDataStore(path)
    store.store(C(3), "value", "theirs")
    store.store(C(2, "2.0"), "value", "two")
    store.close()
    return path


def add_packed_refs(gitdir: Path, lines: list[tuple[str, str]]) -> None:
    """Refs written by hand into packed-refs (git update-ref refuses such names)."""
    packed = gitdir / "packed-refs"
    old = packed.read_text() if packed.exists() else "# pack-refs with: peeled fully-peeled sorted\n"
    packed.write_text(old + "".join(f"{sha} {name}\n" for sha, name in lines))


def assert_untouched(store: GitDataStore, before: tuple[str, list[str]]) -> None:
    assert state(Path(store.gitdir)) == before
    no_temporaries(Path(store.gitdir))
    assert store.retrieve(C(1), "value") == "ours"
    assert [e.key for e in store.entries()]  # ls works
    git("--git-dir", store.gitdir, "fsck", "--strict")


# --- item 1: hostile ref names ----------------------------------------------------------------

HOSTILE = ["refs/gitstore/versions/../../../versions/1.0",
           "refs/gitstore/versions/../../../../../../escaped"]


def test_dotdot_ref_names_over_a_path_are_refused(ours: GitDataStore, theirs: Path,
                                                  tmp_path: Path) -> None:
    sha = rev(theirs, "refs/gitstore/versions/1.0")
    add_packed_refs(theirs, [(sha, name) for name in HOSTILE])
    before = state(Path(ours.gitdir))
    for attempt in (lambda: ours.fetch(str(theirs)), lambda: ours.pull(str(theirs))):
        with pytest.raises(RemoteError, match=r"versions/\.\./\.\./\.\./versions/1\.0"):
            attempt()
        assert_untouched(ours, before)
    assert not list(tmp_path.rglob("escaped"))
    # the good versions can still be pulled by name
    assert ours.pull(str(theirs), version="2.0") == {"2.0": "created"}
    assert ours.retrieve(C(2, "2.0"), "value") == "two"


def test_dotdot_ref_names_over_git_protocol_are_refused(ours: GitDataStore, theirs: Path,
                                                        tmp_path: Path) -> None:
    sha = rev(theirs, "refs/gitstore/versions/1.0")
    pack = pack_of(theirs, sha, revs=True)
    before = state(Path(ours.gitdir))
    refs = [(sha.encode(), name.encode()) for name in HOSTILE]
    with lying_server(refs, pack) as url:
        for attempt in (lambda: ours.fetch(url), lambda: ours.pull(url)):
            with pytest.raises(RemoteError, match=r"versions/\.\./\.\./\.\./versions/1\.0"):
                attempt()
            assert_untouched(ours, before)
    assert not list(tmp_path.rglob("escaped"))


def test_remote_names_that_would_leave_the_namespace_are_refused(ours: GitDataStore) -> None:
    from gitstore.errors import StoreError

    for name in ("..", ".hidden", "x.lock", "a..b"):
        with pytest.raises(StoreError):
            ours.remote_add(name, "/nowhere")
    assert ours.remotes() == {}


def test_ref_files_refuse_bad_names(tmp_path: Path) -> None:
    """Defense in depth: the ref layer itself never turns a bad name into a path."""
    from gitstore._git.refs import RefFiles
    from gitstore.errors import StoreError

    refs = RefFiles(str(tmp_path))
    for name in HOSTILE + ["refs/x/a.lock", "refs/x/" + "y" * 300, "refs//x", "refs/x/a b",
                           "refs/x/\udcff"]:
        with pytest.raises(StoreError, match="refused ref name"):
            refs.path(name)


# --- item 12: refs that are not a version gitstore can hold -----------------------------------

@pytest.fixture(params=["path", "git"])
def serve(request: pytest.FixtureRequest, theirs: Path) -> Iterator[str]:
    if request.param == "path":
        yield str(theirs)
    else:
        with git_daemon(theirs.parent) as prefix:
            yield prefix + theirs.name


@pytest.mark.parametrize("case", ["tree", "a and a/b", "300 characters", "tag"])
def test_unusable_remote_refs_are_refused(ours: GitDataStore, theirs: Path, serve: str,
                                          case: str) -> None:
    sha = rev(theirs, "refs/gitstore/versions/1.0")
    if case == "tree":
        bad = "refs/gitstore/versions/3.0"
        add_packed_refs(theirs, [(rev(theirs, sha + "^{tree}"), bad)])
    elif case == "a and a/b":
        bad = "refs/gitstore/versions/a/b"
        add_packed_refs(theirs, [(sha, "refs/gitstore/versions/a"), (sha, bad)])
    elif case == "300 characters":
        bad = "refs/gitstore/versions/" + "y" * 300
        add_packed_refs(theirs, [(sha, bad)])
    else:  # an annotated tag where a version's commit belongs
        bad = "refs/gitstore/versions/4.0"
        git("--git-dir", str(theirs), "tag", "-a", "-m", "a tag", "t", sha)
        add_packed_refs(theirs, [(rev(theirs, "refs/tags/t"), bad)])
    before = state(Path(ours.gitdir))
    with pytest.raises(RemoteError, match=bad[-40:].replace(".", r"\.")):
        ours.pull(serve)
    assert_untouched(ours, before)
    # one bad ref does not keep the others out: they are pulled by name
    assert ours.pull(serve, version="2.0") == {"2.0": "created"}
    assert ours.retrieve(C(2, "2.0"), "value") == "two"
    assert sorted(ours.versions()) == ["1.0", "2.0"]


# --- item 2: incomplete histories -------------------------------------------------------------

def commit_without(theirs: Path, what: str) -> str:
    """Move 1.0 of ``theirs`` to a new commit whose tree (or a tree below it) is missing."""
    missing = "1234567890abcdef1234567890abcdef12345678"
    parent = rev(theirs, "refs/gitstore/versions/1.0")
    if what == "tree":
        tree = missing
    else:  # the root tree is there, a subtree is not
        tree = subprocess.run(["git", "--git-dir", str(theirs), "mktree", "--missing"],
                              input=f"040000 tree {missing}\tab\n", capture_output=True,
                              text=True, check=True).stdout.strip()
    body = (f"tree {tree}\nparent {parent}\nauthor A <a@b> 1700000000 +0000\n"
            f"committer A <a@b> 1700000000 +0000\n\nincomplete\n")
    sha = subprocess.run(["git", "--git-dir", str(theirs), "hash-object", "-t", "commit",
                          "-w", "--stdin", "--literally"], input=body, capture_output=True,
                         text=True, check=True).stdout.strip()
    git("--git-dir", str(theirs), "update-ref", "refs/gitstore/versions/1.0", sha)
    return sha


@pytest.mark.parametrize("what", ["tree", "subtree"])
def test_incomplete_history_over_a_path_is_refused(tmp_path: Path, theirs: Path,
                                                   what: str) -> None:
    mine = GitDataStore(tmp_path / "mine.git")
    mine.pull(str(theirs))  # 1.0 and 2.0, complete
    commit_without(theirs, what)
    before = state(Path(mine.gitdir))
    with pytest.raises(RemoteError, match="incomplete history"):
        mine.pull(str(theirs))
    assert state(Path(mine.gitdir)) == before
    no_temporaries(Path(mine.gitdir))
    assert mine.retrieve(C(3), "value") == "theirs"
    assert mine.verify() == []


GIT_FREE_PULL = """
import shutil, sys
sys.path.insert(0, {tests!r})
assert shutil.which("git") is None, "this check needs a PATH without git"
from gitstore import GitDataStore
from gitstore.errors import RemoteError
store = GitDataStore(sys.argv[1])
try:
    store.pull(sys.argv[2])
except RemoteError as exc:
    print("refused:", exc)
else:
    print("pulled")
"""


@pytest.mark.parametrize("indexer", ["git index-pack", "dulwich"])
def test_incomplete_pack_over_git_protocol_is_refused(tmp_path: Path, theirs: Path,
                                                      indexer: str) -> None:
    """The server sends the new commit and nothing it needs."""
    mine = GitDataStore(tmp_path / "mine.git")
    mine.pull(str(theirs))
    sha = commit_without(theirs, "tree")
    pack = pack_of(theirs, sha)  # the commit alone
    before = state(Path(mine.gitdir))
    with lying_server([(sha.encode(), b"refs/gitstore/versions/1.0")], pack) as url:
        if indexer == "git index-pack":
            with pytest.raises(RemoteError, match="incomplete history"):
                mine.pull(url)
        else:
            script = tmp_path / "pull.py"
            script.write_text(GIT_FREE_PULL.format(tests=str(Path(__file__).parent)))
            import gitstore

            env = {"PATH": os.path.dirname(sys.executable), "HOME": str(tmp_path),
                   "PYTHONPATH": os.path.dirname(os.path.dirname(gitstore.__file__))}
            out = subprocess.run([sys.executable, str(script), mine.gitdir, url], env=env,
                                 capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            assert out.stdout.startswith("refused: incomplete history"), out.stdout
    assert state(Path(mine.gitdir)) == before
    no_temporaries(Path(mine.gitdir))
    assert mine.retrieve(C(3), "value") == "theirs"


# --- item 3: what a path remote holds is checked, links are not followed ----------------------

def test_garbage_pack_in_a_path_remote_is_refused(ours: GitDataStore, theirs: Path) -> None:
    name = "pack-" + "ab" * 20
    (theirs / "objects" / "pack" / (name + ".pack")).write_bytes(b"PACK" + os.urandom(4000))
    (theirs / "objects" / "pack" / (name + ".idx")).write_bytes(os.urandom(2000))
    before = state(Path(ours.gitdir))
    with pytest.raises(RemoteError, match=name):
        ours.pull(str(theirs))
    assert_untouched(ours, before)
    assert ours.verify() == []


def test_garbage_loose_object_in_a_path_remote_is_refused(ours: GitDataStore,
                                                          theirs: Path) -> None:
    import zlib

    folder = theirs / "objects" / "ab"
    folder.mkdir(exist_ok=True)
    (folder / ("cd" * 19)).write_bytes(zlib.compress(b"blob 5\x00hello"))  # not its id
    before = state(Path(ours.gitdir))
    with pytest.raises(RemoteError, match="ab" + "cd" * 19):
        ours.pull(str(theirs))
    assert_untouched(ours, before)


def test_symlinked_pack_in_a_path_remote_is_not_followed(ours: GitDataStore, theirs: Path,
                                                         tmp_path: Path) -> None:
    """A "pack" that is a link to someone else's (valid) pack: its objects stay out."""
    private = GitDataStore(tmp_path / "private.git")
    private.store(C(99, "secret"), "value", "private data")
    private.close()
    git("--git-dir", str(tmp_path / "private.git"), "repack", "-a", "-d", "-q")
    secret_blob = git("--git-dir", str(tmp_path / "private.git"), "rev-parse",
                      "refs/gitstore/versions/secret").strip()
    (pack,) = (tmp_path / "private.git" / "objects" / "pack").glob("*.pack")
    for ext in (".pack", ".idx"):
        os.symlink(pack.with_suffix(ext), theirs / "objects" / "pack" / (pack.stem + ext))
    before = state(Path(ours.gitdir))
    with pytest.raises(RemoteError, match="symbolic link"):
        ours.pull(str(theirs))
    assert_untouched(ours, before)
    found = subprocess.run(["git", "--git-dir", ours.gitdir, "cat-file", "-e", secret_blob])
    assert found.returncode != 0


def test_symlinked_objects_folder_is_not_followed(ours: GitDataStore, theirs: Path,
                                                  tmp_path: Path) -> None:
    private = tmp_path / "private-objects"
    (theirs / "objects" / "pack").rename(private)
    os.symlink(private, theirs / "objects" / "pack")
    before = state(Path(ours.gitdir))
    with pytest.raises(RemoteError, match="link"):
        ours.pull(str(theirs))
    assert_untouched(ours, before)


def test_honest_path_remote_is_still_hard_linked(tmp_path: Path, theirs: Path) -> None:
    git("--git-dir", str(theirs), "repack", "-a", "-d", "-q")
    mine = GitDataStore(tmp_path / "mine.git")
    assert mine.pull(str(theirs)) == {"1.0": "created", "2.0": "created"}
    (theirs_pack,) = (theirs / "objects" / "pack").glob("*.pack")
    mine_pack = Path(mine.gitdir) / "objects" / "pack" / theirs_pack.name
    assert os.stat(mine_pack).st_ino == os.stat(theirs_pack).st_ino  # linked, not copied
    assert mine.retrieve(C(2, "2.0"), "value") == "two"
    git("--git-dir", mine.gitdir, "fsck", "--strict")
    no_temporaries(Path(mine.gitdir))


# --- item 18: a failed fetch leaves no temporary pack -----------------------------------------

def test_truncated_pack_leaves_no_temporary_files(ours: GitDataStore, theirs: Path) -> None:
    sha = rev(theirs, "refs/gitstore/versions/2.0")
    pack = pack_of(theirs, sha, revs=True)
    before = state(Path(ours.gitdir))
    with lying_server([(sha.encode(), b"refs/gitstore/versions/2.0")], pack[:len(pack) // 2]
                      ) as url:
        with pytest.raises(RemoteError):
            ours.pull(url)
    assert_untouched(ours, before)


@pytest.mark.parametrize("what", ["tree", "subtree"])
def test_connectivity_walk_without_git(theirs: Path, what: str) -> None:
    """The pure-Python walk (used where git is not installed) finds what is missing, and
    passes a complete history, from scratch and from a known tip."""
    from dulwich.repo import Repo

    from gitstore._git.connectivity import check_connected

    good = rev(theirs, "refs/gitstore/versions/1.0").encode()
    two = rev(theirs, "refs/gitstore/versions/2.0").encode()
    bad = commit_without(theirs, what).encode()
    with Repo(str(theirs)) as repo:
        check_connected(repo.object_store, {"refs/gitstore/versions/1.0": good}, [])
        check_connected(repo.object_store, {"refs/gitstore/versions/2.0": two}, [good])
        for known in ([], [good]):
            with pytest.raises(RemoteError, match="incomplete history"):
                check_connected(repo.object_store, {"refs/gitstore/versions/1.0": bad}, known)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user")
def test_packs_of_another_user_are_copied_and_indexed(tmp_path: Path, theirs: Path) -> None:
    """Another user's packs are neither trusted nor shared: copied, every object checked."""
    git("--git-dir", str(theirs), "repack", "-a", "-d", "-q")
    for path in theirs.rglob("*"):
        os.lchown(path, 65534, 65534)
    mine = GitDataStore(tmp_path / "mine.git")
    assert mine.pull(str(theirs)) == {"1.0": "created", "2.0": "created"}
    (theirs_pack,) = (theirs / "objects" / "pack").glob("*.pack")
    (mine_pack,) = (Path(mine.gitdir) / "objects" / "pack").glob(theirs_pack.name)
    assert os.stat(mine_pack).st_ino != os.stat(theirs_pack).st_ino  # a copy
    assert os.stat(mine_pack).st_uid == 0
    assert mine.retrieve(C(2, "2.0"), "value") == "two"
    git("--git-dir", mine.gitdir, "fsck", "--strict")
    # and garbage from another user is refused like any other
    name = "pack-" + "cd" * 20
    for ext, size in ((".pack", 4000), (".idx", 2000)):
        garbage = theirs / "objects" / "pack" / (name + ext)
        garbage.write_bytes(b"PACK" + os.urandom(size))
        os.chown(garbage, 65534, 65534)
    before = state(Path(mine.gitdir))
    with pytest.raises(RemoteError, match=name):
        mine.fetch(str(theirs))
    assert state(Path(mine.gitdir)) == before
    no_temporaries(Path(mine.gitdir))


def test_errors_never_show_a_password(ours: GitDataStore) -> None:
    from gitservers import free_port

    url = f"http://someone:s3cret-pw@127.0.0.1:{free_port()}/x.git"
    with pytest.raises(RemoteError) as caught:
        ours.fetch(url)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


KILLED_PULL = """
import sys
sys.path.insert(0, {tests!r})
from gitstore import GitDataStore
GitDataStore(sys.argv[1]).pull(sys.argv[2])
"""


def test_a_killed_fetch_is_cleaned_up_by_the_next(ours: GitDataStore, theirs: Path,
                                                  tmp_path: Path) -> None:
    """A fetch killed mid-transfer leaves its quarantine; the next fetch removes it (its
    lock died with it), and never one of a live fetch."""
    import time

    sha = rev(theirs, "refs/gitstore/versions/2.0")
    pack = pack_of(theirs, sha, revs=True)
    script = tmp_path / "pull.py"
    script.write_text(KILLED_PULL.format(tests=str(Path(__file__).parent)))
    objects = Path(ours.gitdir) / "objects"
    with lying_server([(sha.encode(), b"refs/gitstore/versions/2.0")], pack[:len(pack) // 2],
                      hang=True) as url:
        proc = subprocess.Popen([sys.executable, str(script), ours.gitdir, url])
        deadline = time.monotonic() + 60
        while not list(objects.glob("tmp_objdir-*/pack/tmp_pack_*")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        # a live fetch's quarantine is left alone by others
        assert ours.pull(str(theirs), version="2.0") == {"2.0": "created"}
        assert list(objects.glob("tmp_objdir-*"))
        proc.kill()
        proc.wait()
    assert list(objects.glob("tmp_objdir-*"))  # what the killed fetch left
    ours.fetch(str(theirs))
    no_temporaries(Path(ours.gitdir))


def test_a_version_too_long_for_a_ref_is_a_typed_error(ours: GitDataStore) -> None:
    """The same limit at home: a version whose ref name cannot be a file is refused before
    anything is written (it was a raw OSError, 'File name too long')."""
    from gitstore.errors import InvalidComponentError

    before = state(Path(ours.gitdir))
    with pytest.raises(InvalidComponentError, match="version"):
        ours.store(C(5, "v" * 300), "value", 5)
    assert state(Path(ours.gitdir)) == before
    ours.store(C(5, "v" * 250), "value", 5)  # the longest that fits
    assert ours.retrieve(C(5, "v" * 250), "value") == 5


# --- red team: damaged and hostile trees and refs inside the store ----------------------------

def mktree(gitdir: Path, lines: list[str]) -> str:
    return subprocess.run(["git", "--git-dir", str(gitdir), "mktree", "--missing"],
                          input="".join(line + "\n" for line in lines), capture_output=True,
                          text=True, check=True).stdout.strip()


def commit_of(gitdir: Path, tree: str, parent: str) -> str:
    body = (f"tree {tree}\nparent {parent}\nauthor A <a@b> 1700000000 +0000\n"
            f"committer A <a@b> 1700000000 +0000\n\nhand-made\n")
    return subprocess.run(["git", "--git-dir", str(gitdir), "hash-object", "-t", "commit", "-w",
                           "--stdin", "--literally"], input=body, capture_output=True,
                          text=True, check=True).stdout.strip()


def cli(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from gitstore_cli.main import main; main()",
                           "--store", store, *args], capture_output=True, text=True)


def test_a_damaged_version_ref_does_not_break_the_other_versions(ours: GitDataStore) -> None:
    """Refs written by hand (or by another tool) that name a tree, or a commit that is not
    there: every listing goes on for the other versions and names the bad one."""
    gitdir = Path(ours.gitdir)
    ours.store(C(2, "2.0"), "value", "two")
    tree = rev(gitdir, "refs/gitstore/versions/1.0^{tree}")
    (gitdir / "refs/gitstore/versions/3.0").write_text(tree + "\n")
    (gitdir / "refs/gitstore/versions/4.0").write_text("12" * 20 + "\n")
    ours.close()
    store = GitDataStore(gitdir)
    assert store.versions() == ["1.0", "2.0", "3.0", "4.0"]
    entries = list(store.entries())
    assert sorted(e.version for e in entries if e.problem is None) == ["1.0", "2.0"]
    bad = {e.version: e.problem for e in entries if e.problem is not None}
    assert set(bad) == {"3.0", "4.0"} and "tree" in str(bad["3.0"]), bad
    problems = store.verify()
    assert len(problems) == 2 and "version 3.0" in problems[0] and "version 4.0" in problems[1]
    assert store.stats()["entries"] == 2
    assert len(store.log()) == 2
    assert store.find(key_prefix(store, C(2, "2.0"))).version == "2.0"
    # undated: never pruned by age or count, only by name
    assert store.prune(keep_last=0, dry_run=True) == ["1.0", "2.0"]
    assert store.prune(older_than=0, dry_run=True) == ["1.0", "2.0"]
    assert store.prune(["3.0"]) == ["3.0"]
    assert store.retrieve(C(2, "2.0"), "value") == "two"
    out = cli(store.gitdir, "ls")
    assert out.returncode == 0, out.stderr
    assert "version 4.0 is unreadable" in out.stderr and "2.0" in out.stdout
    store.close()


def key_prefix(store: GitDataStore, component: SimpleComponent) -> str:
    from gitstore.keys import key_hex, key_of

    return key_hex(key_of(component))[:12]


def test_hostile_folders_in_a_pulled_tree_are_listed_as_problems(ours: GitDataStore,
                                                                 theirs: Path,
                                                                 serve: str) -> None:
    """A remote version whose tree holds folders gitstore never writes ('..', '.git', a
    gitlink, an entry filed under another key than its component.yaml names): pulled, they
    never break ls or verify, never show a wrong key, and the good entries stay readable."""
    root = rev(theirs, "refs/gitstore/versions/1.0^{tree}")
    tip = rev(theirs, "refs/gitstore/versions/1.0")
    fanout = git("--git-dir", str(theirs), "ls-tree", "-r", "-d", root).split("\n")
    entry_line = next(line for line in fanout if line.count("/") == 2)
    entry_tree = entry_line.split()[2]
    misfiled = "abcd" + "0" * 60
    level3 = mktree(theirs, [f"040000 tree {entry_tree}\t{misfiled}",
                             f"160000 commit {tip}\tabcd" + "1" * 60])
    level2 = mktree(theirs, [f"040000 tree {level3}\tcd"])
    old = git("--git-dir", str(theirs), "ls-tree", root).splitlines()
    evil = mktree(theirs, old + [f"040000 tree {level2}\tab", f"040000 tree {entry_tree}\t..",
                                 f"040000 tree {entry_tree}\t.git", f"160000 commit {tip}\tzz"])
    git("--git-dir", str(theirs), "update-ref", "refs/gitstore/versions/1.0",
        commit_of(theirs, evil, tip))
    ours.pull(serve)  # the same bytes at the same place merge: the tree is theirs + ours
    entries = [e for e in ours.entries() if e.version == "1.0" or e.problem]
    problems = sorted(str(e.problem) for e in entries if e.problem)
    assert len(problems) == 3, problems
    assert any("'..'" in p for p in problems) and any("'.git'" in p for p in problems)
    assert any(misfiled in p for p in problems)
    good = {e.key for e in entries if e.problem is None}
    from gitstore.keys import key_of

    assert good == {key_of(C(1)), key_of(C(3))}
    assert ours.retrieve(C(1), "value") == "ours"
    assert ours.retrieve(C(3), "value") == "theirs"
    assert len(ours.verify()) == 3
    out = cli(ours.gitdir, "ls")
    assert out.returncode == 0, out.stderr
    assert misfiled in out.stderr


LIST_AND_MEASURE = """
import sys
from gitstore import GitDataStore

def peak_kb():  # this process's own peak (ru_maxrss would count the parent's, across exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

store = GitDataStore(sys.argv[1])
store.versions()
before = peak_kb()
problems = [e.problem for e in store.entries() if e.problem]
print((peak_kb() - before) // 1024, problems)
"""


def test_a_huge_pulled_component_yaml_is_refused_without_reading_it(ours: GitDataStore,
                                                                    theirs: Path,
                                                                    tmp_path: Path) -> None:
    """A valid but huge (compressible: the pack stays small) component.yaml: ls names it
    and never inflates it (its size comes from its header)."""
    from gitstore import _yaml

    root = rev(theirs, "refs/gitstore/versions/1.0^{tree}")
    tip = rev(theirs, "refs/gitstore/versions/1.0")
    listing = git("--git-dir", str(theirs), "ls-tree", "-r", root).splitlines()
    path = next(line.split("\t")[1] for line in listing if line.endswith("component.yaml"))
    description = git("--git-dir", str(theirs), "cat-file", "blob", f"{root}:{path}")
    huge = description.encode() + b"pad: '" + b"a" * (_yaml.MAX_TEXT + (16 << 20)) + b"'\n"
    blob = subprocess.run(["git", "--git-dir", str(theirs), "hash-object", "-w", "--stdin"],
                          input=huge, capture_output=True, check=True).stdout.decode().strip()
    del huge
    entries = [line.split(None, 3) for line in git("--git-dir", str(theirs), "ls-tree",
                                                   f"{root}:{path.rsplit('/', 1)[0]}").splitlines()]
    entry = mktree(theirs, [f"{m} {t} {blob if n == 'component.yaml' else s}\t{n}"
                            for m, t, s, n in entries])
    a, b, c = path.split("/")[:3]
    level3 = mktree(theirs, [f"040000 tree {entry}\t{c}"])
    level2 = mktree(theirs, [f"040000 tree {level3}\t{b}"])
    level1 = mktree(theirs, [f"040000 tree {level2}\t{a}"])
    git("--git-dir", str(theirs), "update-ref", "refs/gitstore/versions/9.0",
        commit_of(theirs, level1, tip))
    assert ours.pull(str(theirs), version="9.0") == {"9.0": "created"}
    import gitstore

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(gitstore.__file__)))
    out = subprocess.run([sys.executable, "-c", LIST_AND_MEASURE, ours.gitdir], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grown, problems = out.stdout.split(" ", 1)
    assert "over the limit" in problems, problems
    assert int(grown) < 32, out.stdout  # megabytes: the 80 MB text was never read
    assert ours.retrieve(C(1), "value") == "ours"


def test_hand_made_version_refs_are_not_versions_nor_pushed(ours: GitDataStore,
                                                           tmp_path: Path) -> None:
    """A ref under versions/ that gitstore would never write (not canonically encoded): it
    is not listed as a version, not pushed (it would make every plain pull of the remote
    refuse), and verify names it. A careless empty version is a typed error, not "all"."""
    from gitstore.errors import InvalidComponentError

    gitdir = Path(ours.gitdir)
    tip = (gitdir / "refs/gitstore/versions/1.0").read_text()
    for name in ("%61", "x%2e%2e"):
        (gitdir / "refs/gitstore/versions" / name).write_text(tip)
    assert ours.versions() == ["1.0"]
    problems = ours.verify()
    assert len(problems) == 2 and all("not a version gitstore writes" in p for p in problems)
    remote = tmp_path / "remote.git"
    GitDataStore(remote).close()
    assert list(ours.push(str(remote))) == ["1.0"]
    assert sorted(os.listdir(remote / "refs/gitstore/versions")) == ["1.0"]
    other = GitDataStore(tmp_path / "other.git")
    assert other.pull(str(remote)) == {"1.0": "created"}
    with pytest.raises(InvalidComponentError):
        other.pull(str(remote), version="")


def test_pulled_entry_with_links_folders_and_submodules_is_one_bad_entry(
        ours: GitDataStore, theirs: Path) -> None:
    """An entry of a pulled version whose tree holds a submodule (gitlink to a commit that
    is nowhere: connectivity skips gitlinks, as git does), a folder and a symbolic link among
    its attributes: listed as one damaged entry; ls, attributes and verify go on."""
    root = rev(theirs, "refs/gitstore/versions/1.0^{tree}")
    tip = rev(theirs, "refs/gitstore/versions/1.0")
    path = next(line.split("\t")[1] for line in git(
        "--git-dir", str(theirs), "ls-tree", "-r", "-d", root).splitlines()
        if line.count("/") == 2)
    entry_tree = rev(theirs, f"{root}:{path}")
    link = subprocess.run(["git", "--git-dir", str(theirs), "hash-object", "-w", "--stdin"],
                          input=b"/etc/passwd", capture_output=True,
                          check=True).stdout.decode().strip()
    entry = mktree(theirs, git("--git-dir", str(theirs), "ls-tree", entry_tree).splitlines()
                   + [f"160000 commit {'12' * 20}\tsub.json", f"040000 tree {entry_tree}\tdir.json",
                      f"120000 blob {link}\tlink.json"])
    a, b, c = path.split("/")
    level3 = mktree(theirs, [f"040000 tree {entry}\t{c}"])
    level2 = mktree(theirs, [f"040000 tree {level3}\t{b}"])
    level1 = mktree(theirs, [f"040000 tree {level2}\t{a}"])
    git("--git-dir", str(theirs), "update-ref", "refs/gitstore/versions/1.0",
        commit_of(theirs, level1, tip))
    ours.pull(str(theirs))
    bad = [e for e in ours.entries() if e.problem]
    assert len(bad) == 1 and "not a file" in str(bad[0].problem)
    assert set(bad[0].attributes) == {"value", "sub", "dir", "link"}
    sizes = ours.attributes(bad[0].key)
    assert sizes["sub"]["size"] is None and sizes["value"]["size"] > 0
    assert ours.retrieve(C(3), "value") == "theirs"
    assert ours.retrieve(C(1), "value") == "ours"
    assert len(ours.verify()) == 1
    out = cli(ours.gitdir, "ls")
    assert out.returncode == 0, out.stderr
    assert "not a file" in out.stderr and "2.0" in out.stdout


@pytest.mark.parametrize("name", [
    b"refs/gitstore/versions/a\x01b", b"refs/gitstore/versions/a\x00b",
    b"refs/gitstore/versions/a\x7fb", b"refs/gitstore/versions/x@{1}",
    b"refs/gitstore/versions/x.lock", b"refs/gitstore/versions/x/",
    b"refs/gitstore/versions/%2e%2e", b"refs/gitstore/versions/%31.0",
    b"refs/gitstore/versions/a\xffb", b"refs/gitstore/versions/.hidden",
    b"refs/gitstore/versions/a:b"])
def test_any_hostile_name_over_git_protocol_is_refused(ours: GitDataStore, theirs: Path,
                                                       name: bytes) -> None:
    """Control bytes, git's reserved sequences, a '.lock', non-canonical percent-encodings
    ('%31.0' is '1.0': it would overwrite the store's version), bytes that are not UTF-8:
    the whole fetch is refused, nothing local changes."""
    sha = rev(theirs, "refs/gitstore/versions/2.0")
    pack = pack_of(theirs, sha, revs=True)
    before = state(Path(ours.gitdir))
    refs = [(sha.encode(), b"refs/gitstore/versions/2.0"), (sha.encode(), name)]
    with lying_server(refs, pack) as url:
        with pytest.raises(RemoteError, match="refuses"):
            ours.pull(url)
        assert_untouched(ours, before)
        assert ours.pull(url, version="2.0") == {"2.0": "created"}
    assert ours.retrieve(C(1), "value") == "ours"


@pytest.mark.parametrize("damage", ["tree", "missing"])
def test_a_damaged_local_version_is_neither_pushed_nor_merged_into(ours: GitDataStore,
                                                                   theirs: Path,
                                                                   tmp_path: Path,
                                                                   damage: str) -> None:
    """Pulling into, or pushing, a version whose local ref names a tree or a missing commit
    was a raw AssertionError/KeyError; a push of a version the remote lacks would have
    copied the broken ref there."""
    from gitstore.errors import CorruptEntryError

    gitdir = Path(ours.gitdir)
    ref = gitdir / "refs/gitstore/versions/1.0"
    broken = rev(gitdir, "refs/gitstore/versions/1.0^{tree}") if damage == "tree" else "12" * 20
    ref.write_text(broken + "\n")
    with pytest.raises(CorruptEntryError, match="local version 1.0 is damaged"):
        ours.pull(str(theirs), version="1.0")
    assert ref.read_text().strip() == broken
    remote = tmp_path / "remote.git"
    GitDataStore(remote).close()
    ours.store(C(5, "5.0"), "value", 5)
    with pytest.raises(CorruptEntryError, match="version 1.0"):
        ours.push(str(remote))
    assert not (remote / "refs/gitstore/versions/1.0").exists()
    assert list(ours.push(str(remote), ["5.0"])) == ["5.0"]
    git("--git-dir", str(remote), "fsck", "--strict")


@pytest.mark.parametrize("what", ["commit", "tree"])
def test_a_pulled_commit_or_tree_declaring_gigabytes_is_not_inflated(
        ours: GitDataStore, theirs: Path, what: str) -> None:
    """A version whose commit (a message of zeros) or root tree (one entry repeated) is
    hundreds of megabytes that compress to almost nothing: every listing names it, never
    inflating it; the other versions are untouched."""
    from gitstore._git.objects import MAX_COMMIT_BYTES, MAX_TREE_BYTES

    root = rev(theirs, "refs/gitstore/versions/2.0^{tree}")
    tip = rev(theirs, "refs/gitstore/versions/2.0")
    if what == "commit":
        body = (f"tree {root}\nparent {tip}\nauthor A <a@b> 1700000000 +0000\n"
                f"committer A <a@b> 1700000000 +0000\n\n").encode() \
            + b"0" * (MAX_COMMIT_BYTES + 1)
    else:
        line = git("--git-dir", str(theirs), "ls-tree", root).splitlines()[0]
        mode, _kind, sha, name = line.split(None, 3)
        entry = f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha)
        tree = subprocess.run(["git", "--git-dir", str(theirs), "hash-object", "-t", "tree",
                               "-w", "--stdin", "--literally"],
                              input=entry * (MAX_TREE_BYTES // len(entry) + 1),
                              capture_output=True, check=True).stdout.decode().strip()
        body = (f"tree {tree}\nparent {tip}\nauthor A <a@b> 1700000000 +0000\n"
                f"committer A <a@b> 1700000000 +0000\n\nhuge tree\n").encode()
    sha = subprocess.run(["git", "--git-dir", str(theirs), "hash-object", "-t", "commit", "-w",
                          "--stdin", "--literally"], input=body, capture_output=True,
                         check=True).stdout.decode().strip()
    del body
    git("--git-dir", str(theirs), "update-ref", "refs/gitstore/versions/9.0", sha)
    assert ours.pull(str(theirs), version="9.0") == {"9.0": "created"}
    import gitstore

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(gitstore.__file__)))
    out = subprocess.run([sys.executable, "-c", LIST_AND_MEASURE, ours.gitdir], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grown, problems = out.stdout.split(" ", 1)
    assert "over the limit" in problems and "9.0" in problems, problems
    assert int(grown) < 32, out.stdout  # megabytes
    assert ours.retrieve(C(1), "value") == "ours"
    assert any("9.0" in p for p in ours.verify())


def test_a_truncated_history_is_refused(ours: GitDataStore, theirs: Path) -> None:
    """A commit whose tree is complete but whose parent is nowhere (history cut off, as a
    shallow clone has it), over git:// and over a path."""
    tree = rev(theirs, "refs/gitstore/versions/1.0^{tree}")
    body = (f"tree {tree}\nparent {'12' * 20}\nauthor A <a@b> 1700000000 +0000\n"
            f"committer A <a@b> 1700000000 +0000\n\ntruncated\n")
    sha = subprocess.run(["git", "--git-dir", str(theirs), "hash-object", "-t", "commit", "-w",
                          "--stdin", "--literally"], input=body, capture_output=True,
                         text=True, check=True).stdout.strip()
    objects = [sha, tree] + [line.split()[2] for line in git(
        "--git-dir", str(theirs), "ls-tree", "-r", "-t", tree).splitlines()]
    before = state(Path(ours.gitdir))
    with lying_server([(sha.encode(), b"refs/gitstore/versions/1.0")],
                      pack_of(theirs, *objects)) as url:
        with pytest.raises(RemoteError, match="incomplete history"):
            ours.pull(url)
    assert_untouched(ours, before)
    git("--git-dir", str(theirs), "update-ref", "refs/gitstore/versions/1.0", sha)
    with pytest.raises(RemoteError, match="incomplete history"):
        ours.pull(str(theirs))
    assert_untouched(ours, before)


@pytest.mark.parametrize("url", ["http://x\n[core]\n\tsshCommand = touch /tmp/x", "a\x00b",
                                 "path\twith tab", ""])
def test_remote_urls_with_control_characters_are_refused(tmp_path, url):
    """A URL with a newline was written to the store's config (git reads it back as one
    value holding a newline, which no transport can use): refused, the config unchanged."""
    from gitstore import GitDataStore
    from gitstore.errors import StoreError

    with GitDataStore(tmp_path / "s.git") as store:
        before = (tmp_path / "s.git" / "config").read_bytes()
        with pytest.raises(StoreError, match="control characters"):
            store.remote_add("origin", url)
        assert (tmp_path / "s.git" / "config").read_bytes() == before
        assert store.remotes() == {}
