"""HTML for notebooks (``Entry._repr_html_``): the standard library only, every value
escaped."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..backends.base import Entry


def entry_html(entry: Entry) -> str:
    """An entry as a small HTML table: key, type, version, parameters, inputs, attributes."""
    from ..graph import _flatten, _input_refs

    rows = [("key", f"<code>{escape(entry.key)}</code>"), ("type", escape(entry.type)),
            ("version", escape(entry.version))]
    params = entry.component.get("parameters")
    if isinstance(params, dict):
        for name, value in list(_flatten(params))[:50]:
            rows.append((f"parameter {name}", escape(value if len(value) <= 200
                                                     else value[:199] + "…")))
    inputs = [ref.rpartition(":")[2][:12] for ref in _input_refs(entry.component.get("input"))]
    if inputs:
        rows.append(("inputs", escape(", ".join(inputs))))
    rows.append(("attributes", escape(", ".join(entry.attributes)) or "none"))
    if entry.problem:
        rows.append(("problem", escape(entry.problem)))
    body = "".join(f"<tr><th style=\"text-align:left\">{escape(k)}</th><td style=\"text-align:"
                   f"left\">{v}</td></tr>" for k, v in rows)
    return f"<table class=\"gitstore-entry\">{body}</table>"
