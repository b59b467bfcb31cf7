"""A new process's open and first read: what it imports, parses and inflates (issue 16).

Observed structurally (the modules a fresh interpreter has imported, the pack entries git
reports), never with a timer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from components import SimpleComponent

from gitstore import GitDataStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_python(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    out: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_open_and_read_neither_open_dulwichs_repository_nor_parse_the_config(
        tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    with GitDataStore(gitdir) as s:
        s.store(SimpleComponent({"i": 0}), "x", {"i": 0})
    code = f"""
import json, sys
from components import SimpleComponent
from gitstore import GitDataStore
s = GitDataStore({str(gitdir)!r})
assert s.retrieve(SimpleComponent({{"i": 0}}), "x") == {{"i": 0}}
assert s.lfs_threshold is not None and s._shared_perm is None
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("dulwich", "http")))))
"""
    modules = run_python(code)
    # a read needs neither: dulwich's Repo opens the refs and parses the configuration, and
    # ConfigFile parses a file that holds neither gitstore.lfsThreshold nor sharedRepository
    assert "dulwich.repo" not in modules and "dulwich.config" not in modules, modules
    # nor dulwich's pack reader (gitstore maps packs itself; dulwich applies deltas only) or
    # an HTTP client (Git LFS transfers): importing them is most of ``import gitstore``
    assert "dulwich.pack" not in modules and "http.client" not in modules, modules


def test_settings_in_the_config_are_still_read(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    GitDataStore(gitdir).close()
    subprocess.run(["git", "-C", str(gitdir), "config", "gitstore.lfsThreshold", "3k"],
                   check=True)
    subprocess.run(["git", "-C", str(gitdir), "config", "core.sharedRepository", "group"],
                   check=True)
    with GitDataStore(gitdir) as s:
        assert s.lfs_threshold == 3 << 10 and s._shared_perm is not None


def test_commits_are_written_stored_not_deflated(tmp_path: Path) -> None:
    """A new process's first read inflates the tip commit whole (its id is checked), and a
    batch's message names every entry: commits are written as zlib *stored* streams, a copy
    to read back, as trees are."""
    gitdir = tmp_path / "s"
    with GitDataStore(gitdir) as s, s.batch():
        for i in range(200):
            s.store(SimpleComponent({"i": i}), "x", i)
    packs = sorted((gitdir / "objects" / "pack").glob("*.idx"))
    assert packs
    commits = []
    for idx in packs:
        out = subprocess.run(["git", "verify-pack", "-v", str(idx)], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[1] == "commit":
                commits.append((int(parts[2]), int(parts[3])))
    assert commits
    for size, in_pack in commits:
        assert size > 10_000  # the batch's message: 200 entries
        assert in_pack >= size, (size, in_pack)  # stored: never smaller than the content


def test_tree_parsing_agrees_with_git_and_refuses_what_it_refused() -> None:
    from gitstore._git.objects import _parse_tree, _parse_tree_strictly, serialize_tree

    entries = {b"a b": (0o100644, b"1" * 40), b"dir": (0o40000, b"2" * 40),
               b"\x01\x00": (0o100644, b"3" * 40)}
    del entries[b"\x01\x00"]
    entries[b"x\xff\n"] = (0o100755, bytes.hex(b" 1\x00" * 6 + b"\x00\x00").encode())
    raw = serialize_tree(entries)
    assert _parse_tree(raw) == _parse_tree_strictly(raw) and _parse_tree(raw)[0] == entries
    for bad in (raw[:-1], raw + b"1", b"100644 \x00" + b"1" * 20, b"9 a\x00" + b"1" * 20):
        try:
            strict: object = _parse_tree_strictly(bad)
        except ValueError:
            strict = ValueError
        try:
            fast: object = _parse_tree(bad)
        except ValueError:
            fast = ValueError
        assert fast == strict, bad


def test_a_fan_out_tree_is_searched_in_its_bytes_as_git_reads_it(tmp_path: Path) -> None:
    """Lookups in a fan-out tree (read raw, never parsed) agree with git's, including names
    whose ``40000 <name>\\0`` also appears inside another entry's id."""
    from gitstore._git.objects import ObjectDB

    gitdir = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(gitdir)], check=True)
    names = [f"{i:02x}" for i in range(0, 256, 3)]  # "ff" present, "fe" absent
    fake = {"ff": b"40000 ff\x00", "f9": b"40000 fe\x00"}  # inside these entries' ids
    ids = {}
    for name in names:
        raw = bytes.fromhex(f"{int(name, 16):02x}" * 20)
        if name in fake:
            raw = raw[:3] + fake[name] + raw[3 + len(fake[name]):]
        ids[name] = raw.hex()
    listing = "".join(f"040000 tree {ids[n]}\t{n}\n" for n in names)
    root = subprocess.run(["git", "--git-dir", str(gitdir), "mktree", "--missing"],
                          input=listing, capture_output=True, text=True,
                          check=True).stdout.strip().encode()
    db = ObjectDB(gitdir=str(gitdir))
    try:
        for name in [*names, "fe", "fd", "0", "000", "zz"]:
            want = (0o40000, ids[name].encode()) if name in ids else None
            assert db.lookup(root, [name.encode()]) == want, name
        assert db._trees == {} and root in db._fan_outs  # searched raw, never parsed
        assert db.tree(root) == {n.encode(): (0o40000, ids[n].encode()) for n in names}
        assert db.lookup(root, [b"ff"]) == (0o40000, ids["ff"].encode())  # now parsed
    finally:
        db.close()
