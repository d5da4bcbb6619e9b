"""Honest verdicts: "OK" (exit 0) only when every selected rule looked and found nothing; a rule
that could not look says why; a series crossing a reboot is cut; bursts are judged at their peak.

Captures are built from real kernel text (node_exporter's host) with chosen counters moved, as
folders of snapshot trees, and checked through the command a user runs."""

from __future__ import annotations

import json
import re

import pytest

from ksight.cli.main import main
from ksight.diagnose.rule import RULES
from ksight.diagnose.engine import load_rules
from ksight.model import counter_names
from tests.conftest import corpus_files, corpus_text
from tests.diagnose.helpers import counter, set_counter, tree


@pytest.fixture
def base():
    files = {f"proc/{n}": corpus_text("node_exporter", "proc", n)
             for n in ("meminfo", "vmstat", "zoneinfo", "buddyinfo")}
    for r in ("cpu", "memory", "io"):
        files[f"proc/pressure/{r}"] = corpus_text("node_exporter", "proc", "pressure", r)
    for name, v in {"min_free_kbytes": 67584, "dirty_ratio": 20, "dirty_background_ratio": 10,
                    "dirty_bytes": 0, "dirty_background_bytes": 0, "swappiness": 60,
                    "zone_reclaim_mode": 0, "vfs_cache_pressure": 100,
                    "dirty_expire_centisecs": 3000, "watermark_scale_factor": 10}.items():
        files[f"proc/sys/vm/{name}"] = f"{v}\n"
    files["sys/devices/system/node/node0/meminfo"] = "Node 0 MemTotal: 100 kB\n"
    return files


def capture(tmp_path, states, *, uptime0=1000.0, step=1.0, clock=True):
    """A capture folder without manifest: one snapshot tree per state (0000, 0001, ...)."""
    for i, files in enumerate(states):
        files = dict(files)
        if clock:
            files.setdefault("proc/uptime", f"{uptime0 + i * step:.2f} 1900.00\n")
        tree(tmp_path / f"{i:04d}", files)
    return str(tmp_path)


def check(path, *extra):
    import io
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["check", "--json", "--from", path, *extra])
    doc = json.loads(out.getvalue())
    assert doc["exit_status"] == status
    return status, doc


def moved(files, **counters):
    v = files["proc/vmstat"]
    for name, add in counters.items():
        v = set_counter(v, name, (counter(v, name) or 0) + add)
    return dict(files, **{"proc/vmstat": v})


def test_every_rule_looked_and_nothing_found_is_ok(tmp_path, base):
    # the page cache area: the base tree is a page cache host (the memory area needs processes
    # and a longer window: its own tests)
    status, doc = check(capture(tmp_path, [base, base]), "--area", "pagecache")
    assert doc["not_evaluated"] == []
    assert doc["rules_run"] == doc["rules_selected"] == len(load_rules(["pagecache"]))
    assert doc["verdict"] == "ok" and doc["complete"] is True and status == 0


def test_counter_absent_on_an_old_kernel_is_not_evaluated(tmp_path, base):
    old = dict(base, **{"proc/vmstat": re.sub(r"^workingset_\w+ \d+\n", "", base["proc/vmstat"], flags=re.M)})
    assert "workingset_refault" not in old["proc/vmstat"]
    status, doc = check(capture(tmp_path, [old, old]))
    ne = {n["rule"]: n["reason"] for n in doc["not_evaluated"]}
    assert "workingset_refault" in ne["pagecache.thrashing"] and "3.15" in ne["pagecache.thrashing"]
    assert doc["verdict"] == "incomplete" and doc["complete"] is False
    assert status == 3  # nothing found, but not everything looked: not "OK"
    assert doc["rules_run"] == doc["rules_selected"] - len(ne)


def test_no_sysctls_in_the_capture_says_which_rules_could_not_look(tmp_path, base):
    nosys = {k: v for k, v in base.items() if not k.startswith("proc/sys/")}
    status, doc = check(capture(tmp_path, [nosys, nosys]))
    ne = {n["rule"]: n["reason"] for n in doc["not_evaluated"]}
    assert "pagecache.numa-zone-reclaim" in ne
    # dirty-backlog judges with the kernel's own nr_dirty_threshold from vmstat: it looked
    assert "pagecache.dirty-backlog" not in ne
    assert "sysctl" in ne["pagecache.numa-zone-reclaim"]
    assert status == 3


