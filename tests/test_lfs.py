"""Large attributes as Git LFS objects: pointers in git, content in lfs/objects, moved through
a real LFS server (giftless on 127.0.0.1), read by the real git-lfs client (issue 15)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import SimpleComponent
from conftest import git
from gitservers import git_daemon

from gitstore import GitDataStore, key_of
from gitstore.errors import (
    CorruptEntryError,
    InvalidArgumentError,
    LfsObjectMissingError,
    NoLfsServerError,
    RemoteError,
)

needs_git_lfs = pytest.mark.skipif(shutil.which("git-lfs") is None, reason="needs git-lfs")
try:
    import giftless  # noqa: F401
    HAVE_GIFTLESS = True
except ImportError:  # pragma: no cover
    HAVE_GIFTLESS = False
needs_giftless = pytest.mark.skipif(not HAVE_GIFTLESS, reason="needs giftless (test extra)")

SPEC = "version https://git-lfs.github.com/spec/v1\n"


def tree_path(component: Any, name: str, version: str = "1.0") -> str:
    h = key_of(component).split(":")[1]
    return f"refs/gitstore/versions/{version}:{h[:2]}/{h[2:4]}/{h}/{name}"


def lfs_file(store: Path, oid: str) -> Path:
    return store / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def pointer_of(store: Path, component: Any, name: str, version: str = "1.0") -> tuple[str, int]:
    text = git("--git-dir", str(store), "cat-file", "blob", tree_path(component, name, version))
    lines = text.split("\n")
    assert text.startswith(SPEC) and len(lines) == 4 and lines[3] == "", text
    assert lines[1].startswith("oid sha256:") and lines[2].startswith("size ")
    return lines[1][len("oid sha256:"):], int(lines[2][5:])


def npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def replace_blob(gitdir: Path, ref: str, path: str, content: bytes) -> None:
    """Put ``content`` at ``path`` in a new commit on ``ref``, with git's own plumbing."""
    blob = subprocess.run(["git", "--git-dir", str(gitdir), "hash-object", "-w", "--stdin"],
                          input=content, capture_output=True, check=True).stdout.decode().strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(gitdir / "tmp-index")}
    run = {"capture_output": True, "text": True, "check": True, "env": env}
    subprocess.run(["git", "--git-dir", str(gitdir), "read-tree", ref], **run)  # type: ignore
    subprocess.run(["git", "--git-dir", str(gitdir), "update-index", "--cacheinfo",
                    f"100644,{blob},{path}"], **run)  # type: ignore[call-overload]
    tree = subprocess.run(["git", "--git-dir", str(gitdir), "write-tree"],
                          **run).stdout.strip()  # type: ignore[call-overload]
    commit = subprocess.run(["git", "--git-dir", str(gitdir), "commit-tree", tree, "-p", ref,
                             "-m", "hand-made"], **run).stdout.strip()  # type: ignore
    git("--git-dir", str(gitdir), "update-ref", ref, commit)
    os.unlink(gitdir / "tmp-index")


# --- item 1: pointers and the lfs/objects layout -----------------------------------------------

@needs_git_lfs
def test_large_attribute_is_a_pointer_and_git_lfs_reads_a_clone(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=4096)
    c = SimpleComponent({"a": 1})
    array = np.random.default_rng(0).random(10_000)
    s.store(c, "big", array)
    s.store(c, "small", np.arange(10))
    oid, size = pointer_of(tmp_path / "s", c, "big.npy")
    content = npy_bytes(array)
    assert size == len(content) and oid == hashlib.sha256(content).hexdigest()
    assert lfs_file(tmp_path / "s", oid).read_bytes() == content  # a plain .npy
    small = subprocess.run(["git", "--git-dir", str(tmp_path / "s"), "cat-file", "blob",
                            tree_path(c, "small.npy")], capture_output=True, check=True).stdout
    assert small == npy_bytes(np.arange(10))  # small: in git
    np.testing.assert_array_equal(GitDataStore(tmp_path / "s").retrieve(c, "big"), array)
    assert s.attributes(key_of(c))["big"]["size"] == len(content)
    git("--git-dir", str(tmp_path / "s"), "fsck", "--strict")
    # the real git-lfs client fetches the content from a clone's file:// remote
    clone = tmp_path / "clone"
    git("init", "-q", str(clone))
    git("-C", str(clone), "remote", "add", "origin", (tmp_path / "s").as_uri())
    git("-C", str(clone), "fetch", "-q", "origin", "refs/gitstore/*:refs/gitstore/*")
    git("-C", str(clone), "lfs", "fetch", "origin", "refs/gitstore/versions/1.0")
    assert lfs_file(clone / ".git", oid).read_bytes() == content
    pointer = git("-C", str(clone), "cat-file", "blob", tree_path(c, "big.npy"))
    smudged = subprocess.run(["git", "-C", str(clone), "lfs", "smudge"], input=pointer.encode(),
                             capture_output=True, check=True).stdout
    assert smudged == content


