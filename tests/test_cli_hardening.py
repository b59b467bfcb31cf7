"""Issue 11, the command line's part: prune bounds, codec plugins and unknown codecs, hostile
checkouts, clean CLI errors, pickled stores in worker processes, ``get -o`` into special files.

Everything is real: stores built by gitstore or by the ``git`` binary, the installed console
script run in a subprocess, a distribution installed on ``sys.path`` by its ``.dist-info``,
FIFOs, device nodes and worker processes.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent
from conftest import git
from store_workers import store_one
from typer.testing import CliRunner

from gitstore import GitDataStore, ShelveDataStore, key_of
from gitstore.codecs import register_codec, unregister_codec
from gitstore.errors import (
    CorruptEntryError,
    GitStoreError,
    InvalidArgumentError,
    InvalidAttributeNameError,
    UnknownCodecError,
)
from gitstore.keys import key_hex
from gitstore_cli.main import app

runner = CliRunner()
ROOT = os.geteuid() == 0


def invoke(store: Path, *args: str) -> Any:
    return runner.invoke(app, ["--store", str(store), *args])


def one_line_error(result: Any) -> str:
    """The result failed cleanly: exit code 1, one line on stderr, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("gitstore: error:"), \
        result.stderr
    return str(result.stderr)


def console_script() -> str:
    found = shutil.which("gitstore", path=os.path.dirname(sys.executable))
    assert found, "the gitstore console script is not installed next to this python"
    return found


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- item 5: prune bounds ---------------------------------------------------------------------

@pytest.fixture
def versions(tmp_path: Path) -> Path:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        for v in ("a", "b", "c"):
            s.store(SimpleComponent({"v": v}, version=v), "x", 1)
    return path


@pytest.mark.parametrize("bounds", [
    {"older_than": -1}, {"older_than": -86400.0}, {"older_than": math.nan},
    {"older_than": math.inf}, {"older_than": "3"}, {"older_than": True},
    {"keep_last": -1}, {"keep_last": 1.5}, {"keep_last": True}, {"keep_last": "1"},
])
def test_prune_refuses_nonsensical_bounds(versions: Path, bounds: dict[str, Any]) -> None:
    with GitDataStore(versions) as s:
        with pytest.raises(InvalidArgumentError) as info:
            s.prune(**bounds)
        assert isinstance(info.value, ValueError)
        assert s.versions() == ["a", "b", "c"]


def test_prune_bounds_that_make_sense_still_work(versions: Path) -> None:
    with GitDataStore(versions) as s:
        assert s.prune(keep_last=3) == []
        assert s.prune(older_than=10 * 86400) == []
        assert len(s.prune(keep_last=1, dry_run=True)) == 2
        assert s.versions() == ["a", "b", "c"]


@pytest.mark.parametrize("args", [["--older-than", "-1"], ["--keep-last", "-1"],
                                  ["--older-than", "nan"], ["--older-than", "-0.5"]])
def test_cli_prune_refuses_negative_bounds(versions: Path, args: list[str]) -> None:
    message = one_line_error(invoke(versions, "prune", *args))
    assert "older-than" in message or "keep-last" in message or "older_than" in message \
        or "keep_last" in message
    assert GitDataStore(versions).versions() == ["a", "b", "c"]


# --- item 11: codec plugins, unknown codecs ---------------------------------------------------

PLUGIN = '''
"""A codec plugin for gitstore: a Point as 'x,y' text."""
from gitstore.codecs import register_codec


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


def _write(value, fp):
    fp.write(f"{value.x},{value.y}".encode())


def _read(fp):
    x, y = fp.read().decode().split(",")
    return Point(float(x), float(y))


def register():
    register_codec("point", Point, "point", _write, _read)
'''

MODULE_PLUGIN = '''
"""A plugin whose import registers its codec (the module form of the entry point)."""
from gitstore.codecs import register_codec


class Celsius(float):
    pass


register_codec("celsius", Celsius, "degc", lambda v, fp: fp.write(repr(float(v)).encode()),
               lambda fp: Celsius(float(fp.read())))
'''


