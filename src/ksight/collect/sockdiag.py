"""Netlink sock_diag (inet_diag) for TCP over IPv4 and IPv6: what /proc/net/tcp does not say.

For a LISTEN socket the kernel reports the accept queue length (idiag_rqueue) and its maximum,
the listen() backlog capped by net.core.somaxconn (idiag_wqueue). For a full socket, the
INET_DIAG_INFO attribute carries struct tcp_info (cwnd, ssthresh, rtt, retransmissions, ...), as
`ss -ti` shows it. Every socket also has a cookie (idiag_cookie), the kernel's 64-bit id for it.

One dump per network namespace and family. The socket is opened inside the namespace
(fs.netns.socket_in): a netlink socket only ever answers for the namespace it was created in.

Captures hold the kernel's answer as it came, not our reading of it: the raw netlink bytes of each
dump go to the capture (fs.record_extra), and replay decodes them with the same `decode` the live
path uses, so a later fix to the decoder also reaches old captures. Layout in a snapshot tree:

    ksight/sock_diag/index.json              {"format": 2, "byteorder": "little", "clk_tck": 100,
                                              "namespaces": [{"netns": 4026531992, "pid": 1,
                                                "table": "sock_diag",
                                                "families": {"inet": {"file": "<ns>/inet4.bin"},
                                                             "inet6": {"reason": "..."}}}]}
    ksight/sock_diag/<netns>/inet4.bin       the dump for AF_INET, every recv() appended
    ksight/sock_diag/<netns>/inet6.bin       the dump for AF_INET6

(<netns> is "current" when the namespace could not be named.) "table": "sock_diag" says that every
family decoded and the namespace's TCP table was built from the dumps alone (table_rows), so the
capture holds no /proc/PID/net/tcp{,6} for it; without it (captures made before) replay joins the
dumps to the /proc tables the capture holds. clk_tck converts idiag_expires (ms) to /proc's ticks. Captures made before this layout
hold ksight/sock_diag.json (decoded sockets, format 1); they are still read.

Why a hand-written decoder instead of pyroute2: inet_diag_msg is a fixed 72-byte struct followed
by plain rtattrs, and tcp_info fields must be taken only when the attribute is long enough to hold
them (tcp_info grew over the years: delivery_rate since 4.9, busy_time, rwnd_limited and
sndbuf_limited since 4.10, bytes_retrans since 4.19); pyroute2's
tcp_info class decodes against its own idea of the struct's length and needs a socket object
around its marshal. The decoder below takes the byte order of the capturing host (netlink is
host-endian) and needs nothing outside the standard library, so any machine can replay a capture.
"""

from __future__ import annotations

import json
import os
import _socket as socket  # the C module: socket.py builds its IntEnums (~2.5 ms of start-up)
import struct
import sys
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable
from ..fs import Root, record_extra
from ..sources.net_tcp import state_name

CAPTURE_DIR = "ksight/sock_diag"
INDEX_PATH = f"{CAPTURE_DIR}/index.json"
LEGACY_PATH = "ksight/sock_diag.json"
CAPTURE_PATH = LEGACY_PATH  # the name before format 2; kept for readers of the old layout
FORMAT = 2
LEGACY_FORMAT = 1

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
INET_DIAG_INFO = 2
INET_DIAG_SKMEMINFO = 7  # u32 sk_meminfo[]: [1] rcvbuf, [3] sndbuf (include/uapi/linux/sock_diag.h)
ALL_STATES = (1 << 14) - 1
_NLMSG_HDR = 16
_DIAG_MSG = 72  # struct inet_diag_msg
_MAX_RECVS = 100_000  # a dump ends with NLMSG_DONE; this only bounds a kernel that never says so
_RECV_TIMEOUT_S = 5.0
FAMILIES = (("inet", socket.AF_INET, "inet4.bin"), ("inet6", socket.AF_INET6, "inet6.bin"))

