"""CPU samples with stacks: one classification, one folded form, one summary (pure).

Every profile in ksight goes through here: `ksight profile` (and its alias `ksight trace
profile`) and the 1 s kernel profile `ksight check` adds to `cpu.high-system`. The samples come
from `perf.parse_script` (leaf first, as perf prints them); `flame.svg` draws the folded stacks.

Where a sample fell (`context`), as the kernel's own CPU accounting (/proc/stat) counts it:

- `softirq`: the innermost context frame on the kernel stack is a softirq one (the softirq
  loop `handle_softirqs` / `__do_softirq` / `do_softirq`, `run_ksoftirqd`, or a softirq action
  such as `net_rx_action`): /proc/stat counts that time as si, whichever task it interrupted;
- `irq`: the innermost context frame is a hard-interrupt one (`common_interrupt`, `sysvec_*`,
  `handle_irq_event`, `irq_exit_rcu`, ...): hi. A hard interrupt taken inside a softirq is irq
  (innermost wins). The interrupt's way out (`irqentry_exit*`, `preempt_schedule_irq`: a
  reschedule or the return to user space) is the interrupted task's time again;
- `idle`: the idle task (PID 0, "swapper") outside any interrupt: the idle loop, halt, and the
  idle task's own bookkeeping (`do_idle`, `tick_nohz_idle_*`, `schedule_idle`): /proc/stat id;
- `kernel`: any other task with its leaf in kernel code (system calls, page faults): sy;
- `user`: any other task with its leaf in user code (or without a stack): us.

So an interrupt or softirq that runs on an idle CPU is work, not idle: that is where NET_RX
lands when packets are steered to a quiet CPU (RPS, a NIC's interrupt), and dropping every
sample of the idle task would hide it. Work = every sample but idle; `kernel` in the counts
below means "leaf in kernel code" and so includes softirq and irq, which are also counted
apart. Identified by frame names of x86-64 and arm64 kernels 4.x-6.x; a stack that frame
pointers cut short of its context frame counts by its leaf.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError

DEFAULT_FREQ = 99

IDLE, USER, KERNEL, SOFTIRQ, IRQ = "idle", "user", "kernel", "softirq", "irq"

# dsos perf prints in brackets that are not kernel code; any other bracketed dso is the kernel
# image or a module ("[kernel.kallsyms]", "[nf_conntrack]", "[ext4]")
_USER_BRACKETS = frozenset({"[vdso]", "[vsyscall]", "[unknown]", "[heap]", "[stack]", "[anon]",
                            "[uprobes]", "[vectors]", "[jit]"})

# innermost of these on the kernel stack says the sample ran in softirq context
_SOFTIRQ_FRAMES = frozenset({
    "handle_softirqs", "__do_softirq", "do_softirq", "do_softirq_own_stack", "run_ksoftirqd",
    "net_rx_action", "net_tx_action", "tasklet_action", "tasklet_hi_action",
    "tasklet_action_common", "run_timer_softirq", "hrtimer_run_softirq", "rcu_core_si",
    "blk_done_softirq", "irq_poll_softirq", "run_rebalance_domains", "sched_balance_softirq"})
# ... or in hard-interrupt context: the C handlers the entry code calls, which run the
# interrupt between irq_enter_rcu() and irq_exit_rcu() (x86-64 sysvec_*/common_interrupt and
# the generic irq layer; arm64 gic). Not the asm_* entry stubs: they also run the way back
# (below), which is task context.
_IRQ_FRAMES = frozenset({
    "common_interrupt", "__common_interrupt", "do_IRQ", "handle_irq",
    "handle_irq_event", "handle_irq_event_percpu", "__handle_irq_event_percpu",
    "generic_handle_irq", "generic_handle_domain_irq", "handle_edge_irq", "handle_fasteoi_irq",
    "irq_exit", "irq_exit_rcu", "__irq_exit_rcu", "irq_enter", "irq_enter_rcu",
    "hrtimer_interrupt", "smp_apic_timer_interrupt", "apic_timer_interrupt",
    "gic_handle_irq", "el1_interrupt", "el0_interrupt", "handle_domain_irq"})
_IRQ_PREFIXES = ("sysvec_", "__sysvec_")
# ... and innermost of these says the interrupt is over (or not begun): the entry code's way
# in and out (rescheduling, signals, return to user space) runs as the interrupted task
_TASK_FRAMES = frozenset({
    "irqentry_exit", "irqentry_exit_to_user_mode", "irqentry_exit_cond_resched",
    "raw_irqentry_exit_cond_resched", "preempt_schedule_irq", "irqentry_enter",
    "irqentry_enter_from_user_mode", "exit_to_user_mode_loop", "exit_to_user_mode_prepare",
    "el0_interrupt_exit", "exit_to_kernel_mode", "exit_to_user_mode"})


@dataclass(frozen=True)
class Sample:
    """One perf sample: who ran (comm, pid, tid), when, and the stack, leaf first."""
    comm: str
    pid: int
    tid: int
    time: float
    event: str
    stack: tuple[tuple[str, str], ...]   # (symbol, dso), leaf first

    def frames(self) -> list[str]:
        return [s for s, _ in self.stack]


def is_kernel_frame(dso: str) -> bool:
    """True for the kernel image ([kernel.kallsyms]) and modules ([nf_conntrack], [ext4])."""
    return dso.startswith("[") and dso.endswith("]") and dso not in _USER_BRACKETS \
        and not dso.startswith("[anon") and not dso.startswith("[unknown")


def _frame_context(symbol: str) -> str | None:
    base = symbol.split(".", 1)[0]          # do_softirq.part.0, finish_task_switch.isra.0
    if base in _SOFTIRQ_FRAMES:
        return SOFTIRQ
    if base in _IRQ_FRAMES or base.startswith(_IRQ_PREFIXES):
        return IRQ
    if base in _TASK_FRAMES:
        return KERNEL
    return None


def context(s) -> str:
    """Where the sample fell: IDLE, USER, KERNEL, SOFTIRQ or IRQ (see the module docstring)."""
    for sym, dso in s.stack:                 # leaf first: the innermost context frame wins
        if not is_kernel_frame(dso):
            break                            # user code below: no interrupt on this stack
        ctx = _frame_context(sym)
        if ctx in (SOFTIRQ, IRQ):
            return ctx
        if ctx is not None:
            break                            # the entry code's way out: the task's own time
    if s.pid == 0:
        return IDLE
    if s.stack and is_kernel_frame(s.stack[0][1]):
        return KERNEL
    return USER


def is_idle(s) -> bool:
    """The idle task outside any interrupt: the CPU had nothing to run."""
    return context(s) == IDLE


def kernel_symbols(samples) -> frozenset[str]:
    """The names of kernel frames among the samples (the flame graph draws them orange)."""
    return frozenset(f for s in samples for f, d in s.stack if is_kernel_frame(d))


# --- parsing `perf script` ---------------------------------------------------------------------
def _frame(line: str) -> tuple[str, str]:
    """'\\tffffffff8d2a1b2c clear_page_erms+0x1c ([kernel.kallsyms])' -> (symbol, dso)."""
    _, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    dso = ""
    if rest.endswith(")") and " (" in rest:
        i = rest.rfind(" (")
        rest, dso = rest[:i], rest[i + 2:-1]
    elif rest.startswith("(") and rest.endswith(")"):
        rest, dso = "", rest[1:-1]
    sym = rest or "[unknown]"
    if "+0x" in sym:
        sym = sym[:sym.rfind("+0x")]
    return sym, dso


def parse_script(text: str, path: str = "perf script") -> list[Sample]:
    """Parse `perf script -F comm,pid,tid,time,event,ip,sym,dso` output:

        python3  4242/4242  1801.123456: cpu-clock:
        \tffffffff8d2a1b2c clear_page_erms ([kernel.kallsyms])
        \t00007f3a12345678 __memset_avx2 (/usr/lib/x86_64-linux-gnu/libc.so.6)
    """
    import re

    header = re.compile(r"^(?P<comm>\S.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+"
                        r"(?P<time>\d+\.\d+):\s+(?:(?P<period>\d+)\s+)?(?P<event>\S+?):?\s*$")
    out: list[Sample] = []
    cur = None
    stack: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if cur is not None:
                out.append(Sample(*cur, tuple(stack)))
                cur, stack = None, []
            continue
        if line[0] in " \t":
            if cur is None:
                raise ParseError(path, lineno, line, "stack frame before any sample header")
            stack.append(_frame(line))
            continue
        if cur is not None:
            out.append(Sample(*cur, tuple(stack)))
            stack = []
        m = header.match(line)
        if not m:
            raise ParseError(path, lineno, line, "expected 'comm pid/tid time: event:'")
        cur = (m.group("comm"), int(m.group("pid")), int(m.group("tid")), float(m.group("time")),
               m.group("event"))
    if cur is not None:
        out.append(Sample(*cur, tuple(stack)))
    return out


# --- folded stacks (Brendan Gregg's format) ----------------------------------------------------
def _kept_frames(s, kernel_only: bool) -> list[tuple[str, str]]:
    """The sample's stack, leaf first; kernel frames only with kernel_only."""
    if not kernel_only:
        return list(s.stack)
    return [(f, d) for f, d in s.stack if is_kernel_frame(d)]


