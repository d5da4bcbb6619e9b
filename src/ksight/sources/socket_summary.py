"""The socket-state summary a recording keeps instead of the socket table: what is stored, as
frozen dataclasses (no I/O, no derivation). Fields are only ever added (the sample codec reads old
samples by field name: store/samples.py); a field added after schema 2 says so.

- TCP sockets counted per state and network namespace, per owning process and state (with, for
  CLOSE_WAIT, how many were already there at the previous read of the table and their ages);
- every listener with its accept queue (length now and maximum) and its SYN_RECV requests;
- local ports in ip_local_port_range held per destination (TIME_WAIT among them);
- the listen, SYN and TIME_WAIT counters of the other network namespaces (TcpExt of
  /proc/PID/net/netstat, TCP of /proc/PID/net/sockstat), which a sample does not hold otherwise.

The derivation from the socket table is model/sockets.py `summarise` (one derivation: the rules
read the table live and this summary on a recording through model/sockets.py). The recorder
(record/recorder.py) stores it as the source `socket_summary` every few samples and carries it
between (taken_at says when the table was read); read live (`ksight show socket_summary`) it
collects the table itself (collect/socket_summary.py).
"""

from __future__ import annotations

from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .netstat import Netstat
from .sockstat import Sockstat
from .sysctl import Sysctls

MAX_OWNERS = 100  # (owner, state) rows kept, the largest counts first
MAX_DESTINATIONS = 10  # destinations kept, the most local ports first


@dataclass(frozen=True)
class StateCount:
    netns: int | None  # the namespace's inode (None: the table had no namespace link)
    state: str  # ESTABLISHED, TIME_WAIT, CLOSE_WAIT, LISTEN, ... (SYN_RECV: request sockets too)
    count: int


@dataclass(frozen=True)
class OwnerCount:
    pid: int | None  # None: no process holds it (TIME_WAIT, orphans) or the owner was not found
    comm: str | None
    state: str
    count: int
    # schema 3:
    netns: int | None = None  # the sockets' namespace (a row per owner, state and namespace)
    # CLOSE_WAIT rows only (None otherwise, or unknown):
    held: int | None = None  # of `count`, sockets already there at the previous read of the table
    oldest_ms: int | None = None  # the longest idle (tcp_info last_data_recv; sock_diag only)
    median_ms: int | None = None
    peers: str | None = None  # the three peers with the most: "ADDR (N), ..."


@dataclass(frozen=True)
class Listener:
    netns: int | None
    family: str
    local_addr: str
    local_port: int
    pid: int | None
    comm: str | None
    queue: int  # connections waiting for accept() now (rx_queue of a LISTEN socket)
    backlog: int | None  # the accept queue's maximum (sock_diag; None without it)
    # schema 3:
    syn_recv: int | None = None  # SYN_RECV requests to it (its port, its address or any)


@dataclass(frozen=True)
class Destination:
    """Local ports in ip_local_port_range held towards one destination (schema 3)."""

    netns: int | None
    remote_addr: str
    remote_port: int
    ports_in_use: int
    time_wait: int


@dataclass(frozen=True)
class NsTcpCounters:
    """The counters of another network namespace that the socket rules judge (schema 3): the
    TcpExt listen, SYN and TIME_WAIT counters and sockstat's TCP line, read in /proc/PID/net."""

    netns: int
    pid: int | None  # the process whose /proc/PID/net was read
    netstat: Netstat | None = None  # TcpExt: only the counters in model/sockets.NS_COUNTERS
    sockstat: Sockstat | None = None  # the TCP line
    sysctls: Sysctls | None = None  # the namespace's own (collect/netns_counters.NS_SYSCTLS)
    sysctls_why: str | None = None  # why they were not read


@dataclass(frozen=True)
class SocketSummary:
    sockets: int
    by_state: tuple[StateCount, ...] = ()
    by_owner: tuple[OwnerCount, ...] = ()
    listeners: tuple[Listener, ...] = ()
    namespaces: int = 0
    diag_available: bool = False
    owners_truncated: int = 0  # (owner, state) rows left out past MAX_OWNERS
    # wall-clock time the socket table was read: the recorder reads it every few samples and
    # carries the summary between (None: read with the snapshot it is in)
    taken_at: float | None = None
    # schema 3:
    destinations: tuple[Destination, ...] = ()  # busiest first, MAX_DESTINATIONS at most
    port_low: int | None = None  # the ip_local_port_range the destinations were counted in
    port_high: int | None = None
    ports_in_use: int | None = None  # sockets with a local port in the range (not LISTEN)
    counters: tuple[NsTcpCounters, ...] = ()  # the other namespaces' (None: not read)
    own_netns: int | None = None  # ksight's namespace (its counters are the system sources)
    version: int = 1  # 3: holds the fields marked schema 3 (1: an older recording's)

    def states(self) -> dict[str, int]:
        """Sockets per state, every namespace together."""
        out: Counter = Counter()
        for s in self.by_state:
            out[s.state] += s.count
        return dict(out)

