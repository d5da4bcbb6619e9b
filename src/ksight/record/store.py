"""The recording: one SQLite file (WAL, no server) of sample frames, as `ksight record` writes it.

    rec = Recording.open(path)                # read (a recorder may be writing it meanwhile)
    rec.range()                               # (first, last) wall-clock times, or None if empty
    for snap in rec.snapshots(since, until): ...   # decoded, in order, re-synced at keyframes
    snap = rec.at(t)                          # the last snapshot taken at or before t

    w = RecordingWriter.create_or_open(path, retention=Retention.parse("7d"))
    w.append(snapshot, processes=pids)        # one frame, one row, one commit

Layout (FORMAT 2; docs/storage.md, "The recording"). 1 KiB pages, auto_vacuum=INCREMENTAL:
- `meta(key, value)` (WITHOUT ROWID): `format` (this store's layout; a newer one is refused,
  older ones are read), `created`, `writer` (ksight version), `hostname`, `interval`,
  `keyframe_every`.
- `segments(id, start, end, frames, bytes, first, last)`: a piece that starts at a keyframe and
  holds the delta frames after it (`first`..`last`: its frames' seq). Retention removes whole
  segments, oldest first, so what is left always starts at a keyframe.
- `frames(seq, segment, t, keyframe, length, crc, data, off)`: one sample frame (store/samples.py)
  per row: its wall-clock time (indexed: `frames_t`), whether it is a keyframe, and the length
  and CRC-32 of its bytes. While its segment is open (being written) the bytes are in `data`
  and `off` is NULL; once the segment is closed (the next keyframe starts one, or the writer
  closes, or the next writer opens a file a killed one left) they are at `off` in the segment's
  chunk and `data` is empty.
- `chunks(id, data)`: a closed segment's frames in one blob, compressed across them (below,
  "chunks"): about half the bytes of the frames as the codec wrote them, where one row per frame
  (format 1) cost 12-50 % more than the frames (a 2-8 KB row leaves most of its last page empty).
  Closing is one transaction (the chunk, and the segment's rows written again without their
  bytes); a reader decompresses a chunk as a stream from SQLite's blob I/O, as far as it needs.
A frame whose bytes do not match its length or CRC (a torn or damaged write; in a chunk, a piece
whose CRC does not match, cut short, or missing) is skipped on read and counted
(`Recording.skipped`); the delta frames after it are skipped too, until the next keyframe
re-syncs (a delta frame never decodes against the wrong base: samples.py).
Format 1 (read, and continued in place by a writer: `_upgrade_1` adds the columns and the table)
had no `chunks`, `first`, `last` or `off`: every row kept its bytes; 4 KiB pages, an index on
`frames(segment)`, `meta` with a rowid.

Crash safety: each sample is one transaction (the frame and its segment's totals) committed in
WAL mode: a recorder killed at any moment loses at most the sample it was writing (SQLite rolls an
uncommitted transaction back when the file is next opened). synchronous=NORMAL: a power loss may
also lose the last few commits, never the file's consistency.
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable, Iterator
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import KsightError, SampleError, UsageError

FORMAT = 2  # the store's layout (tables and columns); frames carry their own (samples.VERSION)
APPLICATION_ID = 0x4B534452  # "KSDR": `file` and sqlite3 tell a ksight recording apart
KEYFRAME_EVERY = 60  # at 1 s, a reader starts at most a minute before the time it wants

# format 2 (written): frame rows keep their data only while their segment is open; a closed
# segment's frames are one blob in `chunks` (see the module doc)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY, start REAL NOT NULL, end REAL NOT NULL,
    frames INTEGER NOT NULL, bytes INTEGER NOT NULL, first INTEGER, last INTEGER);
CREATE TABLE IF NOT EXISTS frames (
    seq INTEGER PRIMARY KEY, segment INTEGER NOT NULL, t REAL NOT NULL,
    keyframe INTEGER NOT NULL, length INTEGER NOT NULL, crc INTEGER NOT NULL, data BLOB,
    off INTEGER);
CREATE INDEX IF NOT EXISTS frames_t ON frames (t);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""
# format 1 -> 2 in place (a recorder continuing an older file): its rows keep their data
_UPGRADE_1 = """
ALTER TABLE segments ADD COLUMN first INTEGER;
ALTER TABLE segments ADD COLUMN last INTEGER;
ALTER TABLE frames ADD COLUMN off INTEGER;
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""
PAGE_SIZE = 1024  # a new file's: the fixed part (one page a table) and a chunk's last page small

