"""memory.leak-suspect, memory.vma-growth, memory.virtual-leak on real /proc/PID text (procfs
corpus: vim, pid 26231) with its values moved, one snapshot per second, taken through the same
collector and plan as `ksight check --area memory`."""

from __future__ import annotations

import re

from ksight.collect.snapshot import take
from ksight.diagnose.engine import diagnose, plan_for
from tests.conftest import corpus_text
from tests.diagnose.helpers import tree

PID = 26231
STAT = corpus_text("procfs", "proc", str(PID), "stat")
STATUS = corpus_text("procfs", "proc", str(PID), "status")
SMAPS = corpus_text("procfs", "proc", str(PID), "smaps")
# the corpus's own numbers (procfs/proc/26231/status)
ANON0, RSS0, SIZE0, FILE0 = 2092, 6716, 58440, 4624


def status(anon=ANON0, rss=None, size=SIZE0, file=FILE0) -> str:
    rss = anon + file if rss is None else rss
    s = STATUS
    for key, v in (("RssAnon", anon), ("VmRSS", rss), ("VmSize", size), ("RssFile", file)):
        s = re.sub(rf"^{key}:\s+\d+ kB$", f"{key}:\t{v:8d} kB", s, flags=re.M)
    return s


def stat(start_ticks: int | None = None) -> str:
    if start_ticks is None:
        return STAT
    head, _, rest = STAT.rpartition(")")
    toks = rest.split()
    toks[19] = str(start_ticks)  # field 22, starttime (the 20th after the comm)
    return head + ") " + " ".join(toks) + "\n"


def smaps(extra: int = 0) -> str:
    """The corpus smaps plus `extra` anonymous 4 MiB regions (each with a guard page region)."""
    out = [SMAPS.rstrip("\n")]
    body = SMAPS.split("\n", 1)[1].split("VmFlags:")[0]
    for i in range(extra):
        a = 0x7f0000000000 + i * 0x401000
        out.append(f"{a:x}-{a + 0x400000:x} rw-p 00000000 00:00 0 \n" +
                   re.sub(r"^(Size|Rss|Anonymous):\s+\d+ kB", r"\1:               4096 kB", body, flags=re.M)
                   + "VmFlags: rd wr mr mw me ac sd ")
        out.append(f"{a + 0x400000:x}-{a + 0x401000:x} ---p 00000000 00:00 0 \n" +
                   re.sub(r"^(Size|Rss|Anonymous):\s+\d+ kB", r"\1:                  4 kB", body, flags=re.M)
                   + "VmFlags: mr mw me ac sd ")
    return "\n".join(out) + "\n"


def run(tmp_path, states, *, max_map_count=65530):
    """states: per snapshot, dict of proc/PID file texts (status, stat, smaps)."""
    plan = plan_for(["memory"])
    snaps = []
    for i, st in enumerate(states):
        files = {"proc/uptime": f"{1000 + i:.2f} 1900.00\n",
                 "proc/sys/vm/max_map_count": f"{max_map_count}\n",
                 f"proc/{PID}/stat": st.get("stat", STAT),
                 f"proc/{PID}/status": st["status"]}
        if "smaps" in st:
            files[f"proc/{PID}/smaps"] = st["smaps"]
        snaps.append(take(tree(tmp_path / f"s{i}", files), plan=plan, taken_at=1_700_000_000 + i))
    return diagnose(snaps, ["memory"])


def found(report, rule_id):
    return [f for f in report.findings if f.id == rule_id]


def ev(f) -> dict:
    return {e.name: e.value for e in f.evidence}


def test_steady_anon_growth_is_a_leak_suspect_named_by_pid(tmp_path):
    # 1 MiB/s of anonymous memory, 8 snapshots
    rep = run(tmp_path, [{"status": status(anon=ANON0 + 1024 * i)} for i in range(8)])
    (f,) = found(rep, "memory.leak-suspect")
    assert (f.subject.pid, f.subject.comm) == (PID, "vim")
    # RssAnon + VmSwap (660 kB in the corpus): 2752 -> 9920 kB
    assert ev(f)["RssAnon+VmSwap growth"] == 7 * 1024
    assert abs(ev(f)["RssAnon+VmSwap slope"] - 1024) < 1


def test_growth_that_levels_off_is_not_a_leak(tmp_path):
    # filling up to a working set: it grows in every interval, ever slower (8 MiB * (1 - 0.7^t))
    vals = [ANON0 + int(8192 * (1 - 0.7 ** i)) for i in range(10)]
    assert all(b > a for a, b in zip(vals, vals[1:]))
    rep = run(tmp_path, [{"status": status(anon=v)} for v in vals])
    assert not found(rep, "memory.leak-suspect")
    assert "memory.leak-suspect" not in [n.rule for n in rep.not_evaluated]


def test_growth_that_stops_half_way_is_not_a_leak(tmp_path):
    # 2 MiB/s for 4 s, then flat for 5 s
    vals = [ANON0 + 2048 * min(i, 4) for i in range(10)]
    rep = run(tmp_path, [{"status": status(anon=v)} for v in vals])
    assert not found(rep, "memory.leak-suspect")


def test_one_step_is_not_a_trend(tmp_path):
    vals = [ANON0] * 4 + [ANON0 + 20480] * 4
    rep = run(tmp_path, [{"status": status(anon=v)} for v in vals])
    assert not found(rep, "memory.leak-suspect")


