"""Capture bundles: the raw kernel text of N snapshots plus a manifest, readable anywhere.

Layout (a directory, or a .tar / .tar.gz / .tar.zst of one, with or without one folder around
it as `tar czf cap.tgz mydir/` makes; in a directory, snapshot folders may be links elsewhere):

    manifest.json         {"format": "ksight-capture", "version": 1, "host": {...},
                           "snapshots": [{"dir": "0000", "taken_at": ..., "unavailable": [...]}]}
    0000/proc/...  0000/sys/...  0000/ksight/...    one snapshot root per sorted subdirectory
    0001/...

A single root tree (a directory with proc/ at the top, like a test fixture) is a one-snapshot
capture. Without a manifest, time between snapshots comes from each snapshot's proc/uptime.
The manifest is a stable format: fields are only ever added.
"""

from __future__ import annotations

import io
import json
import os
import platform
import secrets
import socket
import sys
import tarfile
import time
from collections.abc import Callable, Iterator

from .. import __version__
from ..collect.collector import Collector
from ..collect.plan import Plan
from ..collect.snapshot import take
from ..errors import CaptureError
from ..fs import ArchiveRoot, DirRoot, LiveRoot, Root
from ..fs.bundle import FORMAT, VERSION, Bundle, open_bundle
from ..fs.root import DIR_IDS, format_dir_ids
from ..model.snapshot import HostInfo, Missing, Snapshot

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst")
# names that look like an archive ksight does not write: refused rather than made a directory
REFUSED_SUFFIXES = (".zip", ".7z", ".rar", ".tar.bz2", ".tbz", ".tbz2", ".tar.xz", ".txz",
                    ".tar.lz4", ".tar.lzma", ".tlz", ".tar.lz", ".tar.z", ".taz", ".tar.br",
                    ".bz2", ".xz", ".gz", ".zst", ".zstd", ".lz4", ".lzma", ".lz", ".br", ".z",
                    ".cpio", ".iso", ".jar", ".war", ".ar", ".deb", ".rpm")
FILE_MODE, DIR_MODE = 0o600, 0o700  # captures are readable by their owner only (docs/security.md)

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


class Capture(Bundle):
    """An opened capture (fs.bundle.Bundle) that can also re-parse its snapshots."""

    def snapshots(self, **take_args) -> Iterator[Snapshot]:
        """Re-parse each snapshot root through the same code the live path uses."""
        for r, meta in zip(self.roots, self.metas):
            known = [Missing(m["source"], m["reason"]) for m in meta.get("unavailable", [])]
            yield take(r, host_hint=self.host_hint, taken_at=meta.get("taken_at"),
                       known_unavailable=known, **take_args)


def open_capture(spec: str) -> Capture:
    """Open a capture directory or archive (see fs.bundle)."""
    b = open_bundle(spec)
    return Capture(b.source, b.roots, b.manifest, b.metas)


def _host_manifest(host: HostInfo, redactor=None) -> dict:
    return {"hostname": redactor.hostname(host.hostname) if redactor else host.hostname,
            "kernel": host.kernel, "kernel_version": host.kernel_version,
            "page_size": host.page_size, "clk_tck": host.clk_tck, "cpus": host.cpus,
            "machine": platform.machine(), "byteorder": sys.byteorder}


def output_kind(out: str) -> str:
    """'dir', 'tar', 'gz' or 'zst' for an output name; CaptureError for an archive-looking name
    ksight cannot write (out.zip would otherwise become a directory named out.zip)."""
    low = out.rstrip("/").lower()
    if low.endswith((".tar.zst", ".tzst")):
        return "zst"
    if low.endswith((".tar.gz", ".tgz")):
        return "gz"
    if low.endswith(".tar"):
        return "tar"
    for suf in REFUSED_SUFFIXES:
        if low.endswith(suf):
            raise CaptureError(f"{out}: ksight cannot write {suf} archives; use a directory, or one of "
                               + ", ".join(ARCHIVE_SUFFIXES))
    return "dir"


