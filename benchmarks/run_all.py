"""Every comparison in one run on one machine: gitstore's backends against joblib.Memory, plain
pickle / np.save files (the floor) and the git command line.

    python benchmarks/run_all.py            # the full record (~15-25 minutes)
    python benchmarks/run_all.py --quick    # a smoke run under two minutes (CI runs it)

Prints, for each row, the range over runs (min–max) and the ratio to the yardstick measured in
the same run, under a header naming the command and the machine; writes
benchmarks/results/run_all.json (each row with its command and machine) and, if matplotlib is
installed, benchmarks/results/run_all.png.

Reads are measured twice and reported apart: the *first* read of each entry (what a user meets:
the entry's trees and blobs come from the packs) and a *repeat* read of the same entries, which
the store serves from its in-process caches of parsed trees. Stores are built one commit per
store (the common case) and in batches. Sharing on one machine is compared with
``git clone --local`` (which links objects, as gitstore does), over ``git://`` with ``git push``
and ``git fetch``.
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

def small(tmp: Path, n: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per round: store (one commit each), first reads of those entries in a new store object
    (a new process's view, imports excluded), the same reads repeated (served from in-process
    caches); joblib's two passes are its first and second cache hits. Rounds alternate between
    contenders, so that drift in the machine's load hits all alike."""
    out: dict[str, dict[str, list[float]]] = {}
    contenders = [cls(tmp / f"small-{cls.__name__}") for cls in CONTENDERS]
    data = {i: payload(i) for i in range(n * rounds)}
    for r in range(rounds):
        ids = list(range(r * n, (r + 1) * n))
        for c in contenders:
            figures = out.setdefault(c.name, {"store": [], "first_read": [], "repeat_read": []})
            figures["store"].append(per_op(lambda i: c.store(i, data[i]), ids))
            c.reopen()
            figures["first_read"].append(per_op(c.load, ids))
            figures["repeat_read"].append(per_op(c.load, ids))
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
    return out


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
                "first_read": per_op(c.load, old),
                "repeat_read": per_op(c.load, old),
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

def build_source(path: Path, n: int, one_commit_each: bool) -> GitDataStore:
    store = GitDataStore(path)
    if one_commit_each:
        for i in range(n):
            store.store(Result(i), "data", payload(i))
    else:
        for start in range(0, n, 1000):
            with store.batch():
                for i in range(start, min(start + 1000, n)):
                    store.store(Result(i), "data", payload(i))
    return store


