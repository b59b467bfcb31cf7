"""YAML through the safe loader and dumper only (libyaml's C versions when available)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

try:  # the C classes are the same safe subset, ~10x faster
    from yaml import CSafeDumper as _Dumper
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

__all__ = ["dump", "load"]


def dump(data: Any, sort_keys: bool = False) -> str:
    """YAML text for plain data.

    Mappings of scalars, lists and mappings (what a component description holds) are written
    by a small emitter here, ~20x faster than PyYAML's representer, which is Python even with
    libyaml; anything else goes through PyYAML. Either way the safe loader reads it back equal.
    """
    if not sort_keys and type(data) is dict:
        out: list[str] = []
        if _emit_mapping(data, "", out):
            return "".join(out)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, allow_unicode=True)


# characters PyYAML's reader refuses, or that json.dumps(ensure_ascii=False) leaves raw
_UNSAFE_TEXT = re.compile("[\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BARE_TEXT = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*(:[A-Za-z0-9_.+-]+)*\Z")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "nan", "inf"}


def _scalar(value: Any) -> str | None:
    t = type(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        if value != value:
            return ".nan"
        if value in (math.inf, -math.inf):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "." not in text:  # YAML 1.1 floats need a dot: 1e-05 -> 1.0e-05
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0e{exponent}" if exponent else f"{mantissa}.0"
        return text
    if t is str:
        if _BARE_TEXT.match(value) and value.lower() not in _RESERVED:
            return str(value)  # a plain scalar that every YAML reader takes as this string
        if _UNSAFE_TEXT.search(value):
            return None
        return json.dumps(value, ensure_ascii=False)  # a valid YAML double-quoted scalar
    if t is list:
        items = [_scalar(v) for v in value]
        if any(i is None for i in items):
            return None
        return "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
    if t is dict and not value:
        return "{}"
    return None


def _emit_mapping(data: dict[Any, Any], indent: str, out: list[str]) -> bool:
    for key, value in data.items():
        if type(key) is not str:
            return False
        if _BARE_KEY.match(key) and key.lower() not in _RESERVED:
            name = key
        else:
            quoted = _scalar(key)
            if quoted is None:
                return False
            name = quoted
        if type(value) is dict and value:
            out.append(f"{indent}{name}:\n")
            if not _emit_mapping(value, indent + "  ", out):
                return False
            continue
        text = _scalar(value)
        if text is None:
            return False
        out.append(f"{indent}{name}: {text}\n")
    return True


def load(text: str | bytes) -> Any:
    """Parse YAML with the safe loader; raises yaml.YAMLError on malformed text."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