def fold(samples, *, kernel_only: bool = False, idle: bool = True,
         with_comm: bool = True) -> Counter:
    """Folded stacks: 'comm;root;...;leaf' -> samples (root first, as flame graphs want), ';'
    in names replaced by ':'. kernel_only keeps the kernel frames (a sample that ran in user
    space becomes 'comm;[user]'); idle=False leaves idle samples out (see `context`)."""
    c: Counter = Counter()
    for s in samples:
        if not idle and is_idle(s):
            continue
        fr = _kept_frames(s, kernel_only)
        names = [f.replace(";", ":") for f, _ in reversed(fr)]
        if not names:
            names = ["[user]"] if kernel_only and s.stack else ["[no stack]"]
        if with_comm:
            names.insert(0, (s.comm or "?").replace(";", ":"))
        c[";".join(names)] += 1
    return c


def folded_text(folded) -> str:
    return "".join(f"{k} {v}\n" for k, v in sorted(folded.items()))


def parse_folded(text: str, path: str = "folded") -> Counter:
    c: Counter = Counter()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            raise ParseError(path, lineno, line, "expected 'frame;frame;... COUNT'")
        c[stack] += int(n)
    return c


# --- the summary ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Func:
    function: str
    dso: str
    kernel: bool
    self_samples: int        # samples in which it was the leaf (running itself)
    total_samples: int       # samples in which it was anywhere on the stack (itself + callees)
    softirq_samples: int = 0  # of self_samples, in softirq context
    irq_samples: int = 0      # of self_samples, in hard-interrupt context


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
    softirq_samples: int = 0          # of kernel_samples: in softirq context (si)
    irq_samples: int = 0              # of kernel_samples: in hard-interrupt context (hi)

    @property
    def work_samples(self) -> int:
        return self.kernel_samples + self.user_samples


