"""Format-file parsing and decoder compilation (pure; real format files from this machine's 6.18)."""

import struct

import pytest

from ksight.errors import ParseError
from ksight.trace.format import compile_format, parse
from tests.conftest import fixture_text


def test_tcp_retransmit_skb_fields():
    f = parse(fixture_text("trace", "tcp_retransmit_skb.format"), "tcp")
    assert f.full_name == "tcp:tcp_retransmit_skb"
    # offsets as the kernel's format file states them (tests/fixtures/trace/tcp_retransmit_skb.format)
    saddr = f.field("saddr")
    assert (saddr.offset, saddr.size, saddr.array_len, saddr.type) == (34, 4, 4, "__u8")
    assert f.field("state").signed and f.field("state").offset == 24
    assert f.field("skaddr").type == "const void *"
    assert [c.name for c in f.common] == ["common_type", "common_flags", "common_preempt_count", "common_pid"]


def _record(fmt, values: dict, pid=4242, total=None):
    """Build a record by hand from offsets (independent of the compiled struct)."""
    size = total or max(fl.offset + fl.size for fl in fmt.fields)
    buf = bytearray(size)
    struct.pack_into("<HBBi", buf, 0, fmt.id, 0, 0, pid)
    for name, (code, v) in values.items():
        struct.pack_into("<" + code, buf, fmt.field(name).offset, *(v if isinstance(v, tuple) else (v,)))
    return bytes(buf)


def test_decode_ipv4_and_signed():
    f = parse(fixture_text("trace", "tcp_retransmit_skb.format"), "tcp")
    rec = _record(f, {"state": ("i", 1), "sport": ("H", 5201), "dport": ("H", 40000),
                      "family": ("H", 2), "saddr": ("4s", bytes([198, 18, 0, 1])),
                      "err": ("i", -11)})
    pid, d = compile_format(f).decode(rec, 0)
    assert pid == 4242
    assert d["saddr"] == bytes([198, 18, 0, 1]) and d["sport"] == 5201 and d["err"] == -11
    assert "common_pid" not in d


def test_data_loc_string():
    f = parse(fixture_text("trace", "mark_victim.format"), "oom")
    comm = f.field("comm")
    assert comm.data_loc and comm.is_string
    base = max(fl.offset + fl.size for fl in f.fields)
    name = b"memhog\0"
    rec = bytearray(_record(f, {"pid": ("i", 777), "oom_score_adj": ("h", -5)}, total=base))
    struct.pack_into("<I", rec, comm.offset, (len(name) << 16) | base)
    rec += name
    _, d = compile_format(f).decode(bytes(rec), 0)
    assert d["pid"] == 777 and d["comm"] == "memhog" and d["oom_score_adj"] == -5


def test_numeric_array_and_char_array():
    f = parse(fixture_text("trace", "sock_exceed_buf_limit.format"), "sock")
    rec = _record(f, {"name": ("32s", b"TCP\0"), "sysctl_mem": ("3q", (10, 20, 30)), "kind": ("i", 1)})
    _, d = compile_format(f).decode(rec, 0)
    assert d["name"] == "TCP" and d["sysctl_mem"] == (10, 20, 30) and d["kind"] == 1
    assert not any("[" in k for k in d)


@pytest.mark.parametrize("text", ["", "garbage\n", "name: x\nformat:\n\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n"])
def test_bad_format_raises(text):
    with pytest.raises(ParseError):
        parse(text)


def test_truncated_field_line_raises():
    text = fixture_text("trace", "sys_enter_mmap.format")
    cut = text[: text.index("offset:24") + 5]  # cut mid-line inside a field
    with pytest.raises(ParseError):
        parse(cut)
