"""``gitstore show KEY`` without typer, click or rich: the same output, sooner.

Importing typer (with click and rich) and building the command line's app takes about a
third of ``gitstore show``'s time. :func:`run` serves the simple forms of ``show``
(``[--store PATH] show KEY [--json]``) itself: it does what
:mod:`gitstore_cli.main` does, in the same order, and prints every line that rich would
print unchanged (ASCII, printable, no ``:name:`` that could be an emoji code) directly;
any other line goes through a rich ``Console`` set up as main's, so the bytes are the same.
Anything else (``--debug``, ``--help``, an unknown option) returns ``False``
before doing anything, and the typer app handles it.

The helpers :mod:`gitstore_cli.main` shares with it live here too.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.errors import GitStoreError, GitStoreWarning, StoreLocationError

if TYPE_CHECKING:
    from gitstore import GitDataStore

#: how deep ``show`` follows inputs (deeper ones are marked, never a RecursionError)
_MAX_TREE_DEPTH = 100


def _one_line(exc: BaseException) -> str:
    """An error as one line: gitstore's own as they are, OS errors as 'path: reason', anything
    else named as unexpected."""
    if isinstance(exc, GitStoreError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        text = f"{where}: {exc.strerror}" if where != "" else exc.strerror
    else:
        text = (f"unexpected {type(exc).__name__}: {exc} "
                "(please report it; --debug shows the traceback)")
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _input_tree(store: GitDataStore, component: dict[str, Any]) -> list[dict[str, Any]]:
    """The inputs of ``component``, each with its own inputs, in the order they print; an
    input shared by several (a diamond) is expanded once, later mentions carry
    ``"shown": "above"`` (else a pipeline whose stages share inputs grows to 2^depth nodes);
    a loop is never followed, and no recursion is involved."""
    def nodes_of(comp: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = comp.get("input")
        keys = inputs if isinstance(inputs, list) else ([inputs] if inputs else [])
        return [{"key": str(k), "type": "(not in this store)", "inputs": []} for k in keys]

    root = nodes_of(component)
    shown: set[str] = set()
    todo = [(node, 1) for node in reversed(root)]  # depth first, in print order
    while todo:
        node, depth = todo.pop()
        if node["key"] in shown:
            node.update(type=None, shown="above")
            continue
        shown.add(node["key"])
        try:
            child = store.find(node["key"]).component
        except GitStoreError:
            continue
        node["type"] = child.get("type")
        if depth >= _MAX_TREE_DEPTH:
            node["shown"] = f"inputs deeper than {_MAX_TREE_DEPTH} levels left out"
            continue
        node["inputs"] = nodes_of(child)
        todo.extend((grandchild, depth + 1) for grandchild in reversed(node["inputs"]))
    return root


def tree_lines(nodes: list[dict[str, Any]], indent: str) -> list[str]:
    """The lines ``show`` prints for an input tree."""
    from gitstore.keys import key_hex

    lines = []
    todo = [(node, indent) for node in reversed(nodes)]
    while todo:
        node, where = todo.pop()
        if node.get("shown") == "above":
            lines.append(f"{where}{key_hex(node['key'])[:12]}  (shown above)")
            continue
        extra = f"  ({node['shown']})" if "shown" in node else ""
        lines.append(f"{where}{key_hex(node['key'])[:12]}  {node['type']}{extra}")
        todo.extend((child, where + "  ") for child in reversed(node["inputs"]))
    return lines


def attribute_lines(attributes: dict[str, Any]) -> list[str]:
    """The lines ``show`` prints for an entry's attributes."""
    lines = []
    for name, info in attributes.items():
        codec = info["codec"] or "unknown"
        lines.append(f"  {name:20} {codec:7} {_size(info['size']):>10}  {info['file']}")
    return lines


# --- the fast path ---------------------------------------------------------------------------

#: what rich's Console could change in a line: an emoji code (``:name:``)
_EMOJI_LIKE = re.compile(r":\S*?:")
_consoles: dict[bool, Any] = {}


def _say(text: str, stderr: bool = False) -> None:
    """``Console.print(text, markup=False)`` as main's consoles do it."""
    if text.isascii() and all(line.isprintable() for line in text.split("\n")) \
            and not _EMOJI_LIKE.search(text):
        stream = sys.stderr if stderr else sys.stdout
        try:
            stream.write(text + "\n")
            stream.flush()  # as rich does, and a closed pipe ends the command as there
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None
        return
    console = _consoles.get(stderr)
    if console is None:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True, stderr=True) if stderr else \
            Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
        _consoles[stderr] = console
    console.print(text, markup=False)


def _parse(argv: list[str]) -> tuple[Path, str, bool] | None:
    """(store, key, as_json) of ``[--store PATH] show KEY [--json]``, else None."""
    store: str | None = None
    i = 0
    while i < len(argv) and argv[i] != "show":
        arg = argv[i]
        if arg == "--store" and i + 1 < len(argv) and store is None:
            store = argv[i + 1]
            i += 2
        elif arg.startswith("--store=") and store is None:
            store = arg[len("--store="):]
            i += 1
        else:
            return None
    rest = argv[i + 1:]
    if i == len(argv) or rest.count("--json") > 1:
        return None
    positional = [a for a in rest if a != "--json"]
    if len(positional) != 1 or positional[0].startswith("-") or not positional[0]:
        return None
    if store is None:
        store = os.environ.get("GITSTORE_DIR", ".gitstore")
    if not store or store.startswith("-"):
        return None
    return Path(store), positional[0], "--json" in rest


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    if issubclass(category, GitStoreWarning):
        _say(f"gitstore: warning: {' '.join(str(message).split())}", stderr=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run(argv: list[str]) -> bool:
    """Serve ``argv`` if it is a simple ``show``; False (nothing done) if it is not."""
    parsed = _parse(argv)
    if parsed is None:
        return False
    try:
        _run(*parsed)
    except KeyboardInterrupt:  # as click ends a command on ^C: quietly, 130
        sys.exit(130)
    return True


def _run(path: Path, key: str, as_json: bool) -> None:
    from contextlib import redirect_stdout

    from gitstore.codecs import load_codec_plugins

    with redirect_stdout(sys.stderr):  # what a plugin prints never mixes with our output
        problems = load_codec_plugins()
    for problem in problems:
        _say(f"gitstore: warning: {problem}", stderr=True)
    try:
        with warnings.catch_warnings():  # gitstore's warnings: one line on stderr
            warnings.filterwarnings("default", category=GitStoreWarning)
            warnings.showwarning = _show_warning
            _show(path, key, as_json)
    except Exception as exc:
        _say(f"gitstore: error: {_one_line(exc)}", stderr=True)
        sys.exit(1)


def _show(path: Path, key: str, as_json: bool) -> None:
    if not path.exists():
        raise StoreLocationError(f"no store at {path} (run 'gitstore init' or pass --store)",
                                 str(path))
    from gitstore.backends.git import GitDataStore

    store = GitDataStore(path, create=False)
    with store:
        entry = store.find(key)
        attributes = store.attributes(entry)  # found once, not looked up again
        tree = _input_tree(store, entry.component)
    if as_json:
        import json

        sys.stdout.write(json.dumps({"key": entry.key, "component": entry.component,
                                     "attributes": attributes, "inputs": tree},
                                    indent=2, default=str) + "\n")
        return
    from gitstore import _yaml

    _say(_yaml.dump(entry.component).rstrip())
    _say("\ninputs:" if tree else "\ninputs: none")
    for line in tree_lines(tree, "  "):
        _say(line)
    _say("\nattributes:")
    for line in attribute_lines(attributes):
        _say(line)
