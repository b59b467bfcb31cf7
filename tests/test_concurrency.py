"""Many writers at once, and writers killed at random moments: nothing acknowledged is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from components import SimpleComponent
from conftest import git

from gitstore import GitDataStore

WORKER = str(Path(__file__).parent / "workers.py")
sys.path.insert(0, str(Path(__file__).parent))
from workers import component  # noqa: E402


def spawn(mode: str, store: Path, worker: int, n: int, log: Path) -> subprocess.Popen[bytes]:
    # a session of its own: the kill takes the worker's git children (git gc) with it
    return subprocess.Popen([sys.executable, WORKER, mode, str(store), str(worker), str(n),
                             str(log)], stderr=subprocess.PIPE, start_new_session=True)


def acknowledged(log: Path) -> tuple[set[int], set[int], set[int]]:
    """Stores that returned, deletes that returned, deletes under way when the log ends."""
    stored, deleted, deleting = set(), set(), set()
    if log.exists():
        for line in log.read_text().splitlines():
            what, _, num = line.partition(" ")
            if what == "stored":
                stored.add(int(num))
                deleted.discard(int(num))
            elif what == "deleting":
                deleting.add(int(num))
            elif what == "deleted":
                deleted.add(int(num))
                deleting.discard(int(num))
    return stored, deleted, deleting


Expected = dict[int, tuple[set[int], set[int], set[int]]]


def check_store(path: Path, expected: Expected) -> None:
    git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")
    with GitDataStore(path) as s:
        for worker, (stored, deleted, deleting) in expected.items():
            for i in stored:
                got = s.retrieve(component(worker, i), "value")
                if i in deleting:
                    assert got in (None, [worker, i])
                    continue
                want = None if i in deleted else [worker, i]
                assert got == want, f"worker {worker} entry {i}: {got!r} != {want!r}"


def test_threads_share_one_store(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(60):
                s.store(SimpleComponent({"t": t, "i": i}), "x", i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(s.entries())) == 240
    assert all(s.retrieve(SimpleComponent({"t": t, "i": i}), "x") == i
               for t in range(4) for i in range(60))
    s.close()
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")


def run_writers(tmp_path: Path, workers: int, n: int, mode: str = "mixed") -> None:
    store = tmp_path / "s"
    GitDataStore(store).close()
    procs = [spawn(mode, store, w, n, tmp_path / f"log{w}") for w in range(workers)]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    expected = {w: acknowledged(tmp_path / f"log{w}") for w in range(workers)}
    assert all(len(stored) == n for stored, _, _ in expected.values())
    check_store(store, expected)


def test_processes_lose_nothing(tmp_path: Path) -> None:
    run_writers(tmp_path, workers=4, n=60)


@pytest.mark.slow
def test_eight_processes_two_thousand_entries(tmp_path: Path) -> None:
    run_writers(tmp_path, workers=8, n=250)


def crash_trials(tmp_path: Path, trials: int, mode: str = "mixed") -> None:
    rng = random.Random(1234)
    store = tmp_path / "s"
    GitDataStore(store).close()
    expected: Expected = {}
    for trial in range(trials):
        log = tmp_path / f"log{trial}"
        proc = spawn(mode, store, trial, 10_000, log)
        time.sleep(rng.uniform(0.25, 0.9))  # python start-up is ~0.2 s of that
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        expected[trial] = acknowledged(log)
        # every trial: the store opens and a new writer is not blocked by the dead one
        with GitDataStore(store) as s:
            s.store(SimpleComponent({"after": trial}), "x", trial)
    assert sum(len(s) for s, _, _ in expected.values()) > 0
    check_store(store, expected)


def test_sigkill_during_writes(tmp_path: Path) -> None:
    crash_trials(tmp_path, trials=50)


def test_sigkill_during_gc(tmp_path: Path) -> None:
    crash_trials(tmp_path, trials=12, mode="gc")
    with GitDataStore(tmp_path / "s") as s:
        s.gc()  # a gc after killed ones still works


def test_sigkill_during_prune(tmp_path: Path) -> None:
    crash_trials(tmp_path, trials=12, mode="prune")


@pytest.mark.slow
def test_sigkill_many(tmp_path: Path) -> None:
    crash_trials(tmp_path, trials=150)
    crash_trials(tmp_path / "gc", trials=30, mode="gc")
    crash_trials(tmp_path / "prune", trials=30, mode="prune")


def test_stale_git_lock_is_recovered(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    c = SimpleComponent({"a": 1})
    s.store(c, "x", 1)
    lock = tmp_path / "s" / "refs" / "gitstore" / "versions" / "1.0.lock"
    lock.write_text("left by a killed writer\n")
    old = time.time() - 60
    os.utime(lock, (old, old))
    s.store(c, "x", 2)
    assert s.retrieve(c, "x") == 2 and not lock.exists()
