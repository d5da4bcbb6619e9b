import os
import pickle
import subprocess
import time

import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import DirRoot, LiveRoot
from ksight.sources import cgroup_memory as cgm
from ksight.sources import mounts
from tests.conftest import FIXTURES, corpus, corpus_root, needs_root

PCP = ("pcp", "unpacked")
MiB = 1024 * 1024


def _first_int(*parts):
    return int(corpus(*parts).read_text().split()[0])


# ---- PCP captures (v1). No PCP expected output covers these trees, so values are compared with
# ---- the files read directly (an independent route), plus counts checked by hand.

def test_pcp_001_v1_tree():
    c = cgm.read(corpus_root(*PCP, "cgroups-root-001"))
    assert c.version == 1 and c.mount == "cgroup/memory" and not c.truncated
    assert sorted(c.groups) == ["/", "/libvirt", "/libvirt/lxc"]
    g = c.groups["/"]
    base = (*PCP, "cgroups-root-001", "cgroup", "memory")
    assert g.current_bytes == _first_int(*base, "memory.usage_in_bytes") == 1389240320
    assert g.max_bytes == cgm.UNLIMITED  # file holds 9223372036854775807
    assert g.soft_limit_bytes == cgm.UNLIMITED
    assert g.stat["total_cache"] == 909434880 and g.stat["rss"] == 479805440
    assert g.stat["hierarchical_memory_limit"] == 9223372036854775807  # kept as printed
    assert g.oom_kill_disable == 0 and g.under_oom == 0
    assert g.oom_kill is None  # oom_control without oom_kill: kernel before 4.13
    assert g.min_bytes is g.low_bytes is g.high_bytes is None  # no v1 equivalent
    assert g.events is None and g.pressure is None
    procs = corpus(*base, "cgroup.procs").read_text().split()
    assert g.nprocs == len(procs) == 354
    assert c.groups["/libvirt/lxc"].current_bytes == 0


def test_pcp_002_u64_unlimited_normalised():
    c = cgm.read(corpus_root(*PCP, "cgroups-root-002"))
    assert c.version == 1 and c.mount == "sys/fs/cgroup/memory"
    assert list(c.groups) == ["/"]
    g = c.groups["/"]
    base = (*PCP, "cgroups-root-002", "sys", "fs", "cgroup", "memory")
    assert _first_int(*base, "memory.limit_in_bytes") == 2**64 - 1
    assert g.max_bytes == cgm.UNLIMITED and g.memsw_limit_bytes == cgm.UNLIMITED
    assert g.current_bytes == _first_int(*base, "memory.usage_in_bytes") == 2404196352
    assert g.max_usage_bytes == 797274112
    assert g.memsw_usage_bytes == 2433724416
    assert g.stat["total_swap"] == 29511680 and g.stat["pgmajfault"] == 15498
    assert g.nprocs == 259


# ---- hand-made v2 tree (tests/fixtures/cgroup_v2/README.md) ----

def test_v2_fixture():
    c = cgm.read(DirRoot(str(FIXTURES / "cgroup_v2")))
    assert c.version == 2 and c.mount == "sys/fs/cgroup"
    assert sorted(c.groups) == ["/", "/init.scope", "/system.slice", "/system.slice/nginx.service"]
    root = c.groups["/"]
    assert root.max_bytes is None and root.current_bytes is None and root.events is None
    assert root.stat["pgscan_direct"] == 5000
    assert root.pressure.some.avg10 == 1.5 and root.pressure.full.total_usec == 45678901
    assert root.nprocs == 3
    n = c.groups["/system.slice/nginx.service"]
    assert n.version == 2
    assert n.max_bytes == 256 * MiB and n.high_bytes == cgm.UNLIMITED and n.low_bytes == 64 * MiB
    assert n.min_bytes == 0
    assert n.current_bytes == 262144000
    assert n.swap_current_bytes == 4096 and n.swap_max_bytes == 0
    assert n.events == {"low": 0, "high": 0, "max": 41, "oom": 3, "oom_kill": 3, "oom_group_kill": 0}
    assert n.events_local["oom_kill"] == 3
    assert n.pressure.some.avg60 == 5.67 and n.pressure.full.total_usec == 87654321
    assert n.nprocs == 3
    assert n.failcnt is None and n.oom_kill is None  # v1-only fields
    s = c.groups["/system.slice"]
    assert s.high_bytes == 1024 * MiB and s.max_bytes == cgm.UNLIMITED and s.nprocs == 0
    assert s.events["high"] == 7
    assert c.groups["/init.scope"].events_local is None
    pickle.loads(pickle.dumps(c))


