"""Issue 11 bench: socket attribution of 10,000+ sockets (a TIME_WAIT storm) in under a second.

Needs root. Creates a network namespace `ksbench<pid>`, runs inside it a process that makes a
storm of short connections on loopback (the client closes first: each leaves a TIME_WAIT socket
for 60 s) and holds HELD established connections (owned sockets, for the owner join), then
measures, interleaved in each round:

  ksight   collect.sockets.collect(LiveRoot()): every namespace's TCP table (sock_diag), the
           namespaces, and each socket's owner through /proc/*/fd (wall and CPU time)
  check    a whole `ksight tcp` snapshot: take() with the tcp view's plan (sockets, process
           table, per-namespace counters, sources)
  ss       `ss -tanp` inside the namespace (the peer: the same table with owners), wall time

and prints the median and range over RUNS rounds. Everything is bounded: the storm stops at
COUNT connections or 60 s; the holder sleeps at most 300 s; both are killed by PID and the
namespace deleted at the end.

    sudo .venv/bin/python bench/tcp_attribution.py [COUNT=10000] [RUNS=7] [HELD=500]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

STORM = r"""
import socket, sys, time
count, held_n = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 7100)); srv.listen(4096)
end = time.time() + 60
done = 0
while done < count and time.time() < end:
    c = socket.create_connection(("127.0.0.1", 7100))
    a, _ = srv.accept()
    c.close()          # the client closes first: TIME_WAIT on its side
    a.close()
    done += 1
held = []
for _ in range(held_n):
    c = socket.create_connection(("127.0.0.1", 7100))
    a, _ = srv.accept()
    held += [c, a]
print("ready", done, flush=True)
time.sleep(300)
"""


def _ms(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs) * 1000:.1f} ms [{xs[0] * 1000:.1f}-{xs[-1] * 1000:.1f}]"


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (creates a network namespace)", file=sys.stderr)
        return 2
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    held = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from ksight.collect.plan import Plan
    from ksight.collect.snapshot import take
    from ksight.collect.sockets import collect
    from ksight.fs import LiveRoot
    from ksight.views import tcp

    ns = f"ksbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", STORM,
                                 str(count), str(held)], stdout=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise SystemExit("the storm did not finish")
        print(f"storm: {line[1]} short connections in {time.monotonic() - t0:.1f} s, "
              f"{held} connections held", flush=True)
        root = LiveRoot()
        plan = Plan.of([tcp.needs(window=False)])
        ino = os.stat(f"/run/netns/{ns}").st_ino
        walls, cpus, checks, sss = [], [], [], []
        n_sock = n_owned = 0
        for i in range(runs):
            c0, w0 = time.process_time(), time.perf_counter()
            table, _ = collect(root)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            mine = [s for s in table.sockets if s.netns == ino]
            n_sock, n_owned = len(mine), sum(1 for s in mine if s.pid is not None)
            w0 = time.perf_counter()
            take(root, plan=plan)
            checks.append(time.perf_counter() - w0)
            w0 = time.perf_counter()
            out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tanp"], capture_output=True,
                                 text=True, check=True).stdout
            sss.append(time.perf_counter() - w0)
            n_ss = len(out.splitlines()) - 1
        print(f"sockets in the namespace: ksight {n_sock} ({n_owned} with their owner), "
              f"ss -tanp {n_ss}")
        print(f"ksight attribution (every namespace): wall {_ms(walls)}, CPU {_ms(cpus)}")
        print(f"ksight tcp snapshot (take, tcp plan): wall {_ms(checks)}")
        print(f"ss -tanp in the namespace:            wall {_ms(sss)}")
        print(f"runs {runs}; load {os.getloadavg()[0]:.2f}; "
              f"{'met' if max(walls) < 1.0 else 'MISSED'}: attribution under 1 s in every run")
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
