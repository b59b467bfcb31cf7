"""Object reads: one search of the packs per object, packs kept current as others change them.

What a read does is observed with Python's audit hooks (``sys.addaudithook``: every ``open``
and ``os.listdir`` of the process), in a fresh interpreter, never with a timer.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from components import SimpleComponent

from gitstore import GitDataStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_python(code: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_a_first_read_lists_no_folder_and_opens_no_loose_path(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    with GitDataStore(gitdir) as s:
        for i in range(30):  # one commit, one pack each (some merged): many packs to search
            s.store(SimpleComponent({"i": i}), "x", {"i": i})
    code = f"""
import json, os, sys
from components import SimpleComponent
from gitstore import GitDataStore
objects = os.path.join({str(gitdir)!r}, "objects")
s = GitDataStore({str(gitdir)!r})
assert s.retrieve(SimpleComponent({{"i": 0}}), "x") == {{"i": 0}}  # the packs are known now
events = {{"listdir": 0, "loose": 0, "pack files opened twice": 0}}
opened = set()
def hook(event, args):
    if event == "os.listdir":
        events["listdir"] += 1
    elif event == "open" and isinstance(args[0], str) and args[0].startswith(objects):
        if os.sep + "pack" + os.sep not in args[0]:
            events["loose"] += 1
        elif args[0] in opened:
            events["pack files opened twice"] += 1
        opened.add(args[0])
sys.addaudithook(hook)
values = [s.retrieve(SimpleComponent({{"i": i}}), "x") for i in range(1, 30)]
assert values == [{{"i": i}} for i in range(1, 30)], values
print(json.dumps(events))
"""
    events = run_python(code)
    # each object: one search of the packs (each mapped once, when first searched); no
    # listing of the pack folder, no probe for a loose file first (gitstore writes packs)
    assert events == {"listdir": 0, "loose": 0, "pack files opened twice": 0}, events


def test_a_pack_written_by_another_process_is_found(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    reader = GitDataStore(gitdir)
    reader.store(SimpleComponent({"i": 0}), "x", 0)
    assert reader.retrieve(SimpleComponent({"i": 0}), "x") == 0
    code = f"""
import json
from components import SimpleComponent
from gitstore import GitDataStore
with GitDataStore({str(gitdir)!r}) as s:
    for i in range(1, 20):
        s.store(SimpleComponent({{"i": i}}), "x", i)
print(json.dumps({{}}))
"""
    run_python(code)  # new packs, some merged with the one the reader has mapped
    assert [reader.retrieve(SimpleComponent({"i": i}), "x") for i in range(20)] == \
        list(range(20))
    reader.close()


def test_reads_after_gc_resolve_deltas(tmp_path: Path) -> None:
    gitdir = tmp_path / "s"
    with GitDataStore(gitdir) as s:
        rng = random.Random(0)
        lines = [f"line {j} {rng.random()}\n" for j in range(3000)]
        texts = []
        for i in range(10):  # similar blobs: git repack stores most as deltas, some of
            for j in rng.sample(range(3000), 300):  # them long (zlib: dynamic Huffman blocks)
                lines[j] = f"{rng.random()} {i}\n"
            texts.append("".join(lines))
            s.store(SimpleComponent({"i": i}), "text", texts[-1])
        s.gc()
    verify = subprocess.run(["git", "--git-dir", str(gitdir), "verify-pack", "-v",
                             *map(str, (gitdir / "objects" / "pack").glob("*.idx"))],
                            capture_output=True, text=True, check=True).stdout
    assert "chain length" in verify  # there are deltas to resolve
    with GitDataStore(gitdir) as again:
        assert [again.retrieve(SimpleComponent({"i": i}), "text") for i in range(10)] == \
            texts
        assert again.verify() == []
        # every object's size from its header (a delta's: from the delta's own header)
        db = again._db()
        for line in verify.splitlines():
            parts = line.split()
            if len(parts) >= 5 and len(parts[0]) == 40:
                size = subprocess.run(["git", "--git-dir", str(gitdir), "cat-file", "-s",
                                       parts[0]], capture_output=True, text=True,
                                      check=True).stdout
                assert db.size_of(parts[0].encode()) == int(size), line
