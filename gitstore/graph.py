"""Lineage as a picture: the input graph of a stored result.

:func:`lineage` walks a result's inputs (the ``input`` keys of each entry's ``component.yaml``;
``@store.cache`` records upstream calls there) and returns a :class:`LineageGraph`: each node
with its type, short key, the parameters that tell it apart from its siblings (nodes of the same
type in the graph; all of them, up to :data:`MAX_PARAMETERS`, for a node alone of its type) and
its stored attributes. :meth:`LineageGraph.to_dot` gives Graphviz's DOT text (always; every
value escaped, since parameter values come from the store and may be hostile), and
:meth:`LineageGraph.render` draws it with Graphviz's ``dot`` binary when it is installed.

The walk is breadth first, without recursion, and visits each key once: a shared input (a
diamond) is one node with several edges, a loop in a hostile store ends, and at most
``max_nodes`` nodes are read. An input the store does not hold is drawn as missing (dashed),
never an error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import EntryNotFoundError, GitStoreError, GraphvizNotFoundError, RenderError

if TYPE_CHECKING:
    from .backends.git import GitDataStore

__all__ = ["LineageGraph", "Node", "lineage", "MAX_NODES", "MAX_PARAMETERS"]

#: nodes read at most (a hostile store cannot make a graph without end)
MAX_NODES = 500
#: parameters shown on one node
MAX_PARAMETERS = 8
#: characters of one value shown
MAX_VALUE = 40
_KEY = re.compile(r"k1-sha256:[0-9a-f]{64}\Z")
_FORMATS = ("dot", "svg", "png")


@dataclass(frozen=True)
class Node:
    """One result in a lineage graph."""

    key: str
    #: the component type; None when the entry is not in the store (``missing``)
    type: str | None
    version: str | None = None
    #: ``{dotted name: value as text}``: what this node's parameters are (all of them)
    parameters: dict[str, str] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()
    #: why this node could not be read (not in the store, a malformed reference...), else None
    problem: str | None = None
    #: the names of the parameters drawn (those that differ from its siblings')
    shown: tuple[str, ...] = ()

    @property
    def missing(self) -> bool:
        return self.type is None

    @property
    def short_key(self) -> str:
        return self.key.rpartition(":")[2][:12]


@dataclass(frozen=True)
class LineageGraph:
    """The input graph of one result: ``nodes`` by key (the root first) and ``edges`` as
    ``(input key, consumer key)`` pairs, each once."""

    root: str
    nodes: dict[str, Node]
    edges: tuple[tuple[str, str], ...]
    #: True when the walk stopped at ``max_nodes`` (the rest is not drawn)
    truncated: bool = False

    def inputs_of(self, key: str) -> list[str]:
        return [a for a, b in self.edges if b == key]

    def to_dot(self) -> str:
        """The graph as Graphviz DOT text: inputs above the results they feed, missing inputs
        dashed. Node names are ``n0``, ``n1``...; every label is an escaped quoted string."""
        ids = {key: f"n{i}" for i, key in enumerate(self.nodes)}
        lines = ["digraph lineage {", '  graph [rankdir=TB, fontname="Helvetica"];',
                 '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", '
                 'fontname="Helvetica", fontsize=11];', '  edge [color="#556070"];']
        for key, node in self.nodes.items():
            attrs = {"label": _label(node)}
            if node.missing:
                attrs.update(style="dashed", fillcolor="white", color="#a03030")
            elif key == self.root:
                attrs.update(fillcolor="#dce8ff", penwidth="2")
            attrs["tooltip"] = key
            text = ", ".join(f'{k}="{_quote(v)}"' for k, v in attrs.items())
            lines.append(f"  {ids[key]} [{text}];")
        for a, b in self.edges:
            lines.append(f"  {ids[a]} -> {ids[b]};")
        if self.truncated:
            lines.append(f'  more [shape=plaintext, label="(more than {len(self.nodes)} nodes: '
                         'the rest is not drawn)"];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render(self, format: str = "svg", timeout: float = 60.0) -> bytes:
        """The picture, drawn by Graphviz's ``dot``: ``"svg"`` or ``"png"`` bytes, or
        ``"dot"`` (the DOT text, UTF-8; needs no Graphviz).

        Raises:
            InvalidArgumentError: another format.
            GraphvizNotFoundError: ``dot`` is not installed (svg, png).
            RenderError: ``dot`` failed or took longer than ``timeout`` seconds.
        """
        from .errors import InvalidArgumentError

        if format not in _FORMATS:
            raise InvalidArgumentError(f"format {format!r}: choose one of {', '.join(_FORMATS)}")
        text = self.to_dot().encode("utf-8")
        if format == "dot":
            return text
        dot = shutil.which("dot")
        if dot is None:
            raise GraphvizNotFoundError(
                f"drawing {format} needs Graphviz's 'dot' (apt-get install graphviz, or "
                "https://graphviz.org/download/); '--format dot' gives the text without it")
        try:
            done = subprocess.run([dot, f"-T{format}"], input=text, capture_output=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RenderError(f"Graphviz took longer than {timeout:g} s") from None
        except OSError as exc:
            raise RenderError(f"cannot run Graphviz: {exc.strerror or exc}") from None
        if done.returncode != 0 or not done.stdout:
            why = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RenderError("Graphviz failed: " + (why[0] if why else
                                                     f"exit {done.returncode}"))
        return done.stdout

    def _repr_svg_(self) -> str | None:
        """The picture in Jupyter (None without Graphviz: Jupyter then shows the text)."""
        try:
            return self.render("svg").decode("utf-8")
        except GitStoreError:
            return None

    def __repr__(self) -> str:
        return (f"<LineageGraph of {self.nodes[self.root].short_key}: {len(self.nodes)} nodes, "
                f"{len(self.edges)} edges>")


# --- building ------------------------------------------------------------------------------------


def lineage(store: GitDataStore, component_or_key: Any, max_nodes: int = MAX_NODES
            ) -> LineageGraph:
    """The input graph of a result: a key (any unique prefix), an :class:`Entry`, or a
    component (its key is derived; a component not stored is drawn from itself).

    Raises:
        EntryNotFoundError, AmbiguousKeyError: a key (prefix) that names no entry, or several.
        ComponentError: a component that cannot be keyed.
    """
    from .backends.base import Entry

    if isinstance(component_or_key, str):
        root_entry = store.find(component_or_key)
        root, description = root_entry.key, _description(root_entry)
    elif isinstance(component_or_key, Entry):
        root, description = component_or_key.key, _description(component_or_key)
    else:
        root, description = _live_description(store, component_or_key)
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    seen_edges: set[tuple[str, str]] = set()
    todo: list[tuple[str, dict[str, Any]]] = [(root, description)]
    queued = {root}
    truncated = False
    i = 0
    while i < len(todo):
        key, desc = todo[i]
        i += 1
        nodes[key] = _node(key, desc)
        for ref in _input_refs(desc.get("input")):
            if ref not in queued:
                if len(queued) >= max_nodes:
                    truncated = True
                    continue
                queued.add(ref)
                todo.append((ref, _lookup(store, ref)))
            if (ref, key) not in seen_edges:
                seen_edges.add((ref, key))
                edges.append((ref, key))
    kept = set(nodes)
    edges = [(a, b) for a, b in edges if a in kept and b in kept]
    return LineageGraph(root, _with_shown(nodes), tuple(edges), truncated)


def _description(entry: Any) -> dict[str, Any]:
    description: dict[str, Any] = dict(entry.component)
    description["__attributes__"] = tuple(entry.attributes)
    if entry.problem is not None:
        description["__problem__"] = entry.problem
    return description


def _live_description(store: GitDataStore, component: Any) -> tuple[str, dict[str, Any]]:
    """The key and description of a component, read from the store when it holds it."""
    from .component import full_type, get_inputs, get_parameters, get_version
    from .keys import key_of
    from .params import _yaml_safe

    key = key_of(component)
    try:
        return key, _description(store.find(key))
    except EntryNotFoundError:
        pass
    inputs = [key_of(c) for c in get_inputs(component)[1]]
    return key, {"type": full_type(component), "version": _yaml_safe(get_version(component)),
                 "parameters": _yaml_safe(dict(get_parameters(component) or {})),
                 "input": inputs, "__attributes__": (),
                 "__problem__": "not stored (drawn from the component)"}


def _lookup(store: GitDataStore, ref: str) -> dict[str, Any]:
    if not _KEY.match(ref):
        return {"__missing__": "not a key (a malformed input reference)"}
    try:
        return _description(store.find(ref))
    except GitStoreError as exc:
        why = "not in this store" if isinstance(exc, EntryNotFoundError) else str(exc)
        return {"__missing__": why}


def _input_refs(value: Any) -> Iterator[str]:
    """The input references of a description: a key, a list of keys, or nothing; anything
    else a hostile store put there is shown as text (a node drawn as missing)."""
    items = value if isinstance(value, list) else ([] if value is None else [value])
    for item in items:
        yield item if isinstance(item, str) else _clip(repr(item), 80)


def _node(key: str, desc: dict[str, Any]) -> Node:
    if "__missing__" in desc:
        return Node(key, None, problem=str(desc["__missing__"]))
    params = desc.get("parameters")
    flat = dict(_flatten(params)) if isinstance(params, Mapping) else {}
    attributes = desc.get("__attributes__", ())
    from .component import version_text

    try:
        version: str | None = version_text(desc.get("version", ""))
    except (GitStoreError, RecursionError, TypeError, ValueError):  # a hostile version value
        version = _clip(repr(desc.get("version")), MAX_VALUE)
    return Node(key, str(desc.get("type") or "(no type)"), version, flat,
                tuple(str(a) for a in attributes), desc.get("__problem__"))


def _flatten(tree: Mapping[Any, Any]) -> Iterator[tuple[str, str]]:
    """``(dotted name, value as text)`` of every leaf, without recursion; references to
    inputs (``<input k1-sha256:...>``, drawn as edges) are left out."""
    todo: list[tuple[str, Any]] = [("", tree)]
    while todo:
        prefix, value = todo.pop()
        if isinstance(value, Mapping) and (value or not prefix):
            for k, v in reversed(list(value.items())):
                todo.append((f"{prefix}.{k}" if prefix else str(k), v))
        elif isinstance(value, str) and value.startswith("<input k1-sha256:"):
            continue
        else:
            yield prefix, _value_text(value)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return str(value)
    return _clip(repr(value), 4 * MAX_VALUE)


def _with_shown(nodes: dict[str, Node]) -> dict[str, Node]:
    """Each node with the names of its parameters to draw: those that differ among the nodes
    of its type in this graph, or all of them for a node alone of its type."""
    by_type: dict[str | None, list[Node]] = {}
    for node in nodes.values():
        by_type.setdefault(node.type, []).append(node)
    out = {}
    for key, node in nodes.items():
        siblings = by_type[node.type]
        if len(siblings) > 1:
            names = sorted({n for s in siblings for n in s.parameters})
            shown = tuple(n for n in names if node.parameters.get(n) is not None and
                          len({s.parameters.get(n) for s in siblings}) > 1)
        else:
            shown = tuple(node.parameters)
        out[key] = Node(node.key, node.type, node.version, node.parameters, node.attributes,
                        node.problem, shown)
    return out


# --- DOT text ------------------------------------------------------------------------------------


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _label(node: Node) -> str:
    if node.missing:
        return "\n".join([node.short_key or _clip(node.key, MAX_VALUE), f"({node.problem})"])
    lines = [_clip(node.type or "", 60), f"{node.short_key}  v{_clip(node.version or '', 24)}"]
    for name in node.shown[:MAX_PARAMETERS]:
        lines.append(f"{_clip(name, MAX_VALUE)} = {_clip(node.parameters[name], MAX_VALUE)}")
    if len(node.shown) > MAX_PARAMETERS:
        lines.append(f"(+{len(node.shown) - MAX_PARAMETERS} more parameters)")
    if node.attributes:
        names = ", ".join(_clip(a, MAX_VALUE) for a in node.attributes[:MAX_PARAMETERS])
        more = f" +{len(node.attributes) - MAX_PARAMETERS}" \
            if len(node.attributes) > MAX_PARAMETERS else ""
        lines.append(f"[{names}{more}]")
    if node.problem:
        lines.append(f"({_clip(node.problem, 60)})")
    return "\n".join(lines)


def _quote(text: str) -> str:
    r"""Text for a DOT quoted string whose lines are separate label lines: backslashes and
    quotes escaped (so ``\N``, ``\G``, ``\l``... in a value stay literal text), newlines as
    ``\n``, other control characters shown as ``\xNN`` text, never passed through."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or "\ud800" <= ch <= "\udfff":
            out.append(f"\\\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)
