"""Hierarchical parameter sets: a superset of the ``parameters`` package's ``ParameterSet``.

A :class:`ParameterSet` is a ``dict`` whose nested mappings are ``ParameterSet`` too, so it can be
passed wherever a mapping is expected, and it hashes (see :mod:`gitstore.keys`) exactly like a plain
dict with the same content, and like the ``parameters`` package's ``ParameterSet`` (NeuroTools'):
its non-parameter attributes (``label``, ``_url``) are never part of the mapping or the key.

It reads YAML, and the ``parameters`` package's own file format (the text of its ``pretty()``
and ``save()``: Python literals in a dict) with a literal parser that never evaluates code;
text that could mean two things is refused. :func:`points` iterates the points of a
``parameters.ParameterSpace`` (a sweep).
"""

from __future__ import annotations

import ast
import contextlib
import copy as _copy
import itertools
import math
import os
import re
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import _yaml
from .errors import (
    GitStoreError,
    ParameterError,
    ParameterFileError,
    ParameterNameError,
    ParameterSyntaxError,
    ParameterTypeError,
)
from .keys import MAX_DEPTH, sweep_kind

__all__ = ["MAX_URL_BYTES", "MISSING", "URL_TIMEOUT", "ParameterSet", "load_parameters",
           "load_yaml", "points"]

#: the largest parameter text read from a file or URL (bytes)
MAX_URL_BYTES = _yaml.MAX_TEXT
#: seconds an ``http(s)://`` parameter URL may take to answer (each socket operation)
URL_TIMEOUT = 30.0
#: how many ``url("...")`` values may nest inside one another in the literal format
MAX_URL_NESTING = 8
#: the first line of files :meth:`ParameterSet.save` writes in the literal format: strings in
#: them are Python literals with escapes (the ``parameters`` package writes them raw)
LITERAL_HEADER = "# gitstore ParameterSet: Python literals, strings escaped"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_YAML_EXTENSIONS = (".yaml", ".yml", ".json")


class _Missing:
    """Marks a path present on one side of a diff only."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML with the safe loader; errors name ``source`` and the 1-based line.

    Raises:
        ParameterFileError: the text is not valid YAML, names a key twice in one mapping,
            holds a value the loader cannot build (an integer over 4,300 digits, a bad
            date), or is over the loader's bounds (size, aliases).
    """
    try:
        return _yaml.load(text, unique_keys=True)  # a name given twice is never dropped
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ParameterFileError(source, line, str(exc.problem or exc)) from exc
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        # ValueError: a date like 2001-13-45, an integer over sys.get_int_max_str_digits()
        raise ParameterFileError(source, None, str(exc)) from exc


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and (
        text.endswith((".yaml", ".yml", ".json")) or os.path.isfile(text)
    )


def _redact(url: str) -> str:
    """``url`` without a password (``user:secret@host`` → ``user:***@host``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _read_bounded(stream: Any, source: str) -> bytes:
    data = stream.read(MAX_URL_BYTES + 1)
    if len(data) > MAX_URL_BYTES:
        raise ParameterFileError(source, None, f"over {MAX_URL_BYTES} bytes: not read")
    return bytes(data)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParameterFileError(source, None, "not UTF-8 text") from None


def _fetch_url(url: str) -> tuple[str, str]:
    """The text at a ``file://``, ``http://`` or ``https://`` URL, and the URL's extension.

    Raises:
        ParameterFileError: another scheme, a file:// URL naming another host, a failure to
            read (missing file, HTTP error status, refused connection, timeout), more than
            :data:`MAX_URL_BYTES` bytes, or text that is not UTF-8. The error names the URL
            (without its password).
    """
    import http.client  # here, not at import: loading ssl and email costs tens of ms
    import urllib.error
    import urllib.request

    shown = _redact(url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ParameterFileError(shown, None, f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    ext = os.path.splitext(urllib.parse.unquote(parts.path))[1].lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ParameterFileError(shown, None, f"a file:// URL names a file on this machine "
                                     f"(file:///path), not on host {parts.netloc!r}")
        path = urllib.request.url2pathname(parts.path)
        try:
            with open(path, "rb") as f:
                data = _read_bounded(f, shown)
        except OSError as exc:
            raise ParameterFileError(shown, None, exc.strerror or str(exc)) from None
        return _decode(data, shown), ext
    if scheme not in ("http", "https"):
        raise ParameterFileError(shown, None, f"cannot read parameters from a {scheme}:// URL "
                                 "(file://, http:// and https:// are read)")
    request = urllib.request.Request(url, headers={"User-Agent": "gitstore"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT) as response:
            data = _read_bounded(response, shown)
    except urllib.error.HTTPError as exc:
        raise ParameterFileError(shown, None, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise ParameterFileError(shown, None, f"cannot be read: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # timeout, reset...
        raise ParameterFileError(shown, None, f"cannot be read: {exc or type(exc).__name__}"
                                 ) from None
    return _decode(data, shown), ext


def _first_significant(text: str) -> str:
    """The first character that is not blank and not in a ``#`` comment line."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped[0]
    return ""


