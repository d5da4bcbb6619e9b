"""Issue 8.4: values that are cut off or impossible are errors naming the file and line, on
real kernel text with one value damaged."""

from __future__ import annotations

import re

import pytest

from ksight.errors import ParseError
from ksight.sources import loadavg, meminfo, pressure, uptime, vmstat
from ksight.sources._text import fast_space_kv, to_float, to_int
from tests.conftest import corpus_text

VM = corpus_text("node_exporter", "proc", "vmstat")
MI = corpus_text("node_exporter", "proc", "meminfo")


def _line_of(text: str, start: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(start))


def test_vmstat_cut_mid_number_is_refused_naming_the_line():
    # the case: a capture cut inside the last line ("pgfault 1" of a larger value)
    lines = VM.splitlines(keepends=True)
    k = _line_of(VM, "pgfault ")
    cut = "".join(lines[:k - 1]) + lines[k - 1][:len("pgfault 1")]
    assert vmstat.parse(VM).counters["pgfault"] >= 10  # the cut one reads as a single digit
    with pytest.raises(ParseError) as ei:
        vmstat.parse(cut)
    assert ei.value.path == "proc/vmstat" and ei.value.lineno == k
    assert "cut" in ei.value.message and lines[k - 1][:len("pgfault 1")] in str(ei.value)


def test_meminfo_negative_is_refused():
    k = _line_of(MI, "Dirty:")
    bad = MI.replace(MI.splitlines()[k - 1], "Dirty:           -32256 kB")
    with pytest.raises(ParseError) as ei:
        meminfo.parse(bad)
    assert ei.value.lineno == k and "negative" in ei.value.message


@pytest.mark.parametrize("val", ["18446744073709551616", "99999999999999999999999"])
def test_vmstat_above_2_64_is_refused(val):
    k = _line_of(VM, "pgfault ")
    bad = VM.replace(VM.splitlines()[k - 1], f"pgfault {val}")
    with pytest.raises(ParseError) as ei:
        vmstat.parse(bad)
    assert ei.value.lineno == k and "2^64" in str(ei.value) or "64 bits" in str(ei.value)


def test_2_64_minus_1_is_the_widest_counter():
    k = _line_of(VM, "pgfault ")
    ok = VM.replace(VM.splitlines()[k - 1], "pgfault 18446744073709551615")
    assert vmstat.parse(ok).counters["pgfault"] == 2**64 - 1


@pytest.mark.parametrize("val", ["1_0_0", "+77", "\u0661\u0662", "\uff11", "7\x00", "0x10"])
def test_python_int_forms_the_kernel_never_prints_are_refused(val):
    k = _line_of(MI, "MemFree:")
    bad = MI.replace(MI.splitlines()[k - 1], f"MemFree: {val} kB")
    with pytest.raises(ParseError) as ei:
        meminfo.parse(bad)
    assert ei.value.lineno == k
    k = _line_of(VM, "pgfault ")
    with pytest.raises(ParseError) as ei:
        vmstat.parse(VM.replace(VM.splitlines()[k - 1], f"pgfault {val}"))
    assert ei.value.lineno == k


def test_5000_digit_value_is_a_short_parse_error():
    k = _line_of(VM, "pgfault ")
    bad = VM.replace(VM.splitlines()[k - 1], "pgfault " + "9" * 5000)
    assert fast_space_kv(bad) is None
    with pytest.raises(ParseError) as ei:
        vmstat.parse(bad)
    assert ei.value.lineno == k
    assert len(ei.value.message) < 200 and len(ei.value.line) < 200


@pytest.mark.parametrize("text", ["inf 100.00\n", "nan 1.00\n", "1e9 1.00\n", "-5.00 1.00\n",
                                  "Infinity 1\n", "12.5e3 1\n", "\u0661.00 1\n"])
def test_uptime_non_finite_or_odd_is_refused(text):
    with pytest.raises(ParseError) as ei:
        uptime.parse(text)
    assert ei.value.path == "proc/uptime" and ei.value.lineno == 1


@pytest.mark.parametrize("tok", ["nan", "inf", "-0.5", "1e3"])
def test_loadavg_and_pressure_refuse_non_finite(tok):
    with pytest.raises(ParseError):
        loadavg.parse(f"{tok} 0.04 0.05 1/497 11947\n")
    psi = re.sub(r"avg10=[0-9.]+", f"avg10={tok}", corpus_text("procfs", "proc", "pressure", "memory"), count=1)
    with pytest.raises(ParseError) as ei:
        pressure.parse_resource(psi)
    assert ei.value.lineno == 1


def test_helpers_keep_what_the_kernel_prints():
    # the kernel's own forms still parse: %lu, signed where asked, "%lu.%02lu"
    assert to_int("0", "p") == 0 and to_int("-1", "p", signed=True) == -1
    assert to_float("12.34", "p") == 12.34 and to_float("7", "p") == 7.0
    with pytest.raises(ParseError):
        to_int("-1", "p")
    with pytest.raises(ParseError):
        to_int("-", "p", signed=True)
    with pytest.raises(ParseError):
        to_int("", "p")