def _rename_noreplace(dfd: int, src: str, dst: str) -> None:
    """Move src to dst inside the directory dfd, failing (FileExistsError) if dst exists: never
    replaces a file or a link someone put there meanwhile."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        if fn(dfd, src.encode(), dfd, dst.encode(), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst)
    # a filesystem without RENAME_NOREPLACE: a hard link also refuses an existing name
    os.link(src, dst, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    os.unlink(src, dir_fd=dfd)


class WriteFailed(Exception):
    """Writing the capture failed (disk full, quota, I/O error): the OSError, and where."""

    def __init__(self, exc: OSError, path: str):
        super().__init__(exc.strerror or str(exc))
        self.exc, self.path = exc, path


class _Writer:
    """Writes snapshot trees to a new private directory or to a new archive, as root safely.

    Nothing is written through a link or into a place someone else controls: an archive is
    written to a temporary name created exclusively (O_EXCL|O_NOFOLLOW, 0600) beside the output
    and renamed into place (never replacing anything) only when complete; a directory is made
    fresh (0700), or an empty one we own that nobody else can write to is taken, and every file
    in it is created with openat(O_EXCL|O_NOFOLLOW) relative to directory fds held open, so a
    path component swapped meanwhile cannot redirect a write.
    """

    def __init__(self, out: str):
        self.out = out
        self.kind = output_kind(out)
        self.archive = self.kind != "dir"
        self.tar = None
        self._raw = self._zw = None
        self._pfd = self._root = None
        self._tmp = None
        self._dirs: dict[str, int] = {}
        self.created = False
        self.done = False
        head, name = os.path.split(out.rstrip("/") or out)
        if name in ("", ".", ".."):
            raise CaptureError(f"{out}: name a new file or directory to write the capture to")
        self._name = name
        try:
            self._pfd = os.open(head or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if self.archive:
                self._open_archive()
            else:
                self._open_dir()
        except CaptureError:
            self._close_fds()
            raise
        except OSError as exc:
            self._close_fds()
            self._drop_tmp()
            raise CaptureError(f"{out}: cannot write: {exc.strerror or exc}") from None

    # --- opening ---------------------------------------------------------------------------------
    def _exists(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self._pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _open_archive(self) -> None:
        import stat

        st = self._exists(self._name)
        if st is not None:
            what = "is a symbolic link" if stat.S_ISLNK(st.st_mode) else "exists"
            raise CaptureError(f"{self.out}: {what}; choose another name "
                               "(captures are never overwritten nor written through links)")
        self._tmp = f".{self._name}.{secrets.token_hex(4)}.part"
        fd = os.open(self._tmp, _O_NEW, FILE_MODE, dir_fd=self._pfd)
        self._raw = os.fdopen(fd, "wb")
        if self.kind == "zst":
            import zstandard

            self._zw = zstandard.ZstdCompressor(level=6).stream_writer(self._raw, closefd=False)
            self.tar = tarfile.open(fileobj=self._zw, mode="w|")
        else:
            self.tar = tarfile.open(fileobj=self._raw, mode="w:gz" if self.kind == "gz" else "w")

    def _open_dir(self) -> None:
        import stat

        try:
            os.mkdir(self._name, DIR_MODE, dir_fd=self._pfd)
            self.created = True
        except FileExistsError:
            st = self._exists(self._name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise CaptureError(f"{self.out}: is a symbolic link; choose another name "
                                   "(captures are never written through links)") from None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise CaptureError(f"{self.out}: exists; choose another name "
                                   "(captures are never overwritten)") from None
        self._root = os.open(self._name, _O_DIR, dir_fd=self._pfd)
        st = os.fstat(self._root)
        if st.st_uid != os.geteuid():
            raise CaptureError(f"{self.out}: directory owned by uid {st.st_uid}, not by us: choose a "
                               "new name (ksight makes the directory itself, private)")
        if st.st_mode & 0o022:
            raise CaptureError(f"{self.out}: directory others can write to (mode "
                               f"{stat.S_IMODE(st.st_mode):04o}): choose a new name (ksight makes "
                               "the directory itself, private)")
        if not self.created:
            if os.listdir(self._root):
                raise CaptureError(f"{self.out}: directory exists and is not empty")
            os.fchmod(self._root, DIR_MODE)

    # --- writing ---------------------------------------------------------------------------------
    def _dirfd(self, path: str) -> int:
        """An fd of the directory `path` (relative to the output), made (0700) where missing."""
        if not path:
            return self._root
        fd = self._dirs.get(path)
        if fd is not None:
            return fd
        parent, _, name = path.rpartition("/")
        pfd = self._dirfd(parent)
        if name in ("", ".", ".."):
            raise ValueError(f"bad path in capture: {path!r}")
        try:
            os.mkdir(name, DIR_MODE, dir_fd=pfd)
        except FileExistsError:
            pass
        fd = self._dirs[path] = os.open(name, _O_DIR, dir_fd=pfd)
        return fd

    def _guard(self, path: str, fn, *a) -> None:
        try:
            fn(*a)
        except OSError as exc:
            raise WriteFailed(exc, path) from None

    def file(self, path: str, data: bytes, mtime: float) -> None:
        if self.tar is not None:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = len(data), int(mtime), FILE_MODE
            self._guard(path, self.tar.addfile, ti, io.BytesIO(data))
        else:
            self._guard(path, self._write_file, path, data)

    def _write_file(self, path: str, data: bytes, name: str | None = None) -> None:
        parent, _, base = path.rpartition("/")
        fd = os.open(name or base, _O_NEW, FILE_MODE, dir_fd=self._dirfd(parent))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def link(self, path: str, target: str, mtime: float) -> None:
        if self.tar is not None:
            ti = tarfile.TarInfo(path)
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, int(mtime)
            ti.mode = FILE_MODE  # meaningless for a link, but nothing in the archive says 0644
            self._guard(path, self.tar.addfile, ti)
        else:
            parent, _, base = path.rpartition("/")
            self._guard(path, lambda: os.symlink(target, base, dir_fd=self._dirfd(parent)))

    def dir(self, path: str, mtime: float) -> None:
        if self.tar is not None:
            ti = tarfile.TarInfo(path)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, DIR_MODE, int(mtime)
            self._guard(path, self.tar.addfile, ti)
        else:
            self._guard(path, self._dirfd, path)

    def end_snapshot(self) -> None:
        """Close the directory fds of a finished snapshot (a long capture keeps few open)."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def remove(self, path: str) -> None:
        """Remove a top-level entry of a directory capture (a snapshot cut short)."""
        import shutil

        if self._root is None:
            return
        self.end_snapshot()
        import stat

        try:
            if stat.S_ISDIR(os.stat(path, dir_fd=self._root, follow_symlinks=False).st_mode):
                shutil.rmtree(path, dir_fd=self._root)
            else:
                os.unlink(path, dir_fd=self._root)
        except FileNotFoundError:
            pass

    # --- finishing -------------------------------------------------------------------------------
    def finish(self, manifest: bytes) -> None:
        """Write the manifest and put the capture in place. Raises WriteFailed (nothing is in place
        for an archive; for a directory, the snapshots written so far are)."""
        if self.archive:
            self.file("manifest.json", manifest, time.time())
            self._guard(self.out, self._close_archive)
            self._guard(self.out, _rename_noreplace, self._pfd, self._tmp, self._name)
            self._tmp = None
        else:
            self.end_snapshot()
            tmp = f".manifest.json.{secrets.token_hex(4)}.part"
            try:
                self._guard("manifest.json", self._write_file, tmp, manifest)
                self._guard("manifest.json", _rename_noreplace, self._root, tmp, "manifest.json")
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=self._root)
                except OSError:
                    pass
                raise
        self.done = True
        self._close_fds()

    def _close_archive(self) -> None:
        tar, self.tar = self.tar, None
        tar.close()
        if self._zw is not None:
            self._zw.close()
            self._zw = None
        self._raw.flush()
        os.fsync(self._raw.fileno())
        raw, self._raw = self._raw, None
        raw.close()

    def abort(self) -> None:
        """Give up: an archive's temporary file is removed; a directory capture is left to the
        caller (it keeps complete snapshots, or calls discard())."""
        for obj in (self.tar, self._zw, self._raw):
            try:
                if obj is not None:
                    obj.close()
            except Exception:
                pass
        self.tar = self._zw = self._raw = None
        self._drop_tmp()
        self.end_snapshot()

    def discard(self) -> None:
        """Remove everything this capture wrote (and the directory, if it made it)."""
        self.abort()
        if self._root is not None:
            for name in os.listdir(self._root):
                self.remove(name)
            if self.created:
                try:
                    os.rmdir(self._name, dir_fd=self._pfd)
                except OSError:
                    pass
        self._close_fds()

    def _drop_tmp(self) -> None:
        if self._tmp is not None and self._pfd is not None:
            try:
                os.unlink(self._tmp, dir_fd=self._pfd)
            except FileNotFoundError:
                pass
            self._tmp = None

    def _close_fds(self) -> None:
        self.end_snapshot()
        for attr in ("_root", "_pfd"):
            fd = getattr(self, attr)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)


