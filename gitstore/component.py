"""The component model: what a component must have, and where its version comes from.

A component is any object with ``parameters`` (a mapping or None), ``input`` (another component,
a list of them, or None; ``inputs`` is accepted too) and optionally ``version`` and ``full_type``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .codeid import code_identity
from .errors import InvalidComponentError, StoreLocationError

__all__ = ["full_type", "get_inputs", "get_parameters", "get_version", "main_module_name",
           "set_version_policy", "source_version", "version_policy", "version_text"]


def full_type(component: Any) -> str:
    """``component.full_type`` (attribute or method) if it has one, else ``module.QualName``.

    A class defined in a script run as ``python pipeline.py`` has the module ``__main__``;
    it is named by the module the script is imported as (``pipeline.Stimulus``, or
    ``pkg.pipeline.Stimulus`` when its folder is a package), so the script and the code that
    imports it give one key (see :func:`main_module_name`). ``full_type`` overrides all this.
    """
    given = getattr(component, "full_type", None)
    if callable(given):
        given = given()
    if given is not None:
        if not isinstance(given, str):
            raise InvalidComponentError(
                f"{type(component).__qualname__}.full_type must be a string", "full_type"
            )
        return given
    cls = type(component)
    module = cls.__module__
    if module == "__main__":
        module = main_module_name()
    return f"{module}.{cls.__qualname__}"


def main_module_name() -> str:
    """The importable name of the ``__main__`` module, as joblib resolves ``__main__``.

    ``python -m pkg.tool``: ``pkg.tool`` (from ``__main__.__spec__``). ``python path/tool.py``:
    ``tool``, prefixed by the enclosing folders that are packages (hold ``__init__.py``):
    ``pkg.tool``. ``"__main__"`` itself when there is no script file (a REPL, a notebook,
    ``python -c``) or its name is not importable (``my-tool.py``).
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None)
    if isinstance(spec_name, str) and spec_name and spec_name != "__main__":
        return spec_name
    file = getattr(main, "__file__", None)
    return _script_module_name(file) if isinstance(file, str) else "__main__"


@functools.lru_cache(maxsize=64)
def _script_module_name(file: str) -> str:
    path = Path(os.path.abspath(file))
    if path.suffix != ".py":
        return "__main__"
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    if not all(part.isidentifier() for part in parts):
        return "__main__"
    return ".".join(parts)


def get_parameters(component: Any) -> Mapping[str, Any] | None:
    """The component's parameters, checked to be a mapping or None.

    Raises:
        InvalidComponentError: no ``parameters`` attribute, or not a mapping.
    """
    if not hasattr(component, "parameters"):
        raise InvalidComponentError(
            f"{type(component).__qualname__} has no attribute 'parameters'", "parameters"
        )
    params = component.parameters
    if params is not None and not isinstance(params, Mapping):
        raise InvalidComponentError(
            f"{type(component).__qualname__}.parameters must be a mapping (a ParameterSet), "
            f"not {type(params).__name__}",
            "parameters",
        )
    return params


def get_inputs(component: Any) -> tuple[bool, list[Any]]:
    """Return ``(is_list, inputs)``: a single input or None gives ``(False, [x] or [])``.

    Raises:
        InvalidComponentError: neither ``input`` nor ``inputs`` exists.
    """
    if hasattr(component, "inputs"):
        value = component.inputs
    elif hasattr(component, "input"):
        value = component.input
    else:
        raise InvalidComponentError(
            f"{type(component).__qualname__} has no attribute 'input' (or 'inputs')", "input"
        )
    if value is None:
        return False, []
    if isinstance(value, (list, tuple)):
        return True, list(value)
    return False, [value]


VERSION_POLICIES = ("code", "commit")
_DEFAULT_POLICY: list[str] = []


def set_version_policy(policy: str | None) -> None:
    """The process-wide version policy of components without ``version`` (``"code"``, the
    default, or ``"commit"``); None restores the default (``GITSTORE_VERSION_POLICY`` or
    ``"code"``).

    Raises:
        InvalidComponentError: an unknown policy.
    """
    if policy is not None and policy not in VERSION_POLICIES:
        raise InvalidComponentError(f"version policy must be one of {VERSION_POLICIES}, "
                                    f"not {policy!r}", "version_policy")
    _DEFAULT_POLICY[:] = [policy] if policy is not None else []


def version_policy(component: Any) -> str:
    """How a component without ``version`` is versioned: its ``version_policy`` attribute,
    else :func:`set_version_policy`'s, else ``GITSTORE_VERSION_POLICY``, else ``"code"``.

    Raises:
        InvalidComponentError: an unknown policy.
    """
    policy = getattr(component, "version_policy", None)
    if policy is None:
        policy = _DEFAULT_POLICY[0] if _DEFAULT_POLICY else \
            os.environ.get("GITSTORE_VERSION_POLICY") or "code"
    if policy not in VERSION_POLICIES:
        raise InvalidComponentError(
            f"{type(component).__qualname__}.version_policy must be one of "
            f"{VERSION_POLICIES}, not {policy!r}", "version_policy")
    return str(policy)


def get_version(component: Any) -> Any:
    """``component.version``; without one, the version of the code its class depends on:
    :func:`gitstore.codeid.code_identity` (``code-<16 hex>``, the default policy), or
    :func:`source_version` (the HEAD commit) under the ``"commit"`` policy
    (:func:`version_policy`)."""
    version = getattr(component, "version", None)
    if version is None:
        if version_policy(component) == "commit":
            return source_version(type(component))
        return code_identity(type(component)).version
    return version


