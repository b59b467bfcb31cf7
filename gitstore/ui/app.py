"""The results browser: a Starlette app over one store, and :func:`serve` to run it.

Every page is built from the store's read methods (``entries_sized``, ``find``, ``attributes``,
``read``, ``log``, ``diff``, ``graph``); request input is checked before it reaches them
(keys: hex digits; attribute names: :func:`check_attribute_name` and one of the entry's;
versions and types: compared with what the store lists, never made into a ref or a path).
Templates are Jinja2 with autoescaping, so stored values (hostile ones included) are text.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from ..query import parse_where
from ..errors import (
    AmbiguousKeyError,
    DataError,
    EntryNotFoundError,
    GitStoreError,
    GraphvizNotFoundError,
    InvalidArgumentError,
    InvalidAttributeNameError,
    MissingDependencyError,
    ParameterError,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ..backends.base import Entry
    from ..backends.git import GitDataStore

__all__ = ["create_app", "serve"]

#: attributes larger than this are listed with their size, never decoded for a preview
PREVIEW_LIMIT = 64 * 2**20
#: JSON or .npy attributes at most this large are read for the sweep's scalar columns
SCALAR_LIMIT = 64 * 2**10
#: characters of text or JSON shown in a preview
TEXT_LIMIT = 20_000
#: rows of a sweep or listing shown
ROW_LIMIT = 2_000
_KEY_TEXT = re.compile(r"(k1-sha256:)?[0-9a-fA-F]{1,64}\Z")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; img-src 'self' data:; style-src 'self'; "
                                 b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def _require() -> None:
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"gitstore ui needs the 'ui' extra (missing {exc.name}): "
            "pip install 'gitstore[ui]'", "ui") from None


# --- the parameter query: gitstore.query, as `gitstore ls --where` ---------------------------------


def _flat_parameters(entry: Entry) -> dict[str, Any]:
    """``{dotted name: value}`` of an entry's parameters ({} for one that cannot be read)."""
    from ..query import flatten

    params = entry.component.get("parameters") if entry.problem is None else None
    return flatten(params) if isinstance(params, dict) else {}


# --- values as text ------------------------------------------------------------------------------


def short(key: str) -> str:
    return key.rpartition(":")[2][:12]


def size_text(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


def when(timestamp: float | None) -> str:
    import datetime as dt

    if not timestamp:
        return ""
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def show(value: Any) -> str:
    """A parameter or result as one short line of text."""
    if isinstance(value, str):
        if value.startswith("<input k1-sha256:"):
            return f"input {value[17:29]}"
        text = value
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (bool, int)) or value is None:
        text = str(value)
    else:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


def cell(value: Any) -> str:
    """A value in a table cell: floats to 6 significant digits (``show`` gives them whole)."""
    if isinstance(value, float) and len(repr(value)) > 10 and math.isfinite(value):
        return f"{value:.6g}"
    return show(value)


def _order(value: Any) -> tuple[int, float | int, str]:
    """Sort key: numbers by value (NaN last among them), then text, then missing. An int is
    compared as itself (one too large for a float, 10**400, sorts where it belongs)."""
    if value is None:
        return (3, 0.0, "")
    if isinstance(value, (bool, int)):
        return (0, int(value), "")
    if isinstance(value, float):
        return (1, 0.0, "") if math.isnan(value) else (0, value, "")
    return (2, 0.0, show(value))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 200)


def _numeric_list(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) >= 2 and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                (isinstance(v, float) or -_FLOAT_INT < v < _FLOAT_INT) for v in value))


_FLOAT_INT = 2**1023  # ints below this convert to a float (10**400 does not: OverflowError)


# --- the app --------------------------------------------------------------------------------------


