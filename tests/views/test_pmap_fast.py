"""`ksight pmap PID`'s fast path (cli/pmap.fast -> views/pmap_fast -> collect/pmap_live ->
ksight._smapspmap -> render/pmap_text.render_fast) against the ordinary path (smaps.parse ->
views/pmap.mappings_of -> render/pmap_text.render): the same text for every smaps of the corpora,
hand-written edge cases, text cut anywhere between reads, and live processes; text it does not
take (not the kernel's plain form) goes to the ordinary path, which parses it or names the line."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import textwrap

import pytest

from ksight.render.pmap_text import render, render_fast
from ksight.views import pmap, pmap_fast
from tests.conftest import corpus_files

try:
    from ksight import _smapspmap as C
except ImportError:  # pragma: no cover - depends on the build
    C = None
needs_c = pytest.mark.skipif(C is None, reason="ksight._smapspmap not built (setup.py build_ext)")
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "src")


def ordinary_text(data: bytes, exe: str | None, pid: int = 7, command: str = "prog x") -> str:
    maps, guessed = pmap.parse_smaps(data.decode("utf-8", "replace"), "smaps", exe)
    notes = ["proc/PID/exe unreadable: the first file mapping is taken as the executable"] \
        if guessed else []
    tk = sum(m.kbytes for m in maps)
    tr = sum(m.rss_kb or 0 for m in maps)
    td = sum(m.dirty_kb or 0 for m in maps)
    buf = io.StringIO()
    render(pmap.Pmap(pid, command, tuple(maps), tk, tr, td, exe, tuple(notes)), buf)
    return buf.getvalue()


def fast_text(got, exe: str | None, pid: int = 7, command: str = "prog x",
              binary: bool = False) -> str:
    fp = pmap_fast.from_table(pid, command, exe, got)
    if not binary:
        buf = io.StringIO()
        render_fast(fp, buf)
        return buf.getvalue()
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    render_fast(fp, out)  # the rows go to out.buffer, the rest through the text layer
    out.flush()
    return raw.getvalue().decode("utf-8")


def corpus_smaps():
    files = [p for p in corpus_files("**/smaps") if p.name == "smaps"]
    assert len(files) >= 4
    return files


@needs_c
def test_kinds_are_the_views():
    assert C.KINDS == pmap.KINDS


@needs_c
@pytest.mark.parametrize("path", corpus_smaps(), ids=lambda p: str(p).split("corpora/")[-1])
@pytest.mark.parametrize("exe", [None, "first-file"])
def test_corpora_print_what_the_ordinary_path_prints(path, exe):
    data = path.read_bytes()
    if exe == "first-file":  # the program file named by exe, not guessed
        exe = next(m.path for m in pmap.parse_smaps(data.decode(), "x", None)[0]
                   if m.path.startswith("/"))
    got = C.table(data, exe)
    assert got is not None, "the kernel's plain form must take the fast path"
    want = ordinary_text(data, exe)
    assert fast_text(got, exe) == want
    assert fast_text(C.table(data, exe), exe, binary=True) == want


@needs_c
@pytest.mark.parametrize("path", corpus_smaps()[:3], ids=lambda p: str(p).split("corpora/")[-1])
@pytest.mark.parametrize("chunk", [64, 100, 777, 3072, 32768])
def test_read_in_any_chunks_is_the_same(tmp_path, path, chunk):
    # `chunk`-byte reads cut lines anywhere; a file of many copies takes many reads
    data = path.read_bytes() * 20
    f = tmp_path / "smaps"
    f.write_bytes(data)
    got = C.read_table(str(f), None, chunk)
    want = C.table(data, None)
    assert got[1:] == want[1:]
    assert C.rows(got[0], 16, 7, 7, 7, 5, 7) == C.rows(want[0], 16, 7, 7, 7, 5, 7)
    assert fast_text(got, None) == ordinary_text(data, None)


SMAPS = textwrap.dedent("""\
    55d0a0000000-55d0a0002000 r--p 00000000 fd:01 1234                       /usr/bin/prog
    Size:                  8 kB
    Rss:                   8 kB
    Shared_Dirty:          0 kB
    Private_Dirty:         0 kB
    55d0a1000000-55d0a1021000 rw-p 00000000 00:00 0                          [heap]
    Rss:                  12 kB
    Shared_Dirty:          0 kB
    Private_Dirty:        12 kB
    THPeligible:\t\t0
    7f0000000000-7f0000004000 rw-s 00000000 00:01 98307                      /SYSV00000000 (deleted)
    Rss:                   8 kB
    Shared_Dirty:          8 kB
    7f0000008000-7f000000a000 rw-s 00000000 00:01 98308                      /SYSV00000000 (deleted)
    Rss:                   4 kB
    7f000000c000-7f000000d000 rw-s 00000000 08:01 98309                      /SYSV00000000 (deleted)
    Rss:                   4 kB
    7f0000010000-7f0000011000 r-xp 00000000 fd:01 77                         /usr/lib/libfoo.so.1
    Rss:                   4 kB
    7f0000020000-7f0000021000 rw-s 00000000 00:01 5001                       /dev/zero (deleted)
    Rss:                   4 kB
    Private_Dirty:         4 kB
    7f0000030000-7f0000031000 rw-p 00000000 00:01 5002                       /dev/zero (deleted)
    7f0000040000-7f0000041000 rw-s 00000000 00:1a 6                          /dev/shm/seg one
    Rss:                   4 kB
    7f0000050000-7f0000051000 rw-s 00000000 00:01 7                          /memfd:pool (deleted)
    Rss:                   4 kB
    7f0000060000-7f0000061000 r--p 00000000 fd:01 8                          /data/dir/
    Rss:         123456789012 kB
    7f0000070000-7f0000071000 r--p 00000000 fd:01 9                          /data/notes.txt
    Rss:                   4 kB
    7f0000080000-7f0000081000 rw-p 00000000 00:00 0                          [anon:pool]
    Rss:                   4 kB
    7f0000090000-7f0000091000 r--p 00000000 00:00 0                          [vvar]
    7f00000a0000-7f00000a2000 r-xp 00000000 00:00 0                          [vdso]
    Rss:                   4 kB
    7f00000b0000-7f00000b1000 rw-p 00000000 00:00 0                          weird
    Rss:                   0 kB
    7f00000c0000-7f00000c1000 rw-p 00000000 00:00 0                          [
    7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
    Rss:                  16 kB
    Shared_Dirty:          2 kB
    Private_Dirty:        14 kB
    Rss:                  20 kB
    VmFlags: rd wr mr mw me gd ac
    ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
    Rss:                   0 kB
    """).encode()


@needs_c
@pytest.mark.parametrize("exe", [None, "/usr/bin/prog", "/data/notes.txt", "/usr/bin/caf\u00e9"])
def test_every_naming_and_class_rule(exe):
    # SysV segments named by their inode (major 0) or their file (major 8), /dev/zero shared and
    # private, a path with a space, memfd, a directory path, a path without '/', "[", a number
    # wider than the columns, a repeated Rss (the last one counts), tabs after a colon, and
    # an exe that is not ASCII (matches nothing)
    got = C.table(SMAPS, exe)
    assert got is not None
    want = ordinary_text(SMAPS, exe)
    assert fast_text(got, exe) == want
    assert fast_text(got, exe, binary=True) == want
    assert "  [ shmid=0x18003 ]" in want and "  [ shmid=0x18004 ]" in want
    assert "SYSV00000000 (deleted)" in want and "seg one" in want and "123456789012" in want
    assert (got[6] is not None) == (exe is None)  # the first file mapping guessed


HEAD = b"7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
BODY = b"Size:               4096 kB\nRss:                 512 kB\nVmFlags: rd wr mr \n"


@needs_c
@pytest.mark.parametrize("data,why", [
    (HEAD + BODY[:-1], "cut: no newline at the end"),
    (BODY + HEAD, "a field before the first header"),
    (HEAD + b"Rss:   many kB\n", "a field that is not a number"),
    (HEAD + b"garbage line\n", "neither a header nor 'Name: N kB'"),
    (b"7f00-zz rw-p 00000000 00:00 0 \nRss: 4 kB\n", "a bad address"),
    (HEAD.replace(b" \n", b" /tmp/caf\xc3\xa9\n") + BODY, "not ASCII"),
    (HEAD + BODY.replace(b"512", b"12345678901234567890"), "20 digits"),
    (HEAD.replace(b" 0 ", b"\t0 ") + BODY, "a tab in a header"),
    (HEAD + b"VmFlags:\trd\n", "a tab in VmFlags"),
    (HEAD.replace(b"7f0000000000-", b"F7f000000000-") + BODY, "upper-case hex first"),
    (b"7f0000400000-7f0000000000 rw-p 00000000 00:00 0 \n", "end before start"),
    (HEAD + b"Bad Name: 4 kB\n", "a space in a field name"),
    (b"", "no mapping at all (the ordinary path says so)"),
])
def test_what_it_does_not_take_goes_to_the_ordinary_path(tmp_path, data, why):
    assert C.table(data, None) is None, why
    f = tmp_path / "smaps"
    f.write_bytes(data)
    assert C.read_table(str(f), None, 3072) is None, why


@needs_c
def test_damaged_text_is_refused_or_printed_as_the_ordinary_path_prints_it():
    # bounded fuzz: single-byte changes, cuts and duplicated lines of the hand-written text;
    # whatever the fast path takes, it prints as the reference does (or the reference refuses
    # it too: never a table where `ksight pmap` would have said "malformed")
    from ksight.errors import ParseError

    rnd = random.Random(10)
    lines = SMAPS.splitlines(keepends=True)
    for _ in range(400):
        data = bytearray(SMAPS)
        op = rnd.randrange(3)
        if op == 0:
            data[rnd.randrange(len(data))] = rnd.choice(b" \t\n:-0aZ\x00\xff/[]s")
        elif op == 1:
            data = data[:rnd.randrange(len(data))]
        else:
            i = rnd.randrange(len(lines))
            data = bytearray(b"".join(lines[:i] + [lines[i]] + lines[i:]))
        data = bytes(data)
        got = C.table(data, None)
        if got is None:
            continue
        try:
            want = ordinary_text(data, None)
        except ParseError:
            pytest.fail(f"the fast path took text the reference refuses: {data!r}")
        assert fast_text(got, None) == want, data


@needs_c
def test_reader_errors(tmp_path):
    with pytest.raises(OSError):
        C.read_table(str(tmp_path / "absent"), None, 3072)
    with pytest.raises(ValueError):
        C.read_table("/dev/null", None, 10)
    assert C.read_table("/dev/null", None, 3072) is None  # empty: no mapping
    f = tmp_path / "smaps"
    f.write_bytes(SMAPS * 200)
    assert C.read_table(str(f), None, 3072)[1] == C.table(SMAPS, None)[1] * 200 == 19 * 200


CHILD = textwrap.dedent("""
    import mmap, time
    keep = []
    for i in range(300):
        m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | (mmap.PROT_WRITE if i % 2 else 0))
        m[0:0]
        keep.append(m)
    s = mmap.mmap(-1, 4 * 4096, flags=mmap.MAP_SHARED); s[:4096] = b"y" * 4096
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", CHILD, "arg\tnext"], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        yield p.pid
    finally:
        p.kill()  # only the process this test started, by its Popen
        p.wait(timeout=10)


