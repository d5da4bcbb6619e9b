"""`ksight tcp --pcap FILE`: the TCP retransmissions in a packet capture, with their flows.

It finds what Wireshark's `tcp.analysis.retransmission` finds (`tshark -Y
tcp.analysis.retransmission`): Wireshark's sequence analysis (epan/dissectors/packet-tcp.c,
tcp_analyze_sequence_number; the User's Guide, "TCP Analysis") marks a segment that carries data
(or SYN/FIN), is not a keep-alive, and

- ends at or before the last ACK seen from the other side: a *spurious* retransmission;
- else does not advance the highest sequence number sent (seq < next expected) and
  - repeats the sequence number of at least 2 duplicate ACKs from the other side, within 20 ms of
    the last one: a *fast* retransmission;
  - arrived within the first round-trip time (3 ms if the handshake was not seen) of the segment
    that set the highest sequence number and does not end exactly there: *out of order* (not a
    retransmission, not counted);
  - otherwise: a *retransmission*.

All three kinds carry the `tcp.analysis.retransmission` expert item in Wireshark, so all three
are listed here, each with its kind. Duplicate ACKs, keep-alives, zero-window probes and the
window (scaled after the handshake) are tracked the way Wireshark does, since they decide the
kind. Flows are numbered in the order of their first packet, like `tcp.stream`; a new SYN with
another initial sequence number on the same addresses and ports starts a new flow.

Conversations are told apart as Wireshark does in ordinary traffic (a SYN with another initial
sequence number on the same ports is a new flow); captures of nonsense flag combinations
(SYN+RST+FIN...) can be split into conversations differently from Wireshark's, and then disagree.

Reading the file is dpkt's (libpcap and pcapng; Ethernet, Linux cooked v1/v2, raw IP, BSD
loopback), imported only here. A file that is neither format is an error (UsageError naming
it); a file cut short mid-packet gives the packets before the cut and says so in `problems`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import UsageError

TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10
M32 = 0xFFFFFFFF
FAST_RETRANS_NS = 20_000_000   # Wireshark: "within 20ms of the last duplicate ack"
OOO_DEFAULT_NS = 3_000_000     # Wireshark: out-of-order window when the first RTT is unknown


@dataclass(frozen=True)
class Retransmission:
    frame: int            # packet number in the file, from 1 (tshark's frame.number)
    time: float           # seconds since the epoch (the capture's timestamp)
    rel_time: float       # seconds since the first packet of the file
    flow: int             # index into PcapReport.flows (tshark's tcp.stream)
    src: str              # "ADDR:PORT" that sent it
    dst: str
    seq: int              # raw sequence number
    rel_seq: int          # relative to the sender's initial sequence number (tshark's tcp.seq)
    length: int           # TCP payload bytes (tshark's tcp.len)
    kind: str             # "retransmission", "fast", "spurious"
    flags: str            # "SYN", "FIN", "" ...


@dataclass(frozen=True)
class Flow:
    index: int
    client: str           # "ADDR:PORT": the side that sent the SYN, else the first sender
    server: str
    packets: int
    data_bytes: int       # TCP payload bytes, both directions, retransmissions included
    retransmissions: int
    retransmitted_bytes: int
    first_time: float
    last_time: float
    handshake_seen: bool


@dataclass(frozen=True)
class PcapReport:
    path: str
    format: str           # "pcap" or "pcapng"
    link_type: int
    packets: int          # every packet in the file
    tcp_packets: int
    flows: tuple[Flow, ...]
    retransmissions: tuple[Retransmission, ...]
    first_time: float | None
    last_time: float | None
    skipped: dict[str, int] = field(default_factory=dict)   # why packets were not TCP/IP
    problems: tuple[str, ...] = ()   # a truncated file, an unknown link type

    @property
    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.retransmissions:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out


def _lt(a: int, b: int) -> bool:
    return ((a - b) & M32) >= 0x80000000


def _gt(a: int, b: int) -> bool:
    return _lt(b, a)


def _le(a: int, b: int) -> bool:
    return not _gt(a, b)


class _Dir:
    """One direction of a flow: Wireshark's tcp_flow_t with its tcp_analyze_seq_info."""

    __slots__ = ("base_seq", "base_set", "nextseq", "nextseqtime", "lastack", "lastacktime",
                 "dupacknum", "window", "win_scale", "keepalive_last", "zwp_last",
                 "maxseqtobeacked")

    def __init__(self):
        self.base_seq = 0
        self.base_set = False
        self.nextseq = 0
        self.nextseqtime = 0        # times in integer nanoseconds, compared as Wireshark does
        self.lastack = 0
        self.lastacktime = 0
        self.dupacknum = 0
        self.window = 0
        self.win_scale = -1       # -1 unknown (no SYN seen), -2 no option, else the shift
        self.keepalive_last = False
        self.zwp_last = False
        self.maxseqtobeacked = 0


