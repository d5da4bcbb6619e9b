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

from .. import __version__
from ..collect.collector import Collector
from ..collect.plan import Plan
from ..collect.snapshot import take
from ..errors import CaptureError
from ..fs import ArchiveRoot, DirRoot, LiveRoot, Root
from ..fs.bundle import FORMAT, VERSION, Bundle, open_bundle
from ..model.snapshot import HostInfo, Missing, Snapshot

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst")


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


def _write_snapshot(writer: "_Writer", snap: Snapshot, rec, d: str, started: float) -> dict:
    """Write exactly what one snapshot read (its recording root) under d/; its manifest entry."""
    stamp = snap.taken_at or started
    for path in sorted(rec.dirs):
        writer.dir(f"{d}/{path}" if path else d, stamp)
    for path, data in sorted(rec.files.items()):
        writer.file(f"{d}/{path}", data, stamp)
    for path, target in sorted(rec.links.items()):
        writer.link(f"{d}/{path}", target, stamp)
    return {"dir": d, "taken_at": snap.taken_at, "monotonic": snap.monotonic,
            "uptime_s": snap.uptime_s, "files": len(rec.files),
            "unavailable": [{"source": m.source, "reason": m.reason} for m in snap.unavailable]}


def capture_plan(sources: list[str] | None = None, processes: bool = True,
                 sockets: bool = True) -> Plan:
    """What a capture reads: the named system sources (else the default set), the process
    table (stat, status and the fds that name socket owners) and the sockets of every netns."""
    from ..collect.processes import DEFAULT_DETAIL
    from ..sources import DEFAULT

    return Plan(sources=tuple(sources) if sources is not None else tuple(DEFAULT),
                processes=(DEFAULT_DETAIL if processes else ()), sockets=sockets)


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
    col = Collector(root or LiveRoot())
    plan = capture_plan(sources, processes, sockets)
    writer = _Writer(out)
    metas = []
    host = None
    started = time.time()
    try:
        interrupted = False
        try:
            for i, (snap, rec) in enumerate(col.record(plan, interval=interval, count=count - 1)):
                metas.append(_write_snapshot(writer, snap, rec, f"{i:04d}", started))
                host = host or snap.host
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
