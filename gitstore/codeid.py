"""Code identity: a version named by the content of the code a component depends on.

A component without an explicit ``version`` is versioned by :func:`code_identity` of its class:
the source file that defines it plus every *project-local* module it imports, transitively,
each named by its path relative to the project root (the git repository holding the source
file; outside a repository, the source file's folder) and its git blob id (the SHA-1 git gives
the file's content: ``sha1(b"blob <len>\\0" + content)``, so uncommitted edits count without a
commit). Declared data files (a class attribute ``depends_on`` or ``__gitstore_depends_on__``,
paths relative to the defining file's folder, or absolute) join the list. The version text is
``code-<16 hex>``: the start of the SHA-256 of the sorted list.

Imports are found statically (:mod:`ast`, every ``import`` and ``from ... import`` anywhere in a
file, including inside functions and ``if TYPE_CHECKING`` blocks) and resolved without running
any module: a top-level name by :func:`importlib.util.find_spec` (which imports nothing for a
top-level name, and sees editable installs), a submodule by path in its package's folders. A module
counts when its file is a ``.py`` file inside the project root and not inside an installed
environment (``site-packages``, ``dist-packages``, ``sys.prefix``). Not seen: imports by
``importlib.import_module``/``__import__`` with computed names, ``exec``, code loaded from data,
extension modules, files read at run time unless declared in ``depends_on``.

Results are cached per process and revalidated by each file's stat (mtime_ns, size, inode):
a warm identity costs one ``stat`` per file of the closure and reads nothing.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidComponentError

__all__ = ["CodeIdentity", "blob_id", "code_identity", "head_commit", "project_root"]

VERSION_PREFIX = "code-"
DEPENDS_ATTRIBUTES = ("__gitstore_depends_on__", "depends_on")

_Stat = tuple[int, int, int]


@dataclass(frozen=True)
class CodeIdentity:
    """The code a component's results depend on.

    ``files`` is the sorted list of ``(project-relative path, git blob id)``; ``version`` the
    ``code-<16 hex>`` digest of it; ``root`` the project root on this machine.
    """

    version: str
    root: Path
    files: tuple[tuple[str, str], ...]

    def as_mapping(self) -> dict[str, str]:
        return dict(self.files)


def blob_id(content: bytes) -> str:
    """The git blob id (SHA-1) of ``content``, as ``git hash-object`` gives it."""
    h = hashlib.sha1(b"blob %d\x00" % len(content))  # noqa: S324 - git's object name
    h.update(content)
    return h.hexdigest()


def version_of_files(files: Iterable[tuple[str, str]]) -> str:
    """The version text of a list of ``(path, blob id)``."""
    text = "".join(f"{path}\x00{blob}\n" for path, blob in sorted(files))
    return VERSION_PREFIX + hashlib.sha256(text.encode("utf-8", "surrogateescape")
                                           ).hexdigest()[:16]


def _stat(path: str) -> _Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# --- per-file caches (valid while the file's stat is unchanged) ------------------------------

_BLOBS: dict[str, tuple[_Stat, str]] = {}
_IMPORTS: dict[tuple[str, str], tuple[_Stat, tuple[str, ...]]] = {}
_ROOTS: dict[str, Path] = {}
# target → (its files with their stats, identity)
_CLOSURES: dict[Any, tuple[tuple[tuple[str, _Stat | None], ...], CodeIdentity]] = {}


def _blob_of(path: str, st: _Stat) -> str:
    cached = _BLOBS.get(path)
    if cached is not None and cached[0] == st:
        return cached[1]
    with open(path, "rb") as f:
        content = f.read()
    blob = blob_id(content)
    _BLOBS[path] = (st, blob)
    return blob


def project_root(path: Path) -> Path:
    """The root of the project holding ``path``: its git repository's top folder (a folder
    holding ``.git``), else the file's own folder."""
    folder = str(path.parent)
    root = _ROOTS.get(folder)
    if root is None:
        root = next((p for p in path.parents if (p / ".git").exists()), path.parent)
        _ROOTS[folder] = root
    return root


def _installed_prefixes() -> tuple[str, ...]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for name in ("purelib", "platlib", "stdlib", "platstdlib"):
        try:
            prefixes.add(sysconfig.get_paths()[name])
        except KeyError:  # pragma: no cover - every CPython has these
            pass
    return tuple(os.path.join(os.path.realpath(p), "") for p in prefixes if p)