def _parse_text(text: str, source: str, ext: str, namespace: Mapping[str, Any] | None,
                nesting: int) -> Any:
    """Parse parameter text: the literal format (text opening with ``{``) or YAML.

    A ``.yaml``/``.yml``/``.json`` file is YAML, as in the ``parameters`` package; when it also
    reads as the literal format with other values (``{"n": None}``: the string "None" in YAML),
    it is refused as ambiguous.
    """
    literal = _first_significant(text) == "{"
    if ext in _YAML_EXTENSIONS:
        data = load_yaml(text, source)
        if literal:
            try:
                other = _parse_literal(text, source, namespace, nesting, fetch=False)
            except _Differs:
                other = MISSING  # url("..."): a parameter set there, a string in YAML
            except ParameterFileError:
                return data  # YAML flow style, and no literal: one meaning
            if other is MISSING or not _same_tree(other, data):
                raise ParameterFileError(
                    source, None, "ambiguous: this text reads both as YAML and as the "
                    "parameters package's literal format, with different values (None, tuples "
                    "or unquoted words?). Write it in YAML block style, or give the file "
                    "another extension to have it read as the literal format")
        return data
    if literal:
        return _parse_literal(text, source, namespace, nesting)
    return load_yaml(text, source)


def _same_tree(a: Any, b: Any) -> bool:
    from .keys import canonical_bytes

    try:
        return canonical_bytes(a) == canonical_bytes(b)
    except GitStoreError:
        return False


_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None, "pi": math.pi,
                          "nan": math.nan, "inf": math.inf}
_SWEEP_CALLS = ("ParameterRange", "ParameterTable", "ParameterSpace", "GammaDist",
                "UniformDist", "NormalDist")


class _Differs(Exception):
    """The literal reading needs a URL fetched: it is not the YAML reading."""


