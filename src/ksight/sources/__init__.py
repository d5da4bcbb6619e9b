"""Parsers for kernel files, one module per file (or per closely related family).

Each module exposes:
- PATH (or PATHS): where the text lives, relative to a Root.
- parse(text, path=PATH) -> frozen dataclass: pure, no I/O.
- read(root) -> frozen dataclass: fetches the text through the Root and parses it.

SYSTEM lists the system-wide sources a snapshot collects, by the name used everywhere else
(snapshot.get("vmstat"), capture manifests, `ksight show vmstat`). Modules are imported only
when a source is collected, which keeps `ksight` quick to start.

A source with `default=False` is opt-in: a snapshot taken without naming its sources
(`take(root)`, `ksight show`, `ksight capture`) skips it; it is read when named (`ksight show
vmallocinfo`, a rule's or view's needs, `take(root, sources=[...])`). /proc/vmallocinfo is one:
the kernel walks every vmalloc area to print it (~3 ms at 3,000 lines, and it grows with tasks:
each has vmalloc'ed stacks), more than the rest of a snapshot together; no rule reads it yet.
"""

from __future__ import annotations

import importlib
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Any, Callable


@dataclass(frozen=True)
class Source:
    """A system source: its name and how to read and parse it."""

    name: str
    module: str  # under ksight.sources, or a full name "ksight.collect.x" (a source composed of
    # others that needs a collector: socket_summary)
    reader: str = "read"
    doc: str = ""
    default: bool = True  # False: read only when named (see the module doc)
    # read after the process scan, and given its table (`processes=`) when there is one, so it
    # does not read again what the scan already read
    after_processes: bool = False
    # how often the recorder (`ksight record`) reads it: every `record_every` samples, its last
    # value carried in the samples between, each of which says so (Missing("NAME:carried", ...)).
    # For sources that cost the kernel much and hold settings, or levels whose growth the rules
    # judge over a window from another source read every sample; never for counters whose
    # per-interval rates a rule reads (a carried counter would show no rate, then a burst).
    record_every: int = 1
    record_why: str = ""  # why reading it less often is enough (docs/benchmarks.md, issue 13)

    def read(self, root) -> Any:
        return self.load()(root)

    def load(self) -> Callable:
        mod = importlib.import_module(self.module if self.module.startswith("ksight.")
                                      else f"ksight.sources.{self.module}")
        return getattr(mod, self.reader)


