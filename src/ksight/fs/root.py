"""The one seam for I/O: every read of the kernel goes through a Root.

A Root answers for a filesystem tree that looks like `/`: paths are relative POSIX paths
such as "proc/meminfo" or "sys/devices/system/cpu/online". Three kinds exist:

- LiveRoot: the running machine (`/`).
- DirRoot: a directory tree (a test fixture, an unpacked capture). Links are followed only
  while they stay inside the tree.
- ArchiveRoot: a capture archive (.tar, .tar.gz, .tar.zst) read into memory; members whose
  path would escape the root are refused when the archive is opened.

Parsers never open paths; `sources/*.read(root)` asks the root for text and hands it to a pure
`parse(text)`. Failures become `errors.Unavailable` with a reason for people ("missing",
"permission denied", "process exited"), so the collector can record them instead of crashing.

Captures are hostile until checked (docs/security.md): they come from other machines and are
read as root. From a capture root (DirRoot with live=False, ArchiveRoot) only regular files and
directories are read: a FIFO would block open() forever, a device (/dev/zero as proc/vmstat)
would be read until memory runs out, so both are refused with a reason, as are files over
MAX_FILE_BYTES and reads beyond MAX_CAPTURE_BYTES in all. The live root reads /proc and /sys
as they are (their files are regular files of size 0), without the extra syscalls.

Reading procfs: files report a size of 0 or 4096 whatever they hold, so we read until EOF
instead of trusting stat(). Sysctls are read with a small buffer because the kernel's cost of a
/proc/sys read grows with the size of the read request.
"""

from __future__ import annotations

import errno
import functools
import os
import posixpath
import re
import stat
from abc import ABC, abstractmethod

from ..errors import CaptureError, Unavailable

PROCFS_CHUNK = 65536
SYSCTL_CHUNK = 128  # see module doc: small reads are measurably cheaper for /proc/sys
_MAX_LINK_HOPS = 40

# Limits on what a capture may make ksight read (the live root has none: the kernel is trusted).
# The largest real kernel files are a few MB (slabinfo, vmallocinfo, /proc/PID/smaps of a big
# process, a socket table of 100k connections); 16 MiB is several times that.
MAX_FILE_BYTES = 16 << 20
# All the file content one capture root hands out (a folder: bytes read; an archive: bytes kept).
# A 10-snapshot capture of 8,000 processes is a few hundred MB raw.
MAX_CAPTURE_BYTES = 1 << 30
_PID_PATH = re.compile(r"^proc/(\d+)(/|$)")

try:  # the optional C extension (setup.py); absent: LiveRoot.read_many in Python
    from .._procscan import BIG as _BIG, read_dir_files as _read_dir_files
except ImportError:  # pragma: no cover - depends on the build
    _read_dir_files = None
    _BIG = -2


@functools.lru_cache(maxsize=4096)  # pure; a snapshot normalises the same few hundred paths
def norm(path: str) -> str:
    """Normalise a root-relative path; refuse one that climbs above the root."""
    p = posixpath.normpath("/" + path.lstrip("/")).lstrip("/")
    if p in ("", "."):
        return ""
    return p


def sysctl_path(name: str) -> str:
    """vm.min_free_kbytes -> proc/sys/vm/min_free_kbytes (the form /proc/sys uses)."""
    return "proc/sys/" + name.replace(".", "/")


def _size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


def too_big_reason(size: int | None) -> str:
    """The reason a capture file over MAX_FILE_BYTES is refused."""
    what = f"{_size_text(size)}, " if size is not None else ""
    return (f"refused: {what}larger than the {_size_text(MAX_FILE_BYTES)} limit for one kernel "
            f"file (MAX_FILE_BYTES; a capture file that big is not kernel text)")


def budget_reason() -> str:
    return (f"refused: the capture already handed out {_size_text(MAX_CAPTURE_BYTES)} "
            f"(MAX_CAPTURE_BYTES), the limit for one capture")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a link that changed while it was read"
    return "not a regular file"


class DirFiles(dict):
    """What Root.read_many returns: file name -> bytes, or the Unavailable that reading it raised.
    `nlink`: the directory's link count where the root read it on the way (LiveRoot), else None.
    On kernfs (cgroupfs v1 and v2, sysfs) a directory's st_nlink is 2 + its number of
    subdirectories (kernfs_get_inode: set_nlink(inode, subdirs + 2)), so 2 says "no subdirectory"
    without listing it; other filesystems differ (btrfs says 1), so only a caller that knows its
    filesystem may read it that way."""

    nlink: int | None = None
    ino: int | None = None  # the directory's inode number, where the root read it on the way


