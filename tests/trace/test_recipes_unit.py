"""Recipes without tracing: aggregation fed with hand-made events, lookups through a fixture
root, the text renderer, the kernel-log parser. Numbers are worked out by hand in comments."""

from __future__ import annotations

import os
import socket

import pytest

from ksight.fs import DirRoot, LiveRoot
from ksight.render.jsonable import jsonable
from ksight.render.trace_text import render
from ksight.trace import kmsg, recipes
from ksight.trace.recipes.kmalloc import Kallsyms
from ksight.trace.recipes.reclaim import ReclaimResult, ReclaimStalls
from ksight.trace.recipes.retrans import Owner, socket_owner
from ksight.trace.recipes.softirq import SoftirqResult, SoftirqTime
from ksight.trace.ringbuf import Event

ME = os.getpid()
V1_CGROUP = "5:devices:/\n4:memory:/user.slice/app\n1:name=systemd:/x\n0::/\n"


def _tree(tmp_path, files: dict[str, str], links: dict[str, str] = {}) -> DirRoot:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for rel, target in links.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    return DirRoot(str(tmp_path))


def test_every_recipe_is_registered_and_declares_its_backends():
    # `ksight trace profile` is `ksight profile`, not a recipe (tests/trace/test_profile_alias.py)
    assert list(recipes.RECIPES) == ["retrans", "reclaim", "compaction", "writeback", "buflimit",
                                     "mmap", "oom", "kmalloc", "softirq"]
    with_bpftrace = sorted(n for n, r in recipes.RECIPES.items() if "bpftrace" in r.backends)
    assert with_bpftrace == ["reclaim", "softirq"]
    from ksight.errors import UsageError

    with pytest.raises(UsageError, match="unknown recipe"):
        recipes.get("nope")


# --- reclaim: the cgroup of a thread that exited before the reader looked -------------------
def _ev(name, ts, common_pid, **fields):
    return Event(name, ts, 0, common_pid, fields)


def test_reclaim_names_cgroup_from_attach_fork_and_live_read(tmp_path):
    root = _tree(tmp_path, {
        f"proc/{ME}/cgroup": V1_CGROUP,           # memory hierarchy 4: the attach filter
        "proc/100/comm": "parent\n", "proc/100/cgroup": "4:memory:/from-parent\n0::/\n",
        "proc/500/comm": "alive\n", "proc/500/cgroup": "4:memory:/alive-v1\n0::/v2\n",
    })
    r = recipes.get("reclaim")(root)
    assert r.filters() == {"cgroup:cgroup_attach_task": "dst_root == 4"}
    B, E = "vmscan:mm_vmscan_memcg_reclaim_begin", "vmscan:mm_vmscan_memcg_reclaim_end"
    for e in [
        # 200: forked by 100 (alive), gone before we look -> the parent's cgroup
        _ev("sched:sched_process_fork", 1_000, 100, parent_pid=100, child_pid=200),
        _ev(B, 10_000, 200), _ev(E, 30_000, 200, nr_reclaimed=5),             # 20 us
        # 300: moved to /lab before its stall, to /later after it -> /lab
        _ev("cgroup:cgroup_attach_task", 5_000, 300, pid=300, dst_path="/lab"),
        _ev(B, 10_000, 300), _ev(E, 13_000, 300, nr_reclaimed=1),             # 3 us
        _ev("cgroup:cgroup_attach_task", 90_000, 300, pid=300, dst_path="/later"),
        _ev(B, 100_000, 300), _ev(E, 101_000, 300, nr_reclaimed=1),           # 1 us
        # 400: nothing known, already gone -> None; 500: alive -> its v1 memory line
        _ev(B, 10_000, 400), _ev(E, 11_500, 400),                             # 1.5 us
        _ev(B, 10_000, 500), _ev(E, 110_000, 500, nr_reclaimed=7),            # 100 us
        _ev(E, 200_000, 600),          # an end without its begin: began before the trace
    ]:
        r.on_event(e)
    body = r.body()
    got = {p.pid: p for p in body["processes"]}
    assert got[200].cgroup == "/from-parent" and got[200].total_usec == 20.0
    assert got[200].hist == {32: 1} and got[200].reclaimed_pages == 5
    assert got[300].cgroup == "/lab" and got[300].stalls == 2
    assert got[300].total_usec == 4.0 and got[300].max_usec == 3.0 and got[300].hist == {1: 1, 4: 1}
    assert got[400].cgroup is None and got[400].hist == {2: 1}
    assert got[500].cgroup == "/alive-v1" and got[500].comm == "alive"
    assert 600 not in got
    # processes by total time: 500 (100 us), 200 (20), 300 (4), 400 (1.5)
    assert [p.pid for p in body["processes"]] == [500, 200, 300, 400]
    # every stall once in the histogram: 1, 2, 4, 32, 128 us buckets
    assert body["histogram_usec"] == {"memcg": {1: 1, 2: 1, 4: 1, 32: 1, 128: 1}}
    cg = {c.cgroup: c for c in body["cgroups"]}
    assert cg["/lab"].stalls == 2 and cg["/lab"].reclaimed_pages == 2
    assert body["in_progress_at_end"] == 0


