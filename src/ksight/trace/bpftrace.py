"""bpftrace backend (optional): in-kernel aggregation and histograms, when bpftrace is present.

Everything in ksight works without it: recipes fall back to tracefs (`ksight trace --backend
auto`, the default). It is used where aggregating in the kernel is the point (latency
histograms of reclaim stalls, per-kind softirq time): only the final maps leave the kernel,
not every event.

    ok, why = available()
    with Run(program, seconds=5) as r:    # returns once the probes are attached
        workload()                        # or r.wait()
    r.output.maps["@hist"]                # {key: [Bucket(min, max, count), ...]} or [Bucket...]

A run is one `bpftrace -f json -e PROGRAM` child process:
- bounded: an `interval:ms:N { exit(); }` probe is appended (bpftrace prints its maps and exits),
  plus a Python-side deadline (SIGINT, then SIGKILL, by PID) in case it does not;
- Ctrl-C / SIGTERM / an exception end the child by its PID (and PR_SET_PDEATHSIG kills it if
  ksight itself is SIGKILLed) (its BPF programs and maps are
  released by the kernel when the process goes away); the child runs in its own session so a
  terminal Ctrl-C reaches ksight, which then asks bpftrace (SIGINT) to print what it has;
- bpftrace 0.17 reads tracepoint formats from tracefs: tracefs is mounted for the run if it is
  not (and unmounted after, see tracefs.acquire/release);
- its stderr is kept; a probe that does not exist on this kernel becomes errors.Unavailable
  quoting bpftrace's own message.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable, UsageError

BACKENDS = ("auto", "tracefs", "bpftrace")
MAX_OUTPUT_BYTES = 64 << 20      # bpftrace prints maps at exit; maps hold at most 4096 keys each
START_TIMEOUT_S = 30.0           # loading BTF and attaching probes takes ~1-2 s here
GRACE_S = 10.0                   # after the interval probe should have fired
# bpftrace warnings that say nothing about the run (containers refuse setrlimit; since Linux
# 5.11 BPF memory is charged to the memory cgroup, not RLIMIT_MEMLOCK)
_NOISE = ("couldn't set RLIMIT_MEMLOCK",)


def available() -> tuple[bool, str]:
    exe = shutil.which("bpftrace")
    if exe is None:
        return False, "bpftrace is not installed (optional; tracefs and perf are used instead)"
    if os.geteuid() != 0:
        return False, "bpftrace needs root"
    try:
        r = subprocess.run([exe, "-e", "BEGIN { exit(); }"], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bpftrace does not run: {exc}"
    if r.returncode != 0:
        return False, f"bpftrace does not run: {(r.stderr or r.stdout).strip()[:200]}"
    return True, exe


def choose(want: str, supports_bpftrace: bool) -> tuple[str, str]:
    """('bpftrace' | 'tracefs', why) for `--backend want`.

    auto: bpftrace when the recipe has a bpftrace program and bpftrace is usable, else tracefs.
    bpftrace: raise Unavailable (with the reason) when it cannot be used; UsageError when the
    recipe has no bpftrace program.
    """
    if want not in BACKENDS:
        raise UsageError(f"unknown backend {want!r}; known: {', '.join(BACKENDS)}")
    if want == "tracefs":
        return "tracefs", "asked for (--backend tracefs)"
    if not supports_bpftrace:
        if want == "bpftrace":
            raise UsageError("this recipe has no bpftrace program (bpftrace is used for reclaim "
                             "and softirq); use --backend tracefs or auto")
        return "tracefs", "this recipe uses tracefs"
    ok, why = available()
    if ok:
        return "bpftrace", f"{why}: histograms built in the kernel"
    if want == "bpftrace":
        raise Unavailable("bpftrace", why)
    return "tracefs", f"bpftrace not usable: {why}"


# --- output ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bucket:
    """One histogram bucket: values min..max (inclusive). lhist's below-range bucket has no
    min, its above-range bucket no max (None)."""
    min: int | None
    max: int | None
    count: int


@dataclass
class Output:
    """What one bpftrace run printed (`-f json`), parsed.

    maps: '@name' -> scalar | {key: value} | [Bucket] | {key: [Bucket]}; keys of maps with
    several keys are the strings bpftrace prints ("9,1"): see split_key.
    stats: '@name' -> {count, average, total} or {key: {...}}.
    """
    maps: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    printf: list[str] = field(default_factory=list)
    attached_probes: int | None = None
    lost_events: int = 0
    other: list[dict] = field(default_factory=list)


def _buckets(raw, where: str) -> list[Bucket]:
    if not isinstance(raw, list):
        raise ParseError(where, None, repr(raw)[:200], "histogram is not a list of buckets")
    out = []
    for b in raw:
        if not isinstance(b, dict) or not isinstance(b.get("count"), int):
            raise ParseError(where, None, repr(b)[:200], "histogram bucket without a count")
        out.append(Bucket(b.get("min"), b.get("max"), b["count"]))
    return out


def parse_line(line: str, out: Output, lineno: int | None = None, path: str = "bpftrace") -> None:
    """Add one line of `bpftrace -f json` output to `out` (blank lines are skipped)."""
    line = line.strip()
    if not line:
        return
    try:
        rec = json.loads(line)
    except ValueError:
        raise ParseError(path, lineno, line, "not a JSON line") from None
    if not isinstance(rec, dict) or "type" not in rec:
        raise ParseError(path, lineno, line, "JSON line without a 'type'")
    kind, data = rec["type"], rec.get("data")
    if kind in ("map", "hist", "stats"):
        if not isinstance(data, dict):
            raise ParseError(path, lineno, line, f"{kind} without a data object")
        for name, val in data.items():
            if kind == "hist":
                if isinstance(val, dict):
                    val = {k: _buckets(v, path) for k, v in val.items()}
                else:
                    val = _buckets(val, path)
                out.maps[name] = val
            elif kind == "stats":
                out.stats[name] = val
            else:
                out.maps[name] = val
    elif kind == "printf":
        out.printf.append(str(data))
    elif kind == "attached_probes":
        out.attached_probes = (data or {}).get("probes")
    elif kind == "lost_events":
        out.lost_events += int((data or {}).get("events", 0))
    else:
        out.other.append(rec)   # time, join, syscall, ...: kept, not interpreted


def parse_output(text: str, path: str = "bpftrace") -> Output:
    out = Output()
    for i, line in enumerate(text.splitlines(), 1):
        parse_line(line, out, i, path)
    return out


def split_key(key: str, n: int) -> list[str]:
    """'9,1' -> ['9', '1']. bpftrace joins the keys of a map with ','; put a string key that may
    hold a comma (comm) last so that it survives."""
    parts = key.split(",", n - 1)
    if len(parts) != n:
        raise ParseError("bpftrace", None, key, f"map key with {len(parts)} parts, expected {n}")
    return parts


def hist_total(buckets: list[Bucket]) -> int:
    return sum(b.count for b in buckets)


def merge_hist(a: list[Bucket], b: list[Bucket]) -> list[Bucket]:
    c: dict = {}
    for x in list(a) + list(b):
        k = (x.min, x.max)
        c[k] = c.get(k, 0) + x.count
    return [Bucket(k[0], k[1], n) for k, n in
            sorted(c.items(), key=lambda kv: (-math.inf if kv[0][0] is None else kv[0][0]))]


def log2_upper(buckets: list[Bucket]) -> dict[int, int]:
    """bpftrace hist() buckets of integer values -> {upper bound: count} with the meaning of
    recipes.log2_bucket (value <= bound): [0,0] -> 1, [1,1] -> 2, [2,3] -> 4, [4,7] -> 8 ...
    (an integer microsecond count v stands for a real time in [v, v+1))."""
    out: dict[int, int] = {}
    for b in buckets:
        if b.count and b.max is not None:
            out[b.max + 1] = out.get(b.max + 1, 0) + b.count
    return out


def jsonable_hist(buckets: list[Bucket]) -> list[dict]:
    return [{"min": b.min, "max": b.max, "count": b.count} for b in buckets if b.count]


def stderr_problem(stderr: str) -> str:
    """The lines of bpftrace's stderr that matter (errors), without known noise."""
    keep = [ln.rstrip() for ln in stderr.splitlines()
            if ln.strip() and not any(n in ln for n in _NOISE)]
    errs = [ln for ln in keep if "ERROR" in ln]
    return "; ".join(errs or keep)[:1000]