# name -> (byte offset, size) in struct tcp_info (include/uapi/linux/tcp.h)
TCP_INFO_FIELDS = {
    "retransmits": (2, 1),
    "rto_us": (8, 4),  # tcpi_rto: the retransmission timeout now
    "snd_mss": (16, 4),
    "unacked": (24, 4),
    "lost": (32, 4),
    "last_data_recv_ms": (52, 4),  # tcpi_last_data_recv: ms since data last arrived
    "retrans": (36, 4),
    "rtt_us": (68, 4),
    "rttvar_us": (72, 4),
    "ssthresh": (76, 4),  # 0x7fffffff: still in initial slow start
    "cwnd": (80, 4),
    "rcv_space": (96, 4),  # tcpi_rcv_space: receive autotuning's estimate of what the peer sends per RTT
    "total_retrans": (100, 4),
    "delivery_rate": (160, 8),  # bytes/s, 4.9+
    # usec the flow had data to send (chrono: not idle), and of it the time it was held back by
    # the peer's receive window or by its own send buffer (tcp_chrono_start), 4.10+
    "busy_time_us": (168, 8),
    "rwnd_limited_us": (176, 8),
    "sndbuf_limited_us": (184, 8),
    "bytes_retrans": (208, 8),  # 4.19+
}


@dataclass(frozen=True)
class DiagSock:
    family: str
    state: str
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    inode: int
    uid: int
    rqueue: int  # LISTEN: accept queue length; else unread bytes
    wqueue: int  # LISTEN: accept queue maximum (backlog); else unacked bytes
    info: dict[str, int | None] | None = None  # TCP_INFO_FIELDS names; None without tcp_info
    cookie: int | None = None  # idiag_cookie; None in captures of format 1
    netns: int | None = None  # inode of the network namespace; None when not known
    rcvbuf: int | None = None  # INET_DIAG_SKMEMINFO sk_rcvbuf (bytes); None in older captures
    sndbuf: int | None = None  # sk_sndbuf

    def key(self) -> tuple:
        return (self.family, self.local_addr, self.local_port, self.remote_addr,
                self.remote_port, self.inode)


@dataclass(frozen=True)
class DiagResult:
    available: bool
    reason: str | None
    sockets: tuple[DiagSock, ...] = field(default_factory=tuple)
    # every family's dump decoded: the namespace's whole TCP table as ROW_FIELDS tuples
    # (table_rows), and /proc/PID/net/tcp{,6} need not be read; None otherwise (then `sockets`
    # holds what did decode, joined to the /proc tables by collect/sockets.py)
    rows: tuple[dict, ...] | None = None

    def by_key(self) -> dict[tuple, DiagSock]:
        return {s.key(): s for s in self.sockets}


# --- decoding (live and replay) ------------------------------------------------------------------

def tcp_info(payload: bytes, byteorder: str = sys.byteorder) -> dict[str, int | None]:
    """The TCP_INFO_FIELDS of a struct tcp_info; a field the attribute is too short for is None."""
    out: dict[str, int | None] = {}
    for name, (off, size) in TCP_INFO_FIELDS.items():
        out[name] = (int.from_bytes(payload[off:off + size], byteorder)
                     if off + size <= len(payload) else None)
    return out


def _addr(af: int, raw: bytes) -> str:
    return socket.inet_ntop(af, raw[:4] if af == socket.AF_INET else raw)