def _hybrid_tree(tmp: str, v2_controllers: str) -> DirRoot:
    """mountinfo as on the test machine: v1 memory + cgroup2 'unified'."""
    os.makedirs(f"{tmp}/proc/self")
    with open(f"{tmp}/proc/self/mountinfo", "w") as f:
        f.write("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
                "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    for d in ("sys/fs/cgroup/memory/a", "sys/fs/cgroup/unified"):
        os.makedirs(f"{tmp}/{d}")
    with open(f"{tmp}/sys/fs/cgroup/unified/cgroup.controllers", "w") as f:
        f.write(v2_controllers)
    with open(f"{tmp}/sys/fs/cgroup/memory/a/memory.limit_in_bytes", "w") as f:
        f.write("9223372036854771712\n")  # what a 4 KiB-page kernel prints for unlimited
    return DirRoot(tmp)


def test_hybrid_uses_v1_when_cgroup2_lacks_memory(tmp_path):
    c = cgm.read(_hybrid_tree(str(tmp_path), "\n"))
    assert c.version == 1 and c.mount == "sys/fs/cgroup/memory"
    assert c.groups["/a"].max_bytes == cgm.UNLIMITED
    assert c.groups["/"].current_bytes is None  # absent file is None, not 0


def test_cgroup2_with_memory_wins(tmp_path):
    c = cgm.read(_hybrid_tree(str(tmp_path), "cpu io memory pids\n"))
    assert c.version == 2 and c.mount == "sys/fs/cgroup/unified"


def test_no_memory_controller(tmp_path):
    os.makedirs(tmp_path / "proc")
    (tmp_path / "proc" / "mounts").write_text("proc /proc proc rw 0 0\n"
                                              "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")
    with pytest.raises(Unavailable) as ei:
        cgm.read(DirRoot(str(tmp_path)))
    assert ei.value.reason == "no memory cgroup controller mounted"


def test_bounds_set_truncated(tmp_path):
    root = _hybrid_tree(str(tmp_path), "")
    os.makedirs(tmp_path / "sys/fs/cgroup/memory/a/b/c/d")
    ver, m = cgm.find_hierarchy(root, mounts.read(root))
    deep = cgm.read_hierarchy(root, ver, m, max_depth=2)
    assert deep.truncated and sorted(deep.groups) == ["/", "/a", "/a/b"]
    few = cgm.read_hierarchy(root, ver, m, max_groups=3)
    assert few.truncated and len(few.groups) == 3
    full = cgm.read_hierarchy(root, ver, m)
    assert not full.truncated and len(full.groups) == 5


class _VanishingRoot(DirRoot):
    """A tree where one group disappears between listing its parent and reading it."""

    def __init__(self, base, gone):
        super().__init__(base)
        self.gone = gone

    def listdir(self, path):
        if path.rstrip("/").endswith(self.gone):
            raise Unavailable(path, "missing (not on this kernel or not captured)")
        return super().listdir(path)

    def listdirs(self, path):  # the walk lists subdirectories with listdirs
        if path.rstrip("/").endswith(self.gone):
            raise Unavailable(path, "missing (not on this kernel or not captured)")
        return super().listdirs(path)


class _RemovedMidReadRoot(DirRoot):
    """Group /a is removed after it was listed: its files read as missing, isdir says gone."""

    def read_bytes(self, path, **kw):
        if "/memory/a/" in path:
            raise Unavailable(path, "missing (not on this kernel or not captured)")
        return super().read_bytes(path, **kw)

    def isdir(self, path):
        return False if path.rstrip("/").endswith("memory/a") else super().isdir(path)


def test_group_removed_mid_read_is_dropped(tmp_path):
    root = _hybrid_tree(str(tmp_path), "")
    os.makedirs(tmp_path / "sys/fs/cgroup/memory/b")
    assert sorted(cgm.read(root).groups) == ["/", "/a", "/b"]
    c = cgm.read(_RemovedMidReadRoot(str(tmp_path)))
    assert sorted(c.groups) == ["/", "/b"]


def test_group_vanishing_mid_walk_is_skipped(tmp_path):
    _hybrid_tree(str(tmp_path), "")
    os.makedirs(tmp_path / "sys/fs/cgroup/memory/b")
    c = cgm.read(_VanishingRoot(str(tmp_path), "memory/a"))
    assert sorted(c.groups) == ["/", "/b"]


# ---- pure parsers ----

@pytest.mark.parametrize("text,want", [
    ("max\n", cgm.UNLIMITED), ("268435456\n", 256 * MiB), ("0\n", 0),
    ("9223372036854771712\n", cgm.UNLIMITED), ("18446744073709551615\n", cgm.UNLIMITED),
    ("4611686018427387903\n", 2**62 - 1),
])
def test_parse_limit(text, want):
    assert cgm.parse_limit(text, "x/memory.max") == want


@pytest.mark.parametrize("text", ["", "\n", "abc\n", "12 34\n", "1.5\n"])
def test_parse_limit_bad(text):
    with pytest.raises(ParseError) as ei:
        cgm.parse_limit(text, "x/memory.max")
    assert ei.value.path == "x/memory.max"


def test_parse_stat_and_events():
    assert cgm.parse_stat("anon 1\nfile 2\n", "p") == {"anon": 1, "file": 2}
    assert cgm.parse_events("oom_kill_disable 0\nunder_oom 1\noom_kill 5\n", "p")["oom_kill"] == 5


@pytest.mark.parametrize("text", ["", "anon\n", "anon 1\nfile", "anon 1\nfile x\n", "a b c\n"])
def test_parse_stat_bad(text):
    with pytest.raises(ParseError) as ei:
        cgm.parse_stat(text, "g/memory.stat")
    assert ei.value.path == "g/memory.stat"


def test_bad_file_in_a_group_raises(tmp_path):
    root = _hybrid_tree(str(tmp_path), "")
    (tmp_path / "sys/fs/cgroup/memory/a/memory.stat").write_text("cache 1\nrss\n")
    with pytest.raises(ParseError):
        cgm.read(root)


# ---- live machine ----

@needs_root
def test_live_limit_and_process():
    live = LiveRoot()
    ver, m = cgm.find_hierarchy(live, mounts.read(live))
    if ver is None:
        pytest.skip("no memory cgroup controller on this machine")
    name = f"ksight-test-{os.getpid()}"
    d = os.path.join("/", m.rel, name)
    limit_file = "memory.max" if ver == 2 else "memory.limit_in_bytes"
    child = None
    os.mkdir(d)
    try:
        with open(os.path.join(d, limit_file), "w") as f:
            f.write(str(64 * MiB))
        child = subprocess.Popen(["sleep", "30"])
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(child.pid))
        c = cgm.read(live)
        assert c.version == ver
        key = cgm._base_path(m).rstrip("/") + "/" + name
        g = c.groups[key]
        assert g.max_bytes == 64 * MiB
        assert g.nprocs == 1
        assert g.current_bytes is not None and g.current_bytes < 64 * MiB
        # the kernel's own view of where the child lives
        with open(f"/proc/{child.pid}/cgroup") as f:
            lines = f.read().splitlines()
        want = [ln.split(":", 2)[2] for ln in lines
                if (ver == 1 and "memory" in ln.split(":")[1].split(",")) or (ver == 2 and ln.startswith("0::"))]
        assert want == [key]
    finally:
        if child is not None:
            child.kill()
            child.wait(timeout=10)
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        assert not os.path.exists(d)


