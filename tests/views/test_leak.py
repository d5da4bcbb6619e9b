"""`ksight leak`'s judgement and data: trends of synthetic series computed by hand, and real
/proc/PID text (procfs corpus, vim pid 26231) with its values moved, one snapshot per second,
taken through the same plan as the command; the --trace aggregation on hand-made events."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ksight.collect.plan import Needs, Plan
from ksight.collect.snapshot import take
from ksight.model.series import GaugeSeries
from ksight.views import leak
from tests.conftest import FIXTURES
from tests.diagnose.helpers import tree
from tests.diagnose.test_memory_process_rules import ANON0, PID, SIZE0, STAT, smaps, status


def _rules():
    return leak._rules()


def _g(vals, name="x"):
    return GaugeSeries(name, tuple(float(v) for v in vals), tuple(float(i) for i in range(len(vals))))


def _verdict(metric, vals):
    rules = _rules()
    unit = "mappings" if metric == "vmas" else "kB"
    gr = leak.growth_of(metric, unit, _g(vals), rules[leak.JUDGED[metric][0]])
    return leak.judge({metric: gr}, rules), gr


# ---- trend judgement on synthetic series -------------------------------------------------------

def test_a_line_is_growing_with_hand_computed_trend():
    (verdict, why), gr = _verdict("anon", [10_000 + 1024 * i for i in range(8)])
    assert verdict == "growing", why
    # a straight line: slope 1024 kB/s exactly, r2 1, rose in all 7 intervals
    assert (gr.first, gr.last, gr.growth) == (10_000, 10_000 + 7 * 1024, 7 * 1024)
    assert abs(gr.slope_per_s - 1024) < 1e-9 and abs(gr.r2 - 1) < 1e-12
    assert (gr.rises, gr.falls, gr.points) == (7, 0, 8)
    assert abs(gr.tail_slope_per_s - 1024) < 1e-9 and gr.steady


def test_growth_that_levels_off_is_not_a_leak():
    # a working set being filled: it grows in every interval, ever slower (8 MiB * (1 - 0.7^t))
    vals = [10_000 + int(8192 * (1 - 0.7 ** i)) for i in range(10)]
    assert all(b > a for a, b in zip(vals, vals[1:]))
    (verdict, why), gr = _verdict("anon", vals)
    assert verdict == "levelled-off", why
    assert gr.tail_slope_per_s < 0.5 * gr.slope_per_s and not gr.steady


def test_growth_that_stops_half_way_levels_off():
    (verdict, _), gr = _verdict("anon", [10_000 + 2048 * min(i, 4) for i in range(10)])
    assert verdict == "levelled-off" and gr.tail_slope_per_s == 0


def test_up_and_down_is_irregular():
    vals, v = [], 10_000
    for i in range(10):
        v += 3072 if i % 2 == 0 else -1024
        vals.append(v)
    (verdict, why), gr = _verdict("anon", vals)
    assert verdict == "irregular" and gr.falls == 5, why


def test_one_step_is_not_growing():
    (verdict, _), _ = _verdict("anon", [10_000] * 4 + [30_480] * 4)
    assert verdict != "growing"


@pytest.mark.parametrize("metric,vals", [
    ("anon", [10_000 + 32 * i for i in range(8)]),        # 32 kB/s: under the 64 kB/s floor
    ("anon", [10_000_000 + 2048 * i for i in range(8)]),  # 14 MiB on 9.5 GiB: under 0.5 %
    ("vsz", [100_000 + 4096 * i for i in range(8)]),       # 28 MiB of VSZ: under 64 MiB
    ("vmas", [50 + (i // 4) for i in range(8)]),            # one mapping more
])
def test_below_the_rules_floors_is_steady(metric, vals):
    (verdict, _), _ = _verdict(metric, vals)
    assert verdict == "steady"


def test_reserved_address_space_grows_by_vsz():
    (verdict, why), gr = _verdict("vsz", [300_000 + 65536 * 4 * i for i in range(8)])
    assert verdict == "growing" and why.startswith("vsz") and abs(gr.slope_per_s - 262144) < 1e-6


def test_too_few_points_is_not_a_trend():
    (verdict, why), gr = _verdict("anon", [10_000 + 4096 * i for i in range(4)])
    assert verdict == "unjudged" and not gr.steady  # the rules' min_points is 5
    assert "seen in only 4 snapshots" in why


# ---- the report on real /proc text ---------------------------------------------------------------

PLAN = Plan.of([Needs(sources=leak.SOURCES, uses=leak.USES, processes=leak.PARTS)])
HEAP_LINE = "0171a000-0173f000 rw-p 00000000 00:00 0 "  # an anonymous region of the corpus smaps


def heap_smaps(grow_kb: int) -> str:
    """The corpus smaps with its first anonymous region made the [heap], grown by grow_kb."""
    end = 0x0173f000 + grow_kb * 1024
    return smaps(0).replace(HEAP_LINE, f"0171a000-{end:08x} rw-p 00000000 00:00 0"
                            + " " * 26 + "[heap]", 1)


def snaps(tmp_path, states, *, with_smaps=True):
    out = []
    for i, st in enumerate(states):
        files = {"proc/uptime": f"{1000 + i:.2f} 1900.00\n",
                 f"proc/{PID}/stat": STAT, f"proc/{PID}/status": st["status"]}
        if with_smaps and "smaps" in st:
            files[f"proc/{PID}/smaps"] = st["smaps"]
        out.append(take(tree(tmp_path / f"s{i}", files), plan=PLAN, taken_at=1_700_000_000 + i))
    return out


def test_a_growing_process_with_its_new_mappings(tmp_path):
    # 4 MiB of anonymous memory a second, each a new 4 MiB mapping with its guard page
    rep = leak.build(snaps(tmp_path, [{"status": status(anon=ANON0 + 4096 * i,
                                                        size=SIZE0 + 4100 * i),
                                       "smaps": smaps(i)} for i in range(8)]))
    (pg,) = rep.growing
    assert (pg.pid, pg.comm, pg.verdict) == (PID, "vim", "growing")
    assert pg.growths["anon"].growth == 7 * 4096 and pg.types_growing == ("anon",)
    # 12 regions in the corpus smaps, 2 more each second
    vm = pg.growths["vmas"]
    assert (vm.first, vm.last) == (12, 12 + 14) and abs(vm.slope_per_s - 2) < 1e-9
    # 7 new 4 MiB mappings (and their guard pages): the recurring size, first in the list
    assert (pg.recurring_size_kb, pg.recurring_count) == (4096, 7)
    assert pg.mmap_kb == 7 * (4096 + 4) and pg.heap_kb == 0
    first = pg.mappings[0]
    assert first.new and first.kind == "anon" and first.size_kb == 4096 and first.perms == "rw-p"
    starts = {0x7f0000000000 + i * 0x401000 for i in range(7)}
    assert {m.start for m in pg.mappings if m.size_kb == 4096} == starts
    assert all(m.end - m.start == 4096 * 1024 for m in pg.mappings if m.size_kb == 4096)
    assert first.source == f"/proc/{PID}/smaps"
    assert leak.trace_targets(rep) == [{"pid": PID, "comm": "vim", "call": "mmap",
                                        "size_bytes": 4 << 20, "count": 7}]


def test_a_growing_heap_is_brk_not_mmap(tmp_path):
    rep = leak.build(snaps(tmp_path, [{"status": status(anon=ANON0 + 1024 * i),
                                       "smaps": heap_smaps(1024 * i)} for i in range(8)]))
    (pg,) = rep.growing
    assert pg.heap_kb == 7 * 1024 and pg.mmap_kb == 0 and pg.recurring_size_kb is None
    (m,) = pg.mappings
    assert (m.kind, m.new, m.start, m.growth_kb) == ("heap", False, 0x0171a000, 7 * 1024)
    assert m.size_kb == (0x0173f000 - 0x0171a000) // 1024 + 7 * 1024
    assert leak.trace_targets(rep)[0]["call"] == "brk"


def test_a_growing_shm_mapping_is_listed_with_its_file(tmp_path):
    # a /dev/shm file mapped MAP_SHARED and grown by 1 MiB a second (same start): kind shm,
    # counted apart from heap and mmap, its file named in the text
    from tests.model.test_mappings import SHM, region

    def sm(i):
        return smaps(0) + region(SHM.format(end=0x7f0000000000 + (1 + i) * 0x100000),
                                 1024 * (1 + i), 1024 * (1 + i))

    rep = leak.build(snaps(tmp_path, [{"status": status(anon=ANON0 + 1024 * i), "smaps": sm(i)}
                                      for i in range(8)]))
    (pg,) = rep.growing
    (m,) = pg.mappings
    assert (m.kind, m.new, m.start, m.growth_kb, m.size_kb) == ("shm", False, 0x7f0000000000,
                                                               7 * 1024, 8 * 1024)
    assert m.pathname == "/dev/shm/cache-26231"
    assert (pg.shm_kb, pg.heap_kb, pg.mmap_kb, pg.file_kb) == (7 * 1024, 0, 0, 0)
    import io

    from ksight.render.leak_text import render

    out = io.StringIO()
    render(rep, out)
    text = out.getvalue()
    assert "shared memory +7.0 MiB" in text and "/dev/shm/cache-26231" in text


def test_a_steady_named_process_is_listed_steady_and_a_missing_one_noted(tmp_path):
    rep = leak.build(snaps(tmp_path, [{"status": status()} for _ in range(8)]), pids=(PID, 999999))
    assert not rep.growing and not rep.levelled
    (pg,) = rep.named
    assert pg.verdict == "steady" and pg.pid == PID
    assert any("PID 999999" in n for n in rep.notes)


def test_a_steady_process_is_not_reported_unnamed(tmp_path):
    rep = leak.build(snaps(tmp_path, [{"status": status()} for _ in range(8)]))
    assert (rep.growing, rep.levelled, rep.named) == ((), (), ())


def test_without_smaps_the_trend_stands_and_the_report_says_why(tmp_path):
    rep = leak.build(snaps(tmp_path, [{"status": status(anon=ANON0 + 4096 * i), "smaps": smaps(i)}
                                      for i in range(8)], with_smaps=False))
    (pg,) = rep.growing
    assert pg.mappings == () and "vmas" not in pg.growths
    assert any("which mappings grew is not known" in n for n in rep.notes)


def test_levelled_off_process_is_apart(tmp_path):
    vals = [ANON0 + int(8192 * (1 - 0.7 ** i)) for i in range(10)]
    rep = leak.build(snaps(tmp_path, [{"status": status(anon=v)} for v in vals]))
    assert not rep.growing
    (pg,) = rep.levelled
    assert pg.verdict == "levelled-off"


def test_text_names_the_process_and_its_mapping(tmp_path):
    import io

    from ksight.render.leak_text import render

    rep = leak.build(snaps(tmp_path, [{"status": status(anon=ANON0 + 4096 * i), "smaps": smaps(i)}
                                      for i in range(8)]))
    out = io.StringIO()
    render(rep, out)
    text = out.getvalue()
    assert f"PID {PID} (vim): growing" in text
    assert "7f0000000000-7f0000400000" in text and "recurring size: 7 new mappings of 4.0 MiB" in text


# ---- the CLI on a capture ------------------------------------------------------------------------

def test_cli_from_a_two_snapshot_capture_reports_without_a_trend():
    cap = FIXTURES / "captures" / "vm-6.18.tar.zst"
    p = subprocess.run([sys.executable, "-m", "ksight", "leak", "--json", "--from", str(cap)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, p.stderr  # could not judge: too few snapshots
    doc = json.loads(p.stdout)
    assert doc["version"] == 1 and doc["live"] is False and doc["snapshots"] == 2
    assert doc["judged"] is False
    assert doc["growing"] == [] and doc["processes_seen"] > 50
    assert any("only 2 snapshots: a trend needs 5" in n for n in doc["notes"]), doc["notes"]
    assert any("which mappings grew is not known" in n for n in doc["notes"])


def test_cli_trace_refuses_a_capture():
    cap = FIXTURES / "captures" / "vm-6.18.tar.zst"
    p = subprocess.run([sys.executable, "-m", "ksight", "leak", "--trace", "--from", str(cap)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and "--trace" in p.stderr and "Traceback" not in p.stderr


def test_help_ends_with_examples():
    p = subprocess.run([sys.executable, "-m", "ksight", "leak", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "examples:" in p.stdout and "ksight leak --trace" in p.stdout


# ---- --trace's aggregation (trace/recipes/mmap.Catch) ------------------------------------------

class _Ev:
    def __init__(self, name, pid, **fields):
        self.name, self.pid, self.fields = name, pid, fields


def test_catch_groups_threads_under_their_process_and_keeps_the_sizes(tmp_path):
    from ksight.trace.recipes.mmap import GUARD_SLACK, Catch

    # thread 501 of process 500; process 600 maps another size; 700 moves its break
    root = tree(tmp_path, {"proc/501/status": "Name:\tw\nTgid:\t500\nPid:\t501\n",
                           "proc/500/status": "Name:\tw\nTgid:\t500\nPid:\t500\n",
                           "proc/600/status": "Name:\tx\nTgid:\t600\nPid:\t600\n",
                           "proc/700/status": "Name:\ty\nTgid:\t700\nPid:\t700\n",
                           "proc/500/comm": "w\n", "proc/501/comm": "w\n", "proc/700/comm": "y\n"})
    c = Catch(root, [{"pid": 500, "call": "mmap", "size_bytes": 4 << 20},
                     {"pid": 700, "call": "brk", "size_bytes": None}])
    assert c.filters() == {"syscalls:sys_enter_mmap":
                           f"(len >= {4 << 20} && len <= {(4 << 20) + GUARD_SLACK})"}
    assert set(c.events) == {"syscalls:sys_enter_mmap", "syscalls:sys_enter_brk"}
    m, b = "syscalls:sys_enter_mmap", "syscalls:sys_enter_brk"
    for _ in range(3):
        c.on_event(_Ev(m, 501, len=(4 << 20) + 4096))
    c.on_event(_Ev(m, 500, len=4 << 20))
    c.on_event(_Ev(m, 600, len=8192))                       # not a wanted size
    c.on_event(_Ev(b, 600, brk=0x1000))                     # not a growing heap
    for addr in (0, 0x55000000, 0x55021000, 0x55042000):    # brk(0) asks, then moves twice
        c.on_event(_Ev(b, 700, brk=addr))
    got = {(x.pid, x.tid, x.call): x for x in c.body()["callers"]}
    assert set(got) == {(500, 501, "mmap"), (500, 500, "mmap"), (700, 700, "brk")}
    assert got[(500, 501, "mmap")].calls == 3 and got[(500, 501, "mmap")].lengths == ((4 << 20) + 4096,)
    assert got[(500, 501, "mmap")].target and got[(500, 501, "mmap")].comm == "w"
    assert got[(700, 700, "brk")].calls == 4 and got[(700, 700, "brk")].brk_grew_bytes == 0x42000


def test_catch_of_a_mapping_growing_by_steps_keeps_that_process_only(tmp_path):
    from ksight.trace.recipes.mmap import Catch

    root = tree(tmp_path, {"proc/500/status": "Tgid:\t500\n", "proc/600/status": "Tgid:\t600\n"})
    c = Catch(root, [{"pid": 500, "call": "mmap", "size_bytes": None, "max_bytes": 256 << 20}])
    m = "syscalls:sys_enter_mmap"
    c.on_event(_Ev(m, 500, len=64 << 20))
    c.on_event(_Ev(m, 600, len=64 << 20))
    assert [(x.pid, x.lengths) for x in c.body()["callers"]] == [(500, (64 << 20,))]


def test_catch_of_nothing_says_so(tmp_path):
    from ksight.trace.recipes.mmap import catch

    res = catch(tree(tmp_path, {"x": ""}), [], 1.0)
    assert res.callers == () and res.events == 0 and "nothing to trace" in res.notes[0]


def test_trace_without_root_says_why_instead_of_failing(tmp_path, monkeypatch):
    import argparse
    import os

    from ksight.cli import leak as cli_leak

    rep = leak.build(snaps(tmp_path, [{"status": status(anon=ANON0 + 4096 * i), "smaps": smaps(i)}
                                      for i in range(8)]))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    res = cli_leak._trace(rep, argparse.Namespace(trace_seconds=0.5, stacks=True))
    assert res.callers == () and res.errors and "root" in res.errors[0], res
