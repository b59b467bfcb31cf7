"""Installing gitstore's git hooks into a code repository, keeping the user's own hooks.

A hook the user already had is renamed ``<hook>.pre-gitstore``; gitstore's script runs it first
(with the same arguments and input) and keeps its exit status, so nothing the user relied on
stops working. ``uninstall`` puts it back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .component import open_code_repo
from .errors import StoreError

__all__ = ["MARKER", "hooks_dir", "install", "uninstall"]

MARKER = "# gitstore hook"
SAVED = ".pre-gitstore"


def hooks_dir(code_repo: str | os.PathLike[str]) -> Path:
    """The hooks folder of a repository (``core.hooksPath`` honoured).

    Raises:
        StoreError: ``code_repo`` is not in a git repository.
    """
    with open_code_repo(code_repo) as repo:
        try:
            custom = repo.get_config().get((b"core",), b"hooksPath").decode()
            base = Path(repo.path) if not repo.bare else Path(repo.controldir())
            return Path(base / os.path.expanduser(custom)).absolute()
        except KeyError:
            return Path(repo.controldir()) / "hooks"


def install(code_repo: str | os.PathLike[str], scripts: Mapping[str, str]) -> list[str]:
    """Install ``{hook name: script text}``; return the names installed.

    Raises:
        StoreError: not a repository, or a saved hook of an earlier install is in the way.
    """
    folder = hooks_dir(code_repo)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        target = folder / name
        if target.exists() and MARKER not in target.read_text(errors="replace"):
            saved = folder / (name + SAVED)
            if saved.exists():
                raise StoreError(f"both {target} and {saved} exist; move one of them away")
            os.replace(target, saved)
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, target)
    return sorted(scripts)


def uninstall(code_repo: str | os.PathLike[str], names: list[str]) -> list[str]:
    """Remove gitstore's hooks and restore the user's; return the names removed."""
    folder = hooks_dir(code_repo)
    removed = []
    for name in names:
        target = folder / name
        if target.exists() and MARKER in target.read_text(errors="replace"):
            target.unlink()
            removed.append(name)
            saved = folder / (name + SAVED)
            if saved.exists():
                os.replace(saved, target)
    return removed
