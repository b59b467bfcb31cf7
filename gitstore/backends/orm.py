"""``DjangoORMDataStore``: keys, components and attributes as Django models; data in files.

The seed's other backend. Component types, states (type, version, parameters, inputs as foreign
keys, key) and data items (attribute, codec, size, digest, file) are tables of the Django app
``gitstore.backends.djangostore``; each attribute's bytes are a file under ``data_root_dir``,
named by its SHA-256 (equal data is stored once), written to a temporary file and renamed.

Files and rows change together under one lock per file, so that
:meth:`DjangoORMDataStore.gc` never collects a file a committed row refers to (issue 11, item 4);
its docstring states the protocol.

Standalone, ``DjangoORMDataStore(database=..., data_root_dir=...)`` configures Django itself if
the process has no settings, registers the database under an alias of its own (several stores
in one process are fine) and migrates it. Inside a Django project, add the app to
``INSTALLED_APPS``, run ``migrate``, and pass the database alias.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from .. import _yaml
from ..codecs import Codec, Payload, codec_by_name
from ..component import version_text
from ..errors import (
    ConcurrencyError,
    CorruptEntryError,
    DiskFullError,
    GitStoreError,
    StoreError,
    StoreLocationError,
    UnsupportedValueError,
)
from .base import AbstractDataStore, Entry, ensure_directory, listed_entry

__all__ = ["APP", "DjangoORMDataStore", "database_settings"]

_T = TypeVar("_T")

APP = "gitstore.backends.djangostore"
# Several writer processes on one SQLite file: a transaction that reads and then writes cannot
# wait for a lock (SQLite refuses the upgrade at once, "database is locked"), so transactions
# take the write lock when they begin (Django 5.1+), and WAL lets readers run beside a writer.
_SQLITE_OPTIONS: dict[str, Any] = {"timeout": 60, "transaction_mode": "IMMEDIATE",
                                   "init_command": "PRAGMA journal_mode=WAL;"}
#: PostgreSQL advisory locks on data files are (this, hashtext(path)): a key space of their own
_FILE_LOCK_CLASS = 0x67697473
#: a store that keeps losing races to concurrent stores and deletes of its key gives up
_ATTEMPTS = 8
#: the widths of the columns that hold text from the component (see djangostore/models.py)
_MAX_TYPE, _MAX_VERSION, _MAX_KEY, _MAX_CODEC, _MAX_PATH = 255, 255, 100, 50, 255


def _column_text(field: str, value: str, max_length: int | None) -> str:
    """``value``, if a text column can hold it: UTF-8, no NUL, at most ``max_length`` characters.

    Raises:
        UnsupportedValueError: it cannot (PostgreSQL refuses NUL and over-long text, SQLite
            would truncate nothing but every database refuses lone surrogates).
    """
    problem = None
    if max_length is not None and len(value) > max_length:
        problem = f"is longer than {max_length} characters"
    elif "\x00" in value:
        problem = "holds NUL"
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "holds a lone surrogate"
    if problem:
        raise UnsupportedValueError(
            f"{field} {value[:40]!r}{'...' if len(value) > 40 else ''} {problem}: "
            "DjangoORMDataStore cannot store it", field)
    return value


def _yaml_text(field: str, data: Any) -> str:
    try:
        text = _yaml.dump(data)
    except UnicodeEncodeError:
        raise UnsupportedValueError(f"the {field} hold a lone surrogate: no store can write "
                                    "them as UTF-8", field) from None
    return _column_text(field, text, None)


def _is_retryable(exc: BaseException) -> bool:
    """A lost race: a unique or foreign key conflict with a concurrent store or delete of the
    same key, a deadlock or a serialization failure (PostgreSQL SQLSTATE 40P01, 40001)."""
    from django.db import IntegrityError

    if isinstance(exc, IntegrityError):
        return True
    return getattr(exc.__cause__, "sqlstate", None) in ("40001", "40P01")


def database_settings(database: str | dict[str, Any] | None, data_root_dir: Path
                      ) -> dict[str, Any] | str:
    """A Django DATABASES entry for a URL, an entry, or None (SQLite under the data root);
    any other string is returned as is: the alias of a database the project configured.

    Raises:
        StoreError: a URL of a kind gitstore does not know.
    """
    if database is None:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(data_root_dir / "index.db"),
                "OPTIONS": dict(_SQLITE_OPTIONS)}
    if isinstance(database, dict):
        return dict(database)
    if "://" not in database:
        return database
    url = urlparse(database)
    if url.scheme == "sqlite":
        name = unquote(url.path)
        if url.netloc:  # sqlite://relative/path
            name = url.netloc + name
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name, "OPTIONS": dict(_SQLITE_OPTIONS)}
    if url.scheme in ("postgres", "postgresql"):
        try:
            port = url.port
        except ValueError:  # (the URL may hold a password: never in a message)
            raise StoreError(f"database URL {url.scheme}://…: the port is not a number from 0 "
                             "to 65535") from None
        return {"ENGINE": "django.db.backends.postgresql", "NAME": unquote(url.path.lstrip("/")),
                "USER": unquote(url.username or ""), "PASSWORD": unquote(url.password or ""),
                "HOST": url.hostname or "", "PORT": str(port or "")}
    raise StoreError(f"unsupported database URL {url.scheme}://… (sqlite:///… or "
                     "postgresql://…)")


def _old_style(params: dict[str, Any]) -> dict[str, Any]:
    """``{'DATABASE_ENGINE': 'sqlite3', 'DATABASE_NAME': ...}`` → a DATABASES entry."""
    engine = str(params.get("DATABASE_ENGINE", "sqlite3"))
    engine = {"postgresql_psycopg2": "postgresql"}.get(engine, engine)
    entry: dict[str, Any] = {"ENGINE": f"django.db.backends.{engine}",
                             "NAME": params.get("DATABASE_NAME", "")}
    for old, new in (("DATABASE_USER", "USER"), ("DATABASE_PASSWORD", "PASSWORD"),
                     ("DATABASE_HOST", "HOST"), ("DATABASE_PORT", "PORT")):
        if params.get(old):
            entry[new] = str(params[old])
    if engine == "sqlite3":
        entry["OPTIONS"] = dict(_SQLITE_OPTIONS)
    return entry


def _setup_django(config: dict[str, Any] | str, alias: str) -> None:
    import django
    from django.apps import apps
    from django.conf import settings

    if not settings.configured:
        if isinstance(config, str):
            raise StoreError(f"database alias {config!r} given, but Django has no settings")
        settings.configure(INSTALLED_APPS=[APP], DATABASES={"default": dict(config)},
                           USE_TZ=True, DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
    if not apps.ready:
        django.setup()
    if not apps.is_installed(APP):
        raise StoreError(f"add {APP!r} to INSTALLED_APPS (and run migrate)")
    if isinstance(config, dict):
        from django.db import connections

        if alias not in connections.settings:
            everything = {"default": connections.settings["default"], alias: dict(config)}
            connections.settings[alias] = connections.configure_settings(everything)[alias]


class _CheckedFile:
    """A data file read as a stream; its SHA-256 is checked by :meth:`finish`."""

    def __init__(self, f: Any, key: str, digest: str) -> None:
        self.key, self.digest = key, digest
        self._f = f  # an open, unbuffered binary file (this object closes it)
        self._sha = hashlib.sha256()

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        done = 0
        while done < len(view):
            got = self._f.readinto(view[done:])
            if not got:
                break
            self._sha.update(view[done: done + got])
            done += got
        return done

    def read(self, n: int = -1) -> bytes:
        data = self._f.read() if n < 0 else self._f.read(n)
        self._sha.update(data)
        return data or b""

    def finish(self) -> None:
        self.read()
        got = self._sha.hexdigest()
        if got != self.digest:
            raise CorruptEntryError(f"entry {self.key}: its data file is damaged", self.key,
                                    self.digest, got)

    def close(self) -> None:
        self._f.close()


class DjangoORMDataStore(AbstractDataStore):
    """A store whose index is a SQL database (through Django's ORM) and whose data are files.

    Args:
        database: a URL (``sqlite:///path/index.db``, ``postgresql://user@host:port/name``),
            a Django DATABASES entry, the alias of a database a Django project configured, or
            None for SQLite at ``data_root_dir/index.db``.
        data_root_dir: where the data files go (created if missing).
        allow_pickle: see :class:`AbstractDataStore`.
        migrate: create or update the tables (standalone use; a project runs ``migrate``).

    Raises:
        StoreLocationError: ``data_root_dir`` is a file or cannot be created.
        StoreError: the database cannot be configured or reached.
    """

    def __init__(self, database: str | dict[str, Any] | None = None,
                 data_root_dir: str | os.PathLike[str] = "gitstore-data",
                 allow_pickle: bool = False, migrate: bool = True,
                 database_parameters: dict[str, Any] | None = None) -> None:
        super().__init__(allow_pickle=allow_pickle)
        if database_parameters is not None:  # the seed's (Django 1.0) spelling
            database = _old_style(database_parameters)
        self.data_root_dir = ensure_directory(Path(data_root_dir).absolute())
        config = database_settings(database, self.data_root_dir)
        self._database = database  # what a pickled store reopens (see __reduce__)
        if isinstance(config, str):
            self.alias = config
        else:
            digest = hashlib.sha1(repr(sorted(config.items())).encode()).hexdigest()[:12]
            self.alias = f"gitstore_{digest}"
        _setup_django(config, self.alias)
        if migrate:
            self._migrate()

    def _migrate(self) -> None:
        from django.core.management import call_command
        from django.db import DatabaseError

        try:
            with self._migration_lock():
                call_command("migrate", "gitstore", database=self.alias, verbosity=0,
                             interactive=False)
        except DatabaseError as exc:
            raise StoreError(f"database {self.alias}: {exc}") from exc

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """One process migrates at a time (on PostgreSQL an advisory lock, else a file lock)."""
        from django.db import connections

        connection = connections[self.alias]
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(7355608)")
            try:
                yield
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(7355608)")
            return
        with open(self.data_root_dir / ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # --- models -----------------------------------------------------------------------------------

    def _models(self) -> Any:
        from .djangostore import models

        return models

    def _atomic(self) -> Any:
        from django.db import transaction

        return transaction.atomic(using=self.alias)

    # --- files ------------------------------------------------------------------------------------

    def _write_temporary(self, tmp: Path, payload: Payload, ext: str) -> tuple[str, str, int]:
        """Write the payload to ``tmp``; return its path-to-be, digest and size."""
        parts = [payload] if isinstance(payload, bytes) else payload
        sha = hashlib.sha256()
        size = 0
        # a crashed writer's temporary may be a hard link to a data file: never write through it
        tmp.unlink(missing_ok=True)
        with open(tmp, "xb") as f:  # streamed: a large array is never copied in memory
            for part in parts:
                sha.update(part)
                f.write(part)
                size += len(part)
        digest = sha.hexdigest()
        return f"{digest[:2]}/{digest}.{ext}", digest, size

    def _place(self, tmp: Path, rel: str) -> None:
        """Put a copy of ``tmp`` at ``rel``, atomically replacing what is there.

        Always replacing, never "already there, skip": the existing file may be damaged, and a
        store of the same content must leave a good copy (issue 11, item 6). ``tmp`` stays, so
        a transaction that rolls back can place it again on its next attempt.
        """
        target = self.data_root_dir / rel
        target.parent.mkdir(exist_ok=True)
        staged = tmp.with_suffix(".place")
        staged.unlink(missing_ok=True)
        try:
            os.link(tmp, staged)
        except OSError:  # a file system without hard links
            shutil.copyfile(tmp, staged)
        os.replace(staged, target)

    def _read_file(self, key: str, rel: str, digest: str) -> bytes | _CheckedFile:
        path = self.data_root_dir / rel
        try:
            # never through a link, never blocking on a FIFO: a store only writes plain files
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise CorruptEntryError(f"entry {key}: data file {rel} is missing", key) from None
        except OSError as exc:  # a symbolic link (ELOOP), no permission...
            raise CorruptEntryError(f"entry {key}: data file {rel} cannot be read: "
                                    f"{exc.strerror or exc}", key) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO, a device
            os.close(fd)
            raise CorruptEntryError(f"entry {key}: data file {rel} is not a regular file", key)
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb", buffering=0)
        if info.st_size >= 1 << 20:  # large: streamed into its destination, checked at the end
            return _CheckedFile(f, key, digest)
        try:
            data = f.read()
        except OSError as exc:
            raise CorruptEntryError(f"entry {key}: data file {rel} cannot be read: "
                                    f"{exc.strerror or exc}", key) from None
        finally:
            f.close()
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise CorruptEntryError(f"entry {key}: data file {rel} is damaged", key, digest, got)
        return data

    # --- primitives -------------------------------------------------------------------------------

    def _put(self, key: str, description: dict[str, Any], attribute: str, codec: Codec,
             payload: Payload) -> None:
        # docstring inherited
        # every text is checked before anything is written: a refusal leaves nothing behind
        columns = {
            "type": _column_text("type name", str(description["type"]), _MAX_TYPE),
            "version": _column_text("version", version_text(description["version"]),
                                    _MAX_VERSION),
            "parameters": _yaml_text("parameters", description.get("parameters") or {}),
            "description": _yaml_text("description", description),
        }
        _column_text("key", key, _MAX_KEY)
        _column_text("codec name", codec.name, _MAX_CODEC)
        _column_text("attribute name", attribute, None)
        tmp = self.data_root_dir / f".incoming.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            rel, digest, size = self._write_temporary(tmp, payload, codec.ext)
            _column_text("data file name", rel, _MAX_PATH)
            self._retrying(lambda: self._commit_item(key, description, attribute, columns,
                                                     codec, tmp, rel, digest, size))
        except OSError as exc:
            if isinstance(exc, GitStoreError):
                raise
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"{self.data_root_dir}: no space left; nothing was "
                                    "stored") from exc
            raise StoreLocationError(f"{self.data_root_dir}: {exc.strerror or exc}; nothing "
                                     "was stored", str(self.data_root_dir)) from exc
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".place").unlink(missing_ok=True)

    def _commit_item(self, key: str, description: dict[str, Any], attribute: str,
                     columns: dict[str, str], codec: Codec, tmp: Path, rel: str, digest: str,
                     size: int) -> None:
        """One attempt at a store: rows and data file, under the file's lock (see :meth:`gc`)."""
        m = self._models()
        db = self.alias
        with self._atomic():
            self._lock_file(rel)
            ctype, _ = m.ComponentType.objects.using(db).get_or_create(name=columns["type"])
            # the state's row lock orders this store after (or before) a delete of the same key
            # (NO KEY: foreign key checks of stores that use this state as an input still pass)
            states = m.ComponentState.objects.using(db).select_for_update(no_key=True)
            state, created = states.get_or_create(
                key=key, defaults={"type": ctype, "version": columns["version"],
                                   "parameters": columns["parameters"],
                                   "description": columns["description"]})
            if created:
                inputs = description.get("input")
                keys = inputs if isinstance(inputs, list) else ([inputs] if inputs else [])
                if keys:
                    state.inputs.set(m.ComponentState.objects.using(db).filter(key__in=keys))
            m.DataItem.objects.using(db).update_or_create(
                state=state, attribute=attribute,
                defaults={"codec": codec.name, "size": size, "digest": digest, "path": rel})
            self._place(tmp, rel)  # last: nothing after it can fail but the commit

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` (one transaction) again when it lost a race to a concurrent writer.

        Raises:
            ConcurrencyError: it kept losing.
            StoreError: any other database error.
        """
        from django.db import DatabaseError

        for _ in range(_ATTEMPTS):
            try:
                return attempt()
            except DatabaseError as exc:
                if not _is_retryable(exc):
                    raise StoreError(f"database {self.alias}: {exc}") from exc
                last = exc
        raise ConcurrencyError(f"database {self.alias}: gave up after {_ATTEMPTS} conflicts with "
                               f"concurrent writers: {last}") from last

    def _lock_file(self, rel: str) -> None:
        """Inside a transaction: take the lock that orders this transaction's work on data file
        ``rel`` with :meth:`gc`'s, until the outermost transaction ends."""
        from django.db import connections

        connection = connections[self.alias]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                               [_FILE_LOCK_CLASS, rel])
            elif connection.vendor == "sqlite":
                # A write takes SQLite's database lock now (even without BEGIN IMMEDIATE,
                # which a project's settings may not ask for) and holds it until the commit.
                table = connection.ops.quote_name(self._models().ComponentType._meta.db_table)
                cursor.execute(f"UPDATE {table} SET name = name WHERE 0 = 1")  # noqa: S608

    def _get(self, key: str, attribute: str, version: Any = None) -> tuple[Codec, Any] | None:
        # docstring inherited
        m = self._models()
        items = m.DataItem.objects.using(self.alias).filter(state__key=key, attribute=attribute)
        with self._database_errors():
            item = items.first()
            for _ in range(_ATTEMPTS):
                if item is None:
                    return None
                try:
                    return codec_by_name(item.codec), self._read_file(key, item.path, item.digest)
                except CorruptEntryError:
                    # a concurrent store or delete may have replaced the row, and gc its file
                    again = items.first()
                    if again is None or (again.path, again.digest) != (item.path, item.digest):
                        item = again
                        continue
                    raise
        raise ConcurrencyError(f"entry {key}: {attribute!r} kept changing while it was read")

    def _remove(self, key: str, attribute: str | None, version: Any = None) -> bool:
        # docstring inherited
        return self._retrying(lambda: self._remove_once(key, attribute))

    def _remove_once(self, key: str, attribute: str | None) -> bool:
        m = self._models()
        db = self.alias
        with self._atomic():
            if self._sqlite():
                self._lock_file("")  # the write lock first: no read-then-upgrade failure
            # the same row lock as a store of this key takes: the two are ordered
            state = m.ComponentState.objects.using(db).select_for_update().filter(key=key).first()
            if state is None:
                return False
            items = m.DataItem.objects.using(db).filter(state=state)
            if attribute is not None:
                items = items.filter(attribute=attribute)
            removed, _ = items.delete()
            if not m.DataItem.objects.using(db).filter(state=state).exists():
                state.delete()
        return bool(removed)

    def _list(self, key: str | None = None, version: Any = None) -> Iterator[Entry]:
        # docstring inherited
        m = self._models()
        states = m.ComponentState.objects.using(self.alias).order_by("key")
        if key is not None:
            states = states.filter(key=key)
        if version is not None:
            states = states.filter(version=version_text(version))
        with self._database_errors():
            for state in states.prefetch_related("items"):
                attrs = tuple(sorted(item.attribute for item in state.items.all()))
                if attrs:
                    yield listed_entry(state.key, attrs, state.description,
                                       {"version": state.version})

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        """Database errors become :class:`StoreError` (a typed error, the cause kept)."""
        from django.db import DatabaseError

        try:
            yield
        except DatabaseError as exc:
            raise StoreError(f"database {self.alias}: {exc}") from exc

    def _sqlite(self) -> bool:
        from django.db import connections

        return bool(connections[self.alias].vendor == "sqlite")

    def gc(self) -> int:
        """Delete the data files that no item refers to; return how many.

        Safe beside concurrent stores, in this and other processes (issue 11, item 4). The
        protocol: a store writes its data to a temporary file first (gc never touches names
        starting with ``.``); then, in **one transaction**, it takes the **lock of the data
        file** (below), writes its rows, moves the file into place, and commits; the lock is
        held until the commit (of the caller's own transaction, if the store ran inside one).
        gc takes the same lock for each file it considers, and decides and deletes *under it*,
        with a view of the database taken after the lock was granted. So either the store came
        first, and gc sees its committed row and keeps the file, or gc came first, and the
        store moves the file in after gc deleted it. A store never relies on a file it did not
        put in place itself under the lock: equal content is always moved in again (which is
        also what repairs a damaged copy). A store that rolls back leaves at most a file no
        row refers to, for the next gc. A reader whose row was replaced, and its file
        collected, meanwhile reads the new row again.

        The lock of a file is, on PostgreSQL, an advisory lock on ``(class, hashtext(path))``
        (stores take it for their transaction, gc for its session and only if free: gc never
        waits for a store); on SQLite, the database's write lock, which both take at the start
        of their transaction. Other database vendors have no such lock here: gc refuses.

        Raises:
            StoreError: called inside a transaction of this database (its view would be older
                than the locks), or on a database vendor other than SQLite and PostgreSQL.
        """
        from django.db import connections

        connection = connections[self.alias]
        if connection.in_atomic_block:
            raise StoreError("gc() cannot run inside a transaction: it needs fresh views")
        if connection.vendor not in ("postgresql", "sqlite"):
            raise StoreError(f"gc() knows how to lock data files on PostgreSQL and SQLite, "
                             f"not on {connection.vendor}")
        candidates = sorted(_data_files(self.data_root_dir))
        removed = 0
        with self._database_errors():
            for start in range(0, len(candidates), 500):
                batch = candidates[start:start + 500]
                # unlocked first look: a referenced file stays (keeping is always safe)
                batch = sorted(set(batch) - self._referenced(batch))
                if batch:
                    removed += self._collect(batch)
        return removed

    def _referenced(self, paths: list[str]) -> set[str]:
        m = self._models()
        return set(m.DataItem.objects.using(self.alias).filter(path__in=paths)
                   .values_list("path", flat=True))

    def _collect(self, paths: list[str]) -> int:
        """Delete those of ``paths`` no item refers to, each decided under its lock."""
        from django.db import connections

        connection = connections[self.alias]
        if connection.vendor == "sqlite":
            with self._atomic():
                self._lock_file("")
                return self._unlink_unreferenced(paths)
        with connection.cursor() as cursor:  # autocommit: each statement sees the latest commits
            cursor.execute("SELECT p FROM unnest(%s::text[]) AS p "
                           "WHERE pg_try_advisory_lock(%s, hashtext(p))",
                           [paths, _FILE_LOCK_CLASS])
            locked = [row[0] for row in cursor.fetchall()]
        try:
            return self._unlink_unreferenced(locked)  # a locked-out file is being stored: kept
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(p)) "
                               "FROM unnest(%s::text[]) AS p", [_FILE_LOCK_CLASS, locked])

    def _unlink_unreferenced(self, paths: list[str]) -> int:
        used = self._referenced(paths)
        removed = 0
        for rel in paths:
            if rel not in used:
                try:
                    (self.data_root_dir / rel).unlink()
                except FileNotFoundError:
                    continue
                removed += 1
        return removed

    def close(self) -> None:
        # docstring inherited
        from django.db import connections

        if self.alias in connections.settings:
            connections[self.alias].close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the database (URL, settings entry or alias) and data folder: a worker
        process reopens the store (without migrating: this process did). An alias names a
        database of the worker's own Django settings."""
        return (_reopen, (type(self), self._database, str(self.data_root_dir),
                          self.allow_pickle))


#: the name of a data file: the SHA-256 of its bytes and the codec's extension
_DATA_FILE = re.compile(r"[0-9a-f]{64}\.[^./\\]+\Z")


def _data_files(root: Path) -> Iterator[str]:
    """The data files under ``root`` that a store wrote: ``<xx>/<sha256>.<ext>`` whose digest
    starts with ``xx``, regular files (never a symbolic link, a folder, a file of another name:
    a data folder shared with other files keeps them; nothing outside it is reached)."""
    try:
        folders = [d for d in os.scandir(root)
                   if _HEX2.match(d.name) and d.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    for folder in folders:
        try:
            files = list(os.scandir(folder.path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for f in files:
            if f.name.startswith(folder.name) and _DATA_FILE.match(f.name) and \
                    f.is_file(follow_symlinks=False):
                yield f"{folder.name}/{f.name}"


_HEX2 = re.compile(r"[0-9a-f]{2}\Z")


def _reopen(cls: type[DjangoORMDataStore], database: str | dict[str, Any] | None,
            data_root_dir: str, allow_pickle: bool) -> DjangoORMDataStore:
    if not os.path.isdir(data_root_dir):  # never a new, empty store in its place
        raise StoreLocationError(f"cannot reopen the store: its data folder {data_root_dir} "
                                 "is gone", data_root_dir)
    return cls(database, data_root_dir, allow_pickle=allow_pickle, migrate=False)
