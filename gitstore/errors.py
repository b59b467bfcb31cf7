"""Exceptions raised by gitstore.

Every error gitstore raises on purpose derives from :class:`GitStoreError`; where a builtin
exception fits, the class derives from it too, so ``except KeyError`` keeps working::

    GitStoreError
    ├── ComponentError (TypeError)
    │   ├── InvalidComponentError        a component lacks an attribute (.attribute)
    │   ├── CyclicInputError             inputs form a loop (.cycle)
    │   └── UnhashableParameterError     a value cannot be keyed (.path, .value_type)
    │       └── SweepParameterError      a ParameterRange/ParameterDist used as one value
    ├── ParameterError (ValueError)      a malformed parameter set
    │   ├── ParameterTypeError (TypeError)  a ParameterSet built from what is no mapping
    │   └── ParameterFileError           malformed YAML or literal text, a failed URL (.source, .line)
    │       ├── ParameterSyntaxError (SyntaxError)  literal text that does not parse
    │       └── ParameterNameError (NameError)      literal text naming an unknown name
    ├── InvalidAttributeNameError (ValueError)
    ├── InvalidArgumentError (ValueError)  an argument out of range (prune's bounds)
    ├── MissingDependencyError (ImportError)  an optional extra is not installed (.extra)
    ├── RenderError                  a picture could not be drawn (Graphviz failed)
    │   └── GraphvizNotFoundError (FileNotFoundError)  no `dot` binary for svg/png
    │   └── QueryError                   a --where query that does not parse (.text, .position)
    ├── DataError
    │   ├── UnsupportedDataError (TypeError)   no safe codec, pickle not allowed
    │   │   └── LossyDataError           its codec would not give it back exactly (.detail)
    │   ├── UntrustedDataError           a pickle, without allow_pickle=True
    │   ├── UnknownCodecError            no codec here reads the format (.codec): not corrupt
    │   └── CorruptEntryError            stored bytes do not match their id (.key, .expected, .got)
    └── StoreError
        ├── StoreLocationError (OSError) the store's path cannot be used (.path)
        ├── UnsupportedValueError (ValueError) a name the backend cannot hold (.field)
        ├── DiskFullError (OSError)      no space left; nothing was half-written
        ├── EntryNotFoundError (KeyError)
        ├── AmbiguousKeyError (KeyError) a key prefix matches several keys (.candidates)
        ├── ConcurrencyError             a lock could not be taken in time
        ├── MergeConflictError           same key and attribute, different bytes (.conflicts)
        ├── RemoteError                  a remote could not be reached or refused (.remote)
        │   ├── NoLfsServerError         the remote has no Git LFS server (.endpoint)
        │   ├── NotFetchedError          a blob a partial fetch left on the remote could not be
        │   │                            fetched now (.object_ids, .remote): absent, not corrupt
        │   ├── PushRefusedError         the server refused for a reason other than "you are
        │   │                            behind" (a hook, a size limit, a permission): never
        │   │                            retried (.refused, .server_message)
        │   └── CredentialError          no credentials, credentials refused, or a password
        │                                that would be stored in plain text
        └── LfsObjectMissingError        a Git LFS attribute's content is not here, and no
                                         remote gave it (.oid)

Warnings (``warnings.warn``; not errors)::

    GitStoreWarning (UserWarning)
    ├── PartialFetchWarning              a filter was asked for and the server sent everything
    ├── PlaintextCredentialWarning       a remote URL in the store's config holds a password
    └── NetworkFilesystemWarning         the store is on NFS/Lustre/...: concurrent writers
                                         from several machines are not supported there
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AmbiguousKeyError",
    "ComponentError",
    "ConcurrencyError",
    "CorruptEntryError",
    "CredentialError",
    "CyclicInputError",
    "DataError",
    "DiskFullError",
    "EntryNotFoundError",
    "GitStoreError",
    "GitStoreWarning",
    "GraphvizNotFoundError",
    "InvalidArgumentError",
    "InvalidAttributeNameError",
    "InvalidComponentError",
    "LfsObjectMissingError",
    "LossyDataError",
    "MergeConflictError",
    "MissingDependencyError",
    "NetworkFilesystemWarning",
    "NoLfsServerError",
    "NotFetchedError",
    "ParameterError",
    "ParameterFileError",
    "ParameterNameError",
    "ParameterSyntaxError",
    "ParameterTypeError",
    "PartialFetchWarning",
    "PlaintextCredentialWarning",
    "PushRefusedError",
    "QueryError",
    "RemoteError",
    "RenderError",
    "StoreError",
    "StoreLocationError",
    "SweepParameterError",
    "UnhashableParameterError",
    "UnknownCodecError",
    "UnsupportedDataError",
    "UnsupportedValueError",
    "UntrustedDataError",
]


class GitStoreError(Exception):
    """Base class of every error gitstore raises on purpose."""


class ComponentError(GitStoreError, TypeError):
    """A component cannot be turned into a key."""


class InvalidComponentError(ComponentError):
    """A component lacks a required attribute, or has one of the wrong kind."""

    def __init__(self, message: str, attribute: str | None = None) -> None:
        super().__init__(message)
        self.attribute = attribute


class CyclicInputError(ComponentError):
    """The inputs of a component form a loop; ``cycle`` lists the loop's type names."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("cyclic input: " + " -> ".join(self.cycle))


