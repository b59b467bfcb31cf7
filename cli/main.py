"""``gitstore``: the command line. Each command calls one method of :class:`GitDataStore`."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import secrets
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from gitstore.errors import (
    GitStoreError,
    GitStoreWarning,
    InvalidArgumentError,
    PartialFetchWarning,
    StoreLocationError,
)

from gitstore_cli.fast import (  # shared with the fast path of ``show``
    _MAX_TREE_DEPTH,
    _input_tree,
    _one_line,
    _size,
    attribute_lines,
    tree_lines,
)

if TYPE_CHECKING:
    from gitstore import GitDataStore, ParameterSet

# The store, YAML, dulwich and rich's tables and progress bars are imported where a command
# uses them: ``gitstore --help`` does not pay for them.


def key_hex(key: str) -> str:
    from gitstore.keys import key_hex as hex_of

    return hex_of(key)


def _parameters(value: Any) -> ParameterSet:
    from gitstore.params import ParameterSet

    return ParameterSet(value)

app = typer.Typer(
    help="Cache the results of long computations in a git repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# full width when piped: tables of keys and type names must not wrap in a log file
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _State:
    store_path = Path(".gitstore")
    debug = False


F = TypeVar("F", bound=Callable[..., Any])


def command(name: str | None = None, parent: typer.Typer = app) -> Callable[[F], F]:
    """Register a command whose errors become one line on stderr and exit code 1 (a
    traceback only with --debug)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                with warnings.catch_warnings():  # gitstore's warnings: one line on stderr
                    warnings.filterwarnings("default", category=GitStoreWarning)
                    warnings.showwarning = _show_warning
                    return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise
            except Exception as exc:
                if _State.debug:
                    raise
                err.print(f"gitstore: error: {_one_line(exc)}", markup=False)
                raise typer.Exit(1) from None

        parent.command(name)(run)
        return fn

    return wrap


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: Any = None, line: str | None = None) -> None:
    if issubclass(category, GitStoreWarning):
        err.print(f"gitstore: warning: {' '.join(str(message).split())}", markup=False)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@app.callback()