def install_plugin(site: Path) -> Path:
    """A real installed distribution: two modules and a .dist-info with entry points."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "gs_point_plugin.py").write_text(PLUGIN)
    (site / "gs_celsius_plugin.py").write_text(MODULE_PLUGIN)
    info = site / "gs_point_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gs-point-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gitstore.codecs]\npoint = gs_point_plugin:register\ncelsius = gs_celsius_plugin\n")
    (info / "RECORD").write_text("")
    return site


@pytest.fixture
def plugin_store(tmp_path: Path) -> Any:
    """A store with an entry written through the plugin's codecs (registered in a writer
    process that imported the plugin, as a user's own program would)."""
    site = install_plugin(tmp_path / "site")
    store = tmp_path / "s.git"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[3])\n"
        "import gs_point_plugin, gs_celsius_plugin\n"
        "from components import SimpleComponent\n"
        "from gitstore import GitDataStore\n"
        "gs_point_plugin.register()\n"
        "with GitDataStore(sys.argv[2]) as s:\n"
        "    c = SimpleComponent({'n': 1}, version='v1')\n"
        "    s.store(c, 'where', gs_point_plugin.Point(1.5, 2.0))\n"
        "    s.store(c, 'heat', gs_celsius_plugin.Celsius(21.5))\n"
        "    s.store(c, 'plain', [1, 2])\n"
        "    s.store(SimpleComponent({'n': 2}, version='v1'), 'plain', 'ok')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(site), str(store),
                    str(Path(__file__).parent)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with_plugin = dict(env, PYTHONPATH=str(site))
    key = key_of(SimpleComponent({"n": 1}, version="v1"))
    return store, key, env, with_plugin


def test_unknown_codec_is_not_corruption_api(plugin_store: Any) -> None:
    store, key, _env, _with = plugin_store
    with GitDataStore(store) as s:
        with pytest.raises(UnknownCodecError) as info:
            s.read(key, "where")
        assert not isinstance(info.value, CorruptEntryError)
        assert "point" in str(info.value)
        with pytest.raises(UnknownCodecError):
            s.retrieve(SimpleComponent({"n": 1}, version="v1"), "heat")
        assert s.read(key, "plain") == [1, 2]
        assert s.read(key, "where", raw=True) == b"1.5,2.0"  # the bytes are there, intact
        attributes = s.attributes(key)
        assert attributes["where"]["codec"] is None and attributes["plain"]["codec"] == "json"
        assert [e.key for e in s.entries()] and len(list(s.entries())) == 2


def test_cli_without_plugin_reports_unknown_codec(plugin_store: Any, tmp_path: Path) -> None:
    store, key, env, _with = plugin_store
    ls = run_cli("--store", str(store), "ls", "--json", env=env)
    assert ls.returncode == 0, ls.stderr
    rows = json.loads(ls.stdout)
    assert len(rows) == 2 and ["heat", "plain", "where"] in [r["attributes"] for r in rows]
    assert run_cli("--store", str(store), "show", key, env=env).returncode == 0
    verify = run_cli("--store", str(store), "verify", env=env)
    assert verify.returncode == 1
    assert "unknown codec" in verify.stderr and "corrupt" not in verify.stderr
    assert "Traceback" not in verify.stderr
    get = run_cli("--store", str(store), "get", key, "where", env=env)
    assert get.returncode == 1 and get.stderr.count("\n") == 1
    assert "unknown codec" in get.stderr and "corrupt" not in get.stderr.lower()
    # copying keeps the bytes as they are where the destination can file them (git: by ext)
    copy = run_cli("copy", str(store), f"git:{tmp_path / 'copy.git'}", env=env)
    assert copy.returncode == 0, copy.stderr
    with GitDataStore(tmp_path / "copy.git") as c:
        assert c.read(key, "where", raw=True) == b"1.5,2.0"
        assert c.read(key, "plain") == [1, 2]
    # a shelve files codecs by name, which a .point file does not tell: said, nothing corrupt
    shelf = run_cli("copy", str(store), f"shelve:{tmp_path / 'shelf'}", env=env)
    assert shelf.returncode == 1 and shelf.stderr.count("\n") == 1
    assert "unknown codec" in shelf.stderr and "corrupt" not in shelf.stderr.lower()


