"""retrans: TCP retransmits per flow, with the flow's state and owning process.

The owner comes first from sock:inet_sock_set_state events made in the owner's own context
(connect, close, listen: kernel-side filter), else from the socket tables: the flow's inode in
/proc/PID/net/tcp{,6} of each network namespace (ksight.sources.net_tcp), then the process
holding that inode (ksight.collect.sockets.scan_owners).
"""

from __future__ import annotations

import socket
from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import ParseError, Unavailable
from ...fs import Root
from ...sources import net_tcp
from .base import Recipe, RecipeResult


@dataclass(frozen=True)
class Owner:
    pid: int
    comm: str | None
    found_by: str                 # inet_sock_set_state | /proc fd scan
    inode: int | None = None
    netns: str | None = None


@dataclass(frozen=True)
class Flow:
    saddr: str
    sport: int
    daddr: str
    dport: int
    kind: str                     # skb | synack
    retransmits: int
    state: str | None
    owner: Owner | None


@dataclass(frozen=True, kw_only=True)
class RetransResult(RecipeResult):
    flows: tuple[Flow, ...]


def _addr(e, v4: str, v6: str) -> str:
    if e.get("family") == socket.AF_INET6:
        raw = e.get(v6)
        if raw and raw[:12] != b"\0" * 10 + b"\xff\xff":
            return socket.inet_ntop(socket.AF_INET6, raw)
        return socket.inet_ntop(socket.AF_INET, raw[12:]) if raw else "?"
    raw = e.get(v4)
    return socket.inet_ntop(socket.AF_INET, raw) if raw else "?"


def _tables(root: Root, pid: int, v6: bool) -> list[net_tcp.TcpSocket]:
    order = net_tcp.host_byteorder(root)
    out: list[net_tcp.TcpSocket] = []
    for path in ((net_tcp.PATH6,) if v6 else (net_tcp.PATH, net_tcp.PATH6)):
        p = path.replace("proc/", f"proc/{pid}/", 1)
        try:
            out += net_tcp.parse(root.read_text(p), p, byteorder=order).sockets
        except (Unavailable, ParseError):
            continue
    return out


def socket_owner(root: Root, saddr: str, sport: int, daddr: str, dport: int) -> Owner | None:
    """The process holding the TCP socket saddr:sport -> daddr:dport, in any network namespace.

    Reads the TCP tables once per namespace (through one of its processes), then asks
    collect.sockets for the holder of the socket's inode (inodes are unique machine-wide)."""
    from ...collect.sockets import scan_owners

    v6 = ":" in saddr
    want = {(saddr, sport, daddr, dport)}
    if not v6:  # an IPv4 flow on a dual-stack socket shows as ::ffff:a.b.c.d in tcp6
        want.add((f"::ffff:{saddr}", sport, f"::ffff:{daddr}", dport))
    try:
        pids = sorted(int(p) for p in root.listdir("proc") if p.isdigit())
    except Unavailable:
        return None
    seen_ns: set[str] = set()
    for pid in pids:
        try:
            ns = root.readlink(f"proc/{pid}/ns/net")
        except Unavailable:
            continue
        if ns in seen_ns:
            continue
        seen_ns.add(ns)
        for s in _tables(root, pid, v6):
            if s.inode and (s.local_addr, s.local_port, s.remote_addr, s.remote_port) in want:
                owners, _ = scan_owners(root, {s.inode})
                if s.inode in owners:
                    opid, comm = owners[s.inode]
                    return Owner(opid, comm, "/proc fd scan", s.inode, ns)
                return None
    return None