def test_reclaim_v2_only_attach_filter(tmp_path):
    root = _tree(tmp_path, {f"proc/{ME}/cgroup": "0::/user.slice\n"})
    assert recipes.get("reclaim")(root).filters() == {"cgroup:cgroup_attach_task": "dst_root == 0"}


# --- retrans: the owner of a flow through the socket tables ----------------------------------
TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
              "timeout inode\n")
# 127.0.0.1:5999 -> 127.0.0.1:40000 (0x176F, 0x9C40), ESTABLISHED, inode 777
TCP_ROW = ("   0: 0100007F:176F 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0"
           "        0 777 1 0000000000000000 20 4 30 10 -1\n")


def test_socket_owner_from_fixture_root(tmp_path):
    root = _tree(tmp_path, {
        "proc/50/comm": "server\n", "proc/50/net/tcp": TCP_HEADER + TCP_ROW,
        "proc/50/fd/0": "", "proc/60/comm": "other\n", "proc/60/net/tcp": TCP_HEADER,
    }, links={"proc/50/ns/net": "net:[4026531840]", "proc/60/ns/net": "net:[4026532001]",
              "proc/50/fd/3": "socket:[777]", "proc/60/fd/3": "socket:[778]"})
    os.unlink(tmp_path / "proc/50/fd/0")
    assert socket_owner(root, "127.0.0.1", 5999, "127.0.0.1", 40000) == Owner(
        50, "server", "/proc fd scan", 777, "net:[4026531840]")
    assert socket_owner(root, "127.0.0.1", 40000, "127.0.0.1", 5999) is None   # reversed


def test_socket_owner_live_loopback():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    try:
        lport, rport = cli.getsockname()[1], srv.getsockname()[1]
        own = socket_owner(LiveRoot(), "127.0.0.1", lport, "127.0.0.1", rport)
        assert own is not None and own.pid == ME
        assert own.inode == os.fstat(cli.fileno()).st_ino
    finally:
        for s in (cli, conn, srv):
            s.close()


def test_retrans_flow_state_and_owner_from_state_events(tmp_path):
    r = recipes.get("retrans")(_tree(tmp_path, {"proc/70/comm": "curl\n"}))
    assert r.filters() == {"sock:inet_sock_set_state":
                           "protocol == 6 && (newstate == 2 || newstate == 4 || newstate == 9 || newstate == 10)"}
    a, b = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    r.on_event(_ev("sock:inet_sock_set_state", 1, 70, skaddr=0xabc))
    for _ in range(3):
        r.on_event(_ev("tcp:tcp_retransmit_skb", 2, 0, family=socket.AF_INET, saddr=a, daddr=b,
                       sport=1234, dport=80, state=4, skaddr=0xabc))
    (f,) = r.body()["flows"]
    assert (f.saddr, f.sport, f.daddr, f.dport, f.retransmits, f.state) == (
        "10.0.0.1", 1234, "10.0.0.2", 80, 3, "FIN_WAIT1")
    assert f.owner == Owner(70, "curl", "inet_sock_set_state")


# --- softirq kinds are the kernel's ----------------------------------------------------------
def test_softirq_vectors_are_in_proc_softirqs_order():
    from ksight.sources import softirqs

    live = softirqs.read(LiveRoot())        # the kernel prints them in vector order
    assert list(live.counts) == list(softirqs.VECTORS)
    assert softirqs.vector_name(3) == "NET_RX" and softirqs.vector_name(42) == "42"