# --- a run -----------------------------------------------------------------------------------
def bounded(program: str, seconds: float | None) -> str:
    """The program plus the probe that ends it after `seconds` (None: until stopped)."""
    if seconds is None:
        return program
    ms = max(1, int(round(seconds * 1000)))
    return program.rstrip() + f"\ninterval:ms:{ms} {{ exit(); }}\n"


class Run:
    """One bounded bpftrace child process; see the module doc. Use as a context manager."""

    def __init__(self, program: str, seconds: float | None = 10.0, *, on_printf=None,
                 exe: str | None = None, start_timeout: float = START_TIMEOUT_S):
        self.program = bounded(program, seconds)
        self.seconds = seconds
        self.on_printf = on_printf
        self.exe = exe or shutil.which("bpftrace")
        self.start_timeout = start_timeout
        self.output = Output()
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.stderr = ""
        self.returncode: int | None = None
        self.pid: int | None = None
        self.started = 0.0
        self.ended = 0.0
        self.stopped_early = False
        self._proc: subprocess.Popen | None = None
        self._attached = threading.Event()
        self._stop = threading.Event()
        self._readers: list[threading.Thread] = []
        self._err_chunks: list[str] = []
        self._nbytes = 0
        self._acquired = False

    # the fields a recipe result shares with a tracefs Trace
    @property
    def duration_s(self) -> float:
        return max(0.0, (self.ended or time.monotonic()) - self.started) if self.started else 0.0

    @property
    def lost(self) -> int:
        return self.output.lost_events

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        n = 0
        for line in self._proc.stdout:
            n += 1
            self._nbytes += len(line)
            if self._nbytes > MAX_OUTPUT_BYTES:
                self.errors.append(f"output larger than {MAX_OUTPUT_BYTES >> 20} MiB: rest ignored")
                self._kill(signal.SIGKILL)
                break
            before = len(self.output.printf)
            try:
                parse_line(line, self.output, n)
            except ParseError as exc:
                self.errors.append(str(exc))
                continue
            if self.output.attached_probes is not None and not self._attached.is_set():
                self.started = time.monotonic()
                self._attached.set()
            if self.on_printf is not None:
                for msg in self.output.printf[before:]:
                    try:
                        self.on_printf(msg)
                    except Exception as exc:  # a recipe bug must not leave bpftrace running
                        self.errors.append(f"on_printf: {exc!r}")
                        self._stop.set()
        for _ in self._proc.stdout:   # drain after an early break so the child never blocks
            pass

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            if sum(map(len, self._err_chunks)) < 65536:
                self._err_chunks.append(line)

    def _kill(self, sig) -> None:
        p = self._proc
        if p is not None and p.poll() is None:
            try:
                os.kill(p.pid, sig)   # by PID: the child we started, nothing else
            except ProcessLookupError:
                pass

    def __enter__(self) -> "Run":
        if self.exe is None:
            raise Unavailable("bpftrace", "bpftrace is not installed")
        from . import tracefs

        tracefs.acquire()   # bpftrace 0.17 reads tracepoint formats under tracefs
        self._acquired = True
        try:
            self._proc = subprocess.Popen(
                [self.exe, "-f", "json", "-e", self.program], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                start_new_session=True, preexec_fn=_die_with_parent,
                env={**os.environ, "BPFTRACE_NO_USER_SYMBOLS": "1"})
            self.pid = self._proc.pid
            from .. import pids

            self._eid = pids.register_child(self._proc, "bpftrace")
            for fn in (self._read_stdout, self._read_stderr):
                th = threading.Thread(target=fn, name="ksight-bpftrace", daemon=True)
                th.start()
                self._readers.append(th)
            deadline = time.monotonic() + self.start_timeout
            while not self._attached.wait(0.05):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    timed_out = self._proc.poll() is None
                    self._finish(signal.SIGKILL)
                    why = stderr_problem(self.stderr) or f"exit status {self.returncode}"
                    if timed_out:
                        why = f"probes not attached after {self.start_timeout:g} s; {why}"
                    raise Unavailable("bpftrace", _explain(why))
        except BaseException:
            self._finish(signal.SIGKILL)
            raise
        return self

    def wait(self) -> None:
        """Until bpftrace exits by itself (its interval probe), or stop() / Ctrl-C / SIGTERM."""
        from .session import _sigterm, _Terminated

        old = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            old = signal.signal(signal.SIGTERM, _sigterm)
        try:
            limit = (self.seconds + GRACE_S) if self.seconds is not None else math.inf
            while (not self._stop.is_set() and self._proc is not None and self._proc.poll() is None
                   and time.monotonic() - self.started < limit):
                self._stop.wait(0.1)
        except (KeyboardInterrupt, _Terminated):
            self.stopped_early = True
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)

    def stop(self) -> None:
        self.stopped_early = True
        self._stop.set()
        self._kill(signal.SIGINT)   # bpftrace prints its maps on SIGINT, then exits

    def __exit__(self, et, ev, tb) -> None:
        if et is not None:
            self._finish(signal.SIGKILL)   # an exception: no result wanted, end it now
        else:
            self.wait()
            self._finish(signal.SIGINT)

    def _finish(self, first_signal) -> None:
        p = self._proc
        try:
            if p is not None:
                if p.poll() is None:
                    # bpftrace 0.17 misses a SIGINT that comes within ~0.2 s of attaching:
                    # repeat it every 0.5 s (5 s in all), then SIGKILL
                    tries = 10 if first_signal == signal.SIGINT else 1
                    for _ in range(tries):
                        self._kill(first_signal)
                        try:
                            p.wait(timeout=0.5 if tries > 1 else 5)
                            break
                        except subprocess.TimeoutExpired:
                            pass
                    if p.poll() is None:
                        self._kill(signal.SIGKILL)
                        p.wait(timeout=5)
                if not self.ended:
                    self.ended = time.monotonic()
                self.returncode = p.returncode
                for th in self._readers:
                    th.join(timeout=5)
                self._readers = []
                self.stderr = "".join(self._err_chunks)
                self.warnings = [ln.strip() for ln in self.stderr.splitlines()
                                 if any(n in ln for n in _NOISE)]
                problem = stderr_problem(self.stderr)
                if problem and self._attached.is_set():
                    self.errors.append(problem)
                if p.returncode not in (0, None) and self._attached.is_set() and not self.stopped_early \
                        and first_signal != signal.SIGKILL:
                    self.errors.append(f"bpftrace exited with status {p.returncode}")
        finally:
            if p is not None and p.poll() is not None and getattr(self, "_eid", None):
                from .. import pids

                pids.unregister(self._eid)
                self._eid = None
            if self._acquired:
                self._acquired = False
                from . import tracefs

                tracefs.release()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if ksight dies (even by SIGKILL), so no bpftrace
    outlives the ksight that started it (PR_SET_PDEATHSIG; Linux)."""
    from ..pids import die_with_parent

    die_with_parent()


def _explain(why: str) -> str:
    if "not found" in why and ("tracepoint" in why or "probe" in why):
        return f"a probe does not exist on this kernel: {why}"
    return why


__all__ = ["available", "choose", "Run", "Output", "Bucket", "parse_output", "parse_line",
           "split_key", "log2_upper", "hist_total", "merge_hist", "bounded", "BACKENDS"]