# ---------------------------------------------------------------- chunks
# A chunk is one zstd frame (checksummed) of its segment's frames as pieces, in order:
#   piece = kind (1 byte), body length (4, little-endian), CRC-32 of the body (4), body
#   kind 1: the frame's 16-byte header and its payload uncompressed (a sample layout v2 frame:
#           header + one zstd frame of the payload); kind 0: the frame's bytes as they are
#           (another layout, or a frame whose body is not one zstd frame).
# Compressing a minute of payloads together (level CHUNK_LEVEL) keeps about half the bytes of the
# frames compressed one by one: a delta frame's structure and most of its values repeat from one
# second to the next, which zstd sees only across frames. A kind 1 frame is handed back to the
# reader as a valid frame: its header, then its payload in a zstd frame of raw blocks; a delta
# frame's base CRC is then the CRC of the frame handed back before it, when its written base CRC
# was that frame's written CRC (checked in order): the decoder's chain check keeps its meaning.
CHUNK_LEVEL = 6  # 50 % of the frames' bytes in ~8 ms a minute (level 3: 58 %, 3 ms; 9: 49 %, 15 ms)
_PIECE = struct.Struct("<BII")
_MAX_PIECE = 64 << 20  # the sample codec's own bound on a payload
# a chunk's decompressed bytes a reader will hold: a minute of payloads is a few MB; a row's
# offset past this (a damaged or crafted file, a zstd bomb) is a missing frame, never a read of GBs
_MAX_CHUNK = 256 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _frame_decompressor(data: bytes):
    """The zstd decompressor of a layout-v3 frame (its schema's dictionary)."""
    from ..store.samples import _decompressor

    return _decompressor(data[4], int.from_bytes(data[6:8], "big"))


def _piece(data, length: int, crc: int, dctx) -> bytes:
    """A frame row's bytes as a piece (empty body: a row that was already torn or damaged)."""
    import zstandard

    body, kind = b"", 0
    if isinstance(data, bytes) and len(data) == length and zlib.crc32(data) == crc:
        body = data
        if len(data) > 20 and data[4] in (2, 3) and data[16:20] == _ZSTD_MAGIC:  # layouts v2, v3
            try:
                # v3 frames are compressed with their schema's dictionary: the payload is kept
                # uncompressed in the chunk, which compresses a minute of payloads together
                d = dctx if data[4] == 2 else _frame_decompressor(data)
                payload = d.decompress(data[16:], max_output_size=_MAX_PIECE)
            except (zstandard.ZstdError, KsightError):
                payload = None
            if payload is not None and zlib.crc32(payload) == int.from_bytes(data[12:16], "big"):
                body, kind = data[:16] + payload, 1
    return _PIECE.pack(kind, len(body), zlib.crc32(body)) + body


def _pack_chunk(rows) -> tuple[bytes, list[int]]:
    """(chunk, each row's piece offset) for rows (data, length, crc) in order."""
    import zstandard

    parts, offs, off, dctx = [], [], 0, zstandard.ZstdDecompressor()
    for data, length, crc in rows:
        p = _piece(data, length, crc, dctx)
        parts.append(p)
        offs.append(off)
        off += len(p)
    c = zstandard.ZstdCompressor(level=CHUNK_LEVEL, write_checksum=True, write_content_size=True)
    return c.compress(b"".join(parts)), offs


def _raw_zstd(payload: bytes) -> bytes:
    """`payload` as one zstd frame of raw (stored) blocks (RFC 8878: the content size, a single
    segment, no checksum): what any zstd decoder reads back as `payload`, built without one."""
    out = [_ZSTD_MAGIC, b"\xa0", len(payload).to_bytes(4, "little")]
    step = 1 << 17  # a block's largest size
    if not payload:
        out.append(b"\x01\x00\x00")  # one empty last block
    for i in range(0, len(payload), step):
        part = payload[i:i + step]
        out.append((int(i + step >= len(payload)) | len(part) << 3).to_bytes(3, "little"))
        out.append(part)
    return b"".join(out)


