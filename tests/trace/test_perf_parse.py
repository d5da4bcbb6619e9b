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


# perf 6.1's stderr for `perf record -a` as nobody with kernel.perf_event_paranoid = 2 (captured
# here with `setpriv --reuid=65534 perf record -q -o /dev/null -F 99 -a -- sleep 0.1`)
PARANOID = """\
Error:
Access to performance monitoring and observability operations is limited.
Consider adjusting /proc/sys/kernel/perf_event_paranoid setting to open
access to performance monitoring and observability operations for processes
without CAP_PERFMON, CAP_SYS_PTRACE or CAP_SYS_ADMIN Linux capability.
perf_event_paranoid setting is 2:
"""


def test_refused_says_what_to_do():
    from ksight.trace.perf import refused

    msg = refused(PARANOID)
    assert msg.startswith("perf record failed: Error: Access to performance monitoring")
    assert "sysctl -w kernel.perf_event_paranoid=-1" in msg and "CAP_PERFMON" in msg
    other = refused("failed to mmap with 12 (Cannot allocate memory)\n")
    assert other == "perf record failed: failed to mmap with 12 (Cannot allocate memory)"


def test_requirements_name_the_command_to_rerun():
    from ksight.trace.perf import requirements

    needs = requirements(perf_ok=(True, "perf 6.1"), euid=1000, paranoid=2, kptr_restrict=0,
                         command="ksight check")
    assert [n.what for n in needs] == ["not root (kernel.perf_event_paranoid is 2)"]
    assert needs[0].fix.startswith("run `sudo ksight check`")