def _write_snapshot(writer: "_Writer", snap: Snapshot, rec, d: str, started: float,
                    redactor=None) -> dict:
    """Write exactly what one snapshot read (its recording root) under d/; its manifest entry.
    With a redactor, what identifies people, paths and peers is replaced (store/redact.py)."""
    stamp = snap.taken_at or started
    for path in sorted(rec.dirs):
        writer.dir(f"{d}/{path}" if path else d, stamp)
    files = 0
    for path, data in sorted(rec.files.items()):
        if redactor is not None:
            data = redactor.file(path, data)
            if data is None:
                continue
        writer.file(f"{d}/{path}", data, stamp)
        files += 1
    ids = getattr(rec, "dir_ids", None)
    if ids:  # the ids of the directories read (cgroups): Root.dir_id of the replay
        data = format_dir_ids(ids)
        if redactor is not None:
            data = redactor.file(DIR_IDS, data)
        if data is not None:
            writer.file(f"{d}/{DIR_IDS}", data, stamp)
            files += 1
    for path, target in sorted(rec.links.items()):
        writer.link(f"{d}/{path}", redactor.link(path, target) if redactor else target, stamp)
    writer.end_snapshot()
    return {"dir": d, "taken_at": snap.taken_at, "monotonic": snap.monotonic,
            "uptime_s": snap.uptime_s, "files": files,
            "unavailable": [{"source": m.source, "reason": m.reason} for m in snap.unavailable]}


