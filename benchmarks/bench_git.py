"""GitDataStore against joblib.Memory on small results, in one run on one machine.

    python benchmarks/bench_git.py            # full: scaling up to 100,000 entries
    python benchmarks/bench_git.py --quick    # a smoke run (CI runs it), up to 10,000

Prints, under a header naming the command and the machine, medians (µs per operation) with the
range over rounds (min–max), and the ratios the issues target; writes JSON to
benchmarks/results/bench_git.json. Ratios, not absolute times, are what carry across machines.

Reads are reported three ways: the first read of each entry in a store object just opened (a new
process's view, imports excluded), the first read of other entries once the process has read the
store (a warm process), and repeat reads of entries already read, which the store serves from its
in-process caches of parsed trees (not what a user meets for a result computed elsewhere).
benchmarks/bench_reads.py measures first reads in depth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import joblib  # noqa: E402

from gitstore import GitDataStore, ParameterSet  # noqa: E402


class Result:
    """A component whose data is a dict of 100 floats."""

    def __init__(self, i: int, version: str = "bench") -> None:
        self.parameters = ParameterSet({"i": i, "model": {"tau": 10.0, "n": 100}})
        self.input = None
        self.version = version


def payload(i: int) -> dict[str, float]:
    rng = random.Random(i)
    return {f"x{j}": rng.random() for j in range(100)}


def per_op(fn: Callable[[int], Any], ids: list[int], repeat: int = 5) -> float:
    """Median over `repeat` rounds of the mean time per call (µs)."""
    return statistics.median(rounds_of(fn, ids, repeat))


def rounds_of(fn: Callable[[int], Any], ids: list[int], repeat: int = 5) -> list[float]:
    """The mean time per call (µs) of each of `repeat` rounds, each on its share of `ids`."""
    rounds = []
    chunk = max(1, len(ids) // repeat)
    for r in range(repeat):
        part = ids[r * chunk:(r + 1) * chunk]
        t0 = time.perf_counter()
        for i in part:
            fn(i)
        rounds.append((time.perf_counter() - t0) / len(part) * 1e6)
    return rounds


def bench_joblib(tmp: Path, n: int) -> dict[str, list[float]]:
    memory = joblib.Memory(str(tmp / "joblib"), verbose=0)

    @memory.cache
    def compute(i: int) -> dict[str, float]:
        return payload(i)

    ids = list(range(n))
    miss = rounds_of(compute, ids)
    hit = rounds_of(compute, ids)  # its first hit of each: joblib keeps nothing in memory
    return {"miss": miss, "hit": hit}


def bench_git(tmp: Path, n: int) -> dict[str, list[float]]:
    store = GitDataStore(tmp / "git")
    data = {i: payload(i) for i in range(3 * n)}
    single = rounds_of(lambda i: store.store(Result(i), "data", data[i]), list(range(n)))
    batch_ids = list(range(n, 2 * n))
    batched = []
    for part in range(0, len(batch_ids), len(batch_ids) // 3):  # three rounds
        chunk = batch_ids[part:part + len(batch_ids) // 3]
        t0 = time.perf_counter()
        for start in range(0, len(chunk), 100):
            with store.batch():
                for i in chunk[start:start + 100]:
                    store.store(Result(i), "data", data[i])
        batched.append((time.perf_counter() - t0) / len(chunk) * 1e6)
    ids = list(range(2 * n))
    random.Random(0).shuffle(ids)
    store.close()
    fresh = GitDataStore(tmp / "git")  # a new process's view: nothing cached yet
    read = lambda i: fresh.retrieve(Result(i), "data")  # noqa: E731
    first_fresh = rounds_of(read, ids[:n // 2], repeat=3)
    first_warm = rounds_of(read, ids[n // 2:], repeat=3)  # entries not read yet
    repeat_read = rounds_of(read, ids[:n // 2], repeat=3)  # the same entries again
    assert fresh.retrieve(Result(3), "data") == data[3]
    fresh.close()
    return {"store": single, "store_batch": batched, "first_read_fresh": first_fresh,
            "first_read_warm": first_warm, "repeat_read": repeat_read}


CODE_MODEL = """
import numpy

from bench_helper import scale


class CodeResult:
    \"\"\"A component without version: versioned by its code (this file + bench_helper.py).\"\"\"

    def __init__(self, i, policy=None):
        self.parameters = {"i": i, "model": {"tau": 10.0, "n": 100}}
        self.input = None
        if policy is not None:
            self.version_policy = policy
