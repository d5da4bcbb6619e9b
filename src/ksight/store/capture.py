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
import socket
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .. import __version__
from ..collect.snapshot import take
from ..errors import CaptureError, Unavailable
from ..fs import ArchiveRoot, DirRoot, LiveRoot, RecordingRoot, Root, norm, open_root
from ..model.snapshot import HostInfo, Missing, Snapshot

FORMAT = "ksight-capture"
VERSION = 1
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst")


@dataclass
class Capture:
    """An opened capture: its snapshot roots in order, and the manifest if it had one."""

    source: str
    roots: list[Root]
    manifest: dict | None = None
    metas: list[dict] = field(default_factory=list)

    @property
    def host_hint(self) -> dict:
        return dict((self.manifest or {}).get("host") or {})

    def snapshots(self, **take_args) -> Iterator[Snapshot]:
        """Re-parse each snapshot root through the same collector the live path uses."""
        for r, meta in zip(self.roots, self.metas):
            known = [Missing(m["source"], m["reason"]) for m in meta.get("unavailable", [])]
            yield take(r, host_hint=self.host_hint, taken_at=meta.get("taken_at"),
                       known_unavailable=known, **take_args)


def _checked_manifest(spec: str, m) -> dict:
    """The manifest if it has the shape this ksight reads, else CaptureError saying what is wrong
    (a hand-edited or foreign manifest must not become a traceback or silent wrong numbers)."""
    def bad(why: str):
        raise CaptureError(f"{spec}: manifest.json: {why}")

    if not isinstance(m, dict) or m.get("format") != FORMAT:
        bad("not a ksight capture manifest")
    if not isinstance(m.get("version"), int) or m["version"] > VERSION:
        bad(f"format version {m.get('version')!r} is not one this ksight reads (<= {VERSION})")
    host = m.get("host", {})
    if not isinstance(host, dict):
        bad("'host' is not an object")
    for k in ("page_size", "clk_tck", "cpus"):
        if host.get(k) is not None and (not isinstance(host[k], int) or host[k] <= 0):
            bad(f"host.{k} is {host[k]!r}, not a positive integer")
    snaps = m.get("snapshots", [])
    if not isinstance(snaps, list):
        bad("'snapshots' is not a list")
    for i, s in enumerate(snaps):
        if not isinstance(s, dict) or not isinstance(s.get("dir"), str) or not s["dir"]:
            bad(f"snapshot {i} has no 'dir'")
        if s.get("taken_at") is not None and not isinstance(s["taken_at"], (int, float)):
            bad(f"snapshot {i}: taken_at is not a number")
        un = s.get("unavailable", [])
        if not isinstance(un, list) or not all(
                isinstance(u, dict) and isinstance(u.get("source"), str)
                and isinstance(u.get("reason"), str) for u in un):
            bad(f"snapshot {i}: 'unavailable' is not a list of {{source, reason}}")
    return m


def _child(base: Root, d: str) -> Root:
    """The root of snapshot folder `d`. In a folder capture each snapshot is a DirRoot of its own:
    a snapshot folder may be a link to a folder elsewhere (captures put together by hand), and
    the links inside it are then followed only while they stay inside that snapshot's tree.
    In an archive every link is checked against the archive's root (ArchiveRoot)."""
    if isinstance(base, DirRoot) and not base.live:
        p = norm(d)
        return DirRoot(os.path.join(base.base, p), label=f"{base.label}:{p}")
    return base.sub(d)


def _is_capture_top(base: Root) -> bool:
    if base.exists("manifest.json") or base.isdir("proc"):
        return True
    try:
        return any(_child(base, d).isdir("proc") for d in base.listdir(""))
    except Unavailable:
        return False


def _descend(base: Root) -> Root:
    """`tar czf cap.tgz mydir/` holds one top-level folder that holds the capture: look inside it
    (one level; hidden names such as .DS_Store are ignored)."""
    if _is_capture_top(base):
        return base
    try:
        names = [n for n in base.listdir("") if not n.startswith(".")]
    except Unavailable:
        return base
    if len(names) == 1 and _child(base, names[0]).isdir(""):
        inner = _child(base, names[0])
        if _is_capture_top(inner):
            return inner
    return base


def open_capture(spec: str) -> Capture:
    """Open a capture directory or archive (or one holding a single folder that holds it), or a
    single root tree."""
    base = open_root(spec)
    if base.live:
        raise CaptureError("--from needs a capture file or directory, not /")
    base = _descend(base)
    manifest = None
    if base.exists("manifest.json"):
        try:
            manifest = json.loads(base.read_text("manifest.json"))
        except (ValueError, Unavailable) as exc:
            raise CaptureError(f"{spec}: manifest.json is not readable JSON: {exc}") from None
        manifest = _checked_manifest(spec, manifest)
    if manifest and manifest.get("snapshots"):
        metas = list(manifest["snapshots"])
        roots = [_child(base, m["dir"]) for m in metas]
        for m, r in zip(metas, roots):
            if not r.isdir("proc"):
                raise CaptureError(f"{spec}: snapshot {m['dir']!r} listed in the manifest has no proc/")
        return Capture(spec, roots, manifest, metas)
    if base.isdir("proc"):
        return Capture(spec, [base], manifest, [{}])
    subdirs = [d for d in base.listdir("") if _child(base, d).isdir("proc")]
    if not subdirs:
        raise CaptureError(f"{spec}: not a capture: no proc/ tree at the top or in any subdirectory")
    return Capture(spec, [_child(base, d) for d in sorted(subdirs)], manifest, [{} for _ in subdirs])


