"""First reads, repeat reads and stores: GitDataStore against joblib.Memory, in one run.

    python benchmarks/bench_reads.py            # 1k, 100k and 300k entries (~25 min on 2
                                                # cores: building 300k entries on both sides)
    python benchmarks/bench_reads.py --quick    # 200 and 2,000 entries, under a minute (CI)

The same values on both sides (a dict of 100 floats), looked up by the same integer. Each size
is measured in several runs, the sizes alternating within a run so that drift in the machine's
load hits every size alike; every figure is the median over runs with its range.

* first read, warm process: entries this process has never read, in a store it has open and
  has read from (gitstore's caches hold other entries' trees, not these); joblib: a hit on
  the same entries (its first in this process);
* repeat read: the same entries again (gitstore serves them from its in-process caches;
  joblib reads its files again);
* new process: a fresh interpreter opens the store (``GitDataStore(path)``, or
  ``joblib.Memory(path).cache(f)``) and reads one entry; imports are done before the clock
  starts (they are the same every time and measured by ``python -X importtime``);
* store, one commit each: new entries, each ``store`` its own commit; joblib: a miss (the
  cached function returns a value prepared beforehand, so the figure is joblib's own cost);
* store in a batch: the same number of new entries in one ``batch()``.

Components are built before the clock starts (they are the caller's objects, as joblib's
arguments are); computing their keys is inside ``retrieve`` and ``store``, as always.

Prints the machine, every figure and the ratios the issue targets; writes JSON to
benchmarks/results/bench_reads.json. Ratios, not absolute times, carry across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# the cached functions and the component live in a module both this process and the fresh
# ones import: joblib identifies a function by module, name and code, gitstore a component
# by its parameters and version. One function per size: joblib remembers a function's code
# check per process, not per cache folder, and would write no func_code.py into the second
# folder caching the same function, so that a new process would find every entry invalid
COMPUTE = '''

def compute_{size}(i):
    """joblib's cached function: hands back the value prepared for this call."""
    return VALUES.pop(i)
'''
BENCH_MODULE = '''
import random

from gitstore import ParameterSet

VALUES = {}


def payload(i):
    rng = random.Random(i)
    return {f"x{j}": rng.random() for j in range(100)}


class Result:
    def __init__(self, i):
        self.parameters = ParameterSet({"i": i, "model": {"tau": 10.0, "n": 100}})
        self.input = None
        self.version = "bench"
'''

# a new process: imports excluded, and so are the modules each library imports on first use
# (gitstore opens its repository through dulwich, imported lazily): both sides first open and
# read a separate one-entry store, then collect the imports' garbage, then start the clock
FRESH = '''
import gc, json, sys, time
sys.path.insert(0, {folder!r})
import benchjob
if {lib!r} == "gitstore":
    from gitstore import GitDataStore
    GitDataStore({folder!r} + "/warm-git").retrieve(benchjob.Result(0), "data")
    component = benchjob.Result({i})
    gc.collect()
    t0 = time.perf_counter()
    s = GitDataStore({path!r})
    value = s.retrieve(component, "data")
    elapsed = time.perf_counter() - t0
else:
    import joblib
    joblib.Memory({folder!r} + "/warm-joblib", verbose=0).cache(benchjob.compute_0)(0)
    gc.collect()
    t0 = time.perf_counter()
    f = joblib.Memory({path!r}, verbose=0).cache(benchjob.compute_{size})
    value = f({i})
    elapsed = time.perf_counter() - t0
