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

/proc/sys/net/* is per namespace as well (a container's net.core.somaxconn caps its listeners,
not the host's), but it shows the namespace of the thread that opens it: NS_SYSCTLS are read
inside each namespace other than ksight's own (fs.netns.run_in, a short-lived thread that enters
it), and kept in the capture as ksight/netns/<netns>/sysctl.json ({"format": 1, "pid": PID,
"values": {name: text}, "missing": {name: why}}), so that replay judges with the same values.
A capture made before holds none: `sysctls` is then None and the rules take ksight's own
namespace's value, saying so (model.tcp.ns_sysctl).

sockstat's TCP "mem" is the machine-wide tcp_memory_allocated whatever the namespace (the TCP
memory accounting is global); its inuse/orphan/tw are per namespace.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root, record_extra
from ..model.snapshot import Missing
from ..sources import netdev, netstat, snmp, sockstat
from ..sources import sysctl as sysctl_src

# file under /proc/PID/net -> (attribute / source name, parser)
FILES = (("snmp", "snmp", snmp.parse), ("netstat", "netstat", netstat.parse),
         ("sockstat", "sockstat", sockstat.parse), ("dev", "netdev", netdev.parse))
SOURCES = tuple(a for _, a, _ in FILES)

# sysctls each network namespace has its own copy of (net/core/sysctl_net_core.c netns_core_table,
# net/ipv4/sysctl_net_ipv4.c ipv4_net_table; most of the tcp_* ones since 4.15, before which the
# namespace shows the host's value, which is then the one that applies). tcp_mem, wmem_max,
# rmem_max and the netdev_* budgets are machine-wide: not here.
NS_SYSCTLS = (
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_moderate_rcvbuf",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_slow_start_after_idle",
)
SYSCTL_DIR = "ksight/netns"
SYSCTL_FORMAT = 1


def sysctl_capture_path(netns: int) -> str:
    return f"{SYSCTL_DIR}/{netns}/sysctl.json"


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
    # NS_SYSCTLS as read inside the namespace; None when they were not (ksight's own namespace:
    # the system sysctl source is its value; a capture made before; the namespace could not be
    # entered: sysctls_why says why)
    sysctls: sysctl_src.Sysctls | None = None
    sysctls_why: str | None = None

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


def _sysctls_live(root: Root, netns: int, pids: tuple[int, ...]) -> tuple[dict | None, str | None]:
    """The namespace's NS_SYSCTLS read inside it (through the first of `pids` that can be
    entered), recorded for a capture: (the document, None) or (None, why not)."""
    from ..fs import netns as fsns

    why = "no process left in it"
    for pid in pids:
        try:
            raw = fsns.run_in(pid, lambda: fsns.read_sysctls(NS_SYSCTLS))
        except Unavailable as u:
            why = f"cannot enter the namespace through /{u.source}: {u.reason}"
            continue
        except OSError as exc:
            why = f"cannot enter the namespace: {exc}"
            break
        doc = {"format": SYSCTL_FORMAT, "pid": pid,
               "values": {k: v for k, v in raw.items() if not v.startswith("!")},
               "missing": {k: v[1:] for k, v in raw.items() if v.startswith("!")}}
        record_extra(root, sysctl_capture_path(netns), json.dumps(doc, indent=1).encode())
        return doc, None
    return None, why


def _sysctls_replay(root: Root, netns: int) -> tuple[dict | None, str | None]:
    path = sysctl_capture_path(netns)
    try:
        doc = json.loads(root.read_bytes(path))
    except Unavailable:
        return None, ("not in this capture (made before ksight read each namespace's sysctls, "
                      "or the namespace could not be entered)")
    except (ValueError, RecursionError) as exc:
        return None, f"{path} is malformed ({str(exc)[:100]})"
    vals = doc.get("values") if isinstance(doc, dict) else None
    if not isinstance(vals, dict) or not all(isinstance(v, str) for v in vals.values()):
        return None, f"{path} is malformed (no values)"
    return doc, None


def read_sysctls(root: Root, netns: int, pids: tuple[int, ...]) -> tuple[sysctl_src.Sysctls | None,
                                                                          str | None]:
    """NS_SYSCTLS of one namespace: live, read inside it; from a capture, what it recorded.
    (Sysctls, None), or (None, why they are not known). Names ksight does not read per
    namespace are not in the result, so a lookup of one gives None."""
    doc, why = (_sysctls_live(root, netns, pids) if root.live else _sysctls_replay(root, netns))
    if doc is None:
        return None, why
    values = {k: v for k, v in doc["values"].items() if k in NS_SYSCTLS}
    missing = {k: str(v) for k, v in (doc.get("missing") or {}).items() if k in NS_SYSCTLS}
    got = sysctl_src.parse(values, missing)
    # parse() names every other sysctl of sysctl.NAMES as missing: keep only the per-namespace ones
    return sysctl_src.Sysctls({k: v for k, v in got.values.items() if k in NS_SYSCTLS},
                              {k: v for k, v in got.missing.items() if k in NS_SYSCTLS}), None


def collect(root: Root, table) -> tuple[NetnsCounters, list[Missing]]:
    """Counters of every namespace in the socket table's `ns_pids` (collect/sockets.py)."""
    out: dict[int, NsCounters] = {}
    missing: list[Missing] = []
    own = own_netns(root)
    for ns, pids in getattr(table, "ns_pids", ()) or ():
        got = read_ns(root, ns, tuple(pids))
        if ns != own:  # ksight's own: the system sysctl source holds its values
            sc, why = read_sysctls(root, ns, tuple(pids))
            if sc is not None:
                got = dataclasses.replace(got, sysctls=sc)
            else:
                got = dataclasses.replace(got, sysctls_why=why)
        out[ns] = got
        for name, why in got.missing.items():
            missing.append(Missing(f"netns_counters.{name}", f"netns {ns}: {why}"))
    if not out:
        missing.append(Missing("netns_counters", "no network namespace seen (no process's "
                                                 "/proc/PID/ns/net readable)"))
    return NetnsCounters(out, own), missing


__all__ = ["NsCounters", "NetnsCounters", "collect", "read_ns", "own_netns", "read_sysctls",
           "NS_SYSCTLS"]
