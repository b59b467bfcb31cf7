"""A store on a network file system warns at open (issue 15 item 8)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from gitstore import GitDataStore
from gitstore._git import filesystem
from gitstore._git.filesystem import filesystem_from_mounts, network_filesystem, statfs_type
from gitstore.errors import NetworkFilesystemWarning

MOUNTS = """\
proc /proc proc rw,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /scratch tmpfs rw 0 0
fileserver:/export/home /home nfs4 rw,relatime,vers=4.2,local_lock=none 0 0
10.0.0.1@o2ib:/lustre /lustre lustre rw,flock 0 0
user@host:/data /mnt/my\\040data fuse.sshfs rw,nosuid 0 0
/dev/sdb1 /home/local ext4 rw 0 0
"""


@pytest.mark.parametrize("path, expected", [
    ("/home/alice/results", ("/home", "nfs4")),
    ("/home/local/store", ("/home/local", "ext4")),  # the longest mount point wins
    ("/homework", ("/", "ext4")),  # a prefix of a name is not a parent folder
    ("/lustre/project/store", ("/lustre", "lustre")),
    ("/mnt/my data/store", ("/mnt/my data", "fuse.sshfs")),  # \040 is a space
    ("/scratch", ("/scratch", "tmpfs")),
])
def test_the_mount_holding_a_path_is_found_in_proc_mounts(path: str,
                                                          expected: tuple[str, str]) -> None:
    assert filesystem_from_mounts(path, MOUNTS) == expected


def test_statfs_tells_local_file_systems(tmp_path: Path) -> None:
    if statfs_type(str(tmp_path)) is None:
        pytest.skip("statfs(2) is Linux's")
    assert network_filesystem(str(tmp_path)) is None
    if os.path.isdir("/dev/shm"):
        assert statfs_type("/dev/shm") == 0x01021994  # TMPFS_MAGIC
        assert network_filesystem("/dev/shm") is None


def test_a_store_on_nfs_warns_at_open_and_the_warning_can_be_turned_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No NFS server here: the file system's magic number is the NFS one (statfs is the one
    thing replaced); everything else is the real open path."""
    GitDataStore(tmp_path / "s").close()  # on a local disk: no warning (warnings are errors)
    monkeypatch.setattr(filesystem, "statfs_type", lambda path: 0x6969)  # NFS_SUPER_MAGIC
    with pytest.warns(NetworkFilesystemWarning, match=r"network file system \(nfs\).*"
                      "store per node on local disk"):
        GitDataStore(tmp_path / "s").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GitDataStore(tmp_path / "s", network_ok=True).close()
        monkeypatch.setenv("GITSTORE_NETWORK_OK", "1")
        GitDataStore(tmp_path / "s").close()
