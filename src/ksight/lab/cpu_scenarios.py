"""Kernel-mode CPU faults, reproduced for real and bounded (see docs/lab.md, "CPU").

- cpu-syscall-loop: one process reads 256 KiB of /dev/zero with readv() in a tight loop,
  pinned to one CPU (the most idle one when it starts). Each call enters the kernel, which
  zero-fills the user buffer (iov_iter_zero): about nine tenths of the process's time is system
  time (sy), it is the top consumer of system time, and a profile shows the read path
  (entry_SYSCALL_64_after_hwframe, do_syscall_64, do_readv, vfs_readv, read_iter_zero,
  iov_iter_zero).
- cpu-softirq-loopback: two network namespaces joined by a veth pair (lab.netns.NetnsPair),
  each routing 198.19.255.0/24 to the other with forwarding on (namespace-local sysctls): a
  routing loop. A sender in one sends small UDP datagrams there; each crosses veth_xmit ->
  netif_rx -> the NET_RX softirq (ip_rcv, ip_forward) about 63 times before its TTL runs out,
  all on the sender's CPU: /proc/softirqs NET_RX climbs by tens of thousands a second and si
  takes most of that CPU (a plain sender/receiver pair gives only a third of it: the sender's
  own system-call work is as large as the receive path's).
- cpu-blocked-tasks: a chain of processes each suspended in vfork: every link calls
  clone(CLONE_VFORK) and its child does the same, down to the last one, which sleeps. A vfork
  parent waits in wait_for_vfork_done, TASK_KILLABLE (= TASK_UNINTERRUPTIBLE | TASK_WAKEKILL):
  state D in /proc/PID/stat, counted in the load average (task_contributes_to_load), but
  killable, holding no lock and no device. The load average climbs past the CPU count with no
  CPU used at all. (A throttled block device would give real I/O waits too, but needs a loop
  device and the io controller; the vfork chain works on any kernel.)

Every load process stops by itself at the run's deadline and dies with the lab
(PR_SET_PDEATHSIG; each link of the vfork chain sets it for itself, so killing the first link
brings the chain down in turn). Names include the lab's PID (namespaces ksl<pid>a/b).
"""

from __future__ import annotations

import os
import platform
import time

from ..errors import Unavailable
from . import register
from .scenario import Scenario, python_worker

# ------------------------------------------------------------------------------------------
# cpu-syscall-loop
SYSCALL_WORKER = r"""
import os, sys, time
cpu, size, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
if cpu >= 0:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        pass
fd = os.open("/dev/zero", os.O_RDONLY)
bufs = [bytearray(size)]
readv = os.readv
while time.monotonic() < end:
    for _ in range(100):
        readv(fd, bufs)
"""


def _pid_times(pid: int) -> tuple[int, int, str, int | None]:
    """(utime, stime, state, processor) ticks of a live process, through the project's parser."""
    from ..fs import LiveRoot
    from ..sources.proc_pid import stat

    s = stat.read(LiveRoot(), pid)
    return s.utime_ticks, s.stime_ticks, s.state, s.processor


def _cpu_times():
    from ..fs import LiveRoot
    from ..sources import stat

    return stat.read(LiveRoot())