class Browser:
    """The pages of one store; every store call holds ``lock`` (one reader at a time)."""

    def __init__(self, store_path: str | Path, code_repo: str | Path = ".") -> None:
        import jinja2

        from ..backends.git import GitDataStore

        self.store: GitDataStore = GitDataStore(store_path, create=False)
        self.code_repo = Path(code_repo)
        self.lock = threading.Lock()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("gitstore.ui", "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined)
        self.env.filters.update(short=short, size=size_text, when=when, show=show, cell=cell)
        self.env.globals.update(url=url, store_path=str(self.store.path))
        from importlib.resources import files

        self.css = (files("gitstore.ui") / "static" / "style.css").read_bytes()

    def page(self, template: str, status: int = 200, **values: Any) -> Response:
        from starlette.responses import HTMLResponse

        return HTMLResponse(self.env.get_template(template).render(**values), status)

    def listing_page(self, template: str, found: dict[str, Any], **values: Any) -> Response:
        return self.page(template, **found, **values)

    # --- finding things ------------------------------------------------------------------------

    def entry(self, key: str) -> Entry:
        if not isinstance(key, str) or not _KEY_TEXT.match(key):
            raise EntryNotFoundError(f"{key[:80]!r} is not a key (1 to 64 hex digits)")
        return self.store.find(key)

    def attribute(self, entry: Entry, name: str) -> str:
        from ..backends.base import check_attribute_name

        check_attribute_name(name)
        if name not in entry.attributes:
            raise EntryNotFoundError(f"entry {short(entry.key)} has no attribute {name!r}")
        return name

    def listing(self, query: dict[str, str]) -> dict[str, Any]:
        """The entries that pass the filters of ``query`` (type, version, rev, where), and
        what the filter form offers (every type and version)."""
        type_, version = query.get("type", ""), query.get("version", "")
        rev, where = query.get("rev", "").strip(), query.get("where", "").strip()
        keep = parse_where(where) if where else None
        valid = None
        if rev:
            if len(rev) > 200 or any(ord(c) < 0x20 for c in rev):
                raise InvalidArgumentError("a code revision is a branch, tag or commit name")
            valid = set(self.store.versions_for(rev, self.code_repo))
        rows: list[dict[str, Any]] = []
        types: dict[str, int] = {}
        problems: list[str] = []
        dates: dict[str, dict[str, float]] = {}
        for entry, sizes in self.store.entries_sized():
            if entry.problem is not None:
                problems.append(entry.problem)
                continue
            types[entry.type] = types.get(entry.type, 0) + 1
            if (type_ and entry.type != type_) or (version and entry.version != version):
                continue
            if valid is not None and entry.version not in valid:
                continue
            if keep is not None and not keep(_flat_parameters(entry)):
                continue
            if entry.version not in dates:
                dates[entry.version] = self.store.entry_dates(entry.version)
            rows.append({"entry": entry, "size": sum(s or 0 for s in sizes.values()),
                         "date": dates[entry.version].get(entry.key.rpartition(":")[2])})
        rows.sort(key=lambda r: (-(r["date"] or 0), r["entry"].key))
        return {"rows": rows, "types": sorted(types.items()), "versions": self.store.versions(),
                "problems": problems, "filters": {"type": type_, "version": version, "rev": rev,
                                                  "where": where}}

    def own_size(self, entry: Entry, name: str, info: dict[str, Any], limit: int
                 ) -> int | None:
        """The attribute's size, when it is at most ``limit`` and is its own: an object not
        fetched yet (a partial store) has only the size its ``component.yaml`` records, a
        remote's word; when that claims at most ``limit``, the object is fetched (not read)
        and measured here. None: over the limit, unknown, or it could not be fetched.

        Raises:
            nothing: a fetch that fails is None (the page says the attribute is not read).
        """
        size = info["size"]
        if size is None or size > limit:
            return None
        sha = str(info["id"]).encode()
        present = getattr(self.store, "_present", None)
        if present is None or present(sha):
            return int(size)
        try:
            self.store._fetch_promised([sha])
            if not present(sha):
                return None
            size = self.store.attributes(entry)[name]["size"]
        except (GitStoreError, KeyError):
            return None
        return None if size is None or size > limit else int(size)

    def scalars(self, entry: Entry) -> dict[str, Any]:
        """Scalar results of an entry: small JSON or .npy attributes that hold a number, a
        short text or a boolean, and the scalar fields of small JSON objects."""
        out: dict[str, Any] = {}
        for name, info in self.store.attributes(entry).items():
            if info["codec"] not in ("json", "npy") or \
                    self.own_size(entry, name, info, SCALAR_LIMIT) is None:
                continue
            try:
                value = self.store.read(entry.key, name)
            except DataError:
                continue
            if info["codec"] == "npy":
                value = value.item() if getattr(value, "ndim", None) == 0 else None
            if _is_scalar(value):
                out[name] = value
            elif isinstance(value, dict):
                for field, v in value.items():
                    if isinstance(field, str) and _is_scalar(v):
                        out[f"{name}.{field}"] = v
        return out

    def previews(self, entry: Entry) -> list[dict[str, Any]]:
        """What the entry page shows of each attribute."""
        out = []
        for name, info in self.store.attributes(entry).items():
            item: dict[str, Any] = {"name": name, "codec": info["codec"] or "unknown",
                                    "size": info["size"], "file": info["file"], "plots": [],
                                    "text": None, "summary": None}
            out.append(item)
            if info["codec"] not in ("npy", "json", "txt"):
                item["summary"] = "not previewed (only its size is shown)"
                continue
            own = self.own_size(entry, name, info, PREVIEW_LIMIT)
            if own is None:
                item["summary"] = f"too large to preview (over {size_text(PREVIEW_LIMIT)})" \
                    if (info["size"] or 0) > PREVIEW_LIMIT else "not previewed (its size is " \
                    "not known here: not fetched, or damaged)"
                continue
            item["size"] = own
            try:
                value = self.store.read(entry.key, name)
            except DataError as exc:
                item["summary"] = f"cannot be read: {exc}"
                continue
            base = {"key": entry.key.rpartition(":")[2], "attribute": name}
            if info["codec"] == "npy":
                item["summary"], kind = _array_summary(value)
                if kind:
                    item["plots"].append((url("/plot", **base), kind))
            elif info["codec"] == "txt":
                item["text"] = _clip(value if isinstance(value, str) else repr(value))
            else:
                item["text"] = _clip(json.dumps(value, indent=2, default=repr,
                                                ensure_ascii=False))
                if _numeric_list(value):
                    item["plots"].append((url("/plot", **base), "line"))
                elif isinstance(value, dict):
                    for field, v in value.items():
                        if isinstance(field, str) and _numeric_list(v):
                            item["plots"].append((url("/plot", **base, field=field),
                                                  f"line: {field}"))
        return out

    def plot(self, entry: Entry, name: str, field: str) -> tuple[bytes, str]:
        """(picture, media type) of an attribute (or of one field of a JSON object)."""
        from . import plots

        info = self.store.attributes(entry)[name]
        if self.own_size(entry, name, info, PREVIEW_LIMIT) is None:
            raise InvalidArgumentError(f"attribute {name!r} is too large to plot (or its size "
                                       "is not known here)")
        value = self.store.read(entry.key, name)
        if field:
            if not isinstance(value, dict) or field not in value:
                raise EntryNotFoundError(f"attribute {name!r} has no field {field!r}")
            value = value[field]
        if _numeric_list(value):
            return plots.line_svg(value, f"{name} {field}").encode(), "image/svg+xml"
        if not plots.is_numeric_array(value):
            raise InvalidArgumentError(f"attribute {name!r} is not a numeric array or list")
        kind = _array_summary(value)[1]
        if kind == "line":
            return plots.line_svg(value, name).encode(), "image/svg+xml"
        if kind == "scatter":
            x, y = (value[0], value[1]) if value.shape[0] == 2 else (value[:, 0], value[:, 1])
            return plots.scatter_png(x, y), "image/png"
        if kind == "image":
            return plots.image_png(value), "image/png"
        raise InvalidArgumentError(f"attribute {name!r} has no picture")

    def sweep(self, query: dict[str, str]) -> dict[str, Any]:
        """Entries of one type: the parameters that vary as columns, the scalar results
        beside them, sorted by ``sort`` (a column's name) and ``desc``."""
        found = self.listing(query)
        rows = [{"entry": r["entry"], "params": _flat_parameters(r["entry"]),
                 "results": self.scalars(r["entry"])} for r in found["rows"][:ROW_LIMIT]]
        names = sorted({n for r in rows for n in r["params"]})
        if len(rows) > 1:
            varying = [n for n in names
                       if len({show(r["params"].get(n, "\0missing")) for r in rows}) > 1]
        else:
            varying = names
        fixed = [(n, rows[0]["params"][n]) for n in names if n not in varying] if rows else []
        results = sorted({n for r in rows for n in r["results"]})
        columns = [("p:" + n, n, "parameter") for n in varying] + \
                  [("r:" + n, n, "result") for n in results]
        sort, desc = query.get("sort", ""), query.get("desc", "") == "1"
        if sort in {c[0] for c in columns}:
            where, name = ("params" if sort[0] == "p" else "results"), sort[2:]
            rows.sort(key=lambda r: _order(r[where].get(name)), reverse=desc)
        return {**found, "sweep": rows, "columns": columns, "fixed": fixed, "sort": sort,
                "desc": desc, "truncated": len(found["rows"]) > ROW_LIMIT}


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "\n… (cut here)"


def _array_summary(value: Any) -> tuple[str, str | None]:
    """A line about an array, and the kind of picture it gets (line, image, scatter, None)."""
    import numpy as np

    from . import plots

    if not isinstance(value, np.ndarray):
        return f"{type(value).__name__}", None
    text = f"array {value.dtype} shape {value.shape}"
    if not plots.is_numeric_array(value):
        return text, None
    fin = value[np.isfinite(value)] if value.dtype.kind == "f" else value
    if fin.size:
        text += f", min {fin.min():.6g}, max {fin.max():.6g}, mean {fin.mean():.6g}"
    if value.ndim == 1 and value.size >= 2:
        return text, "line"
    if value.ndim == 2 and 2 in value.shape and max(value.shape) > 2:
        return text, "scatter"
    if value.ndim == 2:
        return text, "image"
    return text, None


def url(path: str, **query: Any) -> str:
    """A URL of this app: ``path`` (fixed text, or built from checked hex keys) and a query
    string encoded from any values."""
    items = [(k, v) for k, v in query.items() if v not in (None, "")]
    return quote(path, safe="/:") + ("?" + urlencode(items) if items else "")


# --- routes ---------------------------------------------------------------------------------------


def create_app(store_path: str | Path, code_repo: str | Path = ".",
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The browser of the store at ``store_path`` as an ASGI app.

    Args:
        store_path: an existing store (opened read-only: nothing writes to it).
        code_repo: the code's repository, for the code-revision filter.
        allowed_hosts: the ``Host`` names it answers (a defence against DNS rebinding: a web
            page elsewhere cannot read it through a name of its own); default the loopback
            names.

    Raises:
        StoreLocationError: no store there.
        MissingDependencyError: the ``ui`` extra is not installed.
    """
    _require()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import Response
    from starlette.routing import Route

    browser = Browser(store_path, code_repo)

    def params(request: Request) -> dict[str, str]:
        return {k: v for k, v in request.query_params.items()}

    def index(request: Request) -> Response:
        with browser.lock:
            found = browser.listing(params(request))
        # the newest ROW_LIMIT entries (a page of every one of 100k is tens of MB)
        total = len(found["rows"])
        found["rows"] = found["rows"][:ROW_LIMIT]
        return browser.listing_page("index.html", found, total=total)

    def sweep(request: Request) -> Response:
        query = params(request)
        with browser.lock:
            if not query.get("type"):
                found = browser.listing(query)
                return browser.listing_page("sweep.html", found, sweep=None, columns=[],
                                            fixed=[], sort="", desc=False, truncated=False)
            found = browser.sweep(query)
        return browser.listing_page("sweep.html", found)

    def entry(request: Request) -> Response:
        with browser.lock:
            e = browser.entry(request.path_params["key"])
            from .. import _yaml

            graph = browser.store.graph(e)
            values: dict[str, Any] = {
                "entry": e, "yaml": _yaml.dump(e.component), "previews": browser.previews(e),
                "history": browser.store.log(e.key), "graph": graph,
                "dot": None if shutil.which("dot") else graph.to_dot(),
                "scalars": browser.scalars(e)}
        return browser.listing_page("entry.html", values)

    def graph_svg(request: Request) -> Response:
        with browser.lock:
            e = browser.entry(request.path_params["key"])
            svg = browser.store.graph(e).render("svg")
        return Response(svg, media_type="image/svg+xml")

    def plot(request: Request) -> Response:
        q = params(request)
        with browser.lock:
            e = browser.entry(q.get("key", ""))
            data, media = browser.plot(e, browser.attribute(e, q.get("attribute", "")),
                                       q.get("field", ""))
        return Response(data, media_type=media)

    def download(request: Request) -> Response:
        q = params(request)
        with browser.lock:
            e = browser.entry(request.path_params["key"])
            name = browser.attribute(e, q.get("attribute", ""))
            file_name = browser.store.attributes(e)[name]["file"]
            data = browser.store.read(e.key, name, raw=True)
        ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", file_name) or "attribute"
        disposition = (f'attachment; filename="{ascii_name}"; '
                       f"filename*=UTF-8''{quote(file_name, safe='')}")
        return Response(data, media_type="application/octet-stream",
                        headers={"content-disposition": disposition})

    def history(request: Request) -> Response:
        version = request.query_params.get("version", "")
        with browser.lock:
            if version not in browser.store.versions():
                raise EntryNotFoundError(f"no version {version[:200]!r} in this store")
            commits = browser.store.log(version=version)
        return browser.page("history.html", version=version, commits=commits)

    def diff(request: Request) -> Response:
        keys = request.query_params.getlist("k") or [
            request.query_params.get("a", ""), request.query_params.get("b", "")]
        keys = [k.strip() for k in keys if k.strip()]
        if len(keys) != 2:
            raise InvalidArgumentError("compare takes two entries (tick two, or give a and b)")
        with browser.lock:
            a, b = browser.entry(keys[0]), browser.entry(keys[1])
            from .. import _yaml

            changes = browser.store.diff(a.key, b.key)
            sa, sb = browser.scalars(a), browser.scalars(b)
        results = [(n, sa.get(n), sb.get(n)) for n in sorted(set(sa) | set(sb))
                   if show(sa.get(n)) != show(sb.get(n))]
        return browser.page("diff.html", a=a, b=b, yaml_a=_yaml.dump(a.component),
                            yaml_b=_yaml.dump(b.component), changes=changes, results=results)

    def css(request: Request) -> Response:
        return Response(browser.css, media_type="text/css")

    def error(request: Request, exc: Exception) -> Response:
        status, title = 500, "Error"
        message = str(exc)
        if isinstance(exc, HTTPException):
            status, title = exc.status_code, "Not found" if exc.status_code == 404 else "Error"
            message = "no such page" if exc.status_code == 404 else str(exc.detail)
        elif isinstance(exc, AmbiguousKeyError):
            status, title = 400, "Ambiguous key"
        elif isinstance(exc, EntryNotFoundError):
            status, title = 404, "Not found"
            message = exc.args[0] if exc.args else str(exc)
        elif isinstance(exc, (InvalidArgumentError, InvalidAttributeNameError, ParameterError)):
            status, title = 400, "Bad request"
        elif isinstance(exc, GraphvizNotFoundError):
            status, title = 501, "Graphviz is not installed"
        elif not isinstance(exc, GitStoreError):
            # never a traceback on the page: the server's stderr has it
            message = f"unexpected {type(exc).__name__} (the server's log has the details)"
        candidates = list(getattr(exc, "candidates", []))[:50]
        return browser.page("error.html", status, title=title, message=message,
                            candidates=candidates)

    hosts = allowed_hosts or list(_LOOPBACK)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        browser.store.close()

    routes = [
        Route("/", index), Route("/sweep", sweep), Route("/entry/{key}", entry),
        Route("/entry/{key}/graph.svg", graph_svg), Route("/entry/{key}/file", download),
        Route("/plot", plot), Route("/history", history), Route("/diff", diff),
        Route("/static/style.css", css),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                                Middleware(_SecurityHeaders)],
                    exception_handlers={Exception: error, HTTPException: error,
                                        GitStoreError: error})
    app.state.browser = browser
    return app


class _SecurityHeaders:
    """Adds a strict Content-Security-Policy (no script at all) and friends to every
    response."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def serve(store_path: str | Path, host: str = "127.0.0.1", port: int = 0,
          code_repo: str | Path = ".", ready: Callable[[str], None] | None = None) -> None:
    """Serve the browser until interrupted (Ctrl-C, SIGTERM), on ``host`` (this machine only
    by default) and ``port`` (0: a free one); ``ready(url)`` is called once it listens.

    Raises:
        StoreLocationError: no store there.
        MissingDependencyError: the ``ui`` extra is not installed.
        OSError: the address cannot be bound.
    """
    _require()
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    bound = sock.getsockname()[1]
    loopback = host in _LOOPBACK or host.startswith("127.")
    allowed = (list(_LOOPBACK) + [host]) if loopback else ["*"]
    app = create_app(store_path, code_repo, allowed_hosts=allowed)
    where = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="on"))
    if ready is not None:
        ready(f"http://{where}:{bound}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