assert value == benchjob.payload({i})
print(json.dumps(elapsed * 1e6))
'''


def per_op(fn: Callable[[int], Any], ids: list[int]) -> float:
    t0 = time.perf_counter()
    for i in ids:
        fn(i)
    return (time.perf_counter() - t0) / len(ids) * 1e6


def machine() -> dict[str, Any]:
    import dulwich
    import joblib

    return {"platform": platform.platform(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "dulwich": ".".join(map(str, dulwich.__version__)), "joblib": joblib.__version__,
            "load average at start": os.getloadavg()}


class Side:
    """One size: a gitstore store and a joblib cache holding the same ``size`` entries."""

    def __init__(self, folder: Path, size: int, bench: Any) -> None:
        import joblib

        from gitstore import GitDataStore

        self.size, self.bench = size, bench
        self.git_path = folder / f"git-{size}"
        self.joblib_path = folder / f"joblib-{size}"
        t0 = time.perf_counter()
        with GitDataStore(self.git_path) as store:
            for start in range(0, size, 1000):  # built in batches of 1,000 (one commit each)
                with store.batch():
                    for i in range(start, min(size, start + 1000)):
                        store.store(bench.Result(i), "data", bench.payload(i))
        self.git_build = time.perf_counter() - t0
        self.cached = joblib.Memory(str(self.joblib_path), verbose=0).cache(
            getattr(bench, f"compute_{size}"))
        t0 = time.perf_counter()
        for i in range(size):
            bench.VALUES[i] = bench.payload(i)
            self.cached(i)
        self.joblib_build = time.perf_counter() - t0
        self.store = GitDataStore(self.git_path)
        unread = list(range(size))
        random.Random(size).shuffle(unread)
        self.unread = unread
        for i in self.take(20):  # a warm process: the store has been read from
            self.store.retrieve(bench.Result(i), "data")
        self.next_new = 10_000_000

    def take(self, n: int) -> list[int]:
        """Entries never read by this process."""
        if len(self.unread) < n:
            raise SystemExit(f"only {len(self.unread)} unread entries left at {self.size}")
        out, self.unread = self.unread[:n], self.unread[n:]
        return out

    def new_ids(self, n: int) -> list[int]:
        out = list(range(self.next_new, self.next_new + n))
        self.next_new += n
        return out


def fresh_process(folder: Path, lib: str, path: Path, size: int, i: int) -> float:
    code = FRESH.format(folder=str(folder), i=i, lib=lib, path=str(path), size=size)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode:
        raise SystemExit(f"the fresh {lib} process failed:\n{out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def one_run(side: Side, folder: Path, ops: int, fresh: int) -> dict[str, float]:
    bench, store, cached = side.bench, side.store, side.cached
    out: dict[str, float] = {}
    ids = side.take(ops)
    # components are built before the clock starts (the user's objects, as joblib's
    # arguments are); the keys are computed inside retrieve and store, as always
    made = {i: bench.Result(i) for i in ids}
    out["gitstore first read (warm process)"] = per_op(
        lambda i: store.retrieve(made[i], "data"), ids)
    out["gitstore repeat read"] = per_op(lambda i: store.retrieve(made[i], "data"), ids)
    out["joblib hit (first in this process)"] = per_op(cached, ids)
    out["joblib hit (repeat)"] = per_op(cached, ids)
    git_new, joblib_new, batch_new = side.new_ids(ops), side.new_ids(ops), side.new_ids(ops)
    values = {i: bench.payload(i) for i in git_new + batch_new}
    made = {i: bench.Result(i) for i in git_new + batch_new}
    for i in joblib_new:
        bench.VALUES[i] = bench.payload(i)
    out["gitstore store (one commit each)"] = per_op(
        lambda i: store.store(made[i], "data", values[i]), git_new)
    out["joblib miss"] = per_op(cached, joblib_new)
    t0 = time.perf_counter()
    with store.batch():
        for i in batch_new:
            store.store(made[i], "data", values[i])
    out["gitstore store (in a batch)"] = (time.perf_counter() - t0) / ops * 1e6
    git_fresh, joblib_fresh = [], []
    for i in side.take(fresh):
        git_fresh.append(fresh_process(folder, "gitstore", side.git_path, side.size, i))
        joblib_fresh.append(fresh_process(folder, "joblib", side.joblib_path, side.size, i))
    out["gitstore new process: open + first read"] = statistics.median(git_fresh)
    out["joblib new process: open + first hit"] = statistics.median(joblib_fresh)
    return out


RATIOS = [  # (name, numerator, denominator, target)
    ("first read (warm) / joblib hit", "gitstore first read (warm process)",
     "joblib hit (first in this process)", 0.35),
    ("new process open + first read / joblib's", "gitstore new process: open + first read",
     "joblib new process: open + first hit", 1.0),
    ("repeat read / joblib hit", "gitstore repeat read", "joblib hit (repeat)", None),
    ("store, one commit each / joblib miss", "gitstore store (one commit each)", "joblib miss",
     1.0),
    ("store in a batch / joblib miss", "gitstore store (in a batch)", "joblib miss", 0.1),
]
SCALING = [("first read (warm)", "gitstore first read (warm process)", 1.5),
           ("store, one commit each", "gitstore store (one commit each)", 1.5),
           ("new process open + first read", "gitstore new process: open + first read", None)]


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    digits = 2 if med < 10 else 0
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def verdict(values: list[float], target: float | None) -> str:
    if target is None:
        return ""
    met = sum(v <= target for v in values)
    return f"target ≤ {target}: " + ("met" if met == len(values) else
                                     "missed" if not met else f"met in {met} of {len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--sizes", help="comma-separated entry counts (default 1000,100000,"
                                        "300000; --quick: 200,2000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ops", type=int, help="operations per figure and run "
                                                "(default 300; --quick: 40)")
    parser.add_argument("--fresh", type=int, help="new processes per figure and run "
                                                  "(default 5; --quick: 2)")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_reads.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        [200, 2000] if args.quick else [1000, 100_000, 300_000]
    ops = args.ops or (40 if args.quick else 300)
    fresh = args.fresh or (2 if args.quick else 5)
    info = machine()
    print(f"machine: {info['platform']}, {info['cpus']} cpus, Python {info['python']}, dulwich "
          f"{info['dulwich']}, joblib {info['joblib']}, load average "
          f"{' '.join(f'{x:.1f}' for x in info['load average at start'])}")
    tmp = Path(tempfile.mkdtemp(prefix="gitstore-bench-reads-"))
    try:
        (tmp / "benchjob.py").write_text(textwrap.dedent(BENCH_MODULE) + "".join(
            COMPUTE.format(size=size) for size in [0, *sizes]))
        sys.path.insert(0, str(tmp))
        import benchjob  # type: ignore[import-not-found]

        from gitstore import GitDataStore

        with GitDataStore(tmp / "warm-git") as warm:  # see FRESH
            warm.store(benchjob.Result(0), "data", benchjob.payload(0))
        benchjob.VALUES[0] = benchjob.payload(0)
        joblib.Memory(str(tmp / "warm-joblib"), verbose=0).cache(benchjob.compute_0)(0)

        sides = []
        for size in sizes:
            side = Side(tmp, size, benchjob)
            print(f"built {size:,} entries: gitstore {side.git_build:.1f} s (batches of "
                  f"1,000), joblib {side.joblib_build:.1f} s", flush=True)
            sides.append(side)
        runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
        for r in range(args.runs):
            for side in sides if r % 2 == 0 else reversed(sides):
                runs[side.size].append(one_run(side, tmp, ops, fresh))
            print(f"run {r + 1} of {args.runs} done", flush=True)
        for side in sides:
            side.store.close()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report_and_save(args, info, sizes, ops, fresh, runs)
    print(f"removing {tmp} (hundreds of thousands of files at full size)", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def report_and_save(args: argparse.Namespace, info: dict[str, Any], sizes: list[int],
                    ops: int, fresh: int, runs: dict[int, list[dict[str, float]]]) -> None:
    info["load average at end"] = os.getloadavg()
    report: dict[str, Any] = {"machine": info, "quick": args.quick, "ops": ops,
                              "fresh": fresh, "runs": runs, "ratios": {}, "scaling": {}}
    print(f"\n{ops} operations per figure, {fresh} new processes, {args.runs} runs; "
          "medians over runs [range], µs per operation")
    for size in sizes:
        print(f"\n{size:,} entries")
        for name in runs[size][0]:
            print(f"  {name:44} {spread([run[name] for run in runs[size]]):>24}")
        for label, num, den, target in RATIOS:
            values = [run[num] / run[den] for run in runs[size]]
            report["ratios"][f"{label} at {size}"] = values
            print(f"  {label:44} {spread(values):>24}  {verdict(values, target)}")
    small, big = sizes[0], sizes[-1]
    print(f"\nper operation at {big:,} entries / at {small:,}")
    for label, name, target in SCALING:
        values = [b[name] / s[name] for b, s in zip(runs[big], runs[small])]
        report["scaling"][label] = values
        print(f"  {label:44} {spread(values):>24}  {verdict(values, target)}")
    print(f"\nload average at end: {' '.join(f'{x:.1f}' for x in info['load average at end'])}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
