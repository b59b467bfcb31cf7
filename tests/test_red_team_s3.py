"""Session 3's new surfaces attacked: hostile blobs, hostile stores, hostile visitors.

Each test here failed on the code as merged and passes with the fix beside it. Real files,
real libraries, no mocks.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gitstore.codecs import codec_by_name, decode_bytes
from gitstore.errors import CorruptEntryError


def _netcdf() -> tuple[Any, Any]:
    pytest.importorskip("xarray")
    h5netcdf = pytest.importorskip("h5netcdf")
    h5py = pytest.importorskip("h5py")
    return h5netcdf, h5py


def _decode_nc(data: bytes) -> Any:
    return decode_bytes(codec_by_name("netcdf"), data)


# --- netCDF (HDF5) blobs that point outside themselves ------------------------------------

def test_netcdf_with_external_storage_does_not_read_a_file_outside_the_store(
        tmp_path: Path) -> None:
    """HDF5 lets a dataset keep its data in another file named by path: a blob from a remote
    naming /etc/passwd (or a private key) would hand that file's bytes out as a result."""
    h5netcdf, _ = _netcdf()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOP SECRET, outside the store!!!")
    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        f.dimensions["x"] = 32
        f.create_variable("v", ("x",), dtype="u1", external=[(str(secret), 0, 32)])
    with pytest.raises(CorruptEntryError, match="external"):
        _decode_nc(buf.getvalue())


def test_netcdf_with_an_external_link_does_not_open_another_file(tmp_path: Path) -> None:
    h5netcdf, h5py = _netcdf()
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["v"] = np.frombuffer(b"SECRET!!", dtype="u1")
    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        f.dimensions["x"] = 8
        f.create_variable("w", ("x",), data=np.zeros(8, "u1"))
    with h5py.File(buf, "r+") as raw:
        raw["g"] = h5py.ExternalLink(str(other), "/")
    with pytest.raises(CorruptEntryError, match="link"):
        _decode_nc(buf.getvalue())


def test_netcdf_with_a_virtual_dataset_does_not_read_another_file(tmp_path: Path) -> None:
    h5netcdf, h5py = _netcdf()
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["v"] = np.frombuffer(b"SECRET!!", dtype="u1")
    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        f.dimensions["x"] = 8
        f.create_variable("w", ("x",), data=np.zeros(8, "u1"))
    layout = h5py.VirtualLayout(shape=(8,), dtype="u1")
    layout[:] = h5py.VirtualSource(str(other), "v", shape=(8,))
    with h5py.File(buf, "r+") as raw:
        raw.create_virtual_dataset("vds", layout)
    with pytest.raises(CorruptEntryError, match="virtual"):
        _decode_nc(buf.getvalue())


# --- netCDF blobs that decode to far more than they hold -----------------------------------

@pytest.mark.parametrize("how", ["unwritten", "compressed"])
def test_tiny_netcdf_declaring_a_huge_variable_is_refused_before_it_is_loaded(how: str) -> None:
    """A few KiB that declare 256 MiB (never written: read as the fill value; or a gzip
    bomb): loading it would take the memory; it is refused from the declared sizes."""
    h5netcdf, _ = _netcdf()
    n = 32 << 20
    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        f.dimensions["x"] = n
        if how == "unwritten":
            f.create_variable("v", ("x",), dtype="f8", chunks=(1 << 20,))
        else:
            f.create_variable("v", ("x",), data=np.zeros(n), chunks=(1 << 20,),
                              compression="gzip", compression_opts=9)
    data = buf.getvalue()
    assert len(data) < 2 << 20
    with pytest.raises(CorruptEntryError, match="declares"):
        _decode_nc(data)


def test_netcdf_of_a_large_sparse_looking_dataset_still_round_trips(tmp_path: Path) -> None:
    """The size bound does not refuse what gitstore itself writes: a DataArray with a long
    dimension without coordinates (netCDF keeps a data-less dimension scale for it)."""
    xr = pytest.importorskip("xarray")
    _netcdf()
    from gitstore.codecs import encode_bytes

    value = xr.DataArray(np.arange(300_000, dtype="u1"), dims=["x"])
    codec, data = encode_bytes(value)
    assert codec.name == "netcdf"
    back = decode_bytes(codec, data)
    assert back.identical(value)


# --- the results browser -------------------------------------------------------------------

