"""The git store's object storage under damage, hostile objects, full disks and a concurrent gc
(issue 11: items 6, 13, 15, 16, 18, 19). Real files, real git, real processes, real tmpfs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from components import SimpleComponent
from conftest import git
from test_reliability import explode_packs

from gitstore import GitDataStore, key_of
from gitstore.errors import (
    CorruptEntryError,
    DiskFullError,
    EntryNotFoundError,
    GitStoreError,
    InvalidAttributeNameError,
    StoreError,
    StoreLocationError,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def blob_id(gitdir: Path, c: object, name: str, version: str = "1.0") -> str:
    h = key_of(c).split(":")[1]
    return git("--git-dir", str(gitdir), "rev-parse",
               f"refs/gitstore/versions/{version}:{h[:2]}/{h[2:4]}/{h}/{name}").strip()


def loose_path(gitdir: Path, sha: str) -> Path:
    return gitdir / "objects" / sha[:2] / sha[2:]


def flip(path: Path, at: int) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


def objects_bytes(gitdir: Path) -> int:
    return sum(p.stat().st_size for p in (gitdir / "objects").rglob("*") if p.is_file())


# the child's own peak: getrusage's ru_maxrss also counts the parent's peak (pytest's), which
# the child inherits through vfork + exec; /proc's VmHWM is the child's memory's alone
RSS_HELPERS = """
def high_water():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
def reset_high_water():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM starts again from the current RSS
    return high_water()
"""


def run_python(code: str, timeout: float = 300) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (its last line of output is JSON)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    code = "import sys, types\nsys.modules['helpers_rss'] = types.ModuleType('helpers_rss')\n" \
        f"exec({RSS_HELPERS!r}, sys.modules['helpers_rss'].__dict__)\n" + code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


# --- item 6: storing the same content again repairs a damaged copy ----------------------------

def test_restore_repairs_a_damaged_large_loose_object(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir, lfs_threshold=None)
    c = SimpleComponent({"big": 1})
    data = np.random.default_rng(1).random(1_200_000)  # 9.6 MB: a large, loose blob
    s.store(c, "array", data)
    s.close()
    path = loose_path(gitdir, blob_id(gitdir, c, "array.npy"))
    flip(path, path.stat().st_size // 2)
    with pytest.raises(CorruptEntryError):
        GitDataStore(gitdir, lfs_threshold=None).retrieve(c, "array")
    GitDataStore(gitdir, lfs_threshold=None).store(c, "array", data)  # the same bytes again
    assert np.array_equal(GitDataStore(gitdir, lfs_threshold=None).retrieve(c, "array"), data)
    assert GitDataStore(gitdir, lfs_threshold=None).verify() == []


def test_restore_repairs_a_damaged_large_packed_object(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir, lfs_threshold=None)
    c = SimpleComponent({"big": 2})
    data = np.random.default_rng(4).random(1_200_000)
    s.store(c, "array", data)
    s.gc()  # now in a pack
    s.close()
    sha = blob_id(gitdir, c, "array.npy")
    assert not loose_path(gitdir, sha).exists()
    pack, offset = _pack_offset(gitdir, sha)
    flip(pack, offset + 5_000_000)
    with pytest.raises(CorruptEntryError):
        GitDataStore(gitdir, lfs_threshold=None).retrieve(c, "array")
    GitDataStore(gitdir, lfs_threshold=None).store(c, "array", data)  # the same bytes again
    assert np.array_equal(GitDataStore(gitdir, lfs_threshold=None).retrieve(c, "array"), data)


def _pack_offset(gitdir: Path, sha: str) -> tuple[Path, int]:
    for idx in (gitdir / "objects" / "pack").glob("*.idx"):
        with open(idx, "rb") as f:
            listing = subprocess.run(["git", "show-index"], stdin=f, capture_output=True,
                                     text=True, check=True).stdout
        for line in listing.splitlines():
            offset, name = line.split()[:2]
            if name == sha:
                return idx.with_suffix(".pack"), int(offset)
    raise AssertionError(f"{sha} is in no pack")


@pytest.mark.parametrize("where", ["pack", "loose"])
def test_restore_repairs_a_damaged_small_object(tmp_path: Path, where: str) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    c = SimpleComponent({"small": 1})
    value = {"numbers": list(range(200)), "text": "some data " * 20}
    s.store(c, "value", value)
    s.close()
    sha = blob_id(gitdir, c, "value.json")
    if where == "pack":
        pack, offset = _pack_offset(gitdir, sha)
        flip(pack, offset + 12)  # inside the blob's deflated data
    else:  # every object loose (as an old store, or one unpacked by git, holds them)
        explode_packs(gitdir)
        path = loose_path(gitdir, sha)
        raw = zlib.decompress(path.read_bytes())
        os.chmod(path, 0o644)
        path.write_bytes(zlib.compress(raw.replace(b"some data", b"SOME data", 1)))
    with pytest.raises(CorruptEntryError):
        GitDataStore(gitdir).retrieve(c, "value")
    GitDataStore(gitdir).store(c, "value", value)  # the same bytes again
    assert GitDataStore(gitdir).retrieve(c, "value") == value


# --- item 13: a lying header, a compressible array ----------------------------------------------

def test_a_blob_header_that_lies_about_its_size_costs_no_memory(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    c = SimpleComponent({"hostile": 1})
    s.store(c, "data", b"abcd")
    s.store(c, "arr", np.arange(4, dtype="u1"))
    s.close()
    explode_packs(gitdir)  # the lying loose object is the only copy (reads look in packs first)
    for name in ("data.bin", "arr.npy"):
        path = loose_path(gitdir, blob_id(gitdir, c, name))
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(zlib.compress(b"blob 3221225472\x00abcd"))  # 3 GiB declared, 4 given
    code = f"""