def run(*argv: str) -> subprocess.CompletedProcess:
    # the console script's way in (cli.main.entry), as `ksight pmap` runs
    code = "import sys; sys.argv = ['ksight'] + sys.argv[1:]; from ksight.cli.main import entry; entry()"
    return subprocess.run([sys.executable, "-c", code, *argv], env=dict(os.environ, PYTHONPATH=SRC),
                          capture_output=True, text=True, timeout=60)


def run_main(*argv: str) -> subprocess.CompletedProcess:
    code = "import sys; from ksight.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], env=dict(os.environ, PYTHONPATH=SRC),
                          capture_output=True, text=True, timeout=60)


@needs_c
def test_live_fast_path_prints_what_the_collector_path_prints(child):
    fp = pmap_fast.build(child)
    assert fp is not None and fp.n > 300
    buf = io.StringIO()
    render_fast(fp, buf)
    fast = buf.getvalue()
    assert fast.splitlines()[0] == f"{child}:   {sys.executable} -c {CHILD} arg?next".replace(
        "\n", "?").rstrip()
    for _ in range(3):  # bounded: a page of the child may still come in between the two reads
        p = run_main("pmap", str(child))
        assert p.returncode == 0, p.stderr
        if p.stdout == fast:
            break
        fast = run("pmap", str(child)).stdout
    assert p.stdout == fast
    e = run("pmap", str(child))
    assert e.returncode == 0 and e.stdout == p.stdout and e.stderr == ""