def _is_local(path: str, root: str) -> bool:
    if not path.startswith(root):
        return False
    rest = path[len(root):]
    parts = rest.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(path.startswith(p) and not root.startswith(p) for p in _PREFIXES)


_PREFIXES = _installed_prefixes()


def _module_names(tree: ast.AST, package: str) -> list[str]:
    """Every module name a file's imports may load (``a.b.c`` gives ``a``, ``a.b``, ``a.b.c``;
    ``from a import b`` also ``a.b``, which may be a submodule)."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.append(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                base_parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join([*base_parts, *( [node.module] if node.module else [])])
            else:
                base = node.module or ""
            if not base:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    out: list[str] = []
    for name in names:
        parts = name.split(".")
        out += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return list(dict.fromkeys(out))


def _search_path() -> list[str]:
    return [os.path.realpath(p or os.getcwd()) for p in sys.path if isinstance(p, str)]


def _find_module(name: str, path: list[str]) -> tuple[str | None, list[str] | None]:
    """(file, package folders) of module ``name`` found by path along ``path``, as the path
    finder does: a package folder with ``__init__.py``, a module ``.py``, else a namespace
    package (its folders are searched for submodules). Anything else (an extension, a
    built-in, nothing): ``(None, None)``."""
    leaf = name.rsplit(".", 1)[-1]
    namespace: list[str] = []
    for entry in path:
        folder = os.path.join(entry, leaf)
        init = os.path.join(folder, "__init__.py")
        if os.path.isfile(init):
            return init, [folder]
        module = folder + ".py"
        if os.path.isfile(module):
            return module, None
        for suffix in (".pyc", *_EXTENSION_SUFFIXES):
            if os.path.isfile(folder + suffix):
                return None, None
        if os.path.isdir(folder):
            namespace.append(folder)
    if namespace:
        return None, namespace
    return None, None


def _find_top_level(name: str, path: list[str]) -> tuple[str | None, list[str] | None]:
    """A top-level module as the import system finds it (every finder on ``sys.meta_path``,
    editable installs' included), without importing it: :func:`importlib.util.find_spec` of
    a top-level name runs no module code. Path logic where the import system cannot say."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return _find_module(name, path)
    if spec is None:
        return None, None
    origin = spec.origin if spec.has_location else None
    file = origin if isinstance(origin, str) and origin.endswith(".py") else None
    locations = spec.submodule_search_locations
    return file, ([str(p) for p in locations] if locations is not None else None)


_EXTENSION_SUFFIXES = tuple(s for s in (sysconfig.get_config_var("EXT_SUFFIX"), ".so", ".pyd")
                            if s)


class _Resolver:
    """Resolves module names to files for one closure computation (memoized inside it)."""

    def __init__(self) -> None:
        self.sys_path = _search_path()
        self.found: dict[str, tuple[str | None, list[str] | None]] = {}

    def resolve(self, name: str) -> tuple[str | None, list[str] | None]:
        if name in self.found:
            return self.found[name]
        result: tuple[str | None, list[str] | None] = (None, None)
        if name in sys.builtin_module_names:
            pass
        elif "." not in name:
            result = _find_top_level(name, self.sys_path)
        else:
            parent, _ = name.rsplit(".", 1)
            _file, folders = self.resolve(parent)
            if folders:
                result = _find_module(name, folders)
        self.found[name] = result
        return result


def _imports_of(path: str, package: str, st: _Stat, resolver: _Resolver
                ) -> list[tuple[str, str]]:
    """(file, module name) of every module ``path`` imports that resolves to a .py file."""
    cached = _IMPORTS.get((path, package))
    if cached is not None and cached[0] == st:
        names: Iterable[str] = cached[1]
    else:
        try:
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), path)
        except (SyntaxError, ValueError, OSError):
            tree = ast.Module(body=[], type_ignores=[])
        names = tuple(_module_names(tree, package))
        _IMPORTS[(path, package)] = (st, names)
    out = []
    for name in names:
        file, _folders = resolver.resolve(name)
        if file is not None:
            out.append((os.path.realpath(file), name))
    return out


def _package_of(module: str, file: str) -> str:
    """The package relative imports in ``file`` (module ``module``) are resolved against."""
    if os.path.basename(file) == "__init__.py":
        return module
    return module.rpartition(".")[0]


