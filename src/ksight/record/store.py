"""The recording: one SQLite file (WAL, no server) of sample frames, as `ksight record` writes it.

    rec = Recording.open(path)                # read (a recorder may be writing it meanwhile)
    rec.range()                               # (first, last) wall-clock times, or None if empty
    for snap in rec.snapshots(since, until): ...   # decoded, in order, re-synced at keyframes
    snap = rec.at(t)                          # the last snapshot taken at or before t

    w = RecordingWriter.create_or_open(path, retention=Retention.parse("7d"))
    w.append(snapshot, processes=pids)        # one frame, one row, one commit

Layout (FORMAT 1; docs/storage.md, "The recording"):
- `meta(key, value)`: `format` (this store's layout; a newer one is refused, older ones are
  read), `created`, `writer` (ksight version), `hostname`, `interval`, `keyframe_every`.
- `segments(id, start, end, frames, bytes)`: a piece that starts at a keyframe and holds the
  delta frames after it. Retention removes whole segments, oldest first, so what is left always
  starts at a keyframe.
- `frames(seq, segment, t, keyframe, length, crc, data)`: one sample frame (store/samples.py) per
  row: its wall-clock time, whether it is a keyframe, and the length and CRC-32 of its bytes. A
  row whose bytes do not match its length or CRC (a torn or damaged write) is skipped on read and
  counted (`Recording.skipped`); the delta frames after it are skipped too, until the next
  keyframe re-syncs (a delta frame never decodes against the wrong base: samples.py).

Crash safety: each sample is one transaction (the frame and its segment's totals) committed in
WAL mode: a recorder killed at any moment loses at most the sample it was writing (SQLite rolls an
uncommitted transaction back when the file is next opened). synchronous=NORMAL: a power loss may
also lose the last few commits, never the file's consistency.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import KsightError, SampleError, UsageError

FORMAT = 1  # the store's layout (tables and columns); frames carry their own (samples.VERSION)
APPLICATION_ID = 0x4B534452  # "KSDR": `file` and sqlite3 tell a ksight recording apart
KEYFRAME_EVERY = 60  # at 1 s, a reader starts at most a minute before the time it wants

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY, start REAL NOT NULL, end REAL NOT NULL,
    frames INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY, segment INTEGER NOT NULL, t REAL NOT NULL,
    keyframe INTEGER NOT NULL, length INTEGER NOT NULL, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS frames_t ON frames (t);
CREATE INDEX IF NOT EXISTS frames_segment ON frames (segment);
"""


class RecordingError(KsightError):
    """A file that is not a recording, a newer layout, or a store that cannot be opened."""


# ---------------------------------------------------------------- retention
@dataclass(frozen=True)
class Retention:
    """How much to keep: `seconds` of history and/or `bytes` on disk (None: no bound)."""

    seconds: float | None = None
    bytes: int | None = None

    _UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    _SIZES = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
              "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}

    @classmethod
    def parse(cls, text: str) -> "Retention":
        """'7d', '12h', '30' (days), '500MB', '2GiB', or both joined by ',' ('7d,500MB')."""
        secs = size = None
        for part in (p.strip() for p in str(text).split(",")):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", part)
            if not m:
                raise UsageError(f"--retention {text!r}: give days (7d, 12h, 30) or a size (500MB, 2GiB)")
            v, unit = float(m.group(1)), m.group(2).lower()
            if v <= 0:
                raise UsageError(f"--retention {text!r}: must be above 0")
            if unit in ("", "d", "s", "h", "w"):
                secs = v * cls._UNITS[unit or "d"]
            elif unit == "min":
                secs = v * 60
            elif unit == "m":
                raise UsageError(f"--retention {text!r}: 'm' is ambiguous: say {m.group(1)}min "
                                 f"(minutes) or {m.group(1)}MB")
            elif unit in cls._SIZES:
                size = int(v * cls._SIZES[unit])
            else:
                raise UsageError(f"--retention {text!r}: unknown unit {m.group(2)!r} "
                                 "(d, h, w, min; B, KB, MB, GB, KiB, MiB, GiB)")
        return cls(secs, size)

    def describe(self) -> str:
        parts = []
        if self.seconds is not None:
            parts.append(f"{self.seconds / 86400:g} days")
        if self.bytes is not None:
            parts.append(f"{self.bytes / 1e6:g} MB")
        return " and ".join(parts) or "everything"


