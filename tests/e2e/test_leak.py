"""End to end: `ksight leak` (the CLI, in a subprocess, as a user runs it) on the growing-process
lab scenarios names the leaking PID and its growing mapping (its address range really is one of
the process's mappings, read here from /proc/PID/maps; its size the scenario's), measures the
growth the process really had (read here from /proc/PID/status), leaves a steady process out;
`--trace` names the thread making the calls (pid, tid, length) and leaves no tracing behind,
also on Ctrl-C; a capture of a scenario gives the same growing PID. Needs root (CI is root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import needs_root, unavailable

pytestmark = [needs_root, pytest.mark.lab]

WATCH_S = 7
CLI = [sys.executable, "-m", "ksight", "leak", "--interval", "1"]
# a steady process: holds 32 MiB it touched once, then sleeps (bounded: 60 s)
STEADY = "import time\nb = bytearray(32 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(60)\n"


def _scenario(name):
    from ksight.lab import SCENARIOS, available

    sc = SCENARIOS[name]
    ok, why = available(sc)
    if not ok:
        unavailable(f"{name}: {why}")
    return sc


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmSize", "VmRSS", "RssAnon", "VmSwap"):
                out[k] = int(v.split()[0])
    return out


def _maps(pid: int) -> list[tuple[int, int, str, str]]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            a, _, b = parts[0].partition("-")
            out.append((int(a, 16), int(b, 16), parts[1], parts[5] if len(parts) > 5 else ""))
    return out


def _run(*args, timeout=180) -> tuple[dict, subprocess.Popen]:
    p = subprocess.Popen(CLI + ["--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        p.stdout_text, p.stderr = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout_text)
    assert p.returncode == (1 if doc["growing"] else 0)
    return doc, p


@pytest.fixture
def steady():
    p = subprocess.Popen([sys.executable, "-c", STEADY])
    time.sleep(1.0)  # its 32 MiB are touched before the watch starts
    yield p.pid
    p.kill()
    p.wait()


def _named(doc, pid):
    got = [g for g in doc["growing"] if g["pid"] == pid]
    assert got, (pid, [(g["pid"], g["comm"], g["why"]) for g in doc["growing"]], doc["notes"])
    return got[0]


@pytest.mark.parametrize("name", ["anon-mapping-growth", "heap-leak", "address-space-reserve"])
def test_leak_names_the_growing_process_and_mapping(name, steady):
    sc = _scenario(name)
    with sc.running(WATCH_S + 6) as run:
        pid = run.info["pid"]
        before = _status(pid)
        doc, p = _run("--seconds", str(WATCH_S))
        after = _status(pid)
        maps = _maps(pid)
    assert "watching every process" in p.stderr and "Ctrl-C" in p.stderr
    g = _named(doc, pid)
    assert g["verdict"] == "growing"
    # a steady process is not reported (neither as growing nor as levelled off)
    assert steady not in [x["pid"] for x in doc["growing"] + doc["levelled"]]
    # smaps was read only for the few processes that grew, and for this one
    assert pid in doc["maps_read_for"] and len(doc["maps_read_for"]) <= 4 * (WATCH_S + 1)
    ranges = {(a, b): (perms, path) for a, b, perms, path in maps}
    if name == "address-space-reserve":
        vsz = g["growths"]["vsz"]
        assert vsz["steady"] and vsz["growth"] >= 4 * 64 * 1024 * (WATCH_S - 2)  # 256 MiB/s
        assert abs(vsz["growth"] - (after["VmSize"] - before["VmSize"])) <= 4 * 64 * 1024 + 1024
        assert not g["growths"]["anon"]["steady"] and g["types_growing"] == []
        # the adjacent reservations merged into one mapping that grew: it is one of the process's
        (m,) = [m for m in g["mappings"] if m["kind"] == "anon"][:1]
        assert any(a <= m["start"] and m["end"] <= b for a, b in ranges), m
        assert m["growth_kb"] >= 64 * 1024 and m["rss_kb"] < 1024
        assert g["grown_step_kb"] is not None and g["grown_step_kb"] % (64 * 1024) == 0
        return
    anon = g["growths"]["anon"]
    grew = (after["RssAnon"] + after.get("VmSwap", 0)) - (before["RssAnon"] + before.get("VmSwap", 0))
    # what ksight saw is what the process did, within a second's worth of its 4 MiB/s
    assert anon["steady"] and abs(anon["growth"] - grew) <= 4096 + 1024, (anon, before, after)
    assert 3.0 * 1024 <= anon["slope_per_s"] <= 5.0 * 1024
    assert g["types_growing"] == ["anon"]
    if name == "heap-leak":
        heap = [m for m in g["mappings"] if m["kind"] == "heap"]
        assert heap and g["heap_kb"] >= 1024 * (WATCH_S - 3) and g["mmap_kb"] < g["heap_kb"]
        (start, end), = [(a, b) for (a, b), (_, path) in ranges.items() if path == "[heap]"]
        assert heap[0]["start"] == start and heap[0]["end"] <= end
    else:
        # the recurring 4 MiB mapping, listed first, each one a mapping of the process
        assert (g["recurring_size_kb"], g["mmap_kb"] > 0, g["heap_kb"]) == (4096, True, 0)
        assert g["recurring_count"] >= WATCH_S - 3
        m = g["mappings"][0]
        assert m["new"] and m["size_kb"] == 4096 and m["perms"] == "rw-p"
        assert ranges.get((m["start"], m["end"]), ("",))[0] == "rw-p", (m, "not a mapping of", pid)
        vmas = g["growths"]["vmas"]
        assert vmas["steady"] and 1.5 <= vmas["slope_per_s"] <= 2.5  # a mapping + a guard a second


def test_named_steady_process_is_steady(steady):
    doc, _ = _run(str(steady), "--seconds", "5")
    assert doc["growing"] == [] and doc["levelled"] == []
    assert [(n["pid"], n["verdict"]) for n in doc["named"]] == [(steady, "steady")]
    assert doc["processes_seen"] == 1


def test_a_pid_that_does_not_exist_is_a_clear_error():
    pid = 4_194_000  # above any pid_max default in use (and checked)
    assert not os.path.exists(f"/proc/{pid}")
    p = subprocess.run(CLI + [str(pid), "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and f"no such process: {pid}" in p.stderr and "Traceback" not in p.stderr


def _ours(pid: int | None = None):
    """ksight's tracefs instances (of run `pid` only, when given: other sessions on this shared
    machine trace too) and the global set_event."""
    from ksight.trace import tracefs

    m = tracefs.acquire()
    try:
        names = [n for n in tracefs.our_instances(m) if pid is None or n.startswith(f"ksight-{pid}-")]
        return names, open(os.path.join(m, "set_event")).read()
    finally:
        tracefs.release()


@pytest.mark.parametrize("name,call", [("anon-mapping-growth", "mmap"), ("heap-leak", "brk")])
def test_trace_names_the_thread_making_the_calls(name, call):
    sc = _scenario(name)
    with sc.running(WATCH_S + 12) as run:
        pid = run.info["pid"]
        doc, p = _run("--seconds", "6", "--trace", "--trace-seconds", "4")
    assert "Tracing" in p.stderr
    tr = doc["trace"]
    assert tr["errors"] == [], tr
    mine = [c for c in tr["callers"] if c["pid"] == pid and c["call"] == call]
    assert mine, tr
    # a single-threaded worker: its one thread is the process itself
    assert mine[0]["tid"] == pid and mine[0]["target"]
    if call == "mmap":
        # 4 MiB and its guard page, once a second: 3 to 5 calls in 4 s
        assert mine[0]["lengths"] == [(4 << 20) + 4096] and 2 <= mine[0]["calls"] <= 6
    else:
        assert mine[0]["calls"] >= 4 and mine[0]["brk_grew_bytes"] >= 1 << 20
    # a user stack where perf runs here, else the reason
    assert tr["stacks"] or tr["stacks_why"]
    # perf stacks one kind of call: mmap when any growing process has an mmap target (another
    # process may grow on this shared machine), else brk
    stacked = "mmap" if any(t["call"] == "mmap" for t in tr["targets"]) else "brk"
    if tr["stacks"] and stacked == call:
        # other processes may grow on this shared machine: the scenario's among those stacked
        st = [s for s in tr["stacks"] if s["pid"] == pid]
        assert st and ("mmap" if call == "mmap" else "brk") in st[0]["stack"], tr["stacks"]
    assert _ours(p.pid) == ([], "")  # no tracing left behind


def test_ctrl_c_in_the_trace_still_reports_and_cleans_up():
    sc = _scenario("anon-mapping-growth")
    with sc.running(40) as run:
        pid = run.info["pid"]
        p = subprocess.Popen(CLI + ["--json", "--seconds", "6", "--trace", "--trace-seconds", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            err = ""
            while time.monotonic() < deadline and "Tracing" not in err:
                line = p.stderr.readline()
                if not line:
                    break
                err += line
            assert "Tracing" in err, err
            time.sleep(2.5)
            p.send_signal(signal.SIGINT)
            out, rest = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == 1, rest
    doc = json.loads(out)
    assert _named(doc, pid) and doc["trace"]["seconds"] < 30
    assert _ours(p.pid) == ([], "")
    # perf (the user stacks) ended with it: no process still writes that run's perf.data
    # (perf record -o /tmp/ksight-perf-PID-*/perf.data)
    mark = f"ksight-perf-{p.pid}-".encode()
    left = []
    for n in os.listdir("/proc"):
        try:
            with open(f"/proc/{n}/cmdline", "rb") as f:
                if mark in f.read():
                    left.append(n)
        except OSError:
            continue
    assert left == []


def test_ctrl_c_in_the_watch_reports_the_watch_so_far():
    sc = _scenario("anon-mapping-growth")
    with sc.running(40) as run:
        pid = run.info["pid"]
        p = subprocess.Popen(CLI + ["--json", "--seconds", "60"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(8.0)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == 1, err
    doc = json.loads(out)
    assert doc["interrupted"] and doc["seconds"] < 20 and "interrupted" in err
    assert _named(doc, pid)["verdict"] == "growing"


def test_a_capture_gives_the_same_growing_process(tmp_path):
    sc = _scenario("anon-mapping-growth")
    cap = str(tmp_path / "cap.tar.zst")
    with sc.running(WATCH_S + 6) as run:
        pid = run.info["pid"]
        p = subprocess.run([sys.executable, "-m", "ksight", "capture", "-o", cap, "-i", "1",
                            "-c", str(WATCH_S + 1)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    doc, _ = _run("--from", cap)
    g = _named(doc, pid)
    assert g["verdict"] == "growing" and g["growths"]["anon"]["steady"]
    assert 3.0 * 1024 <= g["growths"]["anon"]["slope_per_s"] <= 5.0 * 1024
    # the capture recorded smaps of the processes that grew (the process_maps source, with the
    # PIDs it chose under ksight/process_maps): the replay gives the same mapping diff as live,
    # the recurring 4 MiB mapping first
    assert not any("which mappings grew" in n for n in doc["notes"])
    assert (g["recurring_size_kb"], g["heap_kb"]) == (4096, 0) and g["mmap_kb"] > 0
    assert g["recurring_count"] >= WATCH_S - 4
    m = g["mappings"][0]
    assert (m["new"], m["kind"], m["size_kb"], m["perms"]) == (True, "anon", 4096, "rw-p")


def test_at_rest_every_process_named_really_grew():
    """Other programs may really grow meanwhile (a test next door); every process ksight leak
    calls growing must have grown in our own reading of its status, by a rule's floor."""
    pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    before = {}
    for p in pids:
        try:
            before[p] = _status(p)
        except (OSError, ValueError):
            pass
    doc, _ = _run("--seconds", "6")
    for g in doc["growing"]:
        try:
            b = _status(g["pid"])
        except (OSError, ValueError):
            continue  # gone since: cannot tell
        a = before.get(g["pid"], {})
        grew_anon = b.get("RssAnon", 0) + b.get("VmSwap", 0) - a.get("RssAnon", 0) - a.get("VmSwap", 0)
        assert (grew_anon >= 1024 or b.get("VmRSS", 0) - a.get("VmRSS", 0) >= 1024
                or b.get("VmSize", 0) - a.get("VmSize", 0) >= 64 * 1024
                or "vmas" in g["growths"] and g["growths"]["vmas"]["steady"]), (g, a, b)