class _Conv:
    __slots__ = ("index", "a", "b", "dirs", "syn_time", "first_rtt", "packets", "data",
                 "retrans", "retrans_bytes", "first", "last", "client", "handshake")

    def __init__(self, index, a, b, t):
        self.index = index
        self.a, self.b = a, b            # endpoint tuples (addr, port); a sent the first packet
        self.dirs = {a: _Dir(), b: _Dir()}
        self.syn_time = None
        self.first_rtt = None
        self.packets = self.data = self.retrans = self.retrans_bytes = 0
        self.first = self.last = t
        self.client = None
        self.handshake = False


def _decode_link(dpkt, link: int, buf: bytes):
    """The IP packet (dpkt.ip.IP or dpkt.ip6.IP6) in a frame, or a reason it has none."""
    try:
        if link == 1:
            pkt = dpkt.ethernet.Ethernet(buf).data
        elif link == 113:
            pkt = dpkt.sll.SLL(buf).data
        elif link == 276:
            pkt = dpkt.sll2.SLL2(buf).data
        elif link in (101, 12, 14):          # raw IP (LINKTYPE_RAW; DLT_RAW on BSDs)
            v = buf[0] >> 4 if buf else 0
            pkt = dpkt.ip.IP(buf) if v == 4 else dpkt.ip6.IP6(buf) if v == 6 else None
        elif link in (0, 108):               # BSD loopback (null / loop)
            pkt = dpkt.loopback.Loopback(buf).data
        elif link == 228:
            pkt = dpkt.ip.IP(buf)
        elif link == 229:
            pkt = dpkt.ip6.IP6(buf)
        else:
            return None, "link type"
    except (dpkt.UnpackError, dpkt.NeedData, ValueError, IndexError, KeyError):
        return None, "undecodable"
    if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)):
        return pkt, None
    return None, "not IP"


def _tcp_of(dpkt, ip):
    """(src, dst, tcp header, payload length) or None. The payload length comes from the IP
    header (like Wireshark's tcp.len), not from what the capture kept (a snap length)."""
    if isinstance(ip, dpkt.ip.IP):
        if ip.p != 6 or ip.offset:   # not TCP, or a later fragment
            return None
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            return None
        src, dst = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst)
        total = ip.len if ip.len else ip.hl * 4 + len(bytes(tcp))   # TSO frames may carry len 0
        seglen = total - ip.hl * 4 - tcp.off * 4
    else:
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            return None
        src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
        ext = sum(len(bytes(h)) for h in getattr(ip, "all_extension_headers", []) or [])
        seglen = ip.plen - ext - tcp.off * 4 if ip.plen else len(tcp.data)
    return src, dst, tcp, max(0, seglen)


def _window_scale(dpkt, tcp) -> int:
    try:
        opts = dpkt.tcp.parse_opts(tcp.opts)
    except (ValueError, IndexError, TypeError):
        return -2
    for o in opts:
        if not o or len(o) != 2:     # dpkt gives None for a malformed option
            break
        kind, data = o
        if kind == dpkt.tcp.TCP_OPT_WSCALE and data:
            return min(data[0], 14)
    return -2


def _fmt(ep) -> str:
    addr, port = ep
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class _ShortReads:
    """A file wrapper noting a read that got fewer bytes than asked (the file was cut)."""

    def __init__(self, f):
        self._f = f
        self.name = getattr(f, "name", "")
        self.short_at: int | None = None

    def read(self, n=-1):
        pos = self._f.tell()
        b = self._f.read(n)
        if n is not None and n > 0 and 0 < len(b) < n and self.short_at is None:
            self.short_at = pos
        return b

    def seek(self, *a):
        return self._f.seek(*a)

    def tell(self):
        return self._f.tell()