def capture_plan(sources: list[str] | None = None, processes: bool = True,
                 sockets: bool = True, pids: tuple[int, ...] = (),
                 growing_maps: bool = True, extra_sources: tuple[str, ...] = ()) -> Plan:
    """What a capture reads: the named system sources (else the default set), the process
    table (stat, status and the fds that name socket owners) and the sockets of every netns.

    Per-mapping files (smaps), which cost the kernel a walk of every mapping, only for a few:
    - `pids`: smaps, the exe link and the command line of these processes in every snapshot
      (`ksight capture --pid PID`: what `ksight pmap --from` needs);
    - growing_maps (with the default sources and the process table): the process_maps source,
      smaps of the few processes that grow while the capture runs (sources/process_maps.py: what
      memory.vma-growth and the memory rules' mapping evidence need on replay).
    """
    from ..collect.plan import Few
    from ..collect.processes import DEFAULT_DETAIL
    from ..sources import DEFAULT

    srcs = tuple(sources) if sources is not None else tuple(DEFAULT)
    # opt-in sources named on top of the set (`ksight capture --with blocked_tasks`)
    srcs += tuple(x for x in extra_sources if x not in srcs)
    if growing_maps and processes and sources is None:
        srcs += ("process_maps",)
    few = (Few(("cmdline", "exe", "smaps"), pids=tuple(pids)),) if pids else ()
    return Plan(sources=srcs, processes=(DEFAULT_DETAIL if processes or pids else ()),
                sockets=sockets, pids=None if processes else (tuple(pids) or None), few=few,
                # each namespace's /proc/PID/net/{snmp,netstat,sockstat}: `ksight tcp --from`
                netns_counters=sockets)