import json
from helpers_rss import high_water
from components import SimpleComponent
from gitstore import GitDataStore
from gitstore.errors import CorruptEntryError
s = GitDataStore({str(gitdir)!r})
c = SimpleComponent({{"hostile": 1}})
errors = []
for attempt in (lambda: s.retrieve(c, "data"), lambda: s.retrieve(c, "arr"),
                lambda: s.read(s.find(s.key_of(c).split(":")[1]).key, "data", raw=True),
                lambda: s.attributes(s.key_of(c))):
    try:
        attempt()
        errors.append(None)
    except CorruptEntryError as exc:
        errors.append(str(exc))
problems = s.verify()
print(json.dumps({{"errors": errors, "problems": problems,
                  "maxrss_mb": high_water() / 2**20}}))
"""
    out = run_python(code)
    assert out["maxrss_mb"] < 200, out  # type: ignore[operator]
    errors = out["errors"]
    assert isinstance(errors, list) and all(errors[:3]), out
    assert out["problems"], out


def test_a_compressible_array_streams_into_place(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    n = 12_000_000  # 96 MB that deflate shrinks ~100-fold
    code_store = f"""
import json, numpy as np
from components import SimpleComponent
from gitstore import GitDataStore
s = GitDataStore({str(gitdir)!r})
s.store(SimpleComponent({{"compressible": 1}}), "array", np.arange({n}, dtype="f8") % 7)
s.store(SimpleComponent({{"warm-up": 1}}), "array", np.zeros(3_000_000))  # deflated too
print(json.dumps({{}}))
"""
    run_python(code_store)
    assert sum(p.stat().st_size for p in (gitdir / "objects").rglob("*") if p.is_file()) \
        < n * 8 // 10  # it was deflated
    prelude = f"""
import json, numpy as np
from components import SimpleComponent
from gitstore import GitDataStore
from helpers_rss import high_water as rss, reset_high_water
s = GitDataStore({str(gitdir)!r})
c = SimpleComponent({{"compressible": 1}})
list(s.entries())
s.retrieve(SimpleComponent({{"warm-up": 1}}), "array")  # what a first read imports
expected = np.arange({n}, dtype="f8") % 7
before = reset_high_water()
"""
    ls = run_python(prelude + """
sizes = s.attributes(s.key_of(c))
print(json.dumps({"grew": rss() - before, "size": sizes["array"]["size"]}))
""")
    assert ls["size"] == n * 8 + 128  # the .npy header (v1.0, 128 bytes) and the data
    assert ls["grew"] < 16 << 20, ls  # learning the size inflates nothing
    load = run_python(prelude + """
