"""Large results as Git LFS objects (issue 15): store/load against joblib.Memory, mmap loads,
peak memory, and LFS transfer against the real git-lfs client, all in one run.

    python benchmarks/bench_lfs.py            # 100 MB and 1 GB arrays, 100 MB transfers
    python benchmarks/bench_lfs.py --quick    # 20 MB, one repeat: under a minute (CI runs it)

Targets (ratios in one run; > 1 means gitstore is faster):
  store and load of 100 MB / 1 GB arrays >= 1.0 x joblib.Memory; peak memory <= 1.1 x the
  array; ``retrieve(..., mmap_mode="r")`` O(1) (the same time at every size);
  LFS upload / download >= 0.8 x ``git lfs push`` / ``git lfs fetch`` to the same server
  (giftless on 127.0.0.1, local storage).

Writes benchmarks/results/bench_lfs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # lfs_server: giftless on loopback

import numpy as np  # noqa: E402

from gitstore import GitDataStore  # noqa: E402


class Component:
    def __init__(self, i: int) -> None:
        self.parameters = {"i": i}
        self.input = None
        self.version = "bench"


def store_load(root: Path, megabytes: int, repeat: int) -> dict[str, float]:
    """Seconds (best of ``repeat``) to store and to load one array, gitstore and joblib, each
    repeat timing one then the other (a loaded machine's changes hit both alike)."""
    import joblib

    array = np.random.default_rng(0).random(megabytes * (1 << 20) // 8)
    store = GitDataStore(root / "store")
    store.store(Component(-1), "warm-up", 1)  # imports, the repository opened
    memory = joblib.Memory(str(root / "joblib"), verbose=0)
    mapped_memory = joblib.Memory(str(root / "joblib"), verbose=0, mmap_mode="r")

    def make(i: int) -> np.ndarray:
        array[0] = i  # new content each time (as new results are), no copy
        return array

    cached, mapped = memory.cache(make), mapped_memory.cache(make)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> None:
        t = time.perf_counter()
        fn()
        times.setdefault(name, []).append(time.perf_counter() - t)

    for i in range(repeat):
        timed("gitstore store", lambda: store.store(Component(i), "x", make(i)))
        timed("joblib store", lambda: cached(i))  # a miss: dump
    last = repeat - 1
    for _ in range(repeat):
        timed("gitstore load", lambda: store.retrieve(Component(last), "x"))
        timed("joblib load", lambda: cached(last))  # a hit: load
    for _ in range(repeat):
        timed("gitstore mmap load", lambda: store.retrieve(Component(last), "x", mmap_mode="r"))
        timed("joblib mmap load", lambda: mapped(last))
    assert store.retrieve(Component(last), "x", mmap_mode="r")[0] == last
    store.close()
    return {name: min(runs) for name, runs in times.items()}


def peak_worker(path: str, megabytes: int, action: str) -> None:
    """In a fresh process: VmHWM growth over the array's size (store, or load)."""
    def hwm() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    store = GitDataStore(path)
    store.store(Component(-1), "warm-up", 1)  # imports, the repository opened
    store.retrieve(Component(-1), "warm-up")
    n = megabytes * (1 << 20) // 8
    if action == "store":
        base = hwm()
        array = np.random.default_rng(1).random(n)
        store.store(Component(-n), "x", array)
    else:
        base = hwm()
        array = store.retrieve(Component(-n), "x")
    print(json.dumps((hwm() - base) / array.nbytes))


def peak(root: Path, megabytes: int) -> dict[str, float]:
    out = {}
    for action in ("store", "load"):
        result = subprocess.run([sys.executable, __file__, "--peak-worker", str(root / "peak"),
                                 str(megabytes), action], capture_output=True, text=True,
                                check=True)
        out[f"peak memory {action} (x array)"] = json.loads(result.stdout)
    return out


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def transfer(root: Path, megabytes: int, repeat: int) -> dict[str, float]:
    """Upload and download of one object of ``megabytes`` through giftless: gitstore's push and
    fetch (with the content) against ``git lfs push`` and ``git lfs fetch``."""
    from lfs_server import giftless_server

    array = np.random.default_rng(2).random(megabytes * (1 << 20) // 8)
    out: dict[str, list[float]] = {}
    env_home = root / "home"
    env_home.mkdir()
    os.environ["HOME"] = str(env_home)  # no user config
    with giftless_server(root / "lfs-storage") as base:
        # warm-up: imports and first connections, outside the timings
        warm = GitDataStore(root / "warm", lfs_threshold=1)
        git("--git-dir", str(root / "warm"), "config", "lfs.url", f"{base}/org/warm.git/info/lfs")
        warm = GitDataStore(root / "warm", lfs_threshold=1)
        warm.store(Component(-1), "x", b"warm-up")
        git("init", "-q", "--bare", str(root / "warm.git"))
        warm.push(str(root / "warm.git"))
        GitDataStore(root / "warm2")
        git("--git-dir", str(root / "warm2"), "config", "lfs.url",
            f"{base}/org/warm.git/info/lfs")
        GitDataStore(root / "warm2").pull(str(root / "warm.git"), lfs_content=True)
        for run in range(repeat):
            # gitstore: store, push (LFS upload then the git pack), then a new store fetches
            endpoint = f"{base}/org/ours{run}.git/info/lfs"
            remote = root / f"ours{run}.git"
            git("init", "-q", "--bare", str(remote))
            a = GitDataStore(root / f"a{run}")
            git("--git-dir", str(root / f"a{run}"), "config", "lfs.url", endpoint)
            a = GitDataStore(root / f"a{run}")
            a.store(Component(run), "x", array)
            t = time.perf_counter()
            a.push(str(remote))
            out.setdefault("gitstore upload", []).append(time.perf_counter() - t)
            b = GitDataStore(root / f"b{run}")
            git("--git-dir", str(root / f"b{run}"), "config", "lfs.url", endpoint)
            b = GitDataStore(root / f"b{run}")
            t = time.perf_counter()
            b.pull(str(remote), lfs_content=True)
            out.setdefault("gitstore download", []).append(time.perf_counter() - t)
            assert np.array_equal(b.retrieve(Component(run), "x"), array)
            # git-lfs: the same bytes (the .npy file) committed, pushed, fetched
            endpoint = f"{base}/org/theirs{run}.git/info/lfs"
            work = root / f"w{run}"
            git("init", "-q", str(work))
            git("-C", str(work), "config", "lfs.url", endpoint)
            git("-C", str(work), "lfs", "install", "--local")
            git("-C", str(work), "lfs", "track", "*.npy")
            np.save(work / "x.npy", array)
            git("-C", str(work), "add", ".")
            git("-C", str(work), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm",
                "x")
            t = time.perf_counter()
            git("-C", str(work), "lfs", "push", "--all", endpoint)
            out.setdefault("git lfs push", []).append(time.perf_counter() - t)
            clone = root / f"c{run}"
            subprocess.run(["git", "clone", "-q", str(work), str(clone)], check=True,
                           env={**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"},
                           capture_output=True)
            git("-C", str(clone), "config", "lfs.url", endpoint)
            t = time.perf_counter()
            git("-C", str(clone), "lfs", "fetch", "origin")
            out.setdefault("git lfs fetch", []).append(time.perf_counter() - t)
    return {name: min(times) for name, times in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peak-worker", nargs=3)
    args = parser.parse_args()
    if args.peak_worker:
        peak_worker(args.peak_worker[0], int(args.peak_worker[1]), args.peak_worker[2])
        return
    sizes = [20] if args.quick else [100, 1024]
    repeat = 2 if args.quick else 3
    transfer_mb = 20 if args.quick else 100
    report: dict[str, Any] = {"machine": {"python": platform.python_version(),
                                          "cpus": os.cpu_count(),
                                          "load": os.getloadavg()[0]}, "sizes": {}}
    for mb in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            times = store_load(Path(tmp), mb, repeat if mb < 1000 else max(1, repeat - 1))
            times.update(peak(Path(tmp), mb))
        report["sizes"][f"{mb} MB"] = times
        print(f"--- {mb} MB array")
        for what in ("store", "load", "mmap load"):
            ours, theirs = times[f"gitstore {what}"], times[f"joblib {what}"]
            print(f"{what:>10}: gitstore {ours * 1e3:9.2f} ms, joblib {theirs * 1e3:9.2f} ms, "
                  f"ratio {theirs / ours:5.2f} x (target >= 1.0)")
        for action in ("store", "load"):
            print(f"peak memory {action}: {times[f'peak memory {action} (x array)']:.2f} x the "
                  "array (target <= 1.1)")
    if shutil.which("git-lfs") is None:
        print("git-lfs is not installed: no transfer comparison")
    else:
        try:
            import giftless  # noqa: F401
        except ImportError:
            print("giftless is not installed (pip install -e '.[test]'): no transfer comparison")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                moved = transfer(Path(tmp), transfer_mb, 1 if args.quick else repeat)
            report["transfer"] = {"megabytes": transfer_mb, **moved}
            print(f"--- LFS transfer of {transfer_mb} MB through giftless on 127.0.0.1")
            for ours, theirs in (("gitstore upload", "git lfs push"),
                                 ("gitstore download", "git lfs fetch")):
                print(f"{ours}: {moved[ours] * 1e3:8.1f} ms, {theirs}: "
                      f"{moved[theirs] * 1e3:8.1f} ms, ratio {moved[theirs] / moved[ours]:5.2f}"
                      " x (target >= 0.8)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "bench_lfs.json").write_text(json.dumps(report, indent=2))
    print(f"load average at start: {report['machine']['load']:.1f} on "
          f"{report['machine']['cpus']} CPUs")


if __name__ == "__main__":
    main()