def capture(
    out: str,
    *,
    root: Root | None = None,
    interval: float = 1.0,
    count: int = 1,
    sources: list[str] | None = None,
    processes: bool = True,
    sockets: bool = True,
    redact: bool = False,
    pids: tuple[int, ...] = (),
    progress: Callable[[int, int, Snapshot], None] | None = None,
    extra_sources: tuple[str, ...] = (),
) -> dict:
    """Take `count` snapshots `interval` seconds apart and write their raw text and a manifest.

    Returns the manifest. Sources that were unavailable are listed per snapshot with their reason,
    so the machine that replays the capture can say why (e.g. "permission denied"), not "missing".

    pids: processes whose smaps (and exe link) every snapshot holds (capture_plan).

    Ctrl-C keeps the complete snapshots (manifest "interrupted"). A write that fails (disk full)
    raises CaptureError, and leaves no archive; a directory capture keeps its complete snapshots
    and a manifest listing them when it can (manifest "write_error", returned, not raised), else
    nothing. A second Ctrl-C while an archive is finished leaves the archive complete or absent.
    """
    from ..fs.bundle import MAX_SNAPSHOTS

    if count < 1 or count > MAX_SNAPSHOTS:
        # replay (`--from`) refuses a capture of more snapshots than this: do not write one
        raise CaptureError(f"--count must be between 1 and {MAX_SNAPSHOTS:,} (more is a recording: "
                           "a capture of that many snapshots would be refused on replay)")
    if interval < 0:
        raise CaptureError("--interval must not be negative")
    if redact and pids:
        raise CaptureError("--pid records smaps, whose file paths --redact cannot hide; "
                           "capture without --redact, or without --pid")
    col = Collector(root or LiveRoot())
    # smaps names every mapped file: a redacted capture holds none (no process_maps either)
    plan = capture_plan(sources, processes, sockets, tuple(pids), growing_maps=not redact,
                        extra_sources=tuple(extra_sources))
    redactor = None
    if redact:
        from .redact import Redactor

        redactor = Redactor()
    writer = _Writer(out)
    metas: list[dict] = []
    host = None
    started = time.time()
    interrupted = False
    failed: WriteFailed | None = None
    try:
        try:
            for i, (snap, rec) in enumerate(col.record(plan, interval=interval, count=count - 1)):
                d = f"{i:04d}"
                try:
                    # an archive is one stream: a Ctrl-C in the middle of a member would leave a
                    # member shorter than its header says and corrupt everything after it, so
                    # signals wait until the snapshot is written whole (a folder removes a
                    # half-written snapshot instead)
                    with _signals_deferred(writer.archive):
                        metas.append(_write_snapshot(writer, snap, rec, d, started, redactor))
                except BaseException:
                    writer.remove(d)  # a snapshot half-written is never kept
                    raise
                host = host or snap.host
                if progress:
                    progress(i + 1, count, snap)
        except KeyboardInterrupt:
            # Ctrl-C: keep what was taken; the manifest lists only complete snapshots
            interrupted = True
        except WriteFailed as exc:
            failed = exc
        if failed is not None and (writer.archive or not metas):
            raise _lost(out, failed, writer)
        manifest = {
            "format": FORMAT, "version": VERSION, "ksight": __version__,
            "created_by": f"ksight {__version__} on "
                          f"{redactor.hostname(socket.gethostname()) if redactor else socket.gethostname()}",
            "host": _host_manifest(host, redactor) if host else {},
            "interval_s": interval, "count": len(metas), "requested_count": count,
            "interrupted": interrupted,
            **({"smaps_pids": list(pids)} if pids else {}),
            "snapshots": metas,
        }
        if failed is not None:
            manifest["write_error"] = f"{failed.path}: {failed}"
        if redactor is not None:
            from .redact import manifest_entry

            manifest["redaction"] = manifest_entry()
        try:
            writer.finish(json.dumps(manifest, indent=1).encode())
        except WriteFailed as exc:
            raise _lost(out, failed or exc, writer) from None
    except BaseException:
        # an error, or a second Ctrl-C while finishing: an archive is removed (never left half
        # written); a directory keeps only complete snapshots
        if not writer.done:
            writer.abort()
            writer._close_fds()
        raise
    return manifest


class _signals_deferred:
    """Block SIGINT and SIGTERM for the block (main thread only); a signal that arrives meanwhile
    is delivered when it ends, so the KeyboardInterrupt comes between two whole snapshots."""

    def __init__(self, on: bool = True):
        import threading

        self.on = on and threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.on:
            import signal

            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        return self

    def __exit__(self, *exc):
        if self.on:
            import signal

            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
        return False


def _lost(out: str, failed: WriteFailed, writer: _Writer) -> CaptureError:
    """Nothing usable could be kept: remove what was written; the one-line error to raise."""
    if isinstance(failed.exc, FileExistsError) and writer.archive:
        writer.abort()
        return CaptureError(f"{out}: was created by someone else while capturing; not replaced, "
                            "and the capture was discarded")
    if writer.archive:
        writer.abort()
        kept = "the partial archive was removed"
    else:
        writer.discard()
        kept = "nothing was kept"
    return CaptureError(f"{out}: cannot write ({failed}); {kept}")


__all__ = ["Capture", "open_capture", "capture", "ArchiveRoot", "DirRoot"]
