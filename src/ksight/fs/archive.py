"""ArchiveRoot: a capture archive (.tar, .tar.gz, .tar.zst) read into memory.

Members whose path would escape the root are refused when the archive is opened; links are
followed only while they stay inside the archive.
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib

from ..errors import CaptureError, Unavailable
from .root import _MAX_LINK_HOPS, _PID_PATH, PROCFS_CHUNK, Root, norm


class ArchiveRoot(Root):
    """A capture archive held in memory. Opening refuses any member that escapes the root."""

    def __init__(self, path: str):
        self.label = path
        self.live = False
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self.dirs: set[str] = {""}
        try:
            fileobj = _open_archive_stream(path)
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror or exc}") from None
        try:
            with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
                for m in tar:
                    self._add(path, m, tar)
                # tar stops at its end-of-archive block; read the compressed stream to its own
                # end so an archive cut at a member boundary is reported, not silently short
                while tar.fileobj.read(1 << 16):
                    pass
        except tarfile.TarError as exc:
            raise CaptureError(f"{path}: not a capture archive (tar, tar.gz or tar.zst): {exc}") from None
        except (EOFError, zlib.error, OSError, _ZstdError) as exc:
            # a cut gzip/zstd stream fails in the decompressor (EOFError, zlib.error,
            # gzip.BadGzipFile, zstandard.ZstdError: all but zlib's are OSError or EOFError)
            raise CaptureError(f"{path}: archive is truncated or corrupt: {exc}") from None
        finally:
            fileobj.close()

    def _add(self, archive: str, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        name = m.name
        if name.startswith("/") or ".." in name.split("/"):
            raise CaptureError(f"{archive}: member {name!r} escapes the capture root; refused")
        p = norm(name)
        if not p:
            return
        # record every parent directory so listdir works without explicit dir members
        parent = posixpath.dirname(p)
        while parent and parent not in self.dirs:
            self.dirs.add(parent)
            parent = posixpath.dirname(parent)
        if m.isdir():
            self.dirs.add(p)
        elif m.issym():
            target = m.linkname
            if target.startswith("/"):
                # absolute targets (fd -> /dev/null, socket:[123]) are kept for readlink only
                self.links[p] = target
                return
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(p), target))
            if resolved.startswith(".."):
                self.links[p] = target  # readlink only; never followed
                return
            self.links[p] = target
        elif m.isfile():
            f = tar.extractfile(m)
            self.files[p] = f.read() if f else b""
        elif m.islnk():
            self.files[p] = self.files.get(norm(m.linkname), b"")

    def _resolve(self, path: str) -> str:
        """Follow in-archive links component by component; refuse ones that leave the root."""
        parts = norm(path).split("/") if norm(path) else []
        cur = ""
        hops = 0
        i = 0
        while i < len(parts):
            nxt = posixpath.join(cur, parts[i]) if cur else parts[i]
            if nxt in self.links:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise Unavailable(path, "too many levels of links")
                target = self.links[nxt]
                if target.startswith("/"):
                    raise Unavailable(path, "link points outside the capture")
                joined = posixpath.normpath(posixpath.join(cur, target))
                if joined.startswith(".."):
                    raise Unavailable(path, "link points outside the capture")
                rest = parts[i + 1:]
                parts = (joined.split("/") if joined not in ("", ".") else []) + rest
                cur, i = "", 0
                continue
            cur = nxt
            i += 1
        return cur

    def read_bytes(self, path: str, *, chunk: int = PROCFS_CHUNK) -> bytes:
        p = self._resolve(path)
        if p in self.files:
            return self.files[p]
        if p in self.dirs:
            raise Unavailable(path, "is a directory")
        m = _PID_PATH.match(p)
        if m and f"proc/{m.group(1)}" not in self.dirs:
            raise Unavailable(path, "process exited")
        raise Unavailable(path, "missing (not on this kernel or not captured)")

    def listdir(self, path: str) -> list[str]:
        p = self._resolve(path)
        if p not in self.dirs:
            raise Unavailable(path, "missing (not on this kernel or not captured)")
        prefix = p + "/" if p else ""
        names = set()
        for coll in (self.files, self.links, self.dirs):
            for k in coll:
                if k.startswith(prefix) and k != p:
                    rest = k[len(prefix):]
                    if rest:
                        names.add(rest.split("/", 1)[0])
        return sorted(names)

    def listdirs(self, path: str) -> list[str]:
        p = self._resolve(path)
        if p not in self.dirs:
            raise Unavailable(path, "missing (not on this kernel or not captured)")
        prefix = p + "/" if p else ""
        # links are kept out of self.dirs, so a link to a directory is not listed (as DirRoot)
        return sorted({k[len(prefix):] for k in self.dirs
                       if k.startswith(prefix) and k != p and "/" not in k[len(prefix):]})

    def exists(self, path: str) -> bool:
        try:
            p = self._resolve(path)
        except Unavailable:
            return False
        return p in self.files or p in self.dirs

    def isdir(self, path: str) -> bool:
        try:
            return self._resolve(path) in self.dirs
        except Unavailable:
            return False

    def readlink(self, path: str) -> str:
        p = norm(path)
        d = self._resolve(posixpath.dirname(p)) if posixpath.dirname(p) else ""
        key = posixpath.join(d, posixpath.basename(p)) if d else posixpath.basename(p)
        if key in self.links:
            return self.links[key]
        raise Unavailable(path, "not a link in the capture")


class _ZstdError(Exception):
    """Stands for zstandard.ZstdError until that module is imported (only for .tar.zst)."""


def _open_archive_stream(path: str):
    """A readable stream of the tar data, whatever the compression (zstd needs `zstandard`)."""
    f = open(path, "rb")
    magic = f.read(4)
    f.seek(0)
    if magic == b"\x28\xb5\x2f\xfd":
        import zstandard  # only capture bundles need it; keep it off the startup path

        global _ZstdError
        _ZstdError = zstandard.ZstdError
        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
    return f


__all__ = ["ArchiveRoot"]
