"""`ksight pmap PID` against procps `pmap -x PID` on a process with 5,000 mappings (issue 10).

    .venv/bin/python bench/pmap.py [--rounds 15] [--maps 5000] [--base SRC]

A child python maps MAPS one-page anonymous regions with alternating protections (so the kernel
cannot merge neighbours), touches each, and sleeps. Each round runs, interleaved, `ksight pmap
PID` (the installed entry point, output to /dev/null), `ksight pmap PID --json`, and `pmap -x
PID`, as commands: wall time from fork to exit, start-up included (what a person waits for),
and the user and system CPU of ksight's and pmap's runs (getrusage of the children); for scale,
the floors: `python -c pass` (the interpreter's start-up), `python -c "import re"` (the console
script pip writes imports re before ksight: the start-up of any `ksight` command) and `cat
/proc/PID/smaps` (the kernel's share, which pmap pays too). Also measured in this process: the
fast path's read and parse (ksight._smapspmap.read_table, 3 kB reads), one snapshot with the pmap
plan plus views.pmap.build() (the ordinary path: `--json`, `--from`), and the bare read of
/proc/PID/smaps.
With --base SRC (the src/ folder of another checkout, its C extensions built in place, e.g. from
`git archive COMMIT src setup.py pyproject.toml` and `setup.py build_ext --inplace`), that tree's
`ksight pmap PID` runs in the same rounds, as its console script runs it (`import re`, then
`entry()`, or `sys.exit(main())` for a tree without entry()), so a before/after is measured
interleaved on the same process.
Prints median and range [min-max]. The tree is byte-compiled first (as pip installs it): with
PYTHONDONTWRITEBYTECODE set, every run would otherwise compile ksight's modules again.
Bounded: ROUNDS rounds; the child is killed by PID at the end, also on error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

CHILD = """
import mmap, sys, time
keep = []
for i in range(%d):
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | (mmap.PROT_WRITE if i %% 2 else 0))
    m[0:0]
    keep.append(m)
