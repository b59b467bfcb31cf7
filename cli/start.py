"""The ``gitstore`` console script: ``--help`` served from a cache, everything else by
:mod:`gitstore_cli.main`.

Typer (with rich and click) takes most of ``gitstore --help``'s time to import. The text it
prints depends only on the command line's code, the arguments, the libraries' versions and
the terminal (its width, whether it is one, colour settings): ``gitstore [COMMAND...] --help``
keeps what it printed in the user's cache folder under a digest of all of these, and prints
it from there next time without importing typer, byte for byte the same. Any change (the
code, typer or rich reinstalled, another width or ``NO_COLOR``) is another digest; a cache
that cannot be read or written is simply not used.

``gitstore show KEY`` in its simple forms is served by :mod:`gitstore_cli.fast`, also
without typer, with the same output.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

#: environment variables that change what typer and rich print
_ENV_PREFIXES = ("COLUMNS", "LINES", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_",
                 "TYPER_", "_TYPER", "RICH_", "JUPYTER", "PYCHARM", "DATABRICKS", "PYTHONIO",
                 "PYTHONUTF8", "LANG", "LC_", "GITSTORE", "CLICOLOR", "VSCODE", "COLAB",
                 "KAGGLE", "WT_SESSION", "ANSICON", "ConEmu")


def _is_help(argv: list[str]) -> bool:
    """``--help`` last, after command names only (options would change what is shown)."""
    return bool(argv) and argv[-1] == "--help" and all(
        a.replace("-", "").isalnum() and a.isascii() and not a.startswith("-")
        for a in argv[:-1])


def _cache_file(argv: list[str]) -> str | None:
    import importlib.util

    h = hashlib.sha256()
    parts: list[Any] = [sys.version, sys.argv[0], argv, sys.stdout.isatty(),
                        getattr(sys.stdout, "encoding", None)]
    try:
        parts.append(tuple(os.get_terminal_size(sys.__stdout__.fileno())))  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        parts.append(None)
    parts.append(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
    files = [os.path.join(os.path.dirname(__file__), "main.py"), __file__]
    for name in ("typer", "rich", "click", "gitstore"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            files.append(spec.origin)
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            return None
        parts.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    h.update(repr(parts).encode("utf-8", "surrogatepass"))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gitstore", "help", h.hexdigest())


class _Tee:
    """stdout as it is, keeping a copy of what was written."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.copy: list[str] = []

    def write(self, text: str) -> int:
        written = int(self._stream.write(text))  # bytes raise here, as they would
        self.copy.append(text)
        return written

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, flush...
        return getattr(self._stream, name)


def main() -> None:
    """Console-script entry point."""
    argv = sys.argv[1:]
    path = _cache_file(argv) if _is_help(argv) else None
    if path is not None:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:
            pass
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
    if path is None:
        from gitstore_cli import fast  # ``show KEY``, without typer and rich

        if fast.run(argv):
            return
    from gitstore_cli.main import main as run

    if path is None:
        run()
        return
    tee, err = _Tee(sys.stdout), _Tee(sys.stderr)
    sys.stdout, sys.stderr = tee, err  # type: ignore[assignment]
    code: Any = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code
        raise
    finally:
        sys.stdout, sys.stderr = tee._stream, err._stream
        if code in (0, None) and not err.copy:
            _save(path, "".join(tee.copy))


def _save(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


if __name__ == "__main__":
    main()