def quietest_cpus() -> list[int]:
    """The CPUs this process may use, the most idle first (over 0.3 s of /proc/stat): a load
    pinned to a CPU that other programs keep busy would get only part of it."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []
    try:
        a = _cpu_times()
        time.sleep(0.3)
        b = _cpu_times()
    except (OSError, Unavailable):
        return allowed[::-1]
    def idle(c):
        if c not in a.cpus or c not in b.cpus:
            return -1.0
        return _share(a.cpus[c], b.cpus[c], "idle_ticks") + _share(a.cpus[c], b.cpus[c],
                                                                    "iowait_ticks")
    return sorted(allowed, key=lambda c: (-idle(c), -c))


def _share(a, b, field: str) -> float:
    """Percent of the interval between two CpuTimes spent in `field` (lab evidence only)."""
    total = b.total_ticks - a.total_ticks
    if total <= 0:
        return 0.0
    return 100.0 * ((getattr(b, field) or 0) - (getattr(a, field) or 0)) / total


class SyscallLoop(Scenario):
    name = "cpu-syscall-loop"
    area = "cpu"
    summary = ("one process reads 256 KiB of /dev/zero with readv() in a tight loop, pinned to "
               "one CPU: the kernel zero-fills each buffer, ~90% of that CPU is system time")
    expects = ("cpu.high-system",)
    bounds = "one process, one CPU, no memory or disk beyond a 256 KiB buffer"
    default_seconds = 10.0
    warmup_s = 1.0
    size = 256 << 10   # 64 KiB: ~80% system time; 256 KiB: ~94% (fewer Python iterations)

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        if not os.path.exists("/dev/zero"):
            return False, "/dev/zero is missing"
        return True, ""

    def start(self, run, stack):
        import subprocess

        from .. import pids

        cpu = (quietest_cpus() or [-1])[0]
        p = subprocess.Popen(python_worker(SYSCALL_WORKER, cpu, self.size, run.seconds),
                             preexec_fn=pids.die_with_parent)
        run.procs.append(p)
        run.info.update(pid=p.pid, cpu=cpu)
        run.info["last"] = (_pid_times(p.pid), _cpu_times(), time.monotonic())

    def evidence(self, run):
        pid, cpu = run.info["pid"], run.info["cpu"]
        (u0, s0, _, _), st0, t0 = run.info["last"]
        now = (_pid_times(pid), _cpu_times(), time.monotonic())
        run.info["last"] = now
        (u1, s1, state, proc), st1, t1 = now
        hz = os.sysconf("SC_CLK_TCK")
        dt = max(t1 - t0, 1e-3)
        line = (f"pid {pid} ({state}, on CPU {proc}): user {100 * (u1 - u0) / hz / dt:3.0f}%  "
                f"system {100 * (s1 - s0) / hz / dt:3.0f}% of a CPU")
        if cpu in st0.cpus and cpu in st1.cpus:
            line += f"   CPU {cpu}: sy {_share(st0.cpus[cpu], st1.cpus[cpu], 'system_ticks'):3.0f}%"
        return line + f"   all CPUs: sy {_share(st0.cpu_total, st1.cpu_total, 'system_ticks'):3.0f}%"


# ------------------------------------------------------------------------------------------
# cpu-softirq-loopback
# 198.19.255.0/24: in the RFC 2544 benchmarking range, like the pair's own addresses; routed
# from each namespace to the other, so it never leaves them
LOOP_NET = "198.19.255.0/24"
LOOP_DST = "198.19.255.1"

UDP_SENDER = r"""
import os, socket, sys, time
addr, port, size, ttl, cpu, seconds = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                       int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
end = time.monotonic() + seconds
if cpu >= 0:
    try:
        os.sched_setaffinity(0, {cpu})   # the NET_RX work lands on the sender's CPU
    except OSError:
        pass
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
s.connect((addr, port))
msg = b"k" * size
send = s.send
while time.monotonic() < end:
    for _ in range(100):
        try:
            send(msg)
        except OSError:   # ENOBUFS, EHOSTUNREACH from an ICMP error: keep going
            pass
"""

# per-namespace sysctls (they live and die with the namespace): forward, accept packets whose
# source is one of our own addresses coming back, no redirects, no reverse-path filter
NETNS_SYSCTLS = r"""
import sys
dev = sys.argv[1]
for path, value in (("ip_forward", "1"), (f"conf/{dev}/accept_local", "1"),
                    ("conf/all/send_redirects", "0"), (f"conf/{dev}/send_redirects", "0"),
                    ("conf/all/rp_filter", "0"), (f"conf/{dev}/rp_filter", "0")):
    with open("/proc/sys/net/ipv4/" + path, "w") as f:
        f.write(value)
