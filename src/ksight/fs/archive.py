"""ArchiveRoot: a capture archive (.tar, .tar.gz, .tar.zst; .tar.bz2 and .tar.xz too).

An archive is hostile until checked (docs/security.md): it may come from anywhere and ksight
reads it as root. A compressed tar is one sequential stream, so it is read once, start to end:
every member is indexed while it streams past, and the content of each regular file is kept
(in memory up to MEMORY_BYTES, then in a private unlinked temporary file) so it can be read
later without a second pass. What is kept is bounded:

- a member larger than MAX_FILE_BYTES (16 MiB) is not kept: it is skipped in the stream and
  reading it later raises Unavailable with the reason, so `check -v` and `show` list it;
- once MAX_CAPTURE_BYTES (1 GiB) are kept, later members are refused the same way;
- the decompressed stream may not exceed MAX_ARCHIVE_BYTES (8 GiB, time: a 200 KB zstd file
  can expand to terabytes of zeros), nor hold more than MAX_MEMBERS members (memory of the
  index); either is a CaptureError;
- FIFOs, devices, sparse members and tar metadata records (pax, long names) over
  MAX_HEADER_BYTES are refused.

Members whose path would escape the root are refused when the archive is opened; links are
followed only while they stay inside the archive. Directory listings come from an index built
while streaming (one dict lookup per listdir, whatever the number of members).

Truncation: an archive that ends before its compressed stream or its tar end-of-archive block
ends (cut in a copy, left by a killed capture) is refused with a CaptureError that says so and
names the last complete member and the snapshots it reached: data from a cut capture is not
silently taken as a whole one. (`tar xf` still recovers what is in it.)
"""

from __future__ import annotations

import bz2
import lzma
import os
import posixpath
import tarfile
import tempfile
import zlib

from ..errors import CaptureError, Unavailable, clip
from .root import (
    _MAX_LINK_HOPS,
    _PID_PATH,
    MAX_CAPTURE_BYTES,
    MAX_FILE_BYTES,
    PROCFS_CHUNK,
    Root,
    _size_text,
    budget_reason,
    norm,
    too_big_reason,
)

MAX_ARCHIVE_BYTES = 8 << 30  # decompressed tar stream: bounds the time spent reading one archive
MAX_MEMBERS = 2_000_000  # ~10 snapshots of 8,000 processes; bounds the index's memory
MAX_HEADER_BYTES = 1 << 20  # one pax / GNU long-name record (paths are < 4 KiB)
MAX_NAME_CHARS = 4096  # PATH_MAX
MEMORY_BYTES = 64 << 20  # kept in memory; beyond it member content goes to a private temp file

_ZSTD_IN = 512  # compressed bytes per zstd call: zstd expands a 4-byte block to 128 KiB, so
#                 512 bytes in give at most ~16 MiB out (zstandard's decompressobj has no bound)
_IN = 1 << 16
_OUT = 1 << 20  # decompressed bytes per call for zlib, bz2, xz (they take a max_length)


class _Truncated(Exception):
    """The archive ended before its compressed stream (or its tar) did."""


class _Refused(Exception):
    """The archive holds something no capture holds (see module doc)."""