def sharing(tmp: Path, n: int, runs: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per run, for a source store of ``n`` entries built one commit per store and in
    batches of 1,000: gitstore's push and fetch against the git command line, in the same run.
    On one machine the yardstick is ``git clone --mirror --local`` (it links the objects, as
    gitstore links packs; ``git push`` to a path would re-pack); over ``git://`` (git daemon on
    127.0.0.1, dulwich's client) it is ``git push`` and ``git fetch``."""
    from gitservers import git_daemon

    git = shutil.which("git") or "git"

    def run(*args: str) -> None:
        subprocess.run([git, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def timed(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    out: dict[str, dict[str, list[float]]] = {}
    for built, one_each in (("one commit per store", True), ("batches of 1,000", False)):
        name = "one" if one_each else "batch"
        src_path = tmp / f"share-src-{name}"
        src = build_source(src_path, n, one_each)
        served = tmp / f"served-{name}"
        served.mkdir()
        rows = out.setdefault(built, {})

        def add(row: str, seconds: float) -> None:
            rows.setdefault(row, []).append(seconds)

        with git_daemon(served) as prefix:
            for r in range(runs):  # alternating: load drift hits both sides alike
                dest = tmp / f"share-{name}-dst{r}.git"
                run("init", "-q", "--bare", str(dest))
                add("gitstore push, local path", timed(lambda: src.push(str(dest))))
                clone = tmp / f"share-{name}-clone{r}.git"
                add("git clone --mirror --local",
                    timed(lambda: run("clone", "-q", "--mirror", "--local", str(src_path),
                                      str(clone))))
                fetcher = GitDataStore(tmp / f"share-{name}-fetch{r}")
                add("gitstore fetch, local path", timed(lambda: fetcher.fetch(str(dest))))
                fetcher.pull(str(dest))
                assert fetcher.retrieve(Result(n - 1), "data") == payload(n - 1)
                fetcher.close()
                for side in ("gitstore", "git"):
                    run("init", "-q", "--bare", str(served / f"{side}{r}.git"))
                add("gitstore push (git://)", timed(lambda: src.push(f"{prefix}gitstore{r}.git")))
                add("git push (git://)", timed(lambda: run(
                    "--git-dir", str(src_path), "push", "-q", f"{prefix}git{r}.git",
                    "refs/gitstore/*:refs/gitstore/*")))
                net = GitDataStore(tmp / f"share-{name}-net{r}")
                add("gitstore fetch (git://)", timed(lambda: net.fetch(f"{prefix}gitstore{r}.git")))
                net.close()
                bare = tmp / f"share-{name}-gitfetch{r}.git"
                run("init", "-q", "--bare", str(bare))
                add("git fetch (git://)", timed(lambda: run(
                    "--git-dir", str(bare), "fetch", "-q", f"{prefix}gitstore{r}.git",
                    "refs/gitstore/*:refs/gitstore/*")))
            run("--git-dir", str(served / "gitstore0.git"), "fsck", "--strict", "--no-dangling")
        src.close()
    return out


#: (gitstore row, yardstick row, label) of the sharing table
SHARING_ROWS = [
    ("gitstore push, local path", "git clone --mirror --local", "push, local path"),
    ("gitstore fetch, local path", "git clone --mirror --local", "fetch, local path"),
    ("gitstore push (git://)", "git push (git://)", "push over git://"),
    ("gitstore fetch (git://)", "git fetch (git://)", "fetch over git://"),
]


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
            "command": "python benchmarks/run_all.py" + (" --quick" if quick else ""),
            "small": small(tmp, 100 if quick else 500, 3 if quick else 5),
            "scaling": scaling(tmp, [1000, 10_000] if quick else [1000, 10_000, 100_000],
                               {"gitstore (git)", "joblib.Memory", "pickle / np.save files"},
                               100 if quick else 500),
            "large": large(tmp, [50] if quick else [100, 1024]),
            "sharing": sharing(tmp, 1000 if quick else 10_000, 2 if quick else 3),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["seconds"] = time.time() - started
    results["rows"] = report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    plot(results, Path(args.out).with_suffix(".png"))
    print(f"\nwrote {args.out} ({results['seconds']:.0f} s)")


def span(values: list[float], fmt: str = "{:.0f}") -> str:
    """``min–max`` of the runs (one value when they agree at this precision)."""
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}–{high}"


def report(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Print every table; return its rows (with command and machine) for the JSON."""
    rows: list[dict[str, Any]] = []
    where = f"command: {r['command']}    machine: {r['machine']}"

    def row(table: str, name: str, values: list[float], unit: str,
            ratios: list[float] | None = None, yardstick: str = "") -> None:
        rows.append({"table": table, "row": name, "unit": unit, "min": min(values),
                     "max": max(values), "runs": len(values),
                     "ratio_min": min(ratios) if ratios else None,
                     "ratio_max": max(ratios) if ratios else None, "yardstick": yardstick,
                     "command": r["command"], "machine": r["machine"]})

    small_r = r["small"]
    joblib_r = small_r["joblib.Memory"]
    rounds = len(joblib_r["store"])
    table = "small result (a dict of 100 floats)"
    print(f"{table}: µs per operation, min–max of {rounds} rounds; ratio to joblib.Memory "
          f"in the same round\n  {where}")
    print(f"{'':28}{'store (1 commit)':>24}{'first read':>24}{'repeat read':>24}")
    for name, f in small_r.items():
        cells = []
        for key in ("store", "first_read", "repeat_read"):
            ratios = [a / b for a, b in zip(f[key], joblib_r[key])]
            cells.append(f"{span(f[key])} ({span(ratios, '{:.2f}')}x)")
            row(table, f"{name} {key.replace('_', ' ')}", f[key], "µs", ratios,
                f"joblib.Memory {key.replace('_', ' ')}")
        print(f"{name:28}" + "".join(f"{c:>24}" for c in cells))
        if "store_batch" in f:
            ratios = [a / b for a, b in zip(f["store_batch"], joblib_r["store"])]
            print(f"{'  store in a batch of 100':28}{span(f['store_batch']) + ' (' + span(ratios, '{:.2f}') + 'x)':>24}")
            row(table, f"{name} store in a batch of 100", f["store_batch"], "µs", ratios,
                "joblib.Memory store")
    print("  (joblib: store is its first, missing call; first read its first hit, repeat read "
          "its second;\n   gitstore's repeat reads are served from its in-process caches)\n")
    print(f"scaling: µs per operation at each number of entries (stores built in batches; "
          f"one run)\n  {where}")
    for name, sizes in r["scaling"].items():
        line = "  ".join(f"{s}: store {f['store']:.0f} first {f['first_read']:.0f} "
                         f"repeat {f['repeat_read']:.0f}" for s, f in sizes.items())
        keys = list(sizes)
        growth = (f"  [store x{sizes[keys[-1]]['store'] / sizes[keys[0]]['store']:.2f}, "
                  f"first read x{sizes[keys[-1]]['first_read'] / sizes[keys[0]]['first_read']:.2f}]"
                  if len(keys) > 1 else "")
        print(f"  {name:26} {line}{growth}")
    print(f"\nlarge float64 arrays: MB/s and peak memory (x the array; one run)\n  {where}")
    for name, sizes in r["large"].items():
        for size, f in sizes.items():
            print(f"  {name:26} {size:>8}: store {f['store_MBps']:6.0f} MB/s "
                  f"(peak {f['store_peak_x']:.2f}x)  load {f['load_MBps']:6.0f} MB/s "
                  f"(peak {f['load_peak_x']:.2f}x)")
    for built, figures in r["sharing"].items():
        runs = len(next(iter(figures.values())))
        table = f"sharing, source built {built}"
        print(f"\n{table}: seconds, min–max of {runs} runs; ratio to the git command in the "
              f"same run\n  {where}")
        for ours, theirs, label in SHARING_ROWS:
            ratios = [a / b for a, b in zip(figures[ours], figures[theirs])]
            print(f"  {label:18} gitstore {span(figures[ours], '{:.3f}'):>13}   "
                  f"{theirs:27} {span(figures[theirs], '{:.3f}'):>13}   "
                  f"ratio {span(ratios, '{:.2f}')}")
            row(table, label, figures[ours], "s", ratios, theirs)
    return rows


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
    for k, key in enumerate(("store", "first_read", "repeat_read")):
        axes[0].bar([x + k * 0.27 for x in range(len(names))],
                    [statistics.median(r["small"][n][key]) for n in names], width=0.27,
                    label=key.replace("_", " "))
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