"""


def _softirqs() -> dict[str, int]:
    from ..fs import LiveRoot
    from ..sources import softirqs

    s = softirqs.read(LiveRoot())
    return {k: s.total(k) or 0 for k in ("NET_RX", "NET_TX")}


class SoftirqLoopback(Scenario):
    name = "cpu-softirq-loopback"
    area = "cpu"
    summary = ("64-byte UDP datagrams sent into a routing loop between two network namespaces "
               "of the lab's own (veth pair): each is forwarded back and forth until its TTL "
               "runs out, all of it in the NET_RX softirq of the sender's CPU")
    expects = ("cpu.high-softirq",)
    bounds = ("one sending process on one CPU, two netns with one veth pair and their own "
              "sysctls (deleted with them), no disk")
    default_seconds = 10.0
    warmup_s = 1.5
    port = 9
    size = 64
    ttl = 64

    def available(self):
        import shutil

        ok, why = super().available()
        if not ok:
            return ok, why
        if shutil.which("ip") is None:
            return False, "the `ip` command is missing (install iproute2)"
        return True, ""

    def start(self, run, stack):
        import subprocess
        import sys

        from .. import pids
        from .netns import NetnsPair, _ip

        n = stack.enter_context(NetnsPair())
        for ns, dev, via in ((n.a, n.dev_a, n.addr_b), (n.b, n.dev_b, n.addr_a)):
            r = n.run(ns, [sys.executable, "-I", "-S", "-c", NETNS_SYSCTLS, dev], timeout=10)
            if r.returncode != 0:
                raise Unavailable(f"lab scenario {self.name}",
                                  f"cannot set the namespace's sysctls: {r.stderr.strip()[-200:]}")
            _ip("-n", ns, "route", "add", LOOP_NET, "via", via)
        cpu = (quietest_cpus() or [-1])[0]
        run.info.update(netns=(n.a, n.b), cpu=cpu)
        p = n.popen(n.a, python_worker(UDP_SENDER, LOOP_DST, self.port, self.size, self.ttl, cpu,
                                       run.seconds),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    preexec_fn=pids.die_with_parent)
        run.procs.append(p)
        run.info["sender"] = p.pid
        run.info["last"] = (_softirqs(), _cpu_times(), time.monotonic())

    def evidence(self, run):
        s0, st0, t0 = run.info["last"]
        now = (_softirqs(), _cpu_times(), time.monotonic())
        run.info["last"] = now
        s1, st1, t1 = now
        dt = max(t1 - t0, 1e-3)
        per_cpu = "  ".join(f"CPU{c} si {_share(st0.cpus[c], st1.cpus[c], 'softirq_ticks'):3.0f}%"
                            for c in sorted(st1.cpus) if c in st0.cpus)
        return (f"NET_RX {(s1['NET_RX'] - s0['NET_RX']) / dt:8.0f}/s  "
                f"NET_TX {(s1['NET_TX'] - s0['NET_TX']) / dt:6.0f}/s   {per_cpu}")


# ------------------------------------------------------------------------------------------
# cpu-blocked-tasks
# clone(2) numbers; the flags go first on these architectures, and with the other arguments 0
# (no new stack, no TLS, no TID pointers) the order of the rest does not matter
SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "ppc64le": 120, "ppc64": 120,
             "loongarch64": 220}

VFORK_WORKER = r"""
import ctypes, os, sys, time
nr, links, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
CLONE_VFORK, SIGCHLD, PR_SET_PDEATHSIG, SIGKILL = 0x4000, 17, 1, 9
depth = 0
while depth < links and time.monotonic() < end:
    parent = os.getpid()
    # no CLONE_VM: the child gets its own copy of memory (like fork), and the caller is
    # suspended (D state, killable) until the child exits or execs
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(CLONE_VFORK | SIGCHLD),
                       ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    if pid != 0:
        os._exit(0 if pid > 0 else 1)   # resumed: our child is gone (or clone failed); leave
    libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)                     # the parent died before we asked: no orphans
    depth += 1
while time.monotonic() < end:
    time.sleep(0.2)
