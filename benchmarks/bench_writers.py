"""Many writers, one remote: W processes each store N entries and push after every store.

    python benchmarks/bench_writers.py [--writers 6] [--entries 200] [--transport git http]

Every push call must succeed and nothing may be lost. Prints, per transport: push calls that
failed, the slowest push call and the 99th percentile (s), the total time (s), and the entries
found on the remote at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # gitservers, components

WRITER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from components import SimpleComponent
from gitstore import GitDataStore
from gitstore.errors import GitStoreError
store = GitDataStore(sys.argv[1])
worker, n, url = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
times, failures = [], []
for i in range(n):
    store.store(SimpleComponent({{"worker": worker, "i": i}}, version="v1"), "value", [worker, i])
    t0 = time.monotonic()
    try:
        store.push(url)
    except GitStoreError as exc:
        failures.append(f"{{type(exc).__name__}}: {{exc}}")
    times.append(time.monotonic() - t0)
print(json.dumps({{"times": times, "failures": failures}}))
"""


def run(writers: int, entries: int, url: str, work: Path) -> dict[str, object]:
    """Run the writers against ``url``; return their combined figures."""
    script = work / "writer.py"
    script.write_text(WRITER.format(tests=str(HERE.parent / "tests")))
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(script), str(work / f"w{w}"), str(w),
                               str(entries), url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for w in range(writers)]
    times: list[float] = []
    failures: list[str] = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(err.decode())
        result = json.loads(out)
        times += result["times"]
        failures += result["failures"]
    total = time.monotonic() - t0
    times.sort()
    return {"failed": len(failures), "max": max(times),
            "p99": times[int(len(times) * 0.99) - 1], "total": total,
            "example": failures[:1]}


def main() -> None:
    from gitservers import git_daemon, http_server

    from gitstore import GitDataStore

    parser = argparse.ArgumentParser()
    parser.add_argument("--writers", type=int, default=6)
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--transport", nargs="+", default=["git", "http"])
    args = parser.parse_args()
    for transport in args.transport:
        work = Path(tempfile.mkdtemp(prefix="bench-writers-"))
        try:
            served = work / "served"
            served.mkdir()
            subprocess.run(["git", "init", "-q", "--bare", str(served / "r.git")], check=True)
            server = git_daemon(served) if transport == "git" else http_server(served)
            with server as prefix:
                figures = run(args.writers, args.entries, prefix + "r.git", work)
            remote = GitDataStore(served / "r.git")
            figures["entries"] = sum(1 for _ in remote.entries("v1"))
            print(transport, json.dumps(figures))
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