class ArchiveRoot(Root):
    """A capture archive, indexed once. Opening refuses any member that escapes the root."""

    def __init__(self, path: str):
        self.label = path
        self.live = False
        # path -> bytes (in memory) or (offset, length) in the spill file
        self.files: dict[str, bytes | tuple[int, int]] = {}
        self.links: dict[str, str] = {}
        self.dirs: set[str] = {""}
        self.refused: dict[str, str] = {}  # path -> why its content was not kept
        self._children: dict[str, set[str]] = {"": set()}  # dir -> names of files, links, dirs
        self._subdirs: dict[str, set[str]] = {"": set()}  # dir -> names of real subdirectories
        self._kept = 0
        self._in_memory = 0
        self._spill = None
        self._members = 0
        self._last = None  # name of the last complete member
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror or exc}") from None
        try:
            stream = _Decoded(raw)
        except _Refused as exc:
            raw.close()
            raise CaptureError(f"{path}: {exc}") from None
        try:
            self._index(path, stream)
        except _Truncated as exc:
            self._close_spill()
            raise CaptureError(f"{path}: {self._truncated_message(str(exc))}") from None
        except _Refused as exc:
            self._close_spill()
            raise CaptureError(f"{path}: refused: {exc}") from None
        except tarfile.ReadError as exc:
            self._close_spill()
            if "unexpected end of data" in str(exc):
                raise CaptureError(f"{path}: {self._truncated_message(str(exc))}") from None
            raise CaptureError(f"{path}: not a capture archive (tar, tar.gz or tar.zst): {exc}") from None
        except tarfile.TarError as exc:
            self._close_spill()
            raise CaptureError(f"{path}: not a capture archive (tar, tar.gz or tar.zst): {exc}") from None
        except (EOFError, zlib.error, OSError, lzma.LZMAError, _ZstdError) as exc:
            self._close_spill()
            raise CaptureError(f"{path}: archive is corrupt: {exc}") from None
        except BaseException:
            self._close_spill()
            raise
        finally:
            raw.close()

    # -- reading the stream once ------------------------------------------------------------

    def _index(self, archive: str, stream: "_Decoded") -> None:
        tar = tarfile.open(fileobj=stream, mode="r|", tarinfo=_Member, bufsize=_OUT)
        tar._ksight_end = None  # how the member headers ended (set by _Member.fromtarfile)
        while True:
            m = tar.next()
            tar.members.clear()  # stream mode needs none of them; 2M TarInfos would be ~1 GB
            if m is None:
                break
            self._members += 1
            if self._members > MAX_MEMBERS:
                raise _Refused(f"more than {MAX_MEMBERS:,} members (MAX_MEMBERS); not a capture")
            self._add(archive, m, tar)
            self._last = m.name
        if tar._ksight_end != "end":
            # tar stops quietly at a cut or garbled header past the first member; a capture that
            # ends there is not whole
            raise _Truncated(f"no end-of-archive block ({tar._ksight_end or 'cut'})")
        # tar stops at its end-of-archive block; read the compressed stream to its own end so a
        # stream cut after that block is reported too
        while stream.read(_OUT):
            pass

    def _truncated_message(self, detail: str) -> str:
        if self._last is None:
            where = "before its first member"
        else:
            where = f"after member {clip(self._last)!r} ({self._members} members read)"
        snaps = sorted(d for d in self._subdirs.get("", ()) if f"{d}/proc" in self.dirs)
        reached = (f"; the last snapshot it reaches, {clip(snaps[-1])!r}, may be incomplete and "
                   "any after it are missing" if len(snaps) > 1 else "")
        return (f"archive is truncated ({clip(detail)}): it ends {where}{reached}. It was cut "
                "(an incomplete copy or a capture that was killed); `tar xf` recovers what it "
                "holds")

    def _note(self, p: str, *, is_dir: bool = False) -> None:
        """Index p under its parent (and its parents under theirs)."""
        parent, name = posixpath.split(p)
        while True:
            kids = self._children.setdefault(parent, set())
            kids.add(name)
            if is_dir:
                self._subdirs.setdefault(parent, set()).add(name)
            if parent in self.dirs:
                break
            self.dirs.add(parent)
            self._subdirs.setdefault(parent, set())
            p, (parent, name), is_dir = parent, posixpath.split(parent), True

    def _add(self, archive: str, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        name = m.name
        if len(name) > MAX_NAME_CHARS:
            raise _Refused(f"a member name of {len(name)} characters (longer than PATH_MAX)")
        if name.startswith("/") or ".." in name.split("/"):
            raise CaptureError(f"{archive}: member {clip(name)!r} escapes the capture root; refused")
        p = norm(name)
        if not p:
            return
        if m.isdir():
            self._note(p, is_dir=True)
            if p not in self.dirs:
                self.dirs.add(p)
                self._children.setdefault(p, set())
                self._subdirs.setdefault(p, set())
            return
        self._note(p)
        self._forget(p)  # a later member of the same name replaces it, as tar extracts
        if m.issym():
            # absolute targets (fd -> /dev/null, socket:[123]) and outward ones are kept for
            # readlink only; _resolve never follows them out
            self.links[p] = m.linkname
        elif m.isreg():
            if m.size > MAX_FILE_BYTES:
                self.refused[p] = too_big_reason(m.size)  # skipped in the stream, never read
            elif self._kept + m.size > MAX_CAPTURE_BYTES:
                self.refused[p] = budget_reason()
            else:
                f = tar.extractfile(m)
                self._keep(p, f.read() if f else b"")
        elif m.islnk():
            target = norm(m.linkname)
            if target in self.files:
                self.files[p] = self.files[target]  # shared, not copied
            elif target in self.refused:
                self.refused[p] = self.refused[target]
        else:
            self.refused[p] = (f"refused: the archive holds {_member_kind(m)} here, not a "
                               "regular file (a capture holds only files, directories and links)")

    def _forget(self, p: str) -> None:
        self.files.pop(p, None)
        self.links.pop(p, None)
        self.refused.pop(p, None)

    def _keep(self, p: str, data: bytes) -> None:
        self._kept += len(data)
        if self._in_memory + len(data) <= MEMORY_BYTES:
            self._in_memory += len(data)
            self.files[p] = data
            return
        if self._spill is None:
            # private (0600) and unlinked: gone when closed, or when the process dies
            self._spill = tempfile.TemporaryFile(prefix="ksight-archive-")
        off = self._spill.seek(0, os.SEEK_END)
        self._spill.write(data)
        self.files[p] = (off, len(data))

    def _close_spill(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def close(self) -> None:
        self._close_spill()

    def __del__(self):
        try:
            self._close_spill()
        except Exception:
            pass

    # -- the Root primitives ----------------------------------------------------------------

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
        v = self.files.get(p)
        if v is not None:
            if isinstance(v, bytes):
                return v
            off, n = v
            if self._spill is None:
                raise Unavailable(path, "archive closed")
            return os.pread(self._spill.fileno(), n, off)
        if p in self.refused:
            raise Unavailable(path, self.refused[p])
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
        return sorted(self._children.get(p, ()))

    def listdirs(self, path: str) -> list[str]:
        p = self._resolve(path)
        if p not in self.dirs:
            raise Unavailable(path, "missing (not on this kernel or not captured)")
        # links are kept out of self.dirs, so a link to a directory is not listed (as DirRoot)
        return sorted(self._subdirs.get(p, ()))

    def exists(self, path: str) -> bool:
        try:
            p = self._resolve(path)
        except Unavailable:
            return False
        return p in self.files or p in self.dirs or p in self.refused

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


def _member_kind(m: tarfile.TarInfo) -> str:
    if m.isfifo():
        return "a FIFO"
    if m.ischr():
        return "a character device"
    if m.isblk():
        return "a block device"
    return f"a member of type {m.type!r}"


_META_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
               tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _Member(tarfile.TarInfo):
    """TarInfo that bounds what tarfile itself would load into memory (a pax or long-name
    record is read whole), refuses sparse members, and tells a real end-of-archive block from
    a stream that just stops (tarfile ends quietly on both)."""

    @classmethod
    def fromtarfile(cls, tf):
        try:
            return super().fromtarfile(tf)
        except tarfile.EOFHeaderError:
            tf._ksight_end = "end"
            raise
        except tarfile.EmptyHeaderError:
            tf._ksight_end = "the stream ends where a member header should be"
            raise
        except tarfile.TruncatedHeaderError:
            tf._ksight_end = "the stream ends inside a member header"
            raise
        except tarfile.InvalidHeaderError:
            tf._ksight_end = "a member header is corrupt (bad checksum)"
            raise

    def _proc_member(self, tf):
        if self.type in _META_TYPES and self.size > MAX_HEADER_BYTES:
            raise _Refused(f"a tar metadata record of {_size_text(self.size)} "
                           f"(over MAX_HEADER_BYTES, {_size_text(MAX_HEADER_BYTES)})")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refused("a sparse member (captures hold no sparse files)")
        return super()._proc_member(tf)

    def _proc_gnusparse_00(self, next, pax_headers, buf):
        raise _Refused("a sparse member (captures hold no sparse files)")

    def _proc_gnusparse_01(self, next, pax_headers):
        raise _Refused("a sparse member (captures hold no sparse files)")

    def _proc_gnusparse_10(self, next, pax_headers, tarfile):
        raise _Refused("a sparse member (captures hold no sparse files)")


class _ZstdError(Exception):
    """Stands for zstandard.ZstdError until that module is imported (only for .tar.zst)."""


class _Decoded:
    """The decompressed tar stream, whatever the compression (told from content), read in
    bounded pieces. It raises _Truncated when the file ends inside the compressed stream (the
    decompressors return what they have and say nothing), and _Refused past MAX_ARCHIVE_BYTES."""

    def __init__(self, f):
        self._f = f
        self._pending = bytearray()
        self._done = False
        self.total = 0
        magic = f.read(6)
        f.seek(0)
        if magic[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard  # only capture bundles need it; keep it off the startup path

            global _ZstdError
            _ZstdError = zstandard.ZstdError
            self._new = lambda: zstandard.ZstdDecompressor().decompressobj()
            self.kind = "zstd"
        elif magic[:2] == b"\x1f\x8b":
            self._new = lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.kind = "gzip"
        elif magic[:3] == b"BZh":
            self._new = bz2.BZ2Decompressor
            self.kind = "bzip2"
        elif magic == b"\xfd7zXZ\x00":
            self._new = lzma.LZMADecompressor
            self.kind = "xz"
        else:
            self._new = None
            self.kind = "tar"
        self._d = self._new() if self._new else None
        self._tail = b""  # compressed input not consumed yet

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = _OUT
        while len(self._pending) < n and not self._done:
            try:
                self._fill()
            except _Truncated:
                if not self._pending:
                    raise
                break  # hand out what came before the cut: tar then names the last whole member
        out = bytes(self._pending[:n])
        del self._pending[:n]
        self.total += len(out)
        if self.total > MAX_ARCHIVE_BYTES:
            raise _Refused(f"the archive expands to more than {_size_text(MAX_ARCHIVE_BYTES)} "
                           "(MAX_ARCHIVE_BYTES); no capture is that large")
        return out

    def _input(self, size: int) -> bytes:
        if self._tail:
            data, self._tail = self._tail[:size], self._tail[size:]
            return data
        return self._f.read(size)

    def _fill(self) -> None:
        d = self._d
        if d is None:  # plain tar
            b = self._f.read(_OUT)
            if b:
                self._pending += b
            else:
                self._done = True
            return
        if d.eof:
            rest = d.unused_data + self._tail
            self._tail = b""
            more = rest or self._f.read(_IN)
            if not more.strip(b"\0"):
                self._done = True  # a stream ends with its compressed end (zero padding is ok)
                return
            self._d = d = self._new()  # another frame / gzip member follows
            self._tail = more
        if self.kind == "zstd":
            data = self._input(_ZSTD_IN)
            if not data:
                raise _Truncated(f"the {self.kind} stream is cut")
            self._pending += d.decompress(data)
        elif self.kind == "gzip":
            data = d.unconsumed_tail or self._input(_IN)
            if not data:
                raise _Truncated(f"the {self.kind} stream is cut")
            self._pending += d.decompress(data, _OUT)
        else:  # bz2, xz: needs_input says whether they still hold output
            data = self._input(_IN) if d.needs_input else b""
            if d.needs_input and not data:
                raise _Truncated(f"the {self.kind} stream is cut")
            self._pending += d.decompress(data, _OUT)

    def close(self) -> None:
        self._f.close()


def _open_archive_stream(path: str):
    """A readable stream of the tar data, whatever the compression (kept for callers)."""
    return _Decoded(open(path, "rb"))


__all__ = ["ArchiveRoot", "MAX_ARCHIVE_BYTES", "MAX_MEMBERS", "MAX_HEADER_BYTES"]
