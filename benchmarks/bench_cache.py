"""@store.cache against joblib.Memory decorating the same function, in the same run.

    python benchmarks/bench_cache.py            # the full record (100 MB array)
    python benchmarks/bench_cache.py --quick    # a smoke run (CI runs it): 10 MB, fewer rounds

Measures (medians): a hit in a fresh process (import the library, open the store, hit; the
user's module ``benchwork`` and numpy, the same for both, are imported before the clock
starts; a second row starts the clock before them), a hit in a warm process, a miss's overhead
(the miss minus the function's own time), and hashing an array argument the first time
(gitstore keeps a digest per array object for the process: the second time is shown too).
Prints each figure and gitstore / joblib ratios (below 1: gitstore is faster).

Fresh processes run as a user's would: with byte-code caching on (a PYTHONDONTWRITEBYTECODE
in the environment is dropped for them, and one discarded run per library writes the
``.pyc`` files of an editable install), so neither library is compiled from source each time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MODULE = '''
import numpy as np

def work(x, n=1000):
    return np.arange(n, dtype=float) * x

def total(a):
    return float(a[:10].sum())
'''

FRESH = '''
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {folder!r})
import benchwork
t1 = time.perf_counter()
if {lib!r} == "gitstore":
    import gitstore
    f = gitstore.cache({store!r})(benchwork.work)
else:
    import joblib
    f = joblib.Memory({store!r}, verbose=0).cache(benchwork.work)
r = f(1)
t2 = time.perf_counter()
print(t2 - t1, t2 - t0)
'''


def median_time(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    args = parser.parse_args()
    rounds = 5 if args.quick else 15
    warm_calls = 200 if args.quick else 2000
    misses = 20 if args.quick else 200
    megabytes = 10 if args.quick else 100

    import joblib
    import numpy as np

    import gitstore
    from gitstore.memo import forget_digests

    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    (tmp / "benchwork.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(tmp))
    import benchwork

    g = gitstore.cache(tmp / "gs")(benchwork.work)
    j = joblib.Memory(tmp / "jl", verbose=0).cache(benchwork.work)
    results: dict[str, tuple[float, float]] = {}

    # a hit in a fresh process
    g(1), j(1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    codes = {lib: FRESH.format(folder=str(tmp), lib=lib, store=str(store))
             for lib, store in (("gitstore", tmp / "gs"), ("joblib", tmp / "jl"))}
    runs: dict[str, list[tuple[float, float]]] = {"gitstore": [], "joblib": []}
    for i in range(rounds + 1):  # alternating, so that a burst of load hits both alike
        for lib, code in codes.items():
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, env=env).stdout.split()
            if i:  # the first run writes byte code: not counted
                runs[lib].append((float(out[0]), float(out[1])))
    for col, name in ((0, "hit, fresh process"), (1, "  + import of numpy, user module")):
        results[name] = (statistics.median(r[col] for r in runs["gitstore"]),
                         statistics.median(r[col] for r in runs["joblib"]))

    # a hit in a warm process
    results["hit, warm process"] = (
        median_time(lambda: [g(1) for _ in range(10)], warm_calls // 10) / 10,
        median_time(lambda: [j(1) for _ in range(10)], warm_calls // 10) / 10)

    # a miss's overhead: the miss minus the function's own time
    own = median_time(lambda: benchwork.work(7), 50)
    counter = iter(range(10, 10_000_000))

    def miss(f: Any) -> float:
        x = next(counter)
        t0 = time.perf_counter()
        f(x)
        return time.perf_counter() - t0 - own
    results["miss overhead"] = (statistics.median(miss(g) for _ in range(misses)),
                                statistics.median(miss(j) for _ in range(misses)))

    # hashing an array argument
    arr = np.random.default_rng(0).random(megabytes * 2**20 // 8)
    gt = gitstore.cache(tmp / "gs")(benchwork.total)

    def gitstore_hash() -> None:
        forget_digests()
        gt.key(arr)
    results[f"hash {megabytes} MB array"] = (median_time(gitstore_hash, rounds),
                                            median_time(lambda: joblib.hash(arr), rounds))
    gt.key(arr)
    again = median_time(lambda: gt.key(arr), rounds)

    print(f"{'measure':28} {'gitstore':>12} {'joblib':>12} {'ratio':>8}")
    for name, (ours, theirs) in results.items():
        print(f"{name:28} {ours * 1e3:10.3f}ms {theirs * 1e3:10.3f}ms {ours / theirs:8.2f}")
    print(f"{'same array again (gitstore)':28} {again * 1e3:10.3f}ms")


if __name__ == "__main__":
    main()
