"""`ksight record` end to end on this machine: samples land in the store and read back, a second
recorder is refused naming the first, SIGTERM exits 0 after the sample in hand, SIGKILL at random
moments loses at most the sample being written, and check/sar/top read the past with --db."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksight.record.store import Recording

KSIGHT = [sys.executable, "-m", "ksight"]


def ksight(*args, timeout=120, **kw):
    return subprocess.run(KSIGHT + list(args), capture_output=True, text=True, timeout=timeout, **kw)


def _meminfo_total_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    raise AssertionError("no MemTotal")


def test_record_a_few_seconds_and_read_back(tmp_path):
    db = tmp_path / "r.db"
    t0 = time.time()
    r = ksight("record", "--db", str(db), "--interval", "0.5", "--seconds", "2", "--processes", "5", "--json")
    t1 = time.time()
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    with Recording.open(db) as rec:
        snaps = list(rec.snapshots())
        assert rec.skipped == 0
    # 0, 0.5, ... 2.0 s: 5 samples (fewer if the loaded machine overran a tick: it skips it)
    assert 3 <= len(snaps) <= 5 and out["samples"] == len(snaps)
    assert all(t0 <= s.taken_at <= t1 for s in snaps)
    gaps = [b.taken_at - a.taken_at for a, b in zip(snaps, snaps[1:])]
    assert all(0.3 < g < 1.6 for g in gaps), gaps
    s = snaps[-1]
    # the machine's own numbers, read here without ksight
    assert s.get("meminfo").mem_total_kb == _meminfo_total_kb()
    assert s.host.hostname == open("/proc/sys/kernel/hostname").read().strip()
    # 5 largest by memory + up to 5 busiest by CPU + up to 5 recently busy (sticky)
    assert 5 <= len(s.processes) <= 15
    sub = [m for m in s.unavailable if m.source == "processes:sample"]
    assert sub and f"holds {len(s.processes)} of" in sub[0].reason
    assert s.get("vmstat") is not None and s.get("stat") is not None


def test_the_largest_processes_are_kept(tmp_path):
    """A process that holds more memory than anything else on a test machine is in every sample."""
    db = tmp_path / "r.db"
    code = "import time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(30)"
    big = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert big.stdout.readline().strip() == "ready"
        r = ksight("record", "--db", str(db), "--interval", "0.5", "--seconds", "1", "--processes", "3")
        assert r.returncode == 0, r.stderr
    finally:
        os.kill(big.pid, signal.SIGKILL)
        big.wait(10)
    with Recording.open(db) as rec:
        for s in rec.snapshots():
            assert big.pid in s.processes
            assert s.processes[big.pid].status.vm_rss_kb >= 300 * 1024


def test_second_recorder_is_refused_naming_the_first(tmp_path):
    db = tmp_path / "r.db"
    first = subprocess.Popen(KSIGHT + ["record", "--db", str(db), "--interval", "0.2", "--seconds", "20"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not (db.exists() and Path(str(db) + ".lock").exists()) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        r = ksight("record", "--db", str(db), "--seconds", "1")
        assert r.returncode == 3  # a ksight error: one line on stderr
        assert f"pid {first.pid}" in r.stderr and "Traceback" not in r.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0


def test_sigterm_finishes_the_sample_and_exits_0(tmp_path):
    db = tmp_path / "r.db"
    p = subprocess.Popen(KSIGHT + ["record", "--db", str(db), "--interval", "0.25", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    n = json.loads(out)["samples"]
    with Recording.open(db) as rec:
        assert rec.count() == n >= 2 and len(list(rec.snapshots())) == n


# the crash test: a recorder that says after each commit how many samples it stored
_RUNNER = """
import sys
from ksight.collect.collector import Collector
from ksight.record.recorder import Recorder

def said(st):
    print(st.samples, flush=True)

Recorder(Collector.open(None), sys.argv[1], interval=0.1, processes=20, keyframe_every=5,
         on_sample=said, watcher=False).run()
