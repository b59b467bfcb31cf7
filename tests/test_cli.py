"""The command line, driven through typer's CliRunner and checked through the library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent
from typer.testing import CliRunner

from gitstore import GitDataStore, key_of
from gitstore_cli.main import app

runner = CliRunner()
README = Path(__file__).parent.parent / "README.md"


def invoke(store: Path, *args: str) -> Any:
    return runner.invoke(app, ["--store", str(store), *args])


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        a = SimpleComponent({"tau": 10.0, "net": {"n": 5}}, version="v1")
        b = SimpleComponent({"tau": 12.0, "net": {"n": 5}}, input=a, version="v1")
        s.store(a, "rates", [1.0, 2.0])
        s.store(b, "text", "hello")
        s.store(SimpleComponent({"tau": 1.0}, version="v2"), "x", 1)
    return path


def test_init_and_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    result = invoke(missing, "ls")
    assert result.exit_code == 1 and "no store at" in result.stderr
    assert "Traceback" not in result.output
    assert not missing.exists()
    assert invoke(missing, "init").exit_code == 0
    assert (missing / "HEAD").exists()
    assert invoke(missing, "ls").exit_code == 0


def test_ls_filters_and_json(filled: Path) -> None:
    rows = json.loads(invoke(filled, "ls", "--json").stdout)
    assert len(rows) == 3 and {r["version"] for r in rows} == {"v1", "v2"}
    assert all(r["size"] > 0 and r["date"] for r in rows)
    assert len(json.loads(invoke(filled, "ls", "--json", "--version", "v1").stdout)) == 2
    one = json.loads(invoke(filled, "ls", "--json", "--param", "tau=12.0").stdout)
    assert [r["attributes"] for r in one] == [["text"]]
    assert json.loads(invoke(filled, "ls", "--json", "--param", "net.n=5").stdout).__len__() == 2
    table = invoke(filled, "ls").stdout
    assert "rates" in table and "SimpleComponent" in table


def test_show_get_by_prefix(filled: Path, tmp_path: Path) -> None:
    a = SimpleComponent({"tau": 10.0, "net": {"n": 5}}, version="v1")
    b = SimpleComponent({"tau": 12.0, "net": {"n": 5}}, input=a, version="v1")
    prefix = key_of(b).split(":")[1][:6]
    shown = invoke(filled, "show", prefix)
    assert shown.exit_code == 0 and key_of(a).split(":")[1][:12] in shown.stdout
    data = json.loads(invoke(filled, "show", "--json", key_of(b)).stdout)
    assert data["attributes"]["text"]["codec"] == "txt"
    assert data["inputs"][0]["key"] == key_of(a)
    assert invoke(filled, "get", prefix, "text").stdout.strip() == "hello"
    target = tmp_path / "rates.json"
    assert invoke(filled, "get", key_of(a), "rates", "-o", str(target)).exit_code == 0
    assert json.loads(target.read_text()) == [1.0, 2.0]  # opens without gitstore
    missing = invoke(filled, "get", prefix, "nope")
    assert missing.exit_code == 1 and "no attribute 'nope'" in missing.stderr


def test_ambiguous_prefix_lists_candidates(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with GitDataStore(path) as s:
        keys = []
        for i in range(40):
            c = SimpleComponent({"i": i})
            s.store(c, "x", i)
            keys.append(key_of(c).split(":")[1])
    first = {}
    for k in keys:
        first.setdefault(k[0], []).append(k)
    digit, group = max(first.items(), key=lambda kv: len(kv[1]))
    assert len(group) > 1
    result = invoke(path, "show", digit)
    assert result.exit_code == 1 and "ambiguous" in result.stderr
    assert all(k in result.stderr for k in group)
    assert invoke(path, "show", "zz").exit_code == 1


def test_log_diff(filled: Path) -> None:
    a = SimpleComponent({"tau": 10.0, "net": {"n": 5}}, version="v1")
    b = SimpleComponent({"tau": 12.0, "net": {"n": 5}}, input=a, version="v1")
    entries = json.loads(invoke(filled, "log", "--json").stdout)
    assert len(entries) == 3
    assert len(json.loads(invoke(filled, "log", "--json", key_of(a)).stdout)) == 1
    diff = invoke(filled, "diff", key_of(a), key_of(b)).stdout
    assert "parameter tau: 10.0 -> 12.0" in diff and "input:" in diff


def test_stats_gc_verify_prune(filled: Path) -> None:
    stats = json.loads(invoke(filled, "stats", "--json").stdout)
    assert stats["entries"] == 3 and stats["versions"] == 2 and stats["loose_objects"] == 0
    assert invoke(filled, "gc").exit_code == 0
    assert json.loads(invoke(filled, "stats", "--json").stdout)["packs"] == 1
    assert json.loads(invoke(filled, "verify", "--json").stdout) == {"ok": True, "problems": []}
    dry = invoke(filled, "prune", "--keep-last", "1", "--dry-run")
    assert "would delete 1" in dry.stdout
    assert len(GitDataStore(filled).versions()) == 2
    assert invoke(filled, "prune", "--version", "v2").exit_code == 0
    assert GitDataStore(filled).versions() == ["v1"]
    assert invoke(filled, "prune").exit_code != 0


def test_verify_reports_corruption(filled: Path) -> None:
    for pack in (filled / "objects" / "pack").glob("*.pack"):
        os.chmod(pack, 0o644)
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.write_bytes(bytes(data))
    result = invoke(filled, "verify")
    assert result.exit_code == 1 and "corrupt" in result.stderr


def test_errors_are_one_line(filled: Path) -> None:
    result = invoke(filled, "show", "not-hex!")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gitstore: error:")


def test_gitstore_dir_env(filled: Path) -> None:
    result = runner.invoke(app, ["ls", "--json"], env={"GITSTORE_DIR": str(filled)})
    assert len(json.loads(result.stdout)) == 3


def test_every_command_has_help_and_is_in_readme() -> None:
    readme = README.read_text()
    group = typer_click_group()
    names = sorted(group.commands)
    assert {"init", "ls", "show", "get", "log", "diff", "gc", "verify", "stats", "prune",
            "demo"} <= set(names)
    for name in names:
        cmd = group.commands[name]
        assert cmd.help and cmd.help.strip(), f"{name} has no help"
        assert f"gitstore {name}" in readme, f"the README does not show 'gitstore {name}'"


def typer_click_group() -> Any:
    import typer.main

    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return group


# --- the installed console script ------------------------------------------------------------

def console_script() -> str:
    found = shutil.which("gitstore", path=os.path.dirname(sys.executable))
    assert found, "the gitstore console script is not installed next to this python"
    return found


def test_console_script_demo_ls_verify(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("GITSTORE_DIR", None)
    first = subprocess.run([console_script(), "demo"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "run 1: computed" in first.stdout and "run 2: served from the store" in first.stdout
    again = subprocess.run([console_script(), "demo"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert "run 1: served from the store" in again.stdout
    rows = json.loads(subprocess.run([console_script(), "ls", "--json"], cwd=tmp_path,
                                     capture_output=True, text=True, check=True).stdout)
    # the three stages, and the analysis at three more bin widths (the demo's small sweep)
    assert sorted(r["type"] for r in rows) == ["gitstore_cli.demo.population"] + \
        ["gitstore_cli.demo.rate_analysis"] * 4 + ["gitstore_cli.demo.stimulus"]
    assert "sweep: rate_analysis at bin_ms 10, 20, 50, 100 — peak rate" in first.stdout
    # the demo's stages are @store.cache functions: the population's input is the stimulus
    types = {r["type"]: r["key"] for r in rows}
    shown = subprocess.run([console_script(), "show", types["gitstore_cli.demo.population"]],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert f"input: [{types['gitstore_cli.demo.stimulus']}]" in shown
    verify = subprocess.run([sys.executable, "-m", "gitstore", "verify"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert verify.returncode == 0 and "verified" in verify.stdout


def test_help_is_served_from_a_cache_byte_for_byte(tmp_path: Path) -> None:
    """``gitstore --help`` prints, from the second time on, what typer printed the first time,
    without importing typer; another terminal width or other arguments are other entries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "COLUMNS"))}
    env.update(HOME=str(tmp_path), COLUMNS="100")
    cache = tmp_path / ".cache" / "gitstore" / "help"

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([console_script(), *args], capture_output=True, text=True,
                              env=dict(env, **extra), timeout=120)

    typer_itself = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'gitstore'\n"
         "from gitstore_cli.main import main; main()", "--help"],
        capture_output=True, text=True, env=env, timeout=120)
    first, second = run("--help"), run("--help")
    assert first.returncode == second.returncode == typer_itself.returncode == 0
    assert "Usage: gitstore" in first.stdout and "show" in first.stdout
    assert first.stdout == second.stdout == typer_itself.stdout
    assert len(list(cache.iterdir())) == 1
    (entry,) = cache.iterdir()
    entry.write_text("served from the cache\n")  # the second run read it: prove it
    assert run("--help").stdout == "served from the cache\n"
    wide = run("--help", COLUMNS="140")
    assert wide.stdout != first.stdout and len(list(cache.iterdir())) == 2
    show = run("show", "--help")
    assert show.returncode == 0 and "Show an entry" in show.stdout and run("show", "--help").stdout == \
        show.stdout and len(list(cache.iterdir())) == 3
    assert run("--store", str(tmp_path), "--help").returncode == 0  # options: not cached
    assert len(list(cache.iterdir())) == 3
