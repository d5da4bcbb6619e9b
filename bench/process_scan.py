"""How fast is the process scan? ksight vs ps vs psutil, with ~100 and ~1000 processes.

Starts idle children (`sleep`), so the machine holds about N processes, then times, several
times each with the tools interleaved (so drift hits them alike), reporting the median:

- ksight-C: `ksight.collect.processes.scan(LiveRoot())`: stat, statm and status of every PID
  read and fully parsed, in-process, through the C fast path (ksight._procscan; left out, with
  a note, when the extension is not built);
- ksight-py: the same with `c_path=False`: the pure-Python path (the reference);
- ps: `ps -eo pid,rss,vsz,comm` run as a command (what a user or script pays, start-up included);
- psutil-same: `[p.info for p in psutil.process_iter(['pid', 'name', 'memory_info', 'status',
  'num_threads', 'uids', 'num_ctx_switches'])]`, which makes psutil read the same three files
  (stat, statm, status), in-process (psutil's own cache of Process objects is kept warm between
  rounds, as in a monitoring loop). This is the comparison for the issue's target;
- psutil-narrow: the same with ['pid', 'name', 'memory_info', 'status'] (stat and statm only:
  less work than ksight does), for reference.

Bounded: at most MAX_CHILDREN children, each a `sleep` that ends by itself after CHILD_SECONDS;
all are killed by PID at the end, also on Ctrl-C or SIGTERM. At most MAX_SECONDS of timing per
process count.

    .venv/bin/python bench/process_scan.py [reps] [counts...]     # default: 7 100 1000
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

from ksight.collect.processes import PROCSCAN_ERROR, _procscan, list_pids, scan
from ksight.fs import LiveRoot

MAX_CHILDREN = 2000
CHILD_SECONDS = 600  # each child exits by itself after this, whatever happens to us
MAX_SECONDS = 120.0


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def spawn_to(target: int, children: list[subprocess.Popen]) -> None:
    """Start sleep children until about `target` processes exist (never more than MAX_CHILDREN)."""
    have = len(list_pids(LiveRoot()))
    while have < target and len(children) < MAX_CHILDREN:
        children.append(subprocess.Popen(["sleep", str(CHILD_SECONDS)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        have += 1
    # wait until the children have exec'd sleep (a fork not yet exec'd is a copy of python)
    deadline = time.monotonic() + 30
    root = LiveRoot()
    while time.monotonic() < deadline:
        comms = [root.read_text(f"proc/{c.pid}/comm").strip() for c in children[-5:]]
        if all(c == "sleep" for c in comms):
            break
        time.sleep(0.05)


def kill_all(children: list[subprocess.Popen]) -> None:
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


def t_ksight_c() -> tuple[float, int]:
    t0 = time.perf_counter()
    procs, _ = scan(LiveRoot())
    return time.perf_counter() - t0, len(procs)


def t_ksight_py() -> tuple[float, int]:
    t0 = time.perf_counter()
    procs, _ = scan(LiveRoot(), c_path=False)
    return time.perf_counter() - t0, len(procs)


def t_ps() -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run(["ps", "-eo", "pid,rss,vsz,comm"], stdout=subprocess.PIPE, check=True).stdout
    return time.perf_counter() - t0, out.count(b"\n") - 1


PSUTIL_SAME = ["pid", "name", "memory_info", "status", "num_threads", "uids", "num_ctx_switches"]
PSUTIL_NARROW = ["pid", "name", "memory_info", "status"]


def t_psutil_same() -> tuple[float, int]:
    import psutil

    t0 = time.perf_counter()
    rows = [p.info for p in psutil.process_iter(PSUTIL_SAME)]
    return time.perf_counter() - t0, len(rows)


def t_psutil_narrow() -> tuple[float, int]:
    import psutil

    t0 = time.perf_counter()
    rows = [p.info for p in psutil.process_iter(PSUTIL_NARROW)]
    return time.perf_counter() - t0, len(rows)


TOOLS = {"ksight-C": t_ksight_c, "ksight-py": t_ksight_py, "ps": t_ps,
         "psutil-same": t_psutil_same, "psutil-narrow": t_psutil_narrow}
if _procscan is None:
    del TOOLS["ksight-C"]


def bench(reps: int) -> dict[str, tuple[float, float, float, int]]:
    for f in TOOLS.values():  # warm up (imports, caches)
        f()
    times: dict[str, list[float]] = {k: [] for k in TOOLS}
    counts: dict[str, int] = {}
    start = time.monotonic()
    for _ in range(reps):
        if time.monotonic() - start > MAX_SECONDS:
            break
        for name, f in TOOLS.items():
            dt, n = f()
            times[name].append(dt)
            counts[name] = n
    out = {}
    for name, ts in times.items():
        if not ts:
            continue
        ts.sort()
        out[name] = (statistics.median(ts), ts[0], ts[-1], counts[name])
    return out


def main() -> None:
    args = sys.argv[1:]
    reps = int(args[0]) if args else 7
    targets = [int(a) for a in args[1:]] or [100, 1000]
    signal.signal(signal.SIGTERM, _sigterm)
    if _procscan is None:
        print(f"no C path ({PROCSCAN_ERROR}): ksight-py only")
    children: list[subprocess.Popen] = []
    try:
        for target in targets:
            spawn_to(target, children)
            res = bench(reps)
            n = res["ksight-py"][3]
            print(f"\n{n} processes ({len(children)} sleep children), {reps} rounds, median [min-max] ms;"
                  f" load {open('/proc/loadavg').read().split()[:3]}")
            ref = "ksight-C" if "ksight-C" in res else "ksight-py"
            base = res[ref][0]
            for name, (med, lo, hi, cnt) in res.items():
                print(f"  {name:13s} {med * 1e3:8.2f} [{lo * 1e3:.2f}-{hi * 1e3:.2f}]  {med / n * 1e6:6.1f} µs/process"
                      f"  {med / base:5.2f}x {ref}  ({cnt} rows)")
            ps, same = res["ps"][0], res["psutil-same"][0]
            for name in ("ksight-C", "ksight-py"):
                if name not in res:
                    continue
                k = res[name][0]
                print(f"  targets for {name}: ps/ksight {ps / k:.2f}x (need > 1), psutil-same/ksight"
                      f" {same / k:.2f}x (need >= 2): {'MET' if ps > k and same >= 2 * k else 'MISSED'}")
    except KeyboardInterrupt:
        print("interrupted; killing children", file=sys.stderr)
    finally:
        kill_all(children)


if __name__ == "__main__":
    main()
