"""Issue 13: what does the flight recorder cost per sample, next to sysstat's sadc and atop?

For each process count (the machine's own plus helpers: `sleep` processes this script starts and
ends by PID), each run interleaves the three recorders, one after the other, at 1 s:
- `ksight record --interval 1 --seconds S --db TMP` (default plan: every area's sources, the 50
  largest and 50 busiest processes, the socket summary),
- `sadc -S ALL 1 N TMPFILE` (sysstat's data collector, every activity),
- `atop -w TMPFILE 1 N` (raw samples, no screen; ATOPACCT="" so it does not switch on process
  accounting).
CPU per sample is whole-process CPU (os.wait4 rusage, user + system) of a run of N2 samples less
a run of N1 samples, divided by N2 - N1: start-up (Python's imports, atop's first sample since
boot) cancels out. ksight's own in-loop figure (process_time around sampling + storing, from
`--json`) is printed beside it.

Bytes on disk per sample: one longer run of each (S + 1 samples at 1 s, at the same time; at 60 s a
keyframe and 60 delta frames for ksight): ksight's frame bytes and its file after the recorder
exits (SQLite file, WAL and -shm on disk: `store.file_size`), per sample, both as the whole file
divided by the samples and as the growth past a 1-sample run's file (the header, tables' first
pages), which is how sadc's is measured; the largest the file was while recording (WAL included).
`--bytes-replay DB --copies K` writes the frames of a recording made earlier (real frames, their
real sizes) K times over through this ksight's writer into a new file: a long recording (10 min
recorded, x6 = 1 h) without waiting for it; it reports the same figures.

    .venv/bin/python bench/recorder.py [--runs 5] [--counts 100 1000] [--n1 3] [--n2 8] [--bytes-seconds 60]
        [--baseline DIR]
    .venv/bin/python bench/recorder.py --skip-cpu --bytes-replay rec.db --copies 6

--baseline DIR: also run the ksight of another checkout (DIR/src first on PYTHONPATH, its C
extensions built in place), interleaved with this one in every run: a before/after on the same
machine at the same moments (`git worktree add --detach DIR COMMIT`, then `python setup.py
build_ext --inplace` there).

Needs root (sadc and ksight read root-only files, as they would as services). Bounded: every
child has a timeout; helpers are killed by PID in `finally`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

KSIGHT = [sys.executable, "-m", "ksight"]
SADC = next((p for p in ("/usr/lib/sysstat/sadc", "/usr/lib64/sa/sadc", "/usr/libexec/sysstat/sadc")
             if os.path.exists(p)), None)
ATOP = shutil.which("atop")
MAX_HELPERS = 2000
NO_PEERS = False  # --no-peers: sadc and atop left out


def nprocs() -> int:
    return sum(1 for n in os.listdir("/proc") if n.isdigit())


def start_helpers(target: int) -> list[subprocess.Popen]:
    """`sleep` processes until /proc holds about `target` processes (none if it already does)."""
    need = min(max(0, target - nprocs()), MAX_HELPERS)
    out = []
    for _ in range(need):
        out.append(subprocess.Popen(["sleep", "900"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return out


def stop_helpers(helpers: list[subprocess.Popen]) -> None:
    for p in helpers:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in helpers:
        p.wait(timeout=10)


def run_child(argv, *, env=None, timeout) -> tuple[float, str]:
    """(CPU seconds of the child, its stdout)."""
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not finish in {timeout} s")
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited with {proc.returncode}: {err.strip()[-300:]}")
    return ru.ru_utime + ru.ru_stime, out


def ksight_run(tmp: str, n: int, tree: str | None = None) -> tuple[float, dict]:
    db = os.path.join(tmp, f"k{n}.db")
    env = None
    if tree:
        env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src") + (
            os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    cpu, out = run_child(KSIGHT + ["record", "--db", db, "--interval", "1", "--seconds", str(n - 1), "--json"],
                         env=env, timeout=n + 60)
    info = json.loads(out)
    for s in ("", "-wal", "-shm", ".lock"):
        if os.path.exists(db + s):
            os.unlink(db + s)
    if info["samples"] != n:
        print(f"  (ksight stored {info['samples']} samples, not {n}: the machine is busy)")
    return cpu, info


def sadc_run(tmp: str, n: int) -> float:
    f = os.path.join(tmp, f"sa{n}")
    cpu, _ = run_child([SADC, "-S", "ALL", "1", str(n), f], timeout=n + 60)
    os.unlink(f)
    return cpu


def atop_run(tmp: str, n: int) -> float:
    f = os.path.join(tmp, f"atop{n}")
    cpu, _ = run_child([ATOP, "-w", f, "1", str(n)], env=dict(os.environ, ATOPACCT=""), timeout=n + 60)
    os.unlink(f)
    return cpu


def fmt(xs, scale=1000.0, unit="ms") -> str:
    xs = [x * scale for x in xs]
    return f"{statistics.median(xs):7.2f} {unit} (range {min(xs):.2f}-{max(xs):.2f})"


def bench_cpu(counts, runs, n1, n2, baseline: str | None = None) -> dict:
    res = {}
    for target in counts:
        helpers = start_helpers(target)
        try:
            time.sleep(1)
            have = nprocs()
            print(f"\n== {have} processes ({len(helpers)} helpers started), {runs} runs, "
                  f"CPU per sample = (run of {n2} - run of {n1}) / {n2 - n1}")
            k, kin, s, a, b, bin_ = [], [], [], [], [], []
            with tempfile.TemporaryDirectory(prefix=f"ksight-bench-rec-{os.getpid()}-") as tmp:
                for r in range(runs):
                    c1, _ = ksight_run(tmp, n1)
                    c2, info = ksight_run(tmp, n2)
                    k.append((c2 - c1) / (n2 - n1))
                    kin.append(info["cpu_ms_per_sample"] / 1000)
                    if baseline:
                        b1, _ = ksight_run(tmp, n1, baseline)
                        b2, binfo = ksight_run(tmp, n2, baseline)
                        b.append((b2 - b1) / (n2 - n1))
                        bin_.append(binfo["cpu_ms_per_sample"] / 1000)
                    if SADC:
                        s.append((sadc_run(tmp, n2) - sadc_run(tmp, n1)) / (n2 - n1))
                    if ATOP:
                        a.append((atop_run(tmp, n2) - atop_run(tmp, n1)) / (n2 - n1))
                    print(f"  run {r + 1}: ksight {k[-1] * 1000:.2f} ms (in-loop {kin[-1] * 1000:.2f})"
                          + (f", baseline {b[-1] * 1000:.2f} ms (in-loop {bin_[-1] * 1000:.2f})" if b else "")
                          + (f", load {os.getloadavg()[0]:.2f}")
                          + (f", sadc {s[-1] * 1000:.2f} ms" if s else "")
                          + (f", atop {a[-1] * 1000:.2f} ms" if a else ""), flush=True)
            print(f"  ksight record   {fmt(k)}   in-loop {fmt(kin)}")
            if b:
                print(f"  baseline        {fmt(b)}   in-loop {fmt(bin_)}   ({baseline})")
            if s or not NO_PEERS:
                print(f"  sadc -S ALL     {fmt(s)}" if s else "  sadc: not installed (apt-get install sysstat)")
            if a or not NO_PEERS:
                print(f"  atop -w         {fmt(a)}" if a else "  atop: not installed (apt-get install atop)")
            res[target] = {"processes": have, "ksight": k, "ksight_in_loop": kin, "sadc": s, "atop": a,
                           "baseline": b, "baseline_in_loop": bin_}
        finally:
            stop_helpers(helpers)
    return res


def bench_bytes(counts, seconds) -> dict:
    from ksight.record.store import Recording, file_size

    res = {}
    n = seconds + 1
    for target in counts:
        helpers = start_helpers(target)
        try:
            time.sleep(1)
            with tempfile.TemporaryDirectory(prefix=f"ksight-bench-recb-{os.getpid()}-") as tmp:
                db, db1 = os.path.join(tmp, "k.db"), os.path.join(tmp, "k1.db")
                sa, sa1 = os.path.join(tmp, "sa"), os.path.join(tmp, "sa1")
                run_child([SADC, "-S", "ALL", "1", "1", sa1], timeout=60)
                run_child(KSIGHT + ["record", "--db", db1, "--interval", "1", "--seconds", "0.05"], timeout=60)
                errf = open(os.path.join(tmp, "k.err"), "w+b")  # not a pipe: nobody reads it meanwhile
                kp = subprocess.Popen(KSIGHT + ["record", "--db", db, "--interval", "1",
                                                "--seconds", str(seconds), "--json"],
                                      stdout=subprocess.PIPE, stderr=errf)
                peak, sp = 0, None
                try:
                    sp = subprocess.Popen([SADC, "-S", "ALL", "1", str(n), sa], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    deadline = time.monotonic() + n + 60
                    while sp.poll() is None or kp.poll() is None:  # the file while it is written
                        if time.monotonic() > deadline:
                            raise RuntimeError("sadc or ksight record did not finish in time")
                        peak = max(peak, file_size(db))
                        time.sleep(0.5)
                    out, _ = kp.communicate(timeout=60)
                    if sp.returncode or kp.returncode:
                        errf.seek(0)
                        raise RuntimeError(f"sadc exited {sp.returncode}, ksight {kp.returncode}: "
                                           f"{errf.read().decode(errors='replace')[-300:]}")
                finally:
                    for p in (kp, sp):
                        if p is not None and p.poll() is None:
                            p.kill()
                            p.wait()
                    errf.close()
                info = json.loads(out)
                # on disk as the recorders left them: before a reader opens them (a reader's -shm
                # is 32 KB beside the file while it reads, and its own, not the recorder's)
                on_disk, head_disk = file_size(db), file_size(db1)
                with Recording.open(db) as rec:  # the frames' sizes as the codec wrote them
                    size = dict(rec.size(), file_bytes=on_disk)
                    rows = rec.con.execute("SELECT keyframe, length FROM frames").fetchall()
                    keys = [n for key, n in rows if key]
                    deltas = [n for key, n in rows if not key]
                with Recording.open(db1) as rec:
                    head = dict(rec.size(), file_bytes=head_disk)
                samples = info["samples"]
                sadc_per = (os.path.getsize(sa) - os.path.getsize(sa1)) / (n - 1)
                r = {"samples": samples, "processes": nprocs(), "sadc": sadc_per,
                     "ksight_frames": size["payload_bytes"] / samples,
                     "ksight_file": size["file_bytes"] / samples,
                     "ksight_growth": (size["file_bytes"] - head["file_bytes"]) / (samples - head["frames"]),
                     "ksight_peak": peak / samples, "sadc_header": os.path.getsize(sa1) - sadc_per,
                     "keyframe": statistics.median(keys), "delta_median": statistics.median(deltas)}
                print(f"\n== bytes per sample, {r['processes']} processes, {samples} samples at 1 s "
                      f"(load {os.getloadavg()[0]:.1f})")
                print(f"  ksight frames   {r['ksight_frames']:8.0f} B/sample (keyframes {r['keyframe']:.0f} B, "
                      f"delta frames median {r['delta_median']:.0f} B, max {max(deltas)})")
                _print_file(r, head["file_bytes"])
                print(f"  sadc -S ALL     {sadc_per:8.0f} B/sample (file growth per sample; its header "
                      f"~{r['sadc_header']:.0f} B)")
                res[target] = r
        finally:
            stop_helpers(helpers)
    return res


def _print_file(r: dict, head: int) -> None:
    print(f"  ksight file     {r['ksight_file']:8.0f} B/sample (after the recorder exits: the file / "
          f"samples, its fixed part included)")
    print(f"  ksight growth   {r['ksight_growth']:8.0f} B/sample (past a 1-sample file of {head} B: "
          "sadc's method)")
    print(f"  ksight peak     {r['ksight_peak']:8.0f} B/sample (the largest the file was while "
          "recording, WAL and -shm included)")


def _as_written(frame: bytes) -> bytes:
    """A frame as the codec writes it: a store of format 2 hands a frame back with its payload
    in raw zstd blocks (uncompressed); compressed again as the encoder does (samples.LEVEL)."""
    import zstandard

    from ksight.store import samples

    if frame[4:5] != b"\x02" or frame[16:21] != b"\x28\xb5\x2f\xfd\xa0":
        return frame
    payload = zstandard.ZstdDecompressor().decompress(frame[16:])
    return frame[:16] + zstandard.ZstdCompressor(level=samples.LEVEL, write_checksum=True,
                                                 write_content_size=True).compress(payload)


def bench_bytes_replay(src: str, copies: int) -> dict:
    """The frames of recording `src`, `copies` times over (times shifted), through this ksight's
    writer into a new file: its bytes per sample after close, its growth past the first sample's
    file, and the largest it was while written (checked every 20 frames)."""
    import types

    from ksight.record.store import Recording, RecordingWriter, file_size

    with Recording.open(src) as rec:
        frames = [(t, _as_written(d)) for _, t, _, d, _ in rec.frames() if d]
    if not frames:
        raise SystemExit(f"{src}: no frames")
    span = frames[-1][0] - frames[0][0] + 1

    class Replay:  # stands for the encoder: the frame given is the frame stored
        def encode(self, snap, processes):
            return snap.data

        def force_keyframe(self):
            pass

    host = types.SimpleNamespace(hostname="replay")
    with tempfile.TemporaryDirectory(prefix=f"ksight-bench-recr-{os.getpid()}-") as tmp:
        db = os.path.join(tmp, "k.db")
        peak = n = 0
        for path, times in ((os.path.join(tmp, "k1.db"), 1), (db, copies)):  # a 1-sample file first
            w = RecordingWriter.create_or_open(path, interval=1.0)
            w.encoder = Replay()
            try:
                for c in range(times):
                    for t, d in (frames[:1] if path != db else frames):
                        w.append(types.SimpleNamespace(taken_at=t + c * span, host=host, data=d))
                        if path == db:
                            n += 1
                            if n % 20 == 0:
                                peak = max(peak, file_size(db))
            finally:
                w.close()
            if path != db:
                head = file_size(path)
        size = file_size(db)
        payload = sum(len(d) for _, d in frames) * copies
    r = {"samples": n, "ksight_frames": payload / n, "ksight_file": size / n,
         "ksight_growth": (size - head) / (n - 1), "ksight_peak": max(peak, size) / n}
    print(f"\n== bytes per sample, the frames of {src} ({len(frames)}) x {copies}: {n} samples")
    print(f"  ksight frames   {r['ksight_frames']:8.0f} B/sample")
    _print_file(r, head)
    print(f"  file / frames   {size / payload:8.3f}")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--n1", type=int, default=3)
    ap.add_argument("--n2", type=int, default=8)
    ap.add_argument("--bytes-seconds", type=int, default=60)
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-bytes", action="store_true")
    ap.add_argument("--baseline", metavar="DIR", help="another checkout's ksight, run interleaved")
    ap.add_argument("--no-peers", action="store_true", help="leave sadc and atop out (quicker A/B)")
    ap.add_argument("--bytes-replay", metavar="DB", help="a recording whose frames are written again "
                    "(--copies times) through this writer: bytes per sample of a long recording")
    ap.add_argument("--copies", type=int, default=6)
    a = ap.parse_args()
    if a.bytes_replay:
        if not 1 <= a.copies <= 1000:
            print("bounds: --copies 1-1000", file=sys.stderr)
            return 2
        bench_bytes_replay(a.bytes_replay, a.copies)
        if a.skip_cpu and a.skip_bytes:
            return 0
    if os.geteuid() != 0:
        print("run as root (the recorders read root-only files)", file=sys.stderr)
        return 2
    if not 1 <= a.runs <= 20 or not 2 <= a.n1 < a.n2 <= 60 or not 10 <= a.bytes_seconds <= 3600:
        print("bounds: --runs 1-20, 2 <= n1 < n2 <= 60, --bytes-seconds 10-3600", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} (shared with other work: "
          "figures are medians and ranges, not a quiet-machine best)")
    out = {}
    if not a.skip_cpu:
        if a.baseline and not os.path.isdir(os.path.join(a.baseline, "src", "ksight")):
            print(f"--baseline {a.baseline}: no src/ksight there", file=sys.stderr)
            return 2
        if a.no_peers:
            global SADC, ATOP, NO_PEERS
            SADC = ATOP = None
            NO_PEERS = True
        out["cpu"] = bench_cpu(a.counts, a.runs, a.n1, a.n2, a.baseline)
    if not a.skip_bytes and SADC:
        out["bytes"] = bench_bytes(a.counts, a.bytes_seconds)
    print("\nverdict (targets: < 5 ms CPU per sample; <= sadc -S ALL's bytes per sample):")
    for target, r in out.get("cpu", {}).items():
        k = statistics.median(r["ksight"]) * 1000
        print(f"  CPU at {r['processes']} processes: ksight {k:.1f} ms: {'MET' if k < 5 else 'NOT MET'}"
              + (f"; sadc {statistics.median(r['sadc']) * 1000:.2f} ms (x{k / max(statistics.median(r['sadc']) * 1000, 1e-9):.0f})" if r["sadc"] else "")
              + (f"; atop {statistics.median(r['atop']) * 1000:.2f} ms" if r["atop"] else "")
              + (f"; baseline {statistics.median(r['baseline']) * 1000:.1f} ms" if r["baseline"] else ""))
    for target, r in out.get("bytes", {}).items():
        for what in ("frames", "file", "growth"):
            k = r[f"ksight_{what}"]
            print(f"  bytes at ~{target} processes, {r['samples']} samples: ksight {what} {k:.0f} B vs "
                  f"sadc {r['sadc']:.0f} B: {'MET' if k <= r['sadc'] else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
