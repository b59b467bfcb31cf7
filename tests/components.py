"""Components used across the tests (importable by subprocesses too)."""

from __future__ import annotations

from typing import Any

from gitstore import ParameterSet


class SimpleComponent:
    """The seed's example component."""

    def __init__(self, parameters: Any, input: Any = None, version: Any = "1.0") -> None:
        self.parameters = ParameterSet(parameters) if isinstance(parameters, dict) else parameters
        self.input = input
        self.version = version


class MultiInput:
    def __init__(self, parameters: Any, inputs: list[Any], version: Any = 1) -> None:
        self.parameters = parameters
        self.inputs = inputs
        self.version = version


class Typed:
    """A component whose type name is given explicitly (stable across module moves)."""

    def __init__(self, full_type: str, parameters: Any, input: Any = None,
                 version: Any = "v1") -> None:
        self.full_type = full_type
        self.parameters = parameters
        self.input = input
        self.version = version


class Unversioned:
    """No version attribute: the version comes from the source."""

    def __init__(self, parameters: Any) -> None:
        self.parameters = parameters
        self.input = None