def test_cli_loads_codec_plugins_from_entry_points(plugin_store: Any, tmp_path: Path) -> None:
    store, key, _env, env = plugin_store
    verify = run_cli("--store", str(store), "verify", env=env)
    assert verify.returncode == 0 and "verified" in verify.stdout, verify.stderr
    get = run_cli("--store", str(store), "get", key, "where", env=env)
    assert get.returncode == 0 and get.stdout.strip() == "Point(1.5, 2.0)", get.stderr
    heat = run_cli("--store", str(store), "get", key, "heat", env=env)
    assert heat.returncode == 0 and heat.stdout.strip() == "21.5", heat.stderr
    show = run_cli("--store", str(store), "show", "--json", key, env=env)
    assert json.loads(show.stdout)["attributes"]["where"]["codec"] == "point"
    copy = run_cli("copy", str(store), f"shelve:{tmp_path / 'shelf'}", env=env)
    assert copy.returncode == 0, copy.stderr
    back = run_cli("copy", f"shelve:{tmp_path / 'shelf'}", f"git:{tmp_path / 'back.git'}",
                   env=env)
    assert back.returncode == 0, back.stderr
    with GitDataStore(tmp_path / "back.git") as c:
        assert c.read(key, "where", raw=True) == b"1.5,2.0"


def test_unknown_codec_in_a_shelf_is_unknown(tmp_path: Path) -> None:
    class Thing:
        pass

    register_codec("thing-codec", Thing, "thing", lambda v, fp: fp.write(b"T"),
                   lambda fp: Thing())
    try:
        with ShelveDataStore(tmp_path / "shelf") as s:
            s.store(SimpleComponent({"n": 1}), "t", Thing())
    finally:
        unregister_codec("thing-codec")
    with ShelveDataStore(tmp_path / "shelf") as s:
        assert [e.attributes for e in s.entries()] == [("t",)]
        with pytest.raises(UnknownCodecError, match="thing-codec"):
            s.retrieve(SimpleComponent({"n": 1}), "t")


# --- item 14: hostile checkouts ---------------------------------------------------------------

HEX = "ab" * 32


def git_blob(repo: Path, data: bytes) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), "hash-object", "-w", "--stdin"],
                          input=data, capture_output=True, check=True).stdout.decode().strip()


def git_tree(repo: Path, items: list[tuple[str, bytes, str]]) -> str:
    """A tree written by git as given, unchecked (``hash-object --literally``): hostile names
    (``../x``, ``a/b``) that ``git mktree`` would refuse, any modes."""
    body = b"".join(mode.encode() + b" " + name + b"\0" + bytes.fromhex(sha)
                    for mode, name, sha in sorted(items, key=lambda i: i[1]))
    return subprocess.run(["git", "--git-dir", str(repo), "hash-object", "-t", "tree",
                           "--literally", "-w", "--stdin"], input=body, capture_output=True,
                          check=True).stdout.decode().strip()


def component_yaml(hexkey: str, type_name: str = "demo.Thing") -> bytes:
    return (f"key: k1-sha256:{hexkey}\nkey_scheme: k1\ntype: {type_name}\nversion: v1\n"
            "parameters: {}\ninput: null\n").encode()


def hostile_store(path: Path, entries: list[tuple[bytes, list[tuple[str, bytes, str]]]]
                  ) -> Path:
    """Give the store at ``path`` a version v1 that holds ``entries`` [(entry dir name,
    [(mode, name, blob)])], all filed under ``ab/ab/`` as gitstore would file a key ``abab...``
    (the trees made by git, unchecked)."""
    level3 = [("40000", name, git_tree(path, files)) for name, files in entries]
    level2 = [("40000", b"ab", git_tree(path, level3))]
    root = git_tree(path, [("40000", b"ab", git_tree(path, level2))])
    commit = git("--git-dir", str(path), "commit-tree", root, "-m", "hostile").strip()
    git("--git-dir", str(path), "update-ref", "refs/gitstore/versions/v1", commit)
    return path