@needs_root
def test_live_read_while_other_groups_come_and_go():
    # other programs (systemd, containers, a lab run next door) create and remove memory cgroups
    # at any moment: a read of the live hierarchy must not fail because of them. Here a thread
    # churns private groups while the hierarchy is read again and again; a stable private group
    # must be in every read, a churned one may be there or not, nothing may raise.
    import threading

    live = LiveRoot()
    ver, m = cgm.find_hierarchy(live, mounts.read(live))
    if ver is None:
        pytest.skip("no memory cgroup controller on this machine")
    base = cgm._base_path(m).rstrip("/")
    stable = os.path.join("/", m.rel, f"ksight-test-{os.getpid()}-stable")
    churn = [os.path.join("/", m.rel, f"ksight-test-{os.getpid()}-churn{i}") for i in range(4)]
    stop = threading.Event()

    def churner():
        while not stop.is_set():
            for d in churn:
                try:
                    os.mkdir(d)
                except FileExistsError:
                    pass
            for d in churn:
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    os.mkdir(stable)
    t = threading.Thread(target=churner)
    t.start()
    try:
        reads = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            c = cgm.read(live)
            assert base + "/" + os.path.basename(stable) in c.groups
            reads += 1
        assert reads >= 3
    finally:
        stop.set()
        t.join(10)
        for d in churn + [stable]:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
    assert not any(os.path.exists(d) for d in churn + [stable])