class UnhashableParameterError(ComponentError):
    """A parameter (or version) value has no canonical encoding; ``path`` is its dotted path."""

    def __init__(self, path: str, value_type: str, reason: str = "") -> None:
        self.path = path
        self.value_type = value_type
        msg = f"cannot derive a key from parameter {path or '<root>'!r} of type {value_type}"
        super().__init__(msg + (f": {reason}" if reason else ""))


class SweepParameterError(UnhashableParameterError):
    """A ``parameters.ParameterRange`` (or ``ParameterDist``) was given where one value is
    keyed: it describes a sweep. Iterate its points with :func:`gitstore.params.points`."""


class ParameterError(GitStoreError, ValueError):
    """A parameter set is malformed."""


class ParameterTypeError(ParameterError, TypeError):
    """A ParameterSet was asked to be built from something that is no mapping, text or path
    (a ``TypeError`` too, as in the ``parameters`` package)."""


class ParameterFileError(ParameterError):
    """A parameter file (or YAML string) could not be read, parsed or written; ``line`` is
    1-based (None when unknown)."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


class ParameterSyntaxError(ParameterFileError, SyntaxError):
    """Parameter text in the ``parameters`` package's literal format does not parse (a
    ``SyntaxError`` too, as that package raised)."""


class ParameterNameError(ParameterFileError, NameError):
    """Parameter text in the literal format names something that is not a literal (a
    ``NameError`` too, as that package raised)."""


class InvalidAttributeNameError(GitStoreError, ValueError):
    """An attribute name cannot be used as a file name in a store."""


class InvalidArgumentError(GitStoreError, ValueError):
    """An argument is of the wrong kind or out of range (a negative bound, NaN)."""


class MissingDependencyError(GitStoreError, ImportError):
    """An optional dependency is not installed; ``.extra`` names the extra that installs it."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class RenderError(GitStoreError):
    """A picture (a lineage graph) could not be drawn."""


class GraphvizNotFoundError(RenderError, FileNotFoundError):
    """Graphviz's ``dot`` binary is not installed: only DOT text can be produced."""
class QueryError(InvalidArgumentError):
    """A parameter query (``ls --where``) that does not parse: ``.text`` is the query,
    ``.position`` the 0-based offset where it stops making sense."""

    def __init__(self, why: str, text: str, position: int) -> None:
        shown = text if len(text) <= 120 else text[:120] + "..."
        super().__init__(f"bad query at position {position}: {why} (in {shown!r})")
        self.why, self.text, self.position = why, text, position


class DataError(GitStoreError):
    """Data cannot be encoded, decoded or trusted."""


class UnsupportedDataError(DataError, TypeError):
    """No safe codec handles this object, and pickle was not allowed."""