def _depends_on(target: Any, source: Path, folders: list[str]) -> list[str]:
    declared: Any = None
    for name in DEPENDS_ATTRIBUTES:
        declared = getattr(target, name, None)
        if declared is not None:
            break
    if declared is None:
        return []
    if isinstance(declared, (str, os.PathLike)):
        declared = [declared]
    if not isinstance(declared, (list, tuple)):
        raise InvalidComponentError(
            f"{getattr(target, '__qualname__', target)!r}.depends_on must be a list of paths, "
            f"not {type(declared).__name__}", "depends_on")
    files: list[str] = []
    for item in declared:
        if not isinstance(item, (str, os.PathLike)):
            raise InvalidComponentError(
                f"depends_on holds {item!r}, not a path", "depends_on")
        path = Path(source.parent, os.fspath(item))
        if path.is_dir():
            inside = [p for p in path.rglob("*") if ".git" not in p.relative_to(path).parts]
            folders += [str(path.resolve())] + [str(p.resolve()) for p in inside if p.is_dir()]
            files += sorted(str(p.resolve()) for p in inside if p.is_file())
        elif path.is_file():
            files.append(str(path.resolve()))
        else:
            raise InvalidComponentError(
                f"{getattr(target, '__qualname__', target)!r} depends on {os.fspath(item)!r} "
                f"({path}), which does not exist", "depends_on")
    return files


def _module_name_of(target: Any) -> str:
    from .component import main_module_name

    module = getattr(target, "__module__", None) or getattr(target, "__name__", "")
    if module == "__main__":
        module = main_module_name()
    return str(module)


def code_identity(target: Any) -> CodeIdentity:
    """The code identity of a class, function or module (or an instance's class).

    Raises:
        InvalidComponentError: no source file (defined interactively), or a declared
            ``depends_on`` path that does not exist.
    """
    import inspect

    from .component import _source_file

    if not (inspect.isclass(target) or inspect.ismodule(target) or inspect.isroutine(target)):
        target = type(target)
    cached = _CLOSURES.get(target)
    if cached is not None:  # warm: one stat per file, nothing read
        stats, identity = cached
        stat = os.stat
        try:
            for path, st in stats:
                now = stat(path)
                if st is None or (now.st_mtime_ns, now.st_size, now.st_ino) != st:
                    break
            else:
                return identity
        except OSError:
            pass
    source = _source_file(target)
    root = project_root(source)
    root_text = os.path.join(os.path.realpath(root), "")
    module = _module_name_of(target)
    resolver = _Resolver()
    seen: dict[str, _Stat] = {}
    todo = [(os.path.realpath(source), module)]
    while todo:
        path, name = todo.pop()
        if path in seen:
            continue
        st = _stat(path)
        if st is None:
            continue
        seen[path] = st
        for file, imported in _imports_of(path, _package_of(name, path), st, resolver):
            if file not in seen and _is_local(file, root_text):
                todo.append((file, imported))
    folders: list[str] = []  # declared folders: a file added or removed there is noticed
    for data in _depends_on(target, source, folders):
        st = _stat(data)
        if st is not None:
            seen[os.path.realpath(data)] = st
    files = []
    for path, st in seen.items():
        real = Path(path)
        try:
            rel = real.relative_to(os.path.realpath(root)).as_posix()
        except ValueError:  # a declared data file outside the project: its absolute path
            rel = real.as_posix()
        files.append((rel, _blob_of(path, st)))
    files.sort()
    identity = CodeIdentity(version_of_files(files), Path(root), tuple(files))
    watched = [*seen.items(), *((folder, _stat(folder)) for folder in folders)]
    _CLOSURES[target] = (tuple(watched), identity)
    return identity


_HEADS: dict[tuple[Any, ...], str | None] = {}


def head_commit(root: Path) -> str | None:
    """The HEAD commit id of the repository at ``root`` (None: no repository, no commit)."""
    from .component import _head_signature

    if not (root / ".git").exists():
        return None
    signature = (str(root), _head_signature(root))
    if signature in _HEADS:
        return _HEADS[signature]
    from dulwich.repo import Repo

    head: str | None
    try:
        with Repo(str(root)) as repo:
            head = repo.head().decode()
    except Exception:  # no commit yet, or an unreadable repository
        head = None
    _HEADS[signature] = head
    return head
