"""The light smaps reader (ksight._smapslight, sources/proc_pid/smaps.parse_light: region
headers, Rss and Anonymous) against the reference parser (smaps.parse) on every smaps of the
corpora and live, against awk's sums of the raw text and the kernel's own smaps_rollup; on bad
input it hands the text to smaps.parse, which parses it the same way or names the bad line."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import smaps
from tests.conftest import corpus_files, need_tool

C = smaps._smapslight
needs_c = pytest.mark.skipif(C is None, reason=smaps.SMAPSLIGHT_ERROR or "not built")


def corpus_smaps():
    files = [p for p in corpus_files("**/smaps") if p.name == "smaps"]
    assert len(files) >= 4
    return files


def reference(data: bytes):
    return smaps.light(smaps.parse(data.decode("utf-8", "replace"), "x"))


@needs_c
@pytest.mark.parametrize("path", corpus_smaps(), ids=lambda p: str(p).split("corpora/")[-1])
def test_corpora_agree_with_the_reference(path):
    data = path.read_bytes()
    got = C.parse(data)
    assert got is not None, "the kernel's plain form must not need Python"
    assert got == reference(data) and len(got) > 3


@pytest.mark.parametrize("path", corpus_smaps(), ids=lambda p: str(p).split("corpora/")[-1])
def test_corpora_against_awk(path):
    # awk over the raw text, not our parser: the headers, and the sums of Rss and Anonymous
    awk = need_tool("awk")
    out = subprocess.run(
        [awk, '/^[0-9a-f]+-[0-9a-f]+ /{n++} /^Rss:/{r+=$2} /^Anonymous:/{a+=$2} '
              'END{print n+0, r+0, a+0}', str(path)],
        capture_output=True, text=True, check=True).stdout.split()
    got = smaps.parse_light(path.read_bytes())
    assert len(got) == int(out[0])
    assert sum(t[5] or 0 for t in got) == int(out[1])
    assert sum(t[6] or 0 for t in got) == int(out[2])


def test_procfs_corpus_first_region_by_hand():
    # procfs/proc/26231/smaps, its first region as printed there:
    # 00400000-00cb1000 r-xp 00000000 fd:01 952273  /bin/alertmanager; Rss 2952 kB, Anonymous 0
    (path,) = [p for p in corpus_smaps() if str(p).endswith("procfs/proc/26231/smaps")]
    first = smaps.parse_light(path.read_bytes())[0]
    assert first == (0x400000, 0xcb1000, "r-xp", 952273, "/bin/alertmanager", 2952, 0)


@needs_c
def test_live_agree_and_match_smaps_rollup():
    # a sleeping child's memory does not move: its summed Rss is smaps_rollup's (the kernel's)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        for _ in range(5):  # bounded: a late page-in between the two reads retries
            with open(f"/proc/{child.pid}/smaps", "rb") as f:
                data = f.read()
            with open(f"/proc/{child.pid}/smaps_rollup") as f:
                roll = smaps.parse_rollup(f.read())
            got = C.parse(data)
            assert got is not None and got == reference(data)
            if sum(t[5] for t in got) == roll.rss_kb:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"summed Rss {sum(t[5] for t in got)} != smaps_rollup {roll.rss_kb}")
        assert sum(t[6] for t in got) == roll.anonymous_kb
    finally:
        child.kill()
        child.wait()
    checked = 0
    for pid in [os.getpid(), 1] + [int(n) for n in os.listdir("/proc") if n.isdigit()][:30]:
        try:
            with open(f"/proc/{pid}/smaps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        got = C.parse(data)
        assert got is not None and got == reference(data), pid
        checked += 1
    assert checked >= 2


HEAD = b"7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
BODY = b"Size:               4096 kB\nRss:                 512 kB\nAnonymous:           500 kB\n" \
       b"VmFlags: rd wr mr mw me ac sd \n"


@pytest.mark.parametrize("data,why", [
    (HEAD + BODY[:-1], "cut: no newline at the end"),
    (BODY + HEAD, "a field before the first header"),
    (HEAD + b"Rss:   many kB\n", "a known field that is not a number"),
    (HEAD + b"garbage line\n", "neither a header nor 'Name: N kB'"),
    (b"7f00-zz rw-p 00000000 00:00 0 \nRss: 4 kB\n", "a bad address"),
])
def test_bad_input_is_a_parse_error(data, why):
    with pytest.raises(ParseError):
        smaps.parse_light(data)
    if C is not None:
        assert C.parse(data) is None, why


@pytest.mark.parametrize("data,handed_back", [
    (HEAD.replace(b" \n", b"            /tmp/caf\xc3\xa9 (deleted)\n") + BODY, True),  # non-ASCII
    (HEAD + BODY.replace(b"512", b"12345678901234567890"), True),  # 20 digits: past C's range
    (HEAD.replace(b" 0 ", b"\t0 ") + BODY, True),  # a tab in a header
    (HEAD + b"Rss:4 kB\nTHPeligible:\t\t0\n", False),  # no space after the colon; tabs (4.x)
    (HEAD + BODY + HEAD.replace(b"7f0000000000-7f0000400000", b"7f0000400000-7F0000401000")
     + BODY, False),  # upper-case hex
])
def test_odd_but_valid_text_reads_as_the_reference_reads_it(data, handed_back):
    if C is not None:
        assert (C.parse(data) is None) == handed_back
    assert smaps.parse_light(data) == reference(data)


def test_the_plain_form_by_hand(monkeypatch):
    text = (HEAD + BODY + b"7ffd0000-7ffd2000 rw-p 00000000 00:00 0                          "
            b"[stack]\nRss:                   8 kB\n")
    want = [(0x7f0000000000, 0x7f0000400000, "rw-p", 0, "", 512, 500),
            (0x7ffd0000, 0x7ffd2000, "rw-p", 0, "[stack]", 8, None)]
    assert smaps.parse_light(text) == want
    assert smaps.parse_light(b"") == []
    monkeypatch.setattr(smaps, "_smapslight", None)  # without the C reader: the same
    assert smaps.parse_light(text) == want
