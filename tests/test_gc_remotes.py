"""gc against fetch, pull and push, in real processes: what a pull or push acknowledged stays
readable, on both sides, while each side runs ``gitstore gc`` in a loop.

A fetch's objects arrive (a quarantine, then ``objects/pack``) before the refs that name them
move; a push to a path remote links our packs into it. gc deletes every object unreachable
from the refs at once, so both must hold the write gate of the store their objects land in
(and a push must keep our own gc from dropping the packs it is linking).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon

from gitstore import GitDataStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: argv: mode, source store, our store, remote URL, stop file, log file
WORKER = r"""
import json, os, sys, time
from components import SimpleComponent
from gitstore import GitDataStore
mode, source, ours, url, stop, log = sys.argv[1:]
src, mine = GitDataStore(source), GitDataStore(ours)
out = open(log, "a")
i = 0
while not os.path.exists(stop) and i < 400:
    c = SimpleComponent({"i": i, "pad": "x" * (i % 7) * 300}, version=f"v{i % 5}")
    try:
        if mode == "pull":  # someone stores into the source, we pull it
            src.store(c, "v", i)
            mine.pull(url, version=f"v{i % 5}")
        else:  # we store and push to the remote
            mine.store(c, "v", i)
            mine.push(url, [f"v{i % 5}"])
        print(json.dumps({"ok": i}), file=out, flush=True)
    except BaseException as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "i": i}), file=out,
              flush=True)
    i += 1
"""

#: argv: stop file, rounds file, then the stores to gc in turn
GC_LOOP = r"""
import json, os, sys
from gitstore import GitDataStore
stop, done, stores = sys.argv[1], sys.argv[2], [GitDataStore(p) for p in sys.argv[3:]]
n = 0
while not os.path.exists(stop):
    for s in stores:
        try:
            s.gc()
        except BaseException as exc:
            print(json.dumps({"gc error": f"{type(exc).__name__}: {exc}"}), flush=True)
    n += 1
    with open(done, "a") as f:
        f.write("round\n")