got = s.retrieve(c, "array")
print(json.dumps({"grew": rss() - before, "ok": bool(np.array_equal(got, expected))}))
""")
    assert load["ok"]
    assert load["grew"] < n * 8 * 1.2, load  # the array and a bounded buffer: no second copy


# --- item 15: a merge that fails after a commit -----------------------------------------------

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


def fill_disk(mount: Path, leave: int) -> Path:
    """Fill the file system, then give back ``leave`` bytes."""
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\xff" * 65536)
                f.flush()
        except OSError:
            pass
    size = filler.stat().st_size // 4096 * 4096
    os.truncate(filler, max(0, size - leave))
    return filler


def test_a_batch_over_versions_that_fills_the_disk_says_what_was_committed(
        tiny_disk: Path) -> None:
    s = GitDataStore(tiny_disk / "s")
    s.store(SimpleComponent({"i": 0}, version="a"), "v", 0)  # version a's ref exists
    fill_disk(tiny_disk, 8192)  # room for the batch's pack and index, not for a new ref
    try:
        with s.batch():
            s.store(SimpleComponent({"i": 1}, version="a"), "v", 1)
            s.store(SimpleComponent({"i": 1}, version="b"), "v", 1)
    except DiskFullError as exc:
        message = str(exc)
    else:  # pragma: no cover - the file system had room after all
        pytest.skip("the new ref fitted")
    committed = s.exists(SimpleComponent({"i": 1}, version="a"), "v")
    assert not s.exists(SimpleComponent({"i": 1}, version="b"), "v")
    if committed:
        assert "committed: version(s) a" in message and "not committed: b" in message
    else:
        assert "nothing was written" in message


def test_a_merge_failing_on_a_full_disk_is_not_a_failed_store(
        tiny_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = GitDataStore(tiny_disk / "s")
    rng = np.random.default_rng(2)
    values = {i: rng.bytes(6000) for i in range(40)}  # one tier-0 pack each
    for i in range(11):
        s.store(SimpleComponent({"i": i}), "v", values[i])
    packs = tiny_disk / "s" / "objects" / "pack"
    assert len(list(packs.glob("*.idx"))) == 11
    filler = fill_disk(tiny_disk, 48 << 10)  # room for a store, not for merging 12 packs
    with caplog.at_level(logging.WARNING, logger="gitstore"):
        s.store(SimpleComponent({"i": 11}), "v", values[11])  # the 12th pack: a merge is due
    assert any("merging packs" in r.getMessage() for r in caplog.records)
    assert s.retrieve(SimpleComponent({"i": 11}), "v") == values[11]
    assert len(list(packs.glob("*.idx"))) == 12  # left unmerged, and readable
    assert list((tiny_disk / "s").rglob("tmp_*")) == []
    filler.unlink()
    for i in range(12, 40):  # room again: merging resumes
        s.store(SimpleComponent({"i": i}), "v", values[i])
    assert len(list(packs.glob("*.idx"))) < 24
    again = GitDataStore(tiny_disk / "s")
    assert all(again.retrieve(SimpleComponent({"i": i}), "v") == values[i] for i in range(40))
    git("--git-dir", str(tiny_disk / "s"), "fsck", "--strict", "--no-dangling")


# --- items 16 and 19: gc frees at once, and never breaks a concurrent store -------------------

def test_gc_gives_back_the_space_of_pruned_versions_at_once(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir, lfs_threshold=None)
    rng = np.random.default_rng(3)
    for i in range(3):
        s.store(SimpleComponent({"i": i}, version="old"), "a", rng.random(150_000))  # 1.2 MB
    s.store(SimpleComponent({"i": 0}, version="old"), "big", rng.random(1_100_000))  # loose
    keep = SimpleComponent({"keep": 1}, version="new")
    s.store(keep, "v", "kept")
    s.gc()
    before = objects_bytes(gitdir)
    assert s.prune(["old"]) == ["old"]
    s.gc()
    after = objects_bytes(gitdir)
    assert before - after > 10_000_000, (before, after)
    assert after < 1_000_000
    assert GitDataStore(gitdir, lfs_threshold=None).retrieve(keep, "v") == "kept"
    git("--git-dir", str(gitdir), "fsck", "--strict")


def test_gc_leaves_fresh_temporaries_and_removes_old_ones(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    s.store(SimpleComponent({"i": 1}), "v", 1)
    pack_dir = gitdir / "objects" / "pack"
    fresh = pack_dir / "tmp_pack_someone_else_writing.idx"
    fresh.write_bytes(b"in progress")
    old = pack_dir / "tmp_pack_killed_writer.pack"
    old.write_bytes(b"left behind")
    old_loose = gitdir / "objects" / "tmp_obj_gitstore_1_2"
    old_loose.write_bytes(b"left behind")
    two_hours_ago = time.time() - 7200
    for p in (old, old_loose):
        os.utime(p, (two_hours_ago, two_hours_ago))
    git("--git-dir", str(gitdir), "config", "gc.pruneExpire", "now")  # as a user may
    s.gc()
    assert fresh.exists()
    assert not old.exists() and not old_loose.exists()


def test_gc_inside_a_batch_is_refused(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    c = SimpleComponent({"i": 1})
    with s.batch():
        s.store(c, "big", np.zeros(1_100_000))  # the batch now holds the write gate
        with pytest.raises(StoreError, match="batch"):
            s.gc()
    assert s.retrieve(c, "big").shape == (1_100_000,)
    s.gc()


WRITER = """
import json, sys, time
import numpy as np
from components import SimpleComponent
from gitstore import GitDataStore
path, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
s = GitDataStore(path)
i = 0
with open(f"{stop}.{name}.log", "w") as log:
    while not __import__("os").path.exists(stop) and i < 3000:
        c = SimpleComponent({"writer": name, "i": i}, version=f"v-{name}")
        try:
            if name == "batch":
                with s.batch():
                    s.store(c, "v", i)
                    s.store(c, "w", "x" * 50 + str(i))
                    if i % 15 == 0:
                        s.store(c, "big", np.full(1_100_000, float(i)))  # large: loose
            else:
                s.store(c, "v", i)
            print(json.dumps({"ok": i}), file=log, flush=True)
        except BaseException as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "i": i}), file=log,
                  flush=True)
        i += 1