def test_sweep_sorted_by_a_column_of_integers_too_large_for_a_float(tmp_path: Path) -> None:
    """A parameter of 400 digits is a valid key; sorting the sweep by it raised
    OverflowError (float(10**400)) and the page was a 500."""
    pytest.importorskip("starlette")
    pytest.importorskip("jinja2")
    from components import SimpleComponent

    from gitstore import GitDataStore
    from gitstore.ui.app import Browser

    store = GitDataStore(tmp_path / "store")
    for n in (10**400, -10**400, 3, 2.5, float("nan")):
        store.store(SimpleComponent({"n": n}), "result", {"score": 1.0})
    browser = Browser(tmp_path / "store", tmp_path)
    for desc in ("", "1"):
        found = browser.sweep({"type": "components.SimpleComponent", "sort": "p:n",
                               "desc": desc})
        shown = [r["params"]["n"] for r in found["sweep"] if r["params"]["n"] == r["params"]["n"]]
        numbers = [-10**400, 2.5, 3, 10**400]
        assert shown == (numbers[::-1] if desc else numbers)


def test_plot_of_a_json_list_with_an_int_too_large_for_a_float(tmp_path: Path) -> None:
    """[10**400, 1] was offered as a line plot, and drawing it raised OverflowError (500)."""
    pytest.importorskip("starlette")
    pytest.importorskip("jinja2")
    from components import SimpleComponent

    from gitstore import GitDataStore
    from gitstore.errors import InvalidArgumentError
    from gitstore.ui.app import Browser

    store = GitDataStore(tmp_path / "store")
    c = SimpleComponent({"n": 1})
    store.store(c, "big", [10**400, 1])
    store.store(c, "fine", [1, 2.5])
    browser = Browser(tmp_path / "store", tmp_path)
    (entry,) = [e for e, _ in browser.store.entries_sized()]
    plots = {p["name"]: p["plots"] for p in browser.previews(entry)}
    assert plots["big"] == [] and plots["fine"]
    with pytest.raises(InvalidArgumentError):
        browser.plot(entry, "big", "")
    assert browser.plot(entry, "fine", "")[1] == "image/svg+xml"


def _forge_record(repo: Path, sizes: dict[str, int]) -> None:
    """Rewrite, in a bare store, every component.yaml's ``attributes`` record to claim
    ``sizes`` (as a hostile remote can: the record is plain text in its trees)."""
    from conftest import git

    from gitstore import _yaml

    for ref in git("--git-dir", str(repo), "for-each-ref", "--format=%(refname)",
                   "refs/").split():
        if "/versions/" not in ref and not ref.startswith("refs/heads/"):
            continue
        index = repo / "forge.index"
        env_git = ["--git-dir", str(repo)]
        os.environ["GIT_INDEX_FILE"] = str(index)
        try:
            git(*env_git, "read-tree", ref)
            for line in git(*env_git, "ls-files", "-s").splitlines():
                meta, path = line.split("\t", 1)
                if not path.endswith("component.yaml"):
                    continue
                blob = meta.split()[1]
                description = _yaml.load(git(*env_git, "cat-file", "blob", blob))
                for name, size in sizes.items():
                    description["attributes"][name]["size"] = size
                new = subprocess.run(["git", *env_git, "hash-object", "-w", "--stdin"],
                                     input=_yaml.dump(description).encode(),
                                     capture_output=True, check=True).stdout.decode().strip()
                git(*env_git, "update-index", "--cacheinfo", f"100644,{new},{path}")
            tree = git(*env_git, "write-tree").strip()
        finally:
            del os.environ["GIT_INDEX_FILE"]
        commit = git(*env_git, "commit-tree", tree, "-p", ref, "-m", "forged").strip()
        git(*env_git, "update-ref", ref, commit)


