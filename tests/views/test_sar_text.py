"""sar text: sysstat's columns stay separated when values outgrow sysstat's %9.2f."""

from __future__ import annotations

import io

import pytest

from ksight.model.snapshot import HostInfo, Snapshot
from ksight.render.sar_text import SarText
from ksight.sources import meminfo, vmstat
from ksight.views import sar

BASE = ("pgpgin {a}\npgpgout 10\npgfault 1000\npgmajfault 1\npgfree 500\npgscan_kswapd 50\n"
        "pgscan_direct 0\npgsteal_anon 0\npgsteal_file 900\n")


def _snap(pgpgin: int, up: float, memtotal_kb: int = 16 * 2**20) -> Snapshot:
    mi = meminfo.parse(f"MemTotal: {memtotal_kb} kB\nMemFree: {memtotal_kb // 2} kB\n"
                       "MemAvailable: 1 kB\nBuffers: 1 kB\nCached: 1 kB\nSlab: 1 kB\n"
                       "Committed_AS: 1 kB\nSwapTotal: 0 kB\nActive: 1 kB\nInactive: 1 kB\n"
                       "Dirty: 1 kB\n")
    return Snapshot(taken_at=1_000_000.0 + up, monotonic=None, uptime_s=up, host=HostInfo(),
                    sources={"vmstat": vmstat.parse(BASE.format(a=pgpgin)), "meminfo": mi})


def _render(snaps, modes, stream):
    out = io.StringIO()
    st = sar.SarStream(modes)
    text = SarText(modes, out, stream=stream)
    prev = None
    for s in snaps:
        new = st.add(s)
        if prev is None:
            text.start(s)
        text.rows(prev, new)
        prev = s
    text.finish(st.reports())
    return out.getvalue()


@pytest.mark.parametrize("stream", [True, False])
def test_columns_stay_separated_at_ten_million(stream):
    # pgpgin goes up 2 * 12_345_678 in 2 s: 12345678.00/s, 11 characters, wider than %9.2f
    snaps = [_snap(100, 10.0), _snap(100 + 2 * 12_345_678, 12.0), _snap(100 + 2 * 12_345_678, 14.0)]
    out = _render(snaps, ["B"], stream)
    rows = [ln.split() for ln in out.splitlines() if ln[:2].isdigit() or ln.startswith("Average")]
    head = [r for r in rows if "pgpgin/s" in r]
    data = [r for r in rows if "pgpgin/s" not in r]
    assert head and head[0][1:] == list(sar.PAGING_COLUMNS)
    assert len(data) == 3  # two rows and the Average
    for r in data:
        assert len(r) == 1 + len(sar.PAGING_COLUMNS), r  # no two values run together
    # by hand: 2 * 12345678 KiB over 2 s, then 0, and the average over 4 s
    assert [float(r[1]) for r in data] == [12345678.0, 0.0, 12345678.0 / 2]
    assert float(data[0][2]) == 0.0  # pgpgout/s right after it, separate


def test_whole_table_aligns_a_wide_column():
    # a capture is printed at once: the header is as wide as the widest value below it
    snaps = [_snap(100, 10.0), _snap(100 + 2 * 12_345_678, 12.0), _snap(100 + 2 * 12_345_678, 14.0)]
    out = _render(snaps, ["B"], stream=False)
    lines = [ln for ln in out.splitlines() if "pgpgin/s" in ln or ln.startswith("Average")]
    head, avg = lines[0], lines[-1]
    assert head.index("pgpgin/s") + len("pgpgin/s") == avg.index("6172839.00") + len("6172839.00")


def test_memory_kb_columns_separated_for_huge_memtotal():
    # 4 PiB of RAM in kB is 13 digits: wider than sysstat's %9llu
    big = 4 * 2**50 // 1024
    snaps = [_snap(1, 10.0, big), _snap(1, 11.0, big)]
    out = _render(snaps, ["r"], stream=True)
    data = [ln.split() for ln in out.splitlines() if ln[:2].isdigit() and "kbmemfree" not in ln]
    assert data and len(data[0]) == 1 + len(sar.MEMORY_COLUMNS)
    assert int(data[0][1]) == big // 2  # kbmemfree = MemFree, by hand