# Where a capture keeps the ids of the directories it read (RecordingRoot.dir_id): one
# "<inode number> <root-relative path>" line per directory. Old captures have none: dir_id None.
DIR_IDS = "ksight/dir_ids"


def parse_dir_ids(text: str) -> dict[str, int]:
    """DIR_IDS -> {path: id}; lines not of that form are skipped (an id is an aid, never
    required: a group without one is keyed by its path alone)."""
    out: dict[str, int] = {}
    for line in text.split("\n"):
        num, _, path = line.partition(" ")
        # at most 20 digits: an inode number is 64-bit (and int() refuses >4,300 digits)
        if path and num.isdigit() and num.isascii() and len(num) <= 20 and int(num) < 2**64:
            out[norm(path)] = int(num)
    return out


def format_dir_ids(ids: dict[str, int]) -> bytes:
    return "".join(f"{i} {p}\n" for p, i in sorted(ids.items()) if "\n" not in p).encode()


def _file_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"read_many: {name!r} is not a file name")
    return name


class Root(ABC):
    """A tree that looks like `/`. Subclasses implement the five primitives."""

    live: bool = False
    label: str = ""

    @abstractmethod
    def read_bytes(self, path: str, *, chunk: int = PROCFS_CHUNK) -> bytes: ...

    @abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def isdir(self, path: str) -> bool: ...

    @abstractmethod
    def readlink(self, path: str) -> str: ...

    def listdirs(self, path: str) -> list[str]:
        """The names of the subdirectories of `path`, sorted (links to directories are not
        followed: a directory tree walk must not loop). Unavailable like listdir. Roots override
        this with something cheaper than one isdir per entry."""
        return [n for n in self.listdir(path) if self.isdir(posixpath.join(norm(path), n))
                and not self._islink(posixpath.join(norm(path), n))]

    def _islink(self, path: str) -> bool:
        try:
            self.readlink(path)
            return True
        except Unavailable:
            return False

    def read_text(self, path: str, *, chunk: int = PROCFS_CHUNK) -> str:
        # Kernel text is ASCII, but comm, cmdline and mount names may hold any bytes.
        return self.read_bytes(path, chunk=chunk).decode("utf-8", errors="replace")

    def read_many(self, path: str, names) -> DirFiles:
        """Several files of one directory: {name: bytes or Unavailable}, in the order of `names`
        (plain file names, no '/'). Same bytes and the same Unavailable reasons as read_bytes
        of each "path/name" (this generic version is that loop, so capture roots keep all their
        checks); LiveRoot opens the directory once and each file relative to it."""
        d = norm(path)
        prefix = d + "/" if d else ""
        out = DirFiles()
        for n in names:
            try:
                out[n] = self.read_bytes(prefix + _file_name(n))
            except Unavailable as u:
                out[n] = u
        return out

    def text_reader(self, *, one_shot: bool = False):
        """A read_text for hot loops (the process scan reads thousands of small files): takes an
        already normalised path ("proc/123/stat"), same results and Unavailable errors as
        read_text. Roots may return something cheaper than read_text.

        one_shot=True is for files the kernel prints in one piece (seq_file single_open, as
        /proc/PID/stat, statm, status): a read that returns less than it asked for is then the
        whole file, and the extra read(2) that confirms EOF is skipped."""
        return self.read_text

    def dir_id(self, path: str) -> int | None:
        """The identity of a directory beyond its path: its inode number (for a cgroup, the
        cgroup id: cgroupfs is kernfs and cgroup_id() is the kernfs node id, which is the inode
        number; a directory removed and made again under the same path has another). The live
        root stats it; a capture gives what its recording root saw (DIR_IDS in the snapshot);
        None when not known (an old capture, a path that is not a directory)."""
        ids = self.__dict__.get("_dir_ids")
        if ids is None:
            try:
                ids = parse_dir_ids(self.read_text(DIR_IDS))
            except Unavailable:
                ids = {}
            self._dir_ids = ids
        return ids.get(norm(path))

    def read_sysctl(self, name: str) -> str:
        """The value of one sysctl, whitespace-trimmed (tabs inside multi-value ones are kept)."""
        return self.read_text(sysctl_path(name), chunk=SYSCTL_CHUNK).strip()

    def sub(self, prefix: str) -> "Root":
        """The tree below `prefix`, as a root of its own (one snapshot of a capture)."""
        return SubRoot(self, prefix)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"


