"""Synthetic recordings for the report's tests: snapshots made by parsing kernel text written
here (the real parsers, so the objects are the ones a recording holds), with values chosen so
that the expected charts can be computed by hand in the tests."""

from __future__ import annotations

from ksight.collect.processes import Process
from ksight.model.snapshot import HostInfo, Snapshot
from ksight.sources import meminfo, snmp, stat, vmstat
from ksight.sources.proc_pid import stat as pstat
from ksight.sources.proc_pid import statm as pstatm

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
HOST = HostInfo(hostname="synth", kernel="6.18.0-synth", page_size=4096, clk_tck=100, cpus=2,
                boot_id="b-1")


def meminfo_text(anon_kb, shmem_kb, active_file_kb, inactive_file_kb, dirty_kb, slab_kb,
                 total_kb=8_000_000) -> str:
    return (f"MemTotal: {total_kb} kB\nMemFree: 1000000 kB\nMemAvailable: 4000000 kB\n"
            f"Buffers: 1000 kB\nCached: {active_file_kb + inactive_file_kb + shmem_kb} kB\n"
            f"Active(file): {active_file_kb} kB\nInactive(file): {inactive_file_kb} kB\n"
            f"Dirty: {dirty_kb} kB\nAnonPages: {anon_kb} kB\nShmem: {shmem_kb} kB\n"
            f"Slab: {slab_kb} kB\n")


def vmstat_text(**c) -> str:
    base = dict(pgpgin=0, pgpgout=0, pswpin=0, pswpout=0, pgscan_kswapd=0, pgscan_direct=0,
                pgsteal_kswapd=0, pgsteal_direct=0)
    base.update(c)
    return "".join(f"{k} {v}\n" for k, v in base.items())


def stat_text(cpus: list[tuple[int, ...]]) -> str:
    """cpus: per CPU (user nice system idle iowait irq softirq steal guest guest_nice) ticks."""
    tot = [sum(x) for x in zip(*cpus)]
    lines = ["cpu  " + " ".join(map(str, tot))]
    lines += [f"cpu{i} " + " ".join(map(str, c)) for i, c in enumerate(cpus)]
    lines += ["intr 0", "ctxt 0", "btime 1767225000", "processes 10", "procs_running 1",
              "procs_blocked 0"]
    return "\n".join(lines) + "\n"


def snmp_text(out_segs: int, retrans: int) -> str:
    keys = ("RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets "
            "CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors")
    vals = f"1 200 120000 -1 0 0 0 0 0 0 {out_segs} {retrans} 0 0 0"
    return f"Tcp: {keys}\nTcp: {vals}\n"


def process(pid: int, comm: str, rss_pages: int, start_ticks: int = 100) -> Process:
    st = pstat.parse(f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 "
                     f"{start_ticks} 10000000 {rss_pages} 18446744073709551615 0 0 0 0 0 0 0 0 0 "
                     "0 0 0 17 0 0 0 0 0 0\n")
    sm = pstatm.parse(f"{rss_pages * 2} {rss_pages} 10 1 0 {rss_pages} 0\n")
    return Process(pid=pid, comm=comm, stat=st, statm=sm)


def snap(i: int, *, step: float = 1.0, mem=(100_000, 2_000, 300_000, 200_000, 1_000, 50_000),
         vm: dict | None = None, cpus=None, tcp=(0, 0), procs=(), boot_id="b-1",
         uptime0: float = 1000.0, t0: float = T0) -> Snapshot:
    srcs = {"meminfo": meminfo.parse(meminfo_text(*mem)),
            "vmstat": vmstat.parse(vmstat_text(**(vm or {}))),
            "snmp": snmp.parse(snmp_text(*tcp))}
    if cpus is not None:
        srcs["stat"] = stat.parse(stat_text(cpus))
    host = HostInfo(**{**HOST.__dict__, "boot_id": boot_id})
    return Snapshot(taken_at=t0 + i * step, monotonic=uptime0 + i * step,
                    uptime_s=uptime0 + i * step, host=host, sources=srcs,
                    processes={p.pid: p for p in procs} if procs else None)


def recording(n: int = 600, step: float = 1.0, hostile: bool = False) -> list[Snapshot]:
    """n snapshots: a process leaking from a third of the way in, a reclaim and swap burst in
    the middle, a lossy link (5 % retransmitted) in the last fifth, CPU busier while it leaks."""
    out = []
    leak_from = n // 3
    name = "<script>alert(1)</script>" if hostile else "leaky"
    cum = dict(pgpgin=0, pgpgout=0, pswpin=0, pswpout=0, pgscan_kswapd=0, pgscan_direct=0,
               pgsteal_kswapd=0, pgsteal_direct=0)
    cpu = [[0] * 10 for _ in range(2)]
    segs = [0, 0]
    for i in range(n):
        leaking = i >= leak_from
        burst = n // 2 <= i < n // 2 + 20
        lossy = i >= n - n // 5
        if i:
            cum["pgpgin"] += 400
            cum["pgpgout"] += 800
            if burst:
                cum["pgscan_kswapd"] += 5000
                cum["pgsteal_kswapd"] += 4000
                cum["pgscan_direct"] += 1000
                cum["pgsteal_direct"] += 500
                cum["pswpout"] += 256
            for c in cpu:  # 100 ticks per CPU per second: usr 20 (40 leaking), sys 10, idle rest
                u = 40 if leaking else 20
                c[0] += u
                c[2] += 10
                c[6] += 2
                c[3] += 100 - u - 10 - 2
            segs[0] += 1000
            segs[1] += 50 if lossy else 0
        rss = 25_000 + (i - leak_from) * 100 if leaking else 25_000
        procs = [process(4242, name, rss, 500), process(77, "steady", 40_000, 50),
                 process(88, "small", 1_000, 60)]
        anon = 300_000 + (rss - 25_000) * 4
        out.append(snap(i, step=step, mem=(anon, 20_000, 500_000, 300_000, 5_000 if burst else 800, 90_000),
                        vm=dict(cum), cpus=[tuple(c) for c in cpu], tcp=tuple(segs), procs=procs))
    return out


def finding(rule: str = "memory.leak-suspect", severity: str = "warning", comm: str = "leaky",
            pid: int = 4242):
    from ksight.diagnose.finding import Action, Evidence, Finding, Subject
    return Finding(
        id=rule, area=rule.split(".")[0], severity=severity,
        title=f"Process {comm} (pid {pid}) grows steadily",
        evidence=(Evidence("anonymous memory growth", 409600, "KiB/s", f"/proc/{pid}/smaps_rollup",
                           threshold=1024, note="r2 0.99 over 400 s"),),
        explanation="Its anonymous memory grows in every interval: a leak looks like this.",
        actions=(Action.command(f"ksight pmap {pid}", why="which mappings grew"),
                 Action.sysctl("vm.overcommit_memory", 0, 2, why="fail allocations early"),
                 Action.cgroup_write("/sys/fs/cgroup/app/memory.high", 2**30, current="max")),
        subject=Subject(pid=pid, comm=comm))


def episode(start: float, end: float, rule: str = "memory.leak-suspect", severity="warning",
            comm: str = "leaky"):
    from ksight.record.episode import Episode
    f = finding(rule, severity, comm)
    return Episode(rule=rule, area=f.area, severity=severity, subject=f.subject, start=start,
                   end=end, windows=int(end - start) + 1, peak=f, peak_at=end,
                   bundle=f"/var/lib/ksight/bundles/{rule}-1")