"""


def test_sigkill_at_random_moments_loses_at_most_the_sample_being_written(tmp_path):
    db = str(tmp_path / "crash.db")
    rnd = random.Random(int(os.environ.get("KSIGHT_CRASH_SEED", "0")) or None)
    kills, started = 15, time.monotonic()
    before = 0
    for k in range(kills):
        assert time.monotonic() - started < 120, "the crash test is bounded in time"
        p = subprocess.Popen([sys.executable, "-c", _RUNNER, db], stdout=subprocess.PIPE, text=True)
        said = 0
        try:
            first = p.stdout.readline()  # running: the store exists and holds a sample
            assert first.strip(), "the recorder did not start"
            said = int(first)
            os.set_blocking(p.stdout.fileno(), False)
            time.sleep(rnd.uniform(0.0, 1.2))  # somewhere in sampling, encoding, committing
        finally:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        rest = p.stdout.read() or ""
        for line in rest.split():
            said = int(line)
        p.stdout.close()
        with Recording.open(db) as rec:
            now = rec.count()
            assert len(list(rec.snapshots())) == now and rec.skipped == 0
        got = now - before
        # every sample it reported committed is there; at most the one it was writing beyond
        assert said <= got <= said + 1, (k, said, got)
        before = now
    # one more recorder continues the same file after all that
    r = ksight("record", "--db", db, "--interval", "0.2", "--seconds", "0.4")
    assert r.returncode == 0, r.stderr
    with Recording.open(db) as rec:
        assert rec.count() >= before + 2 and rec.skipped == 0
        assert len(list(rec.snapshots())) == rec.count()


def test_check_sar_top_read_the_past(tmp_path):
    db = tmp_path / "r.db"
    r = ksight("record", "--db", str(db), "--interval", "0.5", "--seconds", "3")
    assert r.returncode == 0, r.stderr
    with Recording.open(db) as rec:
        first, last = rec.range()
        n = rec.count()
    # check over the whole recording: its window is the recording's
    c = ksight("check", "--db", str(db), "--since", repr(first), "--until", repr(last), "--json")
    assert c.returncode in (0, 1, 2, 3), c.stderr
    rep = json.loads(c.stdout)
    assert rep["window"]["snapshots"] == n
    assert abs(rep["window"]["start"] - first) < 1e-3 and abs(rep["window"]["end"] - last) < 1e-3
    # sar: one row per pair of samples
    s = ksight("sar", "-r", "--db", str(db), "--json")
    assert s.returncode == 0, s.stderr
    assert len(json.loads(s.stdout)["tables"][0]["rows"]) == n - 1
    # top at a moment: the sample at or before it
    t = ksight("top", "--db", str(db), f"--at={last - 0.1!r}", "-n", "3", "--json")
    assert t.returncode == 0, t.stderr
    assert 1 <= len(json.loads(t.stdout)["rows"]) <= 3
    # errors: a time before the recording, --since without --db, a missing file
    e = ksight("top", "--db", str(db), "--at", repr(first - 3600))
    assert e.returncode != 0 and "no sample" in e.stderr and "Traceback" not in e.stderr
    e = ksight("check", "--since=-10m")
    assert e.returncode != 0 and "--db" in e.stderr and "Traceback" not in e.stderr
    e = ksight("sar", "-r", "--db", str(tmp_path / "none.db"))
    assert e.returncode != 0 and "no such recording" in e.stderr


def test_record_refuses_from():
    r = ksight("record", "--from", "x.tar", "--seconds", "1")
    assert r.returncode != 0 and "live machine" in r.stderr


@pytest.mark.parametrize("text,expect", [
    ("-10m", 1_000_000_000 - 600), ("now-2h", 1_000_000_000 - 7200), ("90s ago", 1_000_000_000 - 90),
    ("1000000123", 1_000_000_123), ("2001-09-09T01:46:40Z", 1_000_000_000),
    ("2001-09-09T03:46:40+02:00", 1_000_000_000)])
def test_parse_time(text, expect):
    from ksight.cli.common import parse_time

    assert parse_time(text, now=1_000_000_000) == expect


def test_parse_time_clock_is_the_last_time_it_showed():
    import datetime as dt

    from ksight.cli.common import parse_time

    now = dt.datetime(2026, 1, 31, 10, 0).timestamp()
    assert parse_time("03:12", now) == dt.datetime(2026, 1, 31, 3, 12).timestamp()
    assert parse_time("23:30", now) == dt.datetime(2026, 1, 30, 23, 30).timestamp()
    for bad in ("25:00", "yesterday", "03:99"):
        with pytest.raises(ValueError):
            parse_time(bad, now)


def test_socket_summary_counts_a_listener_queue_we_made():
    """A listener with backlog 7 and 3 connections nobody accepted: the summary says queue 3 of
    7, owned by this process, and counts the 3 client ESTABLISHED sockets (numbers made here)."""
    import socket

    from ksight.collect.processes import scan
    from ksight.fs import LiveRoot
    from ksight.collect.socket_summary import read

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(7)
    port = srv.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        root = LiveRoot()
        procs, _ = scan(root, detail=("stat", "sockets"))
        summ = read(root, procs)
        mine = [ls for ls in summ.listeners if ls.local_port == port]
        assert len(mine) == 1
        assert mine[0].queue == 3 and mine[0].pid == os.getpid()
        if summ.diag_available:
            assert mine[0].backlog == 7
        own = {(o.pid, o.state): o.count for o in summ.by_owner}
        assert own.get((os.getpid(), "ESTABLISHED"), 0) >= 3  # the 3 clients' ends
        assert own.get((os.getpid(), "LISTEN"), 0) >= 1
        assert summ.states().get("ESTABLISHED", 0) >= 6  # both ends of each connection
    finally:
        for c in clients:
            c.close()
        srv.close()


def test_the_watcher_gets_each_sample_after_it_is_stored(tmp_path, monkeypatch):
    """With record/watch.py present (branch h-watch), the recorder builds its Watcher with the
    --trigger rules and a bundle directory beside the file, feeds it every sample once that sample
    is committed, and closes it. A stand-in Watcher checks the order against the file itself."""
    import types

    from ksight.collect.collector import Collector
    from ksight.record.recorder import Recorder

    db = tmp_path / "w.db"
    seen = {}

    class FakeWatcher:
        def __init__(self, triggers=None, bundle_dir=None, **kw):
            seen.update(triggers=triggers, bundle_dir=bundle_dir, fed=[], closed=False)

        def feed(self, snap):
            with Recording.open(db) as rec:  # already committed: a reader sees it
                seen["fed"].append((snap.taken_at, rec.range()[1]))
            return []

        def close(self):
            seen["closed"] = True

    fake = types.ModuleType("ksight.record.watch")
    fake.Watcher = FakeWatcher
    monkeypatch.setitem(sys.modules, "ksight.record.watch", fake)
    import ksight.record as pkg

    monkeypatch.setattr(pkg, "watch", fake, raising=False)
    st = Recorder(Collector.open(None), str(db), interval=0.2, seconds=0.6, processes=3,
                  triggers=("memory.leak-suspect",)).run()
    assert seen["triggers"] == {"memory.leak-suspect"}
    assert seen["bundle_dir"] == str(tmp_path / "w-bundles")
    assert len(seen["fed"]) == st.samples >= 3
    assert all(t == last for t, last in seen["fed"])
    assert seen["closed"] and st.watcher is None
    with Recording.open(db) as rec:
        assert rec.meta["bundle_dir"] == str(tmp_path / "w-bundles")


def test_unwritable_place_is_a_message_not_a_traceback(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = ksight("record", "--db", str(f / "sub" / "r.db"), "--seconds", "0.1")
    assert r.returncode != 0 and "cannot create" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    r = ksight("record", "--db", str(junk), "--seconds", "0.1")
    assert r.returncode != 0 and "not a ksight recording" in r.stderr and "Traceback" not in r.stderr


def test_skip_leaves_a_source_out(tmp_path):
    db = tmp_path / "r.db"
    r = ksight("record", "--db", str(db), "--interval", "0.25", "--seconds", "0.5", "--skip", "vmallocinfo")
    assert r.returncode == 0, r.stderr
    with Recording.open(db) as rec:
        for s in rec.snapshots():
            assert s.get("vmallocinfo") is None and s.get("meminfo") is not None
    r = ksight("record", "--db", str(db), "--seconds", "0.5", "--skip", "nosuch")
    assert r.returncode == 3 and "nosuch" in r.stderr and "Traceback" not in r.stderr