class LossyDataError(UnsupportedDataError):
    """The codec for this type would not give the value back exactly (a dtype, an attribute's
    type, a name it cannot keep): refused rather than silently changed. ``detail`` says what."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class UntrustedDataError(DataError):
    """A stored pickle was asked for without ``allow_pickle=True``."""


class UnknownCodecError(DataError):
    """Stored data is in a format no codec registered in this process reads (a user codec whose
    plugin is not installed here): the data is not known to be damaged. ``codec`` names the
    format (a codec name or a ``.ext``)."""

    def __init__(self, message: str, codec: str | None = None) -> None:
        super().__init__(message)
        self.codec = codec


class CorruptEntryError(DataError):
    """Stored bytes do not match their object id, or cannot be decoded."""

    def __init__(
        self,
        message: str,
        key: str | None = None,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.got = got


class StoreError(GitStoreError):
    """A store cannot do what was asked."""


class StoreLocationError(StoreError, OSError):
    """The store's location is unusable (a file, read-only, missing)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class UnsupportedValueError(StoreError, ValueError):
    """A type name, version or other text is more than this backend can hold (too long for its
    column, NUL, a lone surrogate); ``field`` says which. Nothing was written."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DiskFullError(StoreError, OSError):
    """The disk (or quota) is full; what was being written was dropped, the store is intact."""

    def __str__(self) -> str:
        return str(self.args[0])


class EntryNotFoundError(StoreError, KeyError):
    """No entry (or attribute) for this key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "entry not found"


class AmbiguousKeyError(StoreError, KeyError):
    """A key prefix matches several keys; ``candidates`` lists them."""

    def __init__(self, prefix: str, candidates: Sequence[str]) -> None:
        self.prefix = prefix
        self.candidates = list(candidates)
        super().__init__(f"key prefix {prefix!r} is ambiguous: " + ", ".join(self.candidates))

    def __str__(self) -> str:
        return str(self.args[0])


class ConcurrencyError(StoreError):
    """A lock could not be taken, or a compare-and-swap kept failing."""


class MergeConflictError(StoreError):
    """Two histories store different bytes for the same key and attribute."""

    def __init__(self, conflicts: Sequence[str]) -> None:
        self.conflicts = list(conflicts)
        super().__init__("merge conflict on: " + ", ".join(self.conflicts))


class RemoteError(StoreError):
    """A remote could not be reached, or refused the operation."""

    def __init__(self, message: str, remote: str | None = None) -> None:
        super().__init__(message)
        self.remote = remote


class PushRefusedError(RemoteError):
    """The server refused a push for a reason other than "the remote moved on" (a
    ``pre-receive`` or ``update`` hook, a size limit, a permission): retrying would only send
    the same objects again, so it is reported at once. ``refused`` maps each refused ref to the
    server's status; ``server_message`` is what the server printed (a hook's output)."""

    def __init__(self, message: str, remote: str | None = None,
                 refused: dict[str, str] | None = None, server_message: str = "") -> None:
        super().__init__(message, remote)
        self.refused = dict(refused or {})
        self.server_message = server_message


class CredentialError(RemoteError):
    """Credentials for a remote are missing or were refused, or a password would be written
    in plain text into the store's config (the message says what to do instead)."""


class GitStoreWarning(UserWarning):
    """Base class of the warnings gitstore gives."""


class PlaintextCredentialWarning(GitStoreWarning):
    """A remote URL in the store's git config holds a password in plain text."""


class NetworkFilesystemWarning(GitStoreWarning):
    """The store is on a network file system (NFS, Lustre, ...), where the locks that keep
    concurrent writers on several machines safe are not reliable. Use a store per node on
    local disk, pushing to a central remote; pass ``network_ok=True`` to silence this."""


class NoLfsServerError(RemoteError):
    """The remote has no Git LFS server where git-lfs's rules look for it (``.endpoint``)."""

    def __init__(self, message: str, remote: str | None = None,
                 endpoint: str | None = None) -> None:
        super().__init__(message, remote)
        self.endpoint = endpoint


class LfsObjectMissingError(StoreError):
    """The content of a Git LFS attribute is not in the store, and no remote gave it
    (absent, not corrupt: ``.oid`` is its SHA-256)."""

    def __init__(self, message: str, oid: str | None = None) -> None:
        super().__init__(message)
        self.oid = oid


class NotFetchedError(RemoteError):
    """Blobs a partial fetch left on the remote (promised) are needed and could not be
    fetched: the promisor remote is unreachable, gone, refused, or sent something else; or
    fetching was not allowed (``verify`` without ``fetch=True``). The store is unchanged and
    stays usable; the blobs are absent, not corrupt."""

    def __init__(self, message: str, object_ids: Sequence[str] = (),
                 remote: str | None = None) -> None:
        super().__init__(message, remote)
        self.object_ids = list(object_ids)


class PartialFetchWarning(GitStoreWarning):
    """A partial fetch was asked for, and the server does not allow filters: everything was
    fetched."""
