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

    ksight/sock_diag/index.json              {"format": 2, "byteorder": "little",
                                              "namespaces": [{"netns": 4026531992, "pid": 1,
                                                "families": {"inet": {"file": "<ns>/inet4.bin"},
                                                             "inet6": {"reason": "..."}}}]}
    ksight/sock_diag/<netns>/inet4.bin       the dump for AF_INET, every recv() appended
    ksight/sock_diag/<netns>/inet6.bin       the dump for AF_INET6

(<netns> is "current" when the namespace could not be named.) Captures made before this layout
hold ksight/sock_diag.json (decoded sockets, format 1); they are still read.

Why a hand-written decoder instead of pyroute2: inet_diag_msg is a fixed 72-byte struct followed
by plain rtattrs, and tcp_info fields must be taken only when the attribute is long enough to hold
them (tcp_info grew over the years: delivery_rate since 4.9, bytes_retrans since 4.19); pyroute2's
tcp_info class decodes against its own idea of the struct's length and needs a socket object
around its marshal. The decoder below takes the byte order of the capturing host (netlink is
host-endian) and needs nothing outside the standard library, so any machine can replay a capture.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from dataclasses import dataclass, field

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
ALL_STATES = (1 << 14) - 1
_NLMSG_HDR = 16
_DIAG_MSG = 72  # struct inet_diag_msg
_MAX_RECVS = 100_000  # a dump ends with NLMSG_DONE; this only bounds a kernel that never says so
_RECV_TIMEOUT_S = 5.0
FAMILIES = (("inet", socket.AF_INET, "inet4.bin"), ("inet6", socket.AF_INET6, "inet6.bin"))

# name -> (byte offset, size) in struct tcp_info (include/uapi/linux/tcp.h)
TCP_INFO_FIELDS = {
    "retransmits": (2, 1),
    "snd_mss": (16, 4),
    "unacked": (24, 4),
    "lost": (32, 4),
    "retrans": (36, 4),
    "rtt_us": (68, 4),
    "rttvar_us": (72, 4),
    "ssthresh": (76, 4),  # 0x7fffffff: still in initial slow start
    "cwnd": (80, 4),
    "total_retrans": (100, 4),
    "delivery_rate": (160, 8),  # bytes/s, 4.9+
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

    def key(self) -> tuple:
        return (self.family, self.local_addr, self.local_port, self.remote_addr,
                self.remote_port, self.inode)


@dataclass(frozen=True)
class DiagResult:
    available: bool
    reason: str | None
    sockets: tuple[DiagSock, ...] = field(default_factory=tuple)

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
    off = _DIAG_MSG
    while off + 4 <= len(body):
        rta_len, rta_type = struct.unpack_from(("<" if bo == "little" else ">") + "HH", body, off)
        if rta_len < 4 or off + rta_len > len(body):
            raise ValueError(f"attribute length {rta_len} at offset {off} overruns the message")
        if rta_type & 0x3FFF == INET_DIAG_INFO:
            info = tcp_info(body[off + 4:off + rta_len], bo)
        off += (rta_len + 3) & ~3
    return DiagSock(
        family="inet" if af == socket.AF_INET else "inet6", state=state_name(st),
        local_addr=_addr(af, body[8:24]), local_port=sport,
        remote_addr=_addr(af, body[24:40]), remote_port=dport,
        inode=ino, uid=uid, rqueue=rq, wqueue=wq, info=info,
        cookie=c0 | (c1 << 32), netns=netns,
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


# --- live ----------------------------------------------------------------------------------------

def _request(af: int, seq: int) -> bytes:
    req = struct.pack("=BBBxI", af, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), ALL_STATES)
    req += bytes(48)  # struct inet_diag_sockid: all zero, a dump of every socket
    return struct.pack("=IHHII", _NLMSG_HDR + len(req), SOCK_DIAG_BY_FAMILY,
                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req


def _ended(chunk: bytes) -> bool:
    off = 0
    while off + _NLMSG_HDR <= len(chunk):
        n_len, n_type = struct.unpack_from("=IH", chunk, off)
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
    with netns.socket_in(pid, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as s:
        s.settimeout(_RECV_TIMEOUT_S)
        s.bind((0, 0))
        for seq, (name, af, _file) in enumerate(FAMILIES, 1):
            try:
                out[name] = dump(s, af, seq)
            except (OSError, RuntimeError) as exc:
                out[name] = f"sock_diag failed: {type(exc).__name__}: {exc}"
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


def _collect_live(root: Root, namespaces: dict[int | None, int | None]) -> dict:
    from ..fs import netns as fsns

    try:
        own = fsns.current()
    except OSError:
        own = None
    results: dict[int | None, DiagResult] = {}
    index = {"format": FORMAT, "byteorder": sys.byteorder, "namespaces": []}
    for ns, pid in namespaces.items():
        entry: dict = {"netns": ns, "pid": pid, "families": {}}
        fams: dict[str, list[DiagSock] | str] = {}
        try:
            raws = query_raw(None if ns is None or ns == own else pid)
        except Unavailable as u:
            raws = {name: f"cannot enter the namespace ({u.reason})" for name, _, _ in FAMILIES}
        except OSError as exc:
            raws = {name: f"sock_diag failed: {type(exc).__name__}: {exc}" for name, _, _ in FAMILIES}
        for name, _af, fname in FAMILIES:
            raw = raws.get(name, "not asked")
            if isinstance(raw, str):
                fams[name] = raw
                entry["families"][name] = {"reason": raw}
                continue
            path = f"{_ns_dir(ns)}/{fname}"
            record_extra(root, f"{CAPTURE_DIR}/{path}", raw)
            entry["families"][name] = {"file": path}
            try:
                fams[name] = decode(raw, sys.byteorder, ns)
            except (ValueError, OSError) as exc:
                fams[name] = f"sock_diag answer not understood: {exc}"
        results[ns] = _result(fams)
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
    except ValueError as exc:
        return {None: DiagResult(False, f"{INDEX_PATH} is malformed ({exc})")}
    bo = index.get("byteorder") or "little"
    results: dict[int | None, DiagResult] = {}
    for entry in index["namespaces"]:
        ns = entry.get("netns") if isinstance(entry, dict) else None
        fams: dict[str, list[DiagSock] | str] = {}
        for name, spec in ((entry or {}).get("families") or {}).items():
            if not isinstance(spec, dict):
                fams[name] = "malformed index entry"
            elif "file" in spec:
                try:
                    fams[name] = decode(root.read_bytes(f"{CAPTURE_DIR}/{spec['file']}"), bo, ns)
                except Unavailable as u:
                    fams[name] = f"dump not in capture ({u.reason})"
                except (ValueError, OSError) as exc:
                    fams[name] = f"sock_diag answer not understood: {exc}"
            else:
                fams[name] = str(spec.get("reason") or "unavailable")
        results[ns] = _result(fams) if fams else DiagResult(False, "no families in capture")
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
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return DiagResult(False, f"{LEGACY_PATH} is malformed ({exc})")


def collect(root: Root, namespaces: dict[int | None, int | None] | None = None,
            ) -> dict[int | None, DiagResult]:
    """netns inode -> DiagResult. Live: ask the kernel in each namespace of `namespaces` (netns
    inode -> a pid inside it, whose /proc/PID/ns/net is entered; {None: None}, the default, is our
    own namespace) and record the raw answers for a capture. Not live: decode what the capture
    holds (`namespaces` is then ignored); a capture of format 1 gives {None: result}; a capture
    without sock_diag data gives {}."""
    if not root.live:
        return _collect_replay(root)
    return _collect_live(root, namespaces if namespaces else {None: None})
