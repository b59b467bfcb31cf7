"""Listing in one pass (issue 16): ``ls``, ``ls --json``, ``show`` and ``entries()`` read each
entry tree once, parse each ``component.yaml`` once and take sizes from object headers (no
attribute blob is inflated). Counted, not timed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent
from typer.testing import CliRunner

from gitstore import GitDataStore, _yaml
from gitstore._git import objects
from gitstore_cli.main import app

runner = CliRunner()
N = 40


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        for start in range(0, N, 10):  # a few commits, so packs and history exist
            with s.batch():
                for i in range(start, start + 10):
                    c = SimpleComponent({"i": i}, version="v1")
                    s.store(c, "big", "x" * (1000 + i))
                    s.store(c, "small", i)
    return path


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of YAML parses and of blob reads (the real functions still run)."""
    counts: Counter[str] = Counter()
    load, read = _yaml.load, objects.ObjectDB.read

    def counting_load(text: Any, *args: Any, **kwargs: Any) -> Any:
        counts["yaml"] += 1
        return load(text, *args, **kwargs)

    def counting_read(self: Any, sha: bytes, expect_type: int | None = None) -> bytes:
        counts[f"read{expect_type}"] += 1
        return read(self, sha, expect_type)

    monkeypatch.setattr(_yaml, "load", counting_load)
    monkeypatch.setattr(objects.ObjectDB, "read", counting_read)
    return counts


def test_ls_json_parses_each_description_once_and_inflates_no_attribute(
        store_path: Path, counted: Counter[str]) -> None:
    result = runner.invoke(app, ["--store", str(store_path), "ls", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == N
    assert counted["yaml"] == N  # one parse per component.yaml (was two)
    # blobs read: the component.yaml files only (attribute sizes come from headers)
    assert counted[f"read{objects.BLOB}"] <= N
    with GitDataStore(store_path) as s:
        for row in rows:
            want = sum(a["size"] for a in s.attributes(row["key"]).values())
            assert row["size"] == want > 1000


def test_entries_sized_gives_header_sizes(store_path: Path, counted: Counter[str]) -> None:
    with GitDataStore(store_path) as s:
        listed = list(s.entries_sized())
        assert counted["yaml"] == N and counted[f"read{objects.BLOB}"] <= N
        for entry, sizes in listed:
            i = entry.component["parameters"]["i"]
            assert sizes["big"] == len(s.read(entry.key, "big", raw=True)) == \
                len(s.read(entry.key, "big", raw=True))
            assert set(sizes) == set(entry.attributes) == {"big", "small"}
            assert i in range(N)


def test_show_parses_the_description_once(store_path: Path, counted: Counter[str]) -> None:
    with GitDataStore(store_path) as s:
        key = next(iter(s.entries())).key
    counted.clear()
    result = runner.invoke(app, ["--store", str(store_path), "show", key.split(":")[1][:20]])
    assert result.exit_code == 0, result.output
    assert "big" in result.stdout
    assert counted["yaml"] == 1
