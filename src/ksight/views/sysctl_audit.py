"""`ksight sysctl --area AREA`: the kernel settings of one area, each with its current value,
what a busy server wants and why, and what goes wrong when it is off.

An area is a tuple of `Knob`s in AREAS (one line each to add: `AREAS["pagecache"] = (...)`).
A Knob names its sysctl, its group ("handshake", "queues", ...), the recommendation and the
consequence for people, and a `judge(value, sysctls)` that says "ok" or "review" (with a
sentence and, where one value is right, the value to set). A sysctl the kernel does not have is
"absent" with the reason (tcp_tw_recycle: removed in Linux 4.12); one that could not be read is
"unreadable" with the reason (a capture without it, permission).

Route metrics (initcwnd, initrwnd) are not in /proc: live, `ip route show table all` gives them
(parse_routes, pure); a capture holds no routes, and the audit says so instead of guessing.
Values are what the kernel printed; nothing here changes anything.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Callable

OK, REVIEW, ABSENT, UNREADABLE = "ok", "review", "absent", "unreadable"
MiB = 1 << 20


@dataclass(frozen=True)
class Verdict:
    status: str              # OK or REVIEW
    note: str = ""           # why, about this value
    set_to: str | None = None   # a value to set (sysctl -w name=set_to), when one is right


@dataclass(frozen=True)
class Knob:
    name: str                # dotted sysctl name
    group: str
    recommended: str         # for a busy server, for people
    why: str                 # why that is the recommendation
    wrong: str               # the consequence of getting it wrong
    judge: Callable | None = None   # (value: str, sysctls) -> Verdict; None: shown, not judged


@dataclass(frozen=True)
class KnobReport:
    name: str
    group: str
    current: str | None      # as the kernel printed it (tabs turned into spaces)
    status: str              # ok, review, absent, unreadable
    note: str                # the verdict's sentence, or why absent/unreadable
    recommended: str
    why: str
    wrong: str
    set_to: str | None = None


@dataclass(frozen=True)
class Route:
    table: str
    destination: str
    dev: str | None
    initcwnd: int | None     # None: the kernel's default (10 segments since 2.6.39)
    initrwnd: int | None


@dataclass(frozen=True)
class RouteAudit:
    routes: tuple[Route, ...]        # unicast routes, each with its initcwnd/initrwnd if set
    default_initcwnd: int = 10
    status: str = OK
    note: str = ""


@dataclass(frozen=True)
class Audit:
    area: str
    groups: tuple[str, ...]
    knobs: tuple[KnobReport, ...]
    routes: RouteAudit | None = None
    routes_note: str | None = None   # why there are no routes (a capture; ip missing)

    @property
    def to_review(self) -> tuple[KnobReport, ...]:
        return tuple(k for k in self.knobs if k.status == REVIEW)


# --- judging helpers ---------------------------------------------------------------------------
def _int(v: str) -> int:
    return int(v.split()[0])


def _ints(v: str) -> list[int]:
    return [int(t) for t in v.split()]


def _other(s, name: str) -> int | None:
    try:
        return s.int(name)
    except Exception:
        return None


def _range(lo: int, hi: int, set_to: int | None = None, unit: str = ""):
    def judge(v, s):
        n = _int(v)
        if lo <= n <= hi:
            return Verdict(OK)
        side = "below" if n < lo else "above"
        return Verdict(REVIEW, f"{n}{unit} is {side} {lo}-{hi}{unit}",
                       str(set_to) if set_to is not None else None)
    return judge


def _at_least(lo: int, set_to: int | None = None):
    def judge(v, s):
        n = _int(v)
        if n >= lo:
            return Verdict(OK)
        return Verdict(REVIEW, f"{n} is below {lo}", str(set_to if set_to is not None else lo))
    return judge


def _equals(good: tuple[int, ...], set_to: int, notes: dict[int, str] | None = None):
    def judge(v, s):
        n = _int(v)
        if n in good:
            return Verdict(OK, (notes or {}).get(n, ""))
        return Verdict(REVIEW, (notes or {}).get(n, f"{n} is not {' or '.join(map(str, good))}"),
                       str(set_to))
    return judge


def _syn_backlog(v, s):
    n = _int(v)
    somax = _other(s, "net.core.somaxconn")
    if n < 1024:
        return Verdict(REVIEW, f"{n} half-open connections at most per listener", "4096")
    if somax is not None and n < somax:
        return Verdict(REVIEW, f"below net.core.somaxconn ({somax}): the SYN queue is smaller "
                               f"than the accept queue it feeds", str(somax))
    return Verdict(OK)


def _tw_buckets(v, s):
    n = _int(v)
    if n < 32768:
        return Verdict(REVIEW, f"{n} TIME_WAIT sockets at most: a busy server closing ~{n // 60} "
                               f"connections/s already overflows (TCPTimeWaitOverflow)", "262144")
    return Verdict(OK)


def _tw_recycle(v, s):
    n = _int(v)
    if n:
        return Verdict(REVIEW, "on: drops SYNs from clients behind NAT whose timestamps go "
                               "back (silent connection failures)", "0")
    return Verdict(OK, "off")


def _tw_reuse(v, s):
    n = _int(v)
    return Verdict(OK, {0: "off: outgoing connections never reuse a TIME_WAIT port",
                        1: "on for every outgoing connection (needs TCP timestamps)",
                        2: "loopback only (the default)"}.get(n, ""))


def _buf(kind: str):
    """tcp_rmem / tcp_wmem: min default max; max against the autotuning a fast link needs."""
    core = "net.core.rmem_max" if kind == "r" else "net.core.wmem_max"

    def judge(v, s):
        vals = _ints(v)
        if len(vals) != 3:
            return Verdict(REVIEW, f"expected 3 values (min default max), got {len(vals)}")
        lo, dflt, hi = vals
        if not lo <= dflt <= hi:
            return Verdict(REVIEW, "min <= default <= max does not hold")
        if hi < 4 * MiB:
            return Verdict(REVIEW, f"max {hi // 1024} KiB: autotuning cannot open the window "
                                   f"past it (a 1 Gbit/s flow with 40 ms RTT needs 5 MiB)",
                           f"{lo} {dflt} {16 * MiB}")
        cm = _other(s, core)
        if cm is not None and cm < hi:
            return Verdict(OK, f"{core} ({cm // 1024} KiB) is below this max: only programs that "
                               f"set SO_{'RCV' if kind == 'r' else 'SND'}BUF themselves are "
                               f"capped there (and lose autotuning)")
        return Verdict(OK)
    return judge


def _core_max(kind: str):
    tcp = "net.ipv4.tcp_rmem" if kind == "r" else "net.ipv4.tcp_wmem"

    def judge(v, s):
        n = _int(v)
        try:
            hi = s.ints(tcp)[2]
        except Exception:
            hi = None
        if hi is not None and n < hi:
            return Verdict(REVIEW, f"below {tcp} max ({hi // 1024} KiB): a program that sets "
                                   f"SO_{'RCV' if kind == 'r' else 'SND'}BUF gets at most "
                                   f"{n // 1024} KiB (x2) and no autotuning", str(hi))
        return Verdict(OK)
    return judge


def _tcp_mem(v, s, page_size: int = 4096):
    vals = _ints(v)
    if len(vals) != 3:
        return Verdict(REVIEW, f"expected 3 values (low pressure max, pages), got {len(vals)}")
    lo, pressure, hi = vals
    mib = [x * page_size / MiB for x in vals]
    note = (f"low {mib[0]:.0f} MiB, pressure {mib[1]:.0f} MiB, max {mib[2]:.0f} MiB "
            f"({page_size // 1024} KiB pages) for all TCP sockets together")
    if not lo <= pressure <= hi:
        return Verdict(REVIEW, note + "; low <= pressure <= max does not hold")
    if pressure * page_size < 64 * MiB:
        return Verdict(REVIEW, note + "; the pressure threshold is under 64 MiB: a few busy "
                                      "connections push every socket into pressure mode")
    return Verdict(OK, note)


def _port_range(v, s):
    vals = _ints(v)
    if len(vals) != 2:
        return Verdict(REVIEW, f"expected 2 values (first last), got {len(vals)}")
    n = vals[1] - vals[0] + 1
    per_s = n // 60
    note = (f"{n} ports: at most ~{per_s} new connections/s to one destination address and "
            f"port while each port sits 60 s in TIME_WAIT")
    if n < 16384:
        return Verdict(REVIEW, note, "1024 65535")
    return Verdict(OK, note)


TCP: tuple[Knob, ...] = (
    # handshake
    Knob("net.ipv4.tcp_syn_retries", "handshake", "3-6 (default 6)",
         "SYN retries of an outgoing connect(), at 1, 2, 4, 8... s: 6 gives up after ~127 s, "
         "3 after ~15 s",
         "too high: a client waits minutes on a dead peer; too low (<3): one lost SYN on a "
         "lossy path fails the connect", _range(2, 6)),
    Knob("net.ipv4.tcp_synack_retries", "handshake", "2-5 (default 5)",
         "SYN-ACK retries for a half-open connection; each one holds a SYN-queue slot "
         "(5: ~63 s)",
         "too high: under a SYN flood half-open connections hold the queue for a minute; "
         "too low: clients on lossy links fail to connect", _range(2, 5)),
    Knob("net.ipv4.tcp_max_syn_backlog", "handshake", ">= 4096 and >= net.core.somaxconn",
         "half-open connections (SYN_RECV) kept per listener before SYNs are dropped or "
         "answered with cookies",
         "too low: bursts of new connections lose SYNs (ListenDrops, clients retry after 1 s, "
         "3 s...)", _syn_backlog),
    Knob("net.ipv4.tcp_syncookies", "handshake", "1",
         "answer with SYN cookies only when the SYN queue overflows",
         "0: a SYN flood fills the queue and real clients cannot connect; 2: cookies always, "
         "which loses TCP options (window scaling, SACK) on every connection",
         _equals((1,), 1, {0: "off: a SYN flood fills the SYN queue",
                           2: "cookies on every connection: TCP options lost"})),
    # queues
    Knob("net.core.somaxconn", "queues", ">= 4096 (default 4096 since Linux 5.4, 128 before)",
         "caps the backlog every listen() asks for: the accept queue of a listener",
         "too low: the accept queue of a busy listener overflows (ListenOverflows) and "
         "connections stall for a SYN retry (1 s, 3 s...)", _at_least(1024, 4096)),
    Knob("net.ipv4.tcp_abort_on_overflow", "queues", "0",
         "0: when the accept queue is full the final ACK is dropped and the client retries, "
         "absorbing a burst",
         "1: every overflow resets the client's connection (connection reset by peer) instead "
         "of a short delay", _equals((0,), 0, {1: "on: an accept-queue overflow resets the "
                                                  "client's connection"})),
    Knob("net.core.netdev_budget", "queues", "300-600 (default 300), with netdev_budget_usecs",
         "packets one softirq round may process before it yields (time_squeeze in "
         "/proc/net/softnet_stat when it runs out)",
         "too low: receive processing is cut short (time_squeeze grows) and NIC rings overflow "
         "at high packet rates; too high: softirqs starve other work", _range(300, 1200, 600)),
    Knob("net.core.netdev_budget_usecs", "queues", "2000-8000 (default 2000 us)",
         "time one softirq round may spend receiving packets",
         "too low: like a small netdev_budget (time_squeeze)", _range(2000, 8000)),
    Knob("net.core.netdev_max_backlog", "queues", ">= 1000 (default 1000)",
         "packets queued per CPU before the stack (RPS, veth, loopback) drops them",
         "too low: drops counted in softnet_stat's second column", _at_least(1000)),
    # teardown
    Knob("net.ipv4.tcp_fin_timeout", "teardown", "15-60 s (default 60)",
         "how long an orphaned connection stays in FIN_WAIT2 waiting for the peer's FIN",
         "too high: a server closing many connections to peers that never answer holds "
         "FIN_WAIT2 sockets (memory, ports) for long", _range(10, 60, 30, " s")),
    Knob("net.ipv4.tcp_max_tw_buckets", "teardown", ">= 262144 on a busy server",
         "TIME_WAIT sockets kept at most (per network namespace); beyond it new ones are "
         "destroyed at once",
         "too low: TIME_WAIT is cut short (TCPTimeWaitOverflow): old duplicate segments can "
         "corrupt a new connection with the same ports", _tw_buckets),
    Knob("net.ipv4.tcp_tw_reuse", "teardown",
         "1 on a busy client of one destination, else 2 (the default)",
         "lets connect() take a port still in TIME_WAIT when TCP timestamps prove it safe",
         "0 on a busy client: connect() fails with EADDRNOTAVAIL once the ports to one "
         "destination are all in TIME_WAIT", _tw_reuse),
    Knob("net.ipv4.tcp_tw_recycle", "teardown", "0, or absent (removed in Linux 4.12)",
         "fast TIME_WAIT recycling based on per-host timestamps",
         "1: clients behind one NAT have unrelated timestamps and their SYNs are silently "
         "dropped", _tw_recycle),
    # buffers
    Knob("net.ipv4.tcp_rmem", "buffers", "4096 131072 >=6291456 (min default max, bytes)",
         "the receive buffer autotuning range; max bounds the window a fast, long path needs "
         "(bandwidth x RTT)",
         "max too small: throughput per connection is capped at max / RTT; min/default too "
         "big: memory per idle connection", _buf("r")),
    Knob("net.ipv4.tcp_wmem", "buffers", "4096 16384 >=4194304 (min default max, bytes)",
         "the send buffer autotuning range", "max too small: a sender cannot keep a long fat "
         "pipe full", _buf("w")),
    Knob("net.core.rmem_max", "buffers", ">= net.ipv4.tcp_rmem max",
         "the most a program can ask for with SO_RCVBUF (autotuning is not bound by it)",
         "below tcp_rmem max: programs that set SO_RCVBUF (many proxies, databases) get a "
         "smaller window than autotuning would give", _core_max("r")),
    Knob("net.core.wmem_max", "buffers", ">= net.ipv4.tcp_wmem max",
         "the most a program can ask for with SO_SNDBUF",
         "below tcp_wmem max: programs that set SO_SNDBUF get less than autotuning would",
         _core_max("w")),
    Knob("net.ipv4.tcp_mem", "buffers", "the kernel's default (sized from RAM at boot)",
         "pages all TCP sockets may use: above 'pressure' every socket's buffers are cut, at "
         "'max' allocations fail",
         "too low: TCPMemoryPressures, collapsed receive queues, dropped data; too high on a "
         "small machine: TCP can take memory the rest needs", _tcp_mem),
    Knob("net.ipv4.tcp_moderate_rcvbuf", "buffers", "1",
         "receive buffer autotuning", "0: every connection keeps tcp_rmem's default (128 KiB): "
         "slow on fast long paths",
         _equals((1,), 1, {0: "off: no receive buffer autotuning"})),
    # ports and routes
    Knob("net.ipv4.ip_local_port_range", "ports and routes", ">= 28000 ports (default 32768 "
         "60999; 1024 65535 on a busy client)",
         "the ephemeral ports for outgoing connections: each destination address and port "
         "can have at most this many connections (TIME_WAIT included)",
         "too narrow: connect() fails with EADDRNOTAVAIL under many short outgoing "
         "connections", _port_range),
)

AREAS: dict[str, tuple[Knob, ...]] = {"tcp": TCP}
GROUPS: dict[str, tuple[str, ...]] = {
    "tcp": ("handshake", "queues", "teardown", "buffers", "ports and routes"),
}
ROUTES_IN = {"tcp": "ports and routes"}   # areas that show route metrics, in that group

_ROUTE_TYPES = ("local", "broadcast", "multicast", "anycast", "unreachable", "prohibit",
                "blackhole", "throw", "nat")


def parse_routes(text: str) -> tuple[Route, ...]:
    """Unicast routes of `ip -o route show table all` (v4 or v6), with initcwnd/initrwnd when a
    route sets them ("initcwnd 20" or "initcwnd lock 20")."""
    out = []
    for line in text.splitlines():
        toks = line.replace("\\", " ").split()
        if not toks or toks[0] in _ROUTE_TYPES:
            continue
        dest = toks[0]
        if dest == "unicast" and len(toks) > 1:
            dest = toks[1]
        kv = {}
        for i, t in enumerate(toks[:-1]):
            if t in ("dev", "table") and t not in kv:
                kv[t] = toks[i + 1]
            if t in ("initcwnd", "initrwnd"):
                j = i + 1
                if toks[j] == "lock" and j + 1 < len(toks):
                    j += 1
                if toks[j].isdigit():
                    kv[t] = int(toks[j])
        table = kv.get("table", "main")
        if table == "local":
            continue
        out.append(Route(table=table, destination=dest, dev=kv.get("dev"),
                         initcwnd=kv.get("initcwnd"), initrwnd=kv.get("initrwnd")))
    return tuple(out)


def audit_routes(routes: tuple[Route, ...]) -> RouteAudit:
    low = [r for r in routes if r.initcwnd is not None and r.initcwnd < 10]
    if low:
        return RouteAudit(routes, status=REVIEW, note=(
            f"{len(low)} route(s) start connections with fewer than the default 10 segments "
            f"(initcwnd): short transfers over them take more round trips"))
    set_ = [r for r in routes if r.initcwnd is not None]
    note = (f"{len(set_)} route(s) set initcwnd; the others use the kernel's 10 segments"
            if set_ else "no route sets initcwnd: every connection starts with the kernel's 10 "
                         "segments (RFC 6928), right for most servers")
    return RouteAudit(routes, status=OK, note=note)


def audit(area: str, sysctls, *, routes_text: str | None = None,
          routes_note: str | None = None, page_size: int = 4096) -> Audit:
    """The knobs of `area` judged on `sysctls` (sources.sysctl.Sysctls). routes_text: the output
    of `ip -o route show table all` (and -6), or None with routes_note saying why not."""
    if area not in AREAS:
        raise KeyError(area)
    out = []
    for k in AREAS[area]:
        v = sysctls.values.get(k.name)
        if v is None:
            why = sysctls.missing.get(k.name, "not read")
            kernel = why.startswith(("absent", "missing (not on this kernel"))
            status = ABSENT if kernel else UNREADABLE
            note = ("not on this kernel: " + why.removeprefix("absent: ")) if why.startswith(
                "absent") else ("not on this kernel (or not captured)" if kernel else why)
            out.append(KnobReport(k.name, k.group, None, status, note, k.recommended, k.why,
                                  k.wrong))
            continue
        cur = " ".join(v.split())
        try:
            if k.judge is None:
                ver = Verdict(OK)
            elif k.judge is _tcp_mem:
                ver = _tcp_mem(v, sysctls, page_size)
            else:
                ver = k.judge(v, sysctls)
        except (ValueError, IndexError):
            ver = Verdict(REVIEW, f"unexpected value {cur!r}")
        out.append(KnobReport(k.name, k.group, cur, ver.status, ver.note, k.recommended, k.why,
                              k.wrong, ver.set_to))
    routes = None
    if area in ROUTES_IN and routes_text is not None:
        routes = audit_routes(parse_routes(routes_text))
    return Audit(area=area, groups=GROUPS.get(area, ()), knobs=tuple(out), routes=routes,
                 routes_note=routes_note if routes is None and area in ROUTES_IN else None)


def live_routes() -> tuple[str | None, str | None]:
    """(the text of `ip -o route show table all` for IPv4 and IPv6, None) on this machine (its
    network namespace), or (None, why not)."""
    import shutil
    import subprocess

    ip = shutil.which("ip")
    if ip is None:
        return None, "route metrics (initcwnd) need the `ip` command (iproute2): not installed"
    parts = []
    for fam in ("-4", "-6"):
        try:
            r = subprocess.run([ip, "-o", fam, "route", "show", "table", "all"],
                               capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`ip route` failed: {exc}"
        if r.returncode == 0:
            parts.append(r.stdout)
        elif fam == "-4":
            return None, f"`ip route` failed: {r.stderr.strip()}"
    return "".join(parts), None


CAPTURE_ROUTES_NOTE = ("route metrics (initcwnd) are not in /proc or /sys, so a capture holds "
                       "none: run `ip route show table all` on the machine itself")

__all__ = ["AREAS", "GROUPS", "Knob", "Verdict", "KnobReport", "Audit", "Route", "RouteAudit",
           "audit", "parse_routes", "audit_routes", "live_routes", "CAPTURE_ROUTES_NOTE"]