def main_options(
    store: Annotated[Path, typer.Option(
        "--store", envvar="GITSTORE_DIR", help="The store (a git repository).",
        show_default=True)] = Path(".gitstore"),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """gitstore keeps results under keys derived from what computed them.

    Example: gitstore --store results.git ls --type mymodel.Simulation

    Codecs of other packages are loaded from their entry points (group gitstore.codecs).
    """
    _State.store_path = store
    _State.debug = debug
    from contextlib import redirect_stdout

    from gitstore.codecs import load_codec_plugins

    with redirect_stdout(sys.stderr):  # what a plugin prints never mixes with our output
        problems = load_codec_plugins()
    for problem in problems:
        err.print(f"gitstore: warning: {problem}", markup=False)


def open_store(create: bool = False) -> GitDataStore:
    path = _State.store_path
    if not create and not path.exists():
        raise StoreLocationError(f"no store at {path} (run 'gitstore init' or pass --store)",
                                 str(path))
    from gitstore.backends.git import GitDataStore

    return GitDataStore(path, create=create)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[float], None]]:
    """A rich progress bar on a terminal; nothing when output is not one."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return _dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


# --- commands --------------------------------------------------------------------------------

@command()
def init() -> None:
    """Create a store (a bare git repository) at --store.

    Example: gitstore --store results.git init
    """
    store = open_store(create=True)
    out.print(f"store ready at {store.path}")
    store.close()


@command("ls")
def ls(
    type_: Annotated[str | None, typer.Option("--type", help="Only this component type.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Only this version.")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Only entries whose parameter NAME (dotted) equals VALUE (YAML), "
        "type and value (1 is not 1.0 nor true).", metavar="NAME=VALUE")] = None,
    where: Annotated[str | None, typer.Option(
        "--where", help="Only entries whose parameters match QUERY: comparisons (==, !=, <, "
        "<=, >, >=, in [..], exists NAME) joined by and, or, not, parentheses; dotted names, "
        "quoted strings; 20 does not match 20.0, true does not match 1.",
        metavar="QUERY")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    rev: Annotated[str | None, typer.Option(
        "--rev", help="Only results valid for this code revision (HEAD, a tag, a commit).")
                   ] = None,
    code_repo: Annotated[Path, typer.Option("--code-repo", help="The code's repository "
                                            "(for --rev).")] = Path("."),
) -> None:
    """List entries: key prefix, type, version, attributes, size, date.

    Example: gitstore ls --type gitstore_cli.demo.population --where "tau >= 10 and n == 3"
    Example: gitstore ls --rev HEAD~2
    """
    import gc

    from gitstore.query import parse_where, same_value

    gc.disable()  # a short-lived process building 100k small rows: no collection passes
    wanted = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgumentError(f"--param takes NAME=VALUE, not {item!r}")
        wanted[name] = _parameters(f"v: {value}")["v"] if value else None
    query = parse_where(where) if where is not None else None

    def matches(flat: Any) -> bool:
        if any(k not in flat or not same_value(flat[k], v) for k, v in wanted.items()):
            return False
        return query is None or query(flat)

    with open_store() as store:
        rows = []
        valid = set(store.versions_for(rev, code_repo)) if rev is not None else None
        for row in store.listing(version=version, type=type_,
                                 where=matches if (wanted or query) else None):
            if valid is not None and row.version not in valid:
                continue
            if row.problem is not None:  # listed as damaged; it never stops the listing
                err.print(f"gitstore: warning: {row.problem}", markup=False)
            rows.append({
                "key": row.key,
                "type": row.type if row.problem is None else "(unreadable)",
                "version": row.version,
                "attributes": list(row.attributes),
                "size": row.size,
                "date": row.date,
                **({"problem": row.problem} if row.problem is not None else {}),
            })
    if as_json:
        _emit_rows(rows)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None)
    for column in ("key", "type", "version", "attributes", "size", "date"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for row_out in rows:  # Text: names from other people's stores are never rich markup
        table.add_row(Text(key_hex(row_out["key"])[:12]), Text(row_out["type"]),
                      Text(row_out["version"]), Text(",".join(row_out["attributes"])),
                      _size(row_out["size"]), when(row_out["date"]))
    out.print(table)


def _emit_rows(rows: list[dict[str, Any]]) -> None:
    """JSON as :func:`emit_json` writes it, through orjson (100k rows: ~0.1 s, not ~1 s)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - a dependency
        emit_json(rows)
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2, default=str) + b"\n")
    sys.stdout.buffer.flush()


