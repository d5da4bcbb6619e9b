"""Memory cgroups: the control files kept open between walks (pread at offset 0), the cgroup id
(the directory's inode number, recorded in captures), and a group made again under the same path
seen as another entity by the series. Live tests make groups of their own under a parent of
their own (names hold the pid) and remove them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ksight.fs import DirRoot, LiveRoot, RecordingRoot
from ksight.fs.root import DIR_IDS, format_dir_ids, parse_dir_ids
from ksight.model.counters import CgroupCounter
from ksight.model.series import Series
from ksight.model.snapshot import HostInfo, Snapshot
from ksight.sources import cgroup_memory as cgm
from ksight.sources import mounts
from tests.conftest import FIXTURES, needs_root


def _hier():
    live = LiveRoot()
    ver, m = cgm.find_hierarchy(live, mounts.read(live))
    if ver is None:
        pytest.skip("no memory cgroup controller")
    return live, ver, m


class _Groups:
    """A parent of our own with the memory controller, and children made/removed on demand."""

    def __init__(self, tag: str):
        self.live, self.ver, m = _hier()
        self.top = os.path.join("/", m.rel, f"ksight-{tag}-{os.getpid()}")
        os.mkdir(self.top)
        if self.ver == 2:
            with open(os.path.join(self.top, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
        import dataclasses
        self.mount = dataclasses.replace(m, mount_point=self.top, root="/")

    def path(self, name):
        return os.path.join(self.top, name)

    def mk(self, name):
        os.mkdir(self.path(name))

    def rm(self, name):
        os.rmdir(self.path(name))

    def set_limit(self, name, n):
        f = "memory.max" if self.ver == 2 else "memory.limit_in_bytes"
        with open(os.path.join(self.path(name), f), "w") as fh:
            fh.write(str(n))

    def read(self, files=None):
        return cgm.read_hierarchy(self.live, self.ver, self.mount, files=files)

    def close(self):
        for n in sorted(os.listdir(self.top), reverse=True):
            p = os.path.join(self.top, n)
            if os.path.isdir(p):
                os.rmdir(p)
        os.rmdir(self.top)


@pytest.fixture
def groups(request):
    if os.geteuid() != 0:
        pytest.skip("needs root: makes memory cgroups (CI runs as root)")
    g = _Groups(request.node.name[:20].replace("[", "-").replace("]", ""))
    try:
        yield g
    finally:
        cgm.close_kept()
        g.close()


_FILES = ("max", "stat", "usage", "idle")  # idle: empty groups of our own are read too


@needs_root
def test_kept_fds_read_what_changed_and_are_closed(groups):
    if cgm._c_read_dir_kept is None:
        pytest.fail("ksight._procscan not built (setup.py build_ext)")
    cgm.close_kept()
    groups.mk("a")
    groups.mk("b")
    first = groups.read(_FILES)
    rel = groups.top.lstrip("/")
    assert first.groups["/a"].max_bytes == cgm.UNLIMITED
    held = cgm.kept_fds()
    # per group: the directory fd and one per file read (memory.max/high or limit_in_bytes, stat,
    # usage); the parent's and the two children's
    per = 1 + len({n for k in _FILES for n in (cgm.FILES_V2 if groups.ver == 2 else cgm.FILES_V1)[k]})
    # v1: an unlimited group's limit_in_bytes is not opened (its memory.stat says it)
    v1_lim = int(groups.ver == 1 and "stat" in _FILES)
    per -= v1_lim
    assert held == 3 * per, held
    # open in this process, on the groups' files (not closed after the walk)
    targets = {os.readlink(f"/proc/self/fd/{fd}") for fd in map(int, os.listdir("/proc/self/fd"))
               if os.path.exists(f"/proc/self/fd/{fd}")}
    assert any(t.startswith(os.path.join(groups.top, "a") + "/") for t in targets)
    # a change between walks is seen through the kept fds (a seq_file read at 0 prints anew)
    groups.set_limit("a", 64 << 20)
    second = groups.read(_FILES)
    assert second.groups["/a"].max_bytes == 64 << 20
    # read again, not opened again (v1: /a's limit_in_bytes is opened now that it has one)
    assert cgm.kept_fds() == held + v1_lim
    # the same values as a walk without kept fds (the reference: open/read/close)
    cgm.KEEP_FDS = False
    try:
        ref = groups.read(_FILES)
    finally:
        cgm.KEEP_FDS = True
    assert {k: g.max_bytes for k, g in second.groups.items()} == {k: g.max_bytes for k, g in ref.groups.items()}
    # a removed group's fds are closed at the end of the next walk
    groups.rm("b")
    third = groups.read(_FILES)
    assert "/b" not in third.groups
    assert cgm.kept_fds() == 2 * per + v1_lim
    assert not any(p.startswith(rel + "/b") for p in cgm._Kept.entries)


@needs_root
def test_recreated_group_is_read_afresh_with_a_new_id(groups):
    groups.mk("a")
    groups.set_limit("a", 32 << 20)
    one = groups.read(_FILES).groups["/a"]
    assert one.id == os.stat(groups.path("a")).st_ino
    assert one.max_bytes == 32 << 20
    # removed and made again under the same path, without a walk between: the kept fds of the
    # old group answer ENODEV and the new one is opened by its path (never the old one's text)
    groups.rm("a")
    groups.mk("a")
    two = groups.read(_FILES).groups["/a"]
    assert two.id == os.stat(groups.path("a")).st_ino != one.id
    assert two.max_bytes == cgm.UNLIMITED  # the new group's own (default) limit


@needs_root
def test_kept_fds_closed_in_a_forked_child(groups):
    groups.mk("a")
    groups.read(_FILES)
    assert cgm.kept_fds() > 0
    fds = [fd for e in cgm._Kept.entries.values() for k, fd in e.items() if k != "."]
    assert fds

    def closed(fd):
        try:
            os.fstat(fd)
            return False
        except OSError:
            return True

    # the at-fork hook closes the child's copies
    pid = os.fork()
    if pid == 0:
        os._exit(0 if cgm.kept_fds() == 0 and not cgm._Kept.entries and all(map(closed, fds)) else 1)
    _, st = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(st) == 0
    assert cgm.kept_fds() > 0 and not any(map(closed, fds))  # the parent's stay open



@needs_root
def test_kept_fds_read_many_page_files_to_the_end(groups):
    # tasks and cgroup.procs are seq_files of many records: one read(2) stops after a page of
    # them (~4 kB), so a short read is no end of file. A process with 900 threads in a group of
    # our own: its `tasks` is ~6 kB, read whole both fresh and through the kept fd.
    from ksight import _procscan

    code = ("import threading, time\n"
            "ev = threading.Event()\n"
            "ts = [threading.Thread(target=ev.wait, args=(60,), daemon=True) for _ in range(900)]\n"
            "[t.start() for t in ts]\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")
    groups.mk("t")
    d = groups.path("t")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         preexec_fn=lambda: open(os.path.join(d, "cgroup.procs"), "w").write(str(os.getpid())))
    try:
        assert p.stdout.readline().strip() == b"up"
        with open(os.path.join(d, "tasks"), "rb") as f:
            ref = f.read()
        assert ref.count(b"\n") == 901 and len(ref) > 4096
        entry: dict = {}
        for gen in (1, 2):  # fresh (openat), then the kept fd (pread)
            got = _procscan.read_dir_kept(d, ["tasks", "cgroup.procs"], 65536, entry, gen, 10)
            assert got[2][0] == ref, gen
            assert got[2][1] == f"{p.pid}\n".encode()
        assert set(entry) == {"", ".", "tasks", "cgroup.procs"}  # kept
    finally:
        p.kill()
        p.wait(timeout=10)
        for k, fd in entry.items():
            if k != ".":
                os.close(fd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the group empties once the process is reaped
            with open(os.path.join(d, "tasks")) as f:
                if not f.read().strip():
                    break
            time.sleep(0.05)


def test_kept_fds_budget_follows_rlimit(monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda what: (40, 40))
    k = cgm._Kept.get(LiveRoot())
    if k is None:
        pytest.skip("kept fds off (no C extension)")
    try:
        assert k.cap == 10  # a quarter of the soft limit
    finally:
        k.release()


def test_no_kept_fds_on_other_roots():
    assert cgm._Kept.get(DirRoot(str(FIXTURES / "cgroup_v2"))) is None
    assert cgm._Kept.get(RecordingRoot(LiveRoot())) is None


# ---- ids ---------------------------------------------------------------------------------

def test_dir_ids_format_round_trip():
    ids = {"sys/fs/cgroup/a b": 7, "sys/fs/cgroup": 1, "bad\nname": 3}
    text = format_dir_ids(ids)
    assert text == b"1 sys/fs/cgroup\n7 sys/fs/cgroup/a b\n"  # a name with a newline: no id
    assert parse_dir_ids(text.decode()) == {"sys/fs/cgroup": 1, "sys/fs/cgroup/a b": 7}
    assert parse_dir_ids("x y\n-1 a\n\n12\n 3 b\n") == {}  # odd lines give no id, never an error


def test_old_capture_has_no_ids():
    c = cgm.read(DirRoot(str(FIXTURES / "cgroup_v2")))
    assert c.groups and all(g.id is None for g in c.groups.values())


def test_capture_tree_gives_recorded_ids(tmp_path):
    import shutil

    tree = tmp_path / "t"
    shutil.copytree(FIXTURES / "cgroup_v2", tree, symlinks=True)
    ref = cgm.read(DirRoot(str(tree)))
    mount = ref.mount
    (tree / "ksight").mkdir()
    (tree / DIR_IDS).write_text(f"4242 {mount}\n99 {mount}/system.slice\n")
    got = cgm.read(DirRoot(str(tree)))
    assert got.groups["/"].id == 4242
    assert got.groups["/system.slice"].id == 99
    assert all(g.id is None for k, g in got.groups.items() if k not in ("/", "/system.slice"))


@needs_root
def test_live_ids_recorded_and_replayed(groups, tmp_path):
    from ksight.collect.plan import Plan
    from ksight.store.capture import capture

    groups.mk("a")
    groups.mk("b")
    live = groups.read()
    assert live.groups["/a"].id == os.stat(groups.path("a")).st_ino
    assert live.groups["/b"].id == os.stat(groups.path("b")).st_ino
    # a capture records the ids it saw; its replay gives them back
    out = str(tmp_path / "cap")
    capture(out, interval=0.05, count=1, sources=["cgroup_memory"], processes=False, sockets=False)
    from ksight.collect.collector import Collector

    snap = Collector.open(out).one(Plan(sources=("cgroup_memory",)))
    cm = snap.get("cgroup_memory")
    assert cm is not None
    rel = groups.top[len("/" + cm.mount.strip("/")):] if cm.mount else groups.top
    ga = cm.groups.get(rel + "/a")
    assert ga is not None and ga.id == os.stat(groups.path("a")).st_ino


# ---- the series: a group made again under the same path is another entity -----------------

def _snap(t: float, groups: dict) -> Snapshot:
    cm = cgm.CgroupMemory(version=2, mount="sys/fs/cgroup", groups=groups)
    return Snapshot(taken_at=1000 + t, monotonic=t, uptime_s=100 + t,
                    host=HostInfo("h", "6.1", None, 4096, False, 100, 2, "boot"),
                    sources={"cgroup_memory": cm}, processes=None, sockets=None, unavailable=())


def _g(path, gid, refault):
    return cgm.MemCgroup(path, 2, stat={"workingset_refault_file": refault}, id=gid)


def test_recreated_cgroup_is_two_entities_in_the_series():
    # /a (id 10) refaults 100, 200; removed and made again (id 11), its counters start at 0
    snaps = [_snap(0, {"/a": _g("/a", 10, 100)}), _snap(1, {"/a": _g("/a", 10, 200)}),
             _snap(2, {"/a": _g("/a", 11, 5)}), _snap(3, {"/a": _g("/a", 11, 35)})]
    s = Series(snaps)
    per = s.entity_counters("cgroups", CgroupCounter(("workingset_refault_file",)))
    assert set(per) == {("/a", 10), ("/a", 11)}
    old, new = per[("/a", 10)], per[("/a", 11)]
    assert old.total == 100  # 200 - 100, by hand
    assert new.total == 30  # 35 - 5: never 5 - 200
    assert not old.resets and not new.resets


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
