"""`ksight profile`: what the CPUs run, from perf's CPU samples (data only; text in
render/profile_text.py).

`build(samples, ...)` is pure: perf samples (ksight.trace.perf.Sample, leaf first) in, a
`Profile` out: where the samples fell (kernel, user, idle), the hottest kernel functions and all
functions (self = the function was the leaf; total = it was anywhere on the stack), the hottest
stacks, the processes sampled, and the folded stacks for flame graphs.

`requirements()` says what profiling needs here and what is missing (perf installed and
runnable, root, perf_event_paranoid, kptr_restrict), with the fix for each. `sample()` runs
perf (live only, through ksight.trace.perf.Record: bounded, recorded by PID, stopped on exit).

A sample is idle when it lands in the idle task (PID 0) inside the idle loop: the CPU had
nothing to run. Idle samples are counted but left out of the hottest lists and the shares of
work; an interrupt or softirq that ran on an idle CPU is work, and stays in.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

DEFAULT_FREQ = 99
# user-space pseudo-DSOs perf prints in brackets; any other bracketed DSO is the kernel or a
# kernel module ("[kernel.kallsyms]", "[nf_tables]", "[kvm]")
_USER_BRACKETS = {"[unknown]", "[vdso]", "[vsyscall]", "[vectors]", "[uprobes]", "[stack]",
                  "[heap]", "[anon]", "[jit]"}
_IDLE_LEAF = re.compile(r"idle|halt|mwait|cpu_startup_entry|poll_idle|acpi_safe_halt|"
                        r"intel_idle|arch_cpu_idle|cpuidle")


def is_kernel(dso: str) -> bool:
    return dso.startswith("[") and dso.endswith("]") and dso not in _USER_BRACKETS


def is_idle(s) -> bool:
    """The idle task in its idle loop (not an interrupt it took)."""
    if s.pid != 0:
        return False
    return not s.stack or bool(_IDLE_LEAF.search(s.stack[0][0]))


@dataclass(frozen=True)
class Func:
    function: str
    dso: str
    kernel: bool
    self_samples: int        # samples in which it was the leaf (running itself)
    total_samples: int       # samples in which it was anywhere on the stack (itself + callees)


@dataclass(frozen=True)
class HotStack:
    comm: str
    frames: tuple[str, ...]  # root first, leaf last
    samples: int


@dataclass(frozen=True)
class ProcSamples:
    pid: int
    comm: str
    samples: int
    kernel_samples: int


@dataclass(frozen=True)
class Profile:
    seconds: float
    freq: int
    target: str                       # "all CPUs" or "PID N"
    kernel_only: bool
    samples: int                      # every sample taken
    idle_samples: int
    kernel_samples: int               # work samples whose leaf was in the kernel
    user_samples: int                 # work samples whose leaf was in user space
    unknown_kernel_samples: int       # kernel leaf without a symbol (kptr_restrict, no kallsyms)
    kernel_functions: tuple[Func, ...]
    functions: tuple[Func, ...]       # kernel and user together (empty with kernel_only)
    stacks: tuple[HotStack, ...]
    processes: tuple[ProcSamples, ...]
    folded: dict[str, int] = field(default_factory=dict)   # 'comm;root;...;leaf' -> samples
    lost: int = 0
    stopped_early: bool = False
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def work_samples(self) -> int:
        return self.kernel_samples + self.user_samples


def _frames(s, kernel_only: bool) -> list[tuple[str, str]]:
    """The sample's stack, leaf first; kernel frames only with kernel_only."""
    if not kernel_only:
        return list(s.stack)
    return [(f, d) for f, d in s.stack if is_kernel(d)]


def fold(samples, *, kernel_only: bool = False, idle: bool = True) -> Counter:
    """Folded stacks ('comm;root;...;leaf' -> samples), ';' in names replaced by ':'.
    kernel_only keeps the kernel frames (a sample that ran in user space becomes
    'comm;[user]'); idle=False leaves idle samples out."""
    c: Counter = Counter()
    for s in samples:
        if not idle and is_idle(s):
            continue
        fr = _frames(s, kernel_only)
        names = [f.replace(";", ":") for f, _ in reversed(fr)]
        if not names:
            names = ["[user]"] if kernel_only and s.stack else ["[no stack]"]
        c[";".join([(s.comm or "?").replace(";", ":"), *names])] += 1
    return c


