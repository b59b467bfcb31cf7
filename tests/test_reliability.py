"""Bad input, full disks, read-only folders, damaged objects and hostile remotes."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import SimpleComponent, Typed
from conftest import git

from gitstore import GitDataStore, ParameterSet, key_of
from gitstore.errors import (
    CorruptEntryError,
    CyclicInputError,
    DiskFullError,
    GitStoreError,
    InvalidAttributeNameError,
    InvalidComponentError,
    ParameterError,
    ParameterFileError,
    RemoteError,
    StoreLocationError,
    UnhashableParameterError,
    UnsupportedDataError,
    UntrustedDataError,
)


def snapshot(path: Path) -> list[tuple[str, int]]:
    """Every file of a store with its size: 'nothing was written' means this is unchanged."""
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*")
                  if p.is_file() and "locks" not in p.parts)


def cyclic() -> SimpleComponent:
    a = SimpleComponent({"a": 1})
    b = SimpleComponent({"b": 1}, input=a)
    a.input = b
    return b


class NoVersionSource:
    parameters: dict[str, Any] = {}
    input = None

    @property
    def version(self) -> None:
        return None


ok = SimpleComponent({"fine": 1})
CATALOGUE: list[tuple[str, type[GitStoreError], Callable[[GitDataStore], Any]]] = [
    ("attribute with /", InvalidAttributeNameError, lambda s: s.store(ok, "a/b", 1)),
    ("attribute ..", InvalidAttributeNameError, lambda s: s.store(ok, "..", 1)),
    ("attribute .", InvalidAttributeNameError, lambda s: s.store(ok, ".", 1)),
    ("attribute with NUL", InvalidAttributeNameError, lambda s: s.store(ok, "a\x00b", 1)),
    ("empty attribute", InvalidAttributeNameError, lambda s: s.store(ok, "", 1)),
    ("attribute over 255 bytes", InvalidAttributeNameError, lambda s: s.store(ok, "é" * 130, 1)),
    ("attribute not a string", InvalidAttributeNameError, lambda s: s.store(ok, 42, 1)),
    ("attribute with backslash", InvalidAttributeNameError, lambda s: s.store(ok, "a\\b", 1)),
    ("reserved attribute", InvalidAttributeNameError, lambda s: s.store(ok, "component", 1)),
    ("no parameters", InvalidComponentError,
     lambda s: s.store(type("X", (), {"input": None, "version": 1})(), "x", 1)),
    ("no input", InvalidComponentError,
     lambda s: s.store(type("X", (), {"parameters": {}, "version": 1})(), "x", 1)),
    ("parameters not a mapping", InvalidComponentError,
     lambda s: s.store(Typed("t", [1, 2]), "x", 1)),
    ("full_type not a string", InvalidComponentError, lambda s: s.store(Typed(3, {}), "x", 1)),  # type: ignore[arg-type]
    ("empty version", InvalidComponentError,
     lambda s: s.store(SimpleComponent({}, version=""), "x", 1)),
    ("cyclic inputs", CyclicInputError, lambda s: s.store(cyclic(), "x", 1)),
    ("input without parameters", InvalidComponentError,
     lambda s: s.store(SimpleComponent({}, input=object()), "x", 1)),
    ("unhashable parameter", UnhashableParameterError,
     lambda s: s.store(SimpleComponent({"f": open}), "x", 1)),
    ("unhashable nested parameter", UnhashableParameterError,
     lambda s: s.store(SimpleComponent({"a": {"b": [1, object()]}}), "x", 1)),
    ("object array parameter", UnhashableParameterError,
     lambda s: s.store(SimpleComponent({"a": np.array([None, 1])}), "x", 1)),
    ("unpicklable-only data", UnsupportedDataError, lambda s: s.store(ok, "x", object())),
    ("nested unsupported data", UnsupportedDataError,
     lambda s: s.store(ok, "x", {"a": [1, {2, 3}, object()]})),
    ("object array data", UnsupportedDataError,
     lambda s: s.store(ok, "x", np.array([object()], dtype=object))),
    ("a version from a builtin", InvalidComponentError,
     lambda s: s.store(type("Y", (), {"parameters": {}, "input": None,
                                     "__module__": "builtins"})(), "x", 1)),
    ("malformed YAML parameters", ParameterFileError,
     lambda s: s.store(SimpleComponent(ParameterSet("a: [1, 2\nb: 3\n")), "x", 1)),
    # names that are not strings key and store since issue 11 (ints, floats, None...);
    # names YAML cannot hold in component.yaml are refused
    ("a parameter name component.yaml cannot hold", ParameterError,
     lambda s: s.store(SimpleComponent(ParameterSet({"a": 1, "b": {(3, 4): 2}})), "x", 1)),
    ("dotted parameter names that clash", ParameterError,
     lambda s: s.store(SimpleComponent({"a": 1, "b": {"c": 2}, "b.c": 3}), "x", 1)),
    ("a key that is not hex", GitStoreError, lambda s: s.find("not-a-key!")),
    ("an unknown key", GitStoreError, lambda s: s.find("abcdef")),
    ("delete with a bad attribute", InvalidAttributeNameError, lambda s: s.delete(ok, "../x")),
    ("a batch that fails", InvalidAttributeNameError, lambda s: _failing_batch(s)),
]


def _failing_batch(s: GitDataStore) -> None:
    with s.batch():
        s.store(SimpleComponent({"in": "batch"}), "x", 1)
        s.store(SimpleComponent({"in": "batch"}), "bad/name", 1)


@pytest.mark.parametrize("what,error,action", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_catalogue(tmp_path: Path, what: str, error: type[GitStoreError],
                             action: Callable[[GitDataStore], Any]) -> None:
    s = GitDataStore(tmp_path / "s")
    s.store(SimpleComponent({"existing": 1}), "x", "before")
    before = snapshot(tmp_path / "s")
    with pytest.raises(error):
        action(s)
    assert snapshot(tmp_path / "s") == before, f"{what}: something was written"
    assert s.retrieve(SimpleComponent({"existing": 1}), "x") == "before"
    assert len(CATALOGUE) >= 25


def test_nan_as_documented(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    # every NaN is one key; 0.0 and -0.0 are two
    assert key_of(SimpleComponent({"x": math.nan})) == key_of(SimpleComponent({"x": -math.nan}))
    assert key_of(SimpleComponent({"x": 0.0})) != key_of(SimpleComponent({"x": -0.0}))
    s.store(SimpleComponent({"x": math.nan}), "v", [math.nan, math.inf])
    got = s.retrieve(SimpleComponent({"x": float("nan")}), "v")
    assert math.isnan(got[0]) and got[1] == math.inf


def test_ten_thousand_parameters_work(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    big = SimpleComponent({f"group{g}": {f"p{i}": i * 0.5 for i in range(g * 100, g * 100 + 100)}
                           for g in range(100)})
    assert len(ParameterSet(big.parameters).flatten()) == 10_000
    s.store(big, "v", "ok")
    assert s.retrieve(big, "v") == "ok"
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")


def test_store_path_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("mine")
    with pytest.raises(StoreLocationError):
        GitDataStore(f)
    assert f.read_text() == "mine"


def test_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: use a read-only file system
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    else:
        os.chmod(ro, 0o555)
    try:
        with pytest.raises(StoreLocationError):
            GitDataStore(ro / "store")
        assert os.listdir(ro) == []
        with pytest.raises(StoreLocationError):
            __import__("gitstore").ShelveDataStore(ro / "shelf")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
        else:
            os.chmod(ro, 0o755)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB file system (tmpfs), so writing really fails with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_leaves_the_store_consistent(tiny_disk: Path) -> None:
    s = GitDataStore(tiny_disk / "s")
    kept = [SimpleComponent({"i": i}) for i in range(20)]
    for c in kept:
        s.store(c, "v", c.parameters["i"])
    with pytest.raises(DiskFullError):
        s.store(SimpleComponent({"big": 1}), "array",
                np.random.default_rng(0).random(1_000_000))  # 8 MB that do not compress
    with pytest.raises(DiskFullError):
        for i in range(100_000):  # small stores until the disk is full
            s.store(SimpleComponent({"fill": i}), "v", "x" * 20_000 + str(i))
    s.close()
    again = GitDataStore(tiny_disk / "s")
    assert [again.retrieve(c, "v") for c in kept] == list(range(20))
    git("--git-dir", str(tiny_disk / "s"), "fsck", "--strict", "--no-dangling")
    leftovers = [p.name for p in (tiny_disk / "s").rglob("tmp_*")]
    assert leftovers == []


# --- corruption ----------------------------------------------------------------------------

def explode_packs(gitdir: Path) -> None:
    """Turn every pack into loose objects (git unpack-objects), as an old store may hold."""
    packs = list((gitdir / "objects" / "pack").glob("*.pack"))
    for pack in packs:
        moved = pack.with_suffix(".old")
        os.chmod(pack, 0o644)
        pack.rename(moved)
        pack.with_suffix(".idx").unlink()
        with open(moved, "rb") as f:
            subprocess.run(["git", "--git-dir", str(gitdir), "unpack-objects", "-q"], stdin=f,
                           check=True)
        moved.unlink()


def blob_path(gitdir: Path, c: object, name: str) -> Path:
    h = key_of(c).split(":")[1]
    sha = git("--git-dir", str(gitdir), "rev-parse",
              f"refs/gitstore/versions/1.0:{h[:2]}/{h[2:4]}/{h}/{name}").strip()
    return gitdir / "objects" / sha[:2] / sha[2:]


def flip(path: Path, at: int) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["value.json", "component.yaml"])
def test_flipped_byte_in_a_loose_object(tmp_path: Path, target: str) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    c = SimpleComponent({"a": 1})
    s.store(c, "value", {"some": "data", "numbers": list(range(50))})
    s.close()
    explode_packs(gitdir)
    assert GitDataStore(gitdir).retrieve(c, "value")["some"] == "data"  # readable loose
    path = blob_path(gitdir, c, target)
    flip(path, len(path.read_bytes()) - 3)
    again = GitDataStore(gitdir)
    with pytest.raises(CorruptEntryError):
        if target == "component.yaml":
            # listed with its problem (one bad entry never hides the others); reading it fails
            (entry,) = list(again.entries())
            assert entry.problem is not None and entry.key == key_of(c)
            again.find(key_of(c))
        else:
            again.retrieve(c, "value")
    problems = again.verify()
    assert problems and key_of(c).split(":")[1][:12] in problems[0]


# --- a hostile remote ----------------------------------------------------------------------

class Exploit:
    """Unpickling this would write a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path(self.target).write_text, ("pwned",))


def test_hostile_pickle_from_a_remote_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "outside" / "pwned.txt"
    target.parent.mkdir()
    evil = GitDataStore(tmp_path / "evil.git", allow_pickle=True)
    c = SimpleComponent({"innocent": True})
    import pickle

    evil._put(key_of(c), evil._identify(c)[1], "result",
              __import__("gitstore.codecs", fromlist=["x"]).codec_by_ext("pkl"),
              pickle.dumps(Exploit(str(target))))
    victim = GitDataStore(tmp_path / "victim.git")
    victim.pull(str(tmp_path / "evil.git"))
    with pytest.raises(UntrustedDataError):
        victim.retrieve(c, "result")
    assert not target.exists()
    assert victim.verify() == []  # bytes intact, not loaded
    victim.checkout("1.0", tmp_path / "out")  # plain files: written, never loaded
    assert not target.exists()


def test_unreachable_remote_in_bounded_time(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    with pytest.raises(RemoteError):
        s.fetch("http://127.0.0.1:9/nothing.git")
