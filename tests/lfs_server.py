"""A real Git LFS server for the tests: giftless (local storage) on 127.0.0.1.

``python lfs_server.py STORAGE_DIR`` serves until killed and prints its port on the first line;
:func:`giftless_server` runs it for a test. The endpoint of repository ``org/repo`` is
``http://127.0.0.1:<port>/org/repo.git/info/lfs``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def giftless_server(storage: Path) -> Iterator[str]:
    """Run giftless (anonymous read-write, local storage in ``storage``); yields its base URL."""
    proc = subprocess.Popen([sys.executable, __file__, str(storage)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _serve(storage: str) -> None:
    os.environ["GIFTLESS_CONFIG_STR"] = json.dumps({
        "LEGACY_ENDPOINTS": False,
        # anyone; the actions carry giftless's own pre-authorized tokens (JWTs, whose anonymous
        # "sub": null PyJWT >= 2.10 refuses: the test extra pins pyjwt < 2.10)
        "AUTH_PROVIDERS": ["giftless.auth.allow_anon:read_write"],
        "TRANSFER_ADAPTERS": {"basic": {"options": {"storage_options": {"path": storage}}}},
    })
    import warnings

    warnings.simplefilter("ignore")
    from giftless.wsgi_entrypoint import app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve(sys.argv[1])
