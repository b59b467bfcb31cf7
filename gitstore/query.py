"""Queries over an entry's parameters: ``tau >= 10 and (n == 3 or model.kind in ['a', 'b'])``.

:func:`parse_where` turns the text into a predicate over a *flattened* parameter dict
(``{"model.tau": 10.0, "n": 3}``, as :func:`flatten` gives it). A small hand-written parser:
nothing is evaluated as Python.

Grammar (keywords in any case)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | "exists" NAME | comparison
    comparison := NAME OP literal | NAME ["not"] "in" "[" literal ("," literal)* "]"
    OP         := == | != | < | <= | > | >=
    NAME       := identifier ("." identifier)*        a dotted path into nested parameters
    literal    := integer | float | 'string' | "string" | true | false | null | nan | inf
                  | -inf | "[" literal, ... "]"

Typed comparisons, as keys agree: ``==``, ``!=`` and ``in`` compare type and value, so ``20``
does not match ``20.0`` and ``true`` does not match ``1`` (NaN equals NaN, as its key does);
``<``, ``<=``, ``>``, ``>=`` order numbers by value (``tau >= 10`` matches ``12.5``; booleans
are not numbers) and strings by code point; values of other kinds never compare (false, no
error). Any comparison on a parameter an entry does not have is false, ``!=`` included:
``not n == 3`` also matches entries without ``n``; ``exists n`` asks for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

from .errors import QueryError

__all__ = ["Predicate", "flatten", "parse_where", "same_value"]

Predicate = Callable[[Mapping[str, Any]], bool]

#: the longest query text accepted (a query is typed by a person)
MAX_QUERY = 10_000
_MAX_DEPTH = 100

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<op>==|!=|<=|>=|<|>|=)
  | (?P<punct>[()\[\],])
  | (?P<number>[-+]?(?:\d[\d_]*\.?[\d_]*(?:[eE][-+]?\d+)?|\.\d[\d_]*(?:[eE][-+]?\d+)?))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>-?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
""", re.VERBOSE | re.DOTALL)

_WORDS = {"and", "or", "not", "in", "exists"}
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "none": None,
                              "nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def parse_where(text: str) -> Predicate:
    """A predicate over a flattened parameter dict (see the module's docstring).

    Raises:
        QueryError: the text does not parse; ``.position`` is the offset (0-based) of the
            character where it stops making sense, and the message shows it.
    """
    if not isinstance(text, str):
        raise QueryError(f"a query is text, not a {type(text).__name__}", "", 0)
    if len(text) > MAX_QUERY:
        raise QueryError(f"a query of {len(text)} characters, over the limit of {MAX_QUERY}",
                         text[:80], MAX_QUERY)
    parser = _Parser(text)
    predicate = parser.expr(0)
    if parser.peek()[0] != "end":
        parser.fail("expected 'and', 'or' or the end of the query")
    return predicate


def flatten(parameters: Any) -> dict[str, Any]:
    """``{dotted name: leaf value}`` of nested mappings (as ``ParameterSet.flatten`` names
    them: a name that is not a string appears as ``[name]``; an empty mapping is a leaf)."""
    out: dict[str, Any] = {}
    if not isinstance(parameters, Mapping):
        return out
    # depth first, in order, without recursion (a hostile description may nest deeply)
    stack: list[tuple[str, Iterator[tuple[Any, Any]]]] = [("", iter(parameters.items()))]
    while stack:
        prefix, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        name, value = item
        path = (f"{prefix}.{name}" if prefix else name) if isinstance(name, str) else \
            f"{prefix}[{name!r}]"
        if isinstance(value, Mapping) and value and len(stack) <= _MAX_DEPTH:
            stack.append((path, iter(value.items())))
        else:
            out[path] = value
    return out


