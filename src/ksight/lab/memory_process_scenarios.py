"""Processes that grow, reproduced for real and bounded (see docs/lab.md, "memory: processes").

- anon-mapping-growth: a process maps (and touches) a fixed-size anonymous mapping every second,
  each with a PROT_NONE guard page so it stays its own mapping: RSS and the mapping count climb.
- heap-leak: a process mallocs many small blocks (1 KiB) and never frees them: [heap] grows.
- address-space-reserve: a process reserves 64 MiB of address space (MAP_NORESERVE) four times
  a second and never touches it: VIRT climbs, RES stays put.

Each load is a tiny Python program (this interpreter, ctypes calling libc mmap/malloc) in a
memory cgroup of its own (so a bug in it cannot take the machine's memory), stopping by itself at
the run's deadline and at its size cap; it dies with the lab (PR_SET_PDEATHSIG, via
MemoryCgroup.spawn), and the group is removed afterwards.
"""

from __future__ import annotations

from ..errors import Unavailable
from . import register
from .scenario import Scenario, python_worker

MiB = 1 << 20

# libc through ctypes: the calls a leaking C program makes, with their real sizes and flags
_LIBC = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
PROT_NONE, PROT_RW = 0, 3
MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x20, 0x4000
FAILED = ctypes.c_void_p(-1).value
PAGE = 4096
"""

ANON_WORKER = _LIBC + r"""
step, cap, period, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
start = time.monotonic()
end = start + seconds
made = 0
while time.monotonic() < end and made + step <= cap:
    p = libc.mmap(None, step + PAGE, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if p is None or p == FAILED:
        break
    libc.mprotect(p + step, PAGE, PROT_NONE)  # a guard page: the next mapping cannot merge
    libc.memset(p, 0x5a, step)                # touched: resident, anonymous
    made += step
    time.sleep(max(0.0, start + (made // step) * period - time.monotonic()))
while time.monotonic() < end:
    time.sleep(0.2)
"""

HEAP_WORKER = _LIBC + r"""
block, rate, cap, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
start = time.monotonic()
end = start + seconds
made = 0
tick = 0.1
while time.monotonic() < end and made < cap:
    for _ in range(max(1, int(rate * tick) // block)):
        p = libc.malloc(block)
        if not p:
            break
        libc.memset(p, 0x5a, block)
        made += block
    time.sleep(tick)
while time.monotonic() < end:
    time.sleep(0.2)
"""

RESERVE_WORKER = _LIBC + r"""
step, cap, period, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
start = time.monotonic()
end = start + seconds
made = 0
while time.monotonic() < end and made + step <= cap:
    p = libc.mmap(None, step, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if p is None or p == FAILED:  # vm.overcommit_memory=2 ignores MAP_NORESERVE: stop there
        break
    made += step
    time.sleep(max(0.0, start + (made // step) * period - time.monotonic()))
while time.monotonic() < end:
    time.sleep(0.2)
"""


def _status(pid: int) -> dict[str, int]:
    """VmSize, VmRSS, RssAnon (kB) of a live process, through the project's parser."""
    from ..fs import LiveRoot
    from ..sources.proc_pid import status

    s = status.parse(LiveRoot().read_text(f"proc/{pid}/status"))
    return {"VmSize": s.vm_size_kb or 0, "VmRSS": s.vm_rss_kb or 0, "RssAnon": s.rss_anon_kb or 0}


def _vmas(pid: int) -> int:
    from ..fs import LiveRoot

    return sum(1 for line in LiveRoot().read_text(f"proc/{pid}/maps").splitlines() if line)


class _GrowingProcess(Scenario):
    """One load process in a memory cgroup of its own."""

    area = "memory"
    warmup_s = 1.0
    default_seconds = 12.0
    limit_bytes = 256 * MiB
    worker = ""

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        from .cgroup import find_memory_controller

        try:
            find_memory_controller()
        except Unavailable as exc:
            return False, exc.reason
        try:
            import ctypes  # noqa: F401
        except ImportError as exc:
            return False, f"ctypes is missing from this Python: {exc}"
        return True, ""

    def args(self, run) -> tuple:
        raise NotImplementedError

    def start(self, run, stack):
        from .cgroup import MemoryCgroup

        cg = stack.enter_context(MemoryCgroup(self.name, max_bytes=self.limit_bytes))
        run.info["cgroup"] = cg
        p = cg.spawn(python_worker(self.worker, *self.args(run)))
        run.procs.append(p)
        run.info["pid"] = p.pid

    def evidence(self, run):
        pid = run.info["pid"]
        s = _status(pid)
        return (f"pid {pid}: VIRT {s['VmSize'] / 1024:7.1f} MiB  RES {s['VmRSS'] / 1024:6.1f} MiB  "
                f"RssAnon {s['RssAnon'] / 1024:6.1f} MiB  mappings {_vmas(pid)}")


class AnonMappingGrowth(_GrowingProcess):
    name = "anon-mapping-growth"
    summary = ("a process maps and touches a 4 MiB anonymous mapping every second and never "
               "unmaps it (each with a guard page: one more mapping each time)")
    expects = ("memory.leak-suspect", "memory.vma-growth")
    worker = ANON_WORKER
    step_bytes = 4 * MiB
    cap_bytes = 128 * MiB
    bounds = "4 MiB/s, at most 128 MiB, in a memory cgroup limited to 256 MiB"

    def args(self, run):
        return self.step_bytes, self.cap_bytes, 1.0, run.seconds


class HeapLeak(_GrowingProcess):
    name = "heap-leak"
    summary = "a process mallocs 1 KiB blocks (4 MiB/s) and never frees them: [heap] grows"
    expects = ("memory.leak-suspect",)
    worker = HEAP_WORKER
    block_bytes = 1024
    rate_bytes = 4 * MiB
    cap_bytes = 128 * MiB
    bounds = "4 MiB/s of 1 KiB blocks, at most 128 MiB, in a memory cgroup limited to 256 MiB"

    def args(self, run):
        return self.block_bytes, self.rate_bytes, self.cap_bytes, run.seconds


class AddressSpaceReserve(_GrowingProcess):
    name = "address-space-reserve"
    summary = ("a process reserves 64 MiB of address space four times a second "
               "(MAP_NORESERVE) and never touches it: VIRT grows, RES does not")
    expects = ("memory.virtual-leak",)
    worker = RESERVE_WORKER
    step_bytes = 64 * MiB
    cap_bytes = 16 * 1024 * MiB
    bounds = ("256 MiB/s of address space, at most 16 GiB, none of it touched (no RAM, no "
              "commit charge); memory cgroup limited to 256 MiB")

    def args(self, run):
        return self.step_bytes, self.cap_bytes, 0.25, run.seconds


for _sc in (AnonMappingGrowth(), HeapLeak(), AddressSpaceReserve()):
    register(_sc)