print(json.dumps({"rounds": n}), flush=True)
"""


def run(tmp_path: Path, mode: str, transport: str, rounds: int) -> None:
    source = tmp_path / "served" / "source.git"
    ours = tmp_path / "ours.git"
    for path in (source, ours):
        s = GitDataStore(path)
        s.store(SimpleComponent({"seed": 1}, version="v0"), "v", -1)
        s.close()
    remote_dir = source if mode == "pull" else tmp_path / "served" / "remote.git"
    if mode == "push":
        GitDataStore(remote_dir).close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    stop, log, gc_rounds = tmp_path / "stop", tmp_path / "worker.log", tmp_path / "gc.log"

    def lines(path: Path) -> int:
        return path.read_text().count("\n") if path.exists() else 0

    def go(url: str) -> tuple[list[dict[str, object]], str]:
        gc = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(stop), str(gc_rounds),
                               str(ours), str(remote_dir)], env=env, stdout=subprocess.PIPE,
                              text=True)
        worker = subprocess.Popen([sys.executable, "-c", WORKER, mode, str(source), str(ours),
                                   url, str(stop), str(log)], env=env)
        try:
            deadline = time.monotonic() + 300
            # enough pulls or pushes, and gc ran on both sides meanwhile (more than once)
            while (lines(log) < rounds or lines(gc_rounds) < 2) and worker.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            stop.touch()
            worker.wait(timeout=300)
            gc_out, _ = gc.communicate(timeout=300)
        return [json.loads(line) for line in log.read_text().splitlines()], gc_out

    if transport == "path":
        lines, gc_out = go(str(remote_dir))
    else:
        with git_daemon(remote_dir.parent) as prefix:
            lines, gc_out = go(prefix + remote_dir.name)
    assert [x for x in lines if "error" in x] == []
    assert "gc error" not in gc_out, gc_out
    assert json.loads(gc_out.splitlines()[-1])["rounds"] > 0
    done = [int(str(x["ok"])) for x in lines]
    assert len(done) >= rounds
    # every acknowledged result is readable where it was pulled or pushed to
    check = GitDataStore(ours if mode == "pull" else remote_dir)
    for i in done:
        c = SimpleComponent({"i": i, "pad": "x" * (i % 7) * 300}, version=f"v{i % 5}")
        assert check.retrieve(c, "v") == i, i
    assert check.verify() == []
    for path in (ours, remote_dir):
        git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")


@pytest.mark.parametrize("mode,transport", [("pull", "path"), ("pull", "git"),
                                            ("push", "path")])
def test_gc_on_both_sides_never_breaks_a_pull_or_push(tmp_path: Path, mode: str,
                                                       transport: str) -> None:
    run(tmp_path, mode, transport, rounds=15)


@pytest.mark.slow
@pytest.mark.parametrize("mode,transport", [("pull", "path"), ("pull", "git"),
                                            ("push", "path"), ("push", "git")])
def test_gc_on_both_sides_never_breaks_many_pulls_or_pushes(tmp_path: Path, mode: str,
                                                             transport: str) -> None:
    run(tmp_path, mode, transport, rounds=150)


def test_gc_keeps_the_objects_of_a_push_in_flight(tmp_path: Path) -> None:
    """git's receive-pack (a push over git://, ssh, http) takes no gitstore lock: its objects
    sit in the store, unreachable, until its ref moves. gc must keep them (young), while it
    still frees at once what a pruned version alone reached, and old garbage."""
    gitdir = tmp_path / "s.git"
    s = GitDataStore(gitdir)
    s.store(SimpleComponent({"keep": 1}, version="k"), "v", "kept")
    s.store(SimpleComponent({"doomed": 1}, version="old"), "v", "x" * 5000)
    pruned_blob = git("--git-dir", str(gitdir), "rev-parse",
                      "refs/gitstore/versions/old^{tree}").strip()
    s.gc()
    # a push arrives: a pack (index-pack, as receive-pack keeps one) and loose objects
    # (unpack-objects, for small pushes), the ref not moved yet
    other = tmp_path / "other.git"
    o = GitDataStore(other)
    o.store(SimpleComponent({"pushed": 1}, version="1.0"), "v", "in flight")
    o.store(SimpleComponent({"pushed": 2}, version="2.0"), "v", "in flight too")
    o.close()
    tips = {v: git("--git-dir", str(other), "rev-parse", f"refs/gitstore/versions/{v}").strip()
            for v in ("1.0", "2.0")}
    for version, how in (("1.0", "index-pack"), ("2.0", "unpack-objects")):
        pack = subprocess.run(["git", "--git-dir", str(other), "pack-objects", "--stdout",
                               "--revs"], input=(tips[version] + "\n").encode(),
                              capture_output=True, check=True).stdout
        args = ["index-pack", "--stdin"] if how == "index-pack" else ["unpack-objects", "-q"]
        subprocess.run(["git", "--git-dir", str(gitdir), *args], input=pack,
                       capture_output=True, check=True)
    # garbage from long ago goes
    old_garbage = subprocess.run(["git", "--git-dir", str(gitdir), "hash-object", "-w",
                                  "--stdin"], input=b"garbage", capture_output=True,
                                 check=True).stdout.decode().strip()
    loose = gitdir / "objects" / old_garbage[:2] / old_garbage[2:]
    os.utime(loose, (time.time() - 7200, time.time() - 7200))
    assert s.prune(["old"]) == ["old"]
    s.gc()
    for version in ("1.0", "2.0"):  # the push completes: its ref moves
        git("--git-dir", str(gitdir), "update-ref", f"refs/gitstore/versions/{version}",
            tips[version])
    git("--git-dir", str(gitdir), "fsck", "--strict", "--no-dangling")
    assert s.retrieve(SimpleComponent({"pushed": 1}, version="1.0"), "v") == "in flight"
    assert s.retrieve(SimpleComponent({"pushed": 2}, version="2.0"), "v") == "in flight too"
    assert not loose.exists()
    gone = subprocess.run(["git", "--git-dir", str(gitdir), "cat-file", "-e", pruned_blob])
    assert gone.returncode != 0  # the pruned version's objects went at once
    assert s.retrieve(SimpleComponent({"keep": 1}, version="k"), "v") == "kept"
