"""YAML through the safe loader and dumper only (libyaml's C versions when available)."""

from __future__ import annotations

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
    """YAML text for plain data."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, allow_unicode=True)


def load(text: str | bytes) -> Any:
    """Parse YAML with the safe loader; raises yaml.YAMLError on malformed text."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
