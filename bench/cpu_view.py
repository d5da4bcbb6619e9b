"""Cost of `ksight cpu` against sysstat's `mpstat -P ALL`, and of cpu.high-system's check-time
kernel profile (trace.perf.sample_kernel, 1 s).

    .venv/bin/python bench/cpu_view.py [RUNS]

Each run, interleaved: `ksight cpu 1 1 --json` (one 1 s interval, with the process table for the
top processes, and --top 0 without it) and `mpstat -P ALL 1 1`; the CPU time each child used
(user + system, from RUSAGE_CHILDREN) and its wall time. Then `sample_kernel(1.0)` as root: wall
time, and the CPU time perf used (its children's rusage). Median and range over RUNS (default 5).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

KSIGHT = os.path.join(os.path.dirname(sys.executable), "ksight")


def child_cost(argv: list[str]) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={**os.environ, "LC_ALL": "C"})
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), wall


def show(name: str, vals: list[float], unit: str, scale: float = 1.0) -> None:
    v = [x * scale for x in vals]
    print(f"  {name:<34} median {statistics.median(v):8.1f} {unit}  range {min(v):.1f}-{max(v):.1f}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    cmds = {"ksight cpu 1 1 --json": [KSIGHT, "cpu", "1", "1", "--json"],
            "ksight cpu 1 1 --json --top 0": [KSIGHT, "cpu", "1", "1", "--json", "--top", "0"]}
    if shutil.which("mpstat"):
        cmds["mpstat -P ALL 1 1"] = ["mpstat", "-P", "ALL", "1", "1"]
    cpu = {k: [] for k in cmds}
    wall = {k: [] for k in cmds}
    for _ in range(runs):
        for k, argv in cmds.items():
            c, w = child_cost(argv)
            cpu[k].append(c)
            wall[k].append(w)
    print(f"{runs} runs, interleaved; {os.cpu_count()} CPUs; machine shared with other work")
    for k in cmds:
        show(k + " CPU", cpu[k], "ms", 1000)
        show(k + " wall", wall[k], "ms", 1000)
    if os.geteuid() == 0 and shutil.which("perf"):
        from ksight.trace.perf import sample_kernel

        walls, cpus = [], []
        for _ in range(runs):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            sample_kernel(1.0)
            walls.append(time.monotonic() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        show("sample_kernel(1.0) wall", walls, "ms", 1000)
        show("sample_kernel(1.0) perf CPU", cpus, "ms", 1000)


if __name__ == "__main__":
    main()
