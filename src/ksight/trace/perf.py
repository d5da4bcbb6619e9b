"""perf backend: CPU sampling with stacks, and user-space stacks of tracepoints.

`perf record` writes a perf.data file; `perf script` prints one block per sample:

    python3  4242/4242  1801.123456: cpu-clock:
    	ffffffff8d2a1b2c clear_page_erms ([kernel.kallsyms])
    	00007f3a12345678 __memset_avx2 (/usr/lib/x86_64-linux-gnu/libc.so.6)

`parse_script` turns that into samples (leaf first, as perf prints), `fold` into Brendan
Gregg's folded format ("comm;root;...;leaf count"), which `flame.svg` draws.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

from ..errors import ParseError, Unavailable

SCRIPT_FIELDS = "comm,pid,tid,time,event,ip,sym,dso"
_HEADER = re.compile(r"^(?P<comm>\S.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)\s+(?P<time>\d+\.\d+):\s+"
                     r"(?:(?P<period>\d+)\s+)?(?P<event>\S+?):?\s*$")


@dataclass(frozen=True)
class Sample:
    comm: str
    pid: int
    tid: int
    time: float
    event: str
    stack: tuple[tuple[str, str], ...]   # (symbol, dso), leaf first

    def frames(self) -> list[str]:
        return [s for s, _ in self.stack]


def available() -> tuple[bool, str]:
    """(usable, reason). perf must exist and run (Debian's wrapper fails for a kernel mismatch)."""
    exe = shutil.which("perf")
    if exe is None:
        return False, "perf is not installed (Debian: apt install linux-perf)"
    try:
        r = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"perf does not run: {exc}"
    if r.returncode != 0:
        return False, f"perf does not run: {(r.stderr or r.stdout).strip()[:200]}"
    return True, r.stdout.strip()


def parse_script(text: str, path: str = "perf script") -> list[Sample]:
    """Parse `perf script -F comm,pid,tid,time,event,ip,sym,dso` output."""
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
            s = line.strip()
            addr, _, rest = s.partition(" ")
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
            stack.append((sym, dso))
            continue
        if cur is not None:
            out.append(Sample(*cur, tuple(stack)))
            stack = []
        m = _HEADER.match(line)
        if not m:
            raise ParseError(path, lineno, line, "expected 'comm pid/tid time: event:'")
        cur = (m.group("comm"), int(m.group("pid")), int(m.group("tid")), float(m.group("time")),
               m.group("event"))
    if cur is not None:
        out.append(Sample(*cur, tuple(stack)))
    return out


def fold(samples, *, with_comm: bool = True) -> Counter:
    """Folded stacks: 'comm;root;...;leaf' -> samples (root first, as flame graphs want)."""
    c: Counter = Counter()
    for s in samples:
        frames = [f.replace(";", ":") for f in reversed(s.frames())] or ["[no stack]"]
        if with_comm:
            frames.insert(0, s.comm.replace(";", ":") or "?")
        c[";".join(frames)] += 1
    return c


def folded_text(folded: Counter) -> str:
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


def hottest(samples, n: int = 20) -> list[tuple[str, int]]:
    """Functions by samples in which they are the leaf (self time)."""
    c: Counter = Counter()
    for s in samples:
        c[s.stack[0][0] if s.stack else "[no stack]"] += 1
    return c.most_common(n)


class Record:
    """`perf record` for at most `seconds` (or until the with-body ends), then `perf script`.

        with Record(seconds=5, freq=99) as r: workload()
        r.samples, r.folded
    """

    def __init__(self, seconds: float = 10, *, events: list[str] | None = None,
                 filter: str | None = None, pid: int | None = None, freq: int = 99,
                 callgraph: str = "fp", max_bytes: int = 256 << 20):
        ok, why = available()
        if not ok:
            raise Unavailable("perf", why)
        if os.geteuid() != 0:
            raise Unavailable("perf", "system-wide sampling needs root (or kernel.perf_event_paranoid <= -1)")
        self.seconds, self.events, self.filter, self.pid = seconds, events, filter, pid
        self.freq, self.callgraph, self.max_bytes = freq, callgraph, max_bytes
        self.samples: list[Sample] = []
        self.lost: int | None = None
        self.stderr = ""

    def argv(self, out: str) -> list[str]:
        a = ["perf", "record", "-q", "-o", out, "--call-graph", self.callgraph]
        if self.events:
            for e in self.events:
                a += ["-e", e]
                if self.filter:
                    a += ["--filter", self.filter]
        else:
            a += ["-F", str(self.freq)]
        a += ["-p", str(self.pid)] if self.pid else ["-a"]
        # the workload bounds perf itself (perf stops when it exits) and dies with perf
        from ..pids import sleep_argv

        a += ["--", *sleep_argv(self.seconds)]
        return a

    def __enter__(self) -> "Record":
        from .tracefs import acquire

        from .. import pids

        acquire()  # perf reads tracepoint IDs from tracefs; ours to unmount afterwards
        self._acq = True
        self._eids = []
        self._p = None
        try:
            self._dir = tempfile.mkdtemp(prefix=f"ksight-perf-{os.getpid()}-")
            self._eids.append(pids.register("dir", path=self._dir, ident="dir:" + self._dir))
            self._out = os.path.join(self._dir, "perf.data")
            # dies with ksight (PR_SET_PDEATHSIG), recorded by PID and start time so that the
            # next ksight command can end it if that ever fails
            self._p = subprocess.Popen(self.argv(self._out), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True, start_new_session=True,
                                       preexec_fn=pids.die_with_parent)
            self._eids.append(pids.register_child(self._p, "perf"))
            time.sleep(0.3)  # let perf open its events before the workload starts
            self._eids += self._record_workload(pids)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _record_workload(self, pids) -> list[int]:
        """Record perf's workload child too (the bounded sleep), by PID and start time."""
        out = []
        try:
            with open(f"/proc/{self._p.pid}/task/{self._p.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return out
        for k in kids:
            d = pids.describe(k)
            if d is not None:
                out.append(pids.register("child", what="perf workload", proc=d.jsonable()))
        return out

    def wait(self) -> None:
        try:
            self._p.wait(timeout=self.seconds + 30)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        """End the recording early (perf writes its file on SIGINT)."""
        if self._p.poll() is None:
            try:
                os.killpg(self._p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def __exit__(self, *exc) -> None:
        from .. import pids
        from .tracefs import release

        try:
            if self._p is None:
                return
            if self._p.poll() is None:
                # perf record stops cleanly on SIGINT and writes its file
                os.killpg(self._p.pid, signal.SIGINT)
            try:
                _, self.stderr = self._p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._p.pid, signal.SIGKILL)
                _, self.stderr = self._p.communicate()
            m = re.search(r"Processed \d+ events and lost (\d+) chunks", self.stderr or "")
            self.lost = int(m.group(1)) if m else None
            if os.path.exists(self._out) and os.path.getsize(self._out) <= self.max_bytes:
                r = subprocess.run(["perf", "script", "-i", self._out, "-F", SCRIPT_FIELDS],
                                   capture_output=True, text=True, timeout=120)
                self.samples = parse_script(r.stdout)
            elif os.path.exists(self._out):
                self.stderr += f"\nperf.data larger than {self.max_bytes} bytes: not read"
        finally:
            if getattr(self, "_dir", None):
                shutil.rmtree(self._dir, ignore_errors=True)
            if self._p is None or self._p.poll() is not None:
                for eid in self._eids:
                    pids.unregister(eid)
                self._eids = []
            if self._acq:
                self._acq = False
                release()

    @property
    def folded(self) -> Counter:
        return fold(self.samples)


# ---------------------------------------------------------------------------------------------
# A short kernel profile: the API `cpu.high-system`'s enrichment and `ksight profile` share.

# dsos perf prints in brackets that are not kernel code
_USER_BRACKETS = frozenset({"[vdso]", "[vsyscall]", "[unknown]", "[heap]", "[stack]", "[anon]",
                            "[uprobes]", "[vectors]", "[jit]"})


def is_kernel_frame(dso: str) -> bool:
    """True for the kernel image ([kernel.kallsyms]) and modules ([nf_conntrack], [ext4])."""
    return dso.startswith("[") and dso.endswith("]") and dso not in _USER_BRACKETS \
        and not dso.startswith("[anon") and not dso.startswith("[unknown")


@dataclass(frozen=True)
class KernelFunction:
    symbol: str
    samples: int        # busy samples whose leaf (innermost frame) is this kernel function
    share_pct: float    # of all busy samples (idle task, pid 0, excluded)


@dataclass(frozen=True)
class KernelProfile:
    """What the CPUs ran in the kernel during `seconds` of `perf record -a -g` (or `-p PID`).

    `busy_samples` leaves out the idle task (pid 0, "swapper"): its samples are idle time.
    `kernel_samples` are the busy samples whose leaf is kernel code; `functions` ranks their
    leaves (self time), `stacks` holds kernel-only folded stacks ("outer;...;leaf" -> samples).
    """
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


def summarize_kernel(samples, *, seconds: float, pid: int | None = None, freq: int = 99,
                     lost: int | None = None, top: int = 20,
                     max_stacks: int = 2000) -> KernelProfile:
    """Pure: rank kernel leaves of parsed samples (see `sample_kernel`)."""
    busy = [s for s in samples if s.pid != 0]
    leaves: Counter = Counter()
    stacks: Counter = Counter()
    for s in busy:
        if not s.stack or not is_kernel_frame(s.stack[0][1]):
            continue
        leaves[s.stack[0][0]] += 1
        kframes = []
        for sym, dso in s.stack:     # leaf first; the kernel part is the innermost run
            if not is_kernel_frame(dso):
                break
            kframes.append(sym.replace(";", ":"))
        stacks[";".join(reversed(kframes))] += 1
    nk = sum(leaves.values())
    nb = len(busy)
    fns = tuple(KernelFunction(sym, n, round(100.0 * n / nb, 1) if nb else 0.0)
                for sym, n in leaves.most_common(top))
    target = f"-p {pid}" if pid else "-a"
    secs = f"{seconds:g}"
    return KernelProfile(seconds=seconds, pid=pid, freq=freq, samples=len(samples),
                         busy_samples=nb, kernel_samples=nk, lost=lost, functions=fns,
                         stacks=dict(stacks.most_common(max_stacks)),
                         source=f"perf record {target} ({secs} s)")


def sample_kernel(seconds: float = 1.0, pid: int | None = None, *, freq: int = 99,
                  top: int = 20) -> KernelProfile:
    """Sample every CPU (or one process) for `seconds` with kernel stacks; live only.

    Bounded: perf's own workload is a sleep of `seconds`, perf dies with ksight and is ended
    (SIGINT, then SIGKILL) before this returns. Raises `Unavailable("perf", why)` when perf is
    missing, does not run, or we are not root.
    """
    if not (0 < seconds <= 60):
        raise ValueError("seconds must be in (0, 60]")
    rec = Record(seconds=seconds, freq=freq, pid=pid)
    with rec:
        rec.wait()
    if not rec.samples and rec.stderr.strip():
        raise Unavailable("perf", f"perf record gave no samples: {rec.stderr.strip()[:200]}")
    return summarize_kernel(rec.samples, seconds=seconds, pid=pid, freq=freq, lost=rec.lost,
                            top=top)
