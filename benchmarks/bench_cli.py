"""The command line on a store of N entries, against git itself, in one run on one machine.

    python benchmarks/bench_cli.py              # 10,000 entries
    python benchmarks/bench_cli.py --quick      # 1,000 entries (CI runs it)
    python benchmarks/bench_cli.py --entries 100000 --batch 1000

The store is built with ``store.batch()``: ``--batch`` entries per commit (default 100), so a
10k store has 100 commits on one version ref (one commit per store would only make the build
slower: ``ls`` dates entries by walking first-parent history, one tree diff per commit).
Each figure is the median of 3 runs of a new process (``--repeat``), imports included, as wall
time and as CPU time (user + system of the child: on a shared machine the wall time also
counts waiting for a core):

- ``gitstore ls --json`` against ``git ls-tree -r --long`` of the same ref (target ≤ 2×), with
  the listing index fresh (``<store>/gitstore/listing.sqlite``, built by one listing first,
  whose time is given as "index build"), and without it (``GITSTORE_LISTING_INDEX=0``);
- ``gitstore show KEY`` (target ≤ 0.1 s); ``gitstore stats`` (target ≤ 1 s);
- ``gitstore --help`` (target ≤ 0.15 s) against ``git --version``: the first run (typer
  renders the text) and the later ones (served from the cache, see ``gitstore_cli.start``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitstore import GitDataStore, ParameterSet, key_of  # noqa: E402


class Result:
    def __init__(self, i: int) -> None:
        self.parameters = ParameterSet({"i": i, "model": {"tau": 10.0, "n": 100}})
        self.input = None
        self.version = "bench"


def build(path: Path, n: int, batch: int) -> str:
    store = GitDataStore(path, create=True)
    first = ""
    for start in range(0, n, batch):
        with store.batch():
            for i in range(start, min(n, start + batch)):
                c = Result(i)
                store.store(c, "spikes", [float(i)] * 10)
                store.store(c, "summary", {"i": i})
    first = key_of(Result(0))  # not listed: the first listing (index build) is measured
    store.close()
    return first


CPU: dict[str, float] = {}


def timed(cmd: list[str], repeat: int, env: dict[str, str], name: str = "") -> float:
    """Median wall time of ``repeat`` runs; the median CPU time goes to ``CPU[name]``."""
    import resource

    runs, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        runs.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-500:]}")
    if name:
        CPU[name] = statistics.median(cpu)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 entries")
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--batch", type=int, default=100, help="entries per commit")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.entries or (1000 if args.quick else 10_000)
    exe = Path(sys.executable).with_name("gitstore")
    gs = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                          "from gitstore_cli.main import main; main()"]
    print(f"machine: {platform.machine()} {platform.processor() or ''} "
          f"{os.cpu_count()} cpus, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.git"
        t0 = time.perf_counter()
        key = build(path, n, args.batch)
        print(f"built {n} entries, {args.batch} per commit, in {time.perf_counter() - t0:.1f} s")
        # --help is served from a cache after its first run (gitstore_cli.start): a fresh
        # cache folder, the first run timed on its own, then the median of the cached ones
        env = dict(os.environ, GITSTORE_DIR=str(path), XDG_CACHE_HOME=str(Path(tmp) / "cache"))
        # as a user's installed package runs: byte code cached (an editable install writes
        # its .pyc files at the first run, here one that is not counted)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        timed(gs + ["stats"], 1, env)
        ref = "refs/gitstore/versions/bench"
        git = ["git", f"--git-dir={path}"]
        subprocess.run(git + ["rev-parse", ref], check=True, stdout=subprocess.DEVNULL)
        r = args.repeat
        index_build_s = timed(gs + ["ls", "--json"], 1, env, "index_build")
        res = {
            "entries": n,
            "index_build_s": index_build_s,
            "ls_json_s": timed(gs + ["ls", "--json"], r, env, "ls_json"),
            # one run past 20k entries: each takes a while, and the index is the default
            "ls_json_noindex_s": timed(gs + ["ls", "--json"], r if n <= 20_000 else 1,
                                       dict(env, GITSTORE_LISTING_INDEX="0"), "ls_json_noindex"),
            "git_ls_tree_s": timed(git + ["ls-tree", "-r", "--long", ref], r, env, "git_ls_tree"),
            "show_s": timed(gs + ["show", key[len("k1-sha256:"):][:12]], r, env, "show"),
            "stats_s": timed(gs + ["stats"], r, env, "stats"),
            "help_first_s": timed(gs + ["--help"], 1, env),
            "help_s": timed(gs + ["--help"], r, env),
            "git_version_s": timed(["git", "--version"], r, env),
        }
    res["ls_ratio"] = res["ls_json_s"] / res["git_ls_tree_s"]
    res["ls_noindex_ratio"] = res["ls_json_noindex_s"] / res["git_ls_tree_s"]
    res["cpu_s"] = dict(CPU)
    cpu_ratio = CPU["ls_json"] / max(CPU["git_ls_tree"], 1e-3)
    rows = [
        ("gitstore ls --json", res["ls_json_s"], f"{res['ls_ratio']:.1f}x git ls-tree -r --long "
         f"({res['git_ls_tree_s']:.3f} s); CPU {CPU['ls_json']:.2f} s, {cpu_ratio:.1f}x git's "
         f"{CPU['git_ls_tree']:.2f} s; target <= 2x", res["ls_ratio"] <= 2),
        ("  without the index", res["ls_json_noindex_s"],
         f"{res['ls_noindex_ratio']:.1f}x git; CPU {CPU['ls_json_noindex']:.2f} s", False),
        ("  index build (1st ls)", res["index_build_s"],
         f"once, then updated by tree diff; CPU {CPU['index_build']:.2f} s", True),
        ("gitstore show KEY", res["show_s"], "target <= 0.1 s", res["show_s"] <= 0.1),
        ("gitstore stats", res["stats_s"], "target <= 1 s", res["stats_s"] <= 1),
        ("gitstore --help", res["help_s"], f"git --version {res['git_version_s']:.3f} s; "
         "target <= 0.15 s", res["help_s"] <= 0.15),
        ("  first --help", res["help_first_s"], "typer renders it; then cached",
         res["help_first_s"] <= 0.15),
    ]
    print(f"{n} entries, medians of {r} new processes:")
    for name, secs, note, met in rows:
        verdict = "" if name.startswith("  ") else f"  [{'met' if met else 'missed'}]"
        print(f"  {name:24} {secs:8.3f} s  {note}{verdict}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_cli.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
