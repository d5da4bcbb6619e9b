"""/proc/PID/stat: one line of scheduler and memory counters for a process (proc(5)).

comm sits in parentheses and may itself hold spaces, parentheses or even a newline, so the
line is split on the LAST ')' (as procps and prometheus/procfs do). Fields the kernel added
later are None when an old kernel does not print them: processor (2.2.8), rt_priority and
policy (2.5.19), delayacct_blkio_ticks (2.6.18), guest_time/cguest_time (2.6.24),
exit_code (3.5). Times are in USER_HZ ticks (HostInfo.clk_tck), rss in pages.
"""

from __future__ import annotations

from dataclasses import fields
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from operator import itemgetter

from ...fs import Root
from .._text import S64_MIN, U64_MAX, bad, require_complete, to_int

PATH = "proc/PID/stat"


def path(pid: int) -> str:
    return f"proc/{pid}/stat"


@dataclass(frozen=True)
class PidStat:
    pid: int
    comm: str
    state: str  # one letter: R S D Z T t X I P ...
    ppid: int
    pgrp: int
    session: int
    tty_nr: int
    tpgid: int
    flags: int
    minflt_total: int
    cminflt_total: int
    majflt_total: int
    cmajflt_total: int
    utime_ticks: int
    stime_ticks: int
    cutime_ticks: int
    cstime_ticks: int
    priority: int
    nice: int
    num_threads: int
    starttime_ticks: int  # since boot
    vsize_bytes: int
    rss_pages: int
    rsslim_bytes: int | None = None
    signal: int | None = None  # pending/blocked/ignored/caught signal bitmaps (obsolete, kept
    blocked: int | None = None  # because PCP exports proc.psinfo.blocked)
    sigignore: int | None = None
    sigcatch: int | None = None
    exit_signal: int | None = None
    processor: int | None = None
    rt_priority: int | None = None
    policy: int | None = None
    delayacct_blkio_ticks: int | None = None
    guest_time_ticks: int | None = None
    cguest_time_ticks: int | None = None
    exit_code: int | None = None


# rest = the tokens after comm: rest[0] is state (proc(5) field 3), field n is rest[n - 3].
# Kept: state .. rss (3-24, without itrealvalue 21), rsslim 25, the signal bitmaps 31-34,
# exit_signal .. cguest_time 38-44, exit_code 52. Addresses (26-30, 45-51) are not kept.
_PICK = itemgetter(*range(1, 18), 19, 20, 21, 22, 28, 29, 30, 31, 35, 36, 37, 38, 39, 40, 41, 49)
_FULL = 50  # tokens after comm on a 3.5+ kernel (52 fields in all)
_REQUIRED = 22  # up to rss (field 24): every kernel ksight can meet prints these
_new = object.__new__


# Signedness as the kernel prints (fs/proc/array.c do_task_stat): %d/%ld for ppid, pgrp,
# session, tty_nr, tpgid (-1: no terminal), cutime, cstime, priority (negative for RT), nice,
# num_threads, exit_signal (-1 for threads), processor, cguest_time, exit_code; every other
# kept field is %u/%lu/%llu and a '-' there is an error. (rest indices, field n - 3)
_SIGNED_REST = frozenset((1, 2, 3, 4, 5, 13, 14, 15, 16, 17, 35, 36, 41, 49))
_PICK_UNSIGNED = itemgetter(6, 7, 8, 9, 10, 11, 12, 19, 20, 21, 22, 28, 29, 30, 31, 37, 38, 39, 40)
_SIGNED_PICK = tuple(i in _SIGNED_REST for i in _PICK(range(_FULL)))


def parse(text: str, path: str = PATH) -> PidStat:
    if text[-1:] != "\n":
        require_complete(text, path)
    lpar = text.find("(")
    rpar = text.rfind(")")
    if lpar < 1 or rpar < lpar:
        raise bad(path, 1, text.partition("\n")[0], "expected 'pid (comm) state ...'")
    rest = text[rpar + 2:].partition("\n")[0].split()
    if len(rest) < _FULL:
        if len(rest) < _REQUIRED:
            raise bad(path, 1, text.partition("\n")[0],
                      f"expected at least {_REQUIRED + 2} fields, got {len(rest) + 2}")
        rest += ["-"] * (_FULL - len(rest))  # fields newer than this kernel: None below
    picked = _PICK(rest)
    digits = "".join(picked)
    pid_s = text[:lpar].strip()
    # cheap strictness first (to_int's rules): ASCII digits and '-' only, no '-' in an unsigned
    # column; then the values within 64 bits (int() of 4,300+ digits raises: the slow path)
    vals = None
    if (digits.isascii() and digits.replace("-", "").isdigit() and pid_s.isascii()
            and pid_s.isdigit() and len(pid_s) < 20
            and ("-" not in digits or "-" not in "".join(_PICK_UNSIGNED(rest)))):
        try:
            ints = list(map(int, picked))
            if max(ints) <= U64_MAX and min(ints) >= S64_MIN:
                vals = (int(pid_s), text[lpar + 1:rpar], rest[0], *ints)
        except ValueError:  # '1-2', a lone '-' (padding)
            pass
    if vals is None:
        vals = _slow(text, lpar, rpar, rest, path)
    # a frozen dataclass filled through __dict__: 37 object.__setattr__ calls cost as much as
    # the parse itself, and this runs once per process per refresh
    o = _new(PidStat)
    o.__dict__.update(zip(_NAMES, vals))
    return o


def _slow(text: str, lpar: int, rpar: int, rest: list[str], path: str) -> tuple:
    """Padding ('-') becomes None; anything else that is not an integer is malformed."""
    line = text.partition("\n")[0]
    out = [to_int(text[:lpar].strip(), path, 1, line)]
    for t, signed in zip(_PICK(rest), _SIGNED_PICK):
        out.append(None if t == "-" else to_int(t, path, 1, line, signed=signed))
    return (out[0], text[lpar + 1:rpar], rest[0], *out[1:])


_NAMES = tuple(f.name for f in fields(PidStat))
assert len(_NAMES) == 3 + len(_PICK(range(_FULL)))


def read(root: Root, pid: int) -> PidStat:
    p = path(pid)
    return parse(root.read_text(p), p)