def _diag_msg(body: bytes, bo: str, netns: int | None) -> DiagSock:
    if len(body) < _DIAG_MSG:
        raise ValueError(f"inet_diag_msg of {len(body)} bytes (< {_DIAG_MSG})")
    af, st = body[0], body[1]
    sport, dport = struct.unpack_from(">HH", body, 4)  # network order
    ifindex, c0, c1, _exp, rq, wq, uid, ino = struct.unpack_from(("<" if bo == "little" else ">")
                                                                + "8I", body, 40)
    info = None
    rcvbuf = sndbuf = None
    off = _DIAG_MSG
    while off + 4 <= len(body):
        rta_len, rta_type = struct.unpack_from(("<" if bo == "little" else ">") + "HH", body, off)
        if rta_len < 4 or off + rta_len > len(body):
            raise ValueError(f"attribute length {rta_len} at offset {off} overruns the message")
        if rta_type & 0x3FFF == INET_DIAG_INFO:
            info = tcp_info(body[off + 4:off + rta_len], bo)
        elif rta_type & 0x3FFF == INET_DIAG_SKMEMINFO and rta_len >= 4 + 16:
            _, rcvbuf, _, sndbuf = struct.unpack_from(("<" if bo == "little" else ">") + "4I",
                                                      body, off + 4)
        off += (rta_len + 3) & ~3
    return DiagSock(
        family="inet" if af == socket.AF_INET else "inet6", state=state_name(st),
        local_addr=_addr(af, body[8:24]), local_port=sport,
        remote_addr=_addr(af, body[24:40]), remote_port=dport,
        inode=ino, uid=uid, rqueue=rq, wqueue=wq, info=info,
        cookie=c0 | (c1 << 32), netns=netns, rcvbuf=rcvbuf, sndbuf=sndbuf,
    )


def decode(data: bytes, byteorder: str = sys.byteorder, netns: int | None = None) -> list[DiagSock]:
    """The sockets in the raw bytes of one sock_diag dump (a run of netlink messages).

    Raises ValueError for a truncated or malformed dump, and OSError when the kernel answered
    with an error (e.g. EINVAL on a kernel without inet_diag for this family)."""
    bo = "<" if byteorder == "little" else ">"
    out: list[DiagSock] = []
    off = 0
    while off + _NLMSG_HDR <= len(data):
        n_len, n_type, _flags, _seq, _pid = struct.unpack_from(bo + "IHHII", data, off)
        if n_len < _NLMSG_HDR or off + n_len > len(data):
            raise ValueError(f"netlink message length {n_len} at offset {off} overruns the dump")
        body = data[off + _NLMSG_HDR:off + n_len]
        if n_type == NLMSG_DONE:
            return out
        if n_type == NLMSG_ERROR:
            err = -struct.unpack_from(bo + "i", body, 0)[0] if len(body) >= 4 else 0
            if err:
                raise OSError(err, os.strerror(err))
        elif n_type == SOCK_DIAG_BY_FAMILY:
            out.append(_diag_msg(body, byteorder, netns))
        off += (n_len + 3) & ~3
    raise ValueError("dump ends without NLMSG_DONE (truncated)")


# --- the fast decoder: whole table rows --------------------------------------------------------

# The sockets.Sock fields of each row table_rows() gives (a dict with exactly these keys; the
# owner, pid and comm, is None and filled by collect/sockets.py). tcp_info fields by offset.
_INFO_ORDER = tuple(sorted(TCP_INFO_FIELDS, key=lambda n: TCP_INFO_FIELDS[n][0]))
ROW_FIELDS = ("family", "local_addr", "local_port", "remote_addr", "remote_port", "state",
              "tx_queue", "rx_queue", "timer_active", "timer_expires_ticks", "retransmits", "uid",
              "inode", "pid", "comm", "backlog", "accept_queue", "cwnd", "ssthresh", "rtt_us",
              "rttvar_us", "retrans", "total_retrans", "lost", "unacked", "snd_mss",
              "delivery_rate", "bytes_retrans", "netns", "cookie", "rto_us", "rcv_space",
              "last_data_recv_ms", "rcvbuf", "sndbuf", "busy_time_us", "rwnd_limited_us",
              "sndbuf_limited_us")