def test_replay_of_a_recorded_read_gives_the_same_groups(tmp_path):
    # a capture keeps exactly what was read (fs/recording.py); reading it back must walk
    # the same hierarchy and give equal values
    from ksight.fs import RecordingRoot

    rec = RecordingRoot(DirRoot(str(FIXTURES / "cgroup_v2")))
    first = cgm.read(rec)
    for d in rec.dirs:
        os.makedirs(tmp_path / d, exist_ok=True)
    for p, data in rec.files.items():
        os.makedirs((tmp_path / p).parent, exist_ok=True)
        (tmp_path / p).write_bytes(data)
    assert cgm.read(DirRoot(str(tmp_path))) == first


# ---- reading only the files a plan asks for (Plan.cgroup_files) ----
# plan name -> the MemCgroup fields it fills, written out here (not taken from the module)
_FIELDS = {
    2: {"usage": ("current_bytes",), "failcnt": (), "peak": (), "max": ("high_bytes", "max_bytes"),
        "protection": ("min_bytes", "low_bytes"),
        "stat": ("stat",), "events": ("events",), "events_local": ("events_local",),
        "pressure": ("pressure",), "procs": ("nprocs",),
        "swap": ("swap_current_bytes", "swap_max_bytes"), "oom": (), "idle": ()},
    1: {"usage": ("current_bytes",), "failcnt": ("failcnt",), "peak": ("max_usage_bytes",),
        "max": ("max_bytes",), "protection": ("soft_limit_bytes",), "stat": ("stat",), "events": (),
        "events_local": (), "pressure": (), "procs": ("nprocs",),
        "swap": ("memsw_usage_bytes", "memsw_limit_bytes", "memsw_failcnt"),
        "oom": ("oom_kill_disable", "under_oom", "oom_kill"), "idle": ()},
}
for _v in _FIELDS.values():  # the names that stand for several
    _v["current"] = _v["usage"] + _v["failcnt"] + _v["peak"]
    _v["limits"] = _v["max"] + _v["protection"]
