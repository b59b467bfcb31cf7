"""``DjangoORMDataStore``: keys, components and attributes as Django models; data in files.

The seed's other backend. Component types, states (type, version, parameters, inputs as foreign
keys, key) and data items (attribute, codec, size, digest, file) are tables of the Django app
``gitstore.backends.djangostore``; each attribute's bytes are a file under ``data_root_dir``,
named by its SHA-256 (equal data is stored once), written to a temporary file and renamed.

Standalone, ``DjangoORMDataStore(database=..., data_root_dir=...)`` configures Django itself if
the process has no settings, registers the database under an alias of its own (several stores
in one process are fine) and migrates it. Inside a Django project, add the app to
``INSTALLED_APPS``, run ``migrate``, and pass the database alias.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .. import _yaml
from ..codecs import Codec, Payload, codec_by_name
from ..component import version_text
from ..errors import CorruptEntryError, StoreError
from .base import AbstractDataStore, Entry, ensure_directory

__all__ = ["APP", "DjangoORMDataStore", "database_settings"]

APP = "gitstore.backends.djangostore"
# Several writer processes on one SQLite file: a transaction that reads and then writes cannot
# wait for a lock (SQLite refuses the upgrade at once, "database is locked"), so transactions
# take the write lock when they begin (Django 5.1+), and WAL lets readers run beside a writer.
_SQLITE_OPTIONS: dict[str, Any] = {"timeout": 60, "transaction_mode": "IMMEDIATE",
                                   "init_command": "PRAGMA journal_mode=WAL;"}


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
        return {"ENGINE": "django.db.backends.postgresql", "NAME": unquote(url.path.lstrip("/")),
                "USER": unquote(url.username or ""), "PASSWORD": unquote(url.password or ""),
                "HOST": url.hostname or "", "PORT": str(url.port or "")}
    raise StoreError(f"unsupported database URL {database!r} (sqlite:///… or postgresql://…)")


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

    def __init__(self, path: Path, key: str, digest: str) -> None:
        self.key, self.digest = key, digest
        self._f = open(path, "rb", buffering=0)
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

    def _write_file(self, payload: Payload, ext: str) -> tuple[str, str, int]:
        """Write the payload under its digest (written to a temporary file, then renamed)."""
        parts = [payload] if isinstance(payload, bytes) else payload
        tmp = self.data_root_dir / f".incoming.{os.getpid()}.{threading.get_ident()}.tmp"
        sha = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as f:  # streamed: a large array is never copied in memory
            for part in parts:
                sha.update(part)
                f.write(part)
                size += len(part)
        digest = sha.hexdigest()
        rel = f"{digest[:2]}/{digest}.{ext}"
        target = self.data_root_dir / rel
        if target.exists():  # content-addressed: the same bytes are stored once
            tmp.unlink()
        else:
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        return rel, digest, size

    def _read_file(self, key: str, rel: str, digest: str) -> bytes | _CheckedFile:
        path = self.data_root_dir / rel
        try:
            size = path.stat().st_size
            if size >= 1 << 20:  # large: streamed into its destination, checked at the end
                return _CheckedFile(path, key, digest)
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorruptEntryError(f"entry {key}: data file {rel} is missing", key) from None
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise CorruptEntryError(f"entry {key}: data file {rel} is damaged", key, digest, got)
        return data

    # --- primitives -------------------------------------------------------------------------------

    def _put(self, key: str, description: dict[str, Any], attribute: str, codec: Codec,
             payload: Payload) -> None:
        # docstring inherited
        m = self._models()
        rel, digest, size = self._write_file(payload, codec.ext)
        db = self.alias
        with self._atomic():
            ctype, _ = m.ComponentType.objects.using(db).get_or_create(name=description["type"])
            state, created = m.ComponentState.objects.using(db).get_or_create(
                key=key, defaults={
                    "type": ctype, "version": version_text(description["version"]),
                    "parameters": _yaml.dump(description.get("parameters") or {}),
                    "description": _yaml.dump(description)})
            if created:
                inputs = description.get("input")
                keys = inputs if isinstance(inputs, list) else ([inputs] if inputs else [])
                if keys:
                    state.inputs.set(m.ComponentState.objects.using(db).filter(key__in=keys))
            m.DataItem.objects.using(db).update_or_create(
                state=state, attribute=attribute,
                defaults={"codec": codec.name, "size": size, "digest": digest,
                          "path": rel})

    def _get(self, key: str, attribute: str, version: Any = None) -> tuple[Codec, Any] | None:
        # docstring inherited
        m = self._models()
        item = m.DataItem.objects.using(self.alias).filter(
            state__key=key, attribute=attribute).first()
        if item is None:
            return None
        return codec_by_name(item.codec), self._read_file(key, item.path, item.digest)

    def _remove(self, key: str, attribute: str | None, version: Any = None) -> bool:
        # docstring inherited
        m = self._models()
        db = self.alias
        with self._atomic():
            items = m.DataItem.objects.using(db).filter(state__key=key)
            if attribute is not None:
                items = items.filter(attribute=attribute)
            removed, _ = items.delete()
            if not m.DataItem.objects.using(db).filter(state__key=key).exists():
                m.ComponentState.objects.using(db).filter(key=key).delete()
        return bool(removed)

    def _list(self, key: str | None = None, version: Any = None) -> Iterator[Entry]:
        # docstring inherited
        m = self._models()
        states = m.ComponentState.objects.using(self.alias).order_by("key")
        if key is not None:
            states = states.filter(key=key)
        if version is not None:
            states = states.filter(version=version_text(version))
        for state in states.prefetch_related("items"):
            attrs = tuple(sorted(item.attribute for item in state.items.all()))
            if attrs:
                yield Entry(state.key, attrs, _yaml.load(state.description))

    def gc(self) -> int:
        """Delete data files no item refers to; return how many."""
        m = self._models()
        used = set(m.DataItem.objects.using(self.alias).values_list("path", flat=True))
        removed = 0
        for path in self.data_root_dir.glob("??/*"):
            rel = f"{path.parent.name}/{path.name}"
            if rel not in used and not path.name.startswith("."):
                path.unlink()
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


def _reopen(cls: type[DjangoORMDataStore], database: str | dict[str, Any] | None,
            data_root_dir: str, allow_pickle: bool) -> DjangoORMDataStore:
    return cls(database, data_root_dir, allow_pickle=allow_pickle, migrate=False)
