"""Start-up cost of commands: what `ksight pmap` and `ksight check` import, the console script's
exit, and the dead-run hook every command runs first (issues 7 and 10, docs/benchmarks.md).

The import sets are taken in a fresh interpreter that runs the command through cli.main.main,
so a module imported eagerly again (the archive reader and tarfile without --from, the counter
tables on pmap's path, rich) fails here instead of slowing every run silently."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# run the command, then write the names of every imported module to the file argv[1]. The dead
# run hook is disabled: what it imports depends on what other runs left in /run/ksight, and it
# is tested on its own below.
PROBE = """
import json, sys
import ksight.cli.main as m
m._after_dead_runs = lambda command: None
out, argv = sys.argv[1], sys.argv[2:]
rc = m.main(argv)
with open(out, "w") as f:
    json.dump({"rc": rc, "modules": sorted(sys.modules)}, f)
"""

# not needed by either command run live: capture readers, the rich text layer, the sample codec
NEVER_LIVE = ("tarfile", "zstandard", "rich", "msgspec", "ksight.fs.archive", "ksight.fs.bundle",
              "ksight.store", "ksight.store.samples", "ksight.trace.leftovers", "pandas",
              "pyarrow")
# pmap reads one process's smaps: no rules, no counter tables, no sockets, no system sources
NOT_PMAP = NEVER_LIVE + ("ksight.model.counters", "ksight.model.series", "ksight.diagnose",
                         "ksight.diagnose.engine", "ksight.collect.sockets",
                         "ksight.collect.sockdiag", "ksight.sources.meminfo",
                         "ksight.sources.vmstat", "ksight.sources.proc_pid.fd", "socket",
                         "ksight.sources.proc_pid.cgroup", "ksight.sources.proc_pid.oom")


def modules_of(tmp_path, *argv: str, src: str = SRC) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    env = dict(os.environ, PYTHONPATH=src)
    p = subprocess.run([sys.executable, "-c", PROBE, str(out), *argv], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
    assert out.exists(), p.stderr
    got = json.loads(out.read_text())
    return got["rc"], set(got["modules"])


def test_pmap_imports_only_what_it_uses(tmp_path):
    rc, mods = modules_of(tmp_path, "pmap", str(os.getpid()))
    assert rc == 0
    # what it does need was imported (the probe ran the command, not an early exit)
    assert {"ksight.collect.processes", "ksight.views.pmap", "ksight.render.pmap_text",
            "ksight.sources.proc_pid.smaps"} <= mods
    assert sorted(mods & set(NOT_PMAP)) == []


# nor by check: shutil (argparse's help formatter asks it the terminal width; it imports lzma,
# bz2, zlib), socket.py (its IntEnums; the C _socket does)
NOT_CHECK = NEVER_LIVE + ("shutil", "lzma", "bz2", "socket")


def test_check_imports_no_capture_reader_live(tmp_path):
    rc, mods = modules_of(tmp_path, "check", "--json", "--interval", "1", "--step", "1")
    assert rc in (0, 1, 2, 3)  # a verdict (3: incomplete on a VM missing sources)
    assert {"ksight.diagnose.engine", "ksight.model.counters", "ksight.collect.sockdiag",
            "_socket"} <= mods
    assert sorted(mods & set(NOT_CHECK)) == []


@pytest.mark.parametrize("columns", ["100", "57", "", "x"])
def test_help_is_as_wide_as_argparse_makes_it(columns):
    """The help formatter that does not import shutil wraps as argparse's own: $COLUMNS, else
    the terminal, else 80 (here stdout is a pipe), less 2."""
    import argparse

    from ksight.cli.main import _formatter_class, build_parser

    env = dict(os.environ, COLUMNS=columns)
    old = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        for only in ("check", "trace", ""):
            p = build_parser(only)
            ours = p.format_help()
            p.formatter_class = argparse.RawDescriptionHelpFormatter
            assert ours == p.format_help()
        assert _formatter_class(argparse.HelpFormatter)("x")._width == \
            argparse.HelpFormatter("x")._width
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_process_annotations_resolve_without_the_lazy_parsers_loaded():
    # collect.processes imports the cgroup and oom parsers on first use; the sample codec
    # (store/samples) still resolves Process's annotations to the parsers' own classes
    code = ("import sys, typing\n"
            "from ksight.collect.processes import Process\n"
            "before = 'ksight.sources.proc_pid.cgroup' in sys.modules\n"
            "h = typing.get_type_hints(Process)\n"
            "from ksight.sources.proc_pid.cgroup import PidCgroups\n"
            "from ksight.sources.proc_pid.oom import OomInfo\n"
            "from ksight.sources.proc_pid.maps import Maps\n"
            "assert h['cgroup'] == PidCgroups | None and h['oom'] == OomInfo | None\n"
            "assert h['maps'] == Maps | None\n"
            "print(before)\n")
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=SRC),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_fs_reexports_archive_root_lazily():
    import ksight.fs as fs
    from ksight.fs import ArchiveRoot
    from ksight.fs.archive import ArchiveRoot as direct

    assert ArchiveRoot is direct and fs.ArchiveRoot is direct
    assert "ArchiveRoot" in fs.__all__
    with pytest.raises(AttributeError):
        fs.NoSuchRoot  # noqa: B018


# ---- the console script's exit -------------------------------------------------------------
ENTRY = "import sys; sys.argv = ['ksight'] + sys.argv[1:]; from ksight.cli.main import entry; entry()"


def run_entry(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ENTRY, *argv], env=dict(os.environ, PYTHONPATH=SRC),
                          capture_output=True, text=True, timeout=60, **kw)


def test_entry_fast_exit_flushes_the_whole_map():
    p = run_entry("pmap", str(os.getpid()))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    # as pmap -x: "PID:   command", the header, one row per mapping, the totals; then by kind
    assert lines[0].startswith(f"{os.getpid()}:")
    with open(f"/proc/{os.getpid()}/maps") as f:
        n = sum(1 for _ in f)
    rows = [ln for ln in lines[2:] if len(ln) > 16 and ln[16] == " " and ln[0] in "0123456789abcdef"]
    assert abs(len(rows) - n) <= 5  # this process may map or unmap a few regions meanwhile
    assert any(ln.startswith("total kB") for ln in lines)
    assert lines[-1].split()[0] in ("heap", "stack", "anon", "vdso", "shm", "exe", "lib", "file")


def test_entry_fast_exit_keeps_the_exit_status_and_message():
    p = run_entry("pmap", "999999999")
    assert p.returncode == 3
    assert "no process 999999999" in p.stderr and "Traceback" not in p.stderr


def test_entry_fast_exit_reader_gone():
    # `ksight pmap PID | head -1`: the reader closes the pipe early; no traceback, status 0
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-c", ENTRY, "pmap", str(os.getpid())],
                           env=dict(os.environ, PYTHONPATH=SRC), stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr


# ---- the dead-run hook ---------------------------------------------------------------------
def test_hook_skips_cleanup_only_while_every_owner_holds_its_record(tmp_path, monkeypatch):
    from ksight.cli import main as m

    monkeypatch.setattr(m, "STATE_DIR", str(tmp_path))
    rec = tmp_path / "12345-abcd.json"
    rec.write_text('{"owner": {"pid": 12345}, "entries": []}')
    fd = os.open(rec, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a live run holds its record (pids.Record._write)
        assert m._all_owners_alive([rec.name]) is True
        # a temp record (a writer killed while writing) or a second, unheld record: look
        (tmp_path / "1-x.json.ab.tmp").write_text("")
        assert m._all_owners_alive([rec.name, "1-x.json.ab.tmp"]) is False
        dead = tmp_path / "777-dead.json"
        dead.write_text("{}")
        assert m._all_owners_alive([rec.name, dead.name]) is False
        # the check left no lock behind on the dead one (the cleanup must be able to take it)
        fd2 = os.open(dead, os.O_RDONLY)
        fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd2)
    finally:
        os.close(fd)
    # the owner exited: its lock is gone, the cleanup must run
    assert m._all_owners_alive([rec.name]) is False


def test_hook_runs_cleanup_for_a_dead_record(tmp_path, monkeypatch):
    from ksight.cli import main as m
    from ksight.cli import cleanup

    calls = []
    monkeypatch.setattr(m, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cleanup, "reap_quietly", lambda: calls.append(1))
    m._after_dead_runs("pmap")  # an empty directory: the cleanup removes it
    assert calls == [1]
    live = tmp_path / "12345-abcd.json"
    live.write_text("{}")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        m._after_dead_runs("pmap")  # only a live run's record: the cleanup code is not loaded
        assert calls == [1]
        (tmp_path / "777-dead.json").write_text("{}")
        m._after_dead_runs("pmap")
        assert calls == [1, 1]
        m._after_dead_runs("cleanup")  # `ksight cleanup` does the job itself
        assert calls == [1, 1]
    finally:
        os.close(fd)
    monkeypatch.setattr(m, "STATE_DIR", str(tmp_path / "absent"))
    m._after_dead_runs("pmap")  # nothing recorded: one failed listdir
    assert calls == [1, 1]


# ---- the pmap view's per-mapping cache -----------------------------------------------------
TWO_SEGMENTS = """\
7f0000000000-7f0000004000 rw-s 00000000 00:01 98307                      /SYSV00000000 (deleted)
Rss:                   8 kB
7f0000010000-7f0000012000 rw-s 00000000 00:01 98308                      /SYSV00000000 (deleted)
Rss:                   4 kB
7f0000020000-7f0000021000 rw-s 00000000 00:01 5001                       /dev/zero (deleted)
Rss:                   4 kB
7f0000030000-7f0000031000 rw-s 00000000 00:01 5002                       /dev/zero (deleted)
Rss:                   0 kB
"""


def test_pmap_view_names_each_sysv_segment_by_its_own_inode():
    # two SysV segments with the same path and device: the cache of per-mapping columns is
    # keyed without the inode, yet pmap -x names each by its shmid (98307 = 0x18003,
    # 98308 = 0x18004), and each mapping keeps its own inode
    from ksight.views.pmap import parse_smaps

    maps, _ = parse_smaps(TWO_SEGMENTS, "smaps", None)
    assert [(m.name, m.inode, m.kbytes, m.rss_kb) for m in maps] == [
        ("  [ shmid=0x18003 ]", 98307, 16, 8), ("  [ shmid=0x18004 ]", 98308, 8, 4),
        ("zero (deleted)", 5001, 4, 4), ("zero (deleted)", 5002, 4, 0)]
    assert [m.kind for m in maps] == ["shm"] * 4


def test_pmap_mapping_dicts_hold_exactly_the_fields_in_order():
    # mapping_dicts copies each Mapping's __dict__: it must be the dataclass's fields, in their
    # order, whichever way the Mapping was made (mappings_of's template, or __init__)
    import dataclasses

    from ksight.views.pmap import Mapping, Pmap, mapping_dicts, parse_smaps

    names = [f.name for f in dataclasses.fields(Mapping)]
    maps, _ = parse_smaps(TWO_SEGMENTS, "smaps", None)
    made = Mapping(1, 2, 0, None, None, "r----", "  [ anon ]", "", "r---", 0, False, True, "anon")
    pm = Pmap(1, "x", tuple(maps) + (made,), 0, 0, 0, None)
    got = mapping_dicts(pm)
    assert [list(d) for d in got] == [names] * 5
    assert got[0]["name"] == "  [ shmid=0x18003 ]" and got[0]["inode"] == 98307
    assert got[4] == {"start": 1, "end": 2, "kbytes": 0, "rss_kb": None, "dirty_kb": None,
                      "mode": "r----", "name": "  [ anon ]", "path": "", "perms": "r---",
                      "inode": 0, "shared": False, "anonymous": True, "kind": "anon",
                      "swap_kb": None, "pss_kb": None}
    got[0]["name"] = "changed"  # a copy: the Mapping is not changed through it
    assert maps[0].name == "  [ shmid=0x18003 ]"
