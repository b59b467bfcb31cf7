"""YAML through the safe loader and dumper only (libyaml's C versions when available).

Loading is bounded, because component.yaml files arrive from other people's stores: a text over
:data:`MAX_TEXT` bytes, or whose aliases would expand it by more than :data:`MAX_ALIAS_NODES`
nodes (a "billion laughs"), or an alias that contains itself, raises :class:`YAMLLimitError`
before anything is built. libyaml itself refuses nesting deeper than 1,000 levels.
Dumping writes any mapping key (however long: simple keys are limited to 1,024 characters, so
long ones are written as explicit ``? key`` entries) and never writes anchors or aliases.
"""

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

__all__ = ["MAX_ALIAS_NODES", "MAX_TEXT", "DuplicateKeyError", "YAMLLimitError", "dump",
           "load"]

#: the largest YAML text :func:`load` parses (bytes, or characters of a str)
MAX_TEXT = 64 * 1024 * 1024
#: how many nodes aliases may add to a document, counted as its readers walk it (expanded)
MAX_ALIAS_NODES = 100_000
#: longest key written as a plain ``key: value`` (PyYAML's emitter uses 128 too; YAML's limit
#: for simple keys is 1,024 characters)
_SIMPLE_KEY = 128


class YAMLLimitError(yaml.YAMLError):
    """A YAML text is over a bound of :func:`load` (size, alias expansion)."""


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names one key twice (only with ``load(..., unique_keys=True)``)."""


class _NoAliasDumper(_Dumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(data: Any, sort_keys: bool = False) -> str:
    """YAML text for plain data.

    Mappings of scalars, lists and mappings (what a component description holds) are written
    by a small emitter here, ~20x faster than PyYAML's representer, which is Python even with
    libyaml; anything else goes through PyYAML. Either way the safe loader reads it back equal.

    Raises:
        UnsupportedValueError: the text would be over :data:`MAX_TEXT` bytes, more than
            :func:`load` reads (never write what cannot be read back).
    """
    text: str | None = None
    if not sort_keys and type(data) is dict:
        out: list[str] = []
        if _emit_mapping(data, "", out):
            text = "".join(out)
    if text is None:
        text = yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=sort_keys, allow_unicode=True)
    if len(text) > MAX_TEXT // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT:
        from .errors import UnsupportedValueError

        raise UnsupportedValueError(
            f"this description is over {MAX_TEXT} bytes as YAML: no store could read it back "
            "(keep large values as attributes, not parameters); nothing was written",
            "description")
    return text


# characters PyYAML's reader refuses, or that json.dumps(ensure_ascii=False) leaves raw
_UNSAFE_TEXT = re.compile("[\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_YAML_BREAKS = {0x2028: "\\u2028", 0x2029: "\\u2029"}
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
        # a valid YAML double-quoted scalar; U+2028 and U+2029 are line breaks to YAML 1.1
        # (a raw one ends a key's line): escaped, as JSON leaves them raw
        return json.dumps(value, ensure_ascii=False).translate(_YAML_BREAKS)
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
        if len(name) > _SIMPLE_KEY:  # an explicit key: no length limit
            out.append(f"{indent}? {name}\n")
            name = ""
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


def load(text: str | bytes, unique_keys: bool = False) -> Any:
    """Parse YAML with the safe loader, within bounds.

    With ``unique_keys``, a mapping that names one key twice (``a: 1`` then ``a: 2``, which
    YAML readers resolve by silently keeping the last) raises :class:`DuplicateKeyError`.

    Raises:
        yaml.YAMLError: malformed text; :class:`YAMLLimitError` (a subclass) when the text is
            over :data:`MAX_TEXT`, or its aliases expand past :data:`MAX_ALIAS_NODES` nodes or
            contain themselves.
    """
    if len(text) > MAX_TEXT:
        raise YAMLLimitError(f"YAML text of {len(text)} bytes, over the limit of {MAX_TEXT}")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if unique_keys or ("*" in text if isinstance(text, str) else b"*" in text):
            _check_aliases(node, unique_keys)  # without a '*' there is no alias to expand
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_aliases(root: yaml.Node, unique_keys: bool = False) -> None:
    """Refuse a node graph whose expanded size exceeds its own by MAX_ALIAS_NODES, or with a
    loop. Linear in the number of distinct nodes: each node's expanded size is computed once.
    """
    sizes: dict[int, int] = {}
    distinct = 0
    # iterative post-order walk (no recursion limit), with an "in progress" mark for loops
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        ident = id(node)
        if done:
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            sizes[ident] = total
            if total - distinct > MAX_ALIAS_NODES:
                raise YAMLLimitError(
                    f"YAML aliases expand the document by more than {MAX_ALIAS_NODES} nodes "
                    "(an alias bomb?)")
            continue
        if ident in sizes:
            if sizes[ident] < 0:
                raise YAMLLimitError("a YAML alias refers to a node that contains it")
            continue
        sizes[ident] = -1
        distinct += 1
        if unique_keys and isinstance(node, yaml.MappingNode):
            _check_unique(node)
        stack.append((node, True))
        for child in _children(node):
            if sizes.get(id(child), 0) < 0:
                raise YAMLLimitError("a YAML alias refers to a node that contains it")
            if id(child) not in sizes:
                stack.append((child, False))


def _check_unique(node: yaml.MappingNode) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            raise DuplicateKeyError(None, None, f"the name {key.value!r} is given twice in "
                                    "one mapping", key.start_mark)
        seen.add(ident)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
