"""Hierarchical parameter sets with dot access and a YAML round trip.

A :class:`ParameterSet` is a ``dict`` whose nested mappings are ``ParameterSet`` too, so it can be
passed wherever a mapping is expected, and it hashes (see :mod:`gitstore.keys`) exactly like a plain
dict with the same content.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import _yaml
from .errors import GitStoreError, ParameterError, ParameterFileError
from .keys import MAX_DEPTH

__all__ = ["MISSING", "ParameterSet", "load_yaml"]


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


class ParameterSet(dict[str, Any]):
    """A hierarchical set of parameters.

    Build it from a mapping (including the ``parameters`` package's ParameterSet), a YAML string,
    or the path of a YAML file. Values are reached as ``p.network.exc.tau_m``,
    ``p["network"]["exc"]["tau_m"]`` or ``p["network.exc.tau_m"]``.

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
        ParameterFileError: a YAML string or file is malformed (names the file and line).
        ParameterError: the content is not a mapping, two names clash, or it nests too deeply.
    """

    def __init__(self, initialiser: Any = None, **kwargs: Any) -> None:
        super().__init__()
        if initialiser is None:
            data: Any = {}
        elif isinstance(initialiser, Mapping):
            data = initialiser
        elif isinstance(initialiser, (os.PathLike, str)):
            data = self._read_source(initialiser)
        else:
            raise ParameterError(
                f"cannot build a ParameterSet from {type(initialiser).__name__}"
            )
        _fill(self, dict(data, **kwargs) if kwargs else data, "", 0)

    @staticmethod
    def _read_source(source: str | os.PathLike[str]) -> Any:
        if isinstance(source, os.PathLike) or _looks_like_path(source):
            path = Path(source)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ParameterFileError(str(path), None, exc.strerror or str(exc)) from exc
            except UnicodeDecodeError as exc:
                raise ParameterFileError(str(path), None, "not UTF-8 text") from exc
            name = str(path)
        else:
            text, name = source, "<string>"
        data = load_yaml(text, name)
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise ParameterFileError(name, 1, f"expected a mapping, found {type(data).__name__}")
        return data

    # --- item access -------------------------------------------------------------------------

    def __setitem__(self, name: str, value: Any) -> None:
        """Set (or replace) one parameter; ``p["a.b"] = 1`` creates the set ``a`` if needed."""
        if isinstance(value, Mapping) and not isinstance(value, ParameterSet):
            value = ParameterSet(value)
        if isinstance(name, str) and "." in name:
            head, _, rest = name.partition(".")
            child = self.get(head)
            if child is None:
                child = ParameterSet()
                super().__setitem__(head, child)
            elif not isinstance(child, ParameterSet):
                raise ParameterError(f"{head!r} is a value, not a parameter set")
            child[rest] = value
            return
        super().__setitem__(name, value)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set each name in turn as ``p[name] = value`` does (dotted names nest; mappings
        become parameter sets), as the ``parameters`` package's ``update`` does."""
        items = other.items() if isinstance(other, Mapping) else other
        for name, value in [*items, *kwargs.items()]:
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
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    # --- views -------------------------------------------------------------------------------

    def flat(self) -> dict[str, Any]:
        """Return ``{dotted name: leaf value}``, depth first (a name that is not a string
        appears as ``[name]``: ``{"w": {0: 0.5}}`` gives ``{"w[0]": 0.5}``)."""
        return {_path_text(path): value for path, value in _flat_paths(self, ())}

    def diff(self, other: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Return ``{dotted name: (value here, value in other)}`` for every leaf that differs.

        A name present on one side only shows :data:`MISSING` on the other. Two leaves are the
        same when their keys would be (:func:`gitstore.keys.canonical_bytes`): ``1`` and
        ``True``, ``(1, 2)`` and ``[1, 2]`` differ; so two parameter sets with different keys
        always show a difference.
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

    def as_dict(self) -> dict[str, Any]:
        """A deep copy as plain nested dicts.

        Raises:
            ParameterError: the set nests deeper than MAX_DEPTH (or contains itself).
        """
        return _as_dict(self, "", 0)

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

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_yaml` to ``path`` (atomically: a temporary file, then a rename).

        Raises:
            ParameterFileError: the file cannot be written (missing folder, no permission...);
                nothing is left behind.
        """
        target = Path(path)
        text = self.to_yaml()
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

    def pretty(self) -> str:
        """An indented, human-readable listing."""
        return self.to_yaml().rstrip("\n")

    def copy(self) -> ParameterSet:
        """A deep copy."""
        return ParameterSet(self.as_dict())

    def __copy__(self) -> ParameterSet:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> ParameterSet:
        return self.copy()

    def __reduce__(self) -> tuple[Any, ...]:
        return (ParameterSet, (self.as_dict(),))

    def __repr__(self) -> str:
        return f"ParameterSet({dict.__repr__(self)})"


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
                child = ParameterSet()
                dict.__setitem__(node, part, child)
            elif not isinstance(child, ParameterSet):
                raise _clash(_join(path, name), where)
            node = child
        last = parts[-1]
        where = _join(where, last)
        existing = dict.get(node, last, MISSING)
        if isinstance(value, Mapping):
            if existing is MISSING:
                existing = ParameterSet()
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
