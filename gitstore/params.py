"""Hierarchical parameter sets with dot access and a YAML round trip.

A :class:`ParameterSet` is a ``dict`` whose nested mappings are ``ParameterSet`` too, so it can be
passed wherever a mapping is expected, and it hashes (see :mod:`gitstore.keys`) exactly like a plain
dict with the same content.
"""

from __future__ import annotations

import copy as _copy
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import _yaml
from .errors import ParameterError, ParameterFileError

__all__ = ["MISSING", "ParameterSet", "load_yaml"]


class _Missing:
    """Marks a path present on one side of a diff only."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML with the safe loader; errors name ``source`` and the 1-based line.

    Raises:
        ParameterFileError: the text is not valid YAML.
    """
    try:
        return _yaml.load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ParameterFileError(source, line, str(exc.problem or exc)) from exc
    except yaml.YAMLError as exc:
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

    Raises:
        ParameterFileError: a YAML string or file is malformed (names the file and line).
        ParameterError: the content is not a mapping, or a name is not a string or holds a dot.
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
        for name, value in dict(data, **kwargs).items():
            self[name] = value

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
        if not isinstance(name, str):
            raise ParameterError(f"parameter names must be strings, not {type(name).__name__}")
        if isinstance(value, Mapping) and not isinstance(value, ParameterSet):
            value = ParameterSet(value)
        if "." in name:
            head, _, rest = name.partition(".")
            child = self.get(head)
            if child is None:
                child = ParameterSet()
                super().__setitem__(head, child)
            elif not isinstance(child, ParameterSet):
                raise ParameterError(f"{head!r} is a value, not a parameter set")
            child[rest] = value
            return
        if not name:
            raise ParameterError("parameter names must not be empty")
        super().__setitem__(name, value)

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
        """Return ``{dotted name: leaf value}``, depth first."""
        return dict(self._flat_items(""))

    def _flat_items(self, prefix: str) -> Iterator[tuple[str, Any]]:
        for name, value in self.items():
            path = prefix + name
            if isinstance(value, ParameterSet) and value:
                yield from value._flat_items(path + ".")
            else:
                yield path, value

    def diff(self, other: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Return ``{dotted name: (value here, value in other)}`` for every leaf that differs.

        A name present on one side only shows :data:`MISSING` on the other.
        """
        mine = self.flat()
        theirs = ParameterSet(other).flat()
        out: dict[str, tuple[Any, Any]] = {}
        for name in sorted(set(mine) | set(theirs)):
            a, b = mine.get(name, MISSING), theirs.get(name, MISSING)
            if not _same(a, b):
                out[name] = (a, b)
        return out

    def as_dict(self) -> dict[str, Any]:
        """A deep copy as plain nested dicts."""
        return {k: v.as_dict() if isinstance(v, ParameterSet) else _copy.deepcopy(v)
                for k, v in self.items()}

    def to_yaml(self) -> str:
        """YAML text that :class:`ParameterSet` reads back to an equal set."""
        return _yaml.dump(_yaml_safe(self.as_dict()))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_yaml` to ``path`` (atomically: a temporary file, then a rename)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        os.replace(tmp, target)

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


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a and b != b:
        return True
    try:
        return bool(a == b)
    except ValueError:  # numpy arrays
        return bool((a == b).all())


def _yaml_safe(value: Any) -> Any:
    """Turn tuples and numpy values into what the safe dumper accepts."""
    if isinstance(value, dict):
        return {k: _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_yaml_safe(v) for v in value), key=repr)
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return value.tolist()
    return value
