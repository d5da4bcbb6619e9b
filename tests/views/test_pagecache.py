"""`ksight pagecache`: dirty thresholds by hand from fixture text (and against the kernel's own
nr_dirty_threshold in the same snapshot), the cache identity on corpora by hand, --protect on a
live memory cgroup we create, --from a capture, and partial reports without tracebacks."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

import pytest

from ksight.cli.main import main
from ksight.model.snapshot import HostInfo, Snapshot
from ksight.sources import meminfo, zoneinfo
from ksight.store.capture import open_capture
from ksight.views import pagecache as pc
from tests.conftest import FIXTURES, IS_ROOT, corpus, corpus_root

FIX = FIXTURES / "sar" / "reclaim"


def run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


def kv(path, sep=None) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        if sep:
            k, rest = line.split(sep, 1)
        else:
            k, rest = line.split(None, 1)
        out[k.strip()] = int(rest.split()[0])
    return out


def zones_by_hand(text: str) -> list[dict]:
    """high, managed, protection per zone, read with regexes (not ksight's zoneinfo parser)."""
    zones = []
    for block in re.split(r"(?m)^Node ", text)[1:]:
        z = {"name": block.split()[2]}
        for key in ("high", "managed", "boost"):
            m = re.search(rf"(?m)^\s+{key}\s+(\d+)$", block)
            z[key] = int(m.group(1)) if m else 0
        m = re.search(r"protection: \(([\d, ]+)\)", block)
        z["protection"] = [int(x) for x in m.group(1).split(",")] if m else [0]
        zones.append(z)
    return zones


def fixture_snap(i: int = 1):
    return list(open_capture(str(FIX)).snapshots(sources=list(pc.SOURCES)))[i]


# ---- dirty thresholds -----------------------------------------------------------------------

def test_dirty_thresholds_by_hand_on_fixture():
    d = FIX / "0001" / "proc"
    vm = kv(d / "vmstat")
    mi = kv(d / "meminfo", ":")
    ratio = int((d / "sys" / "vm" / "dirty_ratio").read_text())  # 20
    bg_ratio = int((d / "sys" / "vm" / "dirty_background_ratio").read_text())  # 10
    assert int((d / "sys" / "vm" / "dirty_bytes").read_text()) == 0
    reserve = 0
    for z in zones_by_hand((d / "zoneinfo").read_text()):
        reserve += min(max(z["protection"]) + z["high"] - z["boost"], z["managed"])
    # DMA min(4171+90, 3840) + DMA32 1152+18277 + Normal 0+6973 + Movable/Device 0
    assert reserve == 3840 + 19429 + 6973
    free = mi["MemFree"] // 4  # 4 KiB pages: MemFree, see the module doc (nr_free_pages lags)
    dirtyable = free - min(free, reserve) + vm["nr_inactive_file"] + vm["nr_active_file"] + 1
    thresh = (ratio * 4096 // 100) * dirtyable // 4096
    bg = (bg_ratio * 4096 // 100) * dirtyable // 4096
    got = pc.dirty_limits(fixture_snap(1))
    assert got.totalreserve_pages == reserve
    assert got.dirtyable_pages == dirtyable
    assert (got.thresh_pages, got.bg_thresh_pages) == (thresh, bg)
    assert got.freerun_pages == (thresh + bg) // 2
    # and the kernel's own numbers in the same snapshot agree within a few pages (the kernel
    # computed them some microseconds apart from MemFree); nr_free_pages would be 5x off
    assert thresh == pytest.approx(vm["nr_dirty_threshold"], abs=200)
    assert bg == pytest.approx(vm["nr_dirty_background_threshold"], abs=100)
    assert got.vmstat_free_pages == vm["nr_free_pages"] and got.vmstat_free_pages < 0.5 * free
    assert got.state == "idle"


def _snap(sysctls: dict[str, str], free_kb=400_000, dirty_kb=0, writeback_kb=0) -> Snapshot:
    from ksight.sources.sysctl import parse as sysctl_parse

    mi = meminfo.parse(f"MemTotal: 1000000 kB\nMemFree: {free_kb} kB\nActive(file): 200000 kB\n"
                       f"Inactive(file): 200000 kB\nDirty: {dirty_kb} kB\nWriteback: {writeback_kb} kB\n")
    return Snapshot(None, None, None, HostInfo(page_size=4096),
                    sources={"meminfo": mi, "sysctl": sysctl_parse(sysctls)})


def test_bytes_override_ratio_and_background_halved():
    # dirtyable = 100000 + 100000 pages + 1 (no zoneinfo: reserve 0)
    s = _snap({"vm.dirty_bytes": "409600000", "vm.dirty_ratio": "0",
               "vm.dirty_background_bytes": "0", "vm.dirty_background_ratio": "60"})
    d = pc.dirty_limits(s)
    assert d.thresh_pages == 100000  # ceil(409600000 / 4096)
    # 60% of 200001 pages = (60*4096//100)*200001//4096 = 2457*200001//4096 = 119970 >= 100000
    assert d.background_halved and d.bg_thresh_pages == 50000


def test_dirty_states():
    base = {"vm.dirty_bytes": "0", "vm.dirty_ratio": "20", "vm.dirty_background_bytes": "0",
            "vm.dirty_background_ratio": "10"}
    # thresh = 819*200001//4096 = 39990, bg = 409*200001//4096 = 19970, freerun 29980
    assert pc.dirty_limits(_snap(base, dirty_kb=4 * 100)).state == "idle"
    assert pc.dirty_limits(_snap(base, dirty_kb=4 * 20000)).state == "background writeback"
    assert pc.dirty_limits(_snap(base, dirty_kb=4 * 20000, writeback_kb=4 * 10000)).state == "throttled"
    assert pc.dirty_limits(_snap(base, dirty_kb=4 * 40000)).state == "at the hard limit"


def test_dirty_limits_live_match_kernel():
    # this machine: our thresholds against the kernel's nr_dirty_threshold read in one snapshot
    from ksight.collect.snapshot import take
    from ksight.fs import LiveRoot

    snap = take(LiveRoot(), sources=list(pc.SOURCES))
    d = pc.dirty_limits(snap)
    assert d is not None and d.kernel_thresh_pages is not None
    assert d.thresh_pages == pytest.approx(d.kernel_thresh_pages, rel=0.02)
    assert d.bg_thresh_pages == pytest.approx(d.kernel_bg_thresh_pages, rel=0.02)


# ---- the identity on corpora ----------------------------------------------------------------

IDENTITY_CASES = [("node_exporter", "proc", "meminfo")] + [
    ("pcp", "unpacked", f"meminfo-root-00{i}", "proc", "meminfo") for i in range(1, 8)]  # 008 has only per-node meminfo


@pytest.mark.parametrize("parts", IDENTITY_CASES, ids=lambda p: p[-3] if p[0] == "pcp" else p[0])
def test_cache_identity_by_hand_on_corpora(parts):
    p = corpus(*parts)
    m = kv(p, ":")
    c = pc.cache_breakdown(meminfo.parse(p.read_text()))
    left = m["Buffers"] + m["Cached"] + m["SwapCached"]
    assert c.page_cache_kb == left
    if "Active(file)" not in m or "Shmem" not in m:
        assert c.lru_side_kb is None and c.gap_kb is None  # old kernel: no identity, not 0
        return
    right = m["Active(file)"] + m["Inactive(file)"] + m["Shmem"] + m["SwapCached"]
    assert c.lru_side_kb == right and c.gap_kb == left - right
    assert c.buff_cache_kb == m["Buffers"] + m["Cached"] + m["SReclaimable"]


def test_identity_on_node_exporter_corpus_matches_e2e_output():
    # node_exporter's e2e-output.txt for this meminfo: node_memory_Buffers_bytes 2.256896e+07,
    # Cached 9.53229312e+08, Active_file 2.18533888e+08, Inactive_file 1.49172224e+08,
    # Shmem 6.0809216e+08 -> in kB 22040 + 930888 = 213412 + 145676 + 593840: gap 0
    c = pc.cache_breakdown(meminfo.parse(corpus("node_exporter", "proc", "meminfo").read_text()))
    assert c.buffers_kb * 1024 == 22568960 and c.cached_kb * 1024 == 953229312
    assert c.lru_side_kb - c.swap_cached_kb == (218533888 + 149172224 + 608092160) // 1024
    assert c.gap_kb == 0


def test_report_on_node_exporter_corpus_root():
    # one real snapshot tree: watermarks per zone, checked by hand against its zoneinfo
    root = corpus_root("node_exporter")
    from ksight.collect.snapshot import take

    snap = take(root, sources=list(pc.SOURCES))
    rep = pc.report(snap)
    hand = zones_by_hand(corpus("node_exporter", "proc", "zoneinfo").read_text())
    assert [z.name for z in rep.zones] == [z["name"] for z in hand]
    # the corpus has no proc/sys/vm: the kernel's own thresholds from its vmstat are used
    # (node_exporter's vmstat: nr_dirty_threshold 270390, nr_dirty_background_threshold 135030)
    assert not corpus("node_exporter").joinpath("proc", "sys", "vm").exists()
    assert rep.dirty.thresholds_from == "kernel"
    assert (rep.dirty.thresh_pages, rep.dirty.bg_thresh_pages) == (270390, 135030)
    assert rep.dirty.dirty_ratio is None
    # the reserve they would subtract is still computable from zoneinfo alone: by hand,
    # calculate_totalreserve_pages() over the corpus's zones
    reserve = sum(min(max(z["protection"]) + z["high"] - z["boost"], z["managed"]) for z in hand)
    assert reserve > 0
    assert pc.totalreserve_pages(snap.get("zoneinfo")) == reserve


def test_zone_states_flag_below_low_and_min():
    text = ("Node 0, zone   Normal\n  pages free     100\n        min      150\n        low      200\n"
            "        high     250\n        spanned  1000\n        present  1000\n        managed  1000\n"
            "        protection: (0, 0)\n"
            "Node 0, zone  DMA32\n  pages free     180\n        min      150\n        low      200\n"
            "        high     250\n        spanned  1000\n        present  1000\n        managed  1000\n"
            "        protection: (0, 0)\n")
    states = [z.state for z in pc.zone_states(zoneinfo.parse(text))]
    assert states == ["below min (direct reclaim)", "below low (kswapd)"]


# ---- CLI: --from, partial reports -------------------------------------------------------------

def test_cli_from_capture():
    rc, out = run_cli("pagecache", "--from", str(FIX))
    assert rc == 0
    assert "free(1) buff/cache" in out and "Zone watermarks" in out
    d = FIX / "0002" / "proc"  # the last snapshot
    mi = kv(d / "meminfo", ":")
    assert f"{mi['Buffers'] + mi['Cached'] - mi['Active(file)'] - mi['Inactive(file)'] - mi['Shmem']} kB" in out
    assert all(len(ln) <= 100 for ln in out.splitlines())
    rc, out = run_cli("pagecache", "--from", str(FIX), "--json")
    doc = json.loads(out)
    assert doc["report"]["dirty"]["kernel_thresh_pages"] == kv(d / "vmstat")["nr_dirty_threshold"]


def test_cli_partial_report_without_traceback(tmp_path):
    # only a meminfo: cache shown, the rest unavailable with a reason
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(corpus("node_exporter", "proc", "meminfo").read_text())
    rc, out = run_cli("pagecache", "--from", str(tmp_path))
    assert rc == 0
    assert "Missing" in out and "zoneinfo" in out and "sysctl" in out
    assert "Dirty pages and writeback limits" in out


def test_cli_nothing_readable(tmp_path):
    (tmp_path / "proc").mkdir()
    rc, out = run_cli("pagecache", "--from", str(tmp_path))
    assert rc == 3 and "meminfo" in out


def test_protect_without_cgroups_is_partial(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(corpus("node_exporter", "proc", "meminfo").read_text())
    rc, out = run_cli("pagecache", "--from", str(tmp_path), "--protect", "/some.slice")
    assert "memory cgroups unavailable" in out and "mlock" in out


# ---- --protect on a live memory cgroup ------------------------------------------------------

@pytest.mark.skipif(not IS_ROOT, reason="needs root to create a memory cgroup (CI runs as root)")
def test_protect_live_cgroup_shows_its_limit():
    from ksight.lab.cgroup import MemoryCgroup

    limit = 96 * 2**20
    with MemoryCgroup("pctest", max_bytes=limit) as cg:
        p = cg.spawn(["sleep", "30"])
        rc, out = run_cli("pagecache", "--protect", str(p.pid))
        assert rc == 0
        assert f"PID {p.pid}" in out
        assert cg.path in out
        if cg.version == 1:
            assert "memory.limit_in_bytes 96.0 MiB" in out
            assert "v1 has no memory.low / memory.min" in out
        else:
            assert "memory.max 96.0 MiB" in out and "memory.low =" in out
        rc, out = run_cli("pagecache", "--protect", cg.path, "--json")
        doc = json.loads(out)["report"]["protect"]
        assert doc["max_bytes"] == limit and doc["cgroup"] == cg.path
        # the page cache charged to it, as the kernel's own memory.stat says
        st = cg.stat()
        assert doc["file_bytes"] == st.get("total_cache", st.get("file"))