@needs_c
def test_entry_takes_the_fast_path_only_for_pid_alone(child, tmp_path):
    # what the fast path imports: none of argparse, the collector, the parsers, dataclasses
    out = tmp_path / "mods"
    probe = ("import os, sys\n"
             "out, sys.argv = sys.argv[1], ['ksight'] + sys.argv[2:]\n"
             "import ksight.cli.main as m\n"
             # what the dead-run hook imports depends on what other runs left in /run/ksight
             # (tests/test_startup_imports.py tests it on its own)
             "m._after_dead_runs = lambda command: None\n"
             "def leave(rc):\n"
             "    with open(out, 'w') as f:\n"
             "        f.write(' '.join(sorted(sys.modules)))\n"
             "    sys.stdout.flush()\n"
             "    os._exit(rc)\n"
             "m._exit_now = leave\n"
             "m.entry()\n")
    p = subprocess.run([sys.executable, "-c", probe, str(out), "pmap", str(child)],
                       env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    mods = set(out.read_text().split())
    assert {"ksight.views.pmap_fast", "ksight.collect.pmap_live", "ksight._smapspmap"} <= mods
    assert not mods & {"argparse", "dataclasses", "typing", "json", "ksight.collect.collector",
                       "ksight.collect.processes", "ksight.views.pmap", "ksight.fs",
                       "ksight.sources.proc_pid.smaps"}
    # --json, --help, a bad PID, a PID that is gone: the ordinary path, with its messages
    j = run("pmap", str(child), "--json")
    assert j.returncode == 0 and j.stdout.startswith("{")
    h = run("pmap", "--help")
    assert h.returncode == 0 and h.stdout.startswith("usage: ksight pmap")
    for bad, msg in (("0", "positive"), ("-3", "PID"), ("abc", "invalid int"),
                     ("999999999", "no process 999999999")):
        b = run("pmap", bad)
        assert b.returncode == 3 and msg in b.stderr and "Traceback" not in b.stderr, b.stderr


def test_without_the_c_extension_the_ordinary_path_runs(monkeypatch, child):
    from ksight.cli import pmap as cli_pmap
    from ksight.collect import pmap_live

    monkeypatch.setattr(pmap_live, "_smapspmap", None)
    assert pmap_fast.build(child) is None
    assert cli_pmap.fast([str(child)]) is None
    assert cli_pmap.fast([str(child), "--json"]) is None
    assert cli_pmap.fast(["٣"]) is None  # a digit, not ASCII: argparse's int() decides


@needs_c
def test_a_full_disk_is_said_not_a_traceback(child):
    code = "import sys; sys.argv = ['ksight'] + sys.argv[1:]; from ksight.cli.main import entry; entry()"
    with open("/dev/full", "w") as full:
        p = subprocess.run([sys.executable, "-c", code, "pmap", str(child)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=SRC))
    assert p.returncode == 120 and "cannot write the output" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_the_ksight_command_is_a_script_that_imports_only_the_entry_point():
    # scripts/ksight (setup.py scripts=), not a [project.scripts] entry point: pip's wrapper for
    # one imports re before ksight (~4.8 ms of every run; docs/benchmarks.md, issue-10 pmap)
    import ast
    from pathlib import Path

    root = Path(SRC).parent
    path = root / "scripts" / "ksight"
    text = path.read_text()
    assert text.startswith("#!python\n")  # made the venv's interpreter when installed
    imports = [n for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [(getattr(n, "module", None), [a.name for a in n.names]) for n in imports] == \
        [("ksight.cli.main", ["entry"])]
    assert '"scripts/ksight"' in (root / "setup.py").read_text()
    assert "\n[project.scripts]" not in (root / "pyproject.toml").read_text()  # no second ksight
    p = subprocess.run([sys.executable, str(path), "--version"], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, PYTHONPATH=SRC))
    assert p.returncode == 0 and p.stdout.startswith("ksight "), p.stderr