def _parse_literal(text: str, source: str, namespace: Mapping[str, Any] | None = None,
                   nesting: int = 0, fetch: bool = True) -> Any:
    """Read the ``parameters`` package's format with a literal parser (never ``eval``).

    Accepted: numbers, strings, bytes, ``None``, ``True``/``False`` (and ``true``, ``false``,
    ``null``), ``pi``, ``nan``, ``inf``, names given in ``namespace``, lists, tuples, sets,
    dicts, ``url("...")`` (another parameter file, read in its place) and
    ``ParameterSet(...)``. Strings directly in the dict structure must be plain (no escapes,
    one literal on one line) unless the text starts with :data:`LITERAL_HEADER`: the
    ``parameters`` package writes them between double quotes without escaping, so
    ``"C:\\temp"`` may hold a tab or a backslash.

    Raises:
        ParameterSyntaxError: the text is not a Python literal (a ``SyntaxError`` too).
        ParameterNameError: an unknown bare name (a ``NameError`` too).
        ParameterFileError: a sweep or a reference (``ParameterRange(...)``, ``ref(...)``), an
            expression, an ambiguous string, a name given twice, too deep, too large.
    """
    if len(text) > MAX_URL_BYTES:
        raise ParameterFileError(source, None, f"over {MAX_URL_BYTES} characters: not read")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    escaped = text.startswith(LITERAL_HEADER)
    try:
        tree = ast.parse(text, filename=source, mode="eval")
    except SyntaxError as exc:
        raise ParameterSyntaxError(source, exc.lineno, "invalid text for a parameter set (the "
                                   f"literal format): {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ParameterSyntaxError(source, None, "invalid text for a parameter set (nested too "
                                   f"deeply, or a NUL character): {exc}") from None
    names = dict(_NAMES)
    if namespace:
        names.update(namespace)
    reader = _LiteralReader(text, source, names, escaped, nesting, fetch)
    data = reader.value(tree.body, 0, True)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ParameterFileError(source, 1, f"expected a mapping, found {type(data).__name__}")
    return data


class _LiteralReader:
    def __init__(self, text: str, source: str, names: dict[str, Any], escaped: bool,
                 nesting: int, fetch: bool) -> None:
        self.fetch = fetch
        self.lines = text.split("\n")
        self.source = source
        self.names = names
        self.escaped = escaped
        self.nesting = nesting

    def fail(self, node: ast.AST, problem: str) -> ParameterFileError:
        return ParameterFileError(self.source, getattr(node, "lineno", None), problem)

    def value(self, node: ast.expr, depth: int, raw: bool) -> Any:
        """``raw``: written by the ``parameters`` package's walk (a dict's names and values,
        strings unescaped), not by ``repr`` (inside lists, tuples and sets)."""
        if depth > MAX_DEPTH:
            raise self.fail(node, f"values nest deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis:
                raise self.fail(node, "'...' is not a parameter value")
            if isinstance(node.value, str) and raw and not self.escaped:
                self.check_plain(node)
            return node.value
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for k, v in zip(node.keys, node.values):
                if k is None:
                    raise self.fail(v, "'**' is not allowed in a parameter set")
                name = self.value(k, depth + 1, raw)
                try:
                    seen = name in out
                except TypeError:
                    raise self.fail(k, f"a {type(name).__name__} cannot be a parameter "
                                    "name") from None
                if seen:
                    raise self.fail(k, f"parameter {name!r} is given twice")
                out[name] = self.value(v, depth + 1, raw)
            return out
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.value(e, depth + 1, False) for e in node.elts]
            if isinstance(node, ast.List):
                return items
            if isinstance(node, ast.Tuple):
                return tuple(items)
            try:
                return set(items)
            except TypeError:
                raise self.fail(node, "a set holds an unhashable value") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.value(node.operand, depth + 1, False)
            if type(operand) in (int, float, complex):
                return -operand if isinstance(node.op, ast.USub) else operand
            raise self.fail(node, "a sign applies to numbers only")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            left = self.value(node.left, depth + 1, False)
            right = self.value(node.right, depth + 1, False)
            if type(left) in (int, float) and type(right) is complex and not right.real:
                return left + right if isinstance(node.op, ast.Add) else left - right
            raise self.fail(node, "expressions are not parameter values (only complex "
                            "numbers such as (1+2j) are written with an operator)")
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise ParameterNameError(
                self.source, node.lineno, f"name {node.id!r} is not defined: the literal format "
                "holds numbers, quoted strings, None, True, False, lists, tuples, dicts and sets "
                "(YAML text starting with '{' is read as this format: write YAML in block style)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node, node.func.id, depth)
        raise self.fail(node, f"{type(node).__name__} is not a literal: parameter text holds no "
                        "expressions, calls or attribute access")

    def call(self, node: ast.Call, func: str, depth: int) -> Any:
        if func in ("url", "ParameterSet") and len(node.args) == 1 and not node.keywords:
            arg = self.value(node.args[0], depth + 1, False)
            if func == "url" and not isinstance(arg, str):
                raise self.fail(node, "url(...) takes one string")
            if isinstance(arg, str):
                if not self.fetch:
                    raise _Differs()
                if self.nesting >= MAX_URL_NESTING:
                    raise self.fail(node, f"url(...) values nest more than {MAX_URL_NESTING} "
                                    "deep (a file that includes itself?)")
                return ParameterSet(arg, _nesting=self.nesting + 1)
            if isinstance(arg, Mapping):
                return arg
            raise self.fail(node, "ParameterSet(...) takes a dict or a URL")
        if func in _SWEEP_CALLS:
            raise self.fail(node, f"{func}(...) describes a sweep (many parameter sets), not "
                            "one: read the file with the parameters package's ParameterSpace "
                            "and key each point of gitstore.params.points(space)")
        if func == "ref":
            raise self.fail(node, "ref(...) is not read here: load the file with "
                            "parameters.load_parameters (which resolves references), or write "
                            "the value itself")
        if func in ("url", "ParameterSet"):
            raise self.fail(node, f"{func}(...) takes one argument")
        if func in self.names:
            raise self.fail(node, f"{func}(...): calls are not read (only url(\"...\"))")
        raise ParameterNameError(self.source, node.lineno, f"name {func!r} is not defined: "
                                 "the literal format holds no calls but url(\"...\")")

    def check_plain(self, node: ast.Constant) -> None:
        """A string in the dict structure must be one plain literal: ``"text"``."""
        segment = None
        if node.lineno == node.end_lineno and node.end_col_offset is not None:
            line = self.lines[node.lineno - 1].encode()
            segment = line[node.col_offset:node.end_col_offset].decode(errors="replace")
        if (segment is None or len(segment) < 2 or segment[0] != segment[-1]
                or segment[0] not in "\"'" or segment[1:-1] != node.value):
            raise self.fail(node, "ambiguous string: the parameters package writes strings "
                            "between quotes without escaping them, so escapes, prefixes, "
                            "triple quotes or adjacent strings may not mean what they say. "
                            "Save the set with gitstore (its save() marks escaped text) or "
                            "write it as YAML")


class ParameterSet(dict[str, Any]):
    """A hierarchical set of parameters: a superset of ``parameters.ParameterSet``.

    Build it from a mapping (including the ``parameters`` package's ParameterSet), a YAML
    string, text in the ``parameters`` package's format (a dict of Python literals, as its
    ``pretty()`` writes), the path of a file in either format, or a ``file://``,
    ``http://`` or ``https://`` URL (:data:`URL_TIMEOUT`, at most :data:`MAX_URL_BYTES`).
    Files ending in ``.yaml``, ``.yml`` or ``.json`` are YAML; other text opening with ``{``
    is the literal format, read without ``eval``; anything else is YAML.

    Values are reached as ``p.network.exc.tau_m``, ``p["network"]["exc"]["tau_m"]`` or
    ``p["network.exc.tau_m"]``. ``label`` and ``_url`` (see :attr:`non_parameter_attributes`)
    are attributes, never parameters: they are not in the mapping and not in the key.
    ``label`` defaults to the initialiser's label (a ParameterSet) and, for a nested set, to
    its name; ``_url`` is where the set was read from.

    Dotted names: a name ``"a.b"`` is the parameter ``b`` of the set ``a``, wherever it is
    given (a mapping, a YAML file, an assignment), as in the ``parameters`` package. So
    ``{"a.b": 1, "a": {"c": 2}}`` builds ``{"a": {"b": 1, "c": 2}}``; a name given both as a
    value and as a set (``{"a.b": 1, "a": 5}``), or twice as a value, raises
    :class:`ParameterError` naming both: nothing is dropped. Keys follow the same rule
    (:func:`gitstore.keys.expand_dotted`), so a plain dict and a ParameterSet holding the same
    parameters have the same key. Names that are not strings (``{0: 0.5, 1: 0.7}``) are kept
    as they are, without dot access. Mappings nest at most
    :data:`gitstore.keys.MAX_DEPTH` levels.

    Raises:
        ParameterFileError: a file, URL or text is malformed or cannot be read (names the file
            or URL, and the line); :class:`~gitstore.errors.ParameterSyntaxError` and
            :class:`~gitstore.errors.ParameterNameError` for literal text.
        ParameterTypeError: the initialiser is not a mapping, text or path.
        ParameterError: two names clash, or it nests too deeply.
    """

    #: attributes that are not parameters (as in the ``parameters`` package)
    non_parameter_attributes = ["_url", "label", "names", "parameters", "flat", "flatten",
                                "non_parameter_attributes"]
    #: names the ``parameters`` package refuses (:meth:`check_validity`); gitstore accepts them
    invalid_names = ["parameters", "names"]
    label: Any = None
    _url: str | None = None

    def __init__(self, initialiser: Any = None, label: Any = None,
                 update_namespace: Mapping[str, Any] | None = None, *,
                 _nesting: int = 0, **kwargs: Any) -> None:
        super().__init__()
        url = None
        if initialiser is None:
            data: Any = {}
        elif isinstance(initialiser, Mapping):
            data = initialiser
        elif isinstance(initialiser, (os.PathLike, str)):
            data, url = self._read_source(initialiser, update_namespace, _nesting)
        else:
            raise ParameterTypeError(
                f"cannot build a ParameterSet from {type(initialiser).__name__}: give a "
                "mapping, parameter text, a file path or a URL")
        _fill(self, dict(data, **kwargs) if kwargs else data, "", 0)
        if label is None and isinstance(initialiser, Mapping):
            label = _label_of(initialiser)
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "_url", url)

    @staticmethod
    def _read_source(source: str | os.PathLike[str], namespace: Mapping[str, Any] | None,
                     nesting: int = 0) -> tuple[Any, str | None]:
        url: str | None = None
        if isinstance(source, str) and "\n" not in source and _SCHEME.match(source.strip()):
            url = source.strip()
            text, ext = _fetch_url(url)
            name = _redact(url)
        elif isinstance(source, os.PathLike) or _looks_like_path(source):
            path = Path(source)
            try:
                with open(path, "rb") as f:
                    text = _decode(_read_bounded(f, str(path)), str(path))
            except OSError as exc:
                raise ParameterFileError(str(path), None, exc.strerror or str(exc)) from exc
            name = url = str(path)
            ext = path.suffix.lower()
        else:
            text, name, ext = source, "<string>", ""
        data = _parse_text(text, name, ext, namespace, nesting)
        if data is None:
            return {}, url
        if not isinstance(data, Mapping):
            raise ParameterFileError(name, 1, f"expected a mapping, found {type(data).__name__}")
        return data, url

    @staticmethod
    def read_from_str(s: str, update_namespace: Mapping[str, Any] | None = None) -> Any:
        """Parse parameter text (or read ``file://...``) into plain data, as the ``parameters``
        package's ``read_from_str`` does, but with a literal parser instead of ``eval``:
        ``update_namespace`` names values (not functions) the text may use."""
        if "\n" not in s and _SCHEME.match(s.strip()):
            text, ext = _fetch_url(s.strip())
            return _parse_text(text, _redact(s.strip()), ext, update_namespace, 0) or {}
        return _parse_text(s, "<string>", "", update_namespace, 0) or {}

    @staticmethod
    def check_validity(k: Any) -> None:
        """Raise :class:`ParameterError` for a name the ``parameters`` package refuses
        (``parameters``, ``names``). gitstore's ParameterSet itself accepts them."""
        if k in ParameterSet.invalid_names:
            raise ParameterError(f"{k!r} is not allowed as a parameter name.")

    # --- item access -------------------------------------------------------------------------

    def __setitem__(self, name: str, value: Any) -> None:
        """Set (or replace) one parameter; ``p["a.b"] = 1`` creates the set ``a`` if needed."""
        if isinstance(name, str) and "." in name:
            head, _, rest = name.partition(".")
            child = self.get(head)
            if child is None:
                child = ParameterSet(label=head)
                super().__setitem__(head, child)
            elif not isinstance(child, ParameterSet):
                raise ParameterError(f"{head!r} is a value, not a parameter set")
            child[rest] = value
            return
        if isinstance(value, Mapping) and not isinstance(value, ParameterSet):
            converted = ParameterSet(value, _label_of(value) or name)
            object.__setattr__(converted, "_url", _url_of(value))
            value = converted
        super().__setitem__(name, value)

    def flat_add(self, name: str, value: Any) -> None:
        """Like ``p[name] = value`` (which creates missing parent sets here too)."""
        self[name] = value

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set each name in turn as ``p[name] = value`` does (dotted names nest; mappings
        become parameter sets), as the ``parameters`` package's ``update`` does."""
        items = other.items() if isinstance(other, Mapping) else other
        for name, value in [*items, *kwargs.items()]:
            self[name] = value

    def replace_values(self, **values: Any) -> None:
        """``p.replace_values(**{"a.b": 1})``: set each dotted name to its value."""
        for name, value in values.items():
            self[name] = value

    def __getitem__(self, name: str) -> Any:
        if isinstance(name, str) and "." in name and not super().__contains__(name):
            node: Any = self
            for part in name.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    raise KeyError(name)
                node = node[part]
            return node
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        try:
            self[name]  # type: ignore[index]
        except (KeyError, TypeError):
            return False
        return True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no parameter {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.non_parameter_attributes:
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__:
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def names(self) -> Any:
        """The top-level names (``keys()``), as in the ``parameters`` package."""
        return self.keys()

    def parameters(self) -> Any:
        """The top-level ``(name, value)`` pairs (``items()``), as in the ``parameters``
        package."""
        return self.items()

    # --- views -------------------------------------------------------------------------------

    def flat(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(dotted name, leaf value)`` pairs, depth first, as the ``parameters``
        package does (a name that is not a string appears as ``[name]``: ``{"w": {0: 0.5}}``
        gives ``("w[0]", 0.5)``; an empty set is a leaf)."""
        for path, value in _flat_paths(self, ()):
            yield _path_text(path), value

    def flatten(self) -> dict[str, Any]:
        """``{dotted name: leaf value}``: :meth:`flat` as a dict."""
        return dict(self.flat())

    def diff(self, other: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Return ``{dotted name: (value here, value in other)}`` for every leaf that differs.

        A name present on one side only shows :data:`MISSING` on the other. Two leaves are the
        same when their keys would be (:func:`gitstore.keys.canonical_bytes`): ``1`` and
        ``True``, ``(1, 2)`` and ``[1, 2]`` differ; so two parameter sets with different keys
        always show a difference. (``p - q`` is the ``parameters`` package's difference.)
        """
        mine = dict(_flat_paths(self, ()))
        theirs = dict(_flat_paths(other if isinstance(other, ParameterSet)
                                  else ParameterSet(other), ()))
        out: dict[str, tuple[Any, Any]] = {}
        for path in sorted(set(mine) | set(theirs), key=lambda p: [repr(n) for n in p]):
            a, b = mine.get(path, MISSING), theirs.get(path, MISSING)
            if not _same(a, b):
                out[_path_text(path)] = (a, b)
        return out

    def __sub__(self, other: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(only or different here, only or different in other)`` as nested dicts, as in
        the ``parameters`` package (values compared with ``!=``)."""
        return _subtract(self, other, 0)

    def as_dict(self) -> dict[str, Any]:
        """A deep copy as plain nested dicts.

        Raises:
            ParameterError: the set nests deeper than MAX_DEPTH (or contains itself).
        """
        return _as_dict(self, "", 0)

    def tree_copy(self) -> ParameterSet:
        """A copy of the tree of sets (labels kept); the leaf values are the same objects."""
        return _tree_copy(self, 0, deep=False)

    def to_yaml(self) -> str:
        """YAML text that :class:`ParameterSet` reads back to an equal set.

        Raises:
            ParameterError: a name YAML cannot hold as a mapping key (a tuple, bytes...), or a
                value it cannot write (a lone surrogate, an integer too long for ``str``).
        """
        data = _yaml_safe(self.as_dict())
        try:
            return _yaml.dump(data)
        except (yaml.YAMLError, UnicodeEncodeError, ValueError) as exc:
            raise ParameterError(
                "this parameter set cannot be written as YAML (a lone surrogate in a string, "
                f"or an integer over {sys.get_int_max_str_digits()} digits?): {exc}") from None

    def save(self, url: str | os.PathLike[str] | None = None, expand_urls: bool = False) -> None:
        """Write the set to a path or ``file://`` URL (default: where it was read from).

        A name ending in ``.yaml``/``.yml`` gets :meth:`to_yaml`; any other name gets the
        ``parameters`` package's format (:meth:`pretty`, after a :data:`LITERAL_HEADER` comment
        line), which that package reads too. Written atomically (a temporary file, then a
        rename). The first save of a set read from nowhere sets ``_url``.

        Raises:
            ParameterFileError: no target, a URL scheme other than file://, or the file
                cannot be written (missing folder, no permission...); nothing is left behind.
            ParameterError: a value that the chosen format cannot hold exactly (the text is
                read back and compared before anything is written).
        """
        given = url if url is not None else self._url
        if given is None or str(given) == "":
            raise ParameterFileError("<none>", None, "save() needs a path or URL: this set "
                                     "was not read from a file")
        name = str(given)
        if isinstance(given, str) and _SCHEME.match(given):
            parts = urllib.parse.urlsplit(given)
            if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
                raise ParameterFileError(_redact(given), None, "save() writes local files "
                                         "only (a path or file:///path)")
            from urllib.request import url2pathname

            target = Path(url2pathname(parts.path))
        else:
            target = Path(given)
        if target.suffix.lower() in (".yaml", ".yml"):
            text = self.to_yaml()
        else:
            text = f"{LITERAL_HEADER}\n{self.pretty(expand_urls=expand_urls)}\n"
            exact = f"{LITERAL_HEADER}\n{self.pretty(expand_urls=True)}\n"
            try:
                back = _parse_literal(exact, name)
            except ParameterFileError as exc:
                back, problem = MISSING, str(exc)
            if back is MISSING or not _same_tree(back, self.as_dict()):
                raise ParameterError(
                    f"this parameter set cannot be written exactly in the parameters "
                    f"package's format (a value with no literal text, such as a numpy array?); "
                    f"save it to a .yaml file{': ' + problem if back is MISSING else ''}")
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            problem = exc.strerror or str(exc)
            if not target.parent.is_dir():
                problem = f"cannot write: the folder {target.parent} is missing"
            raise ParameterFileError(str(target), None, problem) from exc
        if not self._url:
            object.__setattr__(self, "_url", name)

    def pretty(self, indent: str = "  ", expand_urls: bool = False) -> str:
        """The ``parameters`` package's text of the set: a dict of Python literals, one
        parameter a line, nested sets indented (a set read from a URL is written
        ``url("...")`` unless ``expand_urls``). Strings are written ``"text"`` as there, and
        with Python escapes when they hold a quote, a backslash or a control character."""
        return "{\n" + _pretty_walk(self, indent, indent, expand_urls, 0) + "\n}"

    def copy(self) -> ParameterSet:
        """A deep copy (labels kept)."""
        return _tree_copy(self, 0, deep=True)

    def __copy__(self) -> ParameterSet:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> ParameterSet:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        return (ParameterSet, (self.as_dict(), self.label))

    def __repr__(self) -> str:
        return f"ParameterSet({dict.__repr__(self)})"

    def __str__(self) -> str:
        return repr(_plain(self, 0))

    # --- references and sweeps (the parameters package's objects) ---------------------------

    def find_references(self) -> list[tuple[ParameterSet, Any, Any]]:
        """``(set, name, reference)`` for each ``parameters.ParameterReference`` value."""
        found: list[tuple[ParameterSet, Any, Any]] = []
        for name, value in self.items():
            if isinstance(value, ParameterSet):
                found += value.find_references()
            elif _is_reference(value):
                found.append((self, name, value))
        return found

    def replace_references(self) -> None:
        """Replace each ``parameters.ParameterReference`` by the value it points to, as the
        ``parameters`` package does.

        Raises:
            ParameterError: references that never resolve (a loop of references).
        """
        for _ in range(MAX_DEPTH + 1):
            refs = self.find_references()
            if not refs:
                return
            for node, name, ref in refs:
                dict.__setitem__(node, name, _as_parameter_set(ref.evaluate(self)))
        raise ParameterError("parameter references do not resolve (a loop of references?)")

    def _is_space(self) -> bool:
        """Whether a leaf is a ``parameters.ParameterRange`` or ``ParameterDist``."""
        return any(sweep_kind(v) is not None for _, v in self.flat())

    def export(self, filename: str, format: str = "latex", **kwargs: Any) -> None:
        """Export as the ``parameters`` package does (``format='latex'``; needs that
        package)."""
        if format != "latex":
            raise ParameterError(f"unknown export format {format!r} (only 'latex')")
        try:
            from parameters.export import parameters_to_latex
        except ImportError:
            raise ParameterError("export() needs the parameters package") from None
        parameters_to_latex(filename, self, **kwargs)


def load_parameters(parameter_url: str, modified_parameters: Mapping[str, Any]) -> ParameterSet:
    """Read a set, replace values by dotted name, then resolve references (as the
    ``parameters`` package's ``load_parameters``)."""
    parameters = ParameterSet(parameter_url)
    parameters.replace_values(**modified_parameters)
    parameters.replace_references()
    return parameters


def points(space: Mapping[str, Any]) -> Iterator[ParameterSet]:
    """Every point of a sweep: each combination of the ``parameters.ParameterRange`` values in
    ``space`` (a ``parameters.ParameterSpace``, or any mapping holding ranges), once, as a new
    :class:`ParameterSet` with each range replaced by one of its values; the last range varies
    fastest. A space without ranges is one point. Use each point as a component's
    parameters: ``[store.retrieve(Model(p), "result") for p in points(space)]``.

    Raises:
        ParameterError: the space holds a ``ParameterDist`` (random values: draw them with the
            space's ``realize_dists(n)`` and key each draw).
    """
    base = space if isinstance(space, ParameterSet) else ParameterSet(space)
    ranges: list[tuple[tuple[Any, ...], list[Any]]] = []
    for path, value in _flat_paths(base, ()):
        kind = sweep_kind(value)
        if kind == "ParameterRange":
            ranges.append((path, list(value)))
        elif kind is not None or (isinstance(value, (list, tuple))
                                  and any(sweep_kind(v) for v in value)):
            raise ParameterError(
                f"parameter {_path_text(path)!r} is a random distribution, not a list of "
                "points: draw values with the space's realize_dists(n) and key each draw")
    for combination in itertools.product(*(values for _, values in ranges)):
        point = base.tree_copy()
        for (path, _), value in zip(ranges, combination):
            node: Any = point
            for part in path[:-1]:
                node = dict.__getitem__(node, part)
            dict.__setitem__(node, path[-1], _as_parameter_set(value))
        yield point


def _as_parameter_set(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, ParameterSet):
        return ParameterSet(value)
    return value


def _is_reference(value: Any) -> bool:
    return any(c.__name__ == "ParameterReference" and c.__module__.startswith("parameters")
               for c in type(value).__mro__)


def _label_of(value: Any) -> Any:
    """The ``label`` attribute of a ParameterSet (ours or the parameters package's)."""
    if type(value) is dict:
        return None
    label = getattr(value, "__dict__", {}).get("label")
    return label if isinstance(label, str) else None


def _url_of(value: Any) -> str | None:
    """Where a ParameterSet (ours or the parameters package's) was read from."""
    url = getattr(value, "__dict__", {}).get("_url")
    return url if isinstance(url, str) else None


def _tree_copy(node: ParameterSet, depth: int, deep: bool) -> ParameterSet:
    if depth > MAX_DEPTH:
        raise _too_deep("")
    out = ParameterSet(label=node.label)
    object.__setattr__(out, "_url", node._url)
    for k, v in node.items():
        if isinstance(v, ParameterSet):
            v = _tree_copy(v, depth + 1, deep)
        elif deep:
            v = _copy.deepcopy(v)
        elif _is_reference(v):
            v = v.copy()
        dict.__setitem__(out, k, v)
    return out


def _plain(node: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
    if depth > MAX_DEPTH:
        raise _too_deep("")
    return {k: _plain(v, depth + 1) if isinstance(v, ParameterSet) else v
            for k, v in node.items()}


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except ValueError:  # numpy arrays
        return not bool((a == b).all())


def _subtract(mine: Mapping[Any, Any], other: Mapping[Any, Any], depth: int
              ) -> tuple[dict[Any, Any], dict[Any, Any]]:
    if depth > MAX_DEPTH:
        raise _too_deep("")
    first = {k: v for k, v in mine.items() if k not in other}
    second = {k: v for k, v in other.items() if k not in mine}
    for k, v in mine.items():
        if k not in other:
            continue
        w = other[k]
        if isinstance(v, Mapping) and isinstance(w, Mapping):
            d1, d2 = _subtract(v, w, depth + 1)
            if d1:
                first[k] = d1
            if d2:
                second[k] = d2
        elif _differs(v, w):
            first[k], second[k] = v, w
    return first, second


_PLAIN_TEXT = re.compile(r"[^\"\\\x00-\x1f\x7f]*")


def _literal_name(name: Any) -> str:
    if type(name) is str and _PLAIN_TEXT.fullmatch(name):
        return f'"{name}"'
    return repr(name)


def _pretty_walk(node: ParameterSet, indent: str, step: str, expand_urls: bool,
                 depth: int) -> str:
    if depth > MAX_DEPTH:
        raise _too_deep("")
    lines = []
    for k, v in node.items():
        name = _literal_name(k)
        if isinstance(v, Mapping):
            url = getattr(v, "_url", None)
            if not expand_urls and url:
                lines.append(f'{indent}{name}: url({_literal_name(url)}),')
            else:
                inner = v if isinstance(v, ParameterSet) else ParameterSet(v)
                lines.append(f"{indent}{name}: {{")
                lines.append(_pretty_walk(inner, indent + step, step, expand_urls, depth + 1))
                lines.append(f"{indent}}},")
        elif type(v) is str:
            lines.append(f"{indent}{name}: {_literal_name(v)},")
        else:
            lines.append(f"{indent}{name}: {v!r},")
    return "\n".join(lines)


def _fill(target: ParameterSet, data: Mapping[Any, Any], path: str, depth: int) -> None:
    """Add ``data`` to ``target``: dotted names nest, sets given twice merge, clashes raise."""
    if depth > MAX_DEPTH:
        raise _too_deep(path)
    for name, value in data.items():
        parts = name.split(".") if isinstance(name, str) else [name]
        node, where = target, path
        for part in parts[:-1]:
            where = _join(where, part)
            child = dict.get(node, part, MISSING)
            if child is MISSING:
                child = ParameterSet(label=part)
                dict.__setitem__(node, part, child)
            elif not isinstance(child, ParameterSet):
                raise _clash(_join(path, name), where)
            node = child
        last = parts[-1]
        where = _join(where, last)
        existing = dict.get(node, last, MISSING)
        if isinstance(value, Mapping):
            if existing is MISSING:
                existing = ParameterSet(label=_label_of(value) or last)
                object.__setattr__(existing, "_url", _url_of(value))
                dict.__setitem__(node, last, existing)
            elif not isinstance(existing, ParameterSet):
                raise _clash(_join(path, name), where)
            _fill(existing, value, where, depth + 1)
        elif existing is not MISSING:
            raise _clash(_join(path, name), where)
        else:
            dict.__setitem__(node, last, value)


def _as_dict(node: ParameterSet, path: str, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _too_deep(path)
    return {k: _as_dict(v, _join(path, k), depth + 1) if isinstance(v, ParameterSet)
            else _copy.deepcopy(v) for k, v in node.items()}


def _too_deep(path: str) -> ParameterError:
    return ParameterError(f"parameters nest deeper than {MAX_DEPTH} levels at "
                          f"{path or '<root>'!r} (a mapping that contains itself?)")


def _join(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


def _clash(given: str, where: str) -> ParameterError:
    return ParameterError(
        f"parameter {given!r} clashes with {where!r}: a dotted name is the same as nesting, "
        f"and {where!r} is given twice (as a value and as a parameter set, or as two values)")


def _flat_paths(node: Mapping[Any, Any], prefix: tuple[Any, ...]
                ) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if len(prefix) > MAX_DEPTH:
        raise _too_deep(_path_text(prefix))
    for name, value in node.items():
        path = (*prefix, name)
        if isinstance(value, Mapping) and value:
            yield from _flat_paths(value, path)
        else:
            yield path, value


def _path_text(path: tuple[Any, ...]) -> str:
    text = ""
    for name in path:
        if isinstance(name, str):
            text = f"{text}.{name}" if text else name
        else:
            text = f"{text}[{name!r}]"
    return text


def _same(a: Any, b: Any) -> bool:
    """Whether two leaves would give the same key (values with no key: ``==`` and type)."""
    from .keys import canonical_bytes

    try:
        return canonical_bytes(a) == canonical_bytes(b)
    except GitStoreError:
        pass
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except ValueError:  # numpy arrays
        return bool((a == b).all())


def _yaml_safe(value: Any, path: str = "", depth: int = 0) -> Any:
    """Turn tuples, sets, numpy values and any mapping into what the safe dumper accepts.

    Raises:
        ParameterError: a mapping key YAML cannot hold (only strings, numbers, booleans and
            None can be names in component.yaml), or values nested deeper than MAX_DEPTH.
    """
    if depth > MAX_DEPTH:
        raise _too_deep(path)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if k is not None and type(k) not in _NAME_TYPES:
                if hasattr(k, "tolist") and type(k).__module__ == "numpy":
                    k = k.tolist()
                if k is not None and type(k) not in _NAME_TYPES:
                    raise ParameterError(
                        f"parameter name {k!r} at {path or '<root>'!r} cannot be written to "
                        f"component.yaml: names are strings, numbers, booleans or None, "
                        f"not {type(k).__name__}")
            out[k] = _yaml_safe(v, _join(path, k), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((_yaml_safe(v, path, depth + 1) for v in value), key=repr)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return _yaml_safe(value.tolist(), path, depth + 1)  # structured: tuples inside
    if type(value) is complex:
        return str(value)  # the safe dumper has no complex; the key keeps the exact value
    return value


_NAME_TYPES = (str, int, float, bool)