"""


@pytest.mark.parametrize("prune_expire,rounds", [
    ("now", 25), (None, 25), pytest.param("now", 300, marks=pytest.mark.slow)])
def test_gc_never_breaks_nor_loses_a_concurrent_store(tmp_path: Path, prune_expire: str | None,
                                                      rounds: int) -> None:
    gitdir = tmp_path / "s"
    s = GitDataStore(gitdir)
    if prune_expire:  # a user's setting: git then deletes every temporary at once
        git("--git-dir", str(gitdir), "config", "gc.pruneExpire", prune_expire)
    for i in range(20):
        s.store(SimpleComponent({"doomed": i}, version="doomed"), "v", i)
    stop = tmp_path / "stop"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(gitdir), name, str(stop)],
                                env=env) for name in ("plain", "batch")]
    gc_errors = []
    try:
        deadline = time.monotonic() + 120
        logs = [Path(f"{stop}.{n}.log") for n in ("plain", "batch")]
        while not all(p.exists() and p.stat().st_size > 100 for p in logs):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        def acknowledged_so_far() -> int:
            return sum(p.read_text().count('"ok"') for p in logs)

        at_start = acknowledged_so_far()
        for round in range(rounds):
            if round == 2:
                s.prune(["doomed"])
            try:
                s.gc()
            except GitStoreError as exc:
                gc_errors.append(str(exc))
        assert acknowledged_so_far() > at_start  # the writers stored while gc ran
    finally:
        stop.touch()
        for w in writers:
            w.wait(timeout=300)
    assert gc_errors == []
    acknowledged = []
    for name in ("plain", "batch"):
        lines = [json.loads(x) for x in Path(f"{stop}.{name}.log").read_text().splitlines()]
        assert [x for x in lines if "error" in x] == []
        acknowledged += [(name, x["ok"]) for x in lines]
    assert len(acknowledged) > 20
    again = GitDataStore(gitdir)
    for name, i in acknowledged:
        c = SimpleComponent({"writer": name, "i": i}, version=f"v-{name}")
        assert again.retrieve(c, "v") == i, (name, i)
        if name == "batch" and i % 15 == 0:
            assert again.retrieve(c, "big")[0] == float(i)
    git("--git-dir", str(gitdir), "fsck", "--strict", "--no-dangling")


# --- item 18: typed errors --------------------------------------------------------------------

def test_store_into_a_read_only_store_is_a_typed_error(tmp_path: Path) -> None:
    gitdir = tmp_path / "ro" / "s"
    s = GitDataStore(gitdir)
    s.store(SimpleComponent({"i": 1}), "v", 1)
    s.close()
    ro = tmp_path / "ro"
    if os.geteuid() == 0:  # root writes through permissions: remount read-only
        bind = subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True,
                              text=True)
        if bind.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {bind.stderr.strip()}")
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
    else:
        for p in [gitdir, *gitdir.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o555)
    try:
        again = GitDataStore(gitdir)
        assert again.retrieve(SimpleComponent({"i": 1}), "v") == 1  # reading works
        with again.batch():  # a batch that only reads, too
            assert again.retrieve(SimpleComponent({"i": 1}), "v") == 1
        for value in (2, np.zeros(1_100_000)):  # a small store, a large one
            with pytest.raises(StoreLocationError) as info:
                again.store(SimpleComponent({"i": 2}), "v", value)
            assert "\n" not in str(info.value) and str(gitdir) in str(info.value)
        with pytest.raises(StoreLocationError):
            with again.batch():
                again.store(SimpleComponent({"i": 3}), "v", 3)
        with pytest.raises(StoreLocationError):
            again.delete(SimpleComponent({"i": 1}), "v")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
        else:
            for p in [gitdir, *gitdir.rglob("*")]:
                if p.is_dir():
                    os.chmod(p, 0o755)


def test_store_into_a_foreign_store_is_a_typed_error(tmp_path: Path) -> None:
    """A store owned by another user: reading works, storing is a one-line typed error."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    shared = Path(tempfile.mkdtemp(prefix="gitstore-foreign-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        gitdir = shared / "s"
        GitDataStore(gitdir).store(SimpleComponent({"i": 1}), "v", 1)
        hidden = tmp_path / "s"  # under pytest's private folder: not even readable
        GitDataStore(hidden).store(SimpleComponent({"i": 1}), "v", 1)
        nobody = 65534
        code = f"""
import json, os
from components import SimpleComponent
from gitstore import GitDataStore
from gitstore.errors import StoreLocationError
s = GitDataStore({str(gitdir)!r})
s.retrieve(SimpleComponent({{"i": 1}}), "v")  # the modules a store needs, imported as root
os.setgid({nobody}); os.setuid({nobody})
s = GitDataStore({str(gitdir)!r})
out = {{"read": s.retrieve(SimpleComponent({{"i": 1}}), "v")}}
try:
    s.store(SimpleComponent({{"i": 2}}), "v", 2)
    out["error"] = None
except StoreLocationError as exc:
    out["error"] = str(exc)
try:
    GitDataStore({str(hidden)!r})
    out["hidden"] = None
except StoreLocationError as exc:
    out["hidden"] = str(exc)
print(json.dumps(out))
"""
        out = run_python(code)
        assert out["read"] == 1
        assert out["error"] and "\n" not in str(out["error"])
        assert out["hidden"] and "\n" not in str(out["hidden"])
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize("call", ["find", "read-key", "read-attribute", "attributes", "log"])
def test_wrong_argument_types_are_typed_errors(tmp_path: Path, call: str) -> None:
    s = GitDataStore(tmp_path / "s")
    c = SimpleComponent({"i": 1})
    s.store(c, "v", 1)
    key = s.key_of(c)
    expected = InvalidAttributeNameError if call == "read-attribute" else EntryNotFoundError
    with pytest.raises(expected) as info:
        if call == "find":
            s.find(123)  # type: ignore[arg-type]
        elif call == "read-key":
            s.read(123, "v")  # type: ignore[arg-type]
        elif call == "read-attribute":
            s.read(key, 42)  # type: ignore[arg-type]
        elif call == "attributes":
            s.attributes(None)  # type: ignore[arg-type]
        else:
            s.log(b"abc")  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_an_npy_header_that_lies_about_its_shape_is_refused_before_allocating() -> None:
    import io

    from gitstore.codecs import codec_by_name, decode_bytes

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})  # 8 TB
    with pytest.raises(CorruptEntryError, match="declares"):
        decode_bytes(codec_by_name("npy"), header.getvalue() + b"abcd")
