"""Which file system a store is on: network file systems (NFS, Lustre, ...) are not safe for
concurrent writers on several machines (plumbing).

gitstore's writers rely on ``flock`` and on ``rename`` being atomic and immediately visible;
on NFS, ``flock`` is emulated with byte-range locks (or local only, with ``local_lock``),
attribute caching lets another client see stale refs for seconds, and Lustre's locking depends
on its mount options. One machine writing is fine; several are not supported. The supported
pattern on a cluster: a store per node on local disk, each pushing to a central remote.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["NETWORK_TYPES", "filesystem_from_mounts", "network_filesystem", "statfs_type"]

#: statfs ``f_type`` magic numbers of network and cluster file systems (linux/magic.h and
#: the file systems' own sources)
NETWORK_MAGIC = {
    0x6969: "nfs",
    0x0BD00BD0: "lustre",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x517B: "smb",
    0x564C: "ncpfs",
    0x6B414653: "afs",
    0x5346414F: "openafs",
    0x73757245: "coda",
    0x47504653: "gpfs",
    0x00C36400: "ceph",
    0x19830326: "beegfs",
    0xAAD7AAEA: "panfs",
    0x013111A8: "ibrix",
    0x01161970: "gfs2",
    0x7461636F: "ocfs2",
}

#: /proc/mounts types of network and cluster file systems (FUSE ones as ``fuse.<name>``)
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "lustre", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "gpfs", "ceph",
    "beegfs", "panfs", "gfs2", "ocfs2", "glusterfs", "9p", "fuse.sshfs", "fuse.glusterfs",
    "fuse.cephfs", "fuse.ceph-fuse", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone",
    "fuse.juicefs", "fuse.lizardfs", "fuse.moosefs", "fuse.mfs", "fuse.beegfs", "wekafs",
})


class _StatFS(ctypes.Structure):
    # only f_type is read: the first field of struct statfs (a __fsword_t, C long), the rest
    # is room enough for every Linux ABI
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 256)]


_libc: ctypes.CDLL | None = None
#: FUSE's magic: which FUSE file system it is, only /proc/mounts says
FUSE_MAGIC = 0x65735546


def statfs_type(path: str) -> int | None:
    """The ``f_type`` magic number of the file system holding ``path`` (statfs(2)); None
    where statfs cannot be called (not Linux, no libc)."""
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc, no search
        libc = _libc
        buf = _StatFS()
        if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return int(buf.f_type) & 0xFFFFFFFF


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_from_mounts(path: str, mounts: str) -> tuple[str, str] | None:
    """``(mount point, type)`` of the mount holding the absolute, resolved ``path``, read
    from the text of ``/proc/mounts`` (the last, longest matching mount point wins, as
    mounts stack); None if none matches."""
    best: tuple[str, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point, kind = _unescape(fields[1]), fields[2]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, kind)
    return best


def network_filesystem(path: str) -> str | None:
    """The name of the network file system holding ``path`` (``"nfs"``, ``"lustre"``...),
    or None on a local one (or when it cannot be told)."""
    magic = statfs_type(path)
    if magic is not None and magic in NETWORK_MAGIC:
        return NETWORK_MAGIC[magic]
    if magic is not None and magic != FUSE_MAGIC:
        return None  # a local file system: one system call, no /proc/mounts to read
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            found = filesystem_from_mounts(os.path.realpath(path), f.read())
    except OSError:
        return None
    if found is not None and found[1] in NETWORK_TYPES:
        return found[1]
    return None
