"""The backend contract: :class:`AbstractDataStore`, the seed's interface.

A backend implements four primitives on *keys* (``_put``, ``_get``, ``_remove``, ``_list``);
the public methods on *components* (key derivation, name checks, codecs) are written once here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from ..codecs import Codec, Payload, decode_payload, encode_payload
from ..codeid import code_identity, head_commit
from ..component import (
    full_type,
    get_inputs,
    get_parameters,
    get_version,
    version_policy,
    version_text,
)
from ..errors import CorruptEntryError, InvalidAttributeNameError, StoreLocationError
from ..keys import KEY_SCHEME, key_of, keys_of
from ..params import _yaml_safe

__all__ = ["AbstractDataStore", "Entry", "check_attribute_name", "describe", "ensure_directory"]

COMPONENT_FILE = "component.yaml"


@dataclass(frozen=True)
class Entry:
    """Everything stored for one key."""

    key: str
    attributes: tuple[str, ...]
    component: dict[str, Any] = field(compare=False)
    #: the name the backend files it under, where that is not ``key`` (ShelveDataStore)
    storage_key: str | None = field(default=None, compare=False)
    #: why the description could not be read (a damaged or hostile component.yaml), else None;
    #: such an entry is listed with what is known of it (key, version, attributes) so that
    #: one bad entry never hides the others
    problem: str | None = field(default=None, compare=False)

    @property
    def type(self) -> str:
        return str(self.component.get("type", ""))

    @property
    def version(self) -> str:
        """The version's text (:func:`gitstore.component.version_text`)."""
        return version_text(self.component.get("version", ""))

    def _repr_html_(self) -> str:
        """The entry as an HTML table in Jupyter (values escaped)."""
        from ..ui._repr import entry_html

        return entry_html(self)


def check_attribute_name(name: Any) -> str:
    """Check that an attribute name can be a file name in any backend.

    Raises:
        InvalidAttributeNameError: not a string; empty; ``.`` or ``..``; holds ``/``, ``\\``,
            a control character (newline, tab, NUL...) or a lone surrogate; over 200 bytes in
            UTF-8 (room is left for the codec's extension); or ``component`` (reserved for the
            entry's description).
    """
    if not isinstance(name, str):
        raise InvalidAttributeNameError(
            f"attribute names are strings, not {type(name).__name__}"
        )
    problem = None
    if not name:
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is a relative path"
    elif "/" in name or "\\" in name:
        problem = "holds '/' or '\\'"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        problem = "holds a control character (newline, tab, NUL...)"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif any("\ud800" <= ch <= "\udfff" for ch in name):
        problem = "holds a lone surrogate (not UTF-8)"
    elif len(name.encode("utf-8")) > 200:
        problem = "is longer than 200 bytes"
    elif name == "component":
        problem = "is reserved for the entry's description"
    if problem:
        raise InvalidAttributeNameError(f"attribute name {name[:40]!r} {problem}")
    return name


def listed_entry(name: str, attributes: tuple[str, ...], text: str | bytes | None,
                 known: dict[str, Any] | None = None, storage_key: str | None = None) -> Entry:
    """The entry whose description is ``text``; a description that cannot be read (damaged,
    hostile, missing) gives an entry with its ``problem`` and what is ``known`` of it, so that
    listing goes on: one bad entry never hides the others."""
    import yaml

    from .. import _yaml

    problem = None
    description: Any = None
    try:
        description = _yaml.load(text) if text is not None else None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        why = f": {exc}" if isinstance(exc, _yaml.YAMLLimitError) else ""
        problem = f"the description of entry {name} is unreadable{why}"
    else:
        if not isinstance(description, dict) or \
                not isinstance(description.get("parameters") or {}, dict):
            problem = f"the description of entry {name} is missing or malformed"
    if problem is not None:
        description = {"key": name, **(known or {})}
    return Entry(str(description.get("key", name)), attributes, description,
                 storage_key=storage_key, problem=problem)