def test_no_clock_means_rates_are_not_evaluated(tmp_path, base):
    # two snapshots, no proc/uptime, no manifest: a 0 s window used to read as "OK"
    status, doc = check(capture(tmp_path, [base, moved(base, pswpout=50_000)], clock=False))
    ne = {n["rule"]: n["reason"] for n in doc["not_evaluated"]}
    assert "no clock" in ne["pagecache.swap-io"]
    assert all("no clock" in ne[r.id] for r in load_rules() if r.window)
    assert doc["window"]["intervals_without_clock"] == 1
    assert status == 3 and doc["verdict"] != "ok"


def test_one_rule_that_looked_of_nine_is_not_ok_in_text(tmp_path, base, capsys):
    # only meminfo and vmstat without any counter most rules need
    files = {"proc/meminfo": base["proc/meminfo"], "proc/vmstat": "nr_free_pages 100\nnr_dirty 5\n"}
    path = capture(tmp_path, [files, files])
    status = main(["check", "--from", path])
    out = capture_text = capsys.readouterr().out
    assert status == 3
    m = re.search(r"(\d+) of (\d+) rules looked", out)
    assert m and int(m.group(1)) < int(m.group(2))
    assert "OK" not in capture_text.split("\n")[0]
    assert "could not" in out


def test_burst_in_a_long_capture_is_reported_at_its_peak(tmp_path, base):
    # 121 snapshots 5 s apart (600 s): 500 allocation stalls/s for one 5 s interval
    states, cur = [], base
    for i in range(121):
        states.append(cur)
        if i == 60:
            cur = moved(cur, allocstall=2500, pgscan_direct_normal=40_000, pgsteal_direct_normal=30_000)
    status, doc = check(capture(tmp_path, states, step=5.0))
    f = next(f for f in doc["findings"] if f["id"] == "pagecache.direct-reclaim")
    ev = {e["name"]: e for e in f["evidence"]}
    assert ev["allocstall"]["value"] == pytest.approx(500.0)  # not the 4/s mean
    assert "interval 61 of 120" in ev["allocstall"]["note"]
    assert f["severity"] == "critical" and status == 2


def test_reboot_in_the_middle_of_a_capture_is_flagged_and_split(tmp_path, base):
    before = [base, moved(base, pswpout=100_000)]
    after = [dict(moved(base, pswpout=0), **{"proc/uptime": "20.00 30.00\n"}),
             dict(moved(base, pswpout=5), **{"proc/uptime": "21.00 31.00\n"})]
    status, doc = check(capture(tmp_path, before + after))
    assert doc["series_breaks"] and doc["series_breaks"][0]["kind"] == "reboot"
    assert doc["series_breaks"][0]["after_snapshot"] == 1
    assert doc["snapshots_left_out"] == 2 and doc["window"]["snapshots"] == 2
    # the 100,000 pages/s of swap before the reboot are not mixed with the boot after it
    assert "pagecache.swap-io" not in {f["id"] for f in doc["findings"]}


def test_rule_counters_are_names_kernels_printed():
    load_rules()
    for r in RULES.values():
        for c in r.needs.counters:
            for n in c.names:
                base = n.partition(".")[2] or n
                assert (n in counter_names.VMSTAT or n in counter_names.NET_SNMP
                        or any(f"{n}_{z}" in counter_names.VMSTAT for z in ("normal", "dma32"))), (r.id, base)


def test_counter_vocabulary_covers_every_real_vmstat():
    # a kernel name missing from the vocabulary would make a correct rule fail to import
    names = set()
    for p in corpus_files("**/proc/vmstat"):
        names |= {ln.split()[0] for ln in p.read_text().splitlines() if ln.split()}
    assert names and names <= counter_names.VMSTAT, sorted(names - counter_names.VMSTAT)


def test_a_rule_that_needs_a_longer_window_says_so():
    from ksight.collect.plan import Needs
    from ksight.diagnose.engine import why_cannot_look
    from ksight.model import HostInfo, Snapshot
    from ksight.model.series import Series

    s = Series([Snapshot(None, None, 10.0, HostInfo()), Snapshot(None, None, 13.0, HostInfo())])
    assert "at least 10 s" in why_cannot_look(Needs(min_seconds=10), s)
    assert why_cannot_look(Needs(min_seconds=2), s) is None
