"""One entry of a large version, from a partial fetch, against git's own partial clone.

    python benchmarks/bench_partial.py [--entries 5000] [--mb 1] [--quick]

A remote store of N entries, each an incompressible array of ``--mb`` MB and a small note,
served by ``git daemon`` with ``uploadpack.allowFilter``. gitstore: ``pull(filter=
"blob:limit=64k")`` into a fresh store (commits, trees and descriptions only), then
``retrieve`` of one entry's array (its blob fetched by id on first read, checked, through the
quarantine). The yardstick, in the same run: git's own partial fetch of the same refs into a
fresh bare repository (``git fetch --filter=blob:limit=64k`` from a promisor remote), then
``git cat-file`` of the same blob (git's lazy fetch). Each side runs twice, in alternating
order (the first fetch from a freshly written remote meets a cold page cache); the best run of
each is printed, in seconds and as ratios, with the bytes each side holds afterwards.
``--quick``: 200 entries (CI).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # gitservers, components

from components import SimpleComponent  # noqa: E402
from gitservers import git_daemon  # noqa: E402

from gitstore import GitDataStore  # noqa: E402

FILTER = "blob:limit=64k"


def C(i: int) -> SimpleComponent:
    return SimpleComponent({"i": i}, version="v1")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def git(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], check=True, capture_output=True, **kw)  # type: ignore


def ours_side(work: Path, rep: int, url: str, pick: int, values: int, n: int
              ) -> dict[str, float]:
    path = work / f"ours-{rep}.git"
    with GitDataStore(path) as ours:
        ours.remote_add("origin", url)
        t0 = time.perf_counter()
        ours.pull("origin", filter=FILTER)
        fetch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        data = ours.retrieve(C(pick), "rates")
        read_s = time.perf_counter() - t0
        assert data is not None and data.shape == (values,)
        t0 = time.perf_counter()
        listed = sum(1 for _ in ours.entries_sized())
        list_s = time.perf_counter() - t0
        assert listed == n
    return {"ours fetch": fetch_s, "ours read": read_s, "ours list": list_s,
            "ours bytes": du(path)}


def git_side(work: Path, rep: int, url: str, pick: int, values: int, n: int
             ) -> dict[str, float]:
    bare = work / f"git-{rep}.git"
    git("init", "-q", "--bare", str(bare))
    for key, value in (("remote.origin.url", url), ("remote.origin.promisor", "true"),
                       ("remote.origin.partialclonefilter", FILTER)):
        git("--git-dir", str(bare), "config", key, value)
    t0 = time.perf_counter()
    git("--git-dir", str(bare), "fetch", "-q", f"--filter={FILTER}", "origin",
        "+refs/gitstore/*:refs/gitstore/*")
    fetch_s = time.perf_counter() - t0
    with GitDataStore(work / "served" / "src.git", create=False) as src:
        blob = next(src.attributes(e)["rates"]["id"] for e in src.entries()
                    if e.component["parameters"]["i"] == pick)
    t0 = time.perf_counter()
    out = git("--git-dir", str(bare), "cat-file", "blob", blob).stdout
    read_s = time.perf_counter() - t0
    assert len(out) == values * 8 + 128
    return {"git fetch": fetch_s, "git read": read_s, "git bytes": du(bare)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="200 entries")
    parser.add_argument("--repeat", type=int, default=2, choices=(1, 2))
    args = parser.parse_args()
    n = 200 if args.quick else args.entries
    values = int(args.mb * (1 << 20) / 8)
    work = Path(tempfile.mkdtemp(prefix="bench-partial-"))
    rng = np.random.default_rng(0)
    try:
        served = work / "served"
        t0 = time.perf_counter()
        with GitDataStore(served / "src.git") as src:
            for start in range(0, n, 50):
                with src.batch():
                    for i in range(start, min(n, start + 50)):
                        src.store(C(i), "rates", rng.random(values))
                        src.store(C(i), "note", f"entry {i}")
        git("--git-dir", str(served / "src.git"), "config", "uploadpack.allowFilter", "true")
        made = time.perf_counter() - t0
        print(f"remote: {n} entries x {args.mb:g} MB, {du(served) / 1e6:.0f} MB on disk "
              f"(made in {made:.1f} s)")
        pick = n // 2
        runs: dict[str, list[float]] = {}
        with git_daemon(served) as prefix:
            url = prefix + "src.git"
            # each side twice, in alternating order: the first fetch of a freshly written
            # remote pays for a cold page cache on the server's side
            for rep, order in enumerate((("ours", "git"), ("git", "ours"))[:args.repeat]):
                for side in order:
                    timings = (ours_side if side == "ours" else git_side)(work, rep, url, pick,
                                                                           values, n)
                    for name, value in timings.items():
                        runs.setdefault(name, []).append(value)
        fetch_s, read_s = min(runs["ours fetch"]), min(runs["ours read"])
        git_fetch_s, git_read_s = min(runs["git fetch"]), min(runs["git read"])
        list_s = min(runs["ours list"])
        ours_bytes, git_bytes = runs["ours bytes"][0], runs["git bytes"][0]
        ours_total, git_total = fetch_s + read_s, git_fetch_s + git_read_s
        print(f"partial fetch   gitstore {fetch_s:7.3f} s   git {git_fetch_s:7.3f} s   "
              f"ratio {fetch_s / git_fetch_s:5.2f}")
        print(f"one entry read  gitstore {read_s:7.3f} s   git {git_read_s:7.3f} s   "
              f"ratio {read_s / git_read_s:5.2f}")
        print(f"total           gitstore {ours_total:7.3f} s   git {git_total:7.3f} s   "
              f"ratio {ours_total / git_total:5.2f}   (target: <= 2 s for 5000 x 1 MB)")
        print(f"list {n} entries with sizes (no blob): {list_s:.3f} s")
        print("runs (s): " + "; ".join(f"{k} {[round(v, 3) for v in vs]}"
                                       for k, vs in runs.items() if "bytes" not in k))
        print(f"held afterwards: gitstore {ours_bytes / 1e6:.1f} MB, git {git_bytes / 1e6:.1f} MB"
              f" (the remote: {du(served) / 1e6:.0f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
