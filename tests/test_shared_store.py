"""A store shared by a group (``core.sharedRepository=group``): every member can store.

Real users, a real group, real processes: two users in one group write to one store made by
``git init --shared=group`` in a set-group-id folder, as an administrator would set it up.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import git

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None,
    reason="needs root (to create two users and a group) and setpriv")

GROUP = "gitstore-tg"
USERS = ("gitstore-t1", "gitstore-t2")

SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
os.umask(0o022)
from components import SimpleComponent
from gitstore import GitDataStore
store = GitDataStore(sys.argv[1])
what = sys.argv[2]
if what == "store":
    store.store(SimpleComponent({{"x": int(sys.argv[3])}}, version=sys.argv[4]), "value",
                sys.argv[5])
    print("stored")
elif what == "pull":
    print(store.pull(sys.argv[3]))
elif what == "prune":
    print(store.prune(sys.argv[3:]))
elif what == "gc":
    store.gc()
    print("gc done")
elif what == "read":
    for item in sys.argv[3:]:
        x, version = item.split("@")
        print(store.retrieve(SimpleComponent({{"x": int(x)}}, version=version), "value"))
"""


@pytest.fixture(scope="module")
def members() -> Iterator[tuple[str, str]]:
    made: list[str] = []
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
        made.append("group")
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-M", "-N", "-g", "users", "-G", GROUP, "-s",
                            "/bin/sh", user], check=True)
            made.append(user)
    opened = _let_others_through()
    try:
        yield USERS
    finally:
        for folder, mode in opened:
            os.chmod(folder, mode)
        for user in USERS:
            if user in made:
                subprocess.run(["userdel", user], check=False)
        if "group" in made:
            subprocess.run(["groupdel", GROUP], check=False)


def _let_others_through() -> list[tuple[str, int]]:
    """The members run this checkout's code with this Python: give "others" the right to pass
    through (x, not to list) each folder above them that lacks it (a clone in `mktemp -d` is
    0700). Returns the folders changed with their old modes, to put back."""
    import gitstore

    needed = {os.path.realpath(p) for p in (sys.executable, sys.prefix, Path(__file__).parent,
                                            os.path.dirname(gitstore.__file__))}
    needed |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    changed: dict[str, int] = {}
    for path in needed:
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        while True:
            mode = os.stat(folder).st_mode & 0o7777
            if not mode & 0o001 and folder not in changed:
                changed[folder] = mode
                os.chmod(folder, mode | 0o001)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return list(changed.items())


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder of the group, set-group-id (outside pytest's private tmp folder)."""
    path = Path(tempfile.mkdtemp(prefix="gitstore-shared-", dir="/tmp"))
    os.chown(path, 0, grp.getgrnam(GROUP).gr_gid)
    os.chmod(path, 0o2775)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as(user: str, *args: str) -> str:
    import gitstore

    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "GIT_CONFIG_NOSYSTEM": "1",
           "PYTHONPATH": os.path.dirname(os.path.dirname(gitstore.__file__)),
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@e"}
    result = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={GROUP}",
                             "--init-groups", "--", *args], env=env, capture_output=True,
                            text=True, cwd="/tmp")
    assert result.returncode == 0, f"{user}: {' '.join(args)}\n{result.stdout}{result.stderr}"
    return result.stdout


@needs_root
def test_two_members_of_a_group_both_store(members: tuple[str, str], shared_dir: Path
                                           ) -> None:
    one, two = members
    script = shared_dir / "client.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    store = shared_dir / "store.git"
    py = sys.executable
    run_as(one, "git", "init", "-q", "--bare", "--shared=group", str(store))
    run_as(one, py, str(script), str(store), "store", "1", "v1", "one's")
    run_as(two, py, str(script), str(store), "store", "2", "v1", "two's")   # same version
    run_as(two, py, str(script), str(store), "store", "3", "v2", "two's")   # a new version
    run_as(one, py, str(script), str(store), "store", "4", "v2", "one's")   # two's ref
    # a pull by one member (quarantine, admitted packs), then the other builds on it
    remote = shared_dir / "remote.git"
    run_as(two, py, str(script), str(remote), "store", "5", "v3", "remote")
    run_as(two, py, str(script), str(store), "pull", str(remote))
    run_as(one, py, str(script), str(store), "store", "6", "v3", "one's")
    out = run_as(two, py, str(script), str(store), "read", "1@v1", "2@v1", "3@v2", "4@v2",
                 "5@v3", "6@v3")
    assert out.split() == ["one's", "two's", "two's", "one's", "remote", "one's"]
    git("--git-dir", str(store), "fsck", "--strict")
    # what gitstore made is the group's, as git would make it
    for path in store.rglob("*"):
        mode = os.lstat(path).st_mode
        assert mode & stat.S_IRGRP, path
        if stat.S_ISDIR(mode):
            assert mode & stat.S_IWGRP and mode & stat.S_ISGID, path


@pytest.mark.parametrize("setting, file_mode, dir_mode", [
    ("group", 0o660, 0o2770), ("true", 0o660, 0o2770), ("all", 0o664, 0o2775),
    ("0640", 0o640, 0o2750), ("umask", 0o600, 0o700)])
def test_modes_follow_core_shared_repository(tmp_path: Path, setting: str, file_mode: int,
                                             dir_mode: int) -> None:
    """As git: named settings widen what the umask left (here 077), octal states it."""
    from components import SimpleComponent

    from gitstore import GitDataStore

    store = tmp_path / "store.git"
    git("init", "-q", "--bare", str(store))
    git("--git-dir", str(store), "config", "core.sharedRepository", setting)
    old = os.umask(0o077)
    try:
        s = GitDataStore(store)
        s.store(SimpleComponent({"x": 1}, version="v1"), "value", 1)
        s.close()
    finally:
        os.umask(old)
    ref = store / "refs" / "gitstore" / "versions" / "v1"
    assert stat.S_IMODE(os.stat(ref).st_mode) == file_mode
    for folder in (ref.parent, store / "gitstore" / "locks"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == dir_mode, folder
    for lock in (store / "gitstore" / "locks").iterdir():
        assert stat.S_IMODE(os.stat(lock).st_mode) == file_mode, lock


@needs_root
def test_members_prune_and_gc_each_others_versions(members: tuple[str, str], shared_dir: Path
                                                   ) -> None:
    """gc by one member frees what the other pruned (it cannot re-date the other's files:
    those wait the grace, nothing fails), and neither loses a stored result."""
    one, two = members
    script = shared_dir / "client.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    store = shared_dir / "gc.git"
    py = sys.executable
    run_as(one, "git", "init", "-q", "--bare", "--shared=group", str(store))
    run_as(one, py, str(script), str(store), "store", "1", "keep", "one's")
    run_as(one, py, str(script), str(store), "store", "2", "doomed", "one's")
    run_as(two, py, str(script), str(store), "store", "3", "keep", "two's")
    run_as(one, py, str(script), str(store), "prune", "doomed")
    assert "gc done" in run_as(two, py, str(script), str(store), "gc")
    run_as(one, py, str(script), str(store), "store", "4", "keep", "one's")
    assert "gc done" in run_as(one, py, str(script), str(store), "gc")
    out = run_as(two, py, str(script), str(store), "read", "1@keep", "3@keep", "4@keep")
    assert out.split() == ["one's", "two's", "one's"]
    git("--git-dir", str(store), "fsck", "--strict")