def test_browser_does_not_trust_a_remote_record_of_a_small_size(tmp_path: Path) -> None:
    """In a partial store the browser judged an absent blob by the size component.yaml
    records (the remote's word): a 300 kB JSON recorded as 10 bytes was fetched and decoded
    as a 'small' scalar result. It is now judged by its own size once it is here."""
    pytest.importorskip("starlette")
    pytest.importorskip("jinja2")
    from components import SimpleComponent
    from conftest import git
    from gitservers import git_daemon

    from gitstore import GitDataStore
    from gitstore.ui.app import Browser

    served = tmp_path / "served"
    served.mkdir()
    with GitDataStore(served / "results.git") as theirs:
        c = SimpleComponent({"n": 1}, version="v1")
        theirs.store(c, "liar", {"a": 1.5, "pad": "x" * 300_000})
        theirs.store(c, "honest", {"b": 2.5, "pad": "y" * 5_000})
    git("-C", str(served / "results.git"), "config", "uploadpack.allowFilter", "true")
    _forge_record(served / "results.git", {"liar": 10})
    with git_daemon(served) as prefix, GitDataStore(tmp_path / "ours") as ours:
        ours.remote_add("origin", prefix + "results.git")
        ours.pull("origin", filter="blob:limit=1k")
        browser = Browser(tmp_path / "ours", tmp_path)
        (entry,) = [e for e, _ in browser.store.entries_sized()]
        assert browser.store.attributes(entry)["liar"]["size"] == 10  # the remote's claim
        scalars = browser.scalars(entry)
        assert "honest.b" in scalars  # an absent small blob is still fetched and shown
        assert "liar.a" not in scalars
        previews = {p["name"]: p for p in browser.previews(entry)}
        assert previews["liar"]["size"] > 300_000  # its own size, once here


# --- Git LFS ---------------------------------------------------------------------------------

def test_lfs_copy_from_a_local_remote_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    """A store on this machine (a path remote, another user's) whose ``lfs/objects`` file is
    a FIFO: opening it blocked forever (no writer). Only regular files are read."""
    import hashlib
    import threading

    from gitstore._git.lfs import LfsStore, Pointer
    from gitstore.errors import RemoteError

    content = b"some content"
    pointer = Pointer(hashlib.sha256(content).hexdigest(), len(content))
    other = tmp_path / "other" / "lfs" / "objects"
    folder = other / pointer.oid[:2] / pointer.oid[2:4]
    folder.mkdir(parents=True)
    fifo = folder / pointer.oid
    os.mkfifo(fifo)
    ours = tmp_path / "ours.git"
    ours.mkdir()
    store = LfsStore(str(ours))
    outcome: list[BaseException | bool] = []

    def copy() -> None:
        try:
            outcome.append(store.copy_from(str(other), pointer, "remote x"))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock it (a writer opens the FIFO), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(20)
        pytest.fail("copy_from blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], RemoteError), outcome
    assert not store.has(pointer)


def test_index_page_of_a_large_store_is_bounded(tmp_path: Path) -> None:
    """The sweep page stops at ROW_LIMIT rows; the index page rendered every entry (100k
    entries: a page of tens of MB, built while the store lock is held). It shows the first
    ROW_LIMIT now, and says how many there are."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    import re
    import shutil
    import signal
    import sys
    import urllib.request

    from components import SimpleComponent

    from gitstore import GitDataStore
    from gitstore.ui.app import ROW_LIMIT

    total = ROW_LIMIT + 3
    with GitDataStore(tmp_path / "store") as store, store.batch():
        for i in range(total):
            store.store(SimpleComponent({"i": i}), "r", i)
    script = shutil.which("gitstore", path=os.path.dirname(sys.executable))
    assert script
    with subprocess.Popen([script, "--store", str(tmp_path / "store"), "ui", "--port", "0",
                           "--code-repo", str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stdout.readline())
            assert found
            with urllib.request.urlopen(found.group(1), timeout=120) as response:
                page = response.read().decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert page.count('<input type="checkbox" name="k"') == ROW_LIMIT
    assert f"{total} entries" in page and f"the first {ROW_LIMIT}" in page


# --- safetensors -----------------------------------------------------------------------------

def test_safetensors_header_is_bounded_by_what_gitstore_writes() -> None:
    """The header bound was safetensors' own 100 MiB: a blob of 100 MiB of small JSON
    metadata items decodes to gigabytes of Python objects. gitstore writes one tensor (its
    header is under 2 KiB: 64 dimensions at most): a header over 64 KiB is refused unread."""
    pytest.importorskip("torch", reason="torch is not installed (gitstore[torch])")
    import json
    import struct

    meta = {f"k{i}": "v" for i in range(20_000)}  # 260 kB of header: 20k Python objects
    header = json.dumps({"__metadata__": meta, "tensor": {
        "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (-len(header) % 8)
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 4
    with pytest.raises(CorruptEntryError, match="header"):
        decode_bytes(codec_by_name("safetensors"), data)