def build(samples, *, seconds: float, freq: int = DEFAULT_FREQ, pid: int | None = None,
          kernel_only: bool = False, top: int = 25, lost: int = 0,
          stopped_early: bool = False, notes=()) -> Profile:
    samples = list(samples)
    idle = kernel = user = unknown_k = 0
    self_c: Counter = Counter()
    total_c: Counter = Counter()
    dso_of: dict[tuple[str, bool], str] = {}
    stacks: Counter = Counter()
    procs: dict[int, list] = {}
    for s in samples:
        if is_idle(s):
            idle += 1
            continue
        leaf_k = bool(s.stack) and is_kernel(s.stack[0][1])
        kernel += leaf_k
        user += not leaf_k
        if leaf_k and s.stack[0][0] in ("[unknown]", ""):
            unknown_k += 1
        p = procs.setdefault(s.pid, [s.comm, 0, 0])
        p[1] += 1
        p[2] += leaf_k
        fr = _frames(s, kernel_only)
        # keyed by (name, kernel?): "[unknown]" may be a user frame or a hidden kernel one
        if fr and (leaf_k or not kernel_only):
            self_c[(fr[0][0], is_kernel(fr[0][1]))] += 1
        seen = set()
        for f, d in fr:
            key = (f, is_kernel(d))
            dso_of.setdefault(key, d)
            if key not in seen:
                seen.add(key)
                total_c[key] += 1
        if fr:
            stacks[(s.comm, tuple(f for f, _ in reversed(fr)))] += 1
    funcs = [Func(f, dso_of.get((f, k), ""), k, n, total_c[(f, k)])
             for (f, k), n in self_c.items() if n > 0]
    funcs.sort(key=lambda x: (-x.self_samples, -x.total_samples, x.function))
    kfuncs = tuple(f for f in funcs if f.kernel)[:top]
    procs_t = sorted((ProcSamples(p, c, n, k) for p, (c, n, k) in procs.items()),
                     key=lambda x: (-x.samples, x.pid))
    out_notes = list(notes)
    if unknown_k and unknown_k >= 0.2 * max(1, kernel):
        out_notes.append(f"{unknown_k} kernel samples have no symbol: kernel addresses are "
                         "hidden (kernel.kptr_restrict) or /proc/kallsyms is unreadable; run as "
                         "root, or `sysctl -w kernel.kptr_restrict=0`")
    if not kernel_only and user and not any(
            len(s.stack) > 1 for s in samples if s.stack and not is_kernel(s.stack[0][1])):
        out_notes.append("user stacks are one frame deep: programs built without frame "
                         "pointers cannot be walked with --call-graph fp")
    return Profile(
        seconds=round(seconds, 3), freq=freq,
        target="all CPUs" if pid is None else f"PID {pid}", kernel_only=kernel_only,
        samples=len(samples), idle_samples=idle, kernel_samples=kernel, user_samples=user,
        unknown_kernel_samples=unknown_k, kernel_functions=kfuncs,
        functions=() if kernel_only else tuple(funcs[:top]),
        stacks=tuple(HotStack(c, fr, n) for (c, fr), n in
                     sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0]))[:10]),
        processes=tuple(procs_t[:15]),
        folded=dict(fold(samples, kernel_only=kernel_only, idle=False).most_common(2000)),
        lost=lost, stopped_early=stopped_early, notes=tuple(out_notes))


# --- what profiling needs here ------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    what: str      # what is missing
    fix: str       # how to get it


