"""TCP faults, reproduced for real inside two network namespaces of their own (docs/lab.md, "TCP").

Every scenario makes a NetnsPair (`ksl<pid>a` with 198.18.0.1, `ksl<pid>b` with 198.18.0.2, one
veth between them): the server runs in b, the clients in a, so the fault lives in network
namespaces other than ksight's own (as in containers) and no packet leaves the machine.

- tcp-lossy-link: nftables drops 4 % of the packets each way on the veth; a bulk sender in a
  streams to a sink in b: retransmissions (RetransSegs, TCPLostRetransmit, TCPFastRetrans...).
- tcp-listen-overflow: a listener in b with backlog 1 that never calls accept(); clients in a
  keep connecting: its accept queue is full and ListenOverflows/ListenDrops move in b.
- tcp-close-wait: a server in b accepts and never closes; the clients close at once: the
  server's sockets pile up in CLOSE_WAIT, held by its PID.
- tcp-time-wait-storm: clients in a open and close (first) short connections as fast as a
  bounded rate allows; net.ipv4.tcp_max_tw_buckets in a (a per-namespace sysctl of the namespace
  we made) is 1024: TIME_WAIT sits at the limit and TCPTimeWaitOverflow moves.
- tcp-memory-pressure: net.ipv4.tcp_mem is one global setting (it is not in a child namespace's
  /proc/sys): it is lowered for the run under the lab's sysctl lock (restored afterwards, journal
  for kill -9) to just above the TCP memory in use; senders in a fill 8 connections to a slow
  reader in b, whose receive queues push TCP memory over the pressure threshold
  (TCPMemoryPressures moves in b). The maximum stays where it was, so no allocation on the
  machine fails; only the pressure mode (smaller buffers) is entered, machine-wide, for seconds.
- net-tx-drops: a veth `ksltx` in a whose peer sits down in b; 200 frames a second written
  straight to its driver (AF_PACKET with PACKET_QDISC_BYPASS) by a sender in a are all dropped
  for want of a carrier and counted as TX drops (/proc/net/dev of a). Nothing leaves the
  interface; it goes with the namespaces.
- tcp-syn-flood: raw SYNs from spoofed 198.19.x.y sources in a to a listener in b with backlog
  16; b routes the SYN-ACKs to a, which is no router and drops them: the SYN queue stays full
  and b answers with SYN cookies (SyncookiesSent, tcp_syncookies=1 in b).
- tcp-fin-wait2: clients in a close 1500 connections to a server in b that never closes: the
  clients' sockets wait in FIN_WAIT2 (orphans, tcp_fin_timeout 60 s in a).
- tcp-buffer-pinned: a tbf shaper's queue on a's veth gives the path its delay (no netem); a
  cubic flow with default buffers fills it, a second one with SO_SNDBUF 64 KiB is capped by
  its buffer (ss: sndbuf_limited).
- net-softnet-squeeze: the cpu lab's routing loop with RPS steering all receive work to one
  other CPU, whose backlog overflows netdev_max_backlog (softnet dropped).
- net-softnet-budget: the same loop on one CPU with net.core.netdev_budget 16 (global, under
  the lab's sysctl lock, restored): NET_RX stops with work left (time_squeeze).

The load is one small Python program (this interpreter) in each namespace, started through
`ip netns exec` (which execs it: the PID is the program's), dying with the lab (PR_SET_PDEATHSIG)
and stopping by itself at the run's deadline, with a cap on connections and bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from ..errors import Unavailable
from . import register
from .scenario import Scenario, python_worker

PORT = 5001

# One program for every role: python -I -S -c WORKER ROLE ADDR PORT SECONDS [ARGS...]
WORKER = r"""
import errno, os, select, socket, sys, time
role, addr, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
args = [float(a) for a in sys.argv[5:]]
end = time.monotonic() + seconds
try:                            # hold more sockets than a default soft limit of 1024 allows
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
except (ImportError, ValueError, OSError):
    pass

def listener(backlog):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(backlog)
    return s

def connect_retry():
    while time.monotonic() < end:   # the server may still be starting
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(2)
        try:
            c.connect((addr, port))
            return c
        except OSError:
            c.close()
            time.sleep(0.05)
    sys.exit(0)

def left():
    return end - time.monotonic()

if role == "sink":              # read everything, from up to 16 connections
    ls = listener(16)
    conns = [ls]
    while left() > 0:
        r, _, _ = select.select(conns, [], [], min(0.2, max(0.0, left())))
        for s in r:
            if s is ls:
                c, _ = ls.accept()
                if len(conns) < 17:
                    conns.append(c)
                else:
                    c.close()
            elif not s.recv(1 << 16):
                conns.remove(s); s.close()

