"""perf script parsing, stack folding, flame graph SVG (text captured from perf 6.1 here)."""

from collections import Counter

import pytest

from ksight.errors import ParseError
from ksight.trace import flame
from ksight.trace.perf import fold, folded_text, parse_folded, parse_script
from ksight.trace.stacks import build

SCRIPT = """\
swapper     0/0      1914.521016: cpu-clock:pppH: 
\tffffffff821f2c2b pv_native_safe_halt ([kernel.kallsyms])
\tffffffff821f4735 default_idle ([kernel.kallsyms])
\tffffffff812faf53 common_startup_64 ([kernel.kallsyms])

python3 12181/12181  1916.898677: syscalls:sys_enter_mmap: 
\t          1019b3 __mmap (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t               0 [unknown] ([unknown])

my prog 7/8  1916.9: 10101 cpu-clock:
\t          1019b3 work+0x13 (/tmp/a.out)
\t          1019b0 main (/tmp/a.out)
"""


def test_parse_script():
    s = parse_script(SCRIPT)
    assert len(s) == 3
    assert (s[0].comm, s[0].pid, s[0].event) == ("swapper", 0, "cpu-clock:pppH")
    assert s[0].frames() == ["pv_native_safe_halt", "default_idle", "common_startup_64"]
    assert s[1].event == "syscalls:sys_enter_mmap" and s[1].stack[0] == ("__mmap", "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert (s[2].comm, s[2].pid, s[2].tid) == ("my prog", 7, 8) and s[2].frames() == ["work", "main"]


def test_fold_and_roundtrip():
    f = fold(parse_script(SCRIPT) * 2)
    assert f["swapper;common_startup_64;default_idle;pv_native_safe_halt"] == 2
    assert f["my prog;main;work"] == 2
    assert parse_folded(folded_text(f)) == f
    # self time by hand: the swapper sample is idle (halt), __mmap and work were leaves once
    p = build(parse_script(SCRIPT), seconds=1)
    assert p.idle_samples == 1
    assert {f.function: f.self_samples for f in p.functions} == {"__mmap": 1, "work": 1}


@pytest.mark.parametrize("bad", ["\tffff foo (bar)\n", "not a header line\n"])
def test_bad_script(bad):
    with pytest.raises(ParseError):
        parse_script(bad)


def test_bad_folded():
    with pytest.raises(ParseError):
        parse_folded("a;b;c notanumber\n")


def test_svg():
    out = flame.svg(Counter({"a;b;c": 3, "a;d": 1}), title="t<1>")
    assert out.startswith("<svg") and out.rstrip().endswith("</svg>")
    assert "t&lt;1&gt;" in out
    assert "<title>a (4 samples, 100.00%)</title>" in out
    assert "<title>c (3 samples, 75.00%)</title>" in out
