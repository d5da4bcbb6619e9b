"""The C smaps parser (ksight._smapsparse) against the Python parser (sources/proc_pid/smaps.parse,
the reference): the same Smaps, field for field, on every smaps of the corpora, live on this
machine and on a process with thousands of mappings; and on bad or unusual input it hands the
text back (None), so that parse() either parses it the same way or names the bad line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import smaps
from tests.conftest import corpus_files

C = smaps._smapsparse
pytestmark = pytest.mark.skipif(C is None, reason=smaps.SMAPSPARSE_ERROR or "not built")


def c_parse(data: bytes):
    return C.parse(data, smaps.Region, smaps.Smaps, tuple(smaps._REGION.items()))


def same(a: smaps.Smaps, b: smaps.Smaps) -> None:
    assert a == b  # every compared field: addresses, perms, path, typed sizes, vm_flags
    assert [dict(r.fields) for r in a.regions] == [dict(r.fields) for r in b.regions]
    assert [type(r) for r in a.regions] == [smaps.Region] * len(a.regions)
    assert all(r.__dict__.keys() == s.__dict__.keys() or set(r.__dict__) == set(s.__dict__)
               for r, s in zip(a.regions, b.regions))


def corpus_smaps():
    files = [p for p in corpus_files("**/smaps") if p.name == "smaps"]
    assert len(files) >= 4
    return files


@pytest.mark.parametrize("path", corpus_smaps(), ids=lambda p: str(p).split("corpora/")[-1])
def test_corpora_agree(path):
    data = path.read_bytes()
    py = smaps.parse(data.decode("utf-8", "replace"), "x")
    got = c_parse(data)
    assert got is not None, "the kernel's plain form must not need Python"
    same(got, py)
    assert len(py.regions) > 3


def test_live_agree():
    pids = [os.getpid(), 1] + [int(n) for n in os.listdir("/proc") if n.isdigit()][:40]
    checked = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        got = c_parse(data)
        assert got is not None, pid
        same(got, smaps.parse(data.decode("utf-8", "replace"), "x"))
        checked += 1
    assert checked >= 1


def test_many_mappings_agree():
    code = ("import mmap, time\nkeep=[mmap.mmap(-1, 4096, prot=mmap.PROT_READ|(mmap.PROT_WRITE "
            "if i % 2 else 0)) for i in range(3000)]\nprint('ready', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        with open(f"/proc/{p.pid}/smaps", "rb") as f:
            data = f.read()
    finally:
        p.kill()  # only the process this test started
        p.wait(timeout=10)
    got = c_parse(data)
    same(got, smaps.parse(data.decode(), "x"))
    assert len(got.regions) >= 3000
    assert smaps.parse_fast(data) == got


HEAD = b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
ODD = [
    (b"", "empty: no regions"),
    (HEAD + b"Rss:                   4 kB\nVmFlags: rd wr\n", "plain"),
    (HEAD + b"Rss:                   4 kB", "cut: no newline at the end"),
    (b"Rss:                   4 kB\n", "a field before the first header"),
    (HEAD + b"Rss:          4 MB\n", "another unit"),
    (HEAD + b"Rss:    99999999999999999999999 kB\n", "past 64 bits"),
    (HEAD + b"Rss\n", "no colon"),
    (HEAD + b"Rss:   x kB\n", "not a number"),
    (HEAD.replace(b"rw-p", b"rw-") + b"Rss: 4 kB\n", "perms of 3 characters"),
    (HEAD.replace(b" 0 \n", b" 0    /tmp/caf\xc3\xa9 (deleted)\n"), "non-ASCII path"),
    (HEAD.replace(b" 0 \n", b" 0    /a path/with spaces   \n"), "spaces in the path"),
    (HEAD.replace(b"00:00", b"0000") + b"Rss: 4 kB\n", "dev without a colon"),
    (HEAD.replace(b"7f0000000000-", b"7f00000000000000000-"), "address of 19 digits"),
    (HEAD + b"THPeligible:    0\nProtectionKey:         0\n", "fields without a unit"),
    (HEAD + b"Rss:  4 kB\n\n   \nPss:  2 kB\n", "blank lines"),
    (HEAD + b"Rss:\t4 kB\nTHPeligible:\t\t0\n", "tabs after the colon (5.x kernels)"),
    (HEAD.replace(b" 0 \n", b" 0\t/lib/x\n"), "a tab in the header"),
    (HEAD + b"VmFlags:\trd\n", "a tab in VmFlags"),
    (HEAD + b"Rss: 4 kB\nRss: 8 kB\n", "a name twice: the last wins"),
    (HEAD + b"VmFlags: rd\nVmFlags: wr ex\n", "VmFlags twice"),
    (b"VmFlags: rd\n" + HEAD, "VmFlags before any header"),
]


@pytest.mark.parametrize("data,why", ODD, ids=[w for _, w in ODD])
def test_odd_input_agrees_or_is_handed_back(data, why):
    got = c_parse(data)
    try:
        py = smaps.parse(data.decode("utf-8", "replace"), "x")
    except ParseError:
        assert got is None, why  # Python names the bad line; C never makes up an answer
        return
    if got is not None:
        same(got, py)
    assert smaps.parse_fast(data, "x") == py


def test_parse_fast_raises_the_reference_error():
    with pytest.raises(ParseError, match="cut off"):
        smaps.parse_fast(HEAD + b"Rss:   4", "proc/1/smaps")
