"""The socket-state summary a recording keeps instead of the socket table: TCP sockets counted per
state and network namespace, per owning process and state, and every listener with its accept
queue (length now and maximum).

The recorder (record/recorder.py) computes it from the snapshot's socket table (collect/sockets.py:
/proc/net/tcp{,6} or sock_diag, owners from the processes' fds) and stores it as the source
`socket_summary`; read live (`ksight show socket_summary`) it collects that table itself.
Opt-in (SYSTEM default=False): no rule reads it yet; `ksight report` and the HTML page may.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

MAX_OWNERS = 100  # (owner, state) rows kept, the largest counts first


@dataclass(frozen=True)
class StateCount:
    netns: int | None  # the namespace's inode (None: the table had no namespace link)
    state: str  # ESTABLISHED, TIME_WAIT, CLOSE_WAIT, LISTEN, ...
    count: int


@dataclass(frozen=True)
class OwnerCount:
    pid: int | None  # None: no process holds it (TIME_WAIT, orphans) or the owner was not found
    comm: str | None
    state: str
    count: int


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

    def states(self) -> dict[str, int]:
        """Sockets per state, every namespace together."""
        out: Counter = Counter()
        for s in self.by_state:
            out[s.state] += s.count
        return dict(out)


def summarise(table) -> SocketSummary:
    """The summary of a collect.sockets.SocketTable."""
    socks = table.sockets
    per_state = Counter((s.netns, s.state) for s in socks)
    per_owner = Counter((s.pid, s.comm, s.state) for s in socks)
    owners = sorted(per_owner.items(), key=lambda kv: (-kv[1], kv[0][0] or 0, kv[0][2]))
    listeners = tuple(sorted(
        (Listener(s.netns, s.family, s.local_addr, s.local_port, s.pid, s.comm,
                  s.accept_queue if s.accept_queue is not None else s.rx_queue, s.backlog)
         for s in socks if s.state == "LISTEN"),
        key=lambda x: (x.netns or 0, x.local_port, x.family, x.local_addr)))
    return SocketSummary(
        sockets=len(socks),
        by_state=tuple(StateCount(ns, st, n) for (ns, st), n in sorted(
            per_state.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))),
        by_owner=tuple(OwnerCount(pid, comm, st, n) for (pid, comm, st), n in owners[:MAX_OWNERS]),
        listeners=listeners,
        namespaces=len(table.namespaces),
        diag_available=table.diag_available,
        owners_truncated=max(0, len(owners) - MAX_OWNERS),
    )


def read(root, processes: dict | None = None) -> SocketSummary:
    """Collect the socket table now (owners from `processes` when given) and summarise it."""
    from ..collect.sockets import collect

    table, _missing = collect(root, processes)
    return summarise(table)
