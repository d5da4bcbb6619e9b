"""End to end: `ksight record` while two TCP lab scenarios run in their own network namespaces
(tcp-listen-overflow: a listener with backlog 1 that never accepts; tcp-close-wait: a server that
never closes), then `ksight check --db` and `ksight report --db --json` over the recording name
the overflowing listener (address:port, PID, namespace) and the process holding CLOSE_WAIT,
from the socket summary the recording keeps instead of the socket table.

The PIDs and namespaces are the lab's own (its per-second evidence line, /proc/PID/ns/net read
here while it runs), and its raw counters (ListenOverflows moving, CLOSE-WAIT growing, read by
the lab inside the namespace) prove the fault independently of ksight. Needs root (CI is root)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import needs_root, unavailable

pytestmark = [needs_root, pytest.mark.lab]

KSIGHT = [sys.executable, "-m", "ksight"]
from ksight.record.recorder import SOCKETS_EVERY

# two reads of the socket table at least (samples 0 and SOCKETS_EVERY, at 1 s), and the labs last
# a little longer than the recording
RECORD_S = SOCKETS_EVERY + 3
LAB_S = RECORD_S + 10


def _lab(name: str, out) -> subprocess.Popen:
    from ksight.lab import SCENARIOS, available

    ok, why = available(SCENARIOS[name])
    if not ok:
        unavailable(f"{name}: {why}")
    return subprocess.Popen(KSIGHT + ["lab", "run", name, "--seconds", str(LAB_S)], stdout=out,
                            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _wait_for(path, pattern: str, timeout: float = 15.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.2)
    with open(path) as f:
        raise AssertionError(f"no {pattern!r} in the lab's output: {f.read()[-2000:]}")


def _netns(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")  # net:[INODE]


def _counts(path, pattern: str) -> list[int]:
    with open(path) as f:
        return [int(x) for x in re.findall(pattern, f.read())]


def test_recording_names_the_listener_and_the_close_wait_holder(tmp_path):
    db = tmp_path / "r.db"
    lo_out, cw_out = tmp_path / "lo.txt", tmp_path / "cw.txt"
    with open(lo_out, "w") as lo_f, open(cw_out, "w") as cw_f:
        lo = _lab("tcp-listen-overflow", lo_f)
        cw = _lab("tcp-close-wait", cw_f)
        try:
            m = _wait_for(lo_out, r"listener (\S+):(\d+) pid (\d+): accept queue")
            addr, port, lo_pid = m.group(1), int(m.group(2)), int(m.group(3))
            cw_pid = int(_wait_for(cw_out, r"server pid (\d+) \(")[1])
            lo_ns, cw_ns = _netns(lo_pid), _netns(cw_pid)
            assert lo_ns != _netns(os.getpid()) and cw_ns != _netns(os.getpid())
            # the recorder's first table read (sample 0) must already see the leak: the rule judges
            # the CLOSE_WAIT sockets that stay from one read to the next (SOCKETS_EVERY s later)
            deadline = time.monotonic() + 20
            while max(_counts(cw_out, r"CLOSE-WAIT (\d+)") or [0]) < 100 and time.monotonic() < deadline:
                time.sleep(0.2)
            t0 = time.time()
            r = subprocess.run(KSIGHT + ["record", "--db", str(db), "--interval", "1", "--seconds",
                                         str(RECORD_S), "--json"],
                               capture_output=True, text=True, timeout=RECORD_S + 60)
            t1 = time.time()
        finally:
            for p in (lo, cw):
                try:
                    p.wait(LAB_S + 30)
                except subprocess.TimeoutExpired:
                    p.terminate()
                    p.wait(10)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["samples"] >= RECORD_S - 2 and stats["failed"] == 0, stats
    # the raw signal, read by the lab inside the namespaces: overflows kept moving while we
    # recorded, CLOSE-WAIT grew past the rule's 16
    overflows = _counts(lo_out, r"ListenOverflows (\d+)")
    assert overflows[-1] - overflows[0] > 100, overflows
    assert max(_counts(cw_out, r"CLOSE-WAIT (\d+)")) >= 100

    # ksight check over the whole recording
    c = subprocess.run(KSIGHT + ["check", "--db", str(db), "--since", f"{t0 - 5:.3f}", "--until",
                                 f"{t1 + 5:.3f}", "--json", "--area", "tcp"],
                       capture_output=True, text=True, timeout=120)
    assert c.returncode in (1, 2, 3), c.stderr
    doc = json.loads(c.stdout)
    found = {f["id"]: [] for f in doc["findings"]}
    for f in doc["findings"]:
        found[f["id"]].append(f["subject"])
    want = {"socket": f"{addr}:{port}", "pid": lo_pid, "netns": lo_ns}
    assert any({k: s.get(k) for k in want} == want for s in found.get("tcp.listen-overflow", [])), \
        (want, found.get("tcp.listen-overflow"), doc["not_evaluated"])
    assert any(s.get("pid") == cw_pid and s.get("netns") == cw_ns
               for s in found.get("tcp.close-wait-leak", [])), \
        (cw_pid, found.get("tcp.close-wait-leak"), doc["not_evaluated"])
    ne = {n["rule"]: n["reason"] for n in doc["not_evaluated"]}
    assert "tcp.listen-overflow" not in ne and "tcp.close-wait-leak" not in ne
    assert "tcp_info" in ne.get("tcp.buffer-config", "tcp_info")

    # ksight report: episodes with the same subjects
    rep = subprocess.run(KSIGHT + ["report", "--db", str(db), "--json"], capture_output=True,
                         text=True, timeout=180)
    assert rep.returncode in (0, 1, 2, 3), rep.stderr
    eps = json.loads(rep.stdout)["episodes"]
    lo_eps = [e for e in eps if e["rule"] == "tcp.listen-overflow"
              and {k: e["subject"].get(k) for k in want} == want]
    cw_eps = [e for e in eps if e["rule"] == "tcp.close-wait-leak"
              and e["subject"].get("pid") == cw_pid]
    assert lo_eps and cw_eps, [(e["rule"], e["subject"]) for e in eps if e["rule"].startswith("tcp")]
    ev = {e["name"]: e for e in lo_eps[0]["peak"]["evidence"]}
    assert ev["accept queue"]["value"] >= 1 and ev["accept queue"]["threshold"] == 1  # backlog 1
    assert ev["ListenOverflows"]["value"] > 0
    # read inside the listener's namespace, through a process of it
    assert re.fullmatch(r"/proc/\d+/net/netstat", ev["ListenOverflows"]["source"]), ev
