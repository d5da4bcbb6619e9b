"""The bench items of issue 7, each peer measured interleaved with ksight in the same run.

    .venv/bin/python bench/issue7.py [--runs 5] [--peer DIR] [snapshot] [cgroups] [check] [procscan] [procsock]

Every part repeats RUNS runs; a run is a set of interleaved rounds (ksight, peer, ksight, ...);
each run gives one median per tool, and the table shows the median over runs and the range
[min-max] of the runs' medians. A target is MET only when it holds in every run.

snapshot  `take(LiveRoot())` (in-process CPU, time.process_time) vs the raw-read floor of the
          same files (os.open/read/close, same read sizes; bench/snapshot_cost.py's recorder) vs one
          node_exporter scrape (prometheus-node-exporter 1.5, default collectors, on 127.0.0.1, one
          persistent HTTP/1.1 connection, `Accept-Encoding: gzip` and Prometheus's Accept header,
          as Prometheus scrapes; its CPU = utime+stime ticks of its thread group over the run's
          scrapes). Measured twice: as the machine is, then with ~1,000 extra sleeping processes
          (each task's kernel stack is a vmalloc area, so /proc/vmallocinfo grows).
cgroups   under a parent of our own (v2: /sys/fs/cgroup/ksight-bench-PID with +memory; v1:
          /sys/fs/cgroup/memory/ksight-bench-PID): 20 child groups, then 500, alternating in
          each run (480 created/removed between rounds). Per state: CPU of
          `ksight check --json --interval 1` (subprocess, getrusage of the child) and of one
          in-process snapshot with the plan that check makes for that 1 s window
          (`take(root, plan=plan_for(None, 1.0, owners_later=True))`; before 2026-12-01 07:00
          the plan of every rule, `plan_for(None)`, whose process parts check never reads at
          1 s). Every group is removed at the end, also on error or Ctrl-C.
check     CPU of `ksight check --json --interval 1` (getrusage of the child; the 1 s window is
          sleep), with Python's bytecode cached in a temp PYTHONPYCACHEPREFIX (as after
          `pip install .`) and without (PYTHONDONTWRITEBYTECODE=1, every module compiled).
--peer DIR  check and cgroups also run DIR/.venv/bin/ksight (another tree: a worktree of main,
          for before/after), interleaved with this tree's in every round, bytecode cached in a
          temp dir of its own; its figures are printed beside, the verdicts stay this tree's.
procscan  at ~1,000 processes: `scan(LiveRoot())` (default detail: stat, status) vs psutil
          reading the same data (process_iter(pid, name, memory_info, status, num_threads,
          uids, num_ctx_switches): stat, statm, status) in this process; each tool's repeated
          scan (ksight's kept procfs fds, psutil's cached Process objects) and its first scan
          (ksight: processes.close_kept() before, untimed; psutil: process_iter.cache_clear(),
          so it makes every Process anew), interleaved; the target is checked for the first
          scans against psutil's repeated scan (the harder peer) and its first; vs `ps -eo
          pid,rss,vsz,comm` as a command (CPU and wall, start-up included) and ps's per-scan
          cost without its start-up: CPU of `unshare -pf ps -eo ...` (every process of the
          machine) minus CPU of `unshare -pf --mount-proc ps -eo ...` (a new PID namespace with
          its own /proc: ps sees itself only; same binary, start-up and unshare), via getrusage.
          (`ps -p 1` is no start-up measure: procps 4 reads every process and filters after.)
procsock  at ~1,000 processes and ~10,000 loopback TCP sockets (5,000 connected pairs held by
          this process, RLIMIT_NOFILE raised for it): CPU of one sample with check's plan plus
          processes (default detail) and sockets, minus the same sample without them.

Bounded: counts and time limits everywhere; children (sleep, ps, ksight, node_exporter) are
stopped by PID; sockets and cgroups are closed/removed in finally blocks.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from snapshot_cost import _free_port, _proc_cpu_ticks, _raw_reads, _SizedRecorder  # noqa: E402

from ksight.collect.plan import Plan  # noqa: E402
from ksight.collect.snapshot import take  # noqa: E402
from ksight.fs import LiveRoot  # noqa: E402

KSIGHT = os.path.join(os.path.dirname(HERE), ".venv", "bin", "ksight")
CHILD_SECONDS = 600
MAX_CHILDREN = 1500
PROM_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
               "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def med(xs):
    return statistics.median(xs)


def summary(per_run: list[float], scale=1000.0, fmt="{:.1f}") -> str:
    m = med(per_run)
    return f"{fmt.format(m * scale)} [{fmt.format(min(per_run) * scale)}-{fmt.format(max(per_run) * scale)}]"


def child_cpu(cmd, env=None, stdout=subprocess.DEVNULL) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       env=env, timeout=120)
    w = time.perf_counter() - w0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # a crashed run would be a fast one: ksight check exits 0-3, anything else (or a traceback:
    # the tree is shared and edited while we measure) stops the bench
    if p.returncode not in (0, 1, 2, 3) or b"Traceback" in p.stderr:
        raise RuntimeError(f"{cmd[:3]} exited {p.returncode}: {p.stderr.decode()[-400:]}")
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), w


_ENRICHED_RULES: set | None = None
ENRICHED = {"runs": 0, "enriched": 0}  # check runs, and those where a live enrichment ran


def check_cpu(exe: str, env: dict) -> float:
    """CPU of one `check --json --interval 1` child. A run where a rule with a live enrichment
    fired (cpu.high-system: a 1 s `perf record -a`; tcp.retransmission-rate: a 1 s trace) also
    pays for that tracing: counted in ENRICHED, printed with the figures (a busy shared machine
    makes cpu.high-system fire; a quiet one does not)."""
    global _ENRICHED_RULES
    if _ENRICHED_RULES is None:
        from ksight.diagnose.engine import load_rules
        from ksight.diagnose.enrich import ENRICHMENTS

        load_rules(None)
        _ENRICHED_RULES = {r for e in ENRICHMENTS.values() for r in e.rules}
    with tempfile.TemporaryFile() as out:
        cpu = child_cpu([exe, "check", "--json", "--interval", "1"], env=env, stdout=out)[0]
        out.seek(0)
        try:
            ids = {f["id"] for f in json.load(out).get("findings", [])}
        except ValueError:
            ids = set()
    ENRICHED["runs"] += 1
    ENRICHED["enriched"] += bool(ids & _ENRICHED_RULES)
    return cpu


def enriched_note() -> str:
    n, e = ENRICHED["runs"], ENRICHED["enriched"]
    ENRICHED.update(runs=0, enriched=0)
    return f"   check runs with a live enrichment (its tracing's CPU included): {e} of {n}"


def cpu_of(fn) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


# ---- children --------------------------------------------------------------------------------

def spawn_to(target: int, children: list) -> None:
    have = len([n for n in os.listdir("/proc") if n.isdigit()])
    while have < target and len(children) < MAX_CHILDREN:
        children.append(subprocess.Popen(["sleep", str(CHILD_SECONDS)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        have += 1
    deadline = time.monotonic() + 30
    while children and time.monotonic() < deadline:
        try:
            if all(open(f"/proc/{c.pid}/comm").read().strip() == "sleep" for c in children[-5:]):
                break
        except OSError:
            pass
        time.sleep(0.05)


def kill_all(children: list) -> None:
    for c in children:
        if c.poll() is None:
            try:
                os.kill(c.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for c in children:
        try:
            c.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    children.clear()


# ---- snapshot vs floor vs node_exporter -------------------------------------------------------

class NodeExporter:
    def __init__(self):
        exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
        if not exe:
            raise RuntimeError("node_exporter not installed (apt-get install -y prometheus-node-exporter)")
        self.port = _free_port()
        self.proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.conn = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                self.scrape()
                return
            except OSError:
                self.conn = None
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("node_exporter did not answer")

    def scrape(self) -> bytes:
        self.conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip",
                                                      "Accept": PROM_ACCEPT})
        r = self.conn.getresponse()
        body = r.read()
        assert r.status == 200 and r.getheader("Content-Encoding") == "gzip", r.getheaders()
        self.last = body
        return body

    def ticks(self) -> int:
        return _proc_cpu_ticks(self.proc.pid)

    def stop(self):
        if self.conn is not None:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def snapshot_runs(runs: int, rounds: int, ne: NodeExporter | None) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    out = {"snap": [], "floor": [], "ne": [], "ratio": [], "vmalloc_lines": []}
    for _ in range(runs):
        rec = _SizedRecorder(LiveRoot())
        snap = take(rec)
        reads = rec.reads
        assert "vmallocinfo" not in snap.sources
        for _ in range(2):
            take(LiveRoot())
            _raw_reads(reads)
        s, f = [], []
        ne_ticks = 0
        for _ in range(rounds):
            s.append(cpu_of(lambda: take(LiveRoot())))
            f.append(cpu_of(lambda: _raw_reads(reads)))
            if ne:
                t0 = ne.ticks()
                ne.scrape()
                ne_ticks += ne.ticks() - t0
        out["snap"].append(med(s))
        out["floor"].append(med(f))
        out["ratio"].append(med(s) / med(f))
        if ne:
            out["ne"].append(ne_ticks / hz / rounds)
        with open("/proc/vmallocinfo") as fh:
            out["vmalloc_lines"].append(sum(1 for _ in fh))
    out["reads"] = len(reads)
    out["sources"] = len(snap.sources)
    return out


def part_snapshot(a) -> list:
    results = []
    ne = None
    children: list = []
    try:
        try:
            ne = NodeExporter()
            body = ne.last
            print(f"node_exporter on 127.0.0.1:{ne.port}: gzip body {len(body)} bytes, "
                  f"{len(gzip.decompress(body))} bytes plain")
        except RuntimeError as e:
            print(f"node_exporter: {e}; skipped")
        for label, extra in (("as is", 0), ("+~1,000 sleeping processes", 1000)):
            if extra:
                spawn_to(len([n for n in os.listdir("/proc") if n.isdigit()]) + extra, children)
            r = snapshot_runs(a.runs, a.rounds, ne)
            print(f"\nsnapshot ({label}): {r['sources']} sources, {r['reads']} reads; "
                  f"/proc/vmallocinfo lines {min(r['vmalloc_lines'])}-{max(r['vmalloc_lines'])}; "
                  f"{a.runs} runs x {a.rounds} interleaved rounds; ms CPU, median [range of runs]")
            print(f"   snapshot      {summary(r['snap'])}")
            print(f"   floor         {summary(r['floor'])}")
            print(f"   ratio         {summary(r['ratio'], 1, '{:.2f}')}x")
            results.append((f"snapshot <= 2.5x floor ({label})", all(x <= 2.5 for x in r["ratio"]),
                            summary(r["ratio"], 1, "{:.2f}") + "x"))
            if ne:
                print(f"   node_exporter {summary(r['ne'])} per scrape (gzip, keep-alive)")
                rel = [s / n for s, n in zip(r["snap"], r["ne"])]
                print(f"   snapshot / node_exporter {summary(rel, 1, '{:.2f}')}x")
                results.append((f"snapshot CPU < one node_exporter scrape ({label})",
                                all(x < 1 for x in rel), summary(rel, 1, "{:.2f}") + "x"))
    finally:
        kill_all(children)
        if ne:
            ne.stop()
    return results


# ---- memory cgroups ---------------------------------------------------------------------------

def _cgroup_parent() -> tuple[str, int]:
    with open("/proc/self/mountinfo") as f:
        mi = f.read().splitlines()
    for line in mi:
        pre, _, post = line.partition(" - ")
        fstype = post.split()[0]
        mnt = pre.split()[4]
        if fstype == "cgroup2" and "memory" in open(os.path.join(mnt, "cgroup.controllers")).read().split():
            return mnt, 2
    for line in mi:
        pre, _, post = line.partition(" - ")
        if post.split()[0] == "cgroup" and "memory" in post.split()[2].split(","):
            return pre.split()[4], 1
    raise RuntimeError("no memory cgroup controller")


def _cgroups_variant(a, mnt, version, plan, tasks: bool) -> dict:
    """One variant: 20 vs 500 child groups, empty (tasks=False) or each holding one sleeping
    process started inside it (moved in before exec, so its memory is charged there)."""
    parent = os.path.join(mnt, f"ksight-bench-{os.getpid()}")
    made: list[str] = []
    procs: dict[str, subprocess.Popen] = {}
    res = {n: {"check": [], "snap": [], "skipped": [], "peer": []} for n in (20, 500)}

    def drop(d):
        p = procs.pop(d, None)
        if p is not None:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
        os.rmdir(d)

    try:
        os.mkdir(parent)
        made.append(parent)
        if version == 2:
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")

        def ensure(n):
            while len(made) - 1 < n:
                d = os.path.join(parent, f"g{len(made) - 1:04d}")
                os.mkdir(d)
                made.append(d)
                if tasks:
                    procs[d] = subprocess.Popen(
                        ["sleep", str(CHILD_SECONDS)], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        preexec_fn=lambda d=d: open(os.path.join(d, "cgroup.procs"), "w").write(
                            str(os.getpid())))
            while len(made) - 1 > n:
                drop(made.pop())

        from ksight.sources import cgroup_memory

        for _ in range(a.runs):
            per = {n: {"check": [], "snap": [], "peer": []} for n in (20, 500)}
            for _ in range(a.cg_rounds):
                for n in (20, 500):
                    ensure(n)
                    cm = take(LiveRoot(), plan=plan).get("cgroup_memory")
                    res[n]["skipped"].append(cm.skipped_idle if cm is not None else None)
                    per[n]["snap"].append(med([cpu_of(lambda: take(LiveRoot(), plan=plan))
                                               for _ in range(5)]))
                    per[n]["check"].append(check_cpu(KSIGHT, a.env_cached))
                    if a.peer:
                        per[n]["peer"].append(check_cpu(a.peer, a.env_peer))
            for n in (20, 500):
                for k in ("check", "snap", "peer"):
                    if per[n][k]:
                        res[n][k].append(med(per[n][k]))
    finally:
        for d in reversed(made):
            try:
                drop(d)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"could not remove {d}: {e}", file=sys.stderr)
    return res


def part_cgroups(a) -> list:
    from ksight.diagnose.engine import plan_for

    mnt, version = _cgroup_parent()
    plan = plan_for(None, 1.0, owners_later=True)  # what `check --interval 1` samples
    others = len([1 for _dp, dn, _fn in os.walk(mnt) for _ in dn])
    print(f"\nmemory cgroups v{version} at {mnt}; groups outside ours: ~{others}; "
          f"check's plan reads {plan.cgroup_files}")
    out = []
    for tasks, label in ((False, "empty groups"), (True, "one sleeping process in each group")):
        res = _cgroups_variant(a, mnt, version, plan, tasks)
        rc = [b / s for s, b in zip(res[20]["check"], res[500]["check"])]
        rs = [b / s for s, b in zip(res[20]["snap"], res[500]["snap"])]
        print(f"  {label}: groups skipped as idle per snapshot: 20 -> {sorted(set(res[20]['skipped']))}, "
              f"500 -> {sorted(set(res[500]['skipped']))}")
        print(f"   check CPU ms   20 groups {summary(res[20]['check'])}   500 groups {summary(res[500]['check'])}"
              f"   ratio {summary(rc, 1, '{:.2f}')}x")
        print(f"   snapshot CPU ms 20 groups {summary(res[20]['snap'], 1000, '{:.2f}')}   500 groups "
              f"{summary(res[500]['snap'], 1000, '{:.2f}')}   ratio {summary(rs, 1, '{:.2f}')}x")
        if a.peer:
            rp = [b / s for s, b in zip(res[20]["peer"], res[500]["peer"])]
            print(f"   peer check CPU ms 20 groups {summary(res[20]['peer'])}   500 groups "
                  f"{summary(res[500]['peer'])}   ratio {summary(rp, 1, '{:.2f}')}x   ({a.peer})")
        print(enriched_note())
        out.append((f"check at 500 memory cgroups <= 1.5x check at 20 ({label})",
                    all(x <= 1.5 for x in rc), summary(rc, 1, "{:.2f}") + "x"))
    return out


# ---- check start-up ---------------------------------------------------------------------------

def part_check(a) -> list:
    nocache = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    nocache.pop("PYTHONPYCACHEPREFIX", None)
    res = {"cached": [], "nocache": [], "peer": []}
    for _ in range(a.runs):
        c, n, p = [], [], []
        for _ in range(a.check_rounds):
            c.append(check_cpu(KSIGHT, a.env_cached))
            n.append(check_cpu(KSIGHT, nocache))
            if a.peer:
                p.append(check_cpu(a.peer, a.env_peer))
        res["cached"].append(med(c))
        res["nocache"].append(med(n))
        if p:
            res["peer"].append(med(p))
    nproc = len([x for x in os.listdir("/proc") if x.isdigit()])
    print(f"\n`ksight check --json --interval 1` CPU ms ({a.runs} runs x {a.check_rounds}; "
          f"{nproc} processes)")
    print(f"   bytecode cached (as installed) {summary(res['cached'])}")
    print(f"   no bytecode cache (compiled every run) {summary(res['nocache'])}")
    if a.peer:
        print(f"   peer, bytecode cached {summary(res['peer'])}   ({a.peer})")
    print(enriched_note())
    return [("check --interval 1 < 80 ms CPU (bytecode cached)", all(x < 0.080 for x in res["cached"]),
             summary(res["cached"]) + " ms"),
            ("check --interval 1 < 80 ms CPU (no bytecode cache)", all(x < 0.080 for x in res["nocache"]),
             summary(res["nocache"]) + " ms")]


# ---- process scan -----------------------------------------------------------------------------

PSUTIL_SAME = ["pid", "name", "memory_info", "status", "num_threads", "uids", "num_ctx_switches"]


def part_procscan(a) -> list:
    import psutil

    from ksight.collect.processes import close_kept, scan

    children: list = []
    res = {k: [] for k in ("ksight", "psutil", "ksight_first", "psutil_first", "ps_cmd_wall",
                           "ps_cmd_cpu", "ps_full_ns", "ps_empty_ns", "ps_scan")}

    def psutil_first():
        psutil.process_iter.cache_clear()
        return [p.info for p in psutil.process_iter(PSUTIL_SAME)]
    ps = ["ps", "-eo", "pid,rss,vsz,comm"]
    try:
        spawn_to(1000, children)
        n = len(scan(LiveRoot())[0])
        [p.info for p in psutil.process_iter(PSUTIL_SAME)]
        for _ in range(a.runs):
            per = {k: [] for k in res}
            for _ in range(a.scan_rounds):
                close_kept()
                per["ksight_first"].append(cpu_of(lambda: scan(LiveRoot())))
                per["ksight"].append(cpu_of(lambda: scan(LiveRoot())))
                per["psutil"].append(cpu_of(lambda: [p.info for p in psutil.process_iter(PSUTIL_SAME)]))
                # after its repeated scan: cache_clear() then leaves psutil cold again
                per["psutil_first"].append(cpu_of(psutil_first))
                c, w = child_cpu(ps)
                per["ps_cmd_wall"].append(w)
                per["ps_cmd_cpu"].append(c)
                per["ps_full_ns"].append(child_cpu(["unshare", "-pf"] + ps)[0])
                per["ps_empty_ns"].append(child_cpu(["unshare", "-pf", "--mount-proc"] + ps)[0])
            for k in ("ksight", "psutil", "ksight_first", "psutil_first", "ps_cmd_wall", "ps_cmd_cpu",
                      "ps_full_ns", "ps_empty_ns"):
                res[k].append(med(per[k]))
            res["ps_scan"].append(med(per["ps_full_ns"]) - med(per["ps_empty_ns"]))
    finally:
        kill_all(children)
    ratio = [p / k for p, k in zip(res["psutil"], res["ksight"])]
    first = [p / k for p, k in zip(res["psutil"], res["ksight_first"])]
    first_cold = [p / k for p, k in zip(res["psutil_first"], res["ksight_first"])]
    print(f"\nprocess scan at {n} processes, ms CPU (ps command: wall too), median [range of {a.runs} runs]")
    print(f"   ksight scan (stat+status, C path)   {summary(res['ksight'])}")
    print(f"   psutil same data                    {summary(res['psutil'])}   psutil/ksight {summary(ratio, 1, '{:.2f}')}x")
    print(f"   ksight first scan (no kept fd)      {summary(res['ksight_first'])}   psutil/ksight-first "
          f"{summary(first, 1, '{:.2f}')}x")
    print(f"   psutil first scan (cache cleared)   {summary(res['psutil_first'])}   psutil-first/ksight-first "
          f"{summary(first_cold, 1, '{:.2f}')}x")
    print(f"   ps -eo pid,rss,vsz,comm (command)   {summary(res['ps_cmd_cpu'])} CPU, {summary(res['ps_cmd_wall'])} wall")
    print(f"   unshare -pf ps (all processes)      {summary(res['ps_full_ns'])}")
    print(f"   unshare -pf --mount-proc ps (itself) {summary(res['ps_empty_ns'])}")
    print(f"   ps per scan without start-up        {summary(res['ps_scan'])}   "
          f"ps-scan/ksight {summary([p / k for p, k in zip(res['ps_scan'], res['ksight'])], 1, '{:.2f}')}x")
    return [("1,000-process scan >= 2x faster than psutil", all(x >= 2 for x in ratio),
             summary(ratio, 1, "{:.2f}") + "x"),
            ("first scan >= 2x faster than psutil's repeated scan", all(x >= 2 for x in first),
             summary(first, 1, "{:.2f}") + "x"),
            ("first scan >= 2x faster than psutil's first scan", all(x >= 2 for x in first_cold),
             summary(first_cold, 1, "{:.2f}") + "x")]


# ---- processes + sockets ----------------------------------------------------------------------

def part_procsock(a) -> list:
    from ksight.diagnose.engine import plan_for

    children: list = []
    socks: list = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    base = plan_for(None)
    full = base.merge(Plan(processes=("stat", "status"), sockets=True))
    res = {"base": [], "full": [], "extra": []}
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 12000), max(hard, 12000)))
        spawn_to(1000, children)
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1024)
        socks.append(lst)
        addr = lst.getsockname()
        for _ in range(5000):
            c = socket.create_connection(addr, timeout=5)
            s, _ = lst.accept()
            socks += [c, s]
        snap = take(LiveRoot(), plan=full)
        print(f"\nprocesses {len(snap.processes)}, sockets {len(snap.sockets.sockets)} "
              f"(ours: {len(socks)} on 127.0.0.1)")
        for _ in range(a.runs):
            b, f = [], []
            for _ in range(a.ps_rounds):
                b.append(cpu_of(lambda: take(LiveRoot(), plan=base)))
                f.append(cpu_of(lambda: take(LiveRoot(), plan=full)))
            res["base"].append(med(b))
            res["full"].append(med(f))
            res["extra"].append(med(f) - med(b))
    finally:
        for s in socks:
            s.close()
        kill_all(children)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(f"   sample, check's plan            {summary(res['base'])} ms CPU")
    print(f"   + processes and sockets         {summary(res['full'])} ms CPU")
    print(f"   added                           {summary(res['extra'])} ms CPU")
    return [("processes+sockets add < 150 ms CPU per sample", all(x < 0.150 for x in res["extra"]),
             summary(res["extra"]) + " ms")]


PARTS = {"snapshot": part_snapshot, "cgroups": part_cgroups, "check": part_check,
         "procscan": part_procscan, "procsock": part_procsock}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", choices=[[]] + list(PARTS), default=[])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=40, help="snapshot rounds per run")
    ap.add_argument("--cg-rounds", type=int, default=3)
    ap.add_argument("--check-rounds", type=int, default=3)
    ap.add_argument("--scan-rounds", type=int, default=7)
    ap.add_argument("--ps-rounds", type=int, default=5)
    ap.add_argument("--peer", metavar="DIR", help="also run DIR/.venv/bin/ksight in check and "
                    "cgroups, interleaved (before/after)")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    pyc = tempfile.mkdtemp(prefix="ksight-pyc-")
    a.env_cached = dict(os.environ, PYTHONPYCACHEPREFIX=pyc)
    a.env_cached.pop("PYTHONDONTWRITEBYTECODE", None)
    # warm-up: fills the bytecode cache (as `pip install .` would); it must really run (a
    # window shorter than the default 1 s step is refused), so its failure stops the bench
    child_cpu([KSIGHT, "check", "--json", "--interval", "0.1", "--step", "0.1"], env=a.env_cached)
    if a.peer:
        a.peer = os.path.join(os.path.abspath(a.peer), ".venv", "bin", "ksight")
        a.env_peer = dict(a.env_cached, PYTHONPYCACHEPREFIX=tempfile.mkdtemp(prefix="ksight-pyc-peer-"))
        child_cpu([a.peer, "check", "--json", "--interval", "0.1", "--step", "0.1"], env=a.env_peer)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; nproc {os.cpu_count()}; kernel "
          f"{platform.release()}; python {platform.python_version()}; load {' '.join(load)}")
    results = []
    try:
        for name in a.parts or list(PARTS):
            results += PARTS[name](a)
    finally:
        shutil.rmtree(pyc, ignore_errors=True)
        if a.peer:
            shutil.rmtree(a.env_peer["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    with open("/proc/loadavg") as f:
        print(f"\nload at the end {' '.join(f.read().split()[:3])}")
    print("verdicts (MET only when it holds in every run)")
    for name, ok, detail in results:
        print(f"   {'MET' if ok else 'MISSED':7} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