def build(samples, *, seconds: float, freq: int = DEFAULT_FREQ, pid: int | None = None,
          kernel_only: bool = False, top: int = 25, lost: int = 0,
          stopped_early: bool = False, notes=(), max_folded: int = 2000) -> Profile:
    """Samples in, a `Profile` out: where they fell, the hottest kernel functions and all
    functions (self and total), the hottest stacks, the processes, the folded stacks (work
    only: idle would dwarf the work on a quiet machine)."""
    samples = list(samples)
    counts: Counter = Counter()
    self_c: Counter = Counter()
    ctx_c: Counter = Counter()       # ((name, kernel?), context) -> self samples
    total_c: Counter = Counter()
    dso_of: dict[tuple[str, bool], str] = {}
    stacks: Counter = Counter()
    procs: dict[int, list] = {}
    unknown_k = 0
    for s in samples:
        ctx = context(s)
        counts[ctx] += 1
        if ctx == IDLE:
            continue
        leaf_k = bool(s.stack) and is_kernel_frame(s.stack[0][1])
        if leaf_k and s.stack[0][0] in ("[unknown]", ""):
            unknown_k += 1
        p = procs.setdefault(s.pid, [s.comm, 0, 0])
        p[1] += 1
        p[2] += leaf_k
        fr = _kept_frames(s, kernel_only)
        # keyed by (name, kernel?): "[unknown]" may be a user frame or a hidden kernel one
        if fr and (leaf_k or not kernel_only):
            key = (fr[0][0], is_kernel_frame(fr[0][1]))
            self_c[key] += 1
            ctx_c[(key, ctx)] += 1
        seen = set()
        for f, d in fr:
            key = (f, is_kernel_frame(d))
            dso_of.setdefault(key, d)
            if key not in seen:
                seen.add(key)
                total_c[key] += 1
        if fr:
            stacks[(s.comm, tuple(f for f, _ in reversed(fr)))] += 1
    kernel = counts[KERNEL] + counts[SOFTIRQ] + counts[IRQ]
    funcs = [Func(f, dso_of.get((f, k), ""), k, n, total_c[(f, k)],
                  ctx_c[((f, k), SOFTIRQ)], ctx_c[((f, k), IRQ)])
             for (f, k), n in self_c.items() if n > 0]
    funcs.sort(key=lambda x: (-x.self_samples, -x.total_samples, x.function))
    procs_t = sorted((ProcSamples(p, c, n, k) for p, (c, n, k) in procs.items()),
                     key=lambda x: (-x.samples, x.pid))
    out_notes = list(notes)
    if unknown_k and unknown_k >= 0.2 * max(1, kernel):
        out_notes.append(f"{unknown_k} kernel samples have no symbol: kernel addresses are "
                         "hidden (kernel.kptr_restrict) or /proc/kallsyms is unreadable; run as "
                         "root, or `sysctl -w kernel.kptr_restrict=0`")
    if not kernel_only and counts[USER] and not any(
            len(s.stack) > 1 for s in samples if s.stack and not is_kernel_frame(s.stack[0][1])):
        out_notes.append("user stacks are one frame deep: programs built without frame "
                         "pointers cannot be walked with --call-graph fp")
    folded = fold(samples, kernel_only=kernel_only, idle=False)
    return Profile(
        seconds=round(seconds, 3), freq=freq,
        target="all CPUs" if pid is None else f"PID {pid}", kernel_only=kernel_only,
        samples=len(samples), idle_samples=counts[IDLE], kernel_samples=kernel,
        user_samples=counts[USER], unknown_kernel_samples=unknown_k,
        kernel_functions=tuple(f for f in funcs if f.kernel)[:top],
        functions=() if kernel_only else tuple(funcs[:top]),
        stacks=tuple(HotStack(c, fr, n) for (c, fr), n in
                     sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0]))[:10]),
        processes=tuple(procs_t[:15]),
        folded=dict(folded.most_common(max_folded)),
        lost=lost, stopped_early=stopped_early, notes=tuple(out_notes),
        softirq_samples=counts[SOFTIRQ], irq_samples=counts[IRQ])