_ALIAS = {"current": ("usage", "failcnt", "peak"), "limits": ("max", "protection")}
_SUBSETS = [(n,) for n in _FIELDS[2]] + [
    ("stat",), ("current", "limits", "stat", "events", "events_local", "pressure", "oom"),
    # direct-reclaim's and pagecache --protect's, as the rules declare them
    ("usage", "failcnt", "max", "stat", "events", "events_local", "pressure", "oom"),
    ("usage", "max", "protection", "stat", "idle"),
    ("procs", "swap"), (), tuple(_FIELDS[2]),
    # check's plan as the rules declare it (":limited": only where a group has a limit)
    ("stat", "usage:limited", "max", "failcnt:limited", "events", "events_local", "pressure:limited",
     "oom", "peak:limited", "swap:limited", "idle"),
    ("usage", "usage:limited", "stat"), ("swap:limited",), ("peak:limited", "failcnt:limited")]


def _check_subset(root_factory, files):
    from dataclasses import fields

    from ksight.collect.plan import CGROUP_FILES
    from ksight.fs import RecordingRoot

    limited = {f"{n}:limited" for n in cgm.LIMITED}
    assert set(CGROUP_FILES) == set(cgm.FILES) == set(_FIELDS[2]) | limited == set(_FIELDS[1]) | limited
    full = cgm.read(root_factory())
    rec = RecordingRoot(root_factory())
    part = cgm.read(rec, files=files)
    # the same walk, less the groups skipped as idle (none when "idle" is asked), counted
    gone = [cg for cg in full.groups if cg not in part.groups]
    assert list(part.groups) == [cg for cg in full.groups if cg not in gone]
    assert part.skipped_idle == len(gone)
    if "idle" in files:
        assert not gone
    # a skipped group had nothing charged (the full read says so)
    assert all(full.groups[cg].current_bytes == 0 for cg in gone)
    fv = _FIELDS[full.version]
    asked = {f for n in files if n in fv for f in fv[n]}
    # NAME:limited: NAME's fields only in groups with a limit of their own, and the limits (the
    # gate) in every group; NAME alone wins
    lim_names = [n for n in files if n.endswith(":limited") and n[:-8] not in files]
    cond = {f for n in lim_names for f in fv[n[:-8]]} - asked
    if lim_names:
        asked |= {"high_bytes", "max_bytes"} if full.version == 2 else {"max_bytes"}
    for cg, g in part.groups.items():
        ref = full.groups[cg]
        lims = (ref.high_bytes, ref.max_bytes) if full.version == 2 else (ref.max_bytes,)
        has_limit = any(x is not None and x < 2**62 for x in lims)
        for f in fields(g):
            want = getattr(ref, f.name) if f.name in asked or f.name in ("path", "version", "id") or (
                f.name in cond and has_limit) else None
            assert getattr(g, f.name) == want, (files, cg, f.name)
    # and the files not asked for were not opened (but the idle test's, when idle is not asked)
    names = {p.rsplit("/", 1)[1] for p in rec.files}
    table = cgm.FILES_V2 if full.version == 2 else cgm.FILES_V1
    expanded = {x for n in files for x in _ALIAS.get(n, (n,))}
    not_asked = {f for n, fs in table.items() if n not in files and n not in _ALIAS
                 and n not in expanded for f in fs}
    if "idle" not in files:
        not_asked -= {"memory.current", "memory.swap.current", "memory.usage_in_bytes",
                      "memory.memsw.usage_in_bytes"}
    # NAME:limited: NAME's files opened only in groups with a limit (their own limit files say)
    gate = ("memory.high", "memory.max") if full.version == 2 else ("memory.limit_in_bytes",)
    cond_files = {f for n in lim_names for f in table[n[:-8]]} & not_asked - set(gate)
    for p in rec.files:
        d, _, name = p.rpartition("/")
        if name in cond_files:
            vals = [rec.files.get(f"{d}/{x}", b"max").strip() for x in gate]
            assert any(v.isdigit() and int(v) < 2**62 for v in vals), (files, p, vals)
    not_asked -= cond_files
    if lim_names:
        not_asked -= set(gate)
    assert not names & not_asked, (files, names & not_asked)


