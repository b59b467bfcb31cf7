"""``core.sharedRepository``: file modes for a store shared by a group, as git sets them.

git reads ``core.sharedRepository`` (``umask``/``false``, ``group``/``true``, ``all``/
``world``/``everybody``, or an octal mode such as ``0660``) and, after creating a file or a
folder in the repository, widens its mode (``adjust_shared_perm`` in git's ``path.c``): group
(and for ``all`` others) get what the owner has, write excepted for ``all``'s others; folders get
the set-group-id bit so what is created in them belongs to the repository's group. gitstore does
the same for every file and folder it creates, so each member of the group can store.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

__all__ = ["Adjust", "makedirs", "shared_adjuster"]

Adjust = Callable[[str], None]


def _read_setting(gitdir: str) -> str | None:
    try:
        path = os.path.join(gitdir, "config")
        with open(path, "rb") as f:
            if b"sharedrepository" not in f.read().lower():
                return None  # not set (every open pays this, not a parse of the file)
        from dulwich.config import ConfigFile

        config = ConfigFile.from_path(path)
        value = config.get((b"core",), b"sharedRepository")
    except (OSError, KeyError, ValueError):
        return None
    return value.decode("utf-8", "replace").strip()


def parse(value: str | None) -> tuple[int, bool] | None:
    """``(mode bits, replace)`` for a setting, or None when the umask alone decides."""
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("", "umask", "false", "no", "off", "0"):
        return None
    if lowered in ("group", "true", "yes", "on", "1"):
        return 0o660, False
    if lowered in ("all", "world", "everybody", "2"):
        return 0o664, False
    try:
        mode = int(value, 8)
    except ValueError:
        return None  # git refuses to run; we keep the umask rather than guess
    if mode & 0o600 != 0o600:  # git: "problem with core.sharedRepository filemode value"
        return None
    return mode & 0o666, True


def _calc(mode: int, tweak: int, replace: bool) -> int:
    if not mode & stat.S_IWUSR:
        tweak &= ~0o222
    if mode & stat.S_IXUSR:
        tweak |= (tweak & 0o444) >> 2
    if replace:
        return (mode & ~0o777) | tweak
    return mode | tweak


def shared_adjuster(gitdir: str) -> Adjust | None:
    """A function that gives a path of ``gitdir`` the mode ``core.sharedRepository`` asks
    for, or None when the setting is absent (the umask decides, as in git)."""
    setting = parse(_read_setting(gitdir))
    if setting is None:
        return None
    tweak, replace = setting

    def adjust(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            return  # only the owner may chmod; another member made it shared already
        old = stat.S_IMODE(st.st_mode)
        new = _calc(old, tweak, replace)
        if stat.S_ISDIR(st.st_mode):
            new |= (new & 0o444) >> 2
            if new & 0o060:
                new |= stat.S_ISGID
        if new != old:
            os.chmod(path, new)

    return adjust


def makedirs(path: str, adjust: Adjust | None) -> None:
    """``os.makedirs(path, exist_ok=True)``; each folder it makes gets ``adjust``-ed."""
    if adjust is None or os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        return
    parent = os.path.dirname(path)
    if parent != path:
        makedirs(parent, adjust)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    adjust(path)
