"""Real git servers on 127.0.0.1 for the remote tests: git daemon and git's smart HTTP (served
by Apache with basic auth, or by Python running ``git http-backend`` as a CGI program)."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """``git daemon`` exporting every repository under ``base``, pushes allowed.
    Yields the URL prefix, e.g. ``git://127.0.0.1:PORT/``."""
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("git") or "git", "daemon", "--reuseaddr", "--export-all",
         "--enable=receive-pack", f"--base-path={base}", "--listen=127.0.0.1",
         f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"git://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _HttpBackend(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` (git's smart HTTP server) as a CGI program; with ``users``,
    every request needs basic auth (as Apache's ``Require valid-user``)."""

    base: Path
    users: dict[str, str] | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._run()

    def do_POST(self) -> None:  # noqa: N802
        self._run()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _authorized(self) -> str | None:
        """The user, or None after answering 401."""
        if self.users is None:
            return "tester"
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if self.users.get(user) == password and user:
                return user
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None

    def _run(self) -> None:
        user = self._authorized()
        if user is None:
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        env = {
            "GIT_PROJECT_ROOT": str(self.base), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": user, "REMOTE_ADDR": "127.0.0.1",
            "GIT_HTTP_RECEIVE_PACK": "1", "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        result = subprocess.run([shutil.which("git") or "git", "http-backend"], input=body,
                                env=env, capture_output=True)
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            name, _, value = line.decode().partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip(), 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


@contextmanager
def http_server(base: Path, users: dict[str, str] | None = None) -> Iterator[str]:
    """git's smart HTTP protocol (``git http-backend``) for repositories under ``base``,
    served by Python; ``users`` (``{name: password}``) turns on basic auth."""
    handler = type("Handler", (_HttpBackend,), {"base": base, "users": users})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
_APACHE_CONF = """
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
DefaultRuntimeDir "{root}"
Mutex file:{root} default
ErrorLog "{root}/error.log"
LogLevel warn
LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authn_file_module {modules}/mod_authn_file.so
LoadModule auth_basic_module {modules}/mod_auth_basic.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule env_module {modules}/mod_env.so
LoadModule cgi_module {modules}/mod_cgi.so
StartServers 2
MinSpareServers 2
MaxSpareServers 8
MaxRequestWorkers 32
Timeout 60
SetEnv GIT_PROJECT_ROOT "{base}"
SetEnv GIT_HTTP_EXPORT_ALL 1
SetEnv GIT_CONFIG_NOSYSTEM 1
SetEnv HOME "{root}"
ScriptAlias / "{backend}/"
<Location />
    AuthType Basic
    AuthName "git"
    AuthUserFile "{root}/htpasswd"
    Require valid-user
</Location>
"""


def _git_exec_path() -> str:
    return subprocess.run([shutil.which("git") or "git", "--exec-path"], capture_output=True,
                          text=True, check=True).stdout.strip()


def apache_available() -> str | None:
    """None when :func:`apache_server` can run here, else why not."""
    if not os.path.exists(APACHE):
        return "Apache (apache2) is not installed"
    if not os.path.exists(os.path.join(APACHE_MODULES, "mod_cgi.so")):
        return f"Apache's modules are not in {APACHE_MODULES}"
    if not os.path.exists(os.path.join(_git_exec_path(), "git-http-backend")):
        return "git-http-backend is not installed"
    if os.geteuid() == 0 and (shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-U", "true"], capture_output=True).returncode != 0):
        return "running as root, and no user namespace to run Apache unprivileged"
    return None


@contextmanager
def apache_server(base: Path, users: dict[str, str]) -> Iterator[str]:
    """Apache (Debian's apache2) serving git's smart HTTP (mod_cgi + ``git http-backend``)
    for the repositories under ``base``, on 127.0.0.1 at a free port, every request behind
    basic auth for ``users`` (``{name: password}``, an htpasswd file in ``{SHA}`` form).
    Unprivileged: its own ServerRoot in a temporary folder; as root (where Apache refuses
    to serve), inside a user namespace where it is nobody (``unshare -U``) yet still opens
    root's files. Yields the URL prefix, e.g. ``http://127.0.0.1:PORT/``.

    Raises:
        RuntimeError: Apache cannot run here (see :func:`apache_available`) or did not start.
    """
    why = apache_available()
    if why is not None:
        raise RuntimeError(why)
    root = Path(tempfile.mkdtemp(prefix="gitstore-apache-"))
    port = free_port()
    with open(root / "htpasswd", "w") as f:
        for user, password in users.items():
            digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
            f.write(f"{user}:{{SHA}}{digest}\n")
    (root / "httpd.conf").write_text(_APACHE_CONF.format(
        root=root, port=port, modules=APACHE_MODULES, base=Path(base).absolute(),
        backend=os.path.join(_git_exec_path(), "git-http-backend")))
    command = [APACHE, "-f", str(root / "httpd.conf"), "-DFOREGROUND"]
    if os.geteuid() == 0:
        command = ["unshare", "-U", *command]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    # its own session: Apache's parent, stopping, signals its whole process group
    with open(root / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
    try:
        try:
            wait_for_port(port)
        except RuntimeError:
            proc.kill()
            proc.wait()
            logs = " ".join((root / name).read_text(errors="replace")
                            for name in ("stderr.log", "error.log") if (root / name).exists())
            raise RuntimeError(f"Apache did not start: {logs}") from None
        yield f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def authenticated_http(base: Path, users: dict[str, str]) -> Iterator[str]:
    """Smart HTTP with basic auth: Apache where it can run (:func:`apache_server`), else
    Python serving ``git http-backend`` (:func:`http_server`) with the same rules."""
    server = apache_server(base, users) if apache_available() is None else \
        http_server(base, users)
    with server as prefix:
        yield prefix


def _pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def _read_pkt(conn: socket.socket) -> bytes | None:
    """One pkt-line (None for a flush, b"" at the end of the stream)."""
    head = b""
    while len(head) < 4:
        more = conn.recv(4 - len(head))
        if not more:
            return b""
        head += more
    size = int(head, 16)
    if size == 0:
        return None
    data = b""
    while len(data) < size - 4:
        more = conn.recv(size - 4 - len(data))
        if not more:
            return b""
        data += more
    return data


@contextmanager
def lying_server(refs: list[tuple[bytes, bytes]], pack: bytes, hang: bool = False
                 ) -> Iterator[str]:
    """A git:// server that says what it is told: it advertises ``refs`` (``(id, name)``,
    names as they are, however hostile) and answers every fetch with ``pack`` (built by the
    caller with real git, e.g. ``git pack-objects``), whatever was asked. Protocol v0, no
    capabilities. ``hang``: send the pack and then keep the connection open, saying nothing
    more (a stalled transfer). Yields the URL of its one repository."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                _read_pkt(conn)  # git-upload-pack /repo\0host=...\0
                lines = [_pkt(sha + b" " + name + (b"\x00\n" if i == 0 else b"\n"))
                         for i, (sha, name) in enumerate(refs)]
                conn.sendall(b"".join(lines) + b"0000")
                while True:
                    line = _read_pkt(conn)
                    if line == b"":
                        return  # the client wanted nothing and hung up
                    if line is not None and line.startswith(b"done"):
                        break
                conn.sendall(_pkt(b"NAK\n") + pack)
                if hang:
                    stop.wait(60)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"git://127.0.0.1:{listener.getsockname()[1]}/lies.git"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