def test_file_backed_rss_growing_is_a_cache_not_a_leak(tmp_path):
    rep = run(tmp_path, [{"status": status(file=FILE0 + 2048 * i)} for i in range(8)])
    assert not found(rep, "memory.leak-suspect")


def test_slow_growth_below_the_threshold_is_quiet(tmp_path):
    rep = run(tmp_path, [{"status": status(anon=ANON0 + 32 * i)} for i in range(8)])  # 32 kB/s
    assert not found(rep, "memory.leak-suspect")


def test_a_short_window_says_not_evaluated(tmp_path):
    rep = run(tmp_path, [{"status": status(anon=ANON0 + 4096 * i)} for i in range(3)])
    why = {n.rule: n.reason for n in rep.not_evaluated}
    for rid in ("memory.leak-suspect", "memory.virtual-leak", "memory.vma-growth"):
        assert "at least 5 s" in why[rid], why


def test_a_reused_pid_is_another_process(tmp_path):
    # pid 26231 exits after 4 s and a new process gets the pid: two short series, no trend
    states = [{"status": status(anon=ANON0 + 1024 * i), "stat": stat(82375 if i < 4 else 99999)}
              for i in range(8)]
    rep = run(tmp_path, states)
    assert not found(rep, "memory.leak-suspect")


def test_mappings_added_every_second_are_vma_growth_with_the_new_mapping(tmp_path):
    rep = run(tmp_path, [{"status": status(anon=ANON0 + 4096 * i), "smaps": smaps(i)}
                         for i in range(8)])
    (f,) = found(rep, "memory.vma-growth")
    assert f.subject.pid == PID and f.severity == "warning"
    e = ev(f)
    assert e["mappings (VMAs)"] == 12 + 2 * 7  # the corpus's 12 regions + 2 per step
    assert abs(e["mapping rate"] - 2.0) < 0.01
    assert e["new anonymous mappings"] == 14
    # the recurring size is named, with an address range of one of them
    assert any(k.startswith("new mapping 7f00") and k.endswith("rw-p [anon]") and v == 4096
               for k, v in e.items()), e
    # and the same mappings are the leak-suspect's evidence
    (l,) = found(rep, "memory.leak-suspect")
    assert ev(l)["new anonymous mappings"] == 14


def test_a_growing_shm_mapping_is_the_leak_suspects_evidence(tmp_path):
    # anonymous memory grows 1 MiB/s and so does a /dev/shm mapping of the process (same start):
    # the evidence names that mapping, its kind and its growth (7 MiB over the window)
    from tests.model.test_mappings import SHM, region

    def sm(i):
        return smaps(0) + region(SHM.format(end=0x7f0000000000 + (1 + i) * 0x100000),
                                 1024 * (1 + i), 1024 * (1 + i))

    rep = run(tmp_path, [{"status": status(anon=ANON0 + 1024 * i), "smaps": sm(i)}
                         for i in range(8)])
    (f,) = found(rep, "memory.leak-suspect")
    (e,) = [e for e in f.evidence if e.name.startswith("grown mapping ")]
    assert e.name == "grown mapping 7f0000000000-7f0000800000 rw-s /dev/shm/cache-26231"
    assert e.value == 7 * 1024 and e.note.startswith("shm: 1,024 -> 8,192 kB")
    assert e.source == f"/proc/{PID}/smaps"


def test_a_count_near_max_map_count_is_critical(tmp_path):
    rep = run(tmp_path, [{"status": status(), "smaps": smaps(3)} for _ in range(8)],
              max_map_count=20)  # 18 mappings of 20 allowed, not growing
    (f,) = found(rep, "memory.vma-growth")
    assert f.severity == "critical"
    assert any(a.kind == "sysctl" and a.name == "vm.max_map_count" for a in f.actions)


def test_steady_mapping_count_is_quiet(tmp_path):
    rep = run(tmp_path, [{"status": status(), "smaps": smaps(3)} for _ in range(8)])
    assert not found(rep, "memory.vma-growth")


def test_vma_growth_without_smaps_is_not_evaluated(tmp_path):
    rep = run(tmp_path, [{"status": status()} for _ in range(8)])
    why = {n.rule: n.reason for n in rep.not_evaluated}
    assert "smaps" in why["memory.vma-growth"]


def test_virt_growing_without_res_is_a_virtual_leak(tmp_path):
    # 256 MiB/s of address space, RES unchanged
    rep = run(tmp_path, [{"status": status(size=SIZE0 + 262144 * i)} for i in range(8)])
    (f,) = found(rep, "memory.virtual-leak")
    assert f.subject.pid == PID
    assert ev(f)["VmSize growth"] == 7 * 262144 and ev(f)["VmRSS growth"] == 0
    assert not found(rep, "memory.leak-suspect")


def test_virt_growing_with_res_is_not_a_virtual_leak(tmp_path):
    # touched as it is mapped: VIRT and RES grow alike (leak-suspect's case, not this one)
    rep = run(tmp_path, [{"status": status(size=SIZE0 + 131072 * i, anon=ANON0 + 131072 * i)}
                         for i in range(8)])
    assert not found(rep, "memory.virtual-leak")
    assert found(rep, "memory.leak-suspect")