@pytest.mark.parametrize("files", _SUBSETS)
def test_files_subset_v2(files):
    _check_subset(lambda: DirRoot(str(FIXTURES / "cgroup_v2")), files)


@pytest.mark.parametrize("files", _SUBSETS)
def test_files_subset_v1(files):
    _check_subset(lambda: corpus_root(*PCP, "cgroups-root-001"), files)
    _check_subset(lambda: corpus_root(*PCP, "cgroups-root-002"), files)


def test_files_subset_live():
    try:
        cgm.read(LiveRoot())
    except Unavailable:
        pytest.skip("no memory cgroup controller here")
    c = cgm.read(LiveRoot(), files=("stat", "limits"))
    assert c.groups and all(g.current_bytes is None and g.events is None and g.nprocs is None
                            for g in c.groups.values())
    assert any(g.stat for g in c.groups.values())


def test_files_unknown_name():
    with pytest.raises(ValueError, match="unknown memory cgroup files"):
        cgm.read(DirRoot(str(FIXTURES / "cgroup_v2")), files=("stats",))


def test_snapshot_passes_the_plans_files():
    from ksight.collect.plan import Needs, Plan
    from ksight.collect.snapshot import take

    root = DirRoot(str(FIXTURES / "cgroup_v2"))
    plan = Plan.of([Needs(uses=("cgroup_memory",), cgroup_files=("stat",))])
    assert plan.cgroup_files == ("stat",)
    g = take(root, plan=plan).get("cgroup_memory").groups["/system.slice/nginx.service"]
    assert g.stat and g.max_bytes is None and g.nprocs is None
    plan = Plan.of([Needs(uses=("cgroup_memory",))])  # no files named: all of them
    g = take(root, plan=plan).get("cgroup_memory").groups["/system.slice/nginx.service"]
    assert g.stat and g.max_bytes == 256 * MiB and g.nprocs == 3


# ---- idle groups: skipped unless a plan names "idle" ----
# PCP's cgroups-root-001 (a real v1 machine): /libvirt and /libvirt/lxc have usage_in_bytes 0,
# memsw.usage_in_bytes 0 and an empty tasks file (read by hand from the capture's files)
def test_idle_v1_capture_skipped_and_counted():
    root = corpus_root(*PCP, "cgroups-root-001")
    c = cgm.read(root, files=("stat", "failcnt"))
    assert "/libvirt" not in c.groups and "/libvirt/lxc" not in c.groups and "/" in c.groups
    assert c.skipped_idle == 2
    full = cgm.read(root, files=("stat", "failcnt", "idle"))
    assert "/libvirt/lxc" in full.groups and full.skipped_idle == 0
    assert cgm.read(root).skipped_idle == 0 and "/libvirt/lxc" in cgm.read(root).groups