assert _INFO_ORDER == ("retransmits", "rto_us", "snd_mss", "unacked", "lost", "retrans",
                       "last_data_recv_ms", "rtt_us", "rttvar_us", "ssthresh", "cwnd", "rcv_space", "total_retrans",
                       "delivery_rate", "busy_time_us", "rwnd_limited_us", "sndbuf_limited_us",
                       "bytes_retrans")
BOUND_INACTIVE = 13  # bind() without listen() or connect(): sock_diag lists it, /proc/net/tcp not
_STATE_NAMES = tuple(state_name(i) for i in range(256))
_FAST: dict[str, tuple] = {}


def _fast_structs(byteorder: str) -> tuple:
    got = _FAST.get(byteorder)
    if got is None:
        bo = "<" if byteorder == "little" else ">"
        fmt, pos = bo, 0
        for name in _INFO_ORDER:
            off, size = TCP_INFO_FIELDS[name]
            fmt += f"{off - pos}x" if off > pos else ""
            fmt += {1: "B", 4: "I", 8: "Q"}[size]
            pos = off + size
        info = struct.Struct(fmt)
        got = _FAST[byteorder] = (struct.Struct(bo + "IH"), struct.Struct(bo + "BBBBHH16s16s8I"),
                                  struct.Struct(bo + "HH"), info, info.size,
                                  struct.Struct(bo + "4xI4xI").unpack_from)  # skmem rcvbuf, sndbuf
    return got


