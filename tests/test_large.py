"""Large arrays: streamed in and out, checked, and never held twice in memory.

In git blobs here (``lfs_threshold=None``); as Git LFS objects (the default from 8 MiB on) in
test_lfs.py and, for peak memory, the ``git`` backend of the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from components import SimpleComponent
from conftest import git

from gitstore import GitDataStore, key_of
from gitstore.errors import CorruptEntryError

WORKER = str(Path(__file__).parent / "large_worker.py")


def loose_path(store: Path, component: object, attribute_file: str) -> Path:
    h = key_of(component).split(":")[1]
    blob = git("--git-dir", str(store), "rev-parse",
               f"refs/gitstore/versions/1.0:{h[:2]}/{h[2:4]}/{h}/{attribute_file}").strip()
    return store / "objects" / blob[:2] / blob[2:]


def test_random_array_is_stored_uncompressed_and_round_trips(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=None)
    c = SimpleComponent({"a": 1})
    array = np.random.default_rng(0).random((2000, 1500))  # 24 MB
    s.store(c, "big", array)
    path = loose_path(tmp_path / "s", c, "big.npy")
    assert path.stat().st_size > array.nbytes  # stored deflate blocks: no compression
    message = git("--git-dir", str(tmp_path / "s"), "log", "-1", "--format=%B",
                  "refs/gitstore/versions/1.0")
    assert "big.npy: " in message and "stored uncompressed" in message
    again = GitDataStore(tmp_path / "s", lfs_threshold=None)
    np.testing.assert_array_equal(again.retrieve(c, "big"), array)
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")
    size = git("--git-dir", str(tmp_path / "s"), "cat-file", "-s", path.parent.name +
               path.name).strip()
    assert int(size) > array.nbytes
    # plain files, readable by numpy without gitstore
    again.checkout("1.0", tmp_path / "out")
    (npy,) = (tmp_path / "out").rglob("big.npy")
    np.testing.assert_array_equal(np.load(npy), array)


def test_compressible_array_is_deflated(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=None)
    c = SimpleComponent({"a": 2})
    array = np.zeros((3000, 1000), dtype=np.float32)
    array[::7] = 1.0
    s.store(c, "sparse", array)
    assert loose_path(tmp_path / "s", c, "sparse.npy").stat().st_size < array.nbytes / 10
    np.testing.assert_array_equal(GitDataStore(tmp_path / "s", lfs_threshold=None).retrieve(c, "sparse"), array)
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")


def test_fortran_and_strided_arrays(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=None)
    f_order = np.asfortranarray(np.random.default_rng(2).random((1500, 1000)))
    strided = np.random.default_rng(3).random((3000, 1000))[::2]
    s.store(SimpleComponent({"f": 1}), "x", f_order)
    s.store(SimpleComponent({"f": 2}), "x", strided)
    np.testing.assert_array_equal(s.retrieve(SimpleComponent({"f": 1}), "x"), f_order)
    np.testing.assert_array_equal(s.retrieve(SimpleComponent({"f": 2}), "x"), strided)


def test_damaged_large_object_is_corrupt_entry(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=None)
    c = SimpleComponent({"a": 3})
    s.store(c, "big", np.random.default_rng(4).random(2_000_000))
    path = loose_path(tmp_path / "s", c, "big.npy")
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x55]))
    with pytest.raises(CorruptEntryError) as info:
        GitDataStore(tmp_path / "s", lfs_threshold=None).retrieve(c, "big")
    assert info.value.key == key_of(c)
    problems = GitDataStore(tmp_path / "s", lfs_threshold=None).verify()
    assert len(problems) == 1 and key_of(c).split(":")[1][:12] in problems[0]


def peak(backend: str, path: Path, megabytes: int, action: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, WORKER, backend, str(path), str(megabytes), action],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("backend", ["git", "gitblob", "django"])
def test_peak_memory_of_a_100_mb_array(tmp_path: Path, backend: str) -> None:
    stored = peak(backend, tmp_path / "s", 100, "store")
    loaded = peak(backend, tmp_path / "s", 100, "load")
    # the target: at most 1.5x the array in memory on either path (the array itself is 1x)
    assert stored["extra"] <= 0.5 * stored["bytes"], stored
    assert loaded["extra"] <= 0.5 * loaded["bytes"], loaded


@pytest.mark.slow
def test_five_gigabyte_array(tmp_path: Path) -> None:
    """A git object over 4 GiB, streamed both ways on this 24 GB machine."""
    stored = peak("gitblob", tmp_path / "s", 5 * 1024, "store")
    assert stored["bytes"] > 4 << 30
    loaded = peak("gitblob", tmp_path / "s", 5 * 1024, "load")
    assert stored["extra"] <= 0.5 * stored["bytes"] and loaded["extra"] <= 0.5 * loaded["bytes"]
    blobs = [p for p in (tmp_path / "s" / "objects").glob("??/*") if p.stat().st_size > 4 << 30]
    assert len(blobs) == 1
    size = git("--git-dir", str(tmp_path / "s"), "cat-file", "-s",
               blobs[0].parent.name + blobs[0].name).strip()
    assert int(size) > 5 * 1024 * (1 << 20)


def test_large_blob_in_a_pack_after_gc_streams(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=None)
    c = SimpleComponent({"a": 9})
    array = np.random.default_rng(6).random(2_000_000)  # 16 MB
    s.store(c, "big", array)
    s.gc()
    assert not [p for p in (tmp_path / "s" / "objects").glob("??/*")]  # packed now
    again = GitDataStore(tmp_path / "s", lfs_threshold=None)
    entry = again.find(key_of(c))
    blob = again._open_blob(again.attributes(entry.key)["big"]["id"].encode())
    assert not isinstance(blob, bytes)  # a stream, not the whole blob in memory
    blob.close()
    np.testing.assert_array_equal(again.retrieve(c, "big"), array)