class _ChunkStream:
    """A chunk's decompressed bytes, read as far as asked (a keyframe at offset 0 needs only the
    start of it). A damaged chunk reads as far as it decodes."""

    def __init__(self, blob, dctx):
        self._r = dctx.stream_reader(blob, read_across_frames=False)
        self.buf = bytearray()
        self.broken = False

    def have(self, n: int) -> bool:
        if n > _MAX_CHUNK:
            return False
        while len(self.buf) < n and not self.broken:
            try:
                more = self._r.read(max(1 << 16, n - len(self.buf)))
            except Exception:  # zstd's error on a damaged chunk (a bad block, its checksum), or
                # the blob's (its row changed under it)
                self.broken = True
                break
            if not more:
                break
            self.buf += more
        return len(self.buf) >= n

    def piece(self, off: int) -> tuple[int, bytes] | None:
        """(kind, body) at `off`, None when it is not there whole with its CRC."""
        if not self.have(off + _PIECE.size):
            return None
        kind, n, crc = _PIECE.unpack_from(self.buf, off)
        if n > _MAX_PIECE or kind > 1 or not self.have(off + _PIECE.size + n):
            return None
        body = bytes(self.buf[off + _PIECE.size:off + _PIECE.size + n])
        return (kind, body) if n and zlib.crc32(body) == crc else None


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
        self._dctx = None  # _chunk_bytes: a zstd decompressor

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
        # format 2 (or a format 1 file a writer has continued since it was opened): a closed
        # segment's bytes are in `chunks`
        chunked = any(c[1] == "off" for c in self.con.execute("PRAGMA table_info(frames)"))
        chain: list = [None]  # _chunk_bytes: the last frame it handed back, for the next's base
        while True:
            rows = self.con.execute(
                "SELECT seq, t, keyframe, length, crc, data" + (", segment, off" if chunked else "")
                + " FROM frames WHERE seq > ? "
                + ("AND keyframe = 1 " if keyframes_only else "")
                + ("AND t <= ? " if until is not None else "") + "ORDER BY seq LIMIT ?",
                (seq, until, batch) if until is not None else (seq, batch)).fetchall()
            if not rows:
                return
            if chunked:
                rows = self._chunk_bytes(rows, chain)
            for seq, t, key, length, crc, data in rows:
                why = None
                if not isinstance(data, bytes):
                    why = "no frame bytes"
                elif len(data) != length:
                    why = f"torn row: {len(data)} bytes of {length}"
                elif zlib.crc32(data) != crc:
                    why = "damaged row: CRC mismatch"
                yield seq, t, bool(key), (None if why else data), why

    def _chunk_bytes(self, rows: list[tuple], last: list) -> list[tuple]:
        """Rows (seq, t, keyframe, length, crc, data, segment, off) of format 2 as (seq, t, keyframe,
        length, crc, data): a closed segment's frames out of its chunk (decompressed as far as
        the rows need: keyframes only read the start), each handed back as a valid frame with
        its length and CRC (module comment "chunks"). A piece that is missing, damaged or beyond
        where a damaged chunk decodes gives empty bytes: skipped as torn. The blob is closed
        before the rows are handed on (an open one holds a read transaction: the recorder's WAL
        could not be checkpointed past it). `last[0]`: (seq, CRC written, CRC handed back) of the
        last frame handed back, kept from one batch to the next by the caller."""
        out, blob, at, stream = [], None, None, None
        chain = last[0]
        try:
            for seq, t, key, length, crc, data, segment, off in rows:
                if off is None:
                    out.append((seq, t, key, length, crc, data))
                    continue
                got = None
                try:
                    if at != segment:
                        if blob is not None:
                            blob.close()
                        blob, at, stream = None, segment, None
                        blob = self.con.blobopen("chunks", "data", segment, readonly=True)
                        if self._dctx is None:
                            import zstandard

                            self._dctx = zstandard.ZstdDecompressor()  # one: its context is reused
                        stream = _ChunkStream(blob, self._dctx)
                    if stream is not None and isinstance(off, int) and off >= 0:
                        got = stream.piece(off)
                except (sqlite3.Error, TypeError, ValueError, OverflowError):
                    pass  # no such chunk (or removed by retention meanwhile), a row made by hand
                if got is None:
                    out.append((seq, t, key, length, crc, b""))
                    continue
                kind, body = got
                if kind == 1:
                    head = body[:16]
                    if (not key and chain and chain[0] == seq - 1 and len(head) == 16
                            and int.from_bytes(head[8:12], "big") == chain[1]):
                        head = head[:8] + chain[2].to_bytes(4, "big") + head[12:]
                    body = head + _raw_zstd(body[16:])
                new = zlib.crc32(body)
                chain = (seq, crc, new)
                out.append((seq, t, key, len(body), new, body))
        finally:
            last[0] = chain
            if blob is not None:
                blob.close()
        return out

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
    the segment before it is then closed: its frames' bytes move into one `chunks` blob (one
    transaction). Retention runs when a segment starts and removes whole segments, oldest first."""

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
        self._first = self._seq = 0  # the open segment's first seq, the last seq written

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
            if new:  # before the first page is written
                con.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                con.execute("PRAGMA auto_vacuum = INCREMENTAL")
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RecordingError(f"{path}: SQLite refused WAL mode ({mode}): is it on a network file system?")
            page = con.execute("PRAGMA page_size").fetchone()[0]
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute(f"PRAGMA wal_autocheckpoint = {max(64, (1 << 20) // page)}")  # the WAL stays ~1 MB
            con.execute("PRAGMA journal_size_limit = 1048576")  # and is cut back to it after a checkpoint
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
            if int(meta["format"]) == 1:
                _upgrade_1(con)
                meta["format"] = str(FORMAT)
            elif int(meta["format"]) < FORMAT:
                raise RecordingError(f"{path}: recording format {meta['format']} is older than "
                                     f"this ksight writes ({FORMAT}): start a new file")
        except sqlite3.DatabaseError as e:
            con.close()
            raise RecordingError(f"{path}: not a ksight recording ({e})") from None
        except RecordingError:
            con.close()
            raise
        w = cls(con, path, meta, retention=retention, keyframe_every=keyframe_every)
        try:
            w._seq = con.execute("SELECT coalesce(max(seq), 0) FROM frames").fetchone()[0]
            w._close_segments()  # a killed writer's open segment
        except sqlite3.Error as e:
            con.close()
            raise RecordingError(f"{path}: cannot open the recording: {e}") from None
        return w

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
        if not key and self.segment is None:  # a writer never continues another writer's segment
            self.encoder.force_keyframe()
            data = self.encoder.encode(snapshot, processes)
            key = True
        try:
            self._store(data, key, t, snapshot.host.hostname)
        except sqlite3.Error as e:
            self.encoder.force_keyframe()
            raise RecordingError(f"{self.path}: could not store a sample: {e}") from None
        self.last_bytes = len(data)
        return len(data)

    def _store(self, data: bytes, key: bool, t: float, hostname: str | None = None) -> None:
        """One frame, one transaction; a keyframe first closes the open segment and applies
        retention (each its own transaction: killed between them, nothing committed is lost)."""
        try:
            if key:
                self._close_segments()
                self._retain(t)
            seq = self._seq + 1
            self.con.execute("BEGIN IMMEDIATE")
            if not self.meta.get("hostname") and hostname:
                self.meta["hostname"] = hostname
                self.con.execute("INSERT OR REPLACE INTO meta VALUES ('hostname', ?)", (hostname,))
            if key:
                cur = self.con.execute("INSERT INTO segments (start, end, frames, bytes, first, last) "
                                       "VALUES (?, ?, 0, 0, ?, ?)", (t, t, seq, seq))
                segment, first = cur.lastrowid, seq
            else:
                segment, first = self.segment, self._first
            self.con.execute("INSERT INTO frames (seq, segment, t, keyframe, length, crc, data) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, segment, t, int(key), len(data), zlib.crc32(data), data))
            self.con.execute("UPDATE segments SET end = ?, frames = frames + 1, bytes = bytes + ?, "
                             "last = ? WHERE id = ?", (t, len(data), seq, segment))
            self.con.execute("COMMIT")
        except sqlite3.Error:
            try:
                self.con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self.segment = None
            raise
        self.segment, self._first, self._seq = segment, first, seq

    def _close_segments(self) -> None:
        """Move the frames of every segment still open into one `chunks` blob each (the frames
        concatenated in order; each row keeps its time, length and CRC, and its offset in the
        blob). One transaction per segment: killed meanwhile, the rows keep their bytes."""
        open_ = self.con.execute(
            "SELECT id, first, last FROM segments WHERE first IS NOT NULL "
            "AND id NOT IN (SELECT id FROM chunks) ORDER BY id").fetchall()
        for seg, first, last in open_:
            rows = self.con.execute(
                "SELECT seq, t, keyframe, length, crc, data FROM frames "
                "WHERE seq BETWEEN ? AND ? AND segment = ? ORDER BY seq", (first, last, seg)).fetchall()
            chunk, offs = _pack_chunk([(data, length, crc) for _, _, _, length, crc, data in rows])
            out = [(seq, seg, t, key, length, crc, off)
                   for (seq, t, key, length, crc, _), off in zip(rows, offs)]
            self.con.execute("BEGIN IMMEDIATE")
            try:
                self.con.execute("INSERT INTO chunks (id, data) VALUES (?, ?)", (seg, chunk))
                # deleted and written again (not updated): the rows stay packed at the table's end
                self.con.execute("DELETE FROM frames WHERE seq BETWEEN ? AND ? AND segment = ?",
                                 (first, last, seg))
                self.con.executemany("INSERT INTO frames (seq, segment, t, keyframe, length, crc, data, off) "
                                     "VALUES (?, ?, ?, ?, ?, ?, X'', ?)", out)  # not NULL: format 1's column
                self.con.execute("COMMIT")
            except sqlite3.Error:
                self.con.execute("ROLLBACK")
                raise
        self.segment = None

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
            # the file holds the frames (a closed minute compressed), SQLite's pages and the WAL
            # (~1 MB): keep the frames under the bound less 1.5 MB, divided by what the file holds
            # per frame byte today (~0.5 in format 2; ~1.2 while a format 1 file's old rows are there)
            page, pages, free = (self.con.execute(f"PRAGMA {p}").fetchone()[0]
                                 for p in ("page_size", "page_count", "freelist_count"))
            stored = self.con.execute("SELECT coalesce(sum(bytes), 0) FROM segments").fetchone()[0]
            over = max(0.25, (pages - free) * page / stored) if stored else 1.0
            budget = max(int((r.bytes - (1536 << 10)) * 0.95 / over), r.bytes * 3 // 10)
            segs = self.con.execute("SELECT id, bytes FROM segments ORDER BY id DESC").fetchall()
            total = 0
            for i, b in segs:
                total += b
                if total > budget and i not in doomed:
                    doomed.append(i)
            # the estimate lags when frames compress differently from the ones measured (a new
            # sample layout, a machine that changed): the file on disk decides as well; past 90 %
            # of the bound, the oldest segments go until the estimated excess is covered
            excess = file_size(self.path) - r.bytes * 9 // 10
            if excess > 0:
                freed = sum(b for i, b in segs if i in doomed) * over
                for i, b in reversed(segs[1:]):  # oldest first; never the segment being written
                    if freed >= excess:
                        break
                    if i not in doomed:
                        doomed.append(i)
                        freed += b * over
        if not doomed:
            return
        self.con.execute("BEGIN IMMEDIATE")
        try:
            for i in doomed:
                first, last = self.con.execute("SELECT first, last FROM segments WHERE id = ?",
                                               (i,)).fetchone()
                if first is None:  # a format 1 segment: its rows by the segment index
                    self.con.execute("DELETE FROM frames WHERE segment = ?", (i,))
                else:
                    self.con.execute("DELETE FROM frames WHERE seq BETWEEN ? AND ? AND segment = ?",
                                     (first, last, i))
                self.con.execute("DELETE FROM chunks WHERE id = ?", (i,))
                self.con.execute("DELETE FROM segments WHERE id = ?", (i,))
            self.con.execute("COMMIT")
        except sqlite3.Error:
            self.con.execute("ROLLBACK")
            raise
        self.removed_segments += len(doomed)
        self._give_back()

    def _give_back(self) -> None:
        # the freed pages back to the disk: each page is a step of the statement, and execute()
        # steps once (one page); executescript() steps it to the end
        self.con.executescript("PRAGMA incremental_vacuum;")
        self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        try:
            self._close_segments()
            self._give_back()
        except sqlite3.Error:
            pass
        self.con.close()


def _upgrade_1(con: sqlite3.Connection) -> None:
    """A format 1 file continued by this writer: the columns and table format 2 adds (its rows
    keep their bytes and stay readable as they are)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        for stmt in filter(str.strip, _UPGRADE_1.split(";")):
            con.execute(stmt)
        con.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(FORMAT),))
        con.execute("COMMIT")
    except sqlite3.Error:
        con.execute("ROLLBACK")
        raise


__all__ = ["Recording", "RecordingWriter", "Retention", "RecordingError", "FORMAT", "file_size"]