def _v1_tree(tmp_path, groups):
    """A v1 memory hierarchy: {cgroup path: (usage, memsw or None, tasks text)}."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory\n")
    base = tmp_path / "sys/fs/cgroup/memory"
    for cg, (usage, memsw, tasks) in groups.items():
        d = base / cg.strip("/") if cg != "/" else base
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
        if memsw is not None:
            (d / "memory.memsw.usage_in_bytes").write_text(f"{memsw}\n")
        (d / "tasks").write_text(tasks)
        (d / "cgroup.procs").write_text(tasks)
        (d / "memory.failcnt").write_text("7\n")
        (d / "memory.stat").write_text("cache 0\nrss 0\n")
        (d / "memory.use_hierarchy").write_text("1\n")
    return DirRoot(str(tmp_path))


def test_idle_v1_only_whole_subtrees(tmp_path):
    root = _v1_tree(tmp_path, {
        "/": (5 << 20, 6 << 20, "1\n"),
        # a parent with no task and no charge of its own whose child has a task: both read (the
        # parent hits its limit through the child's charges)
        "/a": (0, 0, ""), "/a/busy": (0, 0, "4242\n"),
        # no task anywhere below, nothing charged: skipped, both
        "/b": (0, 0, ""), "/b/c": (0, 0, ""),
        # no task but a charge (page cache left behind; or swap: memsw > usage): read
        "/cache": (4096, 4096, ""), "/swapped": (0, 8192, ""),
        # no memsw file (no swap accounting: no swap entry records a memcg): usage decides
        "/nomemsw": (0, None, ""),
    })
    from ksight.fs import RecordingRoot

    rec = RecordingRoot(root)
    c = cgm.read(rec, files=("usage", "failcnt", "stat"))
    assert sorted(c.groups) == ["/", "/a", "/a/busy", "/cache", "/swapped"]
    # below /b (usage and memsw 0, use_hierarchy 1: its counters include every descendant's)
    # only the child's tasks is opened; below /a too, and /a/busy, having a task, is read whole
    assert sorted(p.rsplit("/", 1)[1] for p in rec.files if "/b/c/" in p) == ["tasks"]
    assert c.groups["/a/busy"].current_bytes == 0 and c.groups["/a/busy"].failcnt == 7
    assert c.skipped_idle == 3
    assert c.groups["/a"].current_bytes == 0 and c.groups["/a"].failcnt == 7
    allg = cgm.read(root, files=("usage", "failcnt", "stat", "idle"))
    assert len(allg.groups) == 8 and allg.skipped_idle == 0


def test_idle_v1_unknown_is_read(tmp_path):
    root = _v1_tree(tmp_path, {"/": (1, 1, "1\n"), "/x": (0, 0, "")})
    os.remove(tmp_path / "sys/fs/cgroup/memory/x/tasks")  # can't tell: read it
    assert "/x" in cgm.read(root, files=("stat",)).groups


def _v2_tree(tmp_path, groups):
    """A v2 hierarchy with memory: {path: (populated, current, swap.current or None)}."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n")
    base = tmp_path / "sys/fs/cgroup"
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text("cpu io memory pids\n")
    for cg, (pop, cur, swap) in groups.items():
        d = base / cg.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "cgroup.events").write_text(f"populated {pop}\nfrozen 0\n")
        (d / "memory.current").write_text(f"{cur}\n")
        if swap is not None:
            (d / "memory.swap.current").write_text(f"{swap}\n")
        (d / "memory.stat").write_text("anon 0\nfile 0\n")
        (d / "memory.events.local").write_text("low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\n")
    return DirRoot(str(tmp_path))


def test_idle_v2_subtrees(tmp_path):
    root = _v2_tree(tmp_path, {
        # populated is hierarchical: a parent with a task below it says 1
        "/a": (1, 8192, 0), "/a/busy": (1, 8192, 0),
        # populated 0 and nothing charged (memory.current and swap.current are hierarchical):
        # the whole subtree is skipped and its files are not opened
        "/idle": (0, 0, 0), "/idle/x": (0, 0, 0), "/idle/x/y": (0, 0, 0),
        # no task but charged: page cache left behind, or only swap
        "/cache": (0, 4096, 0), "/swapped": (0, 0, 4096),
        # no swap.current (no per-cgroup swap accounting): current decides
        "/noswap": (0, 0, None),
    })
    from ksight.fs import RecordingRoot

    rec = RecordingRoot(root)
    c = cgm.read(rec, files=("stat", "events_local"))
    assert sorted(c.groups) == ["/", "/a", "/a/busy", "/cache", "/swapped"]
    assert c.skipped_idle == 4
    assert c.groups["/a/busy"].events_local["max"] == 3
    assert not [p for p in rec.files if "/idle/x" in p]  # below an idle top: nothing opened
    assert cgm.read(root, files=("stat", "idle")).skipped_idle == 0
    assert len(cgm.read(root).groups) == 9


