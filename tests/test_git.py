"""GitDataStore specifics, checked with the real git binary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from components import SimpleComponent
from conftest import git

from gitstore import GitDataStore, ParameterSet, key_of
from gitstore.errors import CorruptEntryError, StoreLocationError


def mixed_workload(s: GitDataStore) -> list[SimpleComponent]:
    comps = []
    for i in range(10):
        c = SimpleComponent({"i": i, "net": {"tau": 0.5 * i}}, version="v1" if i % 2 else "v2")
        s.store(c, "rates", np.arange(i, dtype=float))
        comps.append(c)
    with s.batch(message="a batch of ten"):
        for i in range(10, 20):
            c = SimpleComponent({"i": i}, version="v1" if i % 2 else "v2")
            s.store(c, "value", {"i": i})
            comps.append(c)
    s.delete(comps[0])
    s.delete(comps[1], "rates")
    return comps[2:]


def test_fsck_log_and_mirror_clone(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "store.git")
    kept = mixed_workload(s)
    s.close()
    gitdir = str(tmp_path / "store.git")
    git("--git-dir", gitdir, "fsck", "--strict", "--no-dangling")
    log = git("--git-dir", gitdir, "log", "refs/gitstore/versions/v1")
    assert "tau: 1.5" in log and "Gitstore-Key: k1-sha256:" in log
    trailers = git("--git-dir", gitdir, "log", "--format=%(trailers:key=Gitstore-Version)",
                   "refs/gitstore/versions/v2")
    assert "Gitstore-Version: v2" in trailers
    grep = git("--git-dir", gitdir, "log", "--format=%s", f"--grep={key_of(kept[0])}",
               "refs/gitstore/versions/v1", "refs/gitstore/versions/v2")
    assert grep.strip()
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--mirror", gitdir, str(mirror))
    with GitDataStore(mirror) as clone:
        for c in kept:
            attribute = "rates" if "net" in c.parameters else "value"
            assert clone.exists(c, attribute)
        assert clone.retrieve(kept[0], "rates").tolist() == [0.0, 1.0]
        assert sorted(clone.versions()) == ["v1", "v2"]
        assert len(list(clone.entries())) == 18


def test_one_commit_per_store_and_per_batch(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    c = SimpleComponent({"a": 1})
    s.store(c, "x", 1)
    s.store(c, "y", 2)
    with s.batch():
        for i in range(5):
            s.store(SimpleComponent({"b": i}), "z", i)
    count = git("--git-dir", str(tmp_path / "s"), "rev-list", "--count",
                "refs/gitstore/versions/1.0")
    assert count.strip() == "3"


def test_batch_is_all_or_nothing(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    with pytest.raises(RuntimeError):
        with s.batch():
            s.store(SimpleComponent({"a": 1}), "x", 1)
            assert s.retrieve(SimpleComponent({"a": 1}), "x") == 1  # read your own writes
            raise RuntimeError("boom")
    assert list(s.entries()) == []
    assert s.retrieve(SimpleComponent({"a": 1}), "x") is None


def test_batch_across_versions_and_delete_inside(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    old = SimpleComponent({"a": 0}, version="v1")
    s.store(old, "x", 0)
    with s.batch():
        s.store(SimpleComponent({"a": 1}, version="v1"), "x", 1)
        s.store(SimpleComponent({"a": 2}, version="v2"), "x", 2)
        s.delete(old)
        assert s.retrieve(old, "x") is None
        s.store(old, "y", "back")
    assert s.retrieve(old, "x") is None and s.retrieve(old, "y") == "back"
    assert sorted(s.versions()) == ["v1", "v2"]
    assert [e.component["parameters"] for e in s.entries(version="v2")] == [{"a": 2}]


def test_history(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    c = SimpleComponent({"a": 1})
    s.store(c, "x", 1)
    s.store(SimpleComponent({"a": 2}), "x", 1)
    s.store(c, "x", 2)
    s.delete(c)
    hist = s.history(c)
    assert len(hist) == 3
    assert hist[0].message.startswith("delete") and "store x" in hist[-1].message


def test_entries_filters(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    s.store(SimpleComponent({"a": 1}, version="v1"), "x", 1)
    s.store(SimpleComponent({"a": 1}, version="v2"), "x", 1)
    assert len(list(s.entries())) == 2
    assert len(list(s.entries(version="v1"))) == 1
    assert list(s.entries(type="no.such.Type")) == []


def test_versions_with_odd_characters(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    odd = ["1.0", "a b", "x..y", "we~ird:^?", "ends.lock", ".hidden", "ü", 3]
    for v in odd:
        s.store(SimpleComponent({"a": 1}, version=v), "x", str(v))
    assert sorted(s.versions()) == sorted(str(v) for v in odd)
    for v in odd:
        assert s.retrieve(SimpleComponent({"a": 1}, version=v), "x") == str(v)
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")


def test_inside_an_existing_repository(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    repo.mkdir()
    git("init", "-q", str(repo))
    (repo / "f.txt").write_text("code")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "code", cwd=repo)
    with GitDataStore(repo) as s:
        s.store(SimpleComponent({"a": 1}), "x", 1)
    refs = git("for-each-ref", "--format=%(refname)", cwd=repo).split()
    assert "refs/gitstore/versions/1.0" in refs
    assert git("status", "--porcelain", cwd=repo) == ""  # the work tree is untouched
    git("fsck", "--strict", cwd=repo)


def test_location_errors(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreLocationError, match="is a file"):
        GitDataStore(f)
    d = tmp_path / "full"
    d.mkdir()
    (d / "something").write_text("x")
    with pytest.raises(StoreLocationError, match="not a git repository"):
        GitDataStore(d)
    assert sorted(os.listdir(d)) == ["something"]
    # a read-only folder: tests/test_reliability.py (run as an unprivileged user)


def test_gc_repacks_and_keeps_everything(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    comps = [SimpleComponent({"i": i}) for i in range(40)]
    for c in comps:
        s.store(c, "x", c.parameters["i"])
    s.gc()
    packs = [n for n in os.listdir(tmp_path / "s" / "objects" / "pack") if n.endswith(".pack")]
    assert len(packs) == 1
    with GitDataStore(tmp_path / "s") as again:
        assert [again.retrieve(c, "x") for c in comps] == list(range(40))
        again.store(SimpleComponent({"i": 99}), "x", 99)
        assert again.retrieve(SimpleComponent({"i": 99}), "x") == 99
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")


def test_packs_stay_few(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    for i in range(300):
        s.store(SimpleComponent({"i": i}), "x", i)
    packs = [n for n in os.listdir(tmp_path / "s" / "objects" / "pack") if n.endswith(".pack")]
    assert len(packs) < 40
    loose = [d for d in os.listdir(tmp_path / "s" / "objects") if len(d) == 2]
    assert loose == []
    assert s.retrieve(SimpleComponent({"i": 7}), "x") == 7


# --- corruption ------------------------------------------------------------------------------

def _flip_last_byte_of_pack_holding(gitdir: Path, blob_hex: str) -> None:
    out = git("--git-dir", str(gitdir), "cat-file", "--batch-check=%(objectname) %(deltabase)",
              "--batch-all-objects")
    assert blob_hex in out
    for idx in (gitdir / "objects" / "pack").glob("*.idx"):
        listing = git("verify-pack", "-v", str(idx))
        for line in listing.splitlines():
            if line.startswith(blob_hex):
                offset = int(line.split()[4])
                size = int(line.split()[3])
                pack = idx.with_suffix(".pack")
                os.chmod(pack, 0o644)
                data = bytearray(pack.read_bytes())
                data[offset + size - 6] ^= 0xFF  # inside the compressed data
                pack.write_bytes(bytes(data))
                return
    raise AssertionError("blob not found in any pack")


def test_flipped_byte_in_pack_is_corrupt_entry(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    c = SimpleComponent({"a": 1})
    s.store(c, "x", "some text that is long enough to compress " * 4)
    s.close()
    blob = git("--git-dir", str(gitdir), "rev-parse",
               f"refs/gitstore/versions/1.0:{_tree_path(c)}/x.txt").strip()
    _flip_last_byte_of_pack_holding(gitdir, blob)
    with GitDataStore(gitdir) as again:
        with pytest.raises(CorruptEntryError) as info:
            again.retrieve(c, "x")
        assert info.value.key == key_of(c)


def test_corrupt_ref_file(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    c = SimpleComponent({"a": 1})
    s.store(c, "x", 1)
    ref = gitdir / "refs" / "gitstore" / "versions" / "1.0"
    data = bytearray(ref.read_bytes())
    data[3] = ord("z")
    ref.write_bytes(bytes(data))
    with pytest.raises(CorruptEntryError):
        s.retrieve(c, "x")


def test_ref_to_missing_object(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    c = SimpleComponent({"a": 1})
    s.store(c, "x", 1)
    (gitdir / "refs" / "gitstore" / "versions" / "1.0").write_text("1" * 40 + "\n")
    with GitDataStore(gitdir) as again:
        with pytest.raises(CorruptEntryError, match="missing"):
            again.retrieve(c, "x")


def _tree_path(c: object) -> str:
    h = key_of(c).split(":")[1]
    return f"{h[:2]}/{h[2:4]}/{h}"


def test_component_yaml_is_readable_by_git(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    a = SimpleComponent(ParameterSet({"net": {"tau": 2.0}}))
    b = SimpleComponent({"n": 1}, input=a)
    s.store(b, "x", 1)
    text = git("--git-dir", str(gitdir), "show",
               f"refs/gitstore/versions/1.0:{_tree_path(b)}/component.yaml")
    assert f"input: {key_of(a)}" in text and "key_scheme: k1-sha256" in text
    assert yaml.safe_load(text)["parameters"] == {"n": 1}