@command()
def show(
    key: Annotated[str, typer.Argument(help="A key or any unique prefix.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show an entry: its component.yaml, its input tree and its attributes.

    Example: gitstore show 3fa2c1
    """
    with open_store() as store:
        entry = store.find(key)
        attributes = store.attributes(entry)  # found once, not looked up again
        tree = _input_tree(store, entry.component)
    if as_json:
        emit_json({"key": entry.key, "component": entry.component, "attributes": attributes,
                   "inputs": tree})
        return
    from gitstore import _yaml

    out.print(_yaml.dump(entry.component).rstrip(), markup=False)
    out.print("\ninputs:" if tree else "\ninputs: none")
    for line in tree_lines(tree, "  "):
        out.print(line, markup=False)
    out.print("\nattributes:")
    for line in attribute_lines(attributes):
        out.print(line, markup=False)


@command()
def get(
    key: Annotated[str, typer.Argument(help="A key or any unique prefix.")],
    attribute: Annotated[str, typer.Argument(help="The attribute's name.")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write the stored file (.npy, .json, ...) here.")] = None,
) -> None:
    """Print an attribute, or write its file with -o (-o - writes the file's bytes to stdout).

    Example: gitstore get 3fa2c1 rates -o rates.json
    """
    with open_store() as store:
        if output is not None and str(output) == "-":
            data = store.read(key, attribute, raw=True)
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        if output is not None:
            store_dir = os.path.realpath(store.gitdir)
            if os.path.commonpath([os.path.realpath(output), store_dir]) == store_dir:
                raise StoreLocationError(f"{output} is inside the store {store.gitdir}; "
                                         "-o writes outside it", str(output))
            if output.is_dir():
                raise StoreLocationError(f"{output} is a directory; -o takes a file name",
                                         str(output))
            data = store.read(key, attribute, raw=True)
            try:
                write_output(output, data)
            except OSError as exc:
                raise StoreLocationError(f"cannot write {output}: {exc.strerror or exc}",
                                         str(output)) from exc
            err.print(f"wrote {len(data)} bytes to {output}")
            return
        value = store.read(key, attribute)
    out.print(value if isinstance(value, str) else repr(value), markup=False)


def write_output(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as ``cp`` does: into a device or a FIFO, and through a
    symbolic link; only a regular file (or a new path) is replaced, atomically (a temporary
    file beside it, renamed over it), keeping the replaced file's mode.

    Raises:
        StoreLocationError: ``path`` (or what it links to) is a directory.
        OSError: it cannot be written.
    """
    target = Path(os.path.realpath(path))  # through symbolic links, even dangling ones
    try:
        found: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        found = None
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise StoreLocationError(f"{path} is a directory; -o takes a file name", str(path))
    if found is not None and not stat.S_ISREG(found.st_mode):
        fd = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_NOCTTY)  # never replaced
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    tmp = target.with_name(f".{target.name[:200]}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if found is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(found.st_mode))
                if (found.st_uid, found.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(f.fileno(), found.st_uid, found.st_gid)
                    except OSError:
                        pass  # not ours to give away: the file becomes ours, as cp -f does
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@command()
def log(
    key: Annotated[str | None, typer.Argument(help="Only commits touching this entry.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Only this version.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show the history of stores and deletes, newest first.

    Example: gitstore log 3fa2c1
    """
    with open_store() as store:
        commits = store.log(key, version)
    if as_json:
        emit_json([{"id": c.id, "time": c.time, "message": c.message} for c in commits])
        return
    for c in commits:
        out.print(f"[yellow]{c.id[:10]}[/] {when(c.time)}  {c.message.splitlines()[0]}")


@command()
def diff(
    key_a: Annotated[str, typer.Argument(help="First key (prefix).")],
    key_b: Annotated[str, typer.Argument(help="Second key (prefix).")],
) -> None:
    """Show how two entries differ: type, version, parameters, inputs.

    Example: gitstore diff 3fa2c1 9b0e44
    """
    with open_store() as store:
        changes = store.diff(key_a, key_b)
    if not changes:
        out.print("no difference in type, version, parameters or inputs")
    for field_name, value in changes.items():
        if field_name == "parameters":
            for path, (a, b) in value.items():
                out.print(f"parameter {path}: {a!r} -> {b!r}", markup=False)
        else:
            out.print(f"{field_name}: {value[0]!r} -> {value[1]!r}", markup=False)


@command()
def graph(
    key: Annotated[str, typer.Argument(help="A key or any unique prefix.")],
    format: Annotated[str | None, typer.Option(
        "--format", help="dot (text, always), svg or png (drawn by Graphviz's dot); "
                         "default: from -o's suffix, else dot.")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write the picture here (default: stdout).")] = None,
) -> None:
    """Draw the lineage of a result: its inputs, their inputs..., each with its type, short
    key, the parameters that tell it from its siblings, and its attributes.

    Example: gitstore graph 3fa2c1 -o lineage.svg
    """
    if format is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        format = suffix if suffix in ("svg", "png") else "dot"
    if format not in ("dot", "svg", "png"):
        raise InvalidArgumentError(f"--format {format!r}: choose dot, svg or png")
    with open_store() as store:
        data = store.graph(key).render(format)
    if output is None or str(output) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if output.is_dir():
        raise StoreLocationError(f"{output} is a directory; -o takes a file name", str(output))
    try:
        write_output(output, data)
    except OSError as exc:
        raise StoreLocationError(f"cannot write {output}: {exc.strerror or exc}",
                                 str(output)) from exc
    err.print(f"wrote {format} ({len(data)} bytes) to {output}", markup=False)


@command()
def ui(
    port: Annotated[int, typer.Option("--port", help="0: any free port.")] = 0,
    host: Annotated[str, typer.Option(
        "--host", help="Listen here (only this machine by default).")] = "127.0.0.1",
    code_repo: Annotated[Path, typer.Option(
        "--code-repo", help="The code's repository (to filter by code revision).")] = Path("."),
) -> None:
    """Browse the store in a web browser: entries, sweeps, plots, lineage, history, diffs.
    Read only: it never changes the store. Prints its URL; Ctrl-C stops it.

    Example: gitstore ui --port 8765
    """
    path = _State.store_path
    if not path.exists():
        raise StoreLocationError(f"no store at {path} (run 'gitstore init' or pass --store)",
                                 str(path))
    from gitstore.ui import serve

    def ready(url: str) -> None:
        out.print(f"gitstore ui: serving {path} at {url}  (Ctrl-C stops)", markup=False)
        sys.stdout.flush()

    serve(path, host=host, port=port, code_repo=code_repo, ready=ready)


@command()
def gc() -> None:
    """Repack the store into one pack and delete unreachable objects now (never a concurrent
    writer's: gc waits for writers in flight and holds new ones off while it runs).

    Example: gitstore gc
    """
    with open_store() as store, progress_bar("gc") as advance:
        store.gc()
        advance(1.0)
    out.print("done")


@command()
def verify(as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
           fetch: Annotated[bool, typer.Option(
               "--fetch", help="In a partial store, first fetch the blobs not fetched yet, "
               "then check them too.")] = False) -> None:
    """Read and check every object, decode every attribute; exit 1 if anything is corrupt.

    In a partial store, blobs the remote still holds are 'not fetched', not corrupt.

    Example: gitstore verify --fetch
    """
    not_fetched: list[str] = []
    with open_store() as store, progress_bar("verify") as advance:
        problems = store.verify(lambda done, total: advance(done / max(total, 1)), fetch=fetch,
                                not_fetched=not_fetched)
    if not_fetched and not as_json:
        err.print(f"not fetched: {len(not_fetched)} attribute(s) a remote still holds (a "
                  "partial fetch; 'verify --fetch' fetches and checks them)", markup=False)
    if as_json:
        emit_json({"ok": not problems, "problems": problems,
                   **({"not_fetched": not_fetched} if not_fetched else {})})
    elif problems:
        for p in problems:
            # data in a format no codec here reads is not known to be damaged
            label = "cannot check" if "unknown codec" in p else "corrupt"
            err.print(f"{label}: {p}", markup=False)
    else:
        out.print("all objects verified")
    if problems:
        raise typer.Exit(1)


@command()
def stats(as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """Entries, versions, bytes, loose and packed objects.

    Example: gitstore stats --json
    """
    with open_store() as store:
        figures = store.stats()
    if as_json:
        emit_json(figures)
        return
    for name, value in figures.items():
        out.print(f"{name:15} {value}", markup=False)


@command()
def prune(
    version: Annotated[list[str] | None, typer.Option("--version", help="Delete this version.")
                       ] = None,
    older_than: Annotated[float | None, typer.Option(
        "--older-than", help="Delete versions last stored more than DAYS ago.",
        metavar="DAYS")] = None,
    keep_last: Annotated[int | None, typer.Option(
        "--keep-last", help="Keep only the N most recently stored versions.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
) -> None:
    """Delete whole versions (their objects go at the next gc).

    Example: gitstore prune --keep-last 3 --dry-run
    """
    if not (version or older_than is not None or keep_last is not None):
        raise InvalidArgumentError("say what to prune: --version, --older-than or --keep-last")
    if older_than is not None and not 0 <= older_than * 86400 < float("inf"):  # NaN too
        raise InvalidArgumentError(
            f"--older-than takes a finite number of days >= 0, not {older_than}")
    if keep_last is not None and keep_last < 0:
        raise InvalidArgumentError(f"--keep-last takes a number >= 0, not {keep_last}")
    with open_store() as store:
        gone = store.prune(version, None if older_than is None else older_than * 86400,
                           keep_last, dry_run)
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {len(gone)} version(s)" + (": " + ", ".join(gone) if gone else ""))


@command()
def demo(
    params: Annotated[Path | None, typer.Option(
        "--params", help="Parameter file (YAML) for the demo pipeline.")] = None,
) -> None:
    """Run a three-stage pipeline twice: the first run computes, the second hits the store.

    Example: gitstore demo --params my_params.yaml
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gitstore_cli import demo as pipeline

    parameters = _parameters(params or pipeline.PARAMS)
    store = open_store(create=True)
    out.print(f"store: {store.path}  (parameters: {params or 'built-in demo_params.yaml'})")
    with store:
        for run in (1, 2):
            with Progress(TextColumn("{task.description:12}"), BarColumn(),
                          TimeElapsedColumn(), console=err, transient=True,
                          disable=not err.is_terminal) as bar:
                tasks: dict[str, Any] = {}

                def report(stage: str, fraction: float) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(stage, total=1.0)
                    bar.update(tasks[stage], completed=fraction)

                result = pipeline.run(store, parameters, report)
            what = ("computed " + ", ".join(result["computed"]) if result["computed"]
                    else "served from the store")
            out.print(f"run {run}: {what} in {result['seconds']:.2f} s — "
                      f"{result['spikes']} spikes, mean rate {result['mean_rate_hz']:.2f} Hz")
        if result["sweep"]:
            out.print("sweep: rate_analysis at bin_ms " +
                      ", ".join(f"{b:g}" for b, _ in result["sweep"]) + " — peak rate " +
                      ", ".join(f"{p:.1f}" for _, p in result["sweep"]) + " Hz")
        out.print("\nkeys: " + ", ".join(key_hex(k)[:12] for k in result["keys"]))
        out.print("\nlog:")
        for c in store.log()[:6]:
            out.print(f"  {c.id[:10]} {when(c.time)}  {c.message.splitlines()[0]}",
                      markup=False)


@command()
def explain(
    description: Annotated[Path, typer.Argument(
        help="A YAML file with type, version, parameters and input (keys), as in "
             "component.yaml.")],
    attribute: Annotated[str | None, typer.Option("--attribute", help="Ask for this one.")
                         ] = None,
) -> None:
    """Say whether a component is stored, or which stored entries are nearest and how they differ.

    Example: gitstore explain wanted.yaml   (edit a copy of an entry's component.yaml)
    """
    from gitstore.copy import DescribedComponent
    from gitstore.errors import ParameterFileError

    data = _parameters(description).as_dict()
    missing = [f for f in ("type", "version") if f not in data]
    if missing:
        raise ParameterFileError(str(description), None, f"missing {', '.join(missing)}")
    if "code" in data:  # file paths are not dotted names: the code record as written
        from gitstore import _yaml

        raw = _yaml.load(description.read_bytes())
        data["code"] = raw.get("code") if isinstance(raw, dict) else None
    with open_store() as store:
        out.print(str(store.explain(DescribedComponent(data), attribute)), markup=False)


@command()
def checkout(
    rev: Annotated[str, typer.Argument(help="A code revision (HEAD~2, a tag, a commit) or a "
                                            "version name.")],
    dest: Annotated[Path | None, typer.Argument(help="Write the results here.")] = None,
    code_repo: Annotated[Path, typer.Option("--code-repo", help="The code's repository.")
                         ] = Path("."),
) -> None:
    """List the results of a code revision, or write them as plain files into DEST.

    Example: gitstore checkout HEAD~2 results/
    """
    with open_store() as store, progress_bar("checkout") as advance:
        entries = store.checkout(rev, dest, code_repo,
                                 lambda done, total: advance(done / max(total, 1)))
    for entry in entries:
        out.print(f"{key_hex(entry.key)[:12]}  {entry.type}  {','.join(entry.attributes)}",
                  markup=False)
    if dest is not None:
        err.print(f"wrote {len(entries)} entries to {dest}")


remote_app = typer.Typer(help="Manage the store's remotes.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")


@command("add", parent=remote_app)
def remote_add(name: Annotated[str, typer.Argument(help="A short name.")],
               url: Annotated[str, typer.Argument(help="A git URL or path.")]) -> None:
    """Add a remote.

    Example: gitstore remote add origin git@example.org:lab/results.git
    """
    with open_store() as store:
        store.remote_add(name, url)


@command("ls", parent=remote_app)
def remote_ls() -> None:
    """List remotes.

    Example: gitstore remote ls
    """
    with open_store() as store:
        for name, url in store.remotes().items():
            out.print(f"{name}  {url}", markup=False)


@command("rm", parent=remote_app)
def remote_rm(name: Annotated[str, typer.Argument(help="The remote's name.")]) -> None:
    """Remove a remote and its remote-tracking refs.

    Example: gitstore remote rm origin
    """
    with open_store() as store:
        store.remote_remove(name)


Prefer = Annotated[str | None, typer.Option(
    "--prefer", help="Resolve conflicts with 'ours' or 'theirs' (default: refuse).")]


def _check_prefer(prefer: str | None) -> None:
    if prefer not in (None, "ours", "theirs"):
        raise InvalidArgumentError(f"--prefer takes 'ours' or 'theirs', not {prefer!r}")


@command()
def push(
    remote: Annotated[str, typer.Argument(help="A remote's name, URL or path.")],
    version: Annotated[list[str] | None, typer.Option("--version", help="Only this version.")
                       ] = None,
    prefer: Prefer = None,
) -> None:
    """Push results; if the remote moved on, fetch, merge and push again.

    Example: gitstore push origin --version 1.0
    """
    _check_prefer(prefer)
    with open_store() as store, progress_bar("push") as advance:
        pushed = store.push(remote, version, prefer)
        advance(1.0)
    for name, sha in pushed.items():
        out.print(f"{name}: {sha[:10]}", markup=False)


Filter = Annotated[str | None, typer.Option(
    "--filter", help="A partial fetch: 'blob:limit=64k' or 'blob:none' (larger blobs come on "
    "first read; 'none' fetches everything). Default: the remote's recorded filter.")]


@contextmanager
def _said_warnings() -> Iterator[None]:
    """gitstore's warnings (a server that ignored --filter...) as one line each on stderr."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PartialFetchWarning)
        try:
            yield
        finally:
            for item in caught:
                err.print(f"gitstore: warning: {item.message}", markup=False)


@command()
def fetch(
    remote: Annotated[str, typer.Argument(help="A remote's name, URL or path.")],
    version: Annotated[list[str] | None, typer.Option("--version", help="Only this version.")
                       ] = None,
    lfs_content: Annotated[bool, typer.Option(
        "--lfs-content", help="Download Git LFS content now (else: on first read).")] = False,
    filter: Filter = None,
) -> None:
    """Fetch results into remote-tracking refs (nothing local changes).

    Example: gitstore fetch origin --filter blob:limit=64k
    """
    with open_store() as store, progress_bar("fetch") as advance, _said_warnings():
        fetched = store.fetch(remote, version, lfs_content=lfs_content, filter=filter)
        advance(1.0)
    for name, sha in fetched.items():
        out.print(f"{name}: {sha[:10]}", markup=False)


@command()
def pull(
    remote: Annotated[str, typer.Argument(help="A remote's name, URL or path.")],
    version: Annotated[str | None, typer.Option("--version", help="Only this version.")
                       ] = None,
    prefer: Prefer = None,
    rev: Annotated[str | None, typer.Option(
        "--rev", help="Only the versions valid for this code revision (by content).")] = None,
    code_repo: Annotated[Path, typer.Option("--code-repo", help="The code's repository "
                                            "(for --rev).")] = Path("."),
    lfs_content: Annotated[bool, typer.Option(
        "--lfs-content", help="Download Git LFS content now (else: on first read).")] = False,
    filter: Filter = None,
) -> None:
    """Fetch results and merge them into the local versions.

    Example: gitstore pull origin --version 3f2a9c1
    Example: gitstore pull origin --rev HEAD
    Example: gitstore pull origin --filter blob:limit=64k
    """
    _check_prefer(prefer)
    if rev is not None and version is not None:
        raise InvalidArgumentError("give --version or --rev, not both")
    if rev is not None and filter is not None:
        raise InvalidArgumentError("--filter works with --version or all versions, not --rev")
    with open_store(create=True) as store, progress_bar("pull") as advance, _said_warnings():
        result = store.pull_rev(remote, rev, code_repo, prefer) if rev is not None else \
            store.pull(remote, version, prefer, lfs_content=lfs_content, filter=filter)
        advance(1.0)
    for name, what in result.items():
        out.print(f"{name}: {what}", markup=False)


hooks_app = typer.Typer(help="Git hooks for a code repository.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")
HOOKS = ["post-checkout", "post-merge", "pre-push"]


@command("install", parent=hooks_app)
def hooks_install(code_repo: Annotated[Path, typer.Option(
        "--code-repo", help="The code's repository.")] = Path(".")) -> None:
    """Install hooks: after checkout/merge report cached results, before push push them.

    Example: gitstore hooks install --code-repo ~/src/model
    """
    from importlib.resources import files

    from gitstore import hooks

    scripts = {name: (files("gitstore_cli.hooks") / name).read_text() for name in HOOKS}
    for name in hooks.install(code_repo, scripts):
        out.print(f"installed {name}")


@command("uninstall", parent=hooks_app)
def hooks_uninstall(code_repo: Annotated[Path, typer.Option(
        "--code-repo", help="The code's repository.")] = Path(".")) -> None:
    """Remove gitstore's hooks (hooks you had before are restored).

    Example: gitstore hooks uninstall
    """
    from gitstore import hooks

    for name in hooks.uninstall(code_repo, HOOKS):
        out.print(f"removed {name}")


@command("run", parent=hooks_app)
def hooks_run(
    hook: Annotated[str, typer.Argument(help="The hook that calls: " + ", ".join(HOOKS))],
    args: Annotated[list[str] | None, typer.Argument(help="The hook's own arguments.")] = None,
) -> None:
    """What the installed hooks call (run from the code repository's top folder).

    Example: gitstore hooks run post-checkout
    """
    from gitstore.backends.git import resolve_revision

    config = _git_config()
    if "GITSTORE_DIR" not in os.environ and _State.store_path == Path(".gitstore"):
        _State.store_path = Path(config.get("gitstore.store", ".gitstore"))
    if not _State.store_path.exists():
        return
    with open_store() as store:
        if hook == "pre-push":
            url = (args or ["", ""])[1] or (args or [""])[0]
            from gitstore._git.remote import redact

            pushed = store.push(url)
            err.print(f"gitstore: pushed results of {len(pushed)} version(s) to {redact(url)}")
            return
        head = resolve_revision(".", "HEAD")
        remote = config.get("gitstore.remote", "origin")
        if config.get("gitstore.fetch", "false").lower() == "true" and remote in store.remotes():
            try:
                store.pull_rev(remote, head, ".")
            except GitStoreError as exc:
                err.print(f"gitstore: could not fetch results for {head[:10]}: {exc}")
        count = sum(1 for version in store.versions_for(head, ".")
                    for _entry in store.entries(version=version))
        err.print(f"gitstore: {count} cached result(s) for {head[:10]}")


def _git_config() -> dict[str, str]:
    from dulwich.repo import Repo

    try:
        with Repo.discover(".") as repo:
            config = repo.get_config()
            found = {}
            for name in ("store", "fetch", "remote"):
                try:
                    found[f"gitstore.{name}"] = config.get((b"gitstore",), name.encode()).decode()
                except KeyError:
                    pass
            return found
    except Exception:
        return {}


@command()
def copy(
    source: Annotated[str, typer.Argument(help="PATH or git:PATH, shelve:PATH, django:DIR[?db=URL]")],
    destination: Annotated[str, typer.Argument(help="Same forms as SOURCE; created if missing.")],
) -> None:
    """Copy every entry from one store to another (any backends), keeping keys.

    Example: gitstore copy shelve:/data/old-cache git:results.git
    """
    from gitstore.copy import copy_entries, open_spec

    src = open_spec(source, create=False)
    try:
        dst = open_spec(destination)
    except BaseException:
        src.close()
        raise
    try:
        with progress_bar("copy") as advance:
            count = copy_entries(src, dst, lambda n: advance(0.5))
            advance(1.0)
    finally:
        src.close()
        dst.close()
    out.print(f"copied {count} attribute(s)")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
