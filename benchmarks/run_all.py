"""Every comparison in one run on one machine: gitstore's backends against joblib.Memory, plain
pickle / np.save files (the floor) and the git command line.

    python benchmarks/run_all.py            # the full record (~15-25 minutes)
    python benchmarks/run_all.py --quick    # a smoke run under two minutes (CI runs it)

Prints medians and ratios, writes benchmarks/results/run_all.json and, if matplotlib is
installed, benchmarks/results/run_all.png.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # gitservers: git daemon on loopback

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from bench_git import Result, payload  # noqa: E402

from gitstore import DjangoORMDataStore, GitDataStore, ShelveDataStore  # noqa: E402
from gitstore.keygenerators import hash_pickle  # noqa: E402

# --- one adapter per contender: store(i, value), load(i) ------------------------------------


class Contender:
    name = ""

    def __init__(self, root: Path) -> None:
        self.root = root

    def store(self, i: int, value: Any) -> None:
        raise NotImplementedError

    def load(self, i: int) -> Any:
        raise NotImplementedError

    def reopen(self) -> None:
        """A new process's view (no in-memory caches)."""

    def close(self) -> None:
        pass


class GitContender(Contender):
    name = "gitstore (git)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.s = GitDataStore(root / "git")

    def store(self, i: int, value: Any) -> None:
        self.s.store(Result(i), "data", value)

    def load(self, i: int) -> Any:
        return self.s.retrieve(Result(i), "data")

    def reopen(self) -> None:
        self.s.close()
        self.s = GitDataStore(self.root / "git")

    def close(self) -> None:
        self.s.close()


class ShelveContender(GitContender):
    name = "gitstore (shelve)"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s = ShelveDataStore(root / "shelve", hash_pickle)  # type: ignore[assignment]

    def reopen(self) -> None:
        self.s = ShelveDataStore(self.root / "shelve", hash_pickle)  # type: ignore[assignment]


class DjangoContender(GitContender):
    name = "gitstore (django/sqlite)"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s = DjangoORMDataStore(data_root_dir=root / "django")  # type: ignore[assignment]

    def reopen(self) -> None:
        self.s.close()
        self.s = DjangoORMDataStore(data_root_dir=self.root / "django")  # type: ignore


_JOBLIB_VALUES: dict[int, Any] = {}


def _joblib_compute(i: int) -> Any:
    """The cached function: hands back the value prepared for this call (no real work)."""
    return _JOBLIB_VALUES.pop(i)


class JoblibContender(Contender):
    name = "joblib.Memory"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        memory = joblib.Memory(str(root / "joblib"), verbose=0)
        self.cached = memory.cache(_joblib_compute)

    def store(self, i: int, value: Any) -> None:  # a miss: compute (trivial) and store
        _JOBLIB_VALUES[i] = value
        self.cached(i)

    def load(self, i: int) -> Any:  # a hit
        return self.cached(i)