print("ready", flush=True)
time.sleep(600)
"""


CPU: dict = {}  # name -> [(user, sys)] of each run (seconds)


def wall(cmd, check=True, name=None, env=None) -> float:
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=check, env=env)
    w = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if name:
        CPU.setdefault(name, []).append((r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))
    return w


def gone_pid() -> int:
    """A PID no process has (for the fixed cost of `ksight pmap`: start-up, imports, scan)."""
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    for pid in range(top - 1, 1, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    raise SystemExit("no free PID")


def fmt(xs) -> str:
    return f"{statistics.median(xs) * 1000:7.1f} ms  [{min(xs) * 1000:.1f}-{max(xs) * 1000:.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--maps", type=int, default=5000)
    ap.add_argument("--base", help="src/ of another ksight tree, measured in the same rounds")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    ksight = os.path.join(os.path.dirname(here), ".venv", "bin", "ksight")
    pmap = shutil.which("pmap")
    if pmap is None:
        print("needs procps pmap", file=sys.stderr)
        return 2
    import compileall

    compileall.compile_dir(os.path.join(os.path.dirname(here), "src", "ksight"), quiet=1)
    child = subprocess.Popen([sys.executable, "-c", CHILD % a.maps], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        pid = child.pid
        with open(f"/proc/{pid}/maps") as f:
            n = sum(1 for _ in f)
        sys.path.insert(0, os.path.join(os.path.dirname(here), "src"))
        from ksight.collect.collector import Collector
        from ksight.collect.plan import Needs, Plan
        from ksight.fs import LiveRoot
        from ksight.views import pmap as view

        root = LiveRoot()
        col = Collector()
        plan = Plan.of([Needs(processes=view.PARTS, pids=(pid,), window=False)])
        py = os.path.join(os.path.dirname(here), ".venv", "bin", "python")
        from ksight.render.pmap_text import render
        from ksight.collect.processes import SMAPS_CHUNK as MAPS_CHUNK  # as the ordinary path reads smaps
        from ksight.sources.proc_pid import smaps

        import gc
        import io

        from ksight.collect.pmap_live import SMAPS_CHUNK
        from ksight import _smapspmap

        res = {"ksight pmap": [], "ksight pmap --json": [], "pmap -x": [],
               "python -c pass": [], "python -c 'import re'": [],
               "ksight pmap (no such PID)": [], "cat smaps": [],
               "fast: read_table (read+parse)": [],
               "snapshot+build()": [], "read": [], "parse (C)": [], "parse (Python)": [],
               "view (mappings_of)": [], "render (text)": []}
        nopid = gone_pid()
        if a.base:
            compileall.compile_dir(os.path.join(a.base, "ksight"), quiet=1)
            res["base: ksight pmap"] = []
            base_env = dict(os.environ, PYTHONPATH=a.base)
            # as the console script runs it (pip's: import re, then the entry point)
            base_cmd = [py, "-c", "import re, sys; import ksight.cli.main as m; "
                        "sys.exit(m.entry() if hasattr(m, 'entry') else m.main())",
                        "pmap", str(pid)]
        for _ in range(a.rounds):
            if a.base:
                res["base: ksight pmap"].append(wall(base_cmd, env=base_env, name="base"))
            res["ksight pmap"].append(wall([ksight, "pmap", str(pid)], name="ksight pmap"))
            res["pmap -x"].append(wall([pmap, "-x", str(pid)], name="pmap -x"))
            res["ksight pmap --json"].append(wall([ksight, "pmap", str(pid), "--json"]))
            res["python -c pass"].append(wall([py, "-c", "pass"]))
            res["python -c 'import re'"].append(wall([py, "-c", "import re"]))
            res["ksight pmap (no such PID)"].append(wall([ksight, "pmap", str(nopid)], check=False))
            res["cat smaps"].append(wall(["cat", f"/proc/{pid}/smaps"]))
            t = time.perf_counter()
            _smapspmap.read_table(f"/proc/{pid}/smaps", None, SMAPS_CHUNK)
            res["fast: read_table (read+parse)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            view.build(col.one(plan).processes[pid])
            res["snapshot+build()"].append(time.perf_counter() - t)
            t = time.perf_counter()
            data = root.read_bytes(f"proc/{pid}/smaps", chunk=MAPS_CHUNK)
            res["read"].append(time.perf_counter() - t)
            gc.disable()  # as ksight pmap runs
            t = time.perf_counter()
            sm = smaps.parse_fast(data)
            res["parse (C)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            smaps.parse(data.decode(), "smaps")
            res["parse (Python)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            maps, _ = view.mappings_of(sm, None)
            res["view (mappings_of)"].append(time.perf_counter() - t)
            pm = view.Pmap(pid, "x", tuple(maps), 0, 0, 0, None)
            t = time.perf_counter()
            render(pm, io.StringIO())
            res["render (text)"].append(time.perf_counter() - t)
            gc.enable()
        print(f"process with {n} mappings, {a.rounds} interleaved rounds (median [min-max] wall); "
              f"load average {os.getloadavg()[0]:.1f}")
        for k, v in res.items():
            print(f"  {k:30s} {fmt(v)}")
        for k, v in CPU.items():
            u, sy = [x[0] for x in v], [x[1] for x in v]
            print(f"  CPU {k:26s} user {statistics.median(u) * 1000:5.1f} ms, "
                  f"sys {statistics.median(sy) * 1000:5.1f} ms (medians)")
        kp, px = res["ksight pmap"], res["pmap -x"]
        wins = sum(k < p for k, p in zip(kp, px))
        print(f"  ksight pmap faster than pmap -x in {wins} of {len(kp)} rounds; medians "
              f"{statistics.median(kp) * 1000:.1f} vs {statistics.median(px) * 1000:.1f} ms; "
              f"load average at the end {os.getloadavg()[0]:.1f}")
        return 0
    finally:
        child.kill()
        child.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
