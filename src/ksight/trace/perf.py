"""perf: the one runner of `perf record` in ksight (CPU profiles, user stacks of tracepoints).

Every profile goes through `Record` (or `sample` / `sample_kernel` on top of it):
`ksight profile` and its alias `ksight trace profile`, the 1 s kernel profile `ksight check`
adds to `cpu.high-system`, and `ksight trace mmap --stacks`. The samples are parsed, classified
and summarised in `stacks.py` (one model: idle vs work, softirq and irq, folded stacks);
`flame.svg` draws them.

    rec = Record(seconds=5, freq=99)          # says what is missing: perf, root, paranoid
    with rec:
        rec.run(stop=event, progress=fn)      # until perf's bounded sleep ends, `stop`, Ctrl-C
    rec.samples, rec.lost, rec.elapsed, rec.stopped_early

How it runs: `perf record -q --call-graph fp [-F HZ | -e EVENT --filter F] (-a | -p PID)
-- sleep N`, in its own process group, with PR_SET_PDEATHSIG (it dies with ksight) and its
bounded `sleep` workload under `setpriv --pdeathsig KILL` (it dies with perf); both are
recorded by PID and start time in /run/ksight so that the next ksight command ends them if
ksight is SIGKILLed. Stopping: SIGINT to perf's own process group (perf writes its file), then
SIGKILL after 30 s; only processes this Record started are ever signalled, never by name. The
temp directory (perf.data) is removed on every exit path. Then `perf script -F` + `parse_script`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable
# the model of the samples lives in stacks.py; these names stay importable from here
from .stacks import (DEFAULT_FREQ, KernelFunction, KernelProfile, Sample, fold, folded_text,
                     is_kernel_frame, parse_folded, parse_script, summarize_kernel)

SCRIPT_FIELDS = "comm,pid,tid,time,event,ip,sym,dso"
OVERRUN_S = 30.0   # perf must have ended this long after its sleep; else it is stopped


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


# --- what sampling needs here ---------------------------------------------------------------------
INSTALL = ("install perf: Debian `apt install linux-perf`, Ubuntu `apt install "
           "linux-tools-$(uname -r)`, Fedora/RHEL `dnf install perf`")


@dataclass(frozen=True)
class Need:
    what: str      # what is missing
    fix: str       # how to get it


def requirements(*, perf_ok: tuple[bool, str], euid: int, paranoid: int | None,
                 kptr_restrict: int | None, pid: int | None = None,
                 command: str = "ksight profile") -> list[Need]:
    """What stops sampling here (pure: the caller reads perf, the euid and the sysctls).
    ksight runs perf as root only (it records what it starts in /run/ksight so that a killed
    run's perf is ended by the next command); without root, say what a user needs to run perf
    by hand. `command` is what to run again with sudo."""
    out = []
    ok, why = perf_ok
    if not ok:
        out.append(Need(why, INSTALL))
    if euid != 0:
        level = "unknown" if paranoid is None else str(paranoid)
        need = -1 if pid is None else 1
        out.append(Need(
            f"not root (kernel.perf_event_paranoid is {level})",
            f"run `sudo {command}`; without root, perf itself can sample "
            + ("all CPUs" if pid is None else "another user's process in the kernel")
            + f" only with `sysctl -w kernel.perf_event_paranoid={need}` (or CAP_PERFMON)"
            + ("" if not kptr_restrict else
               ", and kernel symbols need `sysctl -w kernel.kptr_restrict=0`")))
    return out


def read_requirements(pid: int | None = None, command: str = "ksight profile") -> list[Need]:
    from ..fs import LiveRoot

    root = LiveRoot()

    def sysctl(name):
        try:
            return int(root.read_sysctl(name).split()[0])
        except (Unavailable, ValueError, IndexError):
            return None

    return requirements(perf_ok=available(), euid=os.geteuid(),
                        paranoid=sysctl("kernel.perf_event_paranoid"),
                        kptr_restrict=sysctl("kernel.kptr_restrict"), pid=pid, command=command)


def check(pid: int | None = None, command: str = "ksight profile") -> None:
    """Raise Unavailable("perf", what is missing: what to do) unless perf can sample here."""
    needs = read_requirements(pid, command)
    if needs:
        raise Unavailable("perf", "; ".join(f"{n.what}: {n.fix}" for n in needs))


def refused(stderr: str) -> str:
    """perf record's own failure, for people, with the fix when the kernel refused it."""
    msg = " ".join(stderr.strip().splitlines()[:3])[:300]
    if re.search(r"paranoid|ermission|EACCES|EPERM|not permitted", msg):
        msg += ("; perf_event_open was refused: kernel.perf_event_paranoid (`sysctl -w "
                "kernel.perf_event_paranoid=-1`), or a container without CAP_PERFMON / "
                "whose seccomp profile blocks perf_event_open")
    return f"perf record failed: {msg}"


# --- the runner -------------------------------------------------------------------------------------
class Record:
    """`perf record` for at most `seconds` (or until stopped), then `perf script`.

        with Record(seconds=5, freq=99) as r: r.run()     # or: workload()
        r.samples, r.lost, r.elapsed, r.stopped_early
    """

    def __init__(self, seconds: float = 10, *, events: list[str] | None = None,
                 filter: str | None = None, pid: int | None = None, freq: int = DEFAULT_FREQ,
                 callgraph: str = "fp", kernel_only: bool = False, max_bytes: int = 256 << 20,
                 command: str = "ksight profile"):
        check(pid, command)
        self.seconds, self.events, self.filter, self.pid = seconds, events, filter, pid
        self.freq, self.callgraph, self.max_bytes = freq, callgraph, max_bytes
        self.kernel_only = kernel_only
        self.samples: list[Sample] = []
        self.lost: int | None = None
        self.stderr = ""
        self.elapsed = 0.0            # seconds sampled (from perf's start to its end or stop)
        self.stopped_early = False
        self._p = None
        self._t0 = None

    def argv(self, out: str) -> list[str]:
        a = ["perf", "record", "-q", "-o", out]
        if self.kernel_only:          # no user-mode samples at all: cheaper, kernel side only
            a.append("--all-kernel")
        a += ["--call-graph", self.callgraph]
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
        from .. import pids
        from .tracefs import acquire

        acquire()  # perf reads tracepoint IDs from tracefs; ours to unmount afterwards
        self._acq = True
        self._eids = []
        self._p = None
        self._dir = None
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
            self._t0 = time.monotonic()
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

    def run(self, stop: threading.Event | None = None, progress=None) -> None:
        """Wait until perf ends by itself (its sleep of `seconds`, or the process followed with
        -p exits), `stop` is set, or the deadline (`seconds` + 30 s) passes; progress(elapsed,
        seconds) about once a second. Ctrl-C (KeyboardInterrupt) stops perf and propagates."""
        stop = stop or threading.Event()
        shown = 0
        try:
            while self._p.poll() is None:
                if stop.wait(0.1):
                    self.stopped_early = True
                    self.stop()
                    break
                now = time.monotonic() - self._t0
                if progress is not None and int(now) > shown:
                    shown = int(now)
                    progress(now, self.seconds)
                if now > self.seconds + OVERRUN_S:   # perf should have ended long ago
                    self.stop()
                    break
        except KeyboardInterrupt:
            self.stopped_early = True
            self.stop()
            raise
        finally:
            self.elapsed = min(self.seconds, time.monotonic() - self._t0)

    def stop(self) -> None:
        """End the recording early (perf writes its file on SIGINT). Only our own perf: its
        process group is its PID, and it is signalled only while not yet reaped."""
        if self._p is not None and self._p.poll() is None:
            try:
                os.killpg(self._p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def __exit__(self, exc_type=None, *exc) -> None:
        from .. import pids
        from .tracefs import release

        try:
            if self._p is None:
                return
            if self._t0 is not None and not self.elapsed:
                self.elapsed = min(self.seconds, time.monotonic() - self._t0)
            self.stop()                 # perf record stops cleanly on SIGINT
            try:
                _, self.stderr = self._p.communicate(timeout=OVERRUN_S)
            except subprocess.TimeoutExpired:
                os.killpg(self._p.pid, signal.SIGKILL)
                _, self.stderr = self._p.communicate()
            m = re.search(r"Processed \d+ events and lost (\d+) chunks", self.stderr or "")
            self.lost = int(m.group(1)) if m else None
            if exc_type is not None:    # interrupted or failed: no `perf script`
                return
            if os.path.exists(self._out) and os.path.getsize(self._out) <= self.max_bytes:
                r = subprocess.run(["perf", "script", "-i", self._out, "-F", SCRIPT_FIELDS],
                                   capture_output=True, text=True, timeout=120)
                if r.returncode != 0 and not r.stdout.strip():
                    self.stderr += f"\nperf script: {r.stderr.strip()[:300]}"
                self.samples = parse_script(r.stdout)
            elif os.path.exists(self._out):
                self.stderr += f"\nperf.data larger than {self.max_bytes} bytes: not read"
        finally:
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)
            if self._p is None or self._p.poll() is not None:
                for eid in self._eids:
                    pids.unregister(eid)
                self._eids = []
            if self._acq:
                self._acq = False
                release()


# --- a profile -----------------------------------------------------------------------------------
@dataclass
class Sampling:
    """The outcome of sample(): perf's samples and how the run went."""
    samples: list
    seconds: float
    lost: int
    stopped_early: bool
    stderr: str


def sample(seconds: float, *, pid: int | None = None, freq: int = DEFAULT_FREQ,
           kernel_only: bool = False, stop: threading.Event | None = None, progress=None,
           command: str = "ksight profile") -> Sampling:
    """Sample every CPU (or one process) for `seconds`, or until `stop` is set, with kernel
    and user stacks (kernel only with kernel_only). perf is ended and reaped before this
    returns, whatever happens. Raises Unavailable("perf", what to do) when it cannot sample."""
    rec = Record(seconds=seconds, freq=freq, pid=pid, kernel_only=kernel_only, command=command)
    with rec:
        rec.run(stop, progress)
    if not rec.samples and rec.stderr.strip():
        raise Unavailable("perf", refused(rec.stderr))
    return Sampling(rec.samples, rec.elapsed, rec.lost or 0, rec.stopped_early, rec.stderr)


def sample_kernel(seconds: float = 1.0, pid: int | None = None, *, freq: int = DEFAULT_FREQ,
                  top: int = 20, command: str = "ksight check") -> KernelProfile:
    """A short kernel profile of every CPU (or one process), live only: the kernel leaves
    ranked among the work samples (stacks.summarize_kernel). Bounded: perf's own workload is a
    sleep of `seconds`; perf is ended and reaped before this returns; Ctrl-C propagates."""
    if not (0 < seconds <= 60):
        raise ValueError("seconds must be in (0, 60]")
    got = sample(seconds, pid=pid, freq=freq, command=command)
    return summarize_kernel(got.samples, seconds=seconds, pid=pid, freq=freq, lost=got.lost,
                            top=top)


__all__ = ["available", "requirements", "read_requirements", "check", "refused", "Need",
           "Record", "Sampling", "sample", "sample_kernel", "SCRIPT_FIELDS",
           # from stacks.py
           "Sample", "parse_script", "fold", "folded_text", "parse_folded", "is_kernel_frame",
           "KernelProfile", "KernelFunction", "summarize_kernel"]