class Retrans(Recipe):
    name = "retrans"
    question = "TCP retransmits"
    events = ("tcp:tcp_retransmit_skb", "tcp:tcp_retransmit_synack", "sock:inet_sock_set_state")
    overhead = ("low: one event per retransmitted segment (rare on a healthy network), plus "
                "TCP state changes made by processes (connect, listen, close: kernel-side filter) "
                "to learn socket owners; a /proc scan once per new flow otherwise (max 64 flows)")
    # state changes that happen in the owner's own context: connect(), close(), listen()
    OWNER_STATES = ("SYN_SENT", "FIN_WAIT1", "LAST_ACK", "LISTEN")
    MAX_SCANS = 64
    Result = RetransResult

    def __init__(self, root, **opts):
        super().__init__(root, **opts)
        self.flows: Counter = Counter()
        self.state: dict = {}
        self.owner: dict = {}
        self.sk: dict = {}           # flow -> skaddr
        self.sk_owner: dict = {}     # skaddr -> (pid, comm), from inet_sock_set_state

    def filters(self):
        by_name = {v: k for k, v in net_tcp.STATES.items()}
        states = " || ".join(f"newstate == {by_name[s]}" for s in self.OWNER_STATES)
        return {"sock:inet_sock_set_state": f"protocol == 6 && ({states})"}

    def on_event(self, e) -> None:
        if e.name == "sock:inet_sock_set_state":
            if e.pid > 0 and len(self.sk_owner) < 100_000:
                self.sk_owner[e["skaddr"]] = (e.pid, self.procs.comm(e.pid))
            return
        kind = "synack" if e.name.endswith("synack") else "skb"
        key = (_addr(e, "saddr", "saddr_v6"), e["sport"], _addr(e, "daddr", "daddr_v6"), e["dport"], kind)
        self.flows[key] += 1
        self.sk[key] = e.get("skaddr")
        if "state" in e.fields:
            self.state[key] = net_tcp.state_name(e["state"])
        elif kind == "synack":
            self.state[key] = "SYN_RECV"
        if key not in self.owner and len(self.owner) < self.MAX_SCANS:
            self.owner[key] = socket_owner(self.root, *key[:4])

    def body(self) -> dict:
        flows = []
        for key, n in self.flows.most_common():
            owner = self.owner.get(key)
            if owner is None and self.sk.get(key) in self.sk_owner:
                pid, comm = self.sk_owner[self.sk[key]]
                owner = Owner(pid, comm, "inet_sock_set_state")
            flows.append(Flow(key[0], key[1], key[2], key[3], key[4], n, self.state.get(key), owner))
        return {"flows": tuple(flows)}


# --- check-time enrichment ------------------------------------------------------------------------

def top_flows(root: Root | None = None, seconds: float = 1.0, top: int = 5,
              max_events: int = 20_000) -> tuple[tuple[Flow, ...], str | None]:
    """The flows retransmitting most over `seconds` (bounded: at most ~1 s by default and
    `max_events` events), for `ksight check` to name the flows behind a high retransmission
    rate. Live and root only; never raises: ((), reason) when the kernel could not be traced
    (not root, no tracefs, tcp:tcp_retransmit_skb missing), (flows, None) otherwise. The
    tracefs instance is removed on the way out whatever happens."""
    import os

    from ...errors import KsightError
    from ...fs import LiveRoot

    if os.geteuid() != 0:
        return (), "tracing needs root"
    rec = Retrans(root or LiveRoot())
    try:
        with rec.session(min(max(seconds, 0.1), 5.0), max_events=max_events) as t:
            t.wait()
        res = rec.result(t)
    except (KsightError, OSError) as e:
        return (), f"tcp:tcp_retransmit_skb could not be traced: {e}"
    return tuple(_with_netns(rec.root, f) for f in res.flows[:top]), None


def _with_netns(root: Root, f: Flow) -> Flow:
    """The owner's network namespace ("net:[INODE]") when the owner came from an event: the
    tracepoint sees every namespace, and two may use the same addresses."""
    import dataclasses

    if f.owner is None or f.owner.netns is not None:
        return f
    try:
        ns = root.readlink(f"proc/{f.owner.pid}/ns/net")
    except Unavailable:
        return f
    return dataclasses.replace(f, owner=dataclasses.replace(f.owner, netns=ns))