def test_threshold_is_configurable_per_store(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s")
    git("--git-dir", str(tmp_path / "s"), "config", "gitstore.lfsThreshold", "1k")
    s = GitDataStore(tmp_path / "s")
    assert s.lfs_threshold == 1024
    c = SimpleComponent({"a": 2})
    s.store(c, "large", b"x" * 2000)
    s.store(c, "little", b"y" * 500)
    assert pointer_of(tmp_path / "s", c, "large.bin")[1] == 2000
    assert git("--git-dir", str(tmp_path / "s"), "cat-file", "blob",
               tree_path(c, "little.bin")) == "y" * 500
    git("--git-dir", str(tmp_path / "s"), "config", "gitstore.lfsThreshold", "off")
    assert GitDataStore(tmp_path / "s").lfs_threshold is None
    with pytest.raises(InvalidArgumentError):
        GitDataStore(tmp_path / "s", lfs_threshold=-1)


def test_a_payload_that_looks_like_a_pointer_round_trips(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=None)
    c = SimpleComponent({"a": 3})
    tricky = (SPEC + "oid sha256:" + "0" * 64 + "\nsize 5\n").encode()
    s.store(c, "x", tricky)
    assert GitDataStore(tmp_path / "s").retrieve(c, "x") == tricky
    oid, size = pointer_of(tmp_path / "s", c, "x.bin")  # kept unambiguous: it went to LFS
    assert size == len(tricky) and lfs_file(tmp_path / "s", oid).read_bytes() == tricky


def test_a_malformed_pointer_is_a_damaged_entry(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=16)
    c = SimpleComponent({"a": 4})
    s.store(c, "x", b"z" * 100)
    h = key_of(c).split(":")[1]
    bad = (SPEC + "oid sha256:" + "XY" * 32 + "\nsize 12\n").encode()  # not lowercase hex
    replace_blob(tmp_path / "s", "refs/gitstore/versions/1.0", f"{h[:2]}/{h[2:4]}/{h}/x.bin",
                 bad)
    again = GitDataStore(tmp_path / "s")
    with pytest.raises(CorruptEntryError) as info:
        again.retrieve(c, "x")
    assert info.value.key == key_of(c)
    assert again.attributes(key_of(c))["x"]["size"] is None  # listing goes on
    assert [e.key for e in again.entries()] == [key_of(c)]
    problems = again.verify()
    assert len(problems) == 1 and "malformed Git LFS pointer" in problems[0]


def test_damaged_content_is_caught_and_verify_rehashes_everything(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=1024)
    c = SimpleComponent({"a": 5})
    array = np.random.default_rng(1).random(5000)
    s.store(c, "big", array)
    oid, _size = pointer_of(tmp_path / "s", c, "big.npy")
    path = lfs_file(tmp_path / "s", oid)
    np.testing.assert_array_equal(s.retrieve(c, "big"), array)  # recorded as verified
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(CorruptEntryError) as info:  # the write changed its ctime: re-hashed
        GitDataStore(tmp_path / "s").retrieve(c, "big")
    assert info.value.key == key_of(c)
    # damage the record cannot see (as bit rot would): loads trust it, verify does not
    st = path.stat()
    record = tmp_path / "s" / "gitstore" / "lfs-verified" / oid
    record.write_text(f"{st.st_ino} {st.st_size} {st.st_ctime_ns} {st.st_mtime_ns}\n")
    problems = GitDataStore(tmp_path / "s").verify()
    assert len(problems) == 1 and oid in problems[0]


def test_mmap_mode_gives_a_read_only_map(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=1024)
    c = SimpleComponent({"a": 6})
    array = np.random.default_rng(2).random((300, 40))
    s.store(c, "big", array)
    s.store(c, "small", np.arange(5))
    mapped = GitDataStore(tmp_path / "s").retrieve(c, "big", mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, array)
    np.testing.assert_array_equal(s.retrieve(c, "small", mmap_mode="r"), np.arange(5))
    assert s.retrieve(SimpleComponent({"a": 0}), "big", "absent", mmap_mode="r") == "absent"
    with pytest.raises(InvalidArgumentError):
        s.retrieve(c, "big", mmap_mode="r+")


def test_checkout_writes_the_content(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=1024)
    c = SimpleComponent({"a": 7})
    array = np.arange(2000.0)
    s.store(c, "big", array)
    s.checkout("1.0", tmp_path / "out")
    (npy,) = (tmp_path / "out").rglob("big.npy")
    np.testing.assert_array_equal(np.load(npy), array)


def test_gc_keeps_what_any_version_references(tmp_path: Path) -> None:
    s = GitDataStore(tmp_path / "s", lfs_threshold=1024)
    old, new, other = (np.full(1000, float(i)) for i in range(3))
    s.store(SimpleComponent({"a": 8}), "x", old)
    s.store(SimpleComponent({"a": 8}), "x", new)  # old stays in the version's history
    s.store(SimpleComponent({"a": 9}, version="2.0"), "x", other)
    oids = {name: hashlib.sha256(npy_bytes(a)).hexdigest()
            for name, a in (("old", old), ("new", new), ("other", other))}
    s.prune(["2.0"])
    s.gc()
    assert lfs_file(tmp_path / "s", oids["old"]).exists()
    assert lfs_file(tmp_path / "s", oids["new"]).exists()
    assert not lfs_file(tmp_path / "s", oids["other"]).exists()  # only a pruned version had it
    np.testing.assert_array_equal(s.retrieve(SimpleComponent({"a": 8}), "x"), new)


# --- item 2: transfer ---------------------------------------------------------------------------

def test_path_remote_keeps_the_objects_in_its_own_lfs(tmp_path: Path) -> None:
    a = GitDataStore(tmp_path / "a", lfs_threshold=1024)
    c = SimpleComponent({"a": 10})
    array = np.random.default_rng(3).random(4000)
    a.store(c, "big", array)
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    a.push(str(remote))
    oid, _ = pointer_of(tmp_path / "a", c, "big.npy")
    assert lfs_file(remote, oid).read_bytes() == npy_bytes(array)
    b = GitDataStore(tmp_path / "b", lfs_threshold=1024)
    b.pull(remote.as_uri())
    assert not lfs_file(tmp_path / "b", oid).exists()  # pointers only
    np.testing.assert_array_equal(b.retrieve(c, "big"), array)  # content on first read
    assert lfs_file(tmp_path / "b", oid).exists()
    assert b.verify() == []


def test_content_missing_everywhere_is_a_typed_error(tmp_path: Path) -> None:
    a = GitDataStore(tmp_path / "a", lfs_threshold=1024)
    c = SimpleComponent({"a": 11})
    a.store(c, "big", np.arange(1000.0))
    b = GitDataStore(tmp_path / "b")
    b.pull(str(tmp_path / "a"))
    oid, _ = pointer_of(tmp_path / "a", c, "big.npy")
    shutil.rmtree(tmp_path / "a" / "lfs")
    with pytest.raises(LfsObjectMissingError) as info:
        b.retrieve(c, "big")
    assert info.value.oid == oid
    assert b.verify() == []  # absent is not corrupt


@contextmanager
def lfs_and_git(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A git daemon (remote ``remote.git``) and a giftless LFS server: (git URL, LFS URL,
    giftless's storage folder)."""
    from lfs_server import giftless_server

    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "remote.git"))
    with git_daemon(base) as daemon, giftless_server(tmp_path / "lfs-storage") as lfs:
        yield daemon + "remote.git", lfs + "/org/repo.git/info/lfs", tmp_path / "lfs-storage"


@needs_giftless
@needs_git_lfs
def test_push_through_an_lfs_server_and_git_lfs_reads_it(tmp_path: Path) -> None:
    with lfs_and_git(tmp_path) as (url, endpoint, storage):
        a = GitDataStore(tmp_path / "a", lfs_threshold=1024)
        git("--git-dir", str(tmp_path / "a"), "config", "lfs.url", endpoint)
        c = SimpleComponent({"a": 12})
        arrays = [np.random.default_rng(i).random(3000) for i in range(3)]
        for i, array in enumerate(arrays):
            a.store(c, f"big{i}", array)
        a.remote_add("origin", url)
        a.push("origin")
        oids = [pointer_of(tmp_path / "a", c, f"big{i}.npy")[0] for i in range(3)]
        stored = {p.name: p for p in storage.rglob("*") if p.is_file()}
        assert set(oids) <= set(stored)  # giftless has the content
        assert stored[oids[0]].read_bytes() == npy_bytes(arrays[0])
        # a second push sends nothing again (the server has them), and succeeds
        a.store(SimpleComponent({"a": 13}), "small", 1)
        a.push("origin")
        # another store with the same content: the server says it has it, nothing is sent
        mtimes = {p: p.stat().st_mtime_ns for p in storage.rglob("*") if p.is_file()}
        twin = GitDataStore(tmp_path / "twin", lfs_threshold=1024)
        git("--git-dir", str(tmp_path / "twin"), "config", "lfs.url", endpoint)
        twin = GitDataStore(tmp_path / "twin", lfs_threshold=1024)
        twin.store(SimpleComponent({"a": 12}, version="2.0"), "big0", arrays[0])
        twin.push(url)
        assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
        # the real git-lfs client, in a git clone of what gitstore pushed
        clone = tmp_path / "clone"
        git("clone", "-q", url, str(clone))
        git("-C", str(clone), "fetch", "-q", "origin", "refs/gitstore/*:refs/gitstore/*")
        git("-C", str(clone), "config", "lfs.url", endpoint)
        git("-C", str(clone), "lfs", "fetch", "origin", "refs/gitstore/versions/1.0")
        for oid, array in zip(oids, arrays):
            assert lfs_file(clone / ".git", oid).read_bytes() == npy_bytes(array)
        # another store: pointers on fetch, content on first retrieve
        b = GitDataStore(tmp_path / "b", lfs_threshold=1024)
        git("--git-dir", str(tmp_path / "b"), "config", "lfs.url", endpoint)
        b = GitDataStore(tmp_path / "b", lfs_threshold=1024)
        b.pull(url)
        assert not any(lfs_file(tmp_path / "b", oid).exists() for oid in oids)
        np.testing.assert_array_equal(b.retrieve(c, "big1"), arrays[1])
        assert lfs_file(tmp_path / "b", oids[1]).exists()
        assert not lfs_file(tmp_path / "b", oids[0]).exists()
        # or eagerly
        e = GitDataStore(tmp_path / "e")
        git("--git-dir", str(tmp_path / "e"), "config", "lfs.url", endpoint)
        e = GitDataStore(tmp_path / "e")
        e.pull(url, lfs_content=True)
        assert all(lfs_file(tmp_path / "e", oid).exists() for oid in oids)


def test_a_remote_without_lfs_server_is_a_typed_error(tmp_path: Path) -> None:
    base = tmp_path / "served"
    base.mkdir()
    git("init", "-q", "--bare", str(base / "remote.git"))
    a = GitDataStore(tmp_path / "a", lfs_threshold=1024)
    a.store(SimpleComponent({"a": 14}), "big", np.arange(1000.0))
    with git_daemon(base) as daemon:
        # git-lfs's rule for git:// gives https://127.0.0.1/remote.git/info/lfs: nobody there
        with pytest.raises(NoLfsServerError) as info:
            a.push(daemon + "remote.git")
        assert "info/lfs" in str(info.value)
    assert git("--git-dir", str(base / "remote.git"), "for-each-ref") == ""  # nothing pushed


class _Liar(BaseHTTPRequestHandler):
    """An LFS server that answers batches properly and serves the wrong bytes."""

    content = b""
    mode = "wrong"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "garbage":
            answer = b"{\"objects\": 5}"
        else:
            objects = [{"oid": o["oid"], "size": o["size"], "actions": {"download": {
                "href": f"http://127.0.0.1:{self.server.server_address[1]}/o/{o['oid']}"}}}
                for o in body["objects"]]
            answer = json.dumps({"transfer": "basic", "objects": objects}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.git-lfs+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        data = self.content[::-1] if self.mode == "wrong" else self.content * 50
        self.send_response(200)
        self.end_headers()  # no Content-Length: the size is bounded by the pointer's
        self.wfile.write(data)


@pytest.mark.parametrize("mode", ["wrong", "endless", "garbage"])
def test_hostile_lfs_server_content_is_refused(tmp_path: Path, mode: str) -> None:
    a = GitDataStore(tmp_path / "a", lfs_threshold=1024)
    c = SimpleComponent({"a": 15})
    array = np.random.default_rng(4).random(2000)
    a.store(c, "big", array)
    b = GitDataStore(tmp_path / "b")
    b.pull(str(tmp_path / "a"))
    shutil.rmtree(tmp_path / "a" / "lfs")
    handler = type("Handler", (_Liar,), {"content": npy_bytes(array), "mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        git("--git-dir", str(tmp_path / "b"), "config", "lfs.url",
            f"http://127.0.0.1:{server.server_address[1]}/r.git/info/lfs")
        with pytest.raises(RemoteError) as info:
            GitDataStore(tmp_path / "b").retrieve(c, "big")
        assert "refused" in str(info.value) or "malformed" in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
    kept = [p for p in (tmp_path / "b" / "lfs").rglob("*") if p.is_file()] \
        if (tmp_path / "b" / "lfs").exists() else []
    assert kept == []  # nothing kept, nothing half-kept


def test_cli_pull_with_lfs_content_downloads_now(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gitstore_cli.main import app

    a = GitDataStore(tmp_path / "a", lfs_threshold=1024)
    c = SimpleComponent({"a": 16})
    a.store(c, "big", np.arange(1000.0))
    oid, _ = pointer_of(tmp_path / "a", c, "big.npy")
    GitDataStore(tmp_path / "b")
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "b"), "pull", str(tmp_path / "a"),
                                      "--lfs-content"])
    assert result.exit_code == 0, result.output
    assert lfs_file(tmp_path / "b", oid).exists()
    stats = GitDataStore(tmp_path / "b").stats()
    assert stats["lfs_objects"] == 1 and stats["lfs_bytes"] == 8128


def test_endpoint_follows_git_lfs_rules(tmp_path: Path) -> None:
    from dulwich.config import ConfigFile

    from gitstore._git.lfs import endpoint_for

    assert endpoint_for("https://host/org/repo.git", [], None, False) == \
        ("http", "https://host/org/repo.git/info/lfs")
    assert endpoint_for("https://u:p@host/org/repo", [], None, False) == \
        ("http", "https://u:p@host/org/repo.git/info/lfs")
    assert endpoint_for("git://host:9418/repo.git", [], None, False) == \
        ("http", "https://host/repo.git/info/lfs")
    assert endpoint_for("git@host:org/repo.git", [], None, True) == \
        ("http", "https://host/org/repo.git/info/lfs")
    remote = tmp_path / "r.git"
    git("init", "-q", "--bare", str(remote))
    assert endpoint_for(remote.as_uri(), [], None, False) == ("local", str(remote))
    assert endpoint_for(str(remote), [], None, False) == ("local", str(remote))
    config = tmp_path / "config"
    config.write_text('[remote "origin"]\n\tlfsurl = https://a/lfs\n')
    lfsconfig = tmp_path / ".lfsconfig"
    lfsconfig.write_text("[lfs]\n\turl = https://b/lfs\n\tpushurl = https://c/lfs\n")
    configs = [ConfigFile.from_path(str(config)), ConfigFile.from_path(str(lfsconfig))]
    # lfs.url (even from .lfsconfig) wins over remote.<name>.lfsurl; lfs.pushurl for uploads
    assert endpoint_for(str(remote), configs, "origin", False) == ("http", "https://b/lfs")
    assert endpoint_for(str(remote), configs, "origin", True) == ("http", "https://c/lfs")
    assert endpoint_for(str(remote), configs[:1], "origin", False) == ("http", "https://a/lfs")
    assert endpoint_for(str(remote), configs[:1], "other", False) == ("local", str(remote))


def test_lfsconfig_in_a_store_inside_a_work_tree(tmp_path: Path) -> None:
    code = tmp_path / "code"
    git("init", "-q", str(code))
    (code / ".lfsconfig").write_text("[lfs]\n\turl = http://127.0.0.1:9/nothing/info/lfs\n")
    s = GitDataStore(code, lfs_threshold=1024)
    s.store(SimpleComponent({"a": 17}), "big", np.arange(1000.0))
    remote = tmp_path / "r.git"
    git("init", "-q", "--bare", str(remote))
    with pytest.raises(NoLfsServerError) as info:  # .lfsconfig named a server: nobody there
        s.push(str(remote))
    assert info.value.endpoint == "http://127.0.0.1:9/nothing/info/lfs"


def test_chunked_bodies_are_decoded_and_bounded() -> None:
    import io

    from gitstore._git.lfs import _dechunked

    def body(*chunks: bytes) -> io.BufferedReader:
        raw = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        return io.BufferedReader(io.BytesIO(raw))

    pieces = [os.urandom(n) for n in (1, 300, 70_000, 5)] * 20
    assert b"".join(_dechunked(body(*pieces), 10**9)) == b"".join(pieces)
    # more than the pointer's size: one byte beyond it is handed on (for the caller to refuse)
    assert len(b"".join(_dechunked(body(b"a" * 100, b"b" * 100), 150))) == 151
    for bad in (b"zz\r\nab\r\n0\r\n\r\n", b"2\r\nabc\r\n0\r\n\r\n", b"5\r\nab"):
        with pytest.raises(ValueError):
            b"".join(_dechunked(io.BufferedReader(io.BytesIO(bad)), 100))