class FilesContender(Contender):
    name = "pickle / np.save files"

    def _path(self, i: int) -> Path:
        return self.root / "files" / f"{i % 256:02x}" / f"{i}"

    def store(self, i: int, value: Any) -> None:
        path = self._path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            if isinstance(value, np.ndarray):
                np.save(f, value, allow_pickle=False)
            else:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    def load(self, i: int) -> Any:
        with open(self._path(i), "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                return np.load(f, allow_pickle=False)
            f.seek(0)
            return pickle.load(f)  # noqa: S301 - our own files


CONTENDERS = [GitContender, ShelveContender, DjangoContender, JoblibContender, FilesContender]


def per_op(fn: Callable[[int], Any], ids: list[int]) -> float:
    t0 = time.perf_counter()
    for i in ids:
        fn(i)
    return (time.perf_counter() - t0) / len(ids) * 1e6


# --- small results ----------------------------------------------------------------------------

def small(tmp: Path, n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Store, cold retrieve (a new process's view), warm retrieve; medians of rounds."""
    out: dict[str, dict[str, list[float]]] = {}
    contenders = [cls(tmp / f"small-{cls.__name__}") for cls in CONTENDERS]
    data = {i: payload(i) for i in range(n * rounds)}
    for r in range(rounds):  # rounds alternate between contenders: load drift hits all alike
        ids = list(range(r * n, (r + 1) * n))
        for c in contenders:
            figures = out.setdefault(c.name, {"store": [], "retrieve_cold": [],
                                              "retrieve_warm": []})
            figures["store"].append(per_op(lambda i: c.store(i, data[i]), ids))
            c.reopen()
            figures["retrieve_cold"].append(per_op(c.load, ids))
            figures["retrieve_warm"].append(per_op(c.load, ids))
    git = contenders[0]
    assert isinstance(git, GitContender)
    batch = []
    for r in range(rounds):
        ids = list(range(10_000_000 + r * n, 10_000_000 + (r + 1) * n))
        t0 = time.perf_counter()
        with git.s.batch():
            for i in ids:
                git.s.store(Result(i), "data", data[i - 10_000_000])
        batch.append((time.perf_counter() - t0) / n * 1e6)
    out[git.name]["store_batch"] = batch
    for c in contenders:
        c.close()
    return {name: {k: statistics.median(v) for k, v in figs.items()} for name, figs in out.items()}


# --- scaling ----------------------------------------------------------------------------------

def scaling(tmp: Path, sizes: list[int], big_sizes_for: set[str], probes: int
            ) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for cls in CONTENDERS:
        name = cls.name
        filled = 0
        c = cls(tmp / f"scale-{cls.__name__}")
        for size in sizes:
            if size > sizes[0] * 10 and name not in big_sizes_for:
                continue
            if isinstance(c, GitContender) and type(c) is GitContender:
                for start in range(filled, size, 1000):
                    with c.s.batch():
                        for i in range(start, min(start + 1000, size)):
                            c.s.store(Result(i), "data", {"i": i})
            else:
                for i in range(filled, size):
                    c.store(i, {"i": i})
            filled = size
            c.reopen()
            rng = random.Random(size)
            new = list(range(20_000_000 + size, 20_000_000 + size + probes))
            old = [rng.randrange(size) for _ in range(probes)]
            out.setdefault(name, {})[str(size)] = {
                "store": per_op(lambda i: c.store(i, {"i": i}), new),
                "retrieve_cold": per_op(c.load, old),
                "retrieve_warm": per_op(c.load, old),
            }
        c.close()
    return out


# --- large arrays -----------------------------------------------------------------------------

LARGE_WORKER = """
import json, resource, sys, time
sys.path.insert(0, {here!r}); sys.path.insert(0, {root!r})
import numpy as np
import run_all
def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))
def now():  # reset the high-water mark (Linux: clear_refs 5), return the current size
    with open("/proc/self/clear_refs", "w") as f: f.write("5")
    return status("VmRSS")
def peak(): return status("VmHWM")
cls = getattr(run_all, sys.argv[1]); c = cls(__import__("pathlib").Path(sys.argv[2]))
n = int(sys.argv[3]) // 8
if sys.argv[4] == "store":
    a = np.random.default_rng(0).random(n)
    base = now(); t0 = time.perf_counter(); c.store(1, a); t = time.perf_counter() - t0
    extra = peak() - base
else:
    base = now(); t0 = time.perf_counter(); a = c.load(1); t = time.perf_counter() - t0
    extra = peak() - base - a.nbytes
c.close()
print(json.dumps({{"seconds": t, "bytes": a.nbytes, "extra": extra}}))
"""


def large(tmp: Path, sizes_mb: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    script = tmp / "large_worker.py"
    script.write_text(LARGE_WORKER.format(here=str(HERE), root=str(HERE.parent)))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mb in sizes_mb:
        for cls in (GitContender, DjangoContender, JoblibContender, FilesContender):
            root = tmp / f"large-{cls.__name__}-{mb}"
            figures: dict[str, float] = {}
            for action in ("store", "load"):
                res = json.loads(subprocess.run(
                    [sys.executable, str(script), cls.__name__, str(root), str(mb << 20), action],
                    capture_output=True, text=True, check=True).stdout)
                figures[f"{action}_MBps"] = res["bytes"] / res["seconds"] / 1e6
                figures[f"{action}_peak_x"] = 1 + max(0, res["extra"]) / res["bytes"]
            out.setdefault(cls.name, {})[f"{mb} MB"] = figures
            shutil.rmtree(root, ignore_errors=True)
    return out


# --- sharing ----------------------------------------------------------------------------------

def sharing(tmp: Path, n: int) -> dict[str, float]:
    src = GitDataStore(tmp / "share-src")
    for start in range(0, n, 1000):
        with src.batch():
            for i in range(start, min(start + 1000, n)):
                src.store(Result(i), "data", payload(i))
    git = shutil.which("git") or "git"

    def bare(name: str) -> Path:
        path = tmp / name
        subprocess.run([git, "init", "-q", "--bare", str(path)], check=True)
        return path

    figures = {}
    dest = bare("share-dst1")
    t0 = time.perf_counter()
    src.push(str(dest))
    figures["gitstore push"] = time.perf_counter() - t0
    dest2 = bare("share-dst2")
    t0 = time.perf_counter()
    subprocess.run([git, "--git-dir", str(tmp / "share-src"), "push", "-q", str(dest2),
                    "refs/gitstore/*:refs/gitstore/*"], check=True)
    figures["git push"] = time.perf_counter() - t0
    fetcher = GitDataStore(tmp / "share-fetch1")
    t0 = time.perf_counter()
    fetcher.fetch(str(dest))
    figures["gitstore fetch"] = time.perf_counter() - t0
    bare("share-fetch2")
    t0 = time.perf_counter()
    subprocess.run([git, "--git-dir", str(tmp / "share-fetch2"), "fetch", "-q", str(dest),
                    "refs/gitstore/*:refs/gitstore/*"], check=True)
    figures["git fetch"] = time.perf_counter() - t0
    assert fetcher.retrieve(Result(n - 1), "data") is None  # fetched, not merged
    fetcher.pull(str(dest))
    assert fetcher.retrieve(Result(n - 1), "data") == payload(n - 1)
    # over the network protocol: git daemon on 127.0.0.1 (dulwich's client, no shortcuts)
    from gitservers import git_daemon

    served = tmp / "served"
    served.mkdir()
    for name in ("net1.git", "net2.git"):
        subprocess.run([git, "init", "-q", "--bare", str(served / name)], check=True)
    with git_daemon(served) as prefix:
        t0 = time.perf_counter()
        src.push(prefix + "net1.git")
        figures["gitstore push (git://)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([git, "--git-dir", str(tmp / "share-src"), "push", "-q",
                        prefix + "net2.git", "refs/gitstore/*:refs/gitstore/*"], check=True)
        figures["git push (git://)"] = time.perf_counter() - t0
        net_fetcher = GitDataStore(tmp / "share-fetch3")
        t0 = time.perf_counter()
        net_fetcher.fetch(prefix + "net1.git")
        figures["gitstore fetch (git://)"] = time.perf_counter() - t0
        bare("share-fetch4")
        t0 = time.perf_counter()
        subprocess.run([git, "--git-dir", str(tmp / "share-fetch4"), "fetch", "-q",
                        prefix + "net1.git", "refs/gitstore/*:refs/gitstore/*"], check=True)
        figures["git fetch (git://)"] = time.perf_counter() - t0
        net_fetcher.close()
    src.close()
    fetcher.close()
    return figures


# --- report -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 2 minutes)")
    parser.add_argument("--out", default=str(HERE / "results" / "run_all.json"))
    args = parser.parse_args()
    quick = args.quick
    tmp = Path(tempfile.mkdtemp(prefix="gitstore-bench-"))
    started = time.time()
    try:
        results: dict[str, Any] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
                       f"Python {platform.python_version()}",
            "quick": quick,
            "small": small(tmp, 100 if quick else 500, 3 if quick else 5),
            "scaling": scaling(tmp, [1000, 10_000] if quick else [1000, 10_000, 100_000],
                               {"gitstore (git)", "joblib.Memory", "pickle / np.save files"},
                               100 if quick else 500),
            "large": large(tmp, [50] if quick else [100, 1024]),
            "sharing": sharing(tmp, 1000 if quick else 10_000),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = time.time() - started
    report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    plot(results, Path(args.out).with_suffix(".png"))
    print(f"\nwrote {args.out} ({results['seconds']:.0f} s)")


def report(r: dict[str, Any]) -> None:
    print(f"machine: {r['machine']}{'  (quick run)' if r['quick'] else ''}\n")
    small_r = r["small"]
    joblib_r = small_r["joblib.Memory"]
    print("small result (a dict of 100 floats), µs per operation; ratio to joblib.Memory")
    print(f"{'':28}{'store':>16}{'retrieve cold':>18}{'retrieve warm':>18}")
    for name, f in small_r.items():
        cells = [f"{f[k]:8.0f} ({f[k] / joblib_r[j]:4.2f}x)" for k, j in
                 (("store", "store"), ("retrieve_cold", "retrieve_warm"),
                  ("retrieve_warm", "retrieve_warm"))]
        print(f"{name:28}" + "".join(f"{c:>18}" for c in cells))
        if "store_batch" in f:
            print(f"{'  store in a batch of ' + str(100):28}{f['store_batch']:8.0f} "
                  f"({f['store_batch'] / joblib_r['store']:4.2f}x)")
    print("  (joblib's retrieve is its cache hit; its store is its first, missing call)\n")
    print("scaling: µs per operation at each number of entries")
    for name, sizes in r["scaling"].items():
        line = "  ".join(f"{s}: store {f['store']:.0f} cold {f['retrieve_cold']:.0f} "
                         f"warm {f['retrieve_warm']:.0f}" for s, f in sizes.items())
        keys = list(sizes)
        growth = (f"  [store x{sizes[keys[-1]]['store'] / sizes[keys[0]]['store']:.2f}, "
                  f"warm x{sizes[keys[-1]]['retrieve_warm'] / sizes[keys[0]]['retrieve_warm']:.2f}]"
                  if len(keys) > 1 else "")
        print(f"  {name:26} {line}{growth}")
    print("\nlarge float64 arrays: MB/s and peak memory (x the array)")
    for name, sizes in r["large"].items():
        for size, f in sizes.items():
            print(f"  {name:26} {size:>8}: store {f['store_MBps']:6.0f} MB/s "
                  f"(peak {f['store_peak_x']:.2f}x)  load {f['load_MBps']:6.0f} MB/s "
                  f"(peak {f['load_peak_x']:.2f}x)")
    s = r["sharing"]
    print("\nsharing a store with a bare repository (seconds; ratio to the git CLI)")
    for where in ("", " (git://)"):
        for op in ("push", "fetch"):
            ours, theirs = s[f"gitstore {op}{where}"], s[f"git {op}{where}"]
            print(f"  {op + (where or ' (local path)'):22} gitstore {ours:7.3f}  git {theirs:7.3f}"
                  f"  ({ours / theirs:.2f}x)")


def plot(r: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(r["small"])
    for k, key in enumerate(("store", "retrieve_cold", "retrieve_warm")):
        axes[0].bar([x + k * 0.27 for x in range(len(names))],
                    [r["small"][n][key] for n in names], width=0.27, label=key)
    axes[0].set_xticks([x + 0.27 for x in range(len(names))], names, rotation=20, fontsize=8)
    axes[0].set_ylabel("µs per operation (small result)")
    axes[0].set_yscale("log")
    axes[0].legend()
    for name, sizes in r["scaling"].items():
        axes[1].plot([int(s) for s in sizes], [f["store"] for f in sizes.values()], marker="o",
                     label=f"{name} store")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("entries")
    axes[1].set_ylabel("µs per store")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