def test_idle_v2_fixture_nothing_skipped():
    # the fixture tree has no cgroup.events: populated unknown, so every group is read
    c = cgm.read(DirRoot(str(FIXTURES / "cgroup_v2")), files=("stat",))
    assert c.skipped_idle == 0
    assert list(c.groups) == list(cgm.read(DirRoot(str(FIXTURES / "cgroup_v2"))).groups)


def test_idle_v1_not_hierarchical_reads_each(tmp_path):
    # use_hierarchy 0 (kernels before 5.11 allowed it): a parent's usage says nothing of its
    # children's, so a charged child under an uncharged parent is read
    root = _v1_tree(tmp_path, {"/": (1, 1, "1\n"), "/p": (0, 0, ""), "/p/kid": (4096, 4096, "")})
    (tmp_path / "sys/fs/cgroup/memory/p/memory.use_hierarchy").write_text("0\n")
    c = cgm.read(root, files=("stat",))
    assert sorted(c.groups) == ["/", "/p", "/p/kid"] and c.skipped_idle == 0


def test_v1_limit_from_memory_stat_when_unlimited(tmp_path):
    """v1: memory.stat's hierarchical_memory_limit is the lowest limit of the group and its
    ancestors; when it is unlimited the group's own limit_in_bytes prints that same number, so a
    plan's walk does not open the file. Below a limit, or without the line, the file is read."""
    unl = 9223372036854771712
    lim = 64 << 20
    root = _v1_tree(tmp_path, {"/": (5 << 20, None, "1\n"), "/a": (4096, None, "2\n"),
                               "/lim": (4096, None, "3\n"), "/lim/kid": (4096, None, "4\n"),
                               "/old": (4096, None, "5\n")})
    base = tmp_path / "sys/fs/cgroup/memory"
    own = {"/": unl, "/a": unl, "/lim": lim, "/lim/kid": unl, "/old": unl}
    hier = {"/": unl, "/a": unl, "/lim": lim, "/lim/kid": lim, "/old": None}
    for cg, v in own.items():
        d = base / cg.strip("/") if cg != "/" else base
        (d / "memory.limit_in_bytes").write_text(f"{v}\n")
        (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
        h = f"hierarchical_memory_limit {hier[cg]}\nhierarchical_memsw_limit {unl}\n" \
            if hier[cg] is not None else ""
        (d / "memory.stat").write_text(f"cache 0\nrss 4096\n{h}total_cache 0\n")
    from ksight.fs import RecordingRoot

    for files in (("stat", "max", "oom"), ("stat", "failcnt:limited", "oom", "idle"),
                  ("stat", "max", "usage:limited", "failcnt:limited", "idle")):
        rec = RecordingRoot(root)
        c = cgm.read(rec, files=files)
        assert {cg: g.max_bytes for cg, g in c.groups.items()} == {
            cg: (cgm.UNLIMITED if v == unl else v) for cg, v in own.items()}, files
        opened = sorted(p[len("sys/fs/cgroup/memory"):].rsplit("/", 1)[0] or "/"
                        for p in rec.files if p.endswith("/memory.limit_in_bytes"))
        assert opened == ["/lim", "/lim/kid", "/old"], files  # a limit here or above; no line
        # the :limited files go where the group has a limit of its own, as before
        if "failcnt:limited" in files:
            assert {cg for cg, g in c.groups.items() if g.failcnt is not None} == {"/lim"}
        assert all(g.oom_kill == (1 if "oom" in files else None) for g in c.groups.values())
    # every file of every group (a capture): the file is read as it is
    rec = RecordingRoot(root)
    c = cgm.read(rec)
    assert sum(p.endswith("/memory.limit_in_bytes") for p in rec.files) == len(own)
    assert c.groups["/a"].max_bytes == cgm.UNLIMITED and c.groups["/lim"].max_bytes == lim
