"""Opening a capture bundle for reading: the snapshot roots in order and the manifest.

This is I/O (it turns a path into Roots), so it lives with the roots; writing captures (which
samples the kernel through the collector) lives in store/capture.py, above collect/. The layout:

    manifest.json         {"format": "ksight-capture", "version": 1, "host": {...},
                           "snapshots": [{"dir": "0000", "taken_at": ..., "unavailable": [...]}]}
    0000/proc/...  0000/sys/...  0000/ksight/...    one snapshot root per sorted subdirectory

A single root tree (a directory with proc/ at the top, like a test fixture) is a one-snapshot
capture; a folder or archive that holds one folder holding a capture (`tar czf cap.tgz mydir/`)
is opened one level down. Without a manifest, time between snapshots comes from each snapshot's
proc/uptime. The manifest is a stable format: fields are only ever added.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import CaptureError, Unavailable, clip
from .root import DirRoot, Root, norm, open_root

FORMAT = "ksight-capture"
VERSION = 1

# A manifest is input like any other (docs/security.md): checked before anything trusts it.
MAX_SNAPSHOTS = 10_000  # a day at one snapshot every ~9 s; each is replayed by every command
MAX_HOST_TEXT = 1024  # hostname, kernel release, /proc/version: short on every kernel
# taken_at is a wall clock in seconds since the epoch: machines without an RTC start at 0, and
# 2^33 s is the year 2242. Outside that it is not a time (NaN, inf, -1e18 crash strftime).
MIN_TAKEN_AT = 0.0
MAX_TAKEN_AT = float(1 << 33)
# other manifest numbers (monotonic, uptime_s): finite and not negative, below ~3,000 years
MAX_SECONDS = 1e11


@dataclass
class Bundle:
    """An opened capture: its snapshot roots in order, and the manifest if it had one."""

    source: str
    roots: list[Root]
    manifest: dict | None = None
    metas: list[dict] = field(default_factory=list)

    @property
    def host_hint(self) -> dict:
        return dict((self.manifest or {}).get("host") or {})


def _checked_manifest(spec: str, m) -> dict:
    """The manifest if it has the shape this ksight reads, else CaptureError saying what is wrong,
    naming the field (a hand-edited, foreign or hostile manifest must not become a traceback,
    an absurd time or silent wrong numbers)."""
    def bad(why: str):
        raise CaptureError(f"{spec}: manifest.json: {why}")

    if not isinstance(m, dict) or m.get("format") != FORMAT:
        bad("not a ksight capture manifest")
    if type(m.get("version")) is not int or m["version"] > VERSION:
        bad(f"format version {clip(repr(m.get('version')))} is not one this ksight reads (<= {VERSION})")
    host = m.get("host", {})
    if not isinstance(host, dict):
        bad("'host' is not an object")
    for k in ("page_size", "clk_tck", "cpus"):
        if host.get(k) is not None and (type(host[k]) is not int or not 0 < host[k] < 1 << 40):
            bad(f"host.{k} is {clip(repr(host[k]))}, not a positive integer")
    for k in ("hostname", "kernel", "kernel_version", "machine", "byteorder"):
        v = host.get(k)
        if v is not None and not isinstance(v, str):
            bad(f"host.{k} is a {type(v).__name__}, not a string")
        if v is not None and len(v) > MAX_HOST_TEXT:
            bad(f"host.{k} is {len(v)} characters long (at most {MAX_HOST_TEXT})")
    snaps = m.get("snapshots", [])
    if not isinstance(snaps, list):
        bad("'snapshots' is not a list")
    if len(snaps) > MAX_SNAPSHOTS:
        bad(f"lists {len(snaps):,} snapshots; at most {MAX_SNAPSHOTS:,} are read (MAX_SNAPSHOTS)")
    seen: dict[str, int] = {}
    for i, s in enumerate(snaps):
        if not isinstance(s, dict) or not isinstance(s.get("dir"), str) or not s["dir"]:
            bad(f"snapshot {i} has no 'dir'")
        d = norm(s["dir"])
        if d in seen:
            bad(f"snapshot {i}: dir {clip(s['dir'])!r} is listed already (snapshot {seen[d]}); "
                "each snapshot is listed once")
        seen[d] = i
        t = s.get("taken_at")
        if t is not None:
            if type(t) not in (int, float):
                bad(f"snapshot {i}: taken_at is {clip(repr(t))}, not a number")
            if not (math.isfinite(t) and MIN_TAKEN_AT <= t <= MAX_TAKEN_AT):
                bad(f"snapshot {i}: taken_at is {clip(repr(t))}, not a time (seconds since "
                    f"1970, from {MIN_TAKEN_AT:.0f} to {MAX_TAKEN_AT:.0f})")
        for k in ("monotonic", "uptime_s"):
            v = s.get(k)
            if v is not None and (type(v) not in (int, float) or not math.isfinite(v)
                                  or not 0 <= v <= MAX_SECONDS):
                bad(f"snapshot {i}: {k} is {clip(repr(v))}, not a number of seconds")
        un = s.get("unavailable", [])
        if not isinstance(un, list) or not all(
                isinstance(u, dict) and isinstance(u.get("source"), str)
                and isinstance(u.get("reason"), str) for u in un):
            bad(f"snapshot {i}: 'unavailable' is not a list of {{source, reason}}")
        # reasons are shown as they are: keep them short (errors.clip), as ksight's own
        s["unavailable"] = [{**u, "source": clip(u["source"]), "reason": clip(u["reason"])} for u in un]
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


def open_bundle(spec: str) -> Bundle:
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
        except RecursionError:
            raise CaptureError(f"{spec}: manifest.json is not a manifest: lists or objects "
                               "nested too deeply") from None
        manifest = _checked_manifest(spec, manifest)
    if manifest and manifest.get("snapshots"):
        metas = list(manifest["snapshots"])
        roots = [_child(base, m["dir"]) for m in metas]
        for m, r in zip(metas, roots):
            if not r.isdir("proc"):
                raise CaptureError(f"{spec}: snapshot {m['dir']!r} listed in the manifest has no proc/")
        return Bundle(spec, roots, manifest, metas)
    if base.isdir("proc"):
        return Bundle(spec, [base], manifest, [{}])
    subdirs = [d for d in base.listdir("") if _child(base, d).isdir("proc")]
    if len(subdirs) > MAX_SNAPSHOTS:
        raise CaptureError(f"{spec}: holds {len(subdirs):,} snapshot folders; at most "
                           f"{MAX_SNAPSHOTS:,} are read (MAX_SNAPSHOTS)")
    if not subdirs:
        raise CaptureError(f"{spec}: not a capture: no proc/ tree at the top or in any subdirectory")
    return Bundle(spec, [_child(base, d) for d in sorted(subdirs)], manifest, [{} for _ in subdirs])


__all__ = ["Bundle", "open_bundle", "FORMAT", "VERSION", "MAX_SNAPSHOTS"]
