"""Decode the pages that tracefs `per_cpu/cpuN/trace_pipe_raw` hands out (pure, no I/O).

A page (a "sub-buffer", 4 KiB by default, `buffer_subbuf_size_kb` on 6.8+) is laid out as
`events/header_page` says: u64 timestamp, a local_t `commit` (bytes of data, plus two flag bits:
bit 31 "events were lost before this page", bit 30 "their count is stored after the data"),
then the data. Each record starts with a 32-bit header (`events/header_event`):
type_len:5, time_delta:27, then

- type_len 1..28: a data record of type_len * 4 bytes follows;
- type_len 0: the next u32 is the record length (including those 4 bytes), data after it;
- 29: padding (time_delta 0 = the rest of the page is empty; else u32 length follows);
- 30: time extend (time_delta += u32 << 27); 31: absolute time stamp.

Data records begin with the event's common header (u16 common_type = the event ID), and are
decoded with the Decoder compiled from that event's format file.
"""

from __future__ import annotations

import struct

from ..errors import ParseError

MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
_PAGE_HDR = struct.Struct("<QQ")
_U32 = struct.Struct("<I").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U64 = struct.Struct("<Q").unpack_from


class Event:
    """One traced event: name 'system:event', timestamp (ns, the instance's trace clock),
    cpu, pid of the task that was running, and the decoded fields."""

    __slots__ = ("name", "ts", "cpu", "pid", "fields")

    def __init__(self, name: str, ts: int, cpu: int, pid: int, fields: dict):
        self.name = name
        self.ts = ts
        self.cpu = cpu
        self.pid = pid
        self.fields = fields

    def __getitem__(self, k):
        return self.fields[k]

    def get(self, k, default=None):
        return self.fields.get(k, default)

    def as_dict(self) -> dict:
        return {"name": self.name, "ts": self.ts, "cpu": self.cpu, "pid": self.pid,
                "fields": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.fields.items()}}

    def __repr__(self) -> str:
        return f"Event({self.name}, ts={self.ts}, cpu={self.cpu}, pid={self.pid}, {self.fields})"


def parse_page(page: bytes, decoders: dict, cpu: int = 0, out: list | None = None,
               path: str = "trace_pipe_raw") -> tuple[list, int, int]:
    """Decode one ring-buffer page. Returns (events, lost, unknown).

    `decoders` maps event ID -> (full_name, Decoder). `lost` counts events the kernel says it
    dropped before this page (-1 when it says "some" without a count). `unknown` counts records
    of IDs we have no decoder for (an event enabled by someone else cannot appear in our private
    instance, so a non-zero value means a corrupt page).
    """
    if out is None:
        out = []
    if len(page) < 16:
        raise ParseError(path, None, None, f"page of {len(page)} bytes is shorter than its header")
    ts, commit = _PAGE_HDR.unpack_from(page, 0)
    size = commit & 0x3FFFFFFF  # data bytes; the two flag bits live above
    lost = 0
    if commit & MISSED_EVENTS:
        if commit & MISSED_STORED and 16 + size + 8 <= len(page):
            lost = _U64(page, 16 + size)[0]
        else:
            lost = -1
    end = 16 + size
    if end > len(page):
        raise ParseError(path, None, None, f"page commit size {size} exceeds page length {len(page)}")
    pos = 16
    unknown = 0
    append = out.append
    u32 = _U32
    u16 = _U16
    while pos + 4 <= end:
        hdr = u32(page, pos)[0]
        tl = hdr & 31
        delta = hdr >> 5
        if tl == 0:
            length = u32(page, pos + 4)[0]
            if length < 4:
                raise ParseError(path, None, None, f"record length {length} at byte {pos}")
            data = pos + 8
            nxt = pos + 4 + length
        elif tl <= 28:
            data = pos + 4
            nxt = data + tl * 4
        elif tl == 29:  # padding
            if delta == 0:
                break
            ts += delta
            pos += 4 + u32(page, pos + 4)[0]
            continue
        elif tl == 30:  # time extend
            ts += delta + (u32(page, pos + 4)[0] << 27)
            pos += 8
            continue
        else:  # 31: absolute time stamp (keep the page's top bits)
            abs_ts = delta | (u32(page, pos + 4)[0] << 27)
            ts = (ts & ~((1 << 59) - 1)) | abs_ts
            pos += 8
            continue
        ts += delta
        pos = nxt
        if nxt > end:
            raise ParseError(path, None, None, f"record at byte {data} runs past the page data")
        ent = decoders.get(u16(page, data)[0])
        if ent is None:
            unknown += 1
            continue
        pid, fields = ent[1].decode(page, data)
        append(Event(ent[0], ts, cpu, pid, fields))
    return out, lost, unknown
