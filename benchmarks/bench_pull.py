"""Pull timings, to keep fetching from honest remotes fast while everything is checked.

    python benchmarks/bench_pull.py [--entries 3000] [--repeat 3]

A remote store of N entries (one commit each); a fresh store pulls it in full, then pulls
10 new entries; over a path (packs linked) and over git daemon (packs indexed). The yardstick,
measured in the same run: the git CLI fetching the same refs into a fresh bare repository
(``git fetch`` over the same path or git:// URL, which also checks connectivity). Prints, under a
header naming the command and the machine, the range (min–max) of ``--repeat`` runs in ms and
the range of gitstore / git, run by run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # gitservers, components

from components import SimpleComponent  # noqa: E402
from gitservers import git_daemon  # noqa: E402

from gitstore import GitDataStore  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    try:
        served = work / "served"
        src = GitDataStore(served / "src.git")
        for i in range(args.entries):
            src.store(SimpleComponent({"x": i}, version="v1"), "value", list(range(20)))
        fresh = 10 ** 6
        results: dict[str, list[float]] = {}
        for kind in ("path", "git"):
            for rep in range(args.repeat):
                dst = GitDataStore(work / f"dst-{kind}-{rep}.git")

                def pull(url: str) -> None:
                    dst.pull(url)

                for label in ("full", "+10"):
                    if label == "+10":
                        for _ in range(10):
                            fresh += 1
                            src.store(SimpleComponent({"x": fresh}, version="v1"), "value", 1)
                    if kind == "path":
                        elapsed = timed(lambda: pull(str(served / "src.git")))
                    else:
                        with git_daemon(served) as prefix:
                            elapsed = timed(lambda: pull(prefix + "src.git"))
                    results.setdefault(f"{kind} {label}", []).append(elapsed)
                dst.close()
                bare = work / f"git-{kind}-{rep}.git"
                subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
                with git_daemon(served) as prefix:
                    url = str(served / "src.git") if kind == "path" else prefix + "src.git"
                    for label in ("full", "+10"):
                        if label == "+10":
                            for _ in range(10):
                                fresh += 1
                                src.store(SimpleComponent({"x": fresh}, version="v1"), "value", 1)
                        elapsed = timed(lambda: subprocess.run(
                            ["git", "--git-dir", str(bare), "fetch", "-q", url,
                             "+refs/gitstore/*:refs/gitstore/*"], check=True))
                        results.setdefault(f"git CLI {kind} {label}", []).append(elapsed)
        src.close()
        command = ("python benchmarks/bench_pull.py --entries "
                   f"{args.entries} --repeat {args.repeat}")
        print(f"command: {command}    machine: {platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.system()}, Python {platform.python_version()}")
        for name, runs in results.items():
            if name.startswith("git CLI"):
                continue
            theirs = results[f"git CLI {name}"]
            ratios = [a / b for a, b in zip(runs, theirs)]
            print(f"pull {name:9s} {min(runs) * 1000:7.1f}–{max(runs) * 1000:<7.1f} ms   "
                  f"git fetch {min(theirs) * 1000:7.1f}–{max(theirs) * 1000:<7.1f} ms   "
                  f"ratio {min(ratios):.2f}–{max(ratios):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