def requirements(*, perf_ok: tuple[bool, str], euid: int, paranoid: int | None,
                 kptr_restrict: int | None, pid: int | None = None) -> list[Need]:
    """What stops profiling here (pure: the caller reads perf, the euid and the sysctls).
    ksight profile runs perf as root (it records what it starts in /run/ksight so that a
    killed run's perf is ended by the next command); without root, say what a user needs to
    run perf by hand."""
    out = []
    ok, why = perf_ok
    if not ok:
        out.append(Need(why, "install perf: Debian `apt install linux-perf`, Ubuntu "
                             "`apt install linux-tools-$(uname -r)`, Fedora/RHEL `dnf install perf`"))
    if euid != 0:
        level = "unknown" if paranoid is None else str(paranoid)
        need = -1 if pid is None else 1
        out.append(Need(
            f"not root (kernel.perf_event_paranoid is {level})",
            "run `sudo ksight profile`; without root, perf itself can sample "
            + ("all CPUs" if pid is None else "another user's process in the kernel")
            + f" only with `sysctl -w kernel.perf_event_paranoid={need}` (or CAP_PERFMON)"
            + ("" if not kptr_restrict else
               ", and kernel symbols need `sysctl -w kernel.kptr_restrict=0`")))
    return out


def read_requirements(pid: int | None = None) -> list[Need]:
    import os

    from ..errors import Unavailable
    from ..fs import LiveRoot
    from ..trace import perf

    root = LiveRoot()

    def sysctl(name):
        try:
            return int(root.read_sysctl(name).split()[0])
        except (Unavailable, ValueError, IndexError):
            return None

    return requirements(perf_ok=perf.available(), euid=os.geteuid(),
                        paranoid=sysctl("kernel.perf_event_paranoid"),
                        kptr_restrict=sysctl("kernel.kptr_restrict"), pid=pid)


# --- sampling (live) ----------------------------------------------------------------------------
def _record_class():
    from ..trace.perf import Record

    class ProfileRecord(Record):
        """perf.Record, with --all-kernel for kernel-only profiles (perf then takes no user
        stacks at all: cheaper, and nothing of user space is sampled)."""

        def __init__(self, *a, kernel_only: bool = False, **kw):
            super().__init__(*a, **kw)
            self.kernel_only = kernel_only

        def argv(self, out):
            a = super().argv(out)
            if self.kernel_only:
                a.insert(a.index("--call-graph"), "--all-kernel")
            return a

    return ProfileRecord


@dataclass
class Sampling:
    """The outcome of sample(): perf's samples and how the run went."""
    samples: list
    seconds: float
    lost: int
    stopped_early: bool
    stderr: str


def sample(seconds: float, *, pid: int | None = None, freq: int = DEFAULT_FREQ,
           kernel_only: bool = False, stop: threading.Event | None = None,
           progress=None) -> Sampling:
    """Sample for `seconds` (or until `stop` is set) with perf; progress(elapsed, seconds) is
    called about once a second. perf is ended (SIGINT to the process group it was started in,
    SIGKILL if it hangs) before this returns, whatever happens."""
    from ..errors import Unavailable

    stop = stop or threading.Event()
    rec = _record_class()(seconds=seconds, freq=freq, pid=pid, kernel_only=kernel_only)
    stopped = False
    with rec:
        t_on = time.monotonic()   # perf has opened its events (Record waits for it)
        shown = 0
        while rec._p.poll() is None:
            if stop.wait(0.1):
                stopped = True
                rec.stop()
                break
            now = time.monotonic() - t_on
            if progress is not None and int(now) > shown:
                shown = int(now)
                progress(now, seconds)
            if now > seconds + 30:   # perf should have ended by itself long ago
                rec.stop()
                break
        # perf samples for `seconds` (its workload is a bounded sleep), less when stopped or when
        # the process it follows exits
        elapsed = min(seconds, time.monotonic() - t_on)
    if not rec.samples and rec.stderr.strip():
        msg = " ".join(rec.stderr.strip().splitlines()[:3])[:300]
        if re.search(r"paranoid|ermission|EACCES|EPERM|not permitted", msg):
            msg += ("; perf_event_open was refused: kernel.perf_event_paranoid (`sysctl -w "
                    "kernel.perf_event_paranoid=-1`), or a container without CAP_PERFMON / "
                    "whose seccomp profile blocks perf_event_open")
        raise Unavailable("perf", f"perf record failed: {msg}")
    return Sampling(rec.samples, elapsed, rec.lost or 0, stopped, rec.stderr)


__all__ = ["Profile", "Func", "HotStack", "ProcSamples", "Need", "build", "fold", "is_kernel",
           "is_idle", "requirements", "read_requirements", "sample", "Sampling", "DEFAULT_FREQ"]