os._exit(0)
"""


def _chain(top: int) -> list[int]:
    """PIDs of the chain below (and including) `top`, following /proc/PID/task/PID/children."""
    out, pid = [], top
    for _ in range(10_000):
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            break
        if not kids:
            break
        pid = kids[0]
    return out


def _states(pids: list[int]) -> dict[int, str]:
    from ..errors import Unavailable as U
    from ..fs import LiveRoot
    from ..sources.proc_pid import stat

    root, out = LiveRoot(), {}
    for p in pids:
        try:
            out[p] = stat.read(root, p).state
        except U:
            pass
    return out


class BlockedTasks(Scenario):
    name = "cpu-blocked-tasks"
    area = "cpu"
    summary = ("a chain of processes each suspended in vfork (wait_for_vfork_done): D state, "
               "counted in the load average, no CPU used")
    expects = ("cpu.load-high",)
    default_seconds = 10.0
    max_links = 512

    @property
    def bounds(self) -> str:
        return (f"{self.links()} processes of this Python (copy-on-write, ~0.35 MiB each), no "
                "CPU, no disk; all killable")

    @classmethod
    def links(cls) -> int:
        """16 per CPU (32 at least, 512 at most)."""
        return min(cls.max_links, max(32, 16 * (os.cpu_count() or 1)))

    @property
    def warmup_s(self) -> float:
        """Long enough for the 1-minute load average to show the D tasks at twice the CPU count:
        it is updated every 5 s, each time moving 8 % (1 - e^-5/60) of the way to the number of
        runnable + D tasks. 2 updates (12 s) for up to 32 CPUs; more, up to 60 s, above."""
        import math

        need = 2.0 * (os.cpu_count() or 1) / self.links()
        if need >= 1:
            return 60.0
        k = math.ceil(math.log(1 - need) / math.log(math.exp(-5 / 60)))
        return min(60.0, 5.0 * k + 2.0)

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        if platform.machine() not in SYS_CLONE:
            return False, (f"clone(2) is called by number, known here for "
                           f"{', '.join(sorted(SYS_CLONE))}, not {platform.machine()}")
        return True, ""

    def start(self, run, stack):
        import subprocess

        from .. import pids

        nr = SYS_CLONE[platform.machine()]
        p = subprocess.Popen(python_worker(VFORK_WORKER, nr, self.links(), run.seconds),
                             preexec_fn=pids.die_with_parent)
        run.procs.append(p)
        run.info["pid"] = p.pid
        run.info["chain"] = []
        stack.callback(self._end_chain, run)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chain = _chain(p.pid)
            run.info["chain"] = [(c, pids.start_ticks(c)) for c in chain]
            if len(chain) > self.links() or p.poll() is not None:
                break
            time.sleep(0.05)
        if p.poll() is not None:
            raise Unavailable(f"lab scenario {self.name}",
                              f"the vfork chain ended at once (exit {p.returncode})")

    @staticmethod
    def _end_chain(run) -> None:
        """SIGKILL every link still running (by PID, only if it is still the same process)."""
        import signal

        from .. import pids

        chain = run.info.get("chain") or []
        for pid, start in chain:
            if start is not None and pids.start_ticks(pid) == start and not pids.is_zombie(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 10
        while time.monotonic() < end and any(
                s is not None and pids.start_ticks(p) == s and not pids.is_zombie(p)
                for p, s in chain):
            time.sleep(0.05)

    def evidence(self, run):
        from ..fs import LiveRoot
        from ..sources import loadavg

        chain = [p for p, _ in run.info.get("chain") or []]
        st = _states(chain)
        d = sum(1 for s in st.values() if s == "D")
        la = loadavg.read(LiveRoot())
        return (f"{d} of {len(st)} chain processes in D state (vfork wait)   "
                f"load average {la.load1:.2f} {la.load5:.2f} {la.load15:.2f} on "
                f"{os.cpu_count()} CPUs")


# ------------------------------------------------------------------------------------------
# cpu-iowait
IOWAIT_READER = r"""
import mmap, os, random, sys, time
dev, size, cpu, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + seconds
if cpu >= 0:
    try:
        os.sched_setaffinity(0, {cpu})   # the wait is charged to the CPU the reader slept on
    except OSError:
        pass
fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)                # page-aligned, as O_DIRECT wants
blocks = size // 4096
rnd = random.Random(os.getpid())
while time.monotonic() < end:
    os.preadv(fd, [buf], 4096 * rnd.randrange(blocks))   # synchronous: io_schedule until done
