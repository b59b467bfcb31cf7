"""Real git servers on 127.0.0.1 for the remote tests: git daemon and git's smart HTTP."""

from __future__ import annotations

import os
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
    """Runs ``git http-backend`` (git's smart HTTP server) as a CGI program."""

    base: Path

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._run()

    def do_POST(self) -> None:  # noqa: N802
        self._run()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _run(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        env = {
            "GIT_PROJECT_ROOT": str(self.base), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "tester", "REMOTE_ADDR": "127.0.0.1",
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
def http_server(base: Path) -> Iterator[str]:
    """git's smart HTTP protocol (``git http-backend``) for repositories under ``base``."""
    handler = type("Handler", (_HttpBackend,), {"base": base})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


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