def same_value(a: Any, b: Any) -> bool:
    """Whether two parameter values are equal as keys see them: same type and value
    (``1``, ``1.0`` and ``True`` all differ; NaN equals NaN; lists element by element)."""
    ta, tb = type(a), type(b)
    if ta in _SCALARS or tb in _SCALARS:
        if ta is not tb:
            return False
        if ta is float and a != a:
            return bool(b != b)
        return bool(a == b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    from .params import _same

    return _same(a, b)


_SCALARS = frozenset({bool, int, float, str, type(None), bytes})


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _order(op: str) -> Callable[[Any, Any], bool]:
    def compare(value: Any, literal: Any) -> bool:
        if _is_number(value) and _is_number(literal):
            pass
        elif not (type(value) is str and type(literal) is str):
            return False
        if op == "<":
            return bool(value < literal)
        if op == "<=":
            return bool(value <= literal)
        if op == ">":
            return bool(value > literal)
        return bool(value >= literal)
    return compare


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(self._tokens())
        self.i = 0

    def _tokens(self) -> Iterator[tuple[str, Any, int]]:
        pos, text = 0, self.text
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                self.fail("unexpected character", pos)
            kind = m.lastgroup or ""
            value: Any
            raw = m.group()
            if kind == "name" and raw.lower() in _WORDS:
                kind, value = "word", raw.lower()
            elif kind == "name" and raw.lower() in _CONSTANTS:
                kind, value = "constant", raw  # a value, or a parameter's name before an op
            elif kind == "name" and raw.startswith("-"):
                self.fail("a name cannot start with '-'", pos)
            elif kind == "number":
                value = self._number(raw, pos)
                kind = "literal"
            elif kind == "string":
                value = self._string(raw, pos)
                kind = "literal"
            else:
                value = raw
            if kind != "space":
                yield kind, value, pos
            pos = m.end()
        yield "end", None, len(text)

    def _number(self, raw: str, pos: int) -> int | float:
        clean = raw.replace("_", "")
        try:
            if re.fullmatch(r"[-+]?\d+", clean):
                return int(clean)
            return float(clean)
        except ValueError:
            self.fail(f"{raw!r} is not a number", pos)

    def _string(self, raw: str, pos: int) -> str:
        out, body, j = [], raw[1:-1], 0
        while j < len(body):
            c = body[j]
            if c == "\\":
                nxt = body[j + 1]
                if nxt not in _ESCAPES:
                    self.fail(f"unknown escape '\\{nxt}' in a string", pos + 1 + j)
                out.append(_ESCAPES[nxt])
                j += 2
            else:
                out.append(c)
                j += 1
        return "".join(out)

    def fail(self, why: str, pos: int | None = None) -> NoReturn:
        if pos is None:
            pos = self.peek()[2]
        raise QueryError(why, self.text, pos)

    def peek(self) -> tuple[str, Any, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, Any, int]:
        token = self.tokens[self.i]
        if token[0] != "end":
            self.i += 1
        return token

    def expect(self, kind: str, value: Any, what: str) -> None:
        token = self.peek()
        if token[0] != kind or token[1] != value:
            self.fail(f"expected {what}")
        self.take()

    def expr(self, depth: int) -> Predicate:
        if depth > _MAX_DEPTH:
            self.fail(f"nested deeper than {_MAX_DEPTH} levels")
        parts = [self.and_expr(depth)]
        while self.peek()[:2] == ("word", "or"):
            self.take()
            parts.append(self.and_expr(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda flat: any(p(flat) for p in parts)

    def and_expr(self, depth: int) -> Predicate:
        parts = [self.not_expr(depth)]
        while self.peek()[:2] == ("word", "and"):
            self.take()
            parts.append(self.not_expr(depth))
        if len(parts) == 1:
            return parts[0]
        return lambda flat: all(p(flat) for p in parts)

    def not_expr(self, depth: int) -> Predicate:
        if depth > _MAX_DEPTH:
            self.fail(f"nested deeper than {_MAX_DEPTH} levels")
        kind, value, _pos = self.peek()
        if (kind, value) == ("word", "not"):
            self.take()
            inner = self.not_expr(depth + 1)
            return lambda flat: not inner(flat)
        if (kind, value) == ("punct", "("):
            self.take()
            inner = self.expr(depth + 1)
            self.expect("punct", ")", "')'")
            return inner
        if (kind, value) == ("word", "exists"):
            self.take()
            name = self.name()
            return lambda flat: name in flat
        return self.comparison()

    def name(self) -> str:
        kind, value, _pos = self.peek()
        if kind not in ("name", "constant"):
            self.fail("expected a parameter name (dotted for nested ones: model.tau)")
        self.take()
        return str(value)

    def comparison(self) -> Predicate:
        name = self.name()
        kind, value, pos = self.peek()
        negate = False
        if (kind, value) == ("word", "not"):
            self.take()
            kind, value, pos = self.peek()
            if (kind, value) != ("word", "in"):
                self.fail("expected 'in' after 'not'")
            negate = True
        if (kind, value) == ("word", "in"):
            self.take()
            choices = self.literal(0)
            if not isinstance(choices, list):
                self.fail("'in' takes a list: n in [1, 2, 3]", pos)

            def member(flat: Mapping[str, Any]) -> bool:
                if name not in flat:
                    return False
                found = any(same_value(flat[name], c) for c in choices)
                return found != negate
            return member
        if kind != "op":
            self.fail("expected a comparison (==, !=, <, <=, >, >=) or 'in'")
        if value == "=":
            self.fail("'=' is not a comparison: write '=='")
        self.take()
        literal = self.literal(0)
        if value == "==":
            return lambda flat: name in flat and same_value(flat[name], literal)
        if value == "!=":
            return lambda flat: name in flat and not same_value(flat[name], literal)
        compare = _order(value)
        if not (_is_number(literal) or type(literal) is str):
            self.fail(f"'{value}' compares numbers or strings", pos)
        return lambda flat: name in flat and compare(flat[name], literal)

    def literal(self, depth: int) -> Any:
        kind, value, _pos = self.peek()
        if depth > _MAX_DEPTH:
            self.fail(f"lists nested deeper than {_MAX_DEPTH} levels")
        if kind == "constant":
            self.take()
            return _CONSTANTS[value.lower()]
        if kind == "literal":
            self.take()
            return value
        if (kind, value) == ("punct", "["):
            self.take()
            items: list[Any] = []
            if self.peek()[:2] == ("punct", "]"):
                self.take()
                return items
            while True:
                items.append(self.literal(depth + 1))
                if self.peek()[:2] == ("punct", ","):
                    self.take()
                    continue
                self.expect("punct", "]", "',' or ']'")
                return items
        if kind == "name":
            self.fail(f"expected a value; a string is quoted: '{value}'")
        return self.fail("expected a value (a number, a quoted string, true, false, null, "
                         "or a [list])")
