"""Ring-buffer page decoding: a real page captured on this machine, and hand-built pages that
exercise every record type the kernel documents in events/header_event."""

import json
import struct

import pytest

from ksight.errors import ParseError
from ksight.trace.format import compile_format, parse
from ksight.trace.ringbuf import MISSED_EVENTS, MISSED_STORED, parse_page
from tests.conftest import FIXTURES, fixture_text


def _decoders(*names):
    d = {}
    for n in names:
        f = parse(fixture_text("trace", f"{n}.format"), "syscalls")
        d[f.id] = (f.full_name, compile_format(f))
    return d


def test_captured_mmap_page():
    meta = json.loads((FIXTURES / "trace" / "mmap_pages.json").read_text())
    page = (FIXTURES / "trace" / "mmap_pages.bin").read_bytes()
    evs, lost, unknown = parse_page(page, _decoders("sys_enter_mmap", "sys_enter_munmap"), cpu=1)
    assert lost == 0 and unknown == 0
    assert all(e.pid == meta["pid"] and e.cpu == 1 for e in evs)
    got = [[e.name.split("sys_enter_")[1], e["len"]] for e in evs]
    # the 8 calls the child made on purpose (see mmap_pages.json), then its exit unmaps
    assert got[-10:-2] == meta["last_8_events"]
    assert got[-2:] == meta["last_3_after"]
    ts = [e.ts for e in evs]
    assert ts == sorted(ts) and ts[0] > 0


def _mmap_fmt():
    return parse(fixture_text("trace", "sys_enter_mmap.format"), "syscalls")


def _mmap_payload(fmt, pid, length):
    buf = bytearray(64)
    struct.pack_into("<HBBi", buf, 0, fmt.id, 0, 0, pid)
    struct.pack_into("<Q", buf, fmt.field("len").offset, length)
    return bytes(buf)


def _page(records: bytes, ts0=1000, flags=0, missed=None, size=4096):
    commit = len(records) | flags
    body = records + (struct.pack("<Q", missed) if missed is not None else b"")
    return (struct.pack("<QQ", ts0, commit) + body).ljust(size, b"\0")


def test_hand_built_records():
    fmt = _mmap_fmt()
    dec = {fmt.id: (fmt.full_name, compile_format(fmt))}
    p1 = _mmap_payload(fmt, 11, 4096)
    p2 = _mmap_payload(fmt, 22, 8192)
    recs = b""
    recs += struct.pack("<I", (5 << 5) | (len(p1) // 4)) + p1            # small record, delta 5
    recs += struct.pack("<II", (3 << 5) | 30, 1)                          # time extend: +3 + (1<<27)
    recs += struct.pack("<II", (7 << 5) | 0, len(p2) + 4) + p2           # type_len 0 record, delta 7
    recs += struct.pack("<II", (2 << 5) | 29, 12) + b"\0" * 8             # padding: array[0] counts bytes after the header
    recs += struct.pack("<I", (1 << 5) | (len(p1) // 4)) + p1
    evs, lost, unknown = parse_page(_page(recs), dec)
    assert [(e.pid, e["len"]) for e in evs] == [(11, 4096), (22, 8192), (11, 4096)]
    assert [e.ts for e in evs] == [1005, 1005 + 3 + (1 << 27) + 7, 1005 + 3 + (1 << 27) + 7 + 2 + 1]
    assert lost == 0 and unknown == 0


def test_missed_events_and_unknown_ids():
    fmt = _mmap_fmt()
    p = _mmap_payload(fmt, 1, 1)
    other = bytearray(p)
    struct.pack_into("<H", other, 0, fmt.id + 1)
    recs = struct.pack("<I", len(p) // 4) + p + struct.pack("<I", len(p) // 4) + bytes(other)
    dec = {fmt.id: (fmt.full_name, compile_format(fmt))}
    evs, lost, unknown = parse_page(_page(recs, flags=MISSED_EVENTS | MISSED_STORED, missed=17), dec)
    assert len(evs) == 1 and lost == 17 and unknown == 1
    _, lost, _ = parse_page(_page(recs, flags=MISSED_EVENTS), dec)
    assert lost == -1


def test_empty_padding_ends_page():
    recs = struct.pack("<I", 29)  # padding with delta 0: rest of page unused
    evs, lost, unknown = parse_page(_page(recs + b"\xff" * 40), {})
    assert evs == [] and unknown == 0


@pytest.mark.parametrize("page", [b"", b"\0" * 8, struct.pack("<QQ", 0, 5000) + b"\0" * 100])
def test_bad_pages(page):
    with pytest.raises(ParseError):
        parse_page(page, {})


def test_record_running_past_data():
    fmt = _mmap_fmt()
    p = _mmap_payload(fmt, 1, 1)
    recs = struct.pack("<I", len(p) // 4) + p[:20]  # truncated mid-record
    with pytest.raises(ParseError):
        parse_page(_page(recs), {fmt.id: (fmt.full_name, compile_format(fmt))})