# name -> Source. The order is the order `ksight show` prints them in.
SYSTEM: dict[str, Source] = {s.name: s for s in [
    Source("uptime", "uptime", doc="/proc/uptime: seconds since boot, idle seconds"),
    Source("loadavg", "loadavg", doc="/proc/loadavg: load averages, runnable/total tasks"),
    Source("stat", "stat", doc="/proc/stat: per-CPU times, ctxt, intr, procs_running/blocked"),
    Source("meminfo", "meminfo", doc="/proc/meminfo: memory accounting"),
    Source("vmstat", "vmstat", doc="/proc/vmstat: VM event counters and page counts"),
    Source("zoneinfo", "zoneinfo", doc="/proc/zoneinfo: per-zone free pages and watermarks"),
    Source("buddyinfo", "buddyinfo", doc="/proc/buddyinfo: free blocks per order per zone"),
    Source("pressure", "pressure", doc="/proc/pressure/{cpu,memory,io}: PSI stall time"),
    Source("swaps", "swaps", doc="/proc/swaps: swap devices and use",
           record_every=10, record_why="the swap devices and their size: pagecache.swap-io names the "
           "device kind from it; swap use over time is meminfo's SwapTotal - SwapFree, every sample"),
    Source("diskstats", "diskstats", doc="/proc/diskstats: block device I/O counters"),
    Source("slabinfo", "slabinfo", doc="/proc/slabinfo: kernel slab caches (root only)",
           record_every=10, record_why="the kernel prints every cache (~0.4 ms); memory.slab-leak "
           "judges SUnreclaim (meminfo, every sample) and names the caches that grew from it"),
    Source("vmallocinfo", "vmallocinfo", doc="/proc/vmallocinfo: vmalloc use by caller (root only; "
           "read only when named: the kernel's cost of printing it grows with tasks)", default=False,
           record_every=10, record_why="the kernel walks every vmalloc area to print it (~3 ms at "
           "100 processes, more with more tasks: each has a vmalloc'ed stack); memory.vmalloc-leak "
           "judges VmallocUsed (meminfo, every sample) and names the callers that grew from it"),
    Source("blocked_tasks", "blocked_tasks", doc="/proc/PID/task/TID/{stat,wchan,stack}: threads "
           "in D state, wait channel, kernel stack (stacks: root; read only when named: it walks "
           "every thread)", default=False),
    Source("sysvipc_shm", "sysvipc_shm", doc="/proc/sysvipc/shm: SysV shared memory segments",
           record_every=10, record_why="segments live for minutes to forever; memory.shmem-growth judges "
           "the orphans kept over the window (Shmem, meminfo, every sample, shows the growth)"),
    Source("tmpfs", "tmpfs", doc="tmpfs/devtmpfs/ramfs mounts and their use (statfs live; "
           "ksight/tmpfs.json in captures)"),
    Source("consoles", "consoles", doc="/proc/consoles: the consoles printk writes to (serial?)"),
    Source("kmsg_oom", "kmsg_oom", doc="OOM kills in the kernel log (/dev/kmsg, live; "
           "ksight/kmsg_oom.txt in captures; read only when named: the whole log is read)",
           default=False),
    Source("kmemleak", "kmemleak", doc="/sys/kernel/debug/kmemleak: unreferenced kernel objects "
           "(debugfs, CONFIG_DEBUG_KMEMLEAK; read only when named)", default=False),
    Source("numa", "numa", doc="/sys/devices/system/node: per-node meminfo and numastat",
           record_every=10, record_why="four files per node (~0.2 ms a read); the rules read its node "
           "count (pagecache.numa-zone-reclaim); the machine's memory counters are meminfo and vmstat, every "
           "sample"),
    Source("cpu_topology", "cpu_topology", doc="/sys/devices/system/cpu: topology and caches"),
    Source("cgroup_memory", "cgroup_memory", doc="memory cgroups (v2 and v1): limits, usage, events"),
    Source("softirqs", "softirqs", doc="/proc/softirqs: softirq counts per CPU"),
    Source("interrupts", "interrupts", doc="/proc/interrupts: interrupt counts per CPU"),
    Source("snmp", "snmp", doc="/proc/net/snmp: Ip, Icmp, Tcp, Udp counters"),
    Source("netstat", "netstat", doc="/proc/net/netstat: TcpExt, IpExt counters"),
    Source("sockstat", "sockstat", doc="/proc/net/sockstat: sockets in use, TCP memory"),
    Source("sockstat6", "sockstat", reader="read6", doc="/proc/net/sockstat6: IPv6 sockets"),
    Source("softnet_stat", "softnet_stat", doc="/proc/net/softnet_stat: per-CPU packet processing"),
    Source("netdev", "netdev", doc="/proc/net/dev: per-interface counters"),
    Source("netclass", "netclass", doc="/sys/class/net: tx_queue_len, mtu, operstate, speed, carrier (statistics/*: netclass.read_stats)",
           record_every=10, record_why="interface settings and state (mtu, queue length, speed, "
           "operstate), five files per interface (~0.25 ms); the traffic counters come from "
           "netdev, every sample"),
    Source("sysctl", "sysctl", doc="/proc/sys: the sysctls ksight reasons about",
           record_every=10, record_why="settings: they change when someone changes them, and "
           "they are ~50 files (~0.3 ms)"),
    Source("lru_gen", "lru_gen", doc="/sys/kernel/mm/lru_gen/enabled: multi-generational LRU on (6.1+)",
           record_every=10, record_why="a setting: it changes when someone changes it"),
    Source("process_maps", "process_maps", default=False, after_processes=True,
           doc="/proc/PID/smaps: mappings of the processes that grow (read only when a rule names it)",
           record_every=10, record_why="the kernel walks the page tables of every mapping of up to "
           "4 growing processes (measured 1-25 ms a read, with large processes growing); the rules "
           "judge the growth itself from status every sample, and the mappings and their count "
           "over the window, first read to last"),
    Source("socket_summary", "ksight.collect.socket_summary", default=False, after_processes=True,
           doc="TCP sockets per state, netns and owner, listeners' queues (what `ksight record` "
               "stores instead of the socket table; read only when named)",
           record_every=30, record_why="made from the socket table (sock_diag in every network "
           "namespace) and every process's fds (the owners): ~19 ms a read at 100 processes, ~85 ms "
           "at 1,000; the tcp rules judge from it on a recording, and it says when it was taken (taken_at)"),
]}


# the sources a snapshot reads when none are named: SYSTEM without the opt-in ones
DEFAULT: tuple[str, ...] = tuple(n for n, s in SYSTEM.items() if s.default)