HOSTILE = ["climbing entry", "slash in file", "dot-dot file", "absolute file", "dot git",
           "symlink mode", "submodule mode", "tree as file", "empty name", "backslash",
           "same folder"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_checkout_of_hostile_entry_writes_nothing_anywhere(tmp_path: Path, hostile: str
                                                           ) -> None:
    store = tmp_path / "stores" / "hostile.git"
    GitDataStore(store).close()
    comp = git_blob(store, component_yaml(HEX))
    data = git_blob(store, b"[1]")
    files = [("100644", b"component.yaml", comp)]
    entry_name = ("ab" * 31 + "cd").encode()
    if hostile == "climbing entry":
        entry_name = b"../../../../" + b"0" * 52
        files.append(("100644", b"x.json", data))
    elif hostile == "slash in file":
        files.append(("100644", b"sub/x.json", data))
    elif hostile == "dot-dot file":
        files.append(("100644", b"..", data))
    elif hostile == "absolute file":
        files.append(("100644", str(tmp_path / "abs.json").encode(), data))
    elif hostile == "dot git":
        files.append(("100644", b".git", data))
    elif hostile == "symlink mode":
        files.append(("120000", b"x.json", git_blob(store, str(tmp_path).encode())))
    elif hostile == "submodule mode":
        files.append(("160000", b"x.json", "1" * 40))
    elif hostile == "tree as file":
        files.append(("40000", b"x.json", git_tree(store, [("100644", b"y", data)])))
    elif hostile == "empty name":
        files.append(("100644", b"", data))
    elif hostile == "same folder":  # another key alike in its first 12 digits
        entry_name = ("ab" * 6 + "cd" * 26).encode()
        files.append(("100644", b"x.json", git_blob(store, b"[2]")))
    elif hostile == "backslash":
        files.append(("100644", b"..\\x.json", data))
    # a good entry too: nothing of it may be written either
    hostile_store(store, [(HEX.encode(), [("100644", b"component.yaml", comp),
                                          ("100644", b"x.json", data)]),
                          (entry_name, files)])
    dest = tmp_path / "work" / "dest" / "a" / "b"
    (tmp_path / "work").mkdir()

    def outside_the_store() -> set[str]:
        return {p for p in snapshot(tmp_path) if not p.startswith("stores")}

    before = outside_the_store()
    with GitDataStore(store) as s:
        with pytest.raises(CorruptEntryError, match="unsafe"):
            s.checkout("v1", dest)
    assert outside_the_store() == before
    result = invoke(store, "checkout", "v1", str(dest))
    assert "unsafe" in one_line_error(result)
    assert outside_the_store() == before


def test_checkout_never_follows_symlinks_in_the_destination(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as s:
        s.store(SimpleComponent({"n": 1}, version="v1"), "x", [1])
        key = key_hex(key_of(SimpleComponent({"n": 1}, version="v1")))
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "components.SimpleComponent").symlink_to(outside)
    before = snapshot(outside)
    with GitDataStore(tmp_path / "s.git") as s:
        with pytest.raises(GitStoreError):
            s.checkout("v1", dest)
    assert snapshot(outside) == before == set()
    # a symlink where a file goes: replaced, never written through
    (dest / "components.SimpleComponent").unlink()
    victim = outside / "victim.json"
    victim.write_text("keep me")
    folder = dest / "components.SimpleComponent" / key[:12]
    folder.mkdir(parents=True)
    (folder / "x.json").symlink_to(victim)
    (folder / ".x.json.tmp").symlink_to(outside / "planted")
    with GitDataStore(tmp_path / "s.git") as s:
        s.checkout("v1", dest)
    assert victim.read_text() == "keep me" and not (outside / "planted").exists()
    assert not (folder / "x.json").is_symlink() and json.loads((folder / "x.json").read_text()) \
        == [1]


def test_checkout_of_good_entries_still_writes_them(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as s:
        s.store(SimpleComponent({"n": 1}, version="v1"), "x", [1])
        s.store(SimpleComponent({"n": 2}, version="v1"), "y", "text")
    dest = tmp_path / "dest"
    result = invoke(tmp_path / "s.git", "checkout", "v1", str(dest))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in dest.rglob("*") if p.is_file())
    assert files == ["component.yaml", "component.yaml", "x.json", "y.txt"]
    assert invoke(tmp_path / "s.git", "checkout", "v1", str(dest)).exit_code == 0  # again


def test_checkout_into_a_file_or_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git") as s:
        s.store(SimpleComponent({"n": 1}, version="v1"), "x", [1])
    afile = tmp_path / "afile"
    afile.write_text("x")
    for dest in (afile, afile / "below"):
        one_line_error(invoke(tmp_path / "s.git", "checkout", "v1", str(dest)))
    assert afile.read_text() == "x"
    if Path("/sys/kernel").is_dir():  # not writable, even for root
        one_line_error(invoke(tmp_path / "s.git", "checkout", "v1", "/sys/kernel"))
    if not ROOT:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        one_line_error(invoke(tmp_path / "s.git", "checkout", "v1", str(locked)))


# --- item 18: clean CLI errors ----------------------------------------------------------------

@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "s.git"
    c = SimpleComponent({"n": 1}, version="v1")
    with GitDataStore(path) as s:
        s.store(c, "rates", [1.0, 2.0])
    return path, key_of(c)


def test_get_into_a_directory_is_one_line_and_leaves_nothing(filled: tuple[Path, str],
                                                             tmp_path: Path) -> None:
    store, key = filled
    out = tmp_path / "outdir"
    out.mkdir()
    before = snapshot(tmp_path)
    message = one_line_error(invoke(store, "get", key, "rates", "-o", str(out)))
    assert "directory" in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("spec", ["shelve:", "git:", "django:"])
def test_copy_to_an_empty_path_writes_nothing_here(filled: tuple[Path, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   spec: str) -> None:
    store, _key = filled
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    one_line_error(runner.invoke(app, ["copy", str(store), spec]))
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "tab\there", "bell\x07", "del\x7f", "\n"])
def test_attribute_names_with_control_characters_are_refused(tmp_path: Path, name: str
                                                             ) -> None:
    with GitDataStore(tmp_path / "s.git") as s:
        with pytest.raises(InvalidAttributeNameError):
            s.store(SimpleComponent({"n": 1}), name, 1)
        assert list(s.entries()) == []


