"""Entries as a table: one row per entry, parameters flattened as dotted columns.

:meth:`GitDataStore.table <gitstore.backends._git_core.GitCore.table>` gives a pandas
``DataFrame`` when pandas is installed, else a :class:`Table` (a list of dicts that renders as
HTML in a notebook, every value escaped: parameter values come from other people's stores).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["FIXED_COLUMNS", "Table", "rows_of"]

#: the columns every row has, before the parameters and the sizes
FIXED_COLUMNS = ("key", "type", "version", "date", "size")


class Table:
    """Rows (dicts) with named columns; ``_repr_html_`` for notebooks, ``to_pandas()``."""

    def __init__(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        self.rows = rows
        self.columns = columns

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    def __repr__(self) -> str:
        return f"Table({len(self.rows)} rows, columns={self.columns!r})"

    def column(self, name: str) -> list[Any]:
        """The values of one column (None where a row has none)."""
        return [row.get(name) for row in self.rows]

    def to_pandas(self) -> Any:
        import pandas

        return pandas.DataFrame(self.rows, columns=self.columns)

    def _repr_html_(self, max_rows: int = 200) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = []
        for row in self.rows[:max_rows]:
            cells = "".join(f"<td>{_cell(row.get(c))}</td>" for c in self.columns)
            body.append(f"<tr>{cells}</tr>")
        more = (f"<p>{len(self.rows) - max_rows} more rows</p>"
                if len(self.rows) > max_rows else "")
        return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                f"</table>{more}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 200:
        text = text[:200] + "…"
    return html.escape(text, quote=True)


def rows_of(listed: Iterable[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and columns from :class:`~gitstore.backends._git_index.ListedEntry` objects:
    key, type, version, date, size (total bytes), then each parameter by dotted name, then
    ``size:<attribute>`` per attribute. A parameter whose name is a fixed or size column is
    named ``parameters.<name>``."""
    from .query import flatten

    rows: list[dict[str, Any]] = []
    params: dict[str, None] = {}
    sizes: dict[str, None] = {}
    flats = []
    for item in listed:
        if item.problem is not None:
            continue
        flat = flatten(item.entry.component.get("parameters") or {})
        flats.append((item, flat))
        params.update(dict.fromkeys(flat))
        sizes.update(dict.fromkeys(f"size:{a}" for a in item.attributes))
    reserved = set(FIXED_COLUMNS) | set(sizes)
    named = {p: (f"parameters.{p}" if p in reserved else p) for p in params}
    for item, flat in flats:
        row: dict[str, Any] = {"key": item.key, "type": item.type, "version": item.version,
                               "date": item.date, "size": item.size}
        for name, value in flat.items():
            row[named[name]] = value
        for attribute, size in item.sizes.items():
            row[f"size:{attribute}"] = size
        rows.append(row)
    return rows, [*FIXED_COLUMNS, *named.values(), *sizes]
