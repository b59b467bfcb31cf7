"""Pack writing and merging (issue 15 item 7): a merge streams (its memory does not follow
the packs' sizes), and an attribute is deflated only when a sample of it shrinks.

Memory is the peak resident size of a fresh interpreter as a multiple of the pack bytes (a
ratio, never a time), read from /proc's VmHWM, reset just before the merge: getrusage's
ru_maxrss would also count the parent's (pytest's) peak, inherited through vfork + exec.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from components import SimpleComponent
from conftest import git

from gitstore import GitDataStore, key_of

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MERGE = """
import json, os, sys
from gitstore import GitDataStore
from gitstore._git.objects import BLOB

def high_water():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024

def reset_high_water():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM starts again from the current RSS
    return high_water()

s = GitDataStore(sys.argv[1])
db = s._db()
for p in range(12):  # 12 packs of 8 MiB (random, so nothing shrinks)
    db.write_pack([(BLOB, os.urandom(1 << 20) + bytes([p, k])) for k in range(8)])
pack_dir = os.path.join(sys.argv[1], "objects", "pack")
bases = [os.path.join(pack_dir, n[:-4]) for n in os.listdir(pack_dir) if n.endswith(".idx")]
total = sum(os.path.getsize(b + ".pack") for b in bases)
before = reset_high_water()
db._merge(bases)
peak = high_water() - before
after = [n for n in os.listdir(pack_dir) if n.endswith(".pack")]
print(json.dumps({"peak": peak, "pack_bytes": total, "packs_after": len(after)}))
"""


def test_a_merge_streams_its_memory_does_not_follow_the_pack_sizes(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    GitDataStore(gitdir).close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    result = subprocess.run([sys.executable, "-c", MERGE, str(gitdir)], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["packs_after"] == 1, out
    assert out["pack_bytes"] > 12 * 8 << 20, out
    # the old merge read every pack into memory and joined them again: over 2 × the bytes
    assert out["peak"] < 0.1 * out["pack_bytes"], out
    git("--git-dir", str(gitdir), "verify-pack", *map(str, (gitdir / "objects" / "pack")
                                                        .glob("*.idx")))


def _pack_entry(gitdir: Path, sha: str) -> bytes:
    """The first bytes of an object's pack entry's zlib stream."""
    for idx in (gitdir / "objects" / "pack").glob("*.idx"):
        with open(idx, "rb") as f:
            listing = subprocess.run(["git", "show-index"], stdin=f, capture_output=True,
                                     text=True, check=True).stdout
        for line in listing.splitlines():
            offset, name = line.split()[:2]
            if name == sha:
                with open(idx.with_suffix(".pack"), "rb") as f:
                    f.seek(int(offset))
                    head = f.read(64)
                at = 1
                while head[at - 1] & 0x80:  # the entry header's size varint
                    at += 1
                return head[at:]
    raise AssertionError(f"{sha} is in no pack")


def _first_block(stream: bytes) -> tuple[int, int]:
    """(block type, length if stored) of a zlib stream's first deflate block."""
    kind = (stream[2] >> 1) & 3
    return kind, struct.unpack("<H", stream[3:5])[0] if kind == 0 else -1


def test_an_attribute_is_deflated_only_when_a_sample_shrinks(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    c = SimpleComponent({"a": 1})
    with GitDataStore(gitdir) as s:
        s.store(c, "noise", os.urandom(1 << 20))  # 1 MiB: packed (not a large loose blob)
        s.store(c, "zeros", bytes(1 << 20))
        s.store(c, "text", "short text, deflated as ever " * 10)
    h = key_of(c).split(":")[1]

    def blob(name: str) -> str:
        return git("--git-dir", str(gitdir), "rev-parse",
                   f"refs/gitstore/versions/1.0:{h[:2]}/{h[2:4]}/{h}/{name}").strip()

    # random bytes: stored deflate blocks of 64 KiB (zlib level 1 spends its time on
    # 16 KiB attempts that fall back to stored blocks)
    kind, length = _first_block(_pack_entry(gitdir, blob("noise.bin")))
    assert kind == 0 and length > 32768, (kind, length)
    assert _first_block(_pack_entry(gitdir, blob("zeros.bin")))[0] != 0
    assert _first_block(_pack_entry(gitdir, blob("text.txt")))[0] != 0
    with GitDataStore(gitdir) as s:
        assert s.retrieve(c, "zeros") == bytes(1 << 20)
        assert len(s.retrieve(c, "noise")) == 1 << 20
    git("--git-dir", str(gitdir), "fsck", "--strict")


def test_a_merge_of_packs_with_deltas_and_duplicates_stays_readable(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    text = "".join(f"line {j}\n" for j in range(3000))
    with GitDataStore(gitdir) as s:
        for i in range(6):  # similar texts: git gc stores them as deltas
            s.store(SimpleComponent({"i": i}), "text", text + str(i))
        s.gc()
        for i in range(6):  # the same contents again, in packs of their own: duplicates
            s.store(SimpleComponent({"j": i}), "text", text + str(i))
        db = s._db()
        pack_dir = gitdir / "objects" / "pack"
        bases = [str(p.with_suffix("")) for p in pack_dir.glob("*.idx")]
        assert len(bases) > 2
        db._merge(bases)
        assert len(list(pack_dir.glob("*.idx"))) == 1
    git("--git-dir", str(gitdir), "verify-pack", *map(str, pack_dir.glob("*.idx")))
    git("--git-dir", str(gitdir), "fsck", "--strict")
    with GitDataStore(gitdir) as again:
        for i in range(6):
            assert again.retrieve(SimpleComponent({"i": i}), "text") == text + str(i)
            assert again.retrieve(SimpleComponent({"j": i}), "text") == text + str(i)
        assert again.verify() == []
