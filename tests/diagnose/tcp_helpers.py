"""Trees of real kernel network text (a PCP capture of an HP BL920 Gen8, 3.10 kernel) with
counters, sockets and namespaces changed, for the tcp and net rule tests."""

from __future__ import annotations

import os
from pathlib import Path

from ksight.collect.plan import Needs, Plan
from ksight.collect.snapshot import take
from ksight.diagnose.engine import diagnose, plan_for
from ksight.fs import DirRoot
from tests.conftest import corpus

BASE = ("pcp", "unpacked", "bigsys-root-hpbl920gen8", "proc", "net")
FILES = ("snmp", "netstat", "sockstat", "dev", "softnet_stat", "tcp")
OWN_NS = 4026531992

SYSCTLS = {
    "net/core/somaxconn": "4096", "net/core/netdev_budget": "300",
    "net/core/netdev_budget_usecs": "8000", "net/core/netdev_max_backlog": "1000",
    "net/core/wmem_max": "212992", "net/core/rmem_max": "212992",
    "net/ipv4/tcp_max_syn_backlog": "1024", "net/ipv4/tcp_syncookies": "1",
    "net/ipv4/tcp_abort_on_overflow": "0", "net/ipv4/tcp_max_tw_buckets": "262144",
    "net/ipv4/tcp_tw_reuse": "2", "net/ipv4/tcp_fin_timeout": "60",
    "net/ipv4/tcp_mem": "188934\t251912\t377868", "net/ipv4/tcp_wmem": "4096\t16384\t4194304",
    "net/ipv4/tcp_rmem": "4096\t131072\t6291456", "net/ipv4/tcp_moderate_rcvbuf": "1",
    "net/ipv4/ip_local_port_range": "32768\t60999",
}


def base_text(name: str) -> str:
    return corpus(*BASE, name).read_text()


def get(text: str, group: str, name: str) -> int | None:
    """A counter of snmp/netstat text (header line, values line)."""
    lines = text.split("\n")
    for i in range(0, len(lines) - 1):
        if lines[i].startswith(group + ":") and lines[i + 1].startswith(group + ":"):
            names, vals = lines[i].split()[1:], lines[i + 1].split()[1:]
            if name in names and not vals[0].isalpha():
                return int(vals[names.index(name)])
    return None


def add(text: str, group: str, name: str, delta: int) -> str:
    """Add delta to one counter of snmp/netstat text; a counter the kernel lacked is appended
    to its group's header and values (as a newer kernel prints it)."""
    lines = text.split("\n")
    for i in range(0, len(lines) - 1):
        if lines[i].startswith(group + ":") and lines[i + 1].startswith(group + ":") \
                and lines[i].split()[1:2] != lines[i + 1].split()[1:2]:
            names = lines[i].split()[1:]
            vals = lines[i + 1].split()[1:]
            if name in names:
                j = names.index(name)
                vals[j] = str(int(vals[j]) + delta)
            else:
                names.append(name)
                vals.append(str(delta))
            lines[i] = f"{group}: " + " ".join(names)
            lines[i + 1] = f"{group}: " + " ".join(vals)
            return "\n".join(lines)
    raise KeyError(f"{group} not in text")


def tcp_row(sl: int, local: str, lport: int, remote: str, rport: int, state: int,
            tx: int = 0, rx: int = 0, inode: int = 0, uid: int = 0) -> str:
    def a(ip: str) -> str:
        return "".join(f"{int(p):02X}" for p in reversed(ip.split(".")))
    return (f"{sl:4d}: {a(local)}:{lport:04X} {a(remote)}:{rport:04X} {state:02X} "
            f"{tx:08X}:{rx:08X} 00:00000000 00000000 {uid:5d}        0 {inode} 1 "
            f"ffff911edf703480 99 0 0 10 -1")


TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
              "timeout inode")


def tcp_table(rows: list[str]) -> str:
    return "\n".join([TCP_HEADER] + rows) + "\n"


class Machine:
    """One tree per snapshot: proc/net/* from the corpus, sysctls, and optionally processes in
    network namespaces (proc/PID/ns/net links, proc/PID/net/*, proc/PID/fd socket links)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.n = 0
        self.net = {f: base_text(f) for f in FILES}
        self.sysctls = dict(SYSCTLS)
        self.procs: dict[int, dict] = {}  # pid -> {"ns": inode, "net": {file: text}, "fds": [inodes]}
        self.snaps = []
        self.owners_later = False  # sample as live `check` does: sockets without owners

    def process(self, pid: int, ns: int, comm: str = "server", inodes=(), net: dict | None = None):
        self.procs[pid] = {"ns": ns, "comm": comm, "fds": list(inodes),
                           "net": net if net is not None else None}

    def snap(self):
        d = self.tmp / f"s{self.n}"
        files = {f"proc/net/{k}": v for k, v in self.net.items()}
        files.update({f"proc/sys/{k}": v + "\n" for k, v in self.sysctls.items()})
        files["proc/uptime"] = f"{1000 + self.n:.2f} 1900.00\n"
        for rel, text in files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        for pid, info in self.procs.items():
            pd = d / "proc" / str(pid)
            (pd / "ns").mkdir(parents=True, exist_ok=True)
            os.symlink(f"net:[{info['ns']}]", pd / "ns" / "net")
            (pd / "comm").write_text(info["comm"] + "\n")
            rest = " ".join(["0"] * 49)  # the fields after state; starttime (22nd) is 0
            (pd / "stat").write_text(f"{pid} ({info['comm']}) S {rest}\n")
            (pd / "fd").mkdir(exist_ok=True)
            for i, ino in enumerate(info["fds"]):
                os.symlink(f"socket:[{ino}]", pd / "fd" / str(3 + i))
            (pd / "net").mkdir(exist_ok=True)
            for k, v in (info["net"] or self.net).items():
                (pd / "net" / k).write_text(v)
        if self.procs:
            (d / "proc" / "self").mkdir(parents=True, exist_ok=True)
            (d / "proc" / "self" / "ns").mkdir(exist_ok=True)
            os.symlink(f"net:[{OWN_NS}]", d / "proc" / "self" / "ns" / "net")
        self.n += 1
        plan = plan_for(["tcp", "net"], owners_later=self.owners_later).merge(
            Plan.of([Needs(sources=("sysctl",))]))
        self.root = DirRoot(str(d))  # the last tree: where owners are looked up later
        s = take(DirRoot(str(d)), plan=plan, taken_at=1_700_000_000 + self.n)
        self.snaps.append(s)
        return s

    def check(self, areas=("tcp", "net")):
        return diagnose(self.snaps, list(areas))


def found(report, rule_id: str) -> list:
    return [f for f in report.findings if f.id == rule_id]


def ev(finding, name: str):
    for e in finding.evidence:
        if e.name == name:
            return e
    raise KeyError(f"{name} not in {[e.name for e in finding.evidence]}")
LISTEN_STATE = 0x0A
