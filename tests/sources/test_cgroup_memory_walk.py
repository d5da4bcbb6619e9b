"""The memory cgroup walk (read_many, link-count leaf test, groups built through __dict__)
against the walk it replaced (tests/sources/_cgroup_memory_old.py: one full-path read per file,
every group listed), field by field: on fixture trees, captures, and the live hierarchy (groups
of our own, with and without tasks, nested)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time

import pytest

from ksight.fs import DirRoot, LiveRoot, RecordingRoot
from ksight.sources import cgroup_memory as cgm
from ksight.sources import mounts
from tests.conftest import FIXTURES, corpus_root, needs_root
from tests.sources import _cgroup_memory_old as old
from tests.sources.test_cgroup_memory import _SUBSETS, _v1_tree, _v2_tree

CHECK = ("stat", "usage", "failcnt", "max", "events", "events_local", "pressure", "oom")
SUBSETS = [None, CHECK, ("stat", "failcnt"), ("usage", "max", "protection", "stat", "idle")] + [
    s for s in _SUBSETS if s]


def _same(a: cgm.CgroupMemory, b: cgm.CgroupMemory):
    assert (a.version, a.mount, a.truncated, a.skipped_idle) == (b.version, b.mount, b.truncated,
                                                                 b.skipped_idle)
    assert list(a.groups) == list(b.groups)  # same groups, same order
    for k, g in a.groups.items():
        h = b.groups[k]
        for f in dataclasses.fields(cgm.MemCgroup):
            assert getattr(g, f.name) == getattr(h, f.name), (k, f.name)
        assert g == h and type(g) is type(h)
        assert g.__dict__ == h.__dict__  # every field present, as __init__ sets them


def _both(root, files, **kw):
    ver, m = cgm.find_hierarchy(root, mounts.read(root))
    return (cgm.read_hierarchy(root, ver, m, files=files, **kw),
            old.read_hierarchy(root, ver, m, files=files, **kw))


def _trees(tmp_path):
    yield corpus_root("pcp", "unpacked", "cgroups-root-001")
    yield corpus_root("pcp", "unpacked", "cgroups-root-002")
    yield DirRoot(str(FIXTURES / "cgroup_v2"))
    yield _v1_tree(tmp_path / "v1", {
        "/": (5 << 20, 6 << 20, "1\n"), "/a": (0, 0, ""), "/a/b": (0, 0, "42\n"),
        "/c": (0, 0, ""), "/c/d": (0, None, ""), "/e": (4096, 4096, ""), "/f": (0, 4096, ""),
        "/g": (0, 0, ""), "/g/h": (0, 0, ""), "/g/h/i": (0, 0, "7\n")})
    yield _v2_tree(tmp_path / "v2", {
        "a": (0, 0, 0), "a/b": (0, 0, None), "c": (1, 0, 0), "c/d": (0, 4096, 0),
        "e": (0, 0, 4096), "f": (1, 8192, None), "f/g": (0, 0, 0)})


@pytest.mark.parametrize("files", SUBSETS, ids=str)
def test_walk_equals_the_old_walk_on_trees(tmp_path, files):
    for root in _trees(tmp_path):
        new, ref = _both(root, files)
        _same(new, ref)
        for kw in ({"max_depth": 1}, {"max_groups": 3}):
            _same(*_both(root, files, **kw))


def test_walk_on_a_capture_made_through_read_many_replays(tmp_path):
    for i, root in enumerate(_trees(tmp_path)):
        for files in (None, CHECK):
            rec = RecordingRoot(root)
            first = cgm.read(rec, files=files)
            out = tmp_path / f"cap{i}"
            for d in rec.dirs:
                os.makedirs(out / d, exist_ok=True)
            for p, data in rec.files.items():
                os.makedirs((out / p).parent, exist_ok=True)
                (out / p).write_bytes(data)
            _same(cgm.read(DirRoot(str(out)), files=files), first)


@needs_root
def test_walk_equals_the_old_walk_live():
    # groups of our own under a parent of our own (no other group is touched): leaves with and
    # without a task, a parent without tasks over a child with one, an empty parent with an
    # empty child, a limit; the walk is pointed at the parent (a mount whose root is it)
    live = LiveRoot()
    ver, m = cgm.find_hierarchy(live, mounts.read(live))
    if ver is None:
        pytest.skip("no memory cgroup controller")
    top = os.path.join("/", m.rel, f"ksight-walk-{os.getpid()}")
    layout = {"a": True, "b": False, "c": False, "c/x": True, "d": False, "d/y": False,
              "d/y/z": True, "e": False}
    made, procs = [], []
    try:
        os.mkdir(top)
        made.append(top)
        if ver == 2:
            with open(os.path.join(top, "cgroup.subtree_control"), "w") as f:
                f.write("+memory")
        for rel, task in layout.items():
            d = os.path.join(top, rel)
            os.mkdir(d)
            made.append(d)
            if ver == 2 and any(k.startswith(rel + "/") for k in layout):
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            if task:
                procs.append(subprocess.Popen(
                    ["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    preexec_fn=lambda d=d: open(os.path.join(d, "cgroup.procs"), "w").write(
                        str(os.getpid()))))
        with open(os.path.join(top, "a", "memory.max" if ver == 2 else "memory.limit_in_bytes"),
                  "w") as f:
            f.write(str(64 << 20))
        time.sleep(0.2)
        sub = dataclasses.replace(m, mount_point="/" + top.strip("/"), root="/")
        for files in (None, CHECK, ("stat", "failcnt"), ("usage", "max", "protection", "stat", "idle")):
            for _ in range(5):  # values of live groups may move between two reads: retry
                a = old.read_hierarchy(live, ver, sub, files=files)
                new = cgm.read_hierarchy(live, ver, sub, files=files)
                b = old.read_hierarchy(live, ver, sub, files=files)
                if a == b:
                    break
            _same(new, a)
            if files is None or "max" in files:
                assert new.groups["/a"].max_bytes == 64 << 20
            if files is CHECK:  # the empty leaves and the empty subtree are skipped
                assert sorted(new.groups) == ["/", "/a", "/c", "/c/x", "/d", "/d/y", "/d/y/z"]
                assert new.skipped_idle == 2
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for d in reversed(made):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
    assert not os.path.exists(top)


@needs_root
def test_kernfs_link_count_tells_leaves():
    # the walk skips listing a group whose st_nlink is 2: cgroupfs (kernfs) counts subdirectories
    live = LiveRoot()
    ver, m = cgm.find_hierarchy(live, mounts.read(live))
    if ver is None:
        pytest.skip("no memory cgroup controller")
    top = os.path.join("/", m.rel, f"ksight-nlink-{os.getpid()}")
    made = []
    try:
        os.mkdir(top)
        made.append(top)
        assert os.stat(top).st_nlink == 2
        assert live.read_many(top.lstrip("/"), []).nlink == 2
        for i in range(3):
            os.mkdir(os.path.join(top, f"c{i}"))
            made.append(os.path.join(top, f"c{i}"))
        assert live.read_many(top.lstrip("/"), []).nlink == 5 == 2 + len(live.listdirs(top.lstrip("/")))
    finally:
        for d in reversed(made):
            os.rmdir(d)


def _stat_texts():
    from tests.conftest import corpus, corpus_files

    for tree in (corpus("pcp", "unpacked", "cgroups-root-001"), corpus("pcp", "unpacked", "cgroups-root-002"),
                 FIXTURES / "cgroup_v2"):
        # corpus_files never follows a link out of the tree (glob's ** does)
        for pat in ("**/memory.stat", "**/memory.oom_control", "**/memory.events*"):
            for p in corpus_files(pat, base=tree):
                yield p.read_bytes()


def test_c_space_kv_equals_fast_space_kv():
    import random

    from ksight import _procscan
    from ksight.sources._text import fast_space_kv

    texts = list(_stat_texts())
    assert len(texts) > 10
    odd = [b"", b"a 1", b"a 1\n", b"a  1\n", b" a 1\n", b"a 1 \n", b"a -1\n", b"a +1\n", b"a 0x1\n",
           b"a 1\r\n", b"a\t1\n", b"a 1\n\n", b"a 1\nb\n", b"a 18446744073709551615\n",
           b"a 18446744073709551616\n", b"a 000000000000000000001\n", b"a 00000000000000000001\n",
           b"a 1\na 2\n", b"\x1ca 1\n", b"a\x1f 1\n", b"\xc3\xa9 1\n", b"a \xd9\xa1\n", b"a\x00 1\n",
           b"a 1\x0b\n", b"a 99999999999999999999\n", b"name 12\nother 34\n"]
    rnd = random.Random(7)
    fuzz = []
    for t in texts:
        for _ in range(30):
            b = bytearray(t)
            for _ in range(rnd.randint(1, 3)):
                i = rnd.randrange(len(b))
                op = rnd.randrange(3)
                if op == 0:
                    b[i] = rnd.choice(b" \n\t0123456789x-\x1c\x80")
                elif op == 1:
                    del b[i]
                else:
                    b[i:i] = bytes([rnd.randrange(256)])
            fuzz.append(bytes(b))
    seen_none = seen_dict = 0
    for b in texts + odd + fuzz:
        want = fast_space_kv(b.decode("utf-8", "replace"))
        got = _procscan.space_kv(b)
        if got is None:
            seen_none += 1
            assert want is None or not b.isascii(), b  # only ASCII is taken in C
        else:
            seen_dict += 1
            assert got == want, b
            assert all(type(k) is str and type(v) is int for k, v in got.items())
    assert seen_none > 10 and seen_dict > 10
    for b in texts:  # and the parser the walk uses gives parse_stat's dict
        assert cgm._kv_bytes(b, "x") == cgm.parse_stat(b.decode(), "x")
    from ksight.errors import ParseError

    with pytest.raises(ParseError):
        cgm._kv_bytes(b"a b c\n", "x")


def test_c_space_kv_keys_kept_between_calls_stay_right():
    """space_kv keeps its key strings between calls (one per slot, chosen by a hash and compared
    in full): the same names give the same str objects; many more names than slots, names that
    share a slot, and names that differ in length or one byte still give exactly their text."""
    from ksight import _procscan

    a = _procscan.space_kv(b"cache 1\nrss 2\ntotal_cache 3\n")
    b = _procscan.space_kv(b"total_cache 30\nrss 20\ncache 10\n")
    assert a == {"cache": 1, "rss": 2, "total_cache": 3}
    assert b == {"total_cache": 30, "rss": 20, "cache": 10}
    assert all(any(k is j for j in b) for k in a)  # the same strings, reused
    for round_ in range(3):
        names = [f"k{i}" for i in range(2000)] + ["k", "k1" * 30, "k01", "K1", "k1x"]
        text = "".join(f"{n} {i + round_}\n" for i, n in enumerate(names)).encode()
        got = _procscan.space_kv(text)
        assert list(got.items()) == [(n, i + round_) for i, n in enumerate(names)]
        one = _procscan.space_kv(b"k1 5\n")  # after the slot may have been taken by another
        assert one == {"k1": 5} and type(next(iter(one))) is str
