"""tcp_info's busy / rwnd_limited / sndbuf_limited (4.10+) decoded from a real sock_diag answer.

The dump below is the kernel's answer (Linux 6.18, x86_64, little-endian) to ksight's AF_INET
request in a network namespace where one cubic flow with SO_SNDBUF 16 KiB had sent 2 MiB across a
20 Mbit/s tbf shaper and gone idle. `ss -tin` in the same namespace, moments later (the counters
no longer moved), printed for it:

  198.18.0.1:47846 198.18.0.2:7000
  cubic wscale:10,10 rto:228 rtt:26.752/5.157 mss:1448 ... cwnd:84 ssthresh:84 ...
  delivery_rate 19225168bps ... busy:884ms sndbuf_limited:580ms(65.6%) rcv_space:14480

Those numbers are the reference here (ss's own decoder, iproute2 6.1)."""

from __future__ import annotations

import struct

import pytest

from ksight.collect import sockdiag

DUMP = bytes.fromhex(
    "c001000014000200010000007e05000002010000bae61b58c6120001000000000000000000000000c6120002"
    "00000000000000000000000000000000c134030000000000000000000000000000000000000000001edb5900"
    "050008000000000008000f00000000000c001500010000000000000006001600520000002800070000000000"
    "00000200000000000080000000000000000000000000000000000000000000001c010200010000000007aa00"
    "a07a030000000000a80500001802000000000000000000000000000000000000000000001408000000000000"
    "6c0b0000f8070000dc05000058fa000080680000251400005400000054000000a80500000300000000000000"
    "9038000000000000ba3f530000000000ffffffffffffffff01b52000000000000000000000000000e2050000"
    "69030000000000000800000000000000e00500004aab240000000000207d0d00000000000000000000000000"
    "a0d9080000000000e10500000000000000b52000000000000000000000000000000000000000000000000000"
    "00dc130000fc0000000000000000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000001400000003000200010000007e05000000000000")


def _with_info_cut(raw: bytes, keep: int) -> bytes:
    """The same dump with each INET_DIAG_INFO attribute cut to its first `keep` bytes, as an
    older kernel with a shorter struct tcp_info would have sent it (lengths fixed up)."""
    out, off = b"", 0
    while off + 16 <= len(raw):
        n_len, n_type = struct.unpack_from("<IH", raw, off)
        msg = raw[off:off + n_len]
        if n_type == sockdiag.SOCK_DIAG_BY_FAMILY:
            body, a, new = msg[16:], 72, msg[16:16 + 72]
            while a + 4 <= len(body):
                rl, rt = struct.unpack_from("<HH", body, a)
                attr = body[a:a + rl]
                if rt & 0x3FFF == sockdiag.INET_DIAG_INFO and rl - 4 > keep:
                    attr = struct.pack("<HH", 4 + keep, rt) + attr[4:4 + keep]
                new += attr + bytes(-len(attr) % 4)
                a += (rl + 3) & ~3
            msg = struct.pack("<I", 16 + len(new)) + msg[4:16] + new
        out += msg
        off += (n_len + 3) & ~3
    return out


def _flow(socks):
    (s,) = [s for s in socks if s.local_port == 47846]
    return s


def test_decode_real_dump_against_ss():
    s = _flow(sockdiag.decode(DUMP, "little", netns=5))
    assert (s.local_addr, s.remote_addr, s.remote_port, s.state) == (
        "198.18.0.1", "198.18.0.2", 7000, "ESTABLISHED")
    i = s.info
    # ss: busy:884ms sndbuf_limited:580ms(65.6%); no rwnd_limited printed: it is 0
    assert i["busy_time_us"] // 1000 == 884
    assert i["sndbuf_limited_us"] // 1000 == 580
    assert f"{100 * i['sndbuf_limited_us'] / i['busy_time_us']:.1f}" == "65.6"
    assert i["rwnd_limited_us"] == 0
    # the fields around them, so that an offset off by 8 cannot pass: delivery_rate (offset 160)
    # before, bytes_retrans (208) after; ss prints the rate in bit/s
    assert i["delivery_rate"] * 8 == 19225168
    assert (i["cwnd"], i["ssthresh"], i["rtt_us"], i["rttvar_us"], i["rto_us"]) == (
        84, 84, 26752, 5157, 228000)
    assert (i["snd_mss"], i["rcv_space"]) == (1448, 14480)
    assert s.sndbuf == 2 * 16384  # SO_SNDBUF 16 KiB, doubled by the kernel


def test_table_rows_carry_the_same():
    (r,) = [r for r in sockdiag.table_rows(DUMP, "little", 5) if r["local_port"] == 47846]
    assert (r["busy_time_us"], r["rwnd_limited_us"], r["sndbuf_limited_us"]) == (
        884000, 0, 580000)
    assert r["delivery_rate"] * 8 == 19225168 and r["cwnd"] == 84


@pytest.mark.parametrize("keep, have", [
    (104, False),  # 2.6-era tcp_info: ends after tcpi_total_retrans
    (168, False),  # 4.9: ends after tcpi_delivery_rate
    (192, True),   # 4.10: busy, rwnd_limited, sndbuf_limited, then nothing
])
def test_shorter_tcp_info_of_older_kernels(keep, have):
    raw = _with_info_cut(DUMP, keep)
    s = _flow(sockdiag.decode(raw, "little"))
    (r,) = [r for r in sockdiag.table_rows(raw, "little") if r["local_port"] == 47846]
    want = (884000, 0, 580000) if have else (None, None, None)
    assert (s.info["busy_time_us"], s.info["rwnd_limited_us"], s.info["sndbuf_limited_us"]) == want
    assert (r["busy_time_us"], r["rwnd_limited_us"], r["sndbuf_limited_us"]) == want
    assert s.info["cwnd"] == r["cwnd"] == 84  # what the short struct holds is still read
    assert r["bytes_retrans"] is None  # offset 208: beyond all three cuts
    assert r["delivery_rate"] == (None if keep < 168 else 19225168 // 8)