def test_unexpected_os_errors_are_one_line(filled: tuple[Path, str], tmp_path: Path) -> None:
    store, key = filled
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(invoke(store, "get", key, "rates", "-o", str(afile / "below")))
    assert afile.read_text() == "x"
    missing = tmp_path / "no" / "such" / "folder.json"
    assert str(missing) in one_line_error(invoke(store, "get", key, "rates", "-o", str(missing)))
    assert not (tmp_path / "no").exists()
    one_line_error(invoke(store, "ls", "--param", "no-equals-sign"))
    one_line_error(invoke(store, "pull", str(store), "--prefer", "mine"))
    one_line_error(invoke(store, "prune"))


# --- item 20: pickled stores in worker processes ----------------------------------------------

def test_git_store_pickles_as_its_location(tmp_path: Path) -> None:
    with GitDataStore(tmp_path / "s.git", allow_pickle=True, author="A <a@b>") as s:
        s.store(SimpleComponent({"n": 1}), "x", 1)
        data = pickle.dumps(s)
        assert len(data) < 1000  # no caches, locks or open packs inside
        with pickle.loads(data) as again:
            assert type(again) is GitDataStore and again.path == s.path
            assert again.allow_pickle and again.author == b"A <a@b>"
            assert again.retrieve(SimpleComponent({"n": 1}), "x") == 1


