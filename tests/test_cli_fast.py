"""``gitstore show KEY`` served without typer (gitstore_cli.fast): the same bytes, the same
exit code as the typer app, for every form it takes and for the ones it leaves to typer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from components import SimpleComponent

from gitstore import GitDataStore, key_of
from gitstore.keys import key_hex

TESTS = str(Path(__file__).parent)
NAMED = "import sys; sys.argv[0] = 'gitstore'; "  # the same program name in usage lines
FAST = [sys.executable, "-c", NAMED + "from gitstore_cli.start import main; main()"]
TYPER = [sys.executable, "-c", NAMED + "from gitstore_cli.main import main; main()"]


def run(cmd: list[str], args: list[str], cwd: Path, **env: str) -> tuple[int, bytes, bytes]:
    environ = {k: v for k, v in os.environ.items() if k != "GITSTORE_DIR"}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join([TESTS, environ.get("PYTHONPATH", "")])
    done = subprocess.run(cmd + args, cwd=cwd, env=environ, capture_output=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("fast") / "s.git"
    with GitDataStore(path) as s:
        a = SimpleComponent({"tau": 10.0, "net": {"n": 5}}, version="v1")
        b = SimpleComponent({"tau": 12.0, "note": "[bold]x[/bold] :smile: at 12:30:00"},
                            input=a, version="v1")
        c = SimpleComponent({"name": "caf\u00e9 \u03c4", "tab": "a\tb", "bell": "x\x07y"},
                            input=[a, b], version="v2")
        s.store(a, "rates", [1.0, 2.0])
        s.store(b, "text", "hello")
        s.store(c, "big", "x" * 5000)
        s.store(c, ":smile:", 1)
        keys = [key_of(x) for x in (a, b, c)]
        for i in range(12):  # enough keys for a one-digit prefix shared by two
            comp = SimpleComponent({"i": i}, version="v3")
            s.store(comp, "x", i)
            keys.append(key_of(comp))
    return path, keys


def cases(path: Path, keys: list[str]) -> list[tuple[list[str], dict[str, str]]]:
    hexes = [key_hex(k) for k in keys]
    firsts = [h[0] for h in hexes]
    shared = next(d for d in firsts if firsts.count(d) > 1)
    unique = next(d for d in firsts if firsts.count(d) == 1)
    env = {"GITSTORE_DIR": str(path)}
    store = ["--store", str(path)]
    out: list[tuple[list[str], dict[str, str]]] = []
    for k, h in zip(keys[:3], hexes):
        out += [(store + ["show", h[:8]], {}), (store + ["show", "--json", h[:10]], {}),
                (["show", h, "--json"], env), ([f"--store={path}", "show", k], {})]
    out += [
        (["show", hexes[1][:6]], env),
        (["show", unique], env),
        (["show", shared], env),                       # ambiguous
        (["show", "ffffffffffffffffff"], env),          # unknown
        (["show", "not-a-key!"], env),
        (["show", "abc"], {"GITSTORE_DIR": str(path.parent / "missing")}),
        (["show", "abc"], {}),                          # no .gitstore here
        (["--store", str(path), "show"], {}),             # typer's usage errors
        (["--store", str(path), "show", "a", "b"], {}),
        (["--store", str(path), "show", "--json", "--json", hexes[0][:8]], {}),
        (["--store", str(path), "show", "--bogus", hexes[0][:8]], {}),
        (["--store", str(path), "--debug", "show", hexes[0][:8]], {}),
        (["show", "--help"], env),
        (["--store", str(path), "--store", str(path), "show", hexes[0][:8]], {}),
        (["--store=", "show", hexes[0][:8]], env),
        (["show", hexes[0][:8]], {"GITSTORE_DIR": ""}),
    ]
    return out


def test_show_output_is_the_typer_apps(store: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, keys = store
    for args, env in cases(path, keys):
        fast = run(FAST, args, tmp_path, **env)
        slow = run(TYPER, args, tmp_path, **env)
        assert fast == slow, args
        if fast[0] == 1:  # gitstore's errors: one line
            assert fast[2].startswith(b"gitstore: error: ") and fast[2].count(b"\n") == 1


def test_show_does_not_import_typer(store: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, keys = store
    probe = ("import sys; from gitstore_cli import start; sys.argv[0] = 'gitstore'; "
             "start.main(); sys.stderr.write(repr(sorted(m for m in ('typer', 'click', 'rich')"
             " if m in sys.modules)))")
    code, out, err = run([sys.executable, "-c", probe, "show", key_hex(keys[0])[:8]], [],
                         tmp_path, GITSTORE_DIR=str(path))
    assert code == 0 and b"tau: 10.0" in out
    assert err == b"[]"
    # a line rich would change (an emoji code) still comes out as rich prints it
    code, out, err = run([sys.executable, "-c", probe, "show", key_hex(keys[2])[:8]], [],
                         tmp_path, GITSTORE_DIR=str(path))
    assert code == 0 and err == b"['rich']"


def on_terminal(cmd: list[str], args: list[str], cwd: Path, path: Path) -> tuple[int, bytes]:
    """stdout and stderr on a 24x40 pseudo-terminal (where rich sets its width)."""
    import fcntl
    import pty
    import struct
    import termios

    main_fd, tty_fd = pty.openpty()
    fcntl.ioctl(tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("COLUMNS", "LINES"))}
    environ.update(GITSTORE_DIR=str(path),
                   PYTHONPATH=os.pathsep.join([TESTS, environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(cmd + args, cwd=cwd, env=environ, stdout=tty_fd, stderr=tty_fd)
    os.close(tty_fd)
    data = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        data += chunk
    os.close(main_fd)
    return proc.wait(timeout=120), data


def test_show_on_a_terminal_is_the_typer_apps(store: tuple[Path, list[str]],
                                              tmp_path: Path) -> None:
    path, keys = store
    for args in (["show", key_hex(keys[0])[:8]], ["show", key_hex(keys[2])[:8]],
                 ["show", "--json", key_hex(keys[1])[:8]], ["show", "fffffffff"]):
        fast = on_terminal(FAST, args, tmp_path, path)
        assert fast == on_terminal(TYPER, args, tmp_path, path), args
        assert fast[1]


def test_show_into_a_closed_pipe_is_the_typer_apps(store: tuple[Path, list[str]],
                                                   tmp_path: Path) -> None:
    path, keys = store
    environ = dict(os.environ, GITSTORE_DIR=str(path),
                   PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
    for args in (["show", key_hex(keys[0])[:8]], ["show", "--json", key_hex(keys[0])[:8]]):
        seen = []
        for cmd in (FAST, TYPER):
            read_end, write_end = os.pipe()
            os.close(read_end)  # like `gitstore show KEY | head -0`
            done = subprocess.run(cmd + args, cwd=tmp_path, env=environ, stdout=write_end,
                                  stderr=subprocess.PIPE, timeout=120)
            os.close(write_end)
            seen.append((done.returncode, done.stderr))
        assert seen[0] == seen[1] and seen[0][0] == 1, args


def test_show_with_codec_plugins_is_the_typer_apps(store: tuple[Path, list[str]],
                                                   tmp_path: Path) -> None:
    """Installed plugins load first: a failing one is one warning line, what one prints goes
    to stderr, on both paths alike."""
    path, keys = store
    site = tmp_path / "site"
    info = site / "gs_fast_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "gs_noisy_plugin.py").write_text("print('loading :smile: [b]x[/b]')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gs-fast-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[gitstore.codecs]\nnoisy = gs_noisy_plugin\nbroken = gs_no_such_module:register\n")
    (info / "RECORD").write_text("")
    env = {"GITSTORE_DIR": str(path), "PYTHONPATH": str(site)}
    for args in (["show", key_hex(keys[1])[:8]], ["show", "fffffffff"]):
        fast = run(FAST, args, tmp_path, **env)
        assert fast == run(TYPER, args, tmp_path, **env), args
        assert b"loading" in fast[2] and b"'broken'" in fast[2] and b"loading" not in fast[1]
