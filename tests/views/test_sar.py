"""`ksight sar -B / -r`: against hand arithmetic on a captured fixture, against real sysstat on
this machine over the same second, and across a counter reset.

The fixture tests/fixtures/sar/reclaim is three snapshots captured on this project's CI VM
(kernel 6.18) while `dd` wrote and read 150 MiB files inside a 64 MiB memory cgroup: the cgroup
limit reclaimed page cache, so pgsteal_file/pgscan_file moved while pgscan_kswapd/_direct
stayed 0 (limit reclaim is not counted there), which is the case where %vmeff misleads.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from contextlib import redirect_stdout

import pytest

from ksight.cli.main import main
from ksight.model.snapshot import HostInfo, Snapshot
from ksight.sources import meminfo, vmstat
from ksight.store.capture import open_capture
from ksight.views import sar
from tests.conftest import FIXTURES, corpus, need_tool

FIX = FIXTURES / "sar" / "reclaim"


def raw_counters(i: int) -> dict[str, int]:
    """/proc/vmstat of snapshot i, split by hand (not through ksight's parser)."""
    out = {}
    for line in (FIX / f"{i:04d}" / "proc" / "vmstat").read_text().splitlines():
        k, v = line.split()
        out[k] = int(v)
    return out


def raw_meminfo(i: int) -> dict[str, int]:
    out = {}
    for line in (FIX / f"{i:04d}" / "proc" / "meminfo").read_text().splitlines():
        k, rest = line.split(":")
        out[k] = int(rest.split()[0])
    return out


def raw_uptime(i: int) -> float:
    return float((FIX / f"{i:04d}" / "proc" / "uptime").read_text().split()[0])


def fixture_snaps():
    return list(open_capture(str(FIX)).snapshots(sources=list(sar.SOURCES)))


def run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


# ---- (a) hand arithmetic on the captured fixture ---------------------------------------------

def test_paging_columns_by_hand_first_pair():
    a, b = raw_counters(0), raw_counters(1)
    secs = raw_uptime(1) - raw_uptime(0)  # 1905.12 - 1904.11 = 1.01 s (sar also times by uptime)
    d = {k: b[k] - a[k] for k in b}
    # by hand from the text: pgpgin 1723077-1344185 = 378892 KiB in 1.01 s
    assert d["pgpgin"] == 378892
    assert d["pgsteal_file"] == 200448 - 61056 and d["pgsteal_anon"] == 0
    row = sar.report(fixture_snaps(), "B").rows[0]
    v = row.values
    assert v["pgpgin/s"] == pytest.approx(378892 / secs)
    assert v["pgpgout/s"] == pytest.approx((1474612 - 1166792) / secs)
    assert v["fault/s"] == pytest.approx(d["pgfault"] / secs)
    assert v["majflt/s"] == pytest.approx(d["pgmajfault"] / secs)
    assert v["pgfree/s"] == pytest.approx(d["pgfree"] / secs)
    assert v["pgscank/s"] == pytest.approx(d["pgscan_kswapd"] / secs) == 0
    # pgscan_direct only, never pgscan_direct_throttle (sysstat PR #424)
    assert v["pgscand/s"] == pytest.approx(d["pgscan_direct"] / secs) == 0
    # pgsteal_anon + pgsteal_file only: summing every pgsteal_* line would double it (#415/#426)
    assert v["pgsteal/s"] == pytest.approx((d["pgsteal_anon"] + d["pgsteal_file"]) / secs)
    assert v["pgsteal/s"] == pytest.approx(139392 / 1.01)
    # nothing scanned by kswapd/direct: sysstat prints 0.00, though memcg reclaim stole pages
    assert v["%vmeff"] == 0.0
    # the like-for-like efficiency: pgsteal / (pgscan_anon + pgscan_file) = 139392 / 140416
    assert sar.vmeff_all(row) == pytest.approx(100 * 139392 / (209409 - 68993))
    assert row.time == time.strftime("%H:%M:%S", time.localtime(1795643902.85795))


def test_paging_average_is_rate_over_whole_span():
    a, c = raw_counters(0), raw_counters(2)
    secs = raw_uptime(2) - raw_uptime(0)  # 2.01 s
    rep = sar.report(fixture_snaps(), "B")
    assert len(rep.rows) == 2
    avg = rep.average.values
    assert avg["pgfree/s"] == pytest.approx((c["pgfree"] - a["pgfree"]) / secs)
    assert avg["pgpgout/s"] == pytest.approx((c["pgpgout"] - a["pgpgout"]) / secs)
    assert avg["pgsteal/s"] == pytest.approx((c["pgsteal_file"] - a["pgsteal_file"]) / secs)


def test_memory_columns_by_hand():
    m = raw_meminfo(1)
    row = sar.report(fixture_snaps(), "r").rows[0]  # the later snapshot of the first pair
    v = row.values
    assert v["kbmemfree"] == m["MemFree"]
    assert v["kbavail"] == m["MemAvailable"]
    # sysstat 12.7.8+: MemTotal - MemAvailable
    assert v["kbmemused"] == m["MemTotal"] - m["MemAvailable"]
    assert v["%memused"] == pytest.approx(100 * (m["MemTotal"] - m["MemAvailable"]) / m["MemTotal"])
    assert v["kbbuffers"] == m["Buffers"] and v["kbcached"] == m["Cached"]
    assert v["kbcommit"] == m["Committed_AS"]
    assert v["%commit"] == pytest.approx(100 * m["Committed_AS"] / (m["MemTotal"] + m["SwapTotal"]))
    assert v["kbactive"] == m["Active"] and v["kbinact"] == m["Inactive"]
    assert v["kbdirty"] == m["Dirty"]


def test_memory_columns_legacy_formula_by_hand():
    # sysstat 12.0-12.7.7 (Debian 12's 12.6.1): MemTotal - MemFree - Buffers - Cached - Slab
    m = raw_meminfo(1)
    v = sar.report(fixture_snaps(), "r", legacy=True).rows[0].values
    nouse = m["MemFree"] + m["Buffers"] + m["Cached"] + m["Slab"]
    assert v["kbmemused"] == m["MemTotal"] - nouse
    assert v["%memused"] == pytest.approx(100 * (m["MemTotal"] - nouse) / m["MemTotal"])
    assert m["MemTotal"] - nouse != m["MemTotal"] - m["MemAvailable"]  # the two really differ


def test_memory_used_both_formulas_on_pcp_kernel_text():
    # pcp meminfo-root-005 (a 4.12-5.8 kernel): MemTotal 16050940, MemFree 2496772,
    # MemAvailable 10749228, Buffers 1267156, Cached 7246776, Slab 694056 kB
    from ksight.sources import meminfo as mi_src
    from tests.conftest import corpus_text

    text = corpus_text("pcp", "unpacked", "meminfo-root-005", "proc", "meminfo")
    m = {ln.split(":")[0]: int(ln.split(":")[1].split()[0]) for ln in text.splitlines() if ":" in ln}
    mi = mi_src.parse(text)
    keys = ("mem_total_kb", "mem_free_kb", "mem_available_kb", "buffers_kb", "cached_kb", "slab_kb",
            "committed_as_kb", "swap_total_kb", "active_kb", "inactive_kb", "dirty_kb")
    raw = {k: getattr(mi, k) for k in keys}
    assert m["MemTotal"] == 16050940
    assert sar.memory_values(raw)["kbmemused"] == 16050940 - 10749228 == 5301712
    assert sar.memory_values(raw)["%memused"] == pytest.approx(100 * 5301712 / 16050940)
    assert sar.memory_values(raw, legacy=True)["kbmemused"] == \
        16050940 - 2496772 - 1267156 - 7246776 - 694056 == 4346180


def test_sar_help_names_both_formulas():
    from ksight.cli import sar as cli_sar

    assert "MemTotal - MemAvailable" in cli_sar.DESCRIPTION and "12.7.8" in cli_sar.DESCRIPTION
    assert "--sysstat-legacy" in cli_sar.DESCRIPTION + cli_sar.EPILOG


def test_memory_average_is_mean_of_rows():
    m1, m2 = raw_meminfo(1), raw_meminfo(2)
    avg = sar.report(fixture_snaps(), "r").average.values
    assert avg["kbmemfree"] == pytest.approx((m1["MemFree"] + m2["MemFree"]) / 2)
    assert avg["kbdirty"] == pytest.approx((m1["Dirty"] + m2["Dirty"]) / 2)


def test_pgsteal_on_older_kernels():
    # 4.8..5.x: no pgsteal_anon/_file -> kswapd + direct
    c = {"pgsteal_kswapd": 5, "pgsteal_direct": 7, "pgscan_kswapd": 1, "pgscan_direct": 2,
         "pgscan_direct_throttle": 3}
    comp = sar.paging_counters(c)
    assert comp["pgsteal/s"] == ("pgsteal_kswapd", "pgsteal_direct")
    assert comp["pgscand/s"] == ("pgscan_direct",)
    # 3.x-4.7: per-zone lines; throttle still left out
    c = {"pgsteal_kswapd_normal": 1, "pgsteal_direct_dma32": 2, "pgscan_kswapd_normal": 3,
         "pgscan_direct_normal": 4, "pgscan_direct_throttle": 9}
    comp = sar.paging_counters(c)
    assert set(comp["pgsteal/s"]) == {"pgsteal_kswapd_normal", "pgsteal_direct_dma32"}
    assert comp["pgscand/s"] == ("pgscan_direct_normal",)
    assert comp["pgscank/s"] == ("pgscan_kswapd_normal",)


def test_pgsteal_on_pcp_corpus_kernel():
    # a real vmstat from PCP's corpus (meminfo-root-001): whatever the kernel, pgsteal/s uses
    # either the anon/file pair or the reclaimer split, never both
    text = corpus("pcp", "unpacked", "meminfo-root-001", "proc", "vmstat").read_text()
    c = vmstat.parse(text).counters
    comp = sar.paging_counters(c)["pgsteal/s"]
    assert not ({"pgsteal_anon", "pgsteal_file"} <= set(comp) and "pgsteal_kswapd" in comp)
    assert "pgscan_direct_throttle" not in sar.paging_counters(c)["pgscand/s"]


# ---- CLI on the capture --------------------------------------------------------------------

def test_cli_from_capture_rows_and_average():
    rc, out = run_cli("sar", "-B", "--from", str(FIX))
    assert rc == 0
    lines = out.splitlines()
    head = [ln for ln in lines if "pgpgin/s" in ln]
    assert len(head) == 1 and head[0].split()[1:] == list(sar.PAGING_COLUMNS)
    data = [ln for ln in lines if re.match(r"^\d\d:\d\d:\d\d ", ln)]
    assert len(data) == 3  # header + 2 rows (header starts with a time too)
    assert lines[-1].startswith("Average:")
    assert all(len(ln) <= 100 for ln in lines)
    # the first row's pgsteal/s as printed, recomputed by hand: 139392 / 1.01
    row1 = data[1].split()
    assert float(row1[8]) == pytest.approx(139392 / 1.01, abs=0.01)


def test_cli_json_from_capture():
    rc, out = run_cli("sar", "-B", "-r", "--from", str(FIX), "--json")
    assert rc == 0
    doc = json.loads(out)
    modes = [t["mode"] for t in doc["tables"]]
    assert modes == ["B", "r"]
    b = doc["tables"][0]
    assert len(b["rows"]) == 2 and b["average"]["time"] == "Average:"
    assert b["rows"][0]["vmeff_all_pct"] == pytest.approx(100 * 139392 / 140416)


def test_cli_single_snapshot_corpus_says_why():
    # node_exporter's fixture is one snapshot: no pair, no row, and it says so (no traceback)
    rc, out = run_cli("sar", "-B", "--from", str(corpus("node_exporter")))
    assert rc == 3
    assert "1 snapshot(s)" in out


def test_cli_missing_vmstat_is_reported(tmp_path):
    # procfs's corpus has no proc/vmstat: two copies of it make a capture without vmstat
    src = corpus("procfs", "proc")
    for d in ("0000", "0001"):
        (tmp_path / d / "proc").mkdir(parents=True)
        shutil.copy(src / "meminfo", tmp_path / d / "proc" / "meminfo")
    rc, out = run_cli("sar", "-B", "--from", str(tmp_path))
    assert "unavailable: vmstat" in out


# ---- (c) counter reset ------------------------------------------------------------------------

def _snap(vm_text: str, up: float) -> Snapshot:
    return Snapshot(taken_at=1_000_000.0 + up, monotonic=None, uptime_s=up, host=HostInfo(),
                    sources={"vmstat": vmstat.parse(vm_text)})


def test_counter_reset_is_a_flagged_gap():
    a = _snap("pgpgin 100\npgpgout 10\npgfault 1000\npgmajfault 1\npgfree 500\n"
              "pgscan_kswapd 50\npgscan_direct 0\npgsteal_anon 0\npgsteal_file 900\n", 100.0)
    # pgsteal_file went backwards (e.g. a 32-bit wrap on an old kernel): no rate, flagged
    b = _snap("pgpgin 300\npgpgout 10\npgfault 1500\npgmajfault 1\npgfree 700\n"
              "pgscan_kswapd 80\npgscan_direct 0\npgsteal_anon 0\npgsteal_file 20\n", 102.0)
    row = sar.paging_row(a, b)
    assert row.values["pgsteal/s"] is None and row.values["%vmeff"] is None
    assert row.resets == ("pgsteal_file",)
    assert any("reset" in n for n in row.notes)
    assert row.values["pgpgin/s"] == 100.0  # (300-100)/2: other columns unaffected
    assert all(v is None or v >= 0 for v in row.values.values())
    # the Average skips the gap instead of using a negative delta
    c = _snap("pgpgin 500\npgpgout 10\npgfault 1600\npgmajfault 1\npgfree 800\n"
              "pgscan_kswapd 90\npgscan_direct 0\npgsteal_anon 0\npgsteal_file 30\n", 104.0)
    rep = sar.report([a, b, c], "B")
    assert rep.average.values["pgsteal/s"] == pytest.approx(10 / 2.0)
    assert rep.average.values["pgpgin/s"] == pytest.approx(400 / 4.0)


def test_reboot_between_snapshots_gives_no_rates():
    a = _snap("pgpgin 100\npgfault 10\n", 1000.0)
    b = _snap("pgpgin 200\npgfault 20\n", 5.0)  # uptime went backwards
    row = sar.paging_row(a, b)
    assert row.values["pgpgin/s"] is None
    assert any("reboot" in n for n in row.notes)


def test_memory_row_missing_fields_are_none():
    snap = Snapshot(None, None, None, HostInfo(),
                    sources={"meminfo": meminfo.parse("MemTotal: 1000 kB\nMemFree: 100 kB\n")})
    v = sar.memory_row(snap).values
    assert v["kbmemfree"] == 100 and v["kbavail"] is None and v["kbmemused"] is None


# ---- (b) against real sysstat on this machine ------------------------------------------------

def _sar_row(args: list[str]) -> tuple[list[str], list[float]]:
    env = dict(os.environ, LC_ALL="C", S_TIME_FORMAT="ISO")
    out = subprocess.run([need_tool("sar", "sysstat, which .ci/run installs"), *args], capture_output=True,
                         text=True, env=env, timeout=20).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    head = next(ln for ln in lines if ln.split()[1:2] and ln.split()[1] in ("pgpgin/s", "kbmemfree"))
    data = next(ln for ln in lines[lines.index(head) + 1:] if not ln.startswith("Average"))
    cols = head.split()[1:]
    return cols, [float(x) for x in data.split()[1:]]


def _concurrent(args: list[str], mode: str):
    from ksight.collect.snapshot import take
    from ksight.fs import LiveRoot

    res = {}
    t = threading.Thread(target=lambda: res.setdefault("sar", _sar_row(args)))
    t.start()
    time.sleep(0.02)  # sadc takes its first sample right after it starts
    a = take(LiveRoot(), sources=list(sar.SOURCES))
    time.sleep(1.0)
    b = take(LiveRoot(), sources=list(sar.SOURCES))
    t.join(30)
    row = sar.paging_row(a, b) if mode == "B" else sar.memory_row(b, legacy=_installed_sar_is_legacy())
    return res["sar"], row


def _installed_sar_is_legacy() -> bool:
    """sysstat before 12.7.8 computes kbmemused as MemTotal - MemFree - Buffers - Cached - Slab."""
    import re
    import subprocess

    out = subprocess.run(["sar", "-V"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return bool(m) and tuple(map(int, m.groups())) < (12, 7, 8)


@pytest.fixture
def needs_sar():
    """sysstat's sar: skipped naming it when absent, a failure in CI (.ci/run installs it)."""
    return need_tool("sar", "sysstat, which .ci/run installs")


def test_sar_B_matches_sysstat_same_second(needs_sar):
    (cols, theirs), row = _concurrent(["-B", "1", "1"], "B")
    assert cols == list(sar.PAGING_COLUMNS)
    for col, t in zip(cols, theirs):
        ours = row.values[col]
        assert ours is not None, col
        if col == "pgsteal/s" and t > 0 and ours > 0:
            # sysstat before PR #426 (e.g. 12.6 in Debian 12) sums every pgsteal_* line,
            # which counts each page twice on this kernel: accept its double
            assert t == pytest.approx(ours, rel=0.3, abs=50) or t == pytest.approx(2 * ours, rel=0.3, abs=50)
            continue
        if col == "%vmeff":
            continue  # derived from pgsteal, see above
        # the two windows differ by a few ms and a few processes (sadc, pytest): rates agree
        # within 30% or a small absolute slack (other helpers may run tests on this machine)
        assert ours == pytest.approx(t, rel=0.3, abs=1500 if col in ("fault/s", "pgfree/s") else 200), col


def test_sar_r_matches_sysstat_same_second(needs_sar):
    (cols, theirs), row = _concurrent(["-r", "1", "1"], "r")
    assert cols == list(sar.MEMORY_COLUMNS)
    total = row.raw["mem_total_kb"]
    for col, t in zip(cols, theirs):
        ours = row.values[col]
        if col.startswith("%"):
            assert ours == pytest.approx(t, abs=1.0), col  # percentage points
        else:
            assert ours == pytest.approx(t, abs=0.01 * total), col  # within 1% of memory
    # kbmemused tighter than 1% of RAM: 64 MiB, far below the gap between sysstat's definition
    # and MemTotal - MemAvailable on this machine (which would make this test fail)
    i = cols.index("kbmemused")
    assert row.values["kbmemused"] == pytest.approx(theirs[i], abs=65536)
    other = total - row.values["kbavail"]
    if abs(other - theirs[i]) > 4 * 65536:
        assert abs(row.values["kbmemused"] - other) > 65536


def test_pgsteal_not_double_counted_under_global_reclaim():
    # kswapd reclaimed 400 file pages in 2 s: the kernel adds 400 to pgsteal_kswapd AND to
    # pgsteal_file; sar's pgsteal/s must be 200, and %vmeff 400/500 = 80, not 160
    a = _snap("pgscan_kswapd 1000\npgscan_direct 0\npgscan_direct_throttle 0\npgscan_anon 0\n"
              "pgscan_file 1000\npgsteal_kswapd 800\npgsteal_direct 0\npgsteal_anon 0\n"
              "pgsteal_file 800\n", 10.0)
    b = _snap("pgscan_kswapd 1500\npgscan_direct 0\npgscan_direct_throttle 7\npgscan_anon 0\n"
              "pgscan_file 1500\npgsteal_kswapd 1200\npgsteal_direct 0\npgsteal_anon 0\n"
              "pgsteal_file 1200\n", 12.0)
    row = sar.paging_row(a, b)
    assert row.values["pgsteal/s"] == 200.0
    assert row.values["pgscank/s"] == 250.0 and row.values["pgscand/s"] == 0.0  # throttle left out
    assert row.values["%vmeff"] == pytest.approx(80.0)
