"""How much does the read buffer size cost when reading /proc/sys?

Reads every sysctl in ksight.sources.sysctl.NAMES that exists on this machine, through
LiveRoot.read_text with read sizes of 128 B (what fs.SYSCTL_CHUNK uses), 8 KiB and 64 KiB.
The kernel's proc_sys_call_handler allocates a buffer of the requested size (capped at
KMALLOC_MAX_SIZE) for every read, and 64 KiB allocations are not cheap.

Rounds are interleaved (128, 8K, 64K, 128, ...) so drift on the machine hits each size alike.
Bounded: ROUNDS rounds, at most MAX_SECONDS in all.

    .venv/bin/python bench/sysctl_read.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import time

from ksight.errors import Unavailable
from ksight.fs import LiveRoot, sysctl_path
from ksight.sources.sysctl import NAMES

SIZES = (128, 8192, 65536)
ROUNDS = 300
MAX_SECONDS = 60.0


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    root = LiveRoot()
    paths = []
    for n in NAMES:
        try:
            root.read_text(sysctl_path(n))
            paths.append(sysctl_path(n))
        except Unavailable:
            pass
    # values must agree whatever the read size (multi-chunk reads at 128 B must reassemble)
    for p in paths:
        assert len({root.read_text(p, chunk=c) for c in SIZES}) == 1, p
    per_round: dict[int, list[float]] = {c: [] for c in SIZES}
    start = time.monotonic()
    done = 0
    for _ in range(rounds):
        if time.monotonic() - start > MAX_SECONDS:
            break
        for c in SIZES:
            t0 = time.perf_counter_ns()
            for p in paths:
                root.read_text(p, chunk=c)
            per_round[c].append((time.perf_counter_ns() - t0) / 1000)
        done += 1
    print(f"sysctl reads: {len(paths)} sysctls per round, {done} rounds per size")
    print(f"{'read size':>10} {'median us/round':>16} {'p10':>8} {'p90':>8} {'us/sysctl':>10}")
    base = statistics.median(per_round[SIZES[0]])
    for c in SIZES:
        xs = sorted(per_round[c])
        med = statistics.median(xs)
        p10, p90 = xs[len(xs) // 10], xs[(len(xs) * 9) // 10]
        print(f"{c:>10} {med:>16.1f} {p10:>8.1f} {p90:>8.1f} {med / len(paths):>10.2f}"
              f"   ({med / base:.2f}x of 128 B)")


if __name__ == "__main__":
    main()