# --- the short kernel profile of `cpu.high-system` ------------------------------------------------
@dataclass(frozen=True)
class KernelFunction:
    symbol: str
    samples: int        # work samples whose leaf (innermost frame) is this kernel function
    share_pct: float    # of all work samples (idle excluded, see `context`)
    softirq_samples: int = 0   # of samples, in softirq context
    irq_samples: int = 0       # of samples, in hard-interrupt context


@dataclass(frozen=True)
class KernelProfile:
    """The kernel side of a `Profile`, for evidence: what the CPUs ran in the kernel during
    `seconds` of `perf record -a -g` (or `-p PID`).

    `busy_samples` are the work samples (every sample but idle: interrupts and softirqs on an
    idle CPU are work). `kernel_samples` are those whose leaf is kernel code; `functions` ranks
    their leaves (self time), `stacks` holds kernel-only folded stacks ("outer;...;leaf" ->
    samples, every process together)."""
    seconds: float
    pid: int | None
    freq: int
    samples: int
    busy_samples: int
    kernel_samples: int
    lost: int | None
    functions: tuple[KernelFunction, ...]
    stacks: dict[str, int]
    source: str          # how it was taken, for evidence: "perf record -a (1 s)"
    softirq_samples: int = 0
    irq_samples: int = 0


def kernel_side(p: Profile, *, pid: int | None = None, lost: int | None = None) -> KernelProfile:
    """A `Profile` built with kernel_only=True, as a `KernelProfile`."""
    work = p.work_samples
    fns = tuple(KernelFunction(f.function, f.self_samples,
                               round(100.0 * f.self_samples / work, 1) if work else 0.0,
                               f.softirq_samples, f.irq_samples) for f in p.kernel_functions)
    stacks: Counter = Counter()
    for k, n in p.folded.items():
        _, _, frames = k.partition(";")          # drop the comm
        if frames not in ("[user]", "[no stack]", ""):
            stacks[frames] += n
    target = f"-p {pid}" if pid else "-a"
    return KernelProfile(seconds=p.seconds, pid=pid, freq=p.freq, samples=p.samples,
                         busy_samples=work, kernel_samples=p.kernel_samples, lost=lost,
                         functions=fns, stacks=dict(stacks.most_common()),
                         source=f"perf record {target} ({p.seconds:g} s)",
                         softirq_samples=p.softirq_samples, irq_samples=p.irq_samples)


def summarize_kernel(samples, *, seconds: float, pid: int | None = None,
                     freq: int = DEFAULT_FREQ, lost: int | None = None, top: int = 20,
                     max_stacks: int = 2000) -> KernelProfile:
    """Pure: rank the kernel leaves of parsed samples among the work samples."""
    p = build(samples, seconds=seconds, freq=freq, pid=pid, kernel_only=True, top=top,
              max_folded=max_stacks)
    return kernel_side(p, pid=pid, lost=lost)


__all__ = ["Sample", "parse_script", "context", "is_idle", "is_kernel_frame", "kernel_symbols",
           "fold", "folded_text", "parse_folded", "Profile", "Func", "HotStack", "ProcSamples",
           "build", "KernelProfile", "KernelFunction", "kernel_side", "summarize_kernel",
           "IDLE", "USER", "KERNEL", "SOFTIRQ", "IRQ", "DEFAULT_FREQ"]