def version_text(version: Any) -> str:
    """The one text that names a version (its ref in a git store, its column in SQL).

    Strings are themselves and numbers their ``str()``, as they always were; containers are
    written as their ``component.yaml`` form reads back (tuples and sets as lists, numpy
    values as Python ones) with mapping keys sorted, so ``(1, 0)`` and ``[1, 0]`` both give
    ``"[1, 0]"`` and a dict version does not depend on the order of its keys. The text of a
    version read back from ``component.yaml`` is the text of the version that was stored.
    """
    if type(version) is str:
        return version
    from .params import _yaml_safe

    return str(_sorted_mappings(_yaml_safe(version)))


def _sorted_mappings(value: Any) -> Any:
    if isinstance(value, dict):
        items = [(k, _sorted_mappings(v)) for k, v in value.items()]
        items.sort(key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        return dict(items)
    if isinstance(value, list):
        return [_sorted_mappings(v) for v in value]
    return value


# --- source versions -------------------------------------------------------------------------

_SOURCE_CACHE: dict[tuple[Any, ...], str] = {}
_ROOTS: dict[Path, Path | None] = {}


def source_version(obj: Any) -> str:
    """The version of the code that defines ``obj`` (a class, function, module or instance).

    Inside a git repository: the commit id of HEAD, with ``+dirty.<digest>`` appended when the
    source file differs from HEAD (the digest is the first 12 hex digits of the file's SHA-256,
    so two different uncommitted edits give two different versions). Outside a repository (or
    for an untracked file) the fallback is ``src-sha256.<digest>`` of the source text alone.

    Raises:
        InvalidComponentError: the source file of ``obj`` cannot be found (built-ins, REPL).
    """
    target: Any = obj if inspect.isclass(obj) or inspect.ismodule(obj) or \
        inspect.isroutine(obj) else type(obj)
    path = _source_file(target)
    stat = path.stat()
    root = _find_repo_root(path)
    # every key of a component without a version comes here: answer from a cache that is
    # valid while the file and the repository's HEAD are unchanged (a few stats, no git)
    cache_key = (str(path), stat.st_mtime_ns, stat.st_size,
                 _head_signature(root) if root is not None else None)
    cached = _SOURCE_CACHE.get(cache_key)
    if cached is not None:
        return cached
    content = path.read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:12]
    result = _git_version(path, content, digest) or f"src-sha256.{digest}"
    _SOURCE_CACHE[cache_key] = result
    return result


def open_code_repo(path: str | os.PathLike[str]) -> Any:
    """The dulwich Repo of the git repository holding ``path`` (use it as a context manager).

    Raises:
        StoreLocationError: ``path`` is not in a git repository.
    """
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    try:
        return Repo.discover(str(path))
    except NotGitRepository:
        raise StoreLocationError(f"{path} is not in a git repository", str(path)) from None


@functools.lru_cache(maxsize=4096)
def _source_file(target: Any) -> Path:
    """Where ``target`` is defined (inspect is slow: cached per class or function)."""
    try:
        filename = inspect.getsourcefile(target)
    except (TypeError, OSError):  # built-ins; classes defined in a notebook, a REPL, exec()
        filename = None
    if filename is None or not os.path.exists(filename):
        raise InvalidComponentError(
            f"cannot find the source of {getattr(target, '__qualname__', target)!r} (defined "
            "interactively, in a notebook or by exec?); give the component an explicit "
            "'version' (e.g. version = '1') or define its class in a module file",
            "version",
        )
    return Path(filename).resolve()


def _find_repo_root(path: Path) -> Path | None:
    folder = path.parent
    if folder not in _ROOTS:
        _ROOTS[folder] = next((p for p in path.parents if (p / ".git").exists()), None)
    return _ROOTS[folder]


def _head_signature(root: Path) -> tuple[Any, ...]:
    """Changes whenever HEAD may point elsewhere: HEAD's text, its branch file, packed-refs."""
    gitdir = root / ".git"
    if gitdir.is_file():  # a worktree or submodule: "gitdir: <path>"
        gitdir = (root / gitdir.read_text().split(":", 1)[1].strip()).resolve()
    parts: list[Any] = []
    try:
        head = (gitdir / "HEAD").read_bytes()
    except OSError:
        return ("no HEAD",)
    parts.append(head)
    names = [head[5:].strip().decode()] if head.startswith(b"ref: ") else []
    for name in [*names, "packed-refs"]:
        try:
            st = os.stat(gitdir / name)
            parts.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            parts.append((name, None))
    return tuple(parts)


def _git_version(path: Path, content: bytes, digest: str) -> str | None:
    root = _find_repo_root(path)
    if root is None:
        return None
    from dulwich.object_store import tree_lookup_path
    from dulwich.objects import Blob
    from dulwich.repo import Repo

    try:
        with Repo(str(root)) as repo:
            head = repo.head()
            tree = repo[head].tree  # type: ignore[attr-defined]
            rel = path.relative_to(root).as_posix().encode()
            try:
                _mode, blob_id = tree_lookup_path(repo.__getitem__, tree, rel)
            except KeyError:
                return f"{head.decode()}+dirty.{digest}"
    except Exception:  # no commit yet, or an unreadable repository
        return None
    if Blob.from_string(content).id == blob_id:
        return str(head.decode())
    return f"{head.decode()}+dirty.{digest}"