# --- kernel log, kallsyms --------------------------------------------------------------------
def test_kmsg_oom_kill_line():
    rec = ("6,2114,1234567,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
           "mems_allowed=0,oom_memcg=/ksight-lab-9-troom,task_memcg=/ksight-lab-9-troom,"
           "task=python3,pid=4321,uid=0\n SUBSYSTEM=memory\n")
    kv = kmsg.oom_kill(kmsg.parse_record(rec))
    assert kv["constraint"] == "CONSTRAINT_MEMCG" and kv["pid"] == "4321"
    assert kv["task_memcg"] == "/ksight-lab-9-troom"
    assert kmsg.parse_record("no header") is None
    assert kmsg.oom_kill("Out of memory: Killed process 4321 (python3)") is None
    assert kmsg.oom_kill("oom-kill:constraint=CONSTRAINT_NONE,pid=x") is None


def test_kallsyms_names_call_sites():
    syms = Kallsyms.parse("ffffffff81000000 T _stext\nffffffff81000100 t alloc_pipe_info\n"
                          "ffffffff81000200 D some_data\nzzzz T garbage\n"
                          "0000000000000000 T hidden_without_root\n")
    assert syms.name(0xffffffff81000142) == "alloc_pipe_info+0x42"
    assert syms.name(0xffffffff81000300) == "alloc_pipe_info+0x200"   # data symbols skipped
    assert syms.name(0x10) == "0x10"
    assert Kallsyms.parse("").name(0xffffffff81000142) == "0xffffffff81000142"


# --- rendering -------------------------------------------------------------------------------
def _meta(**kw):
    base = dict(recipe="reclaim", question="q", backend="tracefs", seconds=2.0, events=4, lost=0,
                truncated=False)
    return {**base, **kw}


def test_render_reclaim_text_and_json():
    p = ReclaimStalls(pid=42, comm="reader", kind="memcg", cgroup="/lab", stalls=3,
                      total_usec=1500.0, max_usec=900.0, reclaimed_pages=256, hist={512: 1, 1024: 2})
    from ksight.trace.recipes.reclaim import by_cgroup

    res = ReclaimResult(**_meta(backend_why="asked for"), histogram_usec={"memcg": p.hist},
                        processes=(p,), cgroups=by_cgroup([p]), kswapd_wakeups=(),
                        in_progress_at_end=0, notes=("hello",))
    text = render(res)
    row = next(l for l in text.splitlines() if l.lstrip().startswith("42 "))
    # 1500 us = 1.50 ms total, 900 us = 0.90 ms max, 256 pages x 4 KiB = 1.0 MiB
    assert row.split()[:6] == ["42", "reader", "memcg", "3", "1.50", "0.90"]
    if os.sysconf("SC_PAGESIZE") == 4096:
        assert "1.0 MiB" in row
    assert row.endswith("/lab")
    assert "memcg reclaim latency:" in text and "note: hello" in text
    assert text.splitlines()[-1] == "backend: tracefs (asked for)"
    assert "4 events in 2 s, none lost" in text
    j = jsonable(res)
    assert j["processes"][0]["hist"] == {"512": 1, "1024": 2}
    assert j["cgroups"] == [{"cgroup": "/lab", "kind": "memcg", "stalls": 3, "total_usec": 1500.0,
                             "max_usec": 900.0, "reclaimed_pages": 256, "hist": {"512": 1, "1024": 2}}]
    assert j["histogram"] is None and j["backend_why"] == "asked for"


def test_render_softirq_histograms_only_when_built():
    row = SoftirqTime("NET_RX", 1, count=4, total_usec=10.0, max_usec=5.0)
    plain = render(SoftirqResult(**_meta(recipe="softirq"), softirqs=(row,)))
    assert "time:" not in plain
    # 10 us over 4 softirqs: 2.50 us average
    line = next(l for l in plain.splitlines() if l.startswith("NET_RX"))
    assert line.split() == ["NET_RX", "1", "4", "0.01", "2.50", "5"]
    hist = render(SoftirqResult(**_meta(recipe="softirq", backend="bpftrace"), softirqs=(row,),
                                histogram_usec={"NET_RX": {4: 3, 8: 1}}))
    assert "NET_RX time:" in hist and "bpftrace" in hist.splitlines()[-1]


def test_render_empty_and_lost():
    res = SoftirqResult(**_meta(recipe="softirq", lost=-1, truncated=True), softirqs=(),
                        missing=(recipes.MissingEvent("irq:x", "not on this kernel", "irq:y"),))
    text = render(res)
    assert text.startswith("  (nothing found)")
    assert "some LOST" in text and "stopped at --max-events" in text
    assert "missing: irq:x: not on this kernel; used irq:y instead" in text
