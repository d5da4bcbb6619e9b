import os

import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import LiveRoot
from ksight.sources import vmallocinfo
from tests.conftest import IS_ROOT

# Real lines from this machine's /proc/vmallocinfo (6.18) plus kernel-format variants
# (mm/vmalloc.c s_show: module suffix, vm_map_ram, no caller, zeroed %pK addresses).
SAMPLE = """\
0x00000000df96df98-0x00000000e90fd321   20480 irq_init_percpu_irqstack+0xca/0x100 vmap
0x00000000e90fd321-0x000000005c6c412c    8192 acpi_os_map_iomem+0x1bc/0x1e0 phys=0x00000000000a0000 ioremap
0x000000004635e938-0x00000000d765d533   12288 acpi_os_map_iomem+0x1bc/0x1e0 phys=0x000000000009f000 ioremap
0x000000005f194c3d-0x00000000b39c6aa2   20480 kernel_clone+0x94/0x3e0 pages=4 vmalloc N0=4
0x00000000a8e4bb1d-0x00000000a3617548   20480 kernel_clone+0x94/0x3e0 pages=4 vmalloc N0=4
0x000000001234abcd-0x000000001234ffff 8392704 alloc_large_system_hash+0x1f0/0x2c0 pages=2048 vmalloc vpages N0=1024 N1=1024
0x0000000000000000-0x0000000000000000  135168 xfs_buf_map_pages+0x5a/0x100 [xfs] pages=32 vmalloc N0=32
0x0000000000000000-0x0000000000000000   65536 vm_map_ram
0x00000000105b40ac-0x00000000112d258c   20480 unpurged vm_area
0x00000000105b40ac-0x00000000112d258c    4096 pages=1 vmalloc user
"""


def test_aggregates_by_caller():
    v = vmallocinfo.parse(SAMPLE)
    assert v.areas == 10
    assert v.total_bytes == 20480 + 8192 + 12288 + 20480 * 2 + 8392704 + 135168 + 65536 + 20480 + 4096
    kc = v.by_caller["kernel_clone"]
    assert (kc.count, kc.bytes, kc.pages, kc.kinds) == (2, 40960, 8, ("vmalloc",))
    io = v.by_caller["acpi_os_map_iomem"]
    assert (io.count, io.bytes, io.pages, io.kinds) == (2, 20480, 0, ("ioremap",))
    h = v.by_caller["alloc_large_system_hash"]
    assert h.pages == 2048 and h.kinds == ("vmalloc", "vpages")
    x = v.by_caller["xfs_buf_map_pages"]
    assert x.module == "xfs" and x.pages == 32
    assert v.by_caller[vmallocinfo.VM_MAP_RAM].bytes == 65536
    assert v.by_caller[vmallocinfo.UNPURGED].bytes == 20480 == v.unpurged_bytes
    assert v.by_caller[vmallocinfo.UNKNOWN].kinds == ("user", "vmalloc")
    assert v.vmalloc_pages == 8 + 2048 + 32 + 1
    assert v.top(1)[0].caller == "alloc_large_system_hash"


def test_caller_name():
    assert vmallocinfo.caller_name("alloc_large_system_hash+0x1f0/0x2c0") == "alloc_large_system_hash"
    assert vmallocinfo.caller_name("0xffffffffc0a1b2c3") == "0xffffffffc0a1b2c3"


@pytest.mark.parametrize("text", [
    "",
    "garbage\n",
    "0x0-0x1\n",                                    # cut after the range
    "0x0-0x1 12x kernel_clone+0x94/0x3e0\n",
    "0x0-0x1 4096 kernel_clone+0x94/0x3e0 pages=x vmalloc\n",
])
def test_malformed(text):
    with pytest.raises(ParseError):
        vmallocinfo.parse(text)


def test_live():
    if not IS_ROOT:
        with pytest.raises(Unavailable):
            vmallocinfo.read(LiveRoot())
        return
    v = vmallocinfo.read(LiveRoot())
    assert v.areas > 0 and v.by_caller
    # Since 5.x meminfo's VmallocUsed is the number of vmalloc'ed pages: sum of pages=N here.
    meminfo = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/meminfo")}
    used_kb = meminfo["VmallocUsed"]
    if used_kb:  # older kernels print 0
        page_kb = os.sysconf("SC_PAGESIZE") // 1024
        assert abs(v.vmalloc_pages * page_kb - used_kb) <= max(4096, used_kb // 10)


def _tree(tmp_path):
    from ksight.fs import DirRoot

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "uptime").write_text("100.00 150.00\n")
    (tmp_path / "proc" / "vmallocinfo").write_text(SAMPLE)
    return DirRoot(str(tmp_path))


def test_opt_in_skipped_unless_named(tmp_path):
    """vmallocinfo costs the kernel a walk of every vmalloc area: a snapshot that names no
    sources (take(root), `ksight show`, `ksight capture`) does not read it; naming it does."""
    from ksight.collect.plan import Needs, Plan
    from ksight.collect.snapshot import take
    from ksight.sources import DEFAULT, SYSTEM

    assert SYSTEM["vmallocinfo"].default is False
    # the opt-in sources: each costs the kernel a walk or reads something private
    assert "vmallocinfo" not in DEFAULT
    assert set(SYSTEM) - set(DEFAULT) == {n for n, s in SYSTEM.items() if not s.default}
    assert {"vmallocinfo", "kmemleak", "kmsg_oom"} <= set(SYSTEM) - set(DEFAULT)
    root = _tree(tmp_path)
    snap = take(root)
    # not read at all: neither collected nor listed as unavailable (every read source is one)
    assert "vmallocinfo" not in snap.sources
    assert "vmallocinfo" not in {m.source for m in snap.unavailable}
    assert "meminfo" in {m.source for m in snap.unavailable}  # the others were tried
    for snap in (take(root, sources=["vmallocinfo"]),
                 take(root, plan=Plan.of([Needs(sources=("vmallocinfo",))]))):
        v = snap.get("vmallocinfo")
        assert v == vmallocinfo.parse(SAMPLE) and v.areas == SAMPLE.count("\n")


def test_opt_in_show_names_it(tmp_path, capsys):
    import json

    from ksight.cli.main import main

    if not IS_ROOT:
        pytest.skip("vmallocinfo is root-only")
    assert main(["show", "vmallocinfo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sources"]["vmallocinfo"]["areas"] > 0