"""


def bench_code_identity(tmp: Path, n: int) -> dict[str, float]:
    """key_of of a code-versioned component (a module importing a helper, in a git repo) vs.
    an explicitly versioned one and the commit policy: warm (per-process cache) and cold."""
    import subprocess

    from gitstore import key_of
    from gitstore.codeid import _CLOSURES, code_identity

    repo = tmp / "code"
    repo.mkdir()
    (repo / "bench_helper.py").write_text("def scale(x):\n    return 2 * x\n")
    (repo / "bench_model.py").write_text(CODE_MODEL)
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "code"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    sys.path.insert(0, str(repo))
    try:
        import bench_model  # type: ignore[import-not-found]

        ids = list(range(n))
        explicit = per_op(lambda i: key_of(Result(i)), ids)
        code = per_op(lambda i: key_of(bench_model.CodeResult(i)), ids)
        commit = per_op(lambda i: key_of(bench_model.CodeResult(i, "commit")), ids)
        t0 = time.perf_counter()
        for _ in range(20):
            _CLOSURES.clear()
            code_identity(bench_model.CodeResult)
        revalidate = (time.perf_counter() - t0) / 20 * 1e6
    finally:
        sys.path.remove(str(repo))
    return {"key_of_explicit": explicit, "key_of_code": code, "key_of_commit": commit,
            "code_identity_recompute": revalidate}


def fill(store: GitDataStore, start: int, stop: int) -> None:
    for s in range(start, stop, 1000):
        with store.batch():
            for i in range(s, min(s + 1000, stop)):
                store.store(Result(i), "data", {"i": i})


def bench_scaling(tmp: Path, sizes: list[int], probes: int, rounds: int = 5
                  ) -> dict[str, dict[str, float]]:
    """Per-operation time at each size. Stores of every size are built first, then measured
    in alternating rounds, so that drift in the machine's load hits every size alike."""
    paths = {}
    for size in sizes:
        paths[size] = tmp / f"scale{size}"
        with GitDataStore(paths[size]) as store:
            fill(store, 0, size)
    stores = {size: GitDataStore(paths[size]) for size in sizes}  # fresh: nothing cached
    samples: dict[int, dict[str, list[float]]] = {
        size: {"store": [], "first_read": [], "repeat_read": []} for size in sizes}
    per_round = max(1, probes // rounds)
    for r in range(rounds):
        for size in sizes:
            store = stores[size]
            rng = random.Random(size * 1000 + r)
            new_ids = list(range(10_000_000 + r * per_round, 10_000_000 + (r + 1) * per_round))
            samples[size]["store"].append(
                per_op(lambda i: store.store(Result(i), "data", {"i": i}), new_ids, repeat=1))
            old_ids = [rng.randrange(size) for _ in range(per_round)]
            samples[size]["first_read"].append(
                per_op(lambda i: store.retrieve(Result(i), "data"), old_ids, repeat=1))
            samples[size]["repeat_read"].append(
                per_op(lambda i: store.retrieve(Result(i), "data"), old_ids, repeat=1))
    for store in stores.values():
        store.close()
    return {str(size): {name: values for name, values in figures.items()}
            for size, figures in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_git.json"))
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    sizes = [1000, 10_000] if args.quick else [1000, 10_000, 100_000]
    probes = 200 if args.quick else 1000
    tmp = Path(tempfile.mkdtemp(prefix="gitstore-bench-"))
    try:
        jl = bench_joblib(tmp, n)
        gs = bench_git(tmp, n)
        scaling = bench_scaling(tmp, sizes, probes)
        code = bench_code_identity(tmp, n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    small, big = scaling[str(sizes[0])], scaling[str(sizes[-1])]
    ratios = {
        "first read, warm process / joblib hit (target <= 0.35)":
            med(gs["first_read_warm"]) / med(jl["hit"]),
        "first read, fresh store / joblib hit (target <= 1.0)":
            med(gs["first_read_fresh"]) / med(jl["hit"]),
        "repeat read (in-process cache) / joblib hit (no target)":
            med(gs["repeat_read"]) / med(jl["hit"]),
        "store / joblib_miss (target <= 1.0)": med(gs["store"]) / med(jl["miss"]),
        "store_batch / joblib_miss (target <= 0.1)": med(gs["store_batch"]) / med(jl["miss"]),
        f"store at {sizes[-1]} / at {sizes[0]} (target <= 1.5)":
            med(big["store"]) / med(small["store"]),
        f"first read at {sizes[-1]} / at {sizes[0]} (target <= 1.5)":
            med(big["first_read"]) / med(small["first_read"]),
        "key_of code-versioned / commit policy (target <= 1.0)":
            code["key_of_code"] / code["key_of_commit"],
    }
    command = "python benchmarks/bench_git.py" + (" --quick" if args.quick else "")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}, "
               f"{platform.python_implementation()} {platform.python_version()}")
    print(f"command: {command}    machine: {machine}")
    print(f"{'operation':44} {'µs/op':>10}  {'min–max of rounds':>18}")
    for name, values in [("joblib miss (compute + store)", jl["miss"]),
                         ("joblib hit", jl["hit"]),
                         ("gitstore store (1 commit each)", gs["store"]),
                         ("gitstore store (batches of 100)", gs["store_batch"]),
                         ("gitstore first read, fresh store", gs["first_read_fresh"]),
                         ("gitstore first read, warm process", gs["first_read_warm"]),
                         ("gitstore repeat read (in-process cache)", gs["repeat_read"]),
                         ]:
        print(f"{name:44} {med(values):10.1f}  {min(values):8.0f}–{max(values):<8.0f}")
    for name, value in [("key_of, explicit version", code["key_of_explicit"]),
                        ("key_of, code identity (warm)", code["key_of_code"]),
                        ("key_of, commit policy (warm)", code["key_of_commit"]),
                        ("code identity, cached files re-listed", code["code_identity_recompute"]),
                        ]:
        print(f"{name:44} {value:10.1f}")
    for size, figures in scaling.items():
        for name, values in figures.items():
            print(f"{'at ' + size + ' entries: ' + name.replace('_', ' '):44} "
                  f"{med(values):10.1f}  {min(values):8.0f}–{max(values):<8.0f}")
    print()
    for name, value in ratios.items():
        print(f"{name:60} {value:6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": command, "machine": machine, "joblib": jl,
                                          "gitstore": gs, "scaling": scaling,
                                          "code_identity": code, "ratios": ratios,
                                          "quick": args.quick}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
