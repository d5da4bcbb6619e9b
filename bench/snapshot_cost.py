"""What does a full system snapshot cost? Against the raw-read floor, node_exporter, atop, and
the `ksight show --json` command line.

Four measurements, one run, one table with a verdict per target (issue 2):

1. snapshot vs raw-read floor. `ksight.collect.snapshot.take(LiveRoot())` (every system source
   parsed into the model; no processes, no sockets) against the floor of only reading the same
   files. Which files: one snapshot is taken through `store.recording_root.RecordingRoot`
   (extended here to also note the read size of each read, in order); the floor then does plain
   `os.open / os.read(fd, chunk) until EOF / os.close` of exactly those paths with exactly those
   read sizes (64 KiB for procfs/sysfs, 128 B for /proc/sys). Rounds are interleaved (snapshot,
   floor, snapshot, ...) so drift hits both alike. CPU time (time.process_time) and wall time
   (time.perf_counter), median of REPS rounds. Target: snapshot <= 2.5x floor.
   For information, a second floor also replays the snapshot's directory lookups (listdir,
   listdirs, isdir, exists), which are I/O the snapshot must do but the issue's floor leaves out.

2. node_exporter and atop (optional: skipped with a clear line when not installed).
   - node_exporter: started by us on 127.0.0.1:<free port> with its default collectors, one
     warm-up scrape, then SCRAPES scrapes of /metrics with urllib. CPU per scrape = delta of
     utime+stime (whole thread group, /proc/PID/stat fields 14+15, in USER_HZ ticks) / SCRAPES.
     Stopped by PID (SIGTERM, then SIGKILL) in a finally block.
   - atop: `atop -w TMPFILE 1 N` (raw samples to a temp file, no screen rendering) run with
     ATOPACCT="" so atop does not switch on kernel process accounting. CPU from os.wait4's
     rusage (utime+stime of the child). atop's first sample (since boot) comes with its start-up
     cost, so the cost of one sample = (cpu(N=3) - cpu(N=1)) / 2, the median over ATOP_REPS
     pairs; the sleep between samples costs no CPU. cpu(N=1) (start-up plus one sample) is shown
     too.
   Target: ksight snapshot CPU < node_exporter CPU per scrape, and < one atop sample.
   ksight's figure is the in-process snapshot (as a resident `ksight record` would pay); both
   other tools also pay for their output (HTTP + text format, raw file write).

3. `ksight show --json` start to finish: the installed .venv/bin/ksight, output to /dev/null,
   SHOW_RUNS runs after 3 warm-ups; with hyperfine (-N, no shell) if installed, else a
   subprocess loop. Median and max wall time. Target: < 300 ms. Python's bytecode cache is
   allowed (a temp PYTHONPYCACHEPREFIX), as after `pip install .`; if the environment sets
   PYTHONDONTWRITEBYTECODE, the recompile-every-run case is shown too, for information.

(The process scan has its own bench: bench/process_scan.py.)

Bounded: every loop has a count and a time limit. Only processes started here are stopped, by
PID. Temp files are removed.

    .venv/bin/python bench/snapshot_cost.py [--reps 200] [--scrapes 50] [--atop-reps 5]
        [--show-runs 20] [--skip-tools] [--skip-show]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from ksight.collect.snapshot import take
from ksight.fs import PROCFS_CHUNK, LiveRoot
from ksight.fs import RecordingRoot

MAX_SECONDS = 120.0  # per measurement loop
SNAPSHOT_TARGET = 2.5
SHOW_TARGET_MS = 300.0
HERE = os.path.dirname(os.path.abspath(__file__))
VENV_KSIGHT = os.path.join(os.path.dirname(HERE), ".venv", "bin", "ksight")


class _SizedRecorder(RecordingRoot):
    """RecordingRoot that also keeps the order, read size and directory lookups of a snapshot."""

    def __init__(self, inner):
        super().__init__(inner)
        self.reads: list[tuple[str, int]] = []
        self.lookups: list[tuple[str, str]] = []

    def read_bytes(self, path, *, chunk=PROCFS_CHUNK):
        data = super().read_bytes(path, chunk=chunk)
        self.reads.append(("/" + path.lstrip("/"), chunk))
        return data

    def listdir(self, path):
        self.lookups.append(("listdir", "/" + path.lstrip("/")))
        return super().listdir(path)

    def listdirs(self, path):
        self.lookups.append(("listdirs", "/" + path.lstrip("/")))
        return super().listdirs(path)

    def isdir(self, path):
        self.lookups.append(("isdir", "/" + path.lstrip("/")))
        return super().isdir(path)

    def exists(self, path):
        self.lookups.append(("exists", "/" + path.lstrip("/")))
        return super().exists(path)


def _raw_reads(reads, _open=os.open, _read=os.read, _close=os.close,
               _flags=os.O_RDONLY | os.O_CLOEXEC) -> int:
    n = 0
    for path, chunk in reads:
        try:
            fd = _open(path, _flags)
        except OSError:
            continue
        try:
            while True:
                b = _read(fd, chunk)
                if not b:
                    break
                n += len(b)
        except OSError:
            pass
        finally:
            _close(fd)
    return n


def _lookups(lookups) -> None:
    for kind, path in lookups:
        try:
            if kind == "listdir":
                sorted(os.listdir(path))
            elif kind == "listdirs":
                with os.scandir(path) as it:
                    sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
            elif kind == "isdir":
                os.path.isdir(path)
            else:
                os.path.exists(path)
        except OSError:
            pass


def _timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def bench_snapshot(reps: int) -> dict:
    rec = _SizedRecorder(LiveRoot())
    snap = take(rec)
    reads, lookups = rec.reads, rec.lookups
    nbytes = _raw_reads(reads)
    for _ in range(3):  # warm-up: imports done, caches hot
        take(LiveRoot())
        _raw_reads(reads)
    runs = {"snapshot": [], "floor": [], "floor_dirs": []}
    start = time.monotonic()
    done = 0
    for _ in range(reps):
        if time.monotonic() - start > MAX_SECONDS:
            break
        runs["snapshot"].append(_timed(lambda: take(LiveRoot())))
        runs["floor"].append(_timed(lambda: _raw_reads(reads)))
        runs["floor_dirs"].append(_timed(lambda: (_raw_reads(reads), _lookups(lookups))))
        done += 1
    med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
           for k, v in runs.items()}
    sysctl_reads = sum(1 for _, c in reads if c < PROCFS_CHUNK)
    return {
        "reps": done,
        "files": len(reads),
        "distinct_files": len(set(p for p, _ in reads)),
        "sysctl_reads": sysctl_reads,
        "lookups": len(lookups),
        "bytes": nbytes,
        "sources": len(snap.sources),
        "unavailable": [f"{m.source}: {m.reason}" for m in snap.unavailable],
        "median": med,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)


def bench_node_exporter(scrapes: int) -> dict | None:
    exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not exe:
        print("node_exporter: not installed (apt-get install -y prometheus-node-exporter); skipped")
        return None
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:  # warm-up scrape
                    body = r.read()
                break
            except OSError:
                if proc.poll() is not None:
                    print(f"node_exporter: exited with {proc.returncode} at start; skipped")
                    return None
                time.sleep(0.1)
        if not body:
            print("node_exporter: no answer within 15 s; skipped")
            return None
        hz = os.sysconf("SC_CLK_TCK")
        t0 = _proc_cpu_ticks(proc.pid)
        w0 = time.monotonic()
        done = 0
        for _ in range(scrapes):
            if time.monotonic() - w0 > MAX_SECONDS:
                break
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
            done += 1
        wall = time.monotonic() - w0
        ticks = _proc_cpu_ticks(proc.pid) - t0
        lines = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
        return {"exe": exe, "scrapes": done, "cpu_per_scrape": ticks / hz / done,
                "wall_per_scrape": wall / done, "ticks": ticks, "hz": hz, "samples": lines}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _atop_cpu(exe: str, tmpdir: str, samples: int) -> float:
    out = os.path.join(tmpdir, f"raw{samples}")
    env = dict(os.environ, ATOPACCT="")  # do not switch on kernel process accounting
    proc = subprocess.Popen([exe, "-w", out, "1", str(samples)], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _, status, ru = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"atop exited with {proc.returncode}")
    os.unlink(out)
    return ru.ru_utime + ru.ru_stime


def bench_atop(reps: int) -> dict | None:
    exe = shutil.which("atop")
    if not exe:
        print("atop: not installed (apt-get install -y atop); skipped")
        return None
    one, per_sample = [], []
    tmpdir = tempfile.mkdtemp(prefix="ksight-bench-atop-")
    try:
        start = time.monotonic()
        for _ in range(reps):
            if time.monotonic() - start > MAX_SECONDS:
                break
            c1 = _atop_cpu(exe, tmpdir, 1)
            c3 = _atop_cpu(exe, tmpdir, 3)
            one.append(c1)
            per_sample.append((c3 - c1) / 2)
    except RuntimeError as e:
        print(f"atop: {e}; skipped")
        return None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return {"exe": exe, "pairs": len(one), "startup_plus_one": statistics.median(one),
            "per_sample": statistics.median(per_sample), "per_sample_all": per_sample}


def _show_times(exe: str, runs: int, env: dict) -> dict:
    hf = shutil.which("hyperfine")
    if hf:
        fd, out = tempfile.mkstemp(prefix="ksight-bench-", suffix=".json")
        os.close(fd)
        try:
            subprocess.run([hf, "-N", "--style", "none", "--warmup", "3", "--runs", str(runs),
                            "--export-json", out, f"{exe} show --json"], env=env,
                           stdout=subprocess.DEVNULL, check=True, timeout=MAX_SECONDS)
            with open(out) as f:
                r = json.load(f)["results"][0]
        finally:
            os.unlink(out)
        times = r["times"]
        return {"tool": "hyperfine", "runs": len(times), "median": statistics.median(times),
                "max": max(times), "user": r["user"], "system": r["system"]}
    times = []
    start = time.monotonic()
    for i in range(runs + 3):
        if time.monotonic() - start > MAX_SECONDS:
            break
        t0 = time.perf_counter()
        subprocess.run([exe, "show", "--json"], stdout=subprocess.DEVNULL, check=True,
                       timeout=30, env=env)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return {"tool": "subprocess loop", "runs": len(times), "median": statistics.median(times),
            "max": max(times), "user": None, "system": None}


def bench_show(runs: int) -> dict | None:
    """Timed with Python's bytecode cache usable (what `pip install .` gives: it byte-compiles).
    The bytecode goes to a temp PYTHONPYCACHEPREFIX, so no __pycache__ lands in the tree. When
    this environment forbids bytecode (PYTHONDONTWRITEBYTECODE, as some sandboxes set), every
    run recompiles every module; that case is timed too, for information."""
    exe = VENV_KSIGHT if os.path.exists(VENV_KSIGHT) else shutil.which("ksight")
    if not exe:
        print("ksight show: no ksight executable found; skipped")
        return None
    pyc = tempfile.mkdtemp(prefix="ksight-bench-pyc-")
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pyc
        subprocess.run([exe, "show", "--json"], stdout=subprocess.DEVNULL, check=True,
                       timeout=30, env=env)  # writes the bytecode
        res = _show_times(exe, runs, env)
    finally:
        shutil.rmtree(pyc, ignore_errors=True)
    res["exe"] = exe
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        res["no_bytecode"] = _show_times(exe, runs, dict(os.environ))
    return res


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--atop-reps", type=int, default=5)
    ap.add_argument("--show-runs", type=int, default=20)
    ap.add_argument("--skip-tools", action="store_true", help="no node_exporter / atop")
    ap.add_argument("--skip-show", action="store_true", help="no `ksight show --json` timing")
    a = ap.parse_args()

    print(f"date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; nproc {os.cpu_count()}; "
          f"kernel {platform.release()}; python {platform.python_version()}")
    s = bench_snapshot(a.reps)
    (sc, sw), (fc, fw), (dc, dw) = (s["median"][k] for k in ("snapshot", "floor", "floor_dirs"))
    print(f"\n1. full system snapshot vs raw reads ({s['reps']} interleaved rounds, medians)")
    print(f"   snapshot: {s['sources']} sources, {s['files']} reads ({s['distinct_files']} distinct "
          f"files, {s['sysctl_reads']} at 128 B), {s['bytes']} bytes, {s['lookups']} directory "
          f"lookups; unavailable: {s['unavailable'] or 'none'}")
    print(f"   {'':34} {'CPU ms':>9} {'wall ms':>9} {'CPU x':>7} {'wall x':>7}")
    print(f"   {'snapshot take(LiveRoot())':34} {ms(sc):>9} {ms(sw):>9} {sc / fc:>6.2f}x {sw / fw:>6.2f}x")
    print(f"   {'floor: raw reads of same files':34} {ms(fc):>9} {ms(fw):>9} {1:>6.2f}x {1:>6.2f}x")
    print(f"   {'(info) floor + directory lookups':34} {ms(dc):>9} {ms(dw):>9} {dc / fc:>6.2f}x {dw / fw:>6.2f}x")
    results = [("snapshot <= 2.5x raw-read floor (CPU)", sc / fc <= SNAPSHOT_TARGET,
                f"{sc / fc:.2f}x"),
               ("snapshot <= 2.5x raw-read floor (wall)", sw / fw <= SNAPSHOT_TARGET,
                f"{sw / fw:.2f}x")]

    if not a.skip_tools:
        print("\n2. CPU per collection: ksight snapshot vs node_exporter scrape vs atop sample")
        print(f"   {'ksight snapshot (in-process)':44} {ms(sc):>9} ms CPU")
        ne = bench_node_exporter(a.scrapes)
        if ne:
            print(f"   {'node_exporter scrape (default collectors)':44} "
                  f"{ms(ne['cpu_per_scrape']):>9} ms CPU  ({ne['ticks']} ticks @ {ne['hz']} Hz "
                  f"over {ne['scrapes']} scrapes; {ne['samples']} samples/scrape; "
                  f"{ms(ne['wall_per_scrape'])} ms wall)")
            results.append(("snapshot CPU < one node_exporter scrape",
                            sc < ne["cpu_per_scrape"], f"node_exporter {ms(ne['cpu_per_scrape'])} ms vs ksight {ms(sc)} ms"))
        at = bench_atop(a.atop_reps)
        if at:
            print(f"   {'atop sample ((N=3 - N=1) / 2)':44} {ms(at['per_sample']):>9} ms CPU  "
                  f"(median of {at['pairs']}: {', '.join(ms(x) for x in at['per_sample_all'])})")
            print(f"   {'(info) atop start-up + first sample (N=1)':44} "
                  f"{ms(at['startup_plus_one']):>9} ms CPU")
            results.append(("snapshot CPU < one atop sample", sc < at["per_sample"],
                            f"atop {ms(at['per_sample'])} ms vs ksight {ms(sc)} ms"))

    if not a.skip_show:
        sh = bench_show(a.show_runs)
        if sh:
            def line(r):
                return (f"median {ms(r['median'])} ms, max {ms(r['max'])} ms"
                        + (f", mean user {ms(r['user'])} ms + sys {ms(r['system'])} ms"
                           if r["user"] is not None else ""))
            print(f"\n3. `ksight show --json > /dev/null` ({sh['tool']}, {sh['runs']} runs)")
            print(f"   bytecode cached (as installed):  {line(sh)}")
            if "no_bytecode" in sh:
                print(f"   (info) PYTHONDONTWRITEBYTECODE set here, every module recompiled: "
                      f"{line(sh['no_bytecode'])}")
            results.append(("`ksight show --json` < 300 ms (max)",
                            sh["max"] * 1000 < SHOW_TARGET_MS,
                            f"median {ms(sh['median'])} / max {ms(sh['max'])} ms"))

    print("\nverdicts")
    for name, ok, detail in results:
        print(f"   {verdict(ok):7} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
