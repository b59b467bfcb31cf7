"""Credentials for HTTP(S) remotes, found where git finds them (plumbing).

In git's order: a password in the URL (discouraged: see :func:`has_password`), then
``~/.netrc`` (``$NETRC``), as git's curl reads it before asking; then, when the server answers
401, git's credential helpers through ``git credential fill`` (which honours every
``credential.helper`` of the store's and the user's config: ``store``, ``cache``, ``osxkeychain``,
``libsecret``... and prompts on a terminal when one is attached), ``approve`` after a success
and ``reject`` after a refusal, as git does. See git-credential(1) and gitcredentials(7).

A password never leaves this module except to the HTTP client and to ``git credential``'s
standard input: :func:`redact` masks URLs for every message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = ["Credential", "approve", "fill", "from_netrc", "has_password", "helper_configured",
           "reject", "split_url", "strip_password"]

#: seconds ``git credential`` may take when nobody can answer a prompt
TIMEOUT = 30.0


@dataclass(frozen=True)
class Credential:
    """A user name and password for one remote; ``source`` says where it was found."""

    protocol: str
    host: str  # with the port, as git's credential protocol wants it
    path: str
    username: str
    password: str = field(repr=False)
    source: str = "helper"

    def describe(self) -> bytes:
        """The credential in git's credential protocol (``key=value`` lines)."""
        lines = [f"protocol={self.protocol}", f"host={self.host}"]
        if self.path:
            lines.append(f"path={self.path}")
        lines += [f"username={self.username}", f"password={self.password}"]
        return ("\n".join(lines) + "\n\n").encode()


def _netloc(parts: object) -> str:
    host = getattr(parts, "hostname", None) or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = getattr(parts, "port", None)
    return f"{host}:{port}" if port else host


def split_url(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user and password, user, password)``, user and password unquoted."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit(parts._replace(netloc=_netloc(parts))), user, password


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``scheme://user:password@host``)."""
    return "://" in url and split_url(url)[2] is not None


def strip_password(url: str) -> str:
    """``url`` with its password removed and its user kept (``http://user@host/...``)."""
    clean, user, password = split_url(url)
    if password is None:
        return url
    parts = urlsplit(clean)
    netloc = (quote(user, safe="") + "@" if user else "") + parts.netloc
    return urlunsplit(parts._replace(netloc=netloc))


def from_netrc(host: str) -> tuple[str, str] | None:
    """``(login, password)`` of ``host`` in ``$NETRC`` or ``~/.netrc``, else None (also when
    the file is unreadable, malformed, or readable by others: Python's netrc refuses it)."""
    import netrc

    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        found = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    if not found or not found[2]:
        return None
    return found[0] or "", found[2]


def _git(gitdir: str | None, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes] | None:
    git = shutil.which("git")
    if git is None:
        return None
    command = [git] + (["--git-dir", gitdir] if gitdir else []) + list(args)
    env = dict(os.environ)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:  # nobody to answer git's prompt: fail instead of waiting
        env["GIT_TERMINAL_PROMPT"] = "0"
    try:
        return subprocess.run(command, input=data, capture_output=True, env=env,
                              timeout=None if interactive else TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None


def helper_configured(gitdir: str | None) -> bool:
    """Whether a ``credential.helper`` is configured for the store (its config or the
    user's); an empty value clears the list, as in git."""
    result = _git(gitdir, "config", "--get-all", "credential.helper")
    if result is None or result.returncode != 0:
        return False
    helpers: list[str] = []
    for line in result.stdout.decode(errors="replace").splitlines():
        helpers = [] if not line.strip() else helpers + [line]
    return bool(helpers)


def _request(url: str, username: str | None) -> Credential:
    parts = urlsplit(url)
    return Credential(parts.scheme, _netloc(parts), parts.path.lstrip("/"), username or "", "")


def fill(gitdir: str | None, url: str, username: str | None = None) -> Credential | None:
    """Ask git's credential helpers (``git credential fill``) for ``url``; None when none
    answers (no helper, no terminal to prompt on, no git)."""
    asked = _request(url, username)
    lines = [f"protocol={asked.protocol}", f"host={asked.host}"]
    if asked.path:
        lines.append(f"path={asked.path}")
    if username:
        lines.append(f"username={username}")
    result = _git(gitdir, "credential", "fill", data=("\n".join(lines) + "\n\n").encode())
    if result is None or result.returncode != 0:
        return None
    answer: dict[str, str] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            answer[key] = value
    if "password" not in answer:
        return None
    return Credential(asked.protocol, asked.host, asked.path,
                      answer.get("username", username or ""), answer["password"], "helper")


def approve(gitdir: str | None, credential: Credential) -> None:
    """Tell the helpers the credential worked (``git credential approve``: ``store`` saves
    it)."""
    _git(gitdir, "credential", "approve", data=credential.describe())


def reject(gitdir: str | None, credential: Credential) -> None:
    """Tell the helpers the credential was refused (``git credential reject``: erased)."""
    _git(gitdir, "credential", "reject", data=credential.describe())


def store_password(gitdir: str | None, url: str) -> bool:
    """Hand the password of ``url`` to the configured helpers (``approve``); False when no
    helper is configured (nothing is stored then)."""
    clean, user, password = split_url(url)
    if password is None or not helper_configured(gitdir):
        return False
    asked = _request(clean, user)
    approve(gitdir, Credential(asked.protocol, asked.host, asked.path, user or "", password,
                               "url"))
    return True