def table_rows(data: bytes, byteorder: str = sys.byteorder, netns: int | None = None,
               clk_tck: int = 100) -> list[dict]:
    """The rows of the TCP table /proc/net/tcp{,6} would print, from the raw bytes of one dump:
    dicts of ROW_FIELDS (sockets.Sock's fields, ready to be its __dict__), what decode() reads,
    in the units of /proc/net/tcp. Same errors as decode().

    Built for 10,000s of sockets (precompiled structs, one dict display per socket); decode()
    stays the reference and tests/collect/test_sockets.py compares the two field by field.
    Mapping to /proc/net/tcp's columns (net/ipv4/inet_diag.c, tcp_diag.c vs tcp_ipv4.c):
    - rx_queue/tx_queue: idiag_rqueue/idiag_wqueue, the same expressions, except that a LISTEN
      socket's wqueue is the backlog: tx_queue is 0 for it (write_seq - snd_una of a socket that
      never sent) and rqueue/wqueue are also given as accept_queue/backlog.
    - timer_active: idiag_timer (same codes); timer_expires_ticks: idiag_expires is in ms,
      /proc prints USER_HZ ticks of the same jiffies delta (both clamp at 0): ms * clk_tck // 1000.
    - retransmits: icsk_retransmits, which tcp_info carries for full sockets (idiag_retrans is
      probes_out under a keepalive or zero-window timer); TIME_WAIT: 0 in both; NEW_SYN_RECV:
      idiag_retrans (num_retrans; /proc prints num_timeout, equal unless a SYN-ACK timed out
      without being resent).
    - BOUND_INACTIVE sockets are left out: /proc/net/tcp does not list them.
    - tcp_info fields (not in /proc/net/tcp) for connections, None for LISTEN, as before."""
    hdr, msg, rta, info_s, info_n, skmem_u = _fast_structs(byteorder)
    hdr_u, msg_u, rta_u, info_u = hdr.unpack_from, msg.unpack_from, rta.unpack_from, info_s.unpack_from
    swap = byteorder == "little"
    names = _STATE_NAMES
    addrs: dict[bytes, str] = {}
    ntop = socket.inet_ntop
    out: list[tuple] = []
    append = out.append
    n = len(data)
    off = 0
    while off + _NLMSG_HDR <= n:
        n_len, n_type = hdr_u(data, off)
        end = off + n_len
        if n_len < _NLMSG_HDR or end > n:
            raise ValueError(f"netlink message length {n_len} at offset {off} overruns the dump")
        if n_type == SOCK_DIAG_BY_FAMILY:
            b = off + _NLMSG_HDR
            if end - b < _DIAG_MSG:
                raise ValueError(f"inet_diag_msg of {end - b} bytes (< {_DIAG_MSG})")
            (af, st, timer, dretrans, sport, dport, src, dst, _if, c0, c1, exp, rq, wq, uid,
             ino) = msg_u(data, b)
            info = None
            rcvbuf = sndbuf = None
            a = b + _DIAG_MSG
            while a + 4 <= end:
                rl, rt = rta_u(data, a)
                if rl < 4 or a + rl > end:
                    raise ValueError(f"attribute length {rl} at offset {a - b} overruns the message")
                if rt & 0x3FFF == INET_DIAG_SKMEMINFO:
                    if rl >= 4 + 16:
                        rcvbuf, sndbuf = skmem_u(data, a + 4)
                elif rt & 0x3FFF == INET_DIAG_INFO:
                    if rl - 4 >= info_n:
                        info = info_u(data, a + 4)
                    else:  # an older kernel's shorter tcp_info: what it holds, None past it
                        d = tcp_info(data[a + 4:a + rl], byteorder)
                        info = tuple(d[k] for k in _INFO_ORDER)
                a += (rl + 3) & ~3
            if st != BOUND_INACTIVE:
                if swap:
                    sport = ((sport & 0xFF) << 8) | (sport >> 8)
                    dport = ((dport & 0xFF) << 8) | (dport >> 8)
                if af == AF_INET:
                    fam, k1, k2 = "inet", src[:4], dst[:4]
                else:
                    fam, k1, k2 = "inet6", src, dst
                la = addrs.get(k1)
                if la is None:
                    la = addrs[k1] = ntop(af, k1)
                ra = addrs.get(k2)
                if ra is None:
                    ra = addrs[k2] = ntop(af, k2)
                cookie = c0 | (c1 << 32)
                ticks = exp * clk_tck // 1000
                # dict displays with constant keys: the cheapest way to build 10,000s of them
                if st == LISTEN:
                    append({"family": fam, "local_addr": la, "local_port": sport,
                            "remote_addr": ra, "remote_port": dport, "state": "LISTEN",
                            "tx_queue": 0, "rx_queue": rq, "timer_active": timer,
                            "timer_expires_ticks": ticks,
                            "retransmits": dretrans if info is None else info[0], "uid": uid,
                            "inode": ino, "pid": None, "comm": None, "backlog": wq,
                            "accept_queue": rq, "cwnd": None, "ssthresh": None, "rtt_us": None,
                            "rttvar_us": None, "retrans": None, "total_retrans": None,
                            "lost": None, "unacked": None, "snd_mss": None,
                            "delivery_rate": None, "bytes_retrans": None, "netns": netns,
                            "cookie": cookie, "rto_us": None, "rcv_space": None,
                            "last_data_recv_ms": None, "rcvbuf": rcvbuf, "sndbuf": sndbuf,
                            "busy_time_us": None, "rwnd_limited_us": None,
                            "sndbuf_limited_us": None})
                elif info is None:
                    append({"family": fam, "local_addr": la, "local_port": sport,
                            "remote_addr": ra, "remote_port": dport, "state": names[st],
                            "tx_queue": wq, "rx_queue": rq, "timer_active": timer,
                            "timer_expires_ticks": ticks, "retransmits": dretrans, "uid": uid,
                            "inode": ino, "pid": None, "comm": None, "backlog": None,
                            "accept_queue": None, "cwnd": None, "ssthresh": None,
                            "rtt_us": None, "rttvar_us": None, "retrans": None,
                            "total_retrans": None, "lost": None, "unacked": None,
                            "snd_mss": None, "delivery_rate": None, "bytes_retrans": None,
                            "netns": netns, "cookie": cookie, "rto_us": None, "rcv_space": None,
                            "last_data_recv_ms": None, "rcvbuf": rcvbuf, "sndbuf": sndbuf,
                            "busy_time_us": None, "rwnd_limited_us": None,
                            "sndbuf_limited_us": None})
                else:
                    (i_retransmits, i_rto, i_snd_mss, i_unacked, i_lost, i_retrans, i_last_recv,
                     i_rtt, i_rttvar, i_ssthresh, i_cwnd, i_rcv_space, i_total, i_rate,
                     i_busy, i_rwnd_lim, i_sndbuf_lim, i_bytes) = info
                    append({"family": fam, "local_addr": la, "local_port": sport,
                            "remote_addr": ra, "remote_port": dport, "state": names[st],
                            "tx_queue": wq, "rx_queue": rq, "timer_active": timer,
                            "timer_expires_ticks": ticks, "retransmits": i_retransmits,
                            "uid": uid, "inode": ino, "pid": None, "comm": None,
                            "backlog": None, "accept_queue": None, "cwnd": i_cwnd,
                            "ssthresh": i_ssthresh, "rtt_us": i_rtt, "rttvar_us": i_rttvar,
                            "retrans": i_retrans, "total_retrans": i_total, "lost": i_lost,
                            "unacked": i_unacked, "snd_mss": i_snd_mss, "delivery_rate": i_rate,
                            "bytes_retrans": i_bytes, "netns": netns, "cookie": cookie,
                            "rto_us": i_rto, "rcv_space": i_rcv_space,
                            "last_data_recv_ms": i_last_recv, "rcvbuf": rcvbuf, "sndbuf": sndbuf,
                            "busy_time_us": i_busy, "rwnd_limited_us": i_rwnd_lim,
                            "sndbuf_limited_us": i_sndbuf_lim})
        elif n_type == NLMSG_DONE:
            return out
        elif n_type == NLMSG_ERROR:
            body = data[off + _NLMSG_HDR:end]
            err = -struct.unpack_from(("<" if swap else ">") + "i", body, 0)[0] if len(body) >= 4 else 0
            if err:
                raise OSError(err, os.strerror(err))
        off += (n_len + 3) & ~3
    raise ValueError("dump ends without NLMSG_DONE (truncated)")