def analyse(path: str) -> PcapReport:
    """The TCP flows and retransmissions of a libpcap or pcapng file."""
    try:
        import dpkt
    except ImportError as exc:   # a dependency of ksight; say what to install
        raise UsageError(f"reading {path} needs the dpkt package (pip install dpkt): {exc}") from None
    for mod in ("ethernet", "sll", "sll2", "loopback", "ip", "ip6", "tcp", "pcap", "pcapng"):
        __import__(f"dpkt.{mod}")
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise UsageError(f"{path} is empty: not a packet capture")
        w = _ShortReads(f)
        try:
            reader = dpkt.pcap.Reader(w)
            fmt = "pcap"
        except (ValueError, dpkt.UnpackError, dpkt.NeedData):
            f.seek(0)
            w.short_at = None
            try:
                reader = dpkt.pcapng.Reader(w)
                fmt = "pcapng"
            except (ValueError, dpkt.UnpackError, dpkt.NeedData):
                raise UsageError(f"{path} is not a packet capture (neither libpcap nor pcapng; "
                                 f"tcpdump -w and tshark -w write these)") from None
        return _analyse(dpkt, path, fmt, reader, w)


def _analyse(dpkt, path, fmt, reader, w) -> PcapReport:
    link = reader.datalink()
    # integer nanoseconds for the comparisons (a first RTT of 48 us against a gap of 48 us must
    # not depend on float rounding): dpkt gives float seconds, exact to the file's resolution
    res = getattr(reader, "_divisor", None)
    res = int(res) if res and 10**9 % int(res) == 0 else None
    convs: dict[tuple, _Conv] = {}
    flows: list[_Conv] = []
    out: list[Retransmission] = []
    skipped: dict[str, int] = {}
    problems: list[str] = []
    frame = tcp_packets = 0
    t0 = tl = None
    it = iter(reader)
    while True:
        try:
            ts, buf = next(it)
        except StopIteration:
            break
        except (dpkt.UnpackError, dpkt.NeedData, ValueError) as exc:
            problems.append(f"the file ends in the middle of a record after packet {frame} "
                            f"({exc or 'cut short'}): analysed the {frame} packets before it")
            break
        frame += 1
        if w.short_at is not None:
            problems.append(f"the file ends in the middle of packet {frame} (cut short at byte "
                            f"{w.short_at}): analysed the {frame - 1} complete packets")
            frame -= 1
            break
        t0 = ts if t0 is None else t0
        tl = ts
        ip, why = _decode_link(dpkt, link, buf)
        if ip is None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        try:
            got = _tcp_of(dpkt, ip)
        except (dpkt.UnpackError, ValueError):
            got = None
        if got is None:
            skipped["not TCP"] = skipped.get("not TCP", 0) + 1
            continue
        tcp_packets += 1
        src, dst, tcp, seglen = got
        tn = round(ts * res) * (10**9 // res) if res else round(ts * 1e9)
        r = _packet(dpkt, convs, flows, ts, tn, (src, tcp.sport), (dst, tcp.dport), tcp,
                    seglen)
        if r is not None:
            out.append(Retransmission(frame=frame, time=ts, rel_time=ts - t0, **r))
    if "link type" in skipped:
        problems.append(f"link type {link} is not one ksight decodes (Ethernet, Linux cooked, "
                        f"raw IP, loopback): {skipped['link type']} packets skipped")
    fl = tuple(Flow(index=c.index, client=_fmt(c.client or c.a),
                    server=_fmt(c.b if (c.client or c.a) == c.a else c.a), packets=c.packets,
                    data_bytes=c.data, retransmissions=c.retrans,
                    retransmitted_bytes=c.retrans_bytes, first_time=c.first, last_time=c.last,
                    handshake_seen=c.handshake) for c in flows)
    return PcapReport(path=path, format=fmt, link_type=link, packets=frame,
                      tcp_packets=tcp_packets, flows=fl, retransmissions=tuple(out),
                      first_time=t0, last_time=tl, skipped=skipped, problems=tuple(problems))


def _packet(dpkt, convs, flows, ts, tn, src, dst, tcp, seglen):
    flags = tcp.flags
    seq, ack, raw_win = tcp.seq, tcp.ack, tcp.win
    key = (src, dst) if src <= dst else (dst, src)
    c = convs.get(key)
    if c is not None and flags & TH_SYN and not flags & TH_ACK:
        fd = c.dirs[src]
        if fd.base_set and seq != fd.base_seq:   # ports reused: a new connection
            c = None
    if c is None:
        c = _Conv(len(flows), src, dst, ts)
        convs[key] = c
        flows.append(c)
    fwd, rev = c.dirs[src], c.dirs[dst]
    c.packets += 1
    c.data += seglen
    c.last = ts

    # handshake: client, first RTT (SYN to the first ACK without SYN), window scaling
    if flags & TH_SYN:
        fwd.win_scale = _window_scale(dpkt, tcp)
        if not flags & TH_ACK:
            c.client = src
            c.syn_time = tn         # the most recent SYN (Wireshark's ts_mru_syn)
        window = raw_win          # a SYN's window is never scaled
    else:
        if flags & TH_ACK and c.syn_time is not None and not c.first_rtt:
            c.first_rtt = tn - c.syn_time
            c.handshake = True
        ws = fwd.win_scale
        window = raw_win << ws if ws >= 0 and rev.win_scale >= 0 else raw_win

    # base sequence numbers, as Wireshark sets them (for relative seq)
    if not fwd.base_set:
        fwd.base_seq = seq if flags & TH_SYN else (seq - 1) & M32
        fwd.base_set = True
    if not rev.base_set and flags & TH_ACK:
        rev.base_seq = (ack - 1) & M32
        rev.base_set = True

    keepalive = zwp = False
    if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
        zwp = True            # zero window probe: skips to the ack bookkeeping
    else:
        if seglen in (0, 1) and seq == ((fwd.nextseq - 1) & M32) and not flags & (TH_SYN | TH_FIN | TH_RST):
            keepalive = True
        if (seglen == 0 and window and window == fwd.window and seq == fwd.nextseq
                and ack == fwd.lastack and rev.keepalive_last
                and not flags & (TH_SYN | TH_FIN | TH_RST)):
            pass              # keep-alive ACK: not a duplicate ACK
        elif (seglen == 0 and window == 0 and window == fwd.window and seq == fwd.nextseq
              and ack == fwd.lastack and rev.zwp_last and not flags & (TH_SYN | TH_FIN | TH_RST)):
            pass              # zero window probe ACK: not a duplicate ACK
        elif (seglen == 0 and window and window == fwd.window and seq == fwd.nextseq
              and ack == fwd.lastack and not flags & (TH_SYN | TH_FIN | TH_RST)):
            fwd.dupacknum = 1 if fwd.dupacknum == -1 else fwd.dupacknum + 1
    if ack != fwd.lastack:
        fwd.dupacknum = 0
    # an ACK beyond what the other side was seen sending: segments missing from the capture
    if rev.maxseqtobeacked and _gt(ack, rev.maxseqtobeacked) and flags & TH_ACK:
        if rev.maxseqtobeacked > rev.nextseq:
            rev.maxseqtobeacked = rev.nextseq
        else:
            rev.dupacknum = -1

    kind = None
    if (seglen > 0 or flags & (TH_SYN | TH_FIN)) and not keepalive:
        not_adv = bool(fwd.nextseq) and _lt(seq, fwd.nextseq)
        if seglen > 1 and ((fwd.nextseq - 1) & M32) == seq:
            not_adv = False
        if seglen > 0 and rev.lastack and _le((seq + seglen) & M32, rev.lastack):
            kind = "spurious"
        elif (not_adv and rev.dupacknum >= 2 and rev.lastack == seq
              and tn - rev.lastacktime < FAST_RETRANS_NS):
            kind = "fast"
        else:
            thres = c.first_rtt if c.first_rtt else OOO_DEFAULT_NS
            end = (seq + seglen + (1 if flags & (TH_SYN | TH_FIN) else 0)) & M32
            if not_adv and tn - fwd.nextseqtime < thres and fwd.nextseq != end:
                kind = None   # out of order: not a retransmission
            elif not_adv:
                kind = "retransmission"

    nextseq = (seq + seglen + (1 if flags & (TH_SYN | TH_FIN) else 0)) & M32
    if (_gt(nextseq, fwd.nextseq) or not fwd.nextseq) and not zwp:
        fwd.nextseq = nextseq
        fwd.nextseqtime = tn
    if (seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked) and not zwp:
        fwd.maxseqtobeacked = fwd.nextseq
    fwd.window = window
    fwd.lastack = ack
    fwd.lastacktime = tn
    fwd.keepalive_last = keepalive
    fwd.zwp_last = zwp

    if kind is None:
        return None
    c.retrans += 1
    c.retrans_bytes += seglen
    names = [n for bit, n in ((TH_SYN, "SYN"), (TH_FIN, "FIN"), (TH_RST, "RST")) if flags & bit]
    return dict(flow=c.index, src=_fmt(src), dst=_fmt(dst), seq=seq,
                rel_seq=(seq - fwd.base_seq) & M32, length=seglen, kind=kind,
                flags=",".join(names))


__all__ = ["analyse", "PcapReport", "Flow", "Retransmission"]
