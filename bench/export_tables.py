"""`ksight export`'s cost per snapshot: the project VM's capture (tests/fixtures/captures,
592 system columns, 78 processes, 5 memory cgroups, 2 CPUs per snapshot) replayed N times with
new times, written as CSV and as Parquet, formats interleaved, 5 runs.

    .venv/bin/python bench/export_tables.py [snapshots=2000] [runs=5]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    from ksight.sources import SYSTEM
    from ksight.store.capture import open_capture
    from ksight.views import export as ex

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    cap = os.path.join(ROOT, "tests", "fixtures", "captures", "vm-6.18.tar.zst")
    snaps = list(open_capture(cap).snapshots(processes=True, sockets=False, sources=list(SYSTEM)))

    def gen():
        for i in range(n):
            yield replace(snaps[i % len(snaps)], taken_at=1.7e9 + i)

    got: dict[str, list[tuple[float, int]]] = {"csv": [], "parquet": []}
    for _ in range(runs):
        for fmt in got:
            d = tempfile.mkdtemp(prefix="ksight-bench-export-")
            try:
                t = time.process_time()
                ex.write_tables(gen(), d, fmt)
                secs = time.process_time() - t
                size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
            finally:
                shutil.rmtree(d)
            got[fmt].append((secs, size))
    print(f"{n} snapshots, {runs} runs, load {os.getloadavg()[0]:.1f} (shared machine)")
    for fmt, rs in got.items():
        ms = [s / n * 1000 for s, _ in rs]
        print(f"{fmt:8s} {statistics.median(ms):.2f} ms/snapshot [{min(ms):.2f}-{max(ms):.2f}], "
              f"{rs[0][1] / n / 1024:.1f} KiB/snapshot on disk")


if __name__ == "__main__":
    main()