elif role == "bulk":            # stream at most args[0] bytes/s over one connection
    rate = args[0]
    c = connect_retry()
    c.settimeout(1)
    buf = b"k" * 65536
    t0, sent = time.monotonic(), 0
    while left() > 0:
        try:
            sent += c.send(buf)
        except socket.timeout:
            continue
        except OSError:
            break
        ahead = t0 + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(min(ahead, max(0.0, left())))

elif role == "noaccept":        # listen(backlog) and never accept
    ls = listener(int(args[0]))
    while left() > 0:
        time.sleep(min(0.2, max(0.0, left())))

elif role == "synclients":      # keep up to args[0] connection attempts open, a new one every args[1] s
    most, every, cap = int(args[0]), args[1], int(args[2])
    live, made = [], 0
    while left() > 0:
        now = time.monotonic()
        while live and (len(live) >= most or now - live[0][0] > 3.0):
            live.pop(0)[1].close()
        if made < cap:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect((addr, port))
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                c.close(); c = None
            if c is not None:
                live.append((now, c)); made += 1
        time.sleep(min(every, max(0.0, left())))

elif role == "noclose":         # accept every connection and keep it: never read, never close
    ls = listener(128)
    ls.settimeout(0.2)
    held = []
    while left() > 0:
        try:
            c, _ = ls.accept()
            held.append(c)
        except socket.timeout:
            pass

elif role == "closers":         # args[2] at once, then args[0] a second, each closed at once; at most args[1]
    rate, cap = args[0], int(args[1])
    burst = int(args[2]) if len(args) > 2 else 0
    t0, made = time.monotonic(), 0
    while left() > 0:
        if made < cap:
            c = connect_retry()
            c.close(); made += 1
        ahead = t0 + max(0, made - burst) / rate - time.monotonic()
        time.sleep(min(max(ahead, 0.0) if made < cap else 0.2, max(0.0, left())))

elif role == "acceptclose":     # accept, wait for the client's FIN, then close (the client closes first)
    ls = listener(1024)
    ls.setblocking(False)
    conns = [ls]
    while left() > 0:
        r, _, _ = select.select(conns, [], [], min(0.2, max(0.0, left())))
        for s in r:
            if s is ls:
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conns.append(c)
            else:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    conns.remove(s); s.close()

elif role == "slowreader":      # args[0] s holding (read nothing), then drain; again and again
    hold = args[0]
    ls = listener(16)
    ls.setblocking(False)
    conns = []
    phase_end, draining = time.monotonic() + hold, False
    while left() > 0:
        try:
            c, _ = ls.accept()
            conns.append(c)
        except (BlockingIOError, InterruptedError):
            pass
        now = time.monotonic()
        if now >= phase_end:
            draining = not draining
            phase_end = now + (0.5 if draining else hold)
        if draining:
            for c in conns:
                c.setblocking(False)
                try:
                    while c.recv(1 << 20):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass
        time.sleep(0.05)

elif role == "fillers":         # args[0] connections, each sending as fast as the peer takes
    n = int(args[0])
    conns = [connect_retry() for _ in range(n)]
    for c in conns:
        c.setblocking(False)
    buf = b"m" * 65536
    while left() > 0:
        _, w, _ = select.select([], conns, [], min(0.2, max(0.0, left())))
        for c in w:
            try:
                c.send(buf)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                conns.remove(c)
        if not conns:
            break
elif role == "synflood":        # raw SYNs from spoofed 198.19.x.y sources: args[0]/s, at most args[1]
    import random, struct
    rate, cap = args[0], int(args[1])
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
    dst = socket.inet_aton(addr)

    def csum(b):
        t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while t >> 16:
            t = (t & 0xFFFF) + (t >> 16)
        return ~t & 0xFFFF

    t0, n = time.monotonic(), 0
    while left() > 0 and n < cap:
        src = socket.inet_aton("198.19.%d.%d" % (n // 250 % 250, 1 + n % 250))
        sport = 1024 + (n * 7919) % 60000
        # SYN, window 64240, one option: MSS 1460 (data offset 6 words)
        tcp = struct.pack("!HHIIBBHHH", sport, port, random.getrandbits(32), 0, 6 << 4, 0x02,
                          64240, 0, 0) + struct.pack("!BBH", 2, 4, 1460)
        c = csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
        tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
        # the kernel fills the IP id, total length and checksum
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, src, dst)
        try:
            raw.sendto(ip + tcp, (addr, 0))
        except OSError:
            pass
        n += 1
        ahead = t0 + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(min(ahead, max(0.0, left())))
    while left() > 0:
        time.sleep(min(0.2, max(0.0, left())))

elif role == "pinned":          # two cubic flows: one with default buffers, one with SO_SNDBUF=args[0]
    sndbuf, sport = int(args[0]), int(args[1])
    # cubic fills the shaper's queue (the RTT both flows see); BBR (a common default) keeps it
    # near empty, and 64 KiB is then enough for the path. Per socket: a namespace other than
    # the first may not change its default (EPERM).
    free = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    free.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    free.settimeout(2)
    free.connect((addr, port))
    pin = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    pin.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    pin.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)  # autotuning off for it
    pin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    pin.bind(("0.0.0.0", sport))
    pin.settimeout(2)
    pin.connect((addr, port))
    conns = [free, pin]
    for c in conns:
        c.setblocking(False)
    buf = b"p" * 65536
    while left() > 0 and conns:
        _, w, _ = select.select([], conns, [], min(0.2, max(0.0, left())))
        for c in w:
            try:
                c.send(buf)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                conns.remove(c)
