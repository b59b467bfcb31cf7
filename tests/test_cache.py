"""Memoized functions (issue 14): ``@store.cache``, lineage, argument types, the joblib surface,
worker pools."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import hashlib
import math
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import joblib
import numpy as np
import pytest

import gitstore
import memo_workers
from gitstore import CachedFunction, GitDataStore, ShelveDataStore, code_identity
from gitstore.errors import ParameterError, UnhashableParameterError
from gitstore.keys import canonical_bytes
from gitstore.memo import forget_digests


@pytest.fixture
def store(tmp_path: Path) -> GitDataStore:
    return GitDataStore(tmp_path / "store")


class Counting:
    def __init__(self) -> None:
        self.calls: list[Any] = []


# --- 1. the decorator -------------------------------------------------------------------------

def test_hit_returns_the_stored_value_without_calling(store: GitDataStore) -> None:
    seen = Counting()

    @store.cache
    def square(x: int) -> int:
        seen.calls.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9 and square(4) == 16
    assert seen.calls == [3, 4]
    assert len(list(store.entries())) == 2


@pytest.mark.parametrize("value", [None, 0, 0.0, "", [], {}, False])
def test_none_and_falsy_results_are_hits(store: GitDataStore, value: Any) -> None:
    seen = Counting()

    @store.cache
    def f(x: int) -> Any:
        seen.calls.append(x)
        return value

    assert f(1) == value and f(1) == value
    assert type(f(1)) is type(value)
    assert seen.calls == [1]
    assert f.check_call_in_cache(1) and not f.check_call_in_cache(2)


def test_arguments_are_bound_with_defaults(store: GitDataStore) -> None:
    seen = Counting()

    @store.cache
    def f(x: int, y: int = 2, *rest: int, **options: Any) -> int:
        seen.calls.append((x, y, rest, options))
        return x + y + sum(rest) + len(options)

    assert f(1) == f(1, 2) == f(x=1) == f(1, y=2) == 3
    assert len(seen.calls) == 1
    assert f.key(1) == f.key(x=1, y=2)
    assert f.key(1, 2, 3) != f.key(1, 2) != f.key(1, 2, a=1)
    assert f.key(1, 2, a=1, b=2) == f.key(1, 2, b=2, a=1)
    with pytest.raises(ParameterError):
        f.key()  # a missing argument: a typed error, not a TypeError from deep inside


def test_ignore(store: GitDataStore) -> None:
    seen = Counting()

    @store.cache(ignore=["verbose"])
    def f(x: int, verbose: bool = False) -> int:
        seen.calls.append(x)
        return x

    assert f(1) == f(1, verbose=True) == 1 and seen.calls == [1]
    with pytest.raises(ParameterError, match="nope"):
        store.cache(ignore=["nope"])(lambda x: x)


def test_component_type_version_and_parameters(store: GitDataStore) -> None:
    @store.cache
    def f(x: int, y: str = "a") -> int:
        return x

    f(5)
    (entry,) = store.entries()
    assert entry.type == f"{__name__}.test_component_type_version_and_parameters.<locals>.f"
    assert entry.version == code_identity(f.func).version
    assert entry.component["parameters"] == {"x": 5, "y": "a"}
    assert entry.component["code"]["files"] == code_identity(f.func).as_mapping()

    @store.cache(version="2.0")
    def g(x: int) -> int:
        return x

    g(1)
    assert {e.version for e in store.entries() if e.type.endswith(".g")} == {"2.0"}


def test_a_script_function_is_named_by_its_module_and_edits_miss(tmp_path: Path) -> None:
    """``python pipeline.py``: ``pipeline.f``, as the module importing it names it; an edit of
    the script (its code identity) misses, an unchanged script hits in a fresh process."""
    script = tmp_path / "pipeline.py"
    source = textwrap.dedent("""
        import sys
        import gitstore
        cached = gitstore.cache(sys.argv[1])

        @cached
        def f(x):
            print("computing")
            return x * FACTOR

        FACTOR = 2
        if __name__ == "__main__":
            print(f(21), f.full_type)
    """)
    script.write_text(source)
    run = [sys.executable, str(script), str(tmp_path / "store")]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split("\n")
    assert first[:2] == ["computing", "42 pipeline.f"]
    again = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert again == "42 pipeline.f\n"  # a hit in a fresh process
    script.write_text(source.replace("FACTOR = 2", "FACTOR = 3"))
    edited = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert edited == "computing\n63 pipeline.f\n"


def test_async_functions(store: GitDataStore) -> None:
    seen = Counting()

    @store.cache
    async def fetch(x: int) -> list[int]:
        seen.calls.append(x)
        await asyncio.sleep(0)
        return [x, x]

    async def main() -> list[Any]:
        return [await fetch(2), await fetch(2), await fetch.call(2)]

    assert asyncio.run(main()) == [[2, 2]] * 3
    assert seen.calls == [2, 2]  # the forced call computed again


def test_any_backend_has_cache(tmp_path: Path) -> None:
    with ShelveDataStore(tmp_path / "shelf") as shelf:
        seen = Counting()

        @shelf.cache
        def f(x: int) -> None:
            seen.calls.append(x)

        assert f(1) is None and f(1) is None and seen.calls == [1]


def test_threads_of_one_process_compute_once(store: GitDataStore) -> None:
    import threading

    seen = Counting()
    gate = threading.Barrier(4)

    @store.cache
    def slow(x: int) -> int:
        seen.calls.append(x)
        time.sleep(0.05)  # widens the race: without the per-key lock, every thread computes
        return x

    def run() -> None:
        gate.wait()
        assert slow(1) == 1

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen.calls == [1]


# --- 2. lineage -----------------------------------------------------------------------------

def test_an_upstream_result_is_an_input(store: GitDataStore) -> None:
    @store.cache
    def load(n: int) -> np.ndarray:
        return np.arange(n, dtype=float)

    @store.cache
    def total(data: np.ndarray, scale: float = 1.0) -> float:
        return float(data.sum() * scale)

    raw = load(4)
    assert total(raw) == 6.0
    down = next(e for e in store.entries() if e.type.endswith("total"))
    assert down.component["input"] == [load.key(4)]
    # the same bytes not from a cached call are keyed by content: another key
    assert total.key(np.arange(4, dtype=float)) != total.key(raw)
    assert total.key(np.arange(4, dtype=float)) == total.key(np.arange(4, dtype=float))
    # a result read back (a hit, in this process) chains too
    assert total.key(load(4)) == total.key(raw)
    # inside a list argument
    assert total.key(raw) != total.key([raw][0] + 0)

    out = subprocess.run([sys.executable, "-c", "from gitstore_cli.main import main; main()",
                          "--store", str(store.path), "show", down.key],
                         capture_output=True, text=True, check=True)
    assert "inputs:" in out.stdout
    assert load.key(4).split(":")[1][:12] in out.stdout.split("inputs:")[1]


def test_lineage_inside_containers_and_many_inputs(store: GitDataStore) -> None:
    @store.cache
    def part(i: int) -> np.ndarray:
        return np.full(3, i)

    @store.cache
    def combine(parts: list[Any], extra: dict[str, Any]) -> float:
        return float(sum(p.sum() for p in parts) + extra["p"].sum())

    a, b = part(1), part(2)
    combine([a, b], {"p": a})
    down = next(e for e in store.entries() if e.type.endswith("combine"))
    assert down.component["input"] == [part.key(1), part.key(2), part.key(1)]


def test_arrays_are_hashed_once_per_object(store: GitDataStore) -> None:
    @store.cache
    def f(a: np.ndarray) -> float:
        return float(a.sum())

    arr = np.zeros(10)
    before = f.key(arr)
    arr[0] = 1  # in place: the documented limit, the first digest is kept
    assert f.key(arr) == before
    forget_digests()
    assert f.key(arr) != before
    assert f.key(arr) == f.key(arr.copy())


@pytest.mark.parametrize("arr", [
    np.arange(10.0), np.arange(6, dtype="<i2").reshape(2, 3), np.zeros((0, 3)),
    np.array([1 + 2j, math.nan]), np.array([np.inf, -np.inf]), np.array([1.0, math.nan]),
    np.arange(4, dtype=">i4"), np.ones((3, 3), dtype="f4")[:, 1], np.array([True, False]),
    np.array(3.5), np.array(["ab", "c"]), np.full(3, 60000, dtype="f2"),
])
def test_array_digest_is_the_digest_of_its_key_encoding(arr: np.ndarray) -> None:
    from gitstore.memo import _array_digest

    forget_digests()
    assert _array_digest(arr) == hashlib.sha256(canonical_bytes(arr)).hexdigest()


# --- 3. argument types ---------------------------------------------------------------------

class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass
class Config:
    tau: float
    n: int = 3


class Window(NamedTuple):
    start: float
    stop: float


ARGUMENTS = [
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.date(2024, 1, 2),
    Path("data/x.npy"),
    Mode.FAST,
    Config(1.5),
    Window(0.0, 1.0),
    Decimal("0.1"),
    Fraction(1, 3),
]


@pytest.mark.parametrize("value", ARGUMENTS, ids=lambda v: type(v).__name__)
def test_argument_types_hit(store: GitDataStore, value: Any) -> None:
    seen = Counting()

    @store.cache
    def f(v: Any) -> str:
        seen.calls.append(v)
        return repr(v)

    assert f(value) == f(value) == repr(value)
    assert len(seen.calls) == 1
    assert f.key(value) != f.key(str(value))


def test_argument_types_tell_apart() -> None:
    pairs = [
        (datetime.date(2024, 1, 2), "2024-01-02"),
        (Mode.FAST, "fast"),
        (Window(0.0, 1.0), (0.0, 1.0)),
        (Config(1.5), {"tau": 1.5, "n": 3}),
        (Decimal("0.10"), Decimal("0.1")),
        (Fraction(1, 2), 0.5),
        (Path("a"), "a"),
        (datetime.datetime(2024, 1, 2), datetime.date(2024, 1, 2)),
    ]
    for a, b in pairs:
        assert canonical_bytes(a) != canonical_bytes(b), (a, b)
    assert canonical_bytes(Config(1.5)) == canonical_bytes(Config(1.5, 3))


def test_anything_else_is_refused_naming_the_argument(store: GitDataStore) -> None:
    @store.cache
    def f(x: int, handle: Any = None) -> int:
        return x

    with pytest.raises(UnhashableParameterError) as err:
        f(1, handle=object())
    assert err.value.path == "handle"
    with pytest.raises(UnhashableParameterError) as err:
        f(1, handle={"deep": [1, object()]})
    assert err.value.path == "handle.deep[1]"
    assert list(store.entries()) == []


def test_content_paths(store: GitDataStore, tmp_path: Path) -> None:
    seen = Counting()

    @store.cache(content_paths=["path"])
    def size(path: Path) -> int:
        seen.calls.append(path)
        return len(Path(path).read_bytes())

    data = tmp_path / "a.bin"
    data.write_bytes(b"12345")
    assert size(data) == 5
    moved = tmp_path / "b.bin"
    data.rename(moved)
    assert size(str(moved)) == 5 and len(seen.calls) == 1  # same content: a hit
    moved.write_bytes(b"123")
    assert size(moved) == 3 and len(seen.calls) == 2
    with pytest.raises(UnhashableParameterError, match="cannot be read"):
        size(tmp_path / "missing")


# --- 4. the joblib surface -------------------------------------------------------------------

def test_joblib_surface(store: GitDataStore, tmp_path: Path) -> None:
    seen = Counting()

    @store.cache
    def f(x: int) -> int:
        seen.calls.append(x)
        return x + 1

    @store.cache
    def other(x: int) -> int:
        return x

    assert not f.check_call_in_cache(1)
    assert "no call" in f.explain(1)
    f(1)
    other(1)
    assert f.check_call_in_cache(1)
    assert f.explain(1).startswith("hit")
    assert "x" in f.explain(2).split("\n")[1]
    assert f.call(1) == 2 and seen.calls == [1, 1]  # forced
    assert f.key(1) == store.key_of(f.component(1))
    assert f.clear() == 1
    assert not f.check_call_in_cache(1) and other.check_call_in_cache(1)
    f(1)
    assert seen.calls == [1, 1, 1]


def test_module_level_shortcut(tmp_path: Path) -> None:
    memory = gitstore.cache(tmp_path / "results")
    seen = Counting()

    @memory
    def f(x: int) -> int:
        seen.calls.append(x)
        return x

    assert f(1) == f(1) == 1 and seen.calls == [1]
    assert isinstance(f, CachedFunction)
    assert gitstore.GitDataStore(tmp_path / "results").exists(f.component(1))
    with pytest.raises(gitstore.errors.GitStoreError):
        gitstore.cache(42)


# --- 5. where people run it ------------------------------------------------------------------

def _pids(log: Path) -> Counter[str]:
    return Counter(log.read_text().split()) if log.exists() else Counter()


def test_pickles_with_its_store(store: GitDataStore) -> None:
    cached = store.cache(ignore=["log"])(memo_workers.work)
    back = pickle.loads(pickle.dumps(cached))
    assert back.store.path == store.path and back.ignore == {"log"}
    assert back.key(3) == cached.key(3)


def test_joblib_parallel_loky(store: GitDataStore, tmp_path: Path) -> None:
    cached = store.cache(ignore=["log"])(memo_workers.work)
    log = tmp_path / "log"
    results = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(memo_workers.call_many)(cached, [1, 2, 3], str(log)) for _ in range(4))
    assert results == [[1, 4, 9, 1, 4, 9]] * 4
    assert sorted(e.component["parameters"]["x"] for e in store.entries()) == [1, 2, 3]
    lines = log.read_text().split()
    # each process computed each call at most once
    assert max(_pids(log).values()) <= 3 and len(lines) >= 3
    assert cached(2) == {"x": 2, "square": 4}


def test_multiprocessing_spawn(store: GitDataStore, tmp_path: Path) -> None:
    cached = store.cache(ignore=["log"])(memo_workers.work)
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(memo_workers.call_many,
                               [(cached, [5, 6], str(log))] * 6)
    assert results == [[25, 36, 25, 36]] * 6
    assert len(list(store.entries())) == 2
    assert max(_pids(log).values()) <= 2
    before = len(log.read_text().split())
    assert cached(5)["square"] == 25 and len(log.read_text().split()) == before


def test_many_processes_same_call_one_entry(store: GitDataStore, tmp_path: Path) -> None:
    cached = store.cache(ignore=["log"])(memo_workers.work)
    log = tmp_path / "log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=memo_workers.call_many, args=(cached, [7], str(log)))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = list(store.entries())
    assert len(entries) == 1 and entries[0].component["parameters"] == {"x": 7}
    assert all(n == 1 for n in _pids(log).values())
    assert store.retrieve(cached.component(7), "result") == {"x": 7, "square": 49}



# --- pandas in and out (issue 14, items 3 and 5) ----------------------------------------------

def test_dataframes_are_keyed_by_content_and_stored_as_parquet(store: GitDataStore) -> None:
    import pandas as pd

    seen = Counting()

    @store.cache
    def summary(table: Any) -> Any:
        seen.calls.append(1)
        out = table.groupby("cell").mean()
        out.attrs = {"from": "summary"}
        return out

    table = pd.DataFrame({"cell": ["a", "a", "b"], "rate": [1.0, 3.0, 5.0]})
    first = summary(table)
    again = summary(table.copy())  # another object, same content: a hit
    assert len(seen.calls) == 1
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert again.index.name == "cell" and again.attrs == {"from": "summary"}
    changed = table.copy()
    changed.loc[2, "rate"] = 6.0
    summary(changed)
    assert len(seen.calls) == 2
    from gitstore.codecs import choose_codec

    assert choose_codec(first).name == "parquet"  # never pickled


def test_dask_distributed_local_cluster(store: GitDataStore, tmp_path: Path) -> None:
    """Two worker processes of a dask LocalCluster call a cached function (pickled with its
    store): every result is right, one entry per call, nothing lost."""
    import warnings

    distributed = pytest.importorskip("distributed")
    cached = store.cache(ignore=["log"])(memo_workers.work)
    log = tmp_path / "log"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dask's own notices (ports, tornado) are not ours
        try:
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                               processes=True, dashboard_address=None,
                                               scheduler_port=0, protocol="tcp://",
                                               host="127.0.0.1", silence_logs=50)
        except Exception as exc:  # pragma: no cover - depends on the machine
            pytest.skip(f"a dask LocalCluster cannot start here: {exc!r}")
        try:
            with distributed.Client(cluster) as client:
                futures = [client.submit(memo_workers.call_many, cached, [1, 2, 3, 4], str(log),
                                         pure=False) for _ in range(6)]
                results = client.gather(futures)
                workers = set(client.run(os.getpid).values())
        finally:
            cluster.close()
    assert results == [[1, 4, 9, 16, 1, 4, 9, 16]] * 6
    assert len(workers) == 2 and os.getpid() not in workers
    assert sorted(e.component["parameters"]["x"] for e in store.entries()) == [1, 2, 3, 4]
    assert {int(p) for p in _pids(log)} <= workers and max(_pids(log).values()) <= 4
    before = len(log.read_text().split())
    assert cached(3)["square"] == 9 and len(log.read_text().split()) == before  # a hit here


def test_scalar_arguments_that_compare_equal_are_distinct_calls(tmp_path: Path) -> None:
    # the warm path keeps a table of keys by argument value: 1, True and 1.0 compare equal
    # (and hash alike), 0.0 and -0.0 too, yet each is its own call, as the keys say
    store = GitDataStore(tmp_path / "s", create=True)
    seen: list[Any] = []

    def f(x: Any, y: Any = None) -> Any:
        seen.append(x)
        return repr(x)

    g = store.cache(f)
    for x in (1, True, 1.0, 0.0, -0.0, "1", b"1", None):
        assert g(x) == repr(x) and g(x) == repr(x)
    assert [repr(x) for x in seen] == ["1", "True", "1.0", "0.0", "-0.0", "'1'", "b'1'", "None"]
    assert g(1, y=2) == "1" and g(1, 2) == "1"  # one call, bound the same way
    assert len(seen) == 9
    store.close()
