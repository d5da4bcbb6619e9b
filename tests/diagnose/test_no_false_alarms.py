"""No false alarms: every real host in the corpora, observed for a second at the pace it kept over
its whole uptime, raises nothing at warning or above, and every rule that could not look says why.

The corpora are single snapshots. A second one is made by advancing each /proc/vmstat event
counter by its lifetime average over one second (value x 1 s / uptime; page counts, nr_*, stay):
that is the host as it usually runs, a healthy busy server, so the rate rules really look instead
of being skipped for want of a window. Exceptions say which data shows a fault and why."""

from __future__ import annotations

import pytest

from ksight.collect.snapshot import take
from ksight.diagnose.engine import diagnose, load_rules, plan_for
from ksight.errors import Unavailable
from ksight.fs import DirRoot
from tests.conftest import CORPORA

# corpus root -> rule ids that the data really supports, and why
EXPECTED: dict[str, set[str]] = {
    # node_exporter's host has no proc/uptime (a day is assumed): since boot it counted 210,959
    # compaction stalls of which 164,840 (78%) failed, and 83,165 allocation stalls; at that pace
    # (2.4 and 1 per second) memory is fragmented and allocations reclaim themselves.
    "node_exporter": {"pagecache.compaction-stall", "pagecache.direct-reclaim"},
}
ASSUMED_UPTIME_S = 86400.0  # corpora without proc/uptime: a day


class _Later(DirRoot):
    """The corpus tree one second later: vmstat event counters advanced at their lifetime pace."""

    def __init__(self, base: str, uptime: float, step: float = 1.0):
        super().__init__(base)
        self.uptime, self.step = uptime, step

    def read_bytes(self, path, **kw):
        if path == "proc/uptime":
            return f"{self.uptime + self.step:.2f} 0.00\n".encode()
        data = super().read_bytes(path, **kw)
        if path == "proc/vmstat":
            out = []
            for ln in data.decode().splitlines():
                parts = ln.split()
                if len(parts) == 2 and parts[1].isdigit() and not parts[0].startswith("nr_"):
                    v = int(parts[1])
                    ln = f"{parts[0]} {v + round(v * self.step / self.uptime)}"
                out.append(ln)
            data = ("\n".join(out) + "\n").encode()
        return data


class _Now(DirRoot):
    def __init__(self, base: str, uptime: float):
        super().__init__(base)
        self.uptime = uptime

    def read_bytes(self, path, **kw):
        if path == "proc/uptime":
            return f"{self.uptime:.2f} 0.00\n".encode()
        return super().read_bytes(path, **kw)


def corpus_roots():
    if not CORPORA.exists():
        return []
    roots = []
    for cand in [CORPORA / "node_exporter", CORPORA / "procfs"] + sorted((CORPORA / "pcp" / "unpacked").glob("*")):
        if (cand / "proc" / "vmstat").is_file() or (cand / "proc" / "meminfo").is_file():
            roots.append(cand)
    return roots


def _uptime(base: str) -> float:
    try:
        return float(DirRoot(base).read_text("proc/uptime").split()[0])
    except (Unavailable, ValueError, IndexError):
        return ASSUMED_UPTIME_S


@pytest.mark.parametrize("root", corpus_roots(), ids=lambda p: p.name)
def test_corpus_host_at_its_usual_pace_raises_no_alarm(root):
    base = str(root)
    up = _uptime(base)
    plan = plan_for(None)
    snaps = [take(_Now(base, up), plan=plan), take(_Later(base, up), plan=plan)]
    r = diagnose(snaps)
    serious = {f.id for f in r.findings if f.severity in ("warning", "critical")}
    assert serious == EXPECTED.get(root.name, set()), r.findings
    assert not any("internal error" in n.reason for n in r.not_evaluated), r.not_evaluated
    # the rules really looked: all but those whose data this host lacks, each with its reason
    assert r.rules_run + len(r.not_evaluated) == len(load_rules())
    if (root / "proc" / "vmstat").is_file():
        looked = len(load_rules()) - len(r.not_evaluated)
        assert looked >= 4, r.not_evaluated
    for n in r.not_evaluated:
        assert n.reason and "needs two snapshots" not in n.reason and "no clock" not in n.reason


@pytest.mark.root
def test_this_machine_at_rest_is_ok(capsys):
    import json

    from ksight.cli.main import main

    # The suite runs on a quiet test machine: no swap, no memory pressure at rest.
    # the default window: long enough for every selected rule (the memory rules judge 5 s trends)
    status = main(["check", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"] == [] or all(f["severity"] == "info" for f in doc["findings"]), doc["findings"]
    assert status == 0 and doc["complete"], doc["not_evaluated"]
    assert doc["window"]["snapshots"] == 6 and doc["window"]["seconds"] >= 5