else:
    sys.exit("unknown role " + role)
"""


def _netstat(pid: int) -> dict[str, dict[str, int]]:
    """snmp + netstat counters of the network namespace `pid` lives in (through the parsers)."""
    from ..fs import LiveRoot
    from ..sources import netstat, snmp

    root = LiveRoot()
    groups = dict(snmp.parse(root.read_text(f"proc/{pid}/net/snmp")).groups)
    groups.update(netstat.parse(root.read_text(f"proc/{pid}/net/netstat")).groups)
    return groups


def _states(pid: int) -> dict[str, int]:
    """TCP sockets per state in `pid`'s network namespace, from /proc/PID/net/tcp."""
    from ..fs import LiveRoot

    names = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
             6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
             11: "CLOSING"}
    out: dict[str, int] = {}
    for line in LiveRoot().read_text(f"proc/{pid}/net/tcp").splitlines()[1:]:
        f = line.split()
        if len(f) > 3:
            st = names.get(int(f[3], 16), f[3])
            out[st] = out.get(st, 0) + 1
    return out


class _TcpScenario(Scenario):
    """A NetnsPair; a server program in b (run.info["server_pid"]), a client program in a."""

    area = "tcp"
    warmup_s = 2.0
    default_seconds = 10.0
    loss_pct = 0.0
    server: tuple = ()     # (role, *args)
    client: tuple = ()

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        for tool, pkg in (("ip", "iproute2"),) + ((("nft", "nftables"),) if self.loss_pct else ()):
            if shutil.which(tool) is None:
                return False, f"the `{tool}` command is missing (apt-get install {pkg})"
        return True, ""

    def sysctls_a(self) -> dict[str, str]:
        """Per-namespace sysctls set in the client namespace a (gone with it)."""
        return {}

    def sysctls_b(self) -> dict[str, str]:
        return {}

    def start(self, run, stack):
        from .. import pids
        from .netns import NetnsPair

        pair = stack.enter_context(NetnsPair(loss_pct=self.loss_pct))
        run.info.update(pair=pair, ns_server=pair.b, ns_client=pair.a, server_addr=pair.addr_b,
                        port=PORT, interface_server=pair.dev_b, interface_client=pair.dev_a)
        for ns, values in ((pair.a, self.sysctls_a()), (pair.b, self.sysctls_b())):
            for name, value in values.items():
                r = pair.run(ns, ["sysctl", "-q", "-w", f"{name}={value}"], timeout=10)
                if r.returncode != 0:
                    raise Unavailable(f"sysctl {name} in {ns}", r.stderr.strip() or "failed")
        self.before_load(run, stack)
        # the load outlives the warm-up and the caller's window; it stops by itself at the end
        secs = run.seconds + 2.0
        srv = pair.popen(pair.b, python_worker(WORKER, self.server[0], pair.addr_b, PORT, secs,
                                               *self.server[1:]),
                         preexec_fn=pids.die_with_parent, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run.procs.append(srv)
        run.info["server_pid"] = srv.pid
        _wait_listening(srv, pair.b)
        cli = pair.popen(pair.a, python_worker(WORKER, self.client[0], pair.addr_b, PORT, secs,
                                               *self.client[1:]),
                         preexec_fn=pids.die_with_parent, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run.procs.append(cli)
        run.info["client_pid"] = cli.pid

    def before_load(self, run, stack) -> None:
        pass

    def evidence(self, run):
        pid = run.info["server_pid"]
        c = _netstat(pid)
        st = _states(pid)
        st_a = _states(run.info["client_pid"])
        return self.line(run, c, st, st_a)

    def line(self, run, c, st, st_a) -> str:
        return ""


def _wait_listening(proc: subprocess.Popen, ns: str, timeout: float = 5.0) -> None:
    """Until the server's listener is up (its namespace's /proc/PID/net/tcp has LISTEN on PORT)."""
    import time

    end = time.monotonic() + timeout
    want = f":{PORT:04X} "
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise Unavailable(f"lab server in {ns}", f"exited with {proc.returncode}: {err.strip()}")
        try:
            with open(f"/proc/{proc.pid}/net/tcp") as f:
                if any(want in line and line.split()[3] == "0A" for line in f):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise Unavailable(f"lab server in {ns}", f"not listening on port {PORT} after {timeout:g} s")


class LossyLink(_TcpScenario):
    name = "tcp-lossy-link"
    summary = ("4 % of the packets are dropped each way on a veth link between two network "
               "namespaces (nftables: no netem here) while a bulk transfer runs over it")
    expects = ("tcp.retransmission-rate",)
    bounds = "one connection, at most 8 MB/s over the veth, in namespaces ksl<pid>a/b"
    loss_pct = 4.0
    server = ("sink",)
    client = ("bulk", 8_000_000)

    def line(self, run, c, st, st_a):
        t = c.get("Tcp", {})
        x = c.get("TcpExt", {})
        # the sender's namespace (a) is where the data segments are retransmitted
        ca = _netstat(run.info["client_pid"])
        ta, xa = ca.get("Tcp", {}), ca.get("TcpExt", {})
        return (f"sender ({run.info['ns_client']}): OutSegs {ta.get('OutSegs', 0)} RetransSegs "
                f"{ta.get('RetransSegs', 0)} TCPFastRetrans {xa.get('TCPFastRetrans', 0)} "
                f"TCPTimeouts {xa.get('TCPTimeouts', 0)}; receiver InSegs {t.get('InSegs', 0)} "
                f"TCPOFOQueue {x.get('TCPOFOQueue', 0)}")


class ListenOverflow(_TcpScenario):
    name = "tcp-listen-overflow"
    summary = ("a listener with backlog 1 that never calls accept(); clients keep connecting "
               "(a new attempt every 20 ms, each given up after 3 s)")
    expects = ("tcp.listen-overflow",)
    bounds = "at most 64 connection attempts open, 2000 in all, in namespaces ksl<pid>a/b"
    server = ("noaccept", 1)
    client = ("synclients", 64, 0.02, 2000)

    def line(self, run, c, st, st_a):
        x = c.get("TcpExt", {})
        q = listener_queue(run.info["server_pid"], PORT)
        return (f"listener {run.info['server_addr']}:{PORT} pid {run.info['server_pid']}: accept "
                f"queue {q[0] if q else '?'} / backlog {q[1] if q else '?'}; ListenOverflows "
                f"{x.get('ListenOverflows', 0)} ListenDrops {x.get('ListenDrops', 0)}; "
                f"SYN-RECV {st.get('SYN-RECV', 0)}")


class CloseWait(_TcpScenario):
    name = "tcp-close-wait"
    summary = ("a server accepts connections and never closes them; clients connect and close "
               "at once (100 at the start, then 5 a second): the server's sockets pile up in "
               "CLOSE_WAIT and stay there")
    expects = ("tcp.close-wait-leak",)
    bounds = "100 connections, then 5 a second, at most 400, in namespaces ksl<pid>a/b"
    server = ("noclose",)
    client = ("closers", 5, 400, 100)

    def line(self, run, c, st, st_a):
        return (f"server pid {run.info['server_pid']} ({run.info['ns_server']}): CLOSE-WAIT "
                f"{st.get('CLOSE-WAIT', 0)}; clients: FIN-WAIT-2 {st_a.get('FIN-WAIT-2', 0)}")


class TimeWaitStorm(_TcpScenario):
    name = "tcp-time-wait-storm"
    summary = ("clients open and close (first) 400 short connections a second to one server; "
               "net.ipv4.tcp_max_tw_buckets is 1024 in the clients' namespace: TIME_WAIT sits "
               "at the limit and the kernel drops the excess (TCPTimeWaitOverflow)")
    expects = ("tcp.time-wait-pressure",)
    bounds = ("400 connections a second, at most 8000, tcp_max_tw_buckets=1024 only in the "
              "namespace ksl<pid>a")
    max_tw = 1024
    server = ("acceptclose",)
    client = ("closers", 400, 8000)

    def sysctls_a(self):
        return {"net.ipv4.tcp_max_tw_buckets": str(self.max_tw)}

    def line(self, run, c, st, st_a):
        xa = _netstat(run.info["client_pid"]).get("TcpExt", {})
        return (f"clients ({run.info['ns_client']}): TIME-WAIT {st_a.get('TIME-WAIT', 0)} / "
                f"tcp_max_tw_buckets {self.max_tw}; TCPTimeWaitOverflow "
                f"{xa.get('TCPTimeWaitOverflow', 0)} TW {xa.get('TW', 0)}")


def _sockstat_mem() -> int | None:
    from ..fs import LiveRoot
    from ..sources import sockstat

    return sockstat.read(LiveRoot()).groups.get("TCP", {}).get("mem")


class MemoryPressure(_TcpScenario):
    name = "tcp-memory-pressure"
    summary = ("net.ipv4.tcp_mem (global) lowered to just above the TCP memory in use; 8 "
               "connections fill a slow reader's receive queues (1 MiB each, tcp_rmem in its "
               "namespace), which holds 1.5 s and then drains, again and again: TCP memory "
               "crosses the pressure threshold each time (TCPMemoryPressures)")
    expects = ("tcp.memory-pressure",)
    bounds = ("net.ipv4.tcp_mem low/pressure lowered machine-wide for the run (max kept: no "
              "allocation fails), restored after; 8 connections, about 10 MiB of queues")
    server = ("slowreader", 1.5)
    client = ("fillers", 8)
    margin_pages = (128, 256)   # low and pressure thresholds above the memory in use at start

    def available(self):
        ok, why = super().available()
        if ok and _sockstat_mem() is None:
            return False, "/proc/net/sockstat has no TCP mem (cannot set thresholds around it)"
        return ok, why

    def sysctls_b(self):
        # the reader's sockets start with a 1 MiB receive buffer (per-namespace sysctl)
        return {"net.ipv4.tcp_rmem": "4096 1048576 6291456"}

    def before_load(self, run, stack):
        from .sysctl import SysctlGuard, read_sysctl

        guard = SysctlGuard()
        stack.callback(guard.restore)
        old = [int(v) for v in read_sysctl("net.ipv4.tcp_mem").split()]
        guard._lock()            # waits for another lab run; then read what is in use now
        run.waited_s = guard.waited_s
        mem = _sockstat_mem() or 0
        low, pressure = mem + self.margin_pages[0], mem + self.margin_pages[1]
        if pressure >= old[2]:
            raise Unavailable("tcp-memory-pressure", f"TCP memory in use ({mem} pages) is "
                              f"already near tcp_mem's maximum {old[2]}")
        new = f"{low} {pressure} {old[2]}"
        guard.set("net.ipv4.tcp_mem", new)
        run.info.update(tcp_mem_old=old, tcp_mem=(low, pressure, old[2]))

    def line(self, run, c, st, st_a):
        x = c.get("TcpExt", {})
        low, pressure, _ = run.info["tcp_mem"]
        return (f"TCP mem {_sockstat_mem()} pages (tcp_mem low {low}, pressure {pressure}); "
                f"TCPMemoryPressures {x.get('TCPMemoryPressures', 0)} in {run.info['ns_server']}")


class SynFlood(_TcpScenario):
    name = "tcp-syn-flood"
    summary = ("a raw-socket sender in a sends 200 SYNs a second from spoofed 198.19.x.y "
               "sources to a listener in b with backlog 16; b routes their SYN-ACKs to a, "
               "which drops them (not forwarding): nobody answers, the SYN queue fills and b "
               "answers with SYN cookies (tcp_syncookies=1 in b)")
    expects = ("tcp.syn-flood",)
    bounds = ("200 SYNs/s of 64 bytes, at most 6000, between namespaces ksl<pid>a/b; "
              "tcp_syncookies=1 and tcp_max_syn_backlog=128 only in ksl<pid>b")
    backlog = 16
    rate = 200
    server = ("noaccept", 16)
    client = ("synflood", 200, 6000)
    spoofed = "198.19.0.0/16"   # RFC 2544 range, like the pair's own addresses

    def sysctls_b(self):
        return {"net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_max_syn_backlog": "128"}

    def before_load(self, run, stack):
        from .netns import _ip

        pair = run.info["pair"]
        # b answers the spoofed sources through a, which is not a router: the SYN-ACKs die there
        # (no RST comes back to clear the half-open requests)
        _ip("-n", pair.b, "route", "add", self.spoofed, "via", pair.addr_a)

    def line(self, run, c, st, st_a):
        x = c.get("TcpExt", {})
        return (f"listener {run.info['server_addr']}:{PORT} ({run.info['ns_server']}): "
                f"SYN-RECV {st.get('SYN-RECV', 0)} (backlog {self.backlog}); SyncookiesSent "
                f"{x.get('SyncookiesSent', 0)} TCPReqQFullDoCookies "
                f"{x.get('TCPReqQFullDoCookies', 0)} TCPReqQFullDrop {x.get('TCPReqQFullDrop', 0)}")


class FinWait2(_TcpScenario):
    name = "tcp-fin-wait2"
    summary = ("clients in a open 1500 connections (600 a second) to a server in b that "
               "accepts and never closes, and close each at once: the clients' sockets wait "
               "in FIN_WAIT2 for a FIN that never comes (orphans, freed after tcp_fin_timeout "
               "= 60 s in a)")
    expects = ("tcp.fin-wait2",)
    bounds = ("1500 connections, 600 a second, the server holding 1500 sockets, in "
              "namespaces ksl<pid>a/b")
    fin_timeout = 60
    server = ("noclose",)
    client = ("closers", 600, 1500, 0)

    def sysctls_a(self):
        return {"net.ipv4.tcp_fin_timeout": str(self.fin_timeout)}

    def line(self, run, c, st, st_a):
        return (f"clients ({run.info['ns_client']}): FIN-WAIT-2 {st_a.get('FIN-WAIT-2', 0)} "
                f"(tcp_fin_timeout {self.fin_timeout} s); server pid {run.info['server_pid']}: "
                f"CLOSE-WAIT {st.get('CLOSE-WAIT', 0)}")


class PinnedSendBuffer(_TcpScenario):
    name = "tcp-buffer-pinned"
    summary = ("two cubic flows from a to a sink in b across a 80 Mbit/s tbf shaper with a "
               "60 ms queue on a's veth (no netem here: the delay is the queue): one with "
               "default buffers keeps the queue full, the other has SO_SNDBUF 64 KiB (autotuning "
               "off): its whole send buffer is in flight every round trip, the buffer caps it")
    expects = ("tcp.buffer-config",)
    bounds = ("two connections, 10 MB/s in all (the shaper), in namespaces ksl<pid>a/b; the "
              "qdisc goes with them")
    sndbuf = 65536
    pinned_port = 40001
    rate = "80mbit"
    server = ("sink",)
    client = ("pinned", 65536, 40001)

    def available(self):
        ok, why = super().available()
        if ok and shutil.which("tc") is None:
            return False, "the `tc` command is missing (apt-get install iproute2)"
        if ok:
            try:
                with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
                    have = f.read().split()
            except OSError:
                have = []
            if "cubic" not in have:
                return False, "the cubic congestion control is not available (tcp_cubic)"
        return ok, why

    def before_load(self, run, stack):
        pair = run.info["pair"]
        r = subprocess.run(["tc", "-n", pair.a, "qdisc", "add", "dev", pair.dev_a, "root", "tbf",
                            "rate", self.rate, "burst", "32kb", "latency", "60ms"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise Unavailable("tc tbf on the lab veth", r.stderr.strip() or "failed "
                              "(kernel without sch_tbf?)")
        run.info.update(pinned=f"{pair.addr_a}:{self.pinned_port}", sndbuf=self.sndbuf)

    def evidence(self, run):
        from ..collect import sockdiag

        # the sockets of the client's namespace, through ksight's sock_diag reader
        for k in sockdiag.query_live(run.info["client_pid"]):
            if k.local_port == self.pinned_port and k.state == "ESTABLISHED":
                i = k.info or {}
                rate = (i.get("delivery_rate") or 0) / 1e6
                return (f"pinned flow {run.info['pinned']} -> {run.info['server_addr']}:{PORT}: "
                        f"sndbuf {k.sndbuf} bytes, rtt {(i.get('rtt_us') or 0) / 1000:.1f} ms, "
                        f"delivery {rate:.2f} MB/s")
        return f"pinned flow {run.info['pinned']}: not established yet"


TX_WORKER = r"""
import socket, sys, time
dev, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(263, 20, 1)       # SOL_PACKET, PACKET_QDISC_BYPASS: straight to the driver
s.bind((dev, 0))
# broadcast, a locally administered source, EtherType 0x88B5 (IEEE local experimental)
frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"ksight lab tx drop".ljust(46, b".")
t0, n = time.monotonic(), 0
while time.monotonic() < end:
    try:
        s.send(frame)
    except OSError:            # ENOBUFS: the frame was dropped (that is the point)
        pass
    n += 1
    time.sleep(max(0.0, min(t0 + n / rate - time.monotonic(), end - time.monotonic())))
"""


class TxDrops(Scenario):
    """An interface that drops what it is given, inside a lab namespace (ksight reads every
    namespace's /proc/PID/net/dev): nothing is added to ksight's own namespace."""

    name = "net-tx-drops"
    area = "net"
    summary = ("a veth interface ksltx in namespace ksl<pid>a, its peer down in ksl<pid>b (no "
               "carrier); a sender there writes 200 frames a second straight to its driver "
               "(AF_PACKET, PACKET_QDISC_BYPASS): every one is dropped and counted in "
               "/proc/net/dev's TX drop")
    expects = ("net.tx-drops",)
    bounds = ("200 frames/s of 64 bytes that never leave the interface (no carrier), in "
              "namespaces ksl<pid>a/b deleted afterwards")
    warmup_s = 1.0
    default_seconds = 8.0
    rate = 200
    dev = "ksltx"

    def available(self):
        ok, why = super().available()
        if ok and shutil.which("ip") is None:
            return False, "the `ip` command is missing (apt-get install iproute2)"
        return ok, why

    def start(self, run, stack):
        from .. import pids
        from .netns import NetnsPair, _ip

        pair = stack.enter_context(NetnsPair())
        # one end in a (up), the peer in b (left down: no carrier on ours)
        _ip("-n", pair.a, "link", "add", self.dev, "type", "veth", "peer", "name", "ksltxp",
            "netns", pair.b)
        _ip("-n", pair.a, "link", "set", self.dev, "up")
        run.info.update(pair=pair, interface=self.dev, ns=pair.a, ns_peer=pair.b)
        p = pair.popen(pair.a, python_worker(TX_WORKER, self.dev, self.rate, run.seconds + 2.0),
                       preexec_fn=pids.die_with_parent, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run.procs.append(p)
        run.info["sender_pid"] = p.pid

    def evidence(self, run):
        from ..fs import LiveRoot
        from ..sources import netdev

        pid, dev = run.info["sender_pid"], run.info["interface"]
        nd = netdev.parse(LiveRoot().read_text(f"proc/{pid}/net/dev"), f"proc/{pid}/net/dev")
        i = nd.interfaces.get(dev)
        drops = i.tx_drop if i is not None else "?"
        return (f"{dev} in {run.info['ns']}: TX drop {drops} (/proc/{pid}/net/dev; sender pid "
                f"{pid})")


class SoftnetSqueeze(Scenario):
    """The cpu lab's routing loop (two namespaces each routing 198.19.255.0/24 to the other),
    with RPS on both veth ends steering every received packet to one other CPU: the sender only
    enqueues, that CPU does all the forwarding (about 63 hops a datagram) and falls behind: its
    backlog passes netdev_max_backlog (softnet 'dropped'). No global sysctl changes (rps_cpus
    belongs to the lab's veths), but the lab's sysctl lock is held for the run, so no other lab
    run (nor the e2e at-rest check, which takes it) overlaps a machine-wide softnet signal."""

    name = "net-softnet-squeeze"
    area = "net"
    summary = ("64-byte UDP datagrams sent into a routing loop between two lab namespaces, RPS "
               "on both veth ends steering all receive work to one other CPU: its backlog "
               "overflows netdev_max_backlog (softnet dropped)")
    expects = ("net.softnet-squeeze",)
    bounds = ("one sender of at most 40000 datagrams/s on one CPU, the receive work on another "
              "for the run (that CPU busy in softirq), namespaces ksl<pid>a/b and their "
              "rps_cpus deleted afterwards; no global sysctl changed")
    warmup_s = 1.5
    default_seconds = 10.0
    rate = 40000      # x ~63 hops: about twice what the development VM's CPU forwards (1.1 M/s)
    rps = True
    budget: int | None = None    # net.core.netdev_budget for the run (global), None: untouched

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        if shutil.which("ip") is None:
            return False, "the `ip` command is missing (apt-get install iproute2)"
        if self.rps:
            try:
                import os

                cpus = sorted(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = []
            if len(cpus) < 2:
                return False, ("needs two CPUs (one sends, RPS steers the receive work to the "
                               "other)")
        return True, ""

    def start(self, run, stack):
        import os
        import sys

        from .. import pids
        from .cpu_scenarios import LOOP_DST, LOOP_NET, NETNS_SYSCTLS, quietest_cpus
        from .netns import NetnsPair, _ip
        from .sysctl import SysctlGuard

        guard = SysctlGuard()
        stack.callback(guard.restore)
        guard._lock()     # waits for another lab run that holds it
        run.waited_s = guard.waited_s
        cpus = quietest_cpus() or sorted(os.sched_getaffinity(0))
        send_cpu = cpus[0]
        rx_cpu = cpus[1] if self.rps else send_cpu   # without RPS the loop runs where it is sent
        n = stack.enter_context(NetnsPair())
        for ns, dev, via in ((n.a, n.dev_a, n.addr_b), (n.b, n.dev_b, n.addr_a)):
            r = n.run(ns, [sys.executable, "-I", "-S", "-c", NETNS_SYSCTLS, dev], timeout=10)
            if r.returncode != 0:
                raise Unavailable(f"lab scenario {self.name}",
                                  f"cannot set the namespace's sysctls: {r.stderr.strip()[-200:]}")
            _ip("-n", ns, "route", "add", LOOP_NET, "via", via)
            if not self.rps:
                continue
            # `ip netns exec` mounts the namespace's own /sys: the veth's RPS map
            mask = format(1 << rx_cpu, "x")
            r = n.run(ns, ["sh", "-c", f"echo {mask} > /sys/class/net/{dev}/queues/rx-0/rps_cpus"],
                      timeout=10)
            if r.returncode != 0:
                raise Unavailable(f"lab scenario {self.name}",
                                  f"cannot set rps_cpus on {dev}: {r.stderr.strip()[-200:]}")
        if self.budget is not None:
            from .sysctl import read_sysctl

            run.info["netdev_budget_old"] = int(read_sysctl("net.core.netdev_budget"))
            guard.set("net.core.netdev_budget", self.budget)
        run.info.update(pair=n, netns=(n.a, n.b), send_cpu=send_cpu, rx_cpu=rx_cpu)
        p = n.popen(n.a, python_worker(SOFTNET_SENDER, LOOP_DST, 9, 64, 64, send_cpu, self.rate,
                                       run.seconds + 1.0),
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    preexec_fn=pids.die_with_parent)
        run.procs.append(p)
        run.info["sender_pid"] = p.pid
        run.info["last"] = softnet_counts()

    def evidence(self, run):
        c0 = run.info["last"]
        c1 = softnet_counts()
        run.info["last"] = c1
        dt = max(c1[0] - c0[0], 1e-3)
        cpu = run.info["rx_cpu"]
        a, b = c0[1].get(cpu, (0, 0)), c1[1].get(cpu, (0, 0))
        what = "RPS target" if self.rps else "sender and loop"
        return (f"CPU{cpu} ({what}): dropped {(b[0] - a[0]) / dt:8.0f}/s  time_squeeze "
                f"{(b[1] - a[1]) / dt:7.0f}/s" + ("" if self.budget is None else
                                                  f"   (netdev_budget {self.budget})"))


class SoftnetBudget(SoftnetSqueeze):
    """The same loop on the sender's own CPU (no RPS), with net.core.netdev_budget lowered to 16
    (a global sysctl: set under the lab's sysctl lock, journalled, restored): a datagram takes
    ~63 hops through the backlog, so every NET_RX run ends with work left (time_squeeze)."""

    name = "net-softnet-budget"
    summary = ("64-byte UDP datagrams sent into a routing loop between two lab namespaces "
               "(~63 hops each through the sender CPU's backlog) with net.core.netdev_budget "
               "lowered to 16: NET_RX runs out of budget with packets left (time_squeeze)")
    bounds = ("2000 datagrams/s on one CPU; net.core.netdev_budget=16 machine-wide for the run "
              "(under the lab's sysctl lock, restored; `ksight lab cleanup` after a kill -9); "
              "namespaces ksl<pid>a/b deleted afterwards")
    rate = 2000
    rps = False
    budget = 16


SOFTNET_SENDER = r"""
import os, socket, sys, time
addr, port, size, ttl, cpu, rate, seconds = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
    int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]))
end = time.monotonic() + seconds
try:
    os.sched_setaffinity(0, {cpu})
except OSError:
    pass
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
s.connect((addr, port))
msg = b"q" * size
t0, n = time.monotonic(), 0
while time.monotonic() < end:
    for _ in range(100):
        try:
            s.send(msg)
        except OSError:
            pass
    n += 100
    ahead = t0 + n / rate - time.monotonic()
    if ahead > 0:
        time.sleep(min(ahead, max(0.0, end - time.monotonic())))
"""


def softnet_counts() -> tuple[float, dict[int, tuple[int, int]]]:
    """(monotonic time, {cpu: (dropped, time_squeeze)}) from /proc/net/softnet_stat (the parser)."""
    import time

    from ..fs import LiveRoot
    from ..sources import softnet_stat

    st = softnet_stat.read(LiveRoot())
    return time.monotonic(), {c.cpu: (c.dropped, c.time_squeeze) for c in st.cpus}


_LISTEN_RE = re.compile(r"^\s*LISTEN\s+(\d+)\s+(\d+)\s+(\S+):(\d+)\s")


def listener_queue(pid: int, port: int) -> tuple[int, int] | None:
    """(accept queue length, backlog) of the listener on `port` in pid's namespace, as `ss -ltn`
    shows them (Recv-Q, Send-Q); None when `ss` is missing or no such listener."""
    if shutil.which("ss") is None or shutil.which("nsenter") is None:
        return None
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-ltnH"], capture_output=True,
                       text=True, timeout=5)
    for line in r.stdout.splitlines():
        m = _LISTEN_RE.match(line)
        if m and int(m.group(4)) == port:
            return int(m.group(1)), int(m.group(2))
    return None


for _sc in (LossyLink(), ListenOverflow(), CloseWait(), TimeWaitStorm(), MemoryPressure(),
            TxDrops(), SynFlood(), FinWait2(), PinnedSendBuffer(), SoftnetSqueeze(),
            SoftnetBudget()):
    register(_sc)
