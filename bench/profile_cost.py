"""The cost of `ksight profile` (issue 12): how much slower a CPU-bound loop runs while it samples.

    .venv/bin/python bench/profile_cost.py [--runs 7] [--loop-s 2.0] [--freqs 99 999]

The loop is a fixed amount of pure-Python arithmetic in a child process (calibrated once to take
about LOOP_S seconds on this machine, then the same work every time), timed by the child itself
(wall clock and its own CPU time). Each run times the loop, interleaved:

- baseline: nothing else started;
- perf F Hz (the peer, first frequency only): `perf record -a -g -F F` stopped the same way,
  then `perf script` of its file (what ksight runs; `perf report` costs about the same);
- profile F Hz: `ksight profile -F F` (the installed entry point, all CPUs, kernel and user
  stacks; output to /dev/null) started first; the loop starts once perf is sampling (1.0 s
  later); when the loop is done ksight gets SIGINT (as Ctrl-C), so the whole loop is sampled
  however long a loaded machine makes it. `perf script` runs after the loop.

Reported: the loop's wall time and CPU time per mode, median and range [min-max] over the runs,
the slowdown against the baseline of the same run, in wall time (what the loop's user waits;
it includes waiting for a CPU, so other load on the machine shows here) and in the loop's own
CPU time (the sampling interrupts and cache effects; steadier), median [range], and the CPU the whole
`ksight profile` command used (perf record + perf script + ksight), also per second sampled. Needs root and perf.
Bounded: RUNS x modes loops of ~LOOP_S s; every process is waited for, killed by PID on error.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

LOOP = r"""
import sys, time, json
n = int(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
x = 0
for i in range(n):
    x = (x + i * i) % 1000003
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "x": x}))
"""


def loop(n: int) -> dict:
    r = subprocess.run([sys.executable, "-I", "-S", "-c", LOOP, str(n)], capture_output=True,
                       text=True, timeout=600, check=True)
    return json.loads(r.stdout)


def calibrate(target_s: float) -> int:
    n = 200_000
    while True:
        t = loop(n)["cpu"]
        if t >= 0.2:
            return max(1, int(n * target_s / t))
        n *= 4


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def profiled(n: int, freq: int, loop_s: float, peer: bool = False) -> tuple[dict, float, float]:
    """The loop while `ksight profile` (or, peer=True, plain `perf record -a -g` followed by
    `perf script`, what one runs by hand) samples; stopped with SIGINT (as Ctrl-C) once the
    loop is done, so the whole loop is sampled however long a loaded machine makes it."""
    import signal
    import tempfile

    before = children_cpu()
    tmp = None
    if peer:
        tmp = tempfile.mkdtemp(prefix=f"ksight-bench-{os.getpid()}-")
        argv = ["perf", "record", "-q", "-a", "-g", "-F", str(freq), "-o",
                os.path.join(tmp, "perf.data"), "--", "sleep", "300"]
    else:
        argv = [sys.executable, "-m", "ksight", "profile", "--seconds", "300", "-F", str(freq)]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=peer)   # perf record: SIGINT to it alone
    try:
        time.sleep(1.0)        # perf started and sampling (ksight waits 0.3 s for it)
        t0 = time.monotonic()
        res = loop(n)
        p.send_signal(signal.SIGINT)
        sampled = time.monotonic() - t0 + 1.0
        p.wait(timeout=loop_s + 120)
        if peer:
            subprocess.run(["perf", "script", "-i", os.path.join(tmp, "perf.data"), "-F",
                            "comm,pid,tid,time,event,ip,sym,dso"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=300, check=True)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    # perf record ends its workload with SIGTERM on SIGINT and then exits by that signal
    ok = (0, -signal.SIGINT, -signal.SIGTERM, 130, 143) if peer else (0,)
    if p.returncode not in ok:
        raise SystemExit(f"{argv[0]} failed (exit {p.returncode})")
    return res, children_cpu() - before - res["cpu"], sampled


def fmt(xs: list[float], unit: str = "s", digits: int = 3) -> str:
    return (f"{statistics.median(xs):.{digits}f} {unit} [{min(xs):.{digits}f}-"
            f"{max(xs):.{digits}f}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--loop-s", type=float, default=2.0)
    ap.add_argument("--freqs", type=int, nargs="+", default=[99, 999])
    ap.add_argument("--no-peer", dest="peer", action="store_false",
                    help="leave out plain perf record + perf script at the first frequency")
    a = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("perf") is None:
        print("needs root and perf (Debian: apt install linux-perf)", file=sys.stderr)
        return 3
    if not 1 <= a.runs <= 50 or not 0.2 <= a.loop_s <= 30:
        print("--runs 1..50, --loop-s 0.2..30", file=sys.stderr)
        return 3
    n = calibrate(a.loop_s)
    runs = [(f"profile {f} Hz", f, False) for f in a.freqs]
    if a.peer:
        runs.insert(1, (f"perf {a.freqs[0]} Hz", a.freqs[0], True))
    modes = ["baseline"] + [m for m, _, _ in runs]
    wall = {m: [] for m in modes}
    cpu = {m: [] for m in modes}
    slow = {m: [] for m in modes[1:]}
    slow_cpu = {m: [] for m in modes[1:]}
    cmd_cpu = {m: [] for m in modes[1:]}
    per_s = {m: [] for m in modes[1:]}
    print(f"loop: {n} iterations (~{a.loop_s:g} s); {a.runs} runs; {os.cpu_count()} CPUs; "
          f"load before {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(a.runs):
        base = loop(n)
        wall["baseline"].append(base["wall"])
        cpu["baseline"].append(base["cpu"])
        for m, f, peer in runs:
            res, c, sampled = profiled(n, f, a.loop_s, peer)
            wall[m].append(res["wall"])
            cpu[m].append(res["cpu"])
            slow[m].append(100 * (res["wall"] / base["wall"] - 1))
            slow_cpu[m].append(100 * (res["cpu"] / base["cpu"] - 1))
            cmd_cpu[m].append(c)
            per_s[m].append(c / sampled)
        print(f"run {r + 1}: " + "  ".join(f"{m} {wall[m][-1]:.3f} s" for m in modes), flush=True)
    print(f"\nload after {os.getloadavg()[0]:.2f}")
    print(f"{'mode':<16} {'loop wall':<26} {'loop CPU':<26} {'slowdown (wall)':<24} "
          f"{'slowdown (CPU)':<22} {'sampler CPU':<22} its CPU per s sampled")
    for m in modes:
        extra = ""
        if m in slow:
            extra = (f"{fmt(slow[m], '%', 1):<24} {fmt(slow_cpu[m], '%', 1):<22} "
                     f"{fmt(cmd_cpu[m], 's', 2):<22} {fmt(per_s[m], '', 3)}")
        print(f"{m:<16} {fmt(wall[m]):<26} {fmt(cpu[m]):<26} {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
