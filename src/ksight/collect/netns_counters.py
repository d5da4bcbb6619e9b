"""The TCP counters of every network namespace: /proc/PID/net/{snmp,netstat,sockstat,dev}.

/proc/net/snmp and /proc/net/netstat are per network namespace: ksight's own namespace does not
count a listener overflowing inside a container (ListenOverflows moves in the container's
namespace only), nor its retransmissions. The socket collection (collect/sockets.py) already
knows every namespace some process lives in and a few of its processes (SocketTable.ns_pids);
here the three files are read through one of them, so a finding can be attributed to the
namespace it happened in.

/proc/PID/net/dev gives the interfaces of the namespace (a veth inside a container is not in
ksight's own /proc/net/dev). Read through the Root, so a capture holds the text and replay
parses the same bytes. Cost: four small files per namespace (about 0.1 ms each), only when a plan asks (Needs.netns_counters: the
tcp and net areas and `ksight tcp`). `own` is ksight's own namespace (proc/self/ns/net), whose
counters are also the system sources snmp/netstat/sockstat.

sockstat's TCP "mem" is the machine-wide tcp_memory_allocated whatever the namespace (the TCP
memory accounting is global); its inuse/orphan/tw are per namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ParseError, Unavailable
from ..fs import Root
from ..model.snapshot import Missing
from ..sources import netdev, netstat, snmp, sockstat

# file under /proc/PID/net -> (attribute / source name, parser)
FILES = (("snmp", "snmp", snmp.parse), ("netstat", "netstat", netstat.parse),
         ("sockstat", "sockstat", sockstat.parse), ("dev", "netdev", netdev.parse))
SOURCES = tuple(a for _, a, _ in FILES)


@dataclass(frozen=True)
class NsCounters:
    """One network namespace's counters, as read through /proc/PID/net of a process in it."""

    netns: int  # inode of the namespace (net:[INODE])
    pid: int | None  # the process whose /proc/PID/net was read (None: none could be)
    snmp: snmp.Snmp | None = None
    netstat: netstat.Netstat | None = None
    sockstat: sockstat.Sockstat | None = None
    missing: dict[str, str] = field(default_factory=dict)  # file -> why it is not here
    netdev: netdev.NetDev | None = None  # /proc/PID/net/dev: the namespace's interfaces

    def get(self, source: str):
        """The parsed file by source name ('snmp', 'netstat', 'sockstat', 'netdev'), or None."""
        return getattr(self, source, None) if source in SOURCES else None


@dataclass(frozen=True)
class NetnsCounters:
    namespaces: dict[int, NsCounters] = field(default_factory=dict)
    own: int | None = None  # ksight's own namespace (None: its link could not be read)

    def get(self, netns: int) -> NsCounters | None:
        return self.namespaces.get(netns)


def own_netns(root: Root) -> int | None:
    from ..fs.netns import parse_link

    try:
        return parse_link(root.readlink("proc/self/ns/net"))
    except Unavailable:
        return None


def read_ns(root: Root, netns: int, pids: tuple[int, ...]) -> NsCounters:
    """The three files through the first process of `pids` that answers (one may exit meanwhile);
    a file that is missing or malformed is named in `missing`, the others are kept."""
    why = "no process left in it"
    for pid in pids:
        got: dict[str, object] = {}
        missing: dict[str, str] = {}
        gone = False
        for name, attr, parse in FILES:
            path = f"proc/{pid}/net/{name}"
            try:
                got[attr] = parse(root.read_text(path), path)
            except Unavailable as u:
                if "no such process" in u.reason or "exited" in u.reason:
                    gone, why = True, f"{u.source}: {u.reason}"
                    break
                missing[name] = f"{u.source}: {u.reason}"
            except ParseError as e:
                missing[name] = f"malformed: {e}"
        if gone or not got and len(missing) == len(FILES) and pid != pids[-1]:
            why = why if gone else "; ".join(missing.values())
            continue  # try the next process of the namespace
        return NsCounters(netns, pid, got.get("snmp"), got.get("netstat"), got.get("sockstat"),
                          missing, got.get("netdev"))
    return NsCounters(netns, None, missing={n: why for n, _, _ in FILES})


def collect(root: Root, table) -> tuple[NetnsCounters, list[Missing]]:
    """Counters of every namespace in the socket table's `ns_pids` (collect/sockets.py)."""
    out: dict[int, NsCounters] = {}
    missing: list[Missing] = []
    for ns, pids in getattr(table, "ns_pids", ()) or ():
        got = read_ns(root, ns, tuple(pids))
        out[ns] = got
        for name, why in got.missing.items():
            missing.append(Missing(f"netns_counters.{name}", f"netns {ns}: {why}"))
    if not out:
        missing.append(Missing("netns_counters", "no network namespace seen (no process's "
                                                 "/proc/PID/ns/net readable)"))
    return NetnsCounters(out, own_netns(root)), missing


__all__ = ["NsCounters", "NetnsCounters", "collect", "read_ns", "own_netns"]