def _os_reason(path: str, exc: OSError, exists_pid) -> str:
    """Turn an OSError into the short reason we show people."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        if os.geteuid() == 0:  # root refused: a process outside our user namespace, an LSM, ptrace rules
            return "permission denied, even to root (a process of another user namespace, or a security module)"
        return "permission denied (run as root for this source)"
    m = _PID_PATH.match(path)
    if exc.errno == errno.ESRCH or (m and exc.errno == errno.ENOENT and not exists_pid(m.group(1))):
        return "process exited"
    if exc.errno == errno.ENOENT:
        return "missing (not on this kernel or not captured)"
    if exc.errno == errno.EISDIR:
        return "is a directory"
    if exc.errno == errno.EINVAL:
        return "not readable (kernel refused the read)"
    return exc.strerror or str(exc)


class DirRoot(Root):
    """A directory tree: the live machine (base '/') or a fixture / unpacked capture."""

    def __init__(self, base: str, *, live: bool = False, label: str | None = None):
        self.base = os.path.abspath(base)
        self.live = live
        self.label = label or self.base
        self._real_base = os.path.realpath(self.base)
        self._handed_out = 0  # bytes read from a capture tree (MAX_CAPTURE_BYTES)

    def _full(self, path: str) -> str:
        p = norm(path)
        full = os.path.join(self.base, p) if p else self.base
        if not self.live:
            # A capture's symlinks (proc/self, fd/*) may point anywhere; never follow them out.
            real = os.path.realpath(full)
            if real != self._real_base and not real.startswith(self._real_base + os.sep):
                raise Unavailable(path, "link points outside the capture")
        return full

    def _pid_exists(self, pid: str) -> bool:
        return os.path.isdir(os.path.join(self.base, "proc", pid))

    def _read_capture_file(self, path: str) -> bytes:
        """Read one file of a capture tree: only a regular file inside the tree, at most
        MAX_FILE_BYTES. The file is pinned first with O_PATH|O_NOFOLLOW (no open side effects,
        no blocking on a FIFO, no device driver reached), checked by fstat, its real path checked
        against the tree (a link swapped in after realpath cannot lead out), then read through
        that very inode."""
        p = norm(path)
        real = os.path.realpath(os.path.join(self.base, p) if p else self.base)
        if real != self._real_base and not real.startswith(self._real_base.rstrip("/") + "/"):
            raise Unavailable(path, "link points outside the capture")
        try:
            pfd = os.open(real, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(path, _os_reason(p, exc, self._pid_exists)) from None
        try:
            st = os.fstat(pfd)
            if stat.S_ISDIR(st.st_mode):
                raise Unavailable(path, "is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise Unavailable(path, f"refused: {_kind(st.st_mode)}, not a regular file "
                                        "(a capture holds only files and directories)")
            if st.st_size > MAX_FILE_BYTES:
                raise Unavailable(path, too_big_reason(st.st_size))
            if self._handed_out + st.st_size > MAX_CAPTURE_BYTES:
                raise Unavailable(path, budget_reason())
            where = os.readlink(f"/proc/self/fd/{pfd}")
            if where != self._real_base and not where.startswith(self._real_base.rstrip("/") + "/"):
                raise Unavailable(path, "link points outside the capture")
            fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise Unavailable(path, _os_reason(p, exc, self._pid_exists)) from None
        finally:
            os.close(pfd)
        try:
            parts, got = [], 0
            while True:  # the size may grow while we read: bound the read, not the stat
                b = os.read(fd, min(PROCFS_CHUNK << 4, MAX_FILE_BYTES + 1 - got))
                if not b:
                    break
                parts.append(b)
                got += len(b)
                if got > MAX_FILE_BYTES:
                    raise Unavailable(path, too_big_reason(None))
            self._handed_out += got
            return b"".join(parts)
        except OSError as exc:
            raise Unavailable(path, _os_reason(p, exc, self._pid_exists)) from None
        finally:
            os.close(fd)

    def read_bytes(self, path: str, *, chunk: int = PROCFS_CHUNK) -> bytes:
        if not self.live:
            return self._read_capture_file(path)
        full = self._full(path)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable(path, _os_reason(norm(path), exc, self._pid_exists)) from None
        try:
            parts = []
            while True:
                b = os.read(fd, chunk)
                if not b:
                    break
                parts.append(b)
            return b"".join(parts)
        except OSError as exc:
            raise Unavailable(path, _os_reason(norm(path), exc, self._pid_exists)) from None
        finally:
            os.close(fd)

    def text_reader(self, *, one_shot: bool = False):
        if not self.live or type(self).read_bytes not in (DirRoot.read_bytes, LiveRoot.read_bytes):
            return self.read_text  # a capture's links are checked on every read; subclasses rule
        # live: no link check and a pre-joined prefix; the path is trusted to be normalised
        prefix = self.base.rstrip("/") + "/"
        pid_exists = self._pid_exists

        def read(path: str, _open=os.open, _read=os.read, _close=os.close,
                 _flags=os.O_RDONLY | os.O_CLOEXEC) -> str:
            try:
                fd = _open(prefix + path, _flags)
            except OSError as exc:
                raise Unavailable(path, _os_reason(path, exc, pid_exists)) from None
            try:
                data = _read(fd, PROCFS_CHUNK)
                if data and not (one_shot and len(data) < PROCFS_CHUNK):
                    more = _read(fd, PROCFS_CHUNK)  # read to EOF: procfs sizes and short reads lie
                    if more:  # seq_files hand out about a page per read: join once, not +=
                        parts = [data, more]
                        more = _read(fd, PROCFS_CHUNK)
                        while more:
                            parts.append(more)
                            more = _read(fd, PROCFS_CHUNK)
                        data = b"".join(parts)
            except OSError as exc:
                raise Unavailable(path, _os_reason(path, exc, pid_exists)) from None
            finally:
                _close(fd)
            return data.decode("utf-8", "replace")

        return read

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._full(path)))
        except OSError as exc:
            raise Unavailable(path, _os_reason(norm(path), exc, self._pid_exists)) from None

    def listdirs(self, path: str) -> list[str]:
        try:
            with os.scandir(self._full(path)) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except OSError as exc:
            raise Unavailable(path, _os_reason(norm(path), exc, self._pid_exists)) from None

    def exists(self, path: str) -> bool:
        try:
            return os.path.exists(self._full(path))
        except Unavailable:
            return False

    def isdir(self, path: str) -> bool:
        try:
            return os.path.isdir(self._full(path))
        except Unavailable:
            return False

    def readlink(self, path: str) -> str:
        p = norm(path)
        full = os.path.join(self.base, p)
        try:
            return os.readlink(full)
        except OSError as exc:
            raise Unavailable(path, _os_reason(p, exc, self._pid_exists)) from None


class LiveRoot(DirRoot):
    """The running machine."""

    def __init__(self) -> None:
        super().__init__("/", live=True, label="live")

    def dir_id(self, path: str) -> int | None:
        """Root.dir_id: the inode number of the directory now (lstat: a link is no directory)."""
        try:
            st = os.lstat("/" + norm(path))
        except (OSError, ValueError):
            return None
        return st.st_ino if stat.S_ISDIR(st.st_mode) else None

    def read_bytes(self, path: str, *, chunk: int = PROCFS_CHUNK, _open=os.open, _read=os.read,
                   _close=os.close, _flags=os.O_RDONLY | os.O_CLOEXEC) -> bytes:
        """DirRoot.read_bytes for base '/' (same results and errors), without the generic
        join: a snapshot makes ~200 reads, and the per-read Python overhead is what it costs
        beyond the I/O itself."""
        p = norm(path)
        try:
            fd = _open("/" + p, _flags)
        except OSError as exc:
            raise Unavailable(path, _os_reason(p, exc, self._pid_exists)) from None
        try:
            data = _read(fd, chunk)
            if data:
                more = _read(fd, chunk)  # read to EOF: procfs sizes lie
                if more:  # seq_files hand out about a page per read: join once (+= is quadratic)
                    parts = [data, more]
                    more = _read(fd, chunk)
                    while more:
                        parts.append(more)
                        more = _read(fd, chunk)
                    data = b"".join(parts)
            return data
        except OSError as exc:
            raise Unavailable(path, _os_reason(p, exc, self._pid_exists)) from None
        finally:
            _close(fd)


    # files above this go through read_bytes (a cgroup's memory.stat is 1-2 kB)
    READ_MANY_MAX = 32768

    def read_many(self, path: str, names) -> DirFiles:
        """Root.read_many with one directory fd: the directory opened once (O_PATH), each file
        with openat relative to it and read to EOF, so the kernel walks the full path once per
        directory, not once per file (a memory cgroup's control file: ~4.5 us through its full
        path, a quarter less relative). `nlink` is the directory's link count (fstat of that
        fd). In C (ksight._procscan.read_dir_files) when built; _read_many_py is the reference
        (tests compare both). Same bytes and Unavailable reasons as read_bytes per file."""
        d = norm(path)
        names = [_file_name(n) for n in names]
        if _read_dir_files is None:
            return self._read_many_py(d, names)
        got = _read_dir_files("/" + d, names, self.READ_MANY_MAX)
        out = DirFiles()
        prefix = d + "/" if d else ""
        if type(got) is int:  # the directory itself: every file fails as its open would
            exc = OSError(got, os.strerror(got))
            for n in names:
                out[n] = Unavailable(prefix + n, _os_reason(prefix + n, exc, self._pid_exists))
            return out
        out.nlink, vals = got
        for n, v in zip(names, vals):
            if type(v) is bytes:
                out[n] = v
            elif v == _BIG:  # larger than the buffer: the ordinary read
                try:
                    out[n] = self.read_bytes(prefix + n)
                except Unavailable as u:
                    out[n] = u
            else:
                out[n] = Unavailable(prefix + n, _os_reason(prefix + n, OSError(v, os.strerror(v)),
                                                           self._pid_exists))
        return out

    def _read_many_py(self, d: str, names) -> DirFiles:
        """read_many in Python (os.open with dir_fd): the reference for the C version."""
        out = DirFiles()
        prefix = d + "/" if d else ""
        try:
            dfd = os.open("/" + d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            for n in names:
                out[n] = Unavailable(prefix + n, _os_reason(prefix + n, exc, self._pid_exists))
            return out
        try:
            st = os.fstat(dfd)
            out.nlink, out.ino = st.st_nlink, st.st_ino
            for n in names:
                try:
                    fd = os.open(n, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dfd)
                except OSError as exc:
                    out[n] = Unavailable(prefix + n, _os_reason(prefix + n, exc, self._pid_exists))
                    continue
                try:
                    parts = []
                    while True:
                        b = os.read(fd, PROCFS_CHUNK)
                        if not b:
                            break
                        parts.append(b)
                    out[n] = b"".join(parts)
                except OSError as exc:
                    out[n] = Unavailable(prefix + n, _os_reason(prefix + n, exc, self._pid_exists))
                finally:
                    os.close(fd)
        finally:
            os.close(dfd)
        return out


class SubRoot(Root):
    """The part of another root below a prefix (one snapshot inside a multi-snapshot capture)."""

    def __init__(self, parent: Root, prefix: str):
        self.parent = parent
        self.prefix = norm(prefix)
        self.live = parent.live
        self.label = f"{parent.label}:{self.prefix}"

    def _p(self, path: str) -> str:
        return posixpath.join(self.prefix, norm(path)) if norm(path) else self.prefix

    def read_bytes(self, path: str, *, chunk: int = PROCFS_CHUNK) -> bytes:
        try:
            return self.parent.read_bytes(self._p(path), chunk=chunk)
        except Unavailable as u:
            raise Unavailable(path, u.reason) from None

    def read_many(self, path: str, names) -> DirFiles:
        got = self.parent.read_many(self._p(path), names)
        d = norm(path)
        prefix = d + "/" if d else ""
        out = DirFiles()
        out.nlink = got.nlink
        for n, v in got.items():
            out[n] = Unavailable(prefix + n, v.reason) if isinstance(v, Unavailable) else v
        return out

    def listdir(self, path: str) -> list[str]:
        try:
            return self.parent.listdir(self._p(path))
        except Unavailable as u:
            raise Unavailable(path, u.reason) from None

    def listdirs(self, path: str) -> list[str]:
        try:
            return self.parent.listdirs(self._p(path))
        except Unavailable as u:
            raise Unavailable(path, u.reason) from None

    def exists(self, path: str) -> bool:
        return self.parent.exists(self._p(path))

    def isdir(self, path: str) -> bool:
        return self.parent.isdir(self._p(path))

    def readlink(self, path: str) -> str:
        try:
            return self.parent.readlink(self._p(path))
        except Unavailable as u:
            raise Unavailable(path, u.reason) from None


def open_root(spec: str | None = None) -> Root:
    """A root for a spec: None or '/' is the live machine; a directory is a tree; a file an archive."""
    if spec in (None, "", "/"):
        return LiveRoot()
    if os.path.isdir(spec):
        return DirRoot(spec)
    if os.path.isfile(spec):
        from .archive import ArchiveRoot  # archive.py builds on this module

        return ArchiveRoot(spec)
    raise CaptureError(f"{spec}: no such file or directory")


def file_mode(root: Root, path: str) -> int | None:
    """st_mode of a live path, or None (used only by capture to keep links as links)."""
    if not isinstance(root, DirRoot):
        return None
    try:
        return os.lstat(root._full(path)).st_mode
    except OSError:
        return None


__all__ = [
    "Root", "DirRoot", "DirFiles", "LiveRoot", "SubRoot", "open_root", "norm", "sysctl_path", "file_mode",
    "PROCFS_CHUNK", "SYSCTL_CHUNK", "MAX_FILE_BYTES", "MAX_CAPTURE_BYTES",
]
