"""End to end: each page cache lab scenario really reproduces its fault on this machine, and
`ksight check --json` (the installed CLI, in a subprocess, as a user runs it) reports the rule
the scenario expects, with evidence that moved. Needs root (CI is root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import needs_root, unavailable

pytestmark = [needs_root, pytest.mark.lab]

# rule id -> evidence names whose values must be non-zero in the finding (they moved)
MOVED = {
    "pagecache.direct-reclaim": None,  # machine-wide or per cgroup: checked in check_direct_reclaim
    "pagecache.dirty-backlog": ("dirty + writeback (peak in window)",),
    "pagecache.drop-caches": ("drop_pagecache",),
    "pagecache.swap-io": ("pswpout",),
    "pagecache.thrashing": ("workingset refaults",),
    "pagecache.inode-steal": ("pginodesteal",),
}


def run_check(seconds: float = 3.0, areas=("pagecache",)) -> dict:
    cmd = [sys.executable, "-m", "ksight", "check", "--json", "--interval", str(seconds)]
    for a in areas:
        cmd += ["--area", a]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1, 2), p.stderr
    doc = json.loads(p.stdout)
    assert doc["exit_status"] == p.returncode
    return doc


def scenarios():
    from ksight.lab import SCENARIOS

    return [sc for sc in SCENARIOS.values() if sc.area == "pagecache"]


def _serious(doc: dict) -> set[tuple[str, str | None]]:
    """(rule, cgroup) of the warnings and criticals, leaving out memory cgroups this process did
    not create: other programs (containers, a lab run next door) may hold a group at its limit
    at any moment, and that is not this lab's doing."""
    mine = f"ksight-lab-{os.getpid()}-"
    out = set()
    for f in doc["findings"]:
        cg = (f.get("subject") or {}).get("cgroup")
        if f["severity"] != "info" and (cg is None or mine in cg):
            out.add((f["id"], cg))
    return out


@pytest.fixture(scope="module")
def before_scenarios() -> set:
    """What was already serious on the machine before any scenario ran."""
    return _serious(run_check(1.0))


@pytest.mark.parametrize("scenario", scenarios(), ids=lambda s: s.name)
def test_check_finds_the_fault(scenario, before_scenarios):
    from ksight.lab import available

    ok, why = available(scenario)
    if not ok:
        unavailable(f"{scenario.name}: {why}")  # a failure in CI, which provides every scenario
    with scenario.running(12) as run:
        doc = run_check(4.0)
        info = dict(run.info)
    found = {f["id"]: f for f in doc["findings"]}
    for rule_id in scenario.expects:
        assert rule_id in found, (rule_id, [f["id"] for f in doc["findings"]], doc["not_evaluated"])
        matching = [f for f in doc["findings"] if f["id"] == rule_id]
        if rule_id == "pagecache.direct-reclaim" and info.get("cgroup"):
            cg = getattr(info["cgroup"], "path", info["cgroup"])
            sub = [f for f in matching if (f["subject"] or {}).get("cgroup") == cg]
            assert sub, f"no direct-reclaim finding names cgroup {cg}: {matching}"
            assert sub[0]["evidence"][0]["source"].startswith("/sys/fs/cgroup/")
            # the scenario re-reads a file three times its limit: the refaults are this group's
            thr = found.get("pagecache.thrashing")
            assert thr and (thr["subject"] or {}).get("cgroup") == cg, thr
            ev = {e["name"]: e["value"] for e in sub[0]["evidence"]}
            assert any(ev.get(k) for k in ("memory.failcnt", "memory.events max", "memory.events high", "memory.events.local max", "memory.events.local high")), ev
            continue
        for name in MOVED.get(rule_id) or ():
            ev = {e["name"]: e["value"] for f in matching for e in f["evidence"]}
            assert ev.get(name), (rule_id, name, ev)
        assert all(f["actions"] for f in matching)


def test_after_the_scenarios_the_machine_is_quiet(before_scenarios):
    # the lab cleaned up: no swap left on, sysctls restored (dirty limits back), none of its
    # groups left, nothing firing that was not already firing before the scenarios
    from ksight.lab.cgroup import list_lab_groups

    doc = run_check(1.0)
    assert not [g for g in list_lab_groups() if f"-{os.getpid()}-" in g]
    assert _serious(doc) - before_scenarios == set(), doc["findings"]
