"""model/mappings: the mapping diff every view and rule uses, on the real smaps of the procfs
corpus (procfs/proc/26231/smaps: alertmanager, 12 regions) with regions added or grown by hand;
sources/process_maps' kinds and its use of the scan's table."""

from __future__ import annotations

import re

from ksight.model import mappings
from ksight.sources import process_maps
from ksight.sources.proc_pid import smaps
from tests.conftest import corpus_text

SMAPS = corpus_text("procfs", "proc", "26231", "smaps")
BODY = SMAPS.split("\n", 1)[1].split("VmFlags:")[0]


def region(head: str, size_kb: int, rss_kb: int) -> str:
    body = re.sub(r"^Size:\s+\d+ kB", f"Size:           {size_kb:8d} kB", BODY, flags=re.M)
    body = re.sub(r"^Rss:\s+\d+ kB", f"Rss:            {rss_kb:8d} kB", body, flags=re.M)
    return head + "\n" + body + "VmFlags: rd wr mr mw me sd \n"


def read(text: str):
    return process_maps.regions_of(smaps.parse_light(text.encode()), 26231, "proc/26231/smaps")


SHM = "7f0000000000-{end:x} rw-s 00000000 00:19 4242                     /dev/shm/cache-26231"


def test_kinds_of_the_corpus_regions():
    pm = read(SMAPS)
    # 12 regions printed; [vvar], [vdso] and [vsyscall] are the kernel's and never kept
    assert pm.count == 12 and len(pm.regions) == 9
    kinds = [m.kind for m in pm.regions]
    assert kinds == ["file"] * 3 + ["anon"] * 5 + ["stack"]
    assert pm.regions[0].rss_kb == 2952 and pm.regions[0].pathname == "/bin/alertmanager"
    assert [m.start for m in pm.anon] == [0x171a000, 0xc000000000, 0xc000400000, 0xc001600000,
                                          0x7f0ab95ca000]
    assert process_maps.kind_of("/SYSV00000000 (deleted)", "rw-s", 65538) == "shm"
    assert process_maps.kind_of("/memfd:pool (deleted)", "rw-s", 7) == "shm"
    assert process_maps.kind_of("/dev/zero (deleted)", "rw-s", 7) == "shm"
    assert process_maps.kind_of("[anon:arena]", "rw-p", 0) == "anon"
    assert process_maps.kind_of("[heap]", "rw-p", 0) == "heap"


def test_a_new_shm_mapping_that_grows_and_a_grown_heap():
    heap0 = "0171a000-0173f000 rw-p 00000000 00:00 0 "
    # first read: the corpus; then the heap grows by 1 MiB and a 2 MiB /dev/shm mapping appears;
    # the last read: the heap 3 MiB up, the shm mapping grown to 6 MiB (same start)
    a = read(SMAPS)
    b = read(SMAPS.replace(heap0, "0171a000-0182f000 rw-p 00000000 00:00 0 [heap]")
             + region(SHM.format(end=0x7f0000200000), 2048, 2048))
    c = read(SMAPS.replace(heap0, "0171a000-01a3f000 rw-p 00000000 00:00 0 [heap]")
             + region(SHM.format(end=0x7f0000600000), 6144, 4096))
    d = mappings.diff([a, None, b, c])
    assert d.reads == 3 and d.source == "/proc/26231/smaps" and d.pid == 26231
    (shm,) = d.new
    assert (shm.kind, shm.start, shm.end, shm.size_kb, shm.growth_kb, shm.rss_kb) == \
        ("shm", 0x7f0000000000, 0x7f0000600000, 6144, 6144, 4096)
    assert shm.pathname == "/dev/shm/cache-26231" and shm.new and shm.old_size_kb is None
    (heap,) = d.grown
    # 0x173f000 - 0x171a000 = 148 kB; 0x1a3f000 - 0x171a000 = 3,220 kB: 3 MiB more
    assert (heap.kind, heap.old_size_kb, heap.size_kb, heap.growth_kb) == ("heap", 148, 3220, 3072)
    assert d.growth_kb("shm") == 6144 and d.growth_kb("heap") == 3072 and d.growth_kb() == 9216
    assert d.recurring("shm") == (6144, 1) and d.recurring("anon") is None
    assert d.step_kb is None  # no anonymous mmap region grew


def test_a_stack_grows_down_and_is_matched_by_its_end():
    a = read(SMAPS)
    b = read(SMAPS.replace("7ffc07ecf000-7ffc07ef0000", "7ffc07dcf000-7ffc07ef0000"))
    d = mappings.diff([a, b])
    (st,) = d.grown
    assert (st.kind, st.growth_kb, st.start) == ("stack", 1024, 0x7ffc07dcf000) and not d.new


def test_an_anonymous_mapping_growing_by_steps():
    base = "c001600000-c004000000"  # 43,008 kB, then +512 kB, +1024 kB
    reads = [read(SMAPS.replace(base, f"c001600000-{0xc004000000 + k * 1024:x}"))
             for k in (0, 512, 1536)]
    d = mappings.diff(reads)
    (g,) = d.grown
    assert (g.kind, g.old_size_kb, g.growth_kb) == ("anon", 43008, 1536) and d.step_kb == 512


def test_one_read_is_no_diff():
    assert mappings.diff([None, read(SMAPS), None]) is None


def test_the_pids_come_from_the_scan_table(monkeypatch):
    # live, with the scan's table: /proc is not listed again, and only the table's PIDs count
    from ksight.fs import LiveRoot

    class Counting(LiveRoot):
        listed = 0

        def listdir(self, path):
            if path == "proc":
                Counting.listed += 1
            return super().listdir(path)

    monkeypatch.setattr(process_maps, "_FIRST", {})
    got = process_maps.read(Counting(), processes={})  # empty table: listed as before
    assert Counting.listed == 1 and got.procs == {}
    Counting.listed = 0

    class P:  # a scan row: status with VmSize/VmRSS (kB)
        class status:
            vm_size_kb, vm_rss_kb = 8192, 4096

    process_maps.read(Counting(), processes={999_999_999: P()})
    assert Counting.listed == 0


def test_a_recording_keeps_the_mappings_typed():
    # the typed sample codec (store/samples.py) gives back ProcMaps and Mapping, not dicts: the
    # diff works on a recording as on a capture
    from dataclasses import replace

    from ksight.collect.snapshot import take
    from ksight.store import samples
    from tests.diagnose.helpers import tree

    pm = read(SMAPS + region(SHM.format(end=0x7f0000200000), 2048, 2048))
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        snap = take(tree(__import__("pathlib").Path(d), {"proc/uptime": "1000.00 1900.00\n"}))
    snap = replace(snap, sources=dict(snap.sources,
                                      process_maps=process_maps.ProcessMaps({26231: pm}, "test")))
    back = samples.decode(samples.encode(snap)).get("process_maps")
    assert back.procs[26231] == pm and back.procs[26231].regions[-1].kind == "shm"