def ensure_directory(path: Path) -> Path:
    """Create ``path`` (and parents) if missing.

    Raises:
        StoreLocationError: it is a file, or cannot be created.
    """
    if path.exists() and not path.is_dir():
        raise StoreLocationError(f"{path} is a file, not a directory", str(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreLocationError(f"cannot create {path}: {exc.strerror}", str(path)) from exc
    return path


def describe(component: Any, key: str, input_keys: list[str], is_list: bool) -> dict[str, Any]:
    """The description kept beside the data (``component.yaml``).

    Raises:
        ParameterError: a parameter name YAML cannot hold (a tuple, bytes...): refused before
            anything is written, so every stored entry lists.
    """
    params = get_parameters(component)
    inputs: Any = input_keys if is_list else (input_keys[0] if input_keys else None)
    description = {
        "key": key,
        "key_scheme": KEY_SCHEME,
        "type": full_type(component),
        "version": _yaml_safe(get_version(component)),
        "parameters": _yaml_safe(dict(getattr(component, "__gitstore_shown__", None) or params))
        if params else {},
        "input": inputs,
    }
    code = code_provenance(component)
    if code is not None:
        description["code"] = code
    return description


def code_provenance(component: Any) -> dict[str, Any] | None:
    """For a component versioned by its code (no ``version``, the ``"code"`` policy): the
    files its version was computed from (``{path: git blob id}``) and the HEAD commit of the
    code repository at that moment (None outside a repository); else None. A component
    rebuilt from a description (:class:`gitstore.copy.DescribedComponent`) gives the record it
    was read with (``__gitstore_code__``)."""
    recorded = getattr(component, "__gitstore_code__", None)
    if isinstance(recorded, dict):
        return recorded
    if getattr(component, "version", None) is not None or version_policy(component) != "code":
        return None
    identity = code_identity(type(component))
    return {"head": head_commit(identity.root), "files": identity.as_mapping()}


class AbstractDataStore(abc.ABC):
    """Persistent storage of components' data, keyed by the components themselves.

    Args:
        allow_pickle: store objects that only pickle can hold, and load them back. Loading a
            pickle runs code: only for stores whose every writer you trust.

    Subclasses implement ``_put``, ``_get``, ``_remove`` and ``_list``; an incomplete subclass
    fails at construction (``TypeError``).
    """

    #: capabilities a backend may lack (the contract suite skips rather than fails on them)
    supports_history = False
    #: how component keys become storage keys; None means the canonical :func:`gitstore.key_of`
    key_generator: Callable[[Any], str] | None = None

    def __init__(self, allow_pickle: bool = False) -> None:
        self.allow_pickle = allow_pickle

    # --- the contract, on components -----------------------------------------------------------

    def store(self, component: Any, attribute_name: str, data: Any) -> None:
        """Store ``data`` as ``attribute_name`` of ``component`` (replacing an earlier value).

        Raises:
            InvalidAttributeNameError, InvalidComponentError, CyclicInputError,
            UnhashableParameterError: bad input; nothing is written.
            UnsupportedDataError: only pickle could store ``data`` (nothing is written).
        """
        check_attribute_name(attribute_name)
        key, description = self._identify(component)
        codec, payload = encode_payload(data, self.allow_pickle)
        self._put(key, description, attribute_name, codec, payload)

    def retrieve(self, component: Any, attribute_name: str, default: Any = None) -> Any:
        """The stored ``attribute_name`` of ``component``, or ``default`` (None) if absent.

        Raises:
            UntrustedDataError: the data is a pickle and the store was opened without
                ``allow_pickle=True``.
            CorruptEntryError: the stored bytes are damaged.
        """
        check_attribute_name(attribute_name)
        key = self.key_of(component)
        found = self._get(key, attribute_name, get_version(component))
        if found is None:
            return default
        codec, payload = found
        try:
            return decode_payload(codec, payload, self.allow_pickle)
        except CorruptEntryError as exc:
            exc.key = exc.key or key
            raise

    def exists(self, component: Any, attribute_name: str | None = None) -> bool:
        """Whether anything (or this attribute) is stored for ``component``."""
        if attribute_name is not None:
            check_attribute_name(attribute_name)
        attributes = self._attributes(self.key_of(component), get_version(component))
        return bool(attributes) if attribute_name is None else attribute_name in attributes

    def delete(self, component: Any, attribute_name: str | None = None) -> bool:
        """Delete one attribute, or the whole entry; return whether anything was there."""
        if attribute_name is not None:
            check_attribute_name(attribute_name)
        return self._remove(self.key_of(component), attribute_name, get_version(component))

    def entries(self) -> Iterator[Entry]:
        """Every entry: key, attribute names and the component description."""
        return self._list()

    def key_of(self, component: Any) -> str:
        """The key this store files ``component`` under (``gitstore.key_of`` by default)."""
        if self.key_generator is not None:
            return self.key_generator(component)
        return key_of(component)

    def cache(self, func: Callable[..., Any] | None = None, *, ignore: Iterable[str] = (),
              version: Any = None, content_paths: Iterable[str] = ()) -> Any:
        """Memoize a function in this store: ``@store.cache`` or ``@store.cache(ignore=[...])``
        (see :mod:`gitstore.memo`)."""
        from ..memo import decorator

        return decorator(self, func, ignore=ignore, version=version, content_paths=content_paths)

    def close(self) -> None:  # noqa: B027 - optional: backends without handles keep it
        """Release files and handles; the store is unusable afterwards."""

    def __enter__(self) -> AbstractDataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- helpers ---------------------------------------------------------------------------------

    def _identify(self, component: Any) -> tuple[str, dict[str, Any]]:
        """The key and description of a component (validates the whole input graph)."""
        is_list, inputs = get_inputs(component)
        keys = keys_of([component, *inputs])
        description = describe(component, keys[0], keys[1:], is_list)
        storage_key = keys[0] if self.key_generator is None else self.key_generator(component)
        return storage_key, description

    def _attributes(self, key: str, version: Any = None) -> tuple[str, ...]:
        for entry in self._list(key, version):
            return entry.attributes
        return ()

    # --- primitives a backend implements ---------------------------------------------------------

    @abc.abstractmethod
    def _put(self, key: str, description: dict[str, Any], attribute: str, codec: Codec,
             payload: Payload) -> None:
        """Store one attribute's encoded bytes (or buffers, see
        :func:`gitstore.codecs.payload_bytes`); write the description if the entry is new."""

    # ``version`` is the component's version where the caller knows it (a backend may file
    # entries by version, as the git backend does); None means "look in every version".

    @abc.abstractmethod
    def _get(self, key: str, attribute: str, version: Any = None) -> tuple[Codec, Any] | None:
        """The codec and bytes of one attribute (or a stream with ``read``, ``readinto``,
        ``finish`` and ``close``), or None."""

    @abc.abstractmethod
    def _remove(self, key: str, attribute: str | None, version: Any = None) -> bool:
        """Remove one attribute (or the entry, when ``attribute`` is None)."""

    @abc.abstractmethod
    def _list(self, key: str | None = None, version: Any = None) -> Iterator[Entry]:
        """Entries (only the one with ``key``, and of ``version``, if given)."""