AF_INET = socket.AF_INET
LISTEN = 10


# --- live ----------------------------------------------------------------------------------------

def _request(af: int, seq: int) -> bytes:
    ext = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1))
    req = struct.pack("=BBBxI", af, socket.IPPROTO_TCP, ext, ALL_STATES)
    req += bytes(48)  # struct inet_diag_sockid: all zero, a dump of every socket
    return struct.pack("=IHHII", _NLMSG_HDR + len(req), SOCK_DIAG_BY_FAMILY,
                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req


_HDR_NATIVE = struct.Struct("=IH")


def _ended(chunk: bytes) -> bool:
    off = 0
    hdr = _HDR_NATIVE.unpack_from
    n = len(chunk)
    while off + _NLMSG_HDR <= n:
        n_len, n_type = hdr(chunk, off)
        if n_type in (NLMSG_DONE, NLMSG_ERROR):
            return True
        if n_len < _NLMSG_HDR:
            return True  # malformed: stop reading, decode() will say why
        off += (n_len + 3) & ~3
    return False


def dump(sock: socket.socket, af: int, seq: int) -> bytes:
    """Send one dump request and return every byte of the answer, as received."""
    sock.sendto(_request(af, seq), (0, 0))
    chunks = []
    for _ in range(_MAX_RECVS):
        chunk = sock.recv(1 << 20)
        chunks.append(chunk)
        if not chunk or _ended(chunk):
            return b"".join(chunks)
    raise RuntimeError("sock_diag dump did not end")


def query_raw(pid: int | None) -> dict[str, bytes | str]:
    """Family name -> raw dump bytes, or the reason it failed, for the namespace of `pid`
    (None: our own). Raises Unavailable if the namespace cannot be entered."""
    from ..fs import netns

    out: dict[str, bytes | str] = {}
    s = netns.socket_in(pid, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:  # the bare _socket.socket is no context manager
        s.settimeout(_RECV_TIMEOUT_S)
        s.bind((0, 0))
        for seq, (name, af, _file) in enumerate(FAMILIES, 1):
            try:
                out[name] = dump(s, af, seq)
            except (OSError, RuntimeError) as exc:
                out[name] = f"sock_diag failed: {type(exc).__name__}: {exc}"
    finally:
        s.close()
    return out


def query_live(pid: int | None = None, netns: int | None = None) -> list[DiagSock]:
    """Decoded sockets of both families in one namespace. Raises on any failure."""
    socks: list[DiagSock] = []
    for name, raw in query_raw(pid).items():
        if isinstance(raw, str):
            raise RuntimeError(f"{name}: {raw}")
        socks.extend(decode(raw, sys.byteorder, netns))
    return socks


# --- collect -------------------------------------------------------------------------------------

def _ns_dir(ns: int | None) -> str:
    return str(ns) if ns is not None else "current"


def _result(families: dict[str, list[DiagSock] | str]) -> DiagResult:
    socks = [s for v in families.values() if not isinstance(v, str) for s in v]
    fails = [f"{k}: {v}" for k, v in families.items() if isinstance(v, str)]
    ok = any(not isinstance(v, str) for v in families.values())
    return DiagResult(ok, "; ".join(fails) or None, tuple(socks))


def _decoded(raws: dict[str, bytes | str], bo: str, ns: int | None, clk_tck: int,
             whole: bool) -> DiagResult:
    """One namespace's result from its dumps (family -> raw bytes, or why there is none).
    whole: build the table rows when every family decodes (then no DiagSock is made)."""
    if whole and all(not isinstance(raws.get(name), str) for name, _, _ in FAMILIES):
        try:
            rows: list[tuple] = []
            for name, _af, _f in FAMILIES:
                rows += table_rows(raws[name], bo, ns, clk_tck)
            return DiagResult(True, None, (), tuple(rows))
        except (ValueError, OSError):
            pass  # said per family below
    fams: dict[str, list[DiagSock] | str] = {}
    for name, raw in raws.items():
        if isinstance(raw, str):
            fams[name] = raw
            continue
        try:
            fams[name] = decode(raw, bo, ns)
        except (ValueError, OSError) as exc:
            fams[name] = f"sock_diag answer not understood: {exc}"
    return _result(fams)


def _collect_live(root: Root, namespaces: dict) -> dict:
    from ..fs import netns as fsns

    try:
        own = fsns.current()
    except OSError:
        own = None
    clk_tck = os.sysconf("SC_CLK_TCK")
    results: dict[int | None, DiagResult] = {}
    index = {"format": FORMAT, "byteorder": sys.byteorder, "clk_tck": clk_tck, "namespaces": []}
    for ns, pids in namespaces.items():
        if not isinstance(pids, (list, tuple)):
            pids = [pids]
        raws: dict[str, bytes | str] = {}
        pid = pids[0] if pids else None
        for pid in pids or [None]:  # the first process of the namespace still there
            try:
                raws = query_raw(None if ns is None or ns == own else pid)
                break
            except Unavailable as u:
                raws = {name: f"cannot enter the namespace ({u.reason})" for name, _, _ in FAMILIES}
            except OSError as exc:
                raws = {name: f"sock_diag failed: {type(exc).__name__}: {exc}"
                        for name, _, _ in FAMILIES}
                break
        entry: dict = {"netns": ns, "pid": pid, "families": {}}
        for name, _af, fname in FAMILIES:
            raw = raws.get(name, "not asked")
            if isinstance(raw, str):
                entry["families"][name] = {"reason": raw}
                continue
            path = f"{_ns_dir(ns)}/{fname}"
            record_extra(root, f"{CAPTURE_DIR}/{path}", raw)
            entry["families"][name] = {"file": path}
        r = results[ns] = _decoded(raws, sys.byteorder, ns, clk_tck, True)
        if r.rows is not None:
            entry["table"] = "sock_diag"  # /proc/PID/net/tcp{,6} not read: replay uses the dumps
        index["namespaces"].append(entry)
    record_extra(root, INDEX_PATH, json.dumps(index, indent=1).encode())
    return results


def _collect_replay(root: Root) -> dict[int | None, DiagResult]:
    try:
        index = json.loads(root.read_bytes(INDEX_PATH))
        if not isinstance(index, dict) or not isinstance(index.get("namespaces"), list):
            raise ValueError("no namespaces list")
    except Unavailable:
        return _legacy(root)
    except (ValueError, RecursionError) as exc:  # RecursionError: a crafted, endlessly nested file
        return {None: DiagResult(False, f"{INDEX_PATH} is malformed ({str(exc)[:100]})")}
    bo = index.get("byteorder") or "little"
    if bo not in ("little", "big"):
        return {None: DiagResult(False, f"{INDEX_PATH} is malformed (byteorder {str(bo)[:20]!r})")}
    clk_tck = index.get("clk_tck") or 100  # USER_HZ: 100 wherever Linux runs but alpha
    results: dict[int | None, DiagResult] = {}
    for entry in index["namespaces"]:
        ns = entry.get("netns") if isinstance(entry, dict) else None
        raws: dict[str, bytes | str] = {}
        families = ((entry or {}).get("families") or {}) if isinstance(entry, dict) else {}
        for name, spec in families.items():
            if not isinstance(spec, dict):
                raws[name] = "malformed index entry"
            elif "file" in spec:
                try:
                    raws[name] = root.read_bytes(f"{CAPTURE_DIR}/{spec['file']}")
                except Unavailable as u:
                    raws[name] = f"dump not in capture ({u.reason})"
            else:
                raws[name] = str(spec.get("reason") or "unavailable")
        if not raws:
            results[ns] = DiagResult(False, "no families in capture")
            continue
        # captures before "table" read /proc/PID/net/tcp{,6} as well: they are joined as then
        whole = entry.get("table") == "sock_diag"
        results[ns] = _decoded(raws, bo, ns, clk_tck, whole)
    return results


def _legacy(root: Root) -> dict[int | None, DiagResult]:
    try:
        return {None: from_json(root.read_bytes(LEGACY_PATH))}
    except Unavailable:
        return {}


def from_json(data: bytes) -> DiagResult:
    """A format-1 capture (decoded sockets as JSON, before raw dumps were kept)."""
    try:
        doc = json.loads(data)
        socks = tuple(DiagSock(**s) for s in doc.get("sockets", ()))
        return DiagResult(bool(doc["available"]), doc.get("reason"), socks)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return DiagResult(False, f"{LEGACY_PATH} is malformed ({str(exc)[:100]})")


def collect(root: Root, namespaces: dict[int | None, int | None] | None = None,
            ) -> dict[int | None, DiagResult]:
    """netns inode -> DiagResult. Live: ask the kernel in each namespace of `namespaces` (netns
    inode -> a pid inside it, or a list of them tried in turn until one can be entered, whose
    /proc/PID/ns/net is entered; {None: None}, the default, is our own namespace) and record the
    raw answers for a capture. Where every family's dump decodes, the result carries the whole
    table (DiagResult.rows) and the index says so ("table": "sock_diag"), so that replay takes the
    table from the dumps too. Not live: decode what the capture
    holds (`namespaces` is then ignored); a capture of format 1 gives {None: result}; a capture
    without sock_diag data gives {}."""
    if not root.live:
        return _collect_replay(root)
    return _collect_live(root, namespaces if namespaces else {None: None})