def _host_manifest(host: HostInfo) -> dict:
    return {"hostname": host.hostname, "kernel": host.kernel, "kernel_version": host.kernel_version,
            "page_size": host.page_size, "clk_tck": host.clk_tck, "cpus": host.cpus,
            "machine": platform.machine(), "byteorder": sys.byteorder}


class _Writer:
    """Writes snapshot trees to a directory or straight into an archive."""

    def __init__(self, out: str):
        try:
            self._open(out)
        except OSError as exc:
            raise CaptureError(f"{out}: cannot write: {exc.strerror or exc}") from None

    def _open(self, out: str) -> None:
        self.out = out
        self.archive = out.endswith(ARCHIVE_SUFFIXES)
        self._raw = None
        self.tar = None
        if self.archive:
            if out.endswith((".tar.zst", ".tzst")):
                import zstandard

                self._raw = open(out, "wb")
                self._zw = zstandard.ZstdCompressor(level=6).stream_writer(self._raw)
                self.tar = tarfile.open(fileobj=self._zw, mode="w|")
            else:
                mode = "w:gz" if out.endswith((".gz", ".tgz")) else "w"
                self.tar = tarfile.open(out, mode)
        else:
            if os.path.exists(out) and os.listdir(out):
                raise CaptureError(f"{out}: directory exists and is not empty")
            os.makedirs(out, exist_ok=True)

    def file(self, path: str, data: bytes, mtime: float) -> None:
        if self.tar is not None:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = len(data), int(mtime), 0o644
            self.tar.addfile(ti, io.BytesIO(data))
        else:
            full = os.path.join(self.out, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)

    def link(self, path: str, target: str, mtime: float) -> None:
        if self.tar is not None:
            ti = tarfile.TarInfo(path)
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, int(mtime)
            self.tar.addfile(ti)
        else:
            full = os.path.join(self.out, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            os.symlink(target, full)

    def dir(self, path: str, mtime: float) -> None:
        if self.tar is not None:
            ti = tarfile.TarInfo(path)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, int(mtime)
            self.tar.addfile(ti)
        else:
            os.makedirs(os.path.join(self.out, path), exist_ok=True)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            if self._raw is not None:
                self._zw.close()
                self._raw.close()


def _write_snapshot(writer: "_Writer", root: Root, d: str, started: float, **take_args):
    """Take one snapshot through a recording root and write exactly what it read under d/."""
    rec = RecordingRoot(root)
    snap = take(rec, **take_args)
    stamp = snap.taken_at or started
    for path in sorted(rec.dirs):
        writer.dir(f"{d}/{path}" if path else d, stamp)
    for path, data in sorted(rec.files.items()):
        writer.file(f"{d}/{path}", data, stamp)
    for path, target in sorted(rec.links.items()):
        writer.link(f"{d}/{path}", target, stamp)
    meta = {"dir": d, "taken_at": snap.taken_at, "monotonic": snap.monotonic,
            "uptime_s": snap.uptime_s, "files": len(rec.files),
            "unavailable": [{"source": m.source, "reason": m.reason} for m in snap.unavailable]}
    return snap, meta


def capture(
    out: str,
    *,
    root: Root | None = None,
    interval: float = 1.0,
    count: int = 1,
    sources: list[str] | None = None,
    processes: bool = True,
    sockets: bool = True,
    progress: Callable[[int, int, Snapshot], None] | None = None,
) -> dict:
    """Take `count` snapshots `interval` seconds apart and write their raw text and a manifest.

    Returns the manifest. Sources that were unavailable are listed per snapshot with their reason,
    so the machine that replays the capture can say why (e.g. "permission denied"), not "missing".
    """
    if count < 1:
        raise CaptureError("--count must be at least 1")
    if interval < 0:
        raise CaptureError("--interval must not be negative")
    root = root or LiveRoot()
    writer = _Writer(out)
    metas = []
    host = None
    started = time.time()
    try:
        interrupted = False
        try:
            for i in range(count):
                if i:
                    time.sleep(interval)
                snap, meta = _write_snapshot(writer, root, f"{i:04d}", started, sources=sources,
                                             processes=processes, sockets=sockets)
                host = host or snap.host
                metas.append(meta)
                if progress:
                    progress(i + 1, count, snap)
        except KeyboardInterrupt:
            # Ctrl-C: keep what was taken. The manifest lists only complete snapshots (a
            # directory half-written when the signal came is not listed, so replay never reads it)
            interrupted = True
        manifest = {
            "format": FORMAT, "version": VERSION, "ksight": __version__,
            "created_by": f"ksight {__version__} on {socket.gethostname()}",
            "host": _host_manifest(host) if host else {},
            "interval_s": interval, "count": len(metas), "requested_count": count,
            "interrupted": interrupted,
            "snapshots": metas,
        }
        writer.file("manifest.json", json.dumps(manifest, indent=1).encode(), time.time())
    finally:
        writer.close()
    return manifest


__all__ = ["Capture", "open_capture", "capture", "ArchiveRoot", "DirRoot"]