def test_multiprocessing_spawn_workers_store_through_a_pickled_store(tmp_path: Path) -> None:
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            results = pool.starmap_async(store_one, [(s, i) for i in range(8)]).get(600)
        assert {pid for _k, pid in results} - {os.getpid()}
        for i, (key, _pid) in enumerate(results):
            assert s.retrieve(SimpleComponent({"i": i}, version="v1"), "square") == i * i
            assert key == key_of(SimpleComponent({"i": i}, version="v1"))
        assert len(list(s.entries())) == 8


def test_joblib_workers_store_through_a_pickled_store(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "s.git"
    with GitDataStore(path) as s:
        results = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(store_one)(s, i) for i in range(6))
        assert {pid for _k, pid in results} - {os.getpid()}
        assert sorted(s.retrieve(SimpleComponent({"i": i}, version="v1"), "square")
                      for i in range(6)) == [i * i for i in range(6)]


def test_shelve_store_pickles_too(tmp_path: Path) -> None:
    with ShelveDataStore(tmp_path / "shelf") as s:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:
            pool.starmap_async(store_one, [(s, i) for i in range(4)]).get(600)
        assert sorted(s.retrieve(SimpleComponent({"i": i}, version="v1"), "square")
                      for i in range(4)) == [0, 1, 4, 9]


def test_django_store_pickles_as_its_database_and_folder(tmp_path: Path) -> None:
    pytest.importorskip("django")
    from gitstore import DjangoORMDataStore

    store = DjangoORMDataStore(data_root_dir=tmp_path / "data")
    store.store(SimpleComponent({"n": 1}), "x", 5)
    again = pickle.loads(pickle.dumps(store))
    assert again.retrieve(SimpleComponent({"n": 1}), "x") == 5
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        pool.starmap_async(store_one, [(store, i) for i in range(2)]).get(600)
    assert store.retrieve(SimpleComponent({"i": 1}, version="v1"), "square") == 1


# --- item 21: get -o writes into special files, through symlinks ------------------------------

def test_get_o_writes_through_a_symlink(filled: tuple[Path, str], tmp_path: Path) -> None:
    store, key = filled
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert invoke(store, "get", key, "rates", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text()) == [1.0, 2.0]
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json", "s.git"]


def test_get_o_replaces_a_regular_file_keeping_its_mode(filled: tuple[Path, str],
                                                        tmp_path: Path) -> None:
    store, key = filled
    out = tmp_path / "out.json"
    out.write_text("old")
    out.chmod(0o604)
    assert invoke(store, "get", key, "rates", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text()) == [1.0, 2.0]
    assert stat.S_IMODE(out.stat().st_mode) == 0o604
    new = tmp_path / "new.json"
    assert invoke(store, "get", key, "rates", "-o", str(new)).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask


def test_get_o_writes_into_a_fifo(filled: tuple[Path, str], tmp_path: Path) -> None:
    store, key = filled
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = invoke(store, "get", key, "rates", "-o", str(fifo))
    finally:
        if thread.is_alive() and not received:  # unblock the reader whatever happened
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        thread.join(30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(received[0]) == [1.0, 2.0]


@pytest.mark.skipif(not ROOT, reason="device nodes need root")
def test_get_o_writes_into_a_device_and_leaves_it_a_device(filled: tuple[Path, str],
                                                           tmp_path: Path) -> None:
    store, key = filled
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert invoke(store, "get", key, "rates", "-o", str(node)).exit_code == 0
    assert stat.S_ISCHR(os.lstat(node).st_mode)  # our own node: the real one is next
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "s.git"]
    devnull = Path("/dev/null")
    if not stat.S_ISCHR(os.lstat(devnull).st_mode):
        pytest.skip("/dev/null is not a device here")
    try:
        assert invoke(store, "get", key, "rates", "-o", str(devnull)).exit_code == 0
    finally:
        if not stat.S_ISCHR(os.lstat(devnull).st_mode):  # restore it whatever happened
            os.unlink(devnull)
            os.mknod(devnull, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            os.chmod(devnull, 0o666)
            pytest.fail("get -o turned /dev/null into a regular file (restored)")
    assert stat.S_ISCHR(os.lstat(devnull).st_mode)