"""


def _disk(name: str):
    """(reads completed, io_ms) of one device in /proc/diskstats (project parser)."""
    from ..fs import LiveRoot
    from ..sources import diskstats

    d = diskstats.read(LiveRoot()).devices.get(name)
    return (d.reads_completed or 0, d.io_ms or 0) if d is not None else (0, 0)


class IowaitReaders(Scenario):
    name = "cpu-iowait"
    area = "cpu"
    riops = 20                # reads a second the lower device serves (all readers together)
    size = 64 << 20           # sparse: the reads are of holes, no disk I/O
    summary = (f"one reader per CPU (two at most), each pinned to a CPU, reads 4 KiB blocks with "
               f"O_DIRECT from a loop device stacked on a second one whose reads the block "
               f"throttle holds to {riops}/s: the readers wait in io_schedule (D state), their "
               f"idle CPUs count the time as iowait, and the upper device is busy all along")
    expects = ("cpu.high-iowait",)
    default_seconds = 10.0
    warmup_s = 1.0

    @classmethod
    def readers(cls) -> int:
        """One per CPU, two at most: iowait is charged only to an idle CPU whose last task
        waits for I/O, so more readers than CPUs add nothing but waiting."""
        return max(1, min(2, os.cpu_count() or 1))

    @property
    def bounds(self) -> str:
        return (f"{self.readers()} reader(s), {self.riops} reads of 4 KiB a second in all, no "
                f"disk I/O (two loop devices over a {self.size >> 20} MiB sparse file), one "
                "throttle rule on the lower loop device only")

    def available(self):
        import shutil

        ok, why = super().available()
        if not ok:
            return ok, why
        if shutil.which("losetup") is None:
            return False, "losetup is missing (install util-linux)"
        if not os.path.exists("/dev/loop-control"):
            return False, "no loop devices (/dev/loop-control is missing)"
        from .blockdev import detect_throttle

        try:
            detect_throttle()
        except Unavailable as exc:
            return False, exc.reason
        return True, ""

    def start(self, run, stack):
        from .blockdev import IoThrottle, LoopDev

        lower = stack.enter_context(LoopDev(self.size, name=self.name))
        upper = stack.enter_context(LoopDev(over=lower))
        th = stack.enter_context(IoThrottle(lower.majmin, riops=self.riops, name=self.name))
        cpus = quietest_cpus()[:self.readers()] or [-1]
        readers = []
        for cpu in cpus:
            p = th.spawn(python_worker(IOWAIT_READER, upper.device, self.size, cpu, run.seconds))
            run.procs.append(p)
            readers.append(p.pid)
        disk = os.path.basename(upper.device)
        run.info.update(readers=readers, cpus=cpus, device=upper.device, disk=disk,
                        lower=lower.device, throttle=f"v{th.version} {' '.join(th.rules())}")
        run.info["last"] = (_cpu_times(), _disk(disk), time.monotonic())

    def evidence(self, run):
        from ..fs import LiveRoot
        from ..sources import stat

        st0, d0, t0 = run.info["last"]
        now = (_cpu_times(), _disk(run.info["disk"]), time.monotonic())
        run.info["last"] = now
        st1, d1, t1 = now
        dt = max(t1 - t0, 1e-3)
        cpus = [c for c in run.info["cpus"] if c >= 0] or sorted(st1.cpus)
        per_cpu = "  ".join(f"CPU{c} iowait {_share(st0.cpus[c], st1.cpus[c], 'iowait_ticks'):3.0f}%"
                            for c in cpus if c in st0.cpus and c in st1.cpus)
        states = "".join((_states([p]).get(p) or "-") for p in run.info["readers"])
        blocked = stat.read(LiveRoot()).procs_blocked
        return (f"{per_cpu}  all {_share(st0.cpu_total, st1.cpu_total, 'iowait_ticks'):3.0f}%   "
                f"readers {states}  procs_blocked {blocked}   {run.info['disk']}: "
                f"{(d1[0] - d0[0]) / dt:3.0f} reads/s, busy {min(100.0, (d1[1] - d0[1]) / dt / 10):3.0f}%")


for _sc in (SyscallLoop(), SoftirqLoopback(), BlockedTasks(), IowaitReaders()):
    register(_sc)