# ---------------------------------------------------------------- opening
def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            if not os.path.exists(path):
                raise RecordingError(f"{path}: no such recording (start one with `ksight record --db {path}`)")
            con = sqlite3.connect(f"file:{_quote(path)}?mode=ro", uri=True, timeout=10,
                                  check_same_thread=False)
        else:
            con = sqlite3.connect(path, timeout=10, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 10000")
        return con
    except sqlite3.Error as e:
        raise RecordingError(f"{path}: cannot open the recording: {e}") from None


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _check_meta(con: sqlite3.Connection, path: str) -> dict[str, str]:
    try:
        app = con.execute("PRAGMA application_id").fetchone()[0]
        rows = con.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as e:
        raise RecordingError(f"{path}: not a ksight recording ({e})") from None
    meta = dict(rows)
    if app != APPLICATION_ID or "format" not in meta:
        raise RecordingError(f"{path}: not a ksight recording (no ksight meta table)")
    try:
        fmt = int(meta["format"])
    except ValueError:
        raise RecordingError(f"{path}: malformed recording format {meta['format']!r}") from None
    if fmt > FORMAT:
        raise RecordingError(f"{path}: recording format {fmt} is newer than this ksight reads "
                             f"(<= {FORMAT}): read it with a newer ksight")
    return meta


# ---------------------------------------------------------------- reading
class Recording:
    """A recording opened for reading. Frames are decoded in order; a damaged row is skipped
    (counted in `skipped`, with its reason in `errors`), never fatal."""

    def __init__(self, con: sqlite3.Connection, path: str, meta: dict[str, str]):
        self.con = con
        self.path = path
        self.meta = meta
        self.skipped = 0
        self.errors: list[str] = []

    @classmethod
    def open(cls, path: str) -> "Recording":
        path = os.fspath(path)
        if os.path.isdir(path):
            raise RecordingError(f"{path}: a directory, not a recording file")
        con = _connect(path, readonly=True)
        try:
            meta = _check_meta(con, path)
        except RecordingError:
            con.close()
            raise
        return cls(con, path, meta)

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def format(self) -> int:
        return int(self.meta["format"])

    def range(self, since: float | None = None, until: float | None = None
              ) -> tuple[float, float] | None:
        """(first, last) sample times (Unix seconds) in [since, until] (None: no bound), None
        when there is none."""
        q, a = _where(since, until)
        lo, hi = self.con.execute(f"SELECT min(t), max(t) FROM frames {q}", a).fetchone()
        return None if lo is None else (lo, hi)

    def count(self, since: float | None = None, until: float | None = None, *,
              keyframes_only: bool = False) -> int:
        q, a = _where(since, until)
        if keyframes_only:
            q = (q + " AND" if q else "WHERE") + " keyframe = 1"
        return self.con.execute(f"SELECT count(*) FROM frames {q}", a).fetchone()[0]

    def size(self) -> dict[str, int]:
        """Frames, segments and payload bytes stored, and the file's size on disk (with its WAL)."""
        frames, nbytes = self.con.execute("SELECT count(*), coalesce(sum(length), 0) FROM frames").fetchone()
        segs = self.con.execute("SELECT count(*) FROM segments").fetchone()[0]
        return {"frames": frames, "segments": segs, "payload_bytes": nbytes,
                "file_bytes": file_size(self.path)}

    def _start_seq(self, since: float | None) -> int:
        """The keyframe to start decoding at for `since`: the last one at or before it."""
        if since is None:
            return 0
        row = self.con.execute("SELECT max(seq) FROM frames WHERE keyframe = 1 AND t <= ?",
                               (since,)).fetchone()
        if row[0] is not None:
            return row[0]
        return 0

    def frames(self, since: float | None = None, until: float | None = None,
               batch: int = 256, keyframes_only: bool = False
               ) -> Iterator[tuple[int, float, bool, bytes | None, str | None]]:
        """(seq, t, keyframe, data or None, why not) from the keyframe before `since` on, in
        order; data is None when the row's length or CRC does not match its bytes."""
        seq = self._start_seq(since) - 1
        while True:
            rows = self.con.execute(
                "SELECT seq, t, keyframe, length, crc, data FROM frames WHERE seq > ? "
                + ("AND keyframe = 1 " if keyframes_only else "")
                + ("AND t <= ? " if until is not None else "") + "ORDER BY seq LIMIT ?",
                (seq, until, batch) if until is not None else (seq, batch)).fetchall()
            if not rows:
                return
            for seq, t, key, length, crc, data in rows:
                why = None
                if not isinstance(data, bytes):
                    why = "no frame bytes"
                elif len(data) != length:
                    why = f"torn row: {len(data)} bytes of {length}"
                elif zlib.crc32(data) != crc:
                    why = "damaged row: CRC mismatch"
                yield seq, t, bool(key), (None if why else data), why

    def snapshots(self, since: float | None = None, until: float | None = None, *,
                  keyframes_only: bool = False, share: bool = True, lazy: bool = False):
        """Every snapshot taken in [since, until], decoded in order. Decoding starts at the
        keyframe at or before `since`; a damaged row and the delta frames that depend on it are
        skipped (counted in `skipped`) until the next keyframe.

        keyframes_only: only the keyframes (one a minute at 1 s and 60 a keyframe), which decode
        alone: a day's overview for ~1/60 of the decoding (a frame costs ~3 ms to decode).

        share (default): a part of a sample that did not change since the sample before (a
        source, the process table) is the same object in both snapshots, decoded once
        (store/samples.SampleDecoder(share=True)); the snapshots are read-only.
        lazy: each source decoded when first read (store/samples.LazySources), for a reader
        that reads a few sources of most samples (`ksight report`)."""
        from ..store.samples import SampleDecoder

        _preload()
        dec = SampleDecoder(share=share, lazy=lazy)
        broken = False
        for seq, t, key, data, why in self.frames(since, until, keyframes_only=keyframes_only):
            if data is None:
                self._skip(seq, t, why)
                broken = True
                continue
            if broken and not key:
                if since is None or t >= since:
                    self._skip(seq, t, "after a damaged row, before the next keyframe")
                continue
            try:
                snap = dec.decode(data)
            except SampleError as e:
                self._skip(seq, t, str(e))
                broken = True
                dec.reset()
                continue
            broken = False
            if since is not None and t < since:
                continue
            yield snap

    def _skip(self, seq: int, t: float, why: str | None) -> None:
        self.skipped += 1
        if len(self.errors) < 20:
            self.errors.append(f"sample {seq} at {_iso(t)}: {why}")

    def at(self, t: float):
        """The last snapshot taken at or before `t` (None when the recording starts later)."""
        row = self.con.execute("SELECT max(t) FROM frames WHERE t <= ?", (t,)).fetchone()
        if row[0] is None:
            return None
        last = None
        for snap in self.snapshots(row[0], row[0]):
            last = snap
        return last

    def times(self, since: float | None = None, until: float | None = None) -> list[float]:
        q, a = _where(since, until)
        return [r[0] for r in self.con.execute(f"SELECT t FROM frames {q} ORDER BY seq", a)]


def _preload() -> None:
    """Import every source module before decoding: the codec resolves annotations that name a
    class imported only for type checkers (cgroup_memory's PsiResource) among loaded modules, so
    a fresh reader that decodes cgroup_memory before pressure would not find it."""
    import importlib

    from ..sources import SYSTEM

    for src in SYSTEM.values():
        try:
            importlib.import_module(f"ksight.sources.{src.module}")
        except ImportError:
            pass


def _where(since, until) -> tuple[str, tuple]:
    conds, args = [], []
    if since is not None:
        conds.append("t >= ?")
        args.append(since)
    if until is not None:
        conds.append("t <= ?")
        args.append(until)
    return ("WHERE " + " AND ".join(conds)) if conds else "", tuple(args)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def file_size(path: str) -> int:
    """Bytes on disk of the store: the file and its WAL and shared-memory index."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(path + suffix).st_blocks * 512
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- writing
class RecordingWriter:
    """Appends frames: one row and one commit per sample. A new segment starts at each keyframe;
    retention runs when one starts and removes whole segments, oldest first."""

    def __init__(self, con: sqlite3.Connection, path: str, meta: dict[str, str], *,
                 retention: Retention | None, keyframe_every: int, level: int | None = None):
        from ..store.samples import SampleEncoder

        self.con = con
        self.path = path
        self.meta = meta
        self.retention = retention or Retention()
        self.encoder = SampleEncoder(keyframe_every=keyframe_every)
        self.segment: int | None = None
        self.removed_segments = 0
        self.last_bytes = 0

    @classmethod
    def create_or_open(cls, path: str, *, retention: Retention | None = None,
                       keyframe_every: int = KEYFRAME_EVERY, interval: float | None = None,
                       hostname: str | None = None) -> "RecordingWriter":
        path = os.fspath(path)
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        if new:  # command lines and cgroup names: readable by its owner only (SQLite gives its
            try:  # -wal and -shm files the database's mode)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            except OSError as e:
                raise RecordingError(f"{path}: cannot create the recording: {e.strerror}") from None
        con = _connect(path, readonly=False)
        try:
            if new:
                con.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RecordingError(f"{path}: SQLite refused WAL mode ({mode}): is it on a network file system?")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("PRAGMA wal_autocheckpoint = 256")  # pages: the WAL stays ~1 MB
            con.execute("PRAGMA journal_size_limit = 4194304")
            if new:
                from .. import __version__ as ver

                with con:  # tables and meta in one transaction: a crash leaves none or both
                    con.execute("BEGIN")
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        con.execute(stmt)
                    con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                        ("format", str(FORMAT)), ("created", repr(time.time())),
                        ("writer", f"ksight {ver}"), ("hostname", hostname or ""),
                        ("interval", "" if interval is None else repr(interval)),
                        ("keyframe_every", str(keyframe_every))])
            meta = _check_meta(con, path)
            if int(meta["format"]) < FORMAT:
                raise RecordingError(f"{path}: recording format {meta['format']} is older than "
                                     f"this ksight writes ({FORMAT}): start a new file")
        except sqlite3.DatabaseError as e:
            con.close()
            raise RecordingError(f"{path}: not a ksight recording ({e})") from None
        except RecordingError:
            con.close()
            raise
        return cls(con, path, meta, retention=retention, keyframe_every=keyframe_every)

    def append(self, snapshot, processes: Iterable | None = None) -> int:
        """Encode and store one sample; its frame's size in bytes. A failed write forces the
        next frame to be a keyframe (a reader must never need the frame that was lost)."""
        from ..store.samples import frame_info

        try:
            data = self.encoder.encode(snapshot, processes)
        except Exception as e:  # a value the codec cannot store: this sample is lost, not the recorder
            self.encoder.force_keyframe()
            raise RecordingError(f"could not encode a sample: {type(e).__name__}: {e}") from None
        key = frame_info(data).keyframe
        t = snapshot.taken_at if snapshot.taken_at is not None else time.time()
        try:
            if key or self.segment is None:
                if not key:  # a writer never continues another writer's segment
                    self.encoder.force_keyframe()
                    data = self.encoder.encode(snapshot, processes)
                    key = True
                self._retain(t)
            self.con.execute("BEGIN IMMEDIATE")
            if not self.meta.get("hostname") and snapshot.host.hostname:
                self.meta["hostname"] = snapshot.host.hostname
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('hostname', ?)",
                                 (snapshot.host.hostname,))
            if key:
                cur = self.con.execute("INSERT INTO segments (start, end, frames, bytes) VALUES (?, ?, 0, 0)", (t, t))
                self.segment = cur.lastrowid
            self.con.execute("INSERT INTO frames (segment, t, keyframe, length, crc, data) VALUES (?, ?, ?, ?, ?, ?)",
                             (self.segment, t, int(key), len(data), zlib.crc32(data), data))
            self.con.execute("UPDATE segments SET end = ?, frames = frames + 1, bytes = bytes + ? WHERE id = ?",
                             (t, len(data), self.segment))
            self.con.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                self.con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self.encoder.force_keyframe()
            self.segment = None
            raise RecordingError(f"{self.path}: could not store a sample: {e}") from None
        self.last_bytes = len(data)
        return len(data)

    def set_meta(self, key: str, value: str) -> None:
        """Record a fact about the recording in `meta` (e.g. where trigger bundles go)."""
        self.meta[key] = value
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _retain(self, now: float) -> None:
        """Remove whole segments, oldest first, past the time bound or while the stored bytes
        exceed the size bound (the segment being written is never removed)."""
        r = self.retention
        if r.seconds is None and r.bytes is None:
            return
        doomed: list[int] = []
        if r.seconds is not None:
            doomed += [i for (i,) in self.con.execute("SELECT id FROM segments WHERE end < ? ORDER BY id",
                                                      (now - r.seconds,))]
        if r.bytes is not None:
            # the file holds the frames plus SQLite's pages, indexes and the WAL: keep the frames
            # under 3/4 of the bound and the file (measured) under it
            budget = max(r.bytes * 7 // 10 - (1536 << 10), r.bytes * 3 // 10)
            segs = self.con.execute("SELECT id, bytes FROM segments ORDER BY id DESC").fetchall()
            total = 0
            for i, b in segs:
                total += b
                if total > budget and i not in doomed:
                    doomed.append(i)
        if not doomed:
            return
        self.con.execute("BEGIN IMMEDIATE")
        try:
            for i in doomed:
                self.con.execute("DELETE FROM frames WHERE segment = ?", (i,))
                self.con.execute("DELETE FROM segments WHERE id = ?", (i,))
            self.con.execute("COMMIT")
        except sqlite3.Error:
            self.con.execute("ROLLBACK")
            raise
        self.removed_segments += len(doomed)
        self.con.execute("PRAGMA incremental_vacuum")  # give the freed pages back to the disk
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        try:
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.con.close()


__all__ = ["Recording", "RecordingWriter", "Retention", "RecordingError", "FORMAT", "file_size"]
