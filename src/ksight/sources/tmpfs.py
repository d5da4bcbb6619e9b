"""Memory-backed filesystems (tmpfs, devtmpfs, ramfs) and how full each one is.

The mount table comes from /proc/self/mountinfo (sources.mounts). How much a tmpfs holds is not
in any /proc or /sys file: the kernel answers it only to statfs(2) on the mount
(mm/shmem.c shmem_statfs: f_blocks = the size= limit in pages, f_bfree = limit - used_blocks).
So, as the sock_diag collector does for netlink answers:

- live (the root is the running machine), each mount is asked with os.statvfs, and the answers
  are kept in the capture as `ksight/tmpfs.json` (fs.record_extra) when the root is recording;
- from a capture, that file is read back. A capture without it (made by a ksight without this
  source, or a bare proc tree such as the corpora) has no tmpfs usage: Unavailable says so.

Why statvfs on the live root rather than a kernel file: there is none. /proc/meminfo's Shmem is
the machine-wide sum (tmpfs + SysV + shared anonymous mappings + i915/drm objects); per mount only
statfs knows. Only tmpfs/devtmpfs/ramfs mounts are asked, which never block (no network, no disk).

Caveats the numbers carry: tmpfs "used" counts pages allocated to files whether resident or
swapped out (used_blocks), while Shmem counts only resident pages; a tmpfs mounted without a size
limit (size=0) reports f_blocks = 0, so its use is unknown (None, with the reason); ramfs has no
accounting at all (statfs gives zeros): its files show as Unevictable, not Shmem.

JSON layout (format 1): {"format": 1, "mounts": [{"mount_point": ..., "fstype": ..., "source": ...,
"size_bytes": ..., "used_bytes": ..., "avail_bytes": ..., "inodes": ..., "inodes_free": ...,
"reason": ...}]}.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root, record_extra

PATH = "ksight/tmpfs.json"
FORMAT = 1
FSTYPES = ("tmpfs", "devtmpfs", "ramfs")
NO_CAPTURE = ("the capture holds no tmpfs usage: statfs(2) is a system call, not a /proc file, "
              "and only `ksight capture` with the tmpfs source records it (ksight/tmpfs.json)")


@dataclass(frozen=True)
class TmpfsMount:
    mount_point: str
    fstype: str
    source: str
    size_bytes: int | None = None  # the size= limit (f_blocks * f_frsize); None: no limit
    used_bytes: int | None = None  # pages allocated to files, resident or swapped out
    avail_bytes: int | None = None
    inodes: int | None = None
    inodes_free: int | None = None
    reason: str | None = None  # why usage is None (no limit, ramfs, statfs failed)

    @property
    def used_pct(self) -> float | None:
        if not self.size_bytes or self.used_bytes is None:
            return None
        return 100.0 * self.used_bytes / self.size_bytes


@dataclass(frozen=True)
class Tmpfs:
    mounts: tuple[TmpfsMount, ...] = ()

    @property
    def used_bytes(self) -> int | None:
        """Sum over the mounts whose use is known (a mount point listed twice counted once)."""
        vals = [m.used_bytes for m in self.mounts if m.used_bytes is not None]
        return sum(vals) if vals else None


def parse(text: str, path: str = PATH) -> Tmpfs:
    """The capture file written by `read` on a live root."""
    if not text.strip():
        raise ParseError(path, None, None, "empty file")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:  # a crafted capture may nest without end
        raise ParseError(path, None, None, f"not JSON: {str(e)[:100]}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("mounts"), list):
        raise ParseError(path, None, None, f"expected {{'format': {FORMAT}, 'mounts': [...]}}")
    out = []
    names = {f: None for f in TmpfsMount.__dataclass_fields__}
    for i, m in enumerate(doc["mounts"], 1):
        if not isinstance(m, dict) or not all(isinstance(m.get(k), str) for k in ("mount_point", "fstype", "source")):
            raise ParseError(path, i, None, "a mount needs mount_point, fstype and source strings")
        kw = {k: m.get(k) for k in names}
        for k in ("size_bytes", "used_bytes", "avail_bytes", "inodes", "inodes_free"):
            v = kw[k]
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64):
                raise ParseError(path, i, None, f"{k} is not a count of bytes: {v!r}")
        if kw["reason"] is not None and not isinstance(kw["reason"], str):
            raise ParseError(path, i, None, "reason is not text")
        out.append(TmpfsMount(**kw))
    return Tmpfs(tuple(out))


def _live_base(root: Root) -> str | None:
    """The directory the root reads from on this machine ('/' for LiveRoot), or None when the
    root is not the running machine."""
    r = root
    while hasattr(r, "inner"):
        r = r.inner
    if not getattr(r, "live", False):
        return None
    return getattr(r, "base", None)


def statfs_one(mount_point: str, fstype: str, source: str, base: str = "/") -> TmpfsMount:
    full = os.path.join(base, mount_point.lstrip("/"))
    if fstype == "ramfs":
        return TmpfsMount(mount_point, fstype, source,
                          reason="ramfs keeps no size accounting (statfs reports zeros); its "
                                 "pages are counted in Unevictable")
    try:
        st = os.statvfs(full)
    except OSError as e:
        return TmpfsMount(mount_point, fstype, source, reason=f"statfs: {e.strerror or e}")
    frsize = st.f_frsize or st.f_bsize
    inodes = st.f_files or None
    ifree = st.f_ffree if st.f_files else None
    if st.f_blocks == 0:
        return TmpfsMount(mount_point, fstype, source, inodes=inodes, inodes_free=ifree,
                          reason="mounted without a size limit: statfs reports no blocks, so "
                                 "its use is not known")
    return TmpfsMount(mount_point, fstype, source, st.f_blocks * frsize,
                      (st.f_blocks - st.f_bfree) * frsize, st.f_bavail * frsize, inodes, ifree)


def read(root: Root) -> Tmpfs:
    base = _live_base(root)
    if base is None:
        try:
            text = root.read_text(PATH)
        except Unavailable:
            raise Unavailable("tmpfs", NO_CAPTURE) from None
        return parse(text)
    from . import mounts as _mounts

    seen: dict[str, TmpfsMount] = {}
    for m in _mounts.read(root).by_fstype(*FSTYPES):
        # the last mount at a path is the visible one: statfs answers for it
        seen.pop(m.mount_point, None)
        seen[m.mount_point] = statfs_one(m.mount_point, m.fstype, m.source, base)
    result = Tmpfs(tuple(seen.values()))
    doc = {"format": FORMAT, "mounts": [asdict(m) for m in result.mounts]}
    record_extra(root, PATH, json.dumps(doc, indent=1).encode())
    return result
