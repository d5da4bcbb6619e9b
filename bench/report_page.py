"""The report page's cost over a synthetic 24-hour recording at 1 s: computing the charts
(views/report_series.build_charts, streamed from an iterator as `ksight report` reads a store)
and writing the HTML page (render/report_html). Each run is a fresh process (peak RSS is the
process's); runs of each size are interleaved.

    .venv/bin/python bench/report_page.py [runs=5] [snapshots=86400]

The snapshots are made once per run from parsed synthetic kernel text (tests/browser/synth.py)
and reused with new times (the charts cost the same); their making is not timed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def one(n: int, procs: int) -> dict:
    import resource
    import time

    sys.path.insert(0, ROOT)
    from ksight.model.snapshot import Snapshot
    from ksight.render.report_html import to_html
    from ksight.views.report_data import ReportView
    from ksight.views.report_series import build_charts
    from tests.browser.synth import T0, process, recording

    table = {p.pid: p for p in (process(1000 + k, f"p{k}", 1000 + 10 * k, 100 + k)
                                for k in range(procs))}
    base = recording(600)

    def gen():
        for i in range(n):
            b = base[i % 600]
            yield Snapshot(T0 + i, 1000.0 + i, 1000.0 + i, b.host, b.sources, table)

    t = time.process_time()
    cs = build_charts(gen())
    build = time.process_time() - t
    v = ReportView(cs.host, cs.kernel, cs.start, cs.end, cs.charts, notes=cs.notes,
                   snapshots=cs.snapshots)
    t = time.process_time()
    page = to_html(v)
    render = time.process_time() - t
    return {"build_s": build, "render_s": render, "page_bytes": len(page.encode()),
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "points": max(len(s.times) for c in cs.charts for s in c.series)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]), int(sys.argv[3]))))
        return
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 86400
    sizes = (3, 100)
    got: dict[int, list[dict]] = {p: [] for p in sizes}
    for _ in range(runs):
        for p in sizes:  # interleaved
            out = subprocess.run([sys.executable, __file__, "--one", str(n), str(p)],
                                 capture_output=True, text=True, check=True).stdout
            got[p].append(json.loads(out))
    load = os.getloadavg()[0]
    print(f"{n} snapshots, {runs} runs, load {load:.1f} at the end (shared machine)")
    for p, rs in got.items():
        def med(k):
            xs = [r[k] for r in rs]
            return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"
        print(f"{p:4d} processes: charts {med('build_s')} s CPU, page {med('render_s')} s, "
              f"{med('maxrss_mib')} MiB peak RSS, page {rs[0]['page_bytes'] / 1024:.0f} KiB, "
              f"{rs[0]['points']} points per line at most")


if __name__ == "__main__":
    main()
