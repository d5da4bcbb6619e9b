"""End to end: each growing-process lab scenario really grows a process on this machine, and
`ksight check --json --area memory` (the CLI, in a subprocess, as a user runs it) names that
process (its PID) with the growing mapping in the evidence; a capture of the scenario replayed
with `check --from` names it too; and at rest nothing is reported that did not really grow.
Needs root (CI is root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import needs_root, unavailable

pytestmark = [needs_root, pytest.mark.lab]

MINE = ("memory.leak-suspect", "memory.vma-growth", "memory.virtual-leak")
CHECK_S = 7.0  # the rules need 5 s; 7 s gives 8 snapshots at the default 1 s step


def run_check(*extra: str, seconds: float | None = CHECK_S) -> dict:
    cmd = [sys.executable, "-m", "ksight", "check", "--json", "--area", "memory", *extra]
    if seconds is not None:
        cmd += ["--interval", str(seconds)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1, 2), p.stderr
    doc = json.loads(p.stdout)
    assert doc["exit_status"] == p.returncode
    return doc


def scenarios():
    from ksight.lab import SCENARIOS

    return [sc for sc in SCENARIOS.values() if sc.area == "memory"
            and set(sc.expects) & set(MINE)]


def _proc_status(pid: int) -> dict[str, int]:
    """VmSize, VmRSS, RssAnon in kB, read here without ksight (the independent measure)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmSize", "VmRSS", "RssAnon"):
                    out[k] = int(v.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _maps(pid: int) -> list[tuple[int, int, str]]:
    with open(f"/proc/{pid}/maps") as f:
        out = []
        for line in f:
            a, _, b = line.split()[0].partition("-")
            out.append((int(a, 16), int(b, 16), line.split()[1]))
        return out


def _check_finding(rule_id: str, doc: dict, pid: int, maps_after) -> dict:
    mine = [f for f in doc["findings"] if f["id"] == rule_id]
    assert mine, (rule_id, [(f["id"], f["subject"]) for f in doc["findings"]], doc["not_evaluated"])
    named = [f for f in mine if (f["subject"] or {}).get("pid") == pid]
    assert named, f"{rule_id} does not name the scenario's process {pid}: {mine}"
    f = named[0]
    assert f["severity"] in ("warning", "critical") and f["actions"]
    return f


def _mapping_evidence(f: dict, pid: int, maps_after) -> list[dict]:
    """Evidence naming a mapping, whose address range really is a mapping of the process."""
    out = []
    for e in f["evidence"]:
        if e["name"].startswith(("new mapping ", "grown mapping ")):
            rng = e["name"].split()[2]
            a, _, b = rng.partition("-")
            a, b = int(a, 16), int(b, 16)
            assert any(s == a and t == b for s, t, _ in maps_after) or any(
                s <= a and b <= t for s, t, _ in maps_after) or e["name"].startswith("grown"), \
                (e["name"], "not a mapping of", pid)
            assert e["source"] == f"/proc/{pid}/smaps"
            out.append(e)
    return out


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_check_names_the_growing_process(scenario):
    from ksight.lab import available

    ok, why = available(scenario)
    if not ok:
        unavailable(f"{scenario.name}: {why}")
    with scenario.running(CHECK_S + 5) as run:
        pid = run.info["pid"]
        before = _proc_status(pid)
        doc = run_check()
        after = _proc_status(pid)
        maps_after = _maps(pid)
    for rule_id in scenario.expects:
        f = _check_finding(rule_id, doc, pid, maps_after)
        ev = {e["name"]: e["value"] for e in f["evidence"]}
        if rule_id == "memory.leak-suspect":
            # the growth it reports is what the process really did (measured here, not by ksight),
            # within a second's worth of the 4 MiB/s the scenario grows by
            grew = after["RssAnon"] - before["RssAnon"]
            assert abs(ev["RssAnon+VmSwap growth"] - grew) <= 4096 + 1024, (ev, before, after)
            maps = _mapping_evidence(f, pid, maps_after)
            assert maps, f["evidence"]
            if scenario.name == "heap-leak":
                assert any("[heap]" in e["name"] and e["name"].startswith("grown") for e in maps)
            else:  # the recurring 4 MiB anonymous mapping, named first
                assert maps[0]["value"] == 4096 and "rw-p [anon]" in maps[0]["name"], maps
        elif rule_id == "memory.vma-growth":
            # two mappings a second (4 MiB + its guard page): the count really rose
            assert ev["mappings (VMAs)"] == len(maps_after) or abs(ev["mappings (VMAs)"] - len(maps_after)) <= 4
            assert 1.5 <= ev["mapping rate"] <= 2.5, ev
        elif rule_id == "memory.virtual-leak":
            assert ev["VmSize growth"] >= 64 * 1024 * 4, ev  # >= 256 MiB in the window
            assert ev["VmRSS growth"] < ev["VmSize growth"] / 10, ev
            assert after["VmRSS"] - before["VmRSS"] < 8 * 1024  # really untouched
            assert _mapping_evidence(f, pid, maps_after)
    # each scenario is one kind of growth: the other process rules stay quiet on it
    for rule_id in set(MINE) - set(scenario.expects):
        named = [f for f in doc["findings"] if f["id"] == rule_id
                 and (f["subject"] or {}).get("pid") == pid]
        assert not named, (rule_id, named)


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_a_capture_gives_the_same_findings(scenario, tmp_path):
    from ksight.lab import available

    ok, why = available(scenario)
    if not ok:
        unavailable(f"{scenario.name}: {why}")
    cap = str(tmp_path / "cap.tar.zst")
    with scenario.running(CHECK_S + 5) as run:
        pid = run.info["pid"]
        p = subprocess.run([sys.executable, "-m", "ksight", "capture", "-o", cap, "-i", "1",
                            "-c", str(int(CHECK_S) + 1)], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
    doc = run_check("--from", cap, seconds=None)
    why = {n["rule"]: n["reason"] for n in doc["not_evaluated"]}
    for rule_id in scenario.expects:
        assert rule_id not in why, why
        f = _check_finding(rule_id, doc, pid, ())
        if rule_id == "memory.vma-growth":
            # the capture recorded the smaps of the processes that grew (the process_maps
            # source): the mapping count is judged from them, two mappings a second
            ev = {e["name"]: e["value"] for e in f["evidence"]}
            assert f["evidence"][0]["source"] == f"/proc/{pid}/smaps"
            assert 1.5 <= ev["mapping rate"] <= 2.5, ev
            continue
        assert f["evidence"][0]["source"] == f"/proc/{pid}/status"


def test_at_rest_nothing_is_named_that_did_not_grow():
    """Other programs may really grow meanwhile (a test next door); every process named must
    have grown in our own reading of its status, by the rules' 1 MiB or 64 MiB of VIRT."""
    pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    before = {p: _proc_status(p) for p in pids}
    doc = run_check()
    assert not [n for n in doc["not_evaluated"] if n["rule"] in MINE], doc["not_evaluated"]
    for f in doc["findings"]:
        if f["id"] not in MINE:
            continue
        pid = f["subject"]["pid"]
        a, b = before.get(pid, {}), _proc_status(pid)
        if not b:
            continue  # gone since: cannot tell
        if f["id"] == "memory.virtual-leak":
            assert b["VmSize"] - a.get("VmSize", 0) >= 64 * 1024, (f, a, b)
        elif f["id"] == "memory.leak-suspect":
            assert max(b["RssAnon"] - a.get("RssAnon", 0), b["VmRSS"] - a.get("VmRSS", 0)) >= 1024, (f, a, b)
